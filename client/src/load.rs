//! `pipeline load`: realistic synthetic traffic at a steady rate, through the same client, with
//! live progress. At the end: throughput, latency percentiles (an HDR histogram), and the time
//! from a 202 to the transaction being readable, sampled with GET.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::api::ApiClient;

#[derive(Args)]
pub struct LoadArgs {
    /// Transactions per second.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Share of transactions above the alert threshold, from 0 to 1.
    #[arg(long, default_value_t = 0.01)]
    pub alert_share: f64,
    /// Transactions per request: 1 posts them one by one, more uses the batch endpoint.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    /// Requests in flight at most; beyond it, sending waits (and the rate reached is reported).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Transactions read back with GET to measure the time from 202 to stored.
    #[arg(long, default_value_t = 100)]
    pub lag_samples: usize,
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    by_status: BTreeMap<String, u64>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn transaction(run: u128, n: u64, alert_share: f64) -> Value {
    let mut rng = rand::rng();
    let alerting = rng.random_bool(alert_share.clamp(0.0, 1.0));
    let cents: u64 = if alerting {
        rng.random_range(100_001..500_000)
    } else {
        rng.random_range(100..90_000)
    };
    let methods = [
        "card",
        "wallet",
        "bank_transfer",
        "cash_on_delivery",
        "other",
    ];
    json!({
        "transaction_id": format!("load-{run}-{n}"),
        "amount": format!("{}.{:02}", cents / 100, cents % 100),
        "currency": "USD",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "type": if rng.random_bool(0.05) { "refund" } else { "purchase" },
        "customer_id": format!("cust-{}", rng.random_range(0..5_000)),
        "payment_method": methods[rng.random_range(0..methods.len())],
    })
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn summary(name: &str, histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return format!("{name}: no samples");
    }
    format!(
        "{name}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        millis(histogram.value_at_quantile(0.5)),
        millis(histogram.value_at_quantile(0.9)),
        millis(histogram.value_at_quantile(0.99)),
        millis(histogram.max()),
        histogram.len()
    )
}

/// Polls a transaction until it is stored; returns the wait (client) and
/// `processed_at - accepted_at` (server), in microseconds.
async fn lag_of(client: &ApiClient, id: &str, accepted: Instant) -> Option<(u64, Option<u64>)> {
    let deadline = accepted + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok((StatusCode::OK, text)) = client
            .once(Method::GET, &format!("/transactions/{id}"), None)
            .await
        {
            let waited = accepted.elapsed().as_micros() as u64;
            let record: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let time = |field: &str| {
                record[field]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            };
            let server = match (time("accepted_at"), time("processed_at")) {
                (Some(accepted), Some(processed)) => (processed - accepted)
                    .num_microseconds()
                    .map(|m| m.max(0) as u64),
                _ => None,
            };
            return Some((waited, server));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

pub async fn run(client: &ApiClient, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let client = Arc::new(client.clone());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let batch = u64::from(args.batch_size);
    let requests_per_second = f64::from(args.rate) / batch as f64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / requests_per_second));
    // Burst: ticks missed while a request was being built are sent at once, so the asked rate
    // holds even when a tick is shorter than the timer's 1 ms resolution.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let total = (f64::from(args.rate) * args.duration).ceil() as u64;
    let sample_every = (total / args.lag_samples.max(1) as u64).max(1);
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let latency = Arc::new(Mutex::new(histogram()));
    let lag = Arc::new(Mutex::new(histogram()));
    let server_lag = Arc::new(Mutex::new(histogram()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} sent  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    while sent < total {
        ticker.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let count = batch.min(total - sent);
        let items: Vec<Value> = (sent..sent + count)
            .map(|n| transaction(run, n, args.alert_share))
            .collect();
        let sampled: Vec<String> = (sent..sent + count)
            .filter(|n| n % sample_every == 0)
            .map(|n| format!("load-{run}-{n}"))
            .collect();
        sent += count;
        let (client, latency, lag, server_lag, tally, bar) = (
            client.clone(),
            latency.clone(),
            lag.clone(),
            server_lag.clone(),
            tally.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (path, body) = if count == 1 {
                ("/transactions", items[0].to_string())
            } else {
                (
                    "/transactions/batch",
                    json!({ "transactions": items }).to_string(),
                )
            };
            let began = Instant::now();
            let answer = client.once(Method::POST, path, Some(body)).await;
            let took = began.elapsed().as_micros() as u64;
            drop(permit);
            let _ = latency.lock().map(|mut h| h.record(took.max(1)));
            let status = match &answer {
                Ok((status, _)) => status.as_u16().to_string(),
                Err(_) => "network error".to_owned(),
            };
            let accepted = matches!(answer, Ok((StatusCode::ACCEPTED, _)));
            if let Ok(mut tally) = tally.lock() {
                *tally.by_status.entry(status).or_default() += 1;
                if accepted {
                    tally.accepted += count;
                }
                bar.set_message(format!("{} accepted", tally.accepted));
            }
            bar.inc(count);
            if accepted {
                let accepted_at = Instant::now();
                for id in sampled {
                    if let Some((waited, server)) = lag_of(&client, &id, accepted_at).await {
                        let _ = lag.lock().map(|mut h| h.record(waited.max(1)));
                        if let Some(server) = server {
                            let _ = server_lag.lock().map(|mut h| h.record(server.max(1)));
                        }
                    }
                }
            }
        }));
    }
    let sending = started.elapsed();
    for task in tasks {
        task.await?;
    }
    bar.finish_and_clear();
    let tally = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("a request task panicked"))?;
    let seconds = sending.as_secs_f64().max(f64::EPSILON);
    println!(
        "sent {sent} transactions in {seconds:.1} s ({:.0}/s asked, {:.0}/s reached); accepted {} ({:.0}/s)",
        f64::from(args.rate),
        sent as f64 / seconds,
        tally.accepted,
        tally.accepted as f64 / seconds
    );
    let statuses: Vec<String> = tally
        .by_status
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    println!("answers: {}", statuses.join(", "));
    let read = |h: &Arc<Mutex<Histogram<u64>>>| {
        h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram())
    };
    println!("{}", summary("request latency", &read(&latency)));
    println!(
        "{}",
        summary("202 to readable (GET, client clock)", &read(&lag))
    );
    println!(
        "{}",
        summary("accepted to stored (server clock)", &read(&server_lag))
    );
    let failed = tally.by_status.iter().any(|(status, _)| status != "202");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
