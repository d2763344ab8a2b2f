//! The `pipeline` client against a server that misbehaves: redirects that would carry the key to
//! another host, result lists that do not match the batch, and storms of 503s. The server is a
//! few lines of TCP that answer what each test tells them to.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const KEY: &str = "tp_secret-key-of-the-shop";

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

type Answer = Box<dyn Fn(usize, &Seen) -> String + Send + Sync>;

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A server that answers the n-th request (from 0) with `answer(n, request)`, a whole HTTP
/// response, and closes the connection.
async fn fake(answer: Answer) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move { serve(stream, answer.as_ref(), &log).await });
        }
    });
    Fake { url, seen }
}

async fn serve(mut stream: TcpStream, answer: &Answer, log: &Mutex<Vec<Seen>>) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let Ok(read) = stream.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        bytes.extend_from_slice(&buffer[..read]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
    let seen = Seen {
        head,
        body: String::from_utf8_lossy(&bytes[head_end..]).into_owned(),
    };
    let n = {
        let mut log = log.lock().expect("log");
        log.push(seen.clone());
        log.len() - 1
    };
    let response = answer(n, &seen);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// The answer of a well-behaved API: every item of the batch accepted.
fn all_accepted(seen: &Seen) -> String {
    let sent: Value = serde_json::from_str(&seen.body).unwrap_or_default();
    let count = sent["transactions"].as_array().map_or(0, Vec::len);
    let results: Vec<Value> = (0..count)
        .map(|index| json!({"index": index, "status": "accepted"}))
        .collect();
    let body = json!({"accepted": count, "rejected": 0, "results": results, "request_id": "r"});
    response(
        "202 Accepted",
        &[("content-type", "application/json")],
        &body.to_string(),
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `pipeline send` of `count` transactions to `url`, with the shop's key.
async fn send(url: &str, count: usize) -> Run {
    let lines: Vec<String> = (0..count)
        .map(|i| {
            json!({"transaction_id": format!("t-{i}"), "amount": "1.00", "timestamp": "2024-08-09T12:34:56Z"})
                .to_string()
        })
        .collect();
    let temp = tempfile::tempdir().expect("temp");
    let file = temp.path().join("in.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["send", file.to_str().expect("path"), "--url", url])
        .env("PIPELINE_API_KEY", KEY)
        .env("PIPELINE_RETRIES", "5")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the client finished in time")
        .expect("run pipeline");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A redirect from A to B and on to B again: the key never reaches B, because the client
/// follows no redirect and says so.
#[tokio::test]
async fn a_redirect_to_another_host_never_gets_the_key() {
    let b = fake(Box::new(|_, _| {
        response("307 Temporary Redirect", &[("location", "/again")], "")
    }))
    .await;
    let target = format!("{}/transactions/batch", b.url);
    let a = fake(Box::new(move |_, _| {
        response("307 Temporary Redirect", &[("location", &target)], "")
    }))
    .await;
    let run = send(&a.url, 3).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("redirect"), "{}", run.stderr);
    let leaked: Vec<Seen> = b.seen.lock().expect("log").clone();
    assert!(
        leaked.iter().all(|seen| !seen.head.contains(KEY)),
        "the key reached another host: {leaked:?}"
    );
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY));
}

/// One result for ten items is not "accepted 10"; more rejections than items do not wrap
/// around. Either stops the run with an error that says the answer does not match.
#[tokio::test]
async fn result_lists_that_do_not_match_the_batch_are_not_counted() {
    let short = fake(Box::new(|_, _| {
        let body = json!({"accepted": 10, "rejected": 0, "request_id": "r",
            "results": [{"index": 0, "status": "accepted"}]});
        response(
            "202 Accepted",
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }))
    .await;
    let run = send(&short.url, 10).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("accepted 10"), "{}", run.stdout);
    assert!(
        run.stderr.contains("does not match") || run.stderr.contains("result(s) for 10"),
        "{}",
        run.stderr
    );

    let long = fake(Box::new(|_, _| {
        let results: Vec<Value> = (0..15)
            .map(|i| json!({"index": i % 10, "status": "rejected", "errors": []}))
            .collect();
        let body = json!({"accepted": 0, "rejected": 15, "request_id": "r", "results": results});
        response(
            "207 Multi-Status",
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }))
    .await;
    let run = send(&long.url, 10).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("18446744073709551"), "{}", run.stdout);
}

/// A storm of 503s is waited out (each after its Retry-After), and then everything is sent.
#[tokio::test]
async fn a_storm_of_503s_is_ridden_out() {
    let server = fake(Box::new(|n, seen| {
        if n < 3 {
            response(
                "503 Service Unavailable",
                &[
                    ("retry-after", "1"),
                    ("content-type", "application/problem+json"),
                ],
                r#"{"type":"urn:x","title":"Service unavailable","status":503,"detail":"later"}"#,
            )
        } else {
            all_accepted(seen)
        }
    }))
    .await;
    let run = send(&server.url, 4).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("accepted 4, rejected 0, retried 3"),
        "{}",
        run.stdout
    );
    assert_eq!(server.seen.lock().expect("log").len(), 4);
}
