//! The embedded queue: SQS's semantics on a SQLite table. Sends are durable when they return
//! (group commit); receiving leases a message for a visibility timeout and counts the receive;
//! a message received `max_receives` times without being acked moves to the dead letters.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::sqlite::{SqliteDb, now_millis};
use crate::ports::{
    Backlog, Consumer, DeadLetter, DeadLetters, OutgoingMessage, PortError, Producer, QueueDepth,
    ReceivedMessage, Redrive,
};

const COMPONENT: &str = "queue";

/// Version 1 was the first release, before the version was recorded.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at, id);
CREATE TABLE IF NOT EXISTS probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    reason        TEXT    NOT NULL,
    dead_at       INTEGER NOT NULL
);
";

#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// How long a received message stays invisible to other receivers.
    pub visibility_timeout: Duration,
    /// Receives after which an unacked message is dead-lettered (SQS's `maxReceiveCount`).
    pub max_receives: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 20,
        }
    }
}

pub struct SqliteQueue {
    db: SqliteDb,
    settings: QueueSettings,
    /// Wakes receivers in this process when a send commits, so they need not poll.
    arrivals: Arc<Notify>,
}

impl SqliteQueue {
    pub fn open(path: &Path, settings: QueueSettings) -> Result<Self, PortError> {
        Ok(Self {
            db: SqliteDb::open(path, COMPONENT, SCHEMA, SCHEMA_VERSION)?,
            settings,
            arrivals: Arc::new(Notify::new()),
        })
    }

    async fn lease(&self, max: usize) -> Result<Vec<ReceivedMessage>, PortError> {
        let QueueSettings {
            visibility_timeout,
            max_receives,
        } = self.settings;
        let visibility_ms = i64::try_from(visibility_timeout.as_millis()).unwrap_or(i64::MAX);
        self.db
            .write(move |connection| {
                let now = now_millis();
                let mut leased = Vec::with_capacity(max);
                for candidate in visible_messages(connection, now, max)? {
                    if candidate.receive_count >= max_receives {
                        dead_letter_exhausted(connection, &candidate, now)?;
                        continue;
                    }
                    connection
                        .prepare_cached(
                            "UPDATE messages SET visible_at = ?1, receive_count = ?2 WHERE id = ?3",
                        )?
                        .execute(params![
                            now.saturating_add(visibility_ms),
                            candidate.receive_count + 1,
                            candidate.id
                        ])?;
                    leased.push(ReceivedMessage {
                        id: candidate.id.to_string(),
                        receipt: format!("{}:{}", candidate.id, candidate.receive_count + 1),
                        body: candidate.body,
                        receive_count: candidate.receive_count + 1,
                        sent_at: from_millis(candidate.sent_at),
                    });
                }
                Ok(leased)
            })
            .await
    }
}

struct Candidate {
    id: i64,
    body: String,
    sent_at: i64,
    receive_count: u32,
    last_error: Option<String>,
}

