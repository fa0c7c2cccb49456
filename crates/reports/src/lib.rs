//! vetric's statement files: the monthly statement written as CSV, XLSX and PDF for managers and
//! their spreadsheets, and the vendor's XLSX export read into the domain's import report.
//!
//! This room does file formats only. What a statement *says* is decided by
//! [`vetric_domain::statement`]; what an export row *means* by [`vetric_domain::vendor_export`].
//! Here a [`Statement`](vetric_domain::Statement) becomes bytes (CSV the way Excel in Brazil
//! opens it, XLSX with real numbers and dates), and XLSX bytes become the domain's
//! [`CellValue`](vetric_domain::CellValue)s. [`pdf`] lays the statement out as A4 PDFs (the
//! site's and one apartment's) with krilla, and [`charts`] draws its SVG charts, shared by the
//! web pages and the PDFs.

pub mod charts;
pub mod csv;
pub mod pdf;
pub mod vendor;
pub mod xlsx;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

pub use vendor::{
    ExportReadError, MAX_EXPORT_BYTES, MAX_EXPORT_ROWS, read_export, read_export_file,
};

/// Why a statement could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The statement names a zone this build does not know (a snapshot from elsewhere).
    #[error("the statement's time zone {0:?} is not an IANA zone")]
    UnknownZone(String),
    /// A figure that does not fit a spreadsheet number (beyond f64's range).
    #[error("the figure {0} cannot be written as a spreadsheet number")]
    NotANumber(Decimal),
    #[error("writing the XLSX file failed: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// The apartment asked for has no line on the statement.
    #[error("the apartment {0:?} has no line on this statement")]
    UnknownApartment(String),
    #[error("writing the PDF file failed: {0}")]
    Pdf(String),
}

pub(crate) fn zone(name: &str) -> Result<Tz, ReportError> {
    name.parse()
        .map_err(|_| ReportError::UnknownZone(name.to_owned()))
}

/// An instant as the site's wall clock shows it.
pub(crate) fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&tz).naive_local()
}

/// `1234.5` → `"1.234,50"` with `places` decimals (already rounded by the domain; padded here),
/// the way pt-BR spreadsheets read a number.
pub fn pt_br_decimal(value: Decimal, places: u32) -> String {
    let mut v =
        value.round_dp_with_strategy(places, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    v.rescale(places);
    let plain = v.abs().to_string();
    let (int_part, frac) = match plain.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (plain.as_str(), None),
    };
    let mut grouped = String::with_capacity(int_part.len() + int_part.len() / 3);
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (int_part.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    let sign = if v.is_sign_negative() && !v.is_zero() {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped},{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Whole seconds as `H:MM:SS` (hours may exceed 24).
pub(crate) fn hms(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn pt_br_numbers_group_thousands_and_use_a_comma() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(pt_br_decimal(d("1234.56"), 2), "1.234,56");
        assert_eq!(pt_br_decimal(d("1234567.8"), 2), "1.234.567,80");
        assert_eq!(pt_br_decimal(d("0"), 2), "0,00");
        assert_eq!(pt_br_decimal(d("-5.5"), 3), "-5,500");
        assert_eq!(pt_br_decimal(d("999"), 0), "999");
        assert_eq!(pt_br_decimal(d("12.345"), 3), "12,345");
    }

    #[test]
    fn hms_counts_hours_past_a_day() {
        assert_eq!(hms(0), "0:00:00");
        assert_eq!(hms(30 * 3600 + 61), "30:01:01");
    }
}
