//! The long-running loop: receive a batch, process it, settle it with the queue. Used in-process
//! by the embedded API and by `processor poll`.

use std::sync::Arc;
use std::time::Duration;

use infra::ports::Consumer;
use infra::telemetry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;
use crate::settings::Tuning;
use crate::{BatchReport, Processor};

const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Runs until `shutdown` is cancelled; a batch already received is finished first.
pub async fn run(
    processor: Arc<Processor>,
    queue: Arc<dyn Consumer>,
    tuning: Tuning,
    shutdown: CancellationToken,
) {
    let mut gauges_due = Instant::now();
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = queue.receive(tuning.batch_size, tuning.receive_wait) => received,
        };
        match received {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => {
                let report = processor.process_batch(messages).await;
                settle(queue.as_ref(), &report, tuning.retry).await;
            }
            Err(error) => {
                tracing::warn!(%error, "receiving from the queue failed; pausing");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ERROR_PAUSE) => {}
                }
            }
        }
        if Instant::now() >= gauges_due {
            record_depth(queue.as_ref()).await;
            gauges_due = Instant::now() + GAUGE_INTERVAL;
        }
    }
    tracing::info!("processor stopped");
}

/// Acks what was handled and hands failures back with a growing delay.
pub async fn settle(queue: &dyn Consumer, report: &BatchReport, retry: RetryPolicy) {
    let receipts = report.receipts_to_ack();
    if !receipts.is_empty()
        && let Err(error) = queue.ack(&receipts).await
    {
        // Harmless for correctness: the messages come back and are found to be duplicates.
        tracing::warn!(%error, count = receipts.len(), "acking failed; the messages will be redelivered");
    }
    schedule_retries(queue, report, retry).await;
}

/// Hands each failed message back with a delay that grows with its receive count, instead of
/// leaving it invisible for the whole visibility timeout.
pub async fn schedule_retries(queue: &dyn Consumer, report: &BatchReport, retry: RetryPolicy) {
    for (message, error) in report.failed() {
        metrics::counter!(telemetry::RETRIED).increment(1);
        let delay = retry.delay(message.receive_count, error.retry_hint());
        tracing::warn!(message_id = %message.id, receive_count = message.receive_count, ?delay, %error, "transient failure; will retry");
        if let Err(error) = queue
            .retry_later(&message.receipt, delay, &error.to_string())
            .await
        {
            tracing::warn!(%error, "could not schedule a retry; the lease will expire instead");
        }
    }
}

async fn record_depth(queue: &dyn Consumer) {
    match queue.depth().await {
        Ok(depth) => {
            metrics::gauge!(telemetry::QUEUE_DEPTH).set(depth.messages as f64);
            metrics::gauge!(telemetry::DEAD_LETTER_DEPTH).set(depth.dead_letters as f64);
        }
        Err(error) => tracing::debug!(%error, "could not read the queue depth"),
    }
}
