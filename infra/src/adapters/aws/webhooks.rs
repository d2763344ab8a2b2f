//! Webhooks on DynamoDB, in a table of their own (`WebhooksTable`): the shops' webhooks and
//! the list of their deliveries. The deliveries themselves wait on an SQS queue
//! ([`SqsDeliveries`]), which retries them by visibility.
//!
//! - A webhook: `pk = "<shop_id>"`, `sk = "webhook#<webhook_id>"`. Its signing secrets are
//!   stored encrypted (AES-256-GCM under `WEBHOOK_SECRET_KEY`, authenticated to the shop and
//!   webhook, so a ciphertext moved to another row does not open).
//! - A delivery: `pk = "<shop_id>#<webhook_id>"` (each webhook's deliveries an item
//!   collection of their own), `sk = "delivery#<delivery_id>"`, and
//!   `listed = "<created, µs, 16 digits>#<delivery_id>"` for the local index `by_time`, which
//!   lists a webhook's deliveries newest first. `expires_at` (epoch seconds) lets DynamoDB's
//!   TTL forget it 30 days after its event.

use std::collections::HashMap;
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Select};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{describe, is_condition_failure, put_if_absent, text};
use crate::aws_calls::{AwsCall, Caller::*};
use crate::domain::webhooks::{EventType, KEEP_DELIVERIES};
use crate::domain::{Named, ShopId};
use crate::ports::{
    AttemptOutcome, DeliveriesPage, Delivery, DeliveryAttempt, DeliveryLog, DeliveryQueue,
    PortError, QueuedDelivery, Webhook, WebhookRegistry,
};

const COMPONENT: &str = "webhooks";
const TABLE: &str = "table:WebhooksTable";
pub const DELIVERIES_INDEX: &str = "by_time";
const NONCE_BYTES: usize = 12;

/// Every attribute the webhooks function writes, all on delivery items: its grant to put and
/// update the table is scoped to these (`dynamodb:Attributes`), so it cannot rewrite a
/// webhook's URL or secret.
pub const DELIVERY_ATTRIBUTES: &[&str] = &[
    "pk",
    "sk",
    "listed",
    "delivery_id",
    "event_id",
    "event_type",
    "state",
    "attempts",
    "queued",
    "created_at",
    "expires_at",
];

/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("get_item", "dynamodb:GetItem", TABLE, &[Api, Webhooks]),
    AwsCall::new("query", "dynamodb:Query", TABLE, &[Api, Webhooks]),
    AwsCall::new(
        "query",
        "dynamodb:Query",
        "index:WebhooksTable/by_time",
        &[Api],
    ),
    AwsCall::new("put_item", "dynamodb:PutItem", TABLE, &[Api]),
    AwsCall::new("update_item", "dynamodb:UpdateItem", TABLE, &[Api]),
    AwsCall::new("delete_item", "dynamodb:DeleteItem", TABLE, &[Api]),
    AwsCall::new("put_item", "dynamodb:PutItem", TABLE, &[Webhooks]).writing(DELIVERY_ATTRIBUTES),
    AwsCall::new("update_item", "dynamodb:UpdateItem", TABLE, &[Webhooks])
        .writing(DELIVERY_ATTRIBUTES),
    AwsCall::new(
        "send_message_batch",
        "sqs:SendMessage",
        "queue:WebhookDeliveriesQueue",
        &[Webhooks],
    ),
    AwsCall::new(
        "change_message_visibility",
        "sqs:ChangeMessageVisibility",
        "queue:WebhookDeliveriesQueue",
        &[Webhooks],
    ),
];

