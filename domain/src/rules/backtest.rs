//! Backtests: a candidate rule set replayed over stored transactions, in memory, judged as the
//! processor judges. Nothing is written, published or counted anywhere but here.
//!
//! The processor decides each transaction at its `processed_at`, after counting it: a
//! transaction's windows hold every transaction counted before it. The replay therefore goes in
//! `processed_at` order (the order the embedded store counted in, see the processor's decision
//! clock), counts each transaction unless it was late at its `processed_at`, and reads its
//! windows from counters held here. Over the rules in force, it reproduces the stored alerts.
//!
//! The history read goes past the period on both sides by the longest window, so that the
//! windows of the period's first and last transactions are as full as the processor's were; the
//! transactions outside the period are counted but not reported.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Decisions, RuleKind, RuleSet, WindowTotal};
use crate::alert::Action;
use crate::inbox::Verdict;
use crate::lists::ListLookup;
use crate::names::Named;
use crate::record::TransactionRecord;

/// Transaction ids shown per rule as examples.
const EXAMPLES_PER_RULE: usize = 5;
/// Changed alerts shown in each direction of the diff.
const EXAMPLES_PER_DIFF: usize = 20;

/// The period a backtest reports on: transactions whose `timestamp` is in `[from, to)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    fn contains(&self, timestamp: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| timestamp >= from) && self.to.is_none_or(|to| timestamp < to)
    }
}

/// What a backtest found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BacktestReport {
    /// The version of the candidate rule set.
    pub rules_version: String,
    #[serde(flatten)]
    pub period: Period,
    /// Transactions of the period replayed.
    pub transactions: u64,
    /// Transactions read, with those around the period that fill its windows.
    pub read: u64,
    pub rules: Vec<RuleResult>,
    /// How many of the period's transactions each decision would have had.
    pub decisions: BTreeMap<&'static str, u64>,
    /// How many had each decision as stored.
    pub stored_decisions: BTreeMap<&'static str, u64>,
    /// Transactions whose decision the candidate changes (`allow` to `block`, …).
    pub decisions_changed: u64,
    /// The candidate's hits (live and shadow) against the hits stored with the transactions.
    pub diff: Diff,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleResult {
    pub name: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub action: &'static str,
    /// Transactions of the period it fired on.
    pub fired: u64,
    /// The first few of them, in the order replayed.
    pub examples: Vec<String>,
    /// Of its hits, how many transactions a review called `fraud` (on any of their alerts).
    pub reviewed_fraud: u64,
    /// Of its hits, how many transactions reviews called `legitimate` and none `fraud`.
    pub reviewed_legitimate: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diff {
    /// Hits the candidate raises that are not stored.
    pub added: u64,
    /// Stored hits the candidate does not raise.
    pub dropped: u64,
    /// Hits both have.
    pub unchanged: u64,
    pub added_examples: Vec<Hit>,
    pub dropped_examples: Vec<Hit>,
}

/// One rule on one transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hit {
    pub shop_id: String,
    pub transaction_id: String,
    pub rule: String,
}

/// A backtest in progress.
pub struct Backtest<'a> {
    rules: &'a RuleSet,
    period: Period,
    /// The look-ups of list rules, by shop, that the lists hold now.
    listed: HashSet<(String, ListLookup)>,
    transactions: u64,
    read: u64,
    fired: Vec<RuleTally>,
    decisions: BTreeMap<Action, u64>,
    stored_decisions: BTreeMap<Action, u64>,
    decisions_changed: u64,
    diff: Diff,
}

#[derive(Default)]
struct RuleTally {
    fired: u64,
    examples: Vec<String>,
    fraud: u64,
    legitimate: u64,
}

impl<'a> Backtest<'a> {
    pub fn new(rules: &'a RuleSet, period: Period) -> Self {
        Self {
            rules,
            period,
            listed: HashSet::new(),
            transactions: 0,
            read: 0,
            fired: rules.rules().iter().map(|_| RuleTally::default()).collect(),
            decisions: BTreeMap::new(),
            stored_decisions: BTreeMap::new(),
            decisions_changed: 0,
            diff: Diff::default(),
        }
    }

