//! Picking an adapter for each port from the settings. Each port chooses on its own: `BACKEND`
//! sets the default and `QUEUE_BACKEND`, `STORE_BACKEND` or `NOTIFIER_BACKEND` override it, so
//! an embedded store behind an SQS queue is a configuration, not a code change. A binary asks
//! only for the ports it uses, so it never needs the settings of the others. This is the only
//! module outside the adapters that names one: the binaries import adapters through it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use clap::{Args, ValueEnum};
use tokio::sync::OnceCell;

use super::aws::{
    DEFAULT_INDEX_SHARDS, DynamoKeys, DynamoLists, DynamoStore, DynamoWebhooks, SecretsKey,
    SnsNotifier, SqsDeliveries, SqsQueue, SsmParameter,
};
use super::embedded::{QueueSettings, SqliteNotifier, SqliteQueue, SqliteStore};
use crate::ports::{
    Backlog, Consumer, DeadLetters, DeliveryLog, DeliveryQueue, InboxBackfill, KeyAdmin, KeyLookup,
    ListAdmin, ListMembership, Lists, Notifier, Parameter, PortError, Producer, Queue, ShopStore,
    Store, WebhookOutbox, WebhookRegistry, Webhooks,
};
use crate::settings::parse_seconds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite files in the data directory: no setup.
    Embedded,
    /// SQS, DynamoDB and SNS (or an AWS-compatible server through `AWS_ENDPOINT_URL`).
    Aws,
}

#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    /// The adapter of every port that is not set on its own below.
    #[arg(long, env = "BACKEND", value_enum, default_value = "embedded")]
    pub backend: Backend,

    /// The queue's adapter, if not `--backend`'s.
    #[arg(long, env = "QUEUE_BACKEND", value_enum)]
    pub queue_backend: Option<Backend>,

    /// The store's adapter, if not `--backend`'s.
    #[arg(long, env = "STORE_BACKEND", value_enum)]
    pub store_backend: Option<Backend>,

    /// The notifier's adapter, if not `--backend`'s.
    #[arg(long, env = "NOTIFIER_BACKEND", value_enum)]
    pub notifier_backend: Option<Backend>,

    #[command(flatten)]
    pub embedded: EmbeddedArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EmbeddedArgs {
    /// Embedded: where the queue, store and alerts live (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Embedded: seconds a received message stays invisible before it is delivered again.
    #[arg(long, env = "QUEUE_VISIBILITY_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub queue_visibility_timeout: Duration,

    /// Embedded: receives after which an unacknowledged message goes to the dead letters (on
    /// SQS, the queue's redrive policy decides). With the processor's retry waits, 20 receives
    /// ride out an outage of about two and a half hours.
    #[arg(long, env = "QUEUE_MAX_RECEIVES", default_value_t = 20)]
    pub queue_max_receives: u32,
}

#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// SQS: the transactions queue's URL.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,

    /// SQS: the dead-letter queue's URL (needed by whoever consumes the queue).
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,

    /// DynamoDB: the transactions table.
    #[arg(long, env = "TABLE_NAME", default_value = "ECommerceTransactions")]
    pub table_name: String,

    /// SNS: the alerts topic's ARN.
    #[arg(long, env = "TOPIC_ARN")]
    pub topic_arn: Option<String>,

    /// DynamoDB: the webhooks table (the shops' webhooks and their deliveries). Without it,
    /// `/webhooks` answers 404 when the store is DynamoDB.
    #[arg(long, env = "WEBHOOKS_TABLE")]
    pub webhooks_table: Option<String>,

    /// The key webhook secrets are encrypted with in the webhooks table: at least 32 bytes
    /// (the template passes a generated secret). Needed with `WEBHOOKS_TABLE`.
    // Read as text and checked when used: a value clap refuses would be repeated in its error.
    #[arg(long, env = "WEBHOOK_SECRET_KEY", hide_env_values = true)]
    pub webhook_secret_key: Option<String>,

    /// SQS: the webhook deliveries queue (the webhooks function sends to it and works it).
    #[arg(long, env = "WEBHOOK_QUEUE_URL")]
    pub webhook_queue_url: Option<String>,

    /// Seconds one attempt of an AWS call may take (connecting included) before it is given
    /// up and retried: a service that accepts connections and never answers is a failure, not
    /// a wait. An SQS long poll gets its wait on top.
    #[arg(long, env = "AWS_ATTEMPT_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub aws_attempt_timeout: Duration,

    /// Seconds an AWS call may take with its retries.
    #[arg(long, env = "AWS_OPERATION_TIMEOUT", default_value = "12", value_parser = parse_seconds)]
    pub aws_operation_timeout: Duration,
}

