//! Starting the real `api` binary for a test, and waiting without sleeping blindly.

#![allow(dead_code)] // each test binary uses its own subset

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

pub const DEV_KEY: &str = api::auth::DEVELOPMENT_KEY;
/// The key of shop `other` in [`two_shops`].
pub const OTHER_KEY: &str = "other-key";

/// A keys file in `dir` admitting shop `demo` with the development key and shop `other` with
/// [`OTHER_KEY`]; the setting that names it, for the server's environment.
pub fn two_shops(dir: &Path) -> (&'static str, String) {
    let path = dir.join("keys");
    let line =
        |shop: &str, key: &str| format!("{shop}:{}\n", hex::encode(api::auth::hash_key(key)));
    std::fs::write(
        &path,
        format!("{}{}", line("demo", DEV_KEY), line("other", OTHER_KEY)),
    )
    .expect("write the keys file");
    ("API_KEYS_FILE", path.to_string_lossy().into_owned())
}
pub const ORIGINAL: &str =
    r#"{"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}"#;
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The longest any test request may take, well past the longest wait a test asks for.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

pub struct Server {
    pub base: String,
    /// The metrics listener's base URL.
    pub metrics: String,
    pub http: reqwest::Client,
    child: Child,
}

impl Server {
    pub async fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(data_dir: &Path, env: &[(K, V)]) -> Self {
        Self::start_with_open_files(data_dir, env, None).await
    }

    /// Starts the server under an open-file limit (`ulimit -n`), as a constrained host would.
    pub async fn start_with_open_files<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        data_dir: &Path,
        env: &[(K, V)],
        open_files: Option<u32>,
    ) -> Self {
        match open_files {
            Some(limit) => {
                let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
                Self::start_wrapped(data_dir, env, &["sh", "-c", &script]).await
            }
            None => Self::start_wrapped(data_dir, env, &[]).await,
        }
    }

    /// Starts the server through a wrapper command (`wrapper… api --addr … --data-dir …`): a
    /// shell that sets a limit, a namespace with its own filesystem.
    pub async fn start_wrapped<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        data_dir: &Path,
        env: &[(K, V)],
        wrapper: &[&str],
    ) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_api"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_api")),
        };
        command
            .args([
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the api binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the server announced its address in time")
            .expect("read stdout")
            .expect("a line on stdout");
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the server announced its metrics address in time")
            .expect("read stdout")
            .expect("a second line on stdout");
        let metrics = line
            .strip_prefix("metrics on ")
            .and_then(|url| url.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
            .to_owned();
        Server {
            child,
            base,
            metrics,
            // A request that never ends would hang the test run until CI's limit: one was seen
            // to, once, among POSTs in flight when the server was SIGKILLed.
            http: reqwest::Client::builder()
                .timeout(REQUEST_DEADLINE)
                .build()
                .expect("HTTP client"),
        }
    }

    pub async fn post(&self, key: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/transactions", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_batch(&self, key: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/transactions/batch", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST batch")
    }

    pub async fn get(&self, key: &str, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/transactions/{id}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET")
    }

    /// A review of an alert, as the shop's risk team sends it (no `If-Match`).
    pub async fn review(&self, key: &str, alert_id: &str, review: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/alerts/{alert_id}/review", self.base))
            .bearer_auth(key)
            .json(review)
            .send()
            .await
            .expect("POST a review")
    }

    /// The JSON answer to a GET of `url` (a whole URL), with the key if one is given.
    pub async fn get_json(&self, url: String, key: Option<&str>) -> Value {
        let mut request = self.http.get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// The stored transaction, once the processor has stored it.
    pub async fn stored(&self, key: &str, id: &str) -> Value {
        eventually(&format!("transaction {id} stored"), || async {
            let response = self.get(key, id).await;
            (response.status() == StatusCode::OK).then_some(response)
        })
        .await
        .json()
        .await
        .expect("JSON")
    }

    /// What `/metrics` shows now, as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn health(&self) -> StatusCode {
        self.http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .expect("GET /health")
            .status()
    }

    pub fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    /// Sends SIGKILL now, while requests may be in flight; the process is reaped on drop.
    pub fn kill_now(&self) {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the server exited in time")
            .expect("wait")
    }
}

/// Polls `probe` until it yields a value, failing the test at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
