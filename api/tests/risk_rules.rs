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

    // Published: the three live alerts, never the shadow hits.
    support::eventually("the live alerts published", || async {
        let metrics = server.metrics_text().await;
        metrics
            .lines()
            .any(|line| line == "alerts_sent_total 3")
            .then_some(())
    })
    .await;

    // Another shop's transaction of the same id is decided on its own.
    let theirs = decided(&server, OTHER_KEY, payment("block", "1.00")).await;
    assert_eq!(theirs["decision"], "allow");
}

/// `GET /rules` names the rules the processor runs, with the version their alerts carry, and
/// `GET /stats` counts each rule's hits, shadow ones included; a request without a key learns
/// nothing.
#[tokio::test]
async fn the_rules_in_force_carry_the_version_of_their_alerts_and_their_hits_are_counted() {
    let temp = tempfile::tempdir().expect("temp");
    let server = start(temp.path(), RULES).await;
    let url = format!("{}/rules", server.base);
    let anonymous = server.http.get(&url).send().await.expect("GET /rules");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Stamped now: the overview reads transactions by their own time.
    let now = |id: &str, amount: &str| {
        let mut body = payment(id, amount);
        body["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
        body
    };
    let block = decided(&server, DEV_KEY, now("block", "5000.00")).await;
    decided(&server, DEV_KEY, now("trial-only", "60.00")).await;
    decided(&server, OTHER_KEY, now("theirs", "5000.00")).await;

    let rules = server.get_json(url, Some(DEV_KEY)).await;
    assert!(
        rules["source"]
            .as_str()
            .unwrap_or_default()
            .starts_with("file "),
        "{rules}"
    );
    assert_eq!(rules["version"], block["alerts"][0]["rules_version"]);
    assert_eq!(rules["unreadable"], Value::Null);
    let summary: Vec<String> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| {
            let text = |field: &str| rule[field].as_str().unwrap_or_default().to_owned();
            [text("name"), text("kind"), text("mode"), text("action")].join(" ")
        })
        .collect();
    assert_eq!(
        summary,
        [
            "over_100 threshold live review",
            "over_1000 threshold live block",
            "over_50_trial threshold shadow block"
        ]
    );

    let stats = server
        .get_json(format!("{}/stats?minutes=5", server.base), Some(DEV_KEY))
        .await;
    assert_eq!(
        stats["hits_by_rule"],
        json!({"over_100": 1, "over_1000": 1, "over_50_trial": 2}),
        "the other shop's hit is its own"
    );
}

/// Serving the API alone, with a rules file that does not read: the API still serves, and
/// `GET /rules` says why the rules do not read instead of inventing some.
#[tokio::test]
async fn rules_that_do_not_read_are_reported_not_replaced() {
    let temp = tempfile::tempdir().expect("temp");
    let path = temp.path().join("rules.toml");
    std::fs::write(&path, "[[rule]]\nname = \"x\"\nkind = \"nonsense\"\n").expect("write");
    let env = [
        ("RULES_FILE", path.to_string_lossy().into_owned()),
        ("EMBEDDED_PROCESSOR", "false".to_owned()),
    ];
    let server = Server::start(&temp.path().join("data"), &env).await;
    let rules = server
        .get_json(format!("{}/rules", server.base), Some(DEV_KEY))
        .await;
    assert_eq!(rules["version"], Value::Null, "{rules}");
    assert_eq!(rules["rules"], json!([]));
    let why = rules["unreadable"].as_str().unwrap_or_default();
    assert!(why.contains("nonsense"), "{why}");

    let default = Server::start::<&str, &str>(&temp.path().join("other"), &[]).await;
    let rules = default
        .get_json(format!("{}/rules", default.base), Some(DEV_KEY))
        .await;
    assert_eq!(rules["source"], "default");
    assert_eq!(
        rules["rules"][0]["name"], "amount_exceeds_threshold",
        "{rules}"
    );
}

async fn post_backtest(
    server: &Server,
    key: &str,
    query: &str,
    content_type: &str,
    rules: &str,
) -> reqwest::Response {
    server
        .http
        .post(format!("{}/rules/backtest{query}", server.base))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(rules.to_owned())
        .send()
        .await
        .expect("POST /rules/backtest")
}

