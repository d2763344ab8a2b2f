//! The windowed rules' counters on DynamoDB, in the transactions table beside the records.
//!
//! - A counter is one item per (shop, rule, key, bucket): `pk = "counter#<shop>#<rule>#<bucket>#<key>"`
//!   (shop and rule cannot hold `#`, the key comes last, so the key is unambiguous), with `n`
//!   (count), `total` (sum; DynamoDB numbers are exact decimals of up to 38 digits), `members`
//!   (a string set, for distinct rules) and `expires_at` (the table's TTL attribute).
//! - A marker per counted transaction, `pk = "counted#<shop>#<transaction id>"`, says it was
//!   counted. One `TransactWriteItems` puts the marker on the condition that it is absent and
//!   adds to every counter, so a transaction is counted in all its windows or none, and a
//!   redelivery (or a concurrent invocation with the same message) is refused by the condition.
//! - Windows are read with `BatchGetItem` (strongly consistent), up to 100 keys a call: ten
//!   buckets per rule, so one call for up to ten windowed rules.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{describe, text};
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::rules::{Contribution, CounterId, WindowQuery, WindowTotal};
use crate::ports::PortError;

const COMPONENT: &str = "store";
const TABLE: &str = "table:TransactionsTable";
/// The calls below, for the permission test (see `calls`). A transaction's writes need the
/// actions of each write it holds.
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new(
        "transact_write_items",
        "dynamodb:PutItem",
        TABLE,
        &[Processor],
    ),
    AwsCall::new(
        "transact_write_items",
        "dynamodb:UpdateItem",
        TABLE,
        &[Processor],
    ),
    AwsCall::new(
        "batch_get_item",
        "dynamodb:BatchGetItem",
        TABLE,
        &[Processor],
    ),
];
/// Keys per `BatchGetItem`, DynamoDB's limit.
const KEYS_PER_READ: usize = 100;
/// Rounds of unprocessed keys retried before the read counts as unavailable.
const MAX_READ_ROUNDS: usize = 5;

fn counter_pk(shop_id: &str, counter: &CounterId) -> String {
    format!(
        "counter#{shop_id}#{}#{}#{}",
        counter.rule, counter.bucket, counter.key
    )
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub async fn count_once(
    client: &Client,
    table: &str,
    (shop_id, transaction_id): (&str, &str),
    remember_until: DateTime<Utc>,
    contributions: &[Contribution],
) -> Result<(), PortError> {
    let build = |error: aws_sdk_dynamodb::error::BuildError| {
        PortError::rejected(COMPONENT, error.to_string())
    };
    let marker = Put::builder()
        .table_name(table)
        .item("pk", text(format!("counted#{shop_id}#{transaction_id}")))
        .item("expires_at", number(remember_until.timestamp()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(build)?;
    let mut items = vec![TransactWriteItem::builder().put(marker).build()];
    for contribution in contributions {
        let mut update = Update::builder()
            .table_name(table)
            .key("pk", text(counter_pk(shop_id, &contribution.counter)))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":amount", number(contribution.amount))
            .expression_attribute_values(":expires", number(contribution.expires_at.timestamp()));
        let mut expression = "ADD n :one, #total :amount".to_owned();
        if let Some(member) = &contribution.member {
            update = update
                .expression_attribute_values(":member", AttributeValue::Ss(vec![member.clone()]));
            expression.push_str(", members :member");
        }
        expression.push_str(" SET expires_at = :expires");
        let update = update
            .update_expression(expression)
            .expression_attribute_names("#total", "total")
            .build()
            .map_err(build)?;
        items.push(TransactWriteItem::builder().update(update).build());
    }
    let result = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) => {
            let marker_refused = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => canceled
                    .cancellation_reasons()
                    .first()
                    .and_then(|reason| reason.code())
                    .is_some_and(|code| code == "ConditionalCheckFailed"),
                _ => false,
            };
            if marker_refused {
                // Counted before: by an earlier delivery, or a concurrent one that won.
                return Ok(());
            }
            let code = error.code().map(str::to_owned);
            Err(PortError::unavailable(
                COMPONENT,
                format!("counting failed ({code:?}): {}", describe(&error)),
            ))
        }
    }
}

pub async fn window_totals(
    client: &Client,
    table: &str,
    shop_id: &str,
    windows: &[WindowQuery],
) -> Result<Vec<WindowTotal>, PortError> {
    let window_pks: Vec<Vec<String>> = windows
        .iter()
        .map(|window| bucket_pks(shop_id, window))
        .collect();
    let mut pks: Vec<String> = window_pks.iter().flatten().cloned().collect();
    pks.sort_unstable();
    pks.dedup();
    let mut found: HashMap<String, HashMap<String, AttributeValue>> = HashMap::new();
    for chunk in pks.chunks(KEYS_PER_READ) {
        read_chunk(client, table, chunk, &mut found).await?;
    }
    Ok(window_pks
        .iter()
        .map(|pks| {
            let mut total = WindowTotal::default();
            for item in pks.iter().filter_map(|pk| found.get(pk)) {
                add_item(&mut total, item);
            }
            total
        })
        .collect())
}

/// The counter items of a window's buckets.
fn bucket_pks(shop_id: &str, window: &WindowQuery) -> Vec<String> {
    window
        .buckets
        .iter()
        .map(|&bucket| {
            counter_pk(
                shop_id,
                &CounterId {
                    rule: window.rule.clone(),
                    key: window.key.clone(),
                    bucket,
                },
            )
        })
        .collect()
}

async fn read_chunk(
    client: &Client,
    table: &str,
    pks: &[String],
    found: &mut HashMap<String, HashMap<String, AttributeValue>>,
) -> Result<(), PortError> {
    let keys = pks
        .iter()
        .map(|pk| HashMap::from([("pk".to_owned(), text(pk))]))
        .collect();
    let mut request = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(true)
        .build()
        .map_err(|error| PortError::rejected(COMPONENT, error.to_string()))?;
    for round in 0..MAX_READ_ROUNDS {
        let answer = client
            .batch_get_item()
            .request_items(table, request.clone())
            .send()
            .await
            .map_err(|error| PortError::unavailable(COMPONENT, describe(&error)))?;
        for item in answer
            .responses()
            .and_then(|r| r.get(table))
            .into_iter()
            .flatten()
        {
            if let Some(AttributeValue::S(pk)) = item.get("pk") {
                found.insert(pk.clone(), item.clone());
            }
        }
        match answer.unprocessed_keys().and_then(|u| u.get(table)) {
            Some(rest) if !rest.keys().is_empty() => {
                request = rest.clone();
                // Unprocessed keys mean throttling: back off a little before the next round.
                tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
            }
            _ => return Ok(()),
        }
    }
    Err(PortError::unavailable(
        COMPONENT,
        "counters still unread after retrying unprocessed keys",
    ))
}

fn add_item(total: &mut WindowTotal, item: &HashMap<String, AttributeValue>) {
    let decimal = |name: &str| {
        item.get(name)
            .and_then(|value| value.as_n().ok())
            .and_then(|n| {
                Decimal::from_str(n)
                    .or_else(|_| Decimal::from_scientific(n))
                    .ok()
            })
            .unwrap_or_default()
    };
    total.count += decimal("n").to_u64().unwrap_or_default();
    total.sum += decimal("total");
    if let Some(AttributeValue::Ss(members)) = item.get("members") {
        total.members.extend(members.iter().cloned());
    }
}
