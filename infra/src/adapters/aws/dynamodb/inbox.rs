//! The alert inbox on DynamoDB: one item per alert beside its transaction's record, written in
//! the same transaction as the record (`put_if_absent`).
//!
//! - Key: `pk = "alert#<shop_id>#<alert_id>"`. Ids never hold `#`, so no transaction's key
//!   (`"<shop>#<id>"`) can take this form.
//! - Index `by_shop_time`: `gsi1pk = "<shop_id>#alerts"`, `gsi1sk = "<raised_at>#<alert_id>"`;
//!   the transaction list reads the partitions `"<shop>#<shard>"` only, so it never sees them.
//! - The item holds the review (JSON, with `review_version` for conditional writes, and
//!   `status` and `verdict` to filter on). What the alert says and its publication are read
//!   from the record, one `BatchGetItem` per page; a review also sets the record's
//!   `alerts.<rule>.review_status` and `verdict`, in one transaction with the alert's item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use chrono::DateTime;

use super::{
    COMPONENT, DynamoStore, key, number, put_if_absent, record_from_item, text, timestamp,
    unavailable,
};
use crate::domain::listing::MAX_EXAMINED_PER_PAGE;
use crate::domain::{
    AlertListQuery, AlertPage, AlertPosition, InboxAlert, Named, Review, ShopId, TransactionRecord,
    alert_id,
};
use crate::ports::{BACKFILLED, BackfillReport, PortError, ReviewOutcome};

/// Every attribute a review writes, on the alert's item and on the record (`alerts`), and the
/// key: the API's grant to update the table is scoped to these (`dynamodb:Attributes`), so it
/// cannot rewrite a record's transaction or anything else.
pub(super) const REVIEW_ATTRIBUTES: &[&str] = &[
    "pk",
    "review",
    "review_version",
    "status",
    "verdict",
    "alerts",
];

/// Reads of the index per page at most, each of up to this many items.
const ITEMS_PER_QUERY: i32 = 500;

fn alert_pk(shop_id: &str, alert_id: &str) -> String {
    format!("alert#{shop_id}#{alert_id}")
}

fn sort_key(micros: i64, alert_id: &str) -> String {
    let at = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    format!("{}#{alert_id}", timestamp(at))
}

fn build<E: std::fmt::Display>(error: E) -> PortError {
    PortError::rejected(COMPONENT, error.to_string())
}

/// The inbox items of a record's alerts, as they open (no review yet).
fn opening_items(
    record: &TransactionRecord,
) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
    let shop = record.shop_id.as_str();
    let transaction_id = &record.transaction.transaction_id;
    let review = serde_json::to_string(&Review::default()).map_err(build)?;
    let micros = record.processed_at.timestamp_micros();
    Ok(record
        .alerts
        .iter()
        .map(|alert| {
            let rule = &alert.decision.rule;
            let id = alert_id(&record.shop_id, transaction_id, rule);
            HashMap::from([
                ("pk".to_owned(), text(alert_pk(shop, &id))),
                ("alert_id".to_owned(), text(&id)),
                ("transaction_id".to_owned(), text(transaction_id)),
                ("rule".to_owned(), text(rule)),
                ("raised_at".to_owned(), number(micros)),
                ("status".to_owned(), text("open")),
                ("review".to_owned(), text(&review)),
                ("review_version".to_owned(), number(0)),
                ("gsi1pk".to_owned(), text(format!("{shop}#alerts"))),
                ("gsi1sk".to_owned(), text(sort_key(micros, &id))),
            ])
        })
        .collect())
}

/// The puts that open the inbox items of a record's alerts, for the record's transaction.
pub(super) fn opening_puts(
    table: &str,
    record: &TransactionRecord,
) -> Result<Vec<TransactWriteItem>, PortError> {
    opening_items(record)?
        .into_iter()
        .map(|item| {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .build()
                .map_err(build)?;
            Ok(TransactWriteItem::builder().put(put).build())
        })
        .collect()
}

