//! The batch core over the real embedded adapters: exactly-once effects under redelivery,
//! conflicts, poison messages and transient failures.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infra::adapters::embedded::QueueSettings;
use infra::domain::{AlertPolicy, AlertState, ShopId, TransactionRecord};
use infra::ports::{
    Alert, Backlog, Consumer, DeadLetters, Notifier, OutgoingMessage, PortError, Producer,
    RecordReader, Redrive, Store,
};
use processor::retry::RetryPolicy;
use processor::{Outcome, Processor};
use testkit::EmbeddedPorts;
use testkit::deliver;
use testkit::doubles::FaultyStore;

struct Fixture {
    _dir: tempfile::TempDir,
    backend: EmbeddedPorts,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = QueueSettings {
        visibility_timeout: Duration::from_millis(200),
        ..QueueSettings::default()
    };
    let backend = testkit::embedded(dir.path(), settings);
    Fixture { _dir: dir, backend }
}

fn processor_with(
    fixture: &Fixture,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
) -> Processor {
    Processor::new(
        fixture.backend.queue.clone(),
        store,
        notifier,
        AlertPolicy::default(),
    )
    .with_concurrency(8)
}

fn processor(fixture: &Fixture) -> Processor {
    processor_with(
        fixture,
        fixture.backend.store.clone(),
        fixture.backend.notifier.clone(),
    )
}

async fn stored(fixture: &Fixture, shop_name: &str, id: &str) -> TransactionRecord {
    fixture
        .backend
        .store
        .get(&shop(shop_name), id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{id} is stored"))
}

fn shop(name: &str) -> ShopId {
    ShopId::parse(name).expect("valid shop")
}

#[tokio::test]
async fn every_message_delivered_twice_is_stored_once_and_alerts_once() {
    let fixture = fixture();
    let processor = processor(&fixture);
    let bodies: Vec<String> = (0..20)
        .map(|i| {
            testkit::envelope(
                "shop-a",
                &format!("tx-{i}"),
                if i % 4 == 0 { "1000.01" } else { "1000.00" },
            )
        })
        .collect();
    let twice: Vec<String> = bodies.iter().chain(bodies.iter()).cloned().collect();
    // Both copies in one batch, then everything again in a later batch.
    let first = processor
        .process_batch(deliver(fixture.backend.queue.as_ref(), &twice).await)
        .await;
    let second = processor
        .process_batch(deliver(fixture.backend.queue.as_ref(), &bodies).await)
        .await;
    let count = |report: &processor::BatchReport, wanted: Outcome| {
        report
            .outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == wanted)
            .count()
    };
    assert_eq!(count(&first, Outcome::Stored), 20);
    assert_eq!(count(&first, Outcome::Duplicate), 20);
    assert_eq!(count(&second, Outcome::Duplicate), 20);
    let alerts = fixture
        .backend
        .notifier
        .published(&shop("shop-a"))
        .await
        .expect("alerts");
    let alerted: HashSet<_> = alerts
        .iter()
        .map(|alert| alert.transaction_id.as_str())
        .collect();
    assert_eq!(
        alerts.len(),
        5,
        "one alert per high-value transaction: {alerts:?}"
    );
    assert_eq!(
        alerted,
        HashSet::from(["tx-0", "tx-4", "tx-8", "tx-12", "tx-16"])
    );
    let stored = stored(&fixture, "shop-a", "tx-4").await;
    assert_eq!(
        stored.alerts.first().map(|alert| alert.state),
        Some(AlertState::Sent)
    );
}

#[tokio::test]
async fn the_alert_carries_the_original_systems_subject_and_attributes() {
    let fixture = fixture();
    let received = deliver(
        fixture.backend.queue.as_ref(),
        &[testkit::envelope("shop-a", "big", "2500.50")],
    )
    .await;
    processor(&fixture).process_batch(received).await;
    let alerts = fixture
        .backend
        .notifier
        .published(&shop("shop-a"))
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].subject, "Transaction Alert");
    assert_eq!(alerts[0].attributes["TransactionType"], "Purchase");
    assert_eq!(alerts[0].attributes["Amount"], "2500.50");
    assert_eq!(alerts[0].message["facts"]["threshold"], "1000");
}

