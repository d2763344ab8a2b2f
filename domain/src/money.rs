//! Exact money: amounts are parsed from the JSON text itself, never through a float, and the
//! currency's minor units come from the ISO 4217 table of the `iso_currency` crate.

use iso_currency::Currency;
use rust_decimal::Decimal;

/// The most minor units any currency has (CLF, UYW: 4).
pub const MAX_MINOR_UNITS: u32 = 4;

/// Largest accepted amount; anything above is almost certainly a unit mistake.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalTextError {
    /// Not a JSON number nor a string holding a plain decimal.
    WrongType,
    /// A number, but not one a decimal of 28 significant digits can hold exactly.
    NotExact,
}

/// Parses the raw JSON text of a value (a number like `1000.01` or `1.5e2`, or a string like
/// `"1000.01"`) into an exact decimal.
pub fn decimal_from_json_text(raw: &str) -> Result<Decimal, DecimalTextError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|_| DecimalTextError::WrongType)?;
        return parse_plain_decimal(&text);
    }
    let starts_like_number = raw
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if !starts_like_number {
        return Err(DecimalTextError::WrongType);
    }
    exact_decimal(raw)
}

/// A plain decimal written as text (`-12.50`, `3`; no exponent, sign `+`, spaces or commas),
/// read exactly: what a query parameter or a setting holds. A value a `Decimal` cannot hold
/// without rounding is `NotExact`, never rounded.
pub fn decimal_from_plain_text(text: &str) -> Result<Decimal, DecimalTextError> {
    parse_plain_decimal(text)
}

/// Strings hold plain decimals only (`-12.50`, `3`): no exponent, sign `+`, spaces or commas.
fn parse_plain_decimal(text: &str) -> Result<Decimal, DecimalTextError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(DecimalTextError::WrongType);
    }
    exact_decimal(text)
}

/// Exponents beyond this cannot describe an amount; refusing them early bounds the work.
const MAX_EXPONENT: i64 = 1_000;

/// The exact value of a decimal numeral (`-12.5`, `1.25e2`, `125E-2`), or `NotExact` when a
/// `Decimal` (28 significant digits, 28 decimal places) cannot hold it without rounding.
/// Trailing zeros carry no value and are dropped first, so `1.000…0` of any length is exact.
fn exact_decimal(text: &str) -> Result<Decimal, DecimalTextError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
            let exponent: i64 = exponent.parse().map_err(|_| DecimalTextError::NotExact)?;
            (mantissa, exponent)
        }
        None => (unsigned, 0),
    };
    if exponent.abs() > MAX_EXPONENT {
        return Err(DecimalTextError::NotExact);
    }
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(DecimalTextError::WrongType);
    }
    // value = digits × 10^-scale
    let mut digits = format!("{whole}{fraction}");
    let mut scale = fraction.len() as i64 - exponent;
    while scale > 0 && digits.ends_with('0') {
        digits.pop();
        scale -= 1;
    }
    if scale < 0 {
        digits.extend(std::iter::repeat_n('0', (-scale) as usize));
        scale = 0;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 29 || scale > 28 {
        return Err(DecimalTextError::NotExact);
    }
    let magnitude: i128 = if significant.is_empty() {
        0
    } else {
        significant
            .parse()
            .map_err(|_| DecimalTextError::NotExact)?
    };
    let value = if negative { -magnitude } else { magnitude };
    Decimal::try_from_i128_with_scale(value, scale as u32).map_err(|_| DecimalTextError::NotExact)
}

/// Minor units (decimal places) of an ISO 4217 currency, or `None` for an unknown code or one
/// without minor units defined (such as gold, `XAU`), which cannot carry a payment amount.
pub fn minor_units(code: &str) -> Option<u32> {
    let currency = Currency::from_code(code)?;
    currency.exponent().map(u32::from)
}

/// Every currency a payment can be in (ISO 4217, with minor units), by code, with its minor
/// units: what `currency` accepts, for the API contract.
pub fn payment_currencies() -> Vec<(String, u32)> {
    use iso_currency::IntoEnumIterator;
    let mut currencies: Vec<(String, u32)> = Currency::iter()
        .filter_map(|currency| Some((currency.code().to_owned(), u32::from(currency.exponent()?))))
        .collect();
    currencies.sort();
    currencies
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

/// Parses a threshold given in configuration, e.g. `1000` or `150000`: exactly, as amounts are.
pub fn parse_config_amount(text: &str) -> Result<Decimal, String> {
    parse_plain_decimal(text.trim()).map_err(|error| match error {
        DecimalTextError::WrongType => format!("{text:?} is not a plain decimal such as 1000.50"),
        DecimalTextError::NotExact => {
            format!("{text:?} has more digits than an amount can hold exactly")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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
    fn every_spelling_of_a_number_is_read_exactly_or_refused() {
        assert_eq!(decimal_from_json_text("1.5e2"), Ok(dec("150")));
        assert_eq!(decimal_from_json_text("125E-2"), Ok(dec("1.25")));
        assert_eq!(decimal_from_json_text("1e+3"), Ok(dec("1000")));
        assert_eq!(decimal_from_json_text("0.1e1"), Ok(dec("1")));
        assert_eq!(decimal_from_json_text("-2.50e0"), Ok(dec("-2.5")));
        assert_eq!(
            decimal_from_json_text("1.000000000000000000000000000000000000"),
            Ok(dec("1")),
            "trailing zeros carry no value"
        );
        // The cases: these were rounded to 1000.00 and 1000.01 before being checked.
        for spelled in [
            "999.99999999999999999999999999999e0",
            "1000.00999999999999999999999999999e0",
            "1e-40",
            "1e99999999999999999999",
        ] {
            assert_eq!(
                decimal_from_json_text(spelled),
                Err(DecimalTextError::NotExact),
                "{spelled}"
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
