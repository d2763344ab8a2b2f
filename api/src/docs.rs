//! Schemas that exist only to document the contract. The parser in `infra::domain` is the
//! authority on what is accepted; these state its rules for OpenAPI and Swagger UI, built from
//! the same constants, so that a client generated from the contract does not send what will be
//! refused. `api/tests/openapi.rs` checks the two against each other.
//!
//! What JSON Schema cannot state is left to the prose: decimal places that depend on the
//! currency (`x-minor-units` lists them), items adding up to the amount, a timestamp at most
//! five minutes ahead, and a leap second only on a day that had one.

use infra::domain::money::{MAX_AMOUNT, payment_currencies};
use infra::domain::parse::{
    EARLIEST_TIMESTAMP, MAX_ITEMS, MAX_METADATA_KEY_CHARS, MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS, MAX_SKU_CHARS, NO_CONTROL_CHARACTERS_PATTERN, TIMESTAMP_PATTERN,
};
use infra::domain::{
    FINGERPRINT_PATTERN, MAX_FINGERPRINT_CHARS, MAX_ID_CHARS, Named, PaymentMethod, TransactionType,
};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, schema};
use utoipa::{PartialSchema, ToSchema};

/// The characters of a transaction id, as `is_identifier` allows them.
pub const IDENTIFIER_PATTERN: &str = "^[A-Za-z0-9._:-]+$";
/// A positive decimal written out (no sign, no exponent, not all zeros).
const POSITIVE_DECIMAL_PATTERN: &str = "^(0*[1-9][0-9]*(\\.[0-9]+)?|0+\\.[0-9]*[1-9][0-9]*)$";
/// A decimal of zero or more written out.
const DECIMAL_PATTERN: &str = "^[0-9]+(\\.[0-9]+)?$";

/// A transaction as a shop sends it.
pub struct NewTransaction;

impl PartialSchema for NewTransaction {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A transaction as a shop sends it. Unknown fields are rejected; extras belong \
                 in `metadata`. A field sent as `null` counts as absent. A name may appear only \
                 once in each object.",
            ))
            .property("transaction_id", transaction_id())
            .required("transaction_id")
            .property("amount", amount())
            .required("amount")
            .property("currency", currency())
            .property("timestamp", timestamp())
            .required("timestamp")
            .property(
                "type",
                choice::<TransactionType>("purchase", "The kind of transaction."),
            )
            .property(
                "customer_id",
                nullable(free_text(
                    1,
                    MAX_ID_CHARS as usize,
                    "The shop's id of the customer.",
                )),
            )
            .property(
                "payment_method",
                choice::<PaymentMethod>("card", "How it was paid."),
            )
            .property("payment_fingerprint", payment_fingerprint())
            .property("items", items())
            .property("metadata", nullable_object(metadata()))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for NewTransaction {}

fn payment_fingerprint() -> ObjectBuilder {
    nullable(ObjectBuilder::new())
        .min_length(Some(1))
        .max_length(Some(MAX_FINGERPRINT_CHARS))
        .pattern(Some(FINGERPRINT_PATTERN))
        .description(Some(format!(
            "A stable hash of the card or account paid with, made on the shop's side (for \
             velocity rules per card). 1-{MAX_FINGERPRINT_CHARS} characters from \
             `A-Z a-z 0-9 . _ : + / = -`. Never a card number: 13-19 digits passing the Luhn \
             check are refused (`card_number`)."
        )))
        .examples([serde_json::json!("fp_9f86d081884c7d65")])
}

fn nullable(schema: ObjectBuilder) -> ObjectBuilder {
    schema.schema_type(schema::SchemaType::from_iter([Type::String, Type::Null]))
}

fn nullable_object(schema: ObjectBuilder) -> ObjectBuilder {
    schema.schema_type(schema::SchemaType::from_iter([Type::Object, Type::Null]))
}

