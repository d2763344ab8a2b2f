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
//! - Counters of the windowed alert rules live in the same table under other keys (see
//!   `counters`); they have no index attributes, so they never appear in a list.
//! - `alerts`: a map from rule name to that alert's progress (`state`, `sent_at`, and while
//!   someone is publishing it, `claim_owner` and `claim_until`), changed by conditional updates.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::{counters, describe, is_condition_failure, put_if_absent, text};

mod inbox;
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::listing::{order_micros, order_micros_after};
use crate::domain::rules::backtest::Period;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};
use crate::domain::{
    AlertFilter, AlertListQuery, AlertPage, AlertState, InboxAlert, ListQuery, Named, Page,
    Position, RefusedResend, Review, ReviewStatus, ShopId, TransactionRecord, Verdict,
};
use crate::ports::{
    AlertClaim, AlertInbox, AlertLedger, BackfillReport, ClaimOutcome, History, HistoryBound,
    HistoryRead, InboxBackfill, PortError, PutOutcome, RecordReader, RecordWriter, ReviewOutcome,
    WindowCounters,
};

const COMPONENT: &str = "store";

const TABLE: &str = "table:TransactionsTable";
/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new(
        "query",
        "dynamodb:Query",
        "index:TransactionsTable/by_shop_time",
        &[Api, Operator],
    ),
    AwsCall::new(
        "put_item",
        "dynamodb:PutItem",
        TABLE,
        &[Processor, Operator],
    ),
    // `processor inbox backfill`: the table read once, page by page.
    AwsCall::new("scan", "dynamodb:Scan", TABLE, &[Operator]),
    AwsCall::new(
        "get_item",
        "dynamodb:GetItem",
        TABLE,
        &[Api, Processor, Webhooks],
    ),
    AwsCall::new("update_item", "dynamodb:UpdateItem", TABLE, &[Processor]),
    // The alert inbox (`inbox`): a page's records in one read, and a review written with the
    // record's review status in one transaction; a record and its alerts put in one.
    AwsCall::new("batch_get_item", "dynamodb:BatchGetItem", TABLE, &[Api]),
    AwsCall::new("transact_write_items", "dynamodb:UpdateItem", TABLE, &[Api])
        .writing(inbox::REVIEW_ATTRIBUTES),
    AwsCall::new(
        "transact_write_items",
        "dynamodb:PutItem",
        TABLE,
        &[Processor],
    ),
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

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(shop_id: &str, transaction_id: &str) -> String {
    // Neither id may contain '#', so the key is unambiguous.
    format!("{shop_id}#{transaction_id}")
}

fn first_condition_failed<R>(error: &SdkError<TransactWriteItemsError, R>) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => canceled
            .cancellation_reasons()
            .first()
            .and_then(|reason| reason.code())
            .is_some_and(|code| code == "ConditionalCheckFailed"),
        _ => false,
    }
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
            ("kind".to_owned(), text(record.transaction.kind.name())),
            ("alert_count".to_owned(), number(record.alerts.len() as i64)),
            (
                "alerts_pending".to_owned(),
                number(record.alerts.len() as i64),
            ),
            (
                "gsi1pk".to_owned(),
                text(format!("{shop}#{}", self.shard(id))),
            ),
            ("gsi1sk".to_owned(), text(format!("{occurred}#{id}"))),
        ]);
        if let Some(customer) = &record.transaction.customer_id {
            item.insert("customer_id".to_owned(), text(customer));
        }
        if let Some(fingerprint) = &record.transaction.payment_fingerprint {
            item.insert("payment_fingerprint".to_owned(), text(fingerprint));
        }
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

    /// Puts a record without alerts; false if one is there already.
    async fn put_record(&self, record: &TransactionRecord) -> Result<bool, PortError> {
        put_if_absent(&self.client, &self.table, self.item(record), COMPONENT).await
    }

    /// Puts a record and its alerts' inbox items in one transaction; false if the record is
    /// there already (and nothing was written).
    async fn put_record_with_alerts(&self, record: &TransactionRecord) -> Result<bool, PortError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|error| PortError::rejected(COMPONENT, error.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        items.extend(inbox::opening_puts(&self.table, record)?);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // The first write, the record's, found one there: nothing was written.
            Err(error) if first_condition_failed(&error) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn read(
        &self,
        shop_id: &str,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        match self.read_item(shop_id, transaction_id).await? {
            Some(item) => record_from_item(&item).map(Some),
            None => Ok(None),
        }
    }
}

