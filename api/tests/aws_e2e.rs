//! End to end on an AWS emulator (moto): the real `api` binary with the AWS backend accepts a
//! POST onto SQS; the processor's Lambda handler, invoked with the SQS event built from what the
//! queue holds, stores it in DynamoDB and publishes the alert on SNS; GET reads it back. The
//! batch is delivered twice and the alert still arrives once.

mod support;

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use processor::Processor;
use processor::lambda::handle_sqs_event;
use processor::retry::RetryPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DEV_KEY, Server};
use testkit::{ResourceOptions, Resources};

fn processor(resources: &Resources) -> Processor {
    let backend = resources.ports();
    Processor::new(
        backend.queue,
        backend.store,
        backend.notifier,
        infra::domain::RuleSet::default(),
    )
    .with_concurrency(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_travels_sqs_lambda_dynamodb_sns_once_even_when_delivered_twice() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;

    let big = json!({"transaction_id": "aws-big", "amount": "2500.00", "timestamp": "2024-08-09T12:34:56Z", "type": "purchase"});
    let small = json!({"transaction_id": "aws-small", "amount": "25.00", "timestamp": "2024-08-09T12:34:56Z"});
    for body in [&big, &small] {
        assert_eq!(
            server.post(DEV_KEY, &body.to_string()).await.status(),
            StatusCode::ACCEPTED
        );
    }

    // What Lambda's event source mapping would hand the processor, twice.
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(messages.len(), 2);
    // Routing facts ride as message attributes as well as in the body.
    for message in &messages {
        let attributes = message.message_attributes.clone().unwrap_or_default();
        let attribute = |name: &str| {
            attributes
                .get(name)
                .and_then(|value| value.string_value.clone())
        };
        assert_eq!(attribute("shop_id").as_deref(), Some("demo"));
        assert_eq!(attribute("transaction_type").as_deref(), Some("purchase"));
        let body: Value =
            serde_json::from_str(message.body.as_deref().unwrap_or_default()).expect("envelope");
        assert_eq!(
            attribute("request_id"),
            body["request_id"].as_str().map(str::to_owned)
        );
    }
    let event: SqsEvent = serde_json::from_value(testkit::sqs_event(&messages)).expect("SQS event");
    let processor = processor(&resources);
    for delivery in 1..=2 {
        let response = handle_sqs_event(
            &processor,
            resources.ports().queue.as_ref(),
            RetryPolicy::default(),
            event.clone(),
        )
        .await;
        assert!(
            response.batch_item_failures.is_empty(),
            "delivery {delivery}: {:?}",
            response.batch_item_failures
        );
    }

    let stored = server.stored(DEV_KEY, "aws-big").await;
    assert_eq!(stored["amount"], "2500.00");
    assert_eq!(stored["shop_id"], "demo");
    assert_eq!(stored["alerts"][0]["state"], "sent");
    assert_eq!(
        server.stored(DEV_KEY, "aws-small").await["alerts"],
        json!([])
    );
    // The alert is in the shop's inbox once, delivered twice or not, and shows it was sent.
    let inbox = server
        .get_json(format!("{}/alerts", server.base), Some(DEV_KEY))
        .await;
    let listed = inbox["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{inbox}");
    assert_eq!(listed[0]["transaction_id"], "aws-big");
    assert_eq!(listed[0]["publication"]["state"], "sent");
    assert_eq!(listed[0]["review"]["status"], "open");

    // Exactly one alert reached the topic's subscriber, with the attributes filters use.
    let alerts = testkit::subscriber_messages(&resources, 2, Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let attributes = alerts[0]
        .message_attributes
        .clone()
        .expect("message attributes");
    let attribute = |name: &str| {
        attributes.get(name).map(|value| {
            (
                value.data_type.clone(),
                value.string_value.clone().unwrap_or_default(),
            )
        })
    };
    assert_eq!(
        attribute("TransactionType"),
        Some(("String".to_owned(), "Purchase".to_owned()))
    );
    assert_eq!(
        attribute("AlertType"),
        Some(("String".to_owned(), "amount_exceeds_threshold".to_owned()))
    );
    assert_eq!(
        attribute("Amount"),
        Some(("Number".to_owned(), "2500.00".to_owned()))
    );
    assert_eq!(
        attribute("Currency"),
        Some(("String".to_owned(), "USD".to_owned()))
    );
    assert_eq!(
        attribute("ShopId"),
        Some(("String".to_owned(), "demo".to_owned()))
    );
    let message: Value =
        serde_json::from_str(alerts[0].body.as_deref().unwrap_or_default()).expect("JSON alert");
    assert_eq!(message["transaction"]["transaction_id"], "aws-big");
    assert_eq!(message["facts"]["threshold"], "1000");

    // Health asks SQS and DynamoDB.
    assert_eq!(server.health().await, StatusCode::OK);
    server.signal("-TERM").await;
}

/// The `api` binary in Lambda mode under a stub of the Lambda Runtime API, answering API
/// Gateway HTTP API (payload 2.0) events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_in_lambda_mode_for_api_gateway_v2_events() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let temp = tempfile::tempdir().expect("temp");
    let keys = temp.path().join("keys");
    let line = format!("acme:{}\n", hex::encode(api::auth::hash_key("acme-key")));
    std::fs::write(&keys, line).expect("keys");
    let staged_event = |stage: &str, method: &str, path: &str, body: Option<&str>| {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"authorization": "Bearer acme-key", "content-type": "application/json", "host": "api.example.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "stub", "domainName": "api.example.com", "domainPrefix": "api",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
                "requestId": "req", "routeKey": "$default", "stage": stage,
                "time": "26/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64
            },
            "body": body, "isBase64Encoded": false
        })
    };
    let http_event =
        |method: &str, path: &str, body: Option<&str>| staged_event("$default", method, path, body);
    let original =
        r#"{"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}"#;
    let staged =
        r#"{"transaction_id": "staged-1", "amount": 5, "timestamp": "2024-08-09T12:34:56Z"}"#;
    let stub = testkit::lambda_runtime_stub::RuntimeStub::start(vec![
        http_event("POST", "/transactions", Some(original)),
        http_event("GET", "/health", None),
        http_event("POST", "/transactions", Some("{\"amount\": -1}")),
        // Behind a named stage, API Gateway puts the stage in front of the path.
        staged_event("prod", "POST", "/prod/transactions", Some(staged)),
        staged_event("prod", "GET", "/prod/health", None),
    ])
    .await;
    let mut env = resources.api_env();
    env.extend(stub.env("ApiFunction"));
    env.push(("API_KEYS_FILE", keys.to_string_lossy().into_owned()));
    // As the template passes it (resolved from Secrets Manager).
    env.push(("CURSOR_KEY", "k".repeat(64)));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .envs(env)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn api");
    let answers = stub.answers(5, Duration::from_secs(30)).await;
    let _ = child.kill().await;
    assert!(answers.iter().all(|answer| !answer.failed), "{answers:?}");
    assert_eq!(answers[0].body["statusCode"], 202, "{:?}", answers[0].body);
    let accepted: Value =
        serde_json::from_str(answers[0].body["body"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(accepted["transaction_id"], "12345");
    assert_eq!(answers[1].body["statusCode"], 200);
    assert_eq!(answers[2].body["statusCode"], 422);
    assert_eq!(
        answers[2].body["headers"]["content-type"],
        "application/problem+json"
    );
    assert_eq!(answers[3].body["statusCode"], 202, "{:?}", answers[3].body);
    assert_eq!(
        answers[3].body["headers"]["location"], "/prod/transactions/staged-1",
        "the link points behind the stage"
    );
    assert_eq!(answers[4].body["statusCode"], 200, "{:?}", answers[4].body);
    // The 202 meant the envelope was on SQS.
    let queued = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        2,
        Duration::from_secs(10),
    )
    .await;
    for message in &queued {
        let envelope: Value =
            serde_json::from_str(message.body.as_deref().unwrap_or_default()).expect("envelope");
        assert_eq!(envelope["shop_id"], "acme");
    }
}

