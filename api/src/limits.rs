//! The sizes a request may have, named once for the handlers and the contract.

/// A single transaction's body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Transactions in one batch request at most.
pub const MAX_BATCH_ITEMS: usize = 1_000;
/// Bytes in one batch request at most.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
