//! Wiring for the embedded mode: open the SQLite backend, start the in-process processor, serve
//! the router, and shut all of it down in order on SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pipeline::adapters::embedded::{EmbeddedBackend, QueueSettings};
use pipeline::ports::Queue;
use processor::Processor;
use processor::worker::{self, WorkerSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::auth::{ApiKeys, DEVELOPMENT_KEY, DEVELOPMENT_SHOP};
use crate::config::ServeArgs;
use crate::telemetry;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let keys = ApiKeys::for_server(args.api_keys_file.as_deref(), args.addr.ip())?;
    if args.api_keys_file.is_none() {
        tracing::warn!(
            shop = DEVELOPMENT_SHOP,
            key = DEVELOPMENT_KEY,
            "no API keys file: the development key is accepted (loopback only)"
        );
    }
    let settings = QueueSettings {
        visibility_timeout: args.queue_visibility_timeout,
        max_receives: args.queue_max_receives,
    };
    let backend = EmbeddedBackend::open(&args.data_dir, settings)
        .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
    let queue: Arc<dyn Queue> = backend.queue.clone();
    let state = AppState {
        queue: queue.clone(),
        store: backend.store.clone(),
        keys: Arc::new(keys),
        prometheus: Some(telemetry::prometheus()),
        enqueue_timeout: args.enqueue_timeout,
    };

    let shutdown = CancellationToken::new();
    let worker = args.embedded_processor.then(|| {
        let processor = Processor::new(
            queue.clone(),
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
            queue.clone(),
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
    tracing::info!(%local, data_dir = %args.data_dir.display(), docs = %format!("http://{local}/docs"), "serving");

    tokio::spawn(cancel_on_signal(shutdown.clone()));
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

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!(
        "shutting down: no new requests; finishing those in flight and the current batch"
    );
    shutdown.cancel();
}