/// What the caller will do with the queue: a consumer dead-letters, so it needs the DLQ too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRole {
    Producer,
    Consumer,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the {port} on AWS needs {setting}")]
    Missing {
        port: &'static str,
        setting: &'static str,
    },
    #[error("opening the {port}: {source}")]
    Open {
        port: &'static str,
        source: PortError,
    },
}

impl PortArgs {
    pub fn queue_backend(&self) -> Backend {
        self.queue_backend.unwrap_or(self.backend)
    }

    pub fn store_backend(&self) -> Backend {
        self.store_backend.unwrap_or(self.backend)
    }

    pub fn notifier_backend(&self) -> Backend {
        self.notifier_backend.unwrap_or(self.backend)
    }

    /// Connects ports on demand; AWS configuration is loaded once, on first need.
    pub fn connector(&self) -> Connector<'_> {
        Connector {
            args: self,
            aws: OnceCell::new(),
            queue: OnceCell::new(),
            store: OnceCell::new(),
            sqlite: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
            backfill: std::sync::OnceLock::new(),
            dynamo_webhooks: OnceCell::new(),
            dynamo_lists: OnceCell::new(),
        }
    }
}

/// Opens each adapter once, however many sides of it are asked for: the API's producer and the
/// in-process worker's consumer are one embedded queue, whose commits wake the worker.
pub struct Connector<'a> {
    args: &'a PortArgs,
    aws: OnceCell<SdkConfig>,
    queue: OnceCell<Arc<dyn Queue>>,
    store: OnceCell<Arc<dyn Store>>,
    /// The embedded store, set when it is opened, for the ports beside the `Store` (lists).
    sqlite: std::sync::OnceLock<Arc<SqliteStore>>,
    /// The embedded store's webhooks, set when it is opened.
    webhooks: std::sync::OnceLock<Arc<dyn Webhooks>>,
    /// The opened store's inbox backfill, set when it is opened.
    backfill: std::sync::OnceLock<Arc<dyn InboxBackfill>>,
    dynamo_webhooks: OnceCell<Arc<DynamoWebhooks>>,
    dynamo_lists: OnceCell<Arc<DynamoLists>>,
}

/// How long a connection to an AWS endpoint may take to open (the SDK's own default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

