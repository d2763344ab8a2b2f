//! The batch-processing core and what drives it.
//!
//! [`Processor::process_batch`] is the one place where a queue message becomes a stored
//! transaction and, if it breaks a rule, an alert. It is driven by [`worker::run`] (the embedded
//! in-process worker and `processor poll`) and by the SQS-triggered Lambda ([`lambda`]), which
//! report the outcome to their queue in their own way.

mod batch;
pub mod lambda;
pub mod retry;
pub mod rules_source;
pub mod settings;
pub mod wiring;
pub mod worker;

pub use batch::{BatchReport, DEFAULT_ALERT_CLAIM, Outcome, Processor, TIME_TO_START};
