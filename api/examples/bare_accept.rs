//! The throughput baseline for `scripts/bench/throughput.sh`: an axum handler that reads the
//! body and answers 202, with no auth, validation or queue, on the single and the batch path. Usage: `bare_accept ADDR`.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".to_owned());
    let accept = post(|body: Bytes| async move {
        (
            StatusCode::ACCEPTED,
            format!("{{\"bytes\":{}}}", body.len()),
        )
    });
    // The batch path too, so that batch benchmarks have the same ceiling to compare with.
    let app = Router::new()
        .route("/transactions", accept.clone())
        .route("/transactions/batch", accept);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
