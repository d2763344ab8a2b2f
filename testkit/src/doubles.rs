//! Test doubles of the ports, for failures a real service only produces under load or outage.
//! Each wraps a real adapter and injects one fault; everything else passes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use infra::domain::rules::backtest::Period;
use infra::domain::rules::{Contribution, WindowQuery, WindowTotal};
use infra::domain::{
    Alert, AlertListQuery, AlertPage, InboxAlert, ListQuery, Page, RefusedResend, Review, ShopId,
    TransactionRecord,
};
use infra::ports::{
    AlertClaim, AlertInbox, AlertLedger, ClaimOutcome, History, HistoryBound, HistoryRead,
    Notifier, OutgoingMessage, PortError, Producer, PutOutcome, RecordReader, RecordWriter,
    ReviewOutcome, Store, WindowCounters,
};

/// A switch for an outage: while it is on, every call fails as unavailable.
#[derive(Debug, Default)]
pub struct Outage {
    on: AtomicBool,
    refused: AtomicU64,
}

impl Outage {
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    /// Calls refused while it was on.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn check(&self, component: &'static str) -> Result<(), PortError> {
        if self.on.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(PortError::unavailable(
                component,
                "connection refused (outage)",
            ));
        }
        Ok(())
    }
}

/// What a [`FaultyStore`] does wrong.
#[derive(Debug, Clone)]
pub enum StoreFault {
    /// Every call fails while the outage is on.
    Outage(Arc<Outage>),
    /// Every write of this transaction fails with the error.
    WritesOf(&'static str, PortError),
    /// Every call fails with the error, as an unreachable table would.
    Everything(PortError),
    /// Reads panic: a stand-in for a bug in a handler.
    PanicOnRead,
}

pub struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub fault: StoreFault,
}

impl FaultyStore {
    /// Writes of one transaction throttled: a transient failure.
    pub fn throttled(inner: Arc<dyn Store>, transaction_id: &'static str) -> Self {
        let error = PortError::unavailable(
            "store",
            "throttled (ProvisionedThroughputExceededException)",
        );
        Self {
            inner,
            fault: StoreFault::WritesOf(transaction_id, error),
        }
    }

    /// Writes of one transaction refused: the same write will be refused every time.
    pub fn refusing(inner: Arc<dyn Store>, transaction_id: &'static str) -> Self {
        let error = PortError::rejected("store", "ValidationException: item size too large");
        Self {
            inner,
            fault: StoreFault::WritesOf(transaction_id, error),
        }
    }

    /// Every call fails: the store cannot be reached.
    pub fn unreachable(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            fault: StoreFault::Everything(PortError::unavailable("store", "connection refused")),
        }
    }

    fn check_all(&self) -> Result<(), PortError> {
        match &self.fault {
            StoreFault::Everything(error) => Err(error.clone()),
            StoreFault::Outage(outage) => outage.check("store"),
            _ => Ok(()),
        }
    }

    fn check_write(&self, transaction_id: &str) -> Result<(), PortError> {
        self.check_all()?;
        match &self.fault {
            StoreFault::WritesOf(id, error) if *id == transaction_id => Err(error.clone()),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl RecordReader for FaultyStore {
    async fn get(
        &self,
        shop_id: &ShopId,
        id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        self.check_all()?;
        if matches!(self.fault, StoreFault::PanicOnRead) {
            panic!("a bug in a handler");
        }
        self.inner.get(shop_id, id).await
    }

    async fn list(&self, shop_id: &ShopId, query: &ListQuery) -> Result<Page, PortError> {
        self.check_all()?;
        self.inner.list(shop_id, query).await
    }
}

#[async_trait]
impl History for FaultyStore {
    async fn history(
        &self,
        shop_id: &ShopId,
        period: Period,
        bound: HistoryBound,
    ) -> Result<HistoryRead, PortError> {
        self.check_all()?;
        self.inner.history(shop_id, period, bound).await
    }

    async fn shops(&self) -> Result<Vec<ShopId>, PortError> {
        self.check_all()?;
        self.inner.shops().await
    }
}

#[async_trait]
impl AlertInbox for FaultyStore {
    async fn list_alerts(
        &self,
        shop_id: &ShopId,
        query: &AlertListQuery,
    ) -> Result<AlertPage, PortError> {
        self.check_all()?;
        self.inner.list_alerts(shop_id, query).await
    }

    async fn get_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
    ) -> Result<Option<InboxAlert>, PortError> {
        self.check_all()?;
        self.inner.get_alert(shop_id, alert_id).await
    }

    async fn review_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
        based_on: u64,
        review: &Review,
    ) -> Result<ReviewOutcome, PortError> {
        self.check_all()?;
        self.inner
            .review_alert(shop_id, alert_id, based_on, review)
            .await
    }
}

