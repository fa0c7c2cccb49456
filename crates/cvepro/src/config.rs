//! Configuration of one CVE-Pro account: where it is, how to log in, and every timing knob of
//! the resilience layer. Defaults follow the contract (A2.1, A7) and RELIABILITY.md R1.

use chrono_tz::Tz;
use std::time::Duration;
use url::Url;
use vetric_domain::Secret;

/// How failed attempts are retried (see [`crate::resilience`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per logical call, the first one included.
    pub max_attempts: u32,
    /// Backoff before retry `n` (0-based) is drawn uniformly from `[0, min(cap, base·2ⁿ)]`.
    pub base: Duration,
    pub cap: Duration,
    /// Retries allowed in a 60 s window, as a fraction of the calls made in that window…
    pub budget_ratio: f64,
    /// …but never fewer than this many per minute, so a fresh process can ride out a blip.
    pub budget_floor_per_minute: u32,
    /// A 429 `Retry-After` longer than this is not waited for: the call fails with
    /// `RateLimited` and the caller's next poll tries again.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
            budget_ratio: 0.2,
            budget_floor_per_minute: 10,
            max_retry_after: Duration::from_secs(32),
        }
    }
}

/// When the circuit breaker opens and how often it probes (see [`crate::resilience::Breaker`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts (5xx, timeout, network) that open the breaker.
    pub failure_threshold: u32,
    /// While open, one probe request is let through per interval.
    pub probe_interval: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            probe_interval: Duration::from_secs(10),
        }
    }
}

/// One vendor account. Build it with [`CveProConfig::new`] and adjust fields as needed.
#[derive(Debug, Clone)]
pub struct CveProConfig {
    /// e.g. `https://cs.intelbras-cve-pro.com.br` (production) or the `cs-test` host. A path
    /// prefix is kept (`https://proxy/cve/` → `https://proxy/cve/api/v1/...`).
    pub base_url: Url,
    pub api_key: Secret,
    /// Account e-mail. Not a secret, but personal: it is never logged.
    pub email: String,
    pub password: Secret,
    /// Assumed token lifetime when the login answer has no `expiresAt` (A2.1: 24 h).
    pub token_lifetime: Duration,
    /// Log in again when less than this remains of the token's life.
    pub renew_before: Duration,
    pub connect_timeout: Duration,
    /// Total time for one HTTP attempt, connect to last body byte.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    /// Zone of `lastHeartbeatTimestamp` and of "today" for the transaction window.
    pub vendor_timezone: Tz,
    /// Zone in which `startTimestamp`/`stopTimestamp` are parsed before self-calibration
    /// (A5.4 hypothesis H1: UTC).
    pub transaction_zone: Tz,
    /// How far back the `ocppTagPk` history lookup searches (A5.5 #1: 30 days).
    pub tag_history_days: u32,
    /// How long a resolved `ocppTagPk → tag` is trusted.
    pub tag_cache_ttl: Duration,
    /// How long "no finished transaction has a tag for this pk" is trusted; shorter, because
    /// the first finished session of a new card resolves it.
    pub tag_cache_negative_ttl: Duration,
    /// The transaction window never reaches further back than this many days.
    pub max_window_days: u32,
    /// Value of the `instance` label on breaker metrics, to tell several accounts apart.
    /// Defaults to the host of `base_url`.
    pub metrics_label: String,
}

impl CveProConfig {
    /// A configuration with every default from the contract.
    pub fn new(base_url: Url, api_key: Secret, email: impl Into<String>, password: Secret) -> Self {
        let metrics_label = base_url.host_str().unwrap_or("unknown").to_owned();
        Self {
            base_url,
            api_key,
            email: email.into(),
            password,
            token_lifetime: Duration::from_secs(24 * 3600),
            renew_before: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            vendor_timezone: chrono_tz::America::Sao_Paulo,
            transaction_zone: chrono_tz::UTC,
            tag_history_days: 30,
            tag_cache_ttl: Duration::from_secs(6 * 3600),
            tag_cache_negative_ttl: Duration::from_secs(600),
            max_window_days: 30,
            metrics_label,
        }
    }
}
