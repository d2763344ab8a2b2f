//! The web console (`/console/`): three static files built into the binary, served the same
//! locally and behind API Gateway. It is only a client of the public API, signed in with the
//! shop's key as any client is: it adds no endpoint and no rights.
//!
//! The files are plain HTML, CSS and JavaScript, with no build step, and a vendored chart
//! library; nothing is fetched from elsewhere, so the Content-Security-Policy can allow this
//! origin's scripts and nothing else.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Scripts, styles and calls from this origin only; no inline script or style, no frames, no
/// forms posted anywhere (the console sends its requests with `fetch`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");
/// uPlot, a small chart library of the field (MIT, no dependencies), as published on npm at
/// the version `api/console/package.json` pins; a test checks these are its files.
const CHARTS_SCRIPT: &str = include_str!("../console/vendor/uplot/uPlot.iife.min.js");
const CHARTS_STYLE: &str = include_str!("../console/vendor/uplot/uPlot.min.css");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        // Relative, so that it also holds under a path prefix (an API Gateway stage).
        .route(
            "/console",
            get(|| async { Redirect::permanent("console/") }),
        )
        .route(
            "/console/",
            get(|| async { file(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { file(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/vendor/uplot/uPlot.iife.min.js",
            get(|| async { file(CHARTS_SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/vendor/uplot/uPlot.min.css",
            get(|| async { file(CHARTS_STYLE, "text/css; charset=utf-8") }),
        )
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The console never puts the key in a URL, and sends no referrer to be sure.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary's console is used at once; the files are small.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
