//! Each rule of the transaction, on its accepting and on its rejecting side.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-08-09T13:00:00Z")
        .expect("fixed clock")
        .with_timezone(&Utc)
}

fn valid() -> Value {
    json!({"transaction_id": "order-1", "amount": "100.00", "timestamp": "2024-08-09T12:34:56Z"})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = valid();
    body.as_object_mut().expect("object").remove(field);
    body
}

fn parse(body: &Value) -> Result<Transaction, TransactionError> {
    parse_transaction(body.to_string().as_bytes(), now())
}

fn accepted(body: Value) -> Transaction {
    parse(&body).unwrap_or_else(|error| panic!("{body} should be accepted: {error}"))
}

/// The body is rejected, and among the errors is one on `field` with rule `code`.
fn rejected(body: Value, field: &str, code: &str) -> Vec<FieldError> {
    match parse(&body) {
        Err(TransactionError::Invalid { errors, .. }) => {
            assert!(
                errors.iter().any(|e| e.field == field && e.code == code),
                "{body}: expected {field}/{code}, got {errors:?}"
            );
            errors
        }
        other => panic!("{body} should be invalid, got {other:?}"),
    }
}

#[test]
fn the_original_systems_test_message_is_valid() {
    let body = json!({"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"});
    let transaction = accepted(body);
    assert_eq!(transaction.transaction_id, "12345");
    assert_eq!(transaction.amount.to_string(), "100.00");
    assert_eq!(transaction.currency, "USD");
    assert_eq!(transaction.kind, TransactionType::Purchase);
}

#[test]
fn transaction_id_accepts_the_allowed_characters_and_integers() {
    assert_eq!(
        accepted(with("transaction_id", json!("A-z_0.9:x"))).transaction_id,
        "A-z_0.9:x"
    );
    assert_eq!(
        accepted(with("transaction_id", json!("x".repeat(64))))
            .transaction_id
            .len(),
        64
    );
    assert_eq!(
        accepted(with("transaction_id", json!(0))).transaction_id,
        "0"
    );
}

#[test]
fn transaction_id_rejects_other_shapes() {
    rejected(without("transaction_id"), "transaction_id", "required");
    rejected(
        with("transaction_id", Value::Null),
        "transaction_id",
        "required",
    );
    for bad in [
        json!(""),
        json!("x".repeat(65)),
        json!("has space"),
        json!("ü"),
        json!("a/b"),
        json!(-1),
        json!(1.5),
        json!(true),
        json!([1]),
        json!(18446744073709551616_f64),
    ] {
        rejected(with("transaction_id", bad), "transaction_id", "format");
    }
}

#[test]
fn amount_accepts_numbers_and_decimal_strings_exactly() {
    assert_eq!(
        accepted(with("amount", json!(0.01))).amount.to_string(),
        "0.01"
    );
    assert_eq!(
        accepted(with("amount", json!("1000.01")))
            .amount
            .to_string(),
        "1000.01"
    );
    assert_eq!(
        accepted(with("amount", json!(1_000_000_000)))
            .amount
            .to_string(),
        "1000000000.00"
    );
}

#[test]
fn amount_must_be_positive_and_at_most_a_billion() {
    rejected(without("amount"), "amount", "required");
    rejected(with("amount", json!(0)), "amount", "range");
    rejected(with("amount", json!("-5")), "amount", "range");
    rejected(with("amount", json!("1000000000.01")), "amount", "range");
}

#[test]
fn amount_must_be_a_number_or_decimal_string() {
    for bad in [json!("ten"), json!(true), json!({"value": 1}), json!("1e3")] {
        rejected(with("amount", bad), "amount", "type");
    }
}

#[test]
fn amount_places_follow_the_currency() {
    rejected(with("amount", json!("10.001")), "amount", "decimal_places");
    let mut yen = with("currency", json!("JPY"));
    yen["amount"] = json!("150");
    assert_eq!(accepted(yen.clone()).amount.to_string(), "150");
    yen["amount"] = json!("150.5");
    rejected(yen, "amount", "decimal_places");
    let mut dinar = with("currency", json!("KWD"));
    dinar["amount"] = json!("1.125");
    assert_eq!(accepted(dinar).amount.to_string(), "1.125");
    // Trailing zeros carry no precision.
    assert_eq!(
        accepted(with("amount", json!("10.1000")))
            .amount
            .to_string(),
        "10.10"
    );
}

