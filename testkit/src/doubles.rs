//! Test doubles of the ports, for failures a real service only produces under load or outage.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pipeline::domain::{ShopId, TransactionRecord};
use pipeline::ports::{PortError, PutOutcome, Store};

/// A store that fails, transiently, every write of one transaction (as a throttled table or a
/// brief outage would) and passes everything else to the real store.
pub struct StoreFailingFor {
    pub inner: Arc<dyn Store>,
    pub transaction_id: &'static str,
}

#[async_trait]
impl Store for StoreFailingFor {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        if record.transaction.transaction_id == self.transaction_id {
            return Err(PortError::unavailable(
                "store",
                "throttled (ProvisionedThroughputExceededException)",
            ));
        }
        self.inner.put_if_absent(record).await
    }

    async fn get(
        &self,
        shop_id: &ShopId,
        id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        self.inner.get(shop_id, id).await
    }

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.inner.mark_alert_sent(shop_id, id, at).await
    }

    async fn ping(&self) -> Result<(), PortError> {
        self.inner.ping().await
    }
}
