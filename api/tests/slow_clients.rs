//! Slow and stalled clients against the real binary: they are cut off within stated times, they
//! cannot exhaust the process's connections or files, and they do not hold up a shutdown.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::{DEV_KEY, ORIGINAL, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Opens a connection and sends the start of a request head, never the end.
async fn half_sent_header(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(b"POST /transactions HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .await
        .expect("write");
    stream
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let result = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    assert!(
        result.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[("HEADER_READ_TIMEOUT", "1")]).await;
    let mut stream = half_sent_header(&address(&server)).await;
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // An idle kept-alive connection is closed the same way.
    let mut idle = TcpStream::connect(address(&server)).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_gets_a_408_problem() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[("BODY_READ_TIMEOUT", "1")]).await;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    let head = format!(
        "POST /transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEV_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"transaction_id\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// The scenario: 300 connections that never finish their headers, against a process
/// allowed 128 open files. Connections are capped below the limit, the stalled ones are closed
/// by the header timeout, and real requests keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_cannot_exhaust_the_open_file_limit() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start_with_open_files(
        &temp.path().join("data"),
        &[("HEADER_READ_TIMEOUT", "1")],
        Some(128),
    )
    .await;
    let address = address(&server);
    let mut stalled = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(&address).await {
            Ok(mut stream) => {
                let _ = stream.write_all(b"POST /transactions HTTP/1.1\r\nHo").await;
                stalled.push(stream);
            }
            // The listen backlog is full: the flood is being turned away, which is fine.
            Err(_) => break,
        }
    }
    let started = Instant::now();
    let response = server.post(DEV_KEY, ORIGINAL).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.health().await, StatusCode::OK);
    let log =
        std::fs::read_to_string(temp.path().join("data").with_extension("log")).unwrap_or_default();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(stalled);
}

/// SIGTERM with slow clients connected: the process exits within the shutdown grace, whatever
/// they do, and a request already being read is not lost silently.
#[tokio::test]
async fn sigterm_exits_within_the_grace_with_slow_clients_connected() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(
        &temp.path().join("data"),
        &[
            ("HEADER_READ_TIMEOUT", "60"),
            ("BODY_READ_TIMEOUT", "60"),
            ("SHUTDOWN_GRACE", "2"),
        ],
    )
    .await;
    let address = address(&server);
    let _half_header = half_sent_header(&address).await;
    let mut stalled_body = TcpStream::connect(&address).await.expect("connect");
    stalled_body
        .write_all(
            format!(
                "POST /transactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEV_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    // Let the server take both connections in before the signal.
    assert_eq!(server.health().await, StatusCode::OK);
    let started = Instant::now();
    let status = server.signal("-TERM").await;
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}

#[tokio::test]
async fn an_oversized_header_is_refused() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("data"), &[] as &[(&str, &str)]).await;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    let big = "a".repeat(390 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // The server is fine afterwards.
    let health: Value = server
        .get_json(format!("{}/health", server.base), None)
        .await;
    assert_eq!(health["status"], "ok");
}
