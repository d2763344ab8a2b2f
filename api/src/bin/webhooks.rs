//! The webhooks function on AWS Lambda: see `api::webhook_lambda`.

use std::process::ExitCode;

use anyhow::Context;
use api::config::WebhooksFunctionArgs;
use api::webhook_lambda::WebhookFunction;
use api::webhook_sender;
use clap::Parser;
use infra::telemetry::{self, exit_code, init_logging};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use processor::lambda::instant_of;
use serde_json::Value;

#[tokio::main]
async fn main() -> ExitCode {
    let args = WebhooksFunctionArgs::parse();
    init_logging(args.telemetry.log_format);
    exit_code(run(args).await)
}

async fn run(args: WebhooksFunctionArgs) -> anyhow::Result<()> {
    let metrics = telemetry::cloudwatch_metrics(&args.telemetry.metrics_namespace)?;
    let ports = args.ports.connector();
    // Never loopback on Lambda: destinations are public https addresses.
    let settings = args.webhooks.sender_settings(false);
    let function = std::sync::Arc::new(WebhookFunction {
        inbox: ports.shop_store().await?,
        registry: ports
            .webhook_registry()
            .await?
            .context("the webhooks function needs WEBHOOKS_TABLE and a DynamoDB store")?,
        log: ports.delivery_log().await?,
        queue: ports.delivery_queue().await?,
        client: webhook_sender::client(&settings),
        settings,
    });
    let handler = move |event: LambdaEvent<Value>| {
        let function = function.clone();
        async move {
            let deadline = instant_of(event.context.deadline);
            let answer = function.handle(event.payload, Some(deadline)).await;
            Ok::<_, lambda_runtime::Error>(answer)
        }
    };
    metrics_cloudwatch_embedded::lambda::handler::run(metrics, handler)
        .await
        .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}