#[test]
fn currency_must_be_an_iso_4217_code() {
    assert_eq!(accepted(with("currency", json!("EUR"))).currency, "EUR");
    assert_eq!(accepted(without("currency")).currency, "USD");
    for bad in [
        json!("usd"),
        json!("EURO"),
        json!("ZZZ"),
        json!("XAU"),
        json!(840),
    ] {
        let errors = match parse(&with("currency", bad.clone())) {
            Err(TransactionError::Invalid { errors, .. }) => errors,
            other => panic!("{bad} should be invalid: {other:?}"),
        };
        assert!(errors.iter().all(|e| e.field == "currency"), "{errors:?}");
    }
}

#[test]
fn timestamp_must_be_rfc3339_with_offset_and_not_in_the_future() {
    let five_minutes_ahead = (now() + Duration::minutes(5)).to_rfc3339();
    accepted(with("timestamp", json!(five_minutes_ahead)));
    accepted(with("timestamp", json!("2024-08-09T14:34:56+02:00")));
    let six_minutes_ahead = (now() + Duration::minutes(6)).to_rfc3339();
    rejected(
        with("timestamp", json!(six_minutes_ahead)),
        "timestamp",
        "not_future",
    );
    rejected(without("timestamp"), "timestamp", "required");
    for bad in [
        "2024-08-09T12:34:56",
        "2024-08-09",
        "yesterday",
        "2024-13-09T12:34:56Z",
    ] {
        rejected(with("timestamp", json!(bad)), "timestamp", "rfc3339");
    }
    rejected(with("timestamp", json!(1723206896)), "timestamp", "type");
}

#[test]
fn type_is_one_of_the_known_kinds() {
    assert_eq!(
        accepted(with("type", json!("refund"))).kind,
        TransactionType::Refund
    );
    assert_eq!(
        accepted(with("type", json!("chargeback"))).kind,
        TransactionType::Chargeback
    );
    rejected(with("type", json!("Purchase")), "type", "one_of");
    rejected(with("type", json!(1)), "type", "type");
}

#[test]
fn customer_id_is_1_to_64_characters() {
    assert_eq!(
        accepted(with("customer_id", json!("ü".repeat(64))))
            .customer_id
            .map(|c| c.chars().count()),
        Some(64)
    );
    rejected(with("customer_id", json!("")), "customer_id", "length");
    rejected(
        with("customer_id", json!("c".repeat(65))),
        "customer_id",
        "length",
    );
    rejected(with("customer_id", json!(7)), "customer_id", "type");
}

#[test]
fn payment_method_is_one_of_the_known_methods() {
    for method in PaymentMethod::names() {
        accepted(with("payment_method", json!(method)));
    }
    rejected(
        with("payment_method", json!("crypto")),
        "payment_method",
        "one_of",
    );
}

#[test]
fn items_add_up_to_the_amount() {
    let items = json!([{"sku": "A", "quantity": 2, "unit_price": "25.00"}, {"sku": "B", "quantity": 1, "unit_price": 50}]);
    let transaction = accepted(with("items", items));
    assert_eq!(transaction.items.map(|items| items.len()), Some(2));
    let wrong_total = json!([{"sku": "A", "quantity": 1, "unit_price": "99.99"}]);
    rejected(with("items", wrong_total), "items", "items_total");
}

#[test]
fn items_follow_their_rules() {
    rejected(with("items", json!([])), "items", "length");
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"sku": "A", "quantity": 1, "unit_price": "1"}))
        .collect();
    rejected(with("items", json!(many)), "items", "length");
    rejected(with("items", json!("A")), "items", "type");
    rejected(with("items", json!([1])), "items[0]", "type");
    let item = |value: Value| with("items", json!([value]));
    rejected(
        item(json!({"sku": "A", "quantity": 0, "unit_price": "100"})),
        "items[0].quantity",
        "range",
    );
    rejected(
        item(json!({"sku": "A", "quantity": 1.5, "unit_price": "100"})),
        "items[0].quantity",
        "type",
    );
    rejected(
        item(json!({"sku": "", "quantity": 1, "unit_price": "100"})),
        "items[0].sku",
        "length",
    );
    rejected(
        item(json!({"quantity": 1, "unit_price": "100"})),
        "items[0].sku",
        "required",
    );
    rejected(
        item(json!({"sku": "A", "quantity": 1, "unit_price": "-1"})),
        "items[0].unit_price",
        "range",
    );
    rejected(
        item(json!({"sku": "A", "quantity": 1, "unit_price": "1.001"})),
        "items[0].unit_price",
        "decimal_places",
    );
    rejected(
        item(json!({"sku": "A", "quantity": 1, "unit_price": "100", "color": "red"})),
        "items[0].color",
        "unknown_field",
    );
    // A free item is fine.
    let mut free = with(
        "items",
        json!([{"sku": "A", "quantity": 1, "unit_price": "100"}, {"sku": "gift", "quantity": 1, "unit_price": 0}]),
    );
    free["amount"] = json!("100");
    accepted(free);
}

