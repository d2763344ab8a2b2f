//! `POST /transactions` and `GET /transactions/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use infra::domain::{
    Action, AlertDecision, AlertStatus, Conflicts, ListQuery, Position, ShopId, Transaction,
    TransactionRecord, is_identifier,
};
use infra::ports::RecordReader;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

use crate::auth::Shop;
use crate::cursor::{Cursor, CursorKey};
use crate::docs::{ListParamsDoc, NewTransaction};
use crate::error::{ApiError, Problem};
use crate::extract::ValidatedTransaction;
use crate::ingest;
use crate::listing::{ListParams, within_page_bytes};
use crate::prefer;
use crate::state::{AppState, InvocationDeadline, PathPrefix};

/// Kept from a Lambda invocation's deadline to send a waiting POST's answer.
const TIME_TO_ANSWER: Duration = Duration::from_secs(1);

/// The answer to an accepted POST: the transaction is durably on the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "12345")]
    pub transaction_id: String,
    #[schema(example = "accepted")]
    pub status: String,
    pub accepted_at: DateTime<Utc>,
    /// Also in the `X-Request-Id` header; quote it when asking about this request.
    pub request_id: String,
}

/// A stored transaction with the facts of its processing.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredTransaction {
    #[serde(flatten)]
    pub transaction: Transaction,
    #[schema(example = "demo")]
    pub shop_id: String,
    pub request_id: String,
    pub accepted_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    /// Re-sends of this id with another payload, which were refused (the original is kept).
    pub conflicts: Conflicts,
    /// Every alert the transaction raised, one per rule, with its state.
    pub alerts: Vec<AlertStatus>,
    /// The strongest action among the alerts (`block` over `review` over `notify`), or
    /// `allow` when none fired.
    pub decision: Action,
    /// Hits of shadow rules: stored to judge a rule before it goes live; never alerted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow_alerts: Vec<AlertDecision>,
}

