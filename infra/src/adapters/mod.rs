//! Adapters behind the ports: `embedded` (SQLite files in a data directory) and `aws` (SQS,
//! DynamoDB, SNS). [`select`] picks one per port at start-up; nothing else knows which.

pub mod aws;
pub mod breaker;
pub mod embedded;
pub mod select;
