//! The embedded store: one row per (shop, transaction id), kept as JSON as it was first
//! written, with the columns a list filters on beside it; one row per alert for the only thing
//! that changes afterwards, its progress; and one row per refused conflicting re-send.
//!
//! Lists walk an index in the list's order (`shop_id, occurred_at_us DESC, transaction_id
//! DESC`, or a partial index for a selective filter), at most `MAX_EXAMINED_PER_PAGE` entries
//! per page; they never scan a shop's rows.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::sqlite::{SqliteDb, json_error};
use super::window_cache::WindowCache;
use super::{counters, history, inbox, lists, webhooks};
use crate::domain::listing::{MAX_EXAMINED_PER_PAGE, order_micros};
use crate::domain::lists::ListLookup;
use crate::domain::rules::backtest::Period;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};
use crate::domain::{
    AlertFilter, AlertState, Conflicts, ListFilters, ListQuery, Named, Page, Position,
    RefusedResend, ShopId, TransactionRecord,
};
use crate::domain::{AlertListQuery, AlertPage, InboxAlert, Review};
use crate::ports::{
    AlertClaim, AlertInbox, AlertLedger, AttemptOutcome, BackfillReport, ClaimOutcome,
    DeliveriesPage, DeliveryAttempt, DueDelivery, History, HistoryBound, HistoryRead,
    InboxBackfill, ListAdmin, ListItems, ListMembership, PortError, PutOutcome, RecordReader,
    RecordWriter, ReviewOutcome, Take, Webhook, WebhookOutbox, WebhookRegistry, WindowCounters,
};

const COMPONENT: &str = "store";

/// Amounts are kept as whole multiples of 10^-4 (no currency has more minor units), so that
/// filters compare integers exactly; the largest amount, 10^9, is 10^13 units.
const AMOUNT_SCALE: u32 = 4;

/// 1: the first release, before versions were recorded. 2: alert progress per rule. 3: list
/// columns and indexes, conflicts. The windowed rules' tables (`counters::SCHEMA`), the index
/// by kind and the alert inbox (`inbox::SCHEMA`, filled from the records at the first open)
/// came later as new tables and indexes only, which a version-3 file takes on without a change
/// to its rows.
const SCHEMA_VERSION: u32 = 3;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transactions (
    shop_id              TEXT    NOT NULL,
    transaction_id       TEXT    NOT NULL,
    payload_hash         TEXT    NOT NULL,
    record               TEXT    NOT NULL,
    occurred_at_us       INTEGER NOT NULL,
    kind                 TEXT    NOT NULL,
    currency             TEXT    NOT NULL,
    customer_id          TEXT,
    amount_units         INTEGER NOT NULL,
    alert_count          INTEGER NOT NULL,
    alerts_pending       INTEGER NOT NULL,
    conflict_count       INTEGER NOT NULL DEFAULT 0,
    last_conflict_request_id TEXT,
    last_conflict_at_us  INTEGER,
    PRIMARY KEY (shop_id, transaction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transactions_by_time
    ON transactions (shop_id, occurred_at_us DESC, transaction_id DESC);
CREATE INDEX IF NOT EXISTS transactions_with_alerts
    ON transactions (shop_id, occurred_at_us DESC, transaction_id DESC) WHERE alert_count > 0;
CREATE INDEX IF NOT EXISTS transactions_conflicted
    ON transactions (shop_id, occurred_at_us DESC, transaction_id DESC) WHERE conflict_count > 0;
CREATE INDEX IF NOT EXISTS transactions_by_kind
    ON transactions (shop_id, kind, occurred_at_us DESC, transaction_id DESC);
CREATE INDEX IF NOT EXISTS transactions_by_customer
    ON transactions (shop_id, customer_id, occurred_at_us DESC, transaction_id DESC)
    WHERE customer_id IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS conflicts (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    refused_at_us  INTEGER NOT NULL,
    PRIMARY KEY (shop_id, transaction_id, request_id)
) WITHOUT ROWID;
";

pub struct SqliteStore {
    db: SqliteDb,
    /// Transactions counted by windowed rules, to purge expired counters now and then.
    counted: AtomicU64,
    /// The counters in memory; only ever locked on the writer thread.
    windows: Arc<Mutex<WindowCache>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        let schema = format!(
            "{SCHEMA}{}{}{}{}",
            counters::SCHEMA,
            inbox::SCHEMA,
            webhooks::SCHEMA,
            lists::SCHEMA
        );
        let db = SqliteDb::open_then(
            path,
            COMPONENT,
            &schema,
            SCHEMA_VERSION,
            inbox::open_earlier_alerts,
        )?;
        Ok(Self {
            db,
            counted: AtomicU64::new(0),
            windows: Arc::default(),
        })
    }
}

fn amount_units(amount: Decimal, round_up: bool) -> i64 {
    let scaled = amount * Decimal::from(10i64.pow(AMOUNT_SCALE));
    let whole = if round_up {
        scaled.ceil()
    } else {
        scaled.floor()
    };
    whole
        .to_i64()
        .unwrap_or(if round_up { i64::MAX } else { i64::MIN })
}

pub(super) const RECORD_COLUMNS: &str =
    "record, alert_count, conflict_count, last_conflict_request_id, last_conflict_at_us";

/// A row of `RECORD_COLUMNS`, read but not yet parsed.
pub(super) struct RecordRow {
    pub(super) json: String,
    pub(super) alert_count: i64,
    conflicts: Conflicts,
}

impl RecordRow {
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            json: row.get(0)?,
            alert_count: row.get(1)?,
            conflicts: Conflicts {
                count: row.get(2)?,
                last_request_id: row.get(3)?,
                last_refused_at: row
                    .get::<_, Option<i64>>(4)?
                    .and_then(DateTime::from_timestamp_micros),
            },
        })
    }

    /// The record as written, with its conflicts; its alerts' progress comes from
    /// [`apply_alert_rows`].
    pub(super) fn parse(self) -> rusqlite::Result<TransactionRecord> {
        let mut record: TransactionRecord = serde_json::from_str(&self.json).map_err(json_error)?;
        record.conflicts = self.conflicts;
        Ok(record)
    }
}

