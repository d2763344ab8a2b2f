use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::alert::AlertDecision;
use crate::envelope::Envelope;
use crate::parse_transaction;
use crate::transaction::ShopId;

const EXAMPLE: &str = include_str!("../../../rules/example.toml");

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-08-09T12:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// Payment `n` of one card, a minute after the one before, stored a second after its
/// timestamp (or `late_by` after it) with the alerts of `rules`.
fn payment(n: i64, late_by: Option<Duration>, rules: &[&str]) -> TransactionRecord {
    let timestamp = start() + Duration::minutes(n);
    let body = format!(
        r#"{{"transaction_id":"p{n}","amount":"20.00","timestamp":"{}","payment_fingerprint":"fp_card1"}}"#,
        timestamp.to_rfc3339()
    );
    let processed_at = timestamp + late_by.unwrap_or(Duration::seconds(1));
    let transaction = parse_transaction(body.as_bytes(), processed_at).expect("valid");
    let envelope = Envelope::new(
        ShopId::parse("shop").expect("valid"),
        transaction,
        processed_at,
        format!("req-{n}"),
    );
    let alerts: Vec<AlertDecision> = rules
        .iter()
        .map(|rule| AlertDecision {
            rule: (*rule).to_owned(),
            reason: String::new(),
            facts: Default::default(),
            rules_version: None,
            action: Action::Notify,
        })
        .collect();
    TransactionRecord::new(envelope, alerts.into(), processed_at)
}

fn example() -> RuleSet {
    RuleSet::from_toml("example.toml", EXAMPLE).expect("valid")
}

fn card_testing(report: &BacktestReport) -> &RuleResult {
    report
        .rules
        .iter()
        .find(|rule| rule.name == "card_testing")
        .expect("the rule")
}

#[test]
fn a_candidate_fires_on_the_sixth_payment_of_a_card_and_the_diff_says_what_it_adds() {
    let history: Vec<TransactionRecord> = (1..=7).map(|n| payment(n, None, &[])).collect();
    let rules = example();
    let report = Backtest::run(&rules, Period::default(), &history, Default::default());
    assert_eq!(report.transactions, 7);
    let rule = card_testing(&report);
    assert_eq!(rule.fired, 2);
    assert_eq!(rule.examples, ["p6", "p7"]);
    assert_eq!(report.diff.added, 2);
    assert_eq!(report.diff.dropped, 0);
    assert_eq!(report.decisions.get("notify"), Some(&2));
    assert_eq!(report.decisions.get("allow"), Some(&5));
    assert_eq!(report.stored_decisions.get("allow"), Some(&7));
    assert_eq!(report.decisions_changed, 2);
}

#[test]
fn the_stored_alerts_of_the_same_rules_are_reproduced_whatever_order_they_are_read_in() {
    let mut history: Vec<TransactionRecord> = (1..=7)
        .map(|n| payment(n, None, if n >= 6 { &["card_testing"] } else { &[] }))
        .collect();
    history.reverse();
    let report = Backtest::run(&example(), Period::default(), &history, Default::default());
    assert_eq!(
        (report.diff.added, report.diff.dropped),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.diff.unchanged, 2);
}

#[test]
fn a_stored_alert_the_candidate_does_not_raise_is_dropped() {
    let history = vec![payment(1, None, &["retired_rule"])];
    let report = Backtest::run(&example(), Period::default(), &history, Default::default());
    assert_eq!(report.diff.dropped, 1);
    assert_eq!(
        report.diff.dropped_examples,
        [Hit {
            shop_id: "shop".to_owned(),
            transaction_id: "p1".to_owned(),
            rule: "retired_rule".to_owned()
        }]
    );
}

#[test]
fn a_transaction_late_when_it_was_processed_is_not_counted() {
    let mut history: Vec<TransactionRecord> = (1..=5).map(|n| payment(n, None, &[])).collect();
    // Processed a day and more after its timestamp: judged, never counted.
    history.push(payment(6, Some(Duration::hours(25)), &[]));
    let report = Backtest::run(&example(), Period::default(), &history, Default::default());
    assert_eq!(card_testing(&report).fired, 0, "five counted, not six");
}

