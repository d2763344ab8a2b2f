//! The alert inbox in the embedded store: one row per alert, written in the same transaction as
//! the record that raised it, holding the alert's review (its status and verdict as columns to
//! filter on, the whole review as JSON). What the alert says and whether it was published come
//! from the record and its `alert_progress` row, so they are said once.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use chrono::Utc;

use super::sqlite::json_error;
use super::webhooks;
use crate::domain::listing::MAX_EXAMINED_PER_PAGE;
use crate::domain::webhooks::{EventType, WebhookEvent};
use crate::domain::{
    AlertListQuery, AlertPage, AlertPosition, InboxAlert, Named, Review, ReviewStatus,
    TransactionRecord, Verdict, alert_id,
};
use crate::ports::ReviewOutcome;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    shop_id        TEXT    NOT NULL,
    alert_id       TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    raised_at_us   INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    verdict        TEXT,
    version        INTEGER NOT NULL,
    review         TEXT    NOT NULL,
    PRIMARY KEY (shop_id, alert_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_by_time
    ON inbox (shop_id, raised_at_us DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS inbox_by_status
    ON inbox (shop_id, status, raised_at_us DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS inbox_of_transaction
    ON inbox (shop_id, transaction_id);
";

const ORDER: &str = "ORDER BY raised_at_us DESC, alert_id DESC";

/// Opens an inbox row for each alert of a record just inserted, with its `alert.raised`
/// deliveries.
pub fn insert_alerts(connection: &Connection, record: &TransactionRecord) -> rusqlite::Result<()> {
    let review = serde_json::to_string(&Review::default()).map_err(json_error)?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO inbox (shop_id, alert_id, transaction_id, rule, raised_at_us, status,
                            version, review)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', 0, ?6) ON CONFLICT DO NOTHING",
    )?;
    let transaction_id = &record.transaction.transaction_id;
    for alert in &record.alerts {
        let rule = &alert.decision.rule;
        insert.execute(params![
            record.shop_id.as_str(),
            alert_id(&record.shop_id, transaction_id, rule),
            transaction_id,
            rule,
            record.processed_at.timestamp_micros(),
            review,
        ])?;
        let alert = InboxAlert::of(record, alert, Review::default());
        let event = WebhookEvent::of(EventType::AlertRaised, alert, record.processed_at);
        webhooks::enqueue(connection, record.shop_id.as_str(), &event)?;
    }
    Ok(())
}

/// Gives a record its alerts' review status.
pub fn apply_reviews(
    connection: &Connection,
    record: &mut TransactionRecord,
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(
        "SELECT rule, status, verdict FROM inbox WHERE shop_id = ?1 AND transaction_id = ?2",
    )?;
    let rows = statement.query_map(
        params![record.shop_id.as_str(), record.transaction.transaction_id],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        },
    )?;
    for row in rows {
        let (rule, status, verdict) = row?;
        let status = ReviewStatus::from_name(&status).unwrap_or_default();
        let verdict = verdict.as_deref().and_then(Verdict::from_name);
        record.apply_review(&rule, status, verdict);
    }
    Ok(())
}

/// Alerts of stores written before the inbox existed: opened once, when the inbox is empty.
pub fn open_earlier_alerts(connection: &Connection) -> rusqlite::Result<()> {
    let empty: bool =
        connection.query_row("SELECT NOT EXISTS (SELECT 1 FROM inbox)", [], |row| {
            row.get(0)
        })?;
    if !empty {
        return Ok(());
    }
    let mut statement = connection.prepare(
        "SELECT record FROM transactions WHERE alert_count > 0 ORDER BY shop_id, transaction_id",
    )?;
    let records = statement.query_map([], |row| row.get::<_, String>(0))?;
    for json in records {
        let record: TransactionRecord = serde_json::from_str(&json?).map_err(json_error)?;
        insert_alerts(connection, &record)?;
    }
    Ok(())
}

/// An inbox row: the alert's transaction and rule, where it is in the list, its review.
type Found = (String, String, AlertPosition, Review);

/// The inbox rows of a page: the alert's key and its review, in the list's order.
fn page_rows(
    connection: &Connection,
    shop_id: &str,
    query: &AlertListQuery,
) -> rusqlite::Result<(Vec<Found>, Option<AlertPosition>)> {
    let filters = &query.filters;
    let mut values: Vec<Value> = vec![shop_id.to_owned().into()];
    fn bind(values: &mut Vec<Value>, value: impl Into<Value>) -> String {
        values.push(value.into());
        format!("?{}", values.len())
    }
    let mut candidates = vec!["shop_id = ?1".to_owned()];
    if let Some(status) = filters.status {
        candidates.push(format!(
            "status = {}",
            bind(&mut values, status.name().to_owned())
        ));
    }
    if let Some(id) = &filters.transaction_id {
        candidates.push(format!(
            "transaction_id = {}",
            bind(&mut values, id.clone())
        ));
    }
    if let Some(from) = filters.from {
        candidates.push(format!(
            "raised_at_us >= {}",
            bind(&mut values, from.timestamp_micros())
        ));
    }
    if let Some(to) = filters.to {
        candidates.push(format!(
            "raised_at_us < {}",
            bind(&mut values, to.timestamp_micros())
        ));
    }
    if let Some(after) = &query.after {
        let micros = bind(&mut values, after.micros);
        let id = bind(&mut values, after.alert_id.clone());
        candidates.push(format!("(raised_at_us, alert_id) < ({micros}, {id})"));
    }
    let candidate_values = values.len();
    let mut rest = vec!["1".to_owned()];
    if let Some(rule) = &filters.rule {
        rest.push(format!("rule = {}", bind(&mut values, rule.clone())));
    }
    if let Some(verdict) = filters.verdict {
        rest.push(format!(
            "verdict = {}",
            bind(&mut values, verdict.name().to_owned())
        ));
    }
    let candidates = candidates.join(" AND ");
    let examined = bind(&mut values, MAX_EXAMINED_PER_PAGE as i64);
    let wanted = bind(&mut values, query.limit as i64 + 1);
    let sql = format!(
        "SELECT transaction_id, rule, alert_id, review, raised_at_us FROM (
             SELECT * FROM inbox WHERE {candidates} {ORDER} LIMIT {examined}
         ) WHERE {} {ORDER} LIMIT {wanted}",
        rest.join(" AND ")
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(values.iter()), |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (transaction_id, rule, alert_id, review, micros) = row?;
        let review: Review = serde_json::from_str(&review).map_err(json_error)?;
        let position = AlertPosition { micros, alert_id };
        found.push((transaction_id, rule, position, review));
    }
    if found.len() > query.limit {
        return Ok((found, None));
    }
    // A short page: the end, or the walk stopped at its bound and continues from there.
    let boundary = format!(
        "SELECT raised_at_us, alert_id FROM inbox WHERE {candidates} {ORDER}
          LIMIT 1 OFFSET {}",
        MAX_EXAMINED_PER_PAGE - 1
    );
    let next = connection
        .prepare_cached(&boundary)?
        .query_row(params_from_iter(values[..candidate_values].iter()), |row| {
            Ok(AlertPosition {
                micros: row.get(0)?,
                alert_id: row.get(1)?,
            })
        })
        .optional()?;
    Ok((found, next))
}

