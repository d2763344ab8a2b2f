//! Sends webhook deliveries: takes the due ones from the store, POSTs each signed event to its
//! webhook, and records the attempt; a failure is retried on the schedule, then failed.
//!
//! A destination is checked at every connection, after DNS resolution: the client resolves
//! names through [`CheckedResolver`], which refuses a name with any forbidden address, so the
//! connection goes to an address that was checked (no second lookup a rebinding DNS server
//! could answer differently); an address written in the URL is checked as it is. Redirects are
//! not followed, and at most 1 KiB of an answer is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use infra::domain::webhooks::{self, DestinationError, KEEP_DELIVERIES, signature_header};
use infra::ports::{AttemptOutcome, DeliveryAttempt, DueDelivery, Take, WebhookOutbox};
use infra::telemetry::WEBHOOK_DELIVERIES;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries sent at once.
const CONCURRENCY: usize = 16;
/// Deliveries of one webhook sent at once: half the slots, so a receiver that answers slowly
/// (or never, until the timeout) leaves the other half to every other webhook.
const PER_WEBHOOK: usize = CONCURRENCY / 2;
/// After a short take, the slots that must free before the store is asked again.
const REFILL: usize = 4;
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// A receiver's answer is read this far, no further.
const MAX_ANSWER_BYTES: usize = 1024;
const IDLE_WAIT: Duration = Duration::from_millis(250);
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// An attempt without an answer in this long is a failure.
    pub timeout: Duration,
    /// The waits between attempts; after the last, the delivery is failed.
    pub retry_waits: Vec<Duration>,
    /// The API listens on loopback: loopback destinations are allowed (the development set-up).
    pub loopback_allowed: bool,
}

impl SenderSettings {
    /// How long a taken delivery is held from other senders (and from this one after a
    /// restart): longer than an attempt can take, its lookup, answer and reading included.
    fn lease(&self) -> Duration {
        DNS_TIMEOUT + self.timeout * 2 + Duration::from_secs(5)
    }
}

/// Where a webhook URL may be delivered: its addresses after DNS resolution, each allowed.
pub async fn resolve_destination(
    url: &url::Url,
    loopback_allowed: bool,
) -> Result<Vec<SocketAddr>, String> {
    webhooks::check_url(url, loopback_allowed).map_err(|error| error.to_string())?;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> =
        tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host} took over {DNS_TIMEOUT:?}"))?
            .map_err(|error| format!("{host} does not resolve: {error}"))?
            .collect();
    if addresses.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    for address in &addresses {
        webhooks::address_allowed(address.ip(), loopback_allowed)
            .map_err(|error: DestinationError| error.to_string())?;
    }
    Ok(addresses)
}

/// Resolves names for the delivery client, refusing any with a forbidden address.
struct CheckedResolver {
    loopback_allowed: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let loopback_allowed = self.loopback_allowed;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| format!("resolving {host} took over {DNS_TIMEOUT:?}"))??
                    .collect();
            for address in &addresses {
                webhooks::address_allowed(address.ip(), loopback_allowed)?;
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The one client deliveries go through: names resolved and checked by [`CheckedResolver`],
/// no redirects, a deadline per attempt; connections kept alive for the next attempt.
pub fn client(settings: &SenderSettings) -> reqwest::Client {
    reqwest::Client::builder()
        // No proxy from the environment: a proxy would resolve the name itself, past the check.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .dns_resolver(Arc::new(CheckedResolver {
            loopback_allowed: settings.loopback_allowed,
        }))
        .build()
        .expect("a client with a resolver, no redirects and a timeout builds")
}

/// Sends due deliveries until `stop`: a slot freed by one delivery is filled from the store
/// at once, so a receiver that is slow to answer holds up only its own deliveries (at most
/// [`PER_WEBHOOK`] of the [`CONCURRENCY`] slots), and a taken delivery is sent straight away,
/// well within its lease.
pub async fn run(
    outbox: Arc<dyn WebhookOutbox>,
    settings: SenderSettings,
    stop: CancellationToken,
) {
    let client = client(&settings);
    let mut sending: JoinSet<()> = JoinSet::new();
    let mut in_flight = InFlight::default();
    let mut next_prune = Instant::now();
    // Free slots that make it worth asking the store again (a lease is a commit).
    let mut ask_when_free = 1;
    while !stop.is_cancelled() {
        if Instant::now() >= next_prune {
            prune(outbox.as_ref()).await;
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        let free = CONCURRENCY - sending.len();
        if free >= ask_when_free {
            let take = Take {
                limit: free,
                per_webhook: PER_WEBHOOK,
                in_flight: &in_flight.by_webhook,
            };
            let due = outbox
                .due_deliveries(Utc::now(), settings.lease(), take)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "could not read the webhook deliveries due");
                    Vec::new()
                });
            // All it asked for: more may be due, ask again at the next free slot. Fewer:
            // nothing else is due now (or its webhooks have their share), so wait for a few
            // slots to free, or for the idle wait, before the next commit.
            ask_when_free = if due.len() == free {
                1
            } else {
                (free - due.len() + REFILL).min(CONCURRENCY)
            };
            for delivery in due {
                let webhook_id = delivery.webhook.webhook_id.clone();
                let (outbox, settings, client) = (outbox.clone(), settings.clone(), client.clone());
                let task = sending.spawn(async move {
                    deliver(outbox.as_ref(), &settings, &client, delivery).await;
                });
                in_flight.started(task.id(), webhook_id);
            }
        }
        // Wait for a slot to free, for work to come due, or for the end.
        tokio::select! {
            () = stop.cancelled() => {}
            Some(done) = sending.join_next_with_id(), if !sending.is_empty() => {
                in_flight.ended(done);
            }
            () = tokio::time::sleep(IDLE_WAIT) => ask_when_free = 1,
        }
        while let Some(done) = sending.try_join_next_with_id() {
            in_flight.ended(done);
        }
    }
}

