//! A stand-in for the Lambda Runtime API (the HTTP interface a Lambda function's runtime polls
//! for events), so that a binary can run in Lambda mode on a laptop: it hands out the queued
//! events one by one and records each answer and when it came.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// The function's answer (its `response`, or its `error` document).
    pub body: serde_json::Value,
    pub failed: bool,
    pub answered_at: Instant,
    /// The deadline the invocation was handed (`Lambda-Runtime-Deadline-Ms`).
    pub deadline: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    events: Mutex<VecDeque<serde_json::Value>>,
    answers: Mutex<Vec<Invocation>>,
    first_poll: Mutex<Option<Instant>>,
    answered: Notify,
    /// How long each invocation may run, as the function's `Timeout` would allow.
    timeout: Duration,
    deadlines: Mutex<std::collections::HashMap<String, Instant>>,
}

pub struct RuntimeStub {
    /// `host:port`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    pub started: Instant,
    shared: Arc<Shared>,
}

impl RuntimeStub {
    pub async fn start(events: Vec<serde_json::Value>) -> Self {
        Self::with_timeout(events, Duration::from_secs(30)).await
    }

    /// Hands each invocation a deadline `timeout` after it starts.
    pub async fn with_timeout(events: Vec<serde_json::Value>, timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            events: Mutex::new(events.into()),
            timeout,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            address,
            started: Instant::now(),
            shared,
        }
    }

    /// Environment for a process that should believe it runs in Lambda.
    pub fn env(&self, function_name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "stub".to_owned()),
        ]
    }

    /// Waits until `count` invocations were answered, or fails at `within`.
    pub async fn answers(&self, count: usize, within: Duration) -> Vec<Invocation> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.shared.answered.notified();
            {
                let answers = self.shared.answers.lock().expect("lock");
                if answers.len() >= count {
                    return answers.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the function answered fewer than {count} invocations in time"
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// When the function first asked for an event: its initialisation (cold start) was done.
    pub fn first_poll(&self) -> Option<Instant> {
        *self.shared.first_poll.lock().expect("lock")
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared
        .first_poll
        .lock()
        .expect("lock")
        .get_or_insert_with(Instant::now);
    let event = shared.events.lock().expect("lock").pop_front();
    match event {
        Some(event) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            shared
                .deadlines
                .lock()
                .expect("lock")
                .insert(request_id.clone(), Instant::now() + shared.timeout);
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                + shared.timeout;
            let mut headers = HeaderMap::new();
            let mut set = |name: &'static str, value: String| {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            };
            set("lambda-runtime-aws-request-id", request_id);
            set(
                "lambda-runtime-deadline-ms",
                deadline.as_millis().to_string(),
            );
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:stub".to_owned(),
            );
            set(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
            );
            (StatusCode::OK, headers, event.to_string())
        }
        // No more events: hold the poll open for good, as Lambda does while a function is idle.
        None => std::future::pending().await,
    }
}

fn record(shared: &Shared, request_id: String, body: &Bytes, failed: bool) {
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    let deadline = shared
        .deadlines
        .lock()
        .expect("lock")
        .get(&request_id)
        .copied();
    shared.answers.lock().expect("lock").push(Invocation {
        deadline,
        request_id,
        body,
        failed,
        answered_at: Instant::now(),
    });
    shared.answered.notify_waiters();
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    record(&shared, id, &body, false);
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    record(&shared, id, &body, true);
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    record(&shared, "init".to_owned(), &body, true);
    StatusCode::ACCEPTED
}