/// A record from its item: the JSON written first, each alert's progress and the conflicts.
fn record_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<TransactionRecord, PortError> {
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
        if let Some(progress) = alert_progress(item, &rule) {
            record.apply_alert_progress(&rule, progress.field("state"), progress.field("sent_at"));
            let status = progress
                .field("review_status")
                .and_then(ReviewStatus::from_name);
            let verdict = progress.field("verdict").and_then(Verdict::from_name);
            record.apply_review(&rule, status.unwrap_or_default(), verdict);
        }
    }
    if let Some(ids) = item
        .get("conflict_request_ids")
        .and_then(|v| v.as_ss().ok())
    {
        record.conflicts.count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    }
    record.conflicts.last_request_id = item
        .get("last_conflict_request_id")
        .and_then(|v| v.as_s().ok())
        .cloned();
    record.conflicts.last_refused_at = item
        .get("last_conflict_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|micros| micros.parse().ok())
        .and_then(DateTime::from_timestamp_micros);
    Ok(record)
}

#[async_trait]
impl RecordReader for DynamoStore {
    async fn get(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        self.read(shop_id.as_str(), transaction_id).await
    }

    async fn list(&self, shop_id: &ShopId, query: &ListQuery) -> Result<Page, PortError> {
        ShardedWalk::new(self, shop_id, query).run().await
    }
}

