//! A Brazilian phone number that WhatsApp can be asked to deliver to (contract `evolution.md`
//! B3). Parse, don't validate: a [`PhoneNumber`] holds `55` + DDD + subscriber digits and
//! nothing else, so the rest of vetric never re-checks it.
//!
//! Phone numbers are personal data: [`Debug`] and [`Display`] print the masked form
//! (`+55 82 9****-0101`), and no [`PhoneError`] message contains the digits. Read the full
//! number with [`PhoneNumber::digits`] only where it is sent on the wire or stored.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Brazil's country calling code.
const COUNTRY_CODE: &str = "55";

/// Why a string is not a deliverable Brazilian phone number. Messages never quote the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty phone number")]
    Empty,
    #[error(
        "invalid character {0:?} in phone number (only digits, '+', spaces, parentheses and hyphens)"
    )]
    InvalidCharacter(char),
    #[error("missing country code 55 (write it as +55 DDD number)")]
    MissingCountryCode,
    #[error("wrong length: {0} digits, expected 12 or 13 (55 + DDD + 8 or 9 digits)")]
    WrongLength(usize),
    #[error("invalid DDD {0}: area codes are 11-99 with no 0 digit")]
    InvalidDdd(String),
    #[error("a 13-digit mobile number must have 9 as the first digit after the DDD")]
    MobileWithoutNine,
    #[error("the subscriber number cannot start with {0}")]
    InvalidSubscriber(char),
}

/// `55` + DDD (2) + subscriber (8 or 9 digits), digits only. See the module docs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    digits: String,
}

impl PhoneNumber {
    /// Parses a number as people write it: `+55 (82) 99000-0101`, `5582990000101`…
    /// `+`, spaces, parentheses and hyphens are dropped; anything else is an error.
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let mut digits = String::with_capacity(raw.len());
        for c in raw.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' | ' ' | '(' | ')' | '-' => {}
                other => return Err(PhoneError::InvalidCharacter(other)),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        if !digits.starts_with(COUNTRY_CODE) {
            return Err(PhoneError::MissingCountryCode);
        }
        if digits.len() != 12 && digits.len() != 13 {
            return Err(PhoneError::WrongLength(digits.len()));
        }
        let ddd = &digits[2..4];
        if ddd.contains('0') {
            return Err(PhoneError::InvalidDdd(ddd.to_owned()));
        }
        let subscriber = &digits[4..];
        let first = subscriber.chars().next().unwrap_or('0');
        if digits.len() == 13 && first != '9' {
            return Err(PhoneError::MobileWithoutNine);
        }
        if first == '0' || first == '1' {
            return Err(PhoneError::InvalidSubscriber(first));
        }
        Ok(Self { digits })
    }

    /// E.164 digits without `+` (`5582990000101`): what `sendText` takes as `number`.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The area code (`82`).
    pub fn ddd(&self) -> &str {
        &self.digits[2..4]
    }

    /// The 8 or 9 digits after the DDD.
    pub fn subscriber(&self) -> &str {
        &self.digits[4..]
    }

    /// A 13-digit number (with the mobile ninth digit).
    pub fn has_ninth_digit(&self) -> bool {
        self.digits.len() == 13
    }

    fn ddd_value(&self) -> u32 {
        self.ddd().parse().unwrap_or(0)
    }

    /// The JID the gateway computes for this number (`createJid.formatBRNumber`, B3): a
    /// 13-digit `55 DD 9 XXXXXXXX` drops the 9 when DDD ≥ 31 and the first digit of the
    /// 8-digit part is ≥ 7; everything else is kept as is.
    pub fn gateway_jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.gateway_user())
    }

    fn gateway_user(&self) -> String {
        if self.has_ninth_digit() && self.ddd_value() >= 31 && self.eight_digit_head() >= 7 {
            self.without_ninth()
        } else {
            self.digits.clone()
        }
    }

    /// First digit of the last 8 digits.
    fn eight_digit_head(&self) -> u32 {
        let eight = &self.digits[self.digits.len() - 8..];
        eight
            .chars()
            .next()
            .and_then(|c| c.to_digit(10))
            .unwrap_or(0)
    }

    fn without_ninth(&self) -> String {
        format!("{}{}", &self.digits[..4], &self.digits[5..])
    }

    /// Every JID under which WhatsApp may know this number, the gateway's own choice
    /// ([`gateway_jid`](Self::gateway_jid)) first. For reconciliation (B5b): the remote JID a
    /// message was recorded under may be either form, because the gateway checks both against
    /// WhatsApp and keeps the one that exists.
    ///
    /// - 13 digits (`55 DD 9 XXXXXXXX`): the 13-digit form and the 12-digit one without the 9.
    /// - 12 digits whose subscriber starts with 6–9 (a mobile written without its 9): the
    ///   12-digit form and the 13-digit one with the 9.
    /// - 12 digits starting with 2–5 (a landline): only the 12-digit form.
    pub fn jid_variants(&self) -> Vec<String> {
        let jid = |user: &str| format!("{user}@s.whatsapp.net");
        let primary = self.gateway_user();
        let other = if self.has_ninth_digit() {
            Some(if primary == self.digits {
                self.without_ninth()
            } else {
                self.digits.clone()
            })
        } else if self.eight_digit_head() >= 6 {
            Some(format!("{}9{}", &self.digits[..4], &self.digits[4..]))
        } else {
            None
        };
        let mut out = vec![jid(&primary)];
        if let Some(o) = other {
            out.push(jid(&o));
        }
        out
    }

    /// `+55 82 9****-0101`: enough to tell numbers apart in a list, not enough to call one.
    pub fn masked(&self) -> String {
        let sub = self.subscriber();
        let (head, tail) = sub.split_at(sub.len() - 4);
        let mut first = head.chars();
        let lead = first.next().unwrap_or('*');
        let stars = "*".repeat(first.count());
        format!("+55 {} {lead}{stars}-{tail}", self.ddd())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// Masked, like `Debug`: a phone number formatted into a log line leaks nothing.
impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// Serializes to the full digits, for storage.
impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.digits
    }
}

