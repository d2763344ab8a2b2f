//! A shop's named lists, for `list` rules: `PUT` and `DELETE /lists/{name}/items/{value}`, and
//! `GET /lists/{name}`, paged in the order of the values. A change is durable when answered,
//! and the processor reads lists as it decides, so it applies to every transaction processed
//! after the answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use infra::domain::FieldError;
use infra::domain::lists::{check_list_name, check_list_value};
use infra::ports::ListAdmin;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Shop;
use crate::docs::{ListItemPathDoc, ListNamePathDoc, ListPageParamsDoc};
use crate::error::{ApiError, Problem};
use crate::listing::parse_list_page;
use crate::state::ListsState;

/// A value in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListItemView {
    #[schema(example = "cust-42")]
    pub value: String,
    pub added_at: DateTime<Utc>,
}

/// One page of a list, in the order of its values.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage {
    #[schema(example = "blocked_customers")]
    pub list: String,
    pub data: Vec<ListItemView>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

fn admin(lists: &ListsState) -> Result<Arc<dyn ListAdmin>, ApiError> {
    lists.admin.clone().ok_or_else(|| {
        ApiError::NotFound(
            "lists are not set up on this deployment (on DynamoDB they need WEBHOOKS_TABLE)"
                .to_owned(),
        )
    })
}

/// The list's name and the value, each by its rule; every broken one is named.
fn checked(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Err(rule) = check_list_name(name) {
        errors.push(FieldError {
            field: "name".to_owned(),
            code: "invalid".to_owned(),
            message: rule,
        });
    }
    if let Some(Err(rule)) = value.map(check_list_value) {
        errors.push(FieldError {
            field: "value".to_owned(),
            code: "invalid".to_owned(),
            message: rule,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidListItem(errors))
    }
}

#[utoipa::path(
    put,
    path = "/lists/{name}/items/{value}",
    tag = "lists",
    security(("api_key" = [])),
    params(ListItemPathDoc),
    responses(
        (status = 204, description = "The value is in the list (added now, or already there); transactions processed from now on see it"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name or the value breaks its rule; a card number is refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn add(
    State(lists): State<ListsState>,
    Shop(shop_id): Shop,
    Path((name, value)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    checked(&name, Some(&value))?;
    admin(&lists)?
        .add_to_list(&shop_id, &name, &value, Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/lists/{name}/items/{value}",
    tag = "lists",
    security(("api_key" = [])),
    params(ListItemPathDoc),
    responses(
        (status = 204, description = "The value is not in the list (removed now, or never there)"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name or the value breaks its rule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn remove(
    State(lists): State<ListsState>,
    Shop(shop_id): Shop,
    Path((name, value)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    checked(&name, Some(&value))?;
    admin(&lists)?
        .remove_from_list(&shop_id, &name, &value)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/lists/{name}",
    tag = "lists",
    security(("api_key" = [])),
    params(ListNamePathDoc, ListPageParamsDoc),
    responses(
        (status = 200, description = "A page of the list's values (an empty page for a list with none)", body = ListPage),
        (status = 400, description = "A parameter is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The name breaks its rule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn page(
    State(lists): State<ListsState>,
    Shop(shop_id): Shop,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<ListPage>, ApiError> {
    checked(&name, None)?;
    let (limit, after) = parse_list_page(query.as_deref().unwrap_or(""))?;
    let page = admin(&lists)?
        .list_items(&shop_id, &name, after.as_deref(), limit)
        .await?;
    let next_cursor = page
        .next
        .map(|value| URL_SAFE_NO_PAD.encode(value.as_bytes()));
    Ok(Json(ListPage {
        list: name,
        data: page
            .items
            .into_iter()
            .map(|item| ListItemView {
                value: item.value,
                added_at: item.added_at,
            })
            .collect(),
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}