impl DynamoStore {
    /// Opens the inbox items of alerts stored before the inbox existed: a scan of the table,
    /// `page` items per read, each record's missing items put on condition that they are
    /// absent. Run again, it opens nothing twice.
    pub(super) async fn open_earlier_alerts(&self, page: i32) -> Result<BackfillReport, PortError> {
        let mut report = BackfillReport::default();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("attribute_exists(#record) AND size(alerts) > :none")
                .expression_attribute_names("#record", "record")
                .expression_attribute_values(":none", number(0))
                .limit(page)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            report.items_read += output.scanned_count().max(0) as u64;
            for item in output.items() {
                let record = record_from_item(item)?;
                report.records += 1;
                for mut alert in opening_items(&record)? {
                    alert.insert(BACKFILLED.to_owned(), AttributeValue::Bool(true));
                    if put_if_absent(&self.client, &self.table, alert, COMPONENT).await? {
                        report.opened += 1;
                    }
                }
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(report);
            }
        }
    }
}

/// An inbox item's pointer to its alert, and the review it holds.
struct Found {
    transaction_id: String,
    rule: String,
    position: AlertPosition,
    review: Review,
}

fn found(item: &HashMap<String, AttributeValue>) -> Result<Found, PortError> {
    let field = |name: &str| {
        item.get(name)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .ok_or_else(|| {
                PortError::unavailable(COMPONENT, format!("an alert item has no {name}"))
            })
    };
    let micros = item
        .get("raised_at")
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    let review = serde_json::from_str(&field("review")?)
        .map_err(|error| PortError::unavailable(COMPONENT, error))?;
    Ok(Found {
        transaction_id: field("transaction_id")?,
        rule: field("rule")?,
        position: AlertPosition {
            micros,
            alert_id: field("alert_id")?,
        },
        review,
    })
}

fn assemble(found: Found, record: Option<&TransactionRecord>) -> Option<InboxAlert> {
    let record = record?;
    let alert = record
        .alerts
        .iter()
        .find(|a| a.decision.rule == found.rule)?;
    Some(InboxAlert::of(record, alert, found.review))
}

