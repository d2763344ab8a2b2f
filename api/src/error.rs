//! The API's one error type and the one place where errors become HTTP responses: RFC 9457
//! problem documents (`application/problem+json`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use infra::domain::parse::MAX_REPORTED_ERRORS;
use infra::domain::{FieldError, TransactionError};
use infra::ports::PortError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The shortest wait a 503 asks for, and the wait when the failing port gave none.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("too many requests with API keys this server has not seen yet; retry in a second")]
    TooManyUnknownKeys,
    #[error("more than one {0} header: send exactly one")]
    AmbiguousHeader(&'static str),
    #[error("the {name} header {rule}")]
    InvalidHeader {
        name: &'static str,
        rule: &'static str,
    },
    /// An error answer made outside the handlers (an extractor's rejection, Swagger UI), of
    /// which only the status is known.
    #[error("the request could not be served as sent ({0})")]
    Unreadable(StatusCode),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("a batch holds at most {limit} transactions")]
    TooManyItems { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{} query parameter(s) are not valid{}", .0.len(), listed_note(.0.len().min(MAX_REPORTED_ERRORS), .0.len()))]
    InvalidParameters(Vec<FieldError>),
    #[error("the body did not arrive within {0:?}")]
    RequestTimeout(std::time::Duration),
    #[error("the transaction breaks {total} rule(s){}", listed_note(errors.len(), *total))]
    Invalid {
        errors: Vec<FieldError>,
        total: usize,
    },
    /// A batch none of whose items was accepted: each item's result is still listed.
    #[error("none of the {rejected} transactions was accepted")]
    NoneAccepted {
        rejected: usize,
        results: serde_json::Value,
        request_id: String,
    },
    /// A review that breaks a rule of reviews (422).
    #[error("the review breaks {} rule(s)", .0.len())]
    InvalidReview(Vec<FieldError>),
    /// A webhook that cannot be registered (422): a destination refused, a limit reached.
    #[error("the webhook breaks {} rule(s)", .0.len())]
    InvalidWebhook(Vec<FieldError>),
    /// A list name or value that breaks a rule (422): named in the path, or a card number.
    #[error("the list item breaks {} rule(s)", .0.len())]
    InvalidListItem(Vec<FieldError>),
    /// A backtest that cannot run (422): candidate rules that do not read, a period too large.
    #[error("the backtest breaks {} rule(s)", .0.len())]
    InvalidBacktest(Vec<FieldError>),
    /// A review based on a version of the alert that is not the current one (412): the current
    /// alert is in the answer, with its `ETag`.
    #[error(
        "the alert changed since the version in If-Match: it is at version {current_version} now; review it again from there"
    )]
    Stale {
        current_version: u64,
        current: Box<serde_json::Value>,
    },
    /// A port failed; transient failures are 503s, permanent refusals 500s.
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{0}")]
    Internal(String),
}

