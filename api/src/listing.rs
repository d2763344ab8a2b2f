//! `GET /transactions`: reading the query string strictly (every bad parameter is named, and
//! an unknown one is refused rather than ignored). The cursor is read with the key that signed
//! it (`crate::cursor`).

use infra::domain::rules::backtest::Period;
use std::collections::BTreeMap;

use axum::extract::{FromRef, FromRequestParts, RawQuery};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use infra::domain::listing::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use infra::domain::money::{
    MAX_MINOR_UNITS, decimal_from_plain_text, minor_units, significant_scale,
};
use infra::domain::transaction::{fits_fingerprint, looks_like_card_number};
use infra::domain::{
    AlertFilter, AlertListFilters, FieldError, ListFilters, MAX_FINGERPRINT_CHARS, MAX_ID_CHARS,
    Named, ReviewStatus, TransactionType, Verdict, is_identifier,
};

use crate::cursor::{Cursor, CursorKey};
use crate::error::ApiError;
use crate::limits::MAX_PAGE_BYTES;

/// The items of a page as shown, up to `MAX_PAGE_BYTES` of them (always at least one); when
/// some are left out, the position after which the next page starts. Each item comes with its
/// position in the walk.
pub fn within_page_bytes<P, T: serde::Serialize>(
    items: impl IntoIterator<Item = (P, T)>,
) -> (Vec<T>, Option<P>) {
    let mut shown = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for (position, item) in items {
        bytes += serde_json::to_vec(&item).map_or(0, |json| json.len());
        if bytes > MAX_PAGE_BYTES && !shown.is_empty() {
            return (shown, last);
        }
        shown.push(item);
        last = Some(position);
    }
    (shown, None)
}

/// The parameters a list takes, in the order the contract documents them.
pub const PARAMETERS: [&str; 12] = [
    "limit",
    "cursor",
    "from",
    "to",
    "type",
    "currency",
    "customer_id",
    "payment_fingerprint",
    "min_amount",
    "max_amount",
    "alert",
    "conflicted",
];

/// A list request, read from the query string.
#[derive(Debug)]
pub struct ListParams {
    pub filters: ListFilters,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Parameter names are echoed in errors only this far: a 4 KB name is not sent back whole.
const MAX_ECHOED_NAME: usize = 64;

fn problem(field: &str, code: &str, message: &str) -> FieldError {
    let field = match field.char_indices().nth(MAX_ECHOED_NAME) {
        Some((cut, _)) => format!("{}…", &field[..cut]),
        None => field.to_owned(),
    };
    FieldError {
        field,
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListParams
where
    CursorKey: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        ListParams::parse(query.as_deref().unwrap_or(""), &CursorKey::from_ref(state))
    }
}

/// The query's parameters by name, each at most once and each one of `allowed`; every other
/// is an error naming it.
fn given_parameters(
    query: &str,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            errors.push(problem(
                &name,
                "unknown_parameter",
                &format!(
                    "is not a parameter of this list; use {}",
                    allowed.join(", ")
                ),
            ));
        } else if given.insert(name.to_string(), value.into_owned()).is_some() {
            errors.push(problem(&name, "repeated", "is given more than once"));
        }
    }
    given
}