#[tokio::test]
async fn same_id_with_another_payload_keeps_the_original() {
    let fixture = fixture();
    let processor = processor(&fixture);
    let original = deliver(
        fixture.backend.queue.as_ref(),
        &[testkit::envelope("shop-a", "tx", "10.00")],
    )
    .await;
    processor.process_batch(original).await;
    let changed = deliver(
        fixture.backend.queue.as_ref(),
        &[testkit::envelope("shop-a", "tx", "5000.00")],
    )
    .await;
    let report = processor.process_batch(changed).await;
    assert_eq!(report.outcomes[0].1, Outcome::Conflict);
    assert_eq!(
        report.receipts_to_ack().len(),
        1,
        "a conflict is settled, not retried"
    );
    let stored = stored(&fixture, "shop-a", "tx").await;
    assert_eq!(stored.transaction.amount.to_string(), "10.00");
    assert!(
        fixture
            .backend
            .notifier
            .published(&shop("shop-a"))
            .await
            .expect("alerts")
            .is_empty()
    );
}

#[tokio::test]
async fn a_bare_transaction_from_a_trusted_producer_belongs_to_the_default_shop() {
    let fixture = fixture();
    let original =
        r#"{"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}"#;
    let received = deliver(fixture.backend.queue.as_ref(), &[original.to_owned()]).await;
    let report = processor(&fixture).process_batch(received).await;
    assert_eq!(report.outcomes[0].1, Outcome::Stored);
    let stored = stored(&fixture, "default", "12345").await;
    assert_eq!(stored.transaction.amount.to_string(), "100.00");
}

#[tokio::test]
async fn poison_goes_to_the_dead_letters_at_once_and_is_not_a_failure() {
    let fixture = fixture();
    let bodies = [
        "not json".to_owned(),
        testkit::envelope("shop-a", "negative", "-5"),
        testkit::envelope("shop-a", "fine", "5"),
    ];
    let received = deliver(fixture.backend.queue.as_ref(), &bodies).await;
    let report = processor(&fixture).process_batch(received).await;
    assert_eq!(report.failed().count(), 0);
    let dead = fixture.backend.queue.dead_letters(10).await.expect("peek");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .any(|letter| letter.body == "not json" && letter.reason.contains("not a JSON object"))
    );
    assert!(
        dead.iter()
            .any(|letter| letter.reason.contains("amount must be greater than 0")),
        "{dead:?}"
    );
    assert!(
        fixture
            .backend
            .store
            .get(&shop("shop-a"), "fine")
            .await
            .expect("get")
            .is_some()
    );
}

/// Processes one batch of `ids` (amount 5 each) through `store`; returns the bodies and report.
async fn process_through(
    fixture: &Fixture,
    store: FaultyStore,
    ids: &[&str],
) -> (Vec<String>, processor::BatchReport) {
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| testkit::envelope("shop-a", id, "5"))
        .collect();
    let received = deliver(fixture.backend.queue.as_ref(), &bodies).await;
    let report = processor_with(fixture, Arc::new(store), fixture.backend.notifier.clone())
        .process_batch(received)
        .await;
    (bodies, report)
}

