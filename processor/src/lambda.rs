//! The SQS-triggered Lambda: one invocation is one batch, answered with a partial batch
//! response that lists only the messages SQS should deliver again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use infra::aws_calls::{AwsCall, Caller};
use infra::ports::{Consumer, ReceivedMessage};
use lambda_runtime::LambdaEvent;
use tokio::time::Instant;

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

/// Kept back from the invocation's deadline to hand the batch back: the retries' visibility
/// set on SQS, the answer sent, and the metrics written (the EMF flush follows the answer).
const TIME_TO_HAND_BACK: Duration = Duration::from_secs(2);
/// Of which the answer and the flush keep this much; the visibility calls get the rest.
const TIME_TO_ANSWER: Duration = Duration::from_millis(500);

/// One invocation, worked to the budget its context gives: the messages are processed until
/// [`TIME_TO_HAND_BACK`] before the deadline, and whatever is not done by then is handed back
/// to SQS as failed, with its visibility set, instead of Lambda killing the invocation with
/// claims held and metrics unwritten.
pub async fn handle_invocation(
    processor: &Processor,
    queue: &dyn Consumer,
    retry: RetryPolicy,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let deadline = instant_of(event.context.deadline);
    handle_within(processor, queue, retry, event.payload, Some(deadline)).await
}

/// Processes the event's messages with no deadline of its own. Poison goes to the dead-letter queue and is *not* reported as
/// failed (SQS then deletes it); transient failures are reported so SQS redelivers them, after
/// a back-off delay set on each one (rather than the queue's whole visibility timeout).
pub async fn handle_sqs_event(
    processor: &Processor,
    queue: &dyn Consumer,
    retry: RetryPolicy,
    event: SqsEvent,
) -> SqsBatchResponse {
    handle_within(processor, queue, retry, event, None).await
}

async fn handle_within(
    processor: &Processor,
    queue: &dyn Consumer,
    retry: RetryPolicy,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let messages = event.records.into_iter().map(to_received).collect();
    let work_until = deadline.map(|deadline| deadline - TIME_TO_HAND_BACK);
    let report = processor.process_batch_within(messages, work_until).await;
    let scheduling = schedule_retries(queue, &report, retry);
    match deadline {
        Some(deadline) => {
            if tokio::time::timeout_at(deadline - TIME_TO_ANSWER, scheduling)
                .await
                .is_err()
            {
                tracing::warn!(
                    "SQS did not take every retry's visibility in time; those leases will expire instead"
                );
            }
        }
        None => scheduling.await,
    }
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

/// The tokio instant of a deadline in milliseconds since the epoch, as the runtime gives it.
pub fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX / 2))
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
