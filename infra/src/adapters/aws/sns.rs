//! Alerts on SNS: subject `Transaction Alert`, the alert as a JSON message, and message
//! attributes that subscribers can filter on (`TransactionType`, `AlertType`, `Amount`, ...).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::describe;
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::Alert;
use crate::domain::alert::ALERT_SUBJECT;
use crate::ports::{Notifier, PortError};

const COMPONENT: &str = "notifier";

const TOPIC: &str = "topic:NotificationsTopic";
/// The calls below, and those SNS makes to KMS for the encrypted topic, for the permission test.
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("publish", "sns:Publish", TOPIC, &[Processor]),
    AwsCall::new("", "kms:GenerateDataKey", "kms-key:any", &[Processor]).via("sns"),
    AwsCall::new("", "kms:Decrypt", "kms-key:any", &[Processor]).via("sns"),
];

pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

fn attributes(alert: &Alert) -> HashMap<String, MessageAttributeValue> {
    alert
        .attributes()
        .into_iter()
        .map(|(name, value)| {
            // `Amount` is a Number so that filter policies can compare it numerically.
            let data_type = if name == "Amount" { "Number" } else { "String" };
            let attribute = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .expect("an attribute with a data type always builds");
            (name.to_owned(), attribute)
        })
        .collect()
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(ALERT_SUBJECT)
            .message(alert.message().to_string())
            .set_message_attributes(Some(attributes(alert)))
            .send()
            .await
            .map_err(|error| PortError::unavailable(COMPONENT, describe(&error)))?;
        Ok(())
    }
}
