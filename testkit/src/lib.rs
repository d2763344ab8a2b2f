//! Test support: a moto server (an AWS emulator from PyPI) on a free loopback port, fresh
//! pipeline resources on it for each test, the adapters over them, and a stub of the Lambda
//! Runtime API.

mod delivery;
pub mod doubles;
pub mod lambda_runtime_stub;
pub mod proxy;
pub mod sqs_stand_in;
pub mod template;

pub use delivery::{deliver, poller};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use infra::adapters::aws::{DEFAULT_INDEX_SHARDS, DynamoStore, SnsNotifier, SqsQueue};
use infra::adapters::embedded::{QueueSettings, SqliteNotifier, SqliteQueue, SqliteStore};

/// The three embedded adapters on one data directory, as the binaries open them.
pub struct EmbeddedPorts {
    pub queue: Arc<SqliteQueue>,
    pub store: Arc<SqliteStore>,
    pub notifier: Arc<SqliteNotifier>,
}

pub fn embedded(data_dir: &Path, settings: QueueSettings) -> EmbeddedPorts {
    EmbeddedPorts {
        queue: Arc::new(SqliteQueue::open(&data_dir.join("queue.db"), settings).expect("queue")),
        store: Arc::new(SqliteStore::open(&data_dir.join("store.db")).expect("store")),
        notifier: Arc::new(SqliteNotifier::open(&data_dir.join("alerts.db")).expect("notifier")),
    }
}

/// Where the AWS resources of a test are.
#[derive(Debug, Clone)]
pub struct AwsResources {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub table_name: String,
    pub topic_arn: String,
    pub api_keys_table: String,
    pub webhooks_table: String,
    pub webhook_queue_url: String,
}

/// The webhook secrets key the tests' binaries are given (any 32 bytes or more).
pub const WEBHOOK_SECRET_KEY: &str = "test-webhook-secrets-key-0123456789abcdef0123456789";

/// The three AWS adapters over one set of resources.
pub struct AwsPorts {
    pub queue: Arc<SqsQueue>,
    pub store: Arc<DynamoStore>,
    pub notifier: Arc<SnsNotifier>,
}

/// One emulator per test binary, started on first use and gone when the binary exits.
pub struct Moto {
    pub endpoint: String,
    _process: Child,
}

const HOW_TO_INSTALL: &str = "moto's server is needed for the AWS tests: \
    `python3 -m pip install 'moto[server]'` (scripts/test.sh does this)";

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

fn start_moto() -> Moto {
    let check = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .status();
    assert!(
        matches!(check, Ok(status) if status.success()),
        "{HOW_TO_INSTALL}"
    );
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_server.py");
    let process = Command::new("python3")
        .args([script, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start moto ({error}); {HOW_TO_INSTALL}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _process: process,
    }
}

impl Moto {
    /// SDK configuration for the emulator, with dummy credentials.
    pub async fn config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "testkit",
            ))
            .load()
            .await
    }

    /// Environment for a child process that should use the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

/// A fresh set of pipeline resources on the emulator, with unique names.
pub struct Resources {
    pub config: SdkConfig,
    pub aws: AwsResources,
    /// A queue subscribed to the alerts topic with raw delivery, to see what subscribers get.
    pub subscriber_queue_url: String,
}

impl Resources {
    /// The adapters over these resources, with the test's SDK configuration.
    pub fn ports(&self) -> AwsPorts {
        self.ports_with(&self.config)
    }

    /// The adapters over these resources, with clients built from `config`.
    pub fn ports_with(&self, config: &SdkConfig) -> AwsPorts {
        AwsPorts {
            queue: Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(config),
                self.aws.queue_url.clone(),
                Some(self.aws.dead_letter_queue_url.clone()),
            )),
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(config),
                self.aws.table_name.clone(),
                DEFAULT_INDEX_SHARDS,
            )),
            notifier: Arc::new(SnsNotifier::new(
                aws_sdk_sns::Client::new(config),
                self.aws.topic_arn.clone(),
            )),
        }
    }

    /// Environment for the API on these resources: only what it uses (the queue, the tables),
    /// which proves it needs nothing else.
    pub fn api_env(&self) -> Vec<(&'static str, String)> {
        self.env()
            .into_iter()
            .filter(|(name, _)| {
                !matches!(
                    *name,
                    "DEAD_LETTER_QUEUE_URL" | "TOPIC_ARN" | "WEBHOOK_QUEUE_URL"
                )
            })
            .collect()
    }

    /// Environment for a binary that should use these resources on the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = moto().env();
        env.extend([
            ("BACKEND", "aws".to_owned()),
            ("QUEUE_URL", self.aws.queue_url.clone()),
            (
                "DEAD_LETTER_QUEUE_URL",
                self.aws.dead_letter_queue_url.clone(),
            ),
            ("TABLE_NAME", self.aws.table_name.clone()),
            ("TOPIC_ARN", self.aws.topic_arn.clone()),
            ("WEBHOOKS_TABLE", self.aws.webhooks_table.clone()),
            ("WEBHOOK_QUEUE_URL", self.aws.webhook_queue_url.clone()),
            ("WEBHOOK_SECRET_KEY", WEBHOOK_SECRET_KEY.to_owned()),
        ]);
        env
    }
}

