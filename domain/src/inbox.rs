//! Alerts as the shop's risk team works them: each alert a stored transaction raised is a
//! resource with a stable id, a review state (open, acknowledged, resolved with a verdict) and
//! the history of its reviews. Lists of alerts are newest first by when they were raised.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert::Action;
use super::ids::{derived_id, is_id};
use super::names::Named;
use super::record::{AlertState, AlertStatus, TransactionRecord};
use super::transaction::ShopId;

/// The reviews one alert keeps at most: an alert's answer stays bounded.
pub const MAX_REVIEWS_PER_ALERT: usize = 100;
/// A review's note, in characters at most.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The notes of one alert's history, in bytes at most: an alert stays well inside a DynamoDB
/// item (400 KB) and a list page, however long its notes.
pub const MAX_HISTORY_NOTE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Raised, nobody has looked yet (or reopened).
    #[default]
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Done with, with a verdict.
    Resolved,
}

impl Named for ReviewStatus {
    const ALL: &'static [Self] = &[Self::Open, Self::Acknowledged, Self::Resolved];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fraud,
    Legitimate,
    Unsure,
}

impl Named for Verdict {
    const ALL: &'static [Self] = &[Self::Fraud, Self::Legitimate, Self::Unsure];
}

/// One review, as kept in the alert's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewEntry {
    pub status: ReviewStatus,
    pub verdict: Option<Verdict>,
    pub note: Option<String>,
    /// The id of the API key that made it (never the key).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Where an alert's review stands, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Review {
    pub status: ReviewStatus,
    pub verdict: Option<Verdict>,
    /// Grows by one with each review: the alert's `ETag`.
    pub version: u64,
    /// Oldest first.
    pub history: Vec<ReviewEntry>,
}

impl Default for Review {
    fn default() -> Self {
        Self {
            status: ReviewStatus::Open,
            verdict: None,
            version: 0,
            history: Vec::new(),
        }
    }
}

/// What a reviewer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewChange {
    pub status: ReviewStatus,
    pub verdict: Option<Verdict>,
    pub note: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("a verdict is required to resolve an alert")]
    VerdictRequired,
    #[error("an open alert has no verdict; reopening clears it")]
    VerdictOnOpen,
    #[error("the note is longer than {MAX_NOTE_CHARS} characters")]
    NoteTooLong,
    #[error(
        "the alert already has {MAX_REVIEWS_PER_ALERT} reviews or {MAX_HISTORY_NOTE_BYTES} bytes of notes, the most it keeps"
    )]
    TooManyReviews,
}

impl ReviewError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::VerdictRequired | Self::VerdictOnOpen => "verdict",
            Self::NoteTooLong => "note",
            Self::TooManyReviews => "status",
        }
    }
}

impl Review {
    /// The review after `change`. Any status may follow any other, a resolution needs a
    /// verdict, and reopening clears it; every change is kept in the history.
    pub fn apply(&self, change: ReviewChange) -> Result<Review, ReviewError> {
        if change.status == ReviewStatus::Resolved && change.verdict.is_none() {
            return Err(ReviewError::VerdictRequired);
        }
        if change.status == ReviewStatus::Open && change.verdict.is_some() {
            return Err(ReviewError::VerdictOnOpen);
        }
        if change
            .note
            .as_ref()
            .is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS)
        {
            return Err(ReviewError::NoteTooLong);
        }
        let note_bytes: usize = self
            .history
            .iter()
            .chain(std::iter::once(&ReviewEntry {
                status: change.status,
                verdict: None,
                note: change.note.clone(),
                by: String::new(),
                at: change.at,
            }))
            .filter_map(|entry| entry.note.as_ref().map(String::len))
            .sum();
        if self.history.len() >= MAX_REVIEWS_PER_ALERT || note_bytes > MAX_HISTORY_NOTE_BYTES {
            return Err(ReviewError::TooManyReviews);
        }
        let verdict = match change.status {
            ReviewStatus::Open => None,
            _ => change.verdict.or(self.verdict),
        };
        let mut history = self.history.clone();
        history.push(ReviewEntry {
            status: change.status,
            verdict: change.verdict,
            note: change.note,
            by: change.by,
            at: change.at,
        });
        Ok(Review {
            status: change.status,
            verdict,
            version: self.version + 1,
            history,
        })
    }
}

