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

/// A batch send where some entries fail: each result says what became of its own entry (in
/// order), transient failures as `Unavailable`, the sender's fault as `Rejected`. moto never
/// fails an entry, so this runs against the test kit's SQS stand-in, with the real SDK.
#[tokio::test]
async fn a_partial_batch_failure_is_mapped_entry_by_entry() {
    use infra::ports::{OutgoingMessage, PortError};
    let stand_in = testkit::sqs_stand_in::SqsStandIn::start().await;
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
