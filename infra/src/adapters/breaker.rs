//! A circuit breaker in front of a queue, for the API: once sends keep failing or hanging, later
//! ones fail at once (with the expected wait) instead of each waiting out the timeout and
//! holding a connection open; after a cool-down one trial send probes for recovery.
//!
//! Closed: sends go through, each bounded by the timeout; `FAILURES_TO_OPEN` transient failures
//! in a row open it. Open: sends fail at once with `retry_after` = the rest of the cool-down.
//! When the cool-down is over the next send is the trial (half open): success closes the
//! breaker, failure opens it again for twice as long, up to `MAX_COOL_DOWN`.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use std::sync::Arc;

use crate::ports::{OutgoingMessage, PortError, Producer};

pub const FAILURES_TO_OPEN: u32 = 3;
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        cool_down: Duration,
    },
    /// The trial send is out; others fail fast until it returns.
    Trial {
        cool_down: Duration,
    },
}

/// Wraps only the sending side: the API is the one caller that needs it.
pub struct BreakerQueue {
    inner: Arc<dyn Producer>,
    /// Longest wait for one send.
    timeout: Duration,
    state: Mutex<State>,
}

/// What the breaker lets a caller do now.
enum Admission {
    Go,
    /// The trial send: its outcome decides the state.
    Trial(Duration),
    Refuse(Duration),
}

impl BreakerQueue {
    pub fn new(inner: Arc<dyn Producer>, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn admit(&self) -> Admission {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until, cool_down } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Trial { cool_down };
                    Admission::Trial(cool_down)
                } else {
                    Admission::Refuse(until - now)
                }
            }
            // Another caller's trial is out: expect an answer within the timeout.
            State::Trial { .. } => Admission::Refuse(self.timeout.min(FIRST_COOL_DOWN)),
        }
    }

    fn record(&self, admission: &Admission, succeeded: bool) -> Option<Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (failures, cool_down) = match (*state, admission) {
            (_, _) if succeeded => {
                *state = State::Closed { failures: 0 };
                return None;
            }
            (State::Closed { failures }, _) => (failures + 1, FIRST_COOL_DOWN),
            (_, Admission::Trial(cool_down)) => {
                (FAILURES_TO_OPEN, (*cool_down * 2).min(MAX_COOL_DOWN))
            }
            // A send admitted while closed that failed after the breaker opened: already open.
            _ => return None,
        };
        if failures >= FAILURES_TO_OPEN {
            *state = State::Open {
                until: Instant::now() + cool_down,
                cool_down,
            };
            tracing::warn!(
                ?cool_down,
                "the queue keeps failing: failing sends fast until a trial succeeds"
            );
            Some(cool_down)
        } else {
            *state = State::Closed { failures };
            None
        }
    }

    /// A trial whose caller went away without an answer: the next caller may try at once.
    fn abandon(&self, admission: &Admission) {
        let Admission::Trial(cool_down) = admission else {
            return;
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if matches!(*state, State::Trial { .. }) {
            *state = State::Open {
                until: Instant::now(),
                cool_down: *cool_down,
            };
        }
    }

    /// Runs one send-like call through the breaker.
    async fn guarded<T, F>(&self, call: F) -> Result<T, PortError>
    where
        F: std::future::Future<Output = Result<T, PortError>>,
    {
        let admission = self.admit();
        if let Admission::Refuse(wait) = admission {
            return Err(PortError::unavailable(
                "queue",
                "failing fast: the queue failed repeatedly and has not recovered yet",
            )
            .retry_after(wait));
        }
        // A caller that stops waiting (a client gone, a request's own deadline) drops this
        // future: a trial it carried must not stay out for good, refusing every send after.
        let mut trial = TrialGuard {
            breaker: self,
            admission: &admission,
            finished: false,
        };
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(PortError::unavailable(
                    "queue",
                    format!("no answer within {:?}", self.timeout),
                ))
            });
        trial.finished = true;
        // A permanent refusal is about that message, not about the queue's health.
        let succeeded = !matches!(result, Err(PortError::Unavailable { .. }));
        match (self.record(&admission, succeeded), result) {
            (Some(cool_down), Err(error)) => Err(error.retry_after(cool_down)),
            (_, result) => result,
        }
    }
}

