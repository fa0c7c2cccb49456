//! The CVE-Pro client: login with single-flight token renewal, the resilient request loop
//! (timeouts, jittered retries within a budget, circuit breaker), the data endpoints and the
//! combined snapshot with `ocppTagPk` tag resolution.
//!
//! One [`CveProClient`] per vendor account, long-lived: the breaker, the retry budget, the
//! token, the calibrated transaction offset and the tag cache all live in it. Cloning is cheap
//! (an `Arc`), and clones share all of that.

use crate::config::CveProConfig;
use crate::error::{CveProError, ErrorKind, excerpt};
use crate::map;
use crate::report::{QuirkReport, SnapshotReport};
use crate::resilience::{Admission, Breaker, BreakerState, RetryBudget, Transition, backoff_delay};
use crate::time;
use crate::wire::{self, chargepoints, login, transaction};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;
use vetric_domain::{ChargerSnapshot, Tag, TransactionRecord, VendorSnapshot};

/// The header carrying the tenant key, spelled exactly as the vendor documents it.
const API_KEY_HEADER: &str = "Api-Key";

/// The client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the CVE-Pro API key contains characters that cannot be sent in an HTTP header")]
    InvalidApiKey,
    #[error("base_url must be http or https, got {0:?}")]
    BadScheme(String),
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// The vendor link as health checks and the operator probe see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    pub breaker: BreakerState,
    /// Consecutive failed attempts (5xx, timeouts, network) since the last answer.
    pub consecutive_failures: u32,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<LinkError>,
}

/// The last error seen on the link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: String,
    pub at: DateTime<Utc>,
}

/// A token and when to renew it. Not `Debug`: the header value is the token.
#[derive(Clone)]
struct Token {
    header: HeaderValue,
    generation: u64,
    renew_at: Instant,
}

struct CachedTag {
    tag: Option<Tag>,
    expires: Instant,
}

/// Mutable state shared by all clones, behind one short-held lock (never across an await).
struct Shared {
    breaker: Breaker,
    budget: RetryBudget,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<LinkError>,
    transaction_offset: Option<i64>,
    tag_cache: HashMap<i64, CachedTag>,
    /// Until when the vendor asked us (429 `Retry-After`) not to call. Every call of this
    /// client honours it, not only the one that got the 429: otherwise the next poll cycle
    /// would call again at once, whatever the vendor said.
    rate_limited_until: Option<Instant>,
}

/// The longest `Retry-After` a client remembers: a bogus header ("come back tomorrow") must
/// not silence a site for longer than an operator would tolerate without looking.
const RETRY_AFTER_MEMORY_CAP: Duration = Duration::from_secs(15 * 60);

struct Inner {
    cfg: CveProConfig,
    http: reqwest::Client,
    api_key: HeaderValue,
    /// Held across the login request: that is what makes renewal single-flight.
    auth: tokio::sync::Mutex<Option<Token>>,
    generation: std::sync::atomic::AtomicU64,
    shared: Mutex<Shared>,
}

