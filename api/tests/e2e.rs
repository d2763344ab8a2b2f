//! End to end: the real `api` binary on a free port with a fresh data directory, driven over
//! HTTP as a shop would drive it. Waits poll with a deadline; nothing sleeps to synchronise.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use infra::adapters::embedded::{QueueSettings, SqliteNotifier, SqliteQueue};
use infra::domain::ShopId;
use infra::ports::{Consumer, OutgoingMessage, Producer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DEV_KEY, ORIGINAL, Server, eventually};
use tokio::process::Command;

fn data_dir(temp: &tempfile::TempDir) -> PathBuf {
    temp.path().join("data")
}

async fn alerts_of(data_dir: &Path, shop: &str) -> Vec<String> {
    // A server starting up may hold the file's write lock while it creates its tables.
    let notifier = eventually("the alerts file opens", || async {
        SqliteNotifier::open(&data_dir.join("alerts.db")).ok()
    })
    .await;
    let shop = ShopId::parse(shop).expect("shop");
    notifier
        .published(&shop)
        .await
        .expect("alerts")
        .into_iter()
        .map(|alert| alert.transaction_id)
        .collect()
}

fn transaction(id: &str, amount: &str) -> String {
    json!({"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z"}).to_string()
}

#[tokio::test]
async fn the_original_test_message_round_trips() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    let response = server.post(DEV_KEY, ORIGINAL).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/transactions/12345");
    let stored = server.stored(DEV_KEY, "12345").await;
    assert_eq!(stored["transaction_id"], "12345");
    assert_eq!(stored["amount"], "100.00");
    assert_eq!(stored["currency"], "USD");
    assert_eq!(stored["type"], "purchase");
    assert_eq!(stored["timestamp"], "2024-08-09T12:34:56Z");
    assert_eq!(stored["shop_id"], "demo");
    assert_eq!(stored["alerts"], json!([]));
}

#[tokio::test]
async fn above_1000_alerts_and_exactly_1000_does_not() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    server.post(DEV_KEY, &transaction("over", "1000.01")).await;
    server.post(DEV_KEY, &transaction("equal", "1000.00")).await;
    // Stored with the alert pending, then sent: wait for the final state.
    let over = eventually("the alert for 1000.01 sent", || async {
        let record = server.stored(DEV_KEY, "over").await;
        (record["alerts"][0]["state"] == "sent").then_some(record)
    })
    .await;
    let equal = server.stored(DEV_KEY, "equal").await;
    assert_eq!(over["alerts"][0]["rule"], "amount_exceeds_threshold");
    assert_eq!(over["alerts"][0]["state"], "sent");
    assert!(over["alerts"][0]["sent_at"].is_string());
    assert_eq!(equal["alerts"], json!([]));
    assert_eq!(alerts_of(&data_dir(&temp), "demo").await, ["over"]);
}

#[tokio::test]
async fn thresholds_are_configurable_per_currency() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[("ALERT_THRESHOLDS", "JPY=150000")]).await;
    let yen = |id: &str, amount: &str| {
        json!({"transaction_id": id, "amount": amount, "currency": "JPY", "timestamp": "2024-08-09T12:34:56Z"}).to_string()
    };
    server.post(DEV_KEY, &yen("yen-under", "150000")).await;
    server.post(DEV_KEY, &yen("yen-over", "150001")).await;
    assert_eq!(
        server.stored(DEV_KEY, "yen-under").await["alerts"],
        json!([])
    );
    assert_eq!(
        server.stored(DEV_KEY, "yen-over").await["alerts"][0]["facts"]["threshold"],
        "150000"
    );
}

