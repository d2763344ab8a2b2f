//! Webhooks on AWS, one function with two event sources:
//!
//! - **The transactions table's stream.** An alert's item is written in the same DynamoDB
//!   transaction as the record that raised it, and a review in the same transaction as the
//!   record's review status; the stream carries each write at least once, so an event is as
//!   durable as the change it reports. A new alert item is `alert.raised`, a new review version
//!   `alert.reviewed`. Each becomes one delivery per subscribed webhook: its entry opened in
//!   the deliveries list, and a message on the deliveries queue.
//! - **The deliveries queue.** Each message is one attempt. A 2xx ends it; a failure hands the
//!   message back with its visibility set to the schedule's next wait (a partial batch
//!   response), so SQS holds the retries; after the last, the delivery is failed and counted.
//!
//! Both answer `{"batchItemFailures": [...]}`, the shape Lambda reads for either source.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{StreamExt, stream};
use infra::aws_calls::{AwsCall, Caller};
use infra::domain::ShopId;
use infra::domain::inbox::Review;
use infra::domain::webhooks::{EventType, WebhookEvent, delivery_id};
use infra::ports::BACKFILLED;
use infra::ports::{
    AlertInbox, AttemptOutcome, DeliveryLog, DeliveryQueue, DueDelivery, PortError, QueuedDelivery,
    WebhookRegistry,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::webhook_sender::{self, SenderSettings};

const LOGS: &str = "log-group:WebhooksLogGroup";
const QUEUE: &str = "queue:WebhookDeliveriesQueue";
const STREAM: &str = "stream:TransactionsTable";
/// What Lambda does for the webhooks function with its role (the two event sources read the
/// stream and the queue; the log agent writes), for the permission test.
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("", "dynamodb:DescribeStream", STREAM, &[Caller::Webhooks]),
    AwsCall::new("", "dynamodb:GetShardIterator", STREAM, &[Caller::Webhooks]),
    AwsCall::new("", "dynamodb:GetRecords", STREAM, &[Caller::Webhooks]),
    AwsCall::new("", "dynamodb:ListStreams", STREAM, &[Caller::Webhooks]),
    AwsCall::new("", "sqs:ReceiveMessage", QUEUE, &[Caller::Webhooks]),
    AwsCall::new("", "sqs:DeleteMessage", QUEUE, &[Caller::Webhooks]),
    AwsCall::new("", "sqs:GetQueueAttributes", QUEUE, &[Caller::Webhooks]),
    AwsCall::new("", "logs:CreateLogStream", LOGS, &[Caller::Webhooks]),
    AwsCall::new("", "logs:PutLogEvents", LOGS, &[Caller::Webhooks]),
    // The stream's on-failure destination: where a record given up on is described.
    AwsCall::new(
        "",
        "sqs:SendMessage",
        "queue:WebhookEventsFailedQueue",
        &[Caller::Webhooks],
    ),
];

/// What the function works with.
pub struct WebhookFunction {
    pub inbox: Arc<dyn AlertInbox>,
    pub registry: Arc<dyn WebhookRegistry>,
    pub log: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub settings: SenderSettings,
    pub client: reqwest::Client,
}

/// Deliveries attempted side by side within one invocation.
const CONCURRENCY: usize = 10;
/// Kept back from the invocation's deadline to hand the batch back.
const TIME_TO_HAND_BACK: Duration = Duration::from_secs(2);

/// A change to an alert that a webhook reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub shop_id: ShopId,
    pub alert_id: String,
    pub kind: EventType,
    /// The review the change wrote (for `alert.reviewed`).
    pub review: Option<Review>,
}

impl WebhookFunction {
    /// One invocation, from either source, worked until shortly before `deadline`.
    pub async fn handle(&self, event: Value, deadline: Option<Instant>) -> Value {
        let records = event["Records"].as_array().cloned().unwrap_or_default();
        let source = records
            .first()
            .and_then(|record| record["eventSource"].as_str())
            .unwrap_or_default();
        let work_until = deadline.map(|deadline| deadline - TIME_TO_HAND_BACK);
        let failures = match source {
            "aws:dynamodb" => self.fan_out_records(&records, work_until).await,
            "aws:sqs" => self.deliver_messages(records, work_until).await,
            _ => Vec::new(),
        };
        let failures: Vec<Value> = failures
            .into_iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect();
        json!({"batchItemFailures": failures})
    }