impl Connector<'_> {
    /// The standard AWS configuration chain (environment, profile, instance or Lambda role),
    /// with a deadline on every call.
    pub async fn aws_config(&self) -> &SdkConfig {
        let aws = &self.args.aws;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(aws.aws_attempt_timeout))
            .operation_attempt_timeout(aws.aws_attempt_timeout)
            .operation_timeout(aws.aws_operation_timeout)
            .build();
        self.aws
            .get_or_init(|| {
                aws_config::defaults(BehaviorVersion::latest())
                    .timeout_config(timeouts)
                    .load()
            })
            .await
    }

    pub fn queue_backend(&self) -> Backend {
        self.args.queue_backend()
    }

    /// The sending side of the queue (the API).
    pub async fn producer(&self) -> Result<Arc<dyn Producer>, SettingsError> {
        Ok(self.queue(QueueRole::Producer).await?)
    }

    /// The receiving side of the queue (the processor).
    pub async fn consumer(&self) -> Result<Arc<dyn Consumer>, SettingsError> {
        Ok(self.queue(QueueRole::Consumer).await?)
    }

    /// The dead letters (the operator's commands).
    pub async fn dead_letters(&self) -> Result<Arc<dyn DeadLetters>, SettingsError> {
        Ok(self.queue(QueueRole::Consumer).await?)
    }

    /// How much waits on the queue and its dead letters (the operator's overview).
    pub async fn backlog(&self) -> Result<Arc<dyn Backlog>, SettingsError> {
        Ok(self.queue(QueueRole::Consumer).await?)
    }

    /// The whole queue adapter, opened once.
    async fn queue(&self, role: QueueRole) -> Result<Arc<dyn Queue>, SettingsError> {
        if role == QueueRole::Consumer && self.args.queue_backend() == Backend::Aws {
            required(
                &self.args.aws.dead_letter_queue_url,
                "queue",
                "DEAD_LETTER_QUEUE_URL",
            )?;
        }
        self.queue
            .get_or_try_init(|| self.open_queue())
            .await
            .cloned()
    }

    async fn open_queue(&self) -> Result<Arc<dyn Queue>, SettingsError> {
        const PORT: &str = "queue";
        match self.args.queue_backend() {
            Backend::Embedded => {
                let embedded = &self.args.embedded;
                let settings = QueueSettings {
                    visibility_timeout: embedded.queue_visibility_timeout,
                    max_receives: embedded.queue_max_receives,
                };
                let path = data_file(&embedded.data_dir, "queue.db", PORT)?;
                let queue = SqliteQueue::open(&path, settings).map_err(open_error(PORT))?;
                Ok(Arc::new(queue))
            }
            Backend::Aws => {
                let aws = &self.args.aws;
                let queue_url = required(&aws.queue_url, PORT, "QUEUE_URL")?;
                let dead_letter_queue_url = aws.dead_letter_queue_url.clone();
                let client = aws_sdk_sqs::Client::new(self.aws_config().await);
                Ok(Arc::new(SqsQueue::new(
                    client,
                    queue_url,
                    dead_letter_queue_url,
                )))
            }
        }
    }

    /// The shops' webhooks (the API), beside the store: in the embedded store, or in the
    /// webhooks table when the store is DynamoDB and `WEBHOOKS_TABLE` is set (`None` if not).
    pub async fn webhook_registry(
        &self,
    ) -> Result<Option<Arc<dyn WebhookRegistry>>, SettingsError> {
        match self.args.store_backend() {
            Backend::Embedded => {
                self.store().await?;
                Ok(self
                    .webhooks
                    .get()
                    .cloned()
                    .map(|webhooks| webhooks as Arc<dyn WebhookRegistry>))
            }
            Backend::Aws if self.args.aws.webhooks_table.is_none() => Ok(None),
            Backend::Aws => Ok(Some(self.dynamo_webhooks().await?)),
        }
    }

    /// The shops' lists to manage (the API): in the embedded store, or beside the webhooks in
    /// `WEBHOOKS_TABLE` when the store is DynamoDB (`None` if it is not set).
    pub async fn list_admin(&self) -> Result<Option<Arc<dyn ListAdmin>>, SettingsError> {
        Ok(self.lists().await?.map(|lists| lists as Arc<dyn ListAdmin>))
    }

    /// The shops' lists to look values up in (the processor, backtests); on DynamoDB only
    /// when `WEBHOOKS_TABLE` is set, which `list` rules then need.
    pub async fn list_membership(&self) -> Result<Option<Arc<dyn ListMembership>>, SettingsError> {
        Ok(self
            .lists()
            .await?
            .map(|lists| lists as Arc<dyn ListMembership>))
    }

    async fn lists(&self) -> Result<Option<Arc<dyn Lists>>, SettingsError> {
        match self.args.store_backend() {
            Backend::Embedded => Ok(Some(self.sqlite_store().await?)),
            Backend::Aws if self.args.aws.webhooks_table.is_none() => Ok(None),
            Backend::Aws => Ok(Some(self.dynamo_lists().await?)),
        }
    }

    async fn sqlite_store(&self) -> Result<Arc<SqliteStore>, SettingsError> {
        self.store().await?;
        Ok(self
            .sqlite
            .get()
            .cloned()
            .expect("opening the embedded store keeps it"))
    }

    async fn dynamo_lists(&self) -> Result<Arc<DynamoLists>, SettingsError> {
        let table = required(&self.args.aws.webhooks_table, "lists", "WEBHOOKS_TABLE")?;
        let config = self.aws_config().await;
        Ok(self
            .dynamo_lists
            .get_or_init(|| async {
                let client = aws_sdk_dynamodb::Client::new(config);
                Arc::new(DynamoLists::new(client, table))
            })
            .await
            .clone())
    }

    /// The deliveries the embedded store holds, for the sender in the API's process; `None` on
    /// DynamoDB, where an SQS queue holds them for the webhooks function.
    pub async fn webhook_outbox(&self) -> Result<Option<Arc<dyn WebhookOutbox>>, SettingsError> {
        if self.args.store_backend() == Backend::Aws {
            return Ok(None);
        }
        self.store().await?;
        Ok(self
            .webhooks
            .get()
            .cloned()
            .map(|webhooks| webhooks as Arc<dyn WebhookOutbox>))
    }

    /// The deliveries list on DynamoDB (the webhooks function).
    pub async fn delivery_log(&self) -> Result<Arc<dyn DeliveryLog>, SettingsError> {
        Ok(self.dynamo_webhooks().await?)
    }

    /// The webhook deliveries queue on SQS (the webhooks function).
    pub async fn delivery_queue(&self) -> Result<Arc<dyn DeliveryQueue>, SettingsError> {
        let queue_url = required(
            &self.args.aws.webhook_queue_url,
            "webhook deliveries queue",
            "WEBHOOK_QUEUE_URL",
        )?;
        let client = aws_sdk_sqs::Client::new(self.aws_config().await);
        Ok(Arc::new(SqsDeliveries::new(client, queue_url)))
    }

    async fn dynamo_webhooks(&self) -> Result<Arc<DynamoWebhooks>, SettingsError> {
        const PORT: &str = "webhooks";
        let aws = &self.args.aws;
        let table = required(&aws.webhooks_table, PORT, "WEBHOOKS_TABLE")?;
        let key = required(&aws.webhook_secret_key, PORT, "WEBHOOK_SECRET_KEY")?;
        let key = SecretsKey::from_setting(&key).map_err(|reason| SettingsError::Open {
            port: PORT,
            source: PortError::rejected(PORT, reason),
        })?;
        let config = self.aws_config().await;
        Ok(self
            .dynamo_webhooks
            .get_or_init(|| async {
                let client = aws_sdk_dynamodb::Client::new(config);
                Arc::new(DynamoWebhooks::new(client, table, key))
            })
            .await
            .clone())
    }

    /// Opening inbox items for alerts stored before the inbox (`processor inbox backfill`).
    pub async fn inbox_backfill(&self) -> Result<Arc<dyn InboxBackfill>, SettingsError> {
        self.store().await?;
        Ok(self
            .backfill
            .get()
            .cloned()
            .expect("opening the store sets its backfill"))
    }

    /// Reading stored transactions and working the alert inbox (the API).
    pub async fn shop_store(&self) -> Result<Arc<dyn ShopStore>, SettingsError> {
        Ok(self.store().await?)
    }

    /// The whole store adapter, opened once; the processor keeps each of its ports apart.
    pub async fn store(&self) -> Result<Arc<dyn Store>, SettingsError> {
        self.store
            .get_or_try_init(|| self.open_store())
            .await
            .cloned()
    }

    async fn open_store(&self) -> Result<Arc<dyn Store>, SettingsError> {
        const PORT: &str = "store";
        match self.args.store_backend() {
            Backend::Embedded => {
                let path = data_file(&self.args.embedded.data_dir, "store.db", PORT)?;
                let store = Arc::new(SqliteStore::open(&path).map_err(open_error(PORT))?);
                let _ = self.sqlite.set(store.clone());
                let _ = self.webhooks.set(store.clone());
                let _ = self.backfill.set(store.clone());
                Ok(store)
            }
            Backend::Aws => {
                let client = aws_sdk_dynamodb::Client::new(self.aws_config().await);
                let store = Arc::new(DynamoStore::new(
                    client,
                    self.args.aws.table_name.clone(),
                    DEFAULT_INDEX_SHARDS,
                ));
                let _ = self.backfill.set(store.clone());
                Ok(store)
            }
        }
    }

    pub async fn notifier(&self) -> Result<Arc<dyn Notifier>, SettingsError> {
        const PORT: &str = "notifier";
        match self.args.notifier_backend() {
            Backend::Embedded => {
                let path = data_file(&self.args.embedded.data_dir, "alerts.db", PORT)?;
                Ok(Arc::new(
                    SqliteNotifier::open(&path).map_err(open_error(PORT))?,
                ))
            }
            Backend::Aws => {
                let topic_arn = required(&self.args.aws.topic_arn, PORT, "TOPIC_ARN")?;
                let client = aws_sdk_sns::Client::new(self.aws_config().await);
                Ok(Arc::new(SnsNotifier::new(client, topic_arn)))
            }
        }
    }
}

