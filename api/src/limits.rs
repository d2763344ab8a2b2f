//! The sizes a request may have, named once for the handlers and the contract.

/// A single transaction's body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Transactions in one batch request at most.
pub const MAX_BATCH_ITEMS: usize = 1_000;
/// Bytes in one batch request at most.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Bytes of records in one list page at most: a page of 100 records of up to 64 KiB each would
/// pass the 6 MB Lambda may answer. A page cut short has `has_more` and a cursor after its last
/// record.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
