//! A transaction as the store keeps it: the transaction, whose it is, the facts of its
//! processing, and the state of its alert (kept with it so that the alert is sent once).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::alert::{Action, AlertDecision};
use super::envelope::Envelope;
use super::inbox::{ReviewStatus, Verdict};
use super::names::Named;
use super::rules::Decisions;
use super::transaction::{ShopId, Transaction};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub shop_id: ShopId,
    pub transaction: Transaction,
    pub request_id: String,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub accepted_at: DateTime<Utc>,
    /// The moment the processor decided it: strictly increasing per processor and read just
    /// before its count, so that a backtest replays in this order (`rules::backtest`).
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub processed_at: DateTime<Utc>,
    /// SHA-256 of the canonical transaction: equal for a redelivery, different for a conflict.
    pub payload_hash: String,
    /// One per rule that fired, each with its own progress.
    #[serde(default)]
    pub alerts: Vec<AlertStatus>,
    /// Re-sends of this id with another payload, refused: kept beside the record, which is
    /// never changed by them.
    #[serde(default)]
    pub conflicts: Conflicts,
    /// Shadow rules' hits: stored and counted, never published, never in the inbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_alerts: Vec<AlertDecision>,
}

/// What became of re-sends of a transaction id with a different payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conflicts {
    /// How many different requests re-sent this id with another payload (a redelivery of the
    /// same refused request is counted once).
    pub count: u32,
    /// The request id of the last refused re-send.
    pub last_request_id: Option<String>,
    /// When the last refused re-send was accepted by the API.
    #[serde(default, deserialize_with = "crate::rfc3339::read_option")]
    pub last_refused_at: Option<DateTime<Utc>>,
}

/// One refused re-send, as the processor reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedResend {
    pub request_id: String,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertStatus {
    #[serde(flatten)]
    pub decision: AlertDecision,
    pub state: AlertState,
    #[serde(default, deserialize_with = "crate::rfc3339::read_option")]
    pub sent_at: Option<DateTime<Utc>>,
    /// Where the shop's review of this alert stands (`GET /alerts/{alert_id}` has the history).
    #[serde(default)]
    pub review_status: ReviewStatus,
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// `pending` is written with the transaction; `sent` once the notifier has published it. A
/// delivery that finds `pending` claims the alert, publishes it and marks it sent; one that
/// finds `sent` does not publish (see `Store::claim_alert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Sent,
}

impl Named for AlertState {
    const ALL: &'static [Self] = &[Self::Pending, Self::Sent];
}

impl TransactionRecord {
    pub fn new(envelope: Envelope, decisions: Decisions, processed_at: DateTime<Utc>) -> Self {
        let payload_hash = payload_hash(&envelope.transaction);
        Self {
            shop_id: envelope.shop_id,
            transaction: envelope.transaction,
            request_id: envelope.request_id,
            accepted_at: envelope.accepted_at,
            processed_at,
            payload_hash,
            alerts: decisions
                .alerts
                .into_iter()
                .map(|decision| AlertStatus {
                    decision,
                    state: AlertState::Pending,
                    sent_at: None,
                    review_status: ReviewStatus::Open,
                    verdict: None,
                })
                .collect(),
            conflicts: Conflicts::default(),
            shadow_alerts: decisions.shadow,
        }
    }

    /// The strongest action among the alerts, or `allow`: derived, so that it can never
    /// disagree with them (records stored before actions existed read as `notify`).
    pub fn decision(&self) -> Action {
        Action::strongest(self.alerts.iter().map(|alert| alert.decision.action))
    }

    /// Applies one alert's progress as a store keeps it beside the record written first.
    /// Text that does not parse leaves the field as written.
    pub fn apply_alert_progress(&mut self, rule: &str, state: Option<&str>, sent_at: Option<&str>) {
        let Some(alert) = self.alerts.iter_mut().find(|a| a.decision.rule == rule) else {
            return;
        };
        if let Some(state) = state.and_then(AlertState::from_name) {
            alert.state = state;
        }
        alert.sent_at = sent_at
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc));
    }

    /// Applies one alert's review as a store keeps it beside the record.
    pub fn apply_review(&mut self, rule: &str, status: ReviewStatus, verdict: Option<Verdict>) {
        if let Some(alert) = self.alerts.iter_mut().find(|a| a.decision.rule == rule) {
            alert.review_status = status;
            alert.verdict = verdict;
        }
    }

    /// The alerts still to be published.
    pub fn pending_alerts(&self) -> impl Iterator<Item = &AlertStatus> {
        self.alerts
            .iter()
            .filter(|alert| alert.state == AlertState::Pending)
    }
}

/// Hash of the canonical JSON: field order is fixed by the struct, metadata is a sorted map and
/// amounts are scaled to the currency, so equal transactions hash equal however they were sent.
pub fn payload_hash(transaction: &Transaction) -> String {
    let canonical = serde_json::to_vec(transaction)
        .expect("a transaction is plain data with string keys, which always serialises");
    hex::encode(Sha256::digest(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_transaction;

    fn parse(body: &str) -> Transaction {
        parse_transaction(body.as_bytes(), Utc::now()).expect("valid")
    }

    #[test]
    fn alert_state_names_round_trip() {
        crate::names::assert_names_round_trip::<AlertState>();
    }

    #[test]
    fn the_same_transaction_sent_differently_hashes_the_same() {
        let a = parse(r#"{"transaction_id":1,"amount":100,"timestamp":"2024-08-09T12:34:56Z"}"#);
        let b = parse(
            r#"{"timestamp":"2024-08-09T14:34:56+02:00","amount":"100.00","transaction_id":"1","currency":"USD"}"#,
        );
        assert_eq!(payload_hash(&a), payload_hash(&b));
    }

    #[test]
    fn another_amount_hashes_differently() {
        let a = parse(r#"{"transaction_id":1,"amount":100,"timestamp":"2024-08-09T12:34:56Z"}"#);
        let b = parse(r#"{"transaction_id":1,"amount":100.01,"timestamp":"2024-08-09T12:34:56Z"}"#);
        assert_ne!(payload_hash(&a), payload_hash(&b));
    }
}