fn transaction_id() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ID_CHARS as usize))
                .pattern(Some(IDENTIFIER_PATTERN)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u64::MAX)),
        )
        .description(Some(format!(
            "1-{MAX_ID_CHARS} characters from `A-Z a-z 0-9 . _ : -`, or a non-negative \
             integer (kept as a string)."
        )))
        .examples([serde_json::json!("order-1001")])
        .into()
}

fn amount() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(POSITIVE_DECIMAL_PATTERN)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0))
                .maximum(Some(MAX_AMOUNT.to_string().parse::<f64>().unwrap_or(1e9))),
        )
        .description(Some(format!(
            "Greater than 0 and at most {MAX_AMOUNT}, with no more decimal places than the \
             currency has minor units (USD 2, JPY 0, KWD 3; see `x-minor-units` on \
             `currency`). Read exactly: a number is never rounded; send a string to keep it \
             exact in every JSON library."
        )))
        .examples([serde_json::json!("100.00")])
        .into()
}

fn currency() -> ObjectBuilder {
    let currencies = payment_currencies();
    let minor_units: serde_json::Map<String, serde_json::Value> = currencies
        .iter()
        .map(|(code, units)| (code.clone(), serde_json::json!(units)))
        .collect();
    nullable(ObjectBuilder::new())
        .enum_values(Some(currencies.iter().map(|(code, _)| code.clone())))
        .description(Some(
            "ISO 4217 alphabetic code of a currency with minor units; USD when absent.",
        ))
        .default(Some(serde_json::json!("USD")))
        .examples([serde_json::json!("USD")])
        .extensions(Some(
            ExtensionsBuilder::new()
                .add("x-minor-units", serde_json::Value::Object(minor_units))
                .build(),
        ))
}

fn timestamp() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(TIMESTAMP_PATTERN))
        .description(Some(format!(
            "When it happened: RFC 3339 with an offset, not before {EARLIEST_TIMESTAMP} and \
             at most 5 minutes in the future; a leap second (`:60`) only on a day that had one."
        )))
        .examples([serde_json::json!("2024-08-09T12:34:56Z")])
}

fn choice<T: Named>(example: &str, what: &str) -> ObjectBuilder {
    nullable(ObjectBuilder::new())
        .enum_values(Some(T::names()))
        .description(Some(what))
        .examples([serde_json::json!(example)])
}

fn free_text(min: usize, max: usize, what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(NO_CONTROL_CHARACTERS_PATTERN))
        .description(Some(format!(
            "{what} {min}-{max} characters, no control characters."
        )))
}

fn items() -> ArrayBuilder {
    let unit_price = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(DECIMAL_PATTERN)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0)),
        )
        .description(Some(
            "0 or more, with no more decimal places than the currency has minor units.",
        ))
        .examples([serde_json::json!("19.99")]);
    let item = ObjectBuilder::new()
        .property("sku", free_text(1, MAX_SKU_CHARS as usize, "The product."))
        .required("sku")
        .property(
            "quantity",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(u32::MAX)),
        )
        .required("quantity")
        .property("unit_price", unit_price)
        .required("unit_price")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    ArrayBuilder::new()
        .schema_type(schema::SchemaType::from_iter([Type::Array, Type::Null]))
        .items(item)
        .min_items(Some(1))
        .max_items(Some(MAX_ITEMS as usize))
        .description(Some(format!(
            "1-{MAX_ITEMS} items whose quantity times unit price add up to `amount` exactly."
        )))
}

fn metadata() -> ObjectBuilder {
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_METADATA_VALUE_CHARS))
        .pattern(Some(NO_CONTROL_CHARACTERS_PATTERN));
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_METADATA_KEY_CHARS))
        .pattern(Some(NO_CONTROL_CHARACTERS_PATTERN));
    ObjectBuilder::new()
        .max_properties(Some(MAX_METADATA_PAIRS))
        .property_names(Some(key))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
        .description(Some(format!(
            "At most {MAX_METADATA_PAIRS} string pairs; keys 1-{MAX_METADATA_KEY_CHARS} \
             characters, values up to {MAX_METADATA_VALUE_CHARS}; no control characters."
        )))
}

/// A batch of transactions, each validated on its own.
pub struct NewBatch;

