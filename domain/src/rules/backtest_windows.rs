//! The windowed rules' part of a replay: each rule's windows counted in memory, in the order
//! the processor counted, and read back as the processor reads them.
//!
//! A windowed rule's counters are its own (the processor keys them by rule), so the rules are
//! replayed in groups, which a caller may run side by side; only the totals over a limit are
//! kept.
//! Nothing here allocates for a key it has seen: counters are keyed by references into the
//! records.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::super::{RuleSet, WindowTotal, WindowedPart};
use crate::record::TransactionRecord;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One windowed rule over its limit on one transaction of the replay.
pub struct WindowHit {
    /// The transaction's place in the replay's order.
    pub(super) record: usize,
    /// The rule's index in its set.
    pub(super) rule: usize,
    pub(super) total: WindowTotal,
}

/// Some windowed rules replayed over every transaction: rules share no counters, so a caller
/// with threads runs the jobs side by side (the domain starts none).
pub struct WindowJob<'r> {
    rules: &'r RuleSet,
    /// The rules' indices in their set.
    pub(super) group: Vec<usize>,
    order: &'r [&'r TransactionRecord],
}

/// The windowed rules in `jobs` groups (fewer if there are fewer rules), over the replay's
/// order. A job reads every record once, whatever its number of rules, so a job per core
/// beats a job per rule.
pub(super) fn jobs<'r>(
    rules: &'r RuleSet,
    order: &'r [&'r TransactionRecord],
    jobs: usize,
) -> Vec<WindowJob<'r>> {
    let windowed: Vec<usize> = (0..rules.rules().len())
        .filter(|&rule| rules.rules()[rule].is_windowed())
        .collect();
    let jobs = jobs.clamp(1, windowed.len().max(1));
    (0..jobs)
        .map(|job| WindowJob {
            rules,
            group: windowed.iter().copied().skip(job).step_by(jobs).collect(),
            order,
        })
        .filter(|job| !job.group.is_empty())
        .collect()
}

/// The jobs' hits, in the replay's order (then the rules').
pub(super) fn merged(hits: Vec<Vec<WindowHit>>) -> Vec<WindowHit> {
    let mut hits: Vec<WindowHit> = hits.into_iter().flatten().collect();
    hits.sort_unstable_by_key(|hit| (hit.record, hit.rule));
    hits
}

struct Bucket<'r> {
    start: i64,
    count: u64,
    sum: Decimal,
    members: BTreeSet<&'r str>,
    expires_at: DateTime<Utc>,
}

/// A key with more buckets than this drops the expired ones: they are in no window any more
/// (a window reads only its own buckets), and a key seen for months would keep them all.
const PRUNE_ABOVE_BUCKETS: usize = 16;

impl WindowJob<'_> {
    /// Counts the group's windows in memory, as the processor counted them, and keeps the
    /// totals over their rule's limit.
    pub fn run(self) -> Vec<WindowHit> {
        let rules = self.rules;
        // Per rule of the group, its windows by shop, then key: the shops are few and their
        // map stays in cache; a (shop, key) pair would compare two strings of an older record.
        let mut windows: Vec<Map<&str, Map<&str, Vec<Bucket<'_>>>>> =
            self.group.iter().map(|_| Map::default()).collect();
        let mut hits = Vec::new();
        for (index, record) in self.order.iter().enumerate() {
            let (transaction, now) = (&record.transaction, record.processed_at);
            // A late transaction is neither counted nor judged on its windows, as in the
            // processor.
            if rules.is_late(transaction, now) {
                continue;
            }
            let shop = record.shop_id.as_str();
            for (&rule, windows) in self.group.iter().zip(&mut windows) {
                let Some(part) = rules.windowed_part(rule, transaction, shop) else {
                    continue;
                };
                let buckets = windows
                    .entry(shop)
                    .or_default()
                    .entry(part.key)
                    .or_default();
                let total = count_then_total(buckets, &part, now);
                if rules.rules()[rule].window_decision(&total).is_some() {
                    hits.push(WindowHit {
                        record: index,
                        rule,
                        total,
                    });
                }
            }
        }
        hits
    }
}

/// Counts the transaction's part, then reads its window: the processor's "count every rule,
/// then read every window", as rules never share counters.
fn count_then_total<'r>(
    buckets: &mut Vec<Bucket<'r>>,
    part: &WindowedPart<'r>,
    now: DateTime<Utc>,
) -> WindowTotal {
    if buckets.len() > PRUNE_ABOVE_BUCKETS {
        buckets.retain(|bucket| bucket.expires_at > now);
    }
    let at = buckets.partition_point(|bucket| bucket.start < part.bucket);
    if buckets
        .get(at)
        .is_none_or(|bucket| bucket.start != part.bucket)
    {
        let bucket = Bucket {
            start: part.bucket,
            count: 0,
            sum: Decimal::ZERO,
            members: BTreeSet::new(),
            expires_at: part.expires_at,
        };
        buckets.insert(at, bucket);
    }
    let bucket = &mut buckets[at];
    bucket.count += 1;
    bucket.sum += part.amount;
    if let Some(member) = part.member {
        bucket.members.insert(member);
    }
    let first = part.window.first_bucket_ending_at(part.bucket);
    let mut window = WindowTotal::default();
    for bucket in buckets
        .iter()
        .filter(|b| (first..=part.bucket).contains(&b.start))
    {
        window.count += bucket.count;
        window.sum += bucket.sum;
        window
            .members
            .extend(bucket.members.iter().map(|member| (*member).to_owned()));
    }
    window
}
