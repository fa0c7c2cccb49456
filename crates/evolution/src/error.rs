//! The one error type of the client, and [`ErrorKind`], which says what to do next: retry
//! later, give up on this message, or alert an operator.
//!
//! Policy: a message names the endpoint, the HTTP status and the gateway's own message (at
//! most ~200 characters), never a request header, so the API key cannot reach a log line
//! through an error. Phone numbers are masked: a number the gateway echoes becomes
//! `+55 82 9****-0999`, and any other run of 8 or more digits keeps only its last 4.

use serde::Serialize;
use std::fmt;
use std::time::Duration;
use vetric_domain::PhoneNumber;

/// Longest excerpt of a gateway message carried in an error.
pub const EXCERPT_MAX_CHARS: usize = 200;

/// What went wrong, coarsely: stable names for metrics labels, and the decision of what
/// happens next ([`is_retryable`](Self::is_retryable), [`is_permanent`](Self::is_permanent),
/// [`needs_operator`](Self::needs_operator): exactly one of the three is true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400 `exists:false`: the number has no WhatsApp account.
    NotOnWhatsApp,
    /// 400 schema violation or blank text.
    Validation,
    /// Another 4xx (413, 422…): this request will never be accepted as it is.
    ClientError,
    /// 500 `Connection Closed`: the instance is not connected to WhatsApp.
    InstanceClosed,
    /// Any other 5xx.
    ServerError,
    /// 429 (a proxy in front of the gateway).
    RateLimited,
    /// No complete answer within the request timeout.
    Timeout,
    /// Connection refused, DNS, TLS, reset…
    Network,
    /// 401/403: the `apikey` was refused.
    Unauthorized,
    /// 404 `The "…" instance does not exist`.
    UnknownInstance,
    /// 404 `Cannot POST …`: wrong base URL, path prefix or gateway version.
    UnknownRoute,
    /// A 2xx answer vetric cannot read (not JSON, or a field it needs is missing).
    UnexpectedResponse,
}

