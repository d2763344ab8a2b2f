//! `pipeline`: the command-line client of the transaction API. It talks to the API over HTTP
//! only, with the shop's key: it sends files of transactions in batches, generates realistic
//! load, and reads transactions back. It never prints the key.

mod api;
mod load;
mod read;
mod send;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::{ApiClient, ApiKey};

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Send, load and read transactions through the pipeline's API"
)]
struct Cli {
    /// The API's base URL.
    #[arg(
        long,
        env = "PIPELINE_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    url: String,

    /// The shop's API key. Without one, the development key is used, on a loopback URL only.
    #[arg(long, env = "PIPELINE_API_KEY", hide_env_values = true, global = true)]
    key: Option<ApiKey>,

    /// Resends of a request after a 503, a 429 (after `Retry-After`) or a network error (after
    /// a growing back-off) before giving up. Safe: transaction ids are idempotent.
    #[arg(long, env = "PIPELINE_RETRIES", default_value_t = 10, global = true)]
    retries: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send transactions from a file (JSON Lines or a JSON array) or `-` (standard input).
    Send(send::SendArgs),
    /// Generate realistic traffic at a steady rate and report throughput, latency and lag.
    Load(load::LoadArgs),
    /// Show one transaction.
    Get(read::GetArgs),
    /// List transactions, newest first, with filters.
    List(read::ListArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match ApiClient::new(&cli.url, cli.key, cli.retries) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Send(args) => send::run(&client, args).await,
        Command::Load(args) => load::run(&client, args).await,
        Command::Get(args) => read::get(&client, args).await,
        Command::List(args) => read::list(&client, args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
