//! The template's permissions, proven against the code: every AWS call the code makes is listed
//! beside it (`AWS_CALLS` tables), and template.yaml, rendered as CloudFormation sees it (the SAM
//! transform included), grants each call to the function that makes it, and nothing data-plane
//! on "*" without a condition. The checking is scripts/iam_check.py (IAM's matching rules).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use infra::aws_calls::{AwsCall, Caller};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn every_call() -> Vec<AwsCall> {
    [
        infra::adapters::aws::calls(),
        api::server::AWS_CALLS.to_vec(),
        api::webhook_lambda::AWS_CALLS.to_vec(),
        processor::lambda::AWS_CALLS.to_vec(),
    ]
    .concat()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The SDK operations a source text calls on a `client`: `client.op()`, across line breaks.
fn sdk_operations(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("client") {
        let rest = text[at + "client".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let after = &rest.trim_start()[name.len()..];
        // `clone` and `config` are the client's own, local: no request leaves.
        let local = matches!(name.as_str(), "clone" | "config");
        if !name.is_empty() && after.starts_with("()") && !local {
            found.insert(name);
        }
    }
    found
}

#[test]
fn the_scanner_finds_sdk_calls_across_lines() {
    let text = "self.client\n            .send_message()\n .queue_url(x); self.client.clone();";
    assert_eq!(
        sdk_operations(text),
        BTreeSet::from(["send_message".to_owned()])
    );
}

/// A new SDK call without an entry in an `AWS_CALLS` table fails here.
#[test]
fn every_sdk_call_in_the_code_is_listed_with_its_permission() {
    let listed: BTreeSet<&str> = every_call().iter().map(|call| call.operation).collect();
    let mut scanned = 0;
    for package in ["infra", "api", "processor"] {
        for file in rust_files(&root().join(package).join("src")) {
            let text = std::fs::read_to_string(&file).expect("read");
            for operation in sdk_operations(&text) {
                scanned += 1;
                assert!(
                    listed.contains(operation.as_str()),
                    "{} calls {operation}, which no AWS_CALLS table lists",
                    file.display()
                );
            }
        }
    }
    assert!(scanned >= 12, "the scan found only {scanned} calls");
}

/// Each function's calls, as scripts/iam_check.py reads them.
fn calls_json() -> serde_json::Value {
    let mut entries = Vec::new();
    for call in every_call() {
        for caller in call.callers {
            let function = match caller {
                Caller::Api => "ApiFunction",
                Caller::Processor => "ProcessorFunction",
                Caller::Webhooks => "WebhooksFunction",
                // Operators use their own credentials; the README lists what they need.
                Caller::Operator => continue,
            };
            let mut context = serde_json::Map::new();
            if let Some(service) = call.via {
                context.insert(
                    "kms:ViaService".to_owned(),
                    format!("{service}.{{region}}.amazonaws.com").into(),
                );
            }
            if !call.attributes.is_empty() {
                context.insert("dynamodb:Attributes".to_owned(), call.attributes.into());
            }
            entries.push(serde_json::json!({
                "function": function,
                "operation": call.operation,
                "action": call.action,
                "resource": call.resource,
                "context": context,
            }));
        }
    }
    serde_json::Value::Array(entries)
}

fn check_template(template: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp");
    let calls = dir.path().join("calls.json");
    std::fs::write(&calls, calls_json().to_string()).expect("write calls");
    let output = Command::new("python3")
        .arg(root().join("scripts/iam_check.py"))
        .arg(template)
        .arg(&calls)
        .output()
        .expect("python3 scripts/iam_check.py (needs cfn-lint's aws-sam-translator)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_template_grants_every_call_and_nothing_broad() {
    let (ok, report) = check_template(&root().join("template.yaml"));
    assert!(ok, "{report}");
    assert!(report.contains("0 problem(s)"), "{report}");
}

#[test]
fn the_checker_refuses_what_aws_would_refuse() {
    let output = Command::new("python3")
        .arg(root().join("scripts/iam_check.py"))
        .arg("--self-test")
        .output()
        .expect("run the self-test");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The template as it was before issue 7: SAM's SQS policy grants on "*", and it has no
    // keys table for the key lookups the API makes now. (Its SSM parameter ARN with two
    // slashes, which denied every key read then, is the self-test's case now: the keys moved
    // to a table.)
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/template_before_issue_7.yaml");
    let (ok, report) = check_template(&path);
    println!("{report}");
    assert!(!ok, "{report}");
    assert!(
        report.contains("no resource or parameter for table:ApiKeysTable"),
        "{report}"
    );
    assert!(report.contains("every resource"), "{report}");
}

/// The template refuses, before creating anything, a batch size above 10 without a batching
/// window (an SQS event source would fail half-way through the deploy).
#[test]
fn the_template_refuses_large_batches_without_a_batching_window() {
    let rules = |size: &str, window: &str| {
        Command::new("python3")
            .arg(root().join("scripts/iam_check.py"))
            .arg("--rules")
            .arg(root().join("template.yaml"))
            .arg(format!("ProcessorBatchSize={size}"))
            .arg(format!("ProcessorBatchingWindowSeconds={window}"))
            .output()
            .expect("run the rules check")
    };
    let refused = rules("50", "0");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("LargeBatchesNeedABatchingWindow"));
    assert!(rules("50", "1").status.success());
    assert!(rules("10", "0").status.success());
}
