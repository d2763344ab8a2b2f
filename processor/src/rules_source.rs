//! Where the alert rules come from: a file (`RULES_FILE`) locally, an SSM parameter
//! (`RULES_PARAMETER`) on AWS, the original rule when neither is set. Whatever is found must
//! read in full: a broken rule set stops the start, so that the processor never runs with fewer
//! rules than its operators wrote.

use std::path::Path;

use anyhow::Context;
use infra::domain::{AlertPolicy, RuleSet, RulesFileError};
use infra::ports::{Parameter, ParameterValue};

pub fn from_file(path: &Path) -> anyhow::Result<RuleSet> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the rules file {}: cannot be read", path.display()))?;
    Ok(RuleSet::from_toml(&path.display().to_string(), &text)?)
}

/// The rules in the parameter; the original rule (with `ALERT_THRESHOLDS`) when the parameter
/// does not exist yet, which is how a new stack starts.
pub async fn from_parameter(
    parameter: &dyn Parameter,
    default: &AlertPolicy,
) -> anyhow::Result<RuleSet> {
    let name = parameter.name();
    let value = parameter
        .read()
        .await
        .map_err(|error| anyhow::anyhow!("RULES_PARAMETER {name}: cannot be read: {error}"))?;
    match &value {
        Some(_) if *default != AlertPolicy::default() => tracing::warn!(
            parameter = name,
            "ALERT_THRESHOLDS is not used: the rules parameter states its own thresholds"
        ),
        Some(_) => {}
        None => tracing::warn!(
            parameter = name,
            "no rules parameter yet; the default rule applies"
        ),
    }
    Ok(of_parameter(name, value, default)?)
}

/// The rules a parameter's value states, versioned by the parameter's version too; the
/// original rule with `default`'s thresholds while it does not exist.
pub fn of_parameter(
    name: &str,
    value: Option<ParameterValue>,
    default: &AlertPolicy,
) -> Result<RuleSet, RulesFileError> {
    match value {
        Some(value) => {
            let rules = RuleSet::from_toml(&format!("SSM parameter {name}"), &value.text)?;
            Ok(rules.with_source_version(&value.version.to_string()))
        }
        None => Ok(RuleSet::from(default.clone())),
    }
}

/// Logs the rules in force and publishes them as `alert_rule{name, kind, rule, version}` = 1.
pub fn announce(rules: &RuleSet) {
    let version = rules.version().to_owned();
    for rule in rules.describe() {
        let (name, kind, description) = (rule.name, rule.kind, rule.description);
        tracing::info!(rule = %name, kind, %description, %version, "alert rule in force");
        metrics::gauge!(
            infra::telemetry::ALERT_RULE,
            "name" => name,
            "kind" => kind,
            "rule" => description,
            "version" => version.clone()
        )
        .set(1.0);
    }
}
