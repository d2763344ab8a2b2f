use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::alert::Action;
use crate::parse_transaction;

const EXAMPLE: &str = include_str!("../../../rules/example.toml");

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid time")
        .with_timezone(&Utc)
}

fn transaction(extra: &str) -> Transaction {
    let body = format!(
        r#"{{"transaction_id":"t","amount":"20.00","timestamp":"2024-08-09T12:34:56Z"{extra}}}"#
    );
    parse_transaction(body.as_bytes(), at("2024-08-09T12:35:00Z")).expect("valid transaction")
}

fn refused(text: &str) -> RulesFileError {
    RuleSet::from_toml("rules.toml", text).expect_err("must be refused")
}

#[test]
fn the_readmes_example_file_reads_as_five_rules() {
    let rules = RuleSet::from_toml("example.toml", EXAMPLE).expect("the example is valid");
    let kinds: Vec<&str> = rules.rules().iter().map(Rule::kind_name).collect();
    assert_eq!(
        kinds,
        ["threshold", "velocity", "distinct", "velocity", "velocity"]
    );
    assert_eq!(rules.late_arrival(), Duration::hours(24));
    let described = rules.describe();
    assert_eq!(
        described[1].description,
        "count per payment_fingerprint in 10m above 5"
    );
}

#[test]
fn without_a_file_the_original_rule_applies() {
    let rules = RuleSet::default();
    assert!(
        rules
            .decide(&transaction(""), None, &[], &[])
            .alerts
            .is_empty()
    );
    let big = parse_transaction(
        br#"{"transaction_id":"t","amount":"1000.01","timestamp":"2024-08-09T12:34:56Z"}"#,
        at("2024-08-09T12:35:00Z"),
    )
    .expect("valid");
    let decisions = rules.decide(&big, None, &[], &[]).alerts;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].rule, "amount_exceeds_threshold");
    assert!(rules.windowed_checks(&big, "shop", big.timestamp).is_none());
}

#[test]
fn a_velocity_rule_counts_per_key_in_the_transactions_bucket_and_fires_above_the_limit() {
    let rules = RuleSet::from_toml("example.toml", EXAMPLE).expect("valid");
    let tx = transaction(r#","payment_fingerprint":"fp_abc123","customer_id":"c1""#);
    let counting = rules
        .windowed_checks(&tx, "shop-a", tx.timestamp)
        .expect("windowed rules apply");
    let names: Vec<&str> = counting
        .checks
        .iter()
        .map(|c| c.query.rule.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "card_testing",
            "many_cards_per_customer",
            "customer_daily_spend"
        ]
    );
    let card = &counting.checks[0];
    assert_eq!(card.query.key, "fp_abc123");
    assert_eq!(card.query.buckets.len(), 10);
    assert_eq!(
        card.contribution.counter.bucket,
        *card.query.buckets.last().expect("10")
    );
    let mut totals = vec![WindowTotal::default(); 3];
    totals[0].count = 5;
    assert!(
        rules
            .decide(&tx, Some(&counting), &totals, &[])
            .alerts
            .is_empty()
    );
    totals[0].count = 6;
    let decisions = rules.decide(&tx, Some(&counting), &totals, &[]).alerts;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].rule, "card_testing");
    assert_eq!(
        decisions[0].reason,
        "6 transactions for this payment_fingerprint in 10m, limit 5"
    );
    assert_eq!(decisions[0].facts["observed"], "6");
    assert_eq!(decisions[0].facts["limit"], "5");
}

#[test]
fn several_rules_fire_on_one_transaction_each_with_its_own_alert() {
    let rules = RuleSet::from_toml("example.toml", EXAMPLE).expect("valid");
    let tx = parse_transaction(
        br#"{"transaction_id":"t","amount":"5000.01","timestamp":"2024-08-09T12:34:56Z","customer_id":"c1","payment_fingerprint":"fp_1"}"#,
        at("2024-08-09T12:35:00Z"),
    )
    .expect("valid");
    let counting = rules
        .windowed_checks(&tx, "s", tx.timestamp)
        .expect("windowed");
    let totals = vec![
        WindowTotal {
            count: 6,
            ..Default::default()
        },
        WindowTotal {
            members: ["a", "b", "c", "d"].map(String::from).into(),
            ..Default::default()
        },
        WindowTotal {
            count: 1,
            sum: tx.amount,
            members: Default::default(),
        },
    ];
    let fired: Vec<String> = rules
        .decide(&tx, Some(&counting), &totals, &[])
        .alerts
        .into_iter()
        .map(|d| d.rule)
        .collect();
    assert_eq!(
        fired,
        [
            "amount_exceeds_threshold",
            "card_testing",
            "many_cards_per_customer",
            "customer_daily_spend"
        ]
    );
}