/// A record from its row (`RECORD_COLUMNS`), with its alerts' progress and its conflicts.
fn record_from_row(
    connection: &Connection,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<TransactionRecord> {
    let row = RecordRow::read(row)?;
    let alerted = row.alert_count > 0;
    let mut record = row.parse()?;
    if alerted {
        apply_alert_rows(connection, &mut record)?;
    }
    Ok(record)
}

/// Each alert's progress and review, from the rows kept beside the record.
pub(super) fn apply_alert_rows(
    connection: &Connection,
    record: &mut TransactionRecord,
) -> rusqlite::Result<()> {
    let mut progress = connection.prepare_cached(
        "SELECT rule, state, sent_at FROM alert_progress
          WHERE shop_id = ?1 AND transaction_id = ?2",
    )?;
    let rows = progress.query_map(
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
        let (rule, state, sent_at) = row?;
        record.apply_alert_progress(&rule, Some(&state), sent_at.as_deref());
    }
    inbox::apply_reviews(connection, record)
}

fn select_record(
    connection: &Connection,
    shop_id: &str,
    transaction_id: &str,
) -> rusqlite::Result<Option<TransactionRecord>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM transactions WHERE shop_id = ?1 AND transaction_id = ?2"
    ))?;
    let mut rows = statement.query(params![shop_id, transaction_id])?;
    match rows.next()? {
        Some(row) => Ok(Some(record_from_row(connection, row)?)),
        None => Ok(None),
    }
}

fn insert_record(
    connection: &Connection,
    record: &TransactionRecord,
    json: &str,
) -> rusqlite::Result<bool> {
    let transaction = &record.transaction;
    let inserted = connection
        .prepare_cached(
            "INSERT INTO transactions
                (shop_id, transaction_id, payload_hash, record, occurred_at_us, kind, currency,
                 customer_id, amount_units, alert_count, alerts_pending)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            record.shop_id.as_str(),
            transaction.transaction_id,
            record.payload_hash,
            json,
            order_micros(transaction.timestamp),
            transaction.kind.name(),
            transaction.currency,
            transaction.customer_id,
            amount_units(transaction.amount, false),
            record.alerts.len() as i64,
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
            transaction.transaction_id,
            alert.decision.rule,
            alert.state.name(),
        ])?;
    }
    inbox::insert_alerts(connection, record)?;
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

