//! The errors of both channels, and [`ErrorKind`], which says what the outbox does next:
//! retry later, give up on this message, or alert an operator.
//!
//! Policy: messages name the step that failed (SMTP stage or HTTP status) and the server's
//! own words (at most [`EXCERPT_MAX_CHARS`] characters); never a password, the webhook
//! secret, a webhook URL (it often carries a token) or a full e-mail address (local parts are
//! masked, see [`mask_email`]).

use std::fmt;
use std::time::Duration;

/// Longest excerpt of a server's answer carried in an error.
pub const EXCERPT_MAX_CHARS: usize = 200;

/// What to do with a message after a failed send. Exactly one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Likely to go away by itself: network, timeout, SMTP 4xx, HTTP 5xx/408/429. Retry with
    /// backoff (check [`ChannelError::may_have_been_sent`] first).
    Retry,
    /// This message will never be accepted as it is: SMTP 5xx for the recipient or the
    /// content, HTTP 4xx other than 401/403/404/408/429. Record the failure; do not retry.
    Permanent,
    /// Nothing gets through until someone fixes the settings: credentials refused, TLS
    /// failure or missing STARTTLS, sender or recipient address malformed, webhook URL or
    /// secret refused. Alert the operator (by the other channel) and keep the message.
    Configuration,
}

impl ErrorKind {
    /// Stable name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Permanent => "permanent",
            Self::Configuration => "configuration",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the SMTP conversation a failure happened; it decides the [`ErrorKind`] of a
/// refusal and whether the mail may have been accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpStage {
    /// TCP connect, implicit TLS, greeting and EHLO.
    Connect,
    /// `STARTTLS` and the TLS handshake that follows it.
    StartTls,
    /// `AUTH`.
    Auth,
    /// `MAIL FROM`.
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// The `DATA` command (before the content).
    Data,
    /// The content and the final `.`, up to the server's answer: a failure here may come
    /// after the server took the mail.
    Content,
}

impl fmt::Display for SmtpStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::StartTls => "STARTTLS",
            Self::Auth => "AUTH",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::Content => "message content",
        })
    }
}

/// Everything a send on either channel can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChannelError {
    /// The SMTP server answered a step with a 4xx or 5xx reply.
    #[error("SMTP {stage}: refused with {code}: {message}")]
    SmtpRefused {
        stage: SmtpStage,
        code: u16,
        message: String,
    },

    /// No answer from the SMTP server within the configured timeout.
    #[error("SMTP {stage}: no answer within {after:?}")]
    SmtpTimeout { stage: SmtpStage, after: Duration },

    /// The connection failed or was cut.
    #[error("SMTP {stage}: network error: {detail}")]
    SmtpNetwork { stage: SmtpStage, detail: String },

    /// The TLS handshake failed (certificate not trusted, wrong host name, no common
    /// protocol).
    #[error("SMTP {stage}: TLS failure: {detail}")]
    SmtpTls { stage: SmtpStage, detail: String },

    /// `tls = StartTls` but the server does not offer STARTTLS: refusing to send credentials
    /// and mail in clear text.
    #[error(
        "SMTP: the server does not offer STARTTLS; use tls = implicit (port 465) or fix the relay"
    )]
    StartTlsUnavailable,

    /// Credentials are configured but the server offers neither AUTH PLAIN nor AUTH LOGIN.
    #[error("SMTP: the server offers no AUTH mechanism vetric supports (PLAIN, LOGIN)")]
    AuthUnavailable,

    /// The SMTP server said something that is not SMTP, or the client refused a step.
    #[error("SMTP {stage}: protocol error: {detail}")]
    SmtpProtocol { stage: SmtpStage, detail: String },

    /// A recipient address that cannot be used. `address` is masked.
    #[error("e-mail recipient {address:?} is not a valid address: {reason}")]
    BadRecipient { address: String, reason: String },

    /// A caller-supplied identifier (`message_id`, `delivery_id`) that cannot be sent.
    #[error("{field} {value:?} cannot be used: {reason}")]
    BadIdentifier {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// The receiver answered with a status other than 2xx.
    #[error("webhook: HTTP {status}: {message}")]
    WebhookStatus { status: u16, message: String },

    /// No complete answer from the receiver within the configured timeout. `connected` is
    /// false when the connection was never made (so the request was certainly not delivered).
    #[error("webhook: no answer within {after:?}")]
    WebhookTimeout { after: Duration, connected: bool },

    /// The request could not be made or its answer not read.
    #[error("webhook: network error: {detail}")]
    WebhookNetwork { connect: bool, detail: String },

    /// The TLS handshake with the receiver failed.
    #[error("webhook: TLS failure: {detail}")]
    WebhookTls { detail: String },
}

