//! The one error type of the client, and the small [`ErrorKind`] used for metrics labels,
//! health checks and operator hints.
//!
//! Policy: a message names the endpoint, the HTTP status and at most ~200 characters of a
//! response body, never a request header or a login body, so the API key, the password and
//! the token cannot end up in a log line through an error.

use serde::Serialize;
use std::fmt;
use std::time::Duration;
use vetric_domain::FailureClass;

/// Longest excerpt of a response body carried in an error message.
pub const EXCERPT_MAX_CHARS: usize = 200;

/// What went wrong, coarsely: stable names for metrics labels and health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    TenantNotFound,
    BadCredentials,
    Unauthorized,
    VendorUnavailable,
    Timeout,
    Network,
    RateLimited,
    ClientError,
    ShapeChanged,
    MalformedBody,
    BreakerOpen,
    RetryBudgetExhausted,
}

impl ErrorKind {
    /// The label value used in metrics (`outcome`) and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantNotFound => "tenant_not_found",
            Self::BadCredentials => "bad_credentials",
            Self::Unauthorized => "unauthorized",
            Self::VendorUnavailable => "vendor_unavailable",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::RateLimited => "rate_limited",
            Self::ClientError => "client_error",
            Self::ShapeChanged => "shape_changed",
            Self::MalformedBody => "malformed_body",
            Self::BreakerOpen => "breaker_open",
            Self::RetryBudgetExhausted => "retry_budget_exhausted",
        }
    }

    /// True when the problem is on the vendor's side or the network, and it will probably go
    /// away by itself; false when an operator has to change something (config, code).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::VendorUnavailable
                | Self::Timeout
                | Self::Network
                | Self::RateLimited
                | Self::BreakerOpen
                | Self::RetryBudgetExhausted
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a CVE-Pro call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CveProError {
    /// Login answered `E000 - Tenant Not Found`.
    #[error("CVE-Pro login: tenant not found ({vendor_message:?})")]
    TenantNotFound { vendor_message: String },

    /// Login refused the e-mail or password.
    #[error("CVE-Pro login: bad credentials (HTTP {status}, {vendor_message:?})")]
    BadCredentials { status: u16, vendor_message: String },

    /// A data call answered 401 even with a freshly issued token.
    #[error("CVE-Pro {endpoint}: unauthorized (HTTP 401) after a fresh login: {excerpt:?}")]
    Unauthorized {
        endpoint: &'static str,
        excerpt: String,
    },

    /// The vendor (or its gateway) answered 5xx.
    #[error("CVE-Pro {endpoint}: vendor unavailable (HTTP {status}): {excerpt:?}")]
    VendorUnavailable {
        endpoint: &'static str,
        status: u16,
        excerpt: String,
    },

    /// No complete answer within the request timeout.
    #[error("CVE-Pro {endpoint}: no answer within {after:?}")]
    Timeout {
        endpoint: &'static str,
        after: Duration,
    },

    /// Connection refused, DNS, TLS, reset…
    #[error("CVE-Pro {endpoint}: network error: {detail}")]
    Network {
        endpoint: &'static str,
        detail: String,
    },

    /// 429, and `Retry-After` was missing or too long to wait inside this call.
    #[error("CVE-Pro {endpoint}: rate limited (retry after {retry_after:?})")]
    RateLimited {
        endpoint: &'static str,
        retry_after: Option<Duration>,
    },

    /// Any other 4xx: a request vetric built wrong, or an unexpected vendor error.
    #[error("CVE-Pro {endpoint}: request refused (HTTP {status}): {excerpt:?}")]
    ClientError {
        endpoint: &'static str,
        status: u16,
        excerpt: String,
    },

    /// Valid JSON, but a field vetric reads is missing, renamed or of another type.
    #[error("CVE-Pro {endpoint}: response shape changed at `{path}`: {detail}")]
    ShapeChanged {
        endpoint: &'static str,
        path: String,
        detail: String,
    },

    /// Not JSON at all (an HTML error page on a 200, a truncated body…).
    #[error("CVE-Pro {endpoint}: malformed response body: {detail}; body starts {excerpt:?}")]
    MalformedBody {
        endpoint: &'static str,
        detail: String,
        excerpt: String,
    },

    /// The circuit breaker is open; no request was sent.
    #[error("CVE-Pro: circuit breaker open, next probe in {retry_in:?}")]
    BreakerOpen { retry_in: Duration },

    /// The call failed and the per-client retry budget forbade another attempt.
    #[error("CVE-Pro {endpoint}: retry budget exhausted; last error: {last}")]
    RetryBudgetExhausted {
        endpoint: &'static str,
        last: Box<CveProError>,
    },
}

