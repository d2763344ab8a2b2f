//! The alert inbox: `GET /alerts`, `GET /alerts/{alert_id}` and
//! `POST /alerts/{alert_id}/review`. Every alert answer carries its review's version as an
//! `ETag`; a review sent with `If-Match` is written only on that version (else 412). One sent
//! without it is written on the version it read, re-read and applied again if another review
//! came first: every review is kept in the history, none is lost.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use infra::domain::{
    AlertListQuery, FieldError, InboxAlert, Named, ReviewChange, ReviewStatus, ShopId, Verdict,
    is_alert_id,
};
use infra::ports::{AlertInbox, PortError, ReviewOutcome};
use infra::telemetry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Shop};
use crate::cursor::{Cursor, CursorKey};
use crate::docs::{AlertListParamsDoc, ReviewHeadersDoc, ReviewRequestDoc};
use crate::error::{ApiError, Problem, etag};
use crate::extract::JsonBody;
use crate::listing::{AlertListParams, within_page_bytes};

/// A review's body, at most: room for a note of 2,000 characters each written as a JSON
/// surrogate pair (12 bytes), and the rest.
pub const MAX_REVIEW_BYTES: usize = 32 * 1024;
/// Reviews written on a version that another review changed meanwhile are read again and
/// retried this often before the caller is told (a 412 with the alert as it is).
const REVIEW_ATTEMPTS: usize = 3;

/// One page of a shop's alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    /// Newest first by `raised_at`, ties broken by id.
    pub data: Vec<InboxAlert>,
    /// Whether there may be more: then `next_cursor` gives the next page.
    pub has_more: bool,
    /// Pass as `cursor`, with the same filters, for the next page.
    pub next_cursor: Option<String>,
}

/// A review of an alert (documented by `docs::ReviewRequestDoc`), by the status it leaves: `open` reopens (and clears the verdict),
/// `acknowledged` says someone is on it, `resolved` closes it with a verdict.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReviewRequest {
    Open {
        note: Option<String>,
    },
    Acknowledged {
        verdict: Option<Verdict>,
        note: Option<String>,
    },
    Resolved {
        verdict: Verdict,
        note: Option<String>,
    },
}

impl ReviewRequest {
    fn into_parts(self) -> (ReviewStatus, Option<Verdict>, Option<String>) {
        match self {
            Self::Open { note } => (ReviewStatus::Open, None, note),
            Self::Acknowledged { verdict, note } => (ReviewStatus::Acknowledged, verdict, note),
            Self::Resolved { verdict, note } => (ReviewStatus::Resolved, Some(verdict), note),
        }
    }
}

