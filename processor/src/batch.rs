use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use infra::domain::lists::ListLookup;
use infra::domain::{
    Alert, AlertDecision, Decisions, Envelope, RefusedResend, RuleSet, ShopId, Transaction,
    TransactionRecord,
};
use infra::ports::{
    AlertClaim, AlertLedger, ClaimOutcome, Consumer, ListMembership, Notifier, PortError,
    PutOutcome, ReceivedMessage, RecordWriter, Store, WindowCounters,
};
use infra::telemetry;
use tokio::time::Instant;

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

/// A message is started only with at least this long left before its batch's deadline, so
/// that the work begun has a chance to finish rather than being cut.
pub const TIME_TO_START: Duration = Duration::from_secs(2);
/// Kept back from the deadline when a publish is given up, to release the alert's claim.
const TIME_TO_RELEASE: Duration = Duration::from_secs(1);

/// How long a claim on publishing an alert lasts unless set: longer than the processor
/// Lambda's timeout (30 s), so that a claim outlives any invocation that may still publish.
pub const DEFAULT_ALERT_CLAIM: Duration = Duration::from_secs(60);

pub struct Processor {
    /// Where poison goes.
    queue: Arc<dyn Consumer>,
    records: Arc<dyn RecordWriter>,
    ledger: Arc<dyn AlertLedger>,
    counters: Arc<dyn WindowCounters>,
    notifier: Arc<dyn Notifier>,
    /// The shops' lists, for `list` rules (none without them).
    lists: Option<Arc<dyn ListMembership>>,
    rules: RuleSet,
    /// How many messages of a batch are in flight at once.
    concurrency: usize,
    /// How long a claim on publishing an alert lasts.
    alert_claim: Duration,
    clock: DecisionClock,
}

/// The moment of each decision, strictly increasing in this process: a record's
/// `processed_at`. Read in the same poll that hands the transaction's count to the store, so
/// that the order of `processed_at` is the order in which the embedded store counted (one
/// writer, in order), which is what a backtest replays.
#[derive(Default)]
struct DecisionClock {
    last_micros: AtomicI64,
}

impl DecisionClock {
    fn now(&self) -> DateTime<Utc> {
        let wall = Utc::now().timestamp_micros();
        let previous = self
            .last_micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(wall.max(last + 1))
            });
        let (Ok(previous) | Err(previous)) = previous;
        DateTime::from_timestamp_micros(wall.max(previous + 1)).unwrap_or_else(Utc::now)
    }
}