impl CveProError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TenantNotFound { .. } => ErrorKind::TenantNotFound,
            Self::BadCredentials { .. } => ErrorKind::BadCredentials,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::VendorUnavailable { .. } => ErrorKind::VendorUnavailable,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Network { .. } => ErrorKind::Network,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::ClientError { .. } => ErrorKind::ClientError,
            Self::ShapeChanged { .. } => ErrorKind::ShapeChanged,
            Self::MalformedBody { .. } => ErrorKind::MalformedBody,
            Self::BreakerOpen { .. } => ErrorKind::BreakerOpen,
            Self::RetryBudgetExhausted { .. } => ErrorKind::RetryBudgetExhausted,
        }
    }

    /// The domain's coarse classification, for the vendor-link state machine
    /// ([`vetric_domain::VendorLink`]).
    pub fn failure_class(&self) -> FailureClass {
        match self {
            Self::TenantNotFound { .. }
            | Self::BadCredentials { .. }
            | Self::Unauthorized { .. } => FailureClass::Auth,
            Self::ShapeChanged { path, .. } => FailureClass::ShapeChanged { path: path.clone() },
            // An HTML page on a 200 is a gateway or proxy misbehaving: a vendor-side outage.
            Self::VendorUnavailable { .. }
            | Self::Timeout { .. }
            | Self::Network { .. }
            | Self::RateLimited { .. }
            | Self::MalformedBody { .. }
            | Self::BreakerOpen { .. } => FailureClass::Unavailable,
            Self::RetryBudgetExhausted { last, .. } => last.failure_class(),
            Self::ClientError { .. } => FailureClass::Other,
        }
    }

    /// What an operator should check next, in plain English.
    pub fn hint(&self) -> String {
        match self {
            Self::TenantNotFound { .. } => "The vendor does not know this API key on this host: \
                wrong host for this API key (production keys only work on \
                cs.intelbras-cve-pro.com.br, test keys on cs-test), or the key is wrong."
                .to_owned(),
            Self::BadCredentials { .. } => "The API key was accepted but the e-mail or password \
                was refused: check the account's e-mail and password (was the password changed \
                in the CVE-Pro panel?)."
                .to_owned(),
            Self::Unauthorized { .. } => "A freshly issued token was refused: the account may \
                lack the API_CHARGEBOXES_GET / API_TRANSACTIONS_GET permissions, or the vendor \
                changed its authorization rules."
                .to_owned(),
            Self::VendorUnavailable { status, .. } => format!(
                "The vendor answered HTTP {status}: CVE-Pro or its gateway is down. Nothing to fix \
                 on our side; vetric keeps the last good data and retries."
            ),
            Self::Timeout { after, .. } => format!(
                "The vendor did not answer within {after:?}: the vendor is overloaded or the \
                 network path is broken. Check connectivity from this host to the vendor."
            ),
            Self::Network { .. } => "Could not talk to the vendor at all: check DNS, firewall, \
                proxy and TLS from this host, and that base_url is right."
                .to_owned(),
            Self::RateLimited { retry_after, .. } => format!(
                "The vendor is rate limiting this account (retry after {retry_after:?}): poll \
                 less often, or check whether another system uses the same account."
            ),
            Self::ClientError { status, .. } => format!(
                "The vendor refused the request with HTTP {status}: the API may have changed \
                 (path or parameters). Report it with the excerpt in the message."
            ),
            Self::ShapeChanged { path, .. } => format!(
                "The vendor's response shape changed at `{path}`: the client needs an update. \
                 vetric keeps the last good data meanwhile."
            ),
            Self::MalformedBody { .. } => "The vendor answered with something that is not JSON \
                (often an HTML error page from a proxy): the vendor or a proxy in between is \
                misbehaving."
                .to_owned(),
            Self::BreakerOpen { retry_in } => format!(
                "Recent calls kept failing, so calls are paused; the next probe is in \
                 {retry_in:?}. See the last error for the cause."
            ),
            Self::RetryBudgetExhausted { last, .. } => format!(
                "Too many retries in the last minute, so this failure was not retried. Cause: {}",
                last.hint()
            ),
        }
    }
}

/// The first [`EXCERPT_MAX_CHARS`] characters of a body, lossily decoded, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    // Gateway error pages (nginx's 502/503) are HTML: their title says it all, and the markup
    // would only clutter logs and the operator's status page.
    if text.trim_start().starts_with('<') {
        let lower = text.to_ascii_lowercase();
        if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>"))
            && a + 7 <= b
        {
            let title: String = text[a + 7..b]
                .trim()
                .chars()
                .take(EXCERPT_MAX_CHARS)
                .collect();
            return format!("HTML page \"{title}\"");
        }
        return "HTML page without a title".to_owned();
    }
    let mut out: String = text.chars().take(EXCERPT_MAX_CHARS).collect();
    if text.chars().nth(EXCERPT_MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_truncated_on_a_char_boundary() {
        let body = "é".repeat(500);
        let e = excerpt(body.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_MAX_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
    }

    #[test]
    fn html_error_pages_are_summarised_by_their_title() {
        let page =
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>x</body></html>";
        assert_eq!(excerpt(page), "HTML page \"502 Bad Gateway\"");
        assert_eq!(
            excerpt(b"  <html><body>oops</body></html>"),
            "HTML page without a title"
        );
    }

    #[test]
    fn every_kind_has_a_hint_and_a_label() {
        let errors = [
            CveProError::TenantNotFound {
                vendor_message: "E000 - Tenant Not Found".into(),
            },
            CveProError::ShapeChanged {
                endpoint: "chargepoints",
                path: "chargePointList".into(),
                detail: "missing".into(),
            },
            CveProError::BreakerOpen {
                retry_in: Duration::from_secs(3),
            },
        ];
        for e in errors {
            assert!(!e.hint().is_empty());
            assert!(!e.kind().as_str().is_empty());
        }
        let shape = CveProError::ShapeChanged {
            endpoint: "chargepoints",
            path: "chargePointList[2].connectors[0].lastStatus.status".into(),
            detail: "missing field".into(),
        };
        assert!(
            shape
                .hint()
                .contains("chargePointList[2].connectors[0].lastStatus.status")
        );
    }
}
