//! `POST /transactions` and `GET /transactions/{id}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pipeline::domain::{
    AlertStatus, Envelope, Transaction, TransactionError, is_identifier, parse_transaction,
};
use pipeline::ports::OutgoingMessage;
use pipeline::telemetry;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::app::{AppState, MAX_BODY_BYTES};
use crate::auth::Shop;
use crate::error::{ApiError, Problem};

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
    /// `null` when the transaction broke no alert rule.
    pub alert: Option<AlertStatus>,
}

/// A transaction as a shop sends it (documentation only: the parser in `pipeline::domain`
/// is the authority). Unknown fields are rejected; extras belong in `metadata`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewTransaction {
    /// 1-64 characters from `A-Z a-z 0-9 . _ : -`, or a non-negative integer (kept as a string).
    transaction_id: IdInput,
    /// Greater than 0, at most 1000000000, with no more decimal places than the currency has.
    /// Send it as a string to keep it exact in every JSON library.
    amount: AmountInput,
    /// ISO 4217 alphabetic code.
    #[schema(default = "USD", example = "USD")]
    currency: Option<String>,
    /// RFC 3339 with an offset, at most 5 minutes in the future.
    #[schema(example = "2024-08-09T12:34:56Z")]
    timestamp: DateTime<Utc>,
    #[schema(default = "purchase")]
    r#type: Option<pipeline::domain::TransactionType>,
    /// 1-64 characters.
    customer_id: Option<String>,
    payment_method: Option<pipeline::domain::PaymentMethod>,
    /// 1-100 items whose quantity times unit price add up to `amount` exactly.
    items: Option<Vec<pipeline::domain::Item>>,
    /// At most 20 pairs; keys 1-40, values up to 256 characters.
    metadata: Option<BTreeMap<String, String>>,
}

/// Documentation of `transaction_id`: a string or a non-negative integer.
pub struct IdInput;

impl PartialSchema for IdInput {
    fn schema() -> RefOr<Schema> {
        one_of(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some("^[A-Za-z0-9._:-]+$")),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
            serde_json::json!("order-1001"),
        )
    }
}

impl ToSchema for IdInput {}

/// Documentation of `amount`: a JSON number or a decimal string, both read exactly.
pub struct AmountInput;

impl PartialSchema for AmountInput {
    fn schema() -> RefOr<Schema> {
        one_of(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^-?[0-9]+(\\.[0-9]+)?$")),
            ObjectBuilder::new().schema_type(Type::Number),
            serde_json::json!("100.00"),
        )
    }
}

impl ToSchema for AmountInput {}

fn one_of(
    first: ObjectBuilder,
    second: ObjectBuilder,
    example: serde_json::Value,
) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(first)
        .item(second)
        .examples([example])
        .into()
}

#[utoipa::path(
    post,
    path = "/transactions",
    tag = "transactions",
    security(("api_key" = [])),
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
        (status = 202, description = "Durably queued for processing", body = Accepted,
            headers(("Location" = String, description = "Where the transaction can be read once processed"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Broken rules, every failed field listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue could not accept it; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    shop: Result<Shop, ApiError>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let outcome = accept(&state, shop, &headers, body).await;
    match &outcome {
        Ok(_) => metrics::counter!(telemetry::ACCEPTED).increment(1),
        Err(error) => metrics::counter!(telemetry::REJECTED, "reason" => error.slug()).increment(1),
    }
    outcome
}

async fn accept(
    state: &AppState,
    shop: Result<Shop, ApiError>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Shop(shop_id) = shop?;
    require_json(headers)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        },
        _ => ApiError::MalformedJson(rejection.body_text()),
    })?;
    let accepted_at = Utc::now();
    let transaction = parse_transaction(&body, accepted_at).map_err(|error| match error {
        TransactionError::Malformed(detail) => ApiError::MalformedJson(detail),
        TransactionError::Invalid(errors) => ApiError::Invalid(errors),
    })?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let transaction_id = transaction.transaction_id.clone();
    let attributes = BTreeMap::from([
        ("shop_id".to_owned(), shop_id.to_string()),
        ("request_id".to_owned(), request_id.clone()),
        (
            "transaction_type".to_owned(),
            transaction.kind.as_str().to_owned(),
        ),
    ]);
    let envelope = Envelope::new(shop_id, transaction, accepted_at, request_id.clone());
    let message = OutgoingMessage {
        body: envelope.to_json(),
        attributes,
    };
    // 202 only after the queue said the message is durable; a slow queue is a 503, and the
    // client's retry is harmless because the processor stores each id once.
    match tokio::time::timeout(state.enqueue_timeout, state.queue.send(message)).await {
        Ok(Ok(_message_id)) => {}
        Ok(Err(error)) => return Err(ApiError::Unavailable(error)),
        Err(_elapsed) => {
            return Err(ApiError::Unavailable(
                pipeline::ports::PortError::unavailable(
                    "queue",
                    format!("no answer within {:?}", state.enqueue_timeout),
                ),
            ));
        }
    }
    let location = format!("/transactions/{transaction_id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            transaction_id,
            status: "accepted".to_owned(),
            accepted_at,
            request_id: request_id.clone(),
        }),
    )
        .into_response();
    let response_headers = response.headers_mut();
    // Ids are restricted to URL-safe characters, so these always convert.
    if let Ok(value) = HeaderValue::from_str(&location) {
        response_headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response_headers.insert("x-request-id", value);
    }
    Ok(response)
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        let shown = if content_type.is_empty() {
            "no Content-Type"
        } else {
            content_type
        };
        Err(ApiError::UnsupportedMediaType(format!(
            "send the transaction as application/json (got {shown})"
        )))
    }
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
        (status = 404, description = "No such transaction for this shop (or not processed yet)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    Shop(shop_id): Shop,
    Path(transaction_id): Path<String>,
) -> Result<Json<StoredTransaction>, ApiError> {
    let not_found =
        || ApiError::NotFound(format!("no transaction {transaction_id:?} for this shop"));
    if !is_identifier(&transaction_id) {
        return Err(not_found());
    }
    let record = state
        .store
        .get(&shop_id, &transaction_id)
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or_else(not_found)?;
    Ok(Json(StoredTransaction {
        shop_id: record.shop_id.to_string(),
        request_id: record.request_id,
        accepted_at: record.accepted_at,
        processed_at: record.processed_at,
        alert: record.alert,
        transaction: record.transaction,
    }))
}