#[tokio::test]
async fn the_same_post_twice_gives_one_record_and_one_alert() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    let body = transaction("twice", "5000");
    assert_eq!(
        server.post(DEV_KEY, &body).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        server.post(DEV_KEY, &body).await.status(),
        StatusCode::ACCEPTED
    );
    server.stored(DEV_KEY, "twice").await;
    eventually("the second copy processed as a duplicate", || async {
        (server.metric("transactions_duplicates_total").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(server.metric("transactions_processed_total").await, 1.0);
    assert_eq!(alerts_of(&data_dir(&temp), "demo").await, ["twice"]);
    // One alert in the shop's inbox, which a review then resolves (and the metric counts).
    let inbox = server
        .get_json(format!("{}/alerts", server.base), Some(DEV_KEY))
        .await;
    let listed = inbox["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{inbox}");
    let id = listed[0]["alert_id"].as_str().expect("an id");
    let reviewed = reqwest::Client::new()
        .post(format!("{}/alerts/{id}/review", server.base))
        .bearer_auth(DEV_KEY)
        .json(&json!({"status": "resolved", "verdict": "legitimate"}))
        .send()
        .await
        .expect("review");
    assert_eq!(reviewed.status(), StatusCode::OK);
    assert_eq!(reviewed.headers()["etag"], "\"1\"");
    assert_eq!(
        server
            .metric("alert_reviews_total{verdict=\"legitimate\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn the_same_id_with_another_amount_keeps_the_original_and_counts_a_conflict() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    server.post(DEV_KEY, &transaction("tx", "10.00")).await;
    server.stored(DEV_KEY, "tx").await;
    assert_eq!(
        server
            .post(DEV_KEY, &transaction("tx", "9999.00"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    eventually("a conflict counted", || async {
        (server.metric("transactions_conflicts_total").await == 1.0).then_some(())
    })
    .await;
    let stored = server.stored(DEV_KEY, "tx").await;
    assert_eq!(stored["amount"], "10.00");
    assert_eq!(stored["alerts"], json!([]));
    assert!(alerts_of(&data_dir(&temp), "demo").await.is_empty());
}

/// The queue really delivers every message twice: the API runs without the processor, the
/// test doubles every queued message, then a processor drains them all.
#[tokio::test]
async fn every_message_delivered_twice_gives_one_record_and_one_alert() {
    let temp = tempfile::tempdir().expect("temp");
    let data = data_dir(&temp);
    let api_only = Server::start(&data, &[("EMBEDDED_PROCESSOR", "false")]).await;
    let ids: Vec<String> = (0..30).map(|i| format!("dup-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let amount = if i % 3 == 0 { "1500.00" } else { "15.00" };
        assert_eq!(
            api_only
                .post(DEV_KEY, &transaction(id, amount))
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    api_only.signal("-TERM").await;

    let queue = SqliteQueue::open(&data.join("queue.db"), QueueSettings::default()).expect("queue");
    let queued = queue.receive(100, Duration::ZERO).await.expect("receive");
    assert_eq!(queued.len(), ids.len());
    let copies: Vec<OutgoingMessage> = queued
        .iter()
        .flat_map(|m| [m.body.clone(), m.body.clone()])
        .map(|body| OutgoingMessage {
            body,
            attributes: Default::default(),
        })
        .collect();
    queue.send_batch(copies).await.expect("send copies");
    let receipts: Vec<String> = queued.iter().map(|m| m.receipt.clone()).collect();
    queue.ack(&receipts).await.expect("ack the originals");
    drop(queue);

    let server = Server::start(&data, &[] as &[(&str, &str)]).await;
    for id in &ids {
        server.stored(DEV_KEY, id).await;
    }
    eventually("every second copy seen as a duplicate", || async {
        (server.metric("transactions_duplicates_total").await == ids.len() as f64).then_some(())
    })
    .await;
    assert_eq!(
        server.metric("transactions_processed_total").await,
        ids.len() as f64
    );
    let mut alerted = alerts_of(&data, "demo").await;
    alerted.sort();
    let mut expected: Vec<String> = ids.iter().step_by(3).cloned().collect();
    expected.sort();
    assert_eq!(
        alerted, expected,
        "exactly one alert per high-value transaction"
    );
}

#[tokio::test]
async fn sigkill_after_a_burst_loses_no_accepted_transaction() {
    let temp = tempfile::tempdir().expect("temp");
    let data = data_dir(&temp);
    let settings = [("QUEUE_VISIBILITY_TIMEOUT", "1")];
    let server = Server::start(&data, &settings).await;
    let posts = (0..300).map(|i| {
        let server = &server;
        async move {
            let id = format!("burst-{i}");
            let status = server
                .post(DEV_KEY, &transaction(&id, "42.00"))
                .await
                .status();
            (id, status)
        }
    });
    let results = futures_util::future::join_all(posts).await;
    let accepted: Vec<String> = results
        .into_iter()
        .filter(|(_, status)| *status == StatusCode::ACCEPTED)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(accepted.len(), 300, "all were accepted before the kill");
    server.signal("-KILL").await;

    let restarted = Server::start(&data, &settings).await;
    for id in &accepted {
        let stored = restarted.stored(DEV_KEY, id).await;
        assert_eq!(stored["amount"], "42.00");
    }
}

/// SIGKILL while POSTs are in flight, five times over the same data: every transaction that
/// was answered 202 is stored after the restart, and each alert is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_under_load_lose_no_acknowledged_transaction() {
    const KILLS: usize = 5;
    const POSTS: usize = 200;
    let temp = tempfile::tempdir().expect("temp");
    let data = data_dir(&temp);
    // A kill between an alert's claim and its publish holds the alert until the claim expires:
    // a short claim keeps the test short.
    let settings = [
        ("QUEUE_VISIBILITY_TIMEOUT", "1"),
        ("ALERT_CLAIM_TIMEOUT", "2"),
    ];
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..KILLS {
        let server = Server::start(&data, &settings).await;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let posts = futures_util::stream::iter(0..POSTS)
            .map(|i| {
                let server = &server;
                let accepted = accepted.clone();
                async move {
                    let id = format!("kill-{round}-{i}");
                    let amount = if i % 10 == 0 { "1500.00" } else { "15.00" };
                    let status = server
                        .http
                        .post(format!("{}/transactions", server.base))
                        .bearer_auth(DEV_KEY)
                        .header("content-type", "application/json")
                        .body(transaction(&id, amount))
                        // No answer in time is no 202: the transaction is not counted as
                        // acknowledged (and a request the kill strands cannot hang the test).
                        .timeout(std::time::Duration::from_secs(10))
                        .send()
                        .await
                        .map(|response| response.status());
                    if matches!(status, Ok(StatusCode::ACCEPTED)) {
                        // The kill lands in the middle of the load.
                        if accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
                            == POSTS / 4
                        {
                            server.kill_now();
                        }
                        Some(id)
                    } else {
                        None
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let round_acks: Vec<String> = posts.into_iter().flatten().collect();
        assert!(
            round_acks.len() >= POSTS / 4,
            "round {round}: {}",
            round_acks.len()
        );
        assert!(
            round_acks.len() < POSTS,
            "round {round}: the kill came after the load"
        );
        acknowledged.extend(round_acks);
        drop(server);
    }
    let server = Server::start(&data, &settings).await;
    for id in &acknowledged {
        server.stored(DEV_KEY, id).await;
    }
    // Every tenth post alerts; transactions whose 202 was lost with the kill may alert too.
    let alerting = |id: &&String| {
        id.rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n % 10 == 0)
    };
    let expected_alerts = acknowledged.iter().filter(alerting).count();
    let alerts = eventually("every alert sent", || async {
        let alerts = alerts_of(&data, "demo").await;
        (alerts.len() >= expected_alerts).then_some(alerts)
    })
    .await;
    let unique: std::collections::HashSet<&String> = alerts.iter().collect();
    assert_eq!(unique.len(), alerts.len(), "an alert was published twice");
    println!(
        "RESULT kills={KILLS} acknowledged={} lost=0 alerts={}",
        acknowledged.len(),
        alerts.len()
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    server.post(DEV_KEY, ORIGINAL).await;
    let status = server.signal("-TERM").await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn malformed_bodies_each_get_a_4xx_problem_naming_the_field() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    let ok = r#""transaction_id": "m", "timestamp": "2024-08-09T12:34:56Z""#;
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("".into(), 400, None),
        ("{".into(), 400, None),
        ("null".into(), 400, None),
        ("[]".into(), 400, None),
        ("\"text\"".into(), 400, None),
        ("{\"amount\": 1,}".into(), 400, None),
        ("{\"amount\": 01}".into(), 400, None),
        ("{}".into(), 422, Some("transaction_id")),
        (format!("{{{ok}}}"), 422, Some("amount")),
        (format!("{{{ok}, \"amount\": 0}}"), 422, Some("amount")),
        (format!("{{{ok}, \"amount\": -10}}"), 422, Some("amount")),
        (
            format!("{{{ok}, \"amount\": \"ten\"}}"),
            422,
            Some("amount"),
        ),
        (
            format!("{{{ok}, \"amount\": \"1e3\"}}"),
            422,
            Some("amount"),
        ),
        (format!("{{{ok}, \"amount\": 1.005}}"), 422, Some("amount")),
        (
            format!("{{{ok}, \"amount\": 1000000000.01}}"),
            422,
            Some("amount"),
        ),
        (format!("{{{ok}, \"amount\": true}}"), 422, Some("amount")),
        (
            format!("{{{ok}, \"amount\": 5, \"currency\": \"usd\"}}"),
            422,
            Some("currency"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"currency\": \"XYZ\"}}"),
            422,
            Some("currency"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"type\": \"gift\"}}"),
            422,
            Some("type"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"payment_method\": \"iou\"}}"),
            422,
            Some("payment_method"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"customer_id\": \"\"}}"),
            422,
            Some("customer_id"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"items\": []}}"),
            422,
            Some("items"),
        ),
        (
            format!(
                "{{{ok}, \"amount\": 5, \"items\": [{{\"sku\": \"a\", \"quantity\": 0, \"unit_price\": 5}}]}}"
            ),
            422,
            Some("items[0].quantity"),
        ),
        (
            format!(
                "{{{ok}, \"amount\": 5, \"items\": [{{\"sku\": \"a\", \"quantity\": 1, \"unit_price\": 4}}]}}"
            ),
            422,
            Some("items"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"metadata\": {{\"k\": 1}}}}"),
            422,
            Some("metadata.k"),
        ),
        (
            format!("{{{ok}, \"amount\": 5, \"shop_id\": \"someone\"}}"),
            422,
            Some("shop_id"),
        ),
        (
            r#"{"transaction_id": "a b", "amount": 5, "timestamp": "2024-08-09T12:34:56Z"}"#.into(),
            422,
            Some("transaction_id"),
        ),
        (
            r#"{"transaction_id": -5, "amount": 5, "timestamp": "2024-08-09T12:34:56Z"}"#.into(),
            422,
            Some("transaction_id"),
        ),
        (
            r#"{"transaction_id": "t", "amount": 5, "timestamp": "2024-08-09 12:34:56"}"#.into(),
            422,
            Some("timestamp"),
        ),
        (
            r#"{"transaction_id": "t", "amount": 5, "timestamp": "2999-01-01T00:00:00Z"}"#.into(),
            422,
            Some("timestamp"),
        ),
    ];
    assert!(cases.len() >= 25);
    for (body, status, field) in &cases {
        let response = server.post(DEV_KEY, body).await;
        assert_eq!(response.status().as_u16(), *status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let problem: Value = response.json().await.expect("problem JSON");
        assert_eq!(problem["status"], *status, "{body}");
        if let Some(field) = field {
            let named = problem["errors"]
                .as_array()
                .is_some_and(|errors| errors.iter().any(|error| error["field"] == *field));
            assert!(named, "{body}: {field} not named in {problem}");
        }
    }
    // Nothing broken was queued, and the server is still healthy.
    assert_eq!(server.metric("transactions_accepted_total").await, 0.0);
    assert_eq!(server.health().await, StatusCode::OK);
}

/// `/metrics` sums every shop: it is served on the metrics listener only, never on the port the
/// shops use, where it is a 404 like any unknown path.
#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    assert_eq!(
        server.post(DEV_KEY, ORIGINAL).await.status(),
        StatusCode::ACCEPTED
    );
    let on_api = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
    assert_eq!(on_api.headers()["content-type"], "application/problem+json");
    assert_eq!(server.metric("transactions_accepted_total").await, 1.0);
}

#[tokio::test]
async fn another_shops_key_reads_a_404() {
    let temp = tempfile::tempdir().expect("temp");
    let keys = temp.path().join("keys");
    let line =
        |shop: &str, key: &str| format!("{shop}:{}\n", hex::encode(api::auth::hash_key(key)));
    std::fs::write(
        &keys,
        format!(
            "# two shops\n{}{}",
            line("alpha", "alpha-key"),
            line("beta", "beta-key")
        ),
    )
    .expect("keys");
    let keys_path = keys.to_string_lossy().into_owned();
    let server = Server::start(&data_dir(&temp), &[("API_KEYS_FILE", keys_path.as_str())]).await;
    assert_eq!(
        server.post(DEV_KEY, ORIGINAL).await.status(),
        StatusCode::UNAUTHORIZED,
        "no development key with a keys file"
    );
    assert_eq!(
        server.post("alpha-key", ORIGINAL).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        server.stored("alpha-key", "12345").await["shop_id"],
        "alpha"
    );
    let theirs = server.get("beta-key", "12345").await;
    let missing = server.get("beta-key", "never-sent").await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Beta may use the same id for its own transaction.
    assert_eq!(
        server
            .post("beta-key", &transaction("12345", "7"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(server.stored("beta-key", "12345").await["amount"], "7.00");
    assert_eq!(
        server.stored("alpha-key", "12345").await["amount"],
        "100.00"
    );
}

#[tokio::test]
async fn refuses_to_listen_off_loopback_without_keys() {
    let temp = tempfile::tempdir().expect("temp");
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["--addr", "0.0.0.0:0", "--data-dir"])
        .arg(data_dir(&temp))
        .output()
        .await
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--api-keys-file"), "{stderr}");
}

/// One access log line per request, in JSON with LOG_FORMAT=json: the request id the client
/// saw, the route pattern (not the id), the status, the latency and the client's address.
#[tokio::test]
async fn every_request_leaves_one_access_log_line() {
    let temp = tempfile::tempdir().expect("temp");
    let data = data_dir(&temp);
    let server = Server::start(&data, &[("LOG_FORMAT", "json")]).await;
    let response = server.get(DEV_KEY, "never-sent").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let line = eventually("the access log line", || async {
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|entry| entry["request_id"] == request_id.as_str())
    })
    .await;
    assert_eq!(line["target"], "access");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/transactions/{transaction_id}");
    assert_eq!(line["status"], 404);
    assert_eq!(line["client"], "127.0.0.1");
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let accepted = server.post(DEV_KEY, ORIGINAL).await;
    let header = accepted.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = accepted.json().await.expect("JSON");
    assert_eq!(
        body["request_id"],
        header.as_str(),
        "one id for the request"
    );
}

/// A re-POST of an id with another payload is refused beside the original: GET shows it, the
/// list finds it with `conflicted=true`, and the metric counts it.
#[tokio::test]
async fn a_conflict_is_visible_through_get_and_the_list() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    server.post(DEV_KEY, &transaction("keep-me", "10.00")).await;
    server.post(DEV_KEY, &transaction("plain", "11.00")).await;
    server.stored(DEV_KEY, "keep-me").await;
    let refused = server
        .post(DEV_KEY, &transaction("keep-me", "9999.00"))
        .await;
    assert_eq!(refused.status(), StatusCode::ACCEPTED);
    let refused_request: Value = refused.json().await.expect("JSON");
    let stored = eventually("the conflict recorded", || async {
        let record = server.stored(DEV_KEY, "keep-me").await;
        (record["conflicts"]["count"] == 1).then_some(record)
    })
    .await;
    assert_eq!(stored["amount"], "10.00", "the original is kept");
    assert_eq!(
        stored["conflicts"]["last_request_id"],
        refused_request["request_id"]
    );
    assert!(stored["conflicts"]["last_refused_at"].is_string());
    let listed: Value = server
        .get_json(
            format!("{}/transactions?conflicted=true", server.base),
            Some(DEV_KEY),
        )
        .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["transaction_id"].as_str())
        .collect();
    assert_eq!(ids, ["keep-me"]);
    assert_eq!(server.metric("transactions_conflicts_total").await, 1.0);
}

/// Walking every page through the API while new transactions arrive: each transaction that
/// existed when the walk began is seen exactly once.
#[tokio::test]
async fn walking_the_pages_through_the_api_sees_each_transaction_once() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    let body = |id: &str, minute: usize| {
        json!({"transaction_id": id, "amount": "5.00",
               "timestamp": format!("2024-08-09T{:02}:{:02}:00Z", minute / 60, minute % 60)})
        .to_string()
    };
    let ids: Vec<String> = (0..120).map(|i| format!("w-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        server.post(DEV_KEY, &body(id, i % 90)).await;
    }
    for id in &ids {
        server.stored(DEV_KEY, id).await;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page = 0;
    loop {
        let mut url = format!("{}/transactions?limit=25", server.base);
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let listed: Value = server.get_json(url, Some(DEV_KEY)).await;
        for record in listed["data"].as_array().expect("data") {
            seen.push(record["transaction_id"].as_str().expect("id").to_owned());
        }
        page += 1;
        // Arrivals in the middle of the walk, older and newer than where it is.
        server
            .post(DEV_KEY, &body(&format!("late-{page}"), page * 7))
            .await;
        match listed["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a transaction was listed twice");
    for id in &ids {
        assert!(unique.contains(id), "{id} was skipped");
    }
}

/// `RULES_FILE` with the README's example: a PAN is refused; the sixth payment with one
/// fingerprint, for more than 5,000 USD, raises three alerts, each its own, each sent, all shown
/// by GET; the rules in force are listed in `/metrics`.
#[tokio::test]
async fn rules_from_a_file_raise_several_alerts_on_one_transaction() {
    let temp = tempfile::tempdir().expect("temp");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/example.toml");
    let server = Server::start(&data_dir(&temp), &[("RULES_FILE", rules)]).await;
    let payment = |id: &str, amount: &str, fingerprint: &str| {
        json!({
            "transaction_id": id, "amount": amount, "customer_id": "cust-e2e",
            "payment_fingerprint": fingerprint,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .to_string()
    };
    let refused = server
        .post(DEV_KEY, &payment("pan", "1.00", "4111 1111 1111 1111"))
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "payment_fingerprint");
    assert_eq!(problem["errors"][0]["code"], "card_number");

    for i in 1..=5 {
        let id = format!("small-{i}");
        let response = server.post(DEV_KEY, &payment(&id, "1.00", "fp_e2e")).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        server.stored(DEV_KEY, &id).await;
    }
    server
        .post(DEV_KEY, &payment("sixth", "5000.01", "fp_e2e"))
        .await;
    let sixth = eventually("three alerts sent", || async {
        let record = server.stored(DEV_KEY, "sixth").await;
        let alerts = record["alerts"].as_array()?;
        (alerts.len() == 3 && alerts.iter().all(|a| a["state"] == "sent")).then_some(record)
    })
    .await;
    let rules: Vec<&str> = sixth["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert["rule"].as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "amount_exceeds_threshold",
            "card_testing",
            "customer_daily_spend"
        ]
    );
    assert_eq!(
        sixth["alerts"][1]["reason"],
        "6 transactions for this payment_fingerprint in 10m, limit 5"
    );
    assert_eq!(server.stored(DEV_KEY, "small-5").await["alerts"], json!([]));
    assert_eq!(server.metric("alert_rule{").await, 5.0, "five rules listed");
    // Every alert carries the version of the rule set that raised it, which /metrics shows.
    let versions: std::collections::BTreeSet<&str> = sixth["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| alert["rules_version"].as_str())
        .collect();
    assert_eq!(versions.len(), 1, "{sixth}");
    let version = versions.into_iter().next().expect("a version");
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(&format!("version=\"{version}\"")),
        "{version} not in /metrics"
    );
    assert_eq!(
        server
            .metric("alerts_raised_total{rule=\"card_testing\"}")
            .await,
        1.0
    );
}

/// A supervisor that reads the address line and then closes its end of stdout (a script's
/// `head -1`) must not take the server down: the lines are best effort, serving is not.
#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_server() {
    let temp = tempfile::tempdir().expect("temp");
    let free = |()| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (addr, metrics) = (free(()), free(()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            "--addr",
            &addr.to_string(),
            "--metrics-addr",
            &metrics.to_string(),
        ])
        .arg("--data-dir")
        .arg(data_dir(&temp))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn api");
    drop(child.stdout.take());
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/health");
    eventually("the server answers with its stdout closed", || async {
        let answer = http.get(&health).send().await.ok()?;
        (answer.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert!(child.try_wait().expect("status").is_none(), "still running");
}

/// With the default metrics port held by another process (a second server on the machine),
/// the server still starts, and says where its metrics went.
#[tokio::test]
async fn a_taken_default_metrics_port_does_not_stop_the_start() {
    let _holder = std::net::TcpListener::bind(api::server::DEFAULT_METRICS_ADDR);
    let temp = tempfile::tempdir().expect("temp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir(&temp))
        .env("RUST_LOG", "warn")
        .env_remove("METRICS_ADDR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn api");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut next = async || {
        tokio::time::timeout(support::DEADLINE, lines.next_line())
            .await
            .expect("a line in time")
            .expect("stdout")
            .expect("a line")
    };
    let base = next().await.replace("listening on ", "");
    let metrics = next().await.replace("metrics on ", "");
    assert!(
        !metrics.contains(api::server::DEFAULT_METRICS_ADDR),
        "{metrics}"
    );
    let http = reqwest::Client::new();
    let scraped = http.get(&metrics).send().await.expect("scrape");
    assert_eq!(scraped.status(), StatusCode::OK);
    let health = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
}

/// The probe's case: re-POSTs with other payloads that all send one `X-Request-Id` are each a
/// conflict, because the request id that tells them apart is the API's own.
#[tokio::test]
async fn conflicts_sharing_a_client_request_id_are_each_counted() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&data_dir(&temp), &[] as &[(&str, &str)]).await;
    server
        .post(DEV_KEY, &transaction("shared-id", "10.00"))
        .await;
    server.stored(DEV_KEY, "shared-id").await;
    for amount in ["11.00", "12.00", "13.00"] {
        let answer = server
            .http
            .post(format!("{}/transactions", server.base))
            .bearer_auth(DEV_KEY)
            .header("content-type", "application/json")
            .header("x-request-id", "one-id-for-all")
            .body(transaction("shared-id", amount))
            .send()
            .await
            .expect("POST");
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    eventually("three conflicts counted", || async {
        let record = server.stored(DEV_KEY, "shared-id").await;
        (record["conflicts"]["count"] == 3).then_some(())
    })
    .await;
}
