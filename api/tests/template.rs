//! template.yaml read as CloudFormation would deploy it (the SAM transform applied, by
//! scripts/iam_check.py's `render`): what a first deploy, the alarms and the event source need
//! that no linter checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The rendered template, as JSON.
fn rendered() -> Value {
    let script = "import json, sys; sys.path.insert(0, 'scripts'); \
                  from emulator import load_template; from iam_check import render; \
                  print(json.dumps(render(load_template('template.yaml'))))";
    let output = Command::new("python3")
        .args(["-c", script])
        .current_dir(root())
        .output()
        .expect("python3 (needs cfn-lint's aws-sam-translator)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .collect()
}

/// A first deploy that rolls back must not leave a named table behind, or the retry fails with
/// "already exists"; once created, the table is kept even if the stack goes.
#[test]
fn a_rolled_back_first_deploy_leaves_no_table_behind() {
    let template = rendered();
    for (name, table) in resources_of_type(&template, "AWS::DynamoDB::Table") {
        assert_eq!(table["DeletionPolicy"], "RetainExceptOnCreate", "{name}");
        assert_eq!(table["UpdateReplacePolicy"], "Retain", "{name}");
    }
}

/// Every alarm says when it is over, not only when it starts.
#[test]
fn every_alarm_has_ok_actions() {
    let template = rendered();
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty());
    for (name, alarm) in alarms {
        let props = &alarm["Properties"];
        assert!(
            props["OKActions"].as_array().is_some_and(|a| !a.is_empty()),
            "{name} has no OKActions"
        );
        assert!(
            props["TreatMissingData"].is_string(),
            "{name}: missing data handled on purpose"
        );
    }
}

/// AWS advises a visibility timeout of at least six times the function's timeout plus the
/// batching window, so that a message is not delivered again while an invocation still has it.
#[test]
fn the_queue_outlasts_six_invocations_and_the_longest_batching_window() {
    let template = rendered();
    let (_, queue) = resources_of_type(&template, "AWS::SQS::Queue")
        .into_iter()
        .find(|(name, _)| *name == "TransactionsQueue")
        .expect("the transactions queue");
    let visibility = queue["Properties"]["VisibilityTimeout"]
        .as_i64()
        .expect("a visibility timeout");
    let (_, function) = resources_of_type(&template, "AWS::Lambda::Function")
        .into_iter()
        .find(|(name, _)| *name == "ProcessorFunction")
        .expect("the processor function");
    let timeout = function["Properties"]["Timeout"].as_i64().expect("timeout");
    let window = &template["Parameters"]["ProcessorBatchingWindowSeconds"];
    let longest_window = window["MaxValue"].as_i64().expect("a bounded window");
    assert!(
        visibility >= 6 * timeout + longest_window,
        "{visibility} s against 6 x {timeout} s + {longest_window} s"
    );
}

/// Metric math over sparse metrics fills each with 0: a sum of metrics that are only emitted
/// when something happened would otherwise exist only when all of them happened at once.
#[test]
fn metric_math_fills_every_metric_it_reads() {
    let template = rendered();
    for (name, alarm) in resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        let Some(metrics) = alarm["Properties"]["Metrics"].as_array() else {
            continue;
        };
        let expressions: Vec<&str> = metrics
            .iter()
            .filter_map(|m| m["Expression"].as_str())
            .collect();
        for metric in metrics.iter().filter(|m| m["MetricStat"].is_object()) {
            let id = metric["Id"].as_str().expect("id");
            let filled = format!("FILL({id}, 0)");
            for expression in &expressions {
                let bare = expression.replace(&filled, "");
                assert!(
                    !bare
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|word| word == id),
                    "{name}: {id} is read without FILL in {expression}"
                );
            }
        }
    }
}

/// The throttle alarm watches the index's reads too (the list reads only the index), and the
/// dead-letter alarm counts arrivals by visible and in-flight messages together, so that a
/// `dead-letters list` (which hides messages for a minute) cannot fake one.
#[test]
fn throttles_include_the_index_reads_and_dead_letter_arrivals_cannot_be_faked() {
    let template = rendered();
    let alarm = |wanted: &str| {
        resources_of_type(&template, "AWS::CloudWatch::Alarm")
            .into_iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, alarm)| alarm["Properties"]["Metrics"].to_string())
            .expect(wanted)
    };
    let throttles = alarm("DynamoDbThrottlesAlarm");
    assert!(
        throttles.contains("ReadThrottleEvents")
            && throttles.matches("GlobalSecondaryIndexName").count() == 2,
        "{throttles}"
    );
    let arrivals = alarm("NewDeadLettersAlarm");
    assert!(
        arrivals.contains("ApproximateNumberOfMessagesNotVisible"),
        "{arrivals}"
    );
}
