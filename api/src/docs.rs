//! Schemas that exist only to document the contract. The parser in `pipeline::domain` is the
//! authority on what is accepted; these describe its input for OpenAPI and Swagger UI.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A transaction as a shop sends it. Unknown fields are rejected; extras belong in `metadata`.
#[derive(ToSchema)]
#[allow(dead_code)] // read by the schema derive only
pub struct NewTransaction {
    /// 1-64 characters from `A-Z a-z 0-9 . _ : -`, or a non-negative integer (kept as a string).
    transaction_id: IdInput,
    /// Greater than 0, at most 1000000000, with no more decimal places than the currency has.
    /// Send it as a string to keep it exact in every JSON library.
    amount: AmountInput,
    /// ISO 4217 alphabetic code.
    #[schema(default = "USD", example = "USD")]
    currency: Option<String>,
    /// RFC 3339 with an offset, at most 5 minutes in the future.
    #[schema(example = "2024-08-09T12:34:56Z")]
    timestamp: DateTime<Utc>,
    #[schema(default = "purchase")]
    r#type: Option<pipeline::domain::TransactionType>,
    /// 1-64 characters.
    customer_id: Option<String>,
    payment_method: Option<pipeline::domain::PaymentMethod>,
    /// 1-100 items whose quantity times unit price add up to `amount` exactly.
    items: Option<Vec<pipeline::domain::Item>>,
    /// At most 20 pairs; keys 1-40, values up to 256 characters.
    metadata: Option<BTreeMap<String, String>>,
}

/// Documentation of `transaction_id`: a string or a non-negative integer.
pub struct IdInput;

impl PartialSchema for IdInput {
    fn schema() -> RefOr<Schema> {
        one_of(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some("^[A-Za-z0-9._:-]+$")),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
            serde_json::json!("order-1001"),
        )
    }
}

impl ToSchema for IdInput {}

/// Documentation of `amount`: a JSON number or a decimal string, both read exactly.
pub struct AmountInput;

impl PartialSchema for AmountInput {
    fn schema() -> RefOr<Schema> {
        one_of(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^-?[0-9]+(\\.[0-9]+)?$")),
            ObjectBuilder::new().schema_type(Type::Number),
            serde_json::json!("100.00"),
        )
    }
}

impl ToSchema for AmountInput {}

fn one_of(
    first: ObjectBuilder,
    second: ObjectBuilder,
    example: serde_json::Value,
) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(first)
        .item(second)
        .examples([example])
        .into()
}
