//! A shop's recent figures, for the console's overview: per minute, the transactions accepted,
//! stored and alerted, and the lag from accepted to stored. Computed from the stored records,
//! so they are the shop's own and exact for what is stored; a transaction still on the queue
//! is in none of them until it is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;

use crate::record::TransactionRecord;

/// The longest overview, in minutes.
pub const MAX_MINUTES: u32 = 180;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShopStats {
    /// The first minute shown (inclusive).
    pub from: DateTime<Utc>,
    /// The end of the last minute shown (exclusive).
    pub to: DateTime<Utc>,
    /// One entry per minute, oldest first, every minute present (zeros included).
    pub minutes: Vec<MinuteCounts>,
    /// Accepted-to-stored lag of the transactions stored in these minutes.
    pub lag: Lag,
    /// Each rule's hits on the transactions stored in these minutes, live and shadow: a rule
    /// with none is absent.
    pub hits_by_rule: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Transactions the API accepted in this minute (of those stored since).
    pub accepted: u64,
    /// Transactions the processor stored in this minute.
    pub stored: u64,
    /// Of those stored, how many raised at least one live alert.
    pub alerted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lag {
    /// Transactions measured.
    pub transactions: u64,
    /// Median, in milliseconds; absent with no transaction.
    pub p50_ms: Option<u64>,
    /// 99th percentile (nearest rank), in milliseconds.
    pub p99_ms: Option<u64>,
}

/// The `minutes` whole minutes up to the one holding `now`.
pub fn window(now: DateTime<Utc>, minutes: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let minute = TimeDelta::minutes(1);
    let to = now.duration_trunc(minute).unwrap_or(now) + minute;
    (to - minute * minutes.min(MAX_MINUTES) as i32, to)
}

/// The figures of `[from, to)` (as [`window`] gives them) from the records that may fall in it.
pub fn summarise(
    records: &[TransactionRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ShopStats {
    let minute = TimeDelta::minutes(1);
    let count = ((to - from).num_minutes().max(0)) as usize;
    let mut minutes: Vec<MinuteCounts> = (0..count)
        .map(|index| MinuteCounts {
            minute: from + minute * index as i32,
            accepted: 0,
            stored: 0,
            alerted: 0,
        })
        .collect();
    let slot = |at: DateTime<Utc>| -> Option<usize> {
        (at >= from && at < to).then(|| (at - from).num_minutes() as usize)
    };
    let mut lags: Vec<u64> = Vec::new();
    let mut hits_by_rule: BTreeMap<String, u64> = BTreeMap::new();
    for record in records {
        if let Some(counts) = slot(record.accepted_at).and_then(|at| minutes.get_mut(at)) {
            counts.accepted += 1;
        }
        if let Some(counts) = slot(record.processed_at).and_then(|at| minutes.get_mut(at)) {
            counts.stored += 1;
            counts.alerted += u64::from(!record.alerts.is_empty());
            let lag = record.processed_at - record.accepted_at;
            lags.push(lag.num_milliseconds().max(0) as u64);
            let live = record.alerts.iter().map(|alert| &alert.decision);
            for hit in live.chain(&record.shadow_alerts) {
                *hits_by_rule.entry(hit.rule.clone()).or_default() += 1;
            }
        }
    }
    ShopStats {
        from,
        to,
        minutes,
        lag: lag_of(lags),
        hits_by_rule,
    }
}

fn lag_of(mut lags: Vec<u64>) -> Lag {
    lags.sort_unstable();
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = |percent: usize| {
        let at = (lags.len() * percent).div_ceil(100).max(1) - 1;
        lags.get(at).copied()
    };
    Lag {
        transactions: lags.len() as u64,
        p50_ms: rank(50),
        p99_ms: rank(99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Action, AlertDecision};
    use crate::envelope::Envelope;
    use crate::parse_transaction;
    use crate::transaction::ShopId;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A record accepted at `accepted` and stored `lag_ms` later, with an alert or not.
    fn record(id: &str, accepted: &str, lag_ms: i64, alerted: bool) -> TransactionRecord {
        let accepted = at(accepted);
        let body = format!(
            r#"{{"transaction_id":"{id}","amount":"5.00","timestamp":"2026-01-01T00:00:00Z"}}"#
        );
        let transaction = parse_transaction(body.as_bytes(), accepted).unwrap();
        let envelope = Envelope::new(
            ShopId::parse("shop").unwrap(),
            transaction,
            accepted,
            id.to_owned(),
        );
        let alerts: Vec<AlertDecision> = if alerted {
            vec![AlertDecision {
                rule: "big".to_owned(),
                reason: String::new(),
                facts: Default::default(),
                rules_version: None,
                action: Action::Notify,
            }]
        } else {
            Vec::new()
        };
        TransactionRecord::new(
            envelope,
            alerts.into(),
            accepted + TimeDelta::milliseconds(lag_ms),
        )
    }

    #[test]
    fn the_window_is_whole_minutes_ending_with_the_current_one() {
        let (from, to) = window(at("2026-01-01T10:05:30Z"), 3);
        assert_eq!(
            (from, to),
            (at("2026-01-01T10:03:00Z"), at("2026-01-01T10:06:00Z"))
        );
        let (from, _) = window(at("2026-01-01T10:05:30Z"), 10_000);
        assert_eq!(from, at("2026-01-01T07:06:00Z"), "at most MAX_MINUTES");
    }

    #[test]
    fn each_minute_counts_what_was_accepted_stored_and_alerted_in_it() {
        let (from, to) = (at("2026-01-01T10:00:00Z"), at("2026-01-01T10:03:00Z"));
        let records = [
            record("a", "2026-01-01T10:00:10Z", 100, false),
            // Accepted in the first minute, stored in the second, with an alert.
            record("b", "2026-01-01T10:00:59Z", 2_000, true),
            record("c", "2026-01-01T10:02:00Z", 300, true),
            // Accepted before the window, stored in it: stored, not accepted.
            record("d", "2026-01-01T09:59:59Z", 1_500, false),
            // After the window: in nothing.
            record("e", "2026-01-01T10:03:00Z", 1, false),
        ];
        let stats = summarise(&records, from, to);
        let counts: Vec<(u64, u64, u64)> = stats
            .minutes
            .iter()
            .map(|m| (m.accepted, m.stored, m.alerted))
            .collect();
        assert_eq!(counts, vec![(2, 2, 0), (0, 1, 1), (1, 1, 1)]);
        assert_eq!(stats.minutes[1].minute, at("2026-01-01T10:01:00Z"));
        assert_eq!(
            stats.lag,
            Lag {
                transactions: 4,
                p50_ms: Some(300),
                p99_ms: Some(2_000)
            }
        );
    }

    #[test]
    fn each_rule_counts_its_hits_live_and_shadow_on_what_was_stored_in_the_window() {
        let (from, to) = (at("2026-01-01T10:00:00Z"), at("2026-01-01T10:02:00Z"));
        let mut shadowed = record("s", "2026-01-01T10:01:00Z", 10, true);
        let mut shadow_hit = shadowed.alerts[0].decision.clone();
        shadow_hit.rule = "trial".to_owned();
        shadowed.shadow_alerts.push(shadow_hit);
        let records = [
            record("a", "2026-01-01T10:00:10Z", 100, true),
            shadowed,
            record("n", "2026-01-01T10:00:20Z", 100, false),
            // Stored after the window: not counted.
            record("late", "2026-01-01T10:01:59Z", 2_000, true),
        ];
        let stats = summarise(&records, from, to);
        assert_eq!(
            stats.hits_by_rule,
            BTreeMap::from([("big".to_owned(), 2), ("trial".to_owned(), 1)])
        );
    }

    #[test]
    fn an_empty_shop_has_zero_minutes_and_no_lag() {
        let (from, to) = window(at("2026-01-01T10:05:30Z"), 2);
        let stats = summarise(&[], from, to);
        assert_eq!(stats.minutes.len(), 2);
        assert!(
            stats
                .minutes
                .iter()
                .all(|m| m.accepted + m.stored + m.alerted == 0)
        );
        assert_eq!(stats.lag, Lag::default());
        assert!(stats.hits_by_rule.is_empty());
    }
}
