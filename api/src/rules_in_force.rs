//! The rules the processor runs, for `GET /rules`, read where the processor reads them and with
//! its settings (`ProcessorArgs`). A rules file, or the default rule, is read once at start,
//! as the processor reads it. An SSM parameter is read again when the last read is older than
//! [`REREAD_AFTER`]: the processor reads it at each cold start, so the parameter's text is what
//! every processor starting now runs. One that started before a change runs the version its
//! alerts carry until it is recycled.

use std::sync::Arc;
use std::time::Duration;

use infra::adapters::select::Connector;
use infra::domain::{AlertPolicy, RuleSet, RuleSummary};
use infra::ports::{Parameter, PortError};
use processor::rules_source;
use processor::settings::ProcessorArgs;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use utoipa::ToSchema;

/// How long a read of the rules parameter is reused: SSM allows 40 reads a second by default,
/// shared with every cold start of the processor.
pub const REREAD_AFTER: Duration = Duration::from_secs(30);
/// Longest wait for the parameter store.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a failed read is answered as it is before the parameter store is asked again, so
/// that requests during an outage do not each wait for a read of their own.
const REREAD_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// What `GET /rules` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RulesInForce {
    /// Where the rules are read from: `file <path>`, `SSM parameter <name>`, or `default` (the
    /// original rule, amount above a threshold).
    pub source: String,
    /// The version every alert raised by these rules carries; absent when they do not read.
    pub version: Option<String>,
    /// The rules, in the file's order.
    pub rules: Vec<RuleSummary>,
    /// Why the source does not read, when it does not: a processor starting now refuses to
    /// start, and one already running keeps the rules it read when it started.
    pub unreadable: Option<String>,
}

impl RulesInForce {
    fn read(source: String, rules: Result<RuleSet, String>) -> Self {
        match rules {
            Ok(rules) => Self {
                source,
                version: Some(rules.version().to_owned()),
                rules: rules.describe(),
                unreadable: None,
            },
            Err(error) => Self {
                source,
                version: None,
                rules: Vec::new(),
                unreadable: Some(error),
            },
        }
    }
}

/// Where `GET /rules` finds them.
#[derive(Clone)]
pub enum RulesSource {
    /// Read once, at start.
    Fixed(Arc<RulesInForce>),
    /// Read again after [`REREAD_AFTER`].
    Parameter(Arc<ParameterRules>),
}

pub struct ParameterRules {
    parameter: Arc<dyn Parameter>,
    /// The default rule's thresholds, which apply while the parameter does not exist.
    default: AlertPolicy,
    last: Mutex<Option<LastRead>>,
}

struct LastRead {
    at: Instant,
    outcome: Result<Arc<RulesInForce>, PortError>,
}

impl LastRead {
    fn fresh(&self) -> bool {
        let reuse_for = match self.outcome {
            Ok(_) => REREAD_AFTER,
            Err(_) => REREAD_AFTER_FAILURE,
        };
        self.at.elapsed() < reuse_for
    }
}