#[test]
fn metadata_holds_up_to_20_short_string_pairs() {
    let twenty: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("k{i}"), json!("v"))).collect();
    accepted(with("metadata", Value::Object(twenty.clone())));
    let mut twenty_one = twenty;
    twenty_one.insert("one_more".into(), json!("v"));
    rejected(
        with("metadata", Value::Object(twenty_one)),
        "metadata",
        "length",
    );
    rejected(
        with("metadata", json!({"k".repeat(41): "v"})),
        "metadata",
        "key_length",
    );
    accepted(with("metadata", json!({"k".repeat(40): "v".repeat(256)})));
    rejected(
        with("metadata", json!({"k": "v".repeat(257)})),
        "metadata",
        "value_length",
    );
    rejected(with("metadata", json!({"k": 1})), "metadata.k", "type");
    rejected(with("metadata", json!(["k"])), "metadata", "type");
}

#[test]
fn unknown_fields_are_named() {
    rejected(
        with("shop_id", json!("someone-else")),
        "shop_id",
        "unknown_field",
    );
}

#[test]
fn every_failed_field_is_reported_at_once() {
    let body = json!({"transaction_id": "", "amount": -1, "currency": "usd", "extra": 1});
    let errors = rejected(body, "transaction_id", "format");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["amount", "currency", "extra", "timestamp", "transaction_id"]
    );
}

#[test]
fn non_objects_and_broken_json_are_malformed() {
    for body in ["", "{", "[1,2]", "\"text\"", "42", "{\"a\":}"] {
        assert!(
            matches!(
                parse_transaction(body.as_bytes(), now()),
                Err(TransactionError::Malformed(_))
            ),
            "{body:?}"
        );
    }
}

fn parse_text(text: &str) -> Result<Transaction, TransactionError> {
    parse_transaction(text.as_bytes(), now())
}

fn invalid_fields(text: &str) -> (Vec<FieldError>, usize) {
    match parse_text(text) {
        Err(TransactionError::Invalid { errors, total }) => (errors, total),
        other => panic!("{text} should be invalid, got {other:?}"),
    }
}

#[test]
fn a_repeated_key_is_refused_by_name_at_every_level() {
    let (errors, _) = invalid_fields(
        r#"{"transaction_id": "d", "amount": 1, "amount": 5000, "timestamp": "2024-08-09T12:34:56Z"}"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.field == "amount" && e.code == "duplicate_key"),
        "{errors:?}"
    );
    let (errors, _) = invalid_fields(
        r#"{"transaction_id": "d", "amount": 5, "timestamp": "2024-08-09T12:34:56Z",
            "items": [{"sku": "a", "quantity": 1, "unit_price": 5, "quantity": 2}]}"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.field == "items[0].quantity" && e.code == "duplicate_key"),
        "{errors:?}"
    );
    let (errors, _) = invalid_fields(
        r#"{"transaction_id": "d", "amount": 5, "timestamp": "2024-08-09T12:34:56Z",
            "metadata": {"channel": "web", "channel": "app"}}"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.field == "metadata.channel" && e.code == "duplicate_key"),
        "{errors:?}"
    );
}

#[test]
fn amounts_with_an_exponent_are_exact_or_refused_never_rounded() {
    let body = |amount: &str| {
        format!(
            r#"{{"transaction_id": "e", "amount": {amount}, "timestamp": "2024-08-09T12:34:56Z"}}"#
        )
    };
    for spelled in [
        "999.99999999999999999999999999999e0",
        "1000.00999999999999999999999999999e0",
    ] {
        let (errors, _) = invalid_fields(&body(spelled));
        assert!(
            errors
                .iter()
                .any(|e| e.field == "amount" && e.code == "precision"),
            "{spelled}: {errors:?}"
        );
    }
    let accepted = parse_text(&body("1.00001e3")).expect("1000.01 exactly");
    assert_eq!(accepted.amount.to_string(), "1000.01");
    let (errors, _) = invalid_fields(&body("1.000001e3"));
    assert!(
        errors.iter().any(|e| e.code == "decimal_places"),
        "{errors:?}"
    );
}