impl PartialSchema for NewBatch {
    fn schema() -> RefOr<Schema> {
        let transactions = ArrayBuilder::new()
            .items(NewTransaction::schema())
            .min_items(Some(1))
            .max_items(Some(crate::limits::MAX_BATCH_ITEMS))
            .description(Some(format!(
                "1-{} transactions, in at most {} bytes in all.",
                crate::limits::MAX_BATCH_ITEMS,
                crate::limits::MAX_BATCH_BYTES
            )));
        ObjectBuilder::new()
            .property("transactions", transactions)
            .required("transactions")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for NewBatch {}

/// `currency` in a query: one of the codes a transaction may have.
pub struct QueryCurrency;

impl PartialSchema for QueryCurrency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(payment_currencies().into_iter().map(|(code, _)| code)))
            .into()
    }
}

impl ToSchema for QueryCurrency {}

/// The query parameters of `GET /transactions`, for the contract (the reader is
/// `listing::ListParams`, which refuses anything else by name).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by the derive only
pub struct ListParamsDoc {
    /// Transactions per page, 1-100.
    #[param(minimum = 1, maximum = 100, example = 20, default = 20)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page, with the same filters; absent for the first page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// Only transactions at or after this time (RFC 3339; encode `+` as `%2B`).
    #[param(value_type = Option<String>, format = DateTime, example = "2024-08-09T00:00:00Z")]
    from: Option<String>,
    /// Only transactions before this time (RFC 3339); after `from`.
    #[param(value_type = Option<String>, format = DateTime, example = "2024-08-10T00:00:00Z")]
    to: Option<String>,
    /// Only this kind.
    #[param(value_type = Option<TransactionType>)]
    r#type: Option<String>,
    /// Only this currency (ISO 4217).
    #[param(value_type = Option<QueryCurrency>, inline, example = "USD")]
    currency: Option<String>,
    /// Only this customer's (1-64 characters).
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        example = "cust-42"
    )]
    customer_id: Option<String>,
    /// Only those paid with this card or account: its `payment_fingerprint` (never a card
    /// number, which is refused).
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._:+/=-]+$",
        example = "fp_9f86d081884c7d65"
    )]
    payment_fingerprint: Option<String>,
    /// Amount at least this (exact decimal, at most as many decimal places as `currency` has,
    /// 4 without it).
    #[param(pattern = "^[0-9]+(\\.[0-9]+)?$", example = "1000")]
    min_amount: Option<String>,
    /// Amount at most this (exact decimal); not below `min_amount`.
    #[param(pattern = "^[0-9]+(\\.[0-9]+)?$", example = "5000.00")]
    max_amount: Option<String>,
    /// `none`: raised no alert; `pending`: an alert not yet published; `sent`: alerts all
    /// published; `any`: raised an alert.
    #[param(value_type = Option<infra::domain::AlertFilter>, example = "any")]
    alert: Option<String>,
    /// `true`: re-sent with another payload at least once; `false`: never.
    #[param(example = false)]
    conflicted: Option<bool>,
}

/// The query parameters of `GET /alerts`, for the contract (read by `listing::AlertListParams`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by the derive only
pub struct AlertListParamsDoc {
    /// Alerts per page, 1-100.
    #[param(minimum = 1, maximum = 100, example = 20, default = 20)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page, with the same filters; absent for the first page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
    /// Only alerts whose review is at this status.
    #[param(value_type = Option<infra::domain::ReviewStatus>, example = "open")]
    status: Option<String>,
    /// Only alerts of this rule.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        example = "amount_exceeds_threshold"
    )]
    rule: Option<String>,
    /// Only alerts with this verdict.
    #[param(value_type = Option<infra::domain::Verdict>, example = "fraud")]
    verdict: Option<String>,
    /// Only alerts raised at or after this time (RFC 3339; encode `+` as `%2B`).
    #[param(value_type = Option<String>, format = DateTime, example = "2024-08-09T00:00:00Z")]
    from: Option<String>,
    /// Only alerts raised before this time (RFC 3339); after `from`.
    #[param(value_type = Option<String>, format = DateTime, example = "2024-08-10T00:00:00Z")]
    to: Option<String>,
    /// Only the alerts of this transaction.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9._:-]+$",
        example = "order-1001"
    )]
    transaction_id: Option<String>,
}

