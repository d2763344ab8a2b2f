//! The HTTP API: one axum router ([`app::router`]) served by `axum::serve` locally and, on AWS,
//! by `lambda_http`. Handlers validate, enqueue and read; they never talk to a database directly
//! but through the ports in [`state::AppState`].
//!
//! Modules depend in one direction: `server` → `app`, `lambda` → `routes` → `extract`, `auth`,
//! `state`, `docs` → `error`. A test (tests/architecture.rs) keeps it so.

pub mod access_log;
pub mod app;
pub mod auth;
pub mod config;
pub mod docs;
pub mod error;
pub mod extract;
pub mod http_server;
pub mod lambda;
pub mod limits;
pub mod listing;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
