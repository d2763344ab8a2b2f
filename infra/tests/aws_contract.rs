//! The adapter contract against the AWS adapters, over HTTP to a moto server.

mod contract;

use std::sync::Arc;
use std::time::Duration;

use infra::ports::{Producer, Queue, Store};
use testkit::{ResourceOptions, Resources};

const VISIBILITY_SECONDS: u32 = 1;

async fn backend(max_receive_count: u32) -> (Resources, testkit::AwsPorts) {
    let resources = testkit::resources(ResourceOptions {
        visibility_timeout_seconds: VISIBILITY_SECONDS,
        max_receive_count,
    })
    .await;
    let backend = resources.ports();
    (resources, backend)
}

#[tokio::test]
async fn send_is_durable_on_return() {
    let (resources, backend) = backend(5).await;
    let reopen = || async move {
        // A brand-new client: nothing is shared with the one that sent.
        let fresh = resources.ports_with(&testkit::moto().config().await);
        fresh.queue as Arc<dyn Queue>
    };
    contract::send_is_durable_on_return(reopen, backend.queue).await;
}

#[tokio::test]
async fn lease_redelivery_and_ack() {
    let (_resources, backend) = backend(5).await;
    contract::lease_redelivery_and_ack(
        backend.queue,
        Duration::from_secs(VISIBILITY_SECONDS.into()),
    )
    .await;
}

#[tokio::test]
async fn dead_letters_after_max_receives() {
    let (_resources, backend) = backend(3).await;
    contract::dead_letters_after_max_receives(
        backend.queue,
        3,
        Duration::from_secs(VISIBILITY_SECONDS.into()),
    )
    .await;
}

#[tokio::test]
async fn dead_letter_keeps_the_reason() {
    let (_resources, backend) = backend(5).await;
    contract::dead_letter_keeps_the_reason(backend.queue).await;
}

#[tokio::test]
async fn put_if_absent_tells_duplicates_from_conflicts() {
    let (_resources, backend) = backend(5).await;
    contract::put_if_absent_tells_duplicates_from_conflicts(backend.store as Arc<dyn Store>).await;
}

#[tokio::test]
async fn alert_state_moves_from_pending_to_sent() {
    let (_resources, backend) = backend(5).await;
    contract::alert_state_moves_from_pending_to_sent(backend.store as Arc<dyn Store>).await;
}

#[tokio::test]
async fn reads_are_scoped_to_the_shop() {
    let (_resources, backend) = backend(5).await;
    contract::reads_are_scoped_to_the_shop(backend.store as Arc<dyn Store>).await;
}

#[tokio::test]
async fn send_batch_of_any_size() {
    let (_resources, backend) = backend(5).await;
    contract::send_batch_of_any_size(backend.queue).await;
}

#[tokio::test]
async fn alert_claims_are_exclusive_and_expire() {
    let (_resources, backend) = backend(5).await;
    contract::alert_claims_are_exclusive_and_expire(backend.store as Arc<dyn Store>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_have_one_winner() {
    let (_resources, backend) = backend(5).await;
    contract::concurrent_claims_have_one_winner(backend.store as Arc<dyn Store>).await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let (_resources, backend) = backend(5).await;
    contract::dead_letters_are_listed_and_redriven(backend.queue).await;
}

/// At least 2,000 transactions over all 8 shards and two shops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_visit_every_transaction_once() {
    let (_resources, backend) = backend(5).await;
    // Pages of 100: moto answers each Query by reading the whole table, so fewer calls.
    contract::pages_visit_every_transaction_once(backend.store as Arc<dyn Store>, 2_000, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_exactly_the_matching_records() {
    let (_resources, backend) = backend(5).await;
    contract::filters_pick_exactly_the_matching_records(backend.store as Arc<dyn Store>, 400, 50)
        .await;
}

#[tokio::test]
async fn conflicts_are_counted_once_per_request() {
    let (_resources, backend) = backend(5).await;
    contract::conflicts_are_counted_once_per_request(backend.store as Arc<dyn Store>).await;
}

/// An SQS adapter on the test kit's stand-in, answering each call after `latency`.
async fn stand_in_queue(
    latency: std::time::Duration,
) -> (
    testkit::sqs_stand_in::SqsStandIn,
    infra::adapters::aws::SqsQueue,
) {
    let stand_in = testkit::sqs_stand_in::SqsStandIn::with_latency(latency).await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&stand_in.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "t", "t", None, None, "test",
        ))
        .load()
        .await;
    let queue = infra::adapters::aws::SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{}/123456789012/q", stand_in.endpoint),
        None,
    );
    (stand_in, queue)
}

