//! A shop's webhooks: `POST /webhooks` (the signing secret is shown this once),
//! `GET /webhooks`, `DELETE /webhooks/{id}`, `POST /webhooks/{id}/rotate-secret` (the old
//! secret signs beside the new one for 24 hours) and `GET /webhooks/{id}/deliveries`.
//! Deliveries are made by `webhook_sender`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use infra::domain::FieldError;
use infra::domain::ids::{ID_HEX_DIGITS, is_id};
use infra::domain::webhooks::EventType;
use infra::ports::{DeliveriesPage, Delivery, Webhook, WebhookRegistry};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Shop;
use crate::error::{ApiError, Problem};
use crate::extract::JsonBody;
use crate::state::WebhookState;
use crate::webhook_sender::resolve_destination;

/// A webhook's registration, at most.
pub const MAX_WEBHOOK_BYTES: usize = 16 * 1024;
/// Webhooks a shop may have.
pub const MAX_WEBHOOKS_PER_SHOP: usize = 10;
const MAX_URL_CHARS: usize = 2_048;
const MAX_DESCRIPTION_CHARS: usize = 200;
/// How long a rotated-out secret keeps signing beside the new one.
pub const OVERLAP_HOURS: i64 = 24;

/// A webhook to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https` (or `http` to a loopback address while the API listens on loopback); not to a
    /// private, link-local or metadata address, checked after DNS resolution.
    #[schema(example = "https://shop.example.com/hooks/pipeline", max_length = 2048)]
    pub url: String,
    /// The events to send, at least one.
    #[schema(min_items = 1)]
    pub events: Vec<EventType>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

/// A webhook as listed (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "whk_4f1c2a9be0d3a7715c6e9f02")]
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    /// While a rotated-out secret still signs beside the new one: until when.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl From<&Webhook> for WebhookView {
    fn from(webhook: &Webhook) -> Self {
        Self {
            webhook_id: webhook.webhook_id.clone(),
            url: webhook.url.clone(),
            events: webhook.events.clone(),
            description: webhook.description.clone(),
            created_at: webhook.created_at,
            previous_secret_expires_at: webhook
                .previous_secret
                .as_ref()
                .map(|(_, until)| *until)
                .filter(|until| *until > Utc::now()),
        }
    }
}

/// A webhook just registered, or its secret just rotated: the only answers with the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// Verifies `Webhook-Signature`; shown this once.
    #[schema(example = "whsec_9c1f…")]
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// One page of a webhook's deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub data: Vec<Delivery>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

fn random_token(prefix: &str, bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut random);
    format!("{prefix}{}", hex::encode(random))
}

fn registry(webhooks: &WebhookState) -> Result<Arc<dyn WebhookRegistry>, ApiError> {
    webhooks.registry.clone().ok_or_else(|| {
        ApiError::NotFound(
            "webhooks are not set up on this deployment (on DynamoDB they need WEBHOOKS_TABLE)"
                .to_owned(),
        )
    })
}

fn is_webhook_id(text: &str) -> bool {
    is_id(text, "whk_")
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such webhook for this shop".to_owned())
}

fn refused(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidWebhook(vec![FieldError {
        field: field.to_owned(),
        code: "webhook".to_owned(),
        message: message.into(),
    }])
}