/// A backtest's history reads whole 1 MB pages of each shard's part of the time index.
#[async_trait]
impl History for DynamoStore {
    async fn history(
        &self,
        shop_id: &ShopId,
        period: Period,
        bound: HistoryBound,
    ) -> Result<HistoryRead, PortError> {
        // Sort keys are `<time>#<id>`: every key of an instant sorts after the bare time, so
        // BETWEEN takes the items at `from` and leaves out those at `to`. Open ends are "0" and
        // "~", below and above every time (a key may not be empty); so is a time past year
        // 9999, which RFC 3339 writes with a sign that would sort below every other.
        let key_of = |micros: i64, otherwise: &str| match DateTime::from_timestamp_micros(micros) {
            Some(time) if (0..=9999).contains(&time.year()) => timestamp(time),
            _ => otherwise.to_owned(),
        };
        let lower = period
            .from
            .map_or("0".to_owned(), |from| key_of(order_micros(from), "0"));
        let upper = period
            .to
            .map_or("~".to_owned(), |to| key_of(order_micros_after(to), "~"));
        let (mut records, mut bytes) = (Vec::new(), 0);
        for shard in 0..self.index_shards {
            let mut start = None;
            loop {
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(TIME_INDEX)
                    .key_condition_expression(
                        "gsi1pk = :partition AND gsi1sk BETWEEN :lower AND :upper",
                    )
                    .expression_attribute_values(":partition", text(format!("{shop_id}#{shard}")))
                    .expression_attribute_values(":lower", text(&lower))
                    .expression_attribute_values(":upper", text(&upper))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in output.items() {
                    let record = record_from_item(item)?;
                    bytes += item
                        .get("record")
                        .and_then(|v| v.as_s().ok())
                        .map_or(0, String::len);
                    if !bound.admits(records.len() + 1, bytes) {
                        return Ok(HistoryRead::TooMany);
                    }
                    records.push(record);
                }
                start = output.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(HistoryRead::Complete(records, bytes))
    }

    async fn shops(&self) -> Result<Vec<ShopId>, PortError> {
        Err(PortError::rejected(
            COMPONENT,
            "DynamoDB keeps no list of shops short of a scan of the table: name the shop",
        ))
    }
}

#[async_trait]
impl RecordWriter for DynamoStore {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        let inserted = if record.alerts.is_empty() {
            self.put_record(record).await?
        } else {
            self.put_record_with_alerts(record).await?
        };
        if inserted {
            return Ok(PutOutcome::Inserted);
        }
        let existing = self
            .read(record.shop_id.as_str(), &record.transaction.transaction_id)
            .await?
            .ok_or_else(|| PortError::unavailable(COMPONENT, "the existing item vanished"))?;
        Ok(PutOutcome::of_existing(existing, record))
    }

    async fn record_conflict(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        refused: &RefusedResend,
    ) -> Result<(), PortError> {
        let key = text(key(shop_id.as_str(), transaction_id));
        let ids = AttributeValue::Ss(vec![refused.request_id.clone()]);
        let at = number(refused.accepted_at.timestamp_micros());
        // Adding to a set is idempotent: a redelivered refusal is counted once. "Last" moves
        // only forward in the API's acceptance time.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", key.clone())
            .update_expression(
                "ADD conflict_request_ids :ids \
                 SET last_conflict_request_id = :request, last_conflict_at = :at",
            )
            .condition_expression(
                "attribute_exists(pk) AND \
                 (attribute_not_exists(last_conflict_at) OR last_conflict_at <= :at)",
            )
            .expression_attribute_values(":ids", ids.clone())
            .expression_attribute_values(":request", text(&refused.request_id))
            .expression_attribute_values(":at", at)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => {
                // An older refusal arrived after a newer one: counted, "last" kept.
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", key)
                    .update_expression("ADD conflict_request_ids :ids")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":ids", ids)
                    .send()
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}

#[async_trait]
impl AlertLedger for DynamoStore {
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
                 ADD alerts_pending :minus_one \
                 REMOVE alerts.#rule.claim_owner, alerts.#rule.claim_until",
            )
            .expression_attribute_values(":minus_one", number(-1))
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

/// Items a backfill reads per page.
const BACKFILL_PAGE: i32 = 500;

#[async_trait]
impl InboxBackfill for DynamoStore {
    async fn open_earlier_alerts(&self) -> Result<BackfillReport, PortError> {
        DynamoStore::open_earlier_alerts(self, BACKFILL_PAGE).await
    }
}

#[async_trait]
impl AlertInbox for DynamoStore {
    async fn list_alerts(
        &self,
        shop_id: &ShopId,
        query: &AlertListQuery,
    ) -> Result<AlertPage, PortError> {
        self.list_alerts_page(shop_id, query).await
    }

    async fn get_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
    ) -> Result<Option<InboxAlert>, PortError> {
        self.one_alert(shop_id, alert_id).await
    }

    async fn review_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
        based_on: u64,
        review: &Review,
    ) -> Result<ReviewOutcome, PortError> {
        self.write_review(shop_id, alert_id, based_on, review).await
    }
}

#[async_trait]
impl WindowCounters for DynamoStore {
    async fn count_once(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
    ) -> Result<(), PortError> {
        counters::count_once(
            &self.client,
            &self.table,
            (shop_id.as_str(), transaction_id),
            remember_until,
            contributions,
        )
        .await
    }

    async fn window_totals(
        &self,
        shop_id: &ShopId,
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError> {
        counters::window_totals(&self.client, &self.table, shop_id.as_str(), windows).await
    }
}

/// At most this many `Query` calls for one page: one per shard, then more only for shards a
/// filter held back. After it, the page returns what is complete, with `next` set.
pub const MAX_QUERY_CALLS: usize = 32;
/// Items one `Query` reads when a filter is not part of the key (DynamoDB applies `Limit`
/// before the filter, so a small limit would return mostly nothing).
const FILTERED_QUERY_LIMIT: i32 = 200;

/// The sort key of the index for a position: `<timestamp, µs>#<id>`, which sorts as the list does.
fn sort_key(position: &Position) -> String {
    let time = DateTime::from_timestamp_micros(position.micros).unwrap_or_default();
    format!("{}#{}", timestamp(time), position.transaction_id)
}

fn position_of(sort_key: &str) -> Option<Position> {
    let (time, id) = sort_key.split_once('#')?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    Some(Position {
        micros: order_micros(time),
        transaction_id: id.to_owned(),
    })
}

fn sort_key_of(item: &HashMap<String, AttributeValue>) -> Option<String> {
    item.get("gsi1sk")?.as_s().ok().cloned()
}

/// One shard's part of a page: how far its index has been read (newest first), and what
/// matched.
struct ShardState {
    partition: String,
    start: Option<HashMap<String, AttributeValue>>,
    /// The sort key of the last item read: everything at or after it (newer) is known.
    reached: Option<String>,
    exhausted: bool,
    matched: Vec<(String, HashMap<String, AttributeValue>)>,
}

/// A page over all shards: each is read newest first, and only what every unfinished shard
/// has read past (the frontier) is returned, so pages are exact however far each shard got.
struct ShardedWalk<'a> {
    store: &'a DynamoStore,
    query: &'a ListQuery,
    shards: Vec<ShardState>,
    filter: Option<String>,
    values: HashMap<String, AttributeValue>,
    names: HashMap<String, String>,
    calls: usize,
}

