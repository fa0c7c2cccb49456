//! Simulator configuration: the global API key, the instances, whether messages are stored
//! (B5b), the numbers that are not on WhatsApp, and the seed of every generated value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Default global API key (`apikey` header).
pub const DEFAULT_API_KEY: &str = "sim-evolution-key";
/// Default instance name (with a space, as real ones often have).
pub const DEFAULT_INSTANCE: &str = "Condominio Bot";

/// The connection state of an instance (B4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Connected to WhatsApp: sends succeed.
    #[default]
    Open,
    /// Reconnecting.
    Connecting,
    /// Disconnected (e.g. logged out, needs a new QR scan).
    Close,
    /// In the database but not loaded in memory: `connectionState` omits `state`.
    NotLoaded,
}

impl InstanceState {
    /// The wire value of `state`, or `None` when it is absent.
    pub fn wire(self) -> Option<&'static str> {
        match self {
            InstanceState::Open => Some("open"),
            InstanceState::Connecting => Some("connecting"),
            InstanceState::Close => Some("close"),
            InstanceState::NotLoaded => None,
        }
    }
}

/// Configuration of the Evolution simulator.
#[derive(Debug, Clone)]
pub struct EvolutionSimConfig {
    /// The global `AUTHENTICATION_API_KEY` expected in `apikey`.
    pub api_key: String,
    /// Instance names that exist (all start in `initial_state`).
    pub instances: Vec<String>,
    /// Whether the gateway persists sent messages, i.e. whether `findMessages` finds them
    /// (B5b). When false it answers an empty list.
    pub stores_messages: bool,
    /// Numbers WhatsApp does not know (digits, `+`/spaces allowed): sending to one answers 400
    /// `exists:false`. Compared after normalisation, under both ninth-digit forms.
    pub not_on_whatsapp: BTreeSet<String>,
    /// State every instance starts in.
    pub initial_state: InstanceState,
    /// Seed of message ids, instance ids and the fault RNG.
    pub seed: u64,
}

impl Default for EvolutionSimConfig {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.to_owned(),
            instances: vec![DEFAULT_INSTANCE.to_owned()],
            stores_messages: true,
            not_on_whatsapp: BTreeSet::new(),
            initial_state: InstanceState::Open,
            seed: 7,
        }
    }
}

impl EvolutionSimConfig {
    /// What `vetric sim evolution` prints: where to point vetric and with which settings.
    pub fn banner(&self, base_url: &str) -> String {
        format!(
            "Evolution simulator listening on {base_url}\n  evolution_api_url  = {base_url}\n  evolution_api_key  = {}\n  evolution_instance = {}\n  stores messages    = {}",
            self.api_key,
            self.instances.first().map(String::as_str).unwrap_or(""),
            self.stores_messages
        )
    }
}
