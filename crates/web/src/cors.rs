//! CORS for the JSON API: exactly the configured `cors_origins`, with credentials, on
//! `/api/v1/*` only (DESIGN.md rule 7, RELIABILITY.md R6). Never `*`: the configuration refuses
//! it, and an empty list means no CORS headers at all (browsers then keep other sites out).
//!
//! An allowed origin may also send state-changing API requests with the session cookie: the
//! CSRF check ([`crate::security::csrf`]) accepts exactly these origins on `/api/v1/*`.

use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `origins` (each `scheme://host[:port]`), or `None` when there are none.
/// Origins that cannot be header values are skipped with an error log (the configuration
/// check makes that impossible in practice).
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::error!(origin = %o, "CORS origin is not a valid header value; skipped");
                None
            }
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-request-id"),
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// True when `origin` (an `Origin` header value) is on the allow-list.
pub fn allowed(origins: &[String], origin: &str) -> bool {
    origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
}

/// Removes the `Access-Control-*` headers of an answer that allows no origin (tower-http adds
/// `Allow-Credentials`, and on preflights the allowed methods and headers, whatever the
/// origin): a foreign origin gets no CORS header at all.
pub async fn strip_unallowed(mut res: Response) -> Response {
    let h = res.headers_mut();
    if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let names: Vec<header::HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for n in names {
            h.remove(n);
        }
    }
    res
}