#[tokio::test]
async fn a_backtest_over_the_api_reproduces_the_shops_alerts_and_shows_a_candidates_diff() {
    let temp = tempfile::tempdir().expect("temp");
    let server = start(temp.path(), RULES).await;
    for (id, amount) in [
        ("a", "10.00"),
        ("b", "60.00"),
        ("c", "500.00"),
        ("d", "5000.00"),
    ] {
        decided(&server, DEV_KEY, payment(id, amount)).await;
    }
    decided(&server, OTHER_KEY, payment("theirs", "5000.00")).await;

    let answer = post_backtest(&server, DEV_KEY, "", "application/toml", RULES).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let report: Value = answer.json().await.expect("JSON");
    assert_eq!(
        report["transactions"], 4,
        "only the caller's shop: {report:#}"
    );
    assert_eq!(
        (
            report["diff"]["added"].clone(),
            report["diff"]["dropped"].clone()
        ),
        (json!(0), json!(0)),
        "{report:#}"
    );
    assert_eq!(
        report["diff"]["unchanged"], 6,
        "three alerts and three shadow hits"
    );
    assert_eq!(
        report["decisions"],
        json!({"allow": 2, "review": 1, "block": 1})
    );
    let shadow = &report["rules"][2];
    assert_eq!(
        (shadow["name"].clone(), shadow["mode"].clone()),
        (json!("over_50_trial"), json!("shadow"))
    );
    assert_eq!(shadow["fired"], 3);

    // A candidate that blocks above 400: one alert more, on the 500.
    let candidate = RULES.replace("above = 1000", "above = 400");
    let report: Value = post_backtest(&server, DEV_KEY, "", "text/plain", &candidate)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["diff"]["added"], 1, "{report:#}");
    assert_eq!(
        report["diff"]["added_examples"],
        json!([{"shop_id": "demo", "transaction_id": "c", "rule": "over_1000"}])
    );

    // A period before every transaction: nothing replayed.
    let report: Value = post_backtest(
        &server,
        DEV_KEY,
        "?to=2024-08-01T00:00:00Z",
        "application/toml",
        RULES,
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert_eq!(report["transactions"], 0);
}

#[tokio::test]
async fn a_backtest_refuses_what_it_cannot_run_with_a_problem_naming_it() {
    let temp = tempfile::tempdir().expect("temp");
    let path = temp.path().join("rules.toml");
    std::fs::write(&path, RULES).expect("write");
    let env = [
        support::two_shops(temp.path()),
        ("RULES_FILE", path.to_string_lossy().into_owned()),
        ("BACKTEST_MAX_TRANSACTIONS", "2".to_owned()),
    ];
    let server = Server::start(&temp.path().join("data"), &env).await;
    let problem = |answer: reqwest::Response| async move {
        let status = answer.status();
        let content_type = answer.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        assert_eq!(content_type, "application/problem+json");
        (status, answer.json::<Value>().await.expect("problem"))
    };

    let broken = "[[rule]]\nname = \"x\"\nkind = \"threshold\"\n";
    let (status, body) =
        problem(post_backtest(&server, DEV_KEY, "", "application/toml", broken).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "body");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("line 1") && message.contains("`above` is missing"),
        "{message}"
    );

    let (status, body) = problem(
        post_backtest(
            &server,
            DEV_KEY,
            "?from=yesterday",
            "application/toml",
            RULES,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["field"], "from");

    let (status, _) =
        problem(post_backtest(&server, DEV_KEY, "", "application/json", RULES).await).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Rules over 64 KiB: 413, in-process (router.rs `backtest_rules_over_64_kib_are_413`).

    let (status, _) =
        problem(post_backtest(&server, "wrong-key", "", "text/plain", RULES).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Over the bound: three transactions, two allowed.
    for id in ["a", "b", "c"] {
        decided(&server, DEV_KEY, payment(id, "10.00")).await;
    }
    let (status, body) =
        problem(post_backtest(&server, DEV_KEY, "", "text/plain", RULES).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], "too_many_transactions");
}

/// A block list of cards and a review list of e-mails, each a `list` rule.
const LIST_RULES: &str = r#"
[[rule]]
name = "blocked_card"
kind = "list"
list = "blocked_cards"
field = "payment_fingerprint"
action = "block"

[[rule]]
name = "watched_email"
kind = "list"
list = "watched_emails"
field = "metadata.email"
action = "review"
"#;

async fn list_call(
    server: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    server
        .http
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("list call")
}