#[test]
fn the_errors_of_one_answer_are_capped_and_counted() {
    let items: Vec<Value> = (0..100).map(|_| json!({})).collect();
    let body = with("items", json!(items));
    let (errors, total) = invalid_fields(&body.to_string());
    assert_eq!(errors.len(), MAX_REPORTED_ERRORS);
    assert_eq!(total, 300, "sku, quantity and unit_price of 100 items");
}

#[test]
fn a_list_that_breaks_its_length_rule_is_not_read_item_by_item() {
    let items: Vec<Value> = (0..10_000).map(|_| json!({})).collect();
    let (errors, total) = invalid_fields(&with("items", json!(items)).to_string());
    assert_eq!(total, 1, "{errors:?}");
    assert_eq!(errors[0].field, "items");
    assert_eq!(errors[0].code, "length");
    assert_eq!(errors[0].message, "must hold 1-100 items");
}

#[test]
fn control_characters_are_refused_in_free_text() {
    rejected(
        with("customer_id", json!("a\u{0}b")),
        "customer_id",
        "control_character",
    );
    rejected(
        with("metadata", json!({"note": "line\nbreak"})),
        "metadata.note",
        "control_character",
    );
    rejected(
        with("metadata", json!({"k\u{7}": "v"})),
        "metadata.k\u{7}",
        "control_character",
    );
    rejected(
        with(
            "items",
            json!([{"sku": "a\u{1b}", "quantity": 1, "unit_price": "100.00"}]),
        ),
        "items[0].sku",
        "control_character",
    );
    accepted(with("customer_id", json!("Zoë Ødegård 東京")));
}

#[test]
fn timestamps_start_at_the_epoch_and_leap_seconds_only_where_they_happened() {
    rejected(
        with("timestamp", json!("0000-01-01T00:00:00Z")),
        "timestamp",
        "too_early",
    );
    rejected(
        with("timestamp", json!("1969-12-31T23:59:59Z")),
        "timestamp",
        "too_early",
    );
    accepted(with("timestamp", json!("1970-01-01T00:00:00Z")));
    accepted(with("timestamp", json!("2016-12-31T23:59:60Z")));
    accepted(with("timestamp", json!("2016-12-31T18:59:60-05:00")));
    rejected(
        with("timestamp", json!("2017-06-30T23:59:60Z")),
        "timestamp",
        "leap_second",
    );
    rejected(
        with("timestamp", json!("2024-08-09T12:34:60Z")),
        "timestamp",
        "leap_second",
    );
}

#[test]
fn a_whole_number_is_an_integer_however_it_is_written() {
    let body = json!({"transaction_id": 12345.0, "amount": "6.00", "timestamp": "2024-08-09T12:34:56Z",
        "items": [{"sku": "a", "quantity": 3e0, "unit_price": "2.00"}]});
    let transaction = accepted(body);
    assert_eq!(transaction.transaction_id, "12345");
    assert_eq!(transaction.items.expect("items")[0].quantity, 3);
    rejected(
        with(
            "items",
            json!([{"sku": "a", "quantity": 1.5, "unit_price": "100.00"}]),
        ),
        "items[0].quantity",
        "type",
    );
    rejected(
        with("transaction_id", json!(-1.0)),
        "transaction_id",
        "format",
    );
}

#[test]
fn a_payment_fingerprint_is_kept_and_a_card_number_is_refused() {
    let kept = accepted(with("payment_fingerprint", json!("fp_9f86d081884c7d65")));
    assert_eq!(
        kept.payment_fingerprint.as_deref(),
        Some("fp_9f86d081884c7d65")
    );
    for pan in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
    ] {
        let errors = rejected(
            with("payment_fingerprint", json!(pan)),
            "payment_fingerprint",
            "card_number",
        );
        assert!(
            errors.iter().all(|e| !e.message.contains(pan)),
            "the number is never echoed back"
        );
    }
    rejected(
        with("payment_fingerprint", json!("")),
        "payment_fingerprint",
        "format",
    );
    rejected(
        with("payment_fingerprint", json!("a b")),
        "payment_fingerprint",
        "format",
    );
    rejected(
        with("payment_fingerprint", json!("x".repeat(129))),
        "payment_fingerprint",
        "format",
    );
    rejected(
        with("payment_fingerprint", json!(4111111111111111u64)),
        "payment_fingerprint",
        "type",
    );
}
