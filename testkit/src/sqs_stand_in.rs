//! A stand-in for SQS's `SendMessageBatch`, for the one thing moto cannot do: fail some entries
//! of a batch and not others. It speaks SQS's JSON protocol over HTTP, so the real SDK and the
//! real adapter run against it. An entry whose body contains `fail-once` fails transiently the
//! first time it is seen, `fail-always` every time, and `refuse` fails as the sender's fault.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    bodies: Mutex<HashSet<String>>,
    batches: Mutex<Vec<usize>>,
    /// How long each call takes to answer, as a real SQS's round trip would.
    latency: Duration,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

pub struct SqsStandIn {
    /// The endpoint URL to point an SQS client at.
    pub endpoint: String,
    seen: Arc<Seen>,
}

impl SqsStandIn {
    pub async fn start() -> Self {
        Self::with_latency(Duration::ZERO).await
    }

    /// Answers each call after `latency`.
    pub async fn with_latency(latency: Duration) -> Self {
        let seen = Arc::new(Seen {
            latency,
            ..Seen::default()
        });
        let app = Router::new()
            .route("/", post(answer))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, seen }
    }

    /// The most calls it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.seen.most_in_flight.load(Ordering::SeqCst)
    }

    /// The sizes of the batches it was sent, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.seen.batches.lock().expect("lock").clone()
    }
}

async fn answer(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if target != "AmazonSQS.SendMessageBatch" {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            json!({"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": target})
                .to_string(),
        );
    }
    let entries = request["Entries"].as_array().cloned().unwrap_or_default();
    seen.batches.lock().expect("lock").push(entries.len());
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(seen.latency).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        let id = entry["Id"].as_str().unwrap_or_default().to_owned();
        let message = entry["MessageBody"].as_str().unwrap_or_default().to_owned();
        let first_time = seen.bodies.lock().expect("lock").insert(message.clone());
        if message.contains("refuse") {
            failed.push(json!({"Id": id, "Code": "InvalidMessageContents", "SenderFault": true, "Message": "simulated refusal"}));
        } else if message.contains("fail-always") || (message.contains("fail-once") && first_time) {
            failed.push(json!({"Id": id, "Code": "InternalError", "SenderFault": false, "Message": "simulated outage"}));
        } else {
            successful.push(json!({"Id": id, "MessageId": uuid::Uuid::new_v4().to_string(), "MD5OfMessageBody": ""}));
        }
    }
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"Successful": successful, "Failed": failed}).to_string(),
    )
}