/// Runs `api keys …` against the emulator; returns its stdout.
fn keys_command(resources: &Resources, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("keys")
        .args(args)
        .args(["--api-keys-table", &resources.aws.api_keys_table])
        .envs(testkit::moto().env())
        .output()
        .expect("run api keys");
    assert!(
        output.status.success(),
        "api keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of a `name: value` line of a command's output.
/// What API Gateway (HTTP API, payload 2.0) hands the API function for `POST /transactions`
/// with `key` and `body`, and any other `headers`.
fn post_through_api_gateway(key: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    let mut event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/transactions", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {key}"), "content-type": "application/json", "host": "api.example.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "stub", "domainName": "api.example.com", "domainPrefix": "api",
            "http": {"method": "POST", "path": "/transactions", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body, "isBase64Encoded": false
    });
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    event
}

/// API Gateway's event for a GET of `path` (no query).
fn get_through_api_gateway(key: &str, path: &str) -> Value {
    let mut event = post_through_api_gateway(key, "", &[]);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["method"] = json!("GET");
    event
}

fn field(output: &str, name: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {output}"))
        .trim()
        .to_owned()
}

/// Keys live in a DynamoDB table, one item each: an operator adds, rotates (both keys work
/// for the overlap, then only the new one) and revokes a key with one command, and the
/// running API follows within its cache time, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_added_rotated_and_revoked_without_a_restart() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let first = field(&keys_command(&resources, &["add", "--shop", "acme"]), "key");
    let mut env = resources.api_env();
    env.push(("API_KEYS_TABLE", resources.aws.api_keys_table.clone()));
    env.push(("API_KEYS_CACHE_SECONDS", "0.5".to_owned()));
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &env).await;
    let body = r#"{"transaction_id": "k-1", "amount": 5, "timestamp": "2024-08-09T12:34:56Z"}"#;
    let status = |key: String| {
        let server = &server;
        async move { server.post(&key, body).await.status() }
    };
    assert_eq!(status(first.clone()).await, StatusCode::ACCEPTED);
    assert_eq!(
        status("tp_made_up".to_owned()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(DEV_KEY.to_owned()).await,
        StatusCode::UNAUTHORIZED,
        "no development key with a keys table"
    );

    let rotated = keys_command(&resources, &["rotate", "--shop", "acme", "--overlap", "2"]);
    let second = field(&rotated, "key");
    assert_eq!(status(second.clone()).await, StatusCode::ACCEPTED);
    assert_eq!(
        status(first.clone()).await,
        StatusCode::ACCEPTED,
        "the old key works during the overlap"
    );
    support::eventually("the old key refused after the overlap", || async {
        (status(first.clone()).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(status(second.clone()).await, StatusCode::ACCEPTED);

    let listed = keys_command(&resources, &["list", "--shop", "acme"]);
    let second_id = field(&rotated, "key_id");
    assert!(listed.contains(&second_id), "{listed}");
    keys_command(
        &resources,
        &["revoke", "--shop", "acme", "--key-id", &second_id],
    );
    support::eventually("the revoked key refused", || async {
        (status(second.clone()).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // A keys file (or the SSM parameter of earlier versions) moves over with one command.
    let file = temp.path().join("keys.txt");
    let line = format!("acme:{}\n", hex::encode(api::auth::hash_key("legacy-key")));
    std::fs::write(&file, line).expect("keys file");
    keys_command(&resources, &["import", &file.to_string_lossy()]);
    support::eventually("the imported key accepted", || async {
        (status("legacy-key".to_owned()).await == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    server.signal("-TERM").await;
}

/// A flood of made-up keys: lookups of keys the instance has not seen are limited (429 with
/// `Retry-After` past the rate, so the table sees a bounded number of reads), while a key in
/// use keeps being admitted throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_keys_neither_floods_the_table_nor_locks_out_known_keys() {
    const RATE: usize = 5;
    let resources = testkit::resources(ResourceOptions::default()).await;
    let known = field(&keys_command(&resources, &["add", "--shop", "acme"]), "key");
    let mut env = resources.api_env();
    env.push(("API_KEYS_TABLE", resources.aws.api_keys_table.clone()));
    env.push(("API_KEYS_UNKNOWN_LOOKUPS_PER_SECOND", RATE.to_string()));
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &env).await;
    let body = r#"{"transaction_id": "f-1", "amount": 5, "timestamp": "2024-08-09T12:34:56Z"}"#;
    assert_eq!(
        server.post(&known, body).await.status(),
        StatusCode::ACCEPTED
    );
    let started = std::time::Instant::now();
    let (mut refused, mut limited) = (0, 0);
    for i in 0..200 {
        let response = server.post(&format!("tp_flood_{i}"), body).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("a made-up key got {other}"),
        }
        if i % 20 == 0 {
            assert_eq!(
                server.post(&known, body).await.status(),
                StatusCode::ACCEPTED,
                "the known key during the flood"
            );
        }
    }
    // Each 401 cost one lookup; the limiter allows a burst of RATE and RATE a second after.
    let allowed = RATE + (started.elapsed().as_secs_f64() * RATE as f64).ceil() as usize;
    assert!(
        refused <= allowed,
        "{refused} lookups, at most {allowed} allowed"
    );
    assert!(limited > 0);
    server.signal("-TERM").await;
}

/// The list through the API on DynamoDB (emulator): a walk in pages of 9 over two shops'
/// transactions returns the caller's, each once, newest first, and filters apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_through_dynamodb_and_never_shows_another_shop() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let store = resources.ports().store;
    let now = chrono::Utc::now();
    for (shop, count) in [("demo", 60), ("other", 20)] {
        for i in 0..count {
            let body = json!({"transaction_id": format!("{shop}-{i:03}"), "amount": format!("{}.00", 10 + i),
                              "currency": if i % 2 == 0 { "USD" } else { "EUR" },
                              "timestamp": format!("2024-08-09T12:{:02}:00Z", i % 60)});
            let transaction =
                infra::domain::parse_transaction(body.to_string().as_bytes(), now).expect("valid");
            let envelope = infra::domain::Envelope::new(
                infra::domain::ShopId::parse(shop).expect("shop"),
                transaction,
                now,
                format!("r-{i}"),
            );
            let record = infra::domain::TransactionRecord::new(envelope, Default::default(), now);
            infra::ports::RecordWriter::put_if_absent(store.as_ref(), &record)
                .await
                .expect("put");
        }
    }
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;
    let walk = |filter: &'static str| {
        let server = &server;
        async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{}/transactions?limit=9{filter}", server.base);
                if let Some(cursor) = &cursor {
                    url.push_str(&format!("&cursor={cursor}"));
                }
                let page: Value = server.get_json(url, Some(DEV_KEY)).await;
                seen.extend(page["data"].as_array().expect("data").iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return seen,
                }
            }
        }
    };
    let all = walk("").await;
    assert_eq!(all.len(), 60);
    assert!(all.iter().all(|t| t["shop_id"] == "demo"));
    let times: Vec<&str> = all.iter().filter_map(|t| t["timestamp"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let euros = walk("&currency=EUR").await;
    assert_eq!(euros.len(), 30);
    assert!(euros.iter().all(|t| t["currency"] == "EUR"));
}

/// DynamoDB accepts connections and never answers: a read is a 503 with `Retry-After` within
/// the call's deadline (`AWS_OPERATION_TIMEOUT`), not a request left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dynamodb_is_a_503_within_the_deadline() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = testkit::proxy::FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    let mut env = resources.api_env();
    env.push(("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.clone()));
    env.push(("AWS_ATTEMPT_TIMEOUT", "1".to_owned()));
    env.push(("AWS_OPERATION_TIMEOUT", "2".to_owned()));
    let temp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&temp.path().join("unused"), &env).await;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), server.get(DEV_KEY, "any"))
        .await
        .expect("an answer, not a hang");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.held() >= 1, "the read went to the hung DynamoDB");
}

/// The API started with the environment the template gives it, every template parameter set
/// to a value other than its default, in Lambda mode: init succeeds, a key added with the
/// operator's command is admitted, and the transaction is on the queue. `GET /rules` names
/// the template's rules parameter and, while it does not exist, the default rule with the
/// template's thresholds, as the processor runs. The shop is the operator's: its `GET /stats`
/// counts the queue and the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_with_the_templates_environment_and_every_parameter_changed() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let parameters = testkit::template::every_parameter_changed(&resources.aws.table_name);
    let key = field(&keys_command(&resources, &["add", "--shop", "acme"]), "key");
    let body = r#"{"transaction_id": "template-1", "amount": "12.50", "timestamp": "2024-08-09T12:34:56Z"}"#;
    let events = vec![
        post_through_api_gateway(&key, body, &[]),
        get_through_api_gateway(&key, "/rules"),
        get_through_api_gateway(&key, "/stats"),
    ];
    let stub = testkit::lambda_runtime_stub::RuntimeStub::start(events).await;
    let mut child = testkit::template::start_function(
        env!("CARGO_BIN_EXE_api"),
        "ApiFunction",
        &parameters,
        &resources,
        &stub,
    );
    let answers = stub.answers(3, Duration::from_secs(30)).await;
    let _ = child.kill().await;
    assert!(!answers[0].failed, "{:?}", answers[0]);
    assert_eq!(answers[0].body["statusCode"], 202, "{:?}", answers[0].body);
    assert_eq!(answers[1].body["statusCode"], 200, "{:?}", answers[1].body);
    let rules: Value =
        serde_json::from_str(answers[1].body["body"].as_str().unwrap_or_default()).expect("JSON");
    let named = parameters
        .iter()
        .find(|(name, _)| *name == "AlertRulesParameterName")
        .map(|(_, value)| value.clone())
        .expect("the rules parameter");
    assert_eq!(rules["source"], json!(format!("SSM parameter {named}")));
    assert_eq!(rules["rules"][0]["name"], "amount_exceeds_threshold");
    let description = rules["rules"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(description.contains("500"), "{rules}");
    assert_eq!(answers[2].body["statusCode"], 200, "{:?}", answers[2].body);
    let stats: Value =
        serde_json::from_str(answers[2].body["body"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(
        stats["pipeline"],
        json!({"available": true, "queue_messages": 1, "dead_letters": 0}),
        "{stats}"
    );
    let queued = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        1,
        Duration::from_secs(10),
    )
    .await;
    let envelope: Value =
        serde_json::from_str(queued[0].body.as_deref().unwrap_or_default()).expect("envelope");
    assert_eq!(envelope["shop_id"], "acme");
}

/// `GET /rules` reads the rules parameter, versioned as the processor versions the alerts it
/// raises (`<digest>@<parameter version>`); a parameter store that never answers is a 503
/// with `Retry-After` within the read's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_in_force_are_read_from_the_parameter_and_a_hung_parameter_store_is_a_503() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let parameter = format!("/test/{}/alert-rules", resources.aws.table_name);
    let text = "[[rule]]\nname = \"big\"\nkind = \"threshold\"\nabove = 700\n";
    aws_sdk_ssm::Client::new(&resources.config)
        .put_parameter()
        .name(&parameter)
        .value(text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put the rules parameter");
    let mut env = resources.api_env();
    env.push(("RULES_PARAMETER", parameter.clone()));
    let temp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&temp.path().join("unused"), &env).await;
    let rules = server
        .get_json(format!("{}/rules", server.base), Some(DEV_KEY))
        .await;
    let expected = infra::domain::RuleSet::from_toml("x", text)
        .expect("rules")
        .with_source_version("1");
    assert_eq!(rules["version"], json!(expected.version()), "{rules}");
    assert_eq!(rules["source"], json!(format!("SSM parameter {parameter}")));
    assert_eq!(rules["rules"][0]["name"], "big");

    let proxy = testkit::proxy::FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    env.push(("AWS_ENDPOINT_URL_SSM", proxy.endpoint.clone()));
    let hung = Server::start(&temp.path().join("hung"), &env).await;
    let started = std::time::Instant::now();
    let answer = hung
        .http
        .get(format!("{}/rules", hung.base))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        proxy.held() >= 1,
        "the read went to the hung parameter store"
    );
}

