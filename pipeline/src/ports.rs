//! The three ports the binaries talk to. Each has an embedded adapter (SQLite) and an AWS one
//! (SQS, DynamoDB, SNS); the binaries choose at start-up and nothing else knows which is in use.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::domain::Alert;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};
use crate::domain::{ListQuery, Page, RefusedResend, ShopId, TransactionRecord};

/// The single error type of the ports.
///
/// - `Unavailable` is transient: the service did not answer or refused for now. The API
///   answers 503 with `Retry-After`; the processor hands the message back to be retried.
/// - `Rejected` is permanent: the service refused this request and will refuse it again as it
///   is. The processor dead-letters the message at once; the API answers 500, because it only
///   sends what it validated, so a refusal is a bug to fix, not a reason for the client to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("{component} is unavailable: {detail}")]
    Unavailable {
        component: &'static str,
        detail: String,
        /// When it is worth trying again, if the adapter knows.
        retry_after: Option<Duration>,
    },
    #[error("{component} rejected the request: {detail}")]
    Rejected {
        component: &'static str,
        detail: String,
    },
}

impl PortError {
    pub fn unavailable(component: &'static str, detail: impl ToString) -> Self {
        Self::Unavailable {
            component,
            detail: detail.to_string(),
            retry_after: None,
        }
    }

    /// The same error, saying when a retry may succeed (transient errors only).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        if let Self::Unavailable { retry_after, .. } = &mut self {
            *retry_after = Some(wait);
        }
        self
    }

    /// When it is worth trying again, if known.
    pub fn retry_hint(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::Rejected { .. } => None,
        }
    }

    pub fn rejected(component: &'static str, detail: impl ToString) -> Self {
        Self::Rejected {
            component,
            detail: detail.to_string(),
        }
    }
}

/// A message to enqueue. Attributes repeat routing facts of the body (shop, request, type) for
/// queues that can filter or show them without parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

/// A leased message. `receipt` names this lease: acking with it after the lease expired and
/// someone else received the message does not delete their copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: String,
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Waiting or leased.
    pub messages: u64,
    pub dead_letters: u64,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Returns only once the message is durable; an error means it may not be.
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError>;

    /// Sends several at once; each entry succeeds or fails on its own.
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError>;

    /// Leases up to `max` messages, waiting up to `wait` for the first one to arrive.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError>;

    /// Deletes messages that were handled.
    async fn ack(&self, receipts: &[String]) -> Result<(), PortError>;

    /// Gives a message back to be received again after `delay`, remembering why it failed.
    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), PortError>;

    /// Moves a message that can never succeed to the dead-letter queue, with the reason.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), PortError>;

    async fn depth(&self) -> Result<QueueDepth, PortError>;

    /// Whether a send would be accepted now, as cheaply as the service allows: for readiness
    /// checks, which must fail when sends fail (a full disk, an unreachable queue).
    async fn probe(&self) -> Result<(), PortError>;

    /// Up to `max` dead letters with their reasons, left in place: what an operator looks at
    /// before a redrive.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, PortError>;

    /// Moves dead letters back onto the queue, to be processed again after a fix: all of them,
    /// or those with the given ids. Returns how many moved. Safe to repeat: a redriven
    /// transaction that was stored meanwhile is a duplicate, never a second record or alert.
    async fn redrive(&self, which: &Redrive) -> Result<usize, PortError>;
}

/// A shared queue is a queue, so that decorators (the breaker) can wrap `Arc<dyn Queue>`.
#[async_trait]
impl<T: Queue + ?Sized> Queue for std::sync::Arc<T> {
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError> {
        (**self).send(message).await
    }
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        (**self).send_batch(messages).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError> {
        (**self).receive(max, wait).await
    }
    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        (**self).ack(receipts).await
    }
    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), PortError> {
        (**self).retry_later(receipt, delay, error).await
    }
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), PortError> {
        (**self).dead_letter(message, reason).await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        (**self).depth().await
    }
    async fn probe(&self) -> Result<(), PortError> {
        (**self).probe().await
    }
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, PortError> {
        (**self).dead_letters(max).await
    }
    async fn redrive(&self, which: &Redrive) -> Result<usize, PortError> {
        (**self).redrive(which).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub body: String,
    pub reason: String,
}

/// Which dead letters to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    All,
    Ids(Vec<String>),
}

impl Redrive {
    pub fn includes(&self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => ids.iter().any(|wanted| wanted == id),
        }
    }
}

/// What `put_if_absent` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Inserted,
    /// The same payload was stored before: a redelivery. Carries the stored record.
    Duplicate(TransactionRecord),
    /// Another payload is stored under this id; it was kept. Carries the stored record.
    Conflict(TransactionRecord),
}

impl PutOutcome {
    /// What an attempted `put` of `attempted` means, given the record already stored.
    pub fn of_existing(existing: TransactionRecord, attempted: &TransactionRecord) -> Self {
        if existing.payload_hash == attempted.payload_hash {
            Self::Duplicate(existing)
        } else {
            Self::Conflict(existing)
        }
    }
}

/// A claim on publishing one alert. Whoever holds an unexpired claim may publish; a claim that
/// expired (its holder crashed or stalled) can be taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertClaim {
    /// Who claims: one delivery of one message.
    pub owner: String,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller holds the claim and should publish.
    Claimed,
    /// Another delivery holds it until then; it may still publish.
    HeldElsewhere { until: DateTime<Utc> },
    /// Published already: nothing to do.
    AlreadySent,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores the record unless one with its (shop, transaction id) exists.
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError>;

    async fn get(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError>;

    /// One page of the shop's transactions, newest first, from an index: never a scan of the
    /// shop's rows. Examines at most `MAX_EXAMINED_PER_PAGE` rows (or the AWS equivalent in
    /// `Query` calls); a filter that rejects more returns a shorter page with `next` set.
    async fn list(&self, shop_id: &ShopId, query: &ListQuery) -> Result<Page, PortError>;

    /// Records a refused re-send with another payload beside the stored transaction. The same
    /// refused request reported twice (a redelivery) is counted once.
    async fn record_conflict(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        refused: &RefusedResend,
    ) -> Result<(), PortError>;

    /// Claims a pending alert for publishing, atomically: of concurrent callers, one gets
    /// `Claimed`, the others `HeldElsewhere`.
    async fn claim_alert(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        claim: &AlertClaim,
    ) -> Result<ClaimOutcome, PortError>;

    /// Gives up a claim this caller holds (its publish failed), so that the next delivery need
    /// not wait for it to expire. A no-op if the claim is someone else's by now.
    async fn release_alert_claim(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        owner: &str,
    ) -> Result<(), PortError>;

    /// Moves the alert from pending to sent; a no-op if it is already sent.
    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Adds one transaction's contributions to the windowed rules' counters, once: a second
    /// call for the same (shop, transaction id) before `remember_until` changes nothing, and of
    /// concurrent calls exactly one counts. All contributions are added, or none.
    async fn count_once(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
    ) -> Result<(), PortError>;

    /// The totals of each window, in the order asked, read after every count before it.
    async fn window_totals(
        &self,
        shop_id: &ShopId,
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError>;

    /// `count_once`, then `window_totals`: what the processor does for each transaction. A
    /// store that can do both in one step overrides it.
    async fn count_then_total(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError> {
        self.count_once(shop_id, transaction_id, remember_until, contributions)
            .await?;
        self.window_totals(shop_id, windows).await
    }
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError>;
}
