//! Wiring: connect the ports and the keys from the settings, then either serve HTTP with our
//! accept loop (`http_server`, with the in-process processor when the queue is embedded) or,
//! when started by the Lambda runtime, hand the same router to `lambda_http`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use infra::adapters::select::{Backend, Connector};
use infra::aws_calls::{AwsCall, Caller};
use infra::{shutdown, telemetry};
use processor::{wiring, worker};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{metrics_router, router};
use crate::auth::{ApiKeys, DEVELOPMENT_KEY, DEVELOPMENT_SHOP, KeyRing, TableKeys};
use crate::config::ServeArgs;
use crate::cursor::CursorKey;
use crate::http_server::{self, Limits};
use crate::lambda;
use crate::routes::ops::HEALTH_CACHE;
use crate::rules_in_force::RulesSource;
use crate::state::{AppState, PipelineState, Timeouts, WebhookState};
use crate::webhook_sender;

/// What Lambda does for the API function with its role, for the permission test.
pub const AWS_CALLS: &[AwsCall] = &[
    AwsCall::new(
        "",
        "logs:CreateLogStream",
        "log-group:ApiLogGroup",
        &[Caller::Api],
    ),
    AwsCall::new(
        "",
        "logs:PutLogEvents",
        "log-group:ApiLogGroup",
        &[Caller::Api],
    ),
];

/// The request line and headers together: enough for any client of this API (a bearer key and a
/// handful of headers), far below hyper's default of about 400 KB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;

