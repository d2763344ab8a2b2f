//! A TCP proxy that can go down: while down it closes every connection at once (new ones as
//! they arrive, open ones too), as a service behind a failing network path would. Or it can
//! hang: then it accepts connections and never answers on them, not even after it stops
//! hanging, as a service that takes requests and stalls would. Tests put it between a binary
//! and the emulator, through a service's `AWS_ENDPOINT_URL_<SERVICE>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as an endpoint URL.
    pub endpoint: String,
    down: watch::Sender<bool>,
    hanging: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Forwards to `target` (`host:port`), up until told otherwise.
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target.parse().expect("a socket address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let (down, watch_down) = watch::channel(false);
        let (hanging, watch_hanging) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let faults = Faults {
            down: watch_down,
            hanging: watch_hanging,
            refused: refused.clone(),
            held: held.clone(),
        };
        tokio::spawn(accept_loop(listener, target, faults));
        Self {
            endpoint,
            down,
            hanging,
            refused,
            held,
        }
    }

    /// A proxy in front of this test binary's emulator.
    pub async fn in_front_of_moto() -> Self {
        let moto = crate::moto()
            .endpoint
            .trim_start_matches("http://")
            .to_owned();
        Self::start(&moto).await
    }

    /// While hanging, new connections are accepted and then left without an answer for good.
    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.send_replace(hanging);
    }

    /// Connections accepted while hanging (and never answered).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Connections closed because the proxy was down.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

struct Faults {
    down: watch::Receiver<bool>,
    hanging: watch::Receiver<bool>,
    refused: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, faults: Faults) {
    let mut stalled = Vec::new();
    while let Ok((client, _)) = listener.accept().await {
        if *faults.down.borrow() {
            faults.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        if *faults.hanging.borrow() {
            faults.held.fetch_add(1, Ordering::Relaxed);
            // Kept open and never read from or answered, for as long as the proxy lives.
            stalled.push(client);
            continue;
        }
        tokio::spawn(forward(client, target, faults.down.clone()));
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
