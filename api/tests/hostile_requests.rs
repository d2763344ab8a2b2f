//! Seeded fuzzing of the list and the batch routes with what a black-box probe throws at them:
//! parameters repeated thousands of times, oversized names and values, repeated and oversized
//! headers. Against the real binary: every answer is a bounded problem document (or hyper's
//! empty 431 for headers over the limit), never a 5xx, and the server still takes a
//! transaction afterwards.

mod support;

use api::listing::PARAMETERS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use support::{DEV_KEY, ORIGINAL, Server};

/// Requests generated; each run draws the same ones (the seed is fixed).
const CASES: usize = 300;
const SEED: u64 = 20_261_203;
/// The largest answer any of these may get: the 422's and 400's lists are capped.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

fn value(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => "1".to_owned(),
        1 => "x".repeat(rng.random_range(1..4_000)),
        2 => "0.".to_owned() + &"9".repeat(rng.random_range(1..200)),
        3 => "%ff%fe%00".to_owned(),
        4 => "USD".to_owned(),
        _ => String::new(),
    }
}

/// A query string of repeated, unknown, oversized or broken parameters, at most about 12 KB (under the 16 KiB head limit, with headers).
fn hostile_query(rng: &mut StdRng) -> String {
    let mut parts = Vec::new();
    let mut length = 0;
    for _ in 0..rng.random_range(1..6) {
        let name = match rng.random_range(0..4) {
            0 => PARAMETERS[rng.random_range(0..PARAMETERS.len())].to_owned(),
            1 => format!("p{}", rng.random_range(0..100_000)),
            2 => "n".repeat(rng.random_range(1..5_000)),
            _ => "%ff".to_owned(),
        };
        let repeat = [1, 2, 50, 2_000, 8_000][rng.random_range(0..5)];
        let pair = format!("{name}={}", value(rng));
        for _ in 0..repeat {
            if length + pair.len() > 12_000 {
                break;
            }
            length += pair.len() + 1;
            parts.push(pair.clone());
        }
    }
    parts.join("&")
}

/// Headers repeated or oversized; sometimes beyond the 16 KiB and 64-header limits on purpose.
fn hostile_headers(rng: &mut StdRng) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let authorization = HeaderValue::from_str(&format!("Bearer {DEV_KEY}")).expect("header");
    headers.append("authorization", authorization.clone());
    headers.append("content-type", HeaderValue::from_static("application/json"));
    for _ in 0..rng.random_range(0..4) {
        let (name, value) = match rng.random_range(0..6) {
            0 => ("authorization", authorization.clone()),
            1 => ("x-request-id", HeaderValue::from_static("same-id")),
            2 => (
                "x-request-id",
                HeaderValue::from_str(&"r".repeat(rng.random_range(1..15_000))).expect("header"),
            ),
            3 => ("content-type", HeaderValue::from_static("text/plain")),
            4 => ("content-encoding", HeaderValue::from_static("gzip")),
            _ => (
                "x-padding",
                HeaderValue::from_str(&"p".repeat(8_000)).expect("header"),
            ),
        };
        headers.append(name, value);
    }
    if rng.random_bool(0.1) {
        for i in 0..70 {
            let name = HeaderName::from_bytes(format!("x-extra-{i}").as_bytes()).expect("name");
            headers.append(name, HeaderValue::from_static("1"));
        }
    }
    headers
}

fn batch_body(rng: &mut StdRng) -> String {
    let items: Vec<String> = (0..rng.random_range(1..5))
        .map(|i| {
            format!(
                r#"{{"transaction_id": "fuzz-{}-{i}", "amount": "{}", "timestamp": "2024-08-09T12:34:56Z"}}"#,
                rng.random_range(0..1_000_000),
                ["5", "0.001", "-1", "1e3"][rng.random_range(0..4)]
            )
        })
        .collect();
    format!(r#"{{"transactions": [{}]}}"#, items.join(","))
}

#[tokio::test]
async fn the_list_and_the_batch_hold_under_repeated_and_oversized_parameters_and_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data"), &[("RUST_LOG", "warn")]).await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..CASES {
        let headers = hostile_headers(&mut rng);
        let request = if rng.random_bool(0.5) {
            let url = format!("{}/transactions?{}", server.base, hostile_query(&mut rng));
            server.http.get(url)
        } else {
            let url = format!(
                "{}/transactions/batch?{}",
                server.base,
                hostile_query(&mut rng)
            );
            server.http.post(url).body(batch_body(&mut rng))
        };
        let answer = request.headers(headers).send().await;
        let answer = match answer {
            Ok(answer) => answer,
            // The server may close a connection whose request it will not read (a request
            // line over its limit); that is a refusal, not a failure.
            Err(error) if error.is_request() || error.is_body() => continue,
            Err(error) => panic!("case {case}: {error}"),
        };
        let status = answer.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = answer.bytes().await.expect("body");
        assert!(!status.is_server_error(), "case {case}: {status}");
        assert!(
            body.len() <= MAX_ANSWER_BYTES,
            "case {case}: {status} with {} bytes",
            body.len()
        );
        let hyper_refusal =
            status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE && body.is_empty();
        if status.is_client_error() && !hyper_refusal {
            assert_eq!(
                content_type, "application/problem+json",
                "case {case}: {status}"
            );
        }
    }
    println!("statuses: {statuses:?}");
    assert_eq!(
        server.post(DEV_KEY, ORIGINAL).await.status(),
        StatusCode::ACCEPTED,
        "the server still takes a transaction"
    );
}
