//! Listing over a million stored transactions of one shop, on the embedded store: the latency
//! of a page of 100, first and deep, with and without filters (BENCHMARKS.md).
//!
//! Usage: `cargo run --release -p infra --example list_bench [COUNT]` (default 1,000,000).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use infra::adapters::embedded::SqliteStore;
use infra::domain::{
    AlertDecision, AlertFilter, Envelope, ListFilters, ListQuery, Position, ShopId,
    TransactionRecord, TransactionType, parse_transaction,
};
use infra::ports::Store;

const RUNS: usize = 200;

fn record(shop: &ShopId, n: usize, now: DateTime<Utc>) -> TransactionRecord {
    let currency = ["USD", "EUR", "GBP", "JPY"][n % 4];
    let amount = if currency == "JPY" {
        format!("{}", 100 + n % 90_000)
    } else {
        format!("{}.{:02}", 1 + n % 3_000, n % 100)
    };
    let body = serde_json::json!({
        "transaction_id": format!("tx-{n:08}"),
        "amount": amount,
        "currency": currency,
        // One a second, going back from the start of 2026.
        "timestamp": DateTime::from_timestamp(1_767_225_600 - n as i64, 0).expect("time").to_rfc3339(),
        "type": if n.is_multiple_of(50) { "refund" } else { "purchase" },
        "customer_id": format!("cust-{}", n % 10_000),
    });
    let transaction = parse_transaction(body.to_string().as_bytes(), now).expect("valid");
    let envelope = Envelope::new(shop.clone(), transaction, now, format!("req-{n}"));
    // One in a hundred raised an alert.
    let alerts = if n.is_multiple_of(100) {
        vec![AlertDecision {
            rule: "amount_exceeds_threshold".to_owned(),
            reason: "bench".to_owned(),
            facts: Default::default(),
            rules_version: None,
            action: Default::default(),
        }]
    } else {
        Default::default()
    };
    TransactionRecord::new(envelope, alerts.into(), now)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// The position after which a page starts `skip` transactions into the unfiltered list.
fn position_at(shop_total: usize, skip: usize) -> Option<Position> {
    (skip > 0).then(|| {
        let n = skip.min(shop_total) - 1;
        Position {
            micros: (1_767_225_600 - n as i64) * 1_000_000,
            transaction_id: format!("tx-{n:08}"),
        }
    })
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open store"));
    let shop = ShopId::parse("big-shop").expect("shop");
    let now = Utc::now();
    let started = Instant::now();
    futures_util::stream::iter(0..count)
        .map(|n| {
            let store = store.clone();
            let record = record(&shop, n, now);
            async move { store.put_if_absent(&record).await.expect("put") }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    println!(
        "stored {count} transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let filtered = |filters: ListFilters| filters;
    let cases: Vec<(&str, ListFilters, usize)> = vec![
        ("no filter, first page", ListFilters::default(), 0),
        ("no filter, page at 50%", ListFilters::default(), count / 2),
        (
            "no filter, page at 99%",
            ListFilters::default(),
            count * 99 / 100,
        ),
        (
            "currency=JPY (1 in 4), first page",
            filtered(ListFilters {
                currency: Some("JPY".into()),
                ..Default::default()
            }),
            0,
        ),
        (
            "currency=JPY, page at 90%",
            filtered(ListFilters {
                currency: Some("JPY".into()),
                ..Default::default()
            }),
            count * 9 / 10,
        ),
        (
            "type=refund (1 in 50), first page",
            filtered(ListFilters {
                kind: Some(TransactionType::Refund),
                ..Default::default()
            }),
            0,
        ),
        (
            "alert=any (1 in 100, own index), first page",
            filtered(ListFilters {
                alert: Some(AlertFilter::Any),
                ..Default::default()
            }),
            0,
        ),
        (
            "customer_id (100 each, own index)",
            filtered(ListFilters {
                customer_id: Some("cust-4242".into()),
                ..Default::default()
            }),
            0,
        ),
        (
            "from/to one day, min_amount=1000",
            filtered(ListFilters {
                from: DateTime::from_timestamp(1_767_225_600 - 200_000, 0),
                to: DateTime::from_timestamp(1_767_225_600 - 113_600, 0),
                min_amount: Some("1000".parse().expect("decimal")),
                ..Default::default()
            }),
            0,
        ),
    ];
    println!("| page of 100 | p50 | p99 | max | records |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, filters, skip) in cases {
        let query = ListQuery {
            filters,
            limit: 100,
            after: position_at(count, skip),
        };
        let mut times = Vec::with_capacity(RUNS);
        let mut returned = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let page = store.list(&shop, &query).await.expect("list");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            returned = page.records.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {returned} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
}
