//! The spelling of an enum's variants comes from serde alone: the same name travels in JSON,
//! in storage columns, in queue attributes and in error messages, so a renamed or reordered
//! variant cannot make them disagree.

use serde::Serialize;
use serde::de::{DeserializeOwned, IntoDeserializer, value::Error as NameError};

/// A field-less enum whose names are its serde names.
pub trait Named: Serialize + DeserializeOwned + Copy + Sized + 'static {
    /// Every variant; a unit test per enum checks that each one round-trips through its name.
    const ALL: &'static [Self];

    fn name(self) -> &'static str {
        serde_variant::to_variant_name(&self).expect("a unit variant always has a serde name")
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::deserialize(IntoDeserializer::<NameError>::into_deserializer(name)).ok()
    }

    /// All names, in declaration order, for messages such as "must be one of …".
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|variant| variant.name()).collect()
    }
}

/// Checks that every variant of `T` round-trips through its name and that names are distinct.
#[cfg(test)]
pub fn assert_names_round_trip<T: Named + PartialEq + std::fmt::Debug>() {
    let names = T::names();
    for (variant, name) in T::ALL.iter().zip(&names) {
        assert_eq!(T::from_name(name), Some(*variant), "{name}");
        let json = serde_json::to_string(variant).expect("serialises");
        assert_eq!(json, format!("\"{name}\""));
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate names in {names:?}");
    assert_eq!(T::from_name("no-such-name"), None);
}
