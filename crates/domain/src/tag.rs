//! RFID / virtual tags (`ocppIdTag`).
//!
//! Chargers of different firmware report the same card in different case (`5be07d1a` vs
//! `5BE07D1A`, contract A5.5 #2), and exports carry stray spaces. A [`Tag`] is therefore always
//! trimmed and upper-cased: two tags that are the same card compare equal.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised tag: trimmed, upper-case, non-empty, printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag is longer than {max} characters")]
    TooLong { max: usize },
    #[error("tag contains a character that is not printable ASCII: {0:?}")]
    BadCharacter(char),
}

impl Tag {
    /// OCPP 1.6 `IdToken` is at most 20 characters; we allow some slack for odd firmware.
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, TagError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TagError::Empty);
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err(TagError::TooLong { max: Self::MAX_LEN });
        }
        if let Some(c) = trimmed.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(TagError::BadCharacter(c));
        }
        Ok(Self(trimmed.to_ascii_uppercase()))
    }

    /// Parses a tag that the vendor may send as `""`: empty means "unknown", not an error.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, TagError> {
        match Self::parse(raw) {
            Ok(t) => Ok(Some(t)),
            Err(TagError::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = TagError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> Self {
        t.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_card_in_different_case_and_padding_is_the_same_tag() {
        assert_eq!(
            Tag::parse(" 5be07d1a ").unwrap(),
            Tag::parse("5BE07D1A").unwrap()
        );
    }

    #[test]
    fn empty_tag_is_unknown_not_an_error_when_optional() {
        assert_eq!(Tag::parse_optional("  ").unwrap(), None);
        assert_eq!(Tag::parse(""), Err(TagError::Empty));
        assert!(matches!(
            Tag::parse("AB CD"),
            Err(TagError::BadCharacter(' '))
        ));
    }
}
