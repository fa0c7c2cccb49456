//! Rounding and formatting of money and energy, written once (DESIGN.md "Domain rules").
//!
//! BILLING.md rule 6 rounds costs and idle fees to the centavo half-up; rule 7 rounds energy
//! sums to 3 decimals half-up; "Output" writes amounts with two places (`"1208.25"`) and
//! energies with three (`"9.870"`). The UI speaks pt-BR (`R$ 1.208,25`, `9,870 kWh`).
//!
//! "Half-up" means half away from zero ([`RoundingStrategy::MidpointAwayFromZero`]): 14.425
//! becomes 14.43, never the banker's 14.42.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places of an amount of money (centavos).
pub const MONEY_DP: u32 = 2;
/// Decimal places of an energy figure shown or summed in a statement.
pub const KWH_DP: u32 = 3;

/// Round to `dp` places, half away from zero, and pad to exactly `dp` places.
fn round_to(value: Decimal, dp: u32) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(dp);
    rounded
}

/// An amount rounded to the centavo, half-up (rule 6), with exactly 2 decimal places.
pub fn round_money(value: Decimal) -> Decimal {
    round_to(value, MONEY_DP)
}

/// An energy rounded to 3 decimals, half-up (rule 7), with exactly 3 decimal places.
pub fn round_kwh(value: Decimal) -> Decimal {
    round_to(value, KWH_DP)
}

/// `"1208.25"`: rounded to the centavo half-up, always two places, dot, no grouping.
pub fn format_money(value: Decimal) -> String {
    round_money(value).to_string()
}

/// `"9.870"`: rounded to 3 decimals half-up, always three places, dot, no grouping.
pub fn format_kwh(value: Decimal) -> String {
    round_kwh(value).to_string()
}

/// pt-BR grouping of a plain decimal string (`"-1208.25"` → `"-1.208,25"`).
fn pt_br_number(plain: &str) -> String {
    let (sign, digits) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(int_part.len() + int_part.len() / 3);
    for (idx, ch) in int_part.chars().enumerate() {
        if idx > 0 && (int_part.len() - idx) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(ch);
    }
    match frac_part {
        Some(f) => format!("{sign}{grouped},{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// `"R$ 1.208,25"` (negative: `"-R$ 1.208,25"`), rounded to the centavo half-up.
pub fn format_money_pt_br(value: Decimal) -> String {
    let rounded = round_money(value);
    if rounded.is_sign_negative() && !rounded.is_zero() {
        format!("-R$ {}", pt_br_number(&rounded.abs().to_string()))
    } else {
        format!("R$ {}", pt_br_number(&rounded.abs().to_string()))
    }
}

/// `"9,870 kWh"` (`"1.234,567 kWh"`), rounded to 3 decimals half-up.
pub fn format_kwh_pt_br(value: Decimal) -> String {
    format!("{} kWh", pt_br_number(&round_kwh(value).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rounds_half_up_not_to_even() {
        assert_eq!(format_money(dec("14.425")), "14.43");
        assert_eq!(format_money(dec("0.005")), "0.01");
        assert_eq!(format_money(dec("0.0049999")), "0.00");
        assert_eq!(format_money(dec("2.665")), "2.67");
        assert_eq!(format_money(dec("-2.665")), "-2.67");
        assert_eq!(format_kwh(dec("1.0005")), "1.001");
        assert_eq!(format_kwh(dec("0.0025")), "0.003");
    }

    #[test]
    fn pads_to_the_fixed_number_of_places() {
        assert_eq!(format_money(dec("1208.25")), "1208.25");
        assert_eq!(format_money(dec("30")), "30.00");
        assert_eq!(format_money(Decimal::ZERO), "0.00");
        assert_eq!(format_kwh(dec("9.87")), "9.870");
        assert_eq!(format_kwh(dec("150")), "150.000");
        assert_eq!(round_money(dec("4.2")).scale(), 2);
    }

    #[test]
    fn pt_br_display() {
        assert_eq!(format_money_pt_br(dec("1208.25")), "R$ 1.208,25");
        assert_eq!(format_money_pt_br(dec("18.05")), "R$ 18,05");
        assert_eq!(format_money_pt_br(dec("0")), "R$ 0,00");
        assert_eq!(format_money_pt_br(dec("1234567.891")), "R$ 1.234.567,89");
        assert_eq!(format_money_pt_br(dec("-1208.25")), "-R$ 1.208,25");
        assert_eq!(format_money_pt_br(dec("-0.001")), "R$ 0,00");
        assert_eq!(format_money_pt_br(dec("100")), "R$ 100,00");
        assert_eq!(format_money_pt_br(dec("999.999")), "R$ 1.000,00");
        assert_eq!(format_kwh_pt_br(dec("9.87")), "9,870 kWh");
        assert_eq!(format_kwh_pt_br(dec("1234.5675")), "1.234,568 kWh");
    }
}
