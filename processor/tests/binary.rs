//! The `processor` binary on an AWS emulator (moto): the original system's own test path through
//! `processor poll`, and the binary in Lambda mode under a stub of the Lambda Runtime API.

use std::process::Stdio;
use std::time::{Duration, Instant};

use infra::domain::{Named, ShopId};
use infra::ports::{DeadLetters, Producer, RecordReader};
use serde_json::json;
use testkit::ResourceOptions;

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
        .envs(resources.env())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor poll");
    let backend = resources.ports();
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

/// Each port picks its adapter on its own: SQS for the queue, SQLite for the store and the
/// alerts, is a configuration (and the notifier on SQLite needs no topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_queue_feeds_an_embedded_store_by_configuration_alone() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let temp = tempfile::tempdir().expect("temp");
    testkit::send_raw(
        &resources,
        &[testkit::envelope("shop-a", "mixed-1", "1500.00")],
    )
    .await;
    let env: Vec<(&str, String)> = resources
        .env()
        .into_iter()
        .filter(|(name, _)| *name != "TOPIC_ARN")
        .chain([
            ("STORE_BACKEND", "embedded".to_owned()),
            ("NOTIFIER_BACKEND", "embedded".to_owned()),
            ("DATA_DIR", temp.path().to_string_lossy().into_owned()),
        ])
        .collect();
    let _poller = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .arg("poll")
        .envs(env)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor poll");
    let store = infra::adapters::embedded::SqliteStore::open(&temp.path().join("store.db"))
        .expect("the store the poller writes");
    let shop = ShopId::parse("shop-a").expect("shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        if let Some(record) = store.get(&shop, "mixed-1").await.expect("get")
            && record
                .alerts
                .first()
                .is_some_and(|alert| alert.state.name() == "sent")
        {
            break record;
        }
        assert!(Instant::now() < deadline, "not stored in SQLite in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.transaction.amount.to_string(), "1500.00");
    let notifier = infra::adapters::embedded::SqliteNotifier::open(&temp.path().join("alerts.db"))
        .expect("alerts");
    assert_eq!(notifier.published(&shop).await.expect("alerts").len(), 1);
}

/// The `processor` binary in Lambda mode under a stub of the Lambda Runtime API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_runs_in_lambda_mode_for_sqs_events() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    testkit::send_raw(
        &resources,
        &[
            testkit::envelope("shop-a", "lambda-1", "1500.00"),
            "poison".to_owned(),
        ],
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
    let mut env = resources.env();
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
    let backend = resources.ports();
    let stored = backend
        .store
        .get(&ShopId::parse("shop-a").expect("shop"), "lambda-1")
        .await
        .expect("get");
    assert_eq!(
        stored.and_then(|r| r.alerts.first().map(|a| a.state.name())),
        Some("sent")
    );
    assert_eq!(backend.queue.dead_letters(10).await.expect("peek").len(), 1);
    // Metrics leave as CloudWatch Embedded Metric Format on stdout, written once the invocation
    // is answered: read until the invocation's documents arrive.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            // One document per set of dimensions: the processing metrics and the cold start.
            if seen.contains("transactions_processed_total") && seen.contains("\"ColdStart\"") {
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
    // The cold start counts for its own function: both functions share the namespace.
    let cold_start = seen
        .lines()
        .find(|line| line.contains("\"ColdStart\":1"))
        .unwrap_or_else(|| panic!("no ColdStart: {seen}"));
    assert!(
        cold_start.contains("\"function\":\"ProcessorFunction\""),
        "{cold_start}"
    );
    assert!(seen.contains("alerts_sent_total"), "{seen}");
}

/// CPU seconds (user + system) the process has used so far, from /proc (Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ, 100 on Linux
}

/// Not a test: `scripts/bench/lambda.sh` runs it in release mode to measure the processor
/// Lambda's cold-start init time and its CPU time per 1000 messages against the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by scripts/bench/lambda.sh"]
async fn measure_cold_start_and_cpu_per_1000_messages() {
    const MESSAGES: usize = 1000;
    let resources = testkit::resources(ResourceOptions {
        visibility_timeout_seconds: 600,
        max_receive_count: 5,
    })
    .await;
    let backend = resources.ports();
    let bodies: Vec<infra::ports::OutgoingMessage> = (0..MESSAGES)
        .map(|i| infra::ports::OutgoingMessage {
            body: testkit::envelope(
                "shop-a",
                &format!("m-{i}"),
                if i % 10 == 0 { "1500.00" } else { "15.00" },
            ),
            attributes: Default::default(),
        })
        .collect();
    let sent = backend.queue.send_batch(bodies).await.expect("send");
    assert!(sent.iter().all(Result::is_ok));
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        MESSAGES,
        Duration::from_secs(120),
    )
    .await;
    let events: Vec<_> = messages.chunks(10).map(testkit::sqs_event).collect();
    let stub = testkit::lambda_runtime_stub::RuntimeStub::start(events.clone()).await;
    let mut env = resources.env();
    env.extend(stub.env("ProcessorFunction"));
    env.push(("RUST_LOG", "warn".to_owned()));
    // The binary Lambda runs (target/lambda/processor/bootstrap) when the script names it.
    let binary = std::env::var("PROCESSOR_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_processor").to_owned());
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor");
    let pid = child.id().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    let init_done = loop {
        if let Some(at) = stub.first_poll() {
            break at;
        }
        assert!(Instant::now() < deadline, "no poll");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let cpu_at_init = cpu_seconds(pid);
    let answers = stub.answers(events.len(), Duration::from_secs(600)).await;
    let cpu_total = cpu_seconds(pid);
    let wall = answers
        .last()
        .map(|a| a.answered_at - init_done)
        .unwrap_or_default();
    let _ = child.kill().await;
    assert!(
        answers
            .iter()
            .all(|a| a.body == json!({"batchItemFailures": []})),
        "some messages failed"
    );
    println!(
        "RESULT cold_start_init_ms={:.1} init_cpu_ms={:.0} invocations={} messages={MESSAGES} cpu_seconds={:.2} cpu_ms_per_1000={:.0} wall_seconds={:.2}",
        (init_done - spawned).as_secs_f64() * 1000.0,
        cpu_at_init * 1000.0,
        answers.len(),
        cpu_total - cpu_at_init,
        (cpu_total - cpu_at_init) * 1000.0 * 1000.0 / MESSAGES as f64,
        wall.as_secs_f64(),
    );
}