pub struct ResourceOptions {
    pub visibility_timeout_seconds: u32,
    pub max_receive_count: u32,
}

impl Default for ResourceOptions {
    fn default() -> Self {
        Self {
            visibility_timeout_seconds: 30,
            max_receive_count: 20,
        }
    }
}

/// Deploys the stateful resources of template.yaml (queue, dead-letter queue, table, topic) on
/// the emulator under unique names, through scripts/emulator.py, as the README's emulator
/// walk-through does: what the tests run against is what the template declares.
pub async fn resources(options: ResourceOptions) -> Resources {
    let config = moto().config().await;
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/emulator.py");
    let mut command = tokio::process::Command::new("python3");
    command.args([script, &moto().endpoint, "--json", "--stack", &name]);
    for (key, value) in [
        ("QueueName", name.clone()),
        ("TableName", name.clone()),
        ("TopicName", name.clone()),
        ("MaxReceiveCount", options.max_receive_count.to_string()),
    ] {
        command.args(["--param", &format!("{key}={value}")]);
    }
    let output = command.output().await.expect("run scripts/emulator.py");
    assert!(
        output.status.success(),
        "scripts/emulator.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let deployed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("emulator.py prints JSON");
    let physical = |logical: &str| {
        deployed[logical]
            .as_str()
            .unwrap_or_else(|| panic!("template.yaml has no {logical}: {deployed}"))
            .to_owned()
    };
    let queue_url = physical("TransactionsQueue");
    let sqs = aws_sdk_sqs::Client::new(&config);
    // Tests wait seconds, not the template's minutes, for a lease to run out.
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            options.visibility_timeout_seconds.to_string(),
        )
        .send()
        .await
        .expect("set the visibility timeout");
    let topic_arn = physical("NotificationsTopic");
    let subscriber_queue_url = create_queue(&sqs, &format!("{name}-subscriber")).await;
    aws_sdk_sns::Client::new(&config)
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(&sqs, &subscriber_queue_url).await)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    Resources {
        config,
        aws: AwsResources {
            queue_url,
            dead_letter_queue_url: physical("DeadLetterQueue"),
            table_name: physical("TransactionsTable"),
            topic_arn,
            api_keys_table: physical("ApiKeysTable"),
            webhooks_table: physical("WebhooksTable"),
            webhook_queue_url: physical("WebhookDeliveriesQueue"),
        },
        subscriber_queue_url,
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue URL")
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .expect("queue ARN")
}

/// Receives what subscribers of the alerts topic got, until `want` arrived or `within` passed.
pub async fn subscriber_messages(
    resources: &Resources,
    want: usize,
    within: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    receive_until(
        &resources.config,
        &resources.subscriber_queue_url,
        want,
        within,
    )
    .await
}

/// Receives from a queue until `want` messages arrived (with their system and message
/// attributes, as Lambda's event source mapping receives them), or fails after `within`.
pub async fn receive_all(
    config: &SdkConfig,
    queue_url: &str,
    want: usize,
    within: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let all = receive_until(config, queue_url, want, within).await;
    assert!(
        all.len() >= want,
        "only {} of {want} messages arrived",
        all.len()
    );
    all
}

/// Receives until `want` messages arrived or `within` passed, whichever is first.
async fn receive_until(
    config: &SdkConfig,
    queue_url: &str,
    want: usize,
    within: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while all.len() < want && Instant::now() < deadline {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        all.extend(output.messages.unwrap_or_default());
    }
    all
}

/// A queue message as the API writes it, for shop `shop`.
pub fn envelope(shop: &str, id: &str, amount: &str) -> String {
    serde_json::json!({
        "version": 1, "shop_id": shop, "accepted_at": chrono::Utc::now(), "request_id": format!("req-{id}"),
        "transaction": {"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z"}
    })
    .to_string()
}

/// Puts bodies straight on the transactions queue, as a producer other than the API would.
pub async fn send_raw(resources: &Resources, bodies: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(&resources.config);
    for body in bodies {
        sqs.send_message()
            .queue_url(&resources.aws.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
}

/// The SQS event Lambda would deliver for these messages.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|message| {
            let attributes: serde_json::Map<String, serde_json::Value> = message
                .attributes
                .iter()
                .flatten()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        serde_json::Value::String(value.clone()),
                    )
                })
                .collect();
            serde_json::json!({
                "messageId": message.message_id,
                "receiptHandle": message.receipt_handle,
                "body": message.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Messages as received from SQS, as the queue port hands them to the processor.
pub fn as_received(messages: &[aws_sdk_sqs::types::Message]) -> Vec<infra::ports::ReceivedMessage> {
    messages
        .iter()
        .map(|message| infra::ports::ReceivedMessage {
            id: message.message_id.clone().unwrap_or_default(),
            receipt: message.receipt_handle.clone().unwrap_or_default(),
            body: message.body.clone().unwrap_or_default(),
            receive_count: 1,
            sent_at: chrono::Utc::now(),
        })
        .collect()
}
