//! Metrics on Lambda: CloudWatch Embedded Metric Format documents on stdout, which CloudWatch
//! Logs turns into metrics without an API call from the function.

use metrics_cloudwatch_embedded::{Builder, Collector};

/// Installs the EMF recorder: counters and histograms are flushed after each invocation, with a
/// `ColdStart` metric on the first one.
pub fn cloudwatch_metrics(namespace: &str) -> anyhow::Result<&'static Collector> {
    let collector = Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .lambda_cold_start_metric("ColdStart")
        .with_lambda_request_id("RequestId")
        .init()
        .map_err(|error| anyhow::anyhow!("installing the CloudWatch metrics recorder: {error}"))?;
    super::describe();
    Ok(collector)
}