impl<'a> ShardedWalk<'a> {
    fn new(store: &'a DynamoStore, shop_id: &ShopId, query: &'a ListQuery) -> Self {
        let shards = (0..store.index_shards)
            .map(|shard| ShardState {
                partition: format!("{shop_id}#{shard}"),
                start: None,
                reached: None,
                exhausted: false,
                matched: Vec::new(),
            })
            .collect();
        let mut walk = Self {
            store,
            query,
            shards,
            filter: None,
            values: HashMap::new(),
            names: HashMap::new(),
            calls: 0,
        };
        walk.build_filter();
        walk
    }

    fn build_filter(&mut self) {
        let filters = &self.query.filters;
        let mut conditions = Vec::new();
        let zero = number(0);
        if let Some(kind) = filters.kind {
            self.names.insert("#kind".to_owned(), "kind".to_owned());
            self.values.insert(":kind".to_owned(), text(kind.name()));
            conditions.push("#kind = :kind");
        }
        if let Some(currency) = &filters.currency {
            self.values.insert(":currency".to_owned(), text(currency));
            conditions.push("currency = :currency");
        }
        if let Some(customer) = &filters.customer_id {
            self.values.insert(":customer".to_owned(), text(customer));
            conditions.push("customer_id = :customer");
        }
        if let Some(fingerprint) = &filters.payment_fingerprint {
            self.values
                .insert(":fingerprint".to_owned(), text(fingerprint));
            conditions.push("payment_fingerprint = :fingerprint");
        }
        if let Some(min) = filters.min_amount {
            self.values
                .insert(":min".to_owned(), AttributeValue::N(min.to_string()));
            conditions.push("amount >= :min");
        }
        if let Some(max) = filters.max_amount {
            self.values
                .insert(":max".to_owned(), AttributeValue::N(max.to_string()));
            conditions.push("amount <= :max");
        }
        if let Some(alert) = filters.alert {
            self.values.insert(":zero".to_owned(), zero);
            conditions.push(match alert {
                AlertFilter::None => "alert_count = :zero",
                AlertFilter::Pending => "alerts_pending > :zero",
                AlertFilter::Sent => "alert_count > :zero AND alerts_pending = :zero",
                AlertFilter::Any => "alert_count > :zero",
            });
        }
        match filters.conflicted {
            Some(true) => conditions.push("attribute_exists(conflict_request_ids)"),
            Some(false) => conditions.push("attribute_not_exists(conflict_request_ids)"),
            None => {}
        }
        if !conditions.is_empty() {
            self.filter = Some(conditions.join(" AND "));
        }
    }

    /// The key condition's bounds: from `from` (inclusive) to the earlier of `to` and the
    /// cursor (both exclusive; the cursor's own item is skipped when read).
    fn bounds(&self) -> (Option<String>, Option<String>) {
        let filters = &self.query.filters;
        let lower = filters.from.map(|from| {
            timestamp(DateTime::from_timestamp_micros(order_micros(from)).unwrap_or_default())
        });
        let to = filters.to.map(|to| {
            timestamp(DateTime::from_timestamp_micros(order_micros(to)).unwrap_or_default())
        });
        let after = self.query.after.as_ref().map(sort_key);
        let upper = match (to, after) {
            (Some(to), Some(after)) => Some(to.min(after)),
            (to, after) => to.or(after),
        };
        (lower, upper)
    }

