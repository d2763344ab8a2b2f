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
    /// Transactions on the queue, waiting or being processed, of every shop (SQS counts
    /// approximately).
    pub queue_messages: u64,
    /// Messages that could not be processed, set aside for the operator (`processor
    /// dead-letters list`).
    pub dead_letters: u64,
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
                "pipeline": {"queue_messages": 3, "dead_letters": 0}})),
        (status = 400, description = "`minutes` is not from 1 to 180, or the window holds more than 20,000 of the shop's transactions", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store (or, for the operator, the queue) cannot answer now; `Retry-After` says when to ask again", body = Problem, content_type = "application/problem+json"),
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
    let records = match history.history(&shop_id, period, bound).await? {
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
        open_alerts: open_alerts(alerts.as_ref(), &shop_id).await?,
        pipeline: pipeline_figures(&pipeline, &shop_id).await?,
    }))
}

async fn pipeline_figures(
    pipeline: &PipelineState,
    shop_id: &ShopId,
) -> Result<Option<Pipeline>, ApiError> {
    let Some(backlog) = &pipeline.backlog else {
        return Ok(None);
    };
    if !pipeline.operators.0.contains(shop_id) {
        return Ok(None);
    }
    let depth = backlog.depth().await?;
    Ok(Some(Pipeline {
        queue_messages: depth.messages,
        dead_letters: depth.dead_letters,
    }))
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