/// A review of an alert, as `routes::alerts::ReviewRequest` reads it: one shape per status,
/// nothing else in it.
pub struct ReviewRequestDoc;

impl PartialSchema for ReviewRequestDoc {
    fn schema() -> RefOr<Schema> {
        use infra::domain::inbox::MAX_NOTE_CHARS;
        use infra::domain::{ReviewStatus, Verdict};
        let shape = |status: ReviewStatus, verdict: Option<bool>, what: &str| {
            let note = nullable(ObjectBuilder::new())
                .max_length(Some(MAX_NOTE_CHARS))
                .description(Some("Why, for whoever reads the history."));
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(what))
                .property(
                    "status",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([status.name()])),
                )
                .required("status")
                .property("note", note)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if let Some(required) = verdict {
                let mut names: Vec<serde_json::Value> =
                    Verdict::names().into_iter().map(Into::into).collect();
                object = if required {
                    let values = ObjectBuilder::new().enum_values(Some(names));
                    object
                        .property("verdict", values.schema_type(Type::String))
                        .required("verdict")
                } else {
                    names.push(serde_json::Value::Null);
                    let values = ObjectBuilder::new().enum_values(Some(names));
                    object.property("verdict", nullable(values))
                };
            }
            object
        };
        OneOfBuilder::new()
            .item(shape(
                ReviewStatus::Open,
                None,
                "Reopen: the verdict is cleared.",
            ))
            .item(shape(
                ReviewStatus::Acknowledged,
                Some(false),
                "Someone is on it; a verdict may be given already.",
            ))
            .item(shape(
                ReviewStatus::Resolved,
                Some(true),
                "Done with, with a verdict.",
            ))
            .into()
    }
}

impl ToSchema for ReviewRequestDoc {}

/// The headers a review takes, for the contract.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by the derive only
pub struct ReviewHeadersDoc {
    /// The `ETag` the review is based on (quoted, as sent; the bare number is taken too); a
    /// stale one is a 412.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^(\*|(W/)?("[0-9]+"|[0-9]+)(, *(W/)?("[0-9]+"|[0-9]+))*)$"#
    )]
    if_match: Option<String>,
}

/// A list item's path, for the contract (read by `routes::lists`, which checks both).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the derive only
pub struct ListItemPathDoc {
    /// The list: 1-64 characters from `A-Z a-z 0-9 . _ : -`.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,64}$", example = "blocked_cards")]
    name: String,
    /// The value, percent-encoded: 1-256 characters without control characters, never a card
    /// number (13-19 digits passing the Luhn check).
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,256}$",
        example = "fp_7f3a"
    )]
    value: String,
}

/// A list's path, for the contract (read by `routes::lists`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the derive only
pub struct ListNamePathDoc {
    /// The list: 1-64 characters from `A-Z a-z 0-9 . _ : -`.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,64}$", example = "blocked_cards")]
    name: String,
}

/// A list's page, for the contract (read by `listing::parse_list_page`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by the derive only
pub struct ListPageParamsDoc {
    /// Values per page, 1-100.
    #[param(minimum = 1, maximum = 100, example = 20, default = 20)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page; absent for the first page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A backtest's period, for the contract (read by `listing::parse_period`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by the derive only
pub struct PeriodParamsDoc {
    /// Transactions with a `timestamp` at or after this (RFC 3339; encode `+` as `%2B`).
    #[param(value_type = Option<String>, format = DateTime, example = "2024-08-01T00:00:00Z")]
    from: Option<String>,
    /// Transactions with a `timestamp` before this (RFC 3339); after `from`.
    #[param(value_type = Option<String>, format = DateTime, example = "2024-09-01T00:00:00Z")]
    to: Option<String>,
}
