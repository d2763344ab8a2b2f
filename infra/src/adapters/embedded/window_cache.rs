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
//! - it grew past `CEILING_BYTES`.
//!
//! The ceiling bounds memory whatever the number of distinct cards or customers: at it, the
//! cache starts again empty and reloads each entry from the tables when next needed, so counts
//! stay exact and only the next few counts of each key cost a read again.

use rusqlite::{Connection, params, params_from_iter};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap};

use super::counters::decimal;
use crate::domain::rules::{Contribution, WindowQuery, WindowTotal};

/// The heap the cache may hold, as `Entry::bytes` estimates it (within a few percent of what
/// the allocator gives, see the tests); past this it starts again empty.
pub const CEILING_BYTES: usize = 64 * 1024 * 1024;

/// An entry larger than this (a customer with thousands of distinct cards in a window) is read
/// from the tables for each job that needs it and not kept: held, it would keep the cache at its
/// ceiling, and every job would start the cache again.
const MAX_ENTRY_BYTES: usize = CEILING_BYTES / 64;

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

/// A key's buckets, oldest first. A vector, not a map: a key has a handful of buckets, and a
/// map's node would take about 700 bytes for one.
#[derive(Debug, Default)]
struct Entry {
    buckets: Vec<(i64, Bucket)>,
}

/// What the allocator adds to each allocation, and a hash map to each slot, in the estimate.
const ALLOCATION_OVERHEAD: usize = 16;
const MAP_SLOT_OVERHEAD: usize = 8;
/// A distinct rule's member in a `BTreeSet`: its share of a node besides the string.
const MEMBER_OVERHEAD: usize = 40;

impl Entry {
    fn bucket(&self, id: i64) -> Option<&Bucket> {
        let at = self.buckets.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(&self.buckets[at].1)
    }

    fn bucket_mut(&mut self, id: i64) -> &mut Bucket {
        let at = match self.buckets.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => at,
            Err(at) => {
                self.buckets.insert(at, (id, Bucket::default()));
                at
            }
        };
        &mut self.buckets[at].1
    }

    /// The heap this entry holds under `key`, with the map's slot.
    fn bytes(&self, (shop, rule, key): &EntryKey) -> usize {
        let strings = [shop, rule, key]
            .iter()
            .map(|text| text.capacity() + ALLOCATION_OVERHEAD)
            .sum::<usize>();
        let buckets = self.buckets.capacity() * size_of::<(i64, Bucket)>() + ALLOCATION_OVERHEAD;
        let members = self
            .buckets
            .iter()
            .flat_map(|(_, bucket)| &bucket.members)
            .map(|member| size_of::<String>() + member.capacity() + MEMBER_OVERHEAD)
            .sum::<usize>();
        size_of::<(EntryKey, Entry)>() + MAP_SLOT_OVERHEAD + strings + buckets + members
    }
}

