//! Adapters behind the ports: `embedded` (SQLite files in a data directory) and `aws` (SQS,
//! DynamoDB, SNS). [`config::BackendArgs`] picks one at start-up; nothing else needs to know which.

pub mod aws;
pub mod config;
pub mod embedded;
