//! A signed JSON webhook for operators and integrations: one POST per
//! [`WebhookChannel::send`], HMAC-SHA256 over the timestamp and the exact body bytes, 2xx
//! means delivered.
//!
//! Headers on every request (the verification recipe is in the crate docs):
//! - `X-Vetric-Delivery: <delivery_id>`: stable per outbox row, the same on every retry;
//!   receivers dedupe on it.
//! - `X-Vetric-Timestamp: <unix seconds>`: when this attempt was signed.
//! - `X-Vetric-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
//!
//! Redirects are not followed (a POST must not become a GET somewhere else). The URL is
//! never logged or put in an error beyond scheme, host and port, since webhook URLs often
//! carry a token in their path.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use sha2::Sha256;
use tracing::Instrument;
use url::Url;
use vetric_domain::Secret;

use crate::error::{ChannelBuildError, ChannelError, excerpt};
use crate::smtp::{describe, is_tls_failure};

/// Default bound on one delivery (connect, send, answer).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Header carrying the delivery id receivers dedupe on.
pub const DELIVERY_HEADER: &str = "X-Vetric-Delivery";
/// Header carrying the signing time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Vetric-Timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Vetric-Signature";

/// Shortest secret accepted: 16 bytes keeps a brute force of the HMAC key out of reach.
pub const MIN_SECRET_LEN: usize = 16;

/// Settings of the webhook channel.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `https://…` (or `http://` for a receiver on the same host or in tests).
    pub url: Url,
    /// HMAC key shared with the receiver (at least [`MIN_SECRET_LEN`] bytes).
    pub secret: Secret,
    /// Bound on one delivery.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &origin(&self.url))
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

struct Inner {
    url: Url,
    origin: String,
    secret: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

/// Posts signed JSON to one receiver. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct WebhookChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl WebhookChannel {
    /// Checks the settings and builds the HTTP client. Makes no request.
    pub fn new(cfg: WebhookConfig) -> Result<Self, ChannelBuildError> {
        match cfg.url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(ChannelBuildError::Invalid {
                    field: "webhook.url",
                    reason: format!("must be an http(s) URL, got scheme {other:?}"),
                });
            }
        }
        if cfg.url.host_str().is_none() {
            return Err(ChannelBuildError::Invalid {
                field: "webhook.url",
                reason: "has no host".to_owned(),
            });
        }
        if cfg.secret.expose().len() < MIN_SECRET_LEN {
            return Err(ChannelBuildError::Invalid {
                field: "webhook.secret",
                reason: format!(
                    "must be at least {MIN_SECRET_LEN} bytes; generate one with `openssl rand -hex 32`"
                ),
            });
        }
        if cfg.timeout.is_zero() {
            return Err(ChannelBuildError::Invalid {
                field: "webhook.timeout",
                reason: "must be greater than zero".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vetric/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChannelBuildError::Setup {
                what: "the webhook HTTP client",
                detail: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                origin: origin(&cfg.url),
                url: cfg.url,
                secret: cfg.secret,
                timeout: cfg.timeout,
                http,
            }),
        })
    }

    /// Posts `payload` once, signed. `delivery_id` must be stable per outbox row (visible
    /// ASCII, at most 200 characters). Ok means the receiver answered 2xx.
    pub async fn send(
        &self,
        delivery_id: &str,
        payload: &serde_json::Value,
    ) -> Result<(), ChannelError> {
        let span = tracing::info_span!(
            "webhook_send",
            url = %self.inner.origin,
            delivery_id = %excerpt(delivery_id)
        );
        let result = self
            .send_inner(delivery_id, payload)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(e) => e.kind().as_str(),
        };
        metrics::counter!("vetric_channel_sends_total", "channel" => "webhook", "outcome" => outcome)
            .increment(1);
        span.in_scope(|| match &result {
            Ok(()) => tracing::info!("webhook delivered"),
            Err(e) => tracing::warn!(
                kind = e.kind().as_str(),
                may_have_been_sent = e.may_have_been_sent(),
                error = %e,
                "webhook not delivered"
            ),
        });
        result
    }

    async fn send_inner(
        &self,
        delivery_id: &str,
        payload: &serde_json::Value,
    ) -> Result<(), ChannelError> {
        let inner = &*self.inner;
        let delivery = delivery_header(delivery_id)?;
        // Serialising a `Value` cannot fail (its map keys are strings); the bytes signed are
        // exactly the bytes sent.
        let body = serde_json::to_vec(payload).map_err(|_| ChannelError::BadIdentifier {
            field: "payload",
            value: String::new(),
            reason: "cannot be serialised as JSON",
        })?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signature = sign(inner.secret.expose().as_bytes(), timestamp, &body);
        let mut signature =
            HeaderValue::try_from(signature).map_err(|_| ChannelError::BadIdentifier {
                field: "signature",
                value: String::new(),
                reason: "is not a valid header value",
            })?;
        signature.set_sensitive(true);
        let request = inner
            .http
            .post(inner.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(DELIVERY_HEADER, delivery)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        let after = inner.timeout;
        let work = async {
            let resp = request.send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, text))
        };
        // reqwest enforces the timeout too; the outer bound also covers a trickling body.
        match tokio::time::timeout(after + Duration::from_millis(50), work).await {
            Err(_) => Err(ChannelError::WebhookTimeout {
                after,
                connected: true,
            }),
            Ok(Err(e)) => Err(classify(&e.without_url(), after)),
            Ok(Ok((status, _))) if (200..300).contains(&status) => Ok(()),
            Ok(Ok((status, text))) => Err(ChannelError::WebhookStatus {
                status,
                message: excerpt(&text),
            }),
        }
    }
}

