//! Time windows counted in buckets of a tenth of their length.
//!
//! A window of 10 minutes is the bucket holding the transaction's timestamp and the 9 before
//! it: it reaches between 9 and 10 minutes back. Buckets keep the state per key bounded (ten
//! counters), and a counter is written once per transaction, never rewritten as time passes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

pub const BUCKETS_PER_WINDOW: i64 = 10;
/// The shortest window: buckets of at least a second.
pub const MIN_WINDOW_SECONDS: i64 = 10;
/// The longest window.
pub const MAX_WINDOW_SECONDS: i64 = 31 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    seconds: i64,
    text_unit: (i64, char),
}

impl Window {
    pub fn length(&self) -> Duration {
        Duration::seconds(self.seconds)
    }

    /// A tenth of the window: how far a bucket reaches.
    pub fn bucket_length(&self) -> Duration {
        Duration::seconds(self.bucket_seconds())
    }

    fn bucket_seconds(&self) -> i64 {
        self.seconds / BUCKETS_PER_WINDOW
    }

    /// The start (Unix seconds) of the bucket that holds `timestamp`.
    pub fn bucket_of(&self, timestamp: DateTime<Utc>) -> i64 {
        let size = self.bucket_seconds();
        timestamp.timestamp().div_euclid(size) * size
    }

    /// The window's buckets, oldest first, ending with `last`.
    pub fn buckets_ending_at(&self, last: i64) -> Vec<i64> {
        let size = self.bucket_seconds();
        (0..BUCKETS_PER_WINDOW)
            .rev()
            .map(|back| last - back * size)
            .collect()
    }

    /// The oldest of the window's buckets that ends with `last`.
    pub fn first_bucket_ending_at(&self, last: i64) -> i64 {
        last - (BUCKETS_PER_WINDOW - 1) * self.bucket_seconds()
    }

    /// When no window that includes this bucket can still be asked for, by timestamps up to
    /// the bucket's end plus the window.
    pub fn bucket_expiry(&self, bucket: i64) -> DateTime<Utc> {
        let end = bucket + self.bucket_seconds() + self.seconds;
        DateTime::from_timestamp(end, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.text_unit.0, self.text_unit.1)
    }
}

/// `30s`, `10m`, `1h`, `7d`: a whole number and a unit, 10 s to 31 days, a multiple of 10 s
/// (so that each of the ten buckets is a whole number of seconds).
impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let shape = || format!("{text:?} is not a duration such as 30s, 10m, 1h or 7d");
        let unit = text.chars().last().ok_or_else(shape)?;
        let number: i64 = text[..text.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| shape())?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(shape()),
        };
        let seconds = number.checked_mul(scale).ok_or_else(shape)?;
        if !(MIN_WINDOW_SECONDS..=MAX_WINDOW_SECONDS).contains(&seconds) {
            return Err(format!("{text:?} must be from 10s to 31d"));
        }
        if seconds % BUCKETS_PER_WINDOW != 0 {
            return Err(format!("{text:?} must be a multiple of 10s"));
        }
        Ok(Self {
            seconds,
            text_unit: (number, unit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_their_units_and_refuse_the_rest() {
        assert_eq!("10m".parse::<Window>().map(|w| w.seconds), Ok(600));
        assert_eq!("1d".parse::<Window>().map(|w| w.seconds), Ok(86_400));
        for bad in [
            "", "m", "10", "10 m", "1.5h", "-1h", "5s", "32d", "15s", "1w",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_is_ten_buckets_ending_with_the_transactions_own() {
        let window: Window = "10m".parse().expect("valid");
        let at = DateTime::parse_from_rfc3339("2024-08-09T12:34:56Z")
            .expect("valid")
            .with_timezone(&Utc);
        let bucket = window.bucket_of(at);
        assert_eq!(bucket % 60, 0);
        assert!(bucket <= at.timestamp() && at.timestamp() < bucket + 60);
        let buckets = window.buckets_ending_at(bucket);
        assert_eq!(buckets.len(), 10);
        assert_eq!(buckets[0], bucket - 9 * 60);
        assert_eq!(buckets[9], bucket);
        assert_eq!(window.bucket_expiry(bucket).timestamp(), bucket + 60 + 600);
    }
}