impl ErrorKind {
    /// The label value used in metrics (`outcome`) and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOnWhatsApp => "not_on_whatsapp",
            Self::Validation => "validation",
            Self::ClientError => "client_error",
            Self::InstanceClosed => "instance_closed",
            Self::ServerError => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Unauthorized => "unauthorized",
            Self::UnknownInstance => "unknown_instance",
            Self::UnknownRoute => "unknown_route",
            Self::UnexpectedResponse => "unexpected_response",
        }
    }

    /// Likely to go away by itself: try again later, with backoff. For `sendText`, check
    /// [`EvolutionError::may_have_been_sent`] first.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::InstanceClosed
                | Self::ServerError
                | Self::RateLimited
                | Self::Timeout
                | Self::Network
        )
    }

    /// This message will never go through as it is: record the failure, do not retry.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::NotOnWhatsApp | Self::Validation | Self::ClientError
        )
    }

    /// A configuration or compatibility problem: nothing gets through until someone fixes
    /// it. Alert the operator; do not retry (and keep the messages queued).
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            Self::Unauthorized
                | Self::UnknownInstance
                | Self::UnknownRoute
                | Self::UnexpectedResponse
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything an Evolution call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvolutionError {
    /// The number has no WhatsApp account (400 with `exists:false`). `number` is masked.
    #[error("Evolution {endpoint}: {number} is not on WhatsApp (HTTP 400, exists:false)")]
    NotOnWhatsApp {
        endpoint: &'static str,
        number: String,
    },

    /// 400: the gateway's validation message, nested arrays flattened with `; `.
    #[error("Evolution {endpoint}: request refused as invalid (HTTP 400): {message}")]
    Validation {
        endpoint: &'static str,
        message: String,
    },

    /// Another 4xx.
    #[error("Evolution {endpoint}: request refused (HTTP {status}): {message}")]
    ClientError {
        endpoint: &'static str,
        status: u16,
        message: String,
    },

    /// 500 `Connection Closed`: the instance is not connected to WhatsApp.
    #[error(
        "Evolution {endpoint}: instance not connected to WhatsApp (HTTP 500 Connection Closed)"
    )]
    InstanceClosed { endpoint: &'static str },

    /// Any other 5xx.
    #[error("Evolution {endpoint}: gateway error (HTTP {status}): {message}")]
    ServerError {
        endpoint: &'static str,
        status: u16,
        message: String,
    },

    /// 429.
    #[error("Evolution {endpoint}: rate limited (HTTP 429)")]
    RateLimited { endpoint: &'static str },

    /// No complete answer within the request timeout.
    #[error("Evolution {endpoint}: no answer within {after:?}")]
    Timeout {
        endpoint: &'static str,
        after: Duration,
    },

    /// Could not talk to the gateway. `connect` is true when the connection was never made
    /// (so the request was certainly not delivered).
    #[error("Evolution {endpoint}: network error: {detail}")]
    Network {
        endpoint: &'static str,
        connect: bool,
        detail: String,
    },

    /// 401/403: `apikey` refused.
    #[error("Evolution {endpoint}: API key refused (HTTP {status})")]
    Unauthorized { endpoint: &'static str, status: u16 },

    /// 404: the instance does not exist on this gateway.
    #[error("Evolution {endpoint}: instance {instance:?} does not exist (HTTP 404)")]
    UnknownInstance {
        endpoint: &'static str,
        instance: String,
    },

    /// 404 for the route itself.
    #[error("Evolution {endpoint}: route not found (HTTP 404): {message}")]
    UnknownRoute {
        endpoint: &'static str,
        message: String,
    },

    /// A 2xx answer that cannot be read.
    #[error("Evolution {endpoint}: unexpected answer (HTTP {status}): {detail}")]
    UnexpectedResponse {
        endpoint: &'static str,
        status: u16,
        detail: String,
    },
}

impl EvolutionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotOnWhatsApp { .. } => ErrorKind::NotOnWhatsApp,
            Self::Validation { .. } => ErrorKind::Validation,
            Self::ClientError { .. } => ErrorKind::ClientError,
            Self::InstanceClosed { .. } => ErrorKind::InstanceClosed,
            Self::ServerError { .. } => ErrorKind::ServerError,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Network { .. } => ErrorKind::Network,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::UnknownInstance { .. } => ErrorKind::UnknownInstance,
            Self::UnknownRoute { .. } => ErrorKind::UnknownRoute,
            Self::UnexpectedResponse { .. } => ErrorKind::UnexpectedResponse,
        }
    }

    /// The endpoint the error came from (`sendText`, `connectionState`, `findMessages`).
    pub fn endpoint(&self) -> &'static str {
        match self {
            Self::NotOnWhatsApp { endpoint, .. }
            | Self::Validation { endpoint, .. }
            | Self::ClientError { endpoint, .. }
            | Self::InstanceClosed { endpoint }
            | Self::ServerError { endpoint, .. }
            | Self::RateLimited { endpoint }
            | Self::Timeout { endpoint, .. }
            | Self::Network { endpoint, .. }
            | Self::Unauthorized { endpoint, .. }
            | Self::UnknownInstance { endpoint, .. }
            | Self::UnknownRoute { endpoint, .. }
            | Self::UnexpectedResponse { endpoint, .. } => endpoint,
        }
    }

    /// For a failed `sendText`: whether the gateway may have sent the message anyway (the
    /// request reached it and the answer was lost or unreadable: a timeout, a connection cut
    /// after connecting, a 502/504 from a proxy, an unreadable 2xx). Such a message is *in
    /// doubt*: reconcile with `findMessages` (B5b) before sending it again, never resend
    /// blindly. False for every other endpoint.
    pub fn may_have_been_sent(&self) -> bool {
        if self.endpoint() != crate::client::SEND_TEXT {
            return false;
        }
        match self {
            Self::Timeout { .. } | Self::UnexpectedResponse { .. } => true,
            Self::Network { connect, .. } => !connect,
            Self::ServerError { status, .. } => matches!(status, 502 | 504),
            _ => false,
        }
    }

    /// What an operator should check next, in plain English.
    pub fn hint(&self) -> String {
        match self {
            Self::NotOnWhatsApp { .. } => "This number has no WhatsApp account: correct the \
                resident's phone number (with country code 55 and DDD)."
                .to_owned(),
            Self::Validation { .. } | Self::ClientError { .. } => "The gateway refused the \
                request as built: check the message text, or report it with this message (the \
                gateway version may have changed its API)."
                .to_owned(),
            Self::InstanceClosed { .. } => "The WhatsApp instance is not connected: if this \
                lasts, open the Evolution manager (/manager) and check the instance; a logged-out \
                device needs a new QR scan. Messages are retried."
                .to_owned(),
            Self::ServerError { status, .. } => format!(
                "The gateway answered HTTP {status}: Evolution or a proxy in front of it is \
                 failing. Messages are retried."
            ),
            Self::RateLimited { .. } => "Something in front of the gateway is rate limiting: \
                send less often."
                .to_owned(),
            Self::Timeout { after, .. } => format!(
                "The gateway did not answer within {after:?}: it is overloaded or the network \
                 path is broken."
            ),
            Self::Network { .. } => "Could not talk to the gateway: check the URL, DNS, \
                firewall and TLS from this host, and that Evolution is running."
                .to_owned(),
            Self::Unauthorized { .. } => "The API key was refused: check evolution_api_key \
                (the global AUTHENTICATION_API_KEY or this instance's token)."
                .to_owned(),
            Self::UnknownInstance { instance, .. } => format!(
                "No instance named {instance:?} on this gateway: check evolution_instance \
                 (exact name, spaces and case included) in the Evolution manager."
            ),
            Self::UnknownRoute { .. } => "The gateway does not know this route: check \
                evolution_api_url (root of the gateway, no /api suffix) and that it runs \
                Evolution API v2."
                .to_owned(),
            Self::UnexpectedResponse { .. } => "The gateway answered success in a shape vetric \
                cannot read: the gateway version may have changed; the client needs an update."
                .to_owned(),
        }
    }
}

