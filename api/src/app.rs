//! The router: every route, the fallbacks, and the layers around them.

use std::any::Any;

use axum::Router;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::routes::{batch, ops, transactions};
use crate::state::AppState;
use crate::{access_log, ingest};

pub fn router(state: AppState) -> Router {
    // Every ingest route inside the one layer that counts outcomes (it counts POSTs only).
    let ingest = Router::new()
        .route(
            "/transactions",
            post(transactions::create).get(transactions::list),
        )
        .route(
            "/transactions/batch",
            post(batch::create).get(transactions::read_named_batch),
        )
        .route_layer(middleware::from_fn(ingest::count_outcomes));
    Router::new()
        .merge(ingest)
        .route("/transactions/{transaction_id}", get(transactions::read))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // From the inside out: a panic becomes a 500 problem, every request is logged once,
        // and every answer carries the request's id (`X-Request-Id`, generated here).
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(middleware::from_fn(access_log::log_request))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
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