/// An alert's publication to the notifier (SNS, or the local alerts table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Publication {
    pub state: AlertState,
    pub sent_at: Option<DateTime<Utc>>,
}

/// An alert as a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxAlert {
    #[cfg_attr(feature = "openapi", schema(example = "alt_4f1c2a9be0d3a7715c6e9f02"))]
    pub alert_id: String,
    pub transaction_id: String,
    #[cfg_attr(feature = "openapi", schema(example = "amount_exceeds_threshold"))]
    pub rule: String,
    pub reason: String,
    pub facts: BTreeMap<String, String>,
    /// The version of the rule set that raised it; absent on alerts from before versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
    /// What the rule asks of the shop.
    #[serde(default)]
    pub action: Action,
    /// The transaction's decision: the strongest action among all its alerts.
    #[serde(default)]
    pub decision: Action,
    /// When the processor decided the transaction and raised the alert (its `processed_at`).
    pub raised_at: DateTime<Utc>,
    pub publication: Publication,
    pub review: Review,
}

impl InboxAlert {
    /// The alert `alert` of `record`, with its review.
    pub fn of(record: &TransactionRecord, alert: &AlertStatus, review: Review) -> Self {
        Self {
            alert_id: alert_id(
                &record.shop_id,
                &record.transaction.transaction_id,
                &alert.decision.rule,
            ),
            transaction_id: record.transaction.transaction_id.clone(),
            rule: alert.decision.rule.clone(),
            reason: alert.decision.reason.clone(),
            facts: alert.decision.facts.clone(),
            rules_version: alert.decision.rules_version.clone(),
            action: alert.decision.action,
            decision: record.decision(),
            raised_at: record.processed_at,
            publication: Publication {
                state: alert.state,
                sent_at: alert.sent_at,
            },
            review,
        }
    }

    pub fn position(&self) -> AlertPosition {
        AlertPosition {
            micros: self.raised_at.timestamp_micros(),
            alert_id: self.alert_id.clone(),
        }
    }
}

/// The id of the alert `rule` raised on a transaction: the same for every delivery of it, and
/// telling nothing of the shop's data (a digest).
pub fn alert_id(shop_id: &ShopId, transaction_id: &str, rule: &str) -> String {
    derived_id("alt_", &[shop_id.as_str(), transaction_id, rule])
}

/// Whether `text` has the shape of an alert id, so that anything else is a 404 before any read.
pub fn is_alert_id(text: &str) -> bool {
    is_id(text, "alt_")
}

/// The filters of an alert list; all given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertListFilters {
    pub status: Option<ReviewStatus>,
    pub rule: Option<String>,
    pub verdict: Option<Verdict>,
    /// Raised at or after (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Raised before (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
}

impl AlertListFilters {
    /// Whether an alert passes every filter.
    pub fn admit(&self, alert: &InboxAlert) -> bool {
        self.status
            .is_none_or(|status| alert.review.status == status)
            && self.rule.as_ref().is_none_or(|rule| &alert.rule == rule)
            && self
                .verdict
                .is_none_or(|verdict| alert.review.verdict == Some(verdict))
            && self.from.is_none_or(|from| alert.raised_at >= from)
            && self.to.is_none_or(|to| alert.raised_at < to)
            && self
                .transaction_id
                .as_ref()
                .is_none_or(|id| &alert.transaction_id == id)
    }
}