/// The key webhook secrets are encrypted with at rest, from a setting of at least 32 bytes
/// (the template's generated secret): its SHA-256 is the AES-256 key.
#[derive(Clone)]
pub struct SecretsKey(Aes256Gcm);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    pub const MIN_BYTES: usize = 32;

    pub fn from_setting(text: &str) -> Result<Self, String> {
        if text.starts_with("{{resolve:") {
            return Err("WEBHOOK_SECRET_KEY is an unresolved CloudFormation reference".to_owned());
        }
        if text.len() < Self::MIN_BYTES {
            return Err(format!(
                "WEBHOOK_SECRET_KEY must be at least {} bytes",
                Self::MIN_BYTES
            ));
        }
        let key = Sha256::digest(text.as_bytes());
        Ok(Self(
            Aes256Gcm::new_from_slice(&key).expect("SHA-256 gives an AES-256 key"),
        ))
    }

    /// `nonce ‖ ciphertext` of `secret`, bound to `context` (the row it belongs to).
    fn seal(&self, secret: &str, context: &str) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM seals any message of a webhook secret's size");
        [nonce.as_slice(), &sealed].concat()
    }

    fn open(&self, sealed: &[u8], context: &str) -> Result<String, PortError> {
        let broken = || PortError::unavailable(COMPONENT, "a webhook secret does not decrypt");
        if sealed.len() < NONCE_BYTES {
            return Err(broken());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let opened = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(opened).map_err(|_| broken())
    }
}

pub struct DynamoWebhooks {
    client: Client,
    table: String,
    key: SecretsKey,
}

impl DynamoWebhooks {
    pub fn new(client: Client, table: impl Into<String>, key: SecretsKey) -> Self {
        Self {
            client,
            table: table.into(),
            key,
        }
    }
}

fn unavailable<E: std::error::Error>(error: E) -> PortError {
    PortError::unavailable(COMPONENT, describe(&error))
}

fn malformed(what: impl std::fmt::Display) -> PortError {
    PortError::unavailable(COMPONENT, format!("an item does not read: {what}"))
}

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn webhook_sk(webhook_id: &str) -> String {
    format!("webhook#{webhook_id}")
}

/// A webhook's deliveries are an item collection of their own, apart from the shop's
/// webhooks and every other webhook's deliveries.
fn deliveries_pk(shop_id: &str, webhook_id: &str) -> String {
    format!("{shop_id}#{webhook_id}")
}

fn delivery_sk(delivery_id: &str) -> String {
    format!("delivery#{delivery_id}")
}

fn listed(created_at: DateTime<Utc>, delivery_id: &str) -> String {
    format!("{:016}#{delivery_id}", created_at.timestamp_micros().max(0))
}

/// An item's key: its `pk` and `sk`.
type Key = [(&'static str, AttributeValue); 2];

fn key(pk: String, sk: String) -> Key {
    [("pk", text(pk)), ("sk", text(sk))]
}

fn delivery_key(delivery: &QueuedDelivery) -> Key {
    key(
        deliveries_pk(delivery.shop_id.as_str(), &delivery.webhook_id),
        delivery_sk(&delivery.delivery_id),
    )
}

/// The context a webhook's secrets are sealed to.
fn secret_context(shop_id: &str, webhook_id: &str) -> String {
    format!("webhook-secret#{shop_id}#{webhook_id}")
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Reads one attribute of an item.
struct Fields<'a>(&'a HashMap<String, AttributeValue>);

impl Fields<'_> {
    fn text(&self, name: &str) -> Result<String, PortError> {
        self.0
            .get(name)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .ok_or_else(|| malformed(format!("no {name}")))
    }

    fn optional_text(&self, name: &str) -> Option<String> {
        self.text(name).ok()
    }

    fn number(&self, name: &str) -> Option<i64> {
        self.0
            .get(name)
            .and_then(|value| value.as_n().ok())
            .and_then(|n| n.parse().ok())
    }

    fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0
            .get(name)
            .and_then(|value| value.as_b().ok())
            .map(|blob| blob.as_ref())
    }
}

impl DynamoWebhooks {
    fn webhook_item(
        &self,
        webhook: &Webhook,
    ) -> Result<HashMap<String, AttributeValue>, PortError> {
        let shop = webhook.shop_id.as_str();
        let context = secret_context(shop, &webhook.webhook_id);
        let mut item = HashMap::from([
            ("pk".to_owned(), text(shop)),
            ("sk".to_owned(), text(webhook_sk(&webhook.webhook_id))),
            ("webhook_id".to_owned(), text(&webhook.webhook_id)),
            ("url".to_owned(), text(&webhook.url)),
            (
                "events".to_owned(),
                text(serde_json::to_string(&webhook.events).map_err(malformed)?),
            ),
            (
                "created_at".to_owned(),
                number(webhook.created_at.timestamp_micros()),
            ),
            (
                "secret".to_owned(),
                AttributeValue::B(self.key.seal(&webhook.secret, &context).into()),
            ),
        ]);
        if let Some(description) = &webhook.description {
            item.insert("description".to_owned(), text(description));
        }
        Ok(item)
    }

