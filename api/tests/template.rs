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
    // A throttled key lookup is a 503 for a key not seen yet.
    assert!(throttles.contains("ApiKeysTable"), "{throttles}");
    let arrivals = alarm("NewDeadLettersAlarm");
    assert!(
        arrivals.contains("ApproximateNumberOfMessagesNotVisible"),
        "{arrivals}"
    );
}

/// ELF's `e_machine` for each architecture Lambda runs.
fn elf_machine(architecture: &str) -> u16 {
    match architecture {
        "x86_64" => 62,
        "arm64" => 183,
        other => panic!("Lambda has no architecture {other}"),
    }
}

/// The machine an ELF file was built for (bytes 18–19, little-endian on both).
fn machine_of(binary: &Path) -> u16 {
    let bytes = std::fs::read(binary).expect("the binary");
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", binary.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// `sam build` picks the Rust target from each function's architecture and `sam deploy` tells
/// Lambda the same one only if nothing can make them differ: the architecture is written once,
/// not a parameter that samconfig.toml may keep for deploy alone. Every Lambda build lying
/// around (`sam build`'s or `cargo lambda build`'s) is checked against it.
#[test]
fn build_and_deploy_cannot_disagree_on_the_architecture() {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template");
    assert!(
        text.contains("    Architectures: [x86_64]") || text.contains("    Architectures: [arm64]"),
        "the functions' architecture is one literal in Globals"
    );
    let template = rendered();
    assert!(
        template["Parameters"].get("Architecture").is_none(),
        "an Architecture parameter can differ between build and deploy"
    );
    let functions = resources_of_type(&template, "AWS::Lambda::Function");
    let architectures: Vec<&Value> = functions
        .iter()
        .map(|(_, function)| &function["Properties"]["Architectures"])
        .collect();
    let architecture = architectures[0][0]
        .as_str()
        .expect("a literal architecture");
    assert!(architectures.iter().all(|a| *a == architectures[0]));
    let built = [
        ".aws-sam/build/ApiFunction/bootstrap",
        ".aws-sam/build/ProcessorFunction/bootstrap",
        "target/lambda/api/bootstrap",
        "target/lambda/processor/bootstrap",
    ];
    for binary in built.map(|path| root().join(path)) {
        if binary.exists() {
            assert_eq!(
                machine_of(&binary),
                elf_machine(architecture),
                "{} is not built for {architecture}",
                binary.display()
            );
        }
    }
    // The reader works: the test binaries are ELF for this machine.
    let own = machine_of(Path::new(env!("CARGO_BIN_EXE_api")));
    assert!([62, 183].contains(&own));
}

/// An invocation's metrics leave as one EMF document per set of dimensions, and EMF holds at
/// most 100 values of a histogram (the processor records one lag sample per message): no batch
/// the template allows can be larger.
#[test]
fn no_batch_outgrows_what_one_emf_document_holds() {
    let template = rendered();
    let most = &template["Parameters"]["ProcessorBatchSize"]["MaxValue"];
    let most = most
        .as_u64()
        .or_else(|| most.as_str().and_then(|text| text.parse().ok()))
        .expect("ProcessorBatchSize has a MaxValue");
    assert!(most <= 100, "batches of up to {most}");
}
