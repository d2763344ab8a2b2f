//! A risk team's rules with the real binary on the embedded store: actions and the record's
//! decision, shadow rules that are stored and counted but never alerted, block lists, and
//! backtests of candidate rules on the shop's history, each only ever over the caller's shop.

mod support;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DEV_KEY, OTHER_KEY, Server};

/// A live review rule above 100, a live block rule above 1000, and a shadow block rule above 50.
const RULES: &str = r#"
[[rule]]
name = "over_100"
kind = "threshold"
above = 100
action = "review"

[[rule]]
name = "over_1000"
kind = "threshold"
above = 1000
action = "block"

[[rule]]
name = "over_50_trial"
kind = "threshold"
above = 50
action = "block"
mode = "shadow"
"#;

async fn start(dir: &Path, rules: &str) -> Server {
    let path = dir.join("rules.toml");
    std::fs::write(&path, rules).expect("write the rules");
    let env = [
        support::two_shops(dir),
        ("RULES_FILE", path.to_string_lossy().into_owned()),
    ];
    Server::start(&dir.join("data"), &env).await
}

/// POSTs with `Prefer: wait=5` and returns the stored record.
async fn decided(server: &Server, key: &str, body: Value) -> Value {
    let answer = server
        .http
        .post(format!("{}/transactions", server.base))
        .bearer_auth(key)
        .header("prefer", "wait=5")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), StatusCode::OK, "stored within the wait");
    answer.json().await.expect("JSON")
}

fn payment(id: &str, amount: &str) -> Value {
    json!({"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z",
           "customer_id": "cust-1"})
}

fn rules_of(alerts: &Value) -> Vec<String> {
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .map(|alert| alert["rule"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_strongest_action_decides_and_a_shadow_rule_is_counted_but_never_alerted() {
    let temp = tempfile::tempdir().expect("temp");
    let server = start(temp.path(), RULES).await;

    let small = decided(&server, DEV_KEY, payment("small", "10.00")).await;
    assert_eq!(small["decision"], "allow", "{small}");
    assert!(small.get("shadow_alerts").is_none(), "{small}");

    let trial_only = decided(&server, DEV_KEY, payment("trial-only", "60.00")).await;
    assert_eq!(
        trial_only["decision"], "allow",
        "a shadow hit decides nothing"
    );
    assert_eq!(trial_only["alerts"], json!([]));
    assert_eq!(rules_of(&trial_only["shadow_alerts"]), ["over_50_trial"]);
    assert_eq!(trial_only["shadow_alerts"][0]["action"], "block");

    let review = decided(&server, DEV_KEY, payment("review", "500.00")).await;
    assert_eq!(review["decision"], "review", "{review}");
    assert_eq!(review["alerts"][0]["action"], "review");

    let block = decided(&server, DEV_KEY, payment("block", "5000.00")).await;
    assert_eq!(block["decision"], "block", "{block}");
    assert_eq!(rules_of(&block["alerts"]), ["over_100", "over_1000"]);

    // The inbox holds the live alerts only, each with its action and the transaction's decision.
    let inbox: Value = server
        .http
        .get(format!("{}/alerts?limit=100", server.base))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .expect("GET /alerts")
        .json()
        .await
        .expect("JSON");
    let mut listed: Vec<(String, String, String)> = inbox["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|alert| {
            let text = |field: &str| alert[field].as_str().unwrap_or_default().to_owned();
            (text("rule"), text("action"), text("decision"))
        })
        .collect();
    listed.sort();
    let expected = [
        ("over_100", "review", "block"),
        ("over_100", "review", "review"),
        ("over_1000", "block", "block"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(listed, expected, "no shadow hit in the inbox");

    // Counted as shadow hits, never as alerts raised or sent.
    let metrics = server.metrics_text().await;
    let shadow_line = metrics
        .lines()
        .find(|line| line.starts_with("alerts_shadow_total{rule=\"over_50_trial\"}"))
        .unwrap_or_else(|| panic!("no shadow counter in:\n{metrics}"));
    assert!(shadow_line.ends_with(" 3"), "{shadow_line}");
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with("alerts_raised_total") && line.contains("over_50_trial")),
        "{metrics}"
    );

    // Another shop's transaction of the same id is decided on its own.
    let theirs = decided(&server, OTHER_KEY, payment("block", "1.00")).await;
    assert_eq!(theirs["decision"], "allow");
}