    fn webhook_of(&self, item: &HashMap<String, AttributeValue>) -> Result<Webhook, PortError> {
        let fields = Fields(item);
        let shop_id = ShopId::parse(&fields.text("pk")?).map_err(malformed)?;
        let webhook_id = fields.text("webhook_id")?;
        let context = secret_context(shop_id.as_str(), &webhook_id);
        let secret = self.key.open(
            fields
                .bytes("secret")
                .ok_or_else(|| malformed("no secret"))?,
            &context,
        )?;
        let previous_secret = match (
            fields.bytes("previous_secret"),
            fields.number("previous_until"),
        ) {
            (Some(sealed), Some(until)) => Some((self.key.open(sealed, &context)?, time(until))),
            _ => None,
        };
        Ok(Webhook {
            url: fields.text("url")?,
            events: serde_json::from_str(&fields.text("events")?).map_err(malformed)?,
            description: fields.optional_text("description"),
            created_at: time(fields.number("created_at").unwrap_or_default()),
            secret,
            previous_secret,
            shop_id,
            webhook_id,
        })
    }

    async fn webhook_count(&self, shop_id: &ShopId) -> Result<usize, PortError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :shop AND begins_with(sk, :webhooks)")
            .expression_attribute_values(":shop", text(shop_id.as_str()))
            .expression_attribute_values(":webhooks", text("webhook#"))
            .select(Select::Count)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.count().max(0) as usize)
    }

    /// The `listed` of a delivery, to page on from it.
    async fn listed_of(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<String>, PortError> {
        let key = key(
            deliveries_pk(shop_id.as_str(), webhook_id),
            delivery_sk(delivery_id),
        );
        let item = self.read(key, false).await?;
        Ok(item.and_then(|item| Fields(&item).optional_text("listed")))
    }

    /// One item by its key; strongly consistent when asked (for an item written a moment ago).
    async fn read(
        &self,
        [pk, sk]: Key,
        consistent: bool,
    ) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(pk.0, pk.1)
            .key(sk.0, sk.1)
            .consistent_read(consistent)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }
}

fn delivery_of(item: &HashMap<String, AttributeValue>) -> Result<Delivery, PortError> {
    let fields = Fields(item);
    let event_type = fields.text("event_type")?;
    Ok(Delivery {
        delivery_id: fields.text("delivery_id")?,
        event_id: fields.text("event_id")?,
        event_type: EventType::from_name(&event_type)
            .ok_or_else(|| malformed(format!("event type {event_type}")))?,
        state: fields.text("state")?,
        created_at: time(fields.number("created_at").unwrap_or_default()),
        attempts: attempts_of(item)
            .iter()
            .map(|attempt| serde_json::from_str(attempt).map_err(malformed))
            .collect::<Result<_, _>>()?,
    })
}