impl From<TransactionError> for ApiError {
    fn from(error: TransactionError) -> Self {
        match error {
            TransactionError::Malformed(detail) => Self::MalformedJson(detail),
            TransactionError::Invalid { errors, total } => Self::Invalid { errors, total },
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[schema(example = "urn:ecommerce-pipeline:problem:validation")]
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(example = "Invalid transaction")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    #[schema(example = "the transaction breaks 1 rule(s)")]
    pub detail: String,
    /// The failed fields of a validation problem: the first 20, sorted by field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// How many rules were broken in all (more than `errors` lists when over 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 1)]
    pub error_count: Option<usize>,
    /// A batch none of whose items was accepted: what became of each item, as in a 207.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub results: Option<serde_json::Value>,
    /// With `results`: the batch's request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A 412: the resource as it is now, to review again from.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
}

fn listed_note(listed: usize, total: usize) -> String {
    if listed < total {
        format!("; the first {listed} are listed")
    } else {
        String::new()
    }
}

/// The problem's slug, left on the response so that middleware can count refusals by reason.
#[derive(Debug, Clone, Copy)]
pub struct ProblemSlug(pub &'static str);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyUnknownKeys => StatusCode::TOO_MANY_REQUESTS,
            Self::AmbiguousHeader(_) | Self::InvalidHeader { .. } => StatusCode::BAD_REQUEST,
            Self::Unreadable(status) => *status,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } | Self::TooManyItems { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::InvalidParameters(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. }
            | Self::NoneAccepted { .. }
            | Self::InvalidReview(_)
            | Self::InvalidWebhook(_)
            | Self::InvalidListItem(_)
            | Self::InvalidBacktest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Port(PortError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Port(PortError::Rejected { .. }) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A short stable name: the end of the problem type URI and the metrics label.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed-json",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not-found",
            Self::TooManyUnknownKeys => "too-many-unknown-keys",
            Self::AmbiguousHeader(_) => "ambiguous-header",
            Self::InvalidHeader { .. } => "invalid-header",
            Self::Unreadable(_) => "unreadable-request",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge { .. } | Self::TooManyItems { .. } => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::RequestTimeout(_) => "request-timeout",
            Self::InvalidParameters(_) => "invalid-parameters",
            Self::Invalid { .. }
            | Self::NoneAccepted { .. }
            | Self::InvalidReview(_)
            | Self::InvalidWebhook(_)
            | Self::InvalidListItem(_)
            | Self::InvalidBacktest(_) => "validation",
            Self::Stale { .. } => "stale-review",
            Self::Port(PortError::Unavailable { .. }) => "unavailable",
            Self::Port(PortError::Rejected { .. }) => "refused-by-backend",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::Unauthorized(_) => "Missing or unknown API key",
            Self::NotFound(_) => "Not found",
            Self::TooManyUnknownKeys => "Too many unknown keys",
            Self::AmbiguousHeader(_) => "Ambiguous request",
            Self::InvalidHeader { .. } => "Invalid header",
            Self::Unreadable(status) => status.canonical_reason().unwrap_or("Bad request"),
            Self::MethodNotAllowed => "Method not allowed",
            Self::PayloadTooLarge { .. } | Self::TooManyItems { .. } => "Payload too large",
            Self::UnsupportedMediaType(_) => "Unsupported media type",
            Self::RequestTimeout(_) => "Request timeout",
            Self::InvalidParameters(_) => "Invalid query parameters",
            Self::Invalid { .. } => "Invalid transaction",
            Self::NoneAccepted { .. } => "Invalid transactions",
            Self::InvalidReview(_) => "Invalid review",
            Self::InvalidWebhook(_) => "Invalid webhook",
            Self::InvalidBacktest(_) => "Invalid backtest",
            Self::InvalidListItem(_) => "Invalid list item",
            Self::Stale { .. } => "The alert changed",
            Self::Port(PortError::Unavailable { .. }) => "Service unavailable",
            Self::Port(PortError::Rejected { .. }) => "Refused by a backend service",
            Self::Internal(_) => "Internal server error",
        }
    }

    /// What the client reads. Whatever broke inside stays in the logs: the client learns which
    /// part failed and whether to retry, never an SDK's error text.
    fn detail(&self) -> String {
        match self {
            Self::Port(PortError::Unavailable { component, .. }) => match *component {
                "queue" => {
                    "the queue could not accept the transaction durably; retry later".to_owned()
                }
                component => format!("the {component} is unavailable; retry later"),
            },
            Self::Port(PortError::Rejected { component, .. }) => format!(
                "the {component} refused the request; retrying will not help. This is a bug and has been logged"
            ),
            Self::Internal(_) => "an unexpected error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn to_problem(&self) -> Problem {
        Problem {
            kind: format!("urn:ecommerce-pipeline:problem:{}", self.slug()),
            title: self.title().to_owned(),
            status: self.status().as_u16(),
            detail: self.detail(),
            // However many there were, a problem lists a bounded number: its size does not
            // grow with the request.
            errors: match self {
                Self::Invalid { errors, .. }
                | Self::InvalidParameters(errors)
                | Self::InvalidReview(errors)
                | Self::InvalidWebhook(errors)
                | Self::InvalidListItem(errors)
                | Self::InvalidBacktest(errors) => {
                    Some(errors.iter().take(MAX_REPORTED_ERRORS).cloned().collect())
                }
                _ => None,
            },
            error_count: match self {
                Self::Invalid { total, .. } => Some(*total),
                Self::InvalidParameters(errors) => Some(errors.len()),
                _ => None,
            },
            results: match self {
                Self::NoneAccepted { results, .. } => Some(results.clone()),
                _ => None,
            },
            current: match self {
                Self::Stale { current, .. } => Some((**current).clone()),
                _ => None,
            },
            request_id: match self {
                Self::NoneAccepted { request_id, .. } => Some(request_id.clone()),
                _ => None,
            },
        }
    }
}

impl ApiError {
    /// The problem for an error answer that was made without one (an extractor's rejection, a
    /// nested service such as Swagger UI): only its status is known.
    pub fn for_bare_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound("no such resource".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            status => Self::Unreadable(status),
        }
    }

    /// Whether a response is a JSON document (a problem, or a body a handler chose).
    pub fn is_json(response: &Response) -> bool {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| {
                let value = value.as_bytes();
                value.starts_with(PROBLEM_JSON.as_bytes()) || value.starts_with(b"application/json")
            })
    }
}

/// The `ETag` of a resource at `version`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Port(error @ PortError::Unavailable { .. }) => {
                tracing::warn!(%error, "answering 503")
            }
            Self::Port(error) => tracing::error!(%error, "answering 500: a backend refused"),
            Self::Internal(error) => tracing::error!(%error, "answering 500"),
            _ => {}
        }
        let mut response = (self.status(), Json(self.to_problem())).into_response();
        response.extensions_mut().insert(ProblemSlug(self.slug()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyUnknownKeys => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            Self::Stale {
                current_version, ..
            } => {
                if let Ok(etag) = HeaderValue::from_str(&etag(current_version)) {
                    headers.insert(header::ETAG, etag);
                }
            }
            Self::Port(PortError::Unavailable { retry_after, .. }) => {
                // Whole seconds, rounded up: never sooner than the wait the port expects.
                let seconds = retry_after
                    .map_or(RETRY_AFTER_SECONDS, |wait| wait.as_secs_f64().ceil() as u32)
                    .max(RETRY_AFTER_SECONDS);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}
