//! Alert rules as configuration: amount thresholds, and counts, sums and distinct payment
//! fingerprints over time windows on the transaction's own timestamp.
//!
//! A windowed rule needs state the store keeps: counters keyed by (rule, key, bucket). The
//! processor asks [`RuleSet::windowed_checks`] what a transaction adds to which counters, has
//! the store add it once per transaction (the store port's `count_once`), reads the
//! windows back, and asks [`RuleSet::decide`] which rules fire. This module does no I/O.

pub mod backtest;
mod file;
mod window;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::alert::{AMOUNT_RULE, Action, AlertDecision, AlertPolicy};
use super::lists::ListLookup;
use super::names::Named;
use super::transaction::{Transaction, TransactionType};

pub use file::RulesFileError;
pub use window::Window;

/// How far behind the processing time a transaction's timestamp may be and still be counted,
/// unless the rules file says otherwise.
pub const DEFAULT_LATE_ARRIVAL: chrono::Duration = chrono::Duration::hours(24);
/// At most this many rules: one transaction's counting is one DynamoDB transaction of at most
/// 100 items (one marker and one counter per windowed rule).
pub const MAX_RULES: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    late_arrival: chrono::Duration,
    /// Which rule set this is: a digest of the rules file's text (of the rules themselves for
    /// the default set), and where the text has versions of its own (SSM), `@<version>`.
    version: String,
}

/// The first 12 hex digits of the SHA-256 of `text`: enough to tell rule sets apart.
fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..6])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable, unique; the alert's `rule` and the SNS attribute `AlertType`.
    pub name: String,
    /// The transaction types the rule looks at; empty: all.
    pub types: Vec<TransactionType>,
    /// The currency the rule looks at; `None`: all.
    pub currency: Option<String>,
    pub kind: RuleKind,
    /// What a hit asks of the shop; the alert carries it.
    pub action: Action,
    /// A shadow rule's hits are stored on the record and counted, never alerted.
    pub mode: RuleMode,
}

/// Whether a rule's hits are alerts (`live`), or only stored and counted (`shadow`), to learn
/// what a rule would do on real traffic before it goes live. Promoting it is changing the mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    #[default]
    Live,
    Shadow,
}

impl Named for RuleMode {
    const ALL: &'static [Self] = &[Self::Live, Self::Shadow];
}

/// The rules that fired for one transaction: live rules' alerts, and shadow rules' hits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub alerts: Vec<AlertDecision>,
    pub shadow: Vec<AlertDecision>,
}

/// Live alerts only.
impl From<Vec<AlertDecision>> for Decisions {
    fn from(alerts: Vec<AlertDecision>) -> Self {
        Self {
            alerts,
            shadow: Vec::new(),
        }
    }
}

impl Decisions {
    /// The transaction's decision: the strongest action among its alerts, or `allow`.
    pub fn decision(&self) -> Action {
        Action::strongest(self.alerts.iter().map(|alert| alert.action))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// The amount exceeds `above` (or the currency's own figure).
    Threshold {
        above: Decimal,
        above_by_currency: BTreeMap<String, Decimal>,
    },
    /// The count or the sum of amounts per key within the window exceeds `above`.
    Velocity {
        key: CounterKey,
        measure: Measure,
        window: Window,
        above: Decimal,
    },
    /// The distinct payment fingerprints per customer within the window exceed `above`.
    Distinct { window: Window, above: u64 },
    /// The transaction's `field` holds a value in the shop's list named `list`.
    List { list: String, field: ListField },
}

/// What a list rule looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListField {
    CustomerId,
    PaymentFingerprint,
    /// `metadata.<key>`.
    Metadata(String),
}

impl ListField {
    fn value_in<'t>(&self, transaction: &'t Transaction) -> Option<&'t String> {
        match self {
            Self::CustomerId => transaction.customer_id.as_ref(),
            Self::PaymentFingerprint => transaction.payment_fingerprint.as_ref(),
            Self::Metadata(key) => transaction.metadata.as_ref()?.get(key),
        }
    }
}

impl std::fmt::Display for ListField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CustomerId => f.write_str("customer_id"),
            Self::PaymentFingerprint => f.write_str("payment_fingerprint"),
            Self::Metadata(key) => write!(f, "metadata.{key}"),
        }
    }
}

