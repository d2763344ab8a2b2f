//! Extractors for request bodies: each checks what it can and answers with an `ApiError`, so
//! that handlers receive only well-formed input.

use axum::body::{Bytes, to_bytes};
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use infra::domain::{Transaction, parse_transaction};

use crate::error::ApiError;
use crate::state::BodyReadTimeout;

pub use crate::limits::MAX_BODY_BYTES;

/// A JSON request body, read whole: the media type is checked (415) and its size bounded (413).
pub struct JsonBody<const LIMIT: usize>(pub Bytes);

impl<S, const LIMIT: usize> FromRequest<S> for JsonBody<LIMIT>
where
    S: Send + Sync,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        read_body::<S, LIMIT>(request, state).await.map(Self)
    }
}

/// A text request body (a rules file), read whole: `text/plain` or a TOML media type (415
/// otherwise), bounded (413) and UTF-8 (400).
pub struct TextBody<const LIMIT: usize>(pub String);

impl<S, const LIMIT: usize> FromRequest<S> for TextBody<LIMIT>
where
    S: Send + Sync,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let essence = media_type(request.headers());
        if !["text/plain", "application/toml", "text/toml", "text/x-toml"]
            .contains(&essence.as_str())
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send the rules as text/plain or application/toml (got {})",
                shown_media_type(request.headers())
            )));
        }
        let bytes = read_body::<S, LIMIT>(request, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(Self)
            .map_err(|_| ApiError::MalformedJson("the body is not UTF-8 text".to_owned()))
    }
}

/// The body, read whole within the body-read timeout (408) and `LIMIT` bytes (413), with no
/// content coding (415).
async fn read_body<S, const LIMIT: usize>(request: Request, state: &S) -> Result<Bytes, ApiError>
where
    BodyReadTimeout: FromRef<S>,
{
    let BodyReadTimeout(within) = BodyReadTimeout::from_ref(state);
    refuse_encodings(request.headers())?;
    let too_large = ApiError::PayloadTooLarge { limit: LIMIT };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > LIMIT as u64) {
        return Err(too_large);
    }
    // A client that stalls mid-body is cut off rather than holding the connection.
    let read = tokio::time::timeout(within, to_bytes(request.into_body(), LIMIT))
        .await
        .map_err(|_| ApiError::RequestTimeout(within))?;
    read.map_err(|error| {
        if is_over_limit(&error) {
            too_large
        } else {
            ApiError::MalformedJson(format!("the body could not be read: {error}"))
        }
    })
}

/// Whether reading the body stopped at its limit rather than for another reason.
fn is_over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The media type without parameters, in lower case; empty when there is none.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The Content-Type as sent, for a 415's message.
fn shown_media_type(headers: &HeaderMap) -> String {
    match headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str())
    {
        None => "no Content-Type".to_owned(),
        Some(Ok(text)) => text.chars().take(64).collect(),
        Some(Err(_)) => "a Content-Type that is not text".to_owned(),
    }
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = media_type(headers);
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "send the transaction as application/json (got {})",
        shown_media_type(headers)
    )))
}

/// No content coding is decoded (RFC 9110 §8.4): a body labelled `gzip` or anything but
/// `identity` is a 415, rather than read as if it were plain.
fn refuse_encodings(headers: &HeaderMap) -> Result<(), ApiError> {
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"));
    match encoded {
        None => Ok(()),
        Some(coding) => {
            let shown: String = coding.chars().take(32).collect();
            Err(ApiError::UnsupportedMediaType(format!(
                "send the body without a Content-Encoding (got {shown:?}): no encoding is accepted"
            )))
        }
    }
}

/// A transaction from the request body, parsed and validated as of `accepted_at`: 400 for
/// malformed JSON, 422 listing every broken rule.
pub struct ValidatedTransaction {
    pub transaction: Transaction,
    pub accepted_at: DateTime<Utc>,
}

impl<S> FromRequest<S> for ValidatedTransaction
where
    S: Send + Sync,
    BodyReadTimeout: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(body) = JsonBody::<MAX_BODY_BYTES>::from_request(request, state).await?;
        let accepted_at = Utc::now();
        let transaction = parse_transaction(&body, accepted_at)?;
        Ok(Self {
            transaction,
            accepted_at,
        })
    }
}
