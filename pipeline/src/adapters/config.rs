//! Choosing the backend from flags and environment, shared by both binaries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::aws::{AwsBackend, AwsResources};
use super::embedded::{EmbeddedBackend, QueueSettings};
use crate::ports::{Notifier, PortError, Queue, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// SQLite files in the data directory: no setup.
    Embedded,
    /// SQS, DynamoDB and SNS (or an AWS-compatible server through `AWS_ENDPOINT_URL`).
    Aws,
}

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Which queue, store and notifier to use.
    #[arg(long, env = "BACKEND", value_enum, default_value = "embedded")]
    pub backend: BackendKind,

    /// Embedded: where the queue, store and alerts live (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Embedded: seconds a received message stays invisible before it is delivered again.
    #[arg(long, env = "QUEUE_VISIBILITY_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub queue_visibility_timeout: Duration,

    /// Embedded: receives after which an unacknowledged message goes to the dead letters (on
    /// AWS, the queue's redrive policy decides).
    #[arg(long, env = "QUEUE_MAX_RECEIVES", default_value_t = 5)]
    pub queue_max_receives: u32,

    /// AWS: the transactions queue's URL.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,

    /// AWS: the dead-letter queue's URL.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    /// AWS: the DynamoDB table.
    #[arg(long, env = "TABLE_NAME", default_value = "ECommerceTransactions")]
    pub table_name: String,

    /// AWS: the SNS topic for alerts.
    #[arg(long, env = "TOPIC_ARN")]
    pub topic_arn: Option<String>,
}

/// The three ports, whichever adapters are behind them.
#[derive(Clone)]
pub struct Backend {
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
}

impl BackendArgs {
    pub async fn connect(&self) -> Result<Backend, PortError> {
        match self.backend {
            BackendKind::Embedded => {
                let settings = QueueSettings {
                    visibility_timeout: self.queue_visibility_timeout,
                    max_receives: self.queue_max_receives,
                };
                let backend = EmbeddedBackend::open(&self.data_dir, settings)?;
                Ok(Backend {
                    queue: backend.queue,
                    store: backend.store,
                    notifier: backend.notifier,
                })
            }
            BackendKind::Aws => {
                let required = |value: &Option<String>, name: &str| {
                    value.clone().ok_or_else(|| {
                        PortError::rejected("configuration", format!("BACKEND=aws needs {name}"))
                    })
                };
                let resources = AwsResources {
                    queue_url: required(&self.queue_url, "QUEUE_URL")?,
                    dead_letter_queue_url: required(
                        &self.dead_letter_queue_url,
                        "DEAD_LETTER_QUEUE_URL",
                    )?,
                    table_name: self.table_name.clone(),
                    topic_arn: required(&self.topic_arn, "TOPIC_ARN")?,
                };
                let backend = AwsBackend::connect(resources).await;
                Ok(Backend {
                    queue: backend.queue,
                    store: backend.store,
                    notifier: backend.notifier,
                })
            }
        }
    }
}

pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}
