//! Configuration of one Evolution instance: where the gateway is, the key, the instance name
//! and the timeouts (contract B1, B2).

use std::time::Duration;
use url::Url;
use vetric_domain::Secret;

/// One gateway instance. Build it with [`EvolutionConfig::new`] and adjust fields as needed.
#[derive(Debug, Clone)]
pub struct EvolutionConfig {
    /// The gateway root, no `/api` prefix (e.g. `https://evo.example.com`). A path prefix is
    /// kept (`https://proxy/evo/` → `https://proxy/evo/message/sendText/…`). Use HTTPS: the
    /// key travels in a header.
    pub base_url: Url,
    /// The global `AUTHENTICATION_API_KEY` or the instance's own token, sent as `apikey`.
    pub api_key: Secret,
    /// The instance name, as created in the manager (may contain spaces; it is URL-encoded).
    pub instance: String,
    pub connect_timeout: Duration,
    /// Total time for one call, connect to last body byte.
    pub request_timeout: Duration,
}

impl EvolutionConfig {
    /// Defaults: connect timeout 5 s, request timeout 15 s.
    pub fn new(base_url: Url, api_key: Secret, instance: impl Into<String>) -> Self {
        Self {
            base_url,
            api_key,
            instance: instance.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}
