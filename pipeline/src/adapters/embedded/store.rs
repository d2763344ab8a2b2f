//! The embedded store: one row per (shop, transaction id), kept as JSON as it was first
//! written, and one row per alert for the only thing that changes afterwards: its progress.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::{SqliteDb, json_error};
use crate::domain::{AlertState, Named, ShopId, TransactionRecord};
use crate::ports::{AlertClaim, ClaimOutcome, PortError, PutOutcome, Store};

const COMPONENT: &str = "store";

/// Version 1 was the first release, before the version was recorded.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    payload_hash   TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    record         TEXT    NOT NULL,
    PRIMARY KEY (shop_id, transaction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transactions_by_shop_and_time
    ON transactions (shop_id, occurred_at_ms);
CREATE TABLE IF NOT EXISTS alert_progress (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    sent_at        TEXT,
    claim_owner    TEXT,
    claim_until_ms INTEGER,
    PRIMARY KEY (shop_id, transaction_id, rule)
) WITHOUT ROWID;
";

pub struct SqliteStore {
    db: SqliteDb,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Ok(Self {
            db: SqliteDb::open(path, COMPONENT, SCHEMA, SCHEMA_VERSION)?,
        })
    }
}

fn select_record(
    connection: &Connection,
    shop_id: &str,
    transaction_id: &str,
) -> rusqlite::Result<Option<TransactionRecord>> {
    let json: Option<String> = connection
        .prepare_cached(
            "SELECT record FROM transactions WHERE shop_id = ?1 AND transaction_id = ?2",
        )?
        .query_row(params![shop_id, transaction_id], |row| row.get(0))
        .optional()?;
    let Some(json) = json else {
        return Ok(None);
    };
    let mut record: TransactionRecord = serde_json::from_str(&json).map_err(json_error)?;
    if !record.alerts.is_empty() {
        let mut progress = connection.prepare_cached(
            "SELECT rule, state, sent_at FROM alert_progress
              WHERE shop_id = ?1 AND transaction_id = ?2",
        )?;
        let rows = progress.query_map(params![shop_id, transaction_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (rule, state, sent_at) = row?;
            record.apply_alert_progress(&rule, Some(&state), sent_at.as_deref());
        }
    }
    Ok(Some(record))
}

fn insert_record(
    connection: &Connection,
    record: &TransactionRecord,
    json: &str,
) -> rusqlite::Result<bool> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO transactions (shop_id, transaction_id, payload_hash, occurred_at_ms, record)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            record.shop_id.as_str(),
            record.transaction.transaction_id,
            record.payload_hash,
            record.transaction.timestamp.timestamp_millis(),
            json,
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    let mut progress = connection.prepare_cached(
        "INSERT INTO alert_progress (shop_id, transaction_id, rule, state) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for alert in &record.alerts {
        progress.execute(params![
            record.shop_id.as_str(),
            record.transaction.transaction_id,
            alert.decision.rule,
            alert.state.name(),
        ])?;
    }
    Ok(true)
}

fn claim(
    connection: &Connection,
    key: (&str, &str, &str),
    claim: &AlertClaim,
) -> rusqlite::Result<ClaimOutcome> {
    let (shop_id, transaction_id, rule) = key;
    let claimed = connection
        .prepare_cached(
            "UPDATE alert_progress SET claim_owner = ?4, claim_until_ms = ?5
              WHERE shop_id = ?1 AND transaction_id = ?2 AND rule = ?3 AND state = 'pending'
                AND (claim_until_ms IS NULL OR claim_until_ms < ?6)",
        )?
        .execute(params![
            shop_id,
            transaction_id,
            rule,
            claim.owner,
            claim.until.timestamp_millis(),
            claim.now.timestamp_millis(),
        ])?;
    if claimed == 1 {
        return Ok(ClaimOutcome::Claimed);
    }
    let (state, until): (String, Option<i64>) = connection
        .prepare_cached(
            "SELECT state, claim_until_ms FROM alert_progress
              WHERE shop_id = ?1 AND transaction_id = ?2 AND rule = ?3",
        )?
        .query_row(params![shop_id, transaction_id, rule], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    Ok(match AlertState::from_name(&state) {
        Some(AlertState::Sent) => ClaimOutcome::AlreadySent,
        _ => ClaimOutcome::HeldElsewhere {
            until: until
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(claim.until),
        },
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        let json = serde_json::to_string(record)
            .expect("a record is plain data with string keys, which always serialises");
        let record = record.clone();
        self.db
            .write(move |connection| {
                if insert_record(connection, &record, &json)? {
                    return Ok(PutOutcome::Inserted);
                }
                let existing = select_record(
                    connection,
                    record.shop_id.as_str(),
                    &record.transaction.transaction_id,
                )?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                Ok(PutOutcome::of_existing(existing, &record))
            })
            .await
    }

    async fn get(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
    ) -> Result<Option<TransactionRecord>, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |connection| select_record(connection, &shop_id, &transaction_id))
            .await
    }

    async fn claim_alert(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        alert_claim: &AlertClaim,
    ) -> Result<ClaimOutcome, PortError> {
        let key = (
            shop_id.as_str().to_owned(),
            transaction_id.to_owned(),
            rule.to_owned(),
        );
        let alert_claim = alert_claim.clone();
        self.db
            .write(move |connection| claim(connection, (&key.0, &key.1, &key.2), &alert_claim))
            .await
    }

    async fn release_alert_claim(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        owner: &str,
    ) -> Result<(), PortError> {
        let key = (
            shop_id.as_str().to_owned(),
            transaction_id.to_owned(),
            rule.to_owned(),
            owner.to_owned(),
        );
        self.db
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE alert_progress SET claim_owner = NULL, claim_until_ms = NULL
                          WHERE shop_id = ?1 AND transaction_id = ?2 AND rule = ?3 AND claim_owner = ?4",
                    )?
                    .execute(params![key.0, key.1, key.2, key.3])?;
                Ok(())
            })
            .await
    }

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        rule: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let transaction_id = transaction_id.to_owned();
        let rule = rule.to_owned();
        let sent_at = sent_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        self.db
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE alert_progress
                            SET state = 'sent', sent_at = ?4, claim_owner = NULL, claim_until_ms = NULL
                          WHERE shop_id = ?1 AND transaction_id = ?2 AND rule = ?3 AND state = 'pending'",
                    )?
                    .execute(params![shop_id, transaction_id, rule, sent_at])?;
                Ok(())
            })
            .await
    }
}
