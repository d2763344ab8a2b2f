//! The processor's Lambda handler on an AWS emulator (moto): a mixed batch of ten. The
//! `processor` binary itself is tested in tests/binary.rs.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use infra::domain::ShopId;
use infra::ports::{DeadLetters, RecordReader, Store};
use processor::Processor;
use processor::lambda::handle_sqs_event;
use processor::retry::RetryPolicy;
use testkit::ResourceOptions;
use testkit::doubles::FaultyStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ten_with_poison_and_a_transient_failure() {
    let resources = testkit::resources(ResourceOptions::default()).await;
    let mut bodies: Vec<String> = (0..8)
        .map(|i| testkit::envelope("shop-a", &format!("ok-{i}"), "10.00"))
        .collect();
    bodies.push("{\"this is\": \"poison\"".to_owned());
    bodies.push(testkit::envelope("shop-a", "throttled", "10.00"));
    testkit::send_raw(&resources, &bodies).await;
    let messages = testkit::receive_all(
        &resources.config,
        &resources.aws.queue_url,
        10,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(messages.len(), 10);
    let event: SqsEvent = serde_json::from_value(testkit::sqs_event(&messages)).expect("event");

    let backend = resources.ports();
    let store: Arc<dyn Store> =
        Arc::new(FaultyStore::throttled(backend.store.clone(), "throttled"));
    let processor = Processor::new(
        backend.queue.clone(),
        store,
        backend.notifier.clone(),
        infra::domain::RuleSet::default(),
    )
    .with_concurrency(10);
    let response = handle_sqs_event(
        &processor,
        backend.queue.as_ref(),
        RetryPolicy::default(),
        event,
    )
    .await;

    let throttled_id = messages
        .iter()
        .find(|m| {
            m.body
                .as_deref()
                .is_some_and(|body| body.contains("\"throttled\""))
        })
        .and_then(|m| m.message_id.clone())
        .expect("the throttled message");
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        [throttled_id.as_str()],
        "only the transient failure is reported"
    );

    let dead = backend.queue.dead_letters(10).await.expect("peek");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].body.contains("poison"));
    assert!(
        dead[0].reason.contains("not a JSON object"),
        "{}",
        dead[0].reason
    );

    let shop = ShopId::parse("shop-a").expect("shop");
    for i in 0..8 {
        let stored = backend
            .store
            .get(&shop, &format!("ok-{i}"))
            .await
            .expect("get");
        assert!(stored.is_some(), "ok-{i} stored");
    }
    assert!(
        backend
            .store
            .get(&shop, "throttled")
            .await
            .expect("get")
            .is_none()
    );
}
