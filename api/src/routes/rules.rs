//! `GET /rules`: the rules the processor runs, with their version (see `rules_in_force`).
//!
//! `POST /rules/backtest`: candidate rules replayed over the caller's shop's stored
//! transactions, judged as the processor judges (see `domain::rules::backtest`). Nothing is
//! written, published or counted; the answer says what each rule would have fired on and what
//! would change against the alerts stored.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use infra::backtest::BacktestOutcome;
use infra::domain::rules::backtest::BacktestReport;
use infra::domain::{FieldError, RuleSet};
use infra::ports::PortError;

use crate::auth::Shop;
use crate::docs::PeriodParamsDoc;
use crate::error::{ApiError, Problem};
use crate::extract::TextBody;
use crate::listing::parse_period;
use crate::rules_in_force::{RulesInForce, RulesSource};
use crate::state::{Backtests, InvocationDeadline};

/// A rules file, at most (an SSM parameter holds 8 KB).
pub const MAX_RULES_BYTES: usize = 64 * 1024;
/// Longest a backtest runs outside Lambda; on Lambda, until a second before the deadline.
const MAX_RUNNING: Duration = Duration::from_secs(30);
const TIME_TO_ANSWER: Duration = Duration::from_secs(1);

#[utoipa::path(
    get,
    path = "/rules",
    tag = "rules",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The deployment's rules (the same for every shop), with the version their alerts carry; their hits are in `GET /stats`", body = RulesInForce,
            example = json!({"source": "SSM parameter /ecommerce-pipeline/alert-rules", "version": "3f9a1c07be42@4",
                "rules": [{"name": "card_testing", "kind": "velocity", "mode": "live", "action": "notify",
                    "description": "count per payment_fingerprint in 10m above 5"}],
                "unreadable": null})),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The rules parameter cannot be read now", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn in_force(
    State(rules): State<RulesSource>,
    _shop: Shop,
) -> Result<Json<RulesInForce>, ApiError> {
    let rules = rules.in_force().await?;
    Ok(Json(RulesInForce::clone(&rules)))
}

#[utoipa::path(
    post,
    path = "/rules/backtest",
    tag = "rules",
    security(("api_key" = [])),
    params(PeriodParamsDoc),
    request_body(
        content = String,
        content_type = "text/plain",
        description = "The candidate rules file, as `processor rules check` reads it (also as application/toml)",
        example = "[[rule]]\nname = \"card_testing\"\nkind = \"velocity\"\nkey = \"payment_fingerprint\"\nwindow = \"10m\"\nabove = 3\n",
    ),
    responses(
        (status = 200, description = "What the candidate rules would have done over the period", body = BacktestReport,
            example = json!({"rules_version": "3f9a1c07be42", "from": "2024-08-01T00:00:00Z", "to": null, "transactions": 1200, "read": 1250,
                "rules": [{"name": "card_testing", "kind": "velocity", "mode": "live", "action": "notify", "fired": 14, "examples": ["order-1", "order-2"], "reviewed_fraud": 3, "reviewed_legitimate": 1}],
                "decisions": {"allow": 1186, "notify": 14},
                "diff": {"added": 6, "dropped": 0, "unchanged": 8, "added_examples": [{"transaction_id": "order-2", "rule": "card_testing"}], "dropped_examples": []}})),
        (status = 400, description = "`from` or `to` is not valid, or an unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The rules are larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not text/plain or application/toml", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The rules do not read (`errors` says where and why), or the period holds more transactions than a backtest reads (`BACKTEST_MAX_TRANSACTIONS`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, another backtest is running on this instance, or it could not finish in time", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn backtest(
    State(backtests): State<Backtests>,
    Shop(shop_id): Shop,
    deadline: Option<Extension<InvocationDeadline>>,
    RawQuery(query): RawQuery,
    TextBody(text): TextBody<MAX_RULES_BYTES>,
) -> Result<Json<BacktestReport>, ApiError> {
    let period = parse_period(query.as_deref().unwrap_or(""))?;
    let rules = RuleSet::from_toml("body", &text).map_err(|error| {
        ApiError::InvalidBacktest(vec![FieldError {
            field: "body".to_owned(),
            code: "rules".to_owned(),
            message: error.to_string(),
        }])
    })?;
    if rules.has_list_rules() && backtests.sources.lists.is_none() {
        return Err(ApiError::InvalidBacktest(vec![FieldError {
            field: "body".to_owned(),
            code: "rules".to_owned(),
            message: infra::backtest::LISTS_NEEDED.to_owned(),
        }]));
    }
    let busy = || {
        PortError::unavailable("backtest", "another backtest is running on this instance")
            .retry_after(Duration::from_secs(5))
    };
    let permit = backtests
        .running
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy())?;
    let mut until = tokio::time::Instant::now() + MAX_RUNNING;
    if let Some(Extension(InvocationDeadline(deadline))) = deadline {
        until = until.min(deadline.checked_sub(TIME_TO_ANSWER).unwrap_or(deadline));
    }
    let bound = infra::ports::HistoryBound::of_transactions(backtests.max_transactions);
    let sources = backtests.sources.clone();
    // The permit goes with the work, not with the answer: a backtest the answer stopped
    // waiting for still holds its memory and a core until it ends, and none starts meanwhile.
    let work = tokio::spawn(async move {
        let _running = permit;
        infra::backtest::run(sources, vec![shop_id], rules, period, bound).await
    });
    let outcome = tokio::time::timeout_at(until, work)
        .await
        .map_err(|_| {
            PortError::unavailable("backtest", "it did not finish in time; narrow the period")
        })?
        .map_err(|error| PortError::unavailable("backtest", error))??;
    match outcome {
        BacktestOutcome::Report(report) => Ok(Json(*report)),
        BacktestOutcome::TooMany(bound) => Err(ApiError::InvalidBacktest(vec![FieldError {
            field: "from".to_owned(),
            code: "too_many_transactions".to_owned(),
            message: format!(
                "the period holds more than {} transactions (or {} MB of them) with those that \
                 fill its windows; narrow it with `from` and `to`",
                bound.transactions,
                bound.bytes / 1_000_000
            ),
        }])),
    }
}
