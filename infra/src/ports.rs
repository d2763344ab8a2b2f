//! The ports the binaries talk to, cut by caller so that each holds only what it calls:
//!
//! | port | methods | who holds it |
//! | --- | --- | --- |
//! | [`Producer`] | send, send a batch, probe | the API |
//! | [`Consumer`] | receive, ack, retry later, dead-letter, depth | the worker, the processor, the SQS Lambda |
//! | [`DeadLetters`] | list, redrive | the operator's commands |
//! | [`RecordReader`] | get, list | the API |
//! | [`RecordWriter`] | put if absent, record a conflict | the processor |
//! | [`History`] | a period of records | backtests (the API, the operator's command) |
//! | [`ListMembership`] | which values lists hold | the processor, backtests |
//! | [`ListAdmin`] | add, remove, page a list | the API |
//! | [`AlertLedger`] | claim, release, mark sent | the processor |
//! | [`WindowCounters`] | count once, window totals | the processor |
//! | [`Notifier`] | publish | the processor |
//!
//! Each queue adapter (SQLite, SQS) is all three queue ports, and each store adapter (SQLite,
//! DynamoDB) all four store ports: [`Queue`] and [`Store`] name those wholes, for the wiring
//! and for tests. The binaries choose adapters at start-up (`adapters::select`) and nothing
//! else knows which are in use.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::domain::Alert;
use crate::domain::lists::ListLookup;
use crate::domain::rules::backtest::Period;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};
use crate::domain::webhooks::EventType;
use crate::domain::{
    AlertListQuery, AlertPage, InboxAlert, ListQuery, Page, RefusedResend, Review, ShopId,
    TransactionRecord,
};

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

/// The sending side of the queue: what the API calls.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Returns only once the message is durable; an error means it may not be.
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError>;

    /// Sends several at once; each entry succeeds or fails on its own.
    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError>;

    /// Whether a send would be accepted now, as cheaply as the service allows: for readiness
    /// checks, which must fail when sends fail (a full disk, an unreachable queue).
    async fn probe(&self) -> Result<(), PortError>;
}

/// How much is waiting: for the processor's gauges and the operator's overview.
#[async_trait]
pub trait Backlog: Send + Sync {
    async fn depth(&self) -> Result<QueueDepth, PortError>;
}

/// The receiving side of the queue: what the worker loop, the processor and the SQS Lambda call.
#[async_trait]
pub trait Consumer: Backlog {
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
}

/// The dead letters, for an operator: look at them, put them back after a fix.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Up to `max` dead letters with their reasons, left in place: what an operator looks at
    /// before a redrive.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, PortError>;

    /// Moves dead letters back onto the queue, to be processed again after a fix: all of them,
    /// or those with the given ids. Returns how many moved. Safe to repeat: a redriven
    /// transaction that was stored meanwhile is a duplicate, never a second record or alert.
    async fn redrive(&self, which: &Redrive) -> Result<usize, PortError>;
}

/// A whole queue adapter: what the wiring opens and hands out by side.
pub trait Queue: Producer + Consumer + DeadLetters {}
impl<T: Producer + Consumer + DeadLetters + ?Sized> Queue for T {}

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

/// Reading a shop's stored transactions: what the API calls.
#[async_trait]
pub trait RecordReader: Send + Sync {
    async fn get(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError>;

    /// One page of the shop's transactions, newest first, from an index: never a scan of the
    /// shop's rows. Examines at most `MAX_EXAMINED_PER_PAGE` rows (or the AWS equivalent in
    /// `Query` calls); a filter that rejects more returns a shorter page with `next` set.
    async fn list(&self, shop_id: &ShopId, query: &ListQuery) -> Result<Page, PortError>;
}

/// Writing transactions once: what the processor calls.
#[async_trait]
pub trait RecordWriter: Send + Sync {
    /// Stores the record unless one with its (shop, transaction id) exists.
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError>;

    /// Records a refused re-send with another payload beside the stored transaction. The same
    /// refused request reported twice (a redelivery) is counted once.
    async fn record_conflict(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        refused: &RefusedResend,
    ) -> Result<(), PortError>;
}

/// Each alert's publication, claimed by one delivery at a time and marked sent once.
#[async_trait]
pub trait AlertLedger: Send + Sync {
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
}

/// The windowed rules' counters, counted once per transaction.
#[async_trait]
pub trait WindowCounters: Send + Sync {
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

/// What became of a review written on condition of the version it was based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    Saved(InboxAlert),
    /// Another review came first: the alert as it is now.
    Stale(InboxAlert),
    Missing,
}

/// The alerts of a shop as resources (the API): listed, read, and reviewed. Alerts are
/// written by the store with the transaction that raised them ([`RecordWriter::put_if_absent`])
/// and their publication follows [`AlertLedger::mark_alert_sent`].
#[async_trait]
pub trait AlertInbox: Send + Sync {
    async fn list_alerts(
        &self,
        shop_id: &ShopId,
        query: &AlertListQuery,
    ) -> Result<AlertPage, PortError>;

