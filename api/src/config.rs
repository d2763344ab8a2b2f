//! Command line and environment. Every setting has a default that works on a laptop.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use infra::adapters::select::PortArgs;
use infra::domain::ShopId;
use infra::domain::webhooks::RETRY_WAITS;
use infra::settings::parse_seconds;
use infra::telemetry::TelemetryArgs;
use processor::settings::ProcessorArgs;

use crate::webhook_sender::SenderSettings;

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
    Serve(Box<ServeArgs>),
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
    /// Add a fresh key for a shop to the keys table and print it (shown this once).
    Add {
        #[arg(long)]
        shop: String,
        #[command(flatten)]
        table: KeysTableArgs,
    },
    /// Add a fresh key for a shop; its other keys keep working for `--overlap`, then stop.
    Rotate {
        #[arg(long)]
        shop: String,
        /// How long the shop's older keys keep working beside the new one.
        #[arg(long, default_value = "86400", value_parser = parse_seconds)]
        overlap: Duration,
        #[command(flatten)]
        table: KeysTableArgs,
    },
    /// Remove one of a shop's keys at once (as `list` names it).
    Revoke {
        #[arg(long)]
        shop: String,
        #[arg(long)]
        key_id: String,
        #[command(flatten)]
        table: KeysTableArgs,
    },
    /// A shop's keys: id, created, expires.
    List {
        #[arg(long)]
        shop: String,
        #[command(flatten)]
        table: KeysTableArgs,
    },
    /// Add every `shop_id:<sha256 hex>` line of a keys file to the table (to move from a file,
    /// or from the SSM parameter earlier versions read). Keys already there are left alone.
    Import {
        file: PathBuf,
        #[command(flatten)]
        table: KeysTableArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct KeysTable {
    /// DynamoDB table of API keys (the stack's `ApiKeysTable` output), managed with `api keys
    /// add | rotate | revoke`: the API looks each key up when first presented and trusts it for
    /// `API_KEYS_CACHE_SECONDS`, so a change takes effect without a redeploy.
    #[arg(long, env = "API_KEYS_TABLE")]
    pub api_keys_table: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct KeysTableArgs {
    #[command(flatten)]
    pub table: KeysTable,
    #[command(flatten)]
    pub ports: Box<PortArgs>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Without a keys file only loopback addresses are allowed.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where `/metrics` is served for Prometheus: a listener of its own, so that the API's
    /// clients never see the platform's volume. `:0` picks a free port (the second line on
    /// stdout says which). Unset: 127.0.0.1:9464, or a free loopback port when another process
    /// holds that one.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// File of `shop_id:<sha256 hex of key>` lines. Without it (and without a keys table),
    /// the development key works on loopback.
    #[arg(long, env = "API_KEYS_FILE", conflicts_with = "api_keys_table")]
    pub api_keys_file: Option<PathBuf>,

    #[command(flatten)]
    pub keys_table: KeysTable,

    /// Lookups per second, per instance, of keys this instance has not seen: a flood of
    /// made-up keys gets 429s instead of becoming a flood of table reads. Keys already seen
    /// are not limited.
    #[arg(
        long,
        env = "API_KEYS_UNKNOWN_LOOKUPS_PER_SECOND",
        default_value_t = 20
    )]
    pub api_keys_unknown_lookups_per_second: u32,

    /// The secret list cursors are signed with (at least 32 bytes). Every instance serving the
    /// same shops needs the same one. Unset on a server: generated once into
    /// `DATA_DIR/cursor.key`. On Lambda the template passes a generated secret.
    #[arg(long, env = "CURSOR_KEY", hide_env_values = true)]
    pub cursor_key: Option<String>,

    /// How long a key read from the keys table is trusted before it is read again: the
    /// longest a revocation or rotation takes to reach a running instance.
    #[arg(long, env = "API_KEYS_CACHE_SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub api_keys_cache_seconds: Duration,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    /// Transactions a backtest (`POST /rules/backtest`) reads at most: the period's, and those
    /// around it that fill its windows. A larger period is refused with 422; the operator's
    /// `processor rules backtest` takes its own bound.
    #[arg(long, env = "BACKTEST_MAX_TRANSACTIONS", default_value_t = infra::backtest::DEFAULT_MAX_TRANSACTIONS)]
    pub backtest_max_transactions: usize,

    /// Comma-separated shop ids whose keys are the operator's: their overview (`GET /stats`,
    /// the console) also shows the queue's depth and dead letters, which are every shop's.
    /// None by default. On AWS the API then needs `DEAD_LETTER_QUEUE_URL` (the template sets it).
    #[arg(long, env = "OPERATOR_SHOPS", default_value = "", value_parser = parse_shop_ids)]
    pub operator_shops: OperatorShops,

    /// Run the processor inside this process when the queue is embedded (`false` serves the
    /// API only and leaves the queue to another process).
    #[arg(long, env = "EMBEDDED_PROCESSOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub embedded_processor: bool,

    /// Seconds to wait for the queue to accept a transaction, or a whole batch with its
    /// retries, before answering 503.
    #[arg(long, env = "ENQUEUE_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub enqueue_timeout: Duration,

    /// Seconds a client has to send a request's headers (and, on a kept-alive connection, the
    /// next request's); then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub header_read_timeout: Duration,

    /// Seconds a client has to send a request's body; then it gets 408.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "15", value_parser = parse_seconds)]
    pub body_read_timeout: Duration,

    /// Connections served at once (capped below the open-file limit); more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Seconds connections get to finish after SIGTERM or SIGINT; then the process exits anyway.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub ports: PortArgs,

    #[command(flatten)]
    pub processor: ProcessorArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// The shops whose keys see the whole pipeline's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorShops(pub BTreeSet<ShopId>);

/// `a,b,c`: each a valid shop id; blanks around commas and an empty list are fine (the
/// template passes an empty parameter as an empty string).
fn parse_shop_ids(text: &str) -> Result<OperatorShops, String> {
    let ids = text.split(',').map(str::trim).filter(|id| !id.is_empty());
    Ok(OperatorShops(
        ids.map(ShopId::parse).collect::<Result<_, _>>()?,
    ))
}

/// How webhook deliveries are made: by the API's sender locally, by the webhooks function on
/// AWS.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Seconds a webhook's receiver has to answer an attempt; then it is a failure, retried.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub webhook_timeout: Duration,

    /// The waits between a failing webhook delivery's attempts, in seconds, comma-separated;
    /// after the last the delivery is failed. Unset: 10 s growing to 8 h, about 30 hours.
    #[arg(long, env = "WEBHOOK_RETRY_WAITS", value_delimiter = ',', value_parser = parse_seconds)]
    pub webhook_retry_waits: Vec<Duration>,
}

impl WebhookArgs {
    /// The sender's settings; `loopback_allowed` when the API itself listens on loopback.
    pub fn sender_settings(&self, loopback_allowed: bool) -> SenderSettings {
        SenderSettings {
            timeout: self.webhook_timeout,
            retry_waits: if self.webhook_retry_waits.is_empty() {
                RETRY_WAITS.to_vec()
            } else {
                self.webhook_retry_waits.clone()
            },
            loopback_allowed,
        }
    }
}

/// The webhooks function on AWS (`webhooks` binary): the transactions table's stream and the
/// deliveries queue.
#[derive(Debug, Parser)]
#[command(
    name = "webhooks",
    version,
    about = "The webhooks Lambda function: alert changes from the table's stream become deliveries, and deliveries are made"
)]
pub struct WebhooksFunctionArgs {
    #[command(flatten)]
    pub webhooks: WebhookArgs,

    #[command(flatten)]
    pub ports: PortArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}