impl RulesSource {
    /// The source the processor's settings name.
    pub async fn from_settings(settings: &ProcessorArgs, ports: &Connector<'_>) -> Self {
        if let (None, Some(name)) = (&settings.rules_file, &settings.rules_parameter) {
            return Self::Parameter(Arc::new(ParameterRules {
                parameter: ports.parameter(name).await,
                default: settings.alert_thresholds.clone(),
                last: Mutex::new(None),
            }));
        }
        // The file's name only: its place on the server is nothing a shop needs to know.
        let source = match &settings.rules_file {
            Some(path) => format!(
                "file {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            None => "default".to_owned(),
        };
        let rules = settings.read_rules(ports).await;
        Self::Fixed(Arc::new(RulesInForce::read(
            source,
            rules.map_err(|error| format!("{error:#}")),
        )))
    }

    /// A fixed set of rules (tests).
    pub fn fixed(source: &str, rules: RuleSet) -> Self {
        Self::Fixed(Arc::new(RulesInForce::read(source.to_owned(), Ok(rules))))
    }

    pub async fn in_force(&self) -> Result<Arc<RulesInForce>, PortError> {
        match self {
            Self::Fixed(rules) => Ok(rules.clone()),
            Self::Parameter(parameter) => parameter.in_force().await,
        }
    }
}

impl Default for RulesSource {
    fn default() -> Self {
        Self::fixed("default", RuleSet::default())
    }
}

impl ParameterRules {
    async fn in_force(&self) -> Result<Arc<RulesInForce>, PortError> {
        // Held across the read, so that concurrent requests wait for one read (and share its
        // outcome, a failure included), not start many.
        let mut last = self.last.lock().await;
        if let Some(read) = last.as_ref().filter(|read| read.fresh()) {
            return read.outcome.clone();
        }
        let outcome = match (self.read().await, last.take()) {
            // The parameter store did not answer: the rules last read are still the best
            // answer, and most likely still the ones in force.
            (
                Err(error),
                Some(LastRead {
                    outcome: Ok(rules), ..
                }),
            ) => {
                tracing::warn!(%error, "the rules parameter could not be read; answering with the last read");
                Ok(rules)
            }
            (outcome, _) => outcome,
        };
        *last = Some(LastRead {
            at: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome
    }

    async fn read(&self) -> Result<Arc<RulesInForce>, PortError> {
        let name = self.parameter.name();
        let value = tokio::time::timeout(READ_TIMEOUT, self.parameter.read())
            .await
            .map_err(|_| {
                PortError::unavailable("rules parameter", "no answer in time")
                    .retry_after(REREAD_AFTER_FAILURE)
            })??;
        let rules = rules_source::of_parameter(name, value, &self.default);
        Ok(Arc::new(RulesInForce::read(
            format!("SSM parameter {name}"),
            rules.map_err(|error| error.to_string()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use infra::ports::ParameterValue;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A parameter store that answers, fails or hangs, and counts the reads.
    #[derive(Default)]
    struct Store {
        reads: AtomicUsize,
        failing: AtomicBool,
        hanging: AtomicBool,
    }

    #[async_trait]
    impl Parameter for Store {
        fn name(&self) -> &str {
            "/rules"
        }

        async fn read(&self) -> Result<Option<ParameterValue>, PortError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.hanging.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(PortError::unavailable("rules parameter", "refused"));
            }
            Ok(Some(ParameterValue {
                text: "[[rule]]\nname = \"big\"\nkind = \"threshold\"\nabove = 700\n".to_owned(),
                version: 3,
            }))
        }
    }

    fn source(store: &Arc<Store>) -> RulesSource {
        RulesSource::Parameter(Arc::new(ParameterRules {
            parameter: store.clone(),
            default: AlertPolicy::default(),
            last: Mutex::new(None),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn requests_during_a_hang_share_one_read_and_its_failure() {
        let store = Arc::new(Store::default());
        store.hanging.store(true, Ordering::SeqCst);
        let rules = source(&store);
        let started = Instant::now();
        let (first, second) = tokio::join!(rules.in_force(), rules.in_force());
        assert!(first.is_err() && second.is_err());
        assert_eq!(
            started.elapsed(),
            READ_TIMEOUT,
            "one wait, not one per request"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        tokio::time::advance(REREAD_AFTER_FAILURE).await;
        assert!(rules.in_force().await.is_err());
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            2,
            "asked again after a while"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_answers_with_the_rules_last_read() {
        let store = Arc::new(Store::default());
        let rules = source(&store);
        let read = rules.in_force().await.expect("read");
        assert!(read.version.as_deref().is_some_and(|v| v.ends_with("@3")));
        store.failing.store(true, Ordering::SeqCst);
        assert_eq!(rules.in_force().await.expect("cached"), read);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1, "reused for 30 s");
        tokio::time::advance(REREAD_AFTER).await;
        assert_eq!(rules.in_force().await.expect("the last read"), read);
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }
}
