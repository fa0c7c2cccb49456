//! Helpers shared by the management pages and their API twins: reading an HTML form body
//! under the body limit, dates in the site's zone, the acting user's audit entry, pt-BR
//! numbers and CSV cells.

use crate::SiteSettings;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::input::BODY_LIMIT;
use crate::pages::error_page;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use vetric_store::AuditEntry;

/// An `application/x-www-form-urlencoded` body as ordered pairs (a body over
/// [`BODY_LIMIT`] is a 413 page; invalid UTF-8 is replaced, never a crash).
pub struct FormPairs(pub Vec<(String, String)>);

impl FormPairs {
    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl<S: Send + Sync> FromRequest<S> for FormPairs {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "Formulário grande demais (máximo {} KiB).",
                        BODY_LIMIT / 1024
                    ),
                )
            } else {
                error_page(StatusCode::BAD_REQUEST, "Formulário ilegível.")
            }
        })?;
        Ok(Self(
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// Local midnight of `date` in the site's zone, as UTC (the first instant of that day when
/// midnight does not exist, as on a DST change).
pub fn day_start(site: &SiteSettings, date: NaiveDate) -> Option<DateTime<Utc>> {
    let naive = date.and_hms_opt(0, 0, 0)?;
    site.timezone
        .from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            (1..=3)
                .filter_map(|h| date.and_hms_opt(h, 0, 0))
                .find_map(|t| site.timezone.from_local_datetime(&t).earliest())
        })
        .map(|t| t.with_timezone(&Utc))
}

/// `AAAA-MM-DD` (what `<input type="date">` sends) or `dd/mm/aaaa`.
pub fn parse_date(v: &str) -> Option<NaiveDate> {
    let v = v.trim();
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(v, "%d/%m/%Y"))
        .ok()
}

/// An instant given as a date (local midnight in the site's zone) or RFC 3339.
pub fn parse_instant(site: &SiteSettings, v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    parse_date(v).and_then(|d| day_start(site, d))
}

/// The date of `t` in the site's zone as `AAAA-MM-DD` (for `<input type="date">`).
pub fn input_date(site: &SiteSettings, t: DateTime<Utc>) -> String {
    t.with_timezone(&site.timezone)
        .format("%Y-%m-%d")
        .to_string()
}

/// `dd/mm/aaaa HH:MM` in the site's zone.
pub fn local_datetime(site: &SiteSettings, t: DateTime<Utc>) -> String {
    t.with_timezone(&site.timezone)
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// `dd/mm/aaaa` in the site's zone.
pub fn local_date(site: &SiteSettings, t: DateTime<Utc>) -> String {
    t.with_timezone(&site.timezone)
        .format("%d/%m/%Y")
        .to_string()
}

/// The audit row of a change made by `user`.
pub fn audit(user: &AuthUser, ip: &str, action: &str, target: impl Into<String>) -> AuditEntry {
    AuditEntry::new(Utc::now(), Some(user.id), action, target)
        .with_ip(Some(ip.to_owned()))
        .with_detail(serde_json::json!({ "via": user.via.as_str() }))
}

/// Watt-hours as kWh with a decimal comma and no grouping: `1234,567` (CSV cells).
pub fn kwh_decimal(wh: i64) -> String {
    let sign = if wh < 0 { "-" } else { "" };
    let wh = wh.unsigned_abs();
    format!("{sign}{},{:03}", wh / 1000, wh % 1000)
}

/// One CSV cell for a `;`-separated file: quoted when it holds `;`, `"` or a line break, and
/// prefixed with `'` when a spreadsheet would read it as a formula.
pub fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// A 422 naming `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_safe_for_spreadsheets() {
        assert_eq!(csv_cell("Maria"), "Maria");
        assert_eq!(csv_cell("a;b"), "\"a;b\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("say \"hi\";"), "\"say \"\"hi\"\";\"");
        assert_eq!(kwh_decimal(12_345), "12,345");
        assert_eq!(kwh_decimal(1_234_567), "1234,567");
        assert_eq!(kwh_decimal(5), "0,005");
    }

    #[test]
    fn dates_in_both_spellings() {
        assert_eq!(
            parse_date("2026-03-01"),
            NaiveDate::from_ymd_opt(2026, 3, 1)
        );
        assert_eq!(
            parse_date("01/03/2026"),
            NaiveDate::from_ymd_opt(2026, 3, 1)
        );
        assert_eq!(parse_date("ontem"), None);
    }
}
