//! The windowed rules' counters, held in memory beside their tables, so that counting a
//! transaction and reading its windows costs one marker insert and one counter upsert instead of
//! a read and a write per rule and two range reads per window (BENCHMARKS.md, "Alert rules").
//!
//! The tables stay the truth: an entry (one shop, rule and key, with its buckets) is loaded from
//! them the first time it is needed, and every change is written to them in the same job, in
//! the writer's transaction. The cache is only used on the writer thread, and forgets
//! everything when it may no longer match the tables:
//! - another connection committed to the file (`PRAGMA data_version` moved: a second process
//!   or a second store on the same file);
//! - a group commit failed, which undid writes whose effect the cache holds;
//! - it grew past `MAX_ENTRIES`.

use rusqlite::{Connection, params, params_from_iter};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::counters::decimal;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};

/// Entries (shop, rule, key) kept at most; past this the cache starts again empty.
const MAX_ENTRIES: usize = 200_000;

type EntryKey = (String, String, String);

#[derive(Debug, Clone, Default)]
struct Bucket {
    count: u64,
    sum: Decimal,
    members: BTreeSet<String>,
    expires_at: i64,
}

/// An entry with more buckets than this drops its expired ones when it next grows.
const PRUNE_ABOVE_BUCKETS: usize = 32;

#[derive(Debug, Default)]
struct Entry {
    buckets: BTreeMap<i64, Bucket>,
}

#[derive(Debug, Default)]
pub struct WindowCache {
    entries: HashMap<EntryKey, Entry>,
    /// `PRAGMA data_version` and the failed-commit count when the entries were last known good.
    seen: Option<(i64, u64)>,
}

