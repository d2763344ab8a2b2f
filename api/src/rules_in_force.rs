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
    last: Mutex<Option<(Instant, Arc<RulesInForce>)>>,
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
        let source = match &settings.rules_file {
            Some(path) => format!("file {}", path.display()),
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
        // Held across the read, so that concurrent requests wait for one read, not start many.
        let mut last = self.last.lock().await;
        if let Some((at, rules)) = last.as_ref()
            && at.elapsed() < REREAD_AFTER
        {
            return Ok(rules.clone());
        }
        let name = self.parameter.name();
        let value = tokio::time::timeout(READ_TIMEOUT, self.parameter.read())
            .await
            .map_err(|_| {
                PortError::unavailable("rules parameter", "no answer in time")
                    .retry_after(Duration::from_secs(5))
            })??;
        let rules = rules_source::of_parameter(name, value, &self.default);
        let rules = Arc::new(RulesInForce::read(
            format!("SSM parameter {name}"),
            rules.map_err(|error| error.to_string()),
        ));
        *last = Some((Instant::now(), rules.clone()));
        Ok(rules)
    }
}