/// What a velocity rule counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterKey {
    CustomerId,
    PaymentFingerprint,
    Shop,
}

impl Named for CounterKey {
    const ALL: &'static [Self] = &[Self::CustomerId, Self::PaymentFingerprint, Self::Shop];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Count,
    Sum,
}

impl Named for Measure {
    const ALL: &'static [Self] = &[Self::Count, Self::Sum];
}

/// One counter a transaction adds to: the rule, the key's value, and the bucket (its start,
/// in Unix seconds) that holds the transaction's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterId {
    pub rule: String,
    pub key: String,
    pub bucket: i64,
}

/// What one transaction adds to one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub counter: CounterId,
    pub amount: Decimal,
    /// For a distinct rule, the member counted (the payment fingerprint).
    pub member: Option<String>,
    /// After this the counter is no window's part any more and may be dropped.
    pub expires_at: DateTime<Utc>,
}

/// The buckets of one (rule, key) window, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQuery {
    pub rule: String,
    pub key: String,
    pub buckets: Vec<i64>,
}

/// A window's totals as the store reads them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowTotal {
    pub count: u64,
    pub sum: Decimal,
    pub members: BTreeSet<String>,
}

/// One windowed rule applied to one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowedCheck {
    rule: usize,
    pub contribution: Contribution,
    pub query: WindowQuery,
}

/// One windowed rule's part in one transaction: the counter it adds to, as
/// [`RuleSet::windowed_parts`] borrows it.
#[derive(Debug, Clone, Copy)]
pub struct WindowedPart<'a> {
    /// The rule's index in its set.
    pub rule: usize,
    pub name: &'a str,
    pub key: &'a str,
    /// For a distinct rule, the member counted (the payment fingerprint).
    pub member: Option<&'a str>,
    pub window: &'a Window,
    /// The start of the bucket that holds the transaction, in Unix seconds.
    pub bucket: i64,
    pub amount: Decimal,
    pub expires_at: DateTime<Utc>,
}

/// What the store must do for one transaction's windowed rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counting {
    pub checks: Vec<WindowedCheck>,
    /// Until when the store must remember that this transaction was counted: past the last
    /// moment it could still be counted (its timestamp plus the late-arrival bound).
    pub remember_until: DateTime<Utc>,
}

impl Counting {
    pub fn contributions(&self) -> Vec<Contribution> {
        self.checks.iter().map(|c| c.contribution.clone()).collect()
    }

    pub fn queries(&self) -> Vec<WindowQuery> {
        self.checks.iter().map(|c| c.query.clone()).collect()
    }
}

impl Default for RuleSet {
    /// The original system's rule: an amount above 1000, in any currency.
    fn default() -> Self {
        Self::from(AlertPolicy::default())
    }
}

/// The default rule set with the per-currency overrides of `ALERT_THRESHOLDS`.
impl From<AlertPolicy> for RuleSet {
    fn from(policy: AlertPolicy) -> Self {
        let rules = vec![Rule {
            name: AMOUNT_RULE.to_owned(),
            types: Vec::new(),
            currency: None,
            kind: RuleKind::Threshold {
                above: policy.default_threshold(),
                above_by_currency: policy.overrides().clone(),
            },
            action: Action::Notify,
            mode: RuleMode::Live,
        }];
        let described: Vec<String> = rules.iter().map(Rule::describe).collect();
        Self {
            rules,
            late_arrival: DEFAULT_LATE_ARRIVAL,
            version: format!("default-{}", digest(&described.join("\n"))),
        }
    }
}

