//! How long a message that failed for a transient reason waits before its next try.
//!
//! The wait starts at 1 s and doubles with each receive up to a cap (15 minutes unless set), so
//! a blip costs seconds and an outage costs few receives. With the queue's maximum receives
//! (`QUEUE_MAX_RECEIVES`, SQS's `maxReceiveCount`; 20 by default) that rides out an outage of
//! [`RetryPolicy::longest_outage`]: about 2 h 32 min with the defaults, far more than the 30
//! minutes a DynamoDB or SNS outage must not lose, and far less than the queue's retention.

use std::time::Duration;

/// SQS's longest visibility timeout; a delay cannot be longer.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(15 * 60);
const FIRST_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `receive_count`-th receive failed. A hint from the failure (a claim
    /// that expires later, a breaker that opens for longer) lengthens it.
    pub fn delay(&self, receive_count: u32, hint: Option<Duration>) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(30);
        let grown = FIRST_DELAY.saturating_mul(1 << doublings);
        grown
            .min(self.max_delay)
            .max(hint.unwrap_or_default())
            .min(MAX_VISIBILITY)
    }

    /// How long a transient failure can last without a message being dead-lettered, when the
    /// queue dead-letters after `max_receives` receives: the message's last receive comes this
    /// long after its first.
    pub fn longest_outage(&self, max_receives: u32) -> Duration {
        (1..max_receives).map(|count| self.delay(count, None)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=12).map(|n| policy.delay(n, None).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        assert_eq!(policy.delay(1000, None), DEFAULT_MAX_DELAY);
    }

    #[test]
    fn a_hint_lengthens_the_wait_but_never_past_sqs_limit() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(45))),
            Duration::from_secs(45)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(100_000))),
            MAX_VISIBILITY
        );
    }

    #[test]
    fn the_defaults_ride_out_a_30_minute_outage_with_room_to_spare() {
        let policy = RetryPolicy::default();
        let ridden_out = policy.longest_outage(20);
        // 1+2+…+512 = 1023 s, then nine waits of 900 s.
        assert_eq!(ridden_out, Duration::from_secs(1023 + 9 * 900));
        assert!(ridden_out > Duration::from_secs(30 * 60) * 4);
        // The old schedule (5 receives) gave up after 15 s.
        assert_eq!(policy.longest_outage(5), Duration::from_secs(15));
    }
}
