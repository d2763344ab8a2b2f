//! The embedded store: one row per (shop, transaction id). The record is kept as JSON as it was
//! first written; the alert's state lives in its own columns because it is the only thing that
//! changes afterwards.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::{SqliteDb, json_error};
use crate::domain::{Named, ShopId, TransactionRecord};
use crate::ports::{PortError, PutOutcome, Store};

const COMPONENT: &str = "store";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    payload_hash   TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    record         TEXT    NOT NULL,
    alert_state    TEXT,
    alert_sent_at  TEXT,
    PRIMARY KEY (shop_id, transaction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transactions_by_shop_and_time
    ON transactions (shop_id, occurred_at_ms);
";

pub struct SqliteStore {
    db: SqliteDb,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Ok(Self {
            db: SqliteDb::open(path, COMPONENT, SCHEMA)?,
        })
    }
}

fn select_record(
    connection: &Connection,
    shop_id: &str,
    transaction_id: &str,
) -> rusqlite::Result<Option<TransactionRecord>> {
    let row = connection
        .prepare_cached(
            "SELECT record, alert_state, alert_sent_at FROM transactions
              WHERE shop_id = ?1 AND transaction_id = ?2",
        )?
        .query_row(params![shop_id, transaction_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    let Some((json, state, sent_at)) = row else {
        return Ok(None);
    };
    let mut record: TransactionRecord = serde_json::from_str(&json).map_err(json_error)?;
    record.apply_alert_progress(state.as_deref(), sent_at.as_deref());
    Ok(Some(record))
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_if_absent(&self, record: &TransactionRecord) -> Result<PutOutcome, PortError> {
        let json = serde_json::to_string(record)
            .expect("a record is plain data with string keys, which always serialises");
        let record = record.clone();
        self.db
            .write(move |connection| {
                let inserted = connection
                    .prepare_cached(
                        "INSERT INTO transactions
                            (shop_id, transaction_id, payload_hash, occurred_at_ms, record, alert_state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        record.shop_id.as_str(),
                        record.transaction.transaction_id,
                        record.payload_hash,
                        record.transaction.timestamp.timestamp_millis(),
                        json,
                        record.alert.as_ref().map(|alert| alert.state.name()),
                    ])?;
                if inserted == 1 {
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

    async fn mark_alert_sent(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let transaction_id = transaction_id.to_owned();
        let sent_at = sent_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        self.db
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE transactions SET alert_state = 'sent', alert_sent_at = ?3
                          WHERE shop_id = ?1 AND transaction_id = ?2 AND alert_state = 'pending'",
                    )?
                    .execute(params![shop_id, transaction_id, sent_at])?;
                Ok(())
            })
            .await
    }

    async fn ping(&self) -> Result<(), PortError> {
        self.db
            .read(|connection| connection.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}
