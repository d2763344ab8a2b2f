//! Pure domain logic: no I/O, no clocks (callers pass `now`), no SDKs.

pub mod alert;
pub mod envelope;
pub mod ids;
pub mod inbox;
pub mod listing;
pub mod lists;
pub mod money;
pub mod names;
pub mod parse;
pub mod record;
pub mod rfc3339;
pub mod rules;
pub mod stats;
pub mod transaction;
pub mod webhooks;

pub use alert::{Action, Alert, AlertDecision, AlertPolicy};
pub use envelope::{Envelope, EnvelopeError};
pub use inbox::{
    AlertListFilters, AlertListQuery, AlertPage, AlertPosition, InboxAlert, Publication, Review,
    ReviewChange, ReviewEntry, ReviewError, ReviewStatus, Verdict, alert_id, is_alert_id,
};
pub use listing::{AlertFilter, ListFilters, ListQuery, Page, Position};
pub use names::Named;
pub use parse::{FieldError, TransactionError, parse_transaction};
pub use record::{AlertState, AlertStatus, Conflicts, RefusedResend, TransactionRecord};
pub use rules::{Decisions, RuleSet, RuleSummary, RulesFileError};
pub use transaction::{
    FINGERPRINT_PATTERN, Item, MAX_FINGERPRINT_CHARS, MAX_ID_CHARS, PaymentMethod, ShopId,
    Transaction, TransactionType, is_identifier,
};