fn card_payment(id: &str, card: &str) -> Value {
    json!({"transaction_id": id, "amount": "20.00", "timestamp": "2024-08-09T12:34:56Z",
           "payment_fingerprint": card, "metadata": {"email": "a@example.com"}})
}

#[tokio::test]
async fn a_block_listed_card_is_decided_block_and_a_list_change_applies_to_the_next_transaction() {
    let temp = tempfile::tempdir().expect("temp");
    let server = start(temp.path(), LIST_RULES).await;
    use reqwest::Method;

    let before = decided(&server, DEV_KEY, card_payment("before", "fp_stolen_1")).await;
    assert_eq!(before["decision"], "allow", "{before}");

    let added = list_call(
        &server,
        DEV_KEY,
        Method::PUT,
        "/lists/blocked_cards/items/fp_stolen_1",
    )
    .await;
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let again = list_call(
        &server,
        DEV_KEY,
        Method::PUT,
        "/lists/blocked_cards/items/fp_stolen_1",
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::NO_CONTENT,
        "adding twice is one value"
    );
    let blocked = decided(&server, DEV_KEY, card_payment("after-add", "fp_stolen_1")).await;
    assert_eq!(blocked["decision"], "block", "{blocked}");
    assert_eq!(blocked["alerts"][0]["rule"], "blocked_card");
    assert_eq!(blocked["alerts"][0]["facts"]["list"], "blocked_cards");

    // A value with characters a path must encode, in the metadata list.
    let email = list_call(
        &server,
        DEV_KEY,
        Method::PUT,
        "/lists/watched_emails/items/a%40example.com",
    )
    .await;
    assert_eq!(email.status(), StatusCode::NO_CONTENT);
    let watched = decided(&server, DEV_KEY, card_payment("watched", "fp_other")).await;
    assert_eq!(watched["decision"], "review", "{watched}");

    // Another shop: its own lists, so the same card and e-mail are allowed.
    let theirs = decided(&server, OTHER_KEY, card_payment("theirs", "fp_stolen_1")).await;
    assert_eq!(theirs["decision"], "allow", "{theirs}");
    let their_list: Value = list_call(&server, OTHER_KEY, Method::GET, "/lists/blocked_cards")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(their_list["data"], json!([]));

    let removed = list_call(
        &server,
        DEV_KEY,
        Method::DELETE,
        "/lists/blocked_cards/items/fp_stolen_1",
    )
    .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let after = decided(
        &server,
        DEV_KEY,
        card_payment("after-remove", "fp_stolen_1"),
    )
    .await;
    assert_eq!(
        after["decision"], "review",
        "the e-mail is still watched: {after}"
    );

    // The stored decision stays what it was when decided.
    let stored: Value = server
        .http
        .get(format!("{}/transactions/after-add", server.base))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stored["decision"], "block");
}

#[tokio::test]
async fn lists_are_paged_in_order_and_refuse_card_numbers_and_bad_names() {
    let temp = tempfile::tempdir().expect("temp");
    let server = start(temp.path(), LIST_RULES).await;
    use reqwest::Method;
    for n in 0..25 {
        let path = format!("/lists/blocked_cards/items/fp_{n:02}");
        assert_eq!(
            list_call(&server, DEV_KEY, Method::PUT, &path)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    let mut seen = Vec::new();
    let mut path = "/lists/blocked_cards?limit=10".to_owned();
    loop {
        let page: Value = list_call(&server, DEV_KEY, Method::GET, &path)
            .await
            .json()
            .await
            .expect("JSON");
        seen.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|item| item["value"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/lists/blocked_cards?limit=10&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<Value> = (0..25).map(|n| json!(format!("fp_{n:02}"))).collect();
    assert_eq!(seen, expected);

    let card = list_call(
        &server,
        DEV_KEY,
        Method::PUT,
        "/lists/blocked_cards/items/4111111111111111",
    )
    .await;
    assert_eq!(card.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = card.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "value");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("card number")
    );

    let bad_name = list_call(&server, DEV_KEY, Method::PUT, "/lists/no%20spaces/items/x").await;
    assert_eq!(bad_name.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_cursor = list_call(
        &server,
        DEV_KEY,
        Method::GET,
        "/lists/blocked_cards?cursor=%%%",
    )
    .await;
    assert_eq!(bad_cursor.status(), StatusCode::BAD_REQUEST);
    let no_key = server
        .http
        .get(format!("{}/lists/blocked_cards", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
}