    async fn read_shard(&mut self, index: usize) -> Result<(), PortError> {
        self.calls += 1;
        let (lower, upper) = self.bounds();
        let shard = &self.shards[index];
        let mut request = self
            .store
            .client
            .query()
            .table_name(&self.store.table)
            .index_name(TIME_INDEX)
            .scan_index_forward(false)
            .expression_attribute_values(":partition", text(&shard.partition))
            .set_exclusive_start_key(shard.start.clone())
            .limit(if self.filter.is_some() {
                FILTERED_QUERY_LIMIT
            } else {
                self.query.limit as i32 + 1
            });
        let key_condition = match (&lower, &upper) {
            (Some(lower), Some(upper)) => {
                request = request
                    .expression_attribute_values(":lower", text(lower))
                    .expression_attribute_values(":upper", text(upper));
                "gsi1pk = :partition AND gsi1sk BETWEEN :lower AND :upper"
            }
            (Some(lower), None) => {
                request = request.expression_attribute_values(":lower", text(lower));
                "gsi1pk = :partition AND gsi1sk >= :lower"
            }
            (None, Some(upper)) => {
                request = request.expression_attribute_values(":upper", text(upper));
                "gsi1pk = :partition AND gsi1sk <= :upper"
            }
            (None, None) => "gsi1pk = :partition",
        };
        request = request.key_condition_expression(key_condition);
        if let Some(filter) = &self.filter {
            request = request.filter_expression(filter);
            for (name, value) in &self.values {
                request = request.expression_attribute_values(name, value.clone());
            }
            for (alias, name) in &self.names {
                request = request.expression_attribute_names(alias, name);
            }
        }
        let output = request.send().await.map_err(unavailable)?;
        let shard = &mut self.shards[index];
        for item in output.items.unwrap_or_default() {
            let Some(key) = sort_key_of(&item) else {
                continue;
            };
            // The bounds are inclusive; the upper one (the cursor or `to`) is not part of the page.
            if upper.as_deref() == Some(key.as_str()) {
                continue;
            }
            shard.matched.push((key, item));
        }
        match output.last_evaluated_key {
            Some(last) => {
                shard.reached = sort_key_of(&last);
                shard.start = Some(last);
            }
            None => shard.exhausted = true,
        }
        Ok(())
    }

    /// What every unfinished shard has read past: items at or after it are known everywhere.
    fn frontier(&self) -> Option<String> {
        self.shards
            .iter()
            .filter(|shard| !shard.exhausted)
            .filter_map(|shard| shard.reached.clone())
            .max()
    }

    fn complete(&self) -> usize {
        let frontier = self.frontier();
        self.shards
            .iter()
            .flat_map(|shard| &shard.matched)
            .filter(|(key, _)| frontier.as_ref().is_none_or(|f| key >= f))
            .count()
    }

    async fn run(mut self) -> Result<Page, PortError> {
        for index in 0..self.shards.len() {
            self.read_shard(index).await?;
        }
        // Read on in the shard furthest behind until the page is full or the bound is hit.
        while self.complete() <= self.query.limit && self.calls < MAX_QUERY_CALLS {
            let behind = self
                .shards
                .iter()
                .enumerate()
                .filter(|(_, shard)| !shard.exhausted)
                .max_by(|(_, a), (_, b)| a.reached.cmp(&b.reached))
                .map(|(index, _)| index);
            match behind {
                Some(index) => self.read_shard(index).await?,
                None => break,
            }
        }
        let frontier = self.frontier();
        let mut found: Vec<(String, HashMap<String, AttributeValue>)> = self
            .shards
            .into_iter()
            .flat_map(|shard| shard.matched)
            .filter(|(key, _)| frontier.as_ref().is_none_or(|f| key >= f))
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        let full = found.len() > self.query.limit;
        found.truncate(self.query.limit);
        let records = found
            .iter()
            .map(|(_, item)| record_from_item(item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if full {
            found.last().and_then(|(key, _)| position_of(key))
        } else {
            frontier.as_deref().and_then(position_of)
        };
        Ok(Page { records, next })
    }
}
