//! The adapter contract: what every Queue and Store must do, whichever service is behind it.
//! Each backend's test file builds its adapters and runs these same functions.

#![allow(dead_code)] // each backend's test binary uses its own subset

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use infra::domain::rules::{Contribution, CounterId, WindowQuery, WindowTotal};
use infra::domain::{
    AlertFilter, AlertState, Envelope, ListFilters, ListQuery, Position, RefusedResend, RuleSet,
    ShopId, TransactionRecord, TransactionType, parse_transaction,
};
use infra::ports::{
    AlertClaim, ClaimOutcome, OutgoingMessage, PutOutcome, Queue, ReceivedMessage, Redrive, Store,
};
use tokio::time::Instant;

pub fn message(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.to_owned(),
        attributes: [("shop_id".to_owned(), "contract".to_owned())].into(),
    }
}

/// Receives until `want` messages arrived or the deadline passed.
pub async fn receive_at_least(
    queue: &dyn Queue,
    want: usize,
    within: Duration,
) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while all.len() < want && Instant::now() < deadline {
        let batch = queue
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive");
        all.extend(batch);
    }
    all
}

/// A message sent is there for a fresh client of the same queue.
pub async fn send_is_durable_on_return<F, Fut>(open_again: F, queue: Arc<dyn Queue>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    queue.send(message("durable-1")).await.expect("send");
    let batch = queue
        .send_batch(vec![message("durable-2"), message("durable-3")])
        .await
        .expect("send batch");
    assert!(batch.iter().all(Result::is_ok), "{batch:?}");
    drop(queue);
    let reopened = open_again().await;
    let received = receive_at_least(reopened.as_ref(), 3, Duration::from_secs(10)).await;
    let mut bodies: Vec<_> = received.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["durable-1", "durable-2", "durable-3"]);
}

/// A received message is invisible during its lease, comes back after it, and is gone once acked.
pub async fn lease_redelivery_and_ack(queue: Arc<dyn Queue>, visibility: Duration) {
    queue.send(message("leased")).await.expect("send");
    let first = receive_at_least(queue.as_ref(), 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let during_lease = queue.receive(10, Duration::ZERO).await.expect("receive");
    assert!(
        during_lease.is_empty(),
        "leased message was visible: {during_lease:?}"
    );
    let again = receive_at_least(queue.as_ref(), 1, visibility * 3 + Duration::from_secs(5)).await;
    assert_eq!(
        again.len(),
        1,
        "the message did not come back after its lease"
    );
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].receive_count, 2);
    queue.ack(&[again[0].receipt.clone()]).await.expect("ack");
    tokio::time::sleep(visibility + Duration::from_millis(500)).await;
    let after_ack = queue.receive(10, Duration::ZERO).await.expect("receive");
    assert!(
        after_ack.is_empty(),
        "acked message came back: {after_ack:?}"
    );
}

/// Received `max_receives` times without an ack, a message moves to the dead letters.
pub async fn dead_letters_after_max_receives(
    queue: Arc<dyn Queue>,
    max_receives: u32,
    visibility: Duration,
) {
    queue.send(message("never-acked")).await.expect("send");
    let mut receives = 0;
    let deadline = Instant::now() + (visibility + Duration::from_secs(2)) * (max_receives + 2);
    while Instant::now() < deadline {
        receives += queue
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive")
            .len();
        let dead = queue.dead_letters(10).await.expect("peek");
        if dead.iter().any(|letter| letter.body == "never-acked") {
            assert_eq!(receives, max_receives as usize);
            return;
        }
    }
    panic!("not dead-lettered after {receives} receives");
}

/// An explicit dead-letter keeps the body and the reason and removes the message.
pub async fn dead_letter_keeps_the_reason(queue: Arc<dyn Queue>) {
    queue.send(message("poison")).await.expect("send");
    let received = receive_at_least(queue.as_ref(), 1, Duration::from_secs(10)).await;
    queue
        .dead_letter(&received[0], "not JSON: expected value")
        .await
        .expect("dead letter");
    let dead = queue.dead_letters(10).await.expect("peek");
    let letter = dead
        .iter()
        .find(|letter| letter.body == "poison")
        .expect("in the dead letters");
    assert_eq!(letter.reason, "not JSON: expected value");
}