/// The operator's overview when SQS accepts connections and never answers: the shop's own
/// figures are answered in time, and the queue's are marked unavailable instead of failing
/// the whole overview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_overview_is_answered_when_the_queue_hangs() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let proxy = testkit::proxy::FaultProxy::in_front_of_moto().await;
    proxy.set_hanging(true);
    let mut env = resources.api_env();
    env.push(("OPERATOR_SHOPS", "demo".to_owned()));
    env.push((
        "DEAD_LETTER_QUEUE_URL",
        resources.aws.dead_letter_queue_url.clone(),
    ));
    env.push(("AWS_ENDPOINT_URL_SQS", proxy.endpoint.clone()));
    let temp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&temp.path().join("unused"), &env).await;
    let started = std::time::Instant::now();
    let stats = server
        .get_json(format!("{}/stats?minutes=5", server.base), Some(DEV_KEY))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stats["pipeline"],
        json!({"available": false, "queue_messages": null, "dead_letters": null}),
        "{stats}"
    );
    assert_eq!(stats["minutes"].as_array().map(Vec::len), Some(5));
    assert!(proxy.held() >= 1, "the depth read went to the hung queue");
}

/// `Prefer: wait` on DynamoDB: the POST waits while the processor's Lambda handler stores the
/// transaction, and answers 200 with the stored record and its alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_post_on_aws_answers_with_the_record_the_processor_stored() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;
    let request = server
        .http
        .post(format!("{}/transactions", server.base))
        .bearer_auth(DEV_KEY)
        .header("prefer", "wait=10")
        .json(&json!({"transaction_id": "aws-waited", "amount": "2500.00", "timestamp": "2024-08-09T12:34:56Z"}));
    let waiting = tokio::spawn(request.send());
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        1,
        Duration::from_secs(20),
    )
    .await;
    let event: SqsEvent = serde_json::from_value(testkit::sqs_event(&messages)).expect("event");
    let processor = processor(&resources);
    handle_sqs_event(
        &processor,
        resources.ports().queue.as_ref(),
        RetryPolicy::default(),
        event,
    )
    .await;
    let answer = waiting.await.expect("join").expect("POST");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer
            .headers()
            .get("preference-applied")
            .and_then(|value| value.to_str().ok()),
        Some("wait=10")
    );
    let stored: Value = answer.json().await.expect("JSON");
    assert_eq!(
        stored["alerts"][0]["rule"], "amount_exceeds_threshold",
        "{stored}"
    );
}

