use std::process::ExitCode;

use api::auth::new_key;
use api::config::{Cli, Command, KeysCommand, ServeArgs};
use api::{openapi, server};
use clap::Parser;
use pipeline::domain::ShopId;
use pipeline::telemetry::{LogFormat, init_logging};

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
        Some(Command::Serve(args)) => run(*args).await,
        None => run(cli.serve).await,
    }
}

async fn run(args: ServeArgs) -> ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    init_logging(if in_lambda {
        LogFormat::Json
    } else {
        args.log_format
    });
    let result = if in_lambda {
        server::run_lambda(args).await
    } else {
        server::serve(args).await
    };
    match result {
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
                "Give the key to the shop; add the line to the API keys file (or SSM parameter). The key is not stored anywhere."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
