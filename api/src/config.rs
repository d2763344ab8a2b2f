//! Command line and environment. Every setting has a default that works on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pipeline::domain::AlertPolicy;

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "api",
    version,
    about = "The transaction API, with the embedded queue, store and processor",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI document (as committed in openapi/openapi.json).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh random key and the line that admits it in the keys file.
    New {
        /// The shop the key belongs to.
        #[arg(long)]
        shop: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Without a keys file only loopback addresses are allowed.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where the embedded queue, store and alerts live (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// File of `shop_id:<sha256 hex of key>` lines. Without it, the development key works on
    /// loopback.
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Per-currency alert thresholds, e.g. `USD=1000,JPY=150000`; others use 1000.
    #[arg(long, env = "ALERT_THRESHOLDS", default_value = "", value_parser = parse_policy)]
    pub alert_thresholds: AlertPolicy,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Seconds a received message stays invisible before it is delivered again.
    #[arg(long, env = "QUEUE_VISIBILITY_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub queue_visibility_timeout: Duration,

    /// Receives after which an unacknowledged message goes to the dead letters.
    #[arg(long, env = "QUEUE_MAX_RECEIVES", default_value_t = 5)]
    pub queue_max_receives: u32,

    /// Messages the processor takes per batch.
    #[arg(long, env = "PROCESSOR_BATCH_SIZE", default_value_t = 128)]
    pub processor_batch_size: usize,

    /// Messages of a batch processed at once.
    #[arg(long, env = "PROCESSOR_CONCURRENCY", default_value_t = 128)]
    pub processor_concurrency: usize,

    /// Run the processor inside this process (`false` serves the API only).
    #[arg(long, env = "EMBEDDED_PROCESSOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub embedded_processor: bool,

    /// Seconds to wait for the queue to accept a transaction before answering 503.
    #[arg(long, env = "ENQUEUE_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub enqueue_timeout: Duration,
}

fn parse_policy(text: &str) -> Result<AlertPolicy, String> {
    text.parse()
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}
