//! The batch-processing core and the loop that feeds it.
//!
//! [`Processor::process_batch`] is the one place where a queue message becomes a stored
//! transaction and, if it breaks a rule, an alert. It is driven by [`worker::run`] (the embedded
//! in-process worker and the long-running poller) and by the SQS-triggered Lambda, which report
//! the outcome to their queue in their own way.

mod batch;
pub mod lambda;
pub mod worker;

pub use batch::{BatchReport, Outcome, Processor};
