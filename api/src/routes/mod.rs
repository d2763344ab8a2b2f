pub mod alerts;
pub mod batch;
pub mod lists;
pub mod ops;
pub mod rules;
pub mod stats;
pub mod transactions;
pub mod webhooks;
