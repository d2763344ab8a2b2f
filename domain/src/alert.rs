//! The original system's alert rule and what an alert is. `AlertPolicy` holds its thresholds
//! (1000 in any currency, or `ALERT_THRESHOLDS`) and becomes the default rule set; the rule
//! itself is judged by `rules` (a threshold rule), like every rule from a file: a transaction
//! whose amount *exceeds* its currency's threshold, compared in decimal, so 1000.01 alerts and
//! 1000.00 does not.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::money;
use super::names::Named;
use super::transaction::{ShopId, Transaction};

/// The one rule the original system had, under a stable name that subscribers can filter on.
pub const AMOUNT_RULE: &str = "amount_exceeds_threshold";
pub const ALERT_SUBJECT: &str = "Transaction Alert";
pub const DEFAULT_THRESHOLD: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    default_threshold: Decimal,
    per_currency: BTreeMap<String, Decimal>,
}

/// A rule that fired for one transaction: which, why in words, and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertDecision {
    #[cfg_attr(feature = "openapi", schema(example = "amount_exceeds_threshold"))]
    pub rule: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "amount 1000.01 USD exceeds the threshold 1000")
    )]
    pub reason: String,
    /// The numbers the rule compared, as exact strings (for the amount rule, `threshold`).
    #[cfg_attr(feature = "openapi", schema(example = json!({"threshold": "1000"})))]
    pub facts: BTreeMap<String, String>,
    /// The version of the rule set that raised it (`processor rules check` shows a set's).
    /// Absent on alerts raised before rule sets had versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "3f9a1c07be42"))]
    pub rules_version: Option<String>,
    /// What the rule asks of the shop: `notify` (the default), `review` or `block`.
    #[serde(default)]
    pub action: Action,
}

/// How strongly a rule's hit speaks: the record's `decision` is the strongest action among its
/// alerts, `allow` when none fired. Ordered weakest first, so the strongest is the maximum.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Only a record's decision: no live rule fired.
    Allow,
    #[default]
    Notify,
    Review,
    Block,
}

impl super::names::Named for Action {
    const ALL: &'static [Self] = &[Self::Allow, Self::Notify, Self::Review, Self::Block];
}

impl Action {
    /// The decision of a transaction whose live alerts asked for `actions`.
    pub fn strongest(actions: impl IntoIterator<Item = Action>) -> Action {
        actions.into_iter().max().unwrap_or(Action::Allow)
    }
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            default_threshold: DEFAULT_THRESHOLD,
            per_currency: BTreeMap::new(),
        }
    }
}

impl AlertPolicy {
    pub fn default_threshold(&self) -> Decimal {
        self.default_threshold
    }

    /// The per-currency thresholds that replace the default.
    pub fn overrides(&self) -> &BTreeMap<String, Decimal> {
        &self.per_currency
    }
}

/// An alert to publish: what happened, to whom, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub shop_id: ShopId,
    pub transaction: Transaction,
    pub decision: AlertDecision,
    /// The transaction's decision: the strongest action among all its alerts.
    pub transaction_decision: Action,
}

impl Alert {
    /// The message body subscribers receive.
    pub fn message(&self) -> serde_json::Value {
        serde_json::json!({
            "shop_id": self.shop_id,
            "transaction": self.transaction,
            "rule": self.decision.rule,
            "reason": self.decision.reason,
            "facts": self.decision.facts,
            "action": self.decision.action,
            "decision": self.transaction_decision,
            "rules_version": self.decision.rules_version,
        })
    }

    /// Attributes for subscribers' filters; names and spelling follow the original system.
    pub fn attributes(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("TransactionType", self.transaction.kind.display_name()),
            ("AlertType", self.decision.rule.clone()),
            ("Amount", self.transaction.amount.to_string()),
            ("Currency", self.transaction.currency.clone()),
            ("ShopId", self.shop_id.to_string()),
            ("Action", self.decision.action.name().to_owned()),
            ("Decision", self.transaction_decision.name().to_owned()),
        ])
    }
}

/// Reads overrides such as `USD=1000,JPY=150000`. An empty string keeps the defaults.
impl FromStr for AlertPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (currency, amount) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not CURRENCY=AMOUNT"))?;
            let currency = currency.trim();
            if !money::is_payment_currency(currency) {
                return Err(format!("{currency:?} is not an ISO 4217 currency code"));
            }
            let threshold = money::parse_config_amount(amount)?;
            if threshold.is_sign_negative() {
                return Err(format!("the threshold for {currency} must not be negative"));
            }
            policy.per_currency.insert(currency.to_owned(), threshold);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_transaction;
    use crate::rules::RuleSet;
    use chrono::Utc;

    fn transaction(amount: &str, currency: &str) -> Transaction {
        let body = format!(
            r#"{{"transaction_id":"t","amount":"{amount}","currency":"{currency}","timestamp":"2024-08-09T12:34:56Z"}}"#
        );
        parse_transaction(body.as_bytes(), Utc::now()).expect("valid test transaction")
    }

    /// The default rule set's decisions: the one amount rule, judged by `rules`.
    fn evaluate(policy: &AlertPolicy, transaction: &Transaction) -> Vec<AlertDecision> {
        RuleSet::from(policy.clone())
            .decide(transaction, None, &[], &[])
            .alerts
    }

    #[test]
    fn alerts_only_when_the_amount_strictly_exceeds_the_threshold() {
        let policy = AlertPolicy::default();
        assert_eq!(evaluate(&policy, &transaction("1000.00", "USD")), []);
        let decisions = evaluate(&policy, &transaction("1000.01", "USD"));
        assert_eq!(decisions.len(), 1);
        assert_eq!(decisions[0].rule, AMOUNT_RULE);
        assert_eq!(decisions[0].facts["threshold"], "1000");
        assert_eq!(
            decisions[0].reason,
            "amount 1000.01 USD exceeds the threshold 1000"
        );
    }

    #[test]
    fn per_currency_overrides_apply_and_others_keep_the_default() {
        let policy: AlertPolicy = "USD=1000, JPY=150000".parse().expect("valid overrides");
        assert!(evaluate(&policy, &transaction("150000", "JPY")).is_empty());
        assert_eq!(evaluate(&policy, &transaction("150001", "JPY")).len(), 1);
        assert_eq!(evaluate(&policy, &transaction("1000.001", "KWD")).len(), 1);
    }

    #[test]
    fn action_names_round_trip_and_the_strongest_wins() {
        crate::names::assert_names_round_trip::<Action>();
        assert_eq!(Action::strongest([]), Action::Allow);
        assert_eq!(
            Action::strongest([Action::Notify, Action::Block, Action::Review]),
            Action::Block
        );
    }

    #[test]
    fn malformed_overrides_are_refused() {
        for bad in ["USD", "usd=10", "USD=ten", "USD=-1", "ZZZ=5"] {
            assert!(bad.parse::<AlertPolicy>().is_err(), "{bad}");
        }
        assert_eq!("".parse::<AlertPolicy>(), Ok(AlertPolicy::default()));
    }
}