/// SQL for one page: the conditions that pick the index and the walk (`candidates`), and the
/// conditions applied to what the walk found (`rest`), with their parameters.
struct PageSql {
    candidates: Vec<String>,
    /// How many of `values` the `candidates` conditions use (they are bound first).
    candidate_values: usize,
    rest: Vec<String>,
    values: Vec<Value>,
}

impl PageSql {
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    fn build(shop_id: &str, filters: &ListFilters, after: Option<&Position>) -> Self {
        let mut sql = PageSql {
            candidates: Vec::new(),
            candidate_values: 0,
            rest: Vec::new(),
            values: Vec::new(),
        };
        let shop = sql.bind(shop_id.to_owned());
        sql.candidates.push(format!("shop_id = {shop}"));
        // The most selective filter with an index of its own decides the walk; its condition
        // matches the partial index's so that SQLite uses it.
        if let Some(customer) = &filters.customer_id {
            let customer = sql.bind(customer.clone());
            sql.candidates.push(format!("customer_id = {customer}"));
        } else if matches!(
            filters.alert,
            Some(AlertFilter::Pending | AlertFilter::Sent | AlertFilter::Any)
        ) {
            sql.candidates.push("alert_count > 0".to_owned());
        } else if filters.conflicted == Some(true) {
            sql.candidates.push("conflict_count > 0".to_owned());
        } else if let Some(kind) = filters.kind {
            // Refunds and chargebacks are rare: walking all rows for them would examine
            // dozens of rows per match.
            let kind = sql.bind(kind.name().to_owned());
            sql.candidates.push(format!("kind = {kind}"));
        }
        if let Some(from) = filters.from {
            let from = sql.bind(order_micros(from));
            sql.candidates.push(format!("occurred_at_us >= {from}"));
        }
        if let Some(to) = filters.to {
            let to = sql.bind(order_micros(to));
            sql.candidates.push(format!("occurred_at_us < {to}"));
        }
        if let Some(after) = after {
            let micros = sql.bind(after.micros);
            let id = sql.bind(after.transaction_id.clone());
            sql.candidates.push(format!(
                "(occurred_at_us, transaction_id) < ({micros}, {id})"
            ));
        }
        sql.candidate_values = sql.values.len();
        if let Some(kind) = filters.kind {
            let kind = sql.bind(kind.name().to_owned());
            sql.rest.push(format!("kind = {kind}"));
        }
        if let Some(currency) = &filters.currency {
            let currency = sql.bind(currency.clone());
            sql.rest.push(format!("currency = {currency}"));
        }
        if let Some(fingerprint) = &filters.payment_fingerprint {
            // Read from the stored record, without a column or index of its own: the filter
            // is for a card's recent transactions (an alert's window), bounded in time, and
            // the examination bound keeps a page's cost flat either way.
            let fingerprint = sql.bind(fingerprint.clone());
            sql.rest.push(format!(
                "json_extract(record, '$.transaction.payment_fingerprint') = {fingerprint}"
            ));
        }
        if let Some(min) = filters.min_amount {
            let min = sql.bind(amount_units(min, true));
            sql.rest.push(format!("amount_units >= {min}"));
        }
        if let Some(max) = filters.max_amount {
            let max = sql.bind(amount_units(max, false));
            sql.rest.push(format!("amount_units <= {max}"));
        }
        match filters.alert {
            Some(AlertFilter::None) => sql.rest.push("alert_count = 0".to_owned()),
            Some(AlertFilter::Pending) => sql.rest.push("alerts_pending > 0".to_owned()),
            Some(AlertFilter::Sent) => sql
                .rest
                .push("alert_count > 0 AND alerts_pending = 0".to_owned()),
            Some(AlertFilter::Any) | None => {}
        }
        match filters.conflicted {
            Some(true) => sql.rest.push("conflict_count > 0".to_owned()),
            Some(false) => sql.rest.push("conflict_count = 0".to_owned()),
            None => {}
        }
        sql
    }
}

const ORDER: &str = "ORDER BY occurred_at_us DESC, transaction_id DESC";