    /// The timestamps whose transactions the backtest must be given: the period, widened by
    /// the longest window on both sides (a transaction in the same bucket, even a later one,
    /// was in the window when it was counted first).
    pub fn reads(rules: &RuleSet, period: Period) -> Period {
        let windows: Vec<&super::Window> = rules
            .rules()
            .iter()
            .filter_map(|rule| match &rule.kind {
                RuleKind::Velocity { window, .. } | RuleKind::Distinct { window, .. } => {
                    Some(window)
                }
                _ => None,
            })
            .collect();
        // Before the period, a whole window; after it, only the rest of a bucket: a later
        // transaction counted first is in a window only when it shares the last bucket.
        let before = windows.iter().map(|w| w.length()).max();
        let after = windows.iter().map(|w| w.bucket_length()).max();
        Period {
            from: period
                .from
                .map(|from| from - before.unwrap_or_else(Duration::zero)),
            to: period
                .to
                .map(|to| to + after.unwrap_or_else(Duration::zero)),
        }
    }

    /// Every list look-up the period's transactions need, for the store to answer at once.
    pub fn list_lookups<'r>(
        rules: &RuleSet,
        period: Period,
        records: impl IntoIterator<Item = &'r TransactionRecord>,
    ) -> BTreeSet<(String, ListLookup)> {
        if !rules.has_list_rules() {
            return BTreeSet::new();
        }
        records
            .into_iter()
            .filter(|record| period.contains(record.transaction.timestamp))
            .flat_map(|record| {
                let shop = record.shop_id.as_str().to_owned();
                rules
                    .list_lookups(&record.transaction)
                    .into_iter()
                    .map(move |lookup| (shop.clone(), lookup))
            })
            .collect()
    }

    /// Replays `records` (as [`Self::reads`] asked for, in any order) and reports; `listed` are
    /// the look-ups of [`Self::list_lookups`] that the shop's lists hold.
    pub fn run(
        rules: &'a RuleSet,
        period: Period,
        records: &[TransactionRecord],
        listed: HashSet<(String, ListLookup)>,
    ) -> BacktestReport {
        Self::run_side_by_side(rules, period, records, listed, 1, |jobs| {
            jobs.into_iter().map(WindowJob::run).collect()
        })
    }

    /// [`Self::run`], with the windowed rules split in up to `jobs` jobs, which `run_jobs` may
    /// run side by side (on threads: they share nothing) and gives their hits back in any
    /// order.
    pub fn run_side_by_side(
        rules: &'a RuleSet,
        period: Period,
        records: &[TransactionRecord],
        listed: HashSet<(String, ListLookup)>,
        jobs: usize,
        run_jobs: impl FnOnce(Vec<WindowJob<'_>>) -> Vec<Vec<WindowHit>>,
    ) -> BacktestReport {
        // References are sorted, not the records: moving records of a few hundred bytes each
        // was a large share of a replay.
        let mut order: Vec<&TransactionRecord> = records.iter().collect();
        order.sort_unstable_by(|a, b| {
            a.processed_at
                .cmp(&b.processed_at)
                .then_with(|| a.transaction.timestamp.cmp(&b.transaction.timestamp))
                .then_with(|| {
                    a.transaction
                        .transaction_id
                        .cmp(&b.transaction.transaction_id)
                })
        });
        let hits = windows::merged(run_jobs(windows::jobs(rules, &order, jobs)));
        let mut window_hits = hits.into_iter().peekable();
        let mut backtest = Self::new(rules, period);
        backtest.listed = listed;
        for (index, record) in order.into_iter().enumerate() {
            let mut windows = Vec::new();
            while let Some(hit) = window_hits.next_if(|hit| hit.record == index) {
                windows.push((hit.rule, hit.total));
            }
            backtest.judge(record, &windows);
        }
        backtest.report()
    }

    /// Judges one transaction, as the processor did at its `processed_at`, given its windows
    /// over their limits.
    fn judge(&mut self, record: &TransactionRecord, windows: &[(usize, WindowTotal)]) {
        self.read += 1;
        let transaction = &record.transaction;
        let shop = record.shop_id.as_str();
        // Lists have no history: they are judged as they are now.
        let listed: Vec<ListLookup> = self
            .rules
            .list_lookups(transaction)
            .into_iter()
            .filter(|lookup| self.listed.contains(&(shop.to_owned(), lookup.clone())))
            .collect();
        let windows = windows.iter().map(|(rule, total)| (*rule, total));
        let decisions = self.rules.decide_on_windows(transaction, windows, &listed);
        if self.period.contains(transaction.timestamp) {
            self.tally(record, &decisions);
        }
    }

    fn tally(&mut self, record: &TransactionRecord, decisions: &Decisions) {
        self.transactions += 1;
        let (would_be, was) = (decisions.decision(), record.decision());
        *self.decisions.entry(would_be).or_default() += 1;
        *self.stored_decisions.entry(was).or_default() += 1;
        self.decisions_changed += u64::from(would_be != was);
        let no_hits = decisions.alerts.is_empty() && decisions.shadow.is_empty();
        if no_hits && record.alerts.is_empty() && record.shadow_alerts.is_empty() {
            return;
        }
        let verdict = reviewed(record);
        let id = &record.transaction.transaction_id;
        let candidate: BTreeSet<&str> = decisions
            .alerts
            .iter()
            .chain(&decisions.shadow)
            .map(|decision| decision.rule.as_str())
            .collect();
        for (rule, tally) in self.rules.rules().iter().zip(&mut self.fired) {
            if !candidate.contains(rule.name.as_str()) {
                continue;
            }
            tally.fired += 1;
            if tally.examples.len() < EXAMPLES_PER_RULE {
                tally.examples.push(id.clone());
            }
            match verdict {
                Some(Verdict::Fraud) => tally.fraud += 1,
                Some(Verdict::Legitimate) => tally.legitimate += 1,
                _ => {}
            }
        }
        let stored: BTreeSet<&str> = record
            .alerts
            .iter()
            .map(|alert| alert.decision.rule.as_str())
            .chain(record.shadow_alerts.iter().map(|hit| hit.rule.as_str()))
            .collect();
        let hit = |rule: &&str| Hit {
            shop_id: record.shop_id.as_str().to_owned(),
            transaction_id: id.clone(),
            rule: (*rule).to_owned(),
        };
        for rule in candidate.difference(&stored) {
            self.diff.added += 1;
            if self.diff.added_examples.len() < EXAMPLES_PER_DIFF {
                self.diff.added_examples.push(hit(rule));
            }
        }
        for rule in stored.difference(&candidate) {
            self.diff.dropped += 1;
            if self.diff.dropped_examples.len() < EXAMPLES_PER_DIFF {
                self.diff.dropped_examples.push(hit(rule));
            }
        }
        self.diff.unchanged += candidate.intersection(&stored).count() as u64;
    }

    pub fn report(self) -> BacktestReport {
        let rules = self
            .rules
            .rules()
            .iter()
            .zip(self.fired)
            .map(|(rule, tally)| RuleResult {
                name: rule.name.clone(),
                kind: rule.kind_name(),
                mode: rule.mode.name(),
                action: rule.action.name(),
                fired: tally.fired,
                examples: tally.examples,
                reviewed_fraud: tally.fraud,
                reviewed_legitimate: tally.legitimate,
            })
            .collect();
        BacktestReport {
            rules_version: self.rules.version().to_owned(),
            period: self.period,
            transactions: self.transactions,
            read: self.read,
            rules,
            decisions: named(self.decisions),
            stored_decisions: named(self.stored_decisions),
            decisions_changed: self.decisions_changed,
            diff: self.diff,
        }
    }
}

fn named(counts: BTreeMap<Action, u64>) -> BTreeMap<&'static str, u64> {
    counts
        .into_iter()
        .map(|(action, count)| (action.name(), count))
        .collect()
}

/// The transaction's review: `fraud` if any alert was found so, else `legitimate` if any was.
fn reviewed(record: &TransactionRecord) -> Option<Verdict> {
    let verdicts: Vec<Verdict> = record
        .alerts
        .iter()
        .filter_map(|alert| alert.verdict)
        .collect();
    if verdicts.contains(&Verdict::Fraud) {
        Some(Verdict::Fraud)
    } else if verdicts.contains(&Verdict::Legitimate) {
        Some(Verdict::Legitimate)
    } else {
        None
    }
}

#[path = "backtest_windows.rs"]
mod windows;
pub use windows::{WindowHit, WindowJob};

#[cfg(test)]
#[path = "backtest_tests.rs"]
mod tests;
