//! A backtest over a store: the history a candidate rule set needs, read through the
//! [`History`] port within a bound, then replayed in memory by the domain (off the async
//! threads, as it is CPU work). Shared by `processor rules backtest` and `POST /rules/backtest`.

use crate::domain::RuleSet;
use crate::domain::ShopId;
use crate::domain::rules::backtest::{Backtest, BacktestReport, Period};
use crate::ports::{History, HistoryRead, PortError};

/// Transactions a backtest reads at most unless told otherwise (the period's, with those
/// around it that fill its windows): about 5 s of replay, and 400 MB of memory at most.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacktestOutcome {
    Report(Box<BacktestReport>),
    /// The period (with its margins) holds more than this many transactions.
    TooMany(usize),
}

/// Replays `shops`' stored transactions of `period` through `rules`.
pub async fn run(
    history: &dyn History,
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
    let rules = rules.clone();
    let report = tokio::task::spawn_blocking(move || Backtest::run(&rules, period, records))
        .await
        .map_err(|error| PortError::unavailable("backtest", error))?;
    Ok(BacktestOutcome::Report(Box::new(report)))
}
