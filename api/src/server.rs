//! Wiring: build the backend and the keys from the settings, then either serve HTTP with
//! `axum::serve` (with the in-process processor for the embedded backend) or, when started by the
//! Lambda runtime, hand the same router to `lambda_http`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::adapters::config::{Backend, BackendKind};
use processor::Processor;
use processor::worker::{self, WorkerSettings, shutdown_signal};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::auth::{ApiKeys, DEVELOPMENT_KEY, DEVELOPMENT_SHOP, KeyRing, SsmKeys};
use crate::config::ServeArgs;
use crate::telemetry;

/// Where the keys come from: SSM, a file, or (loopback only) the development key.
async fn key_ring(args: &ServeArgs, listen_ip: Option<IpAddr>) -> anyhow::Result<KeyRing> {
    if let Some(parameter) = &args.api_keys_ssm_parameter {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let keys = SsmKeys::new(
            aws_sdk_ssm::Client::new(&config),
            parameter.clone(),
            args.api_keys_cache_seconds,
        );
        // Read once now, so that a wrong parameter name shows at start rather than per request.
        keys.keys()
            .await
            .with_context(|| format!("reading API keys from SSM parameter {parameter}"))?;
        return Ok(KeyRing::Ssm(keys));
    }
    let Some(ip) = listen_ip else {
        let file = args
            .api_keys_file
            .as_deref()
            .context("on Lambda, set API_KEYS_SSM_PARAMETER (or API_KEYS_FILE)")?;
        return Ok(KeyRing::Fixed(ApiKeys::from_file(file)?));
    };
    let keys = ApiKeys::for_server(args.api_keys_file.as_deref(), ip)?;
    if args.api_keys_file.is_none() {
        tracing::warn!(
            shop = DEVELOPMENT_SHOP,
            key = DEVELOPMENT_KEY,
            "no API keys file: the development key is accepted (loopback only)"
        );
    }
    Ok(KeyRing::Fixed(keys))
}

fn app_state(
    args: &ServeArgs,
    backend: &Backend,
    keys: KeyRing,
    prometheus: Option<PrometheusHandle>,
) -> AppState {
    AppState {
        queue: backend.queue.clone(),
        store: backend.store.clone(),
        keys: Arc::new(keys),
        prometheus,
        enqueue_timeout: args.enqueue_timeout,
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let keys = key_ring(&args, Some(args.addr.ip())).await?;
    let backend = args
        .backend
        .connect()
        .await
        .with_context(|| format!("opening the {:?} backend", args.backend.backend))?;
    let state = app_state(&args, &backend, keys, Some(telemetry::prometheus()));

    let shutdown = CancellationToken::new();
    let run_processor = args.embedded_processor && args.backend.backend == BackendKind::Embedded;
    let worker = run_processor.then(|| {
        let processor = Processor::new(
            backend.queue.clone(),
            backend.store.clone(),
            backend.notifier.clone(),
            args.alert_thresholds.clone(),
            args.processor_concurrency,
        );
        let settings = WorkerSettings {
            batch_size: args.processor_batch_size,
            receive_wait: Duration::from_secs(1),
        };
        tokio::spawn(worker::run(
            Arc::new(processor),
            backend.queue.clone(),
            settings,
            shutdown.child_token(),
        ))
    });

    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let local = listener.local_addr()?;
    // One plain line on stdout, so that scripts and tests can find a port chosen with `:0`.
    println!("listening on http://{local}");
    tracing::info!(%local, backend = ?args.backend.backend, processor = run_processor, docs = %format!("http://{local}/docs"), "serving");

    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            tracing::info!(
                "shutting down: no new requests; finishing those in flight and the current batch"
            );
            shutdown.cancel();
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving HTTP")?;
    if let Some(worker) = worker {
        // The worker saw the same cancellation and is finishing its batch.
        let _ = worker.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The same router behind API Gateway (HTTP API, payload 2.0, `$default` stage). Metrics leave
/// as CloudWatch Embedded Metric Format on stdout, flushed after each invocation.
pub async fn run_lambda(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = processor::lambda::cloudwatch_metrics(&args.metrics_namespace)
        .map_err(|error| anyhow::anyhow!("metrics: {error}"))?;
    let keys = key_ring(&args, None).await?;
    let backend = args.backend.connect().await.context("connecting to AWS")?;
    let state = app_state(&args, &backend, keys, None);
    metrics_cloudwatch_embedded::lambda::service::run_http(metrics, router(state))
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))
}
