//! `processor`: the SQS-triggered Lambda when started by the Lambda runtime; `processor poll`,
//! a long-running poller over the same core for containers or local use against an emulator;
//! `processor dead-letters`, for operators to see and redrive what could not be processed; and
//! `processor rules check FILE`, to read a rules file before it goes live; and `processor
//! inbox backfill`, to open inbox items for alerts stored before the inbox existed.

use std::process::ExitCode;

use aws_lambda_events::event::sqs::SqsEvent;
use clap::{Args, Parser, Subcommand};
use infra::adapters::select::PortArgs;
use infra::ports::Redrive;
use infra::shutdown;
use infra::telemetry::{self, LogFormat, TelemetryArgs, exit_code, init_logging};
use lambda_runtime::LambdaEvent;
use processor::lambda::handle_invocation;
use processor::settings::ProcessorArgs;
use processor::{wiring, worker};

#[derive(Debug, Parser)]
#[command(
    name = "processor",
    version,
    about = "Drains the transactions queue into the store",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the queue until SIGINT or SIGTERM (the default outside Lambda).
    Poll(Box<RunArgs>),
    /// See the dead letters and put them back on the queue after a fix.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Alert rules files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The alert inbox.
    #[command(subcommand)]
    Inbox(InboxCommand),
}

#[derive(Debug, Subcommand)]
enum InboxCommand {
    /// Open inbox items for alerts stored before the inbox existed (DynamoDB: one scan of the
    /// table; the embedded store does it at its first start). Safe to repeat. The webhooks
    /// function sends no `alert.raised` for them.
    Backfill {
        #[command(flatten)]
        ports: Box<PortArgs>,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Read a rules file as the processor would and list its rules, or say where it is wrong.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
    /// Replay stored transactions through a candidate rules file, in memory, as the processor
    /// would have judged them: what each rule fires on, and what changes against the alerts
    /// stored. Nothing is written, published or counted.
    Backtest(Box<BacktestArgs>),
}

#[derive(Debug, Args)]
struct BacktestArgs {
    /// The candidate rules (TOML).
    file: std::path::PathBuf,
    /// Only this shop (required on DynamoDB); default: every shop of the embedded store.
    #[arg(long)]
    shop: Option<String>,
    /// Transactions with a `timestamp` at or after this (RFC 3339).
    #[arg(long)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Transactions with a `timestamp` before this (RFC 3339).
    #[arg(long)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
    /// Read at most this many transactions (the period's, and those around it that fill
    /// its windows); a period with more is refused.
    #[arg(long, default_value_t = infra::backtest::DEFAULT_MAX_TRANSACTIONS)]
    max_transactions: usize,
    #[command(flatten)]
    ports: PortArgs,
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// List dead letters with their reasons; they stay where they are.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ports: Box<PortArgs>,
    },
    /// Put dead letters back on the queue to be processed again: all, or those named. Safe to
    /// repeat: what was stored meanwhile is counted as a duplicate.
    Redrive {
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        all: bool,
        /// A dead letter's id, as `list` shows it (repeatable).
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        ports: Box<PortArgs>,
    },
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    #[command(flatten)]
    ports: PortArgs,
    #[command(flatten)]
    processor: ProcessorArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, lambda) = match cli.command {
        Some(Command::Poll(args)) => (*args, false),
        Some(Command::Rules(RulesCommand::Check { file })) => {
            init_logging(LogFormat::Pretty);
            return exit_code(check_rules(&file));
        }
        Some(Command::Rules(RulesCommand::Backtest(args))) => {
            init_logging(LogFormat::Pretty);
            return exit_code(backtest(&args).await);
        }
        Some(Command::DeadLetters(command)) => {
            init_logging(LogFormat::Pretty);
            return exit_code(dead_letters(command).await);
        }
        Some(Command::Inbox(InboxCommand::Backfill { ports })) => {
            init_logging(LogFormat::Pretty);
            return exit_code(backfill_inbox(&ports).await);
        }
        None => (cli.run, telemetry::in_lambda()),
    };
    init_logging(args.telemetry.log_format);
    exit_code(if lambda {
        run_lambda(args).await
    } else {
        poll(args).await
    })
}

fn check_rules(file: &std::path::Path) -> anyhow::Result<()> {
    let rules = processor::rules_source::from_file(file)?;
    println!("version\t{}", rules.version());
    for rule in rules.describe() {
        println!("{}\t{}\t{}", rule.name, rule.kind, rule.description);
    }
    Ok(())
}