#[async_trait]
impl RecordWriter for FaultyStore {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        self.check_write(&record.transaction.transaction_id)?;
        self.inner.put_if_absent(record).await
    }

    async fn record_conflict(
        &self,
        shop_id: &ShopId,
        id: &str,
        refused: &RefusedResend,
    ) -> Result<(), PortError> {
        self.check_write(id)?;
        self.inner.record_conflict(shop_id, id, refused).await
    }
}

#[async_trait]
impl AlertLedger for FaultyStore {
    async fn claim_alert(
        &self,
        shop_id: &ShopId,
        id: &str,
        rule: &str,
        claim: &AlertClaim,
    ) -> Result<ClaimOutcome, PortError> {
        self.check_write(id)?;
        self.inner.claim_alert(shop_id, id, rule, claim).await
    }

    async fn release_alert_claim(
        &self,
        shop_id: &ShopId,
        id: &str,
        rule: &str,
        owner: &str,
    ) -> Result<(), PortError> {
        self.check_write(id)?;
        self.inner
            .release_alert_claim(shop_id, id, rule, owner)
            .await
    }

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        id: &str,
        rule: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.check_write(id)?;
        self.inner.mark_alert_sent(shop_id, id, rule, at).await
    }
}

#[async_trait]
impl WindowCounters for FaultyStore {
    async fn count_once(
        &self,
        shop_id: &ShopId,
        id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
    ) -> Result<(), PortError> {
        self.check_write(id)?;
        self.inner
            .count_once(shop_id, id, remember_until, contributions)
            .await
    }

    async fn window_totals(
        &self,
        shop_id: &ShopId,
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError> {
        self.check_all()?;
        self.inner.window_totals(shop_id, windows).await
    }
}

/// What a [`FaultyQueue`] does wrong.
#[derive(Debug, Clone)]
pub enum QueueFault {
    /// Every call fails with the error: a full disk, an unreachable or refusing SQS.
    Fails(PortError),
    /// Sends never answer, as a stalled service would.
    Hangs,
    /// A batch send answers after the delay, with every entry failed for a transient reason
    /// (SQS's `ServiceUnavailable` per entry), so that the sender retries them.
    EntriesFailAfter(Duration),
}

/// Only the sending side: the API's failures are what it stands in for.
pub struct FaultyQueue {
    pub inner: Arc<dyn Producer>,
    pub fault: QueueFault,
    /// Batch sends that reached this queue.
    pub batch_sends: AtomicU64,
}

impl FaultyQueue {
    pub fn new(inner: Arc<dyn Producer>, fault: QueueFault) -> Self {
        Self {
            inner,
            fault,
            batch_sends: AtomicU64::new(0),
        }
    }

    pub fn failing(inner: Arc<dyn Producer>, error: PortError) -> Self {
        Self::new(inner, QueueFault::Fails(error))
    }

    pub fn hanging(inner: Arc<dyn Producer>) -> Self {
        Self::new(inner, QueueFault::Hangs)
    }

    async fn check(&self) -> Result<(), PortError> {
        match &self.fault {
            QueueFault::Fails(error) => Err(error.clone()),
            QueueFault::Hangs => std::future::pending().await,
            QueueFault::EntriesFailAfter(_) => Ok(()),
        }
    }
}

#[async_trait]
impl Producer for FaultyQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError> {
        self.check().await?;
        self.inner.send(message).await
    }

    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        self.batch_sends.fetch_add(1, Ordering::SeqCst);
        self.check().await?;
        if let QueueFault::EntriesFailAfter(delay) = &self.fault {
            tokio::time::sleep(*delay).await;
            let failed = PortError::unavailable("queue", "ServiceUnavailable for this entry");
            return Ok(messages.iter().map(|_| Err(failed.clone())).collect());
        }
        self.inner.send_batch(messages).await
    }

    async fn probe(&self) -> Result<(), PortError> {
        self.check().await?;
        self.inner.probe().await
    }
}

/// A notifier that counts what it publishes and takes its time doing it, so that concurrent
/// deliveries really overlap.
pub struct CountingNotifier {
    pub inner: Arc<dyn Notifier>,
    pub delay: Duration,
    published: AtomicU64,
}

impl CountingNotifier {
    pub fn new(inner: Arc<dyn Notifier>, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            published: AtomicU64::new(0),
        }
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Notifier for CountingNotifier {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError> {
        tokio::time::sleep(self.delay).await;
        self.published.fetch_add(1, Ordering::SeqCst);
        self.inner.publish(alert).await
    }
}
