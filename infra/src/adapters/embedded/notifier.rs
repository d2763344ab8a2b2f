//! The embedded notifier: each alert is a row (at most one per transaction and rule, so a
//! repeated publish cannot duplicate it) and one structured log line.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::params;

use super::sqlite::{SqliteDb, json_error, now_millis};
use crate::domain::alert::ALERT_SUBJECT;
use crate::domain::{Alert, ShopId};
use crate::ports::{Notifier, PortError};

const COMPONENT: &str = "notifier";

/// Version 1 was the first release, before the version was recorded.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    shop_id        TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    attributes     TEXT    NOT NULL,
    published_at   INTEGER NOT NULL,
    PRIMARY KEY (shop_id, transaction_id, rule)
);
";

/// An alert as the embedded notifier recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedAlert {
    pub transaction_id: String,
    pub rule: String,
    pub subject: String,
    pub message: serde_json::Value,
    pub attributes: serde_json::Value,
}

pub struct SqliteNotifier {
    db: SqliteDb,
}

impl SqliteNotifier {
    pub fn open(path: &Path) -> Result<Self, PortError> {
        Ok(Self {
            db: SqliteDb::open(path, COMPONENT, SCHEMA, SCHEMA_VERSION)?,
        })
    }

    /// The alerts published for one shop, oldest first.
    pub async fn published(&self, shop_id: &ShopId) -> Result<Vec<PublishedAlert>, PortError> {
        let shop_id = shop_id.as_str().to_owned();
        self.db
            .read(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT transaction_id, rule, subject, message, attributes FROM alerts
                      WHERE shop_id = ?1 ORDER BY published_at, transaction_id",
                )?;
                let rows = statement.query_map(params![shop_id], |row| {
                    let message: String = row.get(3)?;
                    let attributes: String = row.get(4)?;
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, message, attributes))
                })?;
                rows.map(|row| {
                    let (transaction_id, rule, subject, message, attributes) = row?;
                    Ok(PublishedAlert {
                        transaction_id,
                        rule,
                        subject,
                        message: serde_json::from_str(&message).map_err(json_error)?,
                        attributes: serde_json::from_str(&attributes).map_err(json_error)?,
                    })
                })
                .collect()
            })
            .await
    }
}

#[async_trait]
impl Notifier for SqliteNotifier {
    async fn publish(&self, alert: &Alert) -> Result<(), PortError> {
        let message = alert.message().to_string();
        let attributes =
            serde_json::to_string(&alert.attributes()).expect("string pairs always serialise");
        let shop_id = alert.shop_id.to_string();
        let transaction_id = alert.transaction.transaction_id.clone();
        let rule = alert.decision.rule.clone();
        let first_time = self
            .db
            .write(move |connection| {
                let inserted = connection
                    .prepare_cached(
                        "INSERT INTO alerts
                            (shop_id, transaction_id, rule, subject, message, attributes, published_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![shop_id, transaction_id, rule, ALERT_SUBJECT, message, attributes, now_millis()])?;
                Ok(inserted == 1)
            })
            .await?;
        if first_time {
            tracing::warn!(
                target: "alerts",
                subject = ALERT_SUBJECT,
                shop_id = %alert.shop_id,
                transaction_id = %alert.transaction.transaction_id,
                amount = %alert.transaction.amount,
                currency = %alert.transaction.currency,
                rule = %alert.decision.rule,
                reason = %alert.decision.reason,
                "transaction alert"
            );
        }
        Ok(())
    }
}