    async fn get_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
    ) -> Result<Option<InboxAlert>, PortError>;

    /// Writes `review` if the alert's review is still at `based_on` (its version), together
    /// with the review status the transaction's record shows.
    async fn review_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
        based_on: u64,
        review: &Review,
    ) -> Result<ReviewOutcome, PortError>;
}

/// A period of stored transactions, for backtests: what `rules backtest` and
/// `POST /rules/backtest` call.
#[async_trait]
pub trait History: Send + Sync {
    /// The shop's records whose `timestamp` is in `period`, in no particular order, with their
    /// alerts' reviews; `TooMany` as soon as more than the bound is found, without reading on.
    async fn history(
        &self,
        shop_id: &ShopId,
        period: Period,
        bound: HistoryBound,
    ) -> Result<HistoryRead, PortError>;

    /// Every shop with stored transactions, for a backtest of all of them; a store that cannot
    /// tell without reading everything refuses, and the shop must be named.
    async fn shops(&self) -> Result<Vec<ShopId>, PortError>;
}

/// How much a history read may hold: records, and the bytes of their stored JSON (a record
/// may be up to 64 KiB, so a count alone does not bound memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBound {
    pub transactions: usize,
    pub bytes: usize,
}

/// The stored JSON a history read may hold per transaction of its bound: twice a typical
/// record. In memory a parsed record takes about as much again.
pub const HISTORY_BYTES_PER_TRANSACTION: usize = 1024;

impl HistoryBound {
    /// At most `max_transactions`, and [`HISTORY_BYTES_PER_TRANSACTION`] of JSON for each.
    pub fn of_transactions(max_transactions: usize) -> Self {
        Self {
            transactions: max_transactions,
            bytes: max_transactions.saturating_mul(HISTORY_BYTES_PER_TRANSACTION),
        }
    }

    /// Whether records of `bytes` in all, one more than `transactions`, still fit.
    pub fn admits(&self, transactions: usize, bytes: usize) -> bool {
        transactions <= self.transactions && bytes <= self.bytes
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRead {
    /// The records, and the bytes of their stored JSON.
    Complete(Vec<TransactionRecord>, usize),
    /// More than the bound asked for.
    TooMany,
}

/// Whether a shop's lists hold values, for `list` rules: what the processor and backtests call.
#[async_trait]
pub trait ListMembership: Send + Sync {
    /// For each look-up, in order, whether the shop's list holds the value; read after every
    /// change that was answered before the call.
    async fn listed(
        &self,
        shop_id: &ShopId,
        lookups: &[ListLookup],
    ) -> Result<Vec<bool>, PortError>;
}

/// Managing a shop's lists: what the API calls.
#[async_trait]
pub trait ListAdmin: Send + Sync {
    /// Adds the value (a no-op if it is there); durable on return.
    async fn add_to_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;

    /// Removes the value (a no-op if it is not there); durable on return.
    async fn remove_from_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
    ) -> Result<(), PortError>;

    /// Up to `limit` values after `after`, in the order of their bytes.
    async fn list_items(
        &self,
        shop_id: &ShopId,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListItems, PortError>;
}

/// Both sides of a lists adapter, for the wiring.
pub trait Lists: ListAdmin + ListMembership {}
impl<T: ListAdmin + ListMembership + ?Sized> Lists for T {}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListItem {
    pub value: String,
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItems {
    pub items: Vec<ListItem>,
    /// The last value of a full page, to continue after.
    pub next: Option<String>,
}

impl ListItems {
    /// A page of `limit` from up to `limit + 1` items read: the one more says there is a next.
    pub fn from_overfetch(mut items: Vec<ListItem>, limit: usize) -> Self {
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|item| item.value.clone())
        });
        Self {
            items,
            next: next.flatten(),
        }
    }
}

/// What the API does with a shop's stored data: read its transactions, list and review its
/// alerts, replay a period of them.
pub trait ShopStore: RecordReader + AlertInbox + History {}
impl<T: RecordReader + AlertInbox + History + ?Sized> ShopStore for T {}

