use std::process::ExitCode;

use api::config::{Cli, Command, ServeArgs};
use api::{keys_admin, openapi, server};
use clap::Parser;
use infra::telemetry::{self, LogFormat, exit_code, init_logging};

// glibc's allocator showed up as a tenth of the CPU under load; mimalloc's per-thread heaps
// cut that (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keys(command)) => {
            init_logging(LogFormat::Pretty);
            exit_code(keys_admin::run(command).await)
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
