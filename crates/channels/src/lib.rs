//! `vetric-channels`: the notification channels that do not go through WhatsApp, used for
//! managers and operators (and for alerts about the WhatsApp gateway itself, which must
//! never depend on it).
//!
//! - [`smtp`]: [`SmtpChannel`], e-mail over SMTP (STARTTLS by default, implicit TLS, AUTH
//!   PLAIN/LOGIN), UTF-8 plain text with a stable `Message-ID`.
//! - [`webhook`]: [`WebhookChannel`], a JSON POST signed with HMAC-SHA256.
//! - [`error`]: [`ChannelError`] and [`ErrorKind`]: retry, give up on this message, or alert
//!   an operator; [`ChannelError::may_have_been_sent`] for a failure after the message left.
//!
//! Each `send` is one attempt with a timeout; retries, backoff and the in-doubt state belong
//! to the outbox. Nothing secret reaches `Debug` output, errors or logs: passwords and the
//! webhook secret are [`Secret`]s, e-mail local parts are masked (`j***@exemplo.com.br`),
//! webhook URLs are shown as `scheme://host:port` only.
//!
//! # Verifying a webhook (receiver side)
//!
//! Every request is `POST` with `Content-Type: application/json` and:
//!
//! | header | value |
//! |---|---|
//! | `X-Vetric-Delivery` | the delivery id; the same on every retry of one notification: ignore a delivery id you have already processed |
//! | `X-Vetric-Timestamp` | unix seconds when this attempt was signed |
//! | `X-Vetric-Signature` | `sha256=` + lowercase hex of HMAC-SHA256(secret, `"{timestamp}.{body}"`) |
//!
//! To verify:
//! 1. Read the raw body bytes, before any JSON parsing (re-serialising changes them).
//! 2. Build the string `timestamp + "." + body`, where `timestamp` is the
//!    `X-Vetric-Timestamp` header exactly as received.
//! 3. Compute HMAC-SHA256 over it with the shared secret as key; hex-encode it in lowercase
//!    and prefix `sha256=`.
//! 4. Compare with `X-Vetric-Signature` in constant time (`hmac.compare_digest` in Python,
//!    `crypto.timingSafeEqual` in Node, `Mac::verify_slice` in Rust). Refuse on mismatch
//!    (answer 401: vetric treats 401/403 as a configuration problem and alerts its operator).
//! 5. Refuse a timestamp more than 5 minutes away from your clock (replay protection), then
//!    dedupe on `X-Vetric-Delivery`.
//! 6. Answer any 2xx quickly (within the configured timeout, 10 s by default). vetric retries
//!    on timeouts, 408, 429 and 5xx; other 4xx are recorded as permanent failures.
//!
//! From a shell: `printf '%s' "$TS.$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
//! In Python:
//!
//! ```text
//! expected = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest(expected, request.headers["X-Vetric-Signature"])
//! ```
//!
//! [`webhook::sign`] computes the same value in Rust.

pub mod error;
pub mod smtp;
pub mod webhook;

pub use error::{ChannelBuildError, ChannelError, ErrorKind, SmtpStage, mask_email};
pub use smtp::{DEFAULT_SMTP_TIMEOUT, SmtpChannel, SmtpConfig, SmtpTls};
pub use vetric_domain::Secret;
pub use webhook::{DEFAULT_WEBHOOK_TIMEOUT, WebhookChannel, WebhookConfig};