/// The deliveries being sent, by webhook: each task's webhook, kept by task id so that a task
/// that ends any way (a panic included) gives its webhook's slot back.
#[derive(Default)]
struct InFlight {
    by_webhook: HashMap<String, usize>,
    webhook_of: HashMap<tokio::task::Id, String>,
}

impl InFlight {
    fn started(&mut self, task: tokio::task::Id, webhook_id: String) {
        *self.by_webhook.entry(webhook_id.clone()).or_default() += 1;
        self.webhook_of.insert(task, webhook_id);
    }

    fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let task = match done {
            Ok((task, ())) => task,
            Err(error) => {
                tracing::error!(%error, "a webhook delivery task failed");
                error.id()
            }
        };
        let Some(webhook_id) = self.webhook_of.remove(&task) else {
            return;
        };
        if let Some(count) = self.by_webhook.get_mut(&webhook_id) {
            *count -= 1;
            if *count == 0 {
                self.by_webhook.remove(&webhook_id);
            }
        }
    }
}

/// Forgets deliveries that ended more than [`KEEP_DELIVERIES`] ago, so the list does not grow
/// for ever.
async fn prune(outbox: &dyn WebhookOutbox) {
    let before = Utc::now() - chrono::Duration::from_std(KEEP_DELIVERIES).unwrap_or_default();
    match outbox.prune_deliveries(before).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "old webhook deliveries forgotten"),
        Err(error) => tracing::warn!(%error, "could not forget old webhook deliveries"),
    }
}

async fn deliver(
    outbox: &dyn WebhookOutbox,
    settings: &SenderSettings,
    client: &reqwest::Client,
    delivery: DueDelivery,
) {
    let (record, outcome) = attempt_once(settings, client, &delivery).await;
    if let Err(error) = outbox
        .record_attempt(&delivery.delivery_id, &record, outcome)
        .await
    {
        // The lease runs out and the delivery is tried again: at least once, as promised.
        tracing::warn!(%error, delivery = %delivery.delivery_id, "could not record a webhook attempt");
    }
}

/// One attempt of `delivery`, judged: what to record of it, and what it leaves the delivery
/// (delivered, retried after the schedule's next wait, or failed after its last). Counted in
/// `webhook_deliveries_total` by outcome.
pub async fn attempt_once(
    settings: &SenderSettings,
    client: &reqwest::Client,
    delivery: &DueDelivery,
) -> (DeliveryAttempt, AttemptOutcome) {
    let started = Instant::now();
    let at = Utc::now();
    let result = attempt(settings, client, delivery).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status, error) = match result {
        Ok(status) => (Some(status), None),
        Err(error) => (None, Some(error)),
    };
    let delivered = status.is_some_and(|status| (200..300).contains(&status));
    let attempts = delivery.attempts_made as usize + 1;
    let outcome = if delivered {
        AttemptOutcome::Delivered
    } else {
        match settings.retry_waits.get(attempts - 1) {
            Some(wait) => {
                AttemptOutcome::RetryAt(at + chrono::Duration::from_std(*wait).unwrap_or_default())
            }
            None => AttemptOutcome::Failed,
        }
    };
    if !delivered {
        tracing::info!(delivery = %delivery.delivery_id, ?status, ?error, attempts, ?outcome, "webhook delivery failed");
    }
    let counted = match outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::RetryAt(_) => "retried",
        AttemptOutcome::Failed => "failed",
    };
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => counted).increment(1);
    let record = DeliveryAttempt {
        at,
        status,
        error,
        latency_ms,
    };
    (record, outcome)
}

/// One POST of the delivery; its status code, or why there was none.
async fn attempt(
    settings: &SenderSettings,
    client: &reqwest::Client,
    delivery: &DueDelivery,
) -> Result<u16, String> {
    let url = url::Url::parse(&delivery.webhook.url).map_err(|error| error.to_string())?;
    webhooks::check_url(&url, settings.loopback_allowed).map_err(|error| error.to_string())?;
    // A name is checked by the resolver; an address in the URL is not resolved, so here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal {
        webhooks::address_allowed(ip, settings.loopback_allowed)
            .map_err(|error| error.to_string())?;
    }
    let now = Utc::now();
    let secrets: Vec<&[u8]> = delivery
        .webhook
        .live_secrets(now)
        .into_iter()
        .map(str::as_bytes)
        .collect();
    let signature = signature_header(&secrets, now.timestamp(), delivery.body.as_bytes());
    let mut response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-signature", signature)
        .header("user-agent", "ecommerce-pipeline-webhooks")
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|error| describe(&error))?;
    let status = response.status().as_u16();
    // Read a little of the answer (some receivers expect it read), never more.
    let mut read = 0;
    while read < MAX_ANSWER_BYTES {
        match tokio::time::timeout(settings.timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
    Ok(status)
}

fn describe(error: &reqwest::Error) -> String {
    // A refusal by the resolver says why (a forbidden address); other causes are generic.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<DestinationError>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}
