//! The pipeline's shared core: the domain (what a transaction is, when it is valid, when it
//! raises an alert), the ports the binaries talk to (queue, store, notifier), the adapters
//! behind those ports and how each is chosen, telemetry, and shutdown. The domain knows nothing
//! of HTTP, Lambda or any SDK.

pub mod adapters;
pub mod domain;
pub mod ports;
pub mod shutdown;
pub mod telemetry;
