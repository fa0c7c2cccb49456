//! E-mail over SMTP for managers and operators: one connection and one attempt per
//! [`SmtpChannel::send`], every step bounded by the configured timeout and every failure
//! classified by the step it happened at.
//!
//! The conversation is driven step by step (lettre's `AsyncSmtpConnection`, not its
//! transport) because the outbox needs to know *where* a send failed: a 550 at `RCPT TO` is
//! this recipient's problem, a 535 at `AUTH` is the operator's, and only a failure after the
//! content was written may have delivered the mail ([`ChannelError::may_have_been_sent`]).
//!
//! Mail is UTF-8 plain text: the subject is RFC 2047-encoded when it is not ASCII and the body
//! quoted-printable or base64, so the bytes on the wire are ASCII and no 8BITMIME support is
//! needed. The `Message-ID` comes from the caller's stable `message_id`, so a resend after a
//! crash carries the same id.
//!
//! No retry here: the outbox decides. Logs carry the masked recipient and the message id,
//! never the password, the body or a full address.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::time::Instant;
use tracing::Instrument;
use vetric_domain::Secret;

use crate::error::{ChannelBuildError, ChannelError, SmtpStage, excerpt, mask_email};

/// Default bound on one whole SMTP conversation (connect to the answer after the content).
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the relay is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain connect, then `STARTTLS` (RFC 3207), usually port 587. A server that does not
    /// offer STARTTLS is refused ([`ChannelError::StartTlsUnavailable`]), never used in clear.
    #[default]
    StartTls,
    /// TLS from the first byte (RFC 8314), usually port 465.
    Implicit,
    /// No encryption at all: only for tests and a relay on the same host.
    None,
}

impl SmtpTls {
    /// The usual port for this mode (587, 465, 25).
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Implicit => 465,
            Self::None => 25,
        }
    }
}

/// Settings of the SMTP channel.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Relay host name (also the name its TLS certificate must carry).
    pub host: String,
    pub port: u16,
    /// Set with `password` to authenticate (AUTH PLAIN, else LOGIN).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, `alertas@exemplo.com.br` or `Vetric <alertas@exemplo.com.br>`; its domain
    /// is also the right-hand side of generated Message-IDs.
    pub from: String,
    pub tls: SmtpTls,
    /// Bound on one whole conversation.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username.as_deref().map(mask_email))
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &mask_email(&self.from))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

struct Inner {
    host: String,
    port: u16,
    tls: SmtpTls,
    timeout: Duration,
    from: Mailbox,
    credentials: Option<Credentials>,
    tls_parameters: Option<TlsParameters>,
    hello: ClientId,
}

