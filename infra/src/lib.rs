//! What the binaries share around the pure domain: the ports they talk to (queue, store,
//! notifier), the adapters behind those ports (SQLite, AWS) and the one place that picks them
//! from the settings (`adapters::select`), telemetry, and shutdown.

/// The domain crate, re-exported so that `infra::domain::…` names the one domain.
pub use domain;

pub mod adapters;
pub mod aws_calls;
pub mod backtest;
#[cfg(test)]
mod heap_probe;
pub mod ports;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
