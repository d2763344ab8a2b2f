//! Turning untrusted JSON into a [`Transaction`], reporting every failed field at once.
//!
//! The body is first split into its top-level fields as raw JSON text, so that amounts are read
//! exactly from their digits and every field can fail on its own. Shape and type problems are
//! found while extracting; the value rules are declared with `validator`; the rules that span
//! fields (decimal places against the currency, items adding up) run last.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use super::money::{self, DecimalTextError, MAX_AMOUNT};
use super::names::Named;
use super::transaction::{
    self, Item, MAX_FINGERPRINT_CHARS, MAX_ID_CHARS, PaymentMethod, Transaction, TransactionType,
    identifier_rule, is_identifier,
};

/// How far in the future a timestamp may be, to allow for clock skew between shop and us.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
pub const DEFAULT_CURRENCY: &str = "USD";
pub const MAX_ITEMS: u64 = 100;
pub const MAX_SKU_CHARS: u64 = 64;
pub const MAX_METADATA_PAIRS: usize = 20;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 256;

const KNOWN_FIELDS: [&str; 10] = [
    "transaction_id",
    "amount",
    "currency",
    "timestamp",
    "type",
    "customer_id",
    "payment_method",
    "payment_fingerprint",
    "items",
    "metadata",
];
const ITEM_FIELDS: [&str; 3] = ["sku", "quantity", "unit_price"];

/// One broken rule: which field (a JSON path such as `items[2].quantity`), which rule (a stable
/// machine-readable code), and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    #[cfg_attr(feature = "openapi", schema(example = "amount"))]
    pub field: String,
    #[cfg_attr(feature = "openapi", schema(example = "range"))]
    pub code: String,
    #[cfg_attr(feature = "openapi", schema(example = "must be greater than 0"))]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// Not JSON, or JSON that is not an object: nothing can be said per field.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A JSON object with one or more fields that break the rules: the first
    /// [`MAX_REPORTED_ERRORS`] of them, sorted by field, and how many there were in all.
    #[error("invalid transaction: {}", summary(errors))]
    Invalid {
        errors: Vec<FieldError>,
        total: usize,
    },
}

/// Free text (customer ids, SKUs, metadata) refuses control characters; this is the same rule
/// as an ECMA-262 pattern, for the API contract.
pub const NO_CONTROL_CHARACTERS_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// What a timestamp must look like: RFC 3339 with an offset, from 1970 on, with a `T` between
/// date and time and no leap second (those of past days are accepted too, but a pattern cannot
/// name them). The dates themselves are checked as dates.
pub const TIMESTAMP_PATTERN: &str = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// An answer lists at most this many broken rules (and says how many there were): enough to
/// fix a transaction, too few for a hostile body to turn into a large answer.
pub const MAX_REPORTED_ERRORS: usize = 20;

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|error| format!("{} {}", error.field, error.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses and validates a transaction. `now` bounds how far in the future its timestamp may be.
pub fn parse_transaction(json: &[u8], now: DateTime<Utc>) -> Result<Transaction, TransactionError> {
    let members: Members = serde_json::from_slice(json).map_err(|error| {
        TransactionError::Malformed(if error.is_data() {
            "the body must be a JSON object".to_owned()
        } else {
            error.to_string()
        })
    })?;
    let mut errors = Errors::default();
    let fields = members.into_fields("", &mut errors);
    let draft = Draft::extract(&fields, now, &mut errors);
    if let Err(rule_errors) = draft.validate() {
        flatten_validator_errors("", &rule_errors, &mut errors);
    }
    draft.check_across_fields(&mut errors);
    match draft.into_transaction() {
        Some(transaction) if errors.0.is_empty() => Ok(transaction),
        _ => {
            let mut list = errors.0;
            list.sort_by(|a, b| a.field.cmp(&b.field).then(a.code.cmp(&b.code)));
            list.dedup();
            let total = list.len();
            list.truncate(MAX_REPORTED_ERRORS);
            Err(TransactionError::Invalid {
                errors: list,
                total,
            })
        }
    }
}

/// A JSON object's members in the order written, repeated names included: serde's maps keep
/// only the last value of a repeated name, so `{"amount": 1, "amount": 5000}` would silently
/// be 5000 here while a proxy or log parser that takes the first value sees 1.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Members {
    /// The members by name; a name given twice is an error on that field (`prefix` is the
    /// object's own path), and none of its values is used.
    fn into_fields(self, prefix: &str, errors: &mut Errors) -> BTreeMap<String, Box<RawValue>> {
        let mut fields = BTreeMap::new();
        let mut repeated = Vec::new();
        for (name, value) in self.0 {
            match fields.entry(name) {
                std::collections::btree_map::Entry::Occupied(entry) => {
                    repeated.push(entry.key().clone())
                }
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(value);
                }
            }
        }
        for name in repeated {
            if fields.remove(&name).is_some() {
                errors.push(
                    format!("{prefix}{name}"),
                    "duplicate_key",
                    "appears more than once in the same object; send each field once",
                );
            }
        }
        fields
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        });
    }

    fn required(&mut self, field: &str) {
        self.push(field, "required", "is required");
    }
}