impl Connector<'_> {
    /// A parameter kept outside the binary: always SSM (there is no embedded parameter store;
    /// locally the same text comes from a file).
    pub async fn parameter(&self, name: &str) -> Arc<dyn Parameter> {
        let client = aws_sdk_ssm::Client::new(self.aws_config().await);
        Arc::new(SsmParameter::new(client, name))
    }

    /// Looking API keys up, one at a time (the API): a DynamoDB table of its own.
    pub async fn key_lookup(&self, table: &str) -> Arc<dyn KeyLookup> {
        self.key_admin(table).await
    }

    /// Managing API keys (the operator's commands).
    pub async fn key_admin(&self, table: &str) -> Arc<dyn KeyAdmin> {
        let client = aws_sdk_dynamodb::Client::new(self.aws_config().await);
        Arc::new(DynamoKeys::new(client, table))
    }
}

fn required(
    value: &Option<String>,
    port: &'static str,
    setting: &'static str,
) -> Result<String, SettingsError> {
    value
        .clone()
        .ok_or(SettingsError::Missing { port, setting })
}

fn open_error(port: &'static str) -> impl FnOnce(PortError) -> SettingsError {
    move |source| SettingsError::Open { port, source }
}

/// A file in the data directory, which is created if missing.
fn data_file(
    dir: &std::path::Path,
    name: &str,
    port: &'static str,
) -> Result<PathBuf, SettingsError> {
    std::fs::create_dir_all(dir).map_err(|error| SettingsError::Open {
        port,
        source: PortError::unavailable("data directory", format!("{}: {error}", dir.display())),
    })?;
    Ok(dir.join(name))
}