    /// Stream records in order; on the first that fails, or the first not started before
    /// `work_until`, it and every later one are handed back (Lambda retries a stream from the
    /// first failure reported).
    async fn fan_out_records(&self, records: &[Value], work_until: Option<Instant>) -> Vec<String> {
        for (index, record) in records.iter().enumerate() {
            let Some(change) = alert_change(record) else {
                continue;
            };
            let done = match work_until {
                Some(until) if Instant::now() >= until => Err("no time left".to_owned()),
                Some(until) => tokio::time::timeout_at(until, self.fan_out(&change))
                    .await
                    .map_err(|_| "no time left".to_owned())
                    .and_then(|done| done.map_err(|error| error.to_string())),
                None => self
                    .fan_out(&change)
                    .await
                    .map_err(|error| error.to_string()),
            };
            if let Err(error) = done {
                tracing::warn!(%error, alert = %change.alert_id, "could not queue an alert's webhook deliveries; handed back");
                return records[index..]
                    .iter()
                    .filter_map(|record| record["dynamodb"]["SequenceNumber"].as_str())
                    .map(str::to_owned)
                    .collect();
            }
        }
        Vec::new()
    }

    /// Turns one alert change into a delivery per subscribed webhook: each opened in the list,
    /// then queued. Done twice (a stream record seen again), it opens nothing new and queues
    /// the same deliveries, which receivers dedupe by event id.
    pub async fn fan_out(&self, change: &AlertChange) -> Result<(), PortError> {
        let subscribed: Vec<_> = self
            .registry
            .webhooks(&change.shop_id)
            .await?
            .into_iter()
            .filter(|webhook| webhook.events.contains(&change.kind))
            .collect();
        if subscribed.is_empty() {
            return Ok(());
        }
        let Some(mut alert) = self
            .inbox
            .get_alert(&change.shop_id, &change.alert_id)
            .await?
        else {
            tracing::warn!(alert = %change.alert_id, "an alert in the stream is not in the inbox");
            return Ok(());
        };
        let created_at = match &change.review {
            Some(review) => {
                alert.review = review.clone();
                review
                    .history
                    .last()
                    .map_or(alert.raised_at, |entry| entry.at)
            }
            // As it was raised, whatever happened to it since.
            None => {
                alert.review = Review::default();
                alert.raised_at
            }
        };
        let event = WebhookEvent::of(change.kind, alert, created_at);
        let body = serde_json::to_string(&event)
            .map_err(|error| PortError::rejected("webhooks", error.to_string()))?;
        let deliveries: Vec<QueuedDelivery> = subscribed
            .iter()
            .map(|webhook| QueuedDelivery {
                shop_id: change.shop_id.clone(),
                webhook_id: webhook.webhook_id.clone(),
                delivery_id: delivery_id(&event.id, &webhook.webhook_id),
                event_id: event.id.clone(),
                event_type: event.kind,
                created_at,
                body: body.clone(),
            })
            .collect();
        // Opened, then queued, then marked: a stream record seen again queues only what a
        // run before it opened and did not queue.
        let mut to_queue = Vec::new();
        for delivery in deliveries {
            if self.log.open_delivery(&delivery).await? {
                to_queue.push(delivery);
            }
        }
        self.queue.send_deliveries(&to_queue).await?;
        self.log.mark_queued(&to_queue).await
    }

    /// Attempts each message's delivery; returns the ids of those to come back.
    async fn deliver_messages(
        &self,
        records: Vec<Value>,
        work_until: Option<Instant>,
    ) -> Vec<String> {
        stream::iter(records)
            .map(|record| async move {
                let id = record["messageId"].as_str().unwrap_or_default().to_owned();
                let attempt = self.deliver_message(&record);
                let again = match work_until {
                    // Not started with no time left: it would be cut off half done.
                    Some(until) if Instant::now() >= until => true,
                    Some(until) => tokio::time::timeout_at(until, attempt)
                        .await
                        .unwrap_or(true),
                    None => attempt.await,
                };
                again.then_some(id)
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|id| async move { id })
            .collect()
            .await
    }

    /// One attempt of one message's delivery: true when the message should come back.
    async fn deliver_message(&self, record: &Value) -> bool {
        let body = record["body"].as_str().unwrap_or_default();
        let Ok(delivery) = serde_json::from_str::<QueuedDelivery>(body) else {
            // Not a delivery this code wrote: retrying cannot fix it. (Its length only: a body
            // may carry an alert's facts.)
            tracing::error!(
                bytes = body.len(),
                "a message on the deliveries queue is not a delivery"
            );
            return false;
        };
        let webhook = match self
            .registry
            .webhook(&delivery.shop_id, &delivery.webhook_id)
            .await
        {
            Ok(Some(webhook)) => webhook,
            // Deleted meanwhile: nothing to deliver to.
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "could not read a webhook; its delivery comes back");
                return true;
            }
        };
        // Attempts are counted in the list, not by receives: a receive that made no attempt
        // (no time left, a webhook that could not be read) costs none of the schedule.
        let attempts_made = match self.log.pending_attempts(&delivery).await {
            Ok(Some(made)) => made,
            // Delivered or failed already: this message is a duplicate.
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "could not read a delivery; its message comes back");
                return true;
            }
        };
        let due = DueDelivery {
            delivery_id: delivery.delivery_id.clone(),
            webhook,
            body: delivery.body.clone(),
            attempts_made,
        };
        let (attempt, outcome) =
            webhook_sender::attempt_once(&self.settings, &self.client, &due).await;
        if let Err(error) = self
            .log
            .record_delivery_attempt(&delivery, &attempt, outcome)
            .await
        {
            tracing::warn!(%error, delivery = %delivery.delivery_id, "could not record a webhook attempt");
        }
        match outcome {
            AttemptOutcome::Delivered | AttemptOutcome::Failed => false,
            AttemptOutcome::RetryAt(at) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                let receipt = record["receiptHandle"].as_str().unwrap_or_default();
                if let Err(error) = self.queue.retry_delivery_after(receipt, wait).await {
                    // It comes back after the queue's own visibility timeout instead.
                    tracing::warn!(%error, "could not set a retry's wait");
                }
                true
            }
        }
    }
}

