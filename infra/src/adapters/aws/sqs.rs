//! The queue on SQS. Dead-lettering is explicit for poison (send to the DLQ with the reason, then
//! delete) and automatic for repeated failures (the queue's redrive policy).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::describe;
use crate::aws_calls::{AwsCall, Caller::*};
use crate::ports::{
    Backlog, Consumer, DeadLetter, DeadLetters, OutgoingMessage, PortError, Producer, QueueDepth,
    ReceivedMessage, Redrive,
};

const COMPONENT: &str = "queue";

const QUEUE: &str = "queue:TransactionsQueue";
const DLQ: &str = "queue:DeadLetterQueue";
/// The calls below, for the permission test (see `calls`).
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("send_message", "sqs:SendMessage", QUEUE, &[Api, Operator]),
    AwsCall::new("send_message", "sqs:SendMessage", DLQ, &[Processor]),
    AwsCall::new("send_message_batch", "sqs:SendMessage", QUEUE, &[Api]),
    AwsCall::new("receive_message", "sqs:ReceiveMessage", QUEUE, &[Processor]),
    AwsCall::new("receive_message", "sqs:ReceiveMessage", DLQ, &[Operator]),
    AwsCall::new("delete_message", "sqs:DeleteMessage", QUEUE, &[Processor]),
    AwsCall::new("delete_message", "sqs:DeleteMessage", DLQ, &[Operator]),
    AwsCall::new(
        "delete_message_batch",
        "sqs:DeleteMessage",
        QUEUE,
        &[Processor],
    ),
    AwsCall::new(
        "change_message_visibility",
        "sqs:ChangeMessageVisibility",
        QUEUE,
        &[Processor],
    ),
    AwsCall::new(
        "change_message_visibility_batch",
        "sqs:ChangeMessageVisibility",
        DLQ,
        &[Operator],
    ),
    AwsCall::new(
        "get_queue_attributes",
        "sqs:GetQueueAttributes",
        QUEUE,
        &[Api, Processor],
    ),
    // The API's, for the operator's overview (`OPERATOR_SHOPS`).
    AwsCall::new(
        "get_queue_attributes",
        "sqs:GetQueueAttributes",
        DLQ,
        &[Api, Processor],
    ),
];
/// SQS's limit for batch calls.
const BATCH_LIMIT: usize = 10;
/// SQS's limit for long polling.
const MAX_WAIT_SECONDS: u64 = 20;
/// `SendMessageBatch` calls one batch request makes at once.
const PARALLEL_SENDS: usize = 8;
/// SQS's limit for a visibility timeout.
const MAX_VISIBILITY_SECONDS: u64 = 12 * 60 * 60;
/// The attribute that carries the reason of an explicit dead-lettering.
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "DeadLetterReason";
/// SQS's limit on an attribute value is the message size; reasons are kept readable.
const MAX_REASON_CHARS: usize = 1024;

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    /// Only a consumer dead-letters; a producer (the API) may leave it out.
    dead_letter_queue_url: Option<String>,
}

fn unavailable<E: std::error::Error>(error: E) -> PortError {
    PortError::unavailable(COMPONENT, describe(&error))
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("an attribute with a data type always builds")
}

fn attributes(
    pairs: &std::collections::BTreeMap<String, String>,
) -> HashMap<String, MessageAttributeValue> {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.clone(), string_attribute(value)))
        .collect()
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: String, dead_letter_queue_url: Option<String>) -> Self {
        Self {
            client,
            queue_url,
            dead_letter_queue_url,
        }
    }

    fn dead_letter_queue_url(&self) -> Result<&str, PortError> {
        self.dead_letter_queue_url.as_deref().ok_or_else(|| {
            PortError::rejected(
                COMPONENT,
                "no dead-letter queue is configured (DEAD_LETTER_QUEUE_URL)",
            )
        })
    }

    async fn approximate_count(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<u64, PortError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(unavailable)?;
        let values = output.attributes.unwrap_or_default();
        Ok(names
            .iter()
            .filter_map(|name| values.get(name)?.parse::<u64>().ok())
            .sum())
    }
}

/// How long an operator's listing or redrive hides the dead letters it has looked at, so that
/// its loop sees each once; those it leaves are made visible again when it is done.
const OPERATOR_LEASE_SECONDS: i32 = 60;
/// Attributes that describe a dead-lettering, not the message: left behind on a redrive.
const DEAD_LETTER_ATTRIBUTES: [&str; 2] = [DEAD_LETTER_REASON_ATTRIBUTE, "OriginalMessageId"];

