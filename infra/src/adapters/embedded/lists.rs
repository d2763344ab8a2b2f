//! A shop's lists in the embedded store: one row per (shop, list, value). The primary key is
//! the only index: a look-up is one seek, and a page walks it in order.

use chrono::DateTime;
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::lists::ListLookup;
use crate::ports::{ListItem, ListItems};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS list_items (
    shop_id     TEXT    NOT NULL,
    list        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    added_at_us INTEGER NOT NULL,
    PRIMARY KEY (shop_id, list, value)
) WITHOUT ROWID;
";

pub fn add(
    connection: &Connection,
    key: (&str, &str, &str),
    added_at_us: i64,
) -> rusqlite::Result<()> {
    let (shop_id, list, value) = key;
    connection
        .prepare_cached(
            "INSERT INTO list_items (shop_id, list, value, added_at_us) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![shop_id, list, value, added_at_us])?;
    Ok(())
}

pub fn remove(connection: &Connection, key: (&str, &str, &str)) -> rusqlite::Result<()> {
    let (shop_id, list, value) = key;
    connection
        .prepare_cached("DELETE FROM list_items WHERE shop_id = ?1 AND list = ?2 AND value = ?3")?
        .execute(params![shop_id, list, value])?;
    Ok(())
}

pub fn listed(
    connection: &Connection,
    shop_id: &str,
    lookups: &[ListLookup],
) -> rusqlite::Result<Vec<bool>> {
    let mut statement = connection.prepare_cached(
        "SELECT 1 FROM list_items WHERE shop_id = ?1 AND list = ?2 AND value = ?3",
    )?;
    lookups
        .iter()
        .map(|lookup| {
            statement
                .query_row(params![shop_id, lookup.list, lookup.value], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
        .collect()
}

pub fn page(
    connection: &Connection,
    key: (&str, &str),
    after: Option<&str>,
    limit: usize,
) -> rusqlite::Result<ListItems> {
    let (shop_id, list) = key;
    let mut statement = connection.prepare_cached(
        "SELECT value, added_at_us FROM list_items
          WHERE shop_id = ?1 AND list = ?2 AND value > ?3 ORDER BY value LIMIT ?4",
    )?;
    let rows = statement.query_map(
        params![shop_id, list, after.unwrap_or(""), limit as i64 + 1],
        |row| {
            Ok(ListItem {
                value: row.get(0)?,
                added_at: DateTime::from_timestamp_micros(row.get(1)?).unwrap_or_default(),
            })
        },
    )?;
    let items = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ListItems::from_overfetch(items, limit))
}
