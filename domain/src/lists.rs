//! A shop's named lists (blocked customers, cards, emails in metadata), which `list` rules
//! look transactions up in. What a list name and a list value may be is said here once, for
//! the API that manages them and the rules that name them.

use serde::{Deserialize, Serialize};

use crate::parse::MAX_METADATA_VALUE_CHARS;
use crate::transaction::{is_identifier, looks_like_card_number};

/// One look-up a `list` rule needs: is `value` in the shop's list `list`?
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ListLookup {
    pub list: String,
    pub value: String,
}

/// A list name: an identifier, like a rule's name.
pub fn check_list_name(name: &str) -> Result<(), String> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(crate::transaction::identifier_rule())
    }
}

/// A list value: what a transaction's field can hold (1-256 characters, no control
/// characters), and never a card number, which the pipeline must not hold.
pub fn check_list_value(value: &str) -> Result<(), String> {
    let length = value.chars().count();
    if !(1..=MAX_METADATA_VALUE_CHARS).contains(&length) || value.chars().any(char::is_control) {
        return Err(format!(
            "must be 1-{MAX_METADATA_VALUE_CHARS} characters without control characters"
        ));
    }
    if looks_like_card_number(value) {
        return Err(
            "looks like a card number (13-19 digits passing the Luhn check); list the \
             payment_fingerprint the shop sends instead"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked_and_a_card_number_is_refused() {
        assert!(check_list_name("blocked_customers").is_ok());
        assert!(check_list_name("no spaces").is_err());
        assert!(check_list_value("cust-42").is_ok());
        assert!(check_list_value("fp_abc123").is_ok());
        assert!(check_list_value("").is_err());
        assert!(check_list_value("a\nb").is_err());
        assert!(check_list_value(&"x".repeat(257)).is_err());
        let refused = check_list_value("4111 1111 1111 1111").expect_err("a PAN");
        assert!(refused.contains("card number"), "{refused}");
        assert!(
            check_list_value("4111111111111112").is_ok(),
            "not Luhn-valid"
        );
    }
}