/// The alert change a stream record reports, if it reports one: a new alert item, or an
/// alert item whose review version grew.
pub fn alert_change(record: &Value) -> Option<AlertChange> {
    let change = &record["dynamodb"];
    let new_image = &change["NewImage"];
    let pk = string(new_image, "pk").or_else(|| string(&change["Keys"], "pk"))?;
    let (shop, alert_id) = pk.strip_prefix("alert#")?.split_once('#')?;
    let shop_id = ShopId::parse(shop).ok()?;
    let kind = match record["eventName"].as_str()? {
        // An item opened for an old alert (`processor inbox backfill`) is no news to the shop.
        "INSERT" if new_image[BACKFILLED]["BOOL"] == true => return None,
        "INSERT" => EventType::AlertRaised,
        "MODIFY"
            if number(new_image, "review_version")
                > number(&change["OldImage"], "review_version") =>
        {
            EventType::AlertReviewed
        }
        _ => return None,
    };
    let review = match kind {
        EventType::AlertReviewed => {
            let text = string(new_image, "review")?;
            match serde_json::from_str(&text) {
                Ok(review) => Some(review),
                Err(error) => {
                    tracing::error!(%error, alert = alert_id, "an alert's review does not read; no event for it");
                    return None;
                }
            }
        }
        EventType::AlertRaised => None,
    };
    Some(AlertChange {
        shop_id,
        alert_id: alert_id.to_owned(),
        kind,
        review,
    })
}

/// A string attribute of an image in DynamoDB's JSON (`{"name": {"S": "…"}}`).
fn string(image: &Value, name: &str) -> Option<String> {
    image[name]["S"].as_str().map(str::to_owned)
}

fn number(image: &Value, name: &str) -> Option<u64> {
    image[name]["N"].as_str().and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, new: Value, old: Value) -> Value {
        json!({"eventSource": "aws:dynamodb", "eventName": name,
               "dynamodb": {"Keys": {"pk": new["pk"].clone()}, "NewImage": new, "OldImage": old}})
    }

    fn item(version: u64) -> Value {
        let review = serde_json::to_string(&Review {
            version,
            ..Review::default()
        })
        .expect("JSON");
        json!({"pk": {"S": "alert#shop-1#alt_1"}, "review_version": {"N": version.to_string()},
               "review": {"S": review}})
    }

    #[test]
    fn a_stream_record_is_an_event_only_for_a_new_alert_or_a_new_review() {
        let raised = alert_change(&record("INSERT", item(0), Value::Null)).expect("raised");
        assert_eq!(raised.kind, EventType::AlertRaised);
        assert_eq!(raised.alert_id, "alt_1");
        assert_eq!(raised.shop_id.as_str(), "shop-1");
        let reviewed = alert_change(&record("MODIFY", item(1), item(0))).expect("reviewed");
        assert_eq!(reviewed.kind, EventType::AlertReviewed);
        assert_eq!(reviewed.review.map(|review| review.version), Some(1));
        // The same version (another attribute changed), a removal, a record's own item, and
        // an item opened by the backfill: no event.
        assert_eq!(alert_change(&record("MODIFY", item(1), item(1))), None);
        assert_eq!(alert_change(&record("REMOVE", item(1), item(1))), None);
        let transaction = json!({"pk": {"S": "shop-1#t-1"}});
        assert_eq!(
            alert_change(&record("INSERT", transaction, Value::Null)),
            None
        );
        let mut backfilled = item(0);
        backfilled[BACKFILLED] = json!({"BOOL": true});
        assert_eq!(
            alert_change(&record("INSERT", backfilled, Value::Null)),
            None
        );
    }
}
