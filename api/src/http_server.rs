//! The HTTP/1 server around the router: an accept loop with limits that `axum::serve` does not
//! set. A client that is slow to send its headers or its body is cut off; headers have a size
//! cap; connections are capped below the process's file limit, so that a flood of idle
//! connections cannot exhaust it; and a stop drains connections for a bounded time only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// File descriptors kept back from the connection cap for the databases, logs and clients.
const RESERVED_DESCRIPTORS: u64 = 64;
/// Accepting failed (out of descriptors, say): wait this long rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send its whole request head (or its next one, on a kept-alive connection)
    /// within this; otherwise the connection is closed.
    pub header_read_timeout: Duration,
    /// The request line and headers may take at most this many bytes (431 above).
    pub max_header_bytes: usize,
    /// At most this many headers (431 above).
    pub max_headers: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// After a stop, connections get this long to finish; then the process exits anyway.
    pub shutdown_grace: Duration,
}

/// The connection cap that fits the process's open-file limit.
pub fn connection_cap(wanted: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match soft {
        Some(limit) => {
            let fits = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            let cap = wanted.min(usize::try_from(fits).unwrap_or(usize::MAX));
            if cap < wanted {
                tracing::warn!(
                    wanted,
                    cap,
                    open_file_limit = limit,
                    "capping connections below the open-file limit"
                );
            }
            cap
        }
        None => wanted,
    }
}

/// Serves `app` on `listener` until `stop`, then drains for at most `shutdown_grace`.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    let slots = Arc::new(Semaphore::new(connection_cap(limits.max_connections)));
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the grace period; closing them");
    }
}
