//! A backtest over a store: the history a candidate rule set needs, read through the
//! [`History`] port within a bound, then replayed in memory by the domain (off the async
//! threads, as it is CPU work). Shared by `processor rules backtest` and `POST /rules/backtest`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::domain::RuleSet;
use crate::domain::ShopId;
use crate::domain::lists::ListLookup;
use crate::domain::rules::backtest::{Backtest, BacktestReport, Period};
use crate::ports::{History, HistoryRead, ListMembership, PortError};

/// Transactions a backtest reads at most unless told otherwise (the period's, with those
/// around it that fill its windows): about 5 s of replay, and 400 MB of memory at most.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacktestOutcome {
    Report(Box<BacktestReport>),
    /// The period (with its margins) holds more than this many transactions.
    TooMany(usize),
}

/// List look-ups asked of the store at once.
const LOOKUPS_PER_CALL: usize = 100;

/// Replays `shops`' stored transactions of `period` through `rules`, with their lists as they
/// are now (lists keep no history).
pub async fn run(
    history: &dyn History,
    lists: Option<&dyn ListMembership>,
    shops: &[ShopId],
    rules: &RuleSet,
    period: Period,
    max: usize,
) -> Result<BacktestOutcome, PortError> {
    let reads = Backtest::reads(rules, period);
    let mut records = Vec::new();
    for shop in shops {
        match history.history(shop, reads, max - records.len()).await? {
            HistoryRead::Complete(mut more) => records.append(&mut more),
            HistoryRead::TooMany => return Ok(BacktestOutcome::TooMany(max)),
        }
    }
    let listed = listed(lists, Backtest::list_lookups(rules, &records)).await?;
    let rules = rules.clone();
    let report =
        tokio::task::spawn_blocking(move || Backtest::run(&rules, period, records, listed))
            .await
            .map_err(|error| PortError::unavailable("backtest", error))?;
    Ok(BacktestOutcome::Report(Box::new(report)))
}

/// Which of the look-ups the shops' lists hold.
async fn listed(
    lists: Option<&dyn ListMembership>,
    lookups: BTreeSet<(String, ListLookup)>,
) -> Result<HashSet<(String, ListLookup)>, PortError> {
    if lookups.is_empty() {
        return Ok(HashSet::new());
    }
    let lists = lists.ok_or_else(|| {
        PortError::rejected(
            "backtest",
            "list rules need the lists (WEBHOOKS_TABLE on AWS)",
        )
    })?;
    let mut by_shop: BTreeMap<String, Vec<ListLookup>> = BTreeMap::new();
    for (shop, lookup) in lookups {
        by_shop.entry(shop).or_default().push(lookup);
    }
    let mut found = HashSet::new();
    for (shop, lookups) in by_shop {
        let shop_id = ShopId::parse(&shop)
            .map_err(|error| PortError::rejected("backtest", format!("shop {shop:?}: {error}")))?;
        for chunk in lookups.chunks(LOOKUPS_PER_CALL) {
            let held = lists.listed(&shop_id, chunk).await?;
            for (lookup, held) in chunk.iter().zip(held) {
                if held {
                    found.insert((shop.clone(), lookup.clone()));
                }
            }
        }
    }
    Ok(found)
}
