//! Putting messages through a real queue, as the API and the worker do, for processor tests.

use std::process::Stdio;
use std::time::Duration;

use infra::ports::{OutgoingMessage, Queue, ReceivedMessage};

/// Sends the bodies and receives them all back, as the worker would: what a processor test
/// hands to `process_batch`.
pub async fn deliver(queue: &dyn Queue, bodies: &[String]) -> Vec<ReceivedMessage> {
    for body in bodies {
        let message = OutgoingMessage {
            body: body.clone(),
            attributes: Default::default(),
        };
        queue.send(message).await.expect("send");
    }
    let mut received = Vec::new();
    while received.len() < bodies.len() {
        let batch = queue
            .receive(100, Duration::from_secs(2))
            .await
            .expect("receive");
        assert!(
            !batch.is_empty(),
            "queue ran dry after {} of {}",
            received.len(),
            bodies.len()
        );
        received.extend(batch);
    }
    received
}

/// `processor poll` (the binary at `binary`) with these settings, killed when dropped.
pub fn poller(binary: &str, env: Vec<(&'static str, String)>) -> tokio::process::Child {
    tokio::process::Command::new(binary)
        .arg("poll")
        .envs(env)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn processor poll")
}