impl ListParams {
    pub fn parse(query: &str, cursor_key: &CursorKey) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let given = given_parameters(query, &PARAMETERS, &mut errors);
        let mut read = Reader {
            given: &given,
            errors: &mut errors,
        };
        let limit = read.limit();
        let (from, to) = read.time_range();
        let kind = read.parse(
            "type",
            TransactionType::from_name,
            &one_of::<TransactionType>(),
        );
        let currency = read.parse(
            "currency",
            |code| minor_units(code).map(|_| code.to_owned()),
            "must be an ISO 4217 alphabetic currency code with minor units, such as USD",
        );
        let customer_id = read.short_text("customer_id");
        let payment_fingerprint = read.parse(
            "payment_fingerprint",
            |text| {
                let fits = fits_fingerprint(text) && !looks_like_card_number(text);
                fits.then(|| text.to_owned())
            },
            &format!(
                "must be 1-{MAX_FINGERPRINT_CHARS} characters from A-Z a-z 0-9 . _ : + / = -, \
                 and never a card number"
            ),
        );
        let places = currency
            .as_deref()
            .and_then(minor_units)
            .unwrap_or(MAX_MINOR_UNITS);
        let amount_rule = format!(
            "must be a decimal such as 100.50, 0 or more, with at most {places} decimal places{}",
            currency
                .as_ref()
                .map(|c| format!(" for {c}"))
                .unwrap_or_default()
        );
        // Read exactly, as a transaction's amount is: a value that would round is refused.
        let amount = |text: &str| {
            let plain = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            let value = decimal_from_plain_text(text).ok().filter(|_| plain)?;
            (significant_scale(value) <= places).then_some(value)
        };
        let min_amount = read.parse("min_amount", amount, &amount_rule);
        let max_amount = read.parse("max_amount", amount, &amount_rule);
        let alert = read.parse("alert", AlertFilter::from_name, &one_of::<AlertFilter>());
        let conflicted = read.parse(
            "conflicted",
            |text| match text {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            "must be true or false",
        );
        let cursor = read.cursor(cursor_key);
        if let (Some(min), Some(max)) = (min_amount, max_amount)
            && min > max
        {
            errors.push(problem(
                "min_amount",
                "range",
                "must not be more than `max_amount`",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::InvalidParameters(errors));
        }
        Ok(ListParams {
            filters: ListFilters {
                from,
                to,
                kind,
                currency,
                customer_id,
                payment_fingerprint,
                min_amount,
                max_amount,
                alert,
                conflicted,
            },
            limit,
            cursor,
        })
    }
}

const TIME_RULE: &str =
    "must be an RFC 3339 date-time with an offset, such as 2024-08-09T12:34:56Z (encode + as %2B)";

fn one_of<T: Named>() -> String {
    format!("must be one of {}", T::names().join(", "))
}

/// RFC 3339; a `+` of an offset that arrived unencoded (and so as a space) is taken back.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let parse = |text: &str| DateTime::parse_from_rfc3339(text).ok();
    parse(text)
        .or_else(|| parse(&text.replacen(' ', "+", 1)))
        .map(|time| time.with_timezone(&Utc))
}

struct Reader<'a> {
    given: &'a BTreeMap<String, String>,
    errors: &'a mut Vec<FieldError>,
}

impl Reader<'_> {
    fn limit(&mut self) -> usize {
        self.parse(
            "limit",
            |text| {
                let limit: usize = text.parse().ok()?;
                (1..=MAX_PAGE_SIZE).contains(&limit).then_some(limit)
            },
            &format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
        )
        .unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// `from` and `to`, `from` before `to`.
    fn time_range(&mut self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let from = self.parse("from", parse_time, TIME_RULE);
        let to = self.parse("to", parse_time, TIME_RULE);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            self.errors
                .push(problem("from", "range", "must be before `to`"));
        }
        (from, to)
    }

    fn cursor(&mut self, cursor_key: &CursorKey) -> Option<Cursor> {
        self.parse(
            "cursor",
            |text| Cursor::decode(cursor_key, text),
            "is not a cursor this API gave; use next_cursor from the previous page",
        )
    }

    /// A parameter of 1-64 characters without control characters (a customer, a rule).
    fn short_text(&mut self, name: &str) -> Option<String> {
        self.parse(
            name,
            |text| {
                let fits = (1..=MAX_ID_CHARS as usize).contains(&text.chars().count())
                    && !text.chars().any(char::is_control);
                fits.then(|| text.to_owned())
            },
            &format!("must be 1-{MAX_ID_CHARS} characters without control characters"),
        )
    }

    /// A parameter that names an id: 1-64 characters of the id alphabet.
    fn identifier(&mut self, name: &str) -> Option<String> {
        self.parse(
            name,
            |text| is_identifier(text).then(|| text.to_owned()),
            &format!("must be {}", infra::domain::transaction::identifier_rule()),
        )
    }

    /// The parameter read by `read`, or an error naming it with `rule`.
    fn parse<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&str) -> Option<T>,
        rule: &str,
    ) -> Option<T> {
        let text = self.given.get(name)?;
        let value = read(text);
        if value.is_none() {
            self.errors.push(problem(name, "invalid", rule));
        }
        value
    }
}

