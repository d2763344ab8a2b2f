//! The Grafana dashboard in `dashboards/grafana.json`: shaped as Grafana imports it, and every
//! metric its queries read served by the real binary at `/metrics` once it has seen each kind
//! of traffic. A metric renamed in the code, or misspelt in the dashboard, fails here rather
//! than as an empty panel in someone's Grafana.

mod support;

use std::collections::BTreeSet;

use axum::Router;
use axum::routing::post;
use infra::adapters::embedded::{QueueSettings, SqliteQueue};
use infra::ports::{Backlog, OutgoingMessage, Producer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DEV_KEY, Server, eventually};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/grafana.json");

/// A live rule, a shadow rule and a windowed one, so that alerts, shadow hits and late
/// arrivals are all counted.
const RULES: &str = r#"
[[rule]]
name = "over_1000"
kind = "threshold"
above = "1000"

[[rule]]
name = "over_50_trial"
kind = "threshold"
above = "50"
mode = "shadow"

[[rule]]
name = "card_testing"
kind = "velocity"
key = "payment_fingerprint"
measure = "count"
window = "10m"
above = 5
"#;

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("read dashboards/grafana.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Panels, with those folded into collapsed rows (Grafana keeps them inside the row).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every PromQL expression the dashboard runs: its panels' targets and its query variables.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut found: Vec<String> = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        // Grafana's `label_values(selector, label)`: only the selector is PromQL.
        let promql = match query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            Some(arguments) => arguments
                .rsplit_once(',')
                .map_or(arguments, |(selector, _label)| selector),
            None => query,
        };
        found.push(promql.to_owned());
    }
    found
}

/// The metric names a PromQL expression reads. Functions, aggregations and keywords are not
/// metrics, nor are label names: in matchers (`{…}`), grouping (`by (…)`, `on (…)`, …), or
/// ranges and Grafana variables (`[$__rate_interval]`, `$job`).
fn metric_names(expr: &str) -> Vec<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    // Keywords followed by a list of label names, not of expressions.
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = past_string(&chars, i);
        } else if c == '{' {
            i = past_closing(&chars, i, '}');
        } else if c == '[' {
            i = past_closing(&chars, i, ']');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, a number (1e3, 0x1f) or a duration (5m): never a metric.
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || "{}.".contains(chars[i])) {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&lower.as_str()) {
                if called {
                    i = past_closing(&chars, next, ')');
                }
            } else if !called && !NOT_METRICS.contains(&lower.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index after the string literal that opens at `open`.
fn past_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The index after the `close` that ends the bracket at `open`; strings inside may hold it.
fn past_closing(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    while i < chars.len() && chars[i] != close {
        i = if "\"'`".contains(chars[i]) {
            past_string(chars, i)
        } else {
            i + 1
        };
    }
    i + 1
}

/// The names of the samples in a Prometheus text exposition (`x_bucket`, `x_sum`, … as shown).
fn sample_names(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect()
}

#[test]
fn the_tokenizer_keeps_metrics_and_drops_functions_labels_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, "odd") (rate(lag_bucket{job=~"$job", x="}"}[$__rate_interval] offset 5m)))
        / on (instance) group_left (rule) max without (kind) (alert_rule) * 1e3 + SUM(up_total:ratio)"#;
    assert_eq!(
        metric_names(expr),
        ["lag_bucket", "alert_rule", "up_total:ratio"]
    );
}

#[test]
fn the_dashboard_is_shaped_as_grafana_imports_it() {
    let dashboard = dashboard();
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let uid = dashboard["uid"].as_str().expect("a uid");
    assert!(
        !uid.is_empty()
            && uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "Grafana takes uids of up to 40 letters, digits, - and _: {uid:?}"
    );
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert!(dashboard["time"]["from"].is_string() && dashboard["time"]["to"].is_string());
    assert!(dashboard["refresh"].is_string());
    assert!(
        dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
        "a data source variable, so that the importer picks the Prometheus"
    );
    for input in dashboard["__inputs"].as_array().into_iter().flatten() {
        assert_eq!(input["type"], "datasource", "{input}");
        assert_eq!(input["pluginId"], "prometheus", "{input}");
    }
    let required: BTreeSet<&str> = dashboard["__requires"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == "panel")
        .filter_map(|r| r["id"].as_str())
        .collect();

    let panels = panels(&dashboard);
    assert!(!panels.is_empty());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"].as_u64().expect("a numeric id");
        assert!(ids.insert(id), "{title}: id {id} used twice");
        let kind = panel["type"].as_str().expect("a type");
        if kind == "row" {
            continue;
        }
        if !required.is_empty() {
            assert!(required.contains(kind), "{title}: {kind} not in __requires");
        }
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        assert!(
            grid["h"].as_u64().is_some() && grid["y"].as_u64().is_some(),
            "{title}"
        );
        assert!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24),
            "{title}: the grid is 24 wide"
        );
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: {expr:?} reads no metric"
            );
            let reference = target["refId"].as_str().expect("a refId");
            assert!(refs.insert(reference), "{title}: refId {reference} twice");
            if !target["datasource"].is_null() {
                assert_eq!(target["datasource"], datasource, "{title}");
            }
        }
    }
}