/// On Lambda a wait ends before the invocation's deadline: with nothing processing the
/// queue and a 3 s invocation, `Prefer: wait=10` is answered 202 in time, not cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_a_wait_ends_before_the_invocation_deadline() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let parameters = testkit::template::every_parameter_changed(&resources.aws.table_name);
    let key = field(&keys_command(&resources, &["add", "--shop", "acme"]), "key");
    let body = r#"{"transaction_id": "lambda-waited", "amount": "12.50", "timestamp": "2024-08-09T12:34:56Z"}"#;
    let event = post_through_api_gateway(&key, body, &[("prefer", "wait=10")]);
    let stub = testkit::lambda_runtime_stub::RuntimeStub::with_timeout(
        vec![event],
        Duration::from_secs(3),
    )
    .await;
    let mut child = testkit::template::start_function(
        env!("CARGO_BIN_EXE_api"),
        "ApiFunction",
        &parameters,
        &resources,
        &stub,
    );
    let answers = stub.answers(1, Duration::from_secs(30)).await;
    let _ = child.kill().await;
    assert!(!answers[0].failed, "{:?}", answers[0]);
    assert_eq!(answers[0].body["statusCode"], 202, "{:?}", answers[0].body);
    let deadline = answers[0].deadline.expect("a deadline");
    assert!(
        answers[0].answered_at < deadline,
        "answered after the deadline"
    );
}