/// Where the keys come from: a table, a file, or (loopback only) the development key.
async fn key_ring(
    args: &ServeArgs,
    ports: &Connector<'_>,
    listen_ip: Option<IpAddr>,
) -> anyhow::Result<KeyRing> {
    if let Some(table) = &args.keys_table.api_keys_table {
        return Ok(KeyRing::Table(TableKeys::new(
            ports.key_lookup(table).await,
            args.api_keys_cache_seconds,
            args.api_keys_unknown_lookups_per_second,
        )));
    }
    let Some(ip) = listen_ip else {
        let file = args
            .api_keys_file
            .as_deref()
            .context("on Lambda, set API_KEYS_TABLE (or API_KEYS_FILE)")?;
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

/// The key cursors are signed with: from the settings; on a server, else, the one kept in the
/// data directory, made on first start.
fn cursor_key(args: &ServeArgs, on_lambda: bool) -> anyhow::Result<CursorKey> {
    match (&args.cursor_key, on_lambda) {
        (Some(text), _) => CursorKey::from_setting(text),
        (None, true) => {
            // Taking transactions matters more than continuing a walk: serve, and say loudly
            // that a cursor made by another instance will be refused.
            tracing::error!(
                "CURSOR_KEY is not set: this instance signs cursors with a key of its own, which \
                 other instances refuse; set it (the template does)"
            );
            Ok(CursorKey::random())
        }
        (None, false) => CursorKey::load_or_create(&args.ports.embedded.data_dir),
    }
}

/// The state the router needs: the queue's sending side, the store's reading side, the keys,
/// the webhooks where the store keeps them. `loopback` says whether the API listens on a
/// loopback address, where loopback webhook destinations are allowed.
async fn app_state(
    args: &ServeArgs,
    ports: &Connector<'_>,
    keys: KeyRing,
    cursor_key: CursorKey,
    loopback: bool,
) -> anyhow::Result<AppState> {
    let timeouts = Timeouts {
        enqueue: args.enqueue_timeout,
        body_read: args.body_read_timeout,
        health_cache: HEALTH_CACHE,
    };
    let webhooks = WebhookState {
        registry: ports.webhook_registry().await?,
        loopback_allowed: loopback,
    };
    Ok(AppState::new(
        ports.producer().await?,
        ports.shop_store().await?,
        keys,
        cursor_key,
        timeouts,
    )
    .with_webhooks(webhooks)
    .with_lists(ports.list_admin().await?, ports.list_membership().await?)
    .with_backtest_bound(args.backtest_max_transactions)
    .with_rules(RulesSource::from_settings(&args.processor, ports).await)
    .with_pipeline(pipeline_state(args, ports).await?))
}

/// The queue's figures, opened only when some shop is the operator's.
async fn pipeline_state(args: &ServeArgs, ports: &Connector<'_>) -> anyhow::Result<PipelineState> {
    let operators = args.operator_shops.clone();
    let backlog = match operators.0.is_empty() {
        true => None,
        false => Some(ports.backlog().await.context("OPERATOR_SHOPS")?),
    };
    Ok(PipelineState {
        operators: Arc::new(operators),
        backlog,
    })
}

/// The webhook sender, where the store keeps webhooks.
async fn start_webhook_sender(
    args: &ServeArgs,
    ports: &Connector<'_>,
    stop: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(outbox) = ports.webhook_outbox().await? else {
        return Ok(None);
    };
    let settings = args.webhooks.sender_settings(args.addr.ip().is_loopback());
    Ok(Some(tokio::spawn(webhook_sender::run(
        outbox, settings, stop,
    ))))
}

/// The processor inside this process, draining the same embedded queue the API sends to (the
/// connector opened it once), without the API's breaker: the worker has its own retry schedule.
async fn start_embedded_processor(
    args: &ServeArgs,
    ports: &Connector<'_>,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let wired = wiring::processor(ports, &args.processor).await?;
    Ok(tokio::spawn(worker::run(
        wired.processor,
        wired.queue,
        wired.tuning,
        stop,
    )))
}

/// Where Prometheus scrapes when `METRICS_ADDR` is not set (the OpenTelemetry Prometheus
/// exporter's default port).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// The metrics listener: the address asked for, or the default port; when another process holds
/// that one (a second server on one machine), a free loopback port, since a taken scrape port
/// is no reason to refuse the shops.
async fn metrics_listener(asked: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = asked {
        return TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener {addr}"));
    }
    match TcpListener::bind(DEFAULT_METRICS_ADDR).await {
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                default = DEFAULT_METRICS_ADDR,
                "the default metrics port is taken: /metrics is on a free loopback port, which \
                 the second line on stdout names; set METRICS_ADDR to choose"
            );
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the metrics listener")
        }
        bound => {
            bound.with_context(|| format!("binding the metrics listener {DEFAULT_METRICS_ADDR}"))
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ports = args.ports.connector();
    let keys = key_ring(&args, &ports, Some(args.addr.ip())).await?;
    let prometheus = telemetry::prometheus();
    let loopback = args.addr.ip().is_loopback();
    let state = app_state(&args, &ports, keys, cursor_key(&args, false)?, loopback).await?;
    let stop =
        shutdown::on_signal("no new requests; finishing those in flight and the current batch");
    let sender = start_webhook_sender(&args, &ports, stop.child_token()).await?;
    let run_processor = args.embedded_processor && args.ports.queue_backend() == Backend::Embedded;
    let worker = if run_processor {
        Some(start_embedded_processor(&args, &ports, stop.child_token()).await?)
    } else {
        None
    };

    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let local = listener.local_addr()?;
    let metrics_listener = metrics_listener(args.metrics_addr).await?;
    let metrics_local = metrics_listener.local_addr()?;
    // Plain lines on stdout, so that scripts and tests can find ports chosen with `:0`; in one
    // write, and a reader that has gone (a closed pipe) is no reason to stop serving.
    let lines = format!("listening on http://{local}\nmetrics on http://{metrics_local}/metrics\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    tracing::info!(%local, queue = ?args.ports.queue_backend(), store = ?args.ports.store_backend(), processor = run_processor, docs = %format!("http://{local}/docs"), "serving");

    let limits = Limits {
        header_read_timeout: args.header_read_timeout,
        max_header_bytes: MAX_HEADER_BYTES,
        max_headers: MAX_HEADERS,
        max_connections: args.max_connections,
        shutdown_grace: args.shutdown_grace,
    };
    // Prometheus scrapes a listener of its own: the API's port shows no platform-wide figures.
    let metrics = tokio::spawn(http_server::serve(
        metrics_listener,
        metrics_router(prometheus),
        limits,
        stop.clone(),
    ));
    http_server::serve(listener, router(state), limits, stop).await;
    metrics.await.context("the metrics listener")?;
    if let Some(worker) = worker {
        // The worker saw the same cancellation and is finishing its batch.
        worker.await.context("the in-process processor")?;
    }
    if let Some(sender) = sender {
        sender.await.context("the webhook sender")?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The same router behind API Gateway (HTTP API, payload 2.0). Metrics leave as CloudWatch
/// Embedded Metric Format on stdout, flushed after each invocation.
pub async fn run_lambda(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = telemetry::cloudwatch_metrics(&args.telemetry.metrics_namespace)?;
    let ports = args.ports.connector();
    let keys = key_ring(&args, &ports, None).await?;
    let state = app_state(&args, &ports, keys, cursor_key(&args, true)?, false).await?;
    let service = tower::ServiceBuilder::new()
        .map_request(lambda::prepare)
        .service(router(state));
    metrics_cloudwatch_embedded::lambda::service::run_http(metrics, service)
        .await
        .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}