/// A delivery's attempts, each kept as its JSON in a list appended to in place.
fn attempts_of(item: &HashMap<String, AttributeValue>) -> Vec<&str> {
    item.get("attempts")
        .and_then(|value| value.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|value| value.as_s().ok().map(String::as_str))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl WebhookRegistry for DynamoWebhooks {
    async fn add_webhook(&self, webhook: &Webhook, most: usize) -> Result<bool, PortError> {
        // Counted, then written: two registrations at the same instant could pass the count
        // together, which costs a shop one webhook over the limit at most, not a lost write.
        if self.webhook_count(&webhook.shop_id).await? >= most {
            return Ok(false);
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.webhook_item(webhook)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    async fn webhooks(&self, shop_id: &ShopId) -> Result<Vec<Webhook>, PortError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :shop AND begins_with(sk, :webhooks)")
            .expression_attribute_values(":shop", text(shop_id.as_str()))
            .expression_attribute_values(":webhooks", text("webhook#"))
            .send()
            .await
            .map_err(unavailable)?;
        let mut webhooks = Vec::new();
        for item in output.items() {
            match self.webhook_of(item) {
                Ok(webhook) => webhooks.push(webhook),
                // One unreadable webhook does not hide the others, nor stop their events.
                Err(error) => {
                    tracing::error!(%error, shop = %shop_id, "a webhook's item does not read")
                }
            }
        }
        webhooks.sort_by(|a, b| (a.created_at, &a.webhook_id).cmp(&(b.created_at, &b.webhook_id)));
        Ok(webhooks)
    }

    async fn webhook(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
    ) -> Result<Option<Webhook>, PortError> {
        let key = key(shop_id.as_str().to_owned(), webhook_sk(webhook_id));
        let item = self.read(key, false).await?;
        item.map(|item| self.webhook_of(&item)).transpose()
    }

    async fn remove_webhook(&self, shop_id: &ShopId, webhook_id: &str) -> Result<bool, PortError> {
        // Its deliveries stay until TTL forgets them; the list is not shown without the webhook.
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", text(shop_id.as_str()))
            .key("sk", text(webhook_sk(webhook_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes().is_some())
    }

    async fn rotate_secret(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        secret: &str,
        old_until: DateTime<Utc>,
    ) -> Result<Option<Webhook>, PortError> {
        let context = secret_context(shop_id.as_str(), webhook_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(shop_id.as_str()))
            .key("sk", text(webhook_sk(webhook_id)))
            .condition_expression("attribute_exists(pk)")
            .update_expression(
                "SET previous_secret = secret, previous_until = :until, secret = :secret",
            )
            .expression_attribute_values(":until", number(old_until.timestamp_micros()))
            .expression_attribute_values(
                ":secret",
                AttributeValue::B(self.key.seal(secret, &context).into()),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => output
                .attributes()
                .map(|item| self.webhook_of(item))
                .transpose(),
            Err(error) if is_condition_failure(&error) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn deliveries(
        &self,
        shop_id: &ShopId,
        webhook_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<DeliveriesPage, PortError> {
        if self.webhook(shop_id, webhook_id).await?.is_none() {
            return Ok(DeliveriesPage::NoWebhook);
        }
        let from = match after {
            Some(delivery_id) => match self.listed_of(shop_id, webhook_id, delivery_id).await? {
                Some(listed) => Some(listed),
                None => return Ok(DeliveriesPage::UnknownCursor),
            },
            None => None,
        };
        // Newest first, up to the page and one more (to say whether more follow).
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DELIVERIES_INDEX)
            .expression_attribute_values(":pk", text(deliveries_pk(shop_id.as_str(), webhook_id)))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        query = match from {
            Some(from) => query
                .key_condition_expression("pk = :pk AND listed < :from")
                .expression_attribute_values(":from", text(from)),
            None => query.key_condition_expression("pk = :pk"),
        };
        let output = query.send().await.map_err(unavailable)?;
        let mut deliveries = output
            .items()
            .iter()
            .map(delivery_of)
            .collect::<Result<Vec<_>, _>>()?;
        let more = deliveries.len() > limit;
        deliveries.truncate(limit);
        Ok(DeliveriesPage::Page { deliveries, more })
    }
}

#[async_trait]
impl DeliveryLog for DynamoWebhooks {
    async fn open_delivery(&self, delivery: &QueuedDelivery) -> Result<bool, PortError> {
        let keep = chrono::Duration::from_std(KEEP_DELIVERIES).unwrap_or_default();
        let expires_at = (delivery.created_at + keep).timestamp();
        let mut item =
            HashMap::from(delivery_key(delivery).map(|(name, value)| (name.to_owned(), value)));
        item.extend([
            (
                "listed".to_owned(),
                text(listed(delivery.created_at, &delivery.delivery_id)),
            ),
            ("delivery_id".to_owned(), text(&delivery.delivery_id)),
            ("event_id".to_owned(), text(&delivery.event_id)),
            ("event_type".to_owned(), text(delivery.event_type.name())),
            ("state".to_owned(), text("pending")),
            ("attempts".to_owned(), AttributeValue::L(Vec::new())),
            ("queued".to_owned(), AttributeValue::Bool(false)),
            (
                "created_at".to_owned(),
                number(delivery.created_at.timestamp_micros()),
            ),
            ("expires_at".to_owned(), number(expires_at)),
        ]);
        if put_if_absent(&self.client, &self.table, item, COMPONENT).await? {
            return Ok(true);
        }
        // Opened before (a stream record seen again): it still needs queueing only if the first
        // time stopped before it was queued.
        let item = self.read(delivery_key(delivery), true).await?;
        let queued = item
            .as_ref()
            .and_then(|item| item.get("queued"))
            .and_then(|value| value.as_bool().ok().copied());
        Ok(queued == Some(false))
    }

    async fn mark_queued(&self, deliveries: &[QueuedDelivery]) -> Result<(), PortError> {
        for delivery in deliveries {
            let [pk, sk] = delivery_key(delivery);
            self.client
                .update_item()
                .table_name(&self.table)
                .key(pk.0, pk.1)
                .key(sk.0, sk.1)
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET queued = :yes")
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn pending_attempts(&self, delivery: &QueuedDelivery) -> Result<Option<u32>, PortError> {
        // Strongly consistent: the entry was opened a moment before its message arrived.
        let item = self.read(delivery_key(delivery), true).await?;
        Ok(item
            .filter(|item| Fields(item).optional_text("state").as_deref() == Some("pending"))
            .map(|item| attempts_of(&item).len() as u32))
    }

    async fn record_delivery_attempt(
        &self,
        delivery: &QueuedDelivery,
        attempt: &DeliveryAttempt,
        outcome: AttemptOutcome,
    ) -> Result<(), PortError> {
        let state = outcome.state();
        let attempt = serde_json::to_string(attempt).map_err(malformed)?;
        let [pk, sk] = delivery_key(delivery);
        // One conditional append: no attempt is lost to a concurrent one, and an ended
        // delivery (a duplicate message's late attempt) is not reopened.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(pk.0, pk.1)
            .key(sk.0, sk.1)
            .condition_expression("#state = :pending")
            .update_expression("SET attempts = list_append(attempts, :attempt), #state = :state")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", text("pending"))
            .expression_attribute_values(":attempt", AttributeValue::L(vec![text(attempt)]))
            .expression_attribute_values(":state", text(state))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// The deliveries queue on SQS: one message per delivery; a failed attempt's message comes
/// back after its wait (visibility), so SQS holds the schedule.
pub struct SqsDeliveries {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeliveries {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// SQS takes at most ten messages per call.
const SEND_BATCH: usize = 10;
/// SQS's longest visibility is 12 hours from the receive; a wait is kept a little under it.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60 - 10 * 60);

#[async_trait]
impl DeliveryQueue for SqsDeliveries {
    async fn send_deliveries(&self, deliveries: &[QueuedDelivery]) -> Result<(), PortError> {
        for chunk in deliveries.chunks(SEND_BATCH) {
            let mut request = self.client.send_message_batch().queue_url(&self.queue_url);
            for (index, delivery) in chunk.iter().enumerate() {
                let body = serde_json::to_string(delivery).map_err(malformed)?;
                let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|error| PortError::rejected(COMPONENT, error.to_string()))?;
                request = request.entries(entry);
            }
            let output = request.send().await.map_err(unavailable)?;
            if let Some(failed) = output.failed().first() {
                return Err(PortError::unavailable(
                    COMPONENT,
                    format!(
                        "SQS refused a delivery: {}",
                        failed.message().unwrap_or(failed.code())
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn retry_delivery_after(&self, receipt: &str, wait: Duration) -> Result<(), PortError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(wait.min(MAX_VISIBILITY).as_secs() as i32)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_in_its_row() {
        let key = SecretsKey::from_setting(&"k".repeat(40)).expect("key");
        let sealed = key.seal("whsec_abc", "webhook-secret#shop#whk_1");
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
        assert_eq!(
            key.open(&sealed, "webhook-secret#shop#whk_1")
                .expect("opens"),
            "whsec_abc"
        );
        assert!(key.open(&sealed, "webhook-secret#other#whk_1").is_err());
        let other = SecretsKey::from_setting(&"j".repeat(40)).expect("key");
        assert!(other.open(&sealed, "webhook-secret#shop#whk_1").is_err());
        assert!(SecretsKey::from_setting("short").is_err());
        assert!(SecretsKey::from_setting("{{resolve:secretsmanager:x}}-and-more-text").is_err());
    }
}