impl WindowCache {
    /// Counts the transaction unless it was counted before, then reads its windows: the
    /// embedded `count_once` and `window_totals` in one writer job. Runs inside the writer's
    /// transaction; `failed_commits` is the database's count of failed group commits.
    pub fn count_then_total(
        &mut self,
        connection: &Connection,
        failed_commits: u64,
        (shop_id, transaction_id): (&str, &str),
        remember_until: i64,
        contributions: &[Contribution],
        windows: &[WindowQuery],
    ) -> rusqlite::Result<Vec<WindowTotal>> {
        self.forget_if_stale(connection, failed_commits)?;
        // A window without a contribution (a count made elsewhere) may be a distinct rule's.
        let keys = contributions
            .iter()
            .map(|c| {
                (
                    c.counter.rule.as_str(),
                    c.counter.key.as_str(),
                    c.member.is_some(),
                )
            })
            .chain(
                windows
                    .iter()
                    .map(|w| (w.rule.as_str(), w.key.as_str(), true)),
            );
        for (rule, key, with_members) in keys {
            self.load(connection, shop_id, (rule, key), with_members)?;
        }
        let marked = connection
            .prepare_cached(
                "INSERT INTO counted (shop_id, transaction_id, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![shop_id, transaction_id, remember_until])?;
        if marked == 1 && !contributions.is_empty() {
            let added = self.added(shop_id, contributions);
            write(connection, shop_id, contributions, &added)?;
            // Only once the rows are written: a failed job leaves the cache as the tables are.
            let now = chrono::Utc::now().timestamp();
            for (contribution, Added { bucket, .. }) in contributions.iter().zip(added) {
                let counter = &contribution.counter;
                let entry = self.entry_mut(shop_id, &counter.rule, &counter.key);
                entry.buckets.insert(counter.bucket, bucket);
                if entry.buckets.len() > PRUNE_ABOVE_BUCKETS {
                    entry.buckets.retain(|_, bucket| bucket.expires_at >= now);
                }
            }
        }
        Ok(windows
            .iter()
            .map(|window| self.total(shop_id, window))
            .collect())
    }

    fn forget_if_stale(
        &mut self,
        connection: &Connection,
        failed_commits: u64,
    ) -> rusqlite::Result<()> {
        let version: i64 = connection
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        let now = (version, failed_commits);
        if self.seen != Some(now) || self.entries.len() > MAX_ENTRIES {
            self.entries.clear();
            self.seen = Some(now);
        }
        Ok(())
    }

    /// Reads an entry from the tables unless it is cached. Only a distinct rule has members:
    /// the others need not look for them.
    fn load(
        &mut self,
        connection: &Connection,
        shop_id: &str,
        (rule, key): (&str, &str),
        with_members: bool,
    ) -> rusqlite::Result<()> {
        let entry_key = (shop_id.to_owned(), rule.to_owned(), key.to_owned());
        if self.entries.contains_key(&entry_key) {
            return Ok(());
        }
        let mut entry = Entry::default();
        let mut counters = connection.prepare_cached(
            "SELECT bucket, count, sum, expires_at FROM counters
              WHERE shop_id = ?1 AND rule = ?2 AND key = ?3",
        )?;
        let mut rows = counters.query(params![shop_id, rule, key])?;
        while let Some(row) = rows.next()? {
            let bucket = entry.buckets.entry(row.get(0)?).or_default();
            bucket.count = row.get::<_, i64>(1)?.max(0) as u64;
            bucket.sum = decimal(Some(&row.get::<_, String>(2)?))?;
            bucket.expires_at = row.get(3)?;
        }
        if !with_members {
            self.entries.insert(entry_key, entry);
            return Ok(());
        }
        let mut members = connection.prepare_cached(
            "SELECT bucket, member FROM counter_members
              WHERE shop_id = ?1 AND rule = ?2 AND key = ?3",
        )?;
        let mut rows = members.query(params![shop_id, rule, key])?;
        while let Some(row) = rows.next()? {
            let bucket = entry.buckets.entry(row.get(0)?).or_default();
            bucket.members.insert(row.get(1)?);
        }
        self.entries.insert(entry_key, entry);
        Ok(())
    }

    fn entry_mut(&mut self, shop_id: &str, rule: &str, key: &str) -> &mut Entry {
        self.entries
            .entry((shop_id.to_owned(), rule.to_owned(), key.to_owned()))
            .or_default()
    }

    /// Each contribution's bucket as it will be with the contribution added.
    fn added(&mut self, shop_id: &str, contributions: &[Contribution]) -> Vec<Added> {
        contributions
            .iter()
            .map(|contribution| {
                let counter = &contribution.counter;
                let entry = self.entry_mut(shop_id, &counter.rule, &counter.key);
                let mut bucket = entry
                    .buckets
                    .get(&counter.bucket)
                    .cloned()
                    .unwrap_or_default();
                bucket.count += 1;
                bucket.sum += contribution.amount;
                bucket.expires_at = contribution.expires_at.timestamp();
                let new_member = match &contribution.member {
                    Some(member) => bucket.members.insert(member.clone()),
                    None => false,
                };
                Added { bucket, new_member }
            })
            .collect()
    }

    fn total(&self, shop_id: &str, window: &WindowQuery) -> WindowTotal {
        let mut total = WindowTotal::default();
        let (Some(first), Some(last)) = (window.buckets.first(), window.buckets.last()) else {
            return total;
        };
        let entry_key = (shop_id.to_owned(), window.rule.clone(), window.key.clone());
        if let Some(entry) = self.entries.get(&entry_key) {
            for bucket in entry
                .buckets
                .range(*first..=*last)
                .map(|(_, bucket)| bucket)
            {
                total.count += bucket.count;
                total.sum += bucket.sum;
                total.members.extend(bucket.members.iter().cloned());
            }
        }
        total
    }
}

/// A contribution's bucket with the contribution added, and whether its member (for a distinct
/// rule) is one the bucket did not hold yet.
struct Added {
    bucket: Bucket,
    new_member: bool,
}

/// The new values of the contributions' counters, in one statement, and their new members.
fn write(
    connection: &Connection,
    shop_id: &str,
    contributions: &[Contribution],
    added: &[Added],
) -> rusqlite::Result<()> {
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; contributions.len()].join(", ");
    let sql = format!(
        "INSERT INTO counters (shop_id, rule, key, bucket, count, sum, expires_at) VALUES {rows}
         ON CONFLICT (shop_id, rule, key, bucket)
         DO UPDATE SET count = excluded.count, sum = excluded.sum"
    );
    let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(7 * contributions.len());
    for (contribution, Added { bucket, .. }) in contributions.iter().zip(added) {
        let counter = &contribution.counter;
        values.extend([
            shop_id.to_owned().into(),
            counter.rule.clone().into(),
            counter.key.clone().into(),
            counter.bucket.into(),
            (bucket.count as i64).into(),
            bucket.sum.to_string().into(),
            contribution.expires_at.timestamp().into(),
        ]);
    }
    connection
        .prepare_cached(&sql)?
        .execute(params_from_iter(values))?;
    for (contribution, _) in contributions
        .iter()
        .zip(added)
        .filter(|(_, a)| a.new_member)
    {
        if let Some(member) = &contribution.member {
            let counter = &contribution.counter;
            connection
                .prepare_cached(
                    "INSERT INTO counter_members (shop_id, rule, key, bucket, member, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    shop_id,
                    counter.rule,
                    counter.key,
                    counter.bucket,
                    member,
                    contribution.expires_at.timestamp()
                ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::adapters::embedded::counters::SCHEMA;
    use crate::domain::rules::CounterId;

    fn count(
        cache: &mut WindowCache,
        connection: &Connection,
        failed_commits: u64,
        id: &str,
    ) -> u64 {
        let expires_at = Utc.timestamp_opt(4_000_000_000, 0).single().expect("time");
        let contribution = Contribution {
            counter: CounterId {
                rule: "r".to_owned(),
                key: "k".to_owned(),
                bucket: 60,
            },
            amount: Decimal::ONE,
            member: None,
            expires_at,
        };
        let window = WindowQuery {
            rule: "r".to_owned(),
            key: "k".to_owned(),
            buckets: vec![0, 60],
        };
        let totals = cache
            .count_then_total(
                connection,
                failed_commits,
                ("shop", id),
                expires_at.timestamp(),
                &[contribution],
                &[window],
            )
            .expect("count");
        totals[0].count
    }

    fn open(path: &std::path::Path) -> Connection {
        let connection = Connection::open(path).expect("open");
        connection.execute_batch(SCHEMA).expect("schema");
        connection
    }

    #[test]
    fn a_failed_commit_makes_the_cache_forget_what_it_undid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let connection = open(&dir.path().join("store.db"));
        let mut cache = WindowCache::default();
        assert_eq!(count(&mut cache, &connection, 0, "t1"), 1);
        connection.execute_batch("BEGIN").expect("begin");
        assert_eq!(count(&mut cache, &connection, 0, "t2"), 2);
        connection.execute_batch("ROLLBACK").expect("rollback");
        // The writer counted the failed commit: t2 is gone from the table, and so from the
        // cache; counted again, it is counted once.
        assert_eq!(count(&mut cache, &connection, 1, "t3"), 2);
        assert_eq!(count(&mut cache, &connection, 1, "t2"), 3);
    }

    #[test]
    fn counts_made_through_another_connection_are_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let (first, second) = (open(&path), open(&path));
        let (mut first_cache, mut second_cache) = (WindowCache::default(), WindowCache::default());
        assert_eq!(count(&mut first_cache, &first, 0, "t1"), 1);
        assert_eq!(count(&mut second_cache, &second, 0, "t2"), 2);
        assert_eq!(count(&mut first_cache, &first, 0, "t3"), 3);
        // A redelivery through either connection adds nothing.
        assert_eq!(count(&mut second_cache, &second, 0, "t1"), 3);
        assert_eq!(count(&mut first_cache, &first, 0, "t2"), 3);
    }
}
