//! `GET /stats`: the caller's shop's recent figures, for the console's overview. Per minute, the
//! transactions accepted, stored and alerted, the accepted-to-stored lag, and the open alerts
//! by rule: all from the shop's own stored records and inbox, so a shop sees only its own.
//! The queue's depth and dead letters are every shop's: only the operator's shops
//! (`OPERATOR_SHOPS`) see them here; they are also in `/metrics` and the Grafana dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{Duration, Utc};
use infra::domain::listing::MAX_PAGE_SIZE;
use infra::domain::parse::MAX_CLOCK_SKEW;
use infra::domain::rules::backtest::Period;
use infra::domain::stats::{ShopStats, summarise, window};
use infra::domain::{AlertListFilters, AlertListQuery, FieldError, ReviewStatus, ShopId};
use infra::ports::{AlertInbox, History, HistoryBound, HistoryRead};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Shop;
use crate::error::{ApiError, Problem};
use crate::listing::parse_stats_minutes;
use crate::state::PipelineState;

/// Records an overview reads at most: about 40 MB in memory (the API function has 256 MB on
/// Lambda) and 20 pages of DynamoDB's shop-time index. A shop with more in the window asks for
/// fewer minutes (the console does so by itself); beyond that, an overview of a busier shop
/// needs counts kept as the processor stores, which this does not do.
pub const STATS_MAX_TRANSACTIONS: usize = 20_000;
/// Longest wait for the queue's figures (two SQS calls on AWS).
const PIPELINE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Open alerts counted at most (ten pages of the inbox).
const MAX_OPEN_ALERTS: usize = 10 * MAX_PAGE_SIZE;
/// Transactions are read by their own timestamp, from this long before the window's first
/// minute: one stamped earlier than that is in no figure, even if it was accepted or stored in
/// the window (a shop's late sending, or a backlog stored after an outage of the processor).
const READ_BEFORE_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, Serialize, ToSchema)]
pub struct ShopOverview {
    #[serde(flatten)]
    pub stats: ShopStats,
    pub open_alerts: OpenAlerts,
    /// The whole pipeline's queue, for the operator's shops (`OPERATOR_SHOPS`) only; absent
    /// for every other shop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pipeline {
    /// Whether the queue answered in time (2 s); when it did not, the counts are absent and
    /// the shop's own figures are still answered.
    pub available: bool,
    /// Transactions on the queue, waiting or being processed, of every shop (SQS counts
    /// approximately).
    pub queue_messages: Option<u64>,
    /// Messages that could not be processed, set aside for the operator (`processor
    /// dead-letters list`).
    pub dead_letters: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAlerts {
    /// Open alerts (not yet acknowledged or resolved), by rule.
    pub by_rule: BTreeMap<String, u64>,
    /// How many were counted.
    pub counted: u64,
    /// Whether that is all of them: counting stops at 1,000.
    pub complete: bool,
}

#[utoipa::path(
    get,
    path = "/stats",
    tag = "stats",
    security(("api_key" = [])),
    params(("minutes" = Option<u32>, Query, minimum = 1, maximum = 180,
        description = "Whole minutes up to the current one (60 by default)")),
    responses(
        (status = 200, description = "The shop's figures, per minute, oldest first", body = ShopOverview,
            example = json!({"from": "2026-12-03T18:00:00Z", "to": "2026-12-03T18:02:00Z",
                "minutes": [{"minute": "2026-12-03T18:00:00Z", "accepted": 12, "stored": 12, "alerted": 1},
                            {"minute": "2026-12-03T18:01:00Z", "accepted": 9, "stored": 8, "alerted": 0}],
                "lag": {"transactions": 20, "p50_ms": 41, "p99_ms": 930},
                "hits_by_rule": {"amount_exceeds_threshold": 1},
                "open_alerts": {"by_rule": {"amount_exceeds_threshold": 1}, "counted": 1, "complete": true},
                "pipeline": {"available": true, "queue_messages": 3, "dead_letters": 0}})),
        (status = 400, description = "`minutes` is not from 1 to 180, or the window holds more than 20,000 of the shop's transactions", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store cannot answer now; `Retry-After` says when to ask again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn overview(
    State(history): State<Arc<dyn History>>,
    State(alerts): State<Arc<dyn AlertInbox>>,
    State(pipeline): State<PipelineState>,
    Shop(shop_id): Shop,
    RawQuery(query): RawQuery,
) -> Result<Json<ShopOverview>, ApiError> {
    let minutes = parse_stats_minutes(query.as_deref().unwrap_or(""))?;
    let (from, to) = window(Utc::now(), minutes);
    let period = Period {
        from: Some(from - READ_BEFORE_WINDOW),
        to: Some(to + MAX_CLOCK_SKEW),
    };
    let bound = HistoryBound::of_transactions(STATS_MAX_TRANSACTIONS);
    let (read, open_alerts, pipeline) = tokio::join!(
        history.history(&shop_id, period, bound),
        open_alerts(alerts.as_ref(), &shop_id),
        pipeline_figures(&pipeline, &shop_id),
    );
    let records = match read? {
        HistoryRead::Complete(records, _) => records,
        HistoryRead::TooMany => {
            return Err(ApiError::InvalidParameters(vec![FieldError {
                field: "minutes".to_owned(),
                code: "too_many_transactions".to_owned(),
                message: format!(
                    "the last {minutes} minutes hold more than {STATS_MAX_TRANSACTIONS} of the \
                     shop's transactions: ask for fewer minutes"
                ),
            }]));
        }
    };
    Ok(Json(ShopOverview {
        stats: summarise(&records, from, to),
        open_alerts: open_alerts?,
        pipeline,
    }))
}

/// The queue's figures for an operator's shop (none for any other): the shop's own figures
/// are answered even when the queue cannot say, within [`PIPELINE_READ_TIMEOUT`].
async fn pipeline_figures(pipeline: &PipelineState, shop_id: &ShopId) -> Option<Pipeline> {
    let backlog = pipeline.backlog.as_ref()?;
    if !pipeline.operators.0.contains(shop_id) {
        return None;
    }
    let depth = match tokio::time::timeout(PIPELINE_READ_TIMEOUT, backlog.depth()).await {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the queue's depth could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("the queue's depth was not read in time");
            None
        }
    };
    Some(Pipeline {
        available: depth.is_some(),
        queue_messages: depth.as_ref().map(|depth| depth.messages),
        dead_letters: depth.as_ref().map(|depth| depth.dead_letters),
    })
}

async fn open_alerts(alerts: &dyn AlertInbox, shop_id: &ShopId) -> Result<OpenAlerts, ApiError> {
    let mut counts = OpenAlerts {
        by_rule: BTreeMap::new(),
        counted: 0,
        complete: true,
    };
    let mut query = AlertListQuery {
        filters: AlertListFilters {
            status: Some(ReviewStatus::Open),
            ..AlertListFilters::default()
        },
        limit: MAX_PAGE_SIZE,
        after: None,
    };
    loop {
        let page = alerts.list_alerts(shop_id, &query).await?;
        for alert in &page.alerts {
            *counts.by_rule.entry(alert.rule.clone()).or_default() += 1;
        }
        counts.counted += page.alerts.len() as u64;
        match page.next {
            None => return Ok(counts),
            Some(_) if counts.counted as usize >= MAX_OPEN_ALERTS => {
                counts.complete = false;
                return Ok(counts);
            }
            next => query.after = next,
        }
    }
}
