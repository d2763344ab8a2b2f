//! One SQLite database: a single writer thread that commits in groups, and a few readers.
//!
//! Every write is a closure sent to the writer thread. The thread takes all the closures that
//! are waiting, runs each inside its own savepoint (so one failure does not undo the others),
//! and commits them together: one transaction and one fsync for the whole group. Each caller
//! hears back only after that commit, so "returned Ok" means "on disk".
//!
//! The savepoints keep a copy of each page they change (the sub-journal); with
//! `temp_store = MEMORY` that copy stays in memory rather than being written to a temporary
//! file, which took a fifth of the processor's CPU (BENCHMARKS.md). It is not needed after a
//! crash: the WAL, not the sub-journal, is what recovery reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ports::PortError;

/// More than this many writes in one commit only makes the first callers wait longer.
const MAX_GROUP: usize = 512;
const WRITE_BACKLOG: usize = 8192;
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Reads at once; more wait for a connection rather than open one each.
const MAX_READERS: usize = 8;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs one write; says whether it succeeded and what to tell the caller after the commit.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

pub struct SqliteDb {
    component: &'static str,
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    failed_commits: Arc<AtomicU64>,
}

impl SqliteDb {
    /// Opens (or creates) the database with `schema`, whose version is `version`. A file written
    /// with another version of the schema is refused with a message saying so, rather than
    /// read wrongly.
    pub fn open(
        path: &Path,
        component: &'static str,
        schema: &str,
        version: u32,
    ) -> Result<Self, PortError> {
        Self::open_then(path, component, schema, version, |_| Ok(()))
    }

    /// [`Self::open`], then `migrate` in the schema's transaction, before any other write:
    /// for rows a table added in this version needs from rows written before it.
    pub fn open_then(
        path: &Path,
        component: &'static str,
        schema: &str,
        version: u32,
        migrate: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, PortError> {
        let unavailable = |error: rusqlite::Error| PortError::unavailable(component, error);
        let connection = Connection::open(path).map_err(unavailable)?;
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA temp_store = MEMORY;
                 PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
            ))
            .map_err(unavailable)?;
        check_schema_version(&connection, path, component, version)?;
        connection
            .execute_batch(&format!(
                "BEGIN; {schema}; PRAGMA user_version = {version};"
            ))
            .map_err(unavailable)?;
        if let Err(error) = migrate(&connection).and_then(|()| connection.execute_batch("COMMIT")) {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(unavailable(error));
        }
        let (writer, jobs) = mpsc::channel(WRITE_BACKLOG);
        let failed_commits = Arc::new(AtomicU64::new(0));
        let counted_failures = failed_commits.clone();
        thread::Builder::new()
            .name(format!("{component}-writer"))
            .spawn(move || write_loop(connection, jobs, &counted_failures))
            .map_err(|error| PortError::unavailable(component, error))?;
        Ok(Self {
            component,
            path: path.to_owned(),
            writer,
            readers: Mutex::new(Vec::new()),
            reader_slots: Semaphore::new(MAX_READERS),
            failed_commits,
        })
    }

    /// How many group commits have failed (and were rolled back) so far. A write job that keeps
    /// state beside the database (a cache) reads it on the writer thread, where it is exact,
    /// to learn that writes it saw run were undone after all.
    pub fn failed_commits(&self) -> Arc<AtomicU64> {
        self.failed_commits.clone()
    }

    /// Runs `op` on the writer thread and returns once its group has committed.
    pub async fn write<R, F>(&self, op: F) -> Result<R, PortError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = op(connection);
            let succeeded = result.is_ok();
            let completion: Completion = Box::new(move |commit| {
                let outcome = match (commit, result) {
                    (Ok(()), Ok(value)) => Ok(value),
                    (Err(commit_error), _) => Err(commit_error),
                    (_, Err(op_error)) => Err(op_error.to_string()),
                };
                // The caller may have given up waiting; the write stands all the same.
                let _ = reply.send(outcome);
            });
            (succeeded, completion)
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| PortError::unavailable(self.component, "the writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| PortError::unavailable(self.component, "the write was not committed"))?
            .map_err(|error| PortError::unavailable(self.component, error))
    }

    /// Runs `op` on a read-only connection off the async threads. WAL lets reads run alongside
    /// the writer.
    pub async fn read<R, F>(&self, op: F) -> Result<R, PortError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let component = self.component;
        let _slot = self
            .reader_slots
            .acquire()
            .await
            .map_err(|_| PortError::unavailable(component, "closed"))?;
        let connection = self.take_reader()?;
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let result = op(&connection);
            (connection, result)
        })
        .await
        .map_err(|error| PortError::unavailable(component, error))?;
        self.give_back_reader(connection);
        result.map_err(|error| PortError::unavailable(component, error))
    }

    fn take_reader(&self) -> Result<Connection, PortError> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        if let Some(connection) = pooled {
            return Ok(connection);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| PortError::unavailable(self.component, error))?;
        connection
            .busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(|error| PortError::unavailable(self.component, error))?;
        Ok(connection)
    }

    fn give_back_reader(&self, connection: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(connection);
        }
    }
}

/// An empty file takes any version; a file with tables must have been written with this one.
fn check_schema_version(
    connection: &Connection,
    path: &Path,
    component: &'static str,
    version: u32,
) -> Result<(), PortError> {
    let read = || -> rusqlite::Result<(u32, u32)> {
        let found: u32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let tables: u32 = connection.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        Ok((found, tables))
    };
    let (found, tables) = read().map_err(|error| PortError::unavailable(component, error))?;
    if tables > 0 && found != version {
        return Err(PortError::rejected(
            component,
            format!(
                "{} holds schema version {found}, this build uses {version}: move the data \
                 directory aside (or drain it with the older build) and start again",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn write_loop(connection: Connection, mut jobs: mpsc::Receiver<Job>, failed_commits: &AtomicU64) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if !commit_group(&connection, group) {
            failed_commits.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Runs and commits one group; false when its writes were rolled back by a failed commit.
fn commit_group(connection: &Connection, group: Vec<Job>) -> bool {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs unrun tells each caller its write was not committed.
        tracing::warn!(%error, writes = group.len(), "could not begin a write transaction");
        return true;
    }
    let mut completions = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = connection.execute_batch("SAVEPOINT job");
        let (succeeded, completion) = job(connection);
        let undo = if succeeded {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        let closed = savepoint.and_then(|()| connection.execute_batch(undo));
        completions.push((completion, closed.map_err(|error| error.to_string())));
    }
    let commit = connection
        .execute_batch("COMMIT")
        .map_err(|error| error.to_string());
    let committed = commit.is_ok();
    if !committed {
        let _ = connection.execute_batch("ROLLBACK");
    }
    for (completion, closed) in completions {
        completion(commit.clone().and(closed));
    }
    committed
}

/// Milliseconds since the Unix epoch, the time unit of the embedded tables.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Lets JSON (de)serialisation errors travel inside a rusqlite result.
pub fn json_error(error: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(error))
}
