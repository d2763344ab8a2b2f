//! The processor's settings, declared once and flattened into both binaries (`processor` and the
//! `api`, which runs the processor in-process on the embedded backend).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use infra::adapters::select::{Backend, Connector};
use infra::domain::{AlertPolicy, RuleSet};
use infra::settings::parse_seconds;

use crate::retry::{MAX_VISIBILITY, RetryPolicy};
use crate::rules_source;

#[derive(Debug, Clone, Args)]
pub struct ProcessorArgs {
    /// Per-currency thresholds of the default rule, e.g. `USD=1000,JPY=150000`; others use
    /// 1000. Not with a rules file, which states its own thresholds; with a rules parameter,
    /// they apply while the parameter does not exist.
    #[arg(long, env = "ALERT_THRESHOLDS", default_value = "", value_parser = str::parse::<AlertPolicy>)]
    pub alert_thresholds: AlertPolicy,

    /// A TOML file of alert rules (see the README, "Writing alert rules"); without it, the
    /// default rule (amount above 1000).
    #[arg(long, env = "RULES_FILE", conflicts_with = "rules_parameter")]
    pub rules_file: Option<PathBuf>,

    /// The SSM parameter holding the rules file's text (on AWS). Read at start; while the
    /// parameter does not exist, the default rule applies.
    #[arg(long, env = "RULES_PARAMETER")]
    pub rules_parameter: Option<String>,

    /// Messages leased per batch [default: 128 on the embedded queue; 10, SQS's maximum, on SQS].
    #[arg(long, env = "PROCESSOR_BATCH_SIZE")]
    pub processor_batch_size: Option<usize>,

    /// Messages of a batch processed at once [default: the batch size].
    #[arg(long, env = "PROCESSOR_CONCURRENCY")]
    pub processor_concurrency: Option<usize>,

    /// Longest wait, in seconds, between tries of a message that failed for a transient
    /// reason; waits start at 1 s and double up to this.
    #[arg(long, env = "RETRY_MAX_DELAY", default_value = "900", value_parser = parse_seconds)]
    pub retry_max_delay: Duration,

    /// Seconds a delivery holds its claim on publishing an alert; keep it above the processor's
    /// longest run (the Lambda timeout).
    #[arg(long, env = "ALERT_CLAIM_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub alert_claim_timeout: Duration,
}

/// How the worker loop drives the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub batch_size: usize,
    pub concurrency: usize,
    /// How long one receive waits for a message. The embedded queue wakes the receiver as soon
    /// as one arrives, so there the bound only decides how soon expired leases and shutdown
    /// are noticed; SQS long-polls for at most 20 s.
    pub receive_wait: Duration,
    pub retry: RetryPolicy,
}

impl ProcessorArgs {
    /// The defaults differ by queue, and only here: leasing from SQLite is cheap in big
    /// batches, while SQS returns at most 10 messages per receive.
    pub fn tuning(&self, queue: Backend) -> Tuning {
        let (default_batch, receive_wait) = match queue {
            Backend::Embedded => (128, Duration::from_secs(1)),
            Backend::Aws => (10, Duration::from_secs(20)),
        };
        let batch_size = self.processor_batch_size.unwrap_or(default_batch).max(1);
        Tuning {
            batch_size,
            concurrency: self.processor_concurrency.unwrap_or(batch_size).max(1),
            receive_wait,
            retry: RetryPolicy {
                max_delay: self.retry_max_delay.min(MAX_VISIBILITY),
            },
        }
    }

    /// The rules in force, read in full or refused; announced in the log and in `/metrics`.
    pub async fn rules(&self, ports: &Connector<'_>) -> anyhow::Result<RuleSet> {
        let rules = self.read_rules(ports).await?;
        rules_source::announce(&rules);
        Ok(rules)
    }

    /// The rules these settings name, read in full or refused.
    pub async fn read_rules(&self, ports: &Connector<'_>) -> anyhow::Result<RuleSet> {
        let customised = self.alert_thresholds != AlertPolicy::default();
        let rules = match (&self.rules_file, &self.rules_parameter) {
            (Some(_), _) if customised => anyhow::bail!(
                "ALERT_THRESHOLDS applies to the default rule only: with a rules file, put the \
                 thresholds in its `above_by_currency`"
            ),
            (Some(path), _) => rules_source::from_file(path)?,
            // The template names a parameter whether or not it exists yet: the thresholds are
            // the default rule's until it does.
            (None, Some(name)) => {
                let parameter = ports.parameter(name).await;
                rules_source::from_parameter(parameter.as_ref(), &self.alert_thresholds).await?
            }
            (None, None) => RuleSet::from(self.alert_thresholds.clone()),
        };
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        processor: ProcessorArgs,
    }

    #[test]
    fn defaults_follow_the_queue_and_flags_override_them() {
        let defaults = Cli::parse_from(["test"]).processor;
        assert_eq!(defaults.tuning(Backend::Embedded).batch_size, 128);
        assert_eq!(defaults.tuning(Backend::Aws).batch_size, 10);
        assert_eq!(defaults.tuning(Backend::Aws).concurrency, 10);
        let set = Cli::parse_from(["test", "--processor-batch-size", "7"]).processor;
        assert_eq!(set.tuning(Backend::Embedded).batch_size, 7);
        assert_eq!(set.tuning(Backend::Embedded).concurrency, 7);
    }
}