/// The CVE-Pro REST client. See the module docs.
#[derive(Clone)]
pub struct CveProClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CveProClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CveProClient")
            .field("base_url", &self.inner.cfg.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A response that reached us: 2xx or a 4xx the caller interprets.
struct Raw {
    status: u16,
    body: Vec<u8>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock leaves plain counters behind; they are still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Joins an API path to the base URL, keeping any path prefix of the base.
fn endpoint_url(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// `fromDate=2026-01-11%2000:00:00&toDate=…`. Built by hand so the space is `%20` as the
/// legacy client sent it (a form encoder would send `+`).
fn transaction_query(from: NaiveDateTime, to: NaiveDateTime) -> String {
    let enc = |t: NaiveDateTime| time::format_query_time(t).replace(' ', "%20");
    format!("fromDate={}&toDate={}", enc(from), enc(to))
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How long the token from a login answer lives: `expiresAt` when present and plausible
/// (epoch seconds, or milliseconds when it is that large), else the configured lifetime.
fn token_lifetime(cfg: &CveProConfig, expires_at: Option<i64>, now: DateTime<Utc>) -> Duration {
    if let Some(x) = expires_at {
        let secs = if x > 100_000_000_000 { x / 1000 } else { x };
        let remaining = secs - now.timestamp();
        if remaining > 0 && remaining < 30 * 24 * 3600 {
            return Duration::from_secs(remaining.unsigned_abs());
        }
    }
    cfg.token_lifetime
}

/// Maps a login answer to a token or to the right error. Never echoes the body of a success
/// answer (it holds the token).
fn interpret_login(status: u16, body: &[u8]) -> Result<(String, Option<i64>), CveProError> {
    let ep = login::ENDPOINT;
    if let Some(msg) = wire::vendor_error(body) {
        let message = excerpt(msg.as_bytes());
        if msg.contains("Tenant Not Found") {
            return Err(CveProError::TenantNotFound {
                vendor_message: message,
            });
        }
        let lower = msg.to_lowercase();
        if lower.contains("senha") || lower.contains("não encontrado") || status == 401 {
            return Err(CveProError::BadCredentials {
                status,
                vendor_message: message,
            });
        }
        return Err(CveProError::ClientError {
            endpoint: ep,
            status,
            excerpt: message,
        });
    }
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(CveProError::BadCredentials {
                status,
                vendor_message: String::new(),
            });
        }
        _ => {
            return Err(CveProError::ClientError {
                endpoint: ep,
                status,
                excerpt: excerpt(body),
            });
        }
    }
    let decoded = wire::decode::<login::LoginResponse>(ep, body, login::KNOWN).map_err(|e| {
        // Scrub: a decode error on a success body could quote the token.
        match e {
            CveProError::ShapeChanged { path, .. } => CveProError::ShapeChanged {
                endpoint: ep,
                path,
                detail: "field missing or of the wrong type".to_owned(),
            },
            other => CveProError::MalformedBody {
                endpoint: ep,
                detail: format!("{:?} answer is not JSON", other.kind().as_str()),
                excerpt: String::new(),
            },
        }
    })?;
    if !decoded.unknown_fields.is_empty() {
        metrics::counter!("vetric_cvepro_unknown_fields_total", "endpoint" => ep)
            .increment(decoded.unknown_fields.len() as u64);
    }
    match decoded.value.token {
        Some(t) if !t.is_empty() => Ok((t, decoded.value.expires_at)),
        _ => Err(CveProError::ShapeChanged {
            endpoint: ep,
            path: "token".to_owned(),
            detail: "null or empty token on a success answer".to_owned(),
        }),
    }
}

/// [`wire::decode`] of a 2xx data answer, counting a failure in
/// `vetric_cvepro_decode_errors_total{endpoint, kind}` (`shape_changed` or `malformed_body`):
/// the metric an operator alert can watch, incremented on the first bad payload (R3).
fn counted_decode<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    body: &[u8],
    known: wire::KnownKeys,
) -> Result<wire::Decoded<T>, CveProError> {
    let result = wire::decode::<T>(endpoint, body, known);
    if let Err(e) = &result {
        metrics::counter!(
            "vetric_cvepro_decode_errors_total",
            "endpoint" => endpoint,
            "kind" => e.kind().as_str()
        )
        .increment(1);
    }
    result
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    // Without the URL (it is not secret, but it is noise), with the causes that say what broke.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

impl CveProClient {
    pub fn new(cfg: CveProConfig) -> Result<Self, BuildError> {
        match cfg.base_url.scheme() {
            "http" | "https" => {}
            other => return Err(BuildError::BadScheme(other.to_owned())),
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
        metrics::gauge!("vetric_cvepro_breaker_state", "instance" => cfg.metrics_label.clone())
            .set(BreakerState::Closed.gauge_value());
        let shared = Shared {
            breaker: Breaker::new(cfg.breaker.clone()),
            budget: RetryBudget::new(&cfg.retry),
            last_success: None,
            last_error: None,
            transaction_offset: None,
            rate_limited_until: None,
            tag_cache: HashMap::new(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                api_key,
                auth: tokio::sync::Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
                shared: Mutex::new(shared),
            }),
        })
    }

    pub fn config(&self) -> &CveProConfig {
        &self.inner.cfg
    }

    /// The link's health: breaker state, failures, last success and last error.
    pub fn link_status(&self) -> LinkStatus {
        let s = lock(&self.inner.shared);
        LinkStatus {
            breaker: s.breaker.state(),
            consecutive_failures: s.breaker.consecutive_failures(),
            last_success: s.last_success,
            last_error: s.last_error.clone(),
        }
    }

    /// The transaction time offset currently applied (hours), if one was ever calibrated.
    pub fn transaction_offset_hours(&self) -> Option<i64> {
        lock(&self.inner.shared).transaction_offset
    }

    fn record<T>(&self, result: Result<T, CveProError>) -> Result<T, CveProError> {
        if let Err(e) = &result {
            lock(&self.inner.shared).last_error = Some(LinkError {
                kind: e.kind(),
                message: e.to_string(),
                hint: e.hint(),
                at: Utc::now(),
            });
        }
        result
    }

    fn emit_transition(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        let label = self.inner.cfg.metrics_label.clone();
        tracing::warn!(
            from = t.from.as_str(),
            to = t.to.as_str(),
            "CVE-Pro circuit breaker"
        );
        metrics::counter!(
            "vetric_cvepro_breaker_transitions_total",
            "instance" => label.clone(),
            "from" => t.from.as_str(),
            "to" => t.to.as_str()
        )
        .increment(1);
        metrics::gauge!("vetric_cvepro_breaker_state", "instance" => label).set(t.to.gauge_value());
    }

    /// One HTTP attempt, bounded by the request timeout (reqwest enforces it too; the outer
    /// bound also covers a body that trickles forever).
    async fn attempt(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(Raw, Option<Duration>), CveProError> {
        let after = self.inner.cfg.request_timeout;
        let work = async {
            let resp = request.send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((Raw { status, body }, retry_after))
        };
        match tokio::time::timeout(after, work).await {
            Err(_) => Err(CveProError::Timeout { endpoint, after }),
            Ok(Err(e)) if e.is_timeout() => Err(CveProError::Timeout { endpoint, after }),
            Ok(Err(e)) => Err(CveProError::Network {
                endpoint,
                detail: describe_reqwest(&e.without_url()),
            }),
            Ok(Ok(raw)) => Ok(raw),
        }
    }

    /// A logical call: attempts with retries, budget and breaker. Returns 2xx answers and the
    /// 4xx answers (except 429) for the caller to interpret; everything else is an error.
    async fn call(
        &self,
        endpoint: &'static str,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<Raw, CveProError> {
        let policy = &self.inner.cfg.retry;
        {
            let now = Instant::now();
            let mut s = lock(&self.inner.shared);
            if let Some(until) = s.rate_limited_until {
                if now < until {
                    drop(s);
                    metrics::counter!("vetric_cvepro_calls_total", "endpoint" => endpoint, "outcome" => "rate_limit_wait").increment(1);
                    return Err(CveProError::RateLimited {
                        endpoint,
                        retry_after: Some(until - now),
                    });
                }
                s.rate_limited_until = None;
            }
            s.budget.record_call(now);
        }
        let mut retry: u32 = 0;
        let mut last_failure: Option<CveProError> = None;
        loop {
            let admission = lock(&self.inner.shared).breaker.admit(Instant::now());
            match admission {
                Admission::Rejected { retry_in } => {
                    metrics::counter!("vetric_cvepro_calls_total", "endpoint" => endpoint, "outcome" => ErrorKind::BreakerOpen.as_str()).increment(1);
                    // Mid-retry, the real cause says more than "breaker open".
                    return Err(last_failure.unwrap_or(CveProError::BreakerOpen { retry_in }));
                }
                Admission::Allowed { probe, transition } => {
                    self.emit_transition(transition);
                    if probe {
                        tracing::info!(endpoint, "CVE-Pro breaker half-open: probing");
                    }
                }
            }
            let attempt = retry + 1;
            let span = tracing::info_span!("cvepro_call", endpoint, attempt);
            let started = Instant::now();
            let outcome = self.attempt(endpoint, build()).instrument(span).await;
            metrics::histogram!("vetric_cvepro_call_duration_seconds", "endpoint" => endpoint)
                .record(started.elapsed().as_secs_f64());

            let failure = match outcome {
                Ok((raw, retry_after)) => {
                    let status = raw.status;
                    let label = match status {
                        200..=299 => "ok",
                        401 => ErrorKind::Unauthorized.as_str(),
                        429 => ErrorKind::RateLimited.as_str(),
                        400..=499 => ErrorKind::ClientError.as_str(),
                        _ => ErrorKind::VendorUnavailable.as_str(),
                    };
                    metrics::counter!("vetric_cvepro_calls_total", "endpoint" => endpoint, "outcome" => label).increment(1);
                    if status < 500 {
                        // Any non-5xx answer proves the vendor is up.
                        let t = {
                            let mut s = lock(&self.inner.shared);
                            if (200..300).contains(&status) {
                                s.last_success = Some(Utc::now());
                            }
                            s.breaker.on_success()
                        };
                        self.emit_transition(t);
                    }
                    match status {
                        429 => {
                            if let Some(wait) = retry_after {
                                let until = Instant::now() + wait.min(RETRY_AFTER_MEMORY_CAP);
                                let mut s = lock(&self.inner.shared);
                                s.rate_limited_until =
                                    Some(s.rate_limited_until.map_or(until, |u| u.max(until)));
                            }
                            let bounded = retry_after.filter(|d| *d <= policy.max_retry_after);
                            // Only a wait we will actually do spends from the budget.
                            let can_retry = bounded.is_some()
                                && attempt < policy.max_attempts
                                && lock(&self.inner.shared)
                                    .budget
                                    .try_acquire_retry(Instant::now());
                            match bounded {
                                Some(wait) if can_retry => {
                                    tracing::warn!(
                                        endpoint,
                                        ?wait,
                                        "CVE-Pro 429; waiting Retry-After"
                                    );
                                    tokio::time::sleep(wait).await;
                                    retry += 1;
                                    continue;
                                }
                                _ => {
                                    return Err(CveProError::RateLimited {
                                        endpoint,
                                        retry_after,
                                    });
                                }
                            }
                        }
                        s if s < 300 || (400..500).contains(&s) => return Ok(raw),
                        s => CveProError::VendorUnavailable {
                            endpoint,
                            status: s,
                            excerpt: excerpt(&raw.body),
                        },
                    }
                }
                Err(e) => {
                    metrics::counter!("vetric_cvepro_calls_total", "endpoint" => endpoint, "outcome" => e.kind().as_str()).increment(1);
                    e
                }
            };
            // A failed attempt counts against the vendor.
            let t = lock(&self.inner.shared).breaker.on_failure(Instant::now());
            self.emit_transition(t);

            if attempt >= policy.max_attempts {
                return Err(failure);
            }
            let granted = lock(&self.inner.shared)
                .budget
                .try_acquire_retry(Instant::now());
            if !granted {
                tracing::warn!(endpoint, error = %failure, "CVE-Pro retry budget exhausted");
                return Err(CveProError::RetryBudgetExhausted {
                    endpoint,
                    last: Box::new(failure),
                });
            }
            let delay = backoff_delay(policy, retry, rand::random::<f64>());
            tracing::warn!(endpoint, attempt, ?delay, error = %failure, "CVE-Pro attempt failed; retrying");
            last_failure = Some(failure);
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Logs in. Caller holds the auth lock (single flight).
    async fn login_locked(&self, slot: &mut Option<Token>) -> Result<Token, CveProError> {
        let cfg = &self.inner.cfg;
        let url = endpoint_url(&cfg.base_url, login::PATH);
        let body = serde_json::to_vec(&login::LoginRequest {
            email: &cfg.email,
            password: cfg.password.expose(),
        })
        .map_err(|e| CveProError::MalformedBody {
            endpoint: login::ENDPOINT,
            detail: format!("could not encode the login body: {e}"),
            excerpt: String::new(),
        })?;
        let build = || {
            self.inner
                .http
                .post(url.clone())
                .header(API_KEY_HEADER, self.inner.api_key.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
        };
        let raw = self.call(login::ENDPOINT, &build).await?;
        let (token, expires_at) = interpret_login(raw.status, &raw.body)?;
        let mut header = HeaderValue::from_str(&token).map_err(|_| CveProError::ShapeChanged {
            endpoint: login::ENDPOINT,
            path: "token".to_owned(),
            detail: "token contains characters that cannot be sent in a header".to_owned(),
        })?;
        header.set_sensitive(true);
        let lifetime = token_lifetime(cfg, expires_at, Utc::now());
        let ahead = lifetime.saturating_sub(cfg.renew_before);
        let ahead = if ahead.is_zero() { lifetime / 2 } else { ahead };
        let generation = self
            .inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let t = Token {
            header,
            generation,
            renew_at: Instant::now() + ahead,
        };
        tracing::info!(generation, renew_in = ?ahead, "CVE-Pro login succeeded");
        *slot = Some(t.clone());
        Ok(t)
    }

    /// A valid token, logging in (once, whatever the number of callers) when needed.
    async fn token(&self) -> Result<Token, CveProError> {
        let mut slot = self.inner.auth.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.clone());
        }
        self.login_locked(&mut slot).await
    }

    /// After a 401 with token `failed`: log in again, unless another caller already did.
    async fn relogin_after_401(&self, failed: u64) -> Result<Token, CveProError> {
        let mut slot = self.inner.auth.lock().await;
        if let Some(t) = slot.as_ref()
            && t.generation != failed
            && Instant::now() < t.renew_at
        {
            return Ok(t.clone());
        }
        self.login_locked(&mut slot).await
    }

    /// Forces a fresh login now (the operator probe uses it to test credentials).
    pub async fn login(&self) -> Result<(), CveProError> {
        let result = async {
            let mut slot = self.inner.auth.lock().await;
            self.login_locked(&mut slot).await.map(|_| ())
        }
        .await;
        self.record(result)
    }

    /// Authenticated GET with the 401 → re-login once → replay rule. Returns a 2xx body.
    async fn get_authed(&self, endpoint: &'static str, url: &Url) -> Result<Vec<u8>, CveProError> {
        let build_with = |token: &Token| {
            let header = token.header.clone();
            let url = url.clone();
            let http = self.inner.http.clone();
            let key = self.inner.api_key.clone();
            move || {
                // Raw token, no "Bearer"; and never Platform / X-Timezone-Offset / timeZone.
                http.get(url.clone())
                    .header(AUTHORIZATION, header.clone())
                    .header(API_KEY_HEADER, key.clone())
                    .header(CONTENT_TYPE, "application/json")
            }
        };
        let token = self.token().await?;
        let mut raw = self.call(endpoint, &build_with(&token)).await?;
        if raw.status == 401 {
            tracing::info!(
                endpoint,
                "CVE-Pro 401 on a data call; logging in again once"
            );
            let fresh = self.relogin_after_401(token.generation).await?;
            raw = self.call(endpoint, &build_with(&fresh)).await?;
            if raw.status == 401 {
                return Err(CveProError::Unauthorized {
                    endpoint,
                    excerpt: excerpt(&raw.body),
                });
            }
        }
        if !(200..300).contains(&raw.status) {
            return Err(CveProError::ClientError {
                endpoint,
                status: raw.status,
                excerpt: excerpt(&raw.body),
            });
        }
        if let Some(msg) = wire::vendor_error(&raw.body) {
            return Err(CveProError::ClientError {
                endpoint,
                status: raw.status,
                excerpt: excerpt(msg.as_bytes()),
            });
        }
        Ok(raw.body)
    }

    fn count_unknown(&self, endpoint: &'static str, paths: &[String], report: &mut QuirkReport) {
        if paths.is_empty() {
            return;
        }
        let distinct: HashSet<&String> = paths.iter().collect();
        tracing::warn!(endpoint, fields = ?distinct, "CVE-Pro sent fields not in the recorded payloads");
        metrics::counter!("vetric_cvepro_unknown_fields_total", "endpoint" => endpoint)
            .increment(paths.len() as u64);
        report.add_unknown_fields(endpoint, paths);
    }

    async fn fetch_chargers(
        &self,
        report: &mut QuirkReport,
    ) -> Result<Vec<ChargerSnapshot>, CveProError> {
        let ep = chargepoints::ENDPOINT;
        let url = endpoint_url(&self.inner.cfg.base_url, chargepoints::PATH);
        let body = self.get_authed(ep, &url).await?;
        let decoded = match counted_decode::<chargepoints::ChargepointsResponse>(
            ep,
            &body,
            chargepoints::KNOWN,
        ) {
            Err(CveProError::ShapeChanged { path, .. })
                if path == "chargePointList"
                    && crate::planted::planted("missing-charger-list-is-empty") =>
            {
                // Planted bug (test builds only, see `planted`): the legacy default.
                wire::Decoded {
                    value: chargepoints::ChargepointsResponse {
                        charge_point_list: Vec::new(),
                        count: None,
                    },
                    unknown_fields: Vec::new(),
                }
            }
            other => other?,
        };
        self.count_unknown(ep, &decoded.unknown_fields, report);
        map::map_chargers(decoded.value, self.inner.cfg.vendor_timezone, report)
    }

    async fn fetch_transactions(
        &self,
        endpoint: &'static str,
        now: DateTime<Utc>,
        from: NaiveDateTime,
        to: NaiveDateTime,
        report: &mut QuirkReport,
    ) -> Result<Vec<TransactionRecord>, CveProError> {
        let mut url = endpoint_url(&self.inner.cfg.base_url, transaction::PATH);
        url.set_query(Some(&transaction_query(from, to)));
        let body = self.get_authed(endpoint, &url).await?;
        let decoded = counted_decode::<transaction::TransactionResponse>(
            endpoint,
            &body,
            transaction::KNOWN,
        )?;
        self.count_unknown(endpoint, &decoded.unknown_fields, report);
        let previous = lock(&self.inner.shared).transaction_offset;
        let (records, offset) = map::map_transactions(
            decoded.value,
            self.inner.cfg.transaction_zone,
            now,
            previous,
            report,
        )?;
        if offset != previous {
            lock(&self.inner.shared).transaction_offset = offset;
        }
        Ok(records)
    }

    /// `GET /api/v1/chargepoints`: every charger of the account.
    pub async fn chargers(&self) -> Result<Vec<ChargerSnapshot>, CveProError> {
        let mut report = QuirkReport::default();
        let r = self.fetch_chargers(&mut report).await;
        self.record(r)
    }

    /// `GET /api/v1/transaction` for a window of vendor wall-clock times (see
    /// [`crate::transaction_window`]), deduplicated by id, with times calibrated to UTC.
    pub async fn transactions(
        &self,
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> Result<Vec<TransactionRecord>, CveProError> {
        let mut report = QuirkReport::default();
        let r = self
            .fetch_transactions(transaction::ENDPOINT, Utc::now(), from, to, &mut report)
            .await;
        self.record(r)
    }

    /// One complete read: chargers plus the transaction window, empty tags resolved.
    ///
    /// `now` is the caller's clock (it becomes `observed_at` and drives the window);
    /// `oldest_open_start` is the start of the oldest session the caller still believes open,
    /// so the window reaches back far enough to see it end.
    pub async fn snapshot(
        &self,
        now: DateTime<Utc>,
        oldest_open_start: Option<DateTime<Utc>>,
    ) -> Result<SnapshotReport, CveProError> {
        let result = self.snapshot_inner(now, oldest_open_start).await;
        self.record(result)
    }

    async fn snapshot_inner(
        &self,
        now: DateTime<Utc>,
        oldest_open_start: Option<DateTime<Utc>>,
    ) -> Result<SnapshotReport, CveProError> {
        let cfg = &self.inner.cfg;
        let (from, to) = time::transaction_window(
            now,
            oldest_open_start,
            cfg.vendor_timezone,
            cfg.max_window_days,
        );
        let mut charger_report = QuirkReport::default();
        let mut report = QuirkReport::default();
        // Both calls at once while the breaker is closed. Otherwise one after the other: the
        // breaker lets a single probe through, and a second call refused beside it would fail
        // the snapshot and drop the probe with it, so a snapshot could never close the breaker.
        let closed = lock(&self.inner.shared).breaker.state() == BreakerState::Closed;
        let (chargers, mut transactions) = if closed {
            tokio::try_join!(
                self.fetch_chargers(&mut charger_report),
                self.fetch_transactions(transaction::ENDPOINT, now, from, to, &mut report),
            )?
        } else {
            let chargers = self.fetch_chargers(&mut charger_report).await?;
            let transactions = self
                .fetch_transactions(transaction::ENDPOINT, now, from, to, &mut report)
                .await?;
            (chargers, transactions)
        };
        report.power_max_in_kw = charger_report.power_max_in_kw;
        report.power_max_missing = charger_report.power_max_missing;
        report
            .count_mismatches
            .extend(charger_report.count_mismatches);
        for (k, v) in charger_report.unknown_fields {
            *report.unknown_fields.entry(k).or_default() += v;
        }
        self.resolve_empty_tags(now, &mut transactions, &mut report)
            .await;
        Ok(SnapshotReport {
            snapshot: VendorSnapshot {
                observed_at: now,
                chargers,
                transactions,
            },
            quirks: report,
        })
    }

    /// Fills the tag of open sessions that came with an empty `ocppIdTag` (A5.5 #1), from a
    /// finished session with the same `ocppTagPk`: first in the list at hand, then in the
    /// cache, and only then with one history query for all that are still missing.
    async fn resolve_empty_tags(
        &self,
        now: DateTime<Utc>,
        records: &mut [TransactionRecord],
        report: &mut QuirkReport,
    ) {
        let cfg = &self.inner.cfg;
        let needs = |r: &TransactionRecord| r.is_open() && r.tag.is_none() && r.tag_pk.is_some();
        report.empty_tags = records
            .iter()
            .filter(|r| r.is_open() && r.tag.is_none())
            .count() as u32;
        let wanted: HashSet<i64> = records
            .iter()
            .filter(|r| needs(r))
            .filter_map(|r| r.tag_pk)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let in_list = map::tags_from_finished(records);
        let mut resolved: HashMap<i64, Option<Tag>> = HashMap::new();
        let mut missing = Vec::new();
        {
            let at = Instant::now();
            let mut s = lock(&self.inner.shared);
            s.tag_cache.retain(|_, c| c.expires > at);
            for pk in &wanted {
                if let Some(tag) = in_list.get(pk) {
                    s.tag_cache.insert(
                        *pk,
                        CachedTag {
                            tag: Some(tag.clone()),
                            expires: at + cfg.tag_cache_ttl,
                        },
                    );
                    resolved.insert(*pk, Some(tag.clone()));
                } else if let Some(c) = s.tag_cache.get(pk) {
                    resolved.insert(*pk, c.tag.clone());
                } else {
                    missing.push(*pk);
                }
            }
        }
        if !missing.is_empty() {
            let (from, to) = time::history_window(now, cfg.vendor_timezone, cfg.tag_history_days);
            let mut scratch = QuirkReport::default();
            match self
                .fetch_transactions("transaction_history", now, from, to, &mut scratch)
                .await
            {
                Ok(history) => {
                    let found = map::tags_from_finished(&history);
                    let at = Instant::now();
                    let mut s = lock(&self.inner.shared);
                    for pk in missing {
                        let tag = found.get(&pk).cloned();
                        let ttl = if tag.is_some() {
                            cfg.tag_cache_ttl
                        } else {
                            cfg.tag_cache_negative_ttl
                        };
                        s.tag_cache.insert(
                            pk,
                            CachedTag {
                                tag: tag.clone(),
                                expires: at + ttl,
                            },
                        );
                        resolved.insert(pk, tag);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CVE-Pro ocppTagPk history lookup failed");
                    report.tag_history_error = Some(e.to_string());
                }
            }
        }
        for r in records.iter_mut().filter(|r| needs(r)) {
            if let Some(Some(tag)) = r.tag_pk.and_then(|pk| resolved.get(&pk)) {
                r.tag = Some(tag.clone());
                report.empty_tags_resolved += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_base_prefix_and_encode_the_space() {
        let base = Url::parse("https://proxy.example/cve/").expect("url");
        assert_eq!(
            endpoint_url(&base, "api/v1/chargepoints").as_str(),
            "https://proxy.example/cve/api/v1/chargepoints"
        );
        let base = Url::parse("https://cs.intelbras-cve-pro.com.br").expect("url");
        let mut u = endpoint_url(&base, "api/v1/transaction");
        let from =
            NaiveDateTime::parse_from_str("2026-01-11 00:00:00", time::QUERY_FORMAT).expect("t");
        let to =
            NaiveDateTime::parse_from_str("2026-01-13 00:00:00", time::QUERY_FORMAT).expect("t");
        u.set_query(Some(&transaction_query(from, to)));
        assert_eq!(
            u.as_str(),
            "https://cs.intelbras-cve-pro.com.br/api/v1/transaction?fromDate=2026-01-11%2000:00:00&toDate=2026-01-13%2000:00:00"
        );
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn token_lifetime_uses_plausible_expires_at() {
        let cfg = CveProConfig::new(
            Url::parse("http://127.0.0.1/").expect("url"),
            "k".into(),
            "e@x",
            "p".into(),
        );
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("t");
        assert_eq!(token_lifetime(&cfg, None, now), Duration::from_secs(86_400));
        assert_eq!(
            token_lifetime(&cfg, Some(1_700_003_600), now),
            Duration::from_secs(3600)
        );
        assert_eq!(
            token_lifetime(&cfg, Some(1_700_003_600_000), now),
            Duration::from_secs(3600)
        );
        assert_eq!(
            token_lifetime(&cfg, Some(1), now),
            Duration::from_secs(86_400)
        );
    }
}
