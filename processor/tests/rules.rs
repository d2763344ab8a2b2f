//! Alert rules from the README's example file, on both backends: a card-testing burst with every
//! message delivered twice, concurrent processors counting one key, and broken rules refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use infra::adapters::embedded::QueueSettings;
use infra::domain::rules::WindowTotal;
use infra::domain::{RuleSet, ShopId, Transaction};
use infra::ports::{ReceivedMessage, RecordReader, Store};
use processor::Processor;
use testkit::ResourceOptions;
use testkit::deliver;
use testkit::doubles::CountingNotifier;

const EXAMPLE: &str = include_str!("../../rules/example.toml");
const BURST: usize = 20;
const LIMIT: usize = 5;
const FINGERPRINT: &str = "fp_card_testing_1";

fn example_rules() -> RuleSet {
    RuleSet::from_toml("rules/example.toml", EXAMPLE).expect("the example file is valid")
}

/// 20 small transactions for one card within 2 minutes, ending a minute ago.
fn burst(run: &str) -> Vec<(String, String)> {
    let start = Utc::now() - chrono::Duration::minutes(3);
    (0..BURST)
        .map(|i| {
            let id = format!("{run}-{i:02}");
            let at = start + chrono::Duration::seconds(6 * i as i64);
            (id.clone(), envelope(&id, at))
        })
        .collect()
}

fn envelope(id: &str, at: DateTime<Utc>) -> String {
    serde_json::json!({
        "version": 1, "shop_id": "shop-a", "accepted_at": Utc::now(), "request_id": format!("req-{id}"),
        "transaction": {
            "transaction_id": id, "amount": "1.00", "currency": "USD", "type": "purchase", "customer_id": "cust-1",
            "payment_fingerprint": FINGERPRINT,
            "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    })
    .to_string()
}

/// The card-testing window's total as the store holds it, read the way the processor reads it.
async fn card_window(store: &dyn Store, rules: &RuleSet, body: &str) -> WindowTotal {
    let envelope: serde_json::Value = serde_json::from_str(body).expect("json");
    let transaction: Transaction =
        serde_json::from_value(envelope["transaction"].clone()).expect("transaction");
    let counting = rules
        .windowed_checks(&transaction, "shop-a", Utc::now())
        .expect("windowed rules apply");
    let card = counting
        .queries()
        .into_iter()
        .find(|query| query.rule == "card_testing")
        .expect("card_testing applies");
    let totals = store
        .window_totals(&ShopId::parse("shop-a").expect("shop"), &[card])
        .await
        .expect("totals");
    totals[0].clone()
}

/// Which transactions alerted for which rule, from the stored records.
async fn stored_alerts(store: &dyn Store, ids: &[String]) -> BTreeMap<String, Vec<String>> {
    let shop = ShopId::parse("shop-a").expect("shop");
    let mut alerts = BTreeMap::new();
    for id in ids {
        let record = store.get(&shop, id).await.expect("get").expect("stored");
        for alert in record.alerts {
            alerts
                .entry(alert.decision.rule)
                .or_insert_with(Vec::new)
                .push(id.clone());
        }
    }
    alerts
}

/// One processor, one transaction at a time: the documented behaviour exactly. The 6th
/// transaction and every one after it in the window alerts (15 of 20), each once, although
/// every message arrives twice in the first batch and once more in a second.
#[tokio::test]
async fn a_card_testing_burst_delivered_twice_fires_on_every_transaction_over_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = testkit::embedded(dir.path(), QueueSettings::default());
    let notifier = Arc::new(CountingNotifier::new(
        ports.notifier.clone(),
        Duration::ZERO,
    ));
    let rules = example_rules();
    let processor = Processor::new(
        ports.queue.clone(),
        ports.store.clone(),
        notifier.clone(),
        rules.clone(),
    )
    .with_concurrency(1);
    let burst = burst("burst");
    let bodies: Vec<String> = burst.iter().map(|(_, body)| body.clone()).collect();
    let twice: Vec<String> = bodies.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
    let report = processor
        .process_batch(deliver(ports.queue.as_ref(), &twice).await)
        .await;
    assert_eq!(report.failed().count(), 0);
    let report = processor
        .process_batch(deliver(ports.queue.as_ref(), &bodies).await)
        .await;
    assert_eq!(report.failed().count(), 0);

    let window = card_window(ports.store.as_ref(), &rules, &bodies[BURST - 1]).await;
    assert_eq!(window.count, BURST as u64, "each transaction counted once");
    let ids: Vec<String> = burst.iter().map(|(id, _)| id.clone()).collect();
    let alerts = stored_alerts(ports.store.as_ref(), &ids).await;
    assert_eq!(alerts.len(), 1, "only card_testing fires: {alerts:?}");
    assert_eq!(alerts["card_testing"], ids[LIMIT..].to_vec());
    assert_eq!(
        notifier.published(),
        (BURST - LIMIT) as u64,
        "each sent once"
    );
    let sixth = ports
        .store
        .get(&ShopId::parse("shop-a").expect("shop"), &ids[LIMIT])
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        sixth.alerts[0].decision.reason,
        "6 transactions for this payment_fingerprint in 10m, limit 5"
    );
    let published = ports
        .notifier
        .published(&ShopId::parse("shop-a").expect("shop"))
        .await
        .expect("published");
    assert!(
        published
            .iter()
            .all(|alert| alert.attributes["AlertType"] == "card_testing"),
        "subscribers can filter on the rule"
    );
}

/// Two processors drain copies of the same burst at once: no count lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processors_count_one_key_exactly_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = testkit::embedded(dir.path(), QueueSettings::default());
    let rules = example_rules();
    let processor = || {
        Processor::new(
            ports.queue.clone(),
            ports.store.clone(),
            ports.notifier.clone(),
            rules.clone(),
        )
        .with_concurrency(8)
    };
    let burst = burst("parallel");
    let bodies: Vec<String> = burst.iter().map(|(_, body)| body.clone()).collect();
    let (first, second) = (
        deliver(ports.queue.as_ref(), &bodies).await,
        deliver(ports.queue.as_ref(), &bodies).await,
    );
    let (a, b) = (processor(), processor());
    let (ra, rb) = tokio::join!(a.process_batch(first), b.process_batch(second));
    // A copy that found the other processor publishing the same alert is handed back, as the
    // queue would redeliver it; by then that alert is sent.
    let handed_back: Vec<ReceivedMessage> = ra
        .failed()
        .chain(rb.failed())
        .map(|(message, _)| message.clone())
        .collect();
    let again = a.process_batch(handed_back).await;
    let still_failing: Vec<String> = again.failed().map(|(_, e)| e.to_string()).collect();
    assert!(still_failing.is_empty(), "{still_failing:?}");
    let window = card_window(ports.store.as_ref(), &rules, &bodies[BURST - 1]).await;
    assert_eq!(window.count, BURST as u64);
    let ids: Vec<String> = burst.iter().map(|(id, _)| id.clone()).collect();
    let fired = stored_alerts(ports.store.as_ref(), &ids).await;
    let fired = fired.get("card_testing").map_or(0, Vec::len);
    assert!(
        (BURST - LIMIT..=BURST).contains(&fired),
        "{fired} transactions alerted"
    );
}

