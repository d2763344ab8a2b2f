//! The processor's CPU per message on the embedded backend with the default rule, the README's
//! five example rules and ten rules (BENCHMARKS.md, "Alert rules").
//!
//! Fills a fresh queue with COUNT transactions (5,000 customers, 20,000 card fingerprints, a
//! few minutes of timestamps), then drains it as the worker would (lease 128, process, ack) and
//! reads the process's CPU time (user + system, all threads, including SQLite's writer) around
//! the drain.
//!
//! Usage: `cargo run --release -p processor --example rules_cpu [COUNT]` (default 100,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use infra::adapters::embedded::{QueueSettings, SqliteNotifier, SqliteQueue, SqliteStore};
use infra::domain::RuleSet;
use infra::ports::{Consumer, OutgoingMessage, Producer};
use processor::Processor;

const EXAMPLE: &str = include_str!("../../rules/example.toml");
const FIVE_MORE: &str = r#"
[[rule]]
name = "card_hourly"
kind = "velocity"
key = "payment_fingerprint"
window = "1h"
above = 20

[[rule]]
name = "customer_burst"
kind = "velocity"
key = "customer_id"
window = "10m"
above = 10

[[rule]]
name = "shop_volume"
kind = "velocity"
key = "shop"
window = "1m"
above = 100000

[[rule]]
name = "cards_per_customer_day"
kind = "distinct"
window = "1d"
above = 10

[[rule]]
name = "customer_weekly_spend"
kind = "velocity"
key = "customer_id"
measure = "sum"
currency = "USD"
window = "7d"
above = "20000"
"#;

/// User + system CPU seconds of this process so far, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(") ").next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn body(n: usize) -> String {
    let at = Utc::now() - chrono::Duration::milliseconds(n as i64 * 3);
    serde_json::json!({
        "version": 1, "shop_id": "shop-a", "accepted_at": Utc::now(), "request_id": format!("req-{n}"),
        "transaction": {
            "transaction_id": format!("tx-{n}"),
            "amount": format!("{}.{:02}", 1 + n % 1_500, n % 100),
            "currency": "USD",
            "type": if n.is_multiple_of(20) { "refund" } else { "purchase" },
            "customer_id": format!("cust-{}", n % 5_000),
            "payment_fingerprint": format!("fp_{:08x}", n % 20_000),
            "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    })
    .to_string()
}

async fn run(name: &str, rules: RuleSet, count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let queue = Arc::new(
        SqliteQueue::open(&dir.path().join("queue.db"), QueueSettings::default()).expect("queue"),
    );
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
    let notifier = Arc::new(SqliteNotifier::open(&dir.path().join("alerts.db")).expect("alerts"));
    let messages: Vec<OutgoingMessage> = (0..count)
        .map(|n| OutgoingMessage {
            body: body(n),
            attributes: Default::default(),
        })
        .collect();
    for chunk in messages.chunks(1_000) {
        queue.send_batch(chunk.to_vec()).await.expect("fill");
    }
    let processor = Processor::new(queue.clone(), store, notifier, rules).with_concurrency(128);
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let mut done = 0;
    while done < count {
        let batch = queue
            .receive(128, Duration::from_secs(1))
            .await
            .expect("receive");
        let report = processor.process_batch(batch).await;
        let receipts = report.receipts_to_ack();
        done += receipts.len();
        queue.ack(&receipts).await.expect("ack");
    }
    let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
    println!(
        "{name:<14} {count} messages: {:.1} µs CPU per message, {:.0} messages/s ({cpu:.2} s CPU, {wall:.2} s wall)",
        cpu / count as f64 * 1e6,
        count as f64 / wall,
    );
}

#[tokio::main]
async fn main() {
    let count = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let example = RuleSet::from_toml("example", EXAMPLE).expect("example rules");
    let ten = RuleSet::from_toml("ten", &format!("{EXAMPLE}{FIVE_MORE}")).expect("ten rules");
    assert_eq!(ten.rules().len(), 10);
    run("default rule", RuleSet::default(), count).await;
    run("5 rules", example, count).await;
    run("10 rules", ten, count).await;
}
