//! Listing a shop's transactions: the filters, the order, and the position a walk has reached.
//!
//! The order is the transaction's own `timestamp`, newest first, ties broken by id (descending).
//! Both are written once and never change, so a walk that continues *after a position* visits
//! every transaction that existed when it began exactly once, whatever arrives meanwhile.

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;

use super::names::Named;
use super::record::{AlertState, TransactionRecord};
use super::transaction::TransactionType;

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
/// Rows a store examines for one page at most. A filter that rejects most rows then returns a
/// shorter page with `has_more` instead of scanning on: a page costs a bounded amount of work.
pub const MAX_EXAMINED_PER_PAGE: usize = 5_000;

/// `alert`: which transactions by their alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertFilter {
    /// Raised no alert.
    None,
    /// At least one alert not yet published.
    Pending,
    /// Raised alerts, all published.
    Sent,
    /// Raised at least one alert.
    Any,
}

impl Named for AlertFilter {
    const ALL: &'static [Self] = &[Self::None, Self::Pending, Self::Sent, Self::Any];
}

/// Everything a list can filter on; all given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListFilters {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub kind: Option<TransactionType>,
    pub currency: Option<String>,
    pub customer_id: Option<String>,
    /// Paid with this card or account (its `payment_fingerprint`). Left out of the JSON when
    /// unset, as every filter added later must be: a cursor binds the filters' JSON, and one
    /// made before the filter existed stays valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    /// Inclusive.
    pub min_amount: Option<Decimal>,
    /// Inclusive.
    pub max_amount: Option<Decimal>,
    pub alert: Option<AlertFilter>,
    pub conflicted: Option<bool>,
}

/// Where a walk is: the last transaction it returned (or examined). The next page starts
/// strictly after it in the list's order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The transaction's timestamp in microseconds since the epoch: the precision both stores
    /// order by.
    pub micros: i64,
    pub transaction_id: String,
}

impl Position {
    pub fn of(record: &TransactionRecord) -> Self {
        Self {
            micros: order_micros(record.transaction.timestamp),
            transaction_id: record.transaction.transaction_id.clone(),
        }
    }
}

/// The timestamp as the list orders it: microseconds (finer digits do not reorder).
pub fn order_micros(timestamp: DateTime<Utc>) -> i64 {
    timestamp.trunc_subsecs(6).timestamp_micros()
}

/// The first whole microsecond at or after `timestamp`: an exclusive upper bound in the order's
/// microseconds that leaves out nothing before `timestamp` (a timestamp 0.1 µs before a bound
/// of 0.5 µs stays in).
pub fn order_micros_after(timestamp: DateTime<Utc>) -> i64 {
    let micros = order_micros(timestamp);
    if DateTime::from_timestamp_micros(micros) == Some(timestamp) {
        micros
    } else {
        micros.saturating_add(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filters: ListFilters,
    pub limit: usize,
    /// Continue after this position; `None` starts at the newest.
    pub after: Option<Position>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<TransactionRecord>,
    /// Where the next page starts, when there may be more: after the last record returned, or
    /// after the last row examined when the examination bound was reached first.
    pub next: Option<Position>,
}

impl ListFilters {
    /// Whether a record passes every filter; the stores express the same in their queries, and
    /// their contract test checks them against this.
    pub fn matches(&self, record: &TransactionRecord) -> bool {
        let transaction = &record.transaction;
        let micros = order_micros(transaction.timestamp);
        let within = |bound: Option<DateTime<Utc>>, test: fn(i64, i64) -> bool| {
            bound.is_none_or(|bound| test(micros, order_micros(bound)))
        };
        within(self.from, |at, from| at >= from)
            && within(self.to, |at, to| at < to)
            && self.kind.is_none_or(|kind| transaction.kind == kind)
            && self
                .currency
                .as_ref()
                .is_none_or(|currency| &transaction.currency == currency)
            && self
                .customer_id
                .as_ref()
                .is_none_or(|customer| transaction.customer_id.as_ref() == Some(customer))
            && self.payment_fingerprint.as_ref().is_none_or(|fingerprint| {
                transaction.payment_fingerprint.as_ref() == Some(fingerprint)
            })
            && self.min_amount.is_none_or(|min| transaction.amount >= min)
            && self.max_amount.is_none_or(|max| transaction.amount <= max)
            && self.alert.is_none_or(|alert| alert_matches(alert, record))
            && self
                .conflicted
                .is_none_or(|conflicted| (record.conflicts.count > 0) == conflicted)
    }
}

fn alert_matches(filter: AlertFilter, record: &TransactionRecord) -> bool {
    let any = !record.alerts.is_empty();
    let pending = record
        .alerts
        .iter()
        .any(|alert| alert.state == AlertState::Pending);
    match filter {
        AlertFilter::None => !any,
        AlertFilter::Pending => pending,
        AlertFilter::Sent => any && !pending,
        AlertFilter::Any => any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_filter_names_round_trip() {
        crate::names::assert_names_round_trip::<AlertFilter>();
    }

    #[test]
    fn ordering_precision_is_microseconds() {
        let a = DateTime::parse_from_rfc3339("2024-08-09T12:34:56.123456789Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(order_micros(a) % 1_000_000, 123_456);
    }
}
