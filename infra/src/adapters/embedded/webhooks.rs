//! Webhooks in the embedded store: the shops' webhooks, and one row per delivery of an event
//! to a webhook. A delivery is written in the same SQLite transaction as the change its event
//! reports (an alert raised with its record, a review with the review), so that a crash
//! between the two loses nothing; the delivery worker then sends it until it is delivered or
//! out of retries.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::json_error;
use crate::domain::webhooks::{EventType, WebhookEvent, delivery_id};
use crate::domain::{Named, ShopId};
use crate::ports::{
    AttemptOutcome, DeliveriesPage, Delivery, DeliveryAttempt, DueDelivery, Take, Webhook,
};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
    shop_id           TEXT    NOT NULL,
    webhook_id        TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    events            TEXT    NOT NULL,
    description       TEXT,
    created_at_us     INTEGER NOT NULL,
    secret            TEXT    NOT NULL,
    previous_secret   TEXT,
    previous_until_us INTEGER,
    PRIMARY KEY (shop_id, webhook_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id   TEXT    NOT NULL PRIMARY KEY,
    shop_id       TEXT    NOT NULL,
    webhook_id    TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    attempts      TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL,
    due_at_us     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_at_us) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_of_webhook
    ON deliveries (shop_id, webhook_id, created_at_us DESC, delivery_id DESC);
";

const WEBHOOK_COLUMNS: &str = "shop_id, webhook_id, url, events, description, created_at_us, \
                               secret, previous_secret, previous_until_us";

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn webhook_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Webhook> {
    webhook_from_row_at(row, 0)
}

pub fn add(connection: &Connection, webhook: &Webhook, most: usize) -> rusqlite::Result<bool> {
    let count: i64 = connection
        .prepare_cached("SELECT count(*) FROM webhooks WHERE shop_id = ?1")?
        .query_row(params![webhook.shop_id.as_str()], |row| row.get(0))?;
    if count as usize >= most {
        return Ok(false);
    }
    let events = serde_json::to_string(&webhook.events).map_err(json_error)?;
    connection
        .prepare_cached(&format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL)"
        ))?
        .execute(params![
            webhook.shop_id.as_str(),
            webhook.webhook_id,
            webhook.url,
            events,
            webhook.description,
            webhook.created_at.timestamp_micros(),
            webhook.secret,
        ])?;
    Ok(true)
}

/// The shop's webhooks that read; one that does not is left out (and logged), so that it
/// cannot stop the record its event belongs to from being stored.
pub fn of_shop(connection: &Connection, shop_id: &str) -> rusqlite::Result<Vec<Webhook>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE shop_id = ?1 ORDER BY created_at_us, webhook_id"
    ))?;
    let rows = statement.query_map(params![shop_id], webhook_from_row)?;
    let mut webhooks = Vec::new();
    for row in rows {
        match row {
            Ok(webhook) => webhooks.push(webhook),
            Err(error) => tracing::error!(%error, shop = %shop_id, "a webhook's row does not read"),
        }
    }
    Ok(webhooks)
}

pub fn one(
    connection: &Connection,
    shop_id: &str,
    webhook_id: &str,
) -> rusqlite::Result<Option<Webhook>> {
    connection
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE shop_id = ?1 AND webhook_id = ?2"
        ))?
        .query_row(params![shop_id, webhook_id], webhook_from_row)
        .optional()
}

/// Removes a webhook and its deliveries, sent or not.
pub fn remove(connection: &Connection, shop_id: &str, webhook_id: &str) -> rusqlite::Result<bool> {
    let removed = connection
        .prepare_cached("DELETE FROM webhooks WHERE shop_id = ?1 AND webhook_id = ?2")?
        .execute(params![shop_id, webhook_id])?;
    connection
        .prepare_cached("DELETE FROM deliveries WHERE shop_id = ?1 AND webhook_id = ?2")?
        .execute(params![shop_id, webhook_id])?;
    Ok(removed == 1)
}

pub fn rotate(
    connection: &Connection,
    shop_id: &str,
    webhook_id: &str,
    secret: &str,
    old_until: DateTime<Utc>,
) -> rusqlite::Result<Option<Webhook>> {
    connection
        .prepare_cached(
            "UPDATE webhooks SET previous_secret = secret, previous_until_us = ?4, secret = ?3
              WHERE shop_id = ?1 AND webhook_id = ?2",
        )?
        .execute(params![
            shop_id,
            webhook_id,
            secret,
            old_until.timestamp_micros()
        ])?;
    one(connection, shop_id, webhook_id)
}