/// One page of a shop's alerts; `record` reads the record an alert belongs to.
pub fn list_alerts(
    connection: &Connection,
    shop_id: &str,
    query: &AlertListQuery,
    record: impl Fn(&Connection, &str) -> rusqlite::Result<Option<TransactionRecord>>,
) -> rusqlite::Result<AlertPage> {
    let (mut found, boundary) = page_rows(connection, shop_id, query)?;
    let next = if found.len() > query.limit {
        found.truncate(query.limit);
        found.last().map(|(_, _, position, _)| position.clone())
    } else {
        boundary
    };
    let mut alerts = Vec::with_capacity(found.len());
    for (transaction_id, rule, _, review) in found {
        if let Some(alert) = assemble(connection, &transaction_id, &rule, review, &record)? {
            alerts.push(alert);
        }
    }
    Ok(AlertPage { alerts, next })
}

fn assemble(
    connection: &Connection,
    transaction_id: &str,
    rule: &str,
    review: Review,
    record: &impl Fn(&Connection, &str) -> rusqlite::Result<Option<TransactionRecord>>,
) -> rusqlite::Result<Option<InboxAlert>> {
    let Some(record) = record(connection, transaction_id)? else {
        return Ok(None);
    };
    let alert = record.alerts.iter().find(|a| a.decision.rule == rule);
    Ok(alert.map(|alert| InboxAlert::of(&record, alert, review)))
}

pub fn get_alert(
    connection: &Connection,
    shop_id: &str,
    alert_id: &str,
    record: impl Fn(&Connection, &str) -> rusqlite::Result<Option<TransactionRecord>>,
) -> rusqlite::Result<Option<InboxAlert>> {
    let found = connection
        .prepare_cached(
            "SELECT transaction_id, rule, review FROM inbox WHERE shop_id = ?1 AND alert_id = ?2",
        )?
        .query_row(params![shop_id, alert_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    let Some((transaction_id, rule, review)) = found else {
        return Ok(None);
    };
    let review: Review = serde_json::from_str(&review).map_err(json_error)?;
    assemble(connection, &transaction_id, &rule, review, &record)
}

/// Writes the review if the alert is still at `based_on`.
pub fn review_alert(
    connection: &Connection,
    shop_id: &str,
    alert_id: &str,
    based_on: u64,
    review: &Review,
    record: impl Fn(&Connection, &str) -> rusqlite::Result<Option<TransactionRecord>>,
) -> rusqlite::Result<ReviewOutcome> {
    let json = serde_json::to_string(review).map_err(json_error)?;
    let changed = connection
        .prepare_cached(
            "UPDATE inbox SET status = ?4, verdict = ?5, version = ?6, review = ?7
              WHERE shop_id = ?1 AND alert_id = ?2 AND version = ?3",
        )?
        .execute(params![
            shop_id,
            alert_id,
            based_on as i64,
            review.status.name(),
            review.verdict.map(|verdict| verdict.name()),
            review.version as i64,
            json,
        ])?;
    let now = get_alert(connection, shop_id, alert_id, record)?;
    Ok(match (changed, now) {
        (_, None) => ReviewOutcome::Missing,
        (1, Some(alert)) => {
            let event = WebhookEvent::of(EventType::AlertReviewed, alert.clone(), Utc::now());
            webhooks::enqueue(connection, shop_id, &event)?;
            ReviewOutcome::Saved(alert)
        }
        (_, Some(alert)) => ReviewOutcome::Stale(alert),
    })
}
