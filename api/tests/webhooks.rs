//! Webhooks end to end, with the real binary on the embedded store and a receiver on loopback:
//! signed deliveries the receiver verifies, retries after 500s and timeouts, the failure after
//! the last retry, secret rotation, destinations refused by URL and by resolved address, and
//! tenancy.

mod support;

use std::collections::VecDeque;

use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use infra::domain::webhooks::signature_holds;
use reqwest::StatusCode as Status;
use serde_json::{Value, json};
use support::{DEV_KEY, OTHER_KEY, Server, eventually};

/// What the receiver got: each request's signature header and body.
#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(String, Bytes)>>,
    /// How to answer the next requests: a status, and a delay first; then 200.
    script: Mutex<VecDeque<(u16, Duration)>>,
}

struct Receiver {
    url: String,
    received: Arc<Received>,
}

impl Receiver {
    async fn start(script: &[(u16, Duration)]) -> Self {
        let received = Arc::new(Received {
            script: Mutex::new(script.iter().copied().collect()),
            ..Received::default()
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// Each request's signature, raw body (what the signature covers) and parsed event.
    fn requests(&self) -> Vec<(String, Bytes, Value)> {
        let requests = self.received.requests.lock().expect("lock");
        requests
            .iter()
            .map(|(signature, body)| {
                let event = serde_json::from_slice(body).unwrap_or(Value::Null);
                (signature.clone(), body.clone(), event)
            })
            .collect()
    }
}

async fn receive(
    State(received): State<Arc<Received>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("webhook-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, delay) = received
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or((200, Duration::ZERO));
    tokio::time::sleep(delay).await;
    received
        .requests
        .lock()
        .expect("lock")
        .push((signature, body));
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

async fn register(server: &Server, key: &str, url: &str, events: Value) -> reqwest::Response {
    server
        .http
        .post(format!("{}/webhooks", server.base))
        .bearer_auth(key)
        .json(&json!({"url": url, "events": events, "description": "back office"}))
        .send()
        .await
        .expect("POST /webhooks")
}

async fn alert_once(server: &Server, id: &str) {
    let body =
        json!({"transaction_id": id, "amount": "5000.00", "timestamp": "2024-08-09T12:34:56Z"});
    assert_eq!(
        server.post(DEV_KEY, &body.to_string()).await.status(),
        Status::ACCEPTED
    );
}

/// Waits until the receiver got `count` requests.
async fn received(receiver: &Receiver, count: usize) -> Vec<(String, Bytes, Value)> {
    eventually(&format!("{count} deliveries received"), || async {
        let requests = receiver.requests();
        (requests.len() >= count).then_some(requests)
    })
    .await
}

/// The receiver's check, on the raw body as it arrived.
fn verified(signature: &str, secret: &str, body: &[u8]) -> bool {
    let now = chrono::Utc::now().timestamp();
    signature_holds(
        signature,
        secret.as_bytes(),
        body,
        now,
        Duration::from_secs(300),
    )
}

/// The status of a deliveries page that starts after `cursor`.
async fn page_after(server: &Server, webhook_id: &str, cursor: &str) -> Status {
    server
        .http
        .get(format!(
            "{}/webhooks/{webhook_id}/deliveries?cursor={cursor}",
            server.base
        ))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .expect("GET deliveries")
        .status()
}

/// A delivery id of the right shape that no webhook has.
const UNKNOWN_DELIVERY: &str = "dlv_000000000000000000000000";

async fn deliveries(server: &Server, webhook_id: &str) -> Value {
    server
        .get_json(
            format!("{}/webhooks/{webhook_id}/deliveries", server.base),
            Some(DEV_KEY),
        )
        .await
}

#[tokio::test]
async fn alert_events_arrive_signed_and_the_receiver_verifies_them() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[] as &[(&str, &str)]).await;
    let receiver = Receiver::start(&[]).await;
    let created = register(
        &server,
        DEV_KEY,
        &receiver.url,
        json!(["alert.raised", "alert.reviewed"]),
    )
    .await;
    assert_eq!(created.status(), Status::CREATED);
    let created: Value = created.json().await.expect("JSON");
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let webhook_id = created["webhook_id"].as_str().expect("an id").to_owned();

    alert_once(&server, "hooked-1").await;
    let requests = received(&receiver, 1).await;
    let (signature, raw, event) = &requests[0];
    assert_eq!(event["type"], "alert.raised");
    assert_eq!(event["data"]["transaction_id"], "hooked-1");
    assert_eq!(event["data"]["action"], "notify");
    assert_eq!(event["data"]["decision"], "notify");
    assert!(event["id"].as_str().unwrap_or_default().starts_with("evt_"));
    assert!(verified(signature, &secret, raw), "{signature}");
    assert!(!verified(signature, "whsec_not-the-secret", raw));
    assert!(!verified(signature, &secret, b"{}"), "another body");

    // A review is an event too.
    let alert_id = event["data"]["alert_id"]
        .as_str()
        .expect("alert id")
        .to_owned();
    let reviewed = server
        .review(
            DEV_KEY,
            &alert_id,
            &json!({"status": "resolved", "verdict": "fraud"}),
        )
        .await;
    assert_eq!(reviewed.status(), Status::OK);
    let requests = received(&receiver, 2).await;
    assert_eq!(requests[1].2["type"], "alert.reviewed");
    assert_eq!(requests[1].2["data"]["review"]["verdict"], "fraud");

    // Rotation: the next delivery is signed by both secrets.
    let rotated: Value = server
        .http
        .post(format!(
            "{}/webhooks/{webhook_id}/rotate-secret",
            server.base
        ))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("JSON");
    let new_secret = rotated["secret"].as_str().expect("a new secret").to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    alert_once(&server, "hooked-2").await;
    let requests = received(&receiver, 3).await;
    let (signature, raw, _) = &requests[2];
    assert!(
        verified(signature, &secret, raw),
        "the old secret still signs"
    );
    assert!(verified(signature, &new_secret, raw), "the new one too");

    // The list shows no secret; the deliveries show each attempt.
    let listed = server
        .get_json(format!("{}/webhooks", server.base), Some(DEV_KEY))
        .await;
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    let page = deliveries(&server, &webhook_id).await;
    let data = page["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 3, "{page}");
    let last = data[2]["delivery_id"].as_str().expect("an id");
    assert_eq!(page_after(&server, &webhook_id, last).await, Status::OK);
    assert_eq!(
        page_after(&server, &webhook_id, UNKNOWN_DELIVERY).await,
        Status::BAD_REQUEST
    );
    assert!(
        data.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"][0]["status"] == 200)
    );
}

#[tokio::test]
async fn failures_and_timeouts_are_retried_until_delivered_and_the_last_retry_fails_it() {
    let temp = tempfile::tempdir().expect("temp");
    let env = [
        ("WEBHOOK_RETRY_WAITS", "0.2,0.2,0.2"),
        ("WEBHOOK_TIMEOUT", "1"),
    ];
    let server = Server::start(&temp.path().join("data"), &env).await;
    // 500, then no answer in time, then 500, then 200: delivered on the fourth attempt.
    let flaky = Receiver::start(&[
        (500, Duration::ZERO),
        (200, Duration::from_secs(3)),
        (503, Duration::ZERO),
    ])
    .await;
    let created: Value = register(&server, DEV_KEY, &flaky.url, json!(["alert.raised"]))
        .await
        .json()
        .await
        .expect("JSON");
    let flaky_id = created["webhook_id"].as_str().expect("id").to_owned();
    alert_once(&server, "retried").await;
    let delivered = eventually("delivered after retries", || async {
        let page = deliveries(&server, &flaky_id).await;
        (page["data"][0]["state"] == "delivered").then_some(page)
    })
    .await;
    let attempts = delivered["data"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let statuses: Vec<Value> = attempts.iter().map(|a| a["status"].clone()).collect();
    assert_eq!(
        statuses,
        [json!(500), Value::Null, json!(503), json!(200)],
        "{delivered}"
    );
    assert_eq!(attempts[1]["error"], "no answer in time");
    // Every attempt carried the same event.
    let ids: Vec<Value> = flaky
        .requests()
        .iter()
        .map(|(_, _, event)| event["id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");

    // A receiver that always fails: after the last of three waits, the delivery is failed.
    let down = Receiver::start(&[(500, Duration::ZERO); 10]).await;
    let created: Value = register(&server, DEV_KEY, &down.url, json!(["alert.raised"]))
        .await
        .json()
        .await
        .expect("JSON");
    let down_id = created["webhook_id"].as_str().expect("id").to_owned();
    alert_once(&server, "never-delivered").await;
    let failed = eventually("failed after the last retry", || async {
        let page = deliveries(&server, &down_id).await;
        (page["data"][0]["state"] == "failed").then_some(page)
    })
    .await;
    assert_eq!(
        failed["data"][0]["attempts"].as_array().map(Vec::len),
        Some(4)
    );
}

/// A receiver that takes connections and never answers holds a share of the sender, not all
/// of it: another webhook's events all go out while the silent one's first attempts are still
/// waiting (its timeout is a minute, so none of them has ended).
#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_another() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[("WEBHOOK_TIMEOUT", "60")]).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}/hook", silent.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let fast = Receiver::start(&[]).await;
    let silent_id = register(&server, DEV_KEY, &silent_url, json!(["alert.raised"]))
        .await
        .json::<Value>()
        .await
        .expect("JSON")["webhook_id"]
        .as_str()
        .expect("id")
        .to_owned();
    register(&server, DEV_KEY, &fast.url, json!(["alert.raised"])).await;

    for i in 0..20 {
        alert_once(&server, &format!("stalled-{i}")).await;
    }
    received(&fast, 20).await;
    let page = deliveries(&server, &silent_id).await;
    let attempted = page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|delivery| delivery["attempts"] != json!([]))
        .count();
    assert_eq!(
        attempted, 0,
        "no attempt of the silent receiver ended yet: {page}"
    );
}

/// A webhook whose stored row no longer reads (damaged by hand, or by a bug) fails its own
/// deliveries; every other webhook's go on.
#[tokio::test]
async fn one_unreadable_webhook_does_not_stop_the_others() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let server = Server::start(&data, &[] as &[(&str, &str)]).await;
    let broken = Receiver::start(&[]).await;
    let healthy = Receiver::start(&[]).await;
    let broken_id = register(&server, DEV_KEY, &broken.url, json!(["alert.raised"]))
        .await
        .json::<Value>()
        .await
        .expect("JSON")["webhook_id"]
        .as_str()
        .expect("id")
        .to_owned();
    register(&server, DEV_KEY, &healthy.url, json!(["alert.raised"])).await;
    let store = rusqlite::Connection::open(data.join("store.db")).expect("open the store");
    store
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    store
        .execute(
            "UPDATE webhooks SET events = 'not JSON' WHERE webhook_id = ?1",
            [&broken_id],
        )
        .expect("damage the row");

    alert_once(&server, "beside-a-broken-row").await;
    received(&healthy, 1).await;
    assert!(broken.requests().is_empty());
}

#[tokio::test]
async fn destinations_that_could_reach_private_networks_are_refused() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[] as &[(&str, &str)]).await;
    for url in [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https://10.0.0.1/x",
        "https://192.168.1.20/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:10.1.2.3]/",
        "https://user:password@hooks.example.com/",
        "not a url",
    ] {
        let refused = register(&server, DEV_KEY, url, json!(["alert.raised"])).await;
        assert_eq!(refused.status(), Status::UNPROCESSABLE_ENTITY, "{url}");
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {problem}");
    }
    // By resolved address: a name is judged by what it resolves to. Off loopback, localhost is
    // refused although its name is harmless.
    let url = url::Url::parse("https://localhost:9/x").expect("URL");
    let refused = api::webhook_sender::resolve_destination(&url, false).await;
    let reason = refused.expect_err("localhost resolves to loopback");
    assert!(reason.contains("loopback"), "{reason}");
    // The refusal does not say the address: a shop must not map the API's network by name.
    assert!(
        !reason.contains("127.0.0.1") && !reason.contains("::1"),
        "{reason}"
    );
    // Bad registrations otherwise: no events, unknown fields.
    let none = register(&server, DEV_KEY, "http://127.0.0.1:9/x", json!([])).await;
    assert_eq!(none.status(), Status::UNPROCESSABLE_ENTITY);
    let odd = server
        .http
        .post(format!("{}/webhooks", server.base))
        .bearer_auth(DEV_KEY)
        .json(&json!({"url": "http://127.0.0.1:9/x", "events": ["alert.raised"], "secret": "mine"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(odd.status(), Status::BAD_REQUEST);
}

#[tokio::test]
async fn another_shops_webhooks_are_not_there() {
    let temp = tempfile::tempdir().expect("temp");
    let env = [support::two_shops(temp.path())];
    let server = Server::start(&temp.path().join("data"), &env).await;
    let receiver = Receiver::start(&[]).await;
    let created: Value = register(&server, DEV_KEY, &receiver.url, json!(["alert.raised"]))
        .await
        .json()
        .await
        .expect("JSON");
    let id = created["webhook_id"].as_str().expect("id").to_owned();
    let theirs = server
        .get_json(format!("{}/webhooks", server.base), Some(OTHER_KEY))
        .await;
    assert_eq!(theirs["data"], json!([]));
    let url = |path: &str| format!("{}/webhooks/{id}{path}", server.base);
    let status = |response: reqwest::Response| response.status();
    let http = &server.http;
    assert_eq!(
        status(
            http.get(url("/deliveries"))
                .bearer_auth(OTHER_KEY)
                .send()
                .await
                .expect("GET")
        ),
        Status::NOT_FOUND
    );
    assert_eq!(
        status(
            http.post(url("/rotate-secret"))
                .bearer_auth(OTHER_KEY)
                .send()
                .await
                .expect("POST")
        ),
        Status::NOT_FOUND
    );
    assert_eq!(
        status(
            http.delete(url(""))
                .bearer_auth(OTHER_KEY)
                .send()
                .await
                .expect("DELETE")
        ),
        Status::NOT_FOUND
    );
    // Still there for its shop, and removed by it.
    assert_eq!(
        status(
            http.delete(url(""))
                .bearer_auth(DEV_KEY)
                .send()
                .await
                .expect("DELETE")
        ),
        Status::NO_CONTENT
    );
    assert_eq!(
        status(
            http.delete(url(""))
                .bearer_auth(DEV_KEY)
                .send()
                .await
                .expect("DELETE")
        ),
        Status::NOT_FOUND
    );
}

/// The README's example receiver (scripts/webhook_receiver.py) verifies real deliveries, and
/// answers 400 to a body whose signature does not hold.
#[tokio::test]
async fn the_readmes_example_receiver_verifies_deliveries() {
    use tokio::io::AsyncBufReadExt;
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[] as &[(&str, &str)]).await;
    // Registered first for its secret; the receiver then listens where the webhook points.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let created: Value = register(&server, DEV_KEY, &url, json!(["alert.raised"]))
        .await
        .json()
        .await
        .expect("JSON");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/webhook_receiver.py"
    );
    let mut receiver = tokio::process::Command::new("python3")
        .args([script, &port.to_string()])
        .env("WEBHOOK_SECRET", &secret)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").expect("a line");
    assert!(first.starts_with("receiving on"), "{first}");
    alert_once(&server, "readme-receiver").await;
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a delivery in time")
        .expect("read")
        .expect("a line");
    assert!(
        line.starts_with("verified evt_") && line.contains("alert.raised"),
        "{line}"
    );
    let forged = reqwest::Client::new()
        .post(&url)
        .header(
            "webhook-signature",
            format!("t={},v1=00", chrono::Utc::now().timestamp()),
        )
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), Status::BAD_REQUEST);
}