/// Masks phone numbers in text from the gateway: every run of 8 or more digits keeps only
/// its last 4 (`558290000999@s.whatsapp.net` → `********0999@s.whatsapp.net`).
pub fn redact_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 {
            out.push_str(&"*".repeat(run.len() - 4));
            out.push_str(&run[run.len() - 4..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A number echoed by the gateway, masked: the [`PhoneNumber`] mask when it parses.
pub fn mask_number(raw: &str) -> String {
    match PhoneNumber::parse(raw) {
        Ok(p) => p.masked(),
        Err(_) => redact_digits(raw),
    }
}

/// At most [`EXCERPT_MAX_CHARS`] characters, redacted.
pub(crate) fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(EXCERPT_MAX_CHARS).collect();
    if text.chars().nth(EXCERPT_MAX_CHARS).is_some() {
        out.push('…');
    }
    redact_digits(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_last_four_of_long_digit_runs() {
        assert_eq!(
            redact_digits("558290000999@s.whatsapp.net"),
            "********0999@s.whatsapp.net"
        );
        assert_eq!(redact_digits("HTTP 500 at 12:00"), "HTTP 500 at 12:00");
        assert_eq!(mask_number("5582990000999"), "+55 82 9****-0999");
        assert_eq!(mask_number("12345678"), "****5678");
    }

    #[test]
    fn each_kind_has_exactly_one_disposition() {
        use ErrorKind::*;
        for k in [
            NotOnWhatsApp,
            Validation,
            ClientError,
            InstanceClosed,
            ServerError,
            RateLimited,
            Timeout,
            Network,
            Unauthorized,
            UnknownInstance,
            UnknownRoute,
            UnexpectedResponse,
        ] {
            let n = [k.is_retryable(), k.is_permanent(), k.needs_operator()]
                .iter()
                .filter(|b| **b)
                .count();
            assert_eq!(n, 1, "{k}");
            assert!(!k.as_str().is_empty());
        }
    }

    #[test]
    fn in_doubt_only_for_send_text() {
        let t = EvolutionError::Timeout {
            endpoint: crate::client::SEND_TEXT,
            after: Duration::from_secs(1),
        };
        assert!(t.may_have_been_sent());
        let t = EvolutionError::Timeout {
            endpoint: crate::client::CONNECTION_STATE,
            after: Duration::from_secs(1),
        };
        assert!(!t.may_have_been_sent());
        let refused = EvolutionError::Network {
            endpoint: crate::client::SEND_TEXT,
            connect: true,
            detail: "refused".into(),
        };
        assert!(!refused.may_have_been_sent());
        assert!(
            !EvolutionError::InstanceClosed {
                endpoint: crate::client::SEND_TEXT
            }
            .may_have_been_sent()
        );
    }
}
