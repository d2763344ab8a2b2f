use std::process::ExitCode;

use api::auth::new_key;
use api::config::{Cli, Command, KeysCommand};
use api::telemetry::init_logging;
use api::{openapi, server};
use clap::Parser;
use pipeline::domain::ShopId;

// glibc's allocator showed up as a tenth of the CPU under load; mimalloc's per-thread heaps
// cut that (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keys(KeysCommand::New { shop })) => print_new_key(&shop),
        Some(Command::Openapi) => {
            print!("{}", openapi::document());
            ExitCode::SUCCESS
        }
        Some(Command::Serve(args)) => run_server(args).await,
        None => run_server(cli.serve).await,
    }
}

async fn run_server(args: api::config::ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    match server::serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_new_key(shop: &str) -> ExitCode {
    match ShopId::parse(shop) {
        Ok(shop) => {
            let (key, line) = new_key(&shop);
            println!("key:  {key}");
            println!("line: {line}");
            eprintln!(
                "Give the key to the shop; add the line to the API keys file. The key is not stored anywhere."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