impl RuleSet {
    /// Reads a rules file's text; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, RulesFileError> {
        let (rules, late_arrival) = file::parse(origin, text)?;
        Ok(Self {
            rules,
            late_arrival,
            version: digest(text),
        })
    }

    /// The same rules, their version qualified by the version of where the text came from (an
    /// SSM parameter's): `<digest>@<version>`.
    pub fn with_source_version(mut self, source_version: &str) -> Self {
        self.version = format!("{}@{source_version}", self.version);
        self
    }

    /// Which rule set this is; every alert it raises carries it.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn late_arrival(&self) -> chrono::Duration {
        self.late_arrival
    }

    pub fn has_windowed_rules(&self) -> bool {
        self.rules.iter().any(Rule::is_windowed)
    }

    pub fn has_list_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| matches!(rule.kind, RuleKind::List { .. }))
    }

    /// The list look-ups the transaction's `list` rules need, for the store to answer before
    /// [`Self::decide`].
    pub fn list_lookups(&self, transaction: &Transaction) -> Vec<ListLookup> {
        self.rules
            .iter()
            .filter(|rule| rule.applies_to(transaction))
            .filter_map(|rule| match &rule.kind {
                RuleKind::List { list, field } => Some(ListLookup {
                    list: list.clone(),
                    value: field.value_in(transaction)?.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether the transaction is behind `now` by more than the late-arrival bound.
    pub fn is_late(&self, transaction: &Transaction, now: DateTime<Utc>) -> bool {
        transaction.timestamp < now - self.late_arrival
    }

    /// What the transaction adds to the windowed rules' counters. `None` when no windowed rule
    /// applies, or when the transaction is later than the late-arrival bound (its windows may
    /// already be gone, and counting it would change decisions already taken).
    pub fn windowed_checks(
        &self,
        transaction: &Transaction,
        shop_id: &str,
        now: DateTime<Utc>,
    ) -> Option<Counting> {
        if self.is_late(transaction, now) {
            return None;
        }
        let checks: Vec<WindowedCheck> = self
            .windowed_parts(transaction, shop_id)
            .map(|part| WindowedCheck {
                rule: part.rule,
                contribution: Contribution {
                    counter: CounterId {
                        rule: part.name.to_owned(),
                        key: part.key.to_owned(),
                        bucket: part.bucket,
                    },
                    amount: part.amount,
                    member: part.member.map(str::to_owned),
                    expires_at: part.expires_at,
                },
                query: WindowQuery {
                    rule: part.name.to_owned(),
                    key: part.key.to_owned(),
                    buckets: part.window.buckets_ending_at(part.bucket),
                },
            })
            .collect();
        (!checks.is_empty()).then(|| Counting {
            checks,
            remember_until: transaction.timestamp + self.late_arrival + chrono::Duration::hours(1),
        })
    }

    /// The windowed rules that apply to the transaction, each with the counter it adds to,
    /// borrowed from the rules and the transaction: the one place that says which windows a
    /// transaction is in, for the processor's [`Self::windowed_checks`] and for backtests,
    /// which replay millions and cannot pay for owned copies. Lateness is the caller's test.
    pub fn windowed_parts<'a>(
        &'a self,
        transaction: &'a Transaction,
        shop_id: &'a str,
    ) -> impl Iterator<Item = WindowedPart<'a>> {
        (0..self.rules.len())
            .filter_map(move |index| self.windowed_part(index, transaction, shop_id))
    }

    /// The part of the rule at `index` in the transaction, if it is a windowed rule that
    /// applies to it.
    pub fn windowed_part<'a>(
        &'a self,
        index: usize,
        transaction: &'a Transaction,
        shop_id: &'a str,
    ) -> Option<WindowedPart<'a>> {
        let rule = self.rules.get(index)?;
        if !rule.applies_to(transaction) {
            return None;
        }
        let (window, key, member) = match &rule.kind {
            RuleKind::Threshold { .. } | RuleKind::List { .. } => return None,
            RuleKind::Velocity { key, window, .. } => {
                (window, key_value(*key, transaction, shop_id)?, None)
            }
            RuleKind::Distinct { window, .. } => (
                window,
                transaction.customer_id.as_deref()?,
                Some(transaction.payment_fingerprint.as_deref()?),
            ),
        };
        let bucket = window.bucket_of(transaction.timestamp);
        Some(WindowedPart {
            rule: index,
            name: &rule.name,
            key,
            member,
            window,
            bucket,
            amount: transaction.amount,
            expires_at: window.bucket_expiry(bucket) + self.late_arrival,
        })
    }

    /// Every rule that fires: thresholds from the transaction alone, list rules from the
    /// look-ups the store found (`listed`), windowed rules from the totals the store read for
    /// `counting`'s queries (in their order).
    pub fn decide(
        &self,
        transaction: &Transaction,
        counting: Option<&Counting>,
        totals: &[WindowTotal],
        listed: &[ListLookup],
    ) -> Decisions {
        let windows = counting
            .into_iter()
            .flat_map(|counting| counting.checks.iter().map(|check| check.rule))
            .zip(totals);
        self.decide_on_windows(transaction, windows, listed)
    }

    /// [`Self::decide`], with each windowed rule's total given by the rule's index: a window
    /// left out is one under its limit.
    pub fn decide_on_windows<'t>(
        &self,
        transaction: &Transaction,
        windows: impl IntoIterator<Item = (usize, &'t WindowTotal)>,
        listed: &[ListLookup],
    ) -> Decisions {
        let mut fired: Vec<(&Rule, AlertDecision)> = self
            .rules
            .iter()
            .filter(|rule| rule.applies_to(transaction))
            .filter_map(|rule| {
                let decision = rule
                    .threshold_decision(transaction)
                    .or_else(|| rule.list_decision(transaction, listed))?;
                Some((rule, decision))
            })
            .collect();
        for (index, total) in windows {
            let rule = &self.rules[index];
            if let Some(decision) = rule.window_decision(total) {
                fired.push((rule, decision));
            }
        }
        let mut decisions = Decisions::default();
        for (rule, mut decision) in fired {
            decision.rules_version = Some(self.version.clone());
            decision.action = rule.action;
            match rule.mode {
                RuleMode::Live => decisions.alerts.push(decision),
                RuleMode::Shadow => decisions.shadow.push(decision),
            }
        }
        decisions
    }

    /// One summary per rule, in the file's order: for the start-up log, the `/metrics` labels
    /// and `GET /rules`.
    pub fn describe(&self) -> Vec<RuleSummary> {
        self.rules
            .iter()
            .map(|rule| RuleSummary {
                name: rule.name.clone(),
                kind: rule.kind_name(),
                mode: rule.mode.name(),
                action: rule.action.name(),
                description: rule.describe(),
            })
            .collect()
    }
}

