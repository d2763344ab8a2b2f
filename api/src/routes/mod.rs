pub mod ops;
pub mod transactions;