fn to_dead_letter(message: aws_sdk_sqs::types::Message) -> DeadLetter {
    let reason = message
        .message_attributes
        .as_ref()
        .and_then(|attributes| attributes.get(DEAD_LETTER_REASON_ATTRIBUTE))
        .and_then(|value| value.string_value.clone())
        .unwrap_or_else(|| "received more than maxReceiveCount times (redrive policy)".to_owned());
    DeadLetter {
        id: message.message_id.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        reason,
    }
}

impl SqsQueue {
    /// One `SendMessageBatch` of at most ten messages: each entry's own outcome, in order.
    async fn send_chunk(
        &self,
        chunk: &[OutgoingMessage],
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(index, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&message.body)
                    .set_message_attributes(Some(attributes(&message.attributes)))
                    .build()
                    .expect("an entry with an id and a body always builds")
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(unavailable)?;
        // Each entry succeeded or failed on its own; put the answers back in order.
        let mut chunk_results: Vec<Result<String, PortError>> = (0..chunk.len())
            .map(|_| {
                Err(PortError::unavailable(
                    COMPONENT,
                    "no answer for this entry",
                ))
            })
            .collect();
        for entry in output.successful {
            if let Some(slot) = entry
                .id
                .parse::<usize>()
                .ok()
                .and_then(|i| chunk_results.get_mut(i))
            {
                *slot = Ok(entry.message_id);
            }
        }
        for entry in output.failed {
            if let Some(slot) = entry
                .id
                .parse::<usize>()
                .ok()
                .and_then(|i| chunk_results.get_mut(i))
            {
                let detail = format!("{}: {}", entry.code, entry.message.unwrap_or_default());
                *slot = Err(if entry.sender_fault {
                    PortError::rejected(COMPONENT, detail)
                } else {
                    PortError::unavailable(COMPONENT, detail)
                });
            }
        }
        Ok(chunk_results)
    }

    /// A long poll answers after up to `wait`: its deadlines are the client's plus that wait.
    fn long_poll(&self, wait: Duration) -> aws_sdk_sqs::config::Builder {
        let wait = wait.min(Duration::from_secs(MAX_WAIT_SECONDS));
        let base = self.client.config().timeout_config();
        let mut timeouts = TimeoutConfig::builder();
        if let Some(attempt) = base.and_then(|t| t.operation_attempt_timeout()) {
            timeouts = timeouts.operation_attempt_timeout(attempt + wait);
        }
        if let Some(operation) = base.and_then(|t| t.operation_timeout()) {
            timeouts = timeouts.operation_timeout(operation + wait);
        }
        aws_sdk_sqs::config::Builder::default().timeout_config(timeouts.build())
    }

    async fn lease_dead_letters(
        &self,
        url: &str,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, PortError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(BATCH_LIMIT as i32)
            .visibility_timeout(OPERATOR_LEASE_SECONDS)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Sends a dead letter back to the queue with its own attributes, then deletes it from the
    /// dead-letter queue. A failed delete leaves a copy behind: redriven twice, stored once.
    async fn put_back(
        &self,
        dead_letter_queue_url: &str,
        message: aws_sdk_sqs::types::Message,
    ) -> Result<(), PortError> {
        let attributes: HashMap<String, MessageAttributeValue> = message
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| !DEAD_LETTER_ATTRIBUTES.contains(&name.as_str()))
            .collect();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body.unwrap_or_default())
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(unavailable)?;
        self.client
            .delete_message()
            .queue_url(dead_letter_queue_url)
            .receipt_handle(message.receipt_handle.unwrap_or_default())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Makes dead letters an operator looked at visible again at once. Best effort: if it
    /// fails they reappear when their lease runs out.
    async fn unhide(&self, url: &str, receipts: Vec<String>) {
        for chunk in receipts.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .expect("an entry with an id and a receipt always builds")
                })
                .collect::<Vec<_>>();
            let result = self
                .client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(error) = result {
                tracing::debug!(error = %describe(&error), "dead letters stay hidden until their lease ends");
            }
        }
    }
}

/// SQS's limit on one `SendMessageBatch` request's payload (bodies and attributes).
const MAX_BATCH_BYTES: usize = 256 * 1024;

fn payload_size(message: &OutgoingMessage) -> usize {
    message.body.len()
        + message
            .attributes
            .iter()
            .map(|(name, value)| name.len() + value.len() + "String".len())
            .sum::<usize>()
}

