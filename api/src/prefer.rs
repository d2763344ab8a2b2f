//! `Prefer: wait=N` (RFC 7240) on `POST /transactions`: the client would rather wait up to N
//! seconds for the transaction to be stored, and get the stored record (with its alerts) in the
//! answer, than a 202 and a later read.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::HeaderName;
use infra::domain::{ShopId, TransactionRecord};
use infra::ports::RecordReader;
use tokio::time::Instant;

/// The longest wait the API grants, whatever is asked.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// The first pause between reads of the store, doubling up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

pub static PREFER: HeaderName = HeaderName::from_static("prefer");
pub static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The wait the request prefers, capped at [`MAX_WAIT`]; `None` without a well-formed `wait`.
/// As RFC 7240 asks, a preference the server does not understand is ignored, not refused.
pub fn requested_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(&PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            // A preference's own parameters follow a ';' and are no concern of `wait`.
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let seconds: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(Duration::from_secs(seconds).min(MAX_WAIT))
        })
}

/// The stored record of `transaction_id`, read until it is there or `until` has passed. A
/// store that fails meanwhile ends the wait without it: the transaction is accepted already,
/// and the answer is then the 202 it would have been.
pub async fn stored_by(
    store: &dyn RecordReader,
    shop_id: &ShopId,
    transaction_id: &str,
    until: Instant,
) -> Option<TransactionRecord> {
    let mut pause = FIRST_PAUSE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, store.get(shop_id, transaction_id)).await {
            Ok(Ok(Some(record))) => return Some(record),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "the store failed while a POST waited for its record");
                return None;
            }
            Err(_) => return None,
        }
        // The last pause ends at `until` itself, so the wait is the whole of what was granted.
        let now = Instant::now();
        if now >= until {
            return None;
        }
        tokio::time::sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_of(values: &[&str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&PREFER, value.parse().expect("header value"));
        }
        requested_wait(&headers)
    }

    #[test]
    fn a_wait_is_read_among_other_preferences_and_capped() {
        assert_eq!(wait_of(&["wait=5"]), Some(Duration::from_secs(5)));
        assert_eq!(
            wait_of(&["respond-async, Wait=3"]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            wait_of(&["handling=lenient", "wait=2"]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(wait_of(&["wait=\"4\""]), Some(Duration::from_secs(4)));
        assert_eq!(wait_of(&["wait=600"]), Some(MAX_WAIT));
        assert_eq!(wait_of(&["wait=0"]), Some(Duration::ZERO));
    }

    #[test]
    fn a_malformed_or_absent_wait_is_ignored() {
        for ignored in [
            &[][..],
            &["wait"],
            &["wait=-1"],
            &["wait=soon"],
            &["waits=5"],
            &["wait=1.5"],
        ] {
            assert_eq!(wait_of(ignored), None, "{ignored:?}");
        }
    }
}
