//! The ids the pipeline makes: a prefix naming the kind (`alt_`, `evt_`, `dlv_`, `whk_`), then
//! 24 lowercase hex digits (96 bits). A derived id is a digest of what it names, so the same
//! thing always gets the same id and the id tells nothing of it; a random one is made by the
//! caller with the same shape.

use sha2::{Digest, Sha256};

/// Hex digits after the prefix.
pub const ID_HEX_DIGITS: usize = 24;

/// The id of the thing `parts` name (joined by NUL, which no part holds).
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\0"));
    format!("{prefix}{}", &hex::encode(digest)[..ID_HEX_DIGITS])
}

/// Whether `text` has the shape of an id with `prefix`, so that anything else is refused (or a
/// 404) before any read, and none is echoed back.
pub fn is_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == ID_HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_recognised_by_their_prefix() {
        let id = derived_id("alt_", &["shop-a", "t-1", "rule"]);
        assert_eq!(id, derived_id("alt_", &["shop-a", "t-1", "rule"]));
        assert_ne!(id, derived_id("alt_", &["shop-a", "t-1", "other"]));
        assert!(is_id(&id, "alt_"));
        assert!(!is_id(&id, "evt_"));
        assert!(!is_id(&id.to_uppercase(), "alt_"));
        assert!(!is_id("alt_../../etc", "alt_"));
    }
}