/// Each kind of traffic the dashboard shows, against the real binary; then every metric the
/// dashboard reads must be a sample in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_served() {
    let wanted: BTreeSet<String> = expressions(&dashboard())
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    assert!(!wanted.is_empty());

    let temp = tempfile::tempdir().expect("temp");
    let rules = temp.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("write the rules");
    let data = temp.path().join("data");
    let server = Server::start(&data, &[("RULES_FILE", &rules)]).await;
    // Timestamps a year old: late for the windowed rule, so late arrivals are counted too.
    let payment = |id: &str, amount: &str| {
        json!({"transaction_id": id, "amount": amount, "timestamp": "2024-08-09T12:34:56Z"})
            .to_string()
    };

    let hook = webhook_receiver().await;
    let registered = server
        .http
        .post(format!("{}/webhooks", server.base))
        .bearer_auth(DEV_KEY)
        .json(&json!({"url": hook, "events": ["alert.raised"]}))
        .send()
        .await
        .expect("POST /webhooks");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let webhook: Value = registered.json().await.expect("JSON");
    let webhook_id = webhook["webhook_id"].as_str().expect("an id").to_owned();

    // Stored; one of them alerted (published, delivered, reviewed), both shadow hits.
    for (id, amount) in [("small", "60.00"), ("large", "5000.00")] {
        let answer = server.post(DEV_KEY, &payment(id, amount)).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{id}");
    }
    let refused = server.post(DEV_KEY, &payment("negative", "-1")).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = server.post("not-a-key", &payment("anyone", "1.00")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    server.stored(DEV_KEY, "small").await;
    // The same again is a duplicate; the same id with another amount, a conflict.
    for amount in ["60.00", "70.00"] {
        let answer = server.post(DEV_KEY, &payment("small", amount)).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    // What no API would send: dead-lettered at once.
    let queue = SqliteQueue::open(&data.join("queue.db"), QueueSettings::default()).expect("queue");
    queue
        .send(OutgoingMessage {
            body: "not an envelope".to_owned(),
            attributes: Default::default(),
        })
        .await
        .expect("send");

    let alert_id = eventually("the alert in the inbox", || async {
        let inbox = server
            .get_json(format!("{}/alerts", server.base), Some(DEV_KEY))
            .await;
        inbox["data"][0]["alert_id"].as_str().map(str::to_owned)
    })
    .await;
    let reviewed = server
        .review(
            DEV_KEY,
            &alert_id,
            &json!({"status": "resolved", "verdict": "fraud"}),
        )
        .await;
    assert_eq!(reviewed.status(), StatusCode::OK);
    let deliveries = format!("{}/webhooks/{webhook_id}/deliveries", server.base);
    eventually("the alert delivered to the webhook", || async {
        let page = server.get_json(deliveries.clone(), Some(DEV_KEY)).await;
        (page["data"][0]["state"] == "delivered").then_some(())
    })
    .await;
    // Counted before they are acked: an empty queue means every message's counters moved.
    let drained = || async {
        let depth = queue.depth().await.ok()?;
        (depth.messages == 0 && depth.dead_letters == 1).then_some(())
    };
    eventually("every message handled", drained).await;

    // Another process holds the store's write lock, as a stuck writer would: the next
    // transaction fails for a transient reason and is handed back, then stored once it is gone.
    let blocker = rusqlite::Connection::open(data.join("store.db")).expect("open the store");
    blocker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let answer = server.post(DEV_KEY, &payment("retried", "1.00")).await;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    eventually("a transient failure handed back", || async {
        (server.metric("transactions_retried_total").await >= 1.0).then_some(())
    })
    .await;
    blocker.execute_batch("COMMIT").expect("release the lock");
    drop(blocker);
    server.stored(DEV_KEY, "retried").await;
    eventually("every message handled", drained).await;

    let text = server.metrics_text().await;
    let served = sample_names(&text);
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !served.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not serve:\n{text}"
    );
}

/// A webhook receiver on loopback that takes every delivery; its URL.
async fn webhook_receiver() -> String {
    let app = Router::new().route("/hook", post(|| async { axum::http::StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