impl ChannelError {
    /// What happens next.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::SmtpRefused { stage, code, .. } => smtp_refusal_kind(*stage, *code),
            Self::SmtpTimeout { .. } | Self::SmtpNetwork { .. } | Self::SmtpProtocol { .. } => {
                ErrorKind::Retry
            }
            Self::SmtpTls { .. }
            | Self::StartTlsUnavailable
            | Self::AuthUnavailable
            | Self::BadRecipient { .. }
            | Self::WebhookTls { .. } => ErrorKind::Configuration,
            Self::BadIdentifier { .. } => ErrorKind::Permanent,
            Self::WebhookStatus { status, .. } => http_status_kind(*status),
            Self::WebhookTimeout { .. } | Self::WebhookNetwork { .. } => ErrorKind::Retry,
        }
    }

    /// Whether the message may have reached its destination although the send failed: the
    /// request was written and its answer lost (an SMTP timeout or cut after the content was
    /// sent, a webhook timeout or cut after connecting, a 502/504 from a proxy). E-mail has no
    /// way to ask the server afterwards, so a resend of such a mail reuses the same
    /// `message_id` (mail clients thread or drop duplicates by Message-ID); webhook
    /// receivers dedupe on `X-Vetric-Delivery`.
    pub fn may_have_been_sent(&self) -> bool {
        match self {
            Self::SmtpTimeout { stage, .. }
            | Self::SmtpNetwork { stage, .. }
            | Self::SmtpProtocol { stage, .. } => *stage == SmtpStage::Content,
            Self::WebhookTimeout { connected, .. } => *connected,
            Self::WebhookNetwork { connect, .. } => !connect,
            Self::WebhookStatus { status, .. } => matches!(status, 502 | 504),
            _ => false,
        }
    }

    /// The channel the error came from, for metrics labels and logs.
    pub fn channel(&self) -> &'static str {
        match self {
            Self::WebhookStatus { .. }
            | Self::WebhookTimeout { .. }
            | Self::WebhookNetwork { .. }
            | Self::WebhookTls { .. } => "webhook",
            Self::BadIdentifier { field, .. } if *field != "message_id" => "webhook",
            _ => "smtp",
        }
    }
}

/// SMTP reply codes (RFC 5321 §4.2.1): 4xx is transient anywhere. A 5xx before the
/// transaction (greeting, EHLO, STARTTLS, AUTH, MAIL FROM) means the relay refuses vetric
/// itself (wrong host, credentials, or sender), which no retry fixes; a 5xx for the recipient
/// or the content concerns this one message.
fn smtp_refusal_kind(stage: SmtpStage, code: u16) -> ErrorKind {
    if (400..500).contains(&code) {
        return ErrorKind::Retry;
    }
    match stage {
        SmtpStage::Connect | SmtpStage::StartTls | SmtpStage::Auth | SmtpStage::MailFrom => {
            ErrorKind::Configuration
        }
        SmtpStage::RcptTo | SmtpStage::Data | SmtpStage::Content => ErrorKind::Permanent,
    }
}

/// HTTP statuses: 408/429/5xx are transient. 401/403 mean the receiver refuses the
/// signature (wrong secret) and 404/410 that the URL is wrong, and 3xx that it moved
/// (redirects are not followed: a POST must not silently turn into a GET): every delivery
/// would fail the same way, so these are configuration problems. Other 4xx refuse this
/// payload only.
fn http_status_kind(status: u16) -> ErrorKind {
    match status {
        408 | 429 | 500..=599 => ErrorKind::Retry,
        300..=399 | 401 | 403 | 404 | 410 => ErrorKind::Configuration,
        _ => ErrorKind::Permanent,
    }
}