/// What could be read from each field; `None` where it was absent or failed to read (the
/// failure is already recorded). The value rules are declared here for `validator`.
#[derive(Debug, Default, Validate)]
struct Draft {
    transaction_id: Option<String>,
    #[validate(custom(function = "positive_and_at_most_max"))]
    amount: Option<Decimal>,
    currency: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    kind: Option<TransactionType>,
    #[validate(length(min = 1, max = MAX_ID_CHARS, code = "length"))]
    customer_id: Option<String>,
    payment_method: Option<PaymentMethod>,
    payment_fingerprint: Option<String>,
    #[validate(length(min = 1, max = MAX_ITEMS, code = "length"), nested)]
    items: Option<Vec<ItemDraft>>,
    #[validate(custom(function = "metadata_within_limits"))]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Serialize, Validate)]
struct ItemDraft {
    #[validate(length(min = 1, max = MAX_SKU_CHARS, code = "length"))]
    sku: Option<String>,
    #[validate(range(min = 1, code = "range"))]
    quantity: Option<u32>,
    #[validate(custom(function = "not_negative"))]
    unit_price: Option<Decimal>,
}

impl Draft {
    fn extract(
        fields: &BTreeMap<String, Box<RawValue>>,
        now: DateTime<Utc>,
        errors: &mut Errors,
    ) -> Self {
        for name in fields.keys() {
            if !KNOWN_FIELDS.contains(&name.as_str()) {
                errors.push(
                    name.as_str(),
                    "unknown_field",
                    "is not a transaction field; put extra data in `metadata`",
                );
            }
        }
        let field = |name: &str| {
            fields
                .get(name)
                .map(|raw| raw.get())
                .filter(|raw| *raw != "null")
        };
        let transaction_id = match field("transaction_id") {
            None => {
                errors.required("transaction_id");
                None
            }
            Some(raw) => read_transaction_id(raw, errors),
        };
        let amount = match field("amount") {
            None => {
                errors.required("amount");
                None
            }
            Some(raw) => read_decimal("amount", raw, errors),
        };
        let currency = match field("currency") {
            None => Some(DEFAULT_CURRENCY.to_owned()),
            Some(raw) => read_currency(raw, errors),
        };
        let timestamp = match field("timestamp") {
            None => {
                errors.required("timestamp");
                None
            }
            Some(raw) => read_timestamp(raw, now, errors),
        };
        let kind = match field("type") {
            None => Some(TransactionType::default()),
            Some(raw) => read_choice::<TransactionType>("type", raw, errors),
        };
        let payment_method = field("payment_method")
            .and_then(|raw| read_choice::<PaymentMethod>("payment_method", raw, errors));
        Draft {
            transaction_id,
            amount,
            currency,
            timestamp,
            kind,
            customer_id: field("customer_id")
                .and_then(|raw| read_string("customer_id", raw, errors)),
            payment_method,
            payment_fingerprint: field("payment_fingerprint")
                .and_then(|raw| read_fingerprint(raw, errors)),
            items: field("items").and_then(|raw| read_items(raw, errors)),
            metadata: field("metadata").and_then(|raw| read_metadata(raw, errors)),
        }
    }

    /// Rules that need more than one field; each runs only when its inputs were readable.
    fn check_across_fields(&self, errors: &mut Errors) {
        let Some(minor_units) = self.currency.as_deref().and_then(money::minor_units) else {
            return;
        };
        let too_precise = |value: Decimal| money::significant_scale(value) > minor_units;
        let places = format!(
            "must have at most {minor_units} decimal places for {}",
            self.currency.as_deref().unwrap_or_default()
        );
        if self.amount.is_some_and(too_precise) {
            errors.push("amount", "decimal_places", places.clone());
        }
        let Some(items) = &self.items else { return };
        for (index, item) in items.iter().enumerate() {
            if item.unit_price.is_some_and(too_precise) {
                errors.push(
                    format!("items[{index}].unit_price"),
                    "decimal_places",
                    places.clone(),
                );
            }
        }
        let lines: Option<Vec<(u32, Decimal)>> = items
            .iter()
            .map(|item| Some((item.quantity?, item.unit_price?)))
            .collect();
        if let (Some(lines), Some(amount)) = (lines, self.amount) {
            let total = lines
                .iter()
                .try_fold(Decimal::ZERO, |sum, (quantity, price)| {
                    price
                        .checked_mul(Decimal::from(*quantity))
                        .and_then(|line| sum.checked_add(line))
                });
            if total != Some(amount) {
                let shown = total.map_or_else(|| "too large".to_owned(), |t| t.to_string());
                errors.push(
                    "items",
                    "items_total",
                    format!(
                        "quantities times unit prices add up to {shown}, not the amount {amount}"
                    ),
                );
            }
        }
    }