/// The processor started with the environment the template gives it, every template parameter
/// set to a value other than its default (customised thresholds, a rules parameter that does
/// not exist yet, another batch size and retry cap): init succeeds, and a message goes through,
/// alerting at the customised threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_runs_with_the_templates_environment_and_every_parameter_changed() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let parameters = testkit::template::every_parameter_changed(&resources.aws.table_name);
    testkit::send_raw(
        &resources,
        &[
            testkit::envelope("shop-a", "template-alert", "600.00"),
            testkit::envelope("shop-a", "template-quiet", "20.00"),
        ],
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
    let mut child = testkit::template::start_function(
        env!("CARGO_BIN_EXE_processor"),
        "ProcessorFunction",
        &parameters,
        &resources,
        &stub,
    );
    let answers = stub.answers(1, Duration::from_secs(30)).await;
    let _ = child.kill().await;
    assert!(
        !answers[0].failed,
        "init or the invocation failed: {:?}",
        answers[0]
    );
    assert_eq!(answers[0].body, json!({"batchItemFailures": []}));
    let store = resources.ports().store;
    let shop = ShopId::parse("shop-a").expect("shop");
    let alerted = store.get(&shop, "template-alert").await.expect("get");
    let alerts = alerted.map(|record| record.alerts.len());
    assert_eq!(alerts, Some(1), "600 USD is over the customised 500");
    let quiet = store.get(&shop, "template-quiet").await.expect("get");
    assert_eq!(quiet.map(|record| record.alerts.len()), Some(0));
}

/// `processor inbox backfill` on DynamoDB: an alert stored without its inbox item (as before
/// the inbox existed) gets one, under the same id, marked as backfilled; run again, it opens
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_backfill_opens_the_items_of_earlier_alerts_once() {
    use infra::ports::AlertInbox;

    let resources = testkit::resources(ResourceOptions::default()).await;
    testkit::send_raw(
        &resources,
        &[testkit::envelope("shop-b", "old-1", "5000.00")],
    )
    .await;
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        1,
        Duration::from_secs(20),
    )
    .await;
    let ports = resources.ports();
    let processor = processor::Processor::new(
        ports.queue.clone(),
        ports.store.clone(),
        ports.notifier,
        infra::domain::RuleSet::default(),
    );
    let event = serde_json::from_value(testkit::sqs_event(&messages)).expect("SQS event");
    let answer = processor::lambda::handle_sqs_event(
        &processor,
        ports.queue.as_ref(),
        processor::retry::RetryPolicy::default(),
        event,
    )
    .await;
    assert!(answer.batch_item_failures.is_empty());
    let shop = ShopId::parse("shop-b").expect("shop");
    let alert_id = infra::domain::alert_id(&shop, "old-1", "amount_exceeds_threshold");
    let dynamodb = aws_sdk_dynamodb::Client::new(&resources.config);
    dynamodb
        .delete_item()
        .table_name(&resources.aws.table_name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("alert#shop-b#{alert_id}")),
        )
        .send()
        .await
        .expect("delete the alert's item");
    assert!(
        ports
            .store
            .get_alert(&shop, &alert_id)
            .await
            .expect("read")
            .is_none()
    );

    let backfill = || async {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(["inbox", "backfill"])
            .env_clear()
            .envs(resources.env())
            .output()
            .await
            .expect("run processor inbox backfill");
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("a JSON report")
    };
    let first = backfill().await;
    assert_eq!(first["opened"], 1, "{first}");
    let alert = ports.store.get_alert(&shop, &alert_id).await.expect("read");
    assert_eq!(
        alert.map(|alert| alert.transaction_id),
        Some("old-1".to_owned())
    );
    let item = dynamodb
        .get_item()
        .table_name(&resources.aws.table_name)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("alert#shop-b#{alert_id}")),
        )
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the item");
    assert_eq!(
        item.get(infra::ports::BACKFILLED)
            .and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    let second = backfill().await;
    assert_eq!(second["opened"], 0, "{second}");
}
