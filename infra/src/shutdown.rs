//! Stopping on SIGINT or SIGTERM, the same way in every long-running binary.

use tokio_util::sync::CancellationToken;

/// Resolves on SIGINT or SIGTERM, whichever comes first.
pub async fn signal() {
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
}

/// A token cancelled by the first SIGINT or SIGTERM; `what` says in the log what happens next.
pub fn on_signal(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down: {what}");
        cancel.cancel();
    });
    token
}
