//! The router behind API Gateway (HTTP API, payload 2.0). Under a named stage the path arrives
//! with the stage in front (`/prod/transactions`); it is taken off before routing, and kept so
//! that the links the API returns (`Location`) still point behind the stage.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Uri;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use processor::lambda::instant_of;

use crate::state::{InvocationDeadline, PathPrefix};

/// Prepares one request for the router: the caller's address as `ConnectInfo` (for the access
/// log), the invocation's deadline, and the path without the stage.
pub fn prepare(mut request: lambda_http::Request) -> lambda_http::Request {
    if let Some(context) = request.lambda_context_ref() {
        let deadline = InvocationDeadline(instant_of(context.deadline));
        request.extensions_mut().insert(deadline);
    }
    let (stage, source_ip) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            (context.stage.clone(), context.http.source_ip.clone())
        }
        _ => (None, None),
    };
    if let Some(ip) = source_ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    let Some(stage) = stage.filter(|stage| stage != "$default") else {
        return request;
    };
    let prefix = format!("/{stage}");
    let path = request.uri().path();
    let rest = match path.strip_prefix(&prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return request,
    };
    let rewritten = match request.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    if let Ok(uri) = rewritten.parse::<Uri>() {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(PathPrefix(prefix));
    }
    request
}