/// `from` and `to` alone (a backtest's period), as strictly as a list reads them.
pub fn parse_period(query: &str) -> Result<Period, ApiError> {
    let mut errors = Vec::new();
    let given = given_parameters(query, &["from", "to"], &mut errors);
    let mut read = Reader {
        given: &given,
        errors: &mut errors,
    };
    let (from, to) = read.time_range();
    if errors.is_empty() {
        Ok(Period { from, to })
    } else {
        Err(ApiError::InvalidParameters(errors))
    }
}

/// `minutes` of `GET /stats`: how many whole minutes, up to the current one (60 by default).
pub fn parse_stats_minutes(query: &str) -> Result<u32, ApiError> {
    let mut errors = Vec::new();
    let given = given_parameters(query, &["minutes"], &mut errors);
    let mut read = Reader {
        given: &given,
        errors: &mut errors,
    };
    let max = infra::domain::stats::MAX_MINUTES;
    let minutes = read.parse(
        "minutes",
        |text| {
            let minutes: u32 = text.parse().ok()?;
            (1..=max).contains(&minutes).then_some(minutes)
        },
        &format!("must be a whole number from 1 to {max}"),
    );
    if errors.is_empty() {
        Ok(minutes.unwrap_or(DEFAULT_STATS_MINUTES))
    } else {
        Err(ApiError::InvalidParameters(errors))
    }
}

pub const DEFAULT_STATS_MINUTES: u32 = 60;

/// `limit` and `cursor` of a shop's list (`GET /lists/{name}`): the cursor is the last value
/// of the page before, base64url, as `next_cursor` gave it.
pub fn parse_list_page(query: &str) -> Result<(usize, Option<String>), ApiError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let mut errors = Vec::new();
    let given = given_parameters(query, &["limit", "cursor"], &mut errors);
    let mut read = Reader {
        given: &given,
        errors: &mut errors,
    };
    let limit = read.limit();
    let after = read.parse(
        "cursor",
        |text| {
            let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
            let value = String::from_utf8(bytes).ok()?;
            infra::domain::lists::check_list_value(&value).ok()?;
            Some(value)
        },
        "is not a cursor this API gave; use next_cursor from the previous page",
    );
    if errors.is_empty() {
        Ok((limit, after))
    } else {
        Err(ApiError::InvalidParameters(errors))
    }
}

/// The parameters of `GET /alerts`, in the order the contract documents them.
pub const ALERT_PARAMETERS: [&str; 8] = [
    "limit",
    "cursor",
    "status",
    "rule",
    "verdict",
    "from",
    "to",
    "transaction_id",
];

/// An alert list request, read from the query string as strictly as the transaction list.
#[derive(Debug)]
pub struct AlertListParams {
    pub filters: AlertListFilters,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl<S: Send + Sync> FromRequestParts<S> for AlertListParams
where
    CursorKey: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        AlertListParams::parse(query.as_deref().unwrap_or(""), &CursorKey::from_ref(state))
    }
}

impl AlertListParams {
    pub fn parse(query: &str, cursor_key: &CursorKey) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let given = given_parameters(query, &ALERT_PARAMETERS, &mut errors);
        let mut read = Reader {
            given: &given,
            errors: &mut errors,
        };
        let limit = read.limit();
        let (from, to) = read.time_range();
        let status = read.parse("status", ReviewStatus::from_name, &one_of::<ReviewStatus>());
        let verdict = read.parse("verdict", Verdict::from_name, &one_of::<Verdict>());
        let rule = read.short_text("rule");
        let transaction_id = read.identifier("transaction_id");
        let cursor = read.cursor(cursor_key);
        if !errors.is_empty() {
            return Err(ApiError::InvalidParameters(errors));
        }
        Ok(AlertListParams {
            filters: AlertListFilters {
                status,
                rule,
                verdict,
                from,
                to,
                transaction_id,
            },
            limit,
            cursor,
        })
    }
}