fn classify(e: &reqwest::Error, after: Duration) -> ChannelError {
    if e.is_connect() && is_tls_failure(e) {
        return ChannelError::WebhookTls {
            detail: excerpt(&describe(e)),
        };
    }
    if e.is_timeout() {
        return ChannelError::WebhookTimeout {
            after,
            connected: !e.is_connect(),
        };
    }
    ChannelError::WebhookNetwork {
        connect: e.is_connect(),
        detail: excerpt(&describe(e)),
    }
}

fn delivery_header(delivery_id: &str) -> Result<HeaderValue, ChannelError> {
    let bad = |reason| ChannelError::BadIdentifier {
        field: "delivery_id",
        value: excerpt(delivery_id),
        reason,
    };
    if delivery_id.is_empty() {
        return Err(bad("is empty"));
    }
    if delivery_id.len() > 200 {
        return Err(bad("is longer than 200 characters"));
    }
    if !delivery_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be visible ASCII without spaces"));
    }
    HeaderValue::from_str(delivery_id).map_err(|_| bad("is not a valid header value"))
}

/// `scheme://host[:port]`, the part of a webhook URL that is safe to log.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The `X-Vetric-Signature` value: `sha256=` and the lowercase hex HMAC-SHA256 of
/// `"{timestamp}.{body}"` under `secret`. Public so that receivers written in Rust (and the
/// tests) compute exactly what vetric sends.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + tag.len() * 2);
    out.push_str("sha256=");
    for b in tag.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently, with the recipe in the crate docs.
        let sig = sign(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        assert_eq!(
            sig,
            "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }

    #[test]
    fn delivery_ids_must_be_header_safe() {
        assert!(delivery_header("ntf-42").is_ok());
        for bad in ["", "a b", "a\r\nX: y", "ção"] {
            let e = delivery_header(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Permanent);
            assert_eq!(e.channel(), "webhook");
        }
    }

    #[test]
    fn debug_hides_secret_and_url_path() {
        let cfg = WebhookConfig {
            url: Url::parse("https://hooks.exemplo.com/T0KEN/abc?x=1").unwrap(),
            secret: Secret::new("super-secret-value-123"),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        };
        let text = format!("{cfg:?} {:?}", WebhookChannel::new(cfg.clone()).unwrap());
        assert!(!text.contains("super-secret"), "{text}");
        assert!(!text.contains("T0KEN"), "{text}");
        assert!(text.contains("https://hooks.exemplo.com"), "{text}");
    }

    #[test]
    fn short_secrets_are_refused() {
        let cfg = WebhookConfig {
            url: Url::parse("https://hooks.exemplo.com/").unwrap(),
            secret: Secret::new("short"),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        };
        let e = WebhookChannel::new(cfg).unwrap_err();
        assert!(e.to_string().starts_with("webhook.secret:"), "{e}");
    }
}
