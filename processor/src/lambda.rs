//! The SQS-triggered Lambda: one invocation is one batch, answered with a partial batch
//! response that lists only the messages SQS should deliver again.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use infra::aws_calls::{AwsCall, Caller};
use infra::ports::{Consumer, ReceivedMessage};

use crate::Processor;
use crate::retry::RetryPolicy;
use crate::worker::schedule_retries;

const QUEUE: &str = "queue:TransactionsQueue";
const LOGS: &str = "log-group:ProcessorLogGroup";
/// What Lambda does for the processor function with its role (the SQS event source polls and
/// deletes; the log agent writes), for the permission test.
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new("", "sqs:ReceiveMessage", QUEUE, &[Caller::Processor]),
    AwsCall::new("", "sqs:DeleteMessage", QUEUE, &[Caller::Processor]),
    AwsCall::new("", "sqs:GetQueueAttributes", QUEUE, &[Caller::Processor]),
    AwsCall::new("", "logs:CreateLogStream", LOGS, &[Caller::Processor]),
    AwsCall::new("", "logs:PutLogEvents", LOGS, &[Caller::Processor]),
];

/// Processes the event's messages. Poison goes to the dead-letter queue and is *not* reported as
/// failed (SQS then deletes it); transient failures are reported so SQS redelivers them, after
/// a back-off delay set on each one (rather than the queue's whole visibility timeout).
pub async fn handle_sqs_event(
    processor: &Processor,
    queue: &dyn Consumer,
    retry: RetryPolicy,
    event: SqsEvent,
) -> SqsBatchResponse {
    let messages = event.records.into_iter().map(to_received).collect();
    let report = processor.process_batch(messages).await;
    schedule_retries(queue, &report, retry).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed()
        .map(|(message, _)| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.id.clone();
            failure
        })
        .collect();
    response
}

fn to_received(message: SqsMessage) -> ReceivedMessage {
    let attribute = |name: &str| {
        message
            .attributes
            .get(name)
            .and_then(|value| value.parse::<i64>().ok())
    };
    ReceivedMessage {
        receive_count: attribute("ApproximateReceiveCount")
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(1),
        sent_at: attribute("SentTimestamp")
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now),
        id: message.message_id.unwrap_or_default(),
        receipt: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
    }
}
