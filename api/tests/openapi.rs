//! The committed contract is what the code generates, and its examples are valid.

use chrono::Utc;
use serde_json::Value;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = api::openapi::document();
    assert!(
        generated == COMMITTED,
        "openapi/openapi.json is out of date. Regenerate it with:\n\n    cargo run -- openapi > openapi/openapi.json\n"
    );
}

#[test]
fn every_request_example_is_a_valid_transaction() {
    let document: Value = serde_json::from_str(COMMITTED).expect("valid JSON");
    let examples = &document["paths"]["/transactions"]["post"]["requestBody"]["content"]["application/json"]
        ["examples"];
    let examples = examples.as_object().expect("request examples");
    assert!(examples.len() >= 3);
    for (name, example) in examples {
        let body = example["value"].to_string();
        let parsed = infra::domain::parse_transaction(body.as_bytes(), Utc::now());
        assert!(parsed.is_ok(), "example {name} is invalid: {parsed:?}");
    }
}

fn new_transaction_schema() -> Value {
    let document: Value = serde_json::from_str(COMMITTED).expect("valid JSON");
    document["components"]["schemas"]["NewTransaction"].clone()
}

fn accepts(body: &Value) -> bool {
    infra::domain::parse_transaction(body.to_string().as_bytes(), Utc::now()).is_ok()
}

fn with(field: &str, value: Value) -> Value {
    let mut body = serde_json::json!({"transaction_id": "c", "amount": "10.00", "timestamp": "2024-08-09T12:34:56Z"});
    body[field] = value;
    body
}

/// Every limit the contract states is the parser's: a value at the limit is accepted, one just
/// past it refused, so a client generated from the contract sends nothing that will be refused
/// for a rule the contract could have stated.
#[test]
fn the_contract_states_the_parsers_limits() {
    let schema = new_transaction_schema();
    let properties = &schema["properties"];
    assert_eq!(schema["additionalProperties"], false);

    let item = &properties["items"]["items"]["properties"];
    let min_quantity = item["quantity"]["minimum"]
        .as_u64()
        .expect("quantity minimum");
    let line = |quantity: u64| serde_json::json!([{"sku": "s", "quantity": quantity, "unit_price": "10.00"}]);
    assert!(accepts(&with("items", line(min_quantity))));
    assert!(!accepts(&with("items", line(min_quantity - 1))));

    let max_sku = item["sku"]["maxLength"].as_u64().expect("sku maxLength") as usize;
    let sku = |len: usize| serde_json::json!([{"sku": "s".repeat(len), "quantity": 1, "unit_price": "10.00"}]);
    assert!(accepts(&with("items", sku(max_sku))));
    assert!(!accepts(&with("items", sku(max_sku + 1))));
    assert_eq!(item["sku"]["minLength"], 1);
    assert!(!accepts(&with("items", sku(0))));

    let max_items = properties["items"]["maxItems"].as_u64().expect("maxItems") as usize;
    let many = |count: usize| {
        let mut body = with("amount", serde_json::json!(count.to_string()));
        body["items"] = serde_json::json!(vec![
            serde_json::json!({"sku": "s", "quantity": 1, "unit_price": "1"});
            count
        ]);
        body
    };
    assert!(accepts(&many(max_items)));
    assert!(!accepts(&many(max_items + 1)));

    let max_customer = properties["customer_id"]["maxLength"]
        .as_u64()
        .expect("maxLength") as usize;
    assert!(accepts(&with(
        "customer_id",
        serde_json::json!("c".repeat(max_customer))
    )));
    assert!(!accepts(&with(
        "customer_id",
        serde_json::json!("c".repeat(max_customer + 1))
    )));

    let max_pairs = properties["metadata"]["maxProperties"]
        .as_u64()
        .expect("maxProperties") as usize;
    let pairs = |count: usize| {
        serde_json::Value::Object(
            (0..count)
                .map(|i| (format!("k{i}"), serde_json::json!("v")))
                .collect(),
        )
    };
    assert!(accepts(&with("metadata", pairs(max_pairs))));
    assert!(!accepts(&with("metadata", pairs(max_pairs + 1))));
    let max_value = properties["metadata"]["additionalProperties"]["maxLength"]
        .as_u64()
        .expect("value maxLength") as usize;
    assert!(accepts(&with(
        "metadata",
        serde_json::json!({"k": "v".repeat(max_value)})
    )));
    assert!(!accepts(&with(
        "metadata",
        serde_json::json!({"k": "v".repeat(max_value + 1)})
    )));

    let id = &properties["transaction_id"]["oneOf"][0];
    let max_id = id["maxLength"].as_u64().expect("id maxLength") as usize;
    assert!(accepts(&with(
        "transaction_id",
        serde_json::json!("i".repeat(max_id))
    )));
    assert!(!accepts(&with(
        "transaction_id",
        serde_json::json!("i".repeat(max_id + 1))
    )));

    let currencies: Vec<&str> = properties["currency"]["enum"]
        .as_array()
        .expect("currency enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(currencies.len() > 100, "{}", currencies.len());
    for code in &currencies {
        let amount = if properties["currency"]["x-minor-units"][code] == 0 {
            "10"
        } else {
            "10.0"
        };
        let mut body = with("currency", serde_json::json!(code));
        body["amount"] = serde_json::json!(amount);
        assert!(accepts(&body), "{code} is in the contract but refused");
    }
    assert!(!accepts(&with("currency", serde_json::json!("XAU"))));
    assert!(!currencies.contains(&"XAU"));
}

/// The patterns the contract states, tried with the values the issue found loose: a negative
/// amount, a zero amount, control characters, a year before 1970, a leap second.
#[test]
fn the_contracts_patterns_refuse_what_the_parser_refuses() {
    let schema = new_transaction_schema();
    let properties = &schema["properties"];
    let amount_pattern = properties["amount"]["oneOf"][0]["pattern"]
        .as_str()
        .expect("amount pattern");
    assert!(
        !amount_pattern.contains("-?") && !amount_pattern.starts_with("^-"),
        "the pattern allows a sign: {amount_pattern}"
    );
    for refused in ["-5", "0", "0.00", "1e3"] {
        assert!(
            !accepts(&with("amount", serde_json::json!(refused))),
            "{refused}"
        );
    }
    let timestamp_pattern = properties["timestamp"]["pattern"]
        .as_str()
        .expect("timestamp pattern");
    assert!(
        timestamp_pattern.starts_with("^(19[7-9][0-9]|"),
        "{timestamp_pattern}"
    );
    for refused in ["1969-12-31T23:59:59Z", "2024-08-09T12:34:60Z"] {
        assert!(
            !accepts(&with("timestamp", serde_json::json!(refused))),
            "{refused}"
        );
    }
    let text_pattern = properties["customer_id"]["pattern"]
        .as_str()
        .expect("customer_id pattern");
    assert!(text_pattern.contains("\\u0000-\\u001F"), "{text_pattern}");
    assert!(!accepts(&with("customer_id", serde_json::json!("a\u{0}b"))));
}
