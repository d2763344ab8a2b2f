//! The embedded backend: the queue, the store and the notifier each in their own SQLite file
//! (WAL mode) under one data directory. Separate files keep one component's writes from
//! waiting on another's lock, as separate services would.

mod counters;
mod history;
mod inbox;
mod lists;
mod notifier;
mod queue;
mod sqlite;
mod store;
mod webhooks;
mod window_cache;

pub use notifier::{PublishedAlert, SqliteNotifier};
pub use queue::{QueueSettings, SqliteQueue};
pub use store::SqliteStore;