impl DynamoStore {
    /// Walks the shop's alerts newest first, reading at most `MAX_EXAMINED_PER_PAGE` items, and
    /// keeps those that pass the filters.
    async fn alert_rows(
        &self,
        shop_id: &str,
        query: &AlertListQuery,
    ) -> Result<(Vec<Found>, Option<AlertPosition>), PortError> {
        let filters = &query.filters;
        let mut values: HashMap<String, AttributeValue> =
            HashMap::from([(":pk".to_owned(), text(format!("{shop_id}#alerts")))]);
        let mut names = HashMap::new();
        let mut condition = "gsi1pk = :pk".to_owned();
        // Upper bound: before the position, or before `to`; lower bound: from `from`.
        let upper = match (&query.after, filters.to) {
            (Some(after), _) => Some(sort_key(after.micros, &after.alert_id)),
            (None, Some(to)) => Some(sort_key(to.timestamp_micros(), "")),
            (None, None) => None,
        };
        let lower = filters
            .from
            .map(|from| sort_key(from.timestamp_micros(), ""));
        match (lower, upper) {
            (Some(lower), Some(upper)) => {
                condition.push_str(" AND gsi1sk BETWEEN :lower AND :upper");
                values.insert(":lower".to_owned(), text(lower));
                values.insert(":upper".to_owned(), text(upper));
            }
            (Some(lower), None) => {
                condition.push_str(" AND gsi1sk >= :lower");
                values.insert(":lower".to_owned(), text(lower));
            }
            (None, Some(upper)) => {
                condition.push_str(" AND gsi1sk < :upper");
                values.insert(":upper".to_owned(), text(upper));
            }
            (None, None) => {}
        }
        let mut kept = Vec::new();
        if let Some(status) = filters.status {
            kept.push("#status = :status");
            names.insert("#status".to_owned(), "status".to_owned());
            values.insert(":status".to_owned(), text(status.name()));
        }
        if let Some(rule) = &filters.rule {
            kept.push("#rule = :rule");
            names.insert("#rule".to_owned(), "rule".to_owned());
            values.insert(":rule".to_owned(), text(rule));
        }
        if let Some(verdict) = filters.verdict {
            kept.push("verdict = :verdict");
            values.insert(":verdict".to_owned(), text(verdict.name()));
        }
        if let Some(id) = &filters.transaction_id {
            kept.push("transaction_id = :transaction");
            values.insert(":transaction".to_owned(), text(id));
        }
        // Without a filter every item read is kept: read no more than the page needs.
        let per_query = if kept.is_empty() {
            i32::try_from(query.limit + 1).unwrap_or(ITEMS_PER_QUERY)
        } else {
            ITEMS_PER_QUERY
        };
        let mut rows = Vec::new();
        let mut examined = 0usize;
        let mut start = None;
        let mut last_examined: Option<AlertPosition> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(super::TIME_INDEX)
                .key_condition_expression(&condition)
                .set_filter_expression((!kept.is_empty()).then(|| kept.join(" AND ")))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(per_query)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            examined += usize::try_from(output.scanned_count()).unwrap_or_default();
            for item in output.items() {
                let row = found(item)?;
                // The position's own item: `BETWEEN` includes its upper bound.
                if query.after.as_ref() != Some(&row.position) {
                    rows.push(row);
                }
            }
            start = output.last_evaluated_key;
            if let Some(key) = &start {
                last_examined = position_of_key(key);
            }
            if rows.len() > query.limit {
                return Ok((rows, None));
            }
            if start.is_none() {
                return Ok((rows, None));
            }
            if examined >= MAX_EXAMINED_PER_PAGE {
                // Bounded work: a short page, continued from the last item examined.
                return Ok((rows, last_examined));
            }
        }
    }

    /// The records of these alerts, by transaction id.
    async fn records_of(
        &self,
        shop_id: &str,
        transaction_ids: &[&str],
    ) -> Result<HashMap<String, TransactionRecord>, PortError> {
        let mut records = HashMap::new();
        let mut wanted: Vec<HashMap<String, AttributeValue>> = transaction_ids
            .iter()
            .map(|id| HashMap::from([("pk".to_owned(), text(key(shop_id, id)))]))
            .collect();
        wanted.sort_by(|a, b| {
            a.get("pk")
                .and_then(|v| v.as_s().ok())
                .cmp(&b.get("pk").and_then(|v| v.as_s().ok()))
        });
        // BatchGetItem refuses a key given twice (two alerts of one transaction on a page).
        wanted.dedup();
        for _round in 0..5 {
            if wanted.is_empty() {
                break;
            }
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .build()
                .map_err(build)?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                let record = record_from_item(&item)?;
                records.insert(record.transaction.transaction_id.clone(), record);
            }
            if let Some(mut left) = output.unprocessed_keys
                && let Some(left) = left.remove(&self.table)
            {
                wanted = left.keys;
            }
        }
        if !wanted.is_empty() {
            return Err(PortError::unavailable(COMPONENT, "records left unread"));
        }
        Ok(records)
    }

    async fn alert_item(&self, shop_id: &str, alert_id: &str) -> Result<Option<Found>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", text(alert_pk(shop_id, alert_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(found).transpose()
    }

    pub(super) async fn list_alerts_page(
        &self,
        shop_id: &ShopId,
        query: &AlertListQuery,
    ) -> Result<AlertPage, PortError> {
        let shop = shop_id.as_str();
        let (mut rows, boundary) = self.alert_rows(shop, query).await?;
        let next = if rows.len() > query.limit {
            rows.truncate(query.limit);
            rows.last().map(|row| row.position.clone())
        } else {
            boundary
        };
        let ids: Vec<&str> = rows.iter().map(|row| row.transaction_id.as_str()).collect();
        let records = if ids.is_empty() {
            HashMap::new()
        } else {
            self.records_of(shop, &ids).await?
        };
        let alerts = rows
            .into_iter()
            .filter_map(|row| {
                let record = records.get(&row.transaction_id);
                assemble(row, record)
            })
            .collect();
        Ok(AlertPage { alerts, next })
    }

    pub(super) async fn one_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
    ) -> Result<Option<InboxAlert>, PortError> {
        let Some(row) = self.alert_item(shop_id.as_str(), alert_id).await? else {
            return Ok(None);
        };
        let record = self.read(shop_id.as_str(), &row.transaction_id).await?;
        Ok(assemble(row, record.as_ref()))
    }

    pub(super) async fn write_review(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
        based_on: u64,
        review: &Review,
    ) -> Result<ReviewOutcome, PortError> {
        let shop = shop_id.as_str();
        let Some(row) = self.alert_item(shop, alert_id).await? else {
            return Ok(ReviewOutcome::Missing);
        };
        let json = serde_json::to_string(review).map_err(build)?;
        let verdict = review.verdict.map(|verdict| verdict.name());
        let mut alert = Update::builder()
            .table_name(&self.table)
            .key("pk", text(alert_pk(shop, alert_id)))
            .condition_expression("review_version = :based_on")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":based_on", number(based_on as i64))
            .expression_attribute_values(":version", number(review.version as i64))
            .expression_attribute_values(":review", text(json))
            .expression_attribute_values(":status", text(review.status.name()));
        let mut on_record = Update::builder()
            .table_name(&self.table)
            .key("pk", text(key(shop, &row.transaction_id)))
            .condition_expression("attribute_exists(alerts.#rule)")
            .expression_attribute_names("#rule", &row.rule)
            .expression_attribute_values(":status", text(review.status.name()));
        match verdict {
            Some(verdict) => {
                alert = alert
                    .update_expression(
                        "SET review = :review, review_version = :version, #status = :status, verdict = :verdict",
                    )
                    .expression_attribute_values(":verdict", text(verdict));
                on_record = on_record
                    .update_expression(
                        "SET alerts.#rule.review_status = :status, alerts.#rule.verdict = :verdict",
                    )
                    .expression_attribute_values(":verdict", text(verdict));
            }
            None => {
                alert = alert.update_expression(
                    "SET review = :review, review_version = :version, #status = :status REMOVE verdict",
                );
                on_record = on_record.update_expression(
                    "SET alerts.#rule.review_status = :status REMOVE alerts.#rule.verdict",
                );
            }
        }
        let items = vec![
            TransactWriteItem::builder()
                .update(alert.build().map_err(build)?)
                .build(),
            TransactWriteItem::builder()
                .update(on_record.build().map_err(build)?)
                .build(),
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(match self.one_alert(shop_id, alert_id).await? {
                Some(alert) => ReviewOutcome::Saved(alert),
                None => ReviewOutcome::Missing,
            }),
            // The alert's own condition failed: another review came first.
            Err(error) if super::first_condition_failed(&error) => {
                Ok(match self.one_alert(shop_id, alert_id).await? {
                    Some(alert) => ReviewOutcome::Stale(alert),
                    None => ReviewOutcome::Missing,
                })
            }
            // Anything else (a transaction conflicting with the processor's update of the
            // record, a throttle) is worth a retry: the client gets 503 with Retry-After.
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// The position of the last item a query examined, from its `LastEvaluatedKey`.
fn position_of_key(key: &HashMap<String, AttributeValue>) -> Option<AlertPosition> {
    let sort = key.get("gsi1sk")?.as_s().ok()?;
    let (at, alert_id) = sort.rsplit_once('#')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?;
    Some(AlertPosition {
        micros: at.timestamp_micros(),
        alert_id: alert_id.to_owned(),
    })
}
