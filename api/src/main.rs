use std::process::ExitCode;

use anyhow::Context;
use api::auth::new_key;
use api::config::{Cli, Command, KeysCommand, ServeArgs};
use api::{openapi, server};
use clap::Parser;
use infra::domain::ShopId;
use infra::telemetry::{self, LogFormat, exit_code, init_logging};

// glibc's allocator showed up as a tenth of the CPU under load; mimalloc's per-thread heaps
// cut that (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keys(KeysCommand::New { shop })) => {
            init_logging(LogFormat::Pretty);
            exit_code(print_new_key(&shop))
        }
        Some(Command::Openapi) => {
            print!("{}", openapi::document());
            ExitCode::SUCCESS
        }
        Some(Command::Serve(args)) => run(*args).await,
        None => run(cli.serve).await,
    }
}

async fn run(args: ServeArgs) -> ExitCode {
    init_logging(args.telemetry.log_format);
    exit_code(if telemetry::in_lambda() {
        server::run_lambda(args).await
    } else {
        server::serve(args).await
    })
}

fn print_new_key(shop: &str) -> anyhow::Result<()> {
    let shop = ShopId::parse(shop)
        .map_err(anyhow::Error::msg)
        .context("--shop")?;
    let (key, line) = new_key(&shop);
    println!("key:  {key}");
    println!("line: {line}");
    eprintln!(
        "Give the key to the shop; add the line to the API keys file (or SSM parameter). The key is not stored anywhere."
    );
    Ok(())
}