#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    security(("api_key" = [])),
    params(AlertListParamsDoc),
    responses(
        (status = 200, description = "A page of the shop's alerts", body = AlertList),
        (status = 400, description = "A parameter is not valid: each is named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn list(
    State(alerts): State<Arc<dyn AlertInbox>>,
    State(cursor_key): State<CursorKey>,
    Shop(shop_id): Shop,
    params: AlertListParams,
) -> Result<Json<AlertList>, ApiError> {
    let after = params
        .cursor
        .as_ref()
        .map(|cursor| cursor.position_for(&shop_id, &params.filters))
        .transpose()?;
    let query = AlertListQuery {
        filters: params.filters,
        limit: params.limit,
        after,
    };
    let page = alerts.list_alerts(&shop_id, &query).await?;
    let shown = page
        .alerts
        .into_iter()
        .map(|alert| (alert.position(), alert));
    let (data, cut_after) = within_page_bytes(shown);
    let next_cursor = cut_after
        .or(page.next)
        .map(|position| Cursor::encode(&cursor_key, &shop_id, &query.filters, &position));
    Ok(Json(AlertList {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/alerts/{alert_id}",
    tag = "alerts",
    security(("api_key" = [])),
    params(("alert_id" = String, Path, description = "The alert's id, as the list gives it")),
    responses(
        (status = 200, description = "The alert, with its review's history", body = InboxAlert,
            headers(("ETag" = String, description = "The review's version: send it as `If-Match` with a review"))),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such alert for this shop", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read(
    State(alerts): State<Arc<dyn AlertInbox>>,
    Shop(shop_id): Shop,
    Path(alert_id): Path<String>,
) -> Result<Response, ApiError> {
    let alert = find(alerts.as_ref(), &shop_id, &alert_id).await?;
    Ok(with_etag(alert))
}

#[utoipa::path(
    post,
    path = "/alerts/{alert_id}/review",
    tag = "alerts",
    security(("api_key" = [])),
    params(
        ("alert_id" = String, Path, description = "The alert's id, as the list gives it"),
        ReviewHeadersDoc,
    ),
    request_body(content = ReviewRequestDoc, content_type = "application/json",
        examples(
            ("acknowledge" = (value = json!({"status": "acknowledged", "note": "calling the customer"}))),
            ("resolve" = (value = json!({"status": "resolved", "verdict": "fraud", "note": "card reported stolen"}))),
            ("reopen" = (value = json!({"status": "open", "note": "chargeback arrived"}))),
        )),
    responses(
        (status = 200, description = "The alert after the review", body = InboxAlert,
            headers(("ETag" = String, description = "The review's new version"))),
        (status = 400, description = "Malformed JSON, a body that is not a review (each status has its own fields), or an `If-Match` that is not ETags", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such alert for this shop", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The alert changed since the `If-Match` version: `current` holds it as it is, and `ETag` its version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 32 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The alert already has 100 reviews, the most it keeps", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn review(
    State(alerts): State<Arc<dyn AlertInbox>>,
    caller: Caller,
    Path(alert_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MAX_REVIEW_BYTES>,
) -> Result<Response, ApiError> {
    let request: ReviewRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::MalformedJson(format!("the body is not a review: {error}")))?;
    let (status, verdict, note) = request.into_parts();
    let precondition = Precondition::of(&headers)?;
    let mut current = find(alerts.as_ref(), &caller.shop, &alert_id).await?;
    for _ in 0..REVIEW_ATTEMPTS {
        let change = ReviewChange {
            status,
            verdict,
            note: note.clone(),
            by: caller.key_id.clone(),
            at: Utc::now(),
        };
        let next = current.review.apply(change).map_err(|error| {
            ApiError::InvalidReview(vec![FieldError {
                field: error.field().to_owned(),
                code: "review".to_owned(),
                message: error.to_string(),
            }])
        })?;
        // Judged after the review itself, so that a broken review is refused as such
        // whatever the version it names.
        if let Some(precondition) = &precondition
            && !precondition.holds(current.review.version)
        {
            return Err(stale(&current));
        }
        let based_on = current.review.version;
        match alerts
            .review_alert(&caller.shop, &alert_id, based_on, &next)
            .await?
        {
            ReviewOutcome::Saved(alert) => {
                let verdict = next.verdict.map_or("none", |verdict| verdict.name());
                metrics::counter!(telemetry::REVIEWS, "verdict" => verdict).increment(1);
                return Ok(with_etag(alert));
            }
            ReviewOutcome::Stale(now) => current = now,
            ReviewOutcome::Missing => return Err(not_found()),
        }
    }
    // Reviewed by others between each read and write, without a precondition to fail.
    Err(ApiError::Port(PortError::unavailable(
        "alert inbox",
        "the alert was reviewed concurrently",
    )))
}

async fn find(
    alerts: &dyn AlertInbox,
    shop_id: &ShopId,
    alert_id: &str,
) -> Result<InboxAlert, ApiError> {
    // Only an id that could exist is looked up (and none is echoed back).
    if !is_alert_id(alert_id) {
        return Err(not_found());
    }
    alerts
        .get_alert(shop_id, alert_id)
        .await?
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such alert for this shop".to_owned())
}

fn stale(current: &InboxAlert) -> ApiError {
    ApiError::Stale {
        current_version: current.review.version,
        current: Box::new(serde_json::to_value(current).unwrap_or_default()),
    }
}

fn with_etag(alert: InboxAlert) -> Response {
    let version = alert.review.version;
    let mut response = Json(alert).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// An `If-Match` header: `*`, or the versions its ETags name. A weak tag (`W/"3"`) names none:
/// `If-Match` compares strongly (RFC 9110). A bare number is taken as its quoted tag.
#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    Any,
    Versions(Vec<u64>),
}

impl Precondition {
    fn of(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let invalid = || ApiError::InvalidHeader {
            name: "If-Match",
            rule: "must be * or ETags this API gave, such as \"3\"",
        };
        let mut versions = Vec::new();
        let mut any = false;
        let mut sent = false;
        for value in headers.get_all(header::IF_MATCH) {
            sent = true;
            let text = value.to_str().map_err(|_| invalid())?;
            for tag in text.split(',').map(str::trim) {
                if tag == "*" {
                    any = true;
                    continue;
                }
                let (weak, tag) = match tag.strip_prefix("W/") {
                    Some(rest) => (true, rest),
                    None => (false, tag),
                };
                let digits = tag
                    .strip_prefix('"')
                    .and_then(|rest| rest.strip_suffix('"'))
                    .unwrap_or(tag);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                // A number past any version names none; a weak tag never matches.
                if let (false, Ok(version)) = (weak, digits.parse::<u64>()) {
                    versions.push(version);
                }
            }
        }
        Ok(sent.then_some(if any {
            Self::Any
        } else {
            Self::Versions(versions)
        }))
    }

    fn holds(&self, version: u64) -> bool {
        match self {
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precondition(value: &str) -> Result<Option<Precondition>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_str(value).expect("header"),
        );
        Precondition::of(&headers)
    }

    #[test]
    fn if_match_names_versions_strongly_or_any() {
        let holds = |value: &str, version| precondition(value).unwrap().unwrap().holds(version);
        assert!(holds("\"3\"", 3));
        assert!(holds("\"1\", \"3\"", 3));
        assert!(holds("3", 3), "a bare number is taken as its tag");
        assert!(holds("*", 7));
        assert!(!holds("\"2\"", 3));
        assert!(!holds("\"33\"", 3));
        assert!(!holds("W/\"3\"", 3), "a weak tag never matches");
        assert!(!holds("\"99999999999999999999999\"", 3), "past any version");
        for broken in ["", "\"x\"", "null", "3\"", "\"-1\""] {
            assert!(precondition(broken).is_err(), "{broken:?}");
        }
        assert!(Precondition::of(&HeaderMap::new()).unwrap().is_none());
    }
}