/// The next messages whose lease (if any) has run out, oldest first. Reads only as far into
/// the index as it needs, however long the queue is.
fn visible_messages(
    connection: &Connection,
    now: i64,
    max: usize,
) -> rusqlite::Result<Vec<Candidate>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, body, sent_at, receive_count, last_error FROM messages
          WHERE visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![now, max as i64], |row| {
        Ok(Candidate {
            id: row.get(0)?,
            body: row.get(1)?,
            sent_at: row.get(2)?,
            receive_count: row.get(3)?,
            last_error: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// A message already received `max_receives` times whose last lease ran out goes to the dead
/// letters instead of out again, as SQS's redrive policy does.
fn dead_letter_exhausted(
    connection: &Connection,
    message: &Candidate,
    now: i64,
) -> rusqlite::Result<()> {
    let reason = format!(
        "{} (received {} times)",
        message.last_error.as_deref().unwrap_or("not acknowledged"),
        message.receive_count
    );
    move_to_dead_letters(connection, message.id, message.receive_count, &reason, now)
}

/// Moves one lease of a message to the dead letters; a no-op if that lease is no longer current.
fn move_to_dead_letters(
    connection: &Connection,
    id: i64,
    receive_count: u32,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let moved = connection
        .prepare_cached(
            "INSERT OR REPLACE INTO dead_letters (id, body, sent_at, receive_count, reason, dead_at)
             SELECT id, body, sent_at, receive_count, ?1, ?2
               FROM messages WHERE id = ?3 AND receive_count = ?4",
        )?
        .execute(params![reason, now, id, receive_count])?;
    if moved > 0 {
        connection
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute(params![id])?;
    }
    Ok(())
}

fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// A receipt is `id:receive_count`: it names one lease of one message.
fn parse_receipt(receipt: &str) -> Result<(i64, u32), PortError> {
    receipt
        .split_once(':')
        .and_then(|(id, count)| Some((id.parse().ok()?, count.parse().ok()?)))
        .ok_or_else(|| PortError::rejected(COMPONENT, format!("{receipt:?} is not a receipt")))
}

fn insert(connection: &Connection, body: &str, now: i64) -> rusqlite::Result<String> {
    let id: i64 = connection
        .prepare_cached(
            "INSERT INTO messages (body, sent_at, visible_at) VALUES (?1, ?2, ?2) RETURNING id",
        )?
        .query_row(params![body, now], |row| row.get(0))?;
    Ok(id.to_string())
}

#[async_trait]
impl Producer for SqliteQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError> {
        let id = self
            .db
            .write(move |connection| insert(connection, &message.body, now_millis()))
            .await?;
        self.arrivals.notify_waiters();
        Ok(id)
    }

    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        let ids = self
            .db
            .write(move |connection| {
                let now = now_millis();
                messages
                    .iter()
                    .map(|message| insert(connection, &message.body, now))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        self.arrivals.notify_waiters();
        Ok(ids.into_iter().map(Ok).collect())
    }

    async fn probe(&self) -> Result<(), PortError> {
        // A committed write, as a send is: it fails where a send would (a full disk, a
        // read-only file), and its one row never grows.
        self.db
            .write(|connection| {
                connection
                    .prepare_cached("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)")?
                    .execute(params![now_millis()])?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl Consumer for SqliteQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send that commits in between still wakes us.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let messages = self.lease(max).await?;
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
            tokio::select! {
                () = arrival => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        let leases = receipts
            .iter()
            .map(|receipt| parse_receipt(receipt))
            .collect::<Result<Vec<_>, _>>()?;
        self.db
            .write(move |connection| {
                let mut delete = connection
                    .prepare_cached("DELETE FROM messages WHERE id = ?1 AND receive_count = ?2")?;
                for (id, receive_count) in leases {
                    delete.execute(params![id, receive_count])?;
                }
                Ok(())
            })
            .await
    }

    async fn retry_later(
        &self,
        receipt: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), PortError> {
        let (id, receive_count) = parse_receipt(receipt)?;
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let error = error.to_owned();
        self.db
            .write(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE messages SET visible_at = ?1, last_error = ?2
                          WHERE id = ?3 AND receive_count = ?4",
                    )?
                    .execute(params![
                        now_millis().saturating_add(delay_ms),
                        error,
                        id,
                        receive_count
                    ])?;
                Ok(())
            })
            .await
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), PortError> {
        let (id, receive_count) = parse_receipt(&message.receipt)?;
        let reason = reason.to_owned();
        self.db
            .write(move |connection| {
                move_to_dead_letters(connection, id, receive_count, &reason, now_millis())
            })
            .await
    }
}

#[async_trait]
impl Backlog for SqliteQueue {
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.db
            .read(|connection| {
                let count = |table: &str| -> rusqlite::Result<u64> {
                    connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                        row.get(0)
                    })
                };
                Ok(QueueDepth {
                    messages: count("messages")?,
                    dead_letters: count("dead_letters")?,
                })
            })
            .await
    }
}

#[async_trait]
impl DeadLetters for SqliteQueue {
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, PortError> {
        self.db
            .read(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT id, body, reason FROM dead_letters ORDER BY dead_at, id LIMIT ?1",
                )?;
                let rows = statement.query_map(params![max as i64], |row| {
                    Ok(DeadLetter {
                        id: row.get::<_, i64>(0)?.to_string(),
                        body: row.get(1)?,
                        reason: row.get(2)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    async fn redrive(&self, which: &Redrive) -> Result<usize, PortError> {
        let ids: Option<Vec<i64>> = match which {
            Redrive::All => None,
            // An id that is not a number names no dead letter here.
            Redrive::Ids(ids) => Some(ids.iter().filter_map(|id| id.parse().ok()).collect()),
        };
        let moved = self
            .db
            .write(move |connection| {
                // Back under its own id and first send time, with a fresh receive count.
                let mut put_back = connection.prepare_cached(
                    "INSERT INTO messages (id, body, sent_at, visible_at, receive_count)
                     SELECT id, body, sent_at, ?1, 0 FROM dead_letters WHERE id = ?2",
                )?;
                let mut remove =
                    connection.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                let ids = match ids {
                    Some(ids) => ids,
                    None => connection
                        .prepare_cached("SELECT id FROM dead_letters")?
                        .query_map([], |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<i64>>>()?,
                };
                let now = now_millis();
                let mut moved = 0;
                for id in ids {
                    if put_back.execute(params![now, id])? == 1 {
                        remove.execute(params![id])?;
                        moved += 1;
                    }
                }
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.arrivals.notify_waiters();
        }
        Ok(moved)
    }
}
