//! Logging to stderr, and the one way both binaries end with an error.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How the binaries report: log format and, on Lambda, the CloudWatch namespace.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log format (always `json` on Lambda).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// CloudWatch namespace of the metrics (Lambda only).
    #[arg(long, env = "METRICS_NAMESPACE", default_value = "ECommercePipeline")]
    pub metrics_namespace: String,
}

/// Whether the Lambda runtime started this process.
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). On Lambda always JSON, which
/// CloudWatch Logs Insights reads field by field.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = if in_lambda() { LogFormat::Json } else { format };
    // Fails only when a subscriber is already installed (tests); that one is kept.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The exit code of a binary's `main`: an error is logged with its whole chain of causes.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
