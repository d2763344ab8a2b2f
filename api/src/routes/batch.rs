//! `POST /transactions/batch`: many transactions in one request, each validated on its own.
//!
//! Valid items are enqueued together; 202 means every item was accepted, 207 that some were
//! rejected (each with its errors), 422 that none was. Accepted means durable, as for a single
//! POST: if the queue cannot take them all, the whole request is a 503 and nothing is reported
//! as accepted (a retry is safe: the processor stores each id once).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRef, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use infra::domain::record::payload_hash;
use infra::domain::{FieldError, Transaction, TransactionError, parse_transaction};
use infra::ports::{OutgoingMessage, PortError};
use serde::Serialize;
use serde_json::value::RawValue;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

use crate::auth::Shop;
use crate::docs::NewBatch;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::ingest::{self, ItemCounts};
use crate::limits::{MAX_BATCH_BYTES, MAX_BATCH_ITEMS, MAX_BODY_BYTES};
use crate::state::{AppState, BodyReadTimeout};

/// Errors listed per rejected item; `error_count` says how many there were.
pub const MAX_ITEM_ERRORS: usize = 5;
/// Tries of the entries a queue failed transiently, before the request is a 503.
const SEND_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Accepted,
    Rejected,
}

/// What became of one item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemResult {
    /// Its place in `transactions`, from 0.
    pub index: usize,
    /// When it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub status: ItemStatus,
    /// Why it was rejected: the first 5 broken rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<usize>,
    /// The earlier item with the same id and payload: accepted once, as that item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<usize>,
}

/// The answer to a batch (202 or 207; a 422 carries the same `results` in a problem).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<ItemResult>,
    /// Also in the `X-Request-Id` header; each item's request id is this, `#` and its index.
    pub request_id: String,
}

/// The body `{"transactions": [...]}`, each item kept as raw JSON to be parsed on its own.
pub struct BatchBody(Vec<Box<RawValue>>);

impl<S> FromRequest<S> for BatchBody
where
    S: Send + Sync,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(bytes) = JsonBody::<MAX_BATCH_BYTES>::from_request(request, state).await?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            transactions: Vec<Box<RawValue>>,
        }
        let Shape { transactions } = serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::MalformedJson(format!(
                "the body must be {{\"transactions\": [transaction, ...]}}: {error}"
            ))
        })?;
        if transactions.len() > MAX_BATCH_ITEMS {
            return Err(ApiError::TooManyItems {
                limit: MAX_BATCH_ITEMS,
            });
        }
        if transactions.is_empty() {
            return Err(ApiError::Invalid {
                errors: vec![FieldError {
                    field: "transactions".to_owned(),
                    code: "length".to_owned(),
                    message: format!("must hold 1-{MAX_BATCH_ITEMS} transactions"),
                }],
                total: 1,
            });
        }
        Ok(Self(transactions))
    }
}

/// The id of an item that could not be parsed, if it has a readable one.
fn readable_id(raw: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    match &value["transaction_id"] {
        serde_json::Value::String(id) if infra::domain::is_identifier(id) => Some(id.clone()),
        serde_json::Value::Number(number) => number.as_u64().map(|id| id.to_string()),
        _ => None,
    }
}

fn rejected(
    index: usize,
    transaction_id: Option<String>,
    mut errors: Vec<FieldError>,
) -> ItemResult {
    let total = errors.len();
    errors.truncate(MAX_ITEM_ERRORS);
    ItemResult {
        index,
        transaction_id,
        status: ItemStatus::Rejected,
        errors,
        error_count: Some(total),
        duplicate_of: None,
    }
}

/// Each item parsed on its own, and a second item with an earlier one's id either folded into
/// it (the same payload) or rejected as a conflict (another payload).
fn read_items(
    items: &[Box<RawValue>],
    accepted_at: DateTime<Utc>,
) -> (Vec<ItemResult>, Vec<(usize, Transaction)>) {
    let mut results = Vec::with_capacity(items.len());
    let mut valid = Vec::new();
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    for (index, raw) in items.iter().enumerate() {
        let text = raw.get();
        if text.len() > MAX_BODY_BYTES {
            let error = FieldError {
                field: "transaction".to_owned(),
                code: "too_large".to_owned(),
                message: format!("a transaction may take at most {MAX_BODY_BYTES} bytes"),
            };
            results.push(rejected(index, readable_id(text), vec![error]));
            continue;
        }
        let transaction = match parse_transaction(text.as_bytes(), accepted_at) {
            Ok(transaction) => transaction,
            Err(TransactionError::Invalid { errors, .. }) => {
                results.push(rejected(index, readable_id(text), errors));
                continue;
            }
            Err(TransactionError::Malformed(detail)) => {
                let error = FieldError {
                    field: "transaction".to_owned(),
                    code: "type".to_owned(),
                    message: detail,
                };
                results.push(rejected(index, None, vec![error]));
                continue;
            }
        };
        let id = transaction.transaction_id.clone();
        let hash = payload_hash(&transaction);
        match seen.get(&id) {
            Some((first, first_hash)) if *first_hash == hash => results.push(ItemResult {
                index,
                transaction_id: Some(id),
                status: ItemStatus::Accepted,
                errors: Vec::new(),
                error_count: None,
                duplicate_of: Some(*first),
            }),
            Some((first, _)) => {
                let error = FieldError {
                    field: "transaction_id".to_owned(),
                    code: "conflict".to_owned(),
                    message: format!("item {first} of this batch has this id with another payload"),
                };
                results.push(rejected(index, Some(id), vec![error]));
            }
            None => {
                seen.insert(id.clone(), (index, hash));
                results.push(ItemResult {
                    index,
                    transaction_id: Some(id),
                    status: ItemStatus::Accepted,
                    errors: Vec::new(),
                    error_count: None,
                    duplicate_of: None,
                });
                valid.push((index, transaction));
            }
        }
    }
    (results, valid)
}