/// Why a channel could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelBuildError {
    /// A setting is missing or malformed; `field` is the config key.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The TLS or HTTP client could not be set up.
    #[error("could not set up {what}: {detail}")]
    Setup { what: &'static str, detail: String },
}

/// Masks the local part of an e-mail address for logs and errors: `joao.silva@exemplo.com.br`
/// becomes `j***@exemplo.com.br`. Something without `@` keeps only its first character.
pub fn mask_email(address: &str) -> String {
    let address = address.trim();
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (address, None),
    };
    let first: String = local.chars().take(1).collect();
    match domain {
        Some(d) => format!("{first}***@{d}"),
        None => format!("{first}***"),
    }
}

/// The first [`EXCERPT_MAX_CHARS`] characters of a server's answer, on one line.
pub(crate) fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    let mut out: String = trimmed.chars().take(EXCERPT_MAX_CHARS).collect();
    if trimmed.chars().count() > EXCERPT_MAX_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_refusals_are_classified_by_code_and_stage() {
        let refused = |stage, code| ChannelError::SmtpRefused {
            stage,
            code,
            message: String::new(),
        };
        assert_eq!(refused(SmtpStage::RcptTo, 550).kind(), ErrorKind::Permanent);
        assert_eq!(refused(SmtpStage::RcptTo, 451).kind(), ErrorKind::Retry);
        assert_eq!(
            refused(SmtpStage::Auth, 535).kind(),
            ErrorKind::Configuration
        );
        assert_eq!(refused(SmtpStage::Auth, 454).kind(), ErrorKind::Retry);
        assert_eq!(
            refused(SmtpStage::MailFrom, 553).kind(),
            ErrorKind::Configuration
        );
        assert_eq!(
            refused(SmtpStage::Content, 554).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(refused(SmtpStage::Connect, 421).kind(), ErrorKind::Retry);
        assert!(!refused(SmtpStage::Content, 451).may_have_been_sent());
    }

    #[test]
    fn only_failures_after_the_content_may_have_sent_a_mail() {
        let after = Duration::from_secs(1);
        for stage in [
            SmtpStage::Connect,
            SmtpStage::StartTls,
            SmtpStage::Auth,
            SmtpStage::MailFrom,
            SmtpStage::RcptTo,
            SmtpStage::Data,
        ] {
            assert!(!ChannelError::SmtpTimeout { stage, after }.may_have_been_sent());
        }
        let e = ChannelError::SmtpTimeout {
            stage: SmtpStage::Content,
            after,
        };
        assert!(e.may_have_been_sent());
        assert_eq!(e.kind(), ErrorKind::Retry);
    }

    #[test]
    fn http_statuses_are_classified() {
        let status = |status| ChannelError::WebhookStatus {
            status,
            message: String::new(),
        };
        for s in [500, 502, 503, 504, 408, 429] {
            assert_eq!(status(s).kind(), ErrorKind::Retry, "{s}");
        }
        for s in [400, 409, 413, 422] {
            assert_eq!(status(s).kind(), ErrorKind::Permanent, "{s}");
        }
        for s in [301, 401, 403, 404, 410] {
            assert_eq!(status(s).kind(), ErrorKind::Configuration, "{s}");
        }
        assert!(status(504).may_have_been_sent());
        assert!(!status(500).may_have_been_sent());
        let never_connected = ChannelError::WebhookTimeout {
            after: Duration::from_secs(1),
            connected: false,
        };
        assert!(!never_connected.may_have_been_sent());
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(
            mask_email("joao.silva@exemplo.com.br"),
            "j***@exemplo.com.br"
        );
        assert_eq!(mask_email("síndico@condominio.br"), "s***@condominio.br");
        assert_eq!(mask_email("nobody"), "n***");
        assert_eq!(mask_email(""), "***");
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(" a\r\nb "), "a  b");
        let long = "x".repeat(300);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_MAX_CHARS + 1);
    }
}