/// Sends e-mail through one relay. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct SmtpChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("tls", &self.inner.tls)
            .field("auth", &self.inner.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// AUTH mechanisms in order of preference; both send the password as is, which is why
/// `StartTls` refuses to go on without encryption.
const MECHANISMS: &[Mechanism] = &[Mechanism::Plain, Mechanism::Login];

impl SmtpChannel {
    /// Checks the settings and prepares TLS. Makes no connection.
    pub fn new(cfg: SmtpConfig) -> Result<Self, ChannelBuildError> {
        let host = cfg.host.trim().to_owned();
        if host.is_empty() {
            return Err(invalid("smtp.host", "is empty; set the relay's host name"));
        }
        if cfg.port == 0 {
            return Err(invalid(
                "smtp.port",
                "must be 1–65535 (587 for STARTTLS, 465 for implicit TLS)",
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(invalid("smtp.timeout", "must be greater than zero"));
        }
        let from: Mailbox = cfg.from.trim().parse().map_err(|e| {
            invalid_owned(
                "smtp.from",
                format!(
                    "{:?} is not an e-mail address ({e}); write it as alertas@exemplo.com.br or \"Nome <alertas@exemplo.com.br>\"",
                    mask_email(&cfg.from)
                ),
            )
        })?;
        let credentials = match (&cfg.username, &cfg.password) {
            (None, None) => None,
            (Some(user), Some(password)) if !user.trim().is_empty() && !password.is_empty() => {
                Some(Credentials::new(
                    user.trim().to_owned(),
                    password.expose().to_owned(),
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "smtp.password",
                    "is missing while smtp.username is set",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "smtp.username",
                    "is missing while smtp.password is set",
                ));
            }
            _ => {
                return Err(invalid(
                    "smtp.username",
                    "and smtp.password must both be non-empty, or both left out",
                ));
            }
        };
        let tls_parameters = match cfg.tls {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Implicit => Some(
                TlsParameters::builder(host.clone())
                    .build_rustls()
                    .map_err(|e| ChannelBuildError::Setup {
                        what: "TLS for SMTP",
                        detail: e.to_string(),
                    })?,
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                port: cfg.port,
                tls: cfg.tls,
                timeout: cfg.timeout,
                from,
                credentials,
                tls_parameters,
                hello: ClientId::default(),
            }),
        })
    }

    /// Sends one plain-text mail to `to`. `message_id` must be stable for the outbox row (a
    /// resend after a crash uses the same one): either a bare id (`ntf-42`, which becomes
    /// `<ntf-42@DOMAIN-OF-FROM>`) or a full `id@domain`. Line breaks in `subject` become
    /// spaces.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        message_id: &str,
    ) -> Result<(), ChannelError> {
        let span = tracing::info_span!(
            "smtp_send",
            host = %self.inner.host,
            to = %mask_email(to),
            message_id = %excerpt(message_id)
        );
        let result = self
            .send_inner(to, subject, body, message_id)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind().as_str(),
        };
        metrics::counter!("vetric_channel_sends_total", "channel" => "smtp", "outcome" => outcome)
            .increment(1);
        span.in_scope(|| match &result {
            Ok(()) => tracing::info!("e-mail accepted by the SMTP server"),
            Err(e) => tracing::warn!(
                kind = e.kind().as_str(),
                may_have_been_sent = e.may_have_been_sent(),
                error = %e,
                "e-mail not sent"
            ),
        });
        result
    }

    async fn send_inner(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        message_id: &str,
    ) -> Result<(), ChannelError> {
        let inner = &*self.inner;
        let recipient: Mailbox =
            to.trim()
                .parse()
                .map_err(
                    |e: lettre::address::AddressError| ChannelError::BadRecipient {
                        address: mask_email(to),
                        reason: e.to_string(),
                    },
                )?;
        let message_id = message_id_header(message_id, inner.from.email.domain())?;
        let email = Message::builder()
            .from(inner.from.clone())
            .to(recipient)
            .subject(one_line(subject))
            .message_id(Some(message_id))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| ChannelError::BadRecipient {
                address: mask_email(to),
                reason: e.to_string(),
            })?;
        let envelope = email.envelope().clone();
        let bytes = email.formatted();

        let deadline = Instant::now() + inner.timeout;
        let implicit = match inner.tls {
            SmtpTls::Implicit => inner.tls_parameters.clone(),
            SmtpTls::StartTls | SmtpTls::None => None,
        };
        let mut conn = self
            .step(
                SmtpStage::Connect,
                deadline,
                AsyncSmtpConnection::connect_tokio1(
                    (inner.host.as_str(), inner.port),
                    Some(inner.timeout),
                    &inner.hello,
                    implicit,
                    None,
                ),
            )
            .await?;
        let outcome = self.converse(&mut conn, deadline, &envelope, &bytes).await;
        // Say goodbye when the server is still talking to us; after a timeout or a cut there
        // is nobody to talk to, and the mail's fate is already decided either way.
        let polite = match &outcome {
            Ok(()) => true,
            Err(e) => matches!(
                e,
                ChannelError::SmtpRefused { .. }
                    | ChannelError::StartTlsUnavailable
                    | ChannelError::AuthUnavailable
                    | ChannelError::BadRecipient { .. }
            ),
        };
        if polite {
            let grace = inner.timeout.min(Duration::from_secs(2));
            if outcome.is_ok() {
                let _ = tokio::time::timeout(grace, conn.quit()).await;
            } else {
                let _ = tokio::time::timeout(grace, conn.abort()).await;
            }
        }
        outcome
    }

    async fn converse(
        &self,
        conn: &mut AsyncSmtpConnection,
        deadline: Instant,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), ChannelError> {
        let inner = &*self.inner;
        if inner.tls == SmtpTls::StartTls {
            if !conn.can_starttls() {
                return Err(ChannelError::StartTlsUnavailable);
            }
            if let Some(params) = inner.tls_parameters.clone() {
                self.step(
                    SmtpStage::StartTls,
                    deadline,
                    conn.starttls(params, &inner.hello),
                )
                .await?;
            }
        }
        if let Some(credentials) = &inner.credentials {
            if conn.server_info().get_auth_mechanism(MECHANISMS).is_none() {
                return Err(ChannelError::AuthUnavailable);
            }
            self.step(
                SmtpStage::Auth,
                deadline,
                conn.auth(MECHANISMS, credentials),
            )
            .await?;
        }
        let mut params = Vec::new();
        let non_ascii = envelope
            .from()
            .is_some_and(|a| !AsRef::<str>::as_ref(a).is_ascii())
            || envelope
                .to()
                .iter()
                .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(ChannelError::BadRecipient {
                    address: envelope
                        .to()
                        .first()
                        .map(|a| mask_email(AsRef::<str>::as_ref(a)))
                        .unwrap_or_default(),
                    reason: "the address is not ASCII and the server does not support SMTPUTF8"
                        .to_owned(),
                });
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        // Encodings keep the message ASCII; this only guards a future change of them.
        if !bytes.is_ascii() {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step(
            SmtpStage::MailFrom,
            deadline,
            conn.command(Mail::new(envelope.from().cloned(), params)),
        )
        .await?;
        for rcpt in envelope.to() {
            self.step(
                SmtpStage::RcptTo,
                deadline,
                conn.command(Rcpt::new(rcpt.clone(), vec![])),
            )
            .await?;
        }
        self.step(SmtpStage::Data, deadline, conn.command(Data))
            .await?;
        self.step(SmtpStage::Content, deadline, conn.message(bytes))
            .await?;
        Ok(())
    }

    /// Runs one step of the conversation before the shared deadline and classifies its
    /// failure.
    async fn step<T>(
        &self,
        stage: SmtpStage,
        deadline: Instant,
        work: impl Future<Output = Result<T, SmtpError>>,
    ) -> Result<T, ChannelError> {
        let after = self.inner.timeout;
        match tokio::time::timeout_at(deadline, work).await {
            Err(_) => Err(ChannelError::SmtpTimeout { stage, after }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(stage, &e, after)),
        }
    }
}