/// POST to decision on the emulator (BENCHMARKS.md, "POST to decision"), run by
/// scripts/bench/decision_emulator.sh: the API on moto's SQS and DynamoDB with a processor
/// polling the same queue in this process; 100 POSTs one after another with `Prefer: wait=10`,
/// each answered 200 with its record, against 100 plain POSTs answered 202 by the same server
/// in the same run. Moto's latencies, not AWS's: the figure is the pipeline's own share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by scripts/bench/decision_emulator.sh"]
async fn measure_post_to_decision_on_the_emulator() {
    const POSTS: usize = 100;
    let resources = testkit::resources(ResourceOptions::default()).await;
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(&temp.path().join("unused"), &resources.api_env()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let tuning = processor::settings::Tuning {
        batch_size: 10,
        concurrency: 10,
        receive_wait: Duration::from_secs(1),
        retry: RetryPolicy::default(),
    };
    let poller = tokio::spawn(processor::worker::run(
        std::sync::Arc::new(processor(&resources)),
        resources.ports().queue,
        tuning,
        stop.clone(),
    ));
    let latencies = |prefer: Option<&'static str>, prefix: &'static str| {
        let server = &server;
        async move {
            let mut taken = Vec::with_capacity(POSTS);
            for n in 0..POSTS {
                let mut request = server
                    .http
                    .post(format!("{}/transactions", server.base))
                    .bearer_auth(DEV_KEY)
                    .json(
                        &json!({"transaction_id": format!("{prefix}-{n}"), "amount": "2500.00",
                                  "timestamp": "2024-08-09T12:34:56Z"}),
                    );
                if let Some(prefer) = prefer {
                    request = request.header("prefer", prefer);
                }
                let started = std::time::Instant::now();
                let answer = request.send().await.expect("POST");
                taken.push(started.elapsed().as_secs_f64() * 1000.0);
                let expected = if prefer.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                assert_eq!(answer.status(), expected);
            }
            taken.sort_by(f64::total_cmp);
            let at = |q: f64| taken[((taken.len() - 1) as f64 * q).round() as usize];
            (at(0.5), at(0.99))
        }
    };
    let (plain_p50, plain_p99) = latencies(None, "plain").await;
    let (decided_p50, decided_p99) = latencies(Some("wait=10"), "decided").await;
    stop.cancel();
    let _ = poller.await;
    println!(
        "RESULT 202 p50 {plain_p50:.1} ms p99 {plain_p99:.1} ms | decision p50 {decided_p50:.1} ms p99 {decided_p99:.1} ms | p50 ratio {:.1}",
        decided_p50 / plain_p50
    );
}