    fn into_transaction(self) -> Option<Transaction> {
        let currency = self.currency?;
        let minor_units = money::minor_units(&currency)?;
        let items = match self.items {
            None => None,
            Some(items) => Some(
                items
                    .into_iter()
                    .map(|item| {
                        Some(Item {
                            sku: item.sku?,
                            quantity: item.quantity?,
                            unit_price: money::to_minor_unit_scale(item.unit_price?, minor_units),
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        Some(Transaction {
            transaction_id: self.transaction_id?,
            amount: money::to_minor_unit_scale(self.amount?, minor_units),
            currency,
            timestamp: self.timestamp?,
            kind: self.kind?,
            customer_id: self.customer_id,
            payment_method: self.payment_method,
            payment_fingerprint: self.payment_fingerprint,
            items,
            metadata: self.metadata,
        })
    }
}

fn read_transaction_id(raw: &str, errors: &mut Errors) -> Option<String> {
    if raw.starts_with('"') {
        let id: String = serde_json::from_str(raw).ok()?;
        if is_identifier(&id) {
            return Some(id);
        }
    } else if let Some(number) = whole_number::<u64>(raw) {
        // Integer ids of the original system are kept as strings: "12345".
        return Some(number.to_string());
    }
    errors.push(
        "transaction_id",
        "format",
        format!("{} or a non-negative integer", identifier_rule()),
    );
    None
}

/// A JSON number that is a whole number in range: `3`, and also `3.0` or `3e0`, which JSON
/// (and JSON Schema's `integer`) count as the same number.
fn whole_number<T: TryFrom<u64>>(raw: &str) -> Option<T> {
    if raw.starts_with('"') {
        return None;
    }
    let value = money::decimal_from_json_text(raw).ok()?;
    if !value.fract().is_zero() || value.is_sign_negative() {
        return None;
    }
    let whole: u64 = value.trunc().to_string().parse().ok()?;
    T::try_from(whole).ok()
}

fn read_decimal(field: &str, raw: &str, errors: &mut Errors) -> Option<Decimal> {
    match money::decimal_from_json_text(raw) {
        Ok(value) => Some(value),
        Err(DecimalTextError::WrongType) => {
            errors.push(
                field,
                "type",
                "must be a JSON number or a string holding a decimal such as \"19.99\"",
            );
            None
        }
        Err(DecimalTextError::NotExact) => {
            errors.push(
                field,
                "precision",
                "must be a decimal of at most 28 significant digits",
            );
            None
        }
    }
}

fn read_string(field: &str, raw: &str, errors: &mut Errors) -> Option<String> {
    let Ok(value) = serde_json::from_str::<String>(raw) else {
        errors.push(field, "type", "must be a string");
        return None;
    };
    if value.chars().any(char::is_control) {
        errors.push(
            field,
            "control_character",
            "must not contain control characters (such as \\u0000 or a line break)",
        );
        return None;
    }
    Some(value)
}

/// A shop-side hash of the card or account: never a card number, which the pipeline must not
/// store (PCI DSS), so one that looks like a PAN is refused rather than kept.
fn read_fingerprint(raw: &str, errors: &mut Errors) -> Option<String> {
    let field = "payment_fingerprint";
    let value = read_string(field, raw, errors)?;
    if transaction::looks_like_card_number(&value) {
        errors.push(
            field,
            "card_number",
            "looks like a card number (13-19 digits passing the Luhn check); send a stable \
             hash of the card made on the shop's side, never the number",
        );
        return None;
    }
    if !transaction::fits_fingerprint(&value) {
        errors.push(
            field,
            "format",
            format!("must be 1-{MAX_FINGERPRINT_CHARS} characters from A-Z a-z 0-9 . _ : + / = -"),
        );
        return None;
    }
    Some(value)
}

/// One of an enum's names, as serde spells them.
fn read_choice<T: Named>(field: &str, raw: &str, errors: &mut Errors) -> Option<T> {
    let value = read_string(field, raw, errors)?;
    let choice = T::from_name(&value);
    if choice.is_none() {
        errors.push(
            field,
            "one_of",
            format!("must be one of {}", T::names().join(", ")),
        );
    }
    choice
}

fn read_currency(raw: &str, errors: &mut Errors) -> Option<String> {
    let code = read_string("currency", raw, errors)?;
    if money::is_payment_currency(&code) {
        Some(code)
    } else {
        errors.push(
            "currency",
            "iso_4217",
            "must be an ISO 4217 alphabetic currency code with minor units, such as USD",
        );
        None
    }
}

fn read_timestamp(raw: &str, now: DateTime<Utc>, errors: &mut Errors) -> Option<DateTime<Utc>> {
    let text = read_string("timestamp", raw, errors)?;
    let Ok(parsed) = DateTime::parse_from_rfc3339(&text) else {
        errors.push(
            "timestamp",
            "rfc3339",
            "must be an RFC 3339 date-time with an offset, such as 2024-08-09T12:34:56Z",
        );
        return None;
    };
    let timestamp = parsed.with_timezone(&Utc);
    if timestamp < earliest_timestamp() {
        errors.push(
            "timestamp",
            "too_early",
            format!("must not be before {EARLIEST_TIMESTAMP}"),
        );
        return None;
    }
    if is_leap_second(timestamp)
        && !LEAP_SECOND_DAYS.contains(&timestamp.date_naive().to_string().as_str())
    {
        errors.push(
            "timestamp",
            "leap_second",
            "has a leap second (:60) on a day that had none",
        );
        return None;
    }
    if timestamp > now + MAX_CLOCK_SKEW {
        errors.push(
            "timestamp",
            "not_future",
            format!(
                "must not be more than {} minutes in the future",
                MAX_CLOCK_SKEW.num_minutes()
            ),
        );
        return None;
    }
    Some(timestamp)
}

/// The earliest timestamp accepted: the Unix epoch. Nothing earlier is a card payment, and year
/// 0000 or 1969 is a default value or a bug upstream, not a transaction.
pub const EARLIEST_TIMESTAMP: &str = "1970-01-01T00:00:00Z";

fn earliest_timestamp() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(EARLIEST_TIMESTAMP)
        .expect("a valid constant")
        .with_timezone(&Utc)
}

/// chrono accepts `:60` in any minute and keeps it as a second of more than 10^9 nanoseconds.
fn is_leap_second(timestamp: DateTime<Utc>) -> bool {
    use chrono::Timelike;
    timestamp.nanosecond() >= 1_000_000_000
}

/// The days (UTC) that ended with a leap second, 23:59:60, as the IERS announced them; none
/// has been added since 2016.
const LEAP_SECOND_DAYS: [&str; 27] = [
    "1972-06-30",
    "1972-12-31",
    "1973-12-31",
    "1974-12-31",
    "1975-12-31",
    "1976-12-31",
    "1977-12-31",
    "1978-12-31",
    "1979-12-31",
    "1981-06-30",
    "1982-06-30",
    "1983-06-30",
    "1985-06-30",
    "1987-12-31",
    "1989-12-31",
    "1990-12-31",
    "1992-06-30",
    "1993-06-30",
    "1994-06-30",
    "1995-12-31",
    "1997-06-30",
    "1998-12-31",
    "2005-12-31",
    "2008-12-31",
    "2012-06-30",
    "2015-06-30",
    "2016-12-31",
];

fn read_items(raw: &str, errors: &mut Errors) -> Option<Vec<ItemDraft>> {
    let Ok(list) = serde_json::from_str::<Vec<Box<RawValue>>>(raw) else {
        errors.push("items", "type", "must be an array of items");
        return None;
    };
    if list.len() as u64 > MAX_ITEMS {
        // A list that breaks its own length rule is not read item by item: the length rule
        // (declared on `Draft`) is the one error worth reporting.
        return Some(list.iter().map(|_| ItemDraft::default()).collect());
    }
    let items = list
        .iter()
        .enumerate()
        .map(|(index, raw_item)| read_item(index, raw_item.get(), errors))
        .collect();
    Some(items)
}

fn read_item(index: usize, raw: &str, errors: &mut Errors) -> ItemDraft {
    let path = |name: &str| format!("items[{index}].{name}");
    let Ok(members) = serde_json::from_str::<Members>(raw) else {
        errors.push(
            format!("items[{index}]"),
            "type",
            "must be an object with sku, quantity and unit_price",
        );
        return ItemDraft::default();
    };
    let fields = members.into_fields(&format!("items[{index}]."), errors);
    for name in fields
        .keys()
        .filter(|name| !ITEM_FIELDS.contains(&name.as_str()))
    {
        errors.push(
            path(name),
            "unknown_field",
            "is not an item field (sku, quantity, unit_price)",
        );
    }
    let field = |name: &str| {
        fields
            .get(name)
            .map(|raw| raw.get())
            .filter(|raw| *raw != "null")
    };
    let mut item = ItemDraft::default();
    match field("sku") {
        None => errors.required(&path("sku")),
        Some(raw) => item.sku = read_string(&path("sku"), raw, errors),
    }
    match field("quantity") {
        None => errors.required(&path("quantity")),
        Some(raw) => match whole_number::<u32>(raw) {
            Some(quantity) => item.quantity = Some(quantity),
            None => errors.push(
                path("quantity"),
                "type",
                "must be a whole number from 1 to 4294967295",
            ),
        },
    }
    match field("unit_price") {
        None => errors.required(&path("unit_price")),
        Some(raw) => item.unit_price = read_decimal(&path("unit_price"), raw, errors),
    }
    item
}

fn read_metadata(raw: &str, errors: &mut Errors) -> Option<BTreeMap<String, String>> {
    let Ok(members) = serde_json::from_str::<Members>(raw) else {
        errors.push("metadata", "type", "must be an object of string values");
        return None;
    };
    let fields = members.into_fields("metadata.", errors);
    let mut metadata = BTreeMap::new();
    for (key, value) in fields {
        let field = format!("metadata.{key}");
        if key.chars().any(char::is_control) {
            errors.push(
                &field,
                "control_character",
                "keys must not contain control characters",
            );
            continue;
        }
        if let Some(text) = read_string(&field, value.get(), errors) {
            metadata.insert(key, text);
        }
    }
    Some(metadata)
}

fn positive_and_at_most_max(amount: &Decimal) -> Result<(), ValidationError> {
    if amount.is_sign_negative() || amount.is_zero() {
        return Err(rule("range", "must be greater than 0".to_owned()));
    }
    if *amount > MAX_AMOUNT {
        return Err(rule("range", format!("must be at most {MAX_AMOUNT}")));
    }
    Ok(())
}

fn not_negative(price: &Decimal) -> Result<(), ValidationError> {
    if price.is_sign_negative() && !price.is_zero() {
        return Err(rule("range", "must be 0 or more".to_owned()));
    }
    Ok(())
}

fn metadata_within_limits(metadata: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(rule(
            "length",
            format!("must hold at most {MAX_METADATA_PAIRS} pairs"),
        ));
    }
    if metadata
        .keys()
        .any(|key| key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS)
    {
        return Err(rule(
            "key_length",
            format!("keys must be 1-{MAX_METADATA_KEY_CHARS} characters"),
        ));
    }
    if metadata
        .values()
        .any(|value| value.chars().count() > MAX_METADATA_VALUE_CHARS)
    {
        return Err(rule(
            "value_length",
            format!("values must be at most {MAX_METADATA_VALUE_CHARS} characters"),
        ));
    }
    Ok(())
}

fn rule(code: &'static str, message: String) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Owned(message))
}

/// The sentence for a rule `validator` checked, built from the limits it reports (which are
/// the constants the rule was declared with).
fn describe_rule(path: &str, error: &ValidationError) -> String {
    if let Some(message) = &error.message {
        return message.to_string();
    }
    let param = |name: &str| {
        error
            .params
            .get(name)
            .map(|value| value.to_string())
            .unwrap_or_default()
    };
    match error.code.as_ref() {
        "length" if path == "items" => format!("must hold {}-{} items", param("min"), param("max")),
        "length" => format!("must be {}-{} characters", param("min"), param("max")),
        "range" => format!("must be at least {}", param("min")),
        code => format!("breaks the rule {code}"),
    }
}

/// `validator` reports nested structs and lists as a tree; the API reports flat JSON paths.
fn flatten_validator_errors(prefix: &str, tree: &ValidationErrors, out: &mut Errors) {
    for (field, kind) in tree.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for error in list {
                    out.push(path.as_str(), &error.code, describe_rule(&path, error));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten_validator_errors(&path, inner, out),
            ValidationErrorsKind::List(entries) => {
                for (index, inner) in entries {
                    flatten_validator_errors(&format!("{path}[{index}]"), inner, out);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
