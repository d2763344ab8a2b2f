//! DynamoDB calls per message with the default rule, the README's five example rules and ten
//! rules, counted by an SDK interceptor while the processor stores 500 transactions on the
//! emulator (moto, started on a free port). BENCHMARKS.md, "Alert rules".
//!
//! Usage: `cargo run --release -p processor --example rules_dynamodb_calls [COUNT] [ONLY]`
//! (COUNT transactions per rule set, default 500; ONLY: run the sets whose name contains it,
//! e.g. `10`. The emulator slows down as the table grows, so a set alone on a fresh table is
//! quicker.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    batch_get_item::BatchGetItemInput, get_item::GetItemInput, put_item::PutItemInput,
    transact_write_items::TransactWriteItemsInput, update_item::UpdateItemInput,
};
use chrono::{SecondsFormat, Utc};
use infra::adapters::aws::{DEFAULT_INDEX_SHARDS, DynamoStore};
use infra::domain::RuleSet;
use infra::ports::{Consumer, OutgoingMessage, Producer};
use processor::Processor;
use testkit::ResourceOptions;

const DEFAULT_MESSAGES: usize = 500;
const EXAMPLE: &str = include_str!("../../rules/example.toml");

#[derive(Debug, Default, Clone)]
struct CallCounter(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let name = if input.downcast_ref::<PutItemInput>().is_some() {
            "PutItem"
        } else if input.downcast_ref::<GetItemInput>().is_some() {
            "GetItem"
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            "UpdateItem"
        } else if input.downcast_ref::<TransactWriteItemsInput>().is_some() {
            "TransactWriteItems"
        } else if input.downcast_ref::<BatchGetItemInput>().is_some() {
            "BatchGetItem"
        } else {
            "other"
        };
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(name).or_default() += 1;
        }
        Ok(())
    }
}

fn body(run: &str, n: usize) -> String {
    serde_json::json!({
        "version": 1, "shop_id": "shop-a", "accepted_at": Utc::now(), "request_id": format!("req-{n}"),
        "transaction": {
            "transaction_id": format!("{run}-{n}"),
            // 1 in 100 above 1000, as in the README's cost table.
            "amount": if n.is_multiple_of(100) { "1500.00".to_owned() } else { format!("{}.00", 1 + n % 900) },
            "currency": "USD",
            "customer_id": format!("cust-{}", n % 200),
            "payment_fingerprint": format!("fp_{}", n % 400),
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_MESSAGES);
    let only = args.next().unwrap_or_default();
    let resources = testkit::resources(ResourceOptions::default()).await;
    let ten = format!(
        "{EXAMPLE}{}",
        (1..=5)
            .map(|i| format!(
                "\n[[rule]]\nname = \"extra_{i}\"\nkind = \"velocity\"\nkey = \"customer_id\"\nwindow = \"{i}h\"\nabove = 1000\n"
            ))
            .collect::<String>()
    );
    let sets = [
        ("default rule", RuleSet::default()),
        (
            "5 rules",
            RuleSet::from_toml("example", EXAMPLE).expect("example"),
        ),
        ("10 rules", RuleSet::from_toml("ten", &ten).expect("ten")),
    ];
    for (name, rules) in sets.into_iter().filter(|(name, _)| name.contains(&only)) {
        let counter = CallCounter::default();
        let config = aws_sdk_dynamodb::config::Builder::from(&resources.config)
            .interceptor(counter.clone())
            .build();
        let store = Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            resources.aws.table_name.clone(),
            DEFAULT_INDEX_SHARDS,
        ));
        let ports = resources.ports();
        let run = name.replace(' ', "-");
        for chunk in (0..messages).collect::<Vec<_>>().chunks(10) {
            let messages = chunk
                .iter()
                .map(|&n| OutgoingMessage {
                    body: body(&run, n),
                    attributes: Default::default(),
                })
                .collect();
            ports.queue.send_batch(messages).await.expect("send");
        }
        let processor = Processor::new(ports.queue.clone(), store, ports.notifier.clone(), rules)
            .with_concurrency(10);
        let mut done = 0;
        while done < messages {
            let batch = ports
                .queue
                .receive(10, std::time::Duration::from_secs(1))
                .await
                .expect("receive");
            let report = processor.process_batch(batch).await;
            if let Some((_, error)) = report.failed().next() {
                eprintln!("{name}: a message failed and will be redelivered: {error}");
            }
            let receipts = report.receipts_to_ack();
            done += receipts.len();
            ports.queue.ack(&receipts).await.expect("ack");
        }
        let counts = counter.0.lock().expect("counts").clone();
        let total: u64 = counts.values().sum();
        let each: Vec<String> = counts
            .iter()
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / messages as f64))
            .collect();
        println!(
            "{name:<13} {:.2} DynamoDB calls per message ({})",
            total as f64 / messages as f64,
            each.join(", ")
        );
    }
}
