//! Health and metrics, for load balancers and scrapers: no key needed.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::ports::{Queue, Store};

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the queue and the store both answer, else `unavailable`.
    #[schema(example = "ok")]
    pub status: String,
    pub queue: ComponentHealth,
    pub store: ComponentHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    #[schema(example = "ok")]
    pub status: String,
    /// Messages waiting or in flight (queue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// Messages in the dead-letter queue (queue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ComponentHealth {
    fn from_result<T>(result: Result<T, pipeline::ports::PortError>) -> (Self, Option<T>) {
        match result {
            Ok(value) => (
                Self {
                    status: "ok".to_owned(),
                    depth: None,
                    dead_letters: None,
                    error: None,
                },
                Some(value),
            ),
            Err(error) => (
                Self {
                    status: "unavailable".to_owned(),
                    depth: None,
                    dead_letters: None,
                    error: Some(error.to_string()),
                },
                None,
            ),
        }
    }
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Queue and store answer", body = Health),
        (status = 503, description = "The queue or the store does not answer", body = Health),
    )
)]
pub async fn health(
    State(queue): State<Arc<dyn Queue>>,
    State(store): State<Arc<dyn Store>>,
) -> Response {
    let (queue_result, store_result) = tokio::join!(queue.depth(), store.ping());
    let (mut queue, depth) = ComponentHealth::from_result(queue_result);
    if let Some(depth) = depth {
        queue.depth = Some(depth.messages);
        queue.dead_letters = Some(depth.dead_letters);
    }
    let (store, _) = ComponentHealth::from_result(store_result);
    let healthy = queue.error.is_none() && store.error.is_none();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" }.to_owned(),
        queue,
        store,
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(
    State(prometheus): State<Option<PrometheusHandle>>,
) -> Result<Response, ApiError> {
    let handle = prometheus
        .ok_or_else(|| ApiError::NotFound("metrics are published to CloudWatch here".to_owned()))?;
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
