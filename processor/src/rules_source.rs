//! Where the alert rules come from: a file (`RULES_FILE`) locally, an SSM parameter
//! (`RULES_PARAMETER`) on AWS, the original rule when neither is set. Whatever is found must
//! read in full: a broken rule set stops the start, so that the processor never runs with fewer
//! rules than its operators wrote.

use std::path::Path;

use anyhow::Context;
use infra::domain::{AlertPolicy, RuleSet};
use infra::ports::Parameter;

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
    match parameter.read().await {
        Ok(Some(value)) => {
            if *default != AlertPolicy::default() {
                tracing::warn!(
                    parameter = name,
                    "ALERT_THRESHOLDS is not used: the rules parameter states its own thresholds"
                );
            }
            let rules = RuleSet::from_toml(&format!("SSM parameter {name}"), &value.text)?;
            Ok(rules.with_source_version(&value.version.to_string()))
        }
        Ok(None) => {
            tracing::warn!(
                parameter = name,
                "no rules parameter yet; the default rule applies"
            );
            Ok(RuleSet::from(default.clone()))
        }
        Err(error) => Err(anyhow::anyhow!(
            "RULES_PARAMETER {name}: cannot be read: {error}"
        )),
    }
}

/// Logs the rules in force and publishes them as `alert_rule{name, kind, rule, version}` = 1.
pub fn announce(rules: &RuleSet) {
    let version = rules.version().to_owned();
    for (name, kind, description) in rules.describe() {
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
