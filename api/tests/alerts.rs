//! The alert inbox through the router, on both stores: the page walk, filters, reviews with
//! their ETags (conflict, reopen, concurrent reviewers), and tenancy. The same scenario runs on
//! SQLite and on DynamoDB (the emulator), with alerts stored as the processor stores them.

use std::sync::Arc;
use std::time::Duration;

use api::app::router;
use api::auth::{ApiKeys, KeyRing, hash_key};
use api::cursor::CursorKey;
use api::state::{AppState, Timeouts};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use infra::domain::{AlertDecision, Envelope, ShopId, TransactionRecord, parse_transaction};
use infra::ports::{Producer, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const DEMO_KEY: &str = "demo-key";
const OTHER_KEY: &str = "other-key";

fn app(queue: Arc<dyn Producer>, store: Arc<dyn Store>) -> Router {
    let line = |shop: &str, key: &str| format!("{shop}:{}\n", hex::encode(hash_key(key)));
    let keys = ApiKeys::parse(&format!(
        "{}{}",
        line("demo", DEMO_KEY),
        line("other", OTHER_KEY)
    ))
    .expect("keys");
    let timeouts = Timeouts {
        enqueue: Duration::from_secs(1),
        body_read: Duration::from_secs(2),
        health_cache: Duration::ZERO,
    };
    let cursor_key =
        CursorKey::from_setting("a test key of thirty-two bytes or more").expect("key");
    router(AppState::new(
        queue,
        store,
        KeyRing::Fixed(keys),
        cursor_key,
        timeouts,
    ))
}

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Value,
}

async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, etag, body }
}

async fn get(app: &Router, path: &str, key: &str) -> Answer {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .expect("request");
    call(app, request).await
}

async fn review(app: &Router, id: &str, key: &str, if_match: Option<&str>, body: Value) -> Answer {
    let mut request = Request::post(format!("/alerts/{id}/review"))
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(tag) = if_match {
        request = request.header(header::IF_MATCH, tag);
    }
    call(
        app,
        request.body(Body::from(body.to_string())).expect("request"),
    )
    .await
}

fn decision(rule: &str) -> AlertDecision {
    AlertDecision {
        rule: rule.to_owned(),
        reason: format!("{rule} fired"),
        facts: [("threshold".to_owned(), "1000".to_owned())].into(),
        rules_version: None,
        action: Default::default(),
    }
}

/// Stores, as the processor would, `count` transactions of `shop` each raising an amount alert
/// (every third also a velocity alert), raised a minute apart.
async fn seed(store: &dyn Store, shop: &str, count: usize) {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    for i in 0..count {
        let body = json!({"transaction_id": format!("{shop}-{i:03}"), "amount": "2000.00",
                          "timestamp": "2026-11-01T12:00:00Z"});
        let at = start + chrono::Duration::minutes(i as i64);
        let transaction = parse_transaction(body.to_string().as_bytes(), at).expect("valid");
        let envelope = Envelope::new(
            ShopId::parse(shop).expect("shop"),
            transaction,
            at,
            format!("r{i}"),
        );
        let mut decisions = vec![decision("amount_exceeds_threshold")];
        if i % 3 == 0 {
            decisions.push(decision("velocity"));
        }
        let record = TransactionRecord::new(envelope, decisions.into(), at);
        store.put_if_absent(&record).await.expect("stored");
    }
}

