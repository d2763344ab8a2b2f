//! The embedded backend: the queue, the store and the notifier each in their own SQLite file
//! (WAL mode) under one data directory. Separate files keep one component's writes from
//! waiting on another's lock, as separate services would.

mod notifier;
mod queue;
mod sqlite;
mod store;

use std::path::Path;
use std::sync::Arc;

pub use notifier::{PublishedAlert, SqliteNotifier};
pub use queue::{QueueSettings, SqliteQueue};
pub use store::SqliteStore;

use crate::ports::PortError;

/// All three embedded adapters, opened on one data directory.
pub struct EmbeddedBackend {
    pub queue: Arc<SqliteQueue>,
    pub store: Arc<SqliteStore>,
    pub notifier: Arc<SqliteNotifier>,
}

impl EmbeddedBackend {
    pub fn open(data_dir: &Path, queue_settings: QueueSettings) -> Result<Self, PortError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            PortError::unavailable("data directory", format!("{}: {error}", data_dir.display()))
        })?;
        Ok(Self {
            queue: Arc::new(SqliteQueue::open(
                &data_dir.join("queue.db"),
                queue_settings,
            )?),
            store: Arc::new(SqliteStore::open(&data_dir.join("store.db"))?),
            notifier: Arc::new(SqliteNotifier::open(&data_dir.join("alerts.db"))?),
        })
    }
}
