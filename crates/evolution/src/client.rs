//! The Evolution client: one HTTP attempt per call, bounded by the configured timeouts, with
//! every answer classified ([`crate::wire::classify_error`]).
//!
//! There is no retry inside the client on purpose: a `sendText` that timed out may have been
//! delivered, and only the caller (the outbox) knows whether to reconcile with
//! [`EvolutionClient::find_messages`] first. [`EvolutionError::kind`] says whether to retry,
//! give up or alert, and [`EvolutionError::may_have_been_sent`] whether the message is in
//! doubt.
//!
//! Logs and errors carry the endpoint, the instance name, the status and masked numbers;
//! never the API key, never a full phone number, never message text.

use crate::config::EvolutionConfig;
use crate::error::EvolutionError;
use crate::wire::{self, ConnectionState, FoundMessage, SentMessage};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;
use vetric_domain::PhoneNumber;

/// The header carrying the key, spelled as the gateway expects it (B2).
const API_KEY_HEADER: &str = "apikey";

/// Endpoint names used in errors, logs and metric labels.
pub const SEND_TEXT: &str = "sendText";
pub const CONNECTION_STATE: &str = "connectionState";
pub const FIND_MESSAGES: &str = "findMessages";

/// The client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "the Evolution API key is empty or contains characters that cannot be sent in an HTTP header"
    )]
    InvalidApiKey,
    #[error("the Evolution instance name is empty")]
    EmptyInstance,
    #[error("base_url must be http or https, got {0:?}")]
    BadScheme(String),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

struct Inner {
    cfg: EvolutionConfig,
    http: reqwest::Client,
    api_key: HeaderValue,
    send_text: Url,
    connection_state: Url,
    find_messages: Url,
}

/// The Evolution API v2 client for one instance. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct EvolutionClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EvolutionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvolutionClient")
            .field("base_url", &self.inner.cfg.base_url.as_str())
            .field("instance", &self.inner.cfg.instance)
            .finish_non_exhaustive()
    }
}

/// `base` + `/a/b/<instance>`, keeping a path prefix of the base, each segment
/// percent-encoded (`Condo Bot` → `Condo%20Bot`).
fn endpoint_url(base: &Url, segments: &[&str]) -> Result<Url, BuildError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| BuildError::BadScheme(base.scheme().to_owned()))?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

