//! The router, called in-process over the real embedded backend: one test per status code,
//! and the failure paths through test doubles of the ports.

use std::sync::Arc;
use std::time::Duration;

use api::app::router;
use api::auth::{ApiKeys, DEVELOPMENT_KEY, KeyRing};
use api::cursor::CursorKey;
use api::state::{AppState, Timeouts};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use infra::adapters::embedded::QueueSettings;
use infra::domain::{ShopId, TransactionRecord};
use infra::ports::{Consumer, PortError, Producer, Queue, RecordWriter, ShopStore};
use serde_json::{Value, json};
use testkit::EmbeddedPorts;
use testkit::doubles::{FaultyQueue, FaultyStore, StoreFault};
use tower::ServiceExt;

const ORIGINAL: &str =
    r#"{"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}"#;

struct Harness {
    _dir: tempfile::TempDir,
    backend: EmbeddedPorts,
    router: Router,
}

fn state(queue: Arc<dyn Producer>, store: Arc<dyn ShopStore>) -> AppState {
    let other_shop_line = format!("other:{}", hex::encode(api::auth::hash_key("other-key")));
    let demo_line = format!("demo:{}", hex::encode(api::auth::hash_key(DEVELOPMENT_KEY)));
    let keys =
        KeyRing::Fixed(ApiKeys::parse(&format!("{demo_line}\n{other_shop_line}\n")).expect("keys"));
    let timeouts = Timeouts {
        enqueue: Duration::from_millis(300),
        body_read: Duration::from_secs(2),
        health_cache: Duration::ZERO,
    };
    let cursor_key =
        CursorKey::from_setting("a test key of thirty-two bytes or more").expect("key");
    AppState::new(queue, store, keys, cursor_key, timeouts)
}

/// Stores a transaction of shop `demo` as the processor would, without going through the queue.
async fn store_for_demo(h: &Harness, body: &str, request_id: &str) {
    let now = Utc::now();
    let transaction = infra::domain::parse_transaction(body.as_bytes(), now).expect("valid");
    let shop = ShopId::parse("demo").expect("shop");
    let envelope = infra::domain::Envelope::new(shop, transaction, now, request_id.to_owned());
    let record = TransactionRecord::new(envelope, Default::default(), now);
    h.backend.store.put_if_absent(&record).await.expect("put");
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = testkit::embedded(dir.path(), QueueSettings::default());
    let router = router(state(backend.queue.clone(), backend.store.clone()));
    Harness {
        _dir: dir,
        backend,
        router,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

fn get(path: &str, key: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .expect("request")
}

/// A problem document with this status, `type`, `title` and `detail`.
fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(answer.body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(
            answer.body[field].is_string(),
            "problem without {field}: {}",
            answer.text
        );
    }
}

async fn queued_bodies(backend: &EmbeddedPorts) -> Vec<Value> {
    let received = backend
        .queue
        .receive(100, Duration::ZERO)
        .await
        .expect("receive");
    received
        .iter()
        .map(|m| serde_json::from_str(&m.body).expect("json"))
        .collect()
}

#[tokio::test]
async fn accepted_202_means_the_envelope_is_on_the_queue() {
    let h = harness();
    let answer = call(&h.router, post(ORIGINAL)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.headers[header::LOCATION], "/transactions/12345");
    assert_eq!(answer.body["transaction_id"], "12345");
    assert_eq!(answer.body["status"], "accepted");
    let queued = queued_bodies(&h.backend).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["version"], 1);
    assert_eq!(queued[0]["shop_id"], "demo", "the key chooses the shop");
    assert_eq!(queued[0]["request_id"], answer.body["request_id"]);
    assert_eq!(queued[0]["transaction"]["amount"], "100.00");
}

