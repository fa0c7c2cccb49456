//! The gateway's `createJid` for plain numbers, with the Brazilian ninth-digit rule
//! (`formatBRNumber`, contract B3). Deliberately independent of `vetric_domain::PhoneNumber`,
//! so the client is tested against a second implementation of the rule.

/// Strips what the gateway strips and keeps the digits (`number.replace(/\D/g, '')`).
pub fn normalize(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// `formatBRNumber`: a 13-digit `55 DD X NNNNNNNN` keeps its 13 digits when the first digit of
/// the 8-digit part is < 7 or the DDD is < 31, else drops the fifth digit. Others as is.
pub fn format_br(digits: &str) -> String {
    let b = digits.as_bytes();
    if b.len() == 13 && digits.starts_with("55") && b.iter().all(u8::is_ascii_digit) {
        let ddd = u32::from(b[2] - b'0') * 10 + u32::from(b[3] - b'0');
        let joker = u32::from(b[5] - b'0');
        if joker < 7 || ddd < 31 {
            return digits.to_owned();
        }
        return format!("{}{}", &digits[..4], &digits[5..]);
    }
    digits.to_owned()
}

/// The JID the gateway derives from a `number` field: kept as is when it already is a JID,
/// else digits with the Brazil rule and `@s.whatsapp.net`.
pub fn create_jid(number: &str) -> String {
    if number.contains('@') {
        return number.to_owned();
    }
    format!("{}@s.whatsapp.net", format_br(&normalize(number)))
}

/// Both ninth-digit forms of a Brazilian number's digits (the number itself first).
pub fn br_forms(digits: &str) -> Vec<String> {
    let mut out = vec![digits.to_owned()];
    if digits.starts_with("55") {
        match digits.len() {
            13 => out.push(format!("{}{}", &digits[..4], &digits[5..])),
            12 => out.push(format!("{}9{}", &digits[..4], &digits[4..])),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brazil_rule() {
        assert_eq!(create_jid("5582990000101"), "558290000101@s.whatsapp.net");
        assert_eq!(
            create_jid("+55 (82) 99000-0101"),
            "558290000101@s.whatsapp.net"
        );
        assert_eq!(create_jid("5511990000101"), "5511990000101@s.whatsapp.net");
        assert_eq!(create_jid("5531960000101"), "5531960000101@s.whatsapp.net");
        assert_eq!(create_jid("5531970000101"), "553170000101@s.whatsapp.net");
        assert_eq!(create_jid("558290000101"), "558290000101@s.whatsapp.net");
        assert_eq!(create_jid("x@s.whatsapp.net"), "x@s.whatsapp.net");
        assert_eq!(create_jid("14155550100"), "14155550100@s.whatsapp.net");
    }

    #[test]
    fn forms() {
        assert_eq!(br_forms("5582990000101"), ["5582990000101", "558290000101"]);
        assert_eq!(br_forms("558290000101"), ["558290000101", "5582990000101"]);
        assert_eq!(br_forms("14155550100"), ["14155550100"]);
    }
}
