//! `processor rules backtest` against what `processor poll` stored, on both backends: the rules
//! in force reproduce the stored alerts exactly, a candidate's changes show in the diff, and a
//! shop sees only its own transactions.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use infra::adapters::embedded::QueueSettings;
use infra::domain::ShopId;
use infra::ports::{OutgoingMessage, Producer, RecordReader};
use serde_json::{Value, json};
use testkit::ResourceOptions;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/example.toml");
const SHOP: &str = "shop-a";

/// A shop's afternoon: bursts on a few cards and customers, some large payments, one minute of
/// traffic in timestamp order ending a minute ago.
fn traffic(count: usize) -> Vec<(String, String, String)> {
    let start = Utc::now() - chrono::Duration::minutes(2);
    (0..count)
        .map(|i| {
            let id = format!("bt-{i:04}");
            let at = start + chrono::Duration::milliseconds(60_000 * i as i64 / count as i64);
            let amount = if i % 17 == 0 { "1500.00" } else { "12.50" };
            let body = json!({
                "version": 1, "shop_id": SHOP, "accepted_at": Utc::now(), "request_id": format!("req-{id}"),
                "transaction": {
                    "transaction_id": id, "amount": amount, "currency": "USD", "type": "purchase",
                    "customer_id": format!("cust-{}", i % 7),
                    "payment_fingerprint": format!("fp_card_{}", i % 11),
                    "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true)
                }
            });
            (id, body.to_string(), at.to_rfc3339_opts(SecondsFormat::Millis, true))
        })
        .collect()
}

fn processor() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
}

/// Runs `processor rules backtest FILE --json` with `args` and `env`, and reads its report.
fn backtest(file: &str, args: &[&str], env: &[(&str, String)]) -> Value {
    let output = processor()
        .args(["rules", "backtest", file, "--json"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run the backtest");
    assert!(
        output.status.success(),
        "backtest failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// Polls with the example rules until every transaction is stored, then stops the poller.
async fn process_all(env: &[(&str, String)], store: &dyn RecordReader, ids: &[String]) -> u64 {
    let mut poller = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("poll")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RULES_FILE", EXAMPLE)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor poll");
    let shop = ShopId::parse(SHOP).expect("shop");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alerts = 0;
    for id in ids {
        loop {
            if let Some(record) = store.get(&shop, id).await.expect("get") {
                alerts += record.alerts.len() as u64;
                break;
            }
            assert!(Instant::now() < deadline, "{id} not stored in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    poller.kill().await.expect("stop the poller");
    alerts
}

fn assert_reproduces(report: &Value, transactions: usize, alerts: u64) {
    assert_eq!(report["transactions"], json!(transactions), "{report:#}");
    assert_eq!(report["diff"]["added"], 0, "{report:#}");
    assert_eq!(report["diff"]["dropped"], 0, "{report:#}");
    assert_eq!(report["diff"]["unchanged"], json!(alerts), "{report:#}");
    assert!(alerts > 0, "the traffic raises alerts");
}

/// A candidate with card testing above 3 instead of 5: it adds alerts and drops none.
fn stricter_candidate(dir: &Path) -> String {
    let text = std::fs::read_to_string(EXAMPLE)
        .expect("example")
        .replace("window = \"10m\"\nabove = 5", "window = \"10m\"\nabove = 3");
    let path = dir.join("candidate.toml");
    std::fs::write(&path, text).expect("write the candidate");
    path.to_string_lossy().into_owned()
}

fn assert_candidate_adds(report: &Value) {
    assert!(report["diff"]["added"].as_u64() > Some(0), "{report:#}");
    assert_eq!(report["diff"]["dropped"], 0, "{report:#}");
    let added = &report["diff"]["added_examples"][0];
    assert_eq!(added["rule"], "card_testing", "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_the_rules_in_force_reproduce_the_stored_alerts() {
    let temp = tempfile::tempdir().expect("temp");
    let ports = testkit::embedded(temp.path(), QueueSettings::default());
    let traffic = traffic(400);
    for (_, body, _) in &traffic {
        ports
            .queue
            .send(OutgoingMessage {
                body: body.clone(),
                attributes: Default::default(),
            })
            .await
            .expect("enqueue");
    }
    let env = [("DATA_DIR", temp.path().to_string_lossy().into_owned())];
    let ids: Vec<String> = traffic.iter().map(|(id, ..)| id.clone()).collect();
    let alerts = process_all(&env, ports.store.as_ref(), &ids).await;

    let report = backtest(EXAMPLE, &["--shop", SHOP], &env);
    assert_reproduces(&report, ids.len(), alerts);
    // Every shop of the store when none is named: the same, as there is one.
    assert_eq!(backtest(EXAMPLE, &[], &env)["diff"], report["diff"]);

    let candidate = stricter_candidate(temp.path());
    assert_candidate_adds(&backtest(&candidate, &["--shop", SHOP], &env));

    // Another shop has none of these transactions.
    let theirs = backtest(EXAMPLE, &["--shop", "shop-b"], &env);
    assert_eq!(
        (theirs["transactions"].clone(), theirs["read"].clone()),
        (json!(0), json!(0))
    );

    // A period: only its transactions are reported, the ones before it fill its windows.
    let from = ids.len() / 2;
    let half = backtest(EXAMPLE, &["--shop", SHOP, "--from", &traffic[from].2], &env);
    assert_eq!(half["transactions"], json!(ids.len() - from), "{half:#}");
    assert_eq!(half["read"], json!(ids.len()), "{half:#}");
    assert_eq!(
        (
            half["diff"]["added"].clone(),
            half["diff"]["dropped"].clone()
        ),
        (json!(0), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dynamodb_the_backtest_reads_the_time_index_and_reproduces_the_stored_alerts() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let traffic = traffic(60);
    let bodies: Vec<String> = traffic.iter().map(|(_, body, _)| body.clone()).collect();
    testkit::send_raw(&resources, &bodies).await;
    // One message at a time: on DynamoDB a transaction's count and its windows' read are two
    // calls, so two of one card decided at once may each see the other (README, "Backtests").
    let mut env = resources.env();
    env.push(("PROCESSOR_CONCURRENCY", "1".to_owned()));
    let ids: Vec<String> = traffic.into_iter().map(|(id, ..)| id).collect();
    let ports = resources.ports();
    let alerts = process_all(&env, ports.store.as_ref(), &ids).await;

    let report = backtest(EXAMPLE, &["--shop", SHOP], &env);
    assert_reproduces(&report, ids.len(), alerts);
    let temp = tempfile::tempdir().expect("temp");
    assert_candidate_adds(&backtest(
        &stricter_candidate(temp.path()),
        &["--shop", SHOP],
        &env,
    ));

    // Without a shop, DynamoDB cannot list them: the command says so.
    let output = processor()
        .args(["rules", "backtest", EXAMPLE])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("name the shop"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
