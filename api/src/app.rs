//! The router: every route, the fallbacks, and the layers around them.

use std::any::Any;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::routes::{alerts, batch, lists, ops, rules, stats, transactions, webhooks};
use crate::state::AppState;
use crate::{access_log, console, ingest};

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
        .route("/alerts", get(alerts::list))
        .route("/alerts/{alert_id}", get(alerts::read))
        .route("/alerts/{alert_id}/review", post(alerts::review))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{webhook_id}", delete(webhooks::remove))
        .route(
            "/webhooks/{webhook_id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/webhooks/{webhook_id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/rules", get(rules::in_force))
        .route("/rules/backtest", post(rules::backtest))
        .route("/stats", get(stats::overview))
        .route("/lists/{name}", get(lists::page))
        .route(
            "/lists/{name}/items/{value}",
            put(lists::add).delete(lists::remove),
        )
        .route("/health", get(ops::health))
        .merge(console::routes())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(problems_only))
        // From the inside out: a panic becomes a 500 problem, every request is logged once,
        // and every answer carries the request's id (`X-Request-Id`, generated here, never
        // taken from the client: it is stored with the data and tells requests apart).
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .layer(middleware::from_fn(access_log::log_request))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_client_request_id))
        .with_state(state)
}

/// A client's `X-Request-Id` would be reflected, logged and stored with every item, at any
/// length, and two requests sharing one would count as one conflict: the API makes its own.
async fn drop_client_request_id(mut request: Request) -> Request {
    request.headers_mut().remove("x-request-id");
    request
}

/// Every refusal is a problem document, including those made outside the handlers: an
/// extractor's rejection (a path that is not UTF-8), Swagger UI's 404 for a page it lacks.
/// A JSON answer a handler chose (health's 503) stays as it is.
async fn problems_only(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if !response.status().is_client_error() || ApiError::is_json(&response) {
        return response;
    }
    let status = response.status();
    let mut problem = ApiError::for_bare_status(status).into_response();
    // What the original answer said about the resource (`Allow` on a 405) still holds.
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        problem
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    problem
}

/// The metrics listener's router: `/metrics` alone, for Prometheus on the operator's network
/// (`METRICS_ADDR`, loopback by default), never on the port the shops use.
pub fn metrics_router(prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(problems_only))
        .with_state(prometheus)
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