fn bodies(count: usize) -> Vec<infra::ports::OutgoingMessage> {
    (0..count)
        .map(|i| infra::ports::OutgoingMessage {
            body: format!("ok-{i}"),
            attributes: Default::default(),
        })
        .collect()
}

/// A batch of 1,000 is 100 `SendMessageBatch` calls: they go out side by side, and never more
/// than eight at once.
#[tokio::test]
async fn a_large_batch_sends_its_calls_side_by_side_and_bounded() {
    let (stand_in, queue) = stand_in_queue(std::time::Duration::from_millis(20)).await;
    let results = queue.send_batch(bodies(1000)).await.expect("sent");
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(stand_in.batch_sizes().len(), 100);
    let most = stand_in.most_in_flight();
    assert!((2..=8).contains(&most), "{most} calls at once");
}

/// Not a test: `scripts/bench/batch_latency.sh` runs it. A batch of 1,000 against a queue
/// whose every call takes the given round trip, against one call of 10 measured in the same
/// run (the baseline).
#[tokio::test]
#[ignore = "a measurement; run by scripts/bench/batch_latency.sh"]
async fn measure_a_batch_of_1000_against_a_queue_with_latency() {
    for latency_ms in [20, 100, 200] {
        let (_stand_in, queue) = stand_in_queue(std::time::Duration::from_millis(latency_ms)).await;
        let started = std::time::Instant::now();
        queue.send_batch(bodies(10)).await.expect("sent");
        let one_call = started.elapsed();
        let started = std::time::Instant::now();
        let results = queue.send_batch(bodies(1000)).await.expect("sent");
        let thousand = started.elapsed();
        assert!(results.iter().all(Result::is_ok));
        println!(
            "RESULT latency_ms={latency_ms} one_call_s={:.3} batch_1000_s={:.3} ratio={:.1} sequential_estimate_s={:.3}",
            one_call.as_secs_f64(),
            thousand.as_secs_f64(),
            thousand.as_secs_f64() / one_call.as_secs_f64(),
            one_call.as_secs_f64() * 100.0,
        );
    }
}

/// A batch send where some entries fail: each result says what became of its own entry (in
/// order), transient failures as `Unavailable`, the sender's fault as `Rejected`. moto never
/// fails an entry, so this runs against the test kit's SQS stand-in, with the real SDK.
#[tokio::test]
async fn a_partial_batch_failure_is_mapped_entry_by_entry() {
    use infra::ports::{OutgoingMessage, PortError};
    let (stand_in, queue) = stand_in_queue(std::time::Duration::ZERO).await;
    let bodies = ["ok-0", "fail-always-1", "ok-2", "refuse-3"]
        .into_iter()
        .chain((4..12).map(|_| "ok"))
        .enumerate()
        .map(|(i, body)| OutgoingMessage {
            body: format!("{body}-{i}"),
            attributes: Default::default(),
        })
        .collect();
    let results = queue
        .send_batch(bodies)
        .await
        .expect("the request itself succeeds");
    assert_eq!(results.len(), 12);
    assert!(results[0].is_ok() && results[2].is_ok() && results[11].is_ok());
    assert!(
        matches!(results[1], Err(PortError::Unavailable { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[3], Err(PortError::Rejected { .. })),
        "{:?}",
        results[3]
    );
    assert_eq!(stand_in.batch_sizes(), [10, 2], "batches of at most 10");
}

#[tokio::test]
async fn counters_count_each_transaction_once() {
    let (_resources, backend) = backend(5).await;
    contract::counters_count_each_transaction_once(backend.store as Arc<dyn Store>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_counts_lose_nothing_and_double_nothing() {
    let (_resources, backend) = backend(5).await;
    contract::concurrent_counts_lose_nothing_and_double_nothing(backend.store as Arc<dyn Store>)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_the_shops_period_within_the_bound() {
    let (_resources, backend) = backend(5).await;
    contract::history_reads_the_shops_period_within_the_bound(backend.store as Arc<dyn Store>)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_hold_values_per_shop_in_order() {
    let (resources, _backend) = backend(5).await;
    let client = aws_sdk_dynamodb::Client::new(&resources.config);
    let lists =
        infra::adapters::aws::DynamoLists::new(client, resources.aws.webhooks_table.clone());
    contract::lists_hold_values_per_shop_in_order(Arc::new(lists)).await;
}