/// Every alert of the shop, walking pages of `limit` with `filter`.
async fn walk(app: &Router, key: &str, limit: usize, filter: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/alerts?limit={limit}{filter}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = get(app, &path, key).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(page.body["data"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
    panic!("the walk did not end");
}

async fn inbox_scenario(queue: Arc<dyn Producer>, store: Arc<dyn Store>) {
    seed(store.as_ref(), "demo", 25).await;
    seed(store.as_ref(), "other", 4).await;
    let app = app(queue, store);

    // The walk: every alert once, newest first, only the caller's.
    let all = walk(&app, DEMO_KEY, 7, "").await;
    assert_eq!(all.len(), 25 + 9, "25 amount alerts and 9 velocity alerts");
    let ids: std::collections::HashSet<&str> =
        all.iter().filter_map(|a| a["alert_id"].as_str()).collect();
    assert_eq!(ids.len(), all.len(), "each alert once");
    let raised: Vec<&str> = all.iter().filter_map(|a| a["raised_at"].as_str()).collect();
    assert!(raised.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(all.iter().all(|a| {
        a["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("demo-")
    }));
    assert_eq!(all[0]["review"]["status"], "open");
    assert_eq!(all[0]["publication"]["state"], "pending");

    // Filters.
    let velocity = walk(&app, DEMO_KEY, 4, "&rule=velocity").await;
    assert_eq!(velocity.len(), 9);
    let of_one = walk(&app, DEMO_KEY, 20, "&transaction_id=demo-003").await;
    assert_eq!(of_one.len(), 2);
    let window = walk(
        &app,
        DEMO_KEY,
        20,
        "&from=2026-11-01T12:10:00Z&to=2026-11-01T12:20:00Z",
    )
    .await;
    assert_eq!(
        window.len(),
        10 + 3,
        "minutes 10-19: 10 amount alerts, 3 velocity"
    );

    // One alert: its ETag, then a review walk.
    let id = of_one[0]["alert_id"].as_str().expect("id").to_owned();
    let one = get(&app, &format!("/alerts/{id}"), DEMO_KEY).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.etag.as_deref(), Some("\"0\""));
    let acknowledged = review(
        &app,
        &id,
        DEMO_KEY,
        Some("\"0\""),
        json!({"status": "acknowledged", "note": "looking"}),
    )
    .await;
    assert_eq!(acknowledged.status, StatusCode::OK, "{}", acknowledged.body);
    assert_eq!(acknowledged.etag.as_deref(), Some("\"1\""));
    let no_verdict = review(&app, &id, DEMO_KEY, None, json!({"status": "resolved"})).await;
    assert_eq!(no_verdict.status, StatusCode::BAD_REQUEST);
    let detail = no_verdict.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("verdict"), "names the field: {detail}");
    let verdict_on_open = review(
        &app,
        &id,
        DEMO_KEY,
        None,
        json!({"status": "open", "verdict": "fraud"}),
    )
    .await;
    assert_eq!(verdict_on_open.status, StatusCode::BAD_REQUEST);
    let resolved = review(
        &app,
        &id,
        DEMO_KEY,
        Some("\"1\""),
        json!({"status": "resolved", "verdict": "fraud", "note": "stolen card"}),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["review"]["verdict"], "fraud");
    let record = get(&app, "/transactions/demo-003", DEMO_KEY).await;
    let shown = record.body["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reviewed = shown
        .iter()
        .find(|a| a["rule"] == resolved.body["rule"])
        .expect("the alert");
    assert_eq!(reviewed["review_status"], "resolved", "{}", record.body);
    assert_eq!(reviewed["verdict"], "fraud");

    // A stale If-Match: 412 with the alert as it is now.
    let stale = review(
        &app,
        &id,
        DEMO_KEY,
        Some("\"1\""),
        json!({"status": "resolved", "verdict": "legitimate"}),
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(stale.etag.as_deref(), Some("\"2\""));
    assert_eq!(stale.body["current"]["review"]["verdict"], "fraud");

    // Reopen: the verdict goes, the history stays, with who made each review.
    let reopened = review(
        &app,
        &id,
        DEMO_KEY,
        Some("\"2\""),
        json!({"status": "open", "note": "chargeback"}),
    )
    .await;
    assert_eq!(reopened.status, StatusCode::OK, "{}", reopened.body);
    assert_eq!(reopened.body["review"]["status"], "open");
    assert_eq!(reopened.body["review"]["verdict"], Value::Null);
    let history = reopened.body["review"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 3);
    let key_id = hex::encode(&hash_key(DEMO_KEY)[..6]);
    assert!(
        history.iter().all(|entry| entry["by"] == key_id.as_str()),
        "{history:?}"
    );
    assert!(
        !reopened.body.to_string().contains(DEMO_KEY),
        "never the key"
    );

    // Filters on the review.
    review(
        &app,
        &id,
        DEMO_KEY,
        None,
        json!({"status": "resolved", "verdict": "legitimate"}),
    )
    .await;
    let legitimate = walk(&app, DEMO_KEY, 10, "&status=resolved&verdict=legitimate").await;
    assert_eq!(legitimate.len(), 1);
    assert_eq!(legitimate[0]["alert_id"], id.as_str());

    // Two reviewers on one version: one wins, the other gets 412, no review is lost.
    let version = get(&app, &format!("/alerts/{id}"), DEMO_KEY)
        .await
        .etag
        .expect("etag");
    let (a, b) = tokio::join!(
        review(
            &app,
            &id,
            DEMO_KEY,
            Some(&version),
            json!({"status": "acknowledged", "note": "a"})
        ),
        review(
            &app,
            &id,
            DEMO_KEY,
            Some(&version),
            json!({"status": "acknowledged", "note": "b"})
        ),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    let after = get(&app, &format!("/alerts/{id}"), DEMO_KEY).await;
    assert_eq!(
        after.body["review"]["history"].as_array().map(Vec::len),
        Some(5)
    );

    // Tenancy: another shop's alert does not exist for this key.
    assert_eq!(
        get(&app, &format!("/alerts/{id}"), OTHER_KEY).await.status,
        StatusCode::NOT_FOUND
    );
    let theirs = review(
        &app,
        &id,
        OTHER_KEY,
        None,
        json!({"status": "acknowledged"}),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let others = walk(&app, OTHER_KEY, 100, "").await;
    assert_eq!(others.len(), 4 + 2);
    assert!(others.iter().all(|a| {
        a["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("other-")
    }));

    // Hostile input: a made-up id, bad filters, a transaction list's cursor.
    assert_eq!(
        get(&app, "/alerts/alt_../../x", DEMO_KEY).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = get(
        &app,
        "/alerts?status=closed&verdict=maybe&limit=0&colour=red",
        DEMO_KEY,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error_count"], 4, "{}", bad.body);
    let transactions = get(&app, "/transactions?limit=1", DEMO_KEY).await;
    let cursor = transactions.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let crossed = get(&app, &format!("/alerts?limit=1&cursor={cursor}"), DEMO_KEY).await;
    assert_eq!(crossed.status, StatusCode::BAD_REQUEST, "{}", crossed.body);
    let unknown_field = review(
        &app,
        &id,
        DEMO_KEY,
        None,
        json!({"status": "open", "by": "someone else"}),
    )
    .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_inbox_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = testkit::embedded(dir.path(), Default::default());
    inbox_scenario(backend.queue, backend.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_on_dynamodb() {
    let resources = testkit::resources(testkit::ResourceOptions::default()).await;
    let ports = resources.ports();
    inbox_scenario(ports.queue, ports.store).await;
}