/// Writes a delivery of `event` for each of the shop's webhooks that subscribed to its type.
/// The same event written twice is delivered once (its delivery id follows from it).
pub fn enqueue(
    connection: &Connection,
    shop_id: &str,
    event: &WebhookEvent,
) -> rusqlite::Result<()> {
    let subscribed: Vec<Webhook> = of_shop(connection, shop_id)?
        .into_iter()
        .filter(|webhook| webhook.events.contains(&event.kind))
        .collect();
    if subscribed.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(event).map_err(json_error)?;
    let now = event.created_at.timestamp_micros();
    let mut insert = connection.prepare_cached(
        "INSERT INTO deliveries (delivery_id, shop_id, webhook_id, event_id, event_type, body,
                                 state, attempts, created_at_us, due_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', '[]', ?7, ?7) ON CONFLICT DO NOTHING",
    )?;
    for webhook in subscribed {
        insert.execute(params![
            delivery_id(&event.id, &webhook.webhook_id),
            shop_id,
            webhook.webhook_id,
            event.id,
            event.kind.name(),
            body,
            now,
        ])?;
    }
    Ok(())
}

/// Deliveries due at `now` that `take` allows, leased until `lease_until`. A delivery whose row
/// no longer reads is failed, so that it cannot stop the others.
pub fn due(
    connection: &Connection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    take: Take<'_>,
) -> rusqlite::Result<Vec<DueDelivery>> {
    let in_flight = serde_json::to_string(take.in_flight).map_err(json_error)?;
    let mut statement = connection.prepare_cached(&format!(
        "WITH ranked AS (
              SELECT delivery_id, body, attempts, shop_id, webhook_id, due_at_us,
                     ROW_NUMBER() OVER (PARTITION BY shop_id, webhook_id
                                        ORDER BY due_at_us, delivery_id) AS place
                FROM deliveries
               WHERE state = 'pending' AND due_at_us <= ?1)
         SELECT d.delivery_id, d.body, d.attempts, {}
           FROM ranked d JOIN webhooks w
             ON w.shop_id = d.shop_id AND w.webhook_id = d.webhook_id
          WHERE d.place + coalesce(json_extract(?3, '$.\"' || d.webhook_id || '\"'), 0) <= ?4
          ORDER BY d.due_at_us LIMIT ?2",
        WEBHOOK_COLUMNS
            .split(", ")
            .map(|column| format!("w.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    let mut rows = statement.query(params![
        now.timestamp_micros(),
        take.limit as i64,
        in_flight,
        take.per_webhook as i64
    ])?;
    let (mut due, mut unreadable) = (Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let delivery_id: String = row.get(0)?;
        match due_from_row(row) {
            Ok(delivery) => due.push(delivery),
            Err(error) => {
                tracing::error!(%error, delivery = %delivery_id, "a webhook delivery's row does not read; it is failed");
                unreadable.push(delivery_id);
            }
        }
    }
    let mut lease =
        connection.prepare_cached("UPDATE deliveries SET due_at_us = ?2 WHERE delivery_id = ?1")?;
    for delivery in &due {
        lease.execute(params![
            delivery.delivery_id,
            lease_until.timestamp_micros()
        ])?;
    }
    let mut fail = connection
        .prepare_cached("UPDATE deliveries SET state = 'failed' WHERE delivery_id = ?1")?;
    for delivery_id in &unreadable {
        fail.execute(params![delivery_id])?;
    }
    Ok(due)
}

fn due_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DueDelivery> {
    let attempts: String = row.get(2)?;
    let attempts: Vec<serde_json::Value> = serde_json::from_str(&attempts).map_err(json_error)?;
    Ok(DueDelivery {
        delivery_id: row.get(0)?,
        body: row.get(1)?,
        attempts_made: attempts.len() as u32,
        webhook: webhook_from_row_at(row, 3)?,
    })
}

/// Forgets the deliveries that ended (delivered or failed) before `before`.
pub fn prune(connection: &Connection, before: DateTime<Utc>) -> rusqlite::Result<u64> {
    let removed = connection
        .prepare_cached("DELETE FROM deliveries WHERE state <> 'pending' AND due_at_us < ?1")?
        .execute(params![before.timestamp_micros()])?;
    Ok(removed as u64)
}

/// [`webhook_from_row`] for columns that start at `offset`.
fn webhook_from_row_at(row: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<Webhook> {
    let shop: String = row.get(offset)?;
    let events: String = row.get(offset + 3)?;
    let previous: Option<String> = row.get(offset + 7)?;
    let until: Option<i64> = row.get(offset + 8)?;
    Ok(Webhook {
        shop_id: ShopId::parse(&shop)
            .map_err(|error| json_error(serde::de::Error::custom(error)))?,
        webhook_id: row.get(offset + 1)?,
        url: row.get(offset + 2)?,
        events: serde_json::from_str(&events).map_err(json_error)?,
        description: row.get(offset + 4)?,
        created_at: time(row.get(offset + 5)?),
        secret: row.get(offset + 6)?,
        previous_secret: previous.zip(until.map(time)),
    })
}

pub fn record_attempt(
    connection: &Connection,
    delivery_id: &str,
    attempt: &DeliveryAttempt,
    outcome: AttemptOutcome,
) -> rusqlite::Result<()> {
    let attempts: Option<String> = connection
        .prepare_cached("SELECT attempts FROM deliveries WHERE delivery_id = ?1")?
        .query_row(params![delivery_id], |row| row.get(0))
        .optional()?;
    // Removed with its webhook meanwhile: nothing to record.
    let Some(attempts) = attempts else {
        return Ok(());
    };
    let mut attempts: Vec<serde_json::Value> =
        serde_json::from_str(&attempts).map_err(json_error)?;
    attempts.push(serde_json::to_value(attempt).map_err(json_error)?);
    let state = outcome.state();
    let due_at = match outcome {
        AttemptOutcome::RetryAt(at) => at,
        AttemptOutcome::Delivered | AttemptOutcome::Failed => attempt.at,
    };
    connection
        .prepare_cached(
            "UPDATE deliveries SET attempts = ?2, state = ?3, due_at_us = ?4 WHERE delivery_id = ?1",
        )?
        .execute(params![
            delivery_id,
            serde_json::to_string(&attempts).map_err(json_error)?,
            state,
            due_at.timestamp_micros(),
        ])?;
    Ok(())
}

/// A webhook's deliveries, newest first; or that the shop has no such webhook, or that the
/// cursor's delivery is not the webhook's.
pub fn deliveries(
    connection: &Connection,
    shop_id: &str,
    webhook_id: &str,
    limit: usize,
    after: Option<&str>,
) -> rusqlite::Result<DeliveriesPage> {
    if one(connection, shop_id, webhook_id)?.is_none() {
        return Ok(DeliveriesPage::NoWebhook);
    }
    let position: Option<(i64, String)> = match after {
        Some(id) => connection
            .prepare_cached(
                "SELECT created_at_us, delivery_id FROM deliveries
                  WHERE shop_id = ?1 AND webhook_id = ?2 AND delivery_id = ?3",
            )?
            .query_row(params![shop_id, webhook_id, id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?,
        None => None,
    };
    if after.is_some() && position.is_none() {
        return Ok(DeliveriesPage::UnknownCursor);
    }
    let (micros, id) = position.unwrap_or((i64::MAX, String::new()));
    let mut statement = connection.prepare_cached(
        "SELECT delivery_id, event_id, event_type, state, created_at_us, attempts FROM deliveries
          WHERE shop_id = ?1 AND webhook_id = ?2
            AND (created_at_us < ?3 OR (created_at_us = ?3 AND (?4 = '' OR delivery_id < ?4)))
          ORDER BY created_at_us DESC, delivery_id DESC LIMIT ?5",
    )?;
    let rows = statement.query_map(
        params![shop_id, webhook_id, micros, id, limit as i64 + 1],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, String>(5)?,
            ))
        },
    )?;
    let mut deliveries = Vec::new();
    for row in rows {
        let (delivery_id, event_id, event_type, state, created, attempts) = row?;
        let attempts: Vec<serde_json::Value> =
            serde_json::from_str(&attempts).map_err(json_error)?;
        deliveries.push(Delivery {
            delivery_id,
            event_id,
            event_type: EventType::from_name(&event_type).unwrap_or(EventType::AlertRaised),
            state,
            created_at: time(created),
            attempts: attempts
                .into_iter()
                .filter_map(|attempt| serde_json::from_value(attempt).ok())
                .collect(),
        });
    }
    let more = deliveries.len() > limit;
    deliveries.truncate(limit);
    Ok(DeliveriesPage::Page { deliveries, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(connection: &Connection, id: &str, state: &str, ended_us: i64) {
        connection
            .execute(
                "INSERT INTO deliveries (delivery_id, shop_id, webhook_id, event_id, event_type,
                                         body, state, attempts, created_at_us, due_at_us)
                 VALUES (?1, 's', 'w', 'e', 'alert.raised', '{}', ?2, '[]', 0, ?3)",
                params![id, state, ended_us],
            )
            .expect("insert");
    }

    #[test]
    fn pruning_forgets_only_deliveries_that_ended_before_the_cut() {
        let connection = Connection::open_in_memory().expect("open");
        connection.execute_batch(SCHEMA).expect("schema");
        delivery(&connection, "old-delivered", "delivered", 100);
        delivery(&connection, "old-failed", "failed", 100);
        delivery(&connection, "old-pending", "pending", 100);
        delivery(&connection, "new-delivered", "delivered", 300);
        assert_eq!(prune(&connection, time(200)).expect("prune"), 2);
        let left: Vec<String> = connection
            .prepare("SELECT delivery_id FROM deliveries ORDER BY delivery_id")
            .expect("select")
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("ids");
        assert_eq!(left, ["new-delivered", "old-pending"]);
    }
}