fn poller(env: Vec<(&'static str, String)>) -> tokio::process::Child {
    testkit::poller(env!("CARGO_BIN_EXE_processor"), env)
}

/// On the emulator, three `processor poll`s read the rules from the SSM parameter and drain the
/// burst, each message sent twice: the window holds exactly 20, each alert is published once
/// with the rule as its `AlertType`, and at least the 15 transactions over the limit alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_pollers_on_the_emulator_count_a_burst_sent_twice_exactly_once() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let parameter = format!("/test/{}/alert-rules", resources.aws.table_name);
    aws_sdk_ssm::Client::new(&resources.config)
        .put_parameter()
        .name(&parameter)
        .value(EXAMPLE)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put the rules parameter");
    let burst = burst("aws");
    let bodies: Vec<String> = burst.iter().map(|(_, body)| body.clone()).collect();
    let twice: Vec<String> = bodies.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
    testkit::send_raw(&resources, &twice).await;
    let mut env = resources.env();
    env.push(("RULES_PARAMETER", parameter));
    let _pollers: Vec<_> = (0..3).map(|_| poller(env.clone())).collect();

    let store = resources.ports().store;
    let shop = ShopId::parse("shop-a").expect("shop");
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, _) in &burst {
        while store.get(&shop, id).await.expect("get").is_none() {
            assert!(Instant::now() < deadline, "{id} not stored in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let rules = example_rules();
    let window = card_window(store.as_ref(), &rules, &bodies[BURST - 1]).await;
    assert_eq!(window.count, BURST as u64, "no count lost or doubled");
    let ids: Vec<String> = burst.iter().map(|(id, _)| id.clone()).collect();
    let fired = stored_alerts(store.as_ref(), &ids).await;
    let fired = fired.get("card_testing").cloned().unwrap_or_default();
    assert!(fired.len() >= BURST - LIMIT, "{} alerted", fired.len());
    // The rule set's version: the text's digest, then the parameter's version.
    let alerted = store
        .get(&shop, &fired[0])
        .await
        .expect("get")
        .expect("stored");
    let version = alerted
        .alerts
        .iter()
        .find_map(|alert| alert.decision.rules_version.clone())
        .expect("a rules version");
    assert!(version.ends_with("@1"), "{version}");
    let messages =
        testkit::subscriber_messages(&resources, fired.len() + 1, Duration::from_secs(5)).await;
    let mut published: Vec<String> = messages
        .iter()
        .map(|message| {
            let body: serde_json::Value =
                serde_json::from_str(message.body().unwrap_or_default()).expect("json");
            assert_eq!(body["rule"], "card_testing");
            assert_eq!(
                (&body["action"], &body["decision"]),
                (&serde_json::json!("notify"), &serde_json::json!("notify"))
            );
            assert_eq!(body["rules_version"], serde_json::json!(version));
            body["transaction"]["transaction_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    published.sort();
    assert_eq!(published, fired, "each alert published once");
}

/// The template always names a rules parameter and may set thresholds as well: until the
/// parameter exists, the default rule applies with those thresholds, instead of the processor
/// refusing to start (and every message going to the dead letters an hour later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_apply_while_the_rules_parameter_does_not_exist() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let bodies = [
        testkit::envelope("shop-a", "under", "400.00"),
        testkit::envelope("shop-a", "over", "600.00"),
    ];
    testkit::send_raw(&resources, &bodies).await;
    let mut env = resources.env();
    env.push((
        "RULES_PARAMETER",
        format!("/test/{}/not-yet", resources.aws.table_name),
    ));
    env.push(("ALERT_THRESHOLDS", "USD=500,JPY=150000".to_owned()));
    let _poller = poller(env);
    let store = resources.ports().store;
    let shop = ShopId::parse("shop-a").expect("shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ["under", "over"] {
        while store.get(&shop, id).await.expect("get").is_none() {
            assert!(
                Instant::now() < deadline,
                "{id} not stored: the processor did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ids = ["under".to_owned(), "over".to_owned()];
    let alerted: Vec<String> = stored_alerts(store.as_ref(), &ids)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(
        alerted,
        ["over"],
        "the threshold of 500, not the default 1000"
    );
}

/// A rules file with a mistake stops the processor before it takes a message, saying where
/// and what.
#[tokio::test]
async fn a_broken_rules_file_stops_the_start_with_where_and_what() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"card_testing\"\nkind = \"velocity\"\nkey = \"card\"\nwindow = \"10m\"\nabove = 5\n",
    )
    .expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("poll")
        .env("BACKEND", "embedded")
        .env("DATA_DIR", dir.path().join("data"))
        .env("RULES_FILE", &rules)
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} line 1: rule 1 (\"card_testing\"): `key` \"card\" is not one of customer_id, \
             payment_fingerprint, shop",
            rules.display()
        )),
        "{stderr}"
    );
}

/// `processor rules check` shows a good file's version and rules, and refuses a broken one as
/// the start would.
#[tokio::test]
async fn rules_check_lists_the_example_and_refuses_a_broken_file() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/example.toml");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(["rules", "check", example])
        .output()
        .await
        .expect("run");
    assert!(output.status.success());
    let listed = String::from_utf8_lossy(&output.stdout);
    // The rule set's version first (a digest of the file's text), then one line per rule.
    assert_eq!(listed.lines().count(), 6, "{listed}");
    let version = listed
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("version\t"));
    assert!(
        version.is_some_and(|v| v.len() == 12 && v.chars().all(|c| c.is_ascii_hexdigit())),
        "{listed}"
    );
    assert!(
        listed.contains("card_testing\tvelocity\tcount per payment_fingerprint in 10m above 5")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("rules.toml");
    std::fs::write(
        &broken,
        "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1000.5\n",
    )
    .expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(["rules", "check"])
        .arg(&broken)
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1: rule 1 (\"x\"): `above`: write amounts as strings"),
        "{stderr}"
    );
}
