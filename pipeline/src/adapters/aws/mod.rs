//! The AWS adapters: SQS for the queue, DynamoDB for the store, SNS for alerts. Clients are built
//! once from the standard AWS configuration chain, so `AWS_ENDPOINT_URL` points them at any
//! AWS-compatible server.

mod dynamodb;
mod sns;
mod sqs;

use std::sync::Arc;

pub use dynamodb::{DEFAULT_INDEX_SHARDS, DynamoStore, TIME_INDEX};
pub use sns::SnsNotifier;
pub use sqs::{DEAD_LETTER_REASON_ATTRIBUTE, SqsQueue};

use aws_config::{BehaviorVersion, SdkConfig};

/// Where the AWS resources are.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub table_name: String,
    pub topic_arn: String,
}

pub struct AwsBackend {
    pub queue: Arc<SqsQueue>,
    pub store: Arc<DynamoStore>,
    pub notifier: Arc<SnsNotifier>,
}

impl AwsBackend {
    /// Loads the standard AWS configuration (environment, profile, instance or Lambda role).
    pub async fn connect(resources: AwsResources) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_config(&config, resources)
    }

    pub fn from_config(config: &SdkConfig, resources: AwsResources) -> Self {
        Self {
            queue: Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(config),
                resources.queue_url,
                resources.dead_letter_queue_url,
            )),
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(config),
                resources.table_name,
                DEFAULT_INDEX_SHARDS,
            )),
            notifier: Arc::new(SnsNotifier::new(
                aws_sdk_sns::Client::new(config),
                resources.topic_arn,
            )),
        }
    }
}

/// SDK errors, with their whole chain of causes, as one line.
fn describe<E: std::error::Error>(error: &E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(error).to_string()
}