/// Where a walk of alerts is: the last alert it returned or examined. Newest first, ties by
/// id (descending); neither changes once raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertPosition {
    pub micros: i64,
    pub alert_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertListQuery {
    pub filters: AlertListFilters,
    pub limit: usize,
    pub after: Option<AlertPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPage {
    pub alerts: Vec<InboxAlert>,
    /// Where to continue, if there may be more.
    pub next: Option<AlertPosition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(status: ReviewStatus, verdict: Option<Verdict>) -> ReviewChange {
        ReviewChange {
            status,
            verdict,
            note: Some("checked".to_owned()),
            by: "key-1".to_owned(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_review_walks_acknowledged_resolved_and_reopened_keeping_its_history() {
        let acknowledged = Review::default()
            .apply(change(ReviewStatus::Acknowledged, None))
            .expect("acknowledge");
        assert_eq!(acknowledged.version, 1);
        let resolved = acknowledged
            .apply(change(ReviewStatus::Resolved, Some(Verdict::Fraud)))
            .expect("resolve");
        assert_eq!(resolved.verdict, Some(Verdict::Fraud));
        let reopened = resolved
            .apply(change(ReviewStatus::Open, None))
            .expect("reopen");
        assert_eq!(reopened.status, ReviewStatus::Open);
        assert_eq!(reopened.verdict, None, "reopening clears the verdict");
        assert_eq!(reopened.history.len(), 3);
        assert_eq!(reopened.version, 3);
    }

    #[test]
    fn resolving_needs_a_verdict_and_opening_refuses_one() {
        let review = Review::default();
        assert_eq!(
            review.apply(change(ReviewStatus::Resolved, None)),
            Err(ReviewError::VerdictRequired)
        );
        assert_eq!(
            review.apply(change(ReviewStatus::Open, Some(Verdict::Unsure))),
            Err(ReviewError::VerdictOnOpen)
        );
    }

    #[test]
    fn history_and_notes_are_bounded() {
        let mut long = change(ReviewStatus::Acknowledged, None);
        long.note = Some("x".repeat(MAX_NOTE_CHARS + 1));
        assert_eq!(Review::default().apply(long), Err(ReviewError::NoteTooLong));
        let mut review = Review::default();
        for _ in 0..MAX_REVIEWS_PER_ALERT {
            review = review
                .apply(change(ReviewStatus::Acknowledged, None))
                .expect("within the bound");
        }
        assert_eq!(
            review.apply(change(ReviewStatus::Acknowledged, None)),
            Err(ReviewError::TooManyReviews)
        );
    }

    #[test]
    fn the_notes_of_a_history_are_bounded_in_bytes() {
        let mut long = change(ReviewStatus::Acknowledged, None);
        // 2,000 four-byte characters: 8,000 bytes a note.
        long.note = Some("😀".repeat(MAX_NOTE_CHARS));
        let mut review = Review::default();
        let fits = MAX_HISTORY_NOTE_BYTES / 8_000;
        for _ in 0..fits {
            review = review.apply(long.clone()).expect("within the bound");
        }
        assert_eq!(review.apply(long), Err(ReviewError::TooManyReviews));
    }

    #[test]
    fn alert_ids_are_stable_distinct_and_recognisable() {
        let shop = ShopId::parse("shop-a").expect("shop");
        let id = alert_id(&shop, "tx-1", "amount_exceeds_threshold");
        assert_eq!(id, alert_id(&shop, "tx-1", "amount_exceeds_threshold"));
        assert_ne!(id, alert_id(&shop, "tx-1", "velocity"));
        let other = ShopId::parse("shop-b").expect("shop");
        assert_ne!(id, alert_id(&other, "tx-1", "amount_exceeds_threshold"));
        assert!(is_alert_id(&id), "{id}");
        assert!(!is_alert_id("alt_../../etc"));
        assert!(!is_alert_id(&id.to_uppercase()));
    }

    #[test]
    fn names_round_trip() {
        crate::names::assert_names_round_trip::<ReviewStatus>();
        crate::names::assert_names_round_trip::<Verdict>();
    }
}
