//! The router and the state its handlers share.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::ports::{Queue, Store};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::KeyRing;
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::routes;

/// Request bodies above this are refused with 413 before they are read in full.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler may use. Holds no state a second instance would need: all of it is
/// either configuration or a client of a shared service.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    /// Prometheus text for `/metrics`; `None` where metrics leave another way (CloudWatch).
    pub prometheus: Option<PrometheusHandle>,
    /// A send that takes longer than this is answered with 503.
    pub enqueue_timeout: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/transactions", post(routes::transactions::create))
        .route(
            "/transactions/{transaction_id}",
            get(routes::transactions::read),
        )
        .route("/health", get(routes::ops::health))
        .route("/metrics", get(routes::ops::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned());
    ApiError::Internal(message).into_response()
}