#[test]
fn scope_and_late_arrivals_limit_what_is_counted() {
    let rules = RuleSet::from_toml("example.toml", EXAMPLE).expect("valid");
    let refund = transaction(r#","type":"refund","customer_id":"c1","currency":"EUR""#);
    // EUR: neither USD sum applies; no fingerprint: neither card rule.
    assert!(
        rules
            .windowed_checks(&refund, "s", refund.timestamp)
            .is_none()
    );
    let tx = transaction(r#","payment_fingerprint":"fp_1""#);
    let now = tx.timestamp + Duration::hours(24) + Duration::seconds(1);
    assert!(rules.windowed_checks(&tx, "s", now).is_none(), "too late");
    let counting = rules
        .windowed_checks(&tx, "s", tx.timestamp + Duration::hours(23))
        .expect("late but within the bound");
    assert!(counting.remember_until > tx.timestamp + Duration::hours(24));
}

#[test]
fn a_broken_file_is_refused_with_where_and_what() {
    let error = refused(
        "[[rule]]\nname = \"x\"\nkind = \"velocity\"\nkey = \"card\"\nwindow = \"10m\"\nabove = 5\n",
    );
    assert_eq!(error.line, Some(1));
    assert_eq!(
        error.to_string(),
        "rules.toml line 1: rule 1 (\"x\"): `key` \"card\" is not one of customer_id, payment_fingerprint, shop"
    );
    let error =
        refused("[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1000\nwindw = \"1h\"\n");
    assert_eq!(error.line, Some(5), "{error}");
    assert!(error.message.contains("unknown field `windw`"), "{error}");
    let error = refused("[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1000.5\n");
    assert!(error.message.contains("never floats"), "{error}");
    let error = refused("[[rule]\nname = 1\n");
    assert_eq!(error.line, Some(1), "{error}");
    for (text, expected) in [
        ("", "has no [[rule]]"),
        (
            "[[rule]]\nkind = \"threshold\"\nabove = 1\n",
            "`name` is missing",
        ),
        (
            "[[rule]]\nname = \"a b\"\nkind = \"threshold\"\nabove = 1\n",
            "`name` must be",
        ),
        ("[[rule]]\nname = \"x\"\nabove = 1\n", "`kind` is missing"),
        (
            "[[rule]]\nname = \"x\"\nkind = \"limit\"\n",
            "`kind` \"limit\"",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"threshold\"\n",
            "`above` is missing",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = \"-1\"\n",
            "must not be negative",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1\nwindow = \"1h\"\n",
            "`window` does not apply",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"velocity\"\nkey = \"shop\"\nabove = 1\n",
            "`window` is missing",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"velocity\"\nkey = \"shop\"\nwindow = \"10 min\"\nabove = 1\n",
            "is not a duration",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"velocity\"\nkey = \"shop\"\nmeasure = \"sum\"\nwindow = \"1h\"\nabove = 1\n",
            "a sum needs `currency`",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"velocity\"\nkey = \"shop\"\nwindow = \"1h\"\nabove = \"2.5\"\n",
            "whole number",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"distinct\"\nwindow = \"1h\"\nabove = 3\ntypes = [\"sale\"]\n",
            "`types`: \"sale\"",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1\ncurrency = \"XYZ\"\n",
            "ISO 4217",
        ),
        (
            "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1\n[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 2\n",
            "used twice",
        ),
        (
            "late_arrival = \"soon\"\n[[rule]]\nname = \"x\"\nkind = \"threshold\"\nabove = 1\n",
            "late_arrival",
        ),
    ] {
        let error = refused(text);
        assert!(error.to_string().contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn a_rule_set_has_a_version_that_follows_its_text_and_every_alert_carries_it() {
    let one = RuleSet::from_toml("a.toml", EXAMPLE).expect("valid");
    let same = RuleSet::from_toml("b.toml", EXAMPLE).expect("valid");
    let other = RuleSet::from_toml("c.toml", &format!("{EXAMPLE}\n# changed\n")).expect("valid");
    assert_eq!(
        one.version(),
        same.version(),
        "the text decides, not its name"
    );
    assert_ne!(one.version(), other.version());
    assert_eq!(one.version().len(), 12);
    let from_ssm = one.clone().with_source_version("7");
    assert_eq!(from_ssm.version(), format!("{}@7", one.version()));
    let default = RuleSet::default();
    assert!(
        default.version().starts_with("default-"),
        "{}",
        default.version()
    );
    assert_ne!(
        default.version(),
        RuleSet::from("USD=500".parse::<AlertPolicy>().expect("policy")).version(),
        "other thresholds, another version"
    );

    let low = RuleSet::from("USD=10".parse::<AlertPolicy>().expect("policy"));
    let decisions = low.decide(&transaction(""), None, &[], &[]).alerts;
    assert_eq!(decisions.len(), 1, "20.00 USD is over 10");
    assert_eq!(decisions[0].rules_version.as_deref(), Some(low.version()));
}

#[test]
fn a_rules_action_rides_on_its_alert_and_the_strongest_is_the_decision() {
    let rules = RuleSet::from_toml(
        "rules.toml",
        r#"
[[rule]]
name = "over_10"
kind = "threshold"
above = 10
action = "review"

[[rule]]
name = "over_15"
kind = "threshold"
above = 15
action = "block"

[[rule]]
name = "over_5"
kind = "threshold"
above = 5
"#,
    )
    .expect("valid");
    let decisions = rules.decide(&transaction(""), None, &[], &[]);
    let actions: Vec<Action> = decisions.alerts.iter().map(|a| a.action).collect();
    assert_eq!(actions, [Action::Review, Action::Block, Action::Notify]);
    assert_eq!(decisions.decision(), Action::Block);
    assert_eq!(Decisions::default().decision(), Action::Allow);
    assert!(rules.rules()[1].describe().ends_with(", then block"));
}

#[test]
fn a_shadow_rules_hits_are_kept_apart_from_the_alerts_and_never_decide() {
    let rules = RuleSet::from_toml(
        "rules.toml",
        r#"
[[rule]]
name = "over_10_shadow"
kind = "threshold"
above = 10
action = "block"
mode = "shadow"
"#,
    )
    .expect("valid");
    let decisions = rules.decide(&transaction(""), None, &[], &[]);
    assert!(decisions.alerts.is_empty());
    assert_eq!(decisions.shadow.len(), 1);
    assert_eq!(decisions.shadow[0].rule, "over_10_shadow");
    assert_eq!(
        decisions.decision(),
        Action::Allow,
        "a shadow hit decides nothing"
    );
}

#[test]
fn an_unknown_action_or_mode_is_refused_by_name() {
    let base = "[[rule]]\nname = \"r\"\nkind = \"threshold\"\nabove = 1\n";
    let error = refused(&format!("{base}action = \"allow\""));
    assert!(
        error
            .message
            .contains("`action` \"allow\" is not one of notify, review, block"),
        "{error}"
    );
    let error = refused(&format!("{base}mode = \"dry\""));
    assert!(
        error
            .message
            .contains("`mode` \"dry\" is not one of live, shadow"),
        "{error}"
    );
}

#[test]
fn a_list_rule_fires_when_the_store_found_the_transactions_value() {
    let rules = RuleSet::from_toml(
        "rules.toml",
        r#"
[[rule]]
name = "blocked_card"
kind = "list"
list = "blocked_cards"
field = "payment_fingerprint"
action = "block"

[[rule]]
name = "watched_email"
kind = "list"
list = "emails"
field = "metadata.email"
"#,
    )
    .expect("valid");
    assert!(rules.has_list_rules() && !rules.has_windowed_rules());
    let tx = transaction(r#","payment_fingerprint":"fp_1","metadata":{"email":"a@b.c"}"#);
    let lookups = rules.list_lookups(&tx);
    assert_eq!(lookups.len(), 2);
    assert_eq!(
        (lookups[1].list.as_str(), lookups[1].value.as_str()),
        ("emails", "a@b.c")
    );
    assert!(
        rules.decide(&tx, None, &[], &[]).alerts.is_empty(),
        "nothing found"
    );
    let decisions = rules.decide(&tx, None, &[], &lookups[..1]);
    assert_eq!(decisions.alerts.len(), 1);
    assert_eq!(decisions.decision(), Action::Block);
    assert_eq!(
        decisions.alerts[0].reason,
        "payment_fingerprint is on the list blocked_cards"
    );
    assert!(
        rules.list_lookups(&transaction("")).is_empty(),
        "no field, no look-up"
    );
}

#[test]
fn a_list_rule_needs_its_list_and_a_field_it_knows() {
    let base = "[[rule]]\nname = \"r\"\nkind = \"list\"\n";
    let error = refused(&format!("{base}field = \"customer_id\""));
    assert!(error.message.contains("`list` is missing"), "{error}");
    let error = refused(&format!("{base}list = \"l\"\nfield = \"email\""));
    assert!(
        error.message.contains("`field` \"email\" is not one of"),
        "{error}"
    );
    let error = refused(&format!(
        "{base}list = \"l\"\nfield = \"customer_id\"\nabove = 1"
    ));
    assert!(
        error
            .message
            .contains("`above` does not apply to a list rule"),
        "{error}"
    );
    let error = refused("[[rule]]\nname = \"r\"\nkind = \"threshold\"\nabove = 1\nlist = \"l\"");
    assert!(error.message.contains("`list` does not apply"), "{error}");
}