/// The messages in order, in groups of at most 10 and at most 256 KiB each.
fn batches(messages: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, message) in messages.iter().enumerate() {
        let size = payload_size(message);
        if index > start && (index - start == BATCH_LIMIT || bytes + size > MAX_BATCH_BYTES) {
            groups.push(&messages[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        groups.push(&messages[start..]);
    }
    groups
}

fn to_received(message: aws_sdk_sqs::types::Message) -> ReceivedMessage {
    let system = message.attributes.unwrap_or_default();
    let number = |name: MessageSystemAttributeName| {
        system
            .get(&name)
            .and_then(|value| value.parse::<i64>().ok())
    };
    ReceivedMessage {
        id: message.message_id.unwrap_or_default(),
        receipt: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        receive_count: number(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(1),
        sent_at: number(MessageSystemAttributeName::SentTimestamp)
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now),
    }
}

#[async_trait]
impl Producer for SqsQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError> {
        let output = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.body)
            .set_message_attributes(Some(attributes(&message.attributes)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.message_id.unwrap_or_default())
    }

    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        // The chunks go out side by side (a few at a time), so that a batch of 1,000 costs
        // about ten round trips' time, not a hundred.
        let sends: Vec<_> = batches(&messages)
            .into_iter()
            .map(|chunk| self.send_chunk(chunk))
            .collect();
        let answers: Vec<_> = futures_util::stream::iter(sends)
            .buffered(PARALLEL_SENDS)
            .collect()
            .await;
        let mut results = Vec::with_capacity(messages.len());
        for answer in answers {
            results.extend(answer?);
        }
        Ok(results)
    }

    async fn probe(&self) -> Result<(), PortError> {
        self.approximate_count(&self.queue_url, &[QueueAttributeName::QueueArn])
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Consumer for SqsQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, BATCH_LIMIT) as i32)
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_SECONDS) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .customize()
            .config_override(self.long_poll(wait))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(to_received)
            .collect())
    }

    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        for chunk in receipts.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("an entry with an id and a receipt always builds")
                })
                .collect::<Vec<_>>();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(failed) = output.failed.first() {
                return Err(PortError::unavailable(
                    COMPONENT,
                    format!(
                        "{} of {} deletes failed, e.g. {}",
                        output.failed.len(),
                        chunk.len(),
                        failed.code
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        _error: &str,
    ) -> Result<(), PortError> {
        // SQS keeps no per-message error; the processor logs it.
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().min(MAX_VISIBILITY_SECONDS) as i32)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), PortError> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        self.client
            .send_message()
            .queue_url(self.dead_letter_queue_url()?)
            .message_body(&message.body)
            .message_attributes(DEAD_LETTER_REASON_ATTRIBUTE, string_attribute(&reason))
            .message_attributes("OriginalMessageId", string_attribute(&message.id))
            .send()
            .await
            .map_err(unavailable)?;
        // If this delete fails the message comes back, is found poisonous again and is
        // dead-lettered again: a duplicate in the DLQ, never a loss.
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&message.receipt)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Backlog for SqsQueue {
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        let messages = self
            .approximate_count(
                &self.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        // In flight too: `dead-letters list` hides the ones it reads for a minute.
        let dead_letters = match self.dead_letter_queue_url.as_deref() {
            Some(url) => {
                self.approximate_count(
                    url,
                    &[
                        QueueAttributeName::ApproximateNumberOfMessages,
                        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    ],
                )
                .await?
            }
            None => 0,
        };
        Ok(QueueDepth {
            messages,
            dead_letters,
        })
    }
}

#[async_trait]
impl DeadLetters for SqsQueue {
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, PortError> {
        let dead_letter_queue_url = self.dead_letter_queue_url()?;
        let mut found = Vec::new();
        let mut receipts = Vec::new();
        while found.len() < max {
            let batch = self.lease_dead_letters(dead_letter_queue_url).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                receipts.extend(message.receipt_handle.clone());
                found.push(to_dead_letter(message));
            }
        }
        self.unhide(dead_letter_queue_url, receipts).await;
        found.truncate(max);
        Ok(found)
    }

    async fn redrive(&self, which: &Redrive) -> Result<usize, PortError> {
        let dead_letter_queue_url = self.dead_letter_queue_url()?;
        let mut moved = 0;
        let mut kept = Vec::new();
        loop {
            let batch = self.lease_dead_letters(dead_letter_queue_url).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let receipt = message.receipt_handle.clone().unwrap_or_default();
                if which.includes(message.message_id.as_deref().unwrap_or_default()) {
                    self.put_back(dead_letter_queue_url, message).await?;
                    moved += 1;
                } else {
                    kept.push(receipt);
                }
            }
            if matches!(which, Redrive::Ids(ids) if moved >= ids.len()) {
                break;
            }
        }
        self.unhide(dead_letter_queue_url, kept).await;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: usize) -> OutgoingMessage {
        OutgoingMessage {
            body: "x".repeat(bytes),
            attributes: Default::default(),
        }
    }

    #[test]
    fn batches_hold_at_most_ten_messages_and_256_kib() {
        let small: Vec<_> = (0..25).map(|_| message(100)).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|group| group.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<_> = (0..10).map(|_| message(60 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big).iter().map(|group| group.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert!(batches(&[]).is_empty());
    }
}
