//! Exact money: amounts are parsed from the JSON text itself, never through a float, and the
//! currency's minor units come from the ISO 4217 table of the `iso_currency` crate.

use std::str::FromStr;

use iso_currency::Currency;
use rust_decimal::Decimal;

/// Largest accepted amount; anything above is almost certainly a unit mistake.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalTextError {
    /// Not a JSON number nor a string holding a plain decimal.
    WrongType,
    /// A number, but not one a decimal of 28 significant digits can hold exactly.
    NotExact,
}

/// Parses the raw JSON text of a value (a number like `1000.01` or a string like `"1000.01"`)
/// into an exact decimal.
pub fn decimal_from_json_text(raw: &str) -> Result<Decimal, DecimalTextError> {
    let raw = raw.trim();
    if let Some(quoted) = raw.strip_prefix('"') {
        let text: String = serde_json::from_str(raw).map_err(|_| DecimalTextError::WrongType)?;
        debug_assert!(quoted.ends_with('"'));
        return parse_plain_decimal(&text);
    }
    let starts_like_number = raw
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if !starts_like_number {
        return Err(DecimalTextError::WrongType);
    }
    if raw.contains(['e', 'E']) {
        Decimal::from_scientific(raw).map_err(|_| DecimalTextError::NotExact)
    } else {
        Decimal::from_str_exact(raw).map_err(|_| DecimalTextError::NotExact)
    }
}

/// Strings hold plain decimals only (`-12.50`, `3`): no exponent, sign `+`, spaces or commas.
fn parse_plain_decimal(text: &str) -> Result<Decimal, DecimalTextError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(DecimalTextError::WrongType);
    }
    Decimal::from_str_exact(text).map_err(|_| DecimalTextError::NotExact)
}

/// Minor units (decimal places) of an ISO 4217 currency, or `None` for an unknown code or one
/// without minor units defined (such as gold, `XAU`), which cannot carry a payment amount.
pub fn minor_units(code: &str) -> Option<u32> {
    let currency = Currency::from_code(code)?;
    currency.exponent().map(u32::from)
}

/// Whether `code` is an alphabetic ISO 4217 code of a currency with minor units.
pub fn is_payment_currency(code: &str) -> bool {
    minor_units(code).is_some()
}

/// Decimal places that matter (trailing zeros do not: `100.10` has one).
pub fn significant_scale(amount: Decimal) -> u32 {
    amount.normalize().scale()
}

/// The canonical form of an amount: exactly `minor_units` decimal places (`100` USD is `100.00`).
/// Callers check [`significant_scale`] first, so this never rounds.
pub fn to_minor_unit_scale(amount: Decimal, minor_units: u32) -> Decimal {
    let mut scaled = amount.normalize();
    scaled.rescale(minor_units);
    scaled
}

/// Parses a threshold given in configuration, e.g. `1000` or `150000`.
pub fn parse_config_amount(text: &str) -> Result<Decimal, String> {
    Decimal::from_str(text.trim()).map_err(|error| format!("{text:?} is not a decimal: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test literal")
    }

    #[test]
    fn numbers_parse_exactly_without_a_float() {
        // 1000.01 is not representable as an f64; the parsed value must be exact.
        assert_eq!(decimal_from_json_text("1000.01"), Ok(dec("1000.01")));
        assert_eq!(decimal_from_json_text("0.1"), Ok(dec("0.1")));
        assert_eq!(decimal_from_json_text("100"), Ok(dec("100")));
        assert_eq!(decimal_from_json_text("1.5e2"), Ok(dec("150")));
        assert_eq!(decimal_from_json_text("-3"), Ok(dec("-3")));
    }

    #[test]
    fn strings_parse_as_plain_decimals_only() {
        assert_eq!(decimal_from_json_text("\"1000.01\""), Ok(dec("1000.01")));
        for bad in [
            "\"1e3\"", "\"+1\"", "\" 1\"", "\"1,00\"", "\"abc\"", "\"\"", "\"1.\"",
        ] {
            assert_eq!(
                decimal_from_json_text(bad),
                Err(DecimalTextError::WrongType),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_json_types_are_rejected() {
        for bad in ["true", "null", "[1]", "{}"] {
            assert_eq!(
                decimal_from_json_text(bad),
                Err(DecimalTextError::WrongType),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_beyond_decimal_precision_are_not_rounded() {
        assert_eq!(
            decimal_from_json_text("1.00000000000000000000000000000001"),
            Err(DecimalTextError::NotExact)
        );
        assert_eq!(
            decimal_from_json_text("1e40"),
            Err(DecimalTextError::NotExact)
        );
    }

    #[test]
    fn minor_units_come_from_iso_4217() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("XAU"), None);
        assert_eq!(minor_units("usd"), None);
        assert_eq!(minor_units("ABC"), None);
    }

    #[test]
    fn canonical_scale_pads_without_rounding() {
        assert_eq!(to_minor_unit_scale(dec("100"), 2).to_string(), "100.00");
        assert_eq!(to_minor_unit_scale(dec("100.100"), 2).to_string(), "100.10");
        assert_eq!(to_minor_unit_scale(dec("5"), 0).to_string(), "5");
        assert_eq!(significant_scale(dec("100.100")), 1);
    }
}