/// SIGKILL of the API while it delivers a burst: after a restart on the same data directory,
/// every event reaches the receiver at least once (a delivery cut mid-attempt is sent again
/// once its lease ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_after_a_sigkill_mid_burst() {
    const EVENTS: usize = 30;
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let env = [("WEBHOOK_TIMEOUT", "1")];
    let server = Server::start(&data, &env).await;
    // A slow receiver, so that the kill falls in the middle of the burst.
    let receiver = Receiver::start(&[(200, Duration::from_millis(150)); EVENTS]).await;
    let created = register(&server, DEV_KEY, &receiver.url, json!(["alert.raised"])).await;
    assert_eq!(created.status(), Status::CREATED);
    for i in 0..EVENTS {
        alert_once(&server, &format!("burst-{i}")).await;
    }
    eventually("the burst under way", || async {
        (receiver.requests().len() >= 3).then_some(())
    })
    .await;
    server.kill_now();
    let delivered_before = receiver.requests().len();
    assert!(delivered_before < EVENTS, "the kill came after the burst");
    let _server = Server::start(&data, &env).await;
    // The deliveries taken when the process died come back when their lease ends (12 s here).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let delivered = || {
        let requests = receiver.requests();
        let ids: std::collections::HashSet<String> = requests
            .iter()
            .filter_map(|(_, _, event)| event["data"]["transaction_id"].as_str().map(str::to_owned))
            .collect();
        ids
    };
    let mut all = delivered();
    while all.len() < EVENTS {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {EVENTS} events delivered after the restart",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        all = delivered();
    }
    assert_eq!(all.len(), EVENTS);
}