impl EvolutionClient {
    pub fn new(cfg: EvolutionConfig) -> Result<Self, BuildError> {
        match cfg.base_url.scheme() {
            "http" | "https" => {}
            other => return Err(BuildError::BadScheme(other.to_owned())),
        }
        if cfg.instance.trim().is_empty() {
            return Err(BuildError::EmptyInstance);
        }
        if cfg.api_key.is_empty() {
            return Err(BuildError::InvalidApiKey);
        }
        let mut api_key =
            HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| BuildError::InvalidApiKey)?;
        api_key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent(concat!("vetric/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let instance = cfg.instance.as_str();
        let send_text = endpoint_url(&cfg.base_url, &["message", "sendText", instance])?;
        let connection_state =
            endpoint_url(&cfg.base_url, &["instance", "connectionState", instance])?;
        let find_messages = endpoint_url(&cfg.base_url, &["chat", "findMessages", instance])?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                api_key,
                send_text,
                connection_state,
                find_messages,
            }),
        })
    }

    pub fn config(&self) -> &EvolutionConfig {
        &self.inner.cfg
    }

    /// Sends a text message (`POST /message/sendText/{instance}`, B3). Success is any 2xx
    /// (the gateway answers 201); the answer means *accepted*, not delivered.
    ///
    /// A blank text is refused locally with [`EvolutionError::Validation`] (the gateway
    /// would answer 400 `Text is required`).
    pub async fn send_text(
        &self,
        number: &PhoneNumber,
        text: &str,
    ) -> Result<SentMessage, EvolutionError> {
        if text.trim().is_empty() {
            return Err(EvolutionError::Validation {
                endpoint: SEND_TEXT,
                message: "Text is required (checked before sending)".to_owned(),
            });
        }
        let span = tracing::info_span!(
            "evolution_send_text",
            instance = %self.inner.cfg.instance,
            to = %number.masked()
        );
        let body = wire::send_text_body(number.digits(), text);
        let request = self
            .inner
            .http
            .post(self.inner.send_text.clone())
            .json(&body);
        let result = async {
            let (status, bytes) = self.call(SEND_TEXT, request).await?;
            let sent = wire::decode_send_text(status, &bytes)?;
            tracing::info!(id = %sent.id, status, "message accepted by the gateway");
            Ok(sent)
        }
        .instrument(span)
        .await;
        self.log_failure(&result);
        result
    }

    /// The instance's connection to WhatsApp (`GET /instance/connectionState/{instance}`,
    /// B4). A missing `state` is [`ConnectionState::Unknown`], which is not open.
    pub async fn connection_state(&self) -> Result<ConnectionState, EvolutionError> {
        let request = self.inner.http.get(self.inner.connection_state.clone());
        let result = async {
            let (status, bytes) = self.call(CONNECTION_STATE, request).await?;
            wire::decode_connection_state(status, &bytes)
        }
        .instrument(tracing::info_span!(
            "evolution_connection_state",
            instance = %self.inner.cfg.instance
        ))
        .await;
        self.log_failure(&result);
        result
    }

    /// Messages of one chat (`POST /chat/findMessages/{instance}`, B5b), newest first as the
    /// gateway orders them, first page (50) only; filtered by `key.id` when given.
    ///
    /// An empty list is not proof that a message was never sent: the gateway may not store
    /// messages, and the JID may be the other ninth-digit form (look under every
    /// [`PhoneNumber::jid_variants`]).
    pub async fn find_messages(
        &self,
        remote_jid: &str,
        key_id: Option<&str>,
    ) -> Result<Vec<FoundMessage>, EvolutionError> {
        self.find_messages_page(remote_jid, key_id, 1).await
    }

    /// Page `page` (1-based, newest first) of [`find_messages`](Self::find_messages), pages of
    /// [`wire::FIND_MESSAGES_PAGE_SIZE`]. A page past the last one is empty.
    pub async fn find_messages_page(
        &self,
        remote_jid: &str,
        key_id: Option<&str>,
        page: u32,
    ) -> Result<Vec<FoundMessage>, EvolutionError> {
        let body = wire::find_messages_page_body(remote_jid, key_id, page);
        let request = self
            .inner
            .http
            .post(self.inner.find_messages.clone())
            .json(&body);
        let result = async {
            let (status, bytes) = self.call(FIND_MESSAGES, request).await?;
            wire::decode_find_messages(status, &bytes)
        }
        .instrument(tracing::info_span!(
            "evolution_find_messages",
            instance = %self.inner.cfg.instance
        ))
        .await;
        self.log_failure(&result);
        result
    }

    fn log_failure<T>(&self, result: &Result<T, EvolutionError>) {
        if let Err(e) = result {
            let kind = e.kind();
            if kind.needs_operator() {
                tracing::error!(endpoint = e.endpoint(), kind = kind.as_str(), error = %e, hint = %e.hint(), "Evolution call failed");
            } else {
                tracing::warn!(endpoint = e.endpoint(), kind = kind.as_str(), error = %e, "Evolution call failed");
            }
        }
    }

    /// One HTTP attempt. Returns the 2xx answer; anything else is classified.
    async fn call(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), EvolutionError> {
        let after = self.inner.cfg.request_timeout;
        let request = request
            .header(API_KEY_HEADER, self.inner.api_key.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let started = Instant::now();
        let work = async {
            let resp = request.send().await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, body))
        };
        // reqwest enforces the timeout too; the outer bound also covers a trickling body.
        let outcome = match tokio::time::timeout(after + Duration::from_millis(50), work).await {
            Err(_) => Err(EvolutionError::Timeout { endpoint, after }),
            Ok(Err(e)) if e.is_timeout() => Err(EvolutionError::Timeout { endpoint, after }),
            Ok(Err(e)) => Err(EvolutionError::Network {
                endpoint,
                connect: e.is_connect(),
                detail: describe_reqwest(&e.without_url()),
            }),
            Ok(Ok((status, body))) if (200..300).contains(&status) => Ok((status, body)),
            Ok(Ok((status, body))) => Err(wire::classify_error(endpoint, status, &body)),
        };
        metrics::histogram!("vetric_evolution_call_duration_seconds", "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        let outcome_label = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        metrics::counter!("vetric_evolution_calls_total", "endpoint" => endpoint, "outcome" => outcome_label)
            .increment(1);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_percent_encoded_and_prefixes_kept() {
        let base = Url::parse("https://evo.example.com").expect("url");
        let u = endpoint_url(&base, &["message", "sendText", "Condo Bot"]).expect("url");
        assert_eq!(
            u.as_str(),
            "https://evo.example.com/message/sendText/Condo%20Bot"
        );
        let base = Url::parse("https://proxy.example.com/evo/").expect("url");
        let u = endpoint_url(&base, &["instance", "connectionState", "a/b?c#d"]).expect("url");
        assert_eq!(
            u.as_str(),
            "https://proxy.example.com/evo/instance/connectionState/a%2Fb%3Fc%23d"
        );
    }

    #[test]
    fn build_errors() {
        let base = Url::parse("https://evo.example.com").expect("url");
        let ok = EvolutionConfig::new(base.clone(), "k".into(), "Bot");
        assert!(EvolutionClient::new(ok).is_ok());
        let empty = EvolutionConfig::new(base.clone(), "k".into(), " ");
        assert!(matches!(
            EvolutionClient::new(empty),
            Err(BuildError::EmptyInstance)
        ));
        let bad_key = EvolutionConfig::new(base.clone(), "a\nb".into(), "Bot");
        assert!(matches!(
            EvolutionClient::new(bad_key),
            Err(BuildError::InvalidApiKey)
        ));
        let ftp = EvolutionConfig::new(
            Url::parse("ftp://evo.example.com").expect("url"),
            "k".into(),
            "Bot",
        );
        assert!(matches!(
            EvolutionClient::new(ftp),
            Err(BuildError::BadScheme(_))
        ));
        let c = EvolutionClient::new(EvolutionConfig::new(base, "topsecret".into(), "Bot"))
            .expect("client");
        assert!(!format!("{c:?}").contains("topsecret"));
        assert!(!format!("{:?}", c.config()).contains("topsecret"));
    }
}
