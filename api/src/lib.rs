//! The HTTP API: one axum router ([`app::router`]) served locally by our own accept loop
//! ([`http_server`], with limits `axum::serve` lacks) and, on AWS, by `lambda_http`. Handlers
//! validate, enqueue and read; they never talk to a database directly but through the ports in
//! [`state::AppState`].
//!
//! Modules depend in one direction (ARCHITECTURE.md draws them); a test
//! (tests/architecture.rs) fails on a cycle.

pub mod access_log;
pub mod app;
pub mod auth;
pub mod config;
pub mod console;
pub mod cursor;
pub mod docs;
pub mod error;
pub mod extract;
pub mod http_server;
pub mod ingest;
pub mod keys_admin;
pub mod lambda;
pub mod limits;
pub mod listing;
pub mod openapi;
pub mod prefer;
pub mod routes;
pub mod rules_in_force;
pub mod server;
pub mod state;
pub mod webhook_lambda;
pub mod webhook_sender;
