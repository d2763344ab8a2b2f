//! Everything the binaries report, defined once: metric names (so that Prometheus locally and
//! CloudWatch on AWS show the same ones), the two recorders behind the `metrics` facade, and
//! logging.

mod cloudwatch;
mod logging;
mod prometheus;

pub use cloudwatch::cloudwatch_metrics;
pub use logging::{LogFormat, TelemetryArgs, exit_code, in_lambda, init_logging};
pub use prometheus::prometheus;

pub const ACCEPTED: &str = "transactions_accepted_total";
pub const REJECTED: &str = "transactions_rejected_total";
pub const PROCESSED: &str = "transactions_processed_total";
pub const DUPLICATES: &str = "transactions_duplicates_total";
pub const CONFLICTS: &str = "transactions_conflicts_total";
pub const DEAD_LETTERED: &str = "transactions_dead_lettered_total";
pub const RETRIED: &str = "transactions_retried_total";
pub const ALERTS_SENT: &str = "alerts_sent_total";
pub const ALERT_RULE: &str = "alert_rule";
pub const ALERTS_RAISED: &str = "alerts_raised_total";
pub const ALERTS_SHADOW: &str = "alerts_shadow_total";
pub const COUNTING_SKIPPED_LATE: &str = "rules_late_transactions_total";
pub const PROCESSING_LAG: &str = "processing_lag_seconds";
pub const BATCH_SIZE: &str = "processor_batch_size";
pub const QUEUE_DEPTH: &str = "queue_depth";
pub const DEAD_LETTER_DEPTH: &str = "dead_letter_queue_depth";
pub const REVIEWS: &str = "alert_reviews_total";
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries_total";

/// Registers help texts with whichever recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ACCEPTED, "Transactions the API accepted onto the queue");
    describe_counter!(REJECTED, "Requests the API refused, by reason");
    describe_counter!(PROCESSED, "Transactions stored for the first time");
    describe_counter!(DUPLICATES, "Redeliveries of a transaction already stored");
    describe_counter!(
        CONFLICTS,
        "Same id, different payload: the original was kept"
    );
    describe_counter!(DEAD_LETTERED, "Messages moved to the dead-letter queue");
    describe_counter!(
        RETRIED,
        "Messages given back to the queue after a transient failure"
    );
    describe_counter!(ALERTS_SENT, "Alerts published");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome: delivered, retried (a wait follows) or failed (no retry left)"
    );
    describe_counter!(
        REVIEWS,
        "Reviews of alerts written, by the verdict they leave (`none` while unresolved)"
    );
    describe_counter!(
        ALERTS_RAISED,
        "Alerts raised by stored transactions, by rule"
    );
    describe_counter!(
        ALERTS_SHADOW,
        "Hits of shadow rules on stored transactions, by rule: stored, never alerted"
    );
    describe_gauge!(
        ALERT_RULE,
        "The alert rules in force (1 each), with name, kind and rule"
    );
    describe_counter!(
        COUNTING_SKIPPED_LATE,
        "Transactions older than the late-arrival bound, left out of windowed rules"
    );
    describe_histogram!(
        PROCESSING_LAG,
        Unit::Seconds,
        "processed_at minus accepted_at"
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Messages per processed batch");
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Messages waiting or leased");
    describe_gauge!(
        DEAD_LETTER_DEPTH,
        Unit::Count,
        "Messages in the dead-letter queue"
    );
}
