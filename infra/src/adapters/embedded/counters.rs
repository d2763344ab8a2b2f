//! The windowed rules' counters in SQLite: one row per (shop, rule, key, bucket) with the count
//! and the exact sum, one row per distinct member, and one row per counted transaction, so that
//! a redelivery adds nothing. The store's single writer thread makes each count atomic; the
//! counting itself goes through `window_cache`, which keeps these rows in memory too.

use std::str::FromStr;

use rusqlite::{Connection, params};
use rust_decimal::Decimal;

use crate::domain::rules::{WindowQuery, WindowTotal};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS counted (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (shop_id, transaction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counted_expiry ON counted (expires_at);
CREATE TABLE IF NOT EXISTS counters (
    shop_id    TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    sum        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (shop_id, rule, key, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expiry ON counters (expires_at);
CREATE TABLE IF NOT EXISTS counter_members (
    shop_id    TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    bucket     INTEGER NOT NULL,
    member     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (shop_id, rule, key, bucket, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counter_members_expiry ON counter_members (expires_at);
";

/// Expired rows go every this many counted transactions, a bounded amount each time.
pub const PURGE_EVERY: u64 = 1024;
const PURGE_BATCH: i64 = 10_000;

/// Drops counters, members and markers that no window can ask for any more, a bounded number
/// at a time so that the writer is never held up for long.
pub fn purge_expired(connection: &Connection, now: i64) -> rusqlite::Result<()> {
    for (table, key) in [
        ("counted", "shop_id, transaction_id"),
        ("counters", "shop_id, rule, key, bucket"),
        ("counter_members", "shop_id, rule, key, bucket, member"),
    ] {
        connection
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE ({key}) IN
                   (SELECT {key} FROM {table} WHERE expires_at < ?1 LIMIT ?2)"
            ))?
            .execute(params![now, PURGE_BATCH])?;
    }
    Ok(())
}

pub fn window_totals(
    connection: &Connection,
    shop_id: &str,
    windows: &[WindowQuery],
) -> rusqlite::Result<Vec<WindowTotal>> {
    windows
        .iter()
        .map(|window| {
            let (first, last) = match (window.buckets.first(), window.buckets.last()) {
                (Some(first), Some(last)) => (*first, *last),
                _ => return Ok(WindowTotal::default()),
            };
            let mut total = WindowTotal::default();
            let mut counters = connection.prepare_cached(
                "SELECT count, sum FROM counters
                  WHERE shop_id = ?1 AND rule = ?2 AND key = ?3 AND bucket BETWEEN ?4 AND ?5",
            )?;
            let mut rows =
                counters.query(params![shop_id, window.rule, window.key, first, last])?;
            while let Some(row) = rows.next()? {
                total.count += row.get::<_, i64>(0)?.max(0) as u64;
                total.sum += decimal(Some(&row.get::<_, String>(1)?))?;
            }
            let mut members = connection.prepare_cached(
                "SELECT DISTINCT member FROM counter_members
                  WHERE shop_id = ?1 AND rule = ?2 AND key = ?3 AND bucket BETWEEN ?4 AND ?5",
            )?;
            let found = members.query_map(
                params![shop_id, window.rule, window.key, first, last],
                |row| row.get::<_, String>(0),
            )?;
            for member in found {
                total.members.insert(member?);
            }
            Ok(total)
        })
        .collect()
}

pub fn decimal(text: Option<&str>) -> rusqlite::Result<Decimal> {
    match text {
        None => Ok(Decimal::ZERO),
        Some(text) => Decimal::from_str(text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        }),
    }
}