pub fn record(shop: &str, id: &str, amount: &str, alert: bool) -> TransactionRecord {
    let body = format!(
        r#"{{"transaction_id":"{id}","amount":"{amount}","timestamp":"2024-08-09T12:34:56Z"}}"#
    );
    let transaction = parse_transaction(body.as_bytes(), Utc::now()).expect("valid");
    let shop = ShopId::parse(shop).expect("valid shop");
    let envelope = Envelope::new(shop, transaction, Utc::now(), format!("req-{id}"));
    let decisions = if alert {
        RuleSet::default().decide(&envelope.transaction, None, &[], &[])
    } else {
        Default::default()
    };
    TransactionRecord::new(envelope, decisions, Utc::now())
}

/// Put-if-absent: first insert wins; the same payload again is a duplicate, another a conflict.
pub async fn put_if_absent_tells_duplicates_from_conflicts(store: Arc<dyn Store>) {
    let original = record("shop-a", "tx-1", "10.00", false);
    assert_eq!(
        store.put_if_absent(&original).await.expect("put"),
        PutOutcome::Inserted
    );
    let mut redelivered = original.clone();
    redelivered.request_id = "another-request".to_owned();
    match store.put_if_absent(&redelivered).await.expect("put") {
        PutOutcome::Duplicate(existing) => assert_eq!(existing.request_id, original.request_id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let changed = record("shop-a", "tx-1", "99.00", false);
    match store.put_if_absent(&changed).await.expect("put") {
        PutOutcome::Conflict(existing) => {
            assert_eq!(existing.transaction.amount, original.transaction.amount)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = store
        .get(&original.shop_id, "tx-1")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, original);
}

/// The alert state goes from pending to sent once, and stays sent.
pub async fn alert_state_moves_from_pending_to_sent(store: Arc<dyn Store>) {
    let record = record("shop-a", "tx-alert", "1000.01", true);
    let rule = record.alerts[0].decision.rule.clone();
    store.put_if_absent(&record).await.expect("put");
    let pending = store
        .get(&record.shop_id, "tx-alert")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(pending.pending_alerts().count(), 1);
    assert_eq!(pending.alerts[0].decision.facts["threshold"], "1000");
    let sent_at = Utc::now();
    store
        .mark_alert_sent(&record.shop_id, "tx-alert", &rule, sent_at)
        .await
        .expect("mark");
    store
        .mark_alert_sent(
            &record.shop_id,
            "tx-alert",
            &rule,
            sent_at + chrono::Duration::hours(1),
        )
        .await
        .expect("mark again");
    let sent = store
        .get(&record.shop_id, "tx-alert")
        .await
        .expect("get")
        .expect("stored");
    let alert = &sent.alerts[0];
    assert_eq!(alert.state, AlertState::Sent);
    assert_eq!(
        alert.sent_at.map(|t| t.timestamp_millis()),
        Some(sent_at.timestamp_millis()),
        "the first send time stays"
    );
}

fn claim(owner: &str, now: DateTime<Utc>, seconds: i64) -> AlertClaim {
    AlertClaim {
        owner: owner.to_owned(),
        now,
        until: now + chrono::Duration::seconds(seconds),
    }
}

/// A claim is exclusive while it lasts, can be taken over once it expired, and is moot once
/// the alert is sent.
pub async fn alert_claims_are_exclusive_and_expire(store: Arc<dyn Store>) {
    let record = record("shop-a", "tx-claim", "5000.00", true);
    let rule = record.alerts[0].decision.rule.clone();
    let shop = record.shop_id.clone();
    store.put_if_absent(&record).await.expect("put");
    let now = Utc::now();
    let first = store
        .claim_alert(&shop, "tx-claim", &rule, &claim("first", now, 60))
        .await
        .expect("claim");
    assert_eq!(first, ClaimOutcome::Claimed);
    let second = store
        .claim_alert(&shop, "tx-claim", &rule, &claim("second", now, 60))
        .await
        .expect("claim");
    assert!(
        matches!(second, ClaimOutcome::HeldElsewhere { until } if until > now),
        "{second:?}"
    );
    // The first holder crashed: after its claim expired, another delivery takes over.
    let later = now + chrono::Duration::seconds(61);
    let takeover = store
        .claim_alert(&shop, "tx-claim", &rule, &claim("third", later, 60))
        .await
        .expect("claim");
    assert_eq!(takeover, ClaimOutcome::Claimed);
    store
        .mark_alert_sent(&shop, "tx-claim", &rule, later)
        .await
        .expect("mark");
    let after = store
        .claim_alert(&shop, "tx-claim", &rule, &claim("fourth", later, 60))
        .await
        .expect("claim");
    assert_eq!(after, ClaimOutcome::AlreadySent);
}

/// Of many concurrent claims on one alert, exactly one wins.
pub async fn concurrent_claims_have_one_winner(store: Arc<dyn Store>) {
    let record = record("shop-a", "tx-race", "5000.00", true);
    let rule = record.alerts[0].decision.rule.clone();
    store.put_if_absent(&record).await.expect("put");
    let now = Utc::now();
    let claims = (0..8).map(|i| {
        let store = store.clone();
        let shop = record.shop_id.clone();
        let rule = rule.clone();
        tokio::spawn(async move {
            store
                .claim_alert(&shop, "tx-race", &rule, &claim(&format!("d{i}"), now, 60))
                .await
                .expect("claim")
        })
    });
    let mut winners = 0;
    for claim in claims {
        if claim.await.expect("task") == ClaimOutcome::Claimed {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

/// One shop cannot read another's transaction, even knowing its id.
pub async fn reads_are_scoped_to_the_shop(store: Arc<dyn Store>) {
    let mine = record("shop-a", "shared-id", "10.00", false);
    store.put_if_absent(&mine).await.expect("put");
    let other_shop = ShopId::parse("shop-b").expect("valid");
    assert_eq!(
        store.get(&other_shop, "shared-id").await.expect("get"),
        None
    );
    assert!(
        store
            .get(&mine.shop_id, "shared-id")
            .await
            .expect("get")
            .is_some()
    );
    let theirs = record("shop-b", "shared-id", "20.00", false);
    assert_eq!(
        store.put_if_absent(&theirs).await.expect("put"),
        PutOutcome::Inserted,
        "ids are per shop"
    );
}

/// A batch larger than the service's own batch limit is split, and every entry lands once.
pub async fn send_batch_of_any_size(queue: Arc<dyn Queue>) {
    let bodies: Vec<String> = (0..25).map(|i| format!("batch-{i:02}")).collect();
    let results = queue
        .send_batch(bodies.iter().map(|body| message(body)).collect())
        .await
        .expect("send batch");
    assert_eq!(results.len(), 25);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let received = receive_at_least(queue.as_ref(), 25, Duration::from_secs(20)).await;
    let mut got: Vec<String> = received.into_iter().map(|m| m.body).collect();
    got.sort();
    assert_eq!(got, bodies);
}

/// Dead letters are listed with their reasons, left in place by the listing, and redriven back
/// onto the queue: by id, then all; an unknown id moves nothing.
pub async fn dead_letters_are_listed_and_redriven(queue: Arc<dyn Queue>) {
    for body in ["poison-a", "poison-b", "poison-c"] {
        queue.send(message(body)).await.expect("send");
    }
    let received = receive_at_least(queue.as_ref(), 3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    for message in &received {
        let reason = format!("reason of {}", message.body);
        queue
            .dead_letter(message, &reason)
            .await
            .expect("dead letter");
    }
    let listed = queue.dead_letters(10).await.expect("list");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|letter| letter.reason == format!("reason of {}", letter.body))
    );
    assert_eq!(
        queue.dead_letters(10).await.expect("list again").len(),
        3,
        "listing leaves them in place"
    );
    let first = listed
        .iter()
        .find(|letter| letter.body == "poison-a")
        .expect("poison-a is listed");
    let unknown = Redrive::Ids(vec!["no-such-id".to_owned()]);
    assert_eq!(queue.redrive(&unknown).await.expect("redrive nothing"), 0);
    let by_id = Redrive::Ids(vec![first.id.clone()]);
    assert_eq!(queue.redrive(&by_id).await.expect("redrive one"), 1);
    let back = receive_at_least(queue.as_ref(), 1, Duration::from_secs(10)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "poison-a");
    assert_eq!(back[0].receive_count, 1, "a redriven message starts afresh");
    queue.ack(&[back[0].receipt.clone()]).await.expect("ack");
    assert_eq!(queue.redrive(&Redrive::All).await.expect("redrive all"), 2);
    assert!(queue.dead_letters(10).await.expect("list").is_empty());
    let rest = receive_at_least(queue.as_ref(), 2, Duration::from_secs(10)).await;
    let mut bodies: Vec<&str> = rest.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["poison-b", "poison-c"]);
}

/// A varied transaction for list tests: its time, type, currency, customer and amount all
/// follow from `n`; every 7th alerts.
pub fn listed_record(shop: &str, n: usize) -> TransactionRecord {
    let kinds = ["purchase", "refund", "chargeback"];
    let currencies = ["USD", "EUR", "JPY"];
    let currency = currencies[n % 3];
    let amount = if currency == "JPY" {
        format!("{}", 100 + (n * 37) % 5000)
    } else {
        format!("{}.{:02}", 1 + (n * 37) % 2000, n % 100)
    };
    // Every third pair shares a second, so that ties are broken by id.
    let seconds = 1_700_000_000 + (n / 2) as i64 * 60;
    let timestamp = chrono::DateTime::from_timestamp(seconds, 0)
        .expect("valid")
        .to_rfc3339();
    let mut body = serde_json::json!({
        "transaction_id": format!("t{n:05}"),
        "amount": amount,
        "currency": currency,
        "timestamp": timestamp,
        "type": kinds[n % 3],
    });
    if !n.is_multiple_of(4) {
        body["customer_id"] = serde_json::json!(format!("c{}", n % 5));
    }
    if !n.is_multiple_of(3) {
        body["payment_fingerprint"] = serde_json::json!(format!("fp_{}", n % 4));
    }
    let transaction = parse_transaction(body.to_string().as_bytes(), Utc::now()).expect("valid");
    let shop = ShopId::parse(shop).expect("valid shop");
    let envelope = Envelope::new(shop, transaction, Utc::now(), format!("req-{n}"));
    let decisions = if n.is_multiple_of(7) {
        vec![infra::domain::AlertDecision {
            rule: "test_rule".to_owned(),
            reason: "every seventh".to_owned(),
            facts: Default::default(),
            rules_version: None,
            action: Default::default(),
        }]
    } else {
        Default::default()
    };
    TransactionRecord::new(envelope, decisions.into(), Utc::now())
}

/// Stores records concurrently (16 at a time).
pub async fn put_all(store: &Arc<dyn Store>, records: &[TransactionRecord]) {
    use futures_util::StreamExt;
    futures_util::stream::iter(records)
        .map(|record| {
            let store = store.clone();
            async move { store.put_if_absent(record).await.expect("put") }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// Walks every page of a list; returns the ids in the order seen and the number of pages.
pub async fn walk(
    store: &dyn Store,
    shop: &ShopId,
    filters: &ListFilters,
    limit: usize,
    mut between_pages: impl AsyncFnMut(usize),
) -> (Vec<TransactionRecord>, usize) {
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let query = ListQuery {
            filters: filters.clone(),
            limit,
            after: after.clone(),
        };
        let page = store.list(shop, &query).await.expect("list");
        pages += 1;
        assert!(page.records.len() <= limit);
        seen.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return (seen, pages),
        }
        between_pages(pages).await;
        assert!(pages < 10_000, "the walk does not end");
    }
}

fn in_list_order(records: &[TransactionRecord]) -> bool {
    records.windows(2).all(|pair| {
        let (a, b) = (Position::of(&pair[0]), Position::of(&pair[1]));
        (a.micros, &a.transaction_id) > (b.micros, &b.transaction_id)
    })
}

/// Pages of a shop's transactions, newest first with ties broken by id, visit every
/// transaction that existed when the walk began exactly once, even while new ones (older and
/// newer) arrive, and never show another shop's. `count` transactions in all, four in five of
/// them the walking shop's.
pub async fn pages_visit_every_transaction_once(store: Arc<dyn Store>, count: usize, page: usize) {
    let count_mine = count * 4 / 5;
    let mine: Vec<TransactionRecord> = (0..count_mine)
        .map(|n| listed_record("shop-a", n))
        .collect();
    let theirs: Vec<TransactionRecord> = (0..count - count_mine)
        .map(|n| listed_record("shop-b", n))
        .collect();
    put_all(&store, &mine).await;
    put_all(&store, &theirs).await;
    let shop = ShopId::parse("shop-a").expect("shop");
    let (seen, pages) = walk(
        store.as_ref(),
        &shop,
        &ListFilters::default(),
        37,
        async |page| {
            // Arrivals during the walk: one newer than everything, one among the oldest (which
            // the walk has not reached yet) and one among the newest (which it has passed).
            for (time_of, name) in [
                (count_mine + 10 * page, "newest"),
                (page, "old"),
                (count_mine - page, "recent"),
            ] {
                let mut late = listed_record("shop-a", time_of);
                late.transaction.transaction_id = format!("late-{name}-{page}");
                store.put_if_absent(&late).await.expect("put late");
            }
        },
    )
    .await;
    assert!(pages > count_mine / page, "{pages} pages");
    assert!(
        seen.iter().all(|r| r.shop_id == shop),
        "another shop's transaction"
    );
    assert!(in_list_order(&seen), "out of order");
    let ids: Vec<&str> = seen
        .iter()
        .map(|r| r.transaction.transaction_id.as_str())
        .collect();
    let unique: std::collections::HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a transaction was seen twice");
    for record in &mine {
        assert!(
            unique.contains(record.transaction.transaction_id.as_str()),
            "{} was skipped",
            record.transaction.transaction_id
        );
    }
}

/// Every filter, alone and combined, gives exactly the records `ListFilters::matches` picks.
pub async fn filters_pick_exactly_the_matching_records(
    store: Arc<dyn Store>,
    count: usize,
    page: usize,
) {
    let records: Vec<TransactionRecord> = (0..count).map(|n| listed_record("shop-f", n)).collect();
    put_all(&store, &records).await;
    let shop = ShopId::parse("shop-f").expect("shop");
    // Some alerts sent, some conflicts recorded, so that those filters have both sides.
    for record in records.iter().filter(|r| !r.alerts.is_empty()).step_by(2) {
        let id = &record.transaction.transaction_id;
        store
            .mark_alert_sent(&shop, id, "test_rule", Utc::now())
            .await
            .expect("mark");
    }
    for record in records.iter().step_by(11) {
        let refused = RefusedResend {
            request_id: "conflicting".to_owned(),
            accepted_at: Utc::now(),
        };
        store
            .record_conflict(&shop, &record.transaction.transaction_id, &refused)
            .await
            .expect("conflict");
    }
    let (everything, _) = walk(
        store.as_ref(),
        &shop,
        &ListFilters::default(),
        100,
        async |_| {},
    )
    .await;
    assert_eq!(everything.len(), count);
    let at = |n: usize| Position::of(&records[n]).micros;
    let time = |micros: i64| chrono::DateTime::from_timestamp_micros(micros).expect("time");
    let cases = vec![
        ListFilters {
            kind: Some(TransactionType::Refund),
            ..Default::default()
        },
        ListFilters {
            currency: Some("JPY".to_owned()),
            ..Default::default()
        },
        ListFilters {
            customer_id: Some("c3".to_owned()),
            ..Default::default()
        },
        ListFilters {
            payment_fingerprint: Some("fp_1".to_owned()),
            ..Default::default()
        },
        ListFilters {
            payment_fingerprint: Some("fp_2".to_owned()),
            customer_id: Some("c2".to_owned()),
            ..Default::default()
        },
        ListFilters {
            min_amount: Some("100.50".parse().expect("decimal")),
            max_amount: Some("900".parse().expect("decimal")),
            currency: Some("USD".to_owned()),
            ..Default::default()
        },
        ListFilters {
            alert: Some(AlertFilter::None),
            ..Default::default()
        },
        ListFilters {
            alert: Some(AlertFilter::Pending),
            ..Default::default()
        },
        ListFilters {
            alert: Some(AlertFilter::Sent),
            ..Default::default()
        },
        ListFilters {
            alert: Some(AlertFilter::Any),
            ..Default::default()
        },
        ListFilters {
            conflicted: Some(true),
            ..Default::default()
        },
        ListFilters {
            conflicted: Some(false),
            kind: Some(TransactionType::Purchase),
            ..Default::default()
        },
        ListFilters {
            from: Some(time(at(count / 4))),
            to: Some(time(at(count / 2))),
            ..Default::default()
        },
        ListFilters {
            from: Some(time(at(10))),
            customer_id: Some("c1".to_owned()),
            alert: Some(AlertFilter::None),
            ..Default::default()
        },
    ];
    for filters in cases {
        let (found, _) = walk(store.as_ref(), &shop, &filters, page, async |_| {}).await;
        let mut expected: Vec<&str> = everything
            .iter()
            .filter(|record| filters.matches(record))
            .map(|record| record.transaction.transaction_id.as_str())
            .collect();
        let mut got: Vec<&str> = found
            .iter()
            .map(|r| r.transaction.transaction_id.as_str())
            .collect();
        assert!(in_list_order(&found), "{filters:?}: out of order");
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "{filters:?}");
        assert!(
            !expected.is_empty(),
            "{filters:?} matches nothing: a weak case"
        );
    }
}

/// A re-send with another payload is recorded beside the original, once per refused request.
pub async fn conflicts_are_counted_once_per_request(store: Arc<dyn Store>) {
    let original = record("shop-a", "tx-conflicted", "10.00", false);
    store.put_if_absent(&original).await.expect("put");
    let shop = original.shop_id.clone();
    let first = RefusedResend {
        request_id: "req-1".to_owned(),
        accepted_at: Utc::now(),
    };
    let second = RefusedResend {
        request_id: "req-2".to_owned(),
        accepted_at: first.accepted_at + chrono::Duration::seconds(5),
    };
    for refused in [&first, &first, &second, &first] {
        store
            .record_conflict(&shop, "tx-conflicted", refused)
            .await
            .expect("record");
    }
    let stored = store
        .get(&shop, "tx-conflicted")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.conflicts.count, 2);
    assert_eq!(stored.conflicts.last_request_id.as_deref(), Some("req-2"));
    assert_eq!(
        stored
            .conflicts
            .last_refused_at
            .map(|t| t.timestamp_micros()),
        Some(second.accepted_at.timestamp_micros())
    );
    assert_eq!(
        stored.transaction, original.transaction,
        "the original is kept"
    );
}

fn contribution(
    rule: &str,
    key: &str,
    bucket: i64,
    amount: &str,
    member: Option<&str>,
) -> Contribution {
    Contribution {
        counter: CounterId {
            rule: rule.to_owned(),
            key: key.to_owned(),
            bucket,
        },
        amount: amount.parse().expect("amount"),
        member: member.map(str::to_owned),
        expires_at: Utc::now() + chrono::Duration::days(2),
    }
}

/// Counters add each transaction once, across buckets, exactly (sums in decimal), keep
/// distinct members, and never mix keys, rules or shops.
pub async fn counters_count_each_transaction_once(store: Arc<dyn Store>) {
    let shop = ShopId::parse("shop-a").expect("shop");
    let other_shop = ShopId::parse("shop-b").expect("shop");
    let until = Utc::now() + chrono::Duration::days(2);
    let window = |rule: &str, key: &str| WindowQuery {
        rule: rule.to_owned(),
        key: key.to_owned(),
        buckets: (0..10).map(|i| 1_000 + i * 60).collect(),
    };
    for (id, bucket, amount, member) in [
        ("t1", 1_000, "0.10", "fp-1"),
        ("t2", 1_060, "0.20", "fp-2"),
        ("t3", 1_540, "1000.01", "fp-1"),
        ("t1", 1_000, "0.10", "fp-1"),
    ] {
        let contributions = [
            contribution("count_rule", "cust-1", bucket, amount, None),
            contribution("distinct_rule", "cust-1", bucket, amount, Some(member)),
        ];
        store
            .count_once(&shop, id, until, &contributions)
            .await
            .expect("count");
    }
    // Outside the window, another key, another shop: none of them count.
    for (shop, key, bucket) in [
        (&shop, "cust-1", 940),
        (&shop, "cust-2", 1_000),
        (&other_shop, "cust-1", 1_000),
    ] {
        store
            .count_once(
                shop,
                &format!("x-{key}-{bucket}-{shop}"),
                until,
                &[contribution("count_rule", key, bucket, "5", None)],
            )
            .await
            .expect("count");
    }
    let totals = store
        .window_totals(
            &shop,
            &[
                window("count_rule", "cust-1"),
                window("distinct_rule", "cust-1"),
                window("count_rule", "nobody"),
            ],
        )
        .await
        .expect("totals");
    assert_eq!(totals[0].count, 3, "t1 delivered twice counts once");
    assert_eq!(
        totals[0].sum,
        "1000.31".parse().expect("decimal"),
        "summed exactly"
    );
    assert_eq!(totals[1].members.len(), 2);
    assert_eq!(totals[2], WindowTotal::default());
    // Counting and reading in one step (what the processor calls) agrees, and a third
    // delivery of t1 still adds nothing.
    let redelivered = store
        .count_then_total(
            &shop,
            "t1",
            until,
            &[contribution("count_rule", "cust-1", 1_000, "0.10", None)],
            &[
                window("count_rule", "cust-1"),
                window("distinct_rule", "cust-1"),
                window("count_rule", "nobody"),
            ],
        )
        .await
        .expect("count and total");
    assert_eq!(redelivered, totals);
    let t4 = store
        .count_then_total(
            &shop,
            "t4",
            until,
            &[contribution(
                "distinct_rule",
                "cust-1",
                1_060,
                "2",
                Some("fp-3"),
            )],
            &[window("distinct_rule", "cust-1")],
        )
        .await
        .expect("count and total");
    assert_eq!(t4[0].count, 4, "the new transaction is in its own window");
    assert_eq!(t4[0].members.len(), 3);
    assert_eq!(t4[0].sum, "1002.31".parse().expect("decimal"));
    let read_back = store
        .window_totals(&shop, &[window("distinct_rule", "cust-1")])
        .await
        .expect("totals");
    assert_eq!(read_back, t4, "what was counted is what the store holds");
}

/// Concurrent counts of the same transactions, as parallel invocations would make them: each is
/// counted exactly once.
pub async fn concurrent_counts_lose_nothing_and_double_nothing(store: Arc<dyn Store>) {
    let shop = ShopId::parse("shop-a").expect("shop");
    let until = Utc::now() + chrono::Duration::days(2);
    let attempts = (0..20).flat_map(|i| [i, i, i]).map(|i| {
        let store = store.clone();
        let shop = shop.clone();
        tokio::spawn(async move {
            // A conflict between two concurrent copies is transient: the loser is retried, as
            // the queue would redeliver it, and then finds the marker.
            let mut tries = 0;
            let query = WindowQuery {
                rule: "r".to_owned(),
                key: "k".to_owned(),
                buckets: vec![2_000],
            };
            loop {
                let counted = store
                    .count_then_total(
                        &shop,
                        &format!("c-{i}"),
                        until,
                        &[contribution("r", "k", 2_000, "1.5", None)],
                        std::slice::from_ref(&query),
                    )
                    .await;
                tries += 1;
                match counted {
                    Ok(totals) => {
                        // Read after its own count, before or after the others'.
                        assert!((1..=20).contains(&totals[0].count), "{totals:?}");
                        return;
                    }
                    Err(error) if tries >= 10 => panic!("still failing: {error}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20 * tries)).await,
                }
            }
        })
    });
    for attempt in futures_util::future::join_all(attempts).await {
        attempt.expect("task");
    }
    let totals = store
        .window_totals(
            &shop,
            &[WindowQuery {
                rule: "r".to_owned(),
                key: "k".to_owned(),
                buckets: vec![2_000],
            }],
        )
        .await
        .expect("totals");
    assert_eq!(totals[0].count, 20);
    assert_eq!(totals[0].sum, rust_decimal::Decimal::from(30));
}

/// A backtest's history: exactly the shop's records of the period, `from` inclusive and `to`
/// exclusive, with their alerts; refused past the bound; never another shop's.
pub async fn history_reads_the_shops_period_within_the_bound(store: Arc<dyn Store>) {
    use infra::domain::rules::backtest::Period;
    use infra::ports::{HistoryBound, HistoryRead};

    let mine: Vec<TransactionRecord> = (0..60).map(|n| listed_record("hist-a", n)).collect();
    let theirs: Vec<TransactionRecord> = (0..10).map(|n| listed_record("hist-b", n)).collect();
    put_all(&store, &mine).await;
    put_all(&store, &theirs).await;
    let shop = ShopId::parse("hist-a").expect("shop");
    let (from, to) = (
        mine[10].transaction.timestamp,
        mine[40].transaction.timestamp,
    );
    let period = Period {
        from: Some(from),
        to: Some(to),
    };
    let roomy = HistoryBound {
        transactions: 100,
        bytes: 1_000_000,
    };
    let HistoryRead::Complete(read, _) =
        store.history(&shop, period, roomy).await.expect("history")
    else {
        panic!("within the bound");
    };
    let mut ids: Vec<String> = read
        .iter()
        .map(|record| record.transaction.transaction_id.clone())
        .collect();
    ids.sort();
    let expected: Vec<String> = mine
        .iter()
        .filter(|record| (from..to).contains(&record.transaction.timestamp))
        .map(|record| record.transaction.transaction_id.clone())
        .collect();
    assert_eq!(ids, expected);
    assert!(read.iter().all(|record| record.shop_id == shop));
    let alerted = read.iter().find(|record| !record.alerts.is_empty());
    assert!(alerted.is_some(), "alerts come with their records");

    let bound = |transactions, bytes| HistoryBound {
        transactions,
        bytes,
    };
    let all = store
        .history(&shop, Period::default(), bound(60, 1_000_000))
        .await
        .expect("history");
    let HistoryRead::Complete(records, bytes) = all else {
        panic!("60 fit")
    };
    assert_eq!(records.len(), 60);
    let (store, shop) = (&store, &shop);
    let over = |bound| async move {
        store
            .history(shop, Period::default(), bound)
            .await
            .expect("history")
    };
    assert_eq!(
        over(bound(59, 1_000_000)).await,
        HistoryRead::TooMany,
        "one too many"
    );
    assert_eq!(
        over(bound(60, bytes - 1)).await,
        HistoryRead::TooMany,
        "a byte too many"
    );
    assert!(matches!(
        over(bound(60, bytes)).await,
        HistoryRead::Complete(..)
    ));
}

/// A shop's lists: a value added is held (once, however often added) until removed, pages
/// walk the values in order, and another shop's list of the same name is its own.
pub async fn lists_hold_values_per_shop_in_order<L>(lists: Arc<L>)
where
    L: infra::ports::ListAdmin + infra::ports::ListMembership + ?Sized,
{
    use infra::domain::lists::ListLookup;

    let (mine, theirs) = (
        ShopId::parse("lists-a").expect("shop"),
        ShopId::parse("lists-b").expect("shop"),
    );
    let lookup = |value: &str| ListLookup {
        list: "blocked".to_owned(),
        value: value.to_owned(),
    };
    let now = Utc::now();
    for value in ["fp_3", "fp_1", "fp_2", "fp_1"] {
        lists
            .add_to_list(&mine, "blocked", value, now)
            .await
            .expect("add");
    }
    let asked = [lookup("fp_1"), lookup("fp_9"), lookup("fp_2")];
    assert_eq!(
        lists.listed(&mine, &asked).await.expect("listed"),
        [true, false, true]
    );
    assert_eq!(
        lists.listed(&theirs, &asked).await.expect("listed"),
        [false, false, false]
    );

    let first = lists
        .list_items(&mine, "blocked", None, 2)
        .await
        .expect("page");
    let values: Vec<&str> = first.items.iter().map(|item| item.value.as_str()).collect();
    assert_eq!(values, ["fp_1", "fp_2"]);
    let next = first.next.as_deref();
    assert_eq!(next, Some("fp_2"));
    let second = lists
        .list_items(&mine, "blocked", next, 2)
        .await
        .expect("page");
    let values: Vec<&str> = second
        .items
        .iter()
        .map(|item| item.value.as_str())
        .collect();
    assert_eq!((values, second.next), (vec!["fp_3"], None));

    lists
        .remove_from_list(&mine, "blocked", "fp_1")
        .await
        .expect("remove");
    lists
        .remove_from_list(&mine, "blocked", "fp_1")
        .await
        .expect("remove twice");
    assert_eq!(
        lists.listed(&mine, &asked).await.expect("listed"),
        [false, false, true]
    );
    let empty = lists
        .list_items(&theirs, "blocked", None, 10)
        .await
        .expect("page");
    assert!(empty.items.is_empty() && empty.next.is_none());
}