#[test]
fn the_period_reports_its_own_transactions_and_counts_the_ones_before_it() {
    let rules = example();
    let period = Period {
        from: Some(start() + Duration::minutes(5)),
        to: None,
    };
    let reads = Backtest::reads(&rules, period);
    assert_eq!(
        reads.from,
        Some(start() + Duration::minutes(5) - Duration::days(1))
    );
    let history: Vec<TransactionRecord> = (1..=7).map(|n| payment(n, None, &[])).collect();
    let report = Backtest::run(&rules, period, &history, Default::default());
    assert_eq!((report.transactions, report.read), (3, 7));
    assert_eq!(card_testing(&report).fired, 2);
}

#[test]
fn each_rule_says_how_many_of_its_hits_reviews_called_fraud_or_legitimate() {
    let mut history: Vec<TransactionRecord> = (1..=8)
        .map(|n| payment(n, None, if n >= 6 { &["card_testing"] } else { &[] }))
        .collect();
    history[5].alerts[0].verdict = Some(Verdict::Fraud);
    history[6].alerts[0].verdict = Some(Verdict::Legitimate);
    let report = Backtest::run(&example(), Period::default(), &history, Default::default());
    let rule = card_testing(&report);
    assert_eq!(
        (rule.fired, rule.reviewed_fraud, rule.reviewed_legitimate),
        (3, 1, 1)
    );
}

#[test]
fn list_rules_are_judged_against_the_lists_as_they_are_now() {
    let rules = RuleSet::from_toml(
        "rules.toml",
        "[[rule]]\nname = \"blocked\"\nkind = \"list\"\nlist = \"cards\"\nfield = \"payment_fingerprint\"\naction = \"block\"\n",
    )
    .expect("valid");
    let history: Vec<TransactionRecord> = (1..=3).map(|n| payment(n, None, &[])).collect();
    let lookups = Backtest::list_lookups(&rules, Period::default(), &history);
    assert_eq!(lookups.len(), 1, "one card, asked once");
    let report = Backtest::run(
        &rules,
        Period::default(),
        &history,
        lookups.into_iter().collect(),
    );
    assert_eq!(report.rules[0].fired, 3);
    assert_eq!(report.decisions.get("block"), Some(&3));
    assert_eq!(report.diff.added, 3);
}

#[test]
fn the_windowed_rules_split_in_jobs_judge_as_one_job_does() {
    // Two velocity rules on the same card, one of them a count the payments pass, so that
    // two jobs each have hits to merge back in order.
    let rules = RuleSet::from_toml(
        "rules.toml",
        "[[rule]]\nname = \"three_an_hour\"\nkind = \"velocity\"\nkey = \"payment_fingerprint\"\nmeasure = \"count\"\nwindow = \"1h\"\nabove = 3\n\n[[rule]]\nname = \"big_spend\"\nkind = \"velocity\"\nkey = \"payment_fingerprint\"\nmeasure = \"sum\"\ncurrency = \"USD\"\nwindow = \"1h\"\nabove = \"90\"\n",
    )
    .expect("valid");
    let history: Vec<TransactionRecord> = (1..=9).map(|n| payment(n, None, &[])).collect();
    let alone = Backtest::run(&rules, Period::default(), &history, Default::default());
    let mut job_sizes = Vec::new();
    let split = Backtest::run_side_by_side(
        &rules,
        Period::default(),
        &history,
        Default::default(),
        8,
        |jobs| {
            job_sizes = jobs.iter().map(|job| job.group.len()).collect();
            jobs.into_iter().rev().map(WindowJob::run).collect()
        },
    );
    assert_eq!(job_sizes, vec![1, 1], "a job per rule, no empty job");
    assert_eq!(split, alone);
    let fired: Vec<u64> = alone.rules.iter().map(|rule| rule.fired).collect();
    assert_eq!(fired, vec![6, 5]);
}
