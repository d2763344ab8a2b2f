//! The store on DynamoDB.
//!
//! Key design (see README, "DynamoDB key design"):
//! - Table key: `pk = "<shop_id>#<transaction_id>"`, no sort key. Every transaction is its own
//!   partition key, so one busy shop's writes spread over all partitions instead of being capped
//!   at one partition's 1,000 writes/s. Reads are `GetItem` on the full key, which is also what
//!   scopes them to the caller's shop.
//! - Index `by_shop_time`: `gsi1pk = "<shop_id>#<shard>"` (shard = a hash of the id modulo
//!   [`DEFAULT_INDEX_SHARDS`]) and `gsi1sk = "<timestamp>#<transaction_id>"`. Listing a shop's
//!   transactions by time is one `Query` per shard, merged; the shards keep one shop's index
//!   writes off a single partition too. No operation scans.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::describe;
use crate::domain::{Named, ShopId, TransactionRecord};
use crate::ports::{PortError, PutOutcome, Store};

const COMPONENT: &str = "store";
pub const DEFAULT_INDEX_SHARDS: u8 = 8;
pub const TIME_INDEX: &str = "by_shop_time";

pub struct DynamoStore {
    client: Client,
    table: String,
    index_shards: u8,
}

fn unavailable<E: std::error::Error>(error: E) -> PortError {
    PortError::unavailable(COMPONENT, describe(&error))
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(shop_id: &str, transaction_id: &str) -> String {
    // Neither id may contain '#', so the key is unambiguous.
    format!("{shop_id}#{transaction_id}")
}

fn is_condition_failure<E, R>(error: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|service| service.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl DynamoStore {
    pub fn new(client: Client, table: String, index_shards: u8) -> Self {
        Self {
            client,
            table,
            index_shards: index_shards.max(1),
        }
    }

    fn shard(&self, transaction_id: &str) -> u8 {
        Sha256::digest(transaction_id.as_bytes())[0] % self.index_shards
    }

    fn item(&self, record: &TransactionRecord) -> HashMap<String, AttributeValue> {
        let json = serde_json::to_string(record)
            .expect("a record is plain data with string keys, which always serialises");
        let shop = record.shop_id.as_str();
        let id = &record.transaction.transaction_id;
        let occurred = timestamp(record.transaction.timestamp);
        let mut item = HashMap::from([
            ("pk".to_owned(), text(key(shop, id))),
            ("shop_id".to_owned(), text(shop)),
            ("transaction_id".to_owned(), text(id)),
            ("payload_hash".to_owned(), text(&record.payload_hash)),
            ("record".to_owned(), text(json)),
            // DynamoDB numbers are exact decimals sent as text: no float on the way.
            (
                "amount".to_owned(),
                AttributeValue::N(record.transaction.amount.to_string()),
            ),
            ("currency".to_owned(), text(&record.transaction.currency)),
            (
                "gsi1pk".to_owned(),
                text(format!("{shop}#{}", self.shard(id))),
            ),
            ("gsi1sk".to_owned(), text(format!("{occurred}#{id}"))),
        ]);
        if let Some(alert) = &record.alert {
            item.insert("alert_state".to_owned(), text(alert.state.name()));
        }
        item
    }

    async fn read(
        &self,
        shop_id: &str,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id, transaction_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let field = |name: &str| {
            item.get(name)
                .and_then(|value| value.as_s().ok())
                .map(String::as_str)
        };
        let json = field("record")
            .ok_or_else(|| PortError::unavailable(COMPONENT, "item without a record"))?;
        let mut record: TransactionRecord =
            serde_json::from_str(json).map_err(|error| PortError::unavailable(COMPONENT, error))?;
        record.apply_alert_progress(field("alert_state"), field("alert_sent_at"));
        Ok(Some(record))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Inserted),
            Err(error) if is_condition_failure(&error) => {
                let existing = self
                    .read(record.shop_id.as_str(), &record.transaction.transaction_id)
                    .await?
                    .ok_or_else(|| {
                        PortError::unavailable(COMPONENT, "the existing item vanished")
                    })?;
                Ok(PutOutcome::of_existing(existing, record))
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn get(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        self.read(shop_id.as_str(), transaction_id).await
    }

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id.as_str(), transaction_id)))
            .update_expression("SET alert_state = :sent, alert_sent_at = :at")
            .condition_expression("alert_state = :pending")
            .expression_attribute_values(":sent", text("sent"))
            .expression_attribute_values(":pending", text("pending"))
            .expression_attribute_values(":at", text(timestamp(sent_at)))
            .send()
            .await;
        match result {
            // Already sent: the first send time stands.
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(unavailable(error)),
            Ok(_) => Ok(()),
        }
    }

    async fn ping(&self) -> Result<(), PortError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
