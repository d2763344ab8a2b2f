//! The rules file: TOML, one `[[rule]]` table per rule. Every mistake stops the start with
//! where (file, line, rule) and what; a rule set is never silently weaker than written.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{CounterKey, ListField, MAX_RULES, Measure, Rule, RuleKind, RuleMode, Window};
use crate::alert::Action;
use crate::money;
use crate::names::Named;
use crate::transaction::{TransactionType, identifier_rule, is_identifier};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct RulesFileError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    late_arrival: Option<String>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    kind: Option<String>,
    above: Option<toml::Value>,
    above_by_currency: Option<BTreeMap<String, toml::Value>>,
    types: Option<Vec<String>>,
    currency: Option<String>,
    key: Option<String>,
    measure: Option<String>,
    window: Option<String>,
    action: Option<String>,
    mode: Option<String>,
    list: Option<String>,
    field: Option<String>,
}

/// The rules of a file's text, and its late-arrival bound.
pub fn parse(origin: &str, text: &str) -> Result<(Vec<Rule>, chrono::Duration), RulesFileError> {
    let fail = |line: Option<usize>, message: String| RulesFileError {
        origin: origin.to_owned(),
        line,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| line_of(text, span.start));
        fail(line, error.message().trim().to_owned())
    })?;
    let late_arrival = match raw.late_arrival {
        None => super::DEFAULT_LATE_ARRIVAL,
        Some(text) => text
            .parse::<Window>()
            .map(|window| window.length())
            .map_err(|message| fail(None, format!("late_arrival: {message}")))?,
    };
    if raw.rule.is_empty() {
        return Err(fail(
            None,
            "has no [[rule]]; without a rules file the default rule applies".to_owned(),
        ));
    }
    if raw.rule.len() > MAX_RULES {
        return Err(fail(
            None,
            format!("has {} rules; at most {MAX_RULES}", raw.rule.len()),
        ));
    }
    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(raw.rule.len());
    for (index, spanned) in raw.rule.into_iter().enumerate() {
        let line = Some(line_of(text, spanned.span().start));
        let raw = spanned.into_inner();
        let label = match &raw.name {
            // A name is echoed only as far as a valid one reaches: errors stay short.
            Some(name) => format!(
                "rule {} ({:?})",
                index + 1,
                name.chars().take(64).collect::<String>()
            ),
            None => format!("rule {}", index + 1),
        };
        let rule = read_rule(raw).map_err(|message| fail(line, format!("{label}: {message}")))?;
        if !names.insert(rule.name.clone()) {
            return Err(fail(line, format!("{label}: the name is used twice")));
        }
        rules.push(rule);
    }
    Ok((rules, late_arrival))
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn read_rule(raw: RawRule) -> Result<Rule, String> {
    let name = raw.name.clone().ok_or("`name` is missing")?;
    if !is_identifier(&name) {
        return Err(format!("`name` {}", identifier_rule()));
    }
    let kind_name = raw
        .kind
        .clone()
        .ok_or("`kind` is missing: threshold, velocity, distinct or list".to_owned())?;
    let types = raw
        .types
        .iter()
        .flatten()
        .map(|name| {
            TransactionType::from_name(name).ok_or_else(|| {
                format!(
                    "`types`: {name:?} is not one of {}",
                    TransactionType::names().join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let currency = raw
        .currency
        .clone()
        .map(|currency| {
            if money::is_payment_currency(&currency) {
                Ok(currency)
            } else {
                Err(format!(
                    "`currency`: {currency:?} is not an ISO 4217 currency code"
                ))
            }
        })
        .transpose()?;
    let kind = match kind_name.as_str() {
        "threshold" => read_threshold(&raw)?,
        "velocity" => read_velocity(&raw, currency.is_some())?,
        "distinct" => read_distinct(&raw)?,
        "list" => read_list(&raw)?,
        other => {
            return Err(format!(
                "`kind` {other:?} is not one of threshold, velocity, distinct, list"
            ));
        }
    };
    Ok(Rule {
        name,
        types,
        currency,
        kind,
        action: action(raw.action.as_deref())?,
        mode: named("mode", raw.mode.as_deref(), RuleMode::Live)?,
    })
}

/// A rule's `action`: `allow` is a transaction's decision when no rule fired, not a rule's.
fn action(text: Option<&str>) -> Result<Action, String> {
    match text {
        None => Ok(Action::Notify),
        Some(name) => match Action::from_name(name) {
            Some(action) if action != Action::Allow => Ok(action),
            _ => Err(format!(
                "`action` {name:?} is not one of notify, review, block"
            )),
        },
    }
}

fn named<T: Named>(field: &str, text: Option<&str>, default: T) -> Result<T, String> {
    match text {
        None => Ok(default),
        Some(name) => T::from_name(name)
            .ok_or_else(|| format!("`{field}` {name:?} is not one of {}", T::names().join(", "))),
    }
}

/// Fields a kind does not use are refused, so that a misplaced one is not silently ignored.
fn refuse_fields(kind: &str, present: &[(&str, bool)]) -> Result<(), String> {
    match present.iter().find(|(_, is_set)| *is_set) {
        Some((field, _)) => Err(format!("`{field}` does not apply to a {kind} rule")),
        None => Ok(()),
    }
}

fn read_threshold(raw: &RawRule) -> Result<RuleKind, String> {
    refuse_fields(
        "threshold",
        &[
            ("list", raw.list.is_some()),
            ("field", raw.field.is_some()),
            ("key", raw.key.is_some()),
            ("measure", raw.measure.is_some()),
            ("window", raw.window.is_some()),
        ],
    )?;
    let above = amount("above", raw.above.as_ref().ok_or("`above` is missing")?)?;
    let above_by_currency = raw
        .above_by_currency
        .iter()
        .flatten()
        .map(|(currency, value)| {
            if !money::is_payment_currency(currency) {
                return Err(format!(
                    "`above_by_currency`: {currency:?} is not an ISO 4217 currency code"
                ));
            }
            Ok((
                currency.clone(),
                amount(&format!("above_by_currency.{currency}"), value)?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(RuleKind::Threshold {
        above,
        above_by_currency,
    })
}

fn read_velocity(raw: &RawRule, has_currency: bool) -> Result<RuleKind, String> {
    refuse_fields(
        "velocity",
        &[
            ("above_by_currency", raw.above_by_currency.is_some()),
            ("list", raw.list.is_some()),
            ("field", raw.field.is_some()),
        ],
    )?;
    let key_name = raw.key.as_deref().ok_or_else(|| {
        format!(
            "`key` is missing: one of {}",
            CounterKey::names().join(", ")
        )
    })?;
    let key = CounterKey::from_name(key_name).ok_or_else(|| {
        format!(
            "`key` {key_name:?} is not one of {}",
            CounterKey::names().join(", ")
        )
    })?;
    let measure = match raw.measure.as_deref() {
        None => Measure::Count,
        Some(name) => Measure::from_name(name)
            .ok_or_else(|| format!("`measure` {name:?} is not one of count, sum"))?,
    };
    let window = window(raw)?;
    let above = raw.above.as_ref().ok_or("`above` is missing")?;
    let above = match measure {
        Measure::Count => Decimal::from(whole("above", above)?),
        Measure::Sum if !has_currency => {
            return Err(
                "a sum needs `currency`: amounts in different currencies do not add up".to_owned(),
            );
        }
        Measure::Sum => amount("above", above)?,
    };
    Ok(RuleKind::Velocity {
        key,
        measure,
        window,
        above,
    })
}

fn read_distinct(raw: &RawRule) -> Result<RuleKind, String> {
    refuse_fields(
        "distinct",
        &[
            ("above_by_currency", raw.above_by_currency.is_some()),
            ("measure", raw.measure.is_some()),
            ("list", raw.list.is_some()),
            ("field", raw.field.is_some()),
        ],
    )?;
    if let Some(key) = &raw.key
        && key != "customer_id"
    {
        return Err(format!(
            "`key` {key:?}: a distinct rule counts payment fingerprints per customer_id"
        ));
    }
    Ok(RuleKind::Distinct {
        window: window(raw)?,
        above: whole("above", raw.above.as_ref().ok_or("`above` is missing")?)?,
    })
}

fn read_list(raw: &RawRule) -> Result<RuleKind, String> {
    refuse_fields(
        "list",
        &[
            ("above", raw.above.is_some()),
            ("above_by_currency", raw.above_by_currency.is_some()),
            ("key", raw.key.is_some()),
            ("measure", raw.measure.is_some()),
            ("window", raw.window.is_some()),
        ],
    )?;
    let list = raw
        .list
        .clone()
        .ok_or("`list` is missing: the name of the shop's list")?;
    crate::lists::check_list_name(&list).map_err(|rule| format!("`list` {rule}"))?;
    let fields = "customer_id, payment_fingerprint or metadata.<key>";
    let field = match raw.field.as_deref() {
        None => return Err(format!("`field` is missing: {fields}")),
        Some("customer_id") => ListField::CustomerId,
        Some("payment_fingerprint") => ListField::PaymentFingerprint,
        Some(other) => match other.strip_prefix("metadata.") {
            Some(key)
                if (1..=crate::parse::MAX_METADATA_KEY_CHARS).contains(&key.chars().count()) =>
            {
                ListField::Metadata(key.to_owned())
            }
            _ => return Err(format!("`field` {other:?} is not one of {fields}")),
        },
    };
    Ok(RuleKind::List { list, field })
}

fn window(raw: &RawRule) -> Result<Window, String> {
    raw.window
        .as_deref()
        .ok_or("`window` is missing: such as 10m, 1h or 1d")?
        .parse()
        .map_err(|message| format!("`window`: {message}"))
}

/// An amount: a string holding an exact decimal, or an integer. A TOML float is refused, as
/// money never passes through binary floating point.
fn amount(field: &str, value: &toml::Value) -> Result<Decimal, String> {
    let parsed = match value {
        toml::Value::String(text) => money::parse_config_amount(text),
        toml::Value::Integer(number) => Ok(Decimal::from(*number)),
        toml::Value::Float(_) => {
            Err("write amounts as strings (\"1000.50\") or integers, never floats".to_owned())
        }
        _ => Err("must be an amount such as \"1000.50\"".to_owned()),
    }
    .map_err(|message| format!("`{field}`: {message}"))?;
    if parsed.is_sign_negative() {
        return Err(format!("`{field}` must not be negative"));
    }
    Ok(parsed)
}

fn whole(field: &str, value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(number) if *number >= 0 => Ok(*number as u64),
        _ => Err(format!("`{field}` must be a whole number, 0 or more")),
    }
}
