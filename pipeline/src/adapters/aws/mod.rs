//! The AWS adapters: SQS for the queue, DynamoDB for the store, SNS for alerts. Clients come from
//! the standard AWS configuration chain, so `AWS_ENDPOINT_URL` points them at any AWS-compatible
//! server.

pub mod calls;
mod counters;
mod dynamodb;
mod sns;
mod sqs;

pub use dynamodb::{DEFAULT_INDEX_SHARDS, DynamoStore, TIME_INDEX};
pub use sns::SnsNotifier;
pub use sqs::{DEAD_LETTER_REASON_ATTRIBUTE, SqsQueue};

/// SDK errors, with their whole chain of causes, as one line.
fn describe<E: std::error::Error>(error: &E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(error).to_string()
}