/// Gives a trial back if the call carrying it is dropped before it finishes.
struct TrialGuard<'a> {
    breaker: &'a BreakerQueue,
    admission: &'a Admission,
    finished: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker.abandon(self.admission);
        }
    }
}

#[async_trait]
impl Producer for BreakerQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, PortError> {
        self.guarded(self.inner.send(message)).await
    }

    async fn send_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Result<String, PortError>>, PortError> {
        self.guarded(self.inner.send_batch(messages)).await
    }

    async fn probe(&self) -> Result<(), PortError> {
        self.guarded(self.inner.probe()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A queue whose sends hang while `down`, and counts the sends that reached it.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        reached: AtomicU32,
    }

    #[async_trait]
    impl Producer for Flaky {
        async fn send(&self, _: OutgoingMessage) -> Result<String, PortError> {
            self.reached.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok("id".to_owned())
        }
        async fn send_batch(
            &self,
            _: Vec<OutgoingMessage>,
        ) -> Result<Vec<Result<String, PortError>>, PortError> {
            Ok(Vec::new())
        }
        async fn probe(&self) -> Result<(), PortError> {
            Ok(())
        }
    }

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            body: "{}".to_owned(),
            attributes: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_repeated_timeouts_fails_fast_then_recovers_through_a_trial() {
        let flaky = Arc::new(Flaky::default());
        flaky.down.store(true, Ordering::SeqCst);
        let breaker = BreakerQueue::new(flaky.clone(), Duration::from_secs(5));
        for _ in 0..FAILURES_TO_OPEN {
            let started = Instant::now();
            assert!(breaker.send(message()).await.is_err());
            assert_eq!(
                started.elapsed(),
                Duration::from_secs(5),
                "waited the timeout"
            );
        }
        let started = Instant::now();
        let fast = breaker.send(message()).await.expect_err("open");
        assert_eq!(started.elapsed(), Duration::ZERO, "failed fast");
        assert_eq!(fast.retry_hint(), Some(FIRST_COOL_DOWN));
        assert_eq!(flaky.reached.load(Ordering::SeqCst), FAILURES_TO_OPEN);
        // The trial after the cool-down fails: open again, for twice as long.
        tokio::time::advance(FIRST_COOL_DOWN).await;
        let trial = breaker.send(message()).await.expect_err("trial fails");
        assert_eq!(trial.retry_hint(), Some(FIRST_COOL_DOWN * 2));
        // Recovered: the next trial succeeds and the breaker closes.
        flaky.down.store(false, Ordering::SeqCst);
        tokio::time::advance(FIRST_COOL_DOWN * 2).await;
        assert!(breaker.send(message()).await.is_ok());
        assert!(breaker.send(message()).await.is_ok());
    }

    /// A trial whose caller stops waiting (dropped, as a request cut by its own deadline or a
    /// client gone) is given back: the breaker does not refuse every send after it for good.
    #[tokio::test(start_paused = true)]
    async fn a_trial_dropped_by_its_caller_is_given_back() {
        let flaky = Arc::new(Flaky::default());
        flaky.down.store(true, Ordering::SeqCst);
        let breaker = BreakerQueue::new(flaky.clone(), Duration::from_secs(5));
        for _ in 0..FAILURES_TO_OPEN {
            assert!(breaker.send(message()).await.is_err());
        }
        tokio::time::advance(FIRST_COOL_DOWN).await;
        let dropped = tokio::time::timeout(Duration::from_secs(1), breaker.send(message())).await;
        assert!(dropped.is_err(), "the caller gave up on its trial");
        flaky.down.store(false, Ordering::SeqCst);
        assert!(
            breaker.send(message()).await.is_ok(),
            "the next send is a trial of its own, not refused"
        );
    }
}
