//! What handlers share. A leaf module: extractors name the parts they need (`FromRef`), so no
//! module has to know the whole state.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use axum::extract::FromRef;
use infra::adapters::breaker::BreakerQueue;
use infra::ports::{
    AlertInbox, Backlog, History, ListAdmin, ListMembership, Producer, RecordReader, ShopStore,
    WebhookRegistry,
};

use crate::auth::KeyRing;
use crate::config::OperatorShops;
use crate::cursor::CursorKey;
use crate::rules_in_force::RulesSource;

/// Holds no state a second instance would need: all of it is configuration or a client of a
/// shared service, so the API scales out (Lambda, several servers) as it is.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The queue behind its circuit breaker, which bounds each send by `ENQUEUE_TIMEOUT` and
    /// fails fast while the queue is known to be down.
    pub queue: Arc<dyn Producer>,
    pub store: Arc<dyn RecordReader>,
    pub alerts: Arc<dyn AlertInbox>,
    /// The shop's recent records, for its overview (`GET /stats`).
    pub history: Arc<dyn History>,
    pub keys: Arc<KeyRing>,
    pub cursor_key: CursorKey,
    pub readiness: Readiness,
    pub body_read_timeout: BodyReadTimeout,
    pub enqueue_timeout: EnqueueTimeout,
    pub webhooks: WebhookState,
    pub backtests: Backtests,
    pub lists: ListsState,
    /// The rules the processor runs (`GET /rules`).
    pub rules: RulesSource,
    pub pipeline: PipelineState,
}

/// The whole pipeline's figures, for the operator's shops only: the queue's depth and dead
/// letters are every shop's.
#[derive(Clone, Default)]
pub struct PipelineState {
    pub operators: Arc<OperatorShops>,
    /// Set when there is an operator's shop.
    pub backlog: Option<Arc<dyn Backlog>>,
}

/// The shops' lists where the store keeps them (the embedded store, or `WEBHOOKS_TABLE`).
#[derive(Clone, Default)]
pub struct ListsState {
    pub admin: Option<Arc<dyn ListAdmin>>,
}

/// Backtests of the shop's history: one at a time per instance, as each holds its period's
/// transactions in memory, of at most `max_transactions`.
#[derive(Clone)]
pub struct Backtests {
    /// The history, and the shops' lists for candidate `list` rules (none where lists are not
    /// set up).
    pub sources: infra::backtest::Sources,
    pub running: Arc<tokio::sync::Semaphore>,
    pub max_transactions: usize,
}

/// The shops' webhooks, where the store keeps them (the embedded store, or `WEBHOOKS_TABLE`), and
/// whether loopback destinations are allowed (the API itself listens on loopback).
#[derive(Clone, Default)]
pub struct WebhookState {
    pub registry: Option<Arc<dyn WebhookRegistry>>,
    pub loopback_allowed: bool,
}

impl AppState {
    /// The one place the state is built, by the server, the Lambda entry point and the tests:
    /// the queue goes behind its circuit breaker, which bounds each send by `enqueue_timeout`,
    /// and readiness probes through the same breaker.
    pub fn new(
        queue: Arc<dyn Producer>,
        store: Arc<dyn ShopStore>,
        keys: KeyRing,
        cursor_key: CursorKey,
        timeouts: Timeouts,
    ) -> Self {
        let queue: Arc<dyn Producer> = Arc::new(BreakerQueue::new(queue, timeouts.enqueue));
        Self {
            readiness: Readiness::new(queue.clone(), timeouts.health_cache),
            queue,
            lists: ListsState::default(),
            backtests: Backtests {
                sources: infra::backtest::Sources {
                    history: store.clone(),
                    lists: None,
                },
                running: Arc::new(tokio::sync::Semaphore::new(1)),
                max_transactions: infra::backtest::DEFAULT_MAX_TRANSACTIONS,
            },
            alerts: store.clone(),
            history: store.clone(),
            store,
            keys: Arc::new(keys),
            cursor_key,
            body_read_timeout: BodyReadTimeout(timeouts.body_read),
            enqueue_timeout: EnqueueTimeout(timeouts.enqueue),
            webhooks: WebhookState::default(),
            rules: RulesSource::default(),
            pipeline: PipelineState::default(),
        }
    }

    /// The state with the operator's shops, who see the queue's depth and dead letters.
    pub fn with_pipeline(mut self, pipeline: PipelineState) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// The state with the rules the processor runs.
    pub fn with_rules(mut self, rules: RulesSource) -> Self {
        self.rules = rules;
        self
    }

    /// The state with the shops' lists, to manage and for backtests.
    pub fn with_lists(
        mut self,
        admin: Option<Arc<dyn ListAdmin>>,
        membership: Option<Arc<dyn ListMembership>>,
    ) -> Self {
        self.lists = ListsState { admin };
        self.backtests.sources.lists = membership;
        self
    }

    /// The state with another bound on a backtest's transactions.
    pub fn with_backtest_bound(mut self, max_transactions: usize) -> Self {
        self.backtests.max_transactions = max_transactions;
        self
    }

    /// The state with the shops' webhooks.
    pub fn with_webhooks(mut self, webhooks: WebhookState) -> Self {
        self.webhooks = webhooks;
        self
    }
}

/// The deadlines the state enforces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest wait for the queue to take a transaction.
    pub enqueue: Duration,
    /// Longest wait for a request's body.
    pub body_read: Duration,
    /// How long a readiness answer is reused.
    pub health_cache: Duration,
}

/// How long a client has to send a request's body; then it gets 408.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// How long the queue may take to accept what one request sends, a whole batch with its
/// retries included; then the client gets 503.
#[derive(Debug, Clone, Copy)]
pub struct EnqueueTimeout(pub Duration);

/// When the Lambda invocation serving a request must have answered (set on Lambda only): a
/// handler that waits (`Prefer: wait`) stops short of it.
#[derive(Clone, Copy, Debug)]
pub struct InvocationDeadline(pub tokio::time::Instant);

/// The path the API is served under (an API Gateway stage such as `/prod`), for the links it
/// returns; a request extension, absent when served at the root.
#[derive(Debug, Clone, Default)]
pub struct PathPrefix(pub String);

/// Whether this node can accept a transaction now: the queue's probe, remembered for a while
/// so that frequent health checks cost one probe per period. The last failure is logged, never
/// shown to the anonymous caller.
#[derive(Clone)]
pub struct Readiness {
    queue: Arc<dyn Producer>,
    remember_for: Duration,
    last: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl Readiness {
    pub fn new(queue: Arc<dyn Producer>, remember_for: Duration) -> Self {
        Self {
            queue,
            remember_for,
            last: Arc::new(Mutex::new(None)),
        }
    }

    pub async fn check(&self) -> bool {
        // Held across the probe, so that concurrent checks wait for one probe, not start many.
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last
            && at.elapsed() < self.remember_for
        {
            return ready;
        }
        let ready = match self.queue.probe().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "not ready: the queue would not accept a transaction");
                false
            }
        };
        *last = Some((Instant::now(), ready));
        ready
    }
}
