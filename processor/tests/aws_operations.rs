//! Operating the AWS path, on the emulator (moto): a store outage ridden out, dead letters put
//! back with the operator command, and concurrent deliveries of one message.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use infra::domain::{Named, ShopId};
use infra::ports::{Backlog, DeadLetters, Queue, RecordReader};
use processor::Processor;
use processor::lambda::handle_sqs_event;
use processor::retry::RetryPolicy;
use testkit::proxy::FaultProxy;
use testkit::{ResourceOptions, Resources};

/// Polls until every id is stored, or fails after `within`.
async fn all_stored(resources: &Resources, shop: &str, ids: &[String], within: Duration) {
    let store = resources.ports().store;
    let shop = ShopId::parse(shop).expect("shop");
    let deadline = Instant::now() + within;
    for id in ids {
        while store.get(&shop, id).await.expect("get").is_none() {
            assert!(Instant::now() < deadline, "{id} not stored in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn poller(env: Vec<(&'static str, String)>) -> tokio::process::Child {
    testkit::poller(env!("CARGO_BIN_EXE_processor"), env)
}

/// DynamoDB refuses every connection for longer than the old retry budget (15 s over 5
/// receives); once it is back, every transaction is stored, each alert sent once, and nothing
/// was dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_outage_longer_than_the_old_retry_budget_dead_letters_nothing() {
    const OLD_BUDGET: Duration = Duration::from_secs(15);
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = FaultProxy::in_front_of_moto().await;
    proxy.set_down(true);
    let ids: Vec<String> = (0..10).map(|i| format!("outage-{i}")).collect();
    let bodies: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            testkit::envelope("shop-a", id, if i % 5 == 0 { "2000.00" } else { "20.00" })
        })
        .collect();
    testkit::send_raw(&resources, &bodies).await;
    let mut env = resources.env();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.clone()));
    // The schedule's shape with waits capped at 2 s, so that the outage spans many receives.
    env.push(("RETRY_MAX_DELAY", "2".to_owned()));
    let _poller = poller(env);
    let started = Instant::now();
    // The outage itself: this wait is what is being tested, not a synchronisation.
    tokio::time::sleep(OLD_BUDGET + Duration::from_secs(3)).await;
    let refused_during_outage = proxy.refused();
    let queue = resources.ports().queue;
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
    proxy.set_down(false);
    all_stored(&resources, "shop-a", &ids, Duration::from_secs(30)).await;
    assert!(
        refused_during_outage >= 10,
        "the processor kept trying during the outage ({refused_during_outage} connections)"
    );
    assert!(started.elapsed() > OLD_BUDGET);
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
    let alerts = testkit::subscriber_messages(&resources, 3, Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 2, "outage-0 and outage-5 alert once each");
}