fn list_page(connection: &Connection, shop_id: &str, query: &ListQuery) -> rusqlite::Result<Page> {
    let mut sql = PageSql::build(shop_id, &query.filters, query.after.as_ref());
    let candidates = sql.candidates.join(" AND ");
    let rest = if sql.rest.is_empty() {
        "1".to_owned()
    } else {
        sql.rest.join(" AND ")
    };
    let examined = sql.bind(MAX_EXAMINED_PER_PAGE as i64);
    let wanted = sql.bind(query.limit as i64 + 1);
    let page_sql = format!(
        "SELECT {RECORD_COLUMNS} FROM (
             SELECT * FROM transactions WHERE {candidates} {ORDER} LIMIT {examined}
         ) WHERE {rest} {ORDER} LIMIT {wanted}"
    );
    let mut statement = connection.prepare_cached(&page_sql)?;
    let mut rows = statement.query(params_from_iter(sql.values.iter()))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(record_from_row(connection, row)?);
    }
    if records.len() > query.limit {
        records.truncate(query.limit);
        let next = records.last().map(Position::of);
        return Ok(Page { records, next });
    }
    // A short page: either the walk reached the end, or it stopped at its bound, and the next
    // page continues from the last row it examined.
    let boundary_sql = format!(
        "SELECT occurred_at_us, transaction_id FROM transactions WHERE {candidates} {ORDER}
          LIMIT 1 OFFSET {}",
        MAX_EXAMINED_PER_PAGE - 1
    );
    let boundary_values = &sql.values[..sql.candidate_values];
    let next = connection
        .prepare_cached(&boundary_sql)?
        .query_row(params_from_iter(boundary_values.iter()), |row| {
            Ok(Position {
                micros: row.get(0)?,
                transaction_id: row.get(1)?,
            })
        })
        .optional()?;
    Ok(Page { records, next })
}

fn record_conflict(
    connection: &Connection,
    key: (&str, &str),
    refused: &RefusedResend,
) -> rusqlite::Result<()> {
    let (shop_id, transaction_id) = key;
    let refused_at = refused.accepted_at.timestamp_micros();
    let first_time = connection
        .prepare_cached(
            "INSERT INTO conflicts (shop_id, transaction_id, request_id, refused_at_us)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            shop_id,
            transaction_id,
            refused.request_id,
            refused_at
        ])?;
    if first_time == 1 {
        // The latest refusal by the time the API accepted it, whatever order they arrive in.
        connection
            .prepare_cached(
                "UPDATE transactions SET conflict_count = conflict_count + 1,
                        last_conflict_request_id = CASE
                            WHEN last_conflict_at_us IS NULL OR last_conflict_at_us <= ?4 THEN ?3
                            ELSE last_conflict_request_id END,
                        last_conflict_at_us = max(coalesce(last_conflict_at_us, ?4), ?4)
                  WHERE shop_id = ?1 AND transaction_id = ?2",
            )?
            .execute(params![
                shop_id,
                transaction_id,
                refused.request_id,
                refused_at
            ])?;
    }
    Ok(())
}

#[async_trait]
impl RecordReader for SqliteStore {
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

    async fn list(&self, shop_id: &ShopId, query: &ListQuery) -> Result<Page, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let query = query.clone();
        self.db
            .read(move |connection| list_page(connection, &shop_id, &query))
            .await
    }
}

#[async_trait]
impl ListMembership for SqliteStore {
    async fn listed(
        &self,
        shop_id: &ShopId,
        lookups: &[ListLookup],
    ) -> Result<Vec<bool>, PortError> {
        let (shop_id, lookups) = (shop_id.as_str().to_owned(), lookups.to_vec());
        self.db
            .read(move |connection| lists::listed(connection, &shop_id, &lookups))
            .await
    }
}

#[async_trait]
impl ListAdmin for SqliteStore {
    async fn add_to_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let key = (
            shop_id.as_str().to_owned(),
            list.to_owned(),
            value.to_owned(),
        );
        let at = at.timestamp_micros();
        self.db
            .write(move |connection| lists::add(connection, (&key.0, &key.1, &key.2), at))
            .await
    }

    async fn remove_from_list(
        &self,
        shop_id: &ShopId,
        list: &str,
        value: &str,
    ) -> Result<(), PortError> {
        let key = (
            shop_id.as_str().to_owned(),
            list.to_owned(),
            value.to_owned(),
        );
        self.db
            .write(move |connection| lists::remove(connection, (&key.0, &key.1, &key.2)))
            .await
    }

    async fn list_items(
        &self,
        shop_id: &ShopId,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListItems, PortError> {
        let key = (shop_id.as_str().to_owned(), list.to_owned());
        let after = after.map(str::to_owned);
        self.db
            .read(move |connection| {
                lists::page(connection, (&key.0, &key.1), after.as_deref(), limit)
            })
            .await
    }
}

