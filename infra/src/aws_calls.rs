//! The AWS calls the code makes, each with the IAM action it needs and the resource it acts on
//! as template.yaml names it. Each module that calls AWS lists its own calls next to them (an
//! `AWS_CALLS` table); this module only says what such a table holds, and imports nothing of
//! the crate, so that any module can name a call without a cycle. The permission test (api/tests/permissions.rs) checks that every SDK
//! call in the code is listed, and that template.yaml grants each one to the function that
//! makes it.

use serde::Serialize;

/// Who makes a call: a Lambda function of the template, or an operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Caller {
    /// `ApiFunction`.
    Api,
    /// `ProcessorFunction`.
    Processor,
    /// `WebhooksFunction`: turns alert changes into deliveries, and makes them.
    Webhooks,
    /// `processor dead-letters …`, run by a person with their own credentials.
    Operator,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AwsCall {
    /// The SDK operation as the code calls it (`send_message`); empty for a call AWS makes on
    /// the code's behalf (KMS behind SNS, the SQS event source, the Lambda log agent).
    pub operation: &'static str,
    /// The IAM action it needs.
    pub action: &'static str,
    /// What it acts on: `queue:<logical id>`, `table:…`, `index:<table>/<index>`, `topic:…`,
    /// `parameter:<template parameter>`, `log-group:…` or `kms-key:any`.
    pub resource: &'static str,
    pub callers: &'static [Caller],
    /// The `kms:ViaService` service of a call made through another service, if any.
    pub via: Option<&'static str>,
    /// The item attributes a DynamoDB write names (its key included), for a grant scoped by
    /// `dynamodb:Attributes`; empty when the call's grant is not scoped.
    pub attributes: &'static [&'static str],
}

impl AwsCall {
    pub const fn new(
        operation: &'static str,
        action: &'static str,
        resource: &'static str,
        callers: &'static [Caller],
    ) -> Self {
        Self {
            operation,
            action,
            resource,
            callers,
            via: None,
            attributes: &[],
        }
    }

    pub const fn via(mut self, service: &'static str) -> Self {
        self.via = Some(service);
        self
    }

    pub const fn writing(mut self, attributes: &'static [&'static str]) -> Self {
        self.attributes = attributes;
        self
    }
}
