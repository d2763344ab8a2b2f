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
        let parsed = pipeline::domain::parse_transaction(body.as_bytes(), Utc::now());
        assert!(parsed.is_ok(), "example {name} is invalid: {parsed:?}");
    }
}
