//! The pipeline's shared core: the domain (what a transaction is, when it is valid, when it
//! raises an alert), the ports the binaries talk to (queue, store, notifier) and the adapters
//! behind those ports. Nothing here knows about HTTP or Lambda.

pub mod adapters;
pub mod domain;
pub mod ports;
pub mod telemetry;