async fn backtest(args: &BacktestArgs) -> anyhow::Result<()> {
    use infra::backtest::BacktestOutcome;
    use infra::domain::ShopId;
    use infra::domain::rules::backtest::Period;

    let rules = processor::rules_source::from_file(&args.file)?;
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        anyhow::bail!("--from must be before --to");
    }
    let connector = args.ports.connector();
    let store = connector.store().await?;
    let shops = match &args.shop {
        Some(shop) => {
            vec![ShopId::parse(shop).map_err(|error| anyhow::anyhow!("--shop: {error}"))?]
        }
        None => store.shops().await?,
    };
    let period = Period {
        from: args.from,
        to: args.to,
    };
    let started = std::time::Instant::now();
    let sources = infra::backtest::Sources {
        history: store,
        lists: connector.list_membership().await?,
    };
    let bound = infra::ports::HistoryBound::of_transactions(args.max_transactions);
    let outcome = infra::backtest::run(sources, shops, rules, period, bound).await?;
    let report = match outcome {
        BacktestOutcome::Report(report) => report,
        BacktestOutcome::TooMany(bound) => anyhow::bail!(
            "the period holds more than {} transactions (or {} MB of them): narrow it with \
             --from and --to, or raise --max-transactions",
            bound.transactions,
            bound.bytes / 1_000_000
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let elapsed = started.elapsed();
    println!("version\t{}", report.rules_version);
    println!(
        "replayed\t{} transactions of the period ({} read) in {:.2} s",
        report.transactions,
        report.read,
        elapsed.as_secs_f64()
    );
    println!("rule\tmode\taction\tfired\tfraud\tlegitimate\texamples");
    for rule in &report.rules {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            rule.name,
            rule.mode,
            rule.action,
            rule.fired,
            rule.reviewed_fraud,
            rule.reviewed_legitimate,
            rule.examples.join(",")
        );
    }
    let decisions: Vec<String> = report
        .decisions
        .iter()
        .map(|(decision, count)| format!("{decision} {count}"))
        .collect();
    println!("decisions\t{}", decisions.join(", "));
    let diff = &report.diff;
    println!(
        "diff\t{} added, {} dropped, {} unchanged",
        diff.added, diff.dropped, diff.unchanged
    );
    for hit in &diff.added_examples {
        println!("+\t{}\t{}", hit.transaction_id, hit.rule);
    }
    for hit in &diff.dropped_examples {
        println!("-\t{}\t{}", hit.transaction_id, hit.rule);
    }
    Ok(())
}

/// The processor over the configured ports, and the queue it drains.
async fn connect(args: &RunArgs) -> anyhow::Result<wiring::Wired> {
    wiring::processor(&args.ports.connector(), &args.processor).await
}

async fn run_lambda(args: RunArgs) -> anyhow::Result<()> {
    let metrics = telemetry::cloudwatch_metrics(&args.telemetry.metrics_namespace)?;
    let wiring::Wired {
        processor,
        queue,
        tuning,
    } = connect(&args).await?;
    let handler = move |event: LambdaEvent<SqsEvent>| {
        let processor = processor.clone();
        let queue = queue.clone();
        async move {
            let response = handle_invocation(&processor, queue.as_ref(), tuning.retry, event).await;
            Ok::<_, lambda_runtime::Error>(response)
        }
    };
    metrics_cloudwatch_embedded::lambda::handler::run(metrics, handler)
        .await
        .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}

async fn poll(args: RunArgs) -> anyhow::Result<()> {
    let wiring::Wired {
        processor,
        queue,
        tuning,
    } = connect(&args).await?;
    let stop = shutdown::on_signal("finishing the current batch");
    tracing::info!(queue = ?args.ports.queue_backend(), store = ?args.ports.store_backend(), "polling the queue");
    worker::run(processor, queue, tuning, stop).await;
    Ok(())
}

async fn backfill_inbox(ports: &PortArgs) -> anyhow::Result<()> {
    let store = ports.connector().inbox_backfill().await?;
    let report = store.open_earlier_alerts().await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn dead_letters(command: DeadLettersCommand) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List { max, json, ports } => {
            let queue = ports.connector().dead_letters().await?;
            let letters = queue.dead_letters(max).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
                return Ok(());
            }
            println!("{} dead letter(s)", letters.len());
            for letter in letters {
                println!(
                    "{}\t{}\t{}",
                    letter.id,
                    letter.reason,
                    one_line(&letter.body, 120)
                );
            }
            Ok(())
        }
        DeadLettersCommand::Redrive { all, ids, ports } => {
            let queue = ports.connector().dead_letters().await?;
            let which = if all { Redrive::All } else { Redrive::Ids(ids) };
            let moved = queue.redrive(&which).await?;
            println!("redrove {moved} dead letter(s)");
            if let Redrive::Ids(ids) = &which
                && moved < ids.len()
            {
                anyhow::bail!(
                    "{} of the named dead letters were not found",
                    ids.len() - moved
                );
            }
            Ok(())
        }
    }
}

/// The start of a message body on one line, for a table.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