/// A rule as people read it: what it is called, what it looks at and what a hit does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleSummary {
    pub name: String,
    /// `threshold`, `velocity`, `distinct`, `sum` or `list`.
    pub kind: &'static str,
    /// `live` (hits are alerts) or `shadow` (hits are only stored and counted).
    pub mode: &'static str,
    /// What a hit asks of the shop: `notify`, `review` or `block`.
    pub action: &'static str,
    /// The rule in one line, e.g. `count per payment_fingerprint in 10m above 5`.
    pub description: String,
}

fn key_value<'a>(
    key: CounterKey,
    transaction: &'a Transaction,
    shop_id: &'a str,
) -> Option<&'a str> {
    match key {
        CounterKey::CustomerId => transaction.customer_id.as_deref(),
        CounterKey::PaymentFingerprint => transaction.payment_fingerprint.as_deref(),
        CounterKey::Shop => Some(shop_id),
    }
}

impl Rule {
    /// Whether the rule counts transactions in windows.
    pub fn is_windowed(&self) -> bool {
        matches!(
            self.kind,
            RuleKind::Velocity { .. } | RuleKind::Distinct { .. }
        )
    }

    fn applies_to(&self, transaction: &Transaction) -> bool {
        (self.types.is_empty() || self.types.contains(&transaction.kind))
            && self
                .currency
                .as_ref()
                .is_none_or(|currency| *currency == transaction.currency)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Velocity { .. } => "velocity",
            RuleKind::Distinct { .. } => "distinct",
            RuleKind::List { .. } => "list",
        }
    }

    /// A list rule fires when the store found the transaction's value in the list. The value
    /// itself is not repeated in the alert: the transaction is beside it.
    fn list_decision(
        &self,
        transaction: &Transaction,
        listed: &[ListLookup],
    ) -> Option<AlertDecision> {
        let RuleKind::List { list, field } = &self.kind else {
            return None;
        };
        let value = field.value_in(transaction)?;
        listed
            .iter()
            .any(|found| found.list == *list && found.value == *value)
            .then(|| AlertDecision {
                rule: self.name.clone(),
                reason: format!("{field} is on the list {list}"),
                facts: BTreeMap::from([
                    ("list".to_owned(), list.clone()),
                    ("field".to_owned(), field.to_string()),
                ]),
                rules_version: None,
                action: Action::Notify,
            })
    }

    fn threshold_decision(&self, transaction: &Transaction) -> Option<AlertDecision> {
        let RuleKind::Threshold {
            above,
            above_by_currency,
        } = &self.kind
        else {
            return None;
        };
        let threshold = above_by_currency
            .get(&transaction.currency)
            .copied()
            .unwrap_or(*above);
        (transaction.amount > threshold).then(|| AlertDecision {
            rule: self.name.clone(),
            reason: format!(
                "amount {} {} exceeds the threshold {threshold}",
                transaction.amount, transaction.currency
            ),
            facts: BTreeMap::from([("threshold".to_owned(), threshold.to_string())]),
            rules_version: None,
            action: Action::Notify,
        })
    }

    /// The rule's decision on a window's total. The words are written only when it fires:
    /// most windows stay under their limit, and formatting them was most of a check's cost.
    fn window_decision(&self, total: &WindowTotal) -> Option<AlertDecision> {
        let (observed, limit, window) = match &self.kind {
            RuleKind::Threshold { .. } | RuleKind::List { .. } => return None,
            RuleKind::Velocity {
                measure: Measure::Count,
                window,
                above,
                ..
            } => (Decimal::from(total.count), *above, window),
            RuleKind::Velocity {
                measure: Measure::Sum,
                window,
                above,
                ..
            } => (total.sum, *above, window),
            RuleKind::Distinct { window, above } => (
                Decimal::from(total.members.len() as u64),
                Decimal::from(*above),
                window,
            ),
        };
        if observed <= limit {
            return None;
        }
        let reason = match &self.kind {
            RuleKind::Velocity {
                key,
                measure: Measure::Count,
                ..
            } => format!(
                "{} transactions for this {} in {window}, limit {limit}",
                total.count,
                key.name()
            ),
            RuleKind::Velocity { key, .. } => format!(
                "{} {} for this {} in {window}, limit {limit}",
                total.sum,
                self.currency.as_deref().unwrap_or_default(),
                key.name()
            ),
            _ => format!(
                "{} distinct payment fingerprints for this customer in {window}, limit {limit}",
                total.members.len()
            ),
        };
        Some(AlertDecision {
            rule: self.name.clone(),
            reason,
            facts: BTreeMap::from([
                ("observed".to_owned(), observed.to_string()),
                ("limit".to_owned(), limit.to_string()),
                ("window".to_owned(), window.to_string()),
                ("transactions_in_window".to_owned(), total.count.to_string()),
            ]),
            rules_version: None,
            action: Action::Notify,
        })
    }

    fn describe(&self) -> String {
        let scope = match (&self.currency, self.types.is_empty()) {
            (None, true) => String::new(),
            (currency, _) => {
                let types: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
                format!(
                    " [{}{}]",
                    currency.as_deref().unwrap_or("any currency"),
                    if types.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", types.join("|"))
                    }
                )
            }
        };
        let what = match &self.kind {
            RuleKind::Threshold {
                above,
                above_by_currency,
            } => {
                let overrides: Vec<String> = above_by_currency
                    .iter()
                    .map(|(currency, above)| format!("{currency} {above}"))
                    .collect();
                if overrides.is_empty() {
                    format!("amount above {above}")
                } else {
                    format!("amount above {above} ({})", overrides.join(", "))
                }
            }
            RuleKind::Velocity {
                key,
                measure,
                window,
                above,
            } => format!(
                "{} per {} in {window} above {above}",
                measure.name(),
                key.name()
            ),
            RuleKind::Distinct { window, above } => {
                format!("distinct payment fingerprints per customer in {window} above {above}")
            }
            RuleKind::List { list, field } => format!("{field} in the list {list}"),
        };
        let action = match self.action {
            Action::Notify => String::new(),
            action => format!(", then {}", action.name()),
        };
        let mode = match self.mode {
            RuleMode::Live => "",
            RuleMode::Shadow => " (shadow)",
        };
        format!("{what}{scope}{action}{mode}")
    }
}

#[cfg(test)]
mod tests;