#[derive(Debug, Default)]
pub struct WindowCache {
    entries: HashMap<EntryKey, Entry>,
    /// The estimate of the heap `entries` holds (`Entry::bytes` summed).
    bytes: usize,
    /// Entries over `MAX_ENTRY_BYTES`, let go once the job that needed them is done.
    oversized: Vec<EntryKey>,
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
                self.update(shop_id, (&counter.rule, &counter.key), |entry| {
                    *entry.bucket_mut(counter.bucket) = bucket;
                    if entry.buckets.len() > PRUNE_ABOVE_BUCKETS {
                        entry.buckets.retain(|(_, bucket)| bucket.expires_at >= now);
                    }
                });
            }
        }
        let totals = windows
            .iter()
            .map(|window| self.total(shop_id, window))
            .collect();
        self.let_go_of_oversized();
        Ok(totals)
    }

    fn let_go_of_oversized(&mut self) {
        for key in std::mem::take(&mut self.oversized) {
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes = self.bytes.saturating_sub(entry.bytes(&key));
            }
        }
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
        if self.seen != Some(now) || self.bytes > CEILING_BYTES {
            // A new map, not `clear`: the old one's table is given back too.
            self.entries = HashMap::new();
            self.bytes = 0;
            self.oversized.clear();
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
            let bucket = entry.bucket_mut(row.get(0)?);
            bucket.count = row.get::<_, i64>(1)?.max(0) as u64;
            bucket.sum = decimal(Some(&row.get::<_, String>(2)?))?;
            bucket.expires_at = row.get(3)?;
        }
        if !with_members {
            self.insert(entry_key, entry);
            return Ok(());
        }
        let mut members = connection.prepare_cached(
            "SELECT bucket, member FROM counter_members
              WHERE shop_id = ?1 AND rule = ?2 AND key = ?3",
        )?;
        let mut rows = members.query(params![shop_id, rule, key])?;
        while let Some(row) = rows.next()? {
            entry.bucket_mut(row.get(0)?).members.insert(row.get(1)?);
        }
        self.insert(entry_key, entry);
        Ok(())
    }

    fn insert(&mut self, key: EntryKey, entry: Entry) {
        let size = entry.bytes(&key);
        self.bytes += size;
        if size > MAX_ENTRY_BYTES {
            self.oversized.push(key.clone());
        }
        self.entries.insert(key, entry);
    }

    /// Changes an entry (made empty if missing), keeping the estimate of the heap in step.
    fn update(
        &mut self,
        shop_id: &str,
        (rule, key): (&str, &str),
        change: impl FnOnce(&mut Entry),
    ) {
        let entry_key = (shop_id.to_owned(), rule.to_owned(), key.to_owned());
        match self.entries.get_mut(&entry_key) {
            Some(entry) => {
                let before = entry.bytes(&entry_key);
                change(entry);
                let after = entry.bytes(&entry_key);
                self.bytes = (self.bytes + after).saturating_sub(before);
                if after > MAX_ENTRY_BYTES {
                    self.oversized.push(entry_key);
                }
            }
            None => {
                let mut entry = Entry::default();
                change(&mut entry);
                self.insert(entry_key, entry);
            }
        }
    }

    /// Each contribution's bucket as it will be with the contribution added.
    fn added(&self, shop_id: &str, contributions: &[Contribution]) -> Vec<Added> {
        contributions
            .iter()
            .map(|contribution| {
                let counter = &contribution.counter;
                let entry_key = (
                    shop_id.to_owned(),
                    counter.rule.clone(),
                    counter.key.clone(),
                );
                let mut bucket = self
                    .entries
                    .get(&entry_key)
                    .and_then(|entry| entry.bucket(counter.bucket))
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
            let in_window = |(id, _): &&(i64, Bucket)| (*first..=*last).contains(id);
            for (_, bucket) in entry.buckets.iter().filter(in_window) {
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
    use crate::heap_probe;

    fn count(
        cache: &mut WindowCache,
        connection: &Connection,
        failed_commits: u64,
        id: &str,
    ) -> u64 {
        count_key(cache, connection, failed_commits, id, "k")
    }

    /// Counts transaction `id` on `key` of rule `r`; the count of `key`'s window after it.
    fn count_key(
        cache: &mut WindowCache,
        connection: &Connection,
        failed_commits: u64,
        id: &str,
        key: &str,
    ) -> u64 {
        let expires_at = Utc.timestamp_opt(4_000_000_000, 0).single().expect("time");
        let contribution = Contribution {
            counter: CounterId {
                rule: "r".to_owned(),
                key: key.to_owned(),
                bucket: 60,
            },
            amount: Decimal::ONE,
            member: None,
            expires_at,
        };
        let window = WindowQuery {
            rule: "r".to_owned(),
            key: key.to_owned(),
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

    /// A million distinct cards (a payment fingerprint each): the heap the cache holds stays
    /// under its ceiling, and counts stay exact across the fresh starts the ceiling causes.
    #[test]
    fn a_million_distinct_keys_stay_under_the_memory_ceiling() {
        let connection = Connection::open_in_memory().expect("open");
        connection.execute_batch(SCHEMA).expect("schema");
        connection.execute_batch("BEGIN").expect("begin");
        let mut cache = WindowCache::default();
        let fingerprint = |i: u64| format!("{i:064x}");
        let before = heap_probe::live_bytes();
        let mut peak = 0;
        for i in 0..1_000_000 {
            let id = format!("t{i}");
            assert_eq!(
                count_key(&mut cache, &connection, 0, &id, &fingerprint(i)),
                1
            );
            if i % 1_000 == 0 {
                peak = peak.max(heap_probe::live_bytes() - before);
            }
        }
        println!(
            "1,000,000 distinct keys: peak heap {:.1} MiB (ceiling {} MiB), {} entries held at the end",
            peak as f64 / 1048576.0,
            CEILING_BYTES / 1048576,
            cache.entries.len()
        );
        assert!(
            peak as usize <= CEILING_BYTES + CEILING_BYTES / 10,
            "peak heap {peak} bytes against a ceiling of {CEILING_BYTES}"
        );
        // The first key left the cache long ago: its count is read back from its row.
        let again = count_key(&mut cache, &connection, 0, "t-again", &fingerprint(0));
        assert_eq!(again, 2);
    }

    /// A key with thousands of distinct members is used for its job and let go, so that it
    /// cannot hold the cache at its ceiling.
    #[test]
    fn an_oversized_entry_is_not_kept_after_its_job() {
        let connection = Connection::open_in_memory().expect("open");
        connection.execute_batch(SCHEMA).expect("schema");
        let mut cache = WindowCache::default();
        assert_eq!(count_key(&mut cache, &connection, 0, "t0", "small"), 1);
        let small = cache.bytes;
        let mut entry = Entry::default();
        entry.bucket_mut(60).members = (0..20_000).map(|i| format!("{i:064x}")).collect();
        let key = ("shop".to_owned(), "r".to_owned(), "crowded".to_owned());
        cache.insert(key.clone(), entry);
        assert!(cache.bytes > small + MAX_ENTRY_BYTES);
        assert_eq!(count_key(&mut cache, &connection, 0, "t1", "small"), 2);
        assert!(!cache.entries.contains_key(&key));
        assert_eq!(cache.bytes, small, "the estimate is back to what is held");
    }
}