#[utoipa::path(
    post,
    path = "/transactions",
    tag = "transactions",
    security(("api_key" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds (at most 10) for the transaction to be stored, and answer 200 with the stored record; a malformed preference is ignored")),
    request_body(
        content = NewTransaction,
        content_type = "application/json",
        examples(
            ("original" = (summary = "The original system's test message", value = json!({"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}))),
            ("high_value" = (summary = "Above the 1000 threshold: raises an alert", value = json!({"transaction_id": "order-1001", "amount": "1000.01", "currency": "USD", "timestamp": "2024-08-09T12:34:56Z", "type": "purchase", "customer_id": "cust-42", "payment_method": "card"}))),
            ("with_items" = (summary = "Items that add up to the amount", value = json!({"transaction_id": "order-1002", "amount": "59.97", "timestamp": "2024-08-09T12:34:56Z", "items": [{"sku": "MUG-1", "quantity": 3, "unit_price": "19.99"}], "metadata": {"channel": "web"}}))),
        ),
    ),
    responses(
        (status = 200, description = "With `Prefer: wait=N`: stored within N seconds (at most 10); the stored record, with its alerts (for an id stored before, the original)", body = StoredTransaction,
            headers(
                ("Location" = String, description = "Where the transaction can be read"),
                ("Preference-Applied" = String, description = "`wait=N`, the wait granted"),
            )),
        (status = 202, description = "Durably queued for processing (with `Prefer: wait=N`: not stored within the wait)", body = Accepted,
            headers(("Location" = String, description = "Where the transaction can be read once processed"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Broken rules, every failed field listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue could not accept it; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
#[allow(clippy::too_many_arguments)] // axum extractors, each one thing the handler reads
pub async fn create(
    State(state): State<AppState>,
    prefix: Option<Extension<PathPrefix>>,
    request_id: Option<Extension<RequestId>>,
    deadline: Option<Extension<InvocationDeadline>>,
    headers: HeaderMap,
    Shop(shop_id): Shop,
    ValidatedTransaction {
        transaction,
        accepted_at,
    }: ValidatedTransaction,
) -> Result<Response, ApiError> {
    let request_id = ingest::request_id(request_id);
    let transaction_id = transaction.transaction_id.clone();
    let message = ingest::message(&shop_id, transaction, accepted_at, request_id.clone());
    // 202 only after the queue said the message is durable; a slow queue is a 503, and the
    // client's retry is harmless because the processor stores each id once.
    state.queue.send(message).await?;
    let Extension(PathPrefix(prefix)) = prefix.unwrap_or_default();
    let location = format!("{prefix}/transactions/{transaction_id}");
    let mut response = match waited_for(&state, deadline, &headers, &shop_id, &transaction_id).await
    {
        Some((record, wait)) => decided(record, wait),
        None => (
            StatusCode::ACCEPTED,
            Json(Accepted {
                transaction_id,
                status: "accepted".to_owned(),
                accepted_at,
                request_id: request_id.clone(),
            }),
        )
            .into_response(),
    };
    // Ids are restricted to URL-safe characters, so this always converts.
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// With `Prefer: wait`, the stored record if it is there within the wait (and a second short
/// of a Lambda invocation's deadline), and the wait granted.
async fn waited_for(
    state: &AppState,
    deadline: Option<Extension<InvocationDeadline>>,
    headers: &HeaderMap,
    shop_id: &ShopId,
    transaction_id: &str,
) -> Option<(TransactionRecord, Duration)> {
    let wait = prefer::requested_wait(headers)?;
    let mut until = Instant::now() + wait;
    if let Some(Extension(InvocationDeadline(deadline))) = deadline {
        until = until.min(deadline.checked_sub(TIME_TO_ANSWER).unwrap_or(deadline));
    }
    let record = prefer::stored_by(state.store.as_ref(), shop_id, transaction_id, until).await?;
    Some((record, wait))
}

/// The answer to a POST that waited (`Prefer: wait`) and saw its transaction stored: the
/// record, with its alerts, as `GET` would show it.
fn decided(record: TransactionRecord, wait: Duration) -> Response {
    let mut response = (StatusCode::OK, Json(StoredTransaction::from(record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
        response
            .headers_mut()
            .insert(prefer::PREFERENCE_APPLIED.clone(), value);
    }
    response
}

#[utoipa::path(
    get,
    path = "/transactions/{transaction_id}",
    tag = "transactions",
    security(("api_key" = [])),
    params(("transaction_id" = String, Path, description = "The id the transaction was sent with")),
    responses(
        (status = 200, description = "The stored transaction", body = StoredTransaction),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such transaction for this shop (or not processed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(store): State<Arc<dyn RecordReader>>,
    Shop(shop_id): Shop,
    Path(transaction_id): Path<String>,
) -> Result<Json<StoredTransaction>, ApiError> {
    read_one(store.as_ref(), &shop_id, transaction_id).await
}

/// `GET /transactions/batch` reads the transaction whose id is `batch`: the batch route's path
/// would otherwise hide it. It is in the contract so that the path's `Allow` header (POST, GET)
/// matches what the contract says.
#[utoipa::path(
    get,
    path = "/transactions/batch",
    tag = "transactions",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The stored transaction whose id is `batch` (this path is also `POST /transactions/batch`)", body = StoredTransaction),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This shop has no transaction with the id `batch` (or not processed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read_named_batch(
    State(store): State<Arc<dyn RecordReader>>,
    Shop(shop_id): Shop,
) -> Result<Json<StoredTransaction>, ApiError> {
    read_one(store.as_ref(), &shop_id, "batch".to_owned()).await
}

async fn read_one(
    store: &dyn RecordReader,
    shop_id: &infra::domain::ShopId,
    transaction_id: String,
) -> Result<Json<StoredTransaction>, ApiError> {
    // Only an id that could exist is echoed back: an 8 KB path is not repeated in the answer.
    if !is_identifier(&transaction_id) {
        return Err(ApiError::NotFound(
            "no such transaction for this shop".to_owned(),
        ));
    }
    let not_found =
        || ApiError::NotFound(format!("no transaction {transaction_id:?} for this shop"));
    let record = store
        .get(shop_id, &transaction_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(StoredTransaction::from(record)))
}

impl From<TransactionRecord> for StoredTransaction {
    fn from(record: TransactionRecord) -> Self {
        Self {
            decision: record.decision(),
            shadow_alerts: record.shadow_alerts,
            shop_id: record.shop_id.to_string(),
            request_id: record.request_id,
            accepted_at: record.accepted_at,
            processed_at: record.processed_at,
            alerts: record.alerts,
            conflicts: record.conflicts,
            transaction: record.transaction,
        }
    }
}

/// One page of a shop's transactions.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    /// Newest first by `timestamp`, ties broken by id.
    pub data: Vec<StoredTransaction>,
    /// Whether there may be more: then `next_cursor` gives the next page.
    pub has_more: bool,
    /// Pass as `cursor`, with the same filters, for the next page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/transactions",
    tag = "transactions",
    security(("api_key" = [])),
    params(ListParamsDoc),
    responses(
        (status = 200, description = "A page of the shop's transactions", body = TransactionList),
        (status = 400, description = "A parameter is not valid: each is named in `errors` (an unknown parameter, limit out of 1-100, `from` not before `to`, a cursor of another shop or other filters)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn list(
    State(store): State<Arc<dyn RecordReader>>,
    State(cursor_key): State<CursorKey>,
    Shop(shop_id): Shop,
    params: ListParams,
) -> Result<Json<TransactionList>, ApiError> {
    let after = params
        .cursor
        .as_ref()
        .map(|cursor| cursor.position_for(&shop_id, &params.filters))
        .transpose()?;
    let query = ListQuery {
        filters: params.filters,
        limit: params.limit,
        after,
    };
    let page = store.list(&shop_id, &query).await?;
    let shown = page
        .records
        .into_iter()
        .map(|record| (Position::of(&record), StoredTransaction::from(record)));
    let (data, cut_after) = within_page_bytes(shown);
    let next_cursor = cut_after
        .or(page.next)
        .map(|position| Cursor::encode(&cursor_key, &shop_id, &query.filters, &position));
    Ok(Json(TransactionList {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}
