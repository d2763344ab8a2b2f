//! The adapter contract against the embedded (SQLite) backend.

mod contract;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use infra::adapters::embedded::{QueueSettings, SqliteQueue, SqliteStore};
use infra::ports::{Queue, Store};

const VISIBILITY: Duration = Duration::from_millis(300);

fn queue_at(path: &Path, max_receives: u32) -> Arc<dyn Queue> {
    let settings = QueueSettings {
        visibility_timeout: VISIBILITY,
        max_receives,
    };
    Arc::new(SqliteQueue::open(path, settings).expect("open queue"))
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open store"))
}

#[tokio::test]
async fn send_is_durable_on_return() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("queue.db");
    let reopen = path.clone();
    contract::send_is_durable_on_return(|| async move { queue_at(&reopen, 5) }, queue_at(&path, 5))
        .await;
}

#[tokio::test]
async fn lease_redelivery_and_ack() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::lease_redelivery_and_ack(queue_at(&dir.path().join("q.db"), 5), VISIBILITY).await;
}

#[tokio::test]
async fn dead_letters_after_max_receives() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::dead_letters_after_max_receives(queue_at(&dir.path().join("q.db"), 3), 3, VISIBILITY)
        .await;
}

#[tokio::test]
async fn dead_letter_keeps_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::dead_letter_keeps_the_reason(queue_at(&dir.path().join("q.db"), 5)).await;
}

#[tokio::test]
async fn put_if_absent_tells_duplicates_from_conflicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::put_if_absent_tells_duplicates_from_conflicts(store(&dir)).await;
}

#[tokio::test]
async fn alert_state_moves_from_pending_to_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::alert_state_moves_from_pending_to_sent(store(&dir)).await;
}

#[tokio::test]
async fn reads_are_scoped_to_the_shop() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::reads_are_scoped_to_the_shop(store(&dir)).await;
}

/// Embedded-only: an ack with the receipt of an expired lease leaves the new lease alone.
#[tokio::test]
async fn a_stale_receipt_does_not_delete_a_newer_lease() {
    let dir = tempfile::tempdir().expect("temp dir");
    let queue = queue_at(&dir.path().join("q.db"), 5);
    queue.send(contract::message("m")).await.expect("send");
    let first = contract::receive_at_least(queue.as_ref(), 1, Duration::from_secs(5)).await;
    let second = contract::receive_at_least(queue.as_ref(), 1, Duration::from_secs(5)).await;
    assert_eq!(second[0].receive_count, 2);
    queue
        .ack(&[first[0].receipt.clone()])
        .await
        .expect("stale ack");
    assert_eq!(queue.depth().await.expect("depth").messages, 1);
    queue.ack(&[second[0].receipt.clone()]).await.expect("ack");
    assert_eq!(queue.depth().await.expect("depth").messages, 0);
}

/// Embedded-only: many concurrent sends share commits and all survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_all_land() {
    let dir = tempfile::tempdir().expect("temp dir");
    let queue = queue_at(&dir.path().join("q.db"), 5);
    let sends = (0..500).map(|i| {
        let queue = queue.clone();
        tokio::spawn(async move { queue.send(contract::message(&format!("m{i}"))).await })
    });
    for send in sends {
        send.await.expect("task").expect("send");
    }
    assert_eq!(queue.depth().await.expect("depth").messages, 500);
}

#[tokio::test]
async fn send_batch_of_any_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::send_batch_of_any_size(queue_at(&dir.path().join("q.db"), 5)).await;
}

#[tokio::test]
async fn alert_claims_are_exclusive_and_expire() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::alert_claims_are_exclusive_and_expire(store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_have_one_winner() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::concurrent_claims_have_one_winner(store(&dir)).await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::dead_letters_are_listed_and_redriven(queue_at(&dir.path().join("q.db"), 5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_visit_every_transaction_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::pages_visit_every_transaction_once(store(&dir), 3_000, 37).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_exactly_the_matching_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::filters_pick_exactly_the_matching_records(store(&dir), 1_500, 13).await;
}

#[tokio::test]
async fn conflicts_are_counted_once_per_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::conflicts_are_counted_once_per_request(store(&dir)).await;
}

#[tokio::test]
async fn counters_count_each_transaction_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::counters_count_each_transaction_once(store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_counts_lose_nothing_and_double_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::concurrent_counts_lose_nothing_and_double_nothing(store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_the_shops_period_within_the_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    contract::history_reads_the_shops_period_within_the_bound(store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_hold_values_per_shop_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open store"));
    contract::lists_hold_values_per_shop_in_order(store).await;
}
