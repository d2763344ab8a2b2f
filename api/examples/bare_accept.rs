//! The throughput baseline for `scripts/bench/throughput.sh`: an axum handler that reads the
//! body and answers 202, with no auth, validation or queue. Usage: `bare_accept ADDR`.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".to_owned());
    let app = Router::new().route(
        "/transactions",
        post(|body: Bytes| async move {
            (
                StatusCode::ACCEPTED,
                format!("{{\"bytes\":{}}}", body.len()),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