impl Processor {
    /// Takes a whole store and keeps each of its ports apart, holding only what it calls.
    pub fn new(
        queue: Arc<dyn Consumer>,
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        rules: impl Into<RuleSet>,
    ) -> Self {
        Self {
            queue,
            records: store.clone(),
            ledger: store.clone(),
            counters: store,
            notifier,
            lists: None,
            rules: rules.into(),
            concurrency: 10,
            alert_claim: DEFAULT_ALERT_CLAIM,
            clock: DecisionClock::default(),
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn with_lists(mut self, lists: Arc<dyn ListMembership>) -> Self {
        self.lists = Some(lists);
        self
    }

    pub fn with_alert_claim(mut self, claim: Duration) -> Self {
        self.alert_claim = claim;
        self
    }

    /// Processes a batch. Never fails as a whole: each message gets its own outcome.
    ///
    /// Messages for the same transaction (a duplicate delivered in the same batch) are handled
    /// one after the other, so that only one of them can find the alert pending and send it;
    /// different transactions run concurrently, up to the bound.
    pub async fn process_batch(&self, messages: Vec<ReceivedMessage>) -> BatchReport {
        self.process_batch_within(messages, None).await
    }

    /// Processes a batch that must be done by `deadline` (a Lambda invocation's): no message
    /// is started without [`TIME_TO_START`] left before it, and one still running at the
    /// deadline is cut and reported failed, so that it can be handed back to the queue in
    /// time. A publish is given up [`TIME_TO_RELEASE`] before the deadline, to release its
    /// claim; a claim taken by a message cut in another call expires by itself.
    pub async fn process_batch_within(
        &self,
        messages: Vec<ReceivedMessage>,
        deadline: Option<Instant>,
    ) -> BatchReport {
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
                let outcome = within(deadline, self.dead_letter(&message, reason)).await;
                vec![(message, outcome)]
            })
            .buffer_unordered(self.concurrency);
        let processing = stream::iter(by_transaction.into_values())
            .map(|group| async move {
                let mut outcomes = Vec::with_capacity(group.len());
                for (message, envelope) in group {
                    let settled = async {
                        match self.handle(&message, envelope, deadline).await {
                            // The store or notifier will refuse this message every time:
                            // retrying would only delay the dead-lettering.
                            Outcome::Failed(error @ PortError::Rejected { .. }) => {
                                self.dead_letter(&message, error.to_string()).await
                            }
                            outcome => outcome,
                        }
                    };
                    let outcome = within(deadline, settled).await;
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

    async fn handle(
        &self,
        message: &ReceivedMessage,
        envelope: Envelope,
        deadline: Option<Instant>,
    ) -> Outcome {
        let (decisions, decided_at) = match self.decide(&envelope).await {
            Ok(decided) => decided,
            Err(error) => return Outcome::Failed(error),
        };
        let record = TransactionRecord::new(envelope, decisions, decided_at);
        let (stored, outcome) = match self.records.put_if_absent(&record).await {
            Ok(PutOutcome::Inserted) => {
                metrics::counter!(telemetry::PROCESSED).increment(1);
                for alert in &record.alerts {
                    metrics::counter!(telemetry::ALERTS_RAISED, "rule" => alert.decision.rule.clone())
                        .increment(1);
                }
                for hit in &record.shadow_alerts {
                    metrics::counter!(telemetry::ALERTS_SHADOW, "rule" => hit.rule.clone())
                        .increment(1);
                }
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
                let refused = RefusedResend {
                    request_id: record.request_id.clone(),
                    accepted_at: record.accepted_at,
                };
                let shop_id = &record.shop_id;
                let transaction_id = &record.transaction.transaction_id;
                if let Err(error) = self
                    .records
                    .record_conflict(shop_id, transaction_id, &refused)
                    .await
                {
                    return Outcome::Failed(error);
                }
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
        // Also reached by a redelivery after a crash between storing and publishing: the alert
        // is still pending, so it goes out now.
        for alert in stored.pending_alerts() {
            if let Err(error) = self
                .send_alert(message, &stored, &alert.decision, deadline)
                .await
            {
                return Outcome::Failed(error);
            }
        }
        outcome
    }

    /// The rules that fire, and the moment of the decision. Windowed rules first count the
    /// transaction, once however often it is delivered, then read their windows, which then
    /// include it. A redelivery may read windows that have grown since; its decisions are thrown
    /// away, as the stored record's (written by the first delivery that got through) are the
    /// ones that count.
    async fn decide(&self, envelope: &Envelope) -> Result<(Decisions, DateTime<Utc>), PortError> {
        let transaction = &envelope.transaction;
        let shop_id = &envelope.shop_id;
        let listed = self.listed(shop_id, transaction).await?;
        // One clock reading, so that "not counted" and "late" are judged at the same moment,
        // the record's `processed_at`; no await comes between it and the count's hand-over.
        let now = self.clock.now();
        let counting = self
            .rules
            .windowed_checks(transaction, shop_id.as_str(), now);
        let Some(counting) = counting else {
            if self.rules.has_windowed_rules() && self.rules.is_late(transaction, now) {
                metrics::counter!(telemetry::COUNTING_SKIPPED_LATE).increment(1);
            }
            return Ok((self.rules.decide(transaction, None, &[], &listed), now));
        };
        let totals = self
            .counters
            .count_then_total(
                shop_id,
                &transaction.transaction_id,
                counting.remember_until,
                &counting.contributions(),
                &counting.queries(),
            )
            .await?;
        Ok((
            self.rules
                .decide(transaction, Some(&counting), &totals, &listed),
            now,
        ))
    }

    /// The look-ups of the transaction's list rules that its shop's lists hold, read now: a
    /// value added before this moment counts.
    async fn listed(
        &self,
        shop_id: &ShopId,
        transaction: &Transaction,
    ) -> Result<Vec<ListLookup>, PortError> {
        let lookups = self.rules.list_lookups(transaction);
        if lookups.is_empty() {
            return Ok(lookups);
        }
        let lists = self
            .lists
            .as_ref()
            .ok_or_else(|| PortError::rejected("lists", infra::backtest::LISTS_NEEDED))?;
        let held = lists.listed(shop_id, &lookups).await?;
        Ok(lookups
            .into_iter()
            .zip(held)
            .filter_map(|(lookup, held)| held.then_some(lookup))
            .collect())
    }

    /// Publishes one alert exactly once across concurrent deliveries: claim it, publish, mark
    /// it sent. A delivery that finds the claim held by another is retried after the claim
    /// expires (the holder may have crashed); by then the alert is sent or claimable.
    async fn send_alert(
        &self,
        message: &ReceivedMessage,
        record: &TransactionRecord,
        decision: &AlertDecision,
        deadline: Option<Instant>,
    ) -> Result<(), PortError> {
        let (shop_id, transaction_id) = (&record.shop_id, &record.transaction.transaction_id);
        let now = Utc::now();
        // Two copies of one SQS message share its id but not their receipts.
        let claim = AlertClaim {
            owner: format!("{}#{}", message.id, short_hash(&message.receipt)),
            now,
            until: now + self.alert_claim,
        };
        match self
            .ledger
            .claim_alert(shop_id, transaction_id, &decision.rule, &claim)
            .await?
        {
            ClaimOutcome::Claimed => {}
            ClaimOutcome::AlreadySent => return Ok(()),
            ClaimOutcome::HeldElsewhere { until } => {
                let wait = (until - now).to_std().unwrap_or_default();
                return Err(PortError::unavailable(
                    "notifier",
                    format!(
                        "alert {} is being published by another delivery",
                        decision.rule
                    ),
                )
                .retry_after(wait));
            }
        }
        let alert = Alert {
            shop_id: shop_id.clone(),
            transaction: record.transaction.clone(),
            decision: decision.clone(),
            transaction_decision: record.decision(),
        };
        // Given up well before the claim expires, so that no other delivery can take the claim
        // over while this one may still publish, and in time to release the claim before the
        // batch's deadline.
        let mut publish_within = self.alert_claim / 2;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            publish_within = publish_within.min(left.saturating_sub(TIME_TO_RELEASE));
        }
        let published = tokio::time::timeout(publish_within, self.notifier.publish(&alert))
            .await
            .unwrap_or_else(|_| {
                Err(PortError::unavailable(
                    "notifier",
                    format!("no answer within {publish_within:?}"),
                ))
            });
        if let Err(error) = published {
            // Not sent: let the next delivery try without waiting for the claim to expire.
            if let Err(release) = self
                .ledger
                .release_alert_claim(shop_id, transaction_id, &decision.rule, &claim.owner)
                .await
            {
                tracing::debug!(%release, "could not release the alert claim; it will expire");
            }
            return Err(error);
        }
        metrics::counter!(telemetry::ALERTS_SENT).increment(1);
        // Published: marking it sent is its own task, which a deadline's cut of this message
        // does not cancel. A cut mark would leave the claim held until it expires and the next
        // delivery would publish again; the task finishes instead (in Lambda, at the latest
        // when the environment next runs), and the next delivery finds the alert sent.
        let ledger = self.ledger.clone();
        let (shop_id, transaction_id, rule) = (
            shop_id.clone(),
            transaction_id.clone(),
            decision.rule.clone(),
        );
        tokio::spawn(async move {
            ledger
                .mark_alert_sent(&shop_id, &transaction_id, &rule, Utc::now())
                .await
        })
        .await
        .unwrap_or_else(|error| Err(PortError::unavailable("store", error)))
    }
}

/// A short, stable digest of a receipt, to name one delivery in a claim.
fn short_hash(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Runs one message's work unless the deadline is too near to start it, and cuts it at the
/// deadline. Either way the message is a transient failure, to be delivered again.
async fn within(deadline: Option<Instant>, work: impl Future<Output = Outcome>) -> Outcome {
    let Some(deadline) = deadline else {
        return work.await;
    };
    if deadline.saturating_duration_since(Instant::now()) < TIME_TO_START {
        return Outcome::Failed(PortError::unavailable(
            "processor",
            "not started: too little time left before the deadline",
        ));
    }
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Outcome::Failed(PortError::unavailable("processor", "cut at the deadline"))
        })
}
