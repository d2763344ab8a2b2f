//! A shop's lists on DynamoDB, in the shops' settings table (`WebhooksTable`, beside their
//! webhooks): one item per value, `pk = "list#<shop_id>#<list>"`, `sk = "<value>"`, so a list
//! is an item collection read in order by `Query` and a look-up is a key. Shop ids and list
//! names hold no `#`, so these keys meet no webhook's or delivery's.
//!
//! Look-ups read strongly consistent: a value added before a transaction is processed is seen.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{describe, put_if_absent, text};
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::ShopId;
use crate::domain::lists::ListLookup;
use crate::ports::{ListAdmin, ListItem, ListItems, ListMembership, PortError};

const COMPONENT: &str = "lists";
const TABLE: &str = "table:WebhooksTable";
/// Rounds of a batch read's unprocessed keys before it is given up as unavailable.
const BATCH_ROUNDS: usize = 5;

/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("put_item", "dynamodb:PutItem", TABLE, &[Api]),
    AwsCall::new("delete_item", "dynamodb:DeleteItem", TABLE, &[Api]),
    AwsCall::new("query", "dynamodb:Query", TABLE, &[Api]),
    AwsCall::new(
        "batch_get_item",
        "dynamodb:BatchGetItem",
        TABLE,
        &[Api, Processor, Operator],
    ),
];

pub struct DynamoLists {
    client: Client,
    table: String,
}

fn unavailable<E: std::error::Error>(error: E) -> PortError {
    PortError::unavailable(COMPONENT, describe(&error))
}

fn partition(shop_id: &ShopId, list: &str) -> String {
    format!("list#{shop_id}#{list}")
}

fn key(partition: String, value: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), text(partition)),
        ("sk".to_owned(), text(value)),
    ])
}

impl DynamoLists {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

#[async_trait]
impl ListMembership for DynamoLists {
    async fn listed(
        &self,
        shop_id: &ShopId,
        lookups: &[ListLookup],
    ) -> Result<Vec<bool>, PortError> {
        let mut found: Vec<(String, String)> = Vec::new();
        // BatchGetItem takes 100 keys and refuses a key twice.
        let mut keys: Vec<(String, String)> = lookups
            .iter()
            .map(|lookup| (partition(shop_id, &lookup.list), lookup.value.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        for chunk in keys.chunks(100) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for (pk, sk) in chunk {
                request = request.keys(key(pk.clone(), sk));
            }
            let mut pending = Some(request.build().map_err(unavailable)?);
            for _ in 0..BATCH_ROUNDS {
                let Some(keys) = pending.take() else { break };
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let field = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                    if let (Some(pk), Some(sk)) = (field("pk"), field("sk")) {
                        found.push((pk, sk));
                    }
                }
                pending = output
                    .unprocessed_keys()
                    .and_then(|unprocessed| unprocessed.get(&self.table))
                    .filter(|rest| !rest.keys().is_empty())
                    .cloned();
            }
            if pending.is_some() {
                return Err(PortError::unavailable(
                    COMPONENT,
                    "the table left keys unread (throttled)",
                ));
            }
        }
        Ok(lookups
            .iter()
            .map(|lookup| {
                let wanted = (partition(shop_id, &lookup.list), lookup.value.clone());
                found.contains(&wanted)
            })
            .collect())
    }
}

#[async_trait]
impl ListAdmin for DynamoLists {
    async fn add_to_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut item = key(partition(shop_id, list), value);
        item.insert(
            "added_at".to_owned(),
            text(at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        // A value added again keeps the time it was first added.
        put_if_absent(&self.client, &self.table, item, COMPONENT).await?;
        Ok(())
    }

    async fn remove_from_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
    ) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(partition(shop_id, list), value)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_items(
        &self,
        shop_id: &ShopId,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListItems, PortError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", text(partition(shop_id, list)))
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        request = match after {
            Some(after) => request
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", text(after)),
            None => request.key_condition_expression("pk = :pk"),
        };
        let output = request.send().await.map_err(unavailable)?;
        let items: Vec<ListItem> = output
            .items()
            .iter()
            .filter_map(|item| {
                let field = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
                Some(ListItem {
                    value: field("sk")?.clone(),
                    added_at: DateTime::parse_from_rfc3339(field("added_at")?)
                        .ok()?
                        .with_timezone(&Utc),
                })
            })
            .collect();
        Ok(ListItems::from_overfetch(items, limit))
    }
}
