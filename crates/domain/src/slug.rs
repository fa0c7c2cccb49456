//! Site slugs: the short, URL-safe name of a condominium (`jardim-palmeiras`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A slug: 2–63 characters of lowercase ASCII letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a valid slug: use 2 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen (e.g. \"jardim-palmeiras\")"
)]
pub struct SlugError(pub String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        let ok_len = (2..=63).contains(&raw.len());
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let ok_ends = !raw.starts_with('-') && !raw.ends_with('-');
        if ok_len && ok_chars && ok_ends {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SlugError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> Self {
        s.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_url_safe_names_and_refuses_the_rest() {
        assert!(Slug::parse("jardim-palmeiras").is_ok());
        assert!(Slug::parse("torre2").is_ok());
        for bad in ["", "a", "Jardim", "-x", "x-", "a b", "ã", "../etc"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
