//! SSM Parameter Store: text kept outside the binary and changed without a deploy (the alert
//! rules).

use async_trait::async_trait;
use aws_sdk_ssm::error::ProvideErrorMetadata;

use super::describe;
use crate::aws_calls::{AwsCall, Caller::*};
use crate::ports::{Parameter, ParameterValue, PortError};

pub const AWS_CALLS: &[AwsCall] = &[AwsCall::new(
    "get_parameter",
    "ssm:GetParameter",
    "parameter:AlertRulesParameterName",
    // The API reads the rules for `GET /rules`.
    &[Processor, Api],
)];

pub struct SsmParameter {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmParameter {
    pub fn new(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl Parameter for SsmParameter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self) -> Result<Option<ParameterValue>, PortError> {
        // Decryption is asked for always: it is what a SecureString needs, and a plain String
        // ignores it.
        let request = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true);
        match request.send().await {
            Ok(output) => {
                let parameter = output
                    .parameter
                    .unwrap_or_else(|| aws_sdk_ssm::types::Parameter::builder().build());
                Ok(Some(ParameterValue {
                    version: parameter.version,
                    text: parameter.value.unwrap_or_default(),
                }))
            }
            Err(error) if error.code() == Some("ParameterNotFound") => Ok(None),
            Err(error) => Err(PortError::unavailable("parameter store", describe(&error))),
        }
    }
}