#[async_trait]
impl History for SqliteStore {
    async fn history(
        &self,
        shop_id: &ShopId,
        period: Period,
        bound: HistoryBound,
    ) -> Result<HistoryRead, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        self.db
            .read(move |connection| history::read(connection, &shop_id, period, bound))
            .await
    }

    async fn shops(&self) -> Result<Vec<ShopId>, PortError> {
        let names: Vec<String> = self
            .db
            .read(|connection| {
                connection
                    .prepare_cached("SELECT DISTINCT shop_id FROM transactions ORDER BY shop_id")?
                    .query_map([], |row| row.get(0))?
                    .collect()
            })
            .await?;
        Ok(names
            .iter()
            .filter_map(|name| ShopId::parse(name).ok())
            .collect())
    }
}

#[async_trait]
impl RecordWriter for SqliteStore {
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

    async fn record_conflict(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        refused: &RefusedResend,
    ) -> Result<(), PortError> {
        let key = (shop_id.as_str().to_owned(), transaction_id.to_owned());
        let refused = refused.clone();
        self.db
            .write(move |connection| record_conflict(connection, (&key.0, &key.1), &refused))
            .await
    }
}

#[async_trait]
impl AlertLedger for SqliteStore {
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
                let changed = connection
                    .prepare_cached(
                        "UPDATE alert_progress
                            SET state = 'sent', sent_at = ?4, claim_owner = NULL, claim_until_ms = NULL
                          WHERE shop_id = ?1 AND transaction_id = ?2 AND rule = ?3 AND state = 'pending'",
                    )?
                    .execute(params![shop_id, transaction_id, rule, sent_at])?;
                if changed == 1 {
                    connection
                        .prepare_cached(
                            "UPDATE transactions SET alerts_pending = alerts_pending - 1
                              WHERE shop_id = ?1 AND transaction_id = ?2",
                        )?
                        .execute(params![shop_id, transaction_id])?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl AlertInbox for SqliteStore {
    async fn list_alerts(
        &self,
        shop_id: &ShopId,
        query: &AlertListQuery,
    ) -> Result<AlertPage, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let query = query.clone();
        self.db
            .read(move |connection| {
                inbox::list_alerts(connection, &shop_id, &query, |connection, id| {
                    select_record(connection, &shop_id, id)
                })
            })
            .await
    }

    async fn get_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
    ) -> Result<Option<InboxAlert>, PortError> {
        let (shop_id, alert_id) = (shop_id.as_str().to_owned(), alert_id.to_owned());
        self.db
            .read(move |connection| {
                inbox::get_alert(connection, &shop_id, &alert_id, |connection, id| {
                    select_record(connection, &shop_id, id)
                })
            })
            .await
    }

    async fn review_alert(
        &self,
        shop_id: &ShopId,
        alert_id: &str,
        based_on: u64,
        review: &Review,
    ) -> Result<ReviewOutcome, PortError> {
        let (shop_id, alert_id) = (shop_id.as_str().to_owned(), alert_id.to_owned());
        let review = review.clone();
        self.db
            .write(move |connection| {
                inbox::review_alert(
                    connection,
                    &shop_id,
                    &alert_id,
                    based_on,
                    &review,
                    |connection, id| select_record(connection, &shop_id, id),
                )
            })
            .await
    }
}

#[async_trait]
impl WebhookRegistry for SqliteStore {
    async fn add_webhook(&self, webhook: &Webhook, most: usize) -> Result<bool, PortError> {
        let webhook = webhook.clone();
        self.db
            .write(move |connection| webhooks::add(connection, &webhook, most))
            .await
    }

