//! The HTTP API: one axum router ([`app::router`]) served by `axum::serve` locally and, on AWS,
//! by `lambda_http`. Handlers validate, enqueue and read; they never talk to a database directly
//! but through the ports in `AppState`.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod telemetry;
