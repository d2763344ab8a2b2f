//! A TCP proxy that can go down: while down it closes every connection at once (new ones as
//! they arrive, open ones too), as a service behind a failing network path would. Tests put it
//! between a binary and the emulator, through a service's `AWS_ENDPOINT_URL_<SERVICE>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as an endpoint URL.
    pub endpoint: String,
    down: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Forwards to `target` (`host:port`), up until told otherwise.
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target.parse().expect("a socket address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let (down, watch_down) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        tokio::spawn(accept_loop(listener, target, watch_down, refused.clone()));
        Self {
            endpoint,
            down,
            refused,
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Connections closed because the proxy was down.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    down: watch::Receiver<bool>,
    refused: Arc<AtomicU64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if *down.borrow() {
            refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, target, down.clone()));
    }
}

/// Copies both ways until either side closes or the proxy goes down.
async fn forward(mut client: TcpStream, target: SocketAddr, mut down: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = down.wait_for(|is_down| *is_down) => {}
    }
}