#[tokio::test]
async fn other_json_media_types_are_accepted() {
    let h = harness();
    let request = Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(
            header::CONTENT_TYPE,
            "application/vnd.shop+json; charset=utf-8",
        )
        .body(Body::from(ORIGINAL))
        .expect("request");
    assert_eq!(call(&h.router, request).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn read_200_returns_the_stored_transaction_with_its_processing_facts() {
    let h = harness();
    store_for_demo(&h, ORIGINAL, "r1").await;
    let answer = call(&h.router, get("/transactions/12345", DEVELOPMENT_KEY)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["transaction_id"], "12345");
    assert_eq!(answer.body["amount"], "100.00");
    assert_eq!(answer.body["currency"], "USD");
    assert_eq!(answer.body["alerts"], json!([]));
    assert!(answer.body["accepted_at"].is_string() && answer.body["processed_at"].is_string());
    // Another shop's key sees exactly what a missing id shows.
    let other = call(&h.router, get("/transactions/12345", "other-key")).await;
    let missing = call(&h.router, get("/transactions/nope", DEVELOPMENT_KEY)).await;
    assert_problem(&other, StatusCode::NOT_FOUND);
    assert_problem(&missing, StatusCode::NOT_FOUND);
    assert_eq!(other.body["title"], missing.body["title"]);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let h = harness();
    for body in ["{", "not json", "[1, 2]", "", "{\"transaction_id\": 1,}"] {
        let answer = call(&h.router, post(body)).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_with_www_authenticate() {
    let h = harness();
    let no_key = Request::post("/transactions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(ORIGINAL))
        .expect("request");
    let wrong_key = get("/transactions/12345", "guess");
    let wrong_scheme = Request::get("/transactions/1")
        .header(header::AUTHORIZATION, format!("Basic {DEVELOPMENT_KEY}"))
        .body(Body::empty())
        .expect("request");
    for request in [no_key, wrong_key, wrong_scheme] {
        let answer = call(&h.router, request).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    assert!(queued_bodies(&h.backend).await.is_empty());
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let h = harness();
    assert_problem(
        &call(&h.router, get("/nothing-here", DEVELOPMENT_KEY)).await,
        StatusCode::NOT_FOUND,
    );
    let delete = Request::delete("/transactions")
        .body(Body::empty())
        .expect("request");
    assert_problem(
        &call(&h.router, delete).await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let h = harness();
    let huge = format!(
        r#"{{"transaction_id": "x", "metadata": {{"k": "{}"}}}}"#,
        "v".repeat(70 * 1024)
    );
    assert_problem(
        &call(&h.router, post(huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
}

#[tokio::test]
async fn non_json_content_types_are_415() {
    let h = harness();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = Request::post("/transactions")
            .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"));
        if let Some(value) = content_type {
            request = request.header(header::CONTENT_TYPE, value);
        }
        let answer = call(
            &h.router,
            request.body(Body::from(ORIGINAL)).expect("request"),
        )
        .await;
        assert_problem(&answer, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[tokio::test]
async fn broken_rules_are_422_listing_every_field() {
    let h = harness();
    let body = json!({"transaction_id": "bad id", "amount": "0", "timestamp": "soon", "shop": "x"});
    let answer = call(&h.router, post(body.to_string())).await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|error| error["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["amount", "shop", "timestamp", "transaction_id"]);
    assert!(
        queued_bodies(&h.backend).await.is_empty(),
        "nothing invalid is queued"
    );
}

fn broken_disk() -> PortError {
    PortError::unavailable("queue", "disk I/O error")
}

#[tokio::test]
async fn a_queue_that_fails_or_hangs_is_503_with_retry_after() {
    let h = harness();
    let real = || h.backend.queue.clone() as Arc<dyn Producer>;
    for queue in [
        Arc::new(FaultyQueue::failing(real(), broken_disk())) as Arc<dyn Producer>,
        Arc::new(FaultyQueue::hanging(real())),
    ] {
        let router = router(state(queue, h.backend.store.clone()));
        let answer = call(&router, post(ORIGINAL)).await;
        assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers[header::RETRY_AFTER], "1");
        assert!(
            !answer.text.contains("disk I/O"),
            "internals stay in the logs: {}",
            answer.text
        );
    }
    let router = router(state(
        Arc::new(FaultyQueue::failing(real(), broken_disk())),
        h.backend.store.clone(),
    ));
    let health = call(&router, get("/health", "")).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body, json!({"status": "unavailable"}));
    assert!(
        !health.text.contains("disk"),
        "no detail for anonymous callers: {}",
        health.text
    );
}

#[tokio::test]
async fn a_queue_that_refuses_for_good_is_a_500_without_retry_after() {
    let h = harness();
    let refused = PortError::rejected("queue", "MessageTooLong: arn:aws:sqs:eu-west-1:123:q");
    let queue = FaultyQueue::failing(h.backend.queue.clone(), refused);
    let router = router(state(Arc::new(queue), h.backend.store.clone()));
    let answer = call(&router, post(ORIGINAL)).await;
    assert_problem(&answer, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(answer.headers.get(header::RETRY_AFTER).is_none());
    assert_eq!(
        answer.body["type"],
        "urn:ecommerce-pipeline:problem:refused-by-backend"
    );
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("retrying will not help")),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("arn:aws"), "{}", answer.text);
}

#[tokio::test]
async fn a_store_that_cannot_be_read_is_a_503_naming_the_store() {
    let h = harness();
    let store = FaultyStore::unreachable(h.backend.store.clone());
    let router = router(state(h.backend.queue.clone(), Arc::new(store)));
    let answer = call(&router, get("/transactions/12345", DEVELOPMENT_KEY)).await;
    assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("store") && !detail.contains("queue"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_panic_in_a_handler_is_a_500_problem_not_a_dropped_connection() {
    let h = harness();
    let store = FaultyStore {
        inner: h.backend.store.clone(),
        fault: StoreFault::PanicOnRead,
    };
    let router = router(state(h.backend.queue.clone(), Arc::new(store)));
    let answer = call(&router, get("/transactions/1", DEVELOPMENT_KEY)).await;
    assert_problem(&answer, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !answer.text.contains("a bug in a handler"),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn health_metrics_and_docs_answer_without_a_key() {
    let h = harness();
    let metrics_router = api::app::metrics_router(infra::telemetry::prometheus());
    let health = call(&h.router, get("/health", "")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.body,
        json!({"status": "ok"}),
        "up or down and nothing more"
    );
    call(&h.router, post(ORIGINAL)).await;
    // Metrics are on their own listener: the API's port does not serve them.
    let hidden = call(&h.router, get("/metrics", "")).await;
    assert_problem(&hidden, StatusCode::NOT_FOUND);
    let metrics = call(&metrics_router, get("/metrics", "")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains("transactions_accepted_total"),
        "{}",
        metrics.text
    );
    let spec = call(&h.router, get("/openapi.json", "")).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["components"]["securitySchemes"]["api_key"]["scheme"] == "bearer");
    let docs = call(&h.router, get("/docs/", "")).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text.contains("swagger"), "Swagger UI is served");
}

/// A queue that hangs: the first sends each wait out the enqueue timeout; once the breaker has
/// seen enough of them, later sends fail at once, saying how long to wait, and health says the
/// node is not ready.
#[tokio::test]
async fn a_hanging_queue_fails_fast_after_a_few_timeouts() {
    let h = harness();
    let router = router(state(
        Arc::new(FaultyQueue::hanging(h.backend.queue.clone())),
        h.backend.store.clone(),
    ));
    for _ in 0..infra::adapters::breaker::FAILURES_TO_OPEN {
        let started = std::time::Instant::now();
        assert_problem(
            &call(&router, post(ORIGINAL)).await,
            StatusCode::SERVICE_UNAVAILABLE,
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
    let started = std::time::Instant::now();
    let fast = call(&router, post(ORIGINAL)).await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert_problem(&fast, StatusCode::SERVICE_UNAVAILABLE);
    let wait: u64 = fast.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&wait), "{wait}");
    let health = call(&router, get("/health", "")).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
}

fn list(query: &str, key: &str) -> Request<Body> {
    get(&format!("/transactions?{query}"), key)
}

/// Each bad parameter gets a 400 problem naming it; none is a 500.
#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let h = harness();
    let cases = [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("from=2024-08-10T00:00:00Z&to=2024-08-09T00:00:00Z", "from"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
        ("type=gift", "type"),
        ("currency=usd", "currency"),
        ("currency=JPY&min_amount=10.5", "min_amount"),
        ("currency=USD&max_amount=1.005", "max_amount"),
        ("min_amount=-1", "min_amount"),
        ("min_amount=1e3", "min_amount"),
        ("min_amount=50&max_amount=10", "min_amount"),
        ("alert=maybe", "alert"),
        ("conflicted=yes", "conflicted"),
        ("limit=5&limit=6", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("customer_id=", "customer_id"),
        ("payment_fingerprint=", "payment_fingerprint"),
        ("payment_fingerprint=fp%20x", "payment_fingerprint"),
        // A card number is never a filter: it would sit in URLs and logs.
        (
            "payment_fingerprint=4111111111111111",
            "payment_fingerprint",
        ),
    ];
    for (query, parameter) in cases {
        let answer = call(&h.router, list(query, DEVELOPMENT_KEY)).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
        let named = answer.body["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["field"] == parameter));
        assert!(named, "{query}: {parameter} not named in {}", answer.text);
    }
}

/// A cursor is bound to the shop and the filters it was made with.
#[tokio::test]
async fn a_cursor_works_only_for_its_shop_and_its_filters() {
    let h = harness();
    for i in 0..5 {
        let body = format!(
            r#"{{"transaction_id": "c-{i}", "amount": "{}.00", "timestamp": "2024-08-09T12:34:5{i}Z"}}"#,
            10 + i
        );
        store_for_demo(&h, &body, &format!("r{i}")).await;
    }
    let first = call(&h.router, list("limit=2&currency=USD", DEVELOPMENT_KEY)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        first.body["data"][0]["transaction_id"], "c-4",
        "newest first"
    );
    assert_eq!(first.body["has_more"], true);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let next = call(
        &h.router,
        list(
            &format!("limit=2&currency=USD&cursor={cursor}"),
            DEVELOPMENT_KEY,
        ),
    )
    .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    assert_eq!(next.body["data"][0]["transaction_id"], "c-2");
    for (query, key) in [
        (format!("limit=2&currency=USD&cursor={cursor}"), "other-key"),
        (
            format!("limit=2&currency=EUR&cursor={cursor}"),
            DEVELOPMENT_KEY,
        ),
        (format!("limit=2&cursor={cursor}"), DEVELOPMENT_KEY),
        (
            format!("limit=2&currency=USD&payment_fingerprint=fp_a&cursor={cursor}"),
            DEVELOPMENT_KEY,
        ),
    ] {
        let answer = call(&h.router, list(&query, key)).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.body["errors"][0]["field"], "cursor",
            "{}",
            answer.text
        );
    }
    // Another shop sees none of these.
    let theirs = call(&h.router, list("", "other-key")).await;
    assert_eq!(theirs.body["data"], json!([]));
    assert_eq!(theirs.body["has_more"], false);
}

/// A page of the heaviest records a shop can send stays under the page's byte limit (Lambda
/// answers at most 6 MB): it is cut short with a cursor after its last record, and the walk
/// still visits each record once.
#[tokio::test]
async fn a_page_of_heavy_records_is_cut_short_and_the_walk_misses_none() {
    let h = harness();
    let wide = "\u{1F600}";
    for i in 0..100 {
        let items: Vec<Value> = (0..100)
            .map(|n| json!({"sku": format!("{n:02}{}", wide.repeat(62)), "quantity": 1, "unit_price": "1"}))
            .collect();
        let metadata: serde_json::Map<String, Value> = (0..20)
            .map(|n| (format!("k{n}"), Value::from(wide.repeat(256))))
            .collect();
        let body = json!({
            "transaction_id": format!("heavy-{i:03}"), "amount": "100",
            "timestamp": format!("2024-08-09T12:{:02}:{:02}Z", i / 60, i % 60),
            "items": items, "metadata": metadata,
        });
        store_for_demo(&h, &body.to_string(), &format!("r{i}")).await;
    }
    let mut seen = Vec::new();
    let mut query = "limit=100".to_owned();
    loop {
        let page = call(&h.router, list(&query, DEVELOPMENT_KEY)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(
            page.text.len() <= api::limits::MAX_PAGE_BYTES + 64 * 1024,
            "{} bytes",
            page.text.len()
        );
        for record in page.body["data"].as_array().expect("data") {
            seen.push(record["transaction_id"].as_str().expect("id").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=100&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 100, "each record once");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 100, "no record twice");
}

/// A queue that takes its time and fails every entry for a transient reason: the batch's
/// retries share one deadline (`ENQUEUE_TIMEOUT`, 300 ms here), so the answer is a 503 with
/// `Retry-After` before a third attempt would start, not three full attempts later.
#[tokio::test]
async fn a_batch_retries_within_one_deadline() {
    let h = harness();
    let slow = Arc::new(FaultyQueue::new(
        h.backend.queue.clone(),
        testkit::doubles::QueueFault::EntriesFailAfter(Duration::from_millis(250)),
    ));
    let router = router(state(slow.clone(), h.backend.store.clone()));
    let answer = call(&router, post_batch(batch(vec![item("slow-1", "5")]))).await;
    assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    let attempts = slow.batch_sends.load(std::sync::atomic::Ordering::SeqCst);
    assert!(attempts < 3, "{attempts} attempts for one deadline");
}

fn assert_cursor_refused(answer: &Answer) {
    assert_problem(answer, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.body["errors"][0]["field"], "cursor",
        "{}",
        answer.text
    );
}

/// A cursor is signed: one written by hand (the unsigned shape this API once gave, pointing
/// at a position of the caller's choosing), or a genuine one with a byte changed, is refused.
#[tokio::test]
async fn a_forged_or_altered_cursor_is_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};

    let h = harness();
    let filters = serde_json::to_string(&infra::domain::ListFilters::default()).expect("json");
    let digest = hex::encode(&Sha256::digest(filters.as_bytes())[..8]);
    let forged = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"v":1,"shop":"demo","filters":"{digest}","micros":0,"id":"any"}}"#
    ));
    let answer = call(
        &h.router,
        list(&format!("cursor={forged}"), DEVELOPMENT_KEY),
    )
    .await;
    assert_cursor_refused(&answer);

    for i in 0..3 {
        let body = format!(
            r#"{{"transaction_id": "f-{i}", "amount": 5, "timestamp": "2024-08-09T12:34:5{i}Z"}}"#
        );
        store_for_demo(&h, &body, &format!("r{i}")).await;
    }
    let first = call(&h.router, list("limit=1", DEVELOPMENT_KEY)).await;
    let genuine = first.body["next_cursor"].as_str().expect("a cursor");
    let mut bytes = URL_SAFE_NO_PAD.decode(genuine).expect("base64url");
    let micros = bytes
        .windows(9)
        .position(|w| w == b"\"micros\":")
        .expect("micros")
        + 9;
    bytes[micros] = if bytes[micros] == b'9' { b'8' } else { b'9' };
    let altered = URL_SAFE_NO_PAD.encode(&bytes);
    let answer = call(
        &h.router,
        list(&format!("limit=1&cursor={altered}"), DEVELOPMENT_KEY),
    )
    .await;
    assert_cursor_refused(&answer);
}

fn post_batch(body: impl Into<Body>) -> Request<Body> {
    Request::post("/transactions/batch")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

fn item(id: &str, amount: &str) -> Value {
    json!({"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z"})
}

fn batch(items: Vec<Value>) -> String {
    json!({ "transactions": items }).to_string()
}

#[tokio::test]
async fn a_batch_of_valid_transactions_is_202_and_every_item_is_on_the_queue() {
    let h = harness();
    let answer = call(
        &h.router,
        post_batch(batch(
            (0..25).map(|i| item(&format!("b-{i}"), "5.00")).collect(),
        )),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.body["accepted"], 25);
    assert_eq!(answer.body["rejected"], 0);
    assert_eq!(answer.body["results"][3]["status"], "accepted");
    assert_eq!(answer.body["results"][3]["transaction_id"], "b-3");
    let queued = queued_bodies(&h.backend).await;
    assert_eq!(queued.len(), 25);
    let request_id = answer.body["request_id"].as_str().expect("request id");
    assert!(
        queued
            .iter()
            .any(|envelope| envelope["request_id"] == format!("{request_id}#3"))
    );
}

#[tokio::test]
async fn a_mixed_batch_is_207_listing_each_rejected_item_with_its_errors() {
    let h = harness();
    let items = vec![
        item("ok-1", "5.00"),
        item("bad id", "-5"),
        json!("not an object"),
        item("ok-2", "7.00"),
    ];
    let answer = call(&h.router, post_batch(batch(items))).await;
    assert_eq!(answer.status, StatusCode::MULTI_STATUS, "{}", answer.text);
    assert_eq!(answer.body["accepted"], 2);
    assert_eq!(answer.body["rejected"], 2);
    let second = &answer.body["results"][1];
    assert_eq!(second["status"], "rejected");
    assert!(
        second["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "amount"))
    );
    assert_eq!(answer.body["results"][2]["status"], "rejected");
    assert_eq!(
        queued_bodies(&h.backend).await.len(),
        2,
        "only the accepted are queued"
    );
}

#[tokio::test]
async fn a_batch_with_nothing_valid_is_a_422_problem_listing_every_item() {
    let h = harness();
    let answer = call(
        &h.router,
        post_batch(batch(vec![item("x", "0"), item("y", "abc")])),
    )
    .await;
    assert_problem(&answer, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body["results"].as_array().map(Vec::len), Some(2));
    assert!(queued_bodies(&h.backend).await.is_empty());
    let empty = call(&h.router, post_batch(batch(Vec::new()))).await;
    assert_problem(&empty, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(empty.body["errors"][0]["field"], "transactions");
}

#[tokio::test]
async fn batches_over_the_limits_are_413_naming_the_limit_and_other_shapes_400() {
    let h = harness();
    let too_many = call(
        &h.router,
        post_batch(batch(
            (0..1001).map(|i| item(&format!("m-{i}"), "1")).collect(),
        )),
    )
    .await;
    assert_problem(&too_many, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        too_many.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1000")),
        "{}",
        too_many.text
    );
    let huge = format!(
        r#"{{"transactions": [{{"transaction_id": "h", "metadata": {{"k": "{}"}}}}]}}"#,
        "v".repeat(1100 * 1024)
    );
    let too_big = call(&h.router, post_batch(huge)).await;
    assert_problem(&too_big, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        too_big.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1048576")),
        "{}",
        too_big.text
    );
    for shape in [
        r#"[]"#,
        r#"{"transactions": 5}"#,
        r#"{"items": []}"#,
        r#"{"transactions": [], "x": 1}"#,
        "{",
    ] {
        assert_problem(
            &call(&h.router, post_batch(shape)).await,
            StatusCode::BAD_REQUEST,
        );
    }
    assert!(queued_bodies(&h.backend).await.is_empty());
}

#[tokio::test]
async fn a_repeated_id_in_one_batch_is_accepted_once_or_refused_as_a_conflict() {
    let h = harness();
    let items = vec![
        item("same", "5.00"),
        item("same", "5"),
        item("same", "6.00"),
    ];
    let answer = call(&h.router, post_batch(batch(items))).await;
    assert_eq!(answer.status, StatusCode::MULTI_STATUS, "{}", answer.text);
    assert_eq!(answer.body["results"][1]["status"], "accepted");
    assert_eq!(answer.body["results"][1]["duplicate_of"], 0);
    assert_eq!(answer.body["results"][2]["status"], "rejected");
    assert_eq!(answer.body["results"][2]["errors"][0]["code"], "conflict");
    assert_eq!(
        queued_bodies(&h.backend).await.len(),
        1,
        "the same payload is queued once"
    );
}

#[tokio::test]
async fn a_batch_the_queue_cannot_take_is_503_with_nothing_accepted() {
    let h = harness();
    let queue = FaultyQueue::failing(h.backend.queue.clone(), broken_disk());
    let router = router(state(Arc::new(queue), h.backend.store.clone()));
    let answer = call(
        &router,
        post_batch(batch(vec![item("q-1", "5"), item("q-2", "6")])),
    )
    .await;
    assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers.get(header::RETRY_AFTER).is_some());
    assert!(answer.body.get("accepted").is_none(), "{}", answer.text);
    assert!(queued_bodies(&h.backend).await.is_empty());
}

async fn sqs_stand_in_queue() -> (testkit::sqs_stand_in::SqsStandIn, Arc<dyn Queue>) {
    let stand_in = testkit::sqs_stand_in::SqsStandIn::start().await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&stand_in.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "t", "t", None, None, "test",
        ))
        .load()
        .await;
    let queue = infra::adapters::aws::SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{}/123456789012/q", stand_in.endpoint),
        None,
    );
    (stand_in, Arc::new(queue))
}

/// On SQS, entries of a batch fail on their own: a transient failure is retried and then
/// accepted; the sender's fault rejects that item alone (207); an entry that keeps failing
/// makes the whole request a 503.
#[tokio::test]
async fn partial_sqs_batch_failures_are_retried_rejected_or_a_503() {
    let h = harness();
    let (_stand_in, queue) = sqs_stand_in_queue().await;
    let router = router(state(queue, h.backend.store.clone()));
    let retried = call(
        &router,
        post_batch(batch(vec![item("fine-1", "5"), item("fail-once-2", "6")])),
    )
    .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.text);
    assert_eq!(retried.body["accepted"], 2);
    let refused = call(
        &router,
        post_batch(batch(vec![item("fine-3", "5"), item("refuse-4", "6")])),
    )
    .await;
    assert_eq!(refused.status, StatusCode::MULTI_STATUS, "{}", refused.text);
    assert_eq!(
        refused.body["results"][1]["errors"][0]["code"],
        "refused_by_queue"
    );
    let failing = call(
        &router,
        post_batch(batch(vec![item("fine-5", "5"), item("fail-always-6", "6")])),
    )
    .await;
    assert_problem(&failing, StatusCode::SERVICE_UNAVAILABLE);
    assert!(failing.body.get("accepted").is_none());
}

// What a hostile probe found (issue 17): each test below failed on the code before its fix.

/// Amount filters are read exactly, as amounts are: a value a decimal cannot hold without
/// rounding is refused, not rounded to a neighbour that then matches.
#[tokio::test]
async fn amount_filters_that_would_round_are_refused() {
    let h = harness();
    let fifty_one_places = format!("0.{}1", "0".repeat(50));
    for query in [
        "max_amount=0.99999999999999999999999999999".to_owned(),
        format!("min_amount={fifty_one_places}"),
        "min_amount=1.00000000000000000000000000001".to_owned(),
    ] {
        let answer = call(&h.router, list(&query, DEVELOPMENT_KEY)).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
        let name = query.split('=').next().unwrap_or_default();
        assert_eq!(answer.body["errors"][0]["field"], name, "{}", answer.text);
    }
    // Trailing zeros carry no value, here as in a transaction.
    let plain = call(
        &h.router,
        list("currency=USD&max_amount=1.5000", DEVELOPMENT_KEY),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
}

/// A list error names at most 20 problems, however many parameters were sent, and says how
/// many there were: its size does not grow with the request.
#[tokio::test]
async fn list_errors_are_bounded() {
    let h = harness();
    let query: Vec<String> = (0..8_000).map(|i| format!("p{i}=1")).collect();
    let answer = call(&h.router, list(&query.join("&"), DEVELOPMENT_KEY)).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["errors"].as_array().map(Vec::len), Some(20));
    assert_eq!(answer.body["error_count"], 8_000);
    assert!(answer.text.len() < 8 * 1024, "{} bytes", answer.text.len());
    let repeated = vec!["limit=1"; 8_000].join("&");
    let answer = call(&h.router, list(&repeated, DEVELOPMENT_KEY)).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST);
    assert!(answer.text.len() < 8 * 1024, "{} bytes", answer.text.len());
    let long_name = format!("{}=1", "n".repeat(4_000));
    let answer = call(&h.router, list(&long_name, DEVELOPMENT_KEY)).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST);
    assert!(answer.text.len() < 2 * 1024, "{} bytes", answer.text.len());
}

/// Two Authorization headers are refused: a proxy that reads the last one would see another
/// shop than the one the API stores under.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let h = harness();
    for path in ["/transactions", "/transactions/batch"] {
        let body = if path.ends_with("batch") {
            batch(vec![item("two-keys", "5")])
        } else {
            ORIGINAL.to_owned()
        };
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
            .header(header::AUTHORIZATION, "Bearer other-key")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        let answer = call(&h.router, request).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
        assert!(answer.text.contains("Authorization"), "{}", answer.text);
    }
    assert!(queued_bodies(&h.backend).await.is_empty());
}

/// A body with a Content-Encoding is refused with 415 (RFC 9110 §15.5.16), not read as if it
/// were plain.
#[tokio::test]
async fn an_encoded_body_is_415() {
    let h = harness();
    for (path, body) in [
        ("/transactions", ORIGINAL.to_owned()),
        ("/transactions/batch", batch(vec![item("gz-1", "5")])),
    ] {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from(body))
            .expect("request");
        let answer = call(&h.router, request).await;
        assert_problem(&answer, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    // `identity` means no encoding at all.
    let identity = Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "identity")
        .body(Body::from(ORIGINAL))
        .expect("request");
    assert_eq!(call(&h.router, identity).await.status, StatusCode::ACCEPTED);
    assert_eq!(queued_bodies(&h.backend).await.len(), 1);
}

/// Errors the router makes itself (a path that is not UTF-8, a page under /docs that does not
/// exist) are problem documents too.
#[tokio::test]
async fn router_errors_are_problem_documents() {
    let h = harness();
    for (path, status) in [
        ("/transactions/%ff", StatusCode::BAD_REQUEST),
        ("/docs/x", StatusCode::NOT_FOUND),
        ("/docs/%ff", StatusCode::BAD_REQUEST),
    ] {
        let answer = call(&h.router, get(path, DEVELOPMENT_KEY)).await;
        assert_problem(&answer, status);
    }
    // The documentation itself is still served as it is.
    let docs = call(&h.router, get("/docs/", "")).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
}

/// The request id is the API's own, whatever the client sends: it is bounded, and it cannot
/// make two different requests look like one.
#[tokio::test]
async fn the_request_id_is_the_apis_own() {
    let h = harness();
    let huge = "r".repeat(15_000);
    let request = Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", huge.as_str())
        .body(Body::from(ORIGINAL))
        .expect("request");
    let answer = call(&h.router, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let echoed = answer.headers["x-request-id"].to_str().expect("ascii");
    assert!(echoed.len() <= 64, "{} bytes", echoed.len());
    assert_eq!(answer.body["request_id"], echoed);
    let queued = queued_bodies(&h.backend).await;
    assert!(
        queued[0]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() <= 64)
    );
    let again = Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "shared")
        .body(Body::from(ORIGINAL))
        .expect("request");
    let first = call(&h.router, again).await;
    let repeat = Request::post("/transactions")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "shared")
        .body(Body::from(ORIGINAL))
        .expect("request");
    let second = call(&h.router, repeat).await;
    assert_ne!(first.body["request_id"], second.body["request_id"]);
}

/// Rules over 64 KiB are a 413 naming the limit, before anything is replayed (in-process: over
/// a socket the server answers from Content-Length and closes, and the client may see the
/// close before the answer).
#[tokio::test]
async fn backtest_rules_over_64_kib_are_413() {
    let h = harness();
    let request = Request::post("/rules/backtest")
        .header(header::AUTHORIZATION, format!("Bearer {DEVELOPMENT_KEY}"))
        .header(header::CONTENT_TYPE, "application/toml")
        .body(Body::from("#".repeat(64 * 1024 + 1)))
        .expect("request");
    let too_big = call(&h.router, request).await;
    assert_problem(&too_big, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(too_big.text.contains("65536"), "{}", too_big.text);
}
