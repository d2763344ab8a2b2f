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
//! - `alerts`: a map from rule name to that alert's progress (`state`, `sent_at`, and while
//!   someone is publishing it, `claim_owner` and `claim_until`), changed by conditional updates.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::calls::{AwsCall, Caller::*};
use super::describe;
use crate::domain::{AlertState, Named, ShopId, TransactionRecord};
use crate::ports::{AlertClaim, ClaimOutcome, PortError, PutOutcome, Store};

const COMPONENT: &str = "store";

const TABLE: &str = "table:TransactionsTable";
/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("put_item", "dynamodb:PutItem", TABLE, &[Processor]),
    AwsCall::new("get_item", "dynamodb:GetItem", TABLE, &[Api, Processor]),
    AwsCall::new("update_item", "dynamodb:UpdateItem", TABLE, &[Processor]),
];
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

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
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

/// The progress of one alert, as the `alerts` map holds it.
struct Progress<'a>(&'a HashMap<String, AttributeValue>);

impl Progress<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|value| value.as_s().ok())
            .map(String::as_str)
    }

    fn claim_until(&self) -> Option<DateTime<Utc>> {
        self.0
            .get("claim_until")
            .and_then(|value| value.as_n().ok())
            .and_then(|millis| millis.parse().ok())
            .and_then(DateTime::from_timestamp_millis)
    }
}

fn alert_progress<'a>(
    item: &'a HashMap<String, AttributeValue>,
    rule: &str,
) -> Option<Progress<'a>> {
    let alerts = item.get("alerts")?.as_m().ok()?;
    Some(Progress(alerts.get(rule)?.as_m().ok()?))
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
        if !record.alerts.is_empty() {
            let alerts = record
                .alerts
                .iter()
                .map(|alert| {
                    let progress = HashMap::from([("state".to_owned(), text(alert.state.name()))]);
                    (alert.decision.rule.clone(), AttributeValue::M(progress))
                })
                .collect();
            item.insert("alerts".to_owned(), AttributeValue::M(alerts));
        }
        item
    }

    async fn read_item(
        &self,
        shop_id: &str,
        transaction_id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id, transaction_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    async fn read(
        &self,
        shop_id: &str,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        let Some(item) = self.read_item(shop_id, transaction_id).await? else {
            return Ok(None);
        };
        let json = item
            .get("record")
            .and_then(|value| value.as_s().ok())
            .ok_or_else(|| PortError::unavailable(COMPONENT, "item without a record"))?;
        let mut record: TransactionRecord =
            serde_json::from_str(json).map_err(|error| PortError::unavailable(COMPONENT, error))?;
        let rules: Vec<String> = record
            .alerts
            .iter()
            .map(|alert| alert.decision.rule.clone())
            .collect();
        for rule in rules {
            if let Some(progress) = alert_progress(&item, &rule) {
                record.apply_alert_progress(
                    &rule,
                    progress.field("state"),
                    progress.field("sent_at"),
                );
            }
        }
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

    async fn claim_alert(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        claim: &AlertClaim,
    ) -> Result<ClaimOutcome, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id.as_str(), transaction_id)))
            .update_expression("SET alerts.#rule.claim_owner = :owner, alerts.#rule.claim_until = :until")
            .condition_expression(
                "alerts.#rule.#state = :pending AND \
                 (attribute_not_exists(alerts.#rule.claim_until) OR alerts.#rule.claim_until < :now)",
            )
            .expression_attribute_names("#rule", rule)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", text(&claim.owner))
            .expression_attribute_values(":until", number(claim.until.timestamp_millis()))
            .expression_attribute_values(":now", number(claim.now.timestamp_millis()))
            .expression_attribute_values(":pending", text(AlertState::Pending.name()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(error) if is_condition_failure(&error) => {
                let item = self
                    .read_item(shop_id.as_str(), transaction_id)
                    .await?
                    .ok_or_else(|| PortError::unavailable(COMPONENT, "the item vanished"))?;
                let progress = alert_progress(&item, rule);
                let state = progress.as_ref().and_then(|p| p.field("state"));
                Ok(match state.and_then(AlertState::from_name) {
                    Some(AlertState::Sent) => ClaimOutcome::AlreadySent,
                    _ => ClaimOutcome::HeldElsewhere {
                        until: progress
                            .and_then(|p| p.claim_until())
                            .unwrap_or(claim.until),
                    },
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn release_alert_claim(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        owner: &str,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id.as_str(), transaction_id)))
            .update_expression("REMOVE alerts.#rule.claim_owner, alerts.#rule.claim_until")
            .condition_expression("alerts.#rule.claim_owner = :owner")
            .expression_attribute_names("#rule", rule)
            .expression_attribute_values(":owner", text(owner))
            .send()
            .await;
        match result {
            // Someone else's claim by now, or none: nothing of ours to release.
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(unavailable(error)),
            Ok(_) => Ok(()),
        }
    }

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(key(shop_id.as_str(), transaction_id)))
            .update_expression(
                "SET alerts.#rule.#state = :sent, alerts.#rule.sent_at = :at \
                 REMOVE alerts.#rule.claim_owner, alerts.#rule.claim_until",
            )
            .condition_expression("alerts.#rule.#state = :pending")
            .expression_attribute_names("#rule", rule)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":sent", text(AlertState::Sent.name()))
            .expression_attribute_values(":pending", text(AlertState::Pending.name()))
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
}