/// Not a test: `scripts/bench/webhooks.sh` runs it. Events delivered per second to a local
/// receiver, against the same receiver driven by a plain client sending as many signed POSTs
/// eight at a time (the baseline, in the same run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by scripts/bench/webhooks.sh"]
async fn measure_the_delivery_rate() {
    const EVENTS: usize = 500;
    let receiver = Receiver::start(&[]).await;
    let body = vec![b'x'; 1500];
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    futures_util::stream::iter(0..EVENTS)
        .for_each_concurrent(8, |_| {
            let (client, url, body) = (&client, &receiver.url, body.clone());
            async move {
                client
                    .post(url)
                    .header("webhook-signature", "t=0,v1=00")
                    .body(body)
                    .send()
                    .await
                    .expect("POST");
            }
        })
        .await;
    let baseline = started.elapsed();
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[] as &[(&str, &str)]).await;
    let receiver = Receiver::start(&[]).await;
    register(&server, DEV_KEY, &receiver.url, json!(["alert.raised"])).await;
    let batch: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"transaction_id": format!("rate-{i}"), "amount": "5000.00", "timestamp": "2024-08-09T12:34:56Z"}))
        .collect();
    let started = std::time::Instant::now();
    for chunk in batch.chunks(100) {
        let sent = server
            .post_batch(DEV_KEY, &json!({"transactions": chunk}).to_string())
            .await;
        assert_eq!(sent.status(), Status::ACCEPTED);
    }
    let deadline = started + Duration::from_secs(300);
    while receiver.requests().len() < EVENTS {
        assert!(std::time::Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    println!(
        "RESULT events={EVENTS} baseline_posts_per_second={:.0} deliveries_per_second={:.0} ratio={:.2}",
        EVENTS as f64 / baseline.as_secs_f64(),
        EVENTS as f64 / delivered.as_secs_f64(),
        baseline.as_secs_f64() / delivered.as_secs_f64(),
    );
}

// ------------------------------------------------------------------ on AWS (the emulator)

mod on_aws {
    use std::collections::HashMap;

    use api::webhook_lambda::WebhookFunction;
    use api::webhook_sender::{self, SenderSettings};
    use aws_sdk_dynamodb::types::AttributeValue;
    use infra::adapters::aws::{DynamoWebhooks, SecretsKey, SqsDeliveries};
    use processor::Processor;
    use processor::lambda::handle_sqs_event;
    use processor::retry::RetryPolicy;
    use testkit::{ResourceOptions, Resources};

    use super::*;

    /// The webhooks function over the test's resources, retrying after one second once.
    fn function(resources: &Resources) -> WebhookFunction {
        let key = SecretsKey::from_setting(testkit::WEBHOOK_SECRET_KEY).expect("key");
        let webhooks = Arc::new(DynamoWebhooks::new(
            aws_sdk_dynamodb::Client::new(&resources.config),
            resources.aws.webhooks_table.clone(),
            key,
        ));
        let settings = SenderSettings {
            timeout: Duration::from_secs(5),
            retry_waits: vec![Duration::from_secs(1)],
            loopback_allowed: true,
        };
        WebhookFunction {
            inbox: resources.ports().store,
            registry: webhooks.clone(),
            log: webhooks,
            queue: Arc::new(SqsDeliveries::new(
                aws_sdk_sqs::Client::new(&resources.config),
                resources.aws.webhook_queue_url.clone(),
            )),
            client: webhook_sender::client(&settings),
            settings,
        }
    }

    /// Stores one transaction that raises an alert, through the API and the processor's
    /// Lambda handler; returns the alert's id.
    async fn raise_alert(server: &Server, resources: &Resources, id: &str) -> String {
        alert_once(server, id).await;
        let messages = testkit::receive_all(
            &resources.config,
            &resources.aws.queue_url,
            1,
            Duration::from_secs(20),
        )
        .await;
        let ports = resources.ports();
        let processor = Processor::new(
            ports.queue.clone(),
            ports.store,
            ports.notifier,
            infra::domain::RuleSet::default(),
        );
        let event = serde_json::from_value(testkit::sqs_event(&messages)).expect("SQS event");
        let response = handle_sqs_event(
            &processor,
            ports.queue.as_ref(),
            RetryPolicy::default(),
            event,
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        let alerts = server
            .get_json(
                format!("{}/alerts?transaction_id={id}", server.base),
                Some(DEV_KEY),
            )
            .await;
        alerts["data"][0]["alert_id"]
            .as_str()
            .expect("an alert")
            .to_owned()
    }

    /// An item in DynamoDB's JSON, as a stream record carries it.
    fn image(item: &HashMap<String, AttributeValue>) -> Value {
        item.iter()
            .filter_map(|(name, value)| {
                let typed = match value {
                    AttributeValue::S(text) => json!({"S": text}),
                    AttributeValue::N(number) => json!({"N": number}),
                    _ => return None,
                };
                Some((name.clone(), typed))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    async fn alert_item(resources: &Resources, alert_id: &str) -> HashMap<String, AttributeValue> {
        aws_sdk_dynamodb::Client::new(&resources.config)
            .get_item()
            .table_name(&resources.aws.table_name)
            .key("pk", AttributeValue::S(format!("alert#demo#{alert_id}")))
            .send()
            .await
            .expect("GetItem")
            .item
            .expect("the alert's item")
    }

    /// The stream record of a write to an alert's item.
    fn stream_event(
        name: &str,
        new: &HashMap<String, AttributeValue>,
        old: Option<Value>,
    ) -> Value {
        json!({"Records": [{
            "eventSource": "aws:dynamodb",
            "eventName": name,
            "dynamodb": {
                "Keys": {"pk": image(new)["pk"].clone()},
                "NewImage": image(new),
                "OldImage": old.unwrap_or(Value::Null),
                "SequenceNumber": "100",
            },
        }]})
    }

    async fn queued(resources: &Resources, count: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let messages = testkit::receive_all(
            &resources.config,
            &resources.aws.webhook_queue_url,
            count,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(messages.len(), count, "{messages:?}");
        messages
    }

    fn failures(answer: &Value) -> usize {
        answer["batchItemFailures"].as_array().map_or(0, Vec::len)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhooks_on_dynamodb_are_registered_encrypted_rotated_removed_and_kept_to_their_shop()
    {
        let resources = testkit::resources(ResourceOptions::default()).await;
        let temp = tempfile::tempdir().expect("temp");
        let mut env = resources.api_env();
        env.push(support::two_shops(temp.path()));
        let server = Server::start(&temp.path().join("unused"), &env).await;

        let created = register(
            &server,
            DEV_KEY,
            "http://127.0.0.1:9/hook",
            json!(["alert.raised"]),
        )
        .await;
        assert_eq!(created.status(), Status::CREATED);
        let created: Value = created.json().await.expect("JSON");
        let id = created["webhook_id"].as_str().expect("id").to_owned();
        let secret = created["secret"].as_str().expect("secret").to_owned();

        // At rest the secret is ciphertext, not the secret.
        let item = aws_sdk_dynamodb::Client::new(&resources.config)
            .get_item()
            .table_name(&resources.aws.webhooks_table)
            .key("pk", AttributeValue::S("demo".to_owned()))
            .key("sk", AttributeValue::S(format!("webhook#{id}")))
            .send()
            .await
            .expect("GetItem")
            .item
            .expect("the webhook's item");
        let stored = item["secret"]
            .as_b()
            .expect("a binary secret")
            .as_ref()
            .to_vec();
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));

        let listed = server
            .get_json(format!("{}/webhooks", server.base), Some(DEV_KEY))
            .await;
        assert_eq!(listed["data"][0]["webhook_id"], id.as_str(), "{listed}");
        assert!(!listed.to_string().contains(&secret));
        let theirs = server
            .get_json(format!("{}/webhooks", server.base), Some(OTHER_KEY))
            .await;
        assert_eq!(theirs["data"], json!([]));

        let url = |path: &str| format!("{}/webhooks/{id}{path}", server.base);
        let send = |request: reqwest::RequestBuilder, key: &'static str| async move {
            request.bearer_auth(key).send().await.expect("request")
        };
        let http = &server.http;
        assert_eq!(
            send(http.post(url("/rotate-secret")), OTHER_KEY)
                .await
                .status(),
            Status::NOT_FOUND
        );
        assert_eq!(
            send(http.get(url("/deliveries")), OTHER_KEY).await.status(),
            Status::NOT_FOUND
        );
        assert_eq!(
            send(http.delete(url("")), OTHER_KEY).await.status(),
            Status::NOT_FOUND
        );
        let rotated: Value = send(http.post(url("/rotate-secret")), DEV_KEY)
            .await
            .json()
            .await
            .expect("JSON");
        assert_ne!(rotated["secret"], secret.as_str());
        assert!(
            rotated["previous_secret_expires_at"].is_string(),
            "{rotated}"
        );
        let deliveries = server.get_json(url("/deliveries"), Some(DEV_KEY)).await;
        assert_eq!(deliveries["data"], json!([]));
        // A cursor the webhook never gave is refused, not a walk from the top again.
        assert_eq!(
            page_after(&server, &id, UNKNOWN_DELIVERY).await,
            Status::BAD_REQUEST
        );
        assert_eq!(
            send(http.delete(url("")), DEV_KEY).await.status(),
            Status::NO_CONTENT
        );
        assert_eq!(
            send(http.get(url("/deliveries")), DEV_KEY).await.status(),
            Status::NOT_FOUND
        );
    }

    /// An alert stored on DynamoDB reaches two receivers through the stream and the deliveries
    /// queue, signed: one after a 500 and a retry, the other failed after its last retry. A
    /// stream record seen twice opens nothing new, and a review is an `alert.reviewed` event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alert_on_dynamodb_is_delivered_signed_retried_by_visibility_and_failed_after_the_last_retry()
     {
        let resources = testkit::resources(ResourceOptions::default()).await;
        let temp = tempfile::tempdir().expect("temp");
        let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;
        let flaky = Receiver::start(&[(500, Duration::ZERO)]).await;
        let down = Receiver::start(&[(500, Duration::ZERO), (503, Duration::ZERO)]).await;
        let flaky_hook: Value = register(
            &server,
            DEV_KEY,
            &flaky.url,
            json!(["alert.raised", "alert.reviewed"]),
        )
        .await
        .json()
        .await
        .expect("JSON");
        let down_hook: Value = register(&server, DEV_KEY, &down.url, json!(["alert.raised"]))
            .await
            .json()
            .await
            .expect("JSON");
        let function = function(&resources);

        let alert_id = raise_alert(&server, &resources, "aws-hooked").await;
        let item = alert_item(&resources, &alert_id).await;
        let answer = function
            .handle(stream_event("INSERT", &item, None), None)
            .await;
        assert_eq!(failures(&answer), 0, "{answer}");

        // First attempts: both 500, both handed back with their wait.
        let first = queued(&resources, 2).await;
        let event = serde_json::from_value(testkit::sqs_event(&first)).expect("event");
        let answer = function.handle(event, None).await;
        assert_eq!(failures(&answer), 2, "{answer}");
        // Second attempts, after the one-second wait: one delivered, one out of retries.
        let second = queued(&resources, 2).await;
        let event = serde_json::from_value(testkit::sqs_event(&second)).expect("event");
        let answer = function.handle(event, None).await;
        assert_eq!(failures(&answer), 0, "{answer}");

        let deliveries = |hook: &Value| {
            let id = hook["webhook_id"].as_str().expect("id").to_owned();
            let server = &server;
            async move {
                server
                    .get_json(
                        format!("{}/webhooks/{id}/deliveries", server.base),
                        Some(DEV_KEY),
                    )
                    .await
            }
        };
        let delivered = deliveries(&flaky_hook).await;
        assert_eq!(
            delivered["data"].as_array().map(Vec::len),
            Some(1),
            "{delivered}"
        );
        assert_eq!(delivered["data"][0]["state"], "delivered", "{delivered}");
        let statuses = |page: &Value| -> Vec<Value> {
            page["data"][0]["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|attempt| attempt["status"].clone())
                .collect()
        };
        assert_eq!(statuses(&delivered), [json!(500), json!(200)]);
        let failed = deliveries(&down_hook).await;
        assert_eq!(failed["data"][0]["state"], "failed", "{failed}");
        assert_eq!(statuses(&failed), [json!(500), json!(503)]);

        // The receiver's check holds with the secret it was given, for the same event each time.
        let requests = flaky.requests();
        let secret = flaky_hook["secret"].as_str().expect("secret");
        assert!(
            requests
                .iter()
                .all(|(signature, body, _)| verified(signature, secret, body))
        );
        assert_eq!(requests[0].2["id"], requests[1].2["id"]);
        assert_eq!(requests[1].2["type"], "alert.raised");
        assert_eq!(requests[1].2["data"]["alert_id"], alert_id.as_str());

        // The stream's record again: nothing queued twice, the list as it was.
        let answer = function
            .handle(stream_event("INSERT", &item, None), None)
            .await;
        assert_eq!(failures(&answer), 0, "{answer}");
        let again = aws_sdk_sqs::Client::new(&resources.config)
            .receive_message()
            .queue_url(&resources.aws.webhook_queue_url)
            .wait_time_seconds(2)
            .send()
            .await
            .expect("receive");
        assert!(again.messages().is_empty(), "{again:?}");
        // A duplicate of a message whose delivery ended makes no attempt and changes nothing.
        let event = serde_json::from_value(testkit::sqs_event(&second)).expect("event");
        let answer = function.handle(event, None).await;
        assert_eq!(failures(&answer), 0, "{answer}");
        assert_eq!(flaky.requests().len(), 2);
        assert_eq!(down.requests().len(), 2);
        assert_eq!(deliveries(&flaky_hook).await, delivered);
        assert_eq!(deliveries(&down_hook).await, failed);

        // A review: the item's new version is an `alert.reviewed` event, for the one webhook
        // subscribed to it.
        let review = server
            .http
            .post(format!("{}/alerts/{alert_id}/review", server.base))
            .bearer_auth(DEV_KEY)
            .json(&json!({"status": "acknowledged"}))
            .send()
            .await
            .expect("POST review");
        assert_eq!(review.status(), Status::OK);
        let reviewed = alert_item(&resources, &alert_id).await;
        let answer = function
            .handle(stream_event("MODIFY", &reviewed, Some(image(&item))), None)
            .await;
        assert_eq!(failures(&answer), 0, "{answer}");
        let messages = queued(&resources, 1).await;
        let queued_delivery: Value =
            serde_json::from_str(messages[0].body().unwrap_or_default()).expect("JSON");
        assert_eq!(queued_delivery["event_type"], "alert.reviewed");
        let body: Value =
            serde_json::from_str(queued_delivery["body"].as_str().expect("body")).expect("event");
        assert_eq!(body["data"]["review"]["status"], "acknowledged");
    }

    /// The `webhooks` binary, started as Lambda starts it with the environment the template
    /// gives it (every parameter changed): an alert's stream record becomes a delivery on the
    /// deliveries queue, which needs the table, the webhooks table, the key that opens the
    /// secret and the queue, each as the template names it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_webhooks_function_runs_with_the_templates_environment() {
        let resources = testkit::resources(ResourceOptions::default()).await;
        let temp = tempfile::tempdir().expect("temp");
        let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;
        let created = register(
            &server,
            DEV_KEY,
            "http://127.0.0.1:9/hook",
            json!(["alert.raised"]),
        )
        .await;
        assert_eq!(created.status(), Status::CREATED);
        let alert_id = raise_alert(&server, &resources, "aws-template").await;
        let item = alert_item(&resources, &alert_id).await;

        let parameters = testkit::template::every_parameter_changed(&resources.aws.table_name);
        let stub = testkit::lambda_runtime_stub::RuntimeStub::start(vec![stream_event(
            "INSERT", &item, None,
        )])
        .await;
        let mut child = testkit::template::start_function(
            env!("CARGO_BIN_EXE_webhooks"),
            "WebhooksFunction",
            &parameters,
            &resources,
            &stub,
        );
        let answers = stub.answers(1, Duration::from_secs(30)).await;
        let _ = child.kill().await;
        assert!(!answers[0].failed, "{:?}", answers[0]);
        assert_eq!(failures(&answers[0].body), 0, "{:?}", answers[0].body);
        let messages = queued(&resources, 1).await;
        let delivery: Value =
            serde_json::from_str(messages[0].body().unwrap_or_default()).expect("JSON");
        assert_eq!(delivery["event_type"], "alert.raised");
    }

    /// An invocation with no time left hands its records back instead of being cut off with
    /// work half done: the stream's from the first, the queue's messages each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invocation_out_of_time_hands_its_records_back() {
        let resources = testkit::resources(ResourceOptions::default()).await;
        let function = function(&resources);
        let alert = HashMap::from([(
            "pk".to_owned(),
            AttributeValue::S("alert#demo#alt_0123456789abcdef01234567".to_owned()),
        )]);
        let no_time = Some(tokio::time::Instant::now());
        let answer = function
            .handle(stream_event("INSERT", &alert, None), no_time)
            .await;
        assert_eq!(
            answer["batchItemFailures"][0]["itemIdentifier"], "100",
            "{answer}"
        );
        let message = json!({"Records": [{
            "eventSource": "aws:sqs", "messageId": "m-1", "receiptHandle": "r-1",
            "body": "{}", "attributes": {"ApproximateReceiveCount": "1"},
        }]});
        let answer = function.handle(message, no_time).await;
        assert_eq!(
            answer["batchItemFailures"][0]["itemIdentifier"], "m-1",
            "{answer}"
        );
    }
}