/// A whole store adapter: what the wiring opens and hands out by use.
pub trait Store: ShopStore + RecordWriter + AlertLedger + WindowCounters {}
impl<T: ShopStore + RecordWriter + AlertLedger + WindowCounters + ?Sized> Store for T {}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError>;
}

/// One piece of text kept outside the binary and changed without a deploy (the API keys, the
/// alert rules): an SSM parameter on AWS.
#[async_trait]
pub trait Parameter: Send + Sync {
    fn name(&self) -> &str;

    /// Its text and version, or `None` while it does not exist.
    async fn read(&self) -> Result<Option<ParameterValue>, PortError>;
}

/// A parameter's text, and the version the parameter store gave it (SSM counts from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterValue {
    pub text: String,
    pub version: i64,
}

/// The SHA-256 of an API key: what is stored and looked up, never the key itself.
pub type KeyHash = [u8; 32];

/// An API key as stored: the shop it admits, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub hash: KeyHash,
    pub shop_id: ShopId,
    pub created_at: DateTime<Utc>,
    /// Set when the key was rotated out or is to be: it admits no request from then on.
    pub expires_at: Option<DateTime<Utc>>,
}

impl StoredKey {
    pub fn new(hash: KeyHash, shop_id: ShopId, created_at: DateTime<Utc>) -> Self {
        Self {
            hash,
            shop_id,
            created_at,
            expires_at: None,
        }
    }

    pub fn key_id(&self) -> String {
        key_id(&self.hash)
    }

    pub fn admits_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

/// Names a key where the key itself must not appear (listings, who made a review): the first
/// 12 hex digits of its hash, which tell nothing about the key.
pub fn key_id(hash: &KeyHash) -> String {
    hash.iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Finding one API key by its hash (the API, per request; it caches what it finds).
#[async_trait]
pub trait KeyLookup: Send + Sync {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<StoredKey>, PortError>;
}

/// Managing a shop's API keys (the operator's `api keys` commands).
#[async_trait]
pub trait KeyAdmin: KeyLookup {
    /// Adds a key; refused if one with this hash exists.
    async fn add_key(&self, key: &StoredKey) -> Result<(), PortError>;
    async fn keys_of(&self, shop_id: &ShopId) -> Result<Vec<StoredKey>, PortError>;
    /// Sets when the key stops admitting requests (never later than an expiry it has).
    async fn expire_key(&self, hash: &KeyHash, at: DateTime<Utc>) -> Result<(), PortError>;
    async fn remove_key(&self, hash: &KeyHash) -> Result<(), PortError>;
}

/// A shop's webhook: where its events go, and the secrets that sign them.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub webhook_id: String,
    pub shop_id: ShopId,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub secret: String,
    /// The secret before the last rotation, signing beside the new one until it expires.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
}

/// Without the secrets: a webhook in a log or a panic message shows none.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Webhook")
            .field("webhook_id", &self.webhook_id)
            .field("shop_id", &self.shop_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The secrets that sign a delivery made at `now`.
    pub fn live_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// One attempt to deliver an event, as the deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    /// The receiver's status code, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed without an answer (refused, timed out, a forbidden address).
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub delivery_id: String,
    pub event_id: String,
    pub event_type: EventType,
    /// `pending` (retries left), `delivered` or `failed` (no retries left).
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// A page of a webhook's deliveries, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveriesPage {
    Page {
        deliveries: Vec<Delivery>,
        /// More follow the last one.
        more: bool,
    },
    /// The shop has no such webhook.
    NoWebhook,
    /// The page was to start after a delivery the webhook does not have (gone, or never its
    /// own): an error, rather than a walk that starts again from the top.
    UnknownCursor,
}

/// A delivery that is due: what to send, where, and how many attempts came before.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: String,
    pub webhook: Webhook,
    pub body: String,
    pub attempts_made: u32,
}

/// What an attempt leaves the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
}

impl AttemptOutcome {
    /// The delivery's state after it, as the deliveries list shows it.
    pub fn state(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "pending",
            Self::Failed => "failed",
        }
    }
}

