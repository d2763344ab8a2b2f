//! The one wiring of the processor: its ports opened from the settings, and the processor over
//! them. `processor poll`, the SQS Lambda and the API's in-process worker all start here.

use std::sync::Arc;

use infra::adapters::select::Connector;
use infra::ports::Consumer;

use crate::Processor;
use crate::settings::{ProcessorArgs, Tuning};

/// A processor ready to run, with the queue it drains and how to drive it.
pub struct Wired {
    pub processor: Arc<Processor>,
    pub queue: Arc<dyn Consumer>,
    pub tuning: Tuning,
}

/// Opens the consumer side of the queue, the store and the notifier, reads the rules in force,
/// and builds the processor. Adapters already opened through `ports` (the API's queue) are
/// shared, not opened again.
pub async fn processor(ports: &Connector<'_>, args: &ProcessorArgs) -> anyhow::Result<Wired> {
    let queue = ports.consumer().await?;
    let tuning = args.tuning(ports.queue_backend());
    let rules = args.rules(ports).await?;
    let lists = ports.list_membership().await?;
    if rules.has_list_rules() && lists.is_none() {
        anyhow::bail!(infra::backtest::LISTS_NEEDED);
    }
    let mut processor = Processor::new(
        queue.clone(),
        ports.store().await?,
        ports.notifier().await?,
        rules,
    )
    .with_concurrency(tuning.concurrency)
    .with_alert_claim(args.alert_claim_timeout);
    if let Some(lists) = lists {
        processor = processor.with_lists(lists);
    }
    Ok(Wired {
        processor: Arc::new(processor),
        queue,
        tuning,
    })
}
