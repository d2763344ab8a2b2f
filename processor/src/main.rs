//! `processor`: the SQS-triggered Lambda when started by the Lambda runtime, and `processor poll`,
//! a long-running poller over the same core for containers or local use against an emulator.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipeline::adapters::config::{BackendArgs, BackendKind};
use pipeline::domain::AlertPolicy;
use pipeline::telemetry::{LogFormat, init_logging};
use processor::Processor;
use processor::lambda::{cloudwatch_metrics, handle_sqs_event};
use processor::worker::{self, WorkerSettings};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "processor",
    version,
    about = "Drains the transactions queue into the store"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: ProcessorArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Poll the queue until SIGINT or SIGTERM (the default outside Lambda).
    Poll(ProcessorArgs),
}

#[derive(Debug, Clone, Args)]
struct ProcessorArgs {
    #[command(flatten)]
    backend: BackendArgs,

    /// Per-currency alert thresholds, e.g. `USD=1000,JPY=150000`; others use 1000.
    #[arg(long, env = "ALERT_THRESHOLDS", default_value = "", value_parser = str::parse::<AlertPolicy>)]
    alert_thresholds: AlertPolicy,

    /// Messages received per batch (SQS returns at most 10 per receive).
    #[arg(long, env = "PROCESSOR_BATCH_SIZE", default_value_t = 10)]
    processor_batch_size: usize,

    /// Messages of a batch processed at once.
    #[arg(long, env = "PROCESSOR_CONCURRENCY", default_value_t = 10)]
    processor_concurrency: usize,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,

    /// CloudWatch namespace of the metrics (Lambda only).
    #[arg(long, env = "METRICS_NAMESPACE", default_value = "ECommercePipeline")]
    metrics_namespace: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let result = match cli.command {
        Some(Command::Poll(settings)) => poll(settings).await,
        None if in_lambda => run_lambda(cli.settings).await,
        None => poll(cli.settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn processor(
    settings: &ProcessorArgs,
) -> Result<(Arc<Processor>, Arc<dyn pipeline::ports::Queue>), String> {
    let backend = settings
        .backend
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let processor = Processor::new(
        backend.queue.clone(),
        backend.store,
        backend.notifier,
        settings.alert_thresholds.clone(),
        settings.processor_concurrency,
    );
    Ok((Arc::new(processor), backend.queue))
}

async fn run_lambda(settings: ProcessorArgs) -> Result<(), String> {
    init_logging(LogFormat::Json);
    let metrics =
        cloudwatch_metrics(&settings.metrics_namespace).map_err(|error| error.to_string())?;
    let (processor, queue) = processor(&settings).await?;
    let handler =
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let processor = processor.clone();
            let queue = queue.clone();
            async move {
                let response = handle_sqs_event(&processor, queue.as_ref(), event.payload).await;
                Ok::<_, lambda_runtime::Error>(response)
            }
        };
    metrics_cloudwatch_embedded::lambda::handler::run(metrics, handler)
        .await
        .map_err(|error| error.to_string())
}

async fn poll(settings: ProcessorArgs) -> Result<(), String> {
    init_logging(settings.log_format);
    let (processor, queue) = processor(&settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let worker_settings = WorkerSettings {
        batch_size: settings.processor_batch_size,
        // SQS long polling stops at 20 s; the embedded queue wakes on arrival anyway.
        receive_wait: match settings.backend.backend {
            BackendKind::Aws => Duration::from_secs(20),
            BackendKind::Embedded => Duration::from_secs(1),
        },
    };
    tracing::info!(backend = ?settings.backend.backend, "polling the queue");
    worker::run(processor, queue, worker_settings, shutdown).await;
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    processor::worker::shutdown_signal().await;
    tracing::info!("shutting down after the current batch");
    shutdown.cancel();
}
