//! The processor on an AWS emulator (moto): a mixed batch through the Lambda handler, the
//! original system's own test path through `processor poll`, and the binary in Lambda mode.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use pipeline::adapters::aws::AwsBackend;
use pipeline::domain::{ShopId, TransactionRecord};
use pipeline::ports::{PortError, PutOutcome, Queue, Store};
use processor::Processor;
use processor::lambda::handle_sqs_event;
use serde_json::json;
use testkit::{ResourceOptions, Resources};

fn envelope(id: &str, amount: &str) -> String {
    json!({
        "version": 1, "shop_id": "shop-a", "accepted_at": Utc::now(), "request_id": format!("req-{id}"),
        "transaction": {"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z"}
    })
    .to_string()
}

async fn send_raw(resources: &Resources, bodies: &[String]) {
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

fn aws_env(resources: &Resources) -> Vec<(&'static str, String)> {
    let mut env = testkit::moto().env();
    env.extend([
        ("BACKEND", "aws".to_owned()),
        ("QUEUE_URL", resources.aws.queue_url.clone()),
        (
            "DEAD_LETTER_QUEUE_URL",
            resources.aws.dead_letter_queue_url.clone(),
        ),
        ("TABLE_NAME", resources.aws.table_name.clone()),
        ("TOPIC_ARN", resources.aws.topic_arn.clone()),
    ]);
    env
}

/// DynamoDB throttling one transaction, as a hot key or a brief outage would.
struct ThrottledFor {
    inner: Arc<dyn Store>,
    transaction_id: &'static str,
}

#[async_trait]
impl Store for ThrottledFor {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        if record.transaction.transaction_id == self.transaction_id {
            return Err(PortError::unavailable(
                "store",
                "ProvisionedThroughputExceededException",
            ));
        }
        self.inner.put_if_absent(record).await
    }
    async fn get(
        &self,
        shop_id: &ShopId,
        id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        self.inner.get(shop_id, id).await
    }
    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.mark_alert_sent(shop_id, id, at).await
    }
    async fn ping(&self) -> Result<(), PortError> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ten_with_poison_and_a_transient_failure() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let mut bodies: Vec<String> = (0..8)
        .map(|i| envelope(&format!("ok-{i}"), "10.00"))
        .collect();
    bodies.push("{\"this is\": \"poison\"".to_owned());
    bodies.push(envelope("throttled", "10.00"));
    send_raw(&resources, &bodies).await;
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        10,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(messages.len(), 10);
    let event: SqsEvent = serde_json::from_value(testkit::sqs_event(&messages)).expect("event");

    let backend = AwsBackend::from_config(&resources.config, resources.aws.clone());
    let store: Arc<dyn Store> = Arc::new(ThrottledFor {
        inner: backend.store.clone(),
        transaction_id: "throttled",
    });
    let processor = Processor::new(
        backend.queue.clone(),
        store,
        backend.notifier.clone(),
        Default::default(),
        10,
    );
    let response = handle_sqs_event(&processor, event).await;

    let throttled_id = messages
        .iter()
        .find(|m| {
            m.body
                .as_deref()
                .is_some_and(|body| body.contains("\"throttled\""))
        })
        .and_then(|m| m.message_id.clone())
        .expect("the throttled message");
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        [throttled_id.as_str()],
        "only the transient failure is reported"
    );

    let dead = backend.queue.peek_dead_letters(10).await.expect("peek");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].body.contains("poison"));
    assert!(
        dead[0].reason.contains("not a JSON object"),
        "{}",
        dead[0].reason
    );

    let shop = ShopId::parse("shop-a").expect("shop");
    for i in 0..8 {
        let stored = backend
            .store
            .get(&shop, &format!("ok-{i}"))
            .await
            .expect("get");
        assert!(stored.is_some(), "ok-{i} stored");
    }
    assert!(
        backend
            .store
            .get(&shop, "throttled")
            .await
            .expect("get")
            .is_none()
    );
}

/// The original system's test: its message put straight on the queue with boto3, picked up by
/// `processor poll`, stored for shop `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_systems_message_sent_with_boto3_is_stored_by_processor_poll() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let send = std::process::Command::new("python3")
        .args([
            "-c",
            "import boto3, sys; boto3.client('sqs', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing').send_message(QueueUrl=sys.argv[2], \
             MessageBody='{\"transaction_id\": 12345, \"amount\": 100, \"timestamp\": \"2024-08-09T12:34:56Z\"}')",
            &testkit::moto().endpoint,
            &resources.aws.queue_url,
        ])
        .status()
        .expect("python3 with boto3");
    assert!(send.success(), "boto3 could not send the message");

    let mut poller = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("poll")
        .envs(aws_env(&resources))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor poll");
    let backend = AwsBackend::from_config(&resources.config, resources.aws.clone());
    let shop = ShopId::default_shop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        if let Some(record) = backend.store.get(&shop, "12345").await.expect("get") {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "not stored by processor poll in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.transaction.amount.to_string(), "100.00");
    assert_eq!(stored.transaction.currency, "USD");
    let pid = poller.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(30), poller.wait())
        .await
        .expect("poll stopped after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

/// The `processor` binary in Lambda mode under a stub of the Lambda Runtime API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_runs_in_lambda_mode_for_sqs_events() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    send_raw(
        &resources,
        &[envelope("lambda-1", "1500.00"), "poison".to_owned()],
    )
    .await;
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        2,
        Duration::from_secs(20),
    )
    .await;
    let stub =
        testkit::lambda_runtime_stub::RuntimeStub::start(vec![testkit::sqs_event(&messages)]).await;
    let mut env = aws_env(&resources);
    env.extend(stub.env("ProcessorFunction"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .envs(env)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor");
    let answers = stub.answers(1, Duration::from_secs(30)).await;
    assert!(!answers[0].failed, "{:?}", answers[0]);
    assert_eq!(answers[0].body, json!({"batchItemFailures": []}));
    let backend = AwsBackend::from_config(&resources.config, resources.aws.clone());
    let stored = backend
        .store
        .get(&ShopId::parse("shop-a").expect("shop"), "lambda-1")
        .await
        .expect("get");
    assert_eq!(
        stored.and_then(|r| r.alert).map(|a| a.state.as_str()),
        Some("sent")
    );
    assert_eq!(
        backend
            .queue
            .peek_dead_letters(10)
            .await
            .expect("peek")
            .len(),
        1
    );
    // Metrics leave as CloudWatch Embedded Metric Format on stdout, written once the invocation
    // is answered: read until the invocation's document arrives.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("transactions_processed_total") {
                return;
            }
        }
    })
    .await;
    let _ = child.kill().await;
    assert!(
        read.is_ok(),
        "no EMF document with the processing metrics on stdout: {seen}"
    );
    assert!(seen.contains("\"CloudWatchMetrics\""), "{seen}");
    assert!(seen.contains("\"ColdStart\":1"), "{seen}");
    assert!(seen.contains("alerts_sent_total"), "{seen}");
}
