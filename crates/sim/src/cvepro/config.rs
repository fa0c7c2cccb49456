//! Simulator configuration: credentials, fleet size, seed, speed and the behaviour toggles of
//! contract A10 (time mode, `Bearer` policy, `Platform` / `timeZone` rejection, status lag).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default tenant API key (`Api-Key` header on login).
pub const DEFAULT_API_KEY: &str = "sim-api-key";
/// Default account e-mail.
pub const DEFAULT_EMAIL: &str = "operador@condominio.example";
/// Default account password.
pub const DEFAULT_PASSWORD: &str = "simulador";
/// Default condominium name.
pub const DEFAULT_SITE_NAME: &str = "Residencial Jardim das Palmeiras";

/// How `/api/v1/transaction` interprets `fromDate`/`toDate` and formats timestamps (A5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    /// H1 (default): filter and format in UTC.
    #[default]
    Utc,
    /// H2: the time part of `toDate` is ignored (the window ends at `toDate`'s date 00:00:00);
    /// filter and format in UTC.
    TruncateToDate,
    /// The ideal case: filter and format in America/Sao_Paulo.
    Local,
}

/// What `Authorization: Bearer <token>` does (A2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BearerPolicy {
    /// Default: accepted on `/chargepoints`, rejected (401) on `/transaction`.
    #[default]
    ChargepointsOnly,
    /// Accepted everywhere.
    AcceptAll,
    /// Rejected everywhere.
    RejectAll,
}

/// Configuration of the CVE-Pro simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Tenant key expected in `Api-Key` on login.
    pub api_key: String,
    /// Account e-mail.
    pub email: String,
    /// Account password.
    pub password: String,
    /// Token lifetime (real time).
    pub token_ttl: Duration,
    /// HTTP status of `E000 - Tenant Not Found` (not recorded; 401 by default).
    pub tenant_not_found_status: u16,
    /// Number of chargers.
    pub chargers: usize,
    /// How many chargers (the last ones) have two connectors. 0 by default, as recorded.
    pub dual_connector_chargers: usize,
    /// Residents generated per charger.
    pub residents_per_charger: usize,
    /// Seed of the fleet and of the automatic sessions.
    pub seed: u64,
    /// Speed factor: sessions are `speed` times shorter and power `speed` times higher (same
    /// energy per session); timestamps stay on the real clock.
    pub speed: f64,
    /// Condominium name (`chargeBoxGroupName`); its last word names the chargers.
    pub site_name: String,
    /// Transaction time mode.
    pub time_mode: TimeMode,
    /// `Bearer` handling.
    pub bearer_policy: BearerPolicy,
    /// 401 when any `Platform` header is sent (default true).
    pub reject_platform_header: bool,
    /// 401 when a `timeZone` query parameter is sent (default false).
    pub reject_timezone_param: bool,
    /// Delay between a change and the connector's `lastStatus` showing it, in simulated time
    /// (divided by `speed` on the real clock). Default 5 s.
    pub status_lag: Duration,
    /// Time a connector stays `Finishing` after a scripted stop, in simulated time. Default 10 s.
    pub finishing_delay: Duration,
    /// Whether the fleet plays sessions by itself. Tests that script everything turn it off.
    pub auto_fleet: bool,
    /// Period of the background tick that advances the engine (it also advances on each
    /// request).
    pub tick: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: DEFAULT_API_KEY.to_string(),
            email: DEFAULT_EMAIL.to_string(),
            password: DEFAULT_PASSWORD.to_string(),
            token_ttl: Duration::from_secs(24 * 3600),
            tenant_not_found_status: 401,
            chargers: 5,
            dual_connector_chargers: 0,
            residents_per_charger: 8,
            seed: 1,
            speed: 1.0,
            site_name: DEFAULT_SITE_NAME.to_string(),
            time_mode: TimeMode::Utc,
            bearer_policy: BearerPolicy::ChargepointsOnly,
            reject_platform_header: true,
            reject_timezone_param: false,
            status_lag: Duration::from_secs(5),
            finishing_delay: Duration::from_secs(10),
            auto_fleet: true,
            tick: Duration::from_secs(1),
        }
    }
}

impl SimConfig {
    /// The configuration `vetric sim cvepro --chargers N --seed S --speed X` uses: defaults
    /// with the automatic fleet on.
    pub fn for_cli(chargers: usize, seed: u64, speed: f64) -> SimConfig {
        SimConfig {
            chargers,
            seed,
            speed,
            ..SimConfig::default()
        }
    }

    /// A configuration for tests that script every session: automatic fleet off, no status
    /// lag, immediate `Finishing → Available`.
    pub fn scripted() -> SimConfig {
        SimConfig {
            auto_fleet: false,
            status_lag: Duration::ZERO,
            finishing_delay: Duration::ZERO,
            ..SimConfig::default()
        }
    }

    /// The speed, guarded against zero, negative and non-finite values.
    pub fn effective_speed(&self) -> f64 {
        if self.speed.is_finite() && self.speed > 0.0 {
            self.speed
        } else {
            1.0
        }
    }

    /// Lines to print for a person starting the simulator by hand: where it listens and the
    /// credentials to configure in vetric (these are simulator credentials, not secrets).
    pub fn banner(&self, base_url: &str) -> String {
        format!(
            "CVE-Pro simulator listening on {base_url}\n\
             base_url: {base_url}\n\
             api_key:  {}\n\
             email:    {}\n\
             password: {}\n\
             control:  {base_url}/__sim/ (see crates/sim/README.md)\n",
            self.api_key, self.email, self.password
        )
    }
}
