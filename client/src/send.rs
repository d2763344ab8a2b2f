//! `pipeline send FILE|-`: transactions from JSON Lines or a JSON array, posted in batches with
//! bounded concurrency. A line that is not JSON, or a transaction the API rejects, goes to the
//! rejected file with its line number and errors; the good lines are sent all the same.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::api::{ApiClient, describe};

/// The API's limits: transactions per batch, bytes per batch, bytes per transaction.
const MAX_BATCH_ITEMS: usize = 1_000;
const MAX_BATCH_BYTES: usize = 1024 * 1024 - 1024;
const MAX_TRANSACTION_BYTES: usize = 64 * 1024;

#[derive(Args)]
pub struct SendArgs {
    /// JSON Lines (one transaction a line) or a JSON array; `-` reads standard input.
    pub input: String,
    /// Transactions per request, 1-1000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Where rejected lines go, with their errors, as JSON Lines [default: INPUT.rejected.jsonl,
    /// or rejected.jsonl for standard input].
    #[arg(long)]
    pub rejected: Option<PathBuf>,
}

/// One transaction of the input and the line it starts on.
struct Line {
    number: usize,
    raw: Box<RawValue>,
}

/// Why a line was not accepted.
struct Rejection {
    line: usize,
    transaction_id: Option<String>,
    errors: Value,
}

/// The input's bytes: a line that is not UTF-8 is one bad line, not a reason to stop.
fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if input == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(input)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .with_context(|| format!("reading {input}"))?;
    }
    Ok(bytes)
}

/// Whether the input is one JSON array rather than JSON Lines. A JSON Lines file may start
/// with a line that begins with `[` (a broken transaction): the input is an array only when
/// it parses as one whole, or when its first line is not a complete JSON value by itself.
fn is_json_array(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    if !text.trim_start().starts_with('[') {
        return false;
    }
    if serde_json::from_str::<Vec<Box<RawValue>>>(&text).is_ok() {
        return true;
    }
    let first_line = text
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    let more_lines = text.lines().filter(|line| !line.trim().is_empty()).count() > 1;
    !(more_lines && serde_json::from_str::<Box<RawValue>>(first_line).is_ok())
}

/// The transactions of the input, and the lines that could not be read as JSON.
fn parse_input(bytes: &[u8]) -> (Vec<Line>, Vec<Rejection>) {
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    if is_json_array(bytes) {
        match serde_json::from_slice::<Vec<Box<RawValue>>>(bytes) {
            // A JSON array's items are numbered from 1, as lines would be.
            Ok(items) => lines.extend(items.into_iter().enumerate().map(|(i, raw)| Line { number: i + 1, raw })),
            Err(error) => bad.push(Rejection {
                line: error.line(),
                transaction_id: None,
                errors: json!([{"field": "", "code": "not_json", "message": format!("the JSON array is broken: {error}")}]),
            }),
        }
        return (lines, bad);
    }
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            bad.push(Rejection {
                line: index + 1,
                transaction_id: None,
                errors: json!([{"field": "", "code": "not_utf8", "message": "the line is not UTF-8"}]),
            });
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Box<RawValue>>(line) {
            Ok(raw) if raw.get().len() > MAX_TRANSACTION_BYTES => bad.push(Rejection {
                line: index + 1,
                transaction_id: None,
                errors: json!([{"field": "", "code": "too_large", "message": format!("a transaction may take at most {MAX_TRANSACTION_BYTES} bytes")}]),
            }),
            Ok(raw) => lines.push(Line { number: index + 1, raw }),
            Err(error) => bad.push(Rejection {
                line: index + 1,
                transaction_id: None,
                errors: json!([{"field": "", "code": "not_json", "message": format!("not JSON: {error}")}]),
            }),
        }
    }
    (lines, bad)
}