    async fn webhooks(&self, shop_id: &ShopId) -> Result<Vec<Webhook>, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        self.db
            .read(move |connection| webhooks::of_shop(connection, &shop_id))
            .await
    }

    async fn webhook(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
    ) -> Result<Option<Webhook>, PortError> {
        let (shop_id, webhook_id) = (shop_id.as_str().to_owned(), webhook_id.to_owned());
        self.db
            .read(move |connection| webhooks::one(connection, &shop_id, &webhook_id))
            .await
    }

    async fn remove_webhook(&self, shop_id: &ShopId, webhook_id: &str) -> Result<bool, PortError> {
        let (shop_id, webhook_id) = (shop_id.as_str().to_owned(), webhook_id.to_owned());
        self.db
            .write(move |connection| webhooks::remove(connection, &shop_id, &webhook_id))
            .await
    }

    async fn rotate_secret(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        secret: &str,
        old_until: DateTime<Utc>,
    ) -> Result<Option<Webhook>, PortError> {
        let (shop_id, webhook_id) = (shop_id.as_str().to_owned(), webhook_id.to_owned());
        let secret = secret.to_owned();
        self.db
            .write(move |connection| {
                webhooks::rotate(connection, &shop_id, &webhook_id, &secret, old_until)
            })
            .await
    }

    async fn deliveries(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<DeliveriesPage, PortError> {
        let (shop_id, webhook_id) = (shop_id.as_str().to_owned(), webhook_id.to_owned());
        let after = after.map(str::to_owned);
        self.db
            .read(move |connection| {
                webhooks::deliveries(connection, &shop_id, &webhook_id, limit, after.as_deref())
            })
            .await
    }
}

/// The embedded store opens the inbox items of earlier alerts itself, at its first start.
#[async_trait]
impl InboxBackfill for SqliteStore {
    async fn open_earlier_alerts(&self) -> Result<BackfillReport, PortError> {
        Ok(BackfillReport::default())
    }
}

#[async_trait]
impl WebhookOutbox for SqliteStore {
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        take: Take<'_>,
    ) -> Result<Vec<DueDelivery>, PortError> {
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let in_flight = take.in_flight.clone();
        let (limit, per_webhook) = (take.limit, take.per_webhook);
        self.db
            .write(move |connection| {
                let take = Take {
                    limit,
                    per_webhook,
                    in_flight: &in_flight,
                };
                webhooks::due(connection, now, lease_until, take)
            })
            .await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, PortError> {
        self.db
            .write(move |connection| webhooks::prune(connection, before))
            .await
    }

    async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &DeliveryAttempt,
        outcome: AttemptOutcome,
    ) -> Result<(), PortError> {
        let (delivery_id, attempt) = (delivery_id.to_owned(), attempt.clone());
        self.db
            .write(move |connection| {
                webhooks::record_attempt(connection, &delivery_id, &attempt, outcome)
            })
            .await
    }
}

#[async_trait]
impl WindowCounters for SqliteStore {
    async fn count_once(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
    ) -> Result<(), PortError> {
        // Through the cache, which must see every count this connection makes.
        self.count_then_total(shop_id, transaction_id, remember_until, contributions, &[])
            .await
            .map(drop)
    }

    async fn count_then_total(
        &self,
        shop_id: &ShopId,
        transaction_id: &str,
        remember_until: DateTime<Utc>,
        contributions: &[Contribution],
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError> {
        let key = (shop_id.as_str().to_owned(), transaction_id.to_owned());
        let (contributions, windows) = (contributions.to_vec(), windows.to_vec());
        let purge = self
            .counted
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(counters::PURGE_EVERY);
        let remember_until = remember_until.timestamp();
        let (cache, failed_commits) = (self.windows.clone(), self.db.failed_commits());
        self.db
            .write(move |connection| {
                let mut cache = cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let totals = cache.count_then_total(
                    connection,
                    failed_commits.load(Ordering::SeqCst),
                    (&key.0, &key.1),
                    remember_until,
                    &contributions,
                    &windows,
                )?;
                if purge {
                    counters::purge_expired(connection, Utc::now().timestamp())?;
                }
                Ok(totals)
            })
            .await
    }

    async fn window_totals(
        &self,
        shop_id: &ShopId,
        windows: &[WindowQuery],
    ) -> Result<Vec<WindowTotal>, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        let windows = windows.to_vec();
        self.db
            .read(move |connection| counters::window_totals(connection, &shop_id, &windows))
            .await
    }
}
