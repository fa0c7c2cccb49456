//! Security on every response and every state-changing request (RELIABILITY.md R6).
//!
//! * [`headers`]: `Content-Security-Policy` (same-origin everything, no inline script,
//!   `frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//!   same-origin`, and `Strict-Transport-Security` when the request reached us over TLS. It
//!   wraps the whole router, so errors, 404s and rejections carry them too.
//! * [`csrf`]: a POST/PUT/PATCH/DELETE from a browser must come from our own origin
//!   (`Sec-Fetch-Site: same-origin`, or an `Origin`/`Referer` equal to `public_url`'s origin or
//!   to the request's own host). Requests that authenticate with `Authorization: Bearer` and
//!   carry no session cookie are exempt: a browser never adds that header on its own. A
//!   cookie-carrying request with no origin evidence at all is refused.

use crate::AppState;
use crate::auth::{bearer_token, cookie_token};
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// True when the client talks to us over TLS: `public_url` is https, or the reverse proxy
/// says so (`X-Forwarded-Proto: https`; the worst a forged header can do is make the answer
/// stricter).
pub fn is_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.public_url_is_https()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Adds the security headers to every response.
pub async fn headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let tls = is_tls(&state, req.headers());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

/// Refuses cross-site state-changing requests (see the module docs).
pub async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let changes_state = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !changes_state {
        return next.run(req).await;
    }
    let h = req.headers();
    let has_cookie = cookie_token(h).is_some();
    if bearer_token(h).is_some() && !has_cookie {
        return next.run(req).await;
    }
    // A page on a configured CORS origin calling the API (see `crate::cors`).
    if req.uri().path().starts_with("/api/v1/")
        && h.get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| crate::cors::allowed(state.cors_origins(), o))
    {
        return next.run(req).await;
    }
    match same_origin(&state, h) {
        Some(true) => next.run(req).await,
        None if !has_cookie => next.run(req).await,
        _ => {
            tracing::warn!(
                origin = ?h.get(header::ORIGIN),
                sec_fetch_site = ?h.get("sec-fetch-site"),
                "cross-site request refused"
            );
            axum::response::IntoResponse::into_response(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "pedido vindo de outro site recusado (proteção CSRF); recarregue a página e \
                 tente de novo",
            ))
        }
    }
}

/// `Some(true)` same origin, `Some(false)` another origin, `None` no evidence either way.
fn same_origin(state: &AppState, h: &HeaderMap) -> Option<bool> {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return Some(site.eq_ignore_ascii_case("same-origin"));
    }
    let origin = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let referer = h.get(header::REFERER)?.to_str().ok()?;
            let u = url::Url::parse(referer).ok()?;
            Some(u.origin().ascii_serialization())
        })?;
    if origin == "null" {
        return Some(false);
    }
    let Ok(url) = url::Url::parse(&origin) else {
        return Some(false);
    };
    let serialized = url.origin().ascii_serialization();
    if state
        .public_origin()
        .is_some_and(|public| public == serialized)
    {
        return Some(true);
    }
    // The request's own host (direct access on the listen address, or a proxy that keeps
    // Host): Origin's host[:port] must be exactly it.
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return Some(false);
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(hn), Some(p)) => format!("{hn}:{p}"),
        (Some(hn), None) => hn.to_owned(),
        _ => return Some(false),
    };
    Some(authority.eq_ignore_ascii_case(host))
}
