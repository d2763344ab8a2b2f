//! Health and metrics, for load balancers and scrapers: no key needed. Health says no more than
//! a load balancer needs (why a node is not ready goes to the log); metrics are served on the
//! metrics listener only (`app::metrics_router`), never on the API's port.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::Readiness;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when this node can accept a transaction now, else `unavailable`.
    #[schema(example = "ok")]
    pub status: String,
}

/// How long one probe's answer stands: health checks at any rate cost at most one probe a
/// second.
pub const HEALTH_CACHE: Duration = Duration::from_secs(1);

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the queue accepts transactions now", body = Health),
        (status = 503, description = "Not ready: a POST would be answered 503 now", body = Health),
    )
)]
pub async fn health(State(readiness): State<Readiness>) -> Response {
    let ready = readiness.check().await;
    let (status, text) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        Json(Health {
            status: text.to_owned(),
        }),
    )
        .into_response()
}

/// Prometheus text exposition, on the metrics listener.
pub async fn metrics(State(handle): State<PrometheusHandle>) -> Result<Response, ApiError> {
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}
