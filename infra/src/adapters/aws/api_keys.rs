//! API keys on DynamoDB, in a table of their own, so that the API reads one key per lookup
//! instead of every shop's keys at start, and an operator changes one key without a deploy.
//!
//! - Key: `key_hash`, the key's SHA-256 in hex. A lookup is one `GetItem`.
//! - Index `by_shop` (`shop_id`): a shop's keys, for rotation and listing (operator only).
//! - `expires_at`: when a rotated-out key stops admitting requests. `remove_after` (epoch
//!   seconds, a week later) lets DynamoDB's TTL delete it; TTL is lazy, so lookups judge
//!   `expires_at` themselves.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use super::{describe, text};
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::ShopId;
use crate::ports::{KeyAdmin, KeyHash, KeyLookup, PortError, StoredKey};

const COMPONENT: &str = "key store";
const TABLE: &str = "table:ApiKeysTable";
pub const SHOP_INDEX: &str = "by_shop";
/// How long DynamoDB keeps a key after it stopped admitting requests.
const KEEP_EXPIRED_FOR: chrono::Duration = chrono::Duration::days(7);

/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("get_item", "dynamodb:GetItem", TABLE, &[Api, Operator]),
    AwsCall::new("put_item", "dynamodb:PutItem", TABLE, &[Operator]),
    AwsCall::new(
        "query",
        "dynamodb:Query",
        "index:ApiKeysTable/by_shop",
        &[Operator],
    ),
    AwsCall::new("update_item", "dynamodb:UpdateItem", TABLE, &[Operator]),
    AwsCall::new("delete_item", "dynamodb:DeleteItem", TABLE, &[Operator]),
];

pub struct DynamoKeys {
    client: Client,
    table: String,
}

impl DynamoKeys {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable<E: std::error::Error>(error: E) -> PortError {
    PortError::unavailable(COMPONENT, describe(&error))
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn hash_key(hash: &KeyHash) -> (String, AttributeValue) {
    ("key_hash".to_owned(), text(hex::encode(hash)))
}

fn to_item(key: &StoredKey) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        hash_key(&key.hash),
        ("shop_id".to_owned(), text(key.shop_id.as_str())),
        ("created_at".to_owned(), text(timestamp(key.created_at))),
    ]);
    if let Some(expires_at) = key.expires_at {
        item.insert("expires_at".to_owned(), text(timestamp(expires_at)));
    }
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<StoredKey, PortError> {
    let field = |name: &str| {
        item.get(name)
            .and_then(|value| value.as_s().ok())
            .ok_or_else(|| PortError::unavailable(COMPONENT, format!("a key item has no {name}")))
    };
    let time = |value: &str| {
        DateTime::parse_from_rfc3339(value)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|error| PortError::unavailable(COMPONENT, error))
    };
    let mut hash = [0u8; 32];
    hex::decode_to_slice(field("key_hash")?, &mut hash)
        .map_err(|error| PortError::unavailable(COMPONENT, error))?;
    let shop_id = ShopId::parse(field("shop_id")?)
        .map_err(|error| PortError::unavailable(COMPONENT, error))?;
    Ok(StoredKey {
        hash,
        shop_id,
        created_at: time(field("created_at")?)?,
        expires_at: field("expires_at")
            .ok()
            .map(|value| time(value))
            .transpose()?,
    })
}

#[async_trait]
impl KeyLookup for DynamoKeys {
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<StoredKey>, PortError> {
        let (name, value) = hash_key(hash);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, value)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }
}

#[async_trait]
impl KeyAdmin for DynamoKeys {
    async fn add_key(&self, key: &StoredKey) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(key)))
            .condition_expression("attribute_not_exists(key_hash)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn keys_of(&self, shop_id: &ShopId) -> Result<Vec<StoredKey>, PortError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(SHOP_INDEX)
                .key_condition_expression("shop_id = :shop")
                .expression_attribute_values(":shop", text(shop_id.as_str()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items() {
                keys.push(from_item(item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        keys.sort_by_key(|key| key.created_at);
        Ok(keys)
    }

    async fn expire_key(&self, hash: &KeyHash, at: DateTime<Utc>) -> Result<(), PortError> {
        let (name, value) = hash_key(hash);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .update_expression("SET expires_at = :at, remove_after = :remove")
            .condition_expression(
                "attribute_exists(key_hash) AND (attribute_not_exists(expires_at) OR expires_at > :at)",
            )
            .expression_attribute_values(":at", text(timestamp(at)))
            .expression_attribute_values(
                ":remove",
                AttributeValue::N((at + KEEP_EXPIRED_FOR).timestamp().to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Gone, or already expiring sooner: nothing to change.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn remove_key(&self, hash: &KeyHash) -> Result<(), PortError> {
        let (name, value) = hash_key(hash);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(name, value)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
