//! What travels on the queue. The API wraps each accepted transaction in an [`Envelope`]; trusted
//! producers may also put a bare transaction on the queue, which belongs to the shop `default`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::parse::{TransactionError, parse_transaction};
use super::transaction::{ShopId, Transaction};

pub const ENVELOPE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub shop_id: ShopId,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub accepted_at: DateTime<Utc>,
    pub request_id: String,
    pub transaction: Transaction,
}

impl Envelope {
    pub fn new(
        shop_id: ShopId,
        transaction: Transaction,
        accepted_at: DateTime<Utc>,
        request_id: String,
    ) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            shop_id,
            accepted_at,
            request_id,
            transaction,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .expect("an envelope is plain data with string keys, which always serialises")
    }
}

/// A queue message as the processor first sees it, before anything is trusted.
#[derive(Debug, Deserialize)]
struct RawEnvelope {
    version: u32,
    shop_id: String,
    accepted_at: DateTime<Utc>,
    request_id: String,
    transaction: Box<RawValue>,
}

/// Why a queue message can never become a stored transaction. Always permanent: retrying the
/// same bytes gives the same answer, so such a message goes to the dead-letter queue at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u32),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
}

impl Envelope {
    /// Decodes and re-validates a queue message body, as the processor first sees it. A bare
    /// transaction (no envelope) from a trusted producer belongs to the shop `default`; then
    /// `sent_at` (when the queue got the message) stands in for `accepted_at` and
    /// `fallback_request_id` for the request id.
    pub fn decode(
        body: &str,
        sent_at: DateTime<Utc>,
        fallback_request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, EnvelopeError> {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body)
            .map_err(|error| EnvelopeError::NotJson(error.to_string()))?;
        if !value.contains_key("version") {
            let transaction = parse_transaction(body.as_bytes(), now)?;
            return Ok(Self::new(
                ShopId::default_shop(),
                transaction,
                sent_at,
                fallback_request_id.to_owned(),
            ));
        }
        let raw: RawEnvelope = serde_json::from_str(body)
            .map_err(|error| EnvelopeError::Malformed(error.to_string()))?;
        if raw.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(raw.version));
        }
        let shop_id = ShopId::parse(&raw.shop_id).map_err(EnvelopeError::Malformed)?;
        // Re-validated against the time it was accepted, so that a message that waited in the
        // queue is judged as the API judged it.
        let transaction = parse_transaction(raw.transaction.get().as_bytes(), raw.accepted_at)?;
        Ok(Self::new(
            shop_id,
            transaction,
            raw.accepted_at,
            raw.request_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL_TEST_MESSAGE: &str =
        r#"{"transaction_id": 12345, "amount": 100, "timestamp": "2024-08-09T12:34:56Z"}"#;

    #[test]
    fn a_bare_transaction_belongs_to_the_default_shop() {
        let now = Utc::now();
        let envelope = Envelope::decode(ORIGINAL_TEST_MESSAGE, now, "msg-1", now)
            .expect("the original test message is valid");
        assert_eq!(envelope.shop_id.as_str(), "default");
        assert_eq!(envelope.transaction.transaction_id, "12345");
        assert_eq!(envelope.request_id, "msg-1");
        assert_eq!(envelope.accepted_at, now);
    }

    #[test]
    fn an_envelope_round_trips_through_its_json() {
        let now = Utc::now();
        let transaction = parse_transaction(ORIGINAL_TEST_MESSAGE.as_bytes(), now).expect("valid");
        let shop = ShopId::parse("shop-a").expect("valid shop");
        let envelope = Envelope::new(shop, transaction, now, "req-1".to_owned());
        let decoded = Envelope::decode(&envelope.to_json(), now, "unused", now)
            .expect("an envelope the API wrote decodes");
        assert_eq!(decoded, envelope);
    }

    #[test]
    fn broken_messages_are_permanent_errors() {
        let now = Utc::now();
        let decode = |body: &str| Envelope::decode(body, now, "m", now);
        assert!(matches!(decode("not json"), Err(EnvelopeError::NotJson(_))));
        assert!(matches!(decode("[1,2]"), Err(EnvelopeError::NotJson(_))));
        assert!(matches!(
            decode(
                r#"{"version":2,"shop_id":"a","accepted_at":"2024-08-09T12:34:56Z","request_id":"r","transaction":{}}"#
            ),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            decode(
                r#"{"version":1,"shop_id":"bad shop","accepted_at":"2024-08-09T12:34:56Z","request_id":"r","transaction":{}}"#
            ),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            decode(r#"{"transaction_id":"x","amount":-1,"timestamp":"2024-08-09T12:34:56Z"}"#),
            Err(EnvelopeError::Transaction(TransactionError::Invalid { .. }))
        ));
    }
}