impl std::str::FromStr for PhoneNumber {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).expect("valid")
    }

    #[test]
    fn parses_the_ways_people_write_numbers() {
        for raw in [
            "+55 (82) 99000-0101",
            "5582990000101",
            "+55 82 9 9000-0101",
            "55-82-99000-0101",
        ] {
            assert_eq!(p(raw).digits(), "5582990000101", "{raw}");
        }
        assert_eq!(p("+55 11 3333-4444").digits(), "551133334444");
    }

    #[test]
    fn errors_say_what_is_wrong_without_the_number() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
        assert_eq!(PhoneNumber::parse("+ ( )"), Err(PhoneError::Empty));
        assert_eq!(
            PhoneNumber::parse("82990000101"),
            Err(PhoneError::MissingCountryCode)
        );
        assert_eq!(
            PhoneNumber::parse("55829900001"),
            Err(PhoneError::WrongLength(11))
        );
        assert_eq!(
            PhoneNumber::parse("55829900001").map_err(|e| e.to_string()),
            Err("wrong length: 11 digits, expected 12 or 13 (55 + DDD + 8 or 9 digits)".into())
        );
        assert_eq!(
            PhoneNumber::parse("82990000101")
                .map_err(|e| e.to_string())
                .err()
                .as_deref()
                .map(|m| m.starts_with("missing country code 55")),
            Some(true)
        );
        assert_eq!(
            PhoneNumber::parse("55829900001011"),
            Err(PhoneError::WrongLength(14))
        );
        assert_eq!(
            PhoneNumber::parse("5502990000101"),
            Err(PhoneError::InvalidDdd("02".into()))
        );
        assert_eq!(
            PhoneNumber::parse("5580990000101"),
            Err(PhoneError::InvalidDdd("80".into()))
        );
        assert_eq!(
            PhoneNumber::parse("5582890000101"),
            Err(PhoneError::MobileWithoutNine)
        );
        assert_eq!(
            PhoneNumber::parse("558210000101"),
            Err(PhoneError::InvalidSubscriber('1'))
        );
        assert_eq!(
            PhoneNumber::parse("55 82 9900.0101"),
            Err(PhoneError::InvalidCharacter('.'))
        );
        let msg = PhoneNumber::parse("5582890000101")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains("890000101"));
    }

    #[test]
    fn gateway_drops_the_ninth_digit_per_create_jid() {
        // DDD 82 ≥ 31, 8-digit part starts with 9 ≥ 7: dropped (the recorded case).
        assert_eq!(
            p("5582990000101").gateway_jid(),
            "558290000101@s.whatsapp.net"
        );
        // DDD 11 < 31: kept.
        assert_eq!(
            p("5511990000101").gateway_jid(),
            "5511990000101@s.whatsapp.net"
        );
        // DDD 31, 8-digit part starts with 6 < 7: kept.
        assert_eq!(
            p("5531960000101").gateway_jid(),
            "5531960000101@s.whatsapp.net"
        );
        // DDD 31 (boundary), 7: dropped.
        assert_eq!(
            p("5531970000101").gateway_jid(),
            "553170000101@s.whatsapp.net"
        );
        // 12 digits: as is.
        assert_eq!(
            p("558290000101").gateway_jid(),
            "558290000101@s.whatsapp.net"
        );
    }

    #[test]
    fn jid_variants_cover_both_forms_gateway_choice_first() {
        assert_eq!(
            p("5582990000101").jid_variants(),
            [
                "558290000101@s.whatsapp.net",
                "5582990000101@s.whatsapp.net"
            ]
        );
        assert_eq!(
            p("5511990000101").jid_variants(),
            [
                "5511990000101@s.whatsapp.net",
                "551190000101@s.whatsapp.net"
            ]
        );
        assert_eq!(
            p("558290000101").jid_variants(),
            [
                "558290000101@s.whatsapp.net",
                "5582990000101@s.whatsapp.net"
            ]
        );
        // A landline has one form only.
        assert_eq!(
            p("551133334444").jid_variants(),
            ["551133334444@s.whatsapp.net"]
        );
    }

    #[test]
    fn masked_everywhere() {
        let n = p("5582990000101");
        assert_eq!(n.masked(), "+55 82 9****-0101");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+55 82 9****-0101)");
        assert_eq!(n.to_string(), "+55 82 9****-0101");
        assert_eq!(p("558290000101").masked(), "+55 82 9***-0101");
    }

    #[test]
    fn serde_round_trip_parses() {
        let n = p("+55 82 99000-0101");
        let json = serde_json::to_string(&n).expect("ser");
        assert_eq!(json, "\"5582990000101\"");
        let back: PhoneNumber = serde_json::from_str(&json).expect("de");
        assert_eq!(back, n);
        assert!(serde_json::from_str::<PhoneNumber>("\"82990000101\"").is_err());
    }
}