/// Sends every message, retrying the entries the queue failed for a transient reason, all
/// within one deadline (`ENQUEUE_TIMEOUT`), so that the answer comes before a gateway's own
/// timeout would. Returns the items the queue refused for good; any transient failure left,
/// or the deadline, is the request's error (a 503: what was sent is deduplicated on retry).
async fn send_all(
    state: &AppState,
    mut pending: Vec<(usize, OutgoingMessage)>,
) -> Result<Vec<(usize, PortError)>, ApiError> {
    let deadline = tokio::time::Instant::now() + state.enqueue_timeout.0;
    let mut refused = Vec::new();
    for attempt in 1..=SEND_ATTEMPTS {
        let messages = pending.iter().map(|(_, message)| message.clone()).collect();
        let outcomes = tokio::time::timeout_at(deadline, state.queue.send_batch(messages))
            .await
            .map_err(|_| {
                PortError::unavailable("queue", "the batch was not taken within its deadline")
                    .retry_after(Duration::from_secs(1))
            })??;
        let mut failed = Vec::new();
        for ((index, message), outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => {}
                Err(error @ PortError::Rejected { .. }) => refused.push((index, error)),
                Err(error) => failed.push((index, message, error)),
            }
        }
        if failed.is_empty() {
            return Ok(refused);
        }
        if attempt == SEND_ATTEMPTS {
            let (_, _, error) = failed.swap_remove(0);
            return Err(ApiError::Port(error));
        }
        pending = failed
            .into_iter()
            .map(|(index, message, _)| (index, message))
            .collect();
    }
    Ok(refused)
}

#[utoipa::path(
    post,
    path = "/transactions/batch",
    tag = "transactions",
    security(("api_key" = [])),
    request_body(
        content = NewBatch,
        content_type = "application/json",
        examples(
            ("mixed" = (summary = "Two transactions; the second breaks a rule", value = json!({"transactions": [
                {"transaction_id": "batch-1", "amount": "25.00", "timestamp": "2024-08-09T12:34:56Z"},
                {"transaction_id": "batch-2", "amount": "-5", "timestamp": "2024-08-09T12:34:56Z"}
            ]}))),
            ("all_valid" = (summary = "Three valid transactions, one above the alert threshold", value = json!({"transactions": [
                {"transaction_id": "batch-10", "amount": "19.99", "timestamp": "2024-08-09T12:00:00Z"},
                {"transaction_id": "batch-11", "amount": 120, "currency": "EUR", "timestamp": "2024-08-09T12:01:00Z"},
                {"transaction_id": "batch-12", "amount": "1500.00", "timestamp": "2024-08-09T12:02:00Z", "payment_method": "card"}
            ]}))),
        ),
    ),
    responses(
        (status = 202, description = "Every item accepted, durably queued", body = BatchResult),
        (status = 207, description = "Some items accepted (durably queued), the others rejected with their errors", body = BatchResult),
        (status = 400, description = "Not JSON, or not {\"transactions\": [...]}", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than 1000 transactions, or a body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No item accepted (or an empty list): a problem with `results` per item", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue could not accept them: nothing was accepted; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    Shop(shop_id): Shop,
    BatchBody(items): BatchBody,
) -> Result<Response, ApiError> {
    let request_id = ingest::request_id(request_id);
    let accepted_at = Utc::now();
    let (mut results, valid) = read_items(&items, accepted_at);
    let messages = valid
        .into_iter()
        .map(|(index, transaction)| {
            let item_request = format!("{request_id}#{index}");
            (
                index,
                ingest::message(&shop_id, transaction, accepted_at, item_request),
            )
        })
        .collect::<Vec<_>>();
    for (index, error) in send_all(&state, messages).await? {
        tracing::error!(%error, index, "the queue refused a batch item for good");
        let refused = FieldError {
            field: "transaction".to_owned(),
            code: "refused_by_queue".to_owned(),
            message:
                "the queue refused it; retrying will not help. This is a bug and has been logged"
                    .to_owned(),
        };
        let transaction_id = results[index].transaction_id.clone();
        results[index] = rejected(index, transaction_id, vec![refused]);
    }
    let accepted = results
        .iter()
        .filter(|result| result.status == ItemStatus::Accepted)
        .count();
    let counts = ItemCounts {
        accepted,
        rejected: results.len() - accepted,
    };
    let mut response = if accepted == 0 {
        ApiError::NoneAccepted {
            rejected: counts.rejected,
            results: serde_json::to_value(&results).unwrap_or_default(),
            request_id,
        }
        .into_response()
    } else {
        let status = if counts.rejected == 0 {
            StatusCode::ACCEPTED
        } else {
            StatusCode::MULTI_STATUS
        };
        let answer = BatchResult {
            accepted,
            rejected: counts.rejected,
            results,
            request_id,
        };
        (status, Json(answer)).into_response()
    };
    response.extensions_mut().insert(counts);
    Ok(response)
}
