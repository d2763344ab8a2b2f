use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures_util::{StreamExt, stream};
use pipeline::domain::{Alert, AlertPolicy, Envelope, TransactionRecord};
use pipeline::ports::{Notifier, PortError, PutOutcome, Queue, ReceivedMessage, Store};
use pipeline::telemetry;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// Already stored with the same payload: nothing new was written.
    Duplicate,
    /// Already stored with another payload: the original was kept.
    Conflict,
    /// Could never succeed; moved to the dead-letter queue with this reason.
    DeadLettered(String),
    /// A transient failure: the message must be received again.
    Failed(PortError),
}

impl Outcome {
    /// Whether the message is done with and may be deleted from its queue.
    pub fn is_settled(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

#[derive(Debug, Default)]
pub struct BatchReport {
    pub outcomes: Vec<(ReceivedMessage, Outcome)>,
}

impl BatchReport {
    /// Messages to redeliver (for SQS's partial batch response).
    pub fn failed(&self) -> impl Iterator<Item = (&ReceivedMessage, &PortError)> {
        self.outcomes
            .iter()
            .filter_map(|(message, outcome)| match outcome {
                Outcome::Failed(error) => Some((message, error)),
                _ => None,
            })
    }

    /// Receipts of messages that were handled and are still on the queue (dead-lettered ones
    /// have already left it).
    pub fn receipts_to_ack(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| {
                outcome.is_settled() && !matches!(outcome, Outcome::DeadLettered(_))
            })
            .map(|(message, _)| message.receipt.clone())
            .collect()
    }
}

pub struct Processor {
    queue: Arc<dyn Queue>,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    alerts: AlertPolicy,
    /// How many messages of a batch are in flight at once.
    concurrency: usize,
}

impl Processor {
    pub fn new(
        queue: Arc<dyn Queue>,
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        alerts: AlertPolicy,
        concurrency: usize,
    ) -> Self {
        Self {
            queue,
            store,
            notifier,
            alerts,
            concurrency: concurrency.max(1),
        }
    }

    /// Processes a batch. Never fails as a whole: each message gets its own outcome.
    ///
    /// Messages for the same transaction (a duplicate delivered in the same batch) are handled
    /// one after the other, so that only one of them can find the alert pending and send it;
    /// different transactions run concurrently, up to the bound.
    pub async fn process_batch(&self, messages: Vec<ReceivedMessage>) -> BatchReport {
        metrics::histogram!(telemetry::BATCH_SIZE).record(messages.len() as f64);
        let now = Utc::now();
        let mut by_transaction: BTreeMap<(String, String), Vec<(ReceivedMessage, Envelope)>> =
            BTreeMap::new();
        let mut broken = Vec::new();
        for message in messages {
            match Envelope::decode(&message.body, message.sent_at, &message.id, now) {
                Ok(envelope) => {
                    let key = (
                        envelope.shop_id.to_string(),
                        envelope.transaction.transaction_id.clone(),
                    );
                    by_transaction
                        .entry(key)
                        .or_default()
                        .push((message, envelope));
                }
                Err(error) => broken.push((message, error.to_string())),
            }
        }
        let dead_lettering = stream::iter(broken)
            .map(|(message, reason)| async move {
                let outcome = self.dead_letter(&message, reason).await;
                vec![(message, outcome)]
            })
            .buffer_unordered(self.concurrency);
        let processing = stream::iter(by_transaction.into_values())
            .map(|group| async move {
                let mut outcomes = Vec::with_capacity(group.len());
                for (message, envelope) in group {
                    let outcome = match self.handle(envelope).await {
                        // The store or notifier will refuse this message every time: retrying
                        // would only delay the dead-lettering.
                        Outcome::Failed(error @ PortError::Rejected { .. }) => {
                            self.dead_letter(&message, error.to_string()).await
                        }
                        outcome => outcome,
                    };
                    outcomes.push((message, outcome));
                }
                outcomes
            })
            .buffer_unordered(self.concurrency);
        let outcomes = dead_lettering
            .chain(processing)
            .flat_map(stream::iter)
            .collect()
            .await;
        BatchReport { outcomes }
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: String) -> Outcome {
        tracing::warn!(message_id = %message.id, %reason, "dead-lettering a message that can never succeed");
        match self.queue.dead_letter(message, &reason).await {
            Ok(()) => {
                metrics::counter!(telemetry::DEAD_LETTERED).increment(1);
                Outcome::DeadLettered(reason)
            }
            Err(error) => Outcome::Failed(error),
        }
    }

    async fn handle(&self, envelope: Envelope) -> Outcome {
        let decision = self.alerts.evaluate(&envelope.transaction);
        let record = TransactionRecord::new(envelope, decision, Utc::now());
        let (stored, outcome) = match self.store.put_if_absent(&record).await {
            Ok(PutOutcome::Inserted) => {
                metrics::counter!(telemetry::PROCESSED).increment(1);
                let lag = record.processed_at - record.accepted_at;
                metrics::histogram!(telemetry::PROCESSING_LAG)
                    .record(lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
                (record, Outcome::Stored)
            }
            Ok(PutOutcome::Duplicate(existing)) => {
                metrics::counter!(telemetry::DUPLICATES).increment(1);
                (existing, Outcome::Duplicate)
            }
            Ok(PutOutcome::Conflict(existing)) => {
                metrics::counter!(telemetry::CONFLICTS).increment(1);
                tracing::warn!(
                    shop_id = %record.shop_id,
                    transaction_id = %record.transaction.transaction_id,
                    kept_request_id = %existing.request_id,
                    refused_request_id = %record.request_id,
                    "conflict: another payload is already stored under this id; kept the original"
                );
                (existing, Outcome::Conflict)
            }
            Err(error) => return Outcome::Failed(error),
        };
        // Also reached by a redelivery after a crash between storing and publishing: the state
        // is still pending, so the alert goes out now.
        if stored.alert_is_pending()
            && let Err(error) = self.send_alert(&stored).await
        {
            return Outcome::Failed(error);
        }
        outcome
    }

    async fn send_alert(&self, record: &TransactionRecord) -> Result<(), PortError> {
        let Some(status) = &record.alert else {
            return Ok(());
        };
        let alert = Alert {
            shop_id: record.shop_id.clone(),
            transaction: record.transaction.clone(),
            rule: status.rule.clone(),
            threshold: status.threshold,
        };
        self.notifier.publish(&alert).await?;
        self.store
            .mark_alert_sent(
                &record.shop_id,
                &record.transaction.transaction_id,
                Utc::now(),
            )
            .await?;
        metrics::counter!(telemetry::ALERTS_SENT).increment(1);
        Ok(())
    }
}
