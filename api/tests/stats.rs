//! `GET /stats` with the real binary: the shop's minutes, lag and open alerts from its own
//! records only, an empty shop's zeros, and the refusals of its one parameter.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DEV_KEY, OTHER_KEY, Server, eventually};

fn totals(stats: &Value) -> (u64, u64, u64) {
    let minutes = stats["minutes"].as_array().expect("minutes");
    let sum = |field: &str| minutes.iter().map(|m| m[field].as_u64().unwrap()).sum();
    (sum("accepted"), sum("stored"), sum("alerted"))
}

#[tokio::test]
async fn a_shop_sees_its_own_minutes_lag_and_open_alerts_and_nothing_of_another_shop() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(
        &temp.path().join("data"),
        &[support::two_shops(temp.path())],
    )
    .await;
    let url = |query: &str| format!("{}/stats{query}", server.base);

    let empty = server.get_json(url(""), Some(DEV_KEY)).await;
    assert_eq!(empty["minutes"].as_array().unwrap().len(), 60, "{empty}");
    assert_eq!(totals(&empty), (0, 0, 0));
    assert_eq!(
        empty["lag"],
        json!({"transactions": 0, "p50_ms": null, "p99_ms": null})
    );
    assert_eq!(
        empty["open_alerts"],
        json!({"by_rule": {}, "counted": 0, "complete": true})
    );

    let now = chrono::Utc::now().to_rfc3339();
    for (id, amount) in [("s-1", "10.00"), ("s-2", "20.00"), ("s-3", "1500.00")] {
        let body = json!({"transaction_id": id, "amount": amount, "timestamp": now}).to_string();
        assert_eq!(
            server.post(DEV_KEY, &body).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let stats = eventually("the three stored and counted", || async {
        let stats = server.get_json(url("?minutes=5"), Some(DEV_KEY)).await;
        (totals(&stats) == (3, 3, 1)).then_some(stats)
    })
    .await;
    assert_eq!(stats["minutes"].as_array().unwrap().len(), 5);
    assert_eq!(stats["lag"]["transactions"], 3);
    assert!(stats["lag"]["p99_ms"].as_u64().unwrap() >= stats["lag"]["p50_ms"].as_u64().unwrap());
    assert_eq!(
        stats["open_alerts"],
        json!({"by_rule": {"amount_exceeds_threshold": 1}, "counted": 1, "complete": true})
    );

    let other = server.get_json(url("?minutes=5"), Some(OTHER_KEY)).await;
    assert_eq!(totals(&other), (0, 0, 0), "{other}");
    assert_eq!(other["open_alerts"]["counted"], 0);
}

#[tokio::test]
async fn the_overview_refuses_what_it_cannot_answer_with_a_problem_naming_the_parameter() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(
        &temp.path().join("data"),
        &[support::two_shops(temp.path())],
    )
    .await;
    for query in ["?minutes=0", "?minutes=181", "?minutes=ten", "?minute=5"] {
        let answer = server
            .http
            .get(format!("{}/stats{query}", server.base))
            .bearer_auth(DEV_KEY)
            .send()
            .await
            .expect("GET");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let problem: Value = answer.json().await.expect("JSON");
        let field = problem["errors"][0]["field"].as_str().unwrap_or_default();
        assert!(field.starts_with("minute"), "{query}: {problem}");
    }
    let anonymous = server
        .http
        .get(format!("{}/stats", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The operator's shop (`OPERATOR_SHOPS`) also sees the whole queue: messages waiting and dead
/// letters, every shop's. Any other shop sees no such figure.
#[tokio::test]
async fn only_the_operators_shop_sees_the_queue_and_its_dead_letters() {
    use infra::adapters::embedded::{QueueSettings, SqliteQueue};
    use infra::ports::{OutgoingMessage, Producer};

    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let env = [
        support::two_shops(temp.path()),
        ("OPERATOR_SHOPS", " demo , ".to_owned()),
        ("EMBEDDED_PROCESSOR", "false".to_owned()),
    ];
    let server = Server::start(&data, &env).await;
    let url = format!("{}/stats?minutes=5", server.base);
    for id in ["q-1", "q-2"] {
        let body =
            json!({"transaction_id": id, "amount": "1.00", "timestamp": "2024-08-09T12:34:56Z"});
        let answer = server.post(OTHER_KEY, &body.to_string()).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    let operator = server.get_json(url.clone(), Some(DEV_KEY)).await;
    assert_eq!(
        operator["pipeline"],
        json!({"available": true, "queue_messages": 2, "dead_letters": 0}),
        "another shop's waiting transactions are counted: {operator}"
    );
    let shop = server.get_json(url.clone(), Some(OTHER_KEY)).await;
    assert!(shop.get("pipeline").is_none(), "{shop}");
    drop(server);

    // With the processor: a message no API would send is dead-lettered, and counted.
    let queue = SqliteQueue::open(&data.join("queue.db"), QueueSettings::default()).expect("queue");
    let poison = OutgoingMessage {
        body: "not an envelope".to_owned(),
        attributes: Default::default(),
    };
    queue.send(poison).await.expect("send");
    drop(queue);
    let env = [env[0].clone(), env[1].clone()];
    let server = Server::start(&data, &env).await;
    let url = format!("{}/stats?minutes=5", server.base);
    eventually("the queue drained and the poison dead-lettered", || async {
        let operator = server.get_json(url.clone(), Some(DEV_KEY)).await;
        let expected = json!({"available": true, "queue_messages": 0, "dead_letters": 1});
        (operator["pipeline"] == expected).then_some(())
    })
    .await;
}

/// An operator's shop that is not a shop id stops the start, naming the setting.
#[tokio::test]
async fn a_malformed_operator_shop_stops_the_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .env("OPERATOR_SHOPS", "demo,not a shop")
        .env("API_ADDR", "127.0.0.1:0")
        .output()
        .expect("run the api");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("OPERATOR_SHOPS") || said.contains("operator-shops"),
        "{said}"
    );
}