/// A shop's webhooks (the API): registered, listed, removed, their secrets rotated, their
/// deliveries read. The events themselves are written by the store with the change they
/// report (an alert raised with its record, a review with the review).
#[async_trait]
pub trait WebhookRegistry: Send + Sync {
    /// Adds the webhook unless the shop has `most` already; false then.
    async fn add_webhook(&self, webhook: &Webhook, most: usize) -> Result<bool, PortError>;
    async fn webhooks(&self, shop_id: &ShopId) -> Result<Vec<Webhook>, PortError>;
    async fn webhook(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
    ) -> Result<Option<Webhook>, PortError>;
    async fn remove_webhook(&self, shop_id: &ShopId, webhook_id: &str) -> Result<bool, PortError>;
    /// Makes `secret` the signing secret; the one before keeps signing until `old_until`.
    async fn rotate_secret(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        secret: &str,
        old_until: DateTime<Utc>,
    ) -> Result<Option<Webhook>, PortError>;
    /// A webhook's deliveries, newest first, `limit` of them after `after` (a delivery id).
    async fn deliveries(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<DeliveriesPage, PortError>;
}

/// Which due deliveries a sender takes: `limit` in all, and no more of one webhook than
/// brings its deliveries in flight (`in_flight`, by webhook id) to `per_webhook`, so that one
/// slow receiver holds a share of the sender, never all of it.
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    pub limit: usize,
    pub per_webhook: usize,
    pub in_flight: &'a HashMap<String, usize>,
}

/// The deliveries to make (the delivery worker).
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// Deliveries due at `now`, as many as `take` allows, each leased until `now + lease` so
    /// that no other worker sends it meanwhile.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        take: Take<'_>,
    ) -> Result<Vec<DueDelivery>, PortError>;

    /// Forgets delivered and failed deliveries made before `before`.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, PortError>;

    async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &DeliveryAttempt,
        outcome: AttemptOutcome,
    ) -> Result<(), PortError>;
}

/// One event's delivery to one webhook, as the webhooks function passes it on its queue (on
/// AWS, where SQS holds the pending deliveries and retries them by visibility).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuedDelivery {
    pub shop_id: ShopId,
    pub webhook_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    /// The event as it is sent, byte for byte the same at every attempt.
    pub body: String,
}

/// The deliveries list where a queue, not the store, schedules the deliveries (AWS): each
/// delivery's entry opened once, queued once, then its attempts.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Opens the delivery's entry (pending, no attempt) unless it is there. True when it must
    /// be queued: new, or opened before by a run that stopped before queueing it.
    async fn open_delivery(&self, delivery: &QueuedDelivery) -> Result<bool, PortError>;

    /// Notes that these deliveries are on the queue.
    async fn mark_queued(&self, deliveries: &[QueuedDelivery]) -> Result<(), PortError>;

    /// The attempts made so far, while the delivery is pending; `None` once it ended (or is
    /// gone), so a duplicate message makes no attempt.
    async fn pending_attempts(&self, delivery: &QueuedDelivery) -> Result<Option<u32>, PortError>;

    /// Appends the attempt and its outcome, if the delivery is still pending.
    async fn record_delivery_attempt(
        &self,
        delivery: &QueuedDelivery,
        attempt: &DeliveryAttempt,
        outcome: AttemptOutcome,
    ) -> Result<(), PortError>;
}

/// The queue of deliveries to make (AWS): sent by the events side, retried by visibility.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn send_deliveries(&self, deliveries: &[QueuedDelivery]) -> Result<(), PortError>;

    /// The received delivery comes back after `wait` (its next attempt).
    async fn retry_delivery_after(&self, receipt: &str, wait: Duration) -> Result<(), PortError>;
}

/// What opening the inbox items of earlier alerts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillReport {
    /// Items the store read to find them.
    pub items_read: u64,
    /// Records with alerts among them.
    pub records: u64,
    /// Inbox items opened (those already there are left as they are).
    pub opened: u64,
}

/// The attribute that marks an inbox item opened after the fact on DynamoDB: the webhooks
/// function sends no `alert.raised` for it (the alert is old news to the shop).
pub const BACKFILLED: &str = "backfilled";

/// Opening inbox items for alerts stored before the inbox existed (an operator's command).
#[async_trait]
pub trait InboxBackfill: Send + Sync {
    async fn open_earlier_alerts(&self) -> Result<BackfillReport, PortError>;
}

/// Both sides of a store's webhooks, for the wiring.
pub trait Webhooks: WebhookRegistry + WebhookOutbox {}
impl<T: WebhookRegistry + WebhookOutbox + ?Sized> Webhooks for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_printed_shows_no_secret() {
        let webhook = Webhook {
            webhook_id: "whk_1".to_owned(),
            shop_id: ShopId::parse("shop-1").expect("shop"),
            url: "https://hooks.example.com/x".to_owned(),
            events: vec![EventType::AlertRaised],
            description: None,
            created_at: Utc::now(),
            secret: "whsec_current".to_owned(),
            previous_secret: Some(("whsec_previous".to_owned(), Utc::now())),
        };
        let printed = format!("{webhook:?}");
        assert!(!printed.contains("whsec_"), "{printed}");
        assert!(printed.contains("whk_1"), "{printed}");
    }
}
