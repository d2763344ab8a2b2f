//! The replay rate of a backtest on the embedded store (BENCHMARKS.md, "Backtests"): a shop's
//! million stored transactions replayed through the README's example rules and through the
//! default rule, against reading the same transactions alone, in the same run.
//!
//! Usage: `cargo run --release -p infra --example backtest_bench [COUNT]` (default 1,000,000).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration};
use futures_util::StreamExt;
use infra::adapters::embedded::SqliteStore;
use infra::domain::rules::backtest::Period;
use infra::domain::{Envelope, RuleSet, ShopId, TransactionRecord, parse_transaction};
use infra::ports::{History, HistoryRead, Store};

const EXAMPLE: &str = include_str!("../../rules/example.toml");

/// Transaction `n`: one every 50 ms going back from the start of 2026 (1,728,000 a day), over
/// 200,000 cards and 100,000 customers (17 a day each), mostly small amounts with one in 500
/// above 1000: a shop whose rules fire now and then, not on most payments. Stored a second after
/// its timestamp.
fn record(shop: &ShopId, n: usize) -> TransactionRecord {
    let timestamp = DateTime::from_timestamp(1_767_225_600, 0).expect("time")
        - Duration::milliseconds(50 * n as i64);
    let body = serde_json::json!({
        "transaction_id": format!("tx-{n:08}"),
        "amount": if n.is_multiple_of(500) { "1500.00".to_owned() } else { format!("{}.{:02}", 1 + n % 300, n % 100) },
        "currency": "USD",
        "timestamp": timestamp.to_rfc3339(),
        "type": if n.is_multiple_of(50) { "refund" } else { "purchase" },
        "customer_id": format!("cust-{}", n % 100_000),
        "payment_fingerprint": format!("fp_{}", n % 200_000),
    });
    let processed_at = timestamp + Duration::seconds(1);
    let transaction = parse_transaction(body.to_string().as_bytes(), processed_at).expect("valid");
    let envelope = Envelope::new(shop.clone(), transaction, processed_at, format!("req-{n}"));
    TransactionRecord::new(envelope, Default::default(), processed_at)
}

fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open store"));
    let store: Arc<dyn Store> = sqlite.clone();
    let shop = ShopId::parse("big-shop").expect("shop");
    let started = Instant::now();
    futures_util::stream::iter(0..count)
        .map(|n| {
            let store = store.clone();
            let record = record(&shop, n);
            async move { store.put_if_absent(&record).await.expect("put") }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    println!(
        "stored {count} transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for (name, sql) in [
        (
            "rows by the time index",
            "SELECT record FROM transactions WHERE shop_id = 'big-shop' AND occurred_at_us >= -9223372036854775808 AND occurred_at_us < 9223372036854775807",
        ),
        (
            "rows by the primary key",
            "SELECT record FROM transactions WHERE shop_id = 'big-shop'",
        ),
    ] {
        let connection = rusqlite::Connection::open(dir.path().join("store.db")).expect("open");
        let started = Instant::now();
        let mut statement = connection.prepare(sql).expect("prepare");
        let mut rows = statement.query([]).expect("query");
        let mut bytes = 0;
        while let Some(row) = rows.next().expect("row") {
            bytes += row.get_ref(0).expect("col").as_str().expect("text").len();
        }
        println!("{name}: {:.0} rows/s ({bytes} bytes)", rate(count, started));
    }
    // Each measurement starts from the same state: no other copy of the history in memory,
    // and the last one freed (a backtest frees its records after answering).
    let settle = || std::thread::sleep(std::time::Duration::from_secs(1));
    let read_alone = || async {
        let started = Instant::now();
        let HistoryRead::Complete(records, _) = sqlite
            .history(
                &shop,
                Period::default(),
                infra::ports::HistoryBound::of_transactions(count),
            )
            .await
            .expect("history")
        else {
            panic!("bounded")
        };
        (rate(records.len(), started), records)
    };
    let (read, records) = read_alone().await;
    drop(records);
    println!("read alone: {read:.0} transactions/s (the baseline)");

    let rule_sets = [
        ("default rule", RuleSet::default()),
        (
            "example rules (threshold, 2 velocity, distinct, sum)",
            RuleSet::from_toml("example.toml", EXAMPLE).expect("valid"),
        ),
    ];
    for (name, rules) in &rule_sets {
        settle();
        let started = Instant::now();
        let sources = infra::backtest::Sources {
            history: sqlite.clone(),
            lists: Some(sqlite.clone()),
        };
        let bound = infra::ports::HistoryBound::of_transactions(count);
        let outcome = infra::backtest::run(
            sources,
            vec![shop.clone()],
            rules.clone(),
            Period::default(),
            bound,
        )
        .await
        .expect("backtest");
        let replayed = rate(count, started);
        let infra::backtest::BacktestOutcome::Report(report) = outcome else {
            panic!("bounded")
        };
        let fired: u64 = report.rules.iter().map(|rule| rule.fired).sum();
        println!(
            "backtest, {name}: {replayed:.0} transactions/s, {:.2} x the read alone ({fired} hits)",
            replayed / read
        );
    }
    settle();
    let (_, records) = read_alone().await;
    for (name, rules) in &rule_sets {
        let started = Instant::now();
        let report =
            infra::backtest::replay(rules, Period::default(), &records, Default::default());
        println!(
            "replay alone, {name}: {:.0} transactions/s",
            rate(report.transactions as usize, started)
        );
    }
}