/// DynamoDB accepts connections and never answers them: each call gives up at its attempt
/// deadline and is retried on a new connection, instead of waiting for ever. Once DynamoDB
/// answers again, every transaction is stored and nothing was dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dynamodb_is_a_failure_with_a_deadline_not_a_wait() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    let ids: Vec<String> = (0..5).map(|i| format!("hung-{i}")).collect();
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| testkit::envelope("shop-a", id, "20.00"))
        .collect();
    testkit::send_raw(&resources, &bodies).await;
    let mut env = resources.env();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.clone()));
    env.push(("AWS_ATTEMPT_TIMEOUT", "1".to_owned()));
    env.push(("AWS_OPERATION_TIMEOUT", "3".to_owned()));
    env.push(("RETRY_MAX_DELAY", "1".to_owned()));
    let _poller = poller(env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.held() < 6 {
        let held = proxy.held();
        assert!(
            Instant::now() < deadline,
            "calls into the hang were not given up and retried ({held} connections)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connections held so far stay unanswered for good: only a deadline frees the calls.
    proxy.set_hanging(false);
    all_stored(&resources, "shop-a", &ids, Duration::from_secs(30)).await;
    let queue = resources.ports().queue;
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
}

/// Runs the processor binary's operator command; returns its stdout.
async fn operator(resources: &Resources, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .args(args)
        .envs(resources.env())
        .output()
        .await
        .expect("run processor");
    assert!(
        output.status.success(),
        "processor {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Dead letters on SQS are listed with their reasons and redriven by the operator command; one
/// of them was stored meanwhile and stays one record with one alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_command_redrives_dead_letters_and_a_duplicate_is_stored_once() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let paid = testkit::envelope("shop-a", "paid", "2500.00");
    let late = testkit::envelope("shop-a", "late", "25.00");
    testkit::send_raw(&resources, std::slice::from_ref(&paid)).await;
    // The processor runs throughout, as it would while an operator redrives.
    let _poll = poller(resources.env());
    all_stored(
        &resources,
        "shop-a",
        &["paid".to_owned()],
        Duration::from_secs(30),
    )
    .await;
    // Once the alert is out, the redriven copy finds it sent.
    let store = resources.ports().store;
    let shop = ShopId::parse("shop-a").expect("shop");
    let deadline = Instant::now() + Duration::from_secs(20);
    while store
        .get(&shop, "paid")
        .await
        .expect("get")
        .is_none_or(|record| record.pending_alerts().count() > 0)
    {
        assert!(Instant::now() < deadline, "the alert for paid was not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A copy of the stored one and one never processed, dead-lettered as the processor does
    // (sent to the DLQ with the reason), as an outage before the new retry schedule would have.
    let ports = resources.ports();
    let sqs = aws_sdk_sqs::Client::new(&resources.config);
    for body in [paid, late] {
        let reason = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value("store unavailable (simulated)")
            .build()
            .expect("attribute");
        sqs.send_message()
            .queue_url(&resources.aws.dead_letter_queue_url)
            .message_body(body)
            .message_attributes(infra::adapters::aws::DEAD_LETTER_REASON_ATTRIBUTE, reason)
            .send()
            .await
            .expect("send to the DLQ");
    }
    let listed: serde_json::Value =
        serde_json::from_str(&operator(&resources, &["dead-letters", "list", "--json"]).await)
            .expect("JSON list");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|letter| letter["reason"] == "store unavailable (simulated)")
    );
    let first_id = listed[0]["id"].as_str().expect("id").to_owned();
    let out = operator(&resources, &["dead-letters", "redrive", "--id", &first_id]).await;
    assert!(out.contains("redrove 1"), "{out}");
    let out = operator(&resources, &["dead-letters", "redrive", "--all"]).await;
    assert!(out.contains("redrove 1"), "{out}");
    all_stored(
        &resources,
        "shop-a",
        &["late".to_owned()],
        Duration::from_secs(30),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue_messages(&resources).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the redriven messages were not processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ports.queue.dead_letters(10).await.expect("list").is_empty());
    let alerts = testkit::subscriber_messages(&resources, 2, Duration::from_secs(3)).await;
    assert_eq!(
        alerts.len(),
        1,
        "the redriven copy of paid did not alert again"
    );
}

async fn queue_messages(resources: &Resources) -> u64 {
    resources
        .ports()
        .queue
        .depth()
        .await
        .expect("depth")
        .messages
}

/// Two copies of one high-value SQS message, handled by two concurrent invocations: one alert
/// reaches subscribers; the copy that lost the claim is retried and finds it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_invocations_with_one_message_publish_one_alert() {
    let resources = testkit::resources(ResourceOptions {
        visibility_timeout_seconds: 0,
        ..ResourceOptions::default()
    })
    .await;
    testkit::send_raw(
        &resources,
        &[testkit::envelope("shop-a", "twice", "7000.00")],
    )
    .await;
    // With no visibility timeout, two receives give two deliveries of the same message.
    let first = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        1,
        Duration::from_secs(10),
    )
    .await;
    let second = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(first[0].message_id, second[0].message_id);
    assert_ne!(first[0].receipt_handle, second[0].receipt_handle);
    let event = |messages| -> SqsEvent {
        serde_json::from_value(testkit::sqs_event(messages)).expect("SQS event")
    };
    let ports = resources.ports();
    let processor = |_| {
        Processor::new(
            ports.queue.clone(),
            ports.store.clone(),
            ports.notifier.clone(),
            infra::domain::RuleSet::default(),
        )
    };
    let (a, b) = (processor(1), processor(2));
    let queue: &dyn Queue = ports.queue.as_ref();
    let (first_response, second_response) = tokio::join!(
        handle_sqs_event(&a, queue, RetryPolicy::default(), event(&first)),
        handle_sqs_event(&b, queue, RetryPolicy::default(), event(&second)),
    );
    let failures =
        first_response.batch_item_failures.len() + second_response.batch_item_failures.len();
    assert!(failures <= 1, "{first_response:?} {second_response:?}");
    // The retried copy: the alert is sent by now.
    let retried = handle_sqs_event(&a, queue, RetryPolicy::default(), event(&second)).await;
    assert!(retried.batch_item_failures.is_empty(), "{retried:?}");
    let alerts = testkit::subscriber_messages(&resources, 2, Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let stored = ports
        .store
        .get(&ShopId::parse("shop-a").expect("shop"), "twice")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.alerts[0].state.name(), "sent");
}

/// One invocation of the processor binary under the runtime stub, over `bodies` (already
/// received, so that SQS counts one receive), with the calls to one service going through
/// `proxy`. Returns the answer and the EMF documents the process wrote on stdout, up to the
/// one that counts the retries.
async fn one_invocation(
    resources: &Resources,
    bodies: &[String],
    proxied: (&'static str, &FaultProxy),
    timeout: Duration,
) -> (testkit::lambda_runtime_stub::Invocation, String) {
    testkit::send_raw(resources, bodies).await;
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        bodies.len(),
        Duration::from_secs(20),
    )
    .await;
    let stub = testkit::lambda_runtime_stub::RuntimeStub::with_timeout(
        vec![testkit::sqs_event(&messages)],
        timeout,
    )
    .await;
    let mut env = resources.env();
    env.extend(stub.env("ProcessorFunction"));
    env.push((proxied.0, proxied.1.endpoint.clone()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor");
    let answer = stub.answers(1, timeout * 3).await.remove(0);
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut emf = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"CloudWatchMetrics\"") {
                emf.push_str(&line);
                if line.contains("transactions_retried_total") {
                    return;
                }
            }
        }
    })
    .await;
    let _ = child.kill().await;
    (answer, emf)
}