#[tokio::test]
async fn a_transient_failure_fails_that_message_alone_and_it_is_retried() {
    let fixture = fixture();
    let flaky = FaultyStore::throttled(fixture.backend.store.clone(), "unlucky");
    let (bodies, report) = process_through(&fixture, flaky, &["a", "unlucky", "b"]).await;
    let failed: Vec<_> = report
        .failed()
        .map(|(message, _)| message.body.clone())
        .collect();
    assert_eq!(failed, [bodies[1].clone()]);
    processor::worker::settle(
        fixture.backend.queue.as_ref(),
        &report,
        RetryPolicy::default(),
    )
    .await;
    // Retried after a delay; processed by a healthy processor then.
    let again = fixture
        .backend
        .queue
        .receive(10, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    let report = processor(&fixture).process_batch(again).await;
    assert_eq!(report.outcomes[0].1, Outcome::Stored);
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_at_once_not_retried() {
    let fixture = fixture();
    let refusing = FaultyStore::refusing(fixture.backend.store.clone(), "refused");
    let (bodies, report) = process_through(&fixture, refusing, &["fine", "refused"]).await;
    assert_eq!(
        report.failed().count(),
        0,
        "nothing is handed back to retry"
    );
    let dead = fixture.backend.queue.dead_letters(10).await.expect("peek");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, bodies[1]);
    assert!(dead[0].reason.contains("item size too large"), "{dead:?}");
    assert_eq!(
        fixture.backend.queue.depth().await.expect("depth").messages,
        1,
        "only the stored message waits for its ack"
    );
}

/// A notifier that fails its first publish, as after a crash between "stored" and "published".
struct FailsOnce {
    inner: Arc<dyn Notifier>,
    failed: Mutex<bool>,
}

#[async_trait]
impl Notifier for FailsOnce {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError> {
        let first = !std::mem::replace(&mut *self.failed.lock().expect("lock"), true);
        if first {
            return Err(PortError::unavailable("notifier", "connection reset"));
        }
        self.inner.publish(alert).await
    }
}

#[tokio::test]
async fn a_redelivery_after_a_failed_publish_sends_the_pending_alert_once() {
    let fixture = fixture();
    let notifier: Arc<dyn Notifier> = Arc::new(FailsOnce {
        inner: fixture.backend.notifier.clone(),
        failed: Mutex::new(false),
    });
    let processor = processor_with(&fixture, fixture.backend.store.clone(), notifier);
    let body = testkit::envelope("shop-a", "big", "5000");
    let first = processor
        .process_batch(deliver(fixture.backend.queue.as_ref(), std::slice::from_ref(&body)).await)
        .await;
    assert!(matches!(first.outcomes[0].1, Outcome::Failed(_)));
    let pending = stored(&fixture, "shop-a", "big").await;
    assert_eq!(pending.pending_alerts().count(), 1);
    let second = processor
        .process_batch(deliver(fixture.backend.queue.as_ref(), std::slice::from_ref(&body)).await)
        .await;
    assert_eq!(second.outcomes[0].1, Outcome::Duplicate);
    let third = processor
        .process_batch(deliver(fixture.backend.queue.as_ref(), &[body]).await)
        .await;
    assert_eq!(third.outcomes[0].1, Outcome::Duplicate);
    assert_eq!(
        fixture
            .backend
            .notifier
            .published(&shop("shop-a"))
            .await
            .expect("alerts")
            .len(),
        1
    );
    let sent = stored(&fixture, "shop-a", "big").await;
    assert_eq!(
        sent.alerts.first().map(|alert| alert.state),
        Some(AlertState::Sent)
    );
}

/// Waits, polling, until `probe` holds; fails the test after `within`.
async fn until(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages on the embedded queue received more than `times` times, read from its file.
fn received_more_than(fixture: &Fixture, times: u32) -> u32 {
    let connection =
        rusqlite::Connection::open(fixture._dir.path().join("queue.db")).expect("open");
    connection
        .query_row(
            "SELECT count(*) FROM messages WHERE receive_count > ?1",
            [times],
            |row| row.get(0),
        )
        .expect("count")
}

/// The store is down for longer than the old retry budget (5 receives): every message is
/// received more than 5 times, none is dead-lettered, and all are stored once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_longer_than_the_old_retry_budget_dead_letters_nothing() {
    let fixture = fixture();
    let outage = Arc::new(testkit::doubles::Outage::default());
    outage.set(true);
    let store: Arc<dyn Store> = Arc::new(FaultyStore {
        inner: fixture.backend.store.clone(),
        fault: testkit::doubles::StoreFault::Outage(outage.clone()),
    });
    let ids: Vec<String> = (0..10).map(|i| format!("outage-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let amount = if i % 3 == 0 { "1500.00" } else { "15.00" };
        let message = OutgoingMessage {
            body: testkit::envelope("shop-a", id, amount),
            attributes: Default::default(),
        };
        fixture.backend.queue.send(message).await.expect("send");
    }
    let tuning = processor::settings::Tuning {
        batch_size: 32,
        concurrency: 8,
        receive_wait: Duration::from_millis(100),
        // The schedule's shape with short waits, so that the test takes seconds.
        retry: RetryPolicy {
            max_delay: Duration::from_millis(50),
        },
    };
    let processor = Arc::new(processor_with(
        &fixture,
        store,
        fixture.backend.notifier.clone(),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(processor::worker::run(
        processor,
        fixture.backend.queue.clone(),
        tuning,
        stop.clone(),
    ));
    until(
        "every message received more than the old 5 times",
        Duration::from_secs(30),
        // A message's receive count rises before its refusal is counted, so wait for both.
        async || received_more_than(&fixture, 5) == 10 && outage.refused() >= 60,
    )
    .await;
    assert!(
        fixture
            .backend
            .queue
            .dead_letters(10)
            .await
            .expect("list")
            .is_empty()
    );
    outage.set(false);
    until(
        "all stored after the outage",
        Duration::from_secs(30),
        async || fixture.backend.queue.depth().await.expect("depth").messages == 0,
    )
    .await;
    stop.cancel();
    worker.await.expect("worker");
    for id in &ids {
        stored(&fixture, "shop-a", id).await;
    }
    assert!(
        fixture
            .backend
            .queue
            .dead_letters(10)
            .await
            .expect("list")
            .is_empty()
    );
    let alerts = fixture
        .backend
        .notifier
        .published(&shop("shop-a"))
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 4, "outage-0, -3, -6 and -9 alert once each");
}

/// Dead letters put back after a fix are processed; one that was stored meanwhile is a
/// duplicate: one record, one alert.
#[tokio::test]
async fn redriven_dead_letters_are_processed_and_a_redriven_duplicate_is_stored_once() {
    let fixture = fixture();
    let queue = fixture.backend.queue.as_ref();
    let paid = testkit::envelope("shop-a", "paid", "2500.00");
    let late = testkit::envelope("shop-a", "late", "25.00");
    processor(&fixture)
        .process_batch(deliver(queue, std::slice::from_ref(&paid)).await)
        .await;
    for message in deliver(queue, &[paid.clone(), late.clone()]).await {
        queue
            .dead_letter(&message, "store unavailable (simulated)")
            .await
            .expect("dead letter");
    }
    assert_eq!(queue.dead_letters(10).await.expect("list").len(), 2);
    assert_eq!(queue.redrive(&Redrive::All).await.expect("redrive"), 2);
    let again = queue
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(again.len(), 2);
    let report = processor(&fixture).process_batch(again).await;
    let mut outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|(message, outcome)| {
            format!(
                "{}:{outcome:?}",
                &message.body[..20.min(message.body.len())]
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        report
            .outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Duplicate)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        report
            .outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Stored)
            .count(),
        1,
        "{outcomes:?}"
    );
    stored(&fixture, "shop-a", "late").await;
    let alerts = fixture
        .backend
        .notifier
        .published(&shop("shop-a"))
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
}

/// Two deliveries of one high-value message processed at the same time by two processors (as
/// two concurrent Lambda invocations would): one publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_deliveries_of_one_message_publish_one_alert() {
    let fixture = fixture();
    let counting = Arc::new(testkit::doubles::CountingNotifier::new(
        fixture.backend.notifier.clone(),
        Duration::from_millis(200),
    ));
    let body = testkit::envelope("shop-a", "raced", "9000.00");
    let copies = deliver(fixture.backend.queue.as_ref(), &[body.clone(), body]).await;
    let first = processor_with(&fixture, fixture.backend.store.clone(), counting.clone());
    let second = processor_with(&fixture, fixture.backend.store.clone(), counting.clone());
    let (a, b) = tokio::join!(
        first.process_batch(vec![copies[0].clone()]),
        second.process_batch(vec![copies[1].clone()])
    );
    assert_eq!(counting.published(), 1, "{:?} {:?}", a.outcomes, b.outcomes);
    // The copy that found the claim taken is retried; by then the alert is sent.
    let loser = [a, b]
        .into_iter()
        .flat_map(|report| report.outcomes)
        .find(|(_, outcome)| matches!(outcome, Outcome::Failed(_)));
    if let Some((message, _)) = loser {
        let retried = first.process_batch(vec![message]).await;
        assert_eq!(retried.outcomes[0].1, Outcome::Duplicate);
    }
    assert_eq!(counting.published(), 1);
    let record = stored(&fixture, "shop-a", "raced").await;
    assert_eq!(record.alerts[0].state, AlertState::Sent);
}

/// With less than the time to start a message left before the deadline, none is started:
/// each is a transient failure, nothing is stored, and the next delivery processes it.
#[tokio::test]
async fn a_batch_with_no_time_left_starts_nothing_and_loses_nothing() {
    let fixture = fixture();
    let processor = processor(&fixture);
    let bodies = vec![testkit::envelope("shop-a", "late-start", "2000.00")];
    let received = deliver(fixture.backend.queue.as_ref(), &bodies).await;
    let deadline = tokio::time::Instant::now() + processor::TIME_TO_START / 2;
    let report = processor
        .process_batch_within(received, Some(deadline))
        .await;
    assert!(matches!(report.outcomes[0].1, Outcome::Failed(_)));
    let store = &fixture.backend.store;
    assert!(
        store
            .get(&shop("shop-a"), "late-start")
            .await
            .expect("get")
            .is_none()
    );
    let again = deliver(fixture.backend.queue.as_ref(), &bodies).await;
    let report = processor.process_batch_within(again, None).await;
    assert_eq!(report.outcomes[0].1, Outcome::Stored);
}