/// Lines in request-sized groups: at most `batch_size` and the API's byte limit.
fn batches(lines: &[Line], batch_size: usize) -> Vec<&[Line]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, line) in lines.iter().enumerate() {
        let size = line.raw.get().len() + 1;
        if index > start
            && (index - start == batch_size.min(MAX_BATCH_ITEMS) || bytes + size > MAX_BATCH_BYTES)
        {
            groups.push(&lines[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < lines.len() {
        groups.push(&lines[start..]);
    }
    groups
}

/// Posts one batch; returns its rejections, or fails the run on an answer no line can fix.
async fn post(
    client: &ApiClient,
    batch: &[Line],
    retried: &AtomicU64,
) -> anyhow::Result<Vec<Rejection>> {
    let items: Vec<&RawValue> = batch.iter().map(|line| line.raw.as_ref()).collect();
    let body = serde_json::to_string(&json!({ "transactions": items }))?;
    let answer = client
        .call(Method::POST, "/transactions/batch", Some(body))
        .await?;
    retried.fetch_add(u64::from(answer.retries), Ordering::Relaxed);
    match answer.status {
        StatusCode::ACCEPTED | StatusCode::MULTI_STATUS | StatusCode::UNPROCESSABLE_ENTITY
            if answer.body["results"].is_array() =>
        {
            let results = answer.body["results"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            check_results(&results, batch.len())?;
            Ok(results
                .iter()
                .filter(|result| result["status"] == "rejected")
                .filter_map(|result| {
                    let line = batch.get(result["index"].as_u64()? as usize)?;
                    Some(Rejection {
                        line: line.number,
                        transaction_id: result["transaction_id"].as_str().map(str::to_owned),
                        errors: result["errors"].clone(),
                    })
                })
                .collect())
        }
        StatusCode::UNAUTHORIZED => anyhow::bail!("the API refused the key: {}", describe(&answer)),
        status => {
            // The batch as a whole was refused: every line of it, with the reason.
            let reason = json!([{"field": "", "code": status.as_u16().to_string(), "message": describe(&answer)}]);
            Ok(batch
                .iter()
                .map(|line| Rejection {
                    line: line.number,
                    transaction_id: None,
                    errors: reason.clone(),
                })
                .collect())
        }
    }
}

/// The answer must account for each item of the batch exactly once: a count the server got
/// wrong is not turned into lines reported as accepted.
fn check_results(results: &[Value], items: usize) -> anyhow::Result<()> {
    let mut seen = vec![false; items];
    for result in results {
        let index = result["index"]
            .as_u64()
            .and_then(|i| usize::try_from(i).ok());
        let known = matches!(result["status"].as_str(), Some("accepted" | "rejected"));
        match index.and_then(|index| seen.get_mut(index)) {
            Some(seen) if !*seen && known => *seen = true,
            _ => anyhow::bail!(
                "the API's answer does not match the batch: a result for item {} of {items} \
                 with status {}",
                result["index"],
                result["status"]
            ),
        }
    }
    if results.len() != items {
        anyhow::bail!(
            "the API's answer lists {} result(s) for {items} transactions; nothing of this batch \
             is counted as accepted",
            results.len()
        );
    }
    Ok(())
}

fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} transactions  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn rejected_path(args: &SendArgs) -> PathBuf {
    args.rejected.clone().unwrap_or_else(|| {
        if args.input == "-" {
            PathBuf::from("rejected.jsonl")
        } else {
            PathBuf::from(format!("{}.rejected.jsonl", args.input))
        }
    })
}

pub async fn run(client: &ApiClient, args: SendArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&args.input)?;
    let (lines, mut rejected) = parse_input(&bytes);
    for bad in &rejected {
        eprintln!(
            "line {}: {}",
            bad.line,
            bad.errors[0]["message"].as_str().unwrap_or("unreadable")
        );
    }
    let unreadable = rejected.len();
    let bar = progress(lines.len());
    let retried = AtomicU64::new(0);
    let groups = batches(&lines, usize::from(args.batch_size));
    let mut answers = futures_util::stream::iter(groups)
        .map(|batch| {
            let bar = &bar;
            let retried = &retried;
            async move {
                let outcome = post(client, batch, retried).await;
                bar.inc(batch.len() as u64);
                outcome
            }
        })
        .buffer_unordered(usize::from(args.concurrency));
    while let Some(outcome) = answers.next().await {
        rejected.extend(outcome?);
    }
    bar.finish_and_clear();
    let rejected_lines = rejected.len();
    // Each line was checked to have exactly one outcome, so this cannot go below zero.
    let accepted = (lines.len() + unreadable).saturating_sub(rejected_lines);
    if rejected_lines > 0 {
        rejected.sort_by_key(|rejection| rejection.line);
        let path = rejected_path(&args);
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        for rejection in &rejected {
            let entry = json!({"line": rejection.line, "transaction_id": rejection.transaction_id, "errors": rejection.errors});
            writeln!(file, "{entry}")?;
        }
        println!(
            "accepted {accepted}, rejected {rejected_lines} (see {}), retried {} request(s)",
            path.display(),
            retried.load(Ordering::Relaxed)
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "accepted {accepted}, rejected 0, retried {} request(s)",
        retried.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}
