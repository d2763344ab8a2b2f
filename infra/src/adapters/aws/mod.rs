//! The AWS adapters: SQS for the queue, DynamoDB for the store, SNS for alerts, SSM for the
//! rules parameter, a DynamoDB table of API keys, and one of the shops' webhooks and lists. Clients come from the standard AWS configuration chain, so
//! `AWS_ENDPOINT_URL` points them at any AWS-compatible server.

mod api_keys;
mod counters;
mod dynamodb;
mod lists;
mod sns;
mod sqs;
mod ssm;
mod webhooks;

pub use api_keys::DynamoKeys;
pub use dynamodb::{DEFAULT_INDEX_SHARDS, DynamoStore, TIME_INDEX};
pub use lists::DynamoLists;
pub use sns::SnsNotifier;
pub use sqs::{DEAD_LETTER_REASON_ATTRIBUTE, SqsQueue};
pub use ssm::SsmParameter;
pub use webhooks::{DynamoWebhooks, SecretsKey, SqsDeliveries};

use crate::aws_calls::AwsCall;

/// Every call the AWS adapters make, for the permission test.
pub fn calls() -> Vec<AwsCall> {
    [
        sqs::AWS_CALLS,
        dynamodb::AWS_CALLS,
        counters::AWS_CALLS,
        sns::AWS_CALLS,
        ssm::AWS_CALLS,
        api_keys::AWS_CALLS,
        webhooks::AWS_CALLS,
        lists::AWS_CALLS,
    ]
    .concat()
}

/// Whether a DynamoDB write was refused by its condition (the item was there, or was not).
fn is_condition_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|service| service.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Puts `item` unless one with its key is there: whether it was written. Every other failure
/// is `component`'s unavailability.
async fn put_if_absent(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    component: &'static str,
) -> Result<bool, crate::ports::PortError> {
    let put = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match put {
        Ok(_) => Ok(true),
        Err(error) if is_condition_failure(&error) => Ok(false),
        Err(error) => Err(crate::ports::PortError::unavailable(
            component,
            describe(&error),
        )),
    }
}

/// A DynamoDB string.
fn text(value: impl Into<String>) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(value.into())
}

/// SDK errors, with their whole chain of causes, as one line.
fn describe<E: std::error::Error>(error: &E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(error).to_string()
}
