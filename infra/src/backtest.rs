//! A backtest over a store: the history a candidate rule set needs, read through the
//! [`History`] port within a bound, then replayed in memory by the domain (off the async
//! threads, as it is CPU work). Shared by `processor rules backtest` and `POST /rules/backtest`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::domain::lists::ListLookup;
use crate::domain::rules::backtest::{Backtest, BacktestReport, Period, WindowHit, WindowJob};
use crate::domain::{RuleSet, ShopId, TransactionRecord};
use crate::ports::{History, HistoryBound, HistoryRead, ListMembership, PortError};

/// Transactions a backtest reads at most unless told otherwise (the period's, with those
/// around it that fill its windows): a few seconds of replay. Read within
/// [`HistoryBound::of_transactions`], 1,000,000 hold at most about 2 GB in memory, and the
/// Lambda's 100,000 about 200 MB.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 1_000_000;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacktestOutcome {
    Report(Box<BacktestReport>),
    /// The period (with its margins) holds more than the bound: this many transactions, or
    /// their bytes.
    TooMany(HistoryBound),
}

/// What a backtest runs over: the stored history and, for `list` rules, the shops' lists.
#[derive(Clone)]
pub struct Sources {
    pub history: Arc<dyn History>,
    pub lists: Option<Arc<dyn ListMembership>>,
}

/// Look-up calls made at once (each of up to 100 look-ups, the adapters' batch).
const LOOKUP_CALLS_AT_ONCE: usize = 8;
const LOOKUPS_PER_CALL: usize = 100;

/// Replays `shops`' stored transactions of `period` through `rules`, with their lists as they
/// are now (lists keep no history).
pub async fn run(
    sources: Sources,
    shops: Vec<ShopId>,
    rules: RuleSet,
    period: Period,
    bound: HistoryBound,
) -> Result<BacktestOutcome, PortError> {
    let reads = Backtest::reads(&rules, period);
    let (mut records, mut bytes) = (Vec::new(), 0);
    for shop in &shops {
        let left = HistoryBound {
            transactions: bound.transactions.saturating_sub(records.len()),
            bytes: bound.bytes.saturating_sub(bytes),
        };
        match sources.history.history(shop, reads, left).await? {
            HistoryRead::Complete(mut more, more_bytes) => {
                records.append(&mut more);
                bytes += more_bytes;
            }
            HistoryRead::TooMany => return Ok(BacktestOutcome::TooMany(bound)),
        }
    }
    let lookups = Backtest::list_lookups(&rules, period, &records);
    let listed = listed(sources.lists.clone(), lookups).await?;
    let (report, records) = tokio::task::spawn_blocking(move || {
        let report = replay(&rules, period, &records, listed);
        (report, records)
    })
    .await
    .map_err(|error| PortError::unavailable("backtest", error))?;
    // A million records take a tenth of a second to free: not the caller's wait.
    tokio::task::spawn_blocking(move || drop(records));
    Ok(BacktestOutcome::Report(Box::new(report)))
}

/// The replay alone, in memory, the windowed rules on every core.
pub fn replay(
    rules: &RuleSet,
    period: Period,
    records: &[TransactionRecord],
    listed: HashSet<(String, ListLookup)>,
) -> BacktestReport {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Backtest::run_side_by_side(rules, period, records, listed, cores, on_threads)
}

/// Each job on a thread of its own: they share nothing, and a backtest has the cores to
/// itself (one at a time per instance).
fn on_threads(jobs: Vec<WindowJob<'_>>) -> Vec<Vec<WindowHit>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                std::thread::Builder::new()
                    .name("backtest-window".to_owned())
                    .spawn_scoped(scope, || job.run())
                    .expect("a thread for a replay")
            })
            .collect();
        running
            .into_iter()
            .map(|job| job.join().expect("a replay does not panic"))
            .collect()
    })
}

/// Which of the look-ups the shops' lists hold.
async fn listed(
    lists: Option<Arc<dyn ListMembership>>,
    lookups: BTreeSet<(String, ListLookup)>,
) -> Result<HashSet<(String, ListLookup)>, PortError> {
    if lookups.is_empty() {
        return Ok(HashSet::new());
    }
    let lists = lists.ok_or_else(|| PortError::rejected("backtest", LISTS_NEEDED))?;
    let mut by_shop: BTreeMap<String, Vec<ListLookup>> = BTreeMap::new();
    for (shop, lookup) in lookups {
        by_shop.entry(shop).or_default().push(lookup);
    }
    let mut calls: Vec<(ShopId, Vec<ListLookup>)> = Vec::new();
    for (shop, lookups) in by_shop {
        let shop_id = ShopId::parse(&shop)
            .map_err(|error| PortError::rejected("backtest", format!("shop {shop:?}: {error}")))?;
        for chunk in lookups.chunks(LOOKUPS_PER_CALL) {
            calls.push((shop_id.clone(), chunk.to_vec()));
        }
    }
    let answers: Vec<Vec<(String, ListLookup)>> = stream::iter(calls)
        .map(|(shop_id, chunk)| {
            let lists = lists.clone();
            async move {
                let held = lists.listed(&shop_id, &chunk).await?;
                let shop = shop_id.as_str().to_owned();
                Ok::<_, PortError>(
                    chunk
                        .into_iter()
                        .zip(held)
                        .filter_map(|(lookup, held)| held.then(|| (shop.clone(), lookup)))
                        .collect(),
                )
            }
        })
        .buffer_unordered(LOOKUP_CALLS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(answers.into_iter().flatten().collect())
}

/// Why a rule set with `list` rules cannot be judged here.
pub const LISTS_NEEDED: &str =
    "list rules need the shops' lists, which are not set up here (on DynamoDB: WEBHOOKS_TABLE)";
