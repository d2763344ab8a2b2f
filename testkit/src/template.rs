//! template.yaml's function environments as CloudFormation would set them, so that a test can
//! start a binary with exactly what a deployed function gets (scripts/iam_check.py renders the
//! template through the SAM transform and resolves it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::Resources;

/// Every parameter of the template with a value other than its default: a test that deploys
/// with these proves that no setting's non-default value breaks a function. `unique` keeps the
/// SSM names of parallel tests apart.
pub fn every_parameter_changed(unique: &str) -> Vec<(&'static str, String)> {
    vec![
        ("QueueName", format!("{unique}-queue")),
        ("TableName", format!("{unique}-table")),
        ("TopicName", format!("{unique}-topic")),
        ("AlertEmail", "risk@example.com".to_owned()),
        ("AlarmEmail", "ops@example.com".to_owned()),
        ("AlertThresholds", "USD=500,JPY=150000".to_owned()),
        ("AlertRulesParameterName", format!("/{unique}/alert-rules")),
        // The shop the API's environment test adds a key for.
        ("OperatorShops", "acme".to_owned()),
        ("ApiKeysCacheSeconds", "5".to_owned()),
        ("ProcessorBatchSize", "25".to_owned()),
        ("ProcessorBatchingWindowSeconds", "2".to_owned()),
        ("ProcessorMaximumConcurrency", "4".to_owned()),
        ("MaxReceiveCount", "7".to_owned()),
        ("RetryMaxDelaySeconds", "120".to_owned()),
        ("ApiReservedConcurrency", "5".to_owned()),
        ("TableDeletionProtection", "false".to_owned()),
        ("OldestMessageAgeAlarmSeconds", "120".to_owned()),
        ("Api5xxAlarmPercent", "5".to_owned()),
        ("ApiThrottlingRateLimit", "50".to_owned()),
        ("ApiThrottlingBurstLimit", "100".to_owned()),
        ("MetricsNamespace", "PipelineUnderTest".to_owned()),
        ("LogRetentionDays", "7".to_owned()),
        ("WebhooksMaximumConcurrency", "3".to_owned()),
    ]
}

/// The environment `function` (a logical id) gets from the template with `parameters`, with
/// the stack's own resources replaced by the test's and the secrets CloudFormation resolves at
/// deploy time filled in as it would. Panics if a parameter of the template is not given or
/// is given its default: the point is that every one differs.
pub fn function_environment(
    function: &str,
    parameters: &[(&'static str, String)],
    resources: &Resources,
) -> Vec<(String, String)> {
    let rendered = rendered_environments(parameters);
    let defaults = rendered["defaults"].as_object().expect("defaults");
    for (name, default) in defaults {
        let given = parameters.iter().find(|(given, _)| given == name);
        assert!(
            given.is_some_and(|(_, value)| Some(value.as_str()) != default.as_str()),
            "parameter {name} is not given a non-default value"
        );
    }
    let variables = rendered["environments"][function]
        .as_object()
        .unwrap_or_else(|| panic!("no function {function} in the template"));
    let mut ours: BTreeMap<&str, String> = resources.env().into_iter().collect();
    ours.insert("API_KEYS_TABLE", resources.aws.api_keys_table.clone());
    let mut environment: Vec<(String, String)> = variables
        .iter()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or_default();
            let value = match ours.get(name.as_str()) {
                // The queues, tables and topic the stack would create are the test's own.
                Some(own) if name != "BACKEND" => own.clone(),
                _ if value.starts_with("{{resolve:secretsmanager:") => "s".repeat(64),
                _ => value.to_owned(),
            };
            (name.clone(), value)
        })
        .collect();
    // What Lambda itself adds: the region and the role's credentials (here the emulator's).
    environment.extend(
        crate::moto()
            .env()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    environment
}

/// Starts `binary` as Lambda would start the template's `function`: with exactly the
/// environment [`function_environment`] gives it, and the runtime API of `stub`. The process is
/// killed when the handle is dropped.
pub fn start_function(
    binary: &str,
    function: &str,
    parameters: &[(&'static str, String)],
    resources: &Resources,
    stub: &crate::lambda_runtime_stub::RuntimeStub,
) -> tokio::process::Child {
    let mut env = function_environment(function, parameters, resources);
    env.extend(
        stub.env(function)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    tokio::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {binary}: {error}"))
}

fn rendered_environments(parameters: &[(&'static str, String)]) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let overrides: BTreeMap<&str, &str> = parameters
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let script = "import json, sys; sys.path.insert(0, 'scripts'); \
                  from emulator import load_template; from iam_check import function_environments; \
                  print(json.dumps(function_environments(load_template('template.yaml'), json.loads(sys.argv[1]))))";
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            &serde_json::to_string(&overrides).expect("JSON"),
        ])
        .current_dir(root)
        .output()
        .expect("python3 (needs cfn-lint's aws-sam-translator)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}
