//! Pure domain logic: no I/O, no clocks (callers pass `now`), no SDKs.

pub mod alert;
pub mod envelope;
pub mod money;
pub mod parse;
pub mod record;
pub mod transaction;

pub use alert::{Alert, AlertDecision, AlertPolicy};
pub use envelope::{Envelope, EnvelopeError, IncomingMessage};
pub use parse::{FieldError, TransactionError, parse_transaction};
pub use record::{AlertState, AlertStatus, TransactionRecord};
pub use transaction::{Item, PaymentMethod, ShopId, Transaction, TransactionType, is_identifier};
