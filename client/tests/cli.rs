//! The `pipeline` client against the real API binary on a free port: sending a file with good
//! and bad lines, resuming after 503s, generating load, and never showing the key.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The api binary beside this package's binary (the workspace builds both).
fn api_binary() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_pipeline")).with_file_name("api");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--bin", "api"])
            .status()
            .expect("cargo build --bin api");
        assert!(status.success());
    }
    binary
}

struct Api {
    url: String,
    _child: Child,
}

async fn start_api(data: &Path, env: &[(&str, &str)]) -> Api {
    let mut child = Command::new(api_binary())
        .args([
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn api");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(20),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the API started in time")
    .expect("read")
    .expect("a line");
    let url = line
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_owned();
    Api { url, _child: child }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn pipeline(api: &Api, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    command
        .args(args)
        .env("PIPELINE_URL", &api.url)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn pipeline");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the client finished in time")
        .expect("wait");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn transaction(id: &str, amount: &str) -> String {
    format!(
        r#"{{"transaction_id": "{id}", "amount": "{amount}", "timestamp": "2024-08-09T12:34:56Z"}}"#
    )
}

/// Waits until `pipeline get ID` finds the transaction stored.
async fn stored(api: &Api, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pipeline(api, &["get", id, "--json"], None).await.code != 0 {
        assert!(Instant::now() < deadline, "{id} not stored in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sending_a_file_with_good_and_bad_lines_sends_the_good_and_reports_the_bad() {
    let temp = tempfile::tempdir().expect("temp");
    let api = start_api(&temp.path().join("data"), &[]).await;
    let file = temp.path().join("transactions.jsonl");
    let mut lines: Vec<String> = (0..40)
        .map(|i| transaction(&format!("good-{i}"), "12.50"))
        .collect();
    lines.insert(5, "{this is not JSON".to_owned());
    lines.insert(10, transaction("bad-amount", "-3"));
    lines.insert(11, String::new());
    std::fs::write(&file, lines.join("\n")).expect("write");
    let rejected = temp.path().join("rejected.jsonl");
    let run = pipeline(
        &api,
        &[
            "send",
            file.to_str().expect("path"),
            "--batch-size",
            "7",
            "--rejected",
            rejected.to_str().expect("path"),
        ],
        None,
    )
    .await;
    assert_eq!(
        run.code, 1,
        "a rejected line makes the exit non-zero: {}{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("accepted 40, rejected 2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("line 6"),
        "the unreadable line is named: {}",
        run.stderr
    );
    let report = std::fs::read_to_string(&rejected).expect("rejected file");
    let entries: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["line"], 6);
    assert_eq!(entries[1]["line"], 11);
    assert_eq!(entries[1]["errors"][0]["field"], "amount");
    stored(&api, "good-0").await;
    stored(&api, "good-39").await;
}

#[tokio::test]
async fn a_json_array_on_standard_input_is_sent() {
    let temp = tempfile::tempdir().expect("temp");
    let api = start_api(&temp.path().join("data"), &[]).await;
    let array = format!(
        "[{}, {}]",
        transaction("arr-1", "1.00"),
        transaction("arr-2", "2.00")
    );
    let run = pipeline(&api, &["send", "-"], Some(&array)).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted 2, rejected 0"),
        "{}",
        run.stdout
    );
    stored(&api, "arr-2").await;
    let listed = pipeline(&api, &["list", "--json"], None).await;
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
}

/// A line that is not UTF-8 is one rejected line, and a JSON Lines file whose first line starts
/// with `[` is still JSON Lines: in both, the good lines are sent.
#[tokio::test]
async fn bad_bytes_and_a_leading_bracket_reject_only_their_lines() {
    let temp = tempfile::tempdir().expect("temp");
    let api = start_api(&temp.path().join("data"), &[]).await;
    let file = temp.path().join("mixed.jsonl");
    let mut bytes = transaction("utf-1", "1.00").into_bytes();
    bytes.extend_from_slice(b"\n{\"transaction_id\": \"caf\xe9\"}\n");
    bytes.extend_from_slice(transaction("utf-2", "2.00").as_bytes());
    std::fs::write(&file, bytes).expect("write");
    let run = pipeline(&api, &["send", file.to_str().expect("path")], None).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted 2, rejected 1"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    stored(&api, "utf-2").await;

    let bracket = format!(
        "[1, 2]\n{}\n{}\n",
        transaction("br-1", "1.00"),
        transaction("br-2", "2.00")
    );
    let rejected = temp.path().join("bracket.rejected.jsonl");
    let rejected = rejected.to_str().expect("path");
    let run = pipeline(&api, &["send", "-", "--rejected", rejected], Some(&bracket)).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted 2, rejected 1"),
        "{}",
        run.stdout
    );
    stored(&api, "br-2").await;
}

/// The queue is stalled (another process holds its lock), so the API answers 503: the client
/// waits as `Retry-After` says, resends, and finishes once the queue is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_resumes_after_503s() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let api = start_api(&data, &[("ENQUEUE_TIMEOUT", "0.3")]).await;
    let file = temp.path().join("t.jsonl");
    let lines: Vec<String> = (0..30)
        .map(|i| transaction(&format!("resume-{i}"), "3.00"))
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("write");
    let blocker = rusqlite::Connection::open(data.join("queue.db")).expect("open the queue");
    blocker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let url = api.url.clone();
    let send = tokio::spawn({
        let file = file.clone();
        async move {
            let api = Api {
                url,
                _child: Command::new("true").spawn().expect("placeholder"),
            };
            pipeline(
                &api,
                &["send", file.to_str().expect("path"), "--batch-size", "10"],
                None,
            )
            .await
        }
    });
    // Hold the queue long enough for the first sends to be refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocker.execute_batch("COMMIT").expect("unlock");
    drop(blocker);
    let run = send.await.expect("the client ran");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted 30, rejected 0"),
        "{}",
        run.stdout
    );
    let retried: u64 = run
        .stdout
        .split("retried ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a retried count");
    assert!(
        retried > 0,
        "the client should have retried: {}",
        run.stdout
    );
    stored(&api, "resume-29").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_for_a_few_seconds_reports_throughput_latency_and_lag() {
    let temp = tempfile::tempdir().expect("temp");
    let api = start_api(&temp.path().join("data"), &[]).await;
    let run = pipeline(
        &api,
        &[
            "load",
            "--rate",
            "150",
            "--duration",
            "2",
            "--alert-share",
            "0.1",
            "--lag-samples",
            "20",
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("accepted 300"), "{}", run.stdout);
    assert!(
        run.stdout.contains("request latency: p50"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("accepted to stored (server clock): p50"),
        "{}",
        run.stdout
    );
    let batched = pipeline(
        &api,
        &[
            "load",
            "--rate",
            "500",
            "--duration",
            "1",
            "--batch-size",
            "50",
        ],
        None,
    )
    .await;
    assert_eq!(batched.code, 0, "{}{}", batched.stdout, batched.stderr);
    assert!(
        batched.stdout.contains("accepted 500"),
        "{}",
        batched.stdout
    );
}

#[tokio::test]
async fn the_key_is_never_printed() {
    let temp = tempfile::tempdir().expect("temp");
    let api = start_api(&temp.path().join("data"), &[]).await;
    let secret = "tp_this-key-must-never-be-printed";
    for args in [
        vec!["--key", secret, "get", "anything"],
        vec!["--key", secret, "list"],
        vec![
            "--key",
            secret,
            "--retries",
            "1",
            "--url",
            "http://127.0.0.1:1",
            "get",
            "x",
        ],
    ] {
        let run = pipeline(&api, &args, None).await;
        assert_ne!(run.code, 0);
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("--help")
        .env("PIPELINE_API_KEY", secret)
        .output()
        .await
        .expect("help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains(secret));
}