fn classify(stage: SmtpStage, e: &SmtpError, after: Duration) -> ChannelError {
    if let Some(code) = e.status() {
        return ChannelError::SmtpRefused {
            stage,
            code: u16::from(code),
            message: std::error::Error::source(e)
                .map(|s| excerpt(&s.to_string()))
                .unwrap_or_default(),
        };
    }
    if e.is_timeout() {
        return ChannelError::SmtpTimeout { stage, after };
    }
    let detail = excerpt(&describe(e));
    if e.is_tls() || is_tls_failure(e) {
        return ChannelError::SmtpTls { stage, detail };
    }
    if e.is_response() || e.is_client() {
        return ChannelError::SmtpProtocol { stage, detail };
    }
    ChannelError::SmtpNetwork { stage, detail }
}

/// lettre reports a failed handshake as a connection error; rustls (through tokio-rustls)
/// surfaces as an `InvalidData` I/O error somewhere in the chain, which a refused or reset
/// connection never is.
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        source = s.source();
    }
    false
}

pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        source = s.source();
    }
    msg
}

/// `<id@domain>` from the caller's id. The id must be a dot-atom (RFC 5322 §3.6.4) so that it
/// survives every relay unchanged and a resend is recognisable.
fn message_id_header(id: &str, from_domain: &str) -> Result<String, ChannelError> {
    let bad = |reason| ChannelError::BadIdentifier {
        field: "message_id",
        value: excerpt(id),
        reason,
    };
    let bare = id.trim();
    let bare = bare
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(bare);
    if bare.is_empty() {
        return Err(bad("is empty"));
    }
    if bare.len() > 200 {
        return Err(bad("is longer than 200 characters"));
    }
    let (left, right) = match bare.split_once('@') {
        Some((l, r)) => (l, r),
        None => (bare, from_domain),
    };
    let dot_atom = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
    };
    if !dot_atom(left) || !dot_atom(right) {
        return Err(bad(
            "must be letters, digits and !#$%&'*+-/=?^_`{|}~. (dot-separated), optionally @domain",
        ));
    }
    Ok(format!("<{left}@{right}>"))
}

fn one_line(subject: &str) -> String {
    subject
        .split(['\r', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn invalid(field: &'static str, reason: &str) -> ChannelBuildError {
    invalid_owned(field, reason.to_owned())
}

fn invalid_owned(field: &'static str, reason: String) -> ChannelBuildError {
    ChannelBuildError::Invalid { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "smtp.exemplo.com.br".into(),
            port: 587,
            username: Some("alertas@exemplo.com.br".into()),
            password: Some(Secret::new("hunter2")),
            from: "Vetric <alertas@exemplo.com.br>".into(),
            tls: SmtpTls::default(),
            timeout: DEFAULT_SMTP_TIMEOUT,
        }
    }

    #[test]
    fn message_ids_become_angle_addr_form() {
        assert_eq!(
            message_id_header("ntf-42", "exemplo.com.br").unwrap(),
            "<ntf-42@exemplo.com.br>"
        );
        assert_eq!(message_id_header("<a.b@c.d>", "x").unwrap(), "<a.b@c.d>");
        for bad in ["", "a b", "a\r\nBcc: x@y", "a..b", "<>", "a@", "ação"] {
            let e = message_id_header(bad, "exemplo.com.br").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Permanent, "{bad:?}");
        }
    }

    #[test]
    fn subjects_lose_line_breaks() {
        assert_eq!(one_line("a\r\nBcc: x\n"), "a Bcc: x");
    }

    #[test]
    fn debug_shows_no_password_nor_full_address() {
        let cfg = config();
        let text = format!("{cfg:?} {:?}", SmtpChannel::new(cfg.clone()).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("alertas@"), "{text}");
        assert!(text.contains("a***@exemplo.com.br"), "{text}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut cfg = config();
        cfg.from = "not an address".into();
        let e = SmtpChannel::new(cfg).unwrap_err();
        assert!(e.to_string().starts_with("smtp.from:"), "{e}");

        let mut cfg = config();
        cfg.password = None;
        let e = SmtpChannel::new(cfg).unwrap_err();
        assert!(e.to_string().starts_with("smtp.password:"), "{e}");

        let mut cfg = config();
        cfg.host = " ".into();
        assert!(
            SmtpChannel::new(cfg)
                .unwrap_err()
                .to_string()
                .starts_with("smtp.host:")
        );
    }
}
