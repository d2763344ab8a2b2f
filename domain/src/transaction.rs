//! The validated transaction, in its canonical form: ids as strings, amounts as exact decimals
//! scaled to the currency's minor units, timestamps in UTC.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::names::Named;

/// Longest transaction, shop or customer id, in characters.
pub const MAX_ID_CHARS: u64 = 64;
/// Longest payment fingerprint, in characters: room for a hex SHA-512.
pub const MAX_FINGERPRINT_CHARS: usize = 128;
/// A fingerprint's characters: those of hex, base64 and base64url, and `. _ :`.
pub const FINGERPRINT_PATTERN: &str = "^[A-Za-z0-9._:+/=-]+$";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transaction {
    #[cfg_attr(feature = "openapi", schema(example = "12345"))]
    pub transaction_id: String,
    /// Exact decimal, as a string, with as many decimal places as the currency has minor units.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "100.00"))]
    pub amount: Decimal,
    /// ISO 4217 alphabetic code.
    #[cfg_attr(feature = "openapi", schema(example = "USD"))]
    pub currency: String,
    /// When the transaction happened (RFC 3339, normalised to UTC).
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: TransactionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
    /// The shop's stable hash of the card or account paid with; never the card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Item>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "19.99"))]
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    #[default]
    Purchase,
    Refund,
    Chargeback,
}

impl Named for TransactionType {
    const ALL: &'static [Self] = &[Self::Purchase, Self::Refund, Self::Chargeback];
}

impl TransactionType {
    /// The spelling the original system used in its SNS attribute: `Purchase` for `purchase`.
    pub fn display_name(self) -> String {
        let name = self.name();
        let mut chars = name.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(chars).collect::<String>()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    Wallet,
    BankTransfer,
    CashOnDelivery,
    Other,
}

impl Named for PaymentMethod {
    const ALL: &'static [Self] = &[
        Self::Card,
        Self::Wallet,
        Self::BankTransfer,
        Self::CashOnDelivery,
        Self::Other,
    ];
}

/// The tenant a transaction belongs to. Comes from the API key (or `default` for trusted
/// producers that write straight to the queue), never from the request body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShopId(String);

impl ShopId {
    /// The shop of messages put on the queue without an envelope by a trusted producer.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(value: &str) -> Result<Self, String> {
        if is_identifier(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!("shop id {value:?} {}", identifier_rule()))
        }
    }

    pub fn default_shop() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ShopId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<ShopId> for String {
    fn from(value: ShopId) -> Self {
        value.0
    }
}

impl fmt::Display for ShopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rule of [`is_identifier`], as error messages state it.
pub fn identifier_rule() -> String {
    format!("must be 1-{MAX_ID_CHARS} characters from A-Z a-z 0-9 . _ : -")
}

/// 1-64 characters from `A-Z a-z 0-9 . _ : -`: the rule for transaction and shop ids. Kept
/// narrow so that ids are safe in URLs, log lines and storage keys without escaping.
pub fn is_identifier(value: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&(value.len() as u64))
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `value` has a payment fingerprint's length and characters ([`FINGERPRINT_PATTERN`]).
pub fn fits_fingerprint(value: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:+/=-".contains(c);
    (1..=MAX_FINGERPRINT_CHARS).contains(&value.len()) && value.chars().all(allowed)
}

/// Whether a value looks like a card number (PAN): 13 to 19 digits, perhaps grouped with spaces
/// or dashes, that pass the Luhn check.
pub fn looks_like_card_number(value: &str) -> bool {
    let digits: Vec<u32> = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    (13..=19).contains(&digits.len()) && luhn_valid(&digits)
}

fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| match (position % 2, digit * 2) {
            (0, _) => digit,
            (_, doubled) if doubled > 9 => doubled - 9,
            (_, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised_by_length_and_luhn() {
        for pan in [
            "4111111111111111",
            "4111-1111-1111-1111",
            "5500 0000 0000 0004",
            "378282246310005",
            "6011111111111117",
            "4222222222222",
            "6759649826438453",
        ] {
            assert!(looks_like_card_number(pan), "{pan}");
        }
        for other in [
            "4111111111111112",
            "411111111111",
            "41111111111111111111",
            "fp_4111111111111111",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "",
        ] {
            assert!(!looks_like_card_number(other), "{other}");
        }
    }
    use crate::names::assert_names_round_trip;

    #[test]
    fn every_enum_name_round_trips_through_serde() {
        assert_names_round_trip::<TransactionType>();
        assert_names_round_trip::<PaymentMethod>();
    }

    #[test]
    fn display_names_capitalise_the_serde_name() {
        assert_eq!(TransactionType::Purchase.display_name(), "Purchase");
        assert_eq!(TransactionType::Chargeback.display_name(), "Chargeback");
    }
}
