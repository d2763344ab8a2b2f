//! Metrics on Lambda: CloudWatch Embedded Metric Format documents on stdout, which CloudWatch
//! Logs turns into metrics without an API call from the function.

use metrics_cloudwatch_embedded::{Builder, Collector};

/// Installs the EMF recorder: counters and histograms are flushed after each invocation, with
/// [`COLD_START`] on the first one.
pub fn cloudwatch_metrics(namespace: &str) -> anyhow::Result<&'static Collector> {
    let collector = Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .with_lambda_request_id("RequestId")
        .init()
        .map_err(|error| anyhow::anyhow!("installing the CloudWatch metrics recorder: {error}"))?;
    super::describe();
    // A counter of our own rather than the crate's cold-start metric, which carries only the
    // dimensions every metric has: the two functions share the namespace, so without its
    // `function` dimension their cold starts would add up. (A default dimension would give
    // every metric the dimension, and the alarms, which read them without it, would go blind.)
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    metrics::counter!(COLD_START, "function" => function).increment(1);
    Ok(collector)
}

/// Counted once per execution environment, with the function's name as its `function`
/// dimension.
pub const COLD_START: &str = "ColdStart";