#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    security(("api_key" = [])),
    request_body(content = NewWebhook, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = WebhookWithSecret,
            headers(("Location" = String, description = "The webhook's deliveries"))),
        (status = 400, description = "Malformed JSON or a field that is not a webhook's", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Webhooks are not available with this store", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A destination refused (scheme, private address after DNS), or 10 webhooks already", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(webhooks): State<WebhookState>,
    Shop(shop_id): Shop,
    JsonBody(body): JsonBody<MAX_WEBHOOK_BYTES>,
) -> Result<Response, ApiError> {
    let registry = registry(&webhooks)?;
    let request: NewWebhook = serde_json::from_slice(&body)
        .map_err(|error| ApiError::MalformedJson(format!("the body is not a webhook: {error}")))?;
    if request.url.chars().count() > MAX_URL_CHARS {
        return Err(refused(
            "url",
            format!("must be at most {MAX_URL_CHARS} characters"),
        ));
    }
    let url = url::Url::parse(&request.url)
        .map_err(|error| refused("url", format!("is not a URL: {error}")))?;
    resolve_destination(&url, webhooks.loopback_allowed)
        .await
        .map_err(|error| refused("url", error))?;
    let mut events = request.events;
    events.sort_by_key(|event| *event as u8);
    events.dedup();
    if events.is_empty() {
        return Err(refused("events", "must name at least one event"));
    }
    if request
        .description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(refused(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let webhook = Webhook {
        webhook_id: random_token("whk_", ID_HEX_DIGITS / 2),
        shop_id,
        url: url.to_string(),
        events,
        description: request.description,
        created_at: Utc::now(),
        secret: random_token("whsec_", 32),
        previous_secret: None,
    };
    if !registry
        .add_webhook(&webhook, MAX_WEBHOOKS_PER_SHOP)
        .await?
    {
        return Err(refused(
            "url",
            format!("a shop has at most {MAX_WEBHOOKS_PER_SHOP} webhooks; delete one first"),
        ));
    }
    let location = format!("/webhooks/{}/deliveries", webhook.webhook_id);
    let mut response = (
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: WebhookView::from(&webhook),
            secret: webhook.secret,
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The shop's webhooks, without their secrets", body = WebhookList),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Webhooks are not available with this store", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(webhooks): State<WebhookState>,
    Shop(shop_id): Shop,
) -> Result<Json<WebhookList>, ApiError> {
    let all = registry(&webhooks)?.webhooks(&shop_id).await?;
    Ok(Json(WebhookList {
        data: all.iter().map(WebhookView::from).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/webhooks/{webhook_id}",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Removed, with its deliveries"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook for this shop", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(webhooks): State<WebhookState>,
    Shop(shop_id): Shop,
    Path(webhook_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let registry = registry(&webhooks)?;
    if !is_webhook_id(&webhook_id) || !registry.remove_webhook(&shop_id, &webhook_id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/webhooks/{webhook_id}/rotate-secret",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("webhook_id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "A new secret, shown this once; the old one signs beside it for 24 hours", body = WebhookWithSecret),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook for this shop", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    State(webhooks): State<WebhookState>,
    Shop(shop_id): Shop,
    Path(webhook_id): Path<String>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    let registry = registry(&webhooks)?;
    if !is_webhook_id(&webhook_id) {
        return Err(not_found());
    }
    let secret = random_token("whsec_", 32);
    let old_until = Utc::now() + chrono::Duration::hours(OVERLAP_HOURS);
    let webhook = registry
        .rotate_secret(&shop_id, &webhook_id, &secret, old_until)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(WebhookWithSecret {
        webhook: WebhookView::from(&webhook),
        secret,
    }))
}

#[utoipa::path(
    get,
    path = "/webhooks/{webhook_id}/deliveries",
    tag = "webhooks",
    security(("api_key" = [])),
    params(
        ("webhook_id" = String, Path, description = "The webhook's id"),
        ("limit" = Option<u32>, Query, description = "Deliveries per page, 1-100", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page", pattern = "^dlv_[0-9a-f]{24}$"),
    ),
    responses(
        (status = 200, description = "The webhook's deliveries, newest first, each with its attempts (time, status or error, latency)", body = DeliveryList),
        (status = 400, description = "A parameter is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook for this shop", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with API keys this instance has not seen (keys table only); see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deliveries(
    State(webhooks): State<WebhookState>,
    Shop(shop_id): Shop,
    Path(webhook_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let registry = registry(&webhooks)?;
    let (limit, cursor) = page_parameters(query.as_deref().unwrap_or(""))?;
    if !is_webhook_id(&webhook_id) {
        return Err(not_found());
    }
    let (data, more) = match registry
        .deliveries(&shop_id, &webhook_id, limit, cursor.as_deref())
        .await?
    {
        DeliveriesPage::Page { deliveries, more } => (deliveries, more),
        DeliveriesPage::NoWebhook => return Err(not_found()),
        DeliveriesPage::UnknownCursor => {
            return Err(ApiError::InvalidParameters(vec![FieldError {
                field: "cursor".to_owned(),
                code: "invalid".to_owned(),
                message: "is not a delivery of this webhook (gone, or never its own)".to_owned(),
            }]));
        }
    };
    let next_cursor = more
        .then(|| data.last().map(|delivery| delivery.delivery_id.clone()))
        .flatten();
    Ok(Json(DeliveryList {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}

/// `limit` (1-100, 20 by default) and `cursor` (a delivery id), each at most once, and no
/// other parameter.
fn page_parameters(query: &str) -> Result<(usize, Option<String>), ApiError> {
    let mut errors = Vec::new();
    let mut limit = None;
    let mut cursor = None;
    let problem = |field: &str, message: &str| FieldError {
        field: field.chars().take(64).collect(),
        code: "invalid".to_owned(),
        message: message.to_owned(),
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" if limit.is_none() => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = Some(n),
                _ => errors.push(problem("limit", "must be a whole number from 1 to 100")),
            },
            "cursor" if cursor.is_none() => {
                if is_id(&value, "dlv_") {
                    cursor = Some(value.into_owned());
                } else {
                    errors.push(problem("cursor", "is not a cursor this API gave"));
                }
            }
            "limit" | "cursor" => errors.push(problem(&name, "is given more than once")),
            other => errors.push(problem(
                other,
                "is not a parameter of this list; use limit, cursor",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidParameters(errors));
    }
    Ok((limit.unwrap_or(20), cursor))
}