fn failed_ids(answer: &testkit::lambda_runtime_stub::Invocation) -> Vec<String> {
    let failures = answer.body["batchItemFailures"].as_array().cloned();
    failures
        .unwrap_or_default()
        .iter()
        .filter_map(|failure| failure["itemIdentifier"].as_str().map(str::to_owned))
        .collect()
}

/// DynamoDB accepts connections and never answers, with the SDK's own deadlines longer than
/// the invocation's: the invocation still answers before its deadline, reports every message
/// for redelivery with a short visibility, writes its metrics, and dead-letters nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dynamodb_hands_the_batch_back_before_the_invocation_deadline() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    let bodies: Vec<String> = (0..3)
        .map(|i| testkit::envelope("shop-a", &format!("budget-{i}"), "2000.00"))
        .collect();
    let timeout = Duration::from_secs(8);
    let (answer, emf) = one_invocation(
        &resources,
        &bodies,
        ("AWS_ENDPOINT_URL_DYNAMODB", &proxy),
        timeout,
    )
    .await;
    let deadline = answer.deadline.expect("a deadline");
    assert!(
        answer.answered_at < deadline,
        "answered {:?} after the deadline",
        answer.answered_at - deadline
    );
    assert!(!answer.failed, "{:?}", answer.body);
    assert_eq!(failed_ids(&answer).len(), 3, "{:?}", answer.body);
    assert!(emf.contains("transactions_retried_total"), "{emf}");
    // Handed back with a short visibility, not the queue's 30 s.
    let again = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        3,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(again.len(), 3);
    let queue = resources.ports().queue;
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
}

/// SNS accepts connections and never answers: the invocation gives the publish up in time to
/// release its claim on the alert, so that the next delivery can publish at once instead of
/// waiting for the claim to expire, and answers before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sns_releases_the_alert_claim_before_the_invocation_deadline() {
    use infra::domain::AlertDecision;
    use infra::ports::{AlertClaim, AlertLedger, ClaimOutcome};
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    let body = testkit::envelope("shop-a", "budget-sns", "2000.00");
    let timeout = Duration::from_secs(8);
    let (answer, emf) = one_invocation(
        &resources,
        &[body],
        ("AWS_ENDPOINT_URL_SNS", &proxy),
        timeout,
    )
    .await;
    let deadline = answer.deadline.expect("a deadline");
    assert!(
        answer.answered_at < deadline,
        "answered {:?} after the deadline",
        answer.answered_at - deadline
    );
    assert_eq!(failed_ids(&answer).len(), 1, "{:?}", answer.body);
    assert!(emf.contains("transactions_retried_total"), "{emf}");
    let store = resources.ports().store;
    let shop = ShopId::parse("shop-a").expect("shop");
    let record = store
        .get(&shop, "budget-sns")
        .await
        .expect("get")
        .expect("stored before the publish");
    let rule: &AlertDecision = &record.alerts[0].decision;
    let now = chrono::Utc::now();
    let claim = AlertClaim {
        owner: "the-next-delivery".to_owned(),
        now,
        until: now + chrono::Duration::seconds(60),
    };
    let outcome = store
        .claim_alert(&shop, "budget-sns", &rule.rule, &claim)
        .await
        .expect("claim");
    assert_eq!(outcome, ClaimOutcome::Claimed, "the claim was left held");
    let queue = resources.ports().queue;
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
}
