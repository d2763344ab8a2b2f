//! What the two ingest routes (`POST /transactions`, `POST /transactions/batch`) share: the one
//! place a transaction becomes a queue message, the request id it carries, and the one layer
//! that counts every ingest request's outcome.

use axum::Extension;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use infra::domain::{Envelope, Named, ShopId, Transaction};
use infra::ports::OutgoingMessage;
use infra::telemetry;
use tower_http::request_id::RequestId;

use crate::error::ProblemSlug;

/// The queue message for one accepted transaction: the envelope as the body, and its routing
/// facts (shop, request, type) as attributes for queues that can show or filter on them.
pub fn message(
    shop_id: &ShopId,
    transaction: Transaction,
    accepted_at: DateTime<Utc>,
    request_id: String,
) -> OutgoingMessage {
    let attributes = [
        ("shop_id".to_owned(), shop_id.to_string()),
        ("request_id".to_owned(), request_id.clone()),
        (
            "transaction_type".to_owned(),
            transaction.kind.name().to_owned(),
        ),
    ]
    .into();
    let envelope = Envelope::new(shop_id.clone(), transaction, accepted_at, request_id);
    OutgoingMessage {
        body: envelope.to_json(),
        attributes,
    }
}

/// The id the request-id layer gave this request (also sent back as `X-Request-Id`).
pub fn request_id(extension: Option<Extension<RequestId>>) -> String {
    extension
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// How many transactions one answer accepted and rejected, left on a batch's answer so that the
/// ingest layer counts items rather than requests.
#[derive(Debug, Clone, Copy)]
pub struct ItemCounts {
    pub accepted: usize,
    pub rejected: usize,
}

/// Counts each ingest POST: a batch's items as accepted or rejected (validation), any other
/// refusal (key, media type, size, JSON, rules, queue) once by its problem's slug, and a single
/// transaction's success as one accepted.
pub async fn count_outcomes(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let extensions = response.extensions();
    if let Some(counts) = extensions.get::<ItemCounts>() {
        metrics::counter!(telemetry::ACCEPTED).increment(counts.accepted as u64);
        metrics::counter!(telemetry::REJECTED, "reason" => "validation")
            .increment(counts.rejected as u64);
    } else if let Some(ProblemSlug(reason)) = extensions.get::<ProblemSlug>() {
        metrics::counter!(telemetry::REJECTED, "reason" => *reason).increment(1);
    } else if response.status().is_success() {
        metrics::counter!(telemetry::ACCEPTED).increment(1);
    }
    response
}
