//! Health for load balancers and monitors (DESIGN.md "HTTP", RELIABILITY.md R3/R4).
//!
//! * `GET /health/live` (in `lib.rs`): the process answers; touches nothing else.
//! * `GET /health/ready`: the store answers a ping within [`OpsSettings::store_timeout`] —
//!   `{"status":"pass"}` 200, else `{"status":"fail"}` 503.
//! * `GET /health`: `application/health+json` in the style of draft-inadarei-api-health-check:
//!
//! ```json
//! {"status": "pass"|"warn"|"fail", "version": "0.1.0", "description": "vetric",
//!  "checks": {
//!    "store:responseTime": [{"componentType": "datastore", "status": "pass",
//!                            "observedValue": 1.2, "observedUnit": "ms", "time": "…"}],
//!    "vendor:<slug>": [{"componentType": "component", "status": "warn",
//!                       "observedValue": 742.0, "observedUnit": "s", "link": "failing",
//!                       "freshness": "stale", "breaker": "open",
//!                       "output": "HTTP 502 (circuit breaker open)", "time": "…"}],
//!    "ingest:<slug>": [{"componentType": "component", "status": "pass",
//!                       "observedValue": 3.1, "observedUnit": "s", "time": "…"}],
//!    "gateway:<slug>": [{"componentType": "component", "status": "warn",
//!                        "observedValue": "close", "observedUnit": "state",
//!                        "output": "WhatsApp gateway not open (close) since …", "time": "…"}],
//!    "outbox:<slug>": [{"componentType": "component", "status": "pass",
//!                       "observedValue": 0.0, "observedUnit": "s", "backlog": 0,
//!                       "inDoubt": 0, "time": "…"}]}}
//! ```
//!
//! One check per configured dependency: a site without a vendor account has neither a
//! `vendor:` nor an `ingest:` check; a site without a WhatsApp gateway (`[sites.whatsapp]`)
//! has neither a `gateway:` nor an `outbox:` check. `vendor:` observes the age of the data in
//! seconds (`null` before the first good read); `ingest:` observes the time since the ingest
//! loop last recorded a cycle, good or bad; `gateway:` observes the connection state the
//! dispatcher last saw (it asks the gateway on its own schedule: a probe never calls the
//! gateway); `outbox:` observes how long the oldest message still owed (due and pending, or in
//! doubt) has waited, with the counts beside it.
//!
//! Status rules: the store not answering is `fail` (503: this instance cannot serve). The
//! vendor failing, its breaker open, its answers changing shape, its data stale or offline,
//! or the ingest loop looking stuck are `warn` (200) — never `fail`, so a vendor incident never
//! takes every instance out of the load balancer. Likewise the WhatsApp gateway not being open
//! and the outbox backing up (oldest message older than the site's `backlog_alert_min`, or
//! anything in doubt) are `warn`, never `fail` (see [`outbox_check`]). Otherwise `pass` (200).
//!
//! Nothing here needs a login, so nothing here carries secrets or residents' data: site
//! slugs, states, ages and the vendor error text the ingest loop recorded (which names the
//! failure, never credentials). Store errors are logged, not shown.

use crate::vitals::{self, LinkState, SiteVitals};
use crate::{AppState, SiteSettings};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use vetric_domain::Freshness;
use vetric_domain::notify::NotificationPolicy;
use vetric_engine::{GatewayObservation, GatewayStatus, LeadershipBoard};
use vetric_store::{BacklogStats, SiteId};

/// The content type of health responses.
pub const HEALTH_JSON: &str = "application/health+json";

/// What the operational endpoints need besides the store and the sites.
#[derive(Clone)]
pub struct OpsSettings {
    /// Renders `/metrics`; `None` answers 404 there.
    pub metrics: Option<PrometheusHandle>,
    /// Sites with no vendor account configured: no `vendor:`/`ingest:` checks and no vendor
    /// gauges for them. Every other site is expected to be polled.
    pub without_vendor: HashSet<SiteId>,
    /// How long a store ping may take before the store counts as unreachable.
    pub store_timeout: Duration,
    /// Reported as `version` and in `vetric_build_info`.
    pub version: &'static str,
    /// The WhatsApp gateway states the dispatcher records; `gateway:` checks read them.
    pub gateways: GatewayStatus,
    /// Which polled sites this instance leads; each `ingest:` check gains a `leader` or
    /// `follower` entry (a follower is healthy: another instance polls).
    pub leadership: LeadershipBoard,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            metrics: None,
            without_vendor: HashSet::new(),
            store_timeout: Duration::from_secs(2),
            version: env!("CARGO_PKG_VERSION"),
            gateways: GatewayStatus::default(),
            leadership: LeadershipBoard::default(),
        }
    }
}

impl OpsSettings {
    pub fn vendor_configured(&self, site: SiteId) -> bool {
        !self.without_vendor.contains(&site)
    }
}

/// `pass`, `warn` or `fail`, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

impl HealthStatus {
    /// `fail` is 503; `pass` and `warn` are 200.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Fail => StatusCode::SERVICE_UNAVAILABLE,
            Self::Pass | Self::Warn => StatusCode::OK,
        }
    }
}

/// A check's `observedValue`: a number (ages, times) or a state (`gateway:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Observed {
    Number(f64),
    State(String),
}

impl From<f64> for Observed {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}

/// One entry of a check's array.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub component_type: &'static str,
    pub status: HealthStatus,
    pub observed_value: Option<Observed>,
    pub observed_unit: &'static str,
    /// Vendor checks: `up`, `failing`, `shape_changed`, `never_polled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkState>,
    /// Vendor checks: `fresh`, `stale`, `offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<&'static str>,
    /// Vendor checks: `closed`, `open`, `half_open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<&'static str>,
    /// Outbox checks: messages still owed (pending, due or deferred, and in doubt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Outbox checks: messages that may or may not have reached the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_doubt: Option<i64>,
    /// Why it is not `pass`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub time: DateTime<Utc>,
}

/// The `/health` document.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub version: &'static str,
    pub description: &'static str,
    pub checks: BTreeMap<String, Vec<Check>>,
}

fn health_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HEALTH_JSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Pings the store within the timeout; the elapsed time when it answered.
async fn ping(state: &AppState) -> Result<Duration, &'static str> {
    let started = Instant::now();
    match tokio::time::timeout(state.ops().store_timeout, state.store().ping()).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the store does not answer");
            Err("the store does not answer")
        }
        Err(_) => {
            tracing::warn!(timeout = ?state.ops().store_timeout, "health: store ping timed out");
            Err("the store did not answer in time")
        }
    }
}

/// `GET /health/ready`: can this instance serve (is the store reachable)?
pub async fn ready(State(state): State<AppState>) -> Response {
    let status = match ping(&state).await {
        Ok(_) => HealthStatus::Pass,
        Err(_) => HealthStatus::Fail,
    };
    health_json(
        status.http_status(),
        serde_json::json!({ "status": status }).to_string(),
    )
}

/// `GET /health`.
pub async fn health(State(state): State<AppState>) -> Response {
    let report = report(&state, Utc::now()).await;
    match serde_json::to_string(&report) {
        Ok(body) => health_json(report.status.http_status(), body),
        Err(e) => {
            tracing::error!(error = %e, "health: cannot serialise the report");
            health_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"status":"fail"}"#.to_owned(),
            )
        }
    }
}

/// Builds the `/health` document at `now`.
pub async fn report(state: &AppState, now: DateTime<Utc>) -> HealthReport {
    let ops = state.ops();
    let mut checks = BTreeMap::new();
    let store = match ping(state).await {
        Ok(elapsed) => Check {
            observed_value: Some(((elapsed.as_secs_f64() * 1e6).round() / 1e3).into()),
            ..check("datastore", HealthStatus::Pass, "ms", now)
        },
        Err(why) => Check {
            output: Some(why.to_owned()),
            ..check("datastore", HealthStatus::Fail, "ms", now)
        },
    };
    let store_ok = store.status == HealthStatus::Pass;
    checks.insert("store:responseTime".to_owned(), vec![store]);
    // Without the store nothing else can be read; the site checks would only wait for it.
    if store_ok {
        for site in state.sites() {
            if !ops.vendor_configured(site.id) {
                continue;
            }
            let read = tokio::time::timeout(
                ops.store_timeout,
                vitals::read(state.store(), site, true, now),
            )
            .await;
            let (vendor, ingest) = match read {
                Ok(Ok(v)) => (vendor_check(&v, now), ingest_check(site, &v, now)),
                Ok(Err(e)) => {
                    tracing::warn!(site = %site.slug, error = %e, "health: cannot read the vendor link");
                    unreadable(now)
                }
                Err(_) => {
                    tracing::warn!(site = %site.slug, "health: reading the vendor link timed out");
                    unreadable(now)
                }
            };
            checks.insert(format!("vendor:{}", site.slug), vec![vendor]);
            let mut ingest = vec![ingest];
            ingest.extend(leadership_check(&ops.leadership, site.id, now));
            checks.insert(format!("ingest:{}", site.slug), ingest);
        }
    }
    gateway_checks(state, store_ok, now, &mut checks).await;
    let status = checks
        .values()
        .flatten()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Pass);
    HealthReport {
        status,
        version: ops.version,
        description: "vetric",
        checks,
    }
}

/// This instance's role for a site's ingest: `leader` or `follower`, both `pass`.
fn leadership_check(board: &LeadershipBoard, site: SiteId, now: DateTime<Utc>) -> Option<Check> {
    let role = board.get(site)?;
    Some(Check {
        observed_value: Some(Observed::State(
            if role.is_leader { "leader" } else { "follower" }.to_owned(),
        )),
        ..check("component", HealthStatus::Pass, "role", now)
    })
}

fn check(
    component_type: &'static str,
    status: HealthStatus,
    unit: &'static str,
    now: DateTime<Utc>,
) -> Check {
    Check {
        component_type,
        status,
        observed_value: None,
        observed_unit: unit,
        link: None,
        freshness: None,
        breaker: None,
        backlog: None,
        in_doubt: None,
        output: None,
        time: now,
    }
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn unreadable(now: DateTime<Utc>) -> (Check, Check) {
    let c = Check {
        output: Some("could not read this site's state from the store".to_owned()),
        ..check("component", HealthStatus::Warn, "s", now)
    };
    (c.clone(), c)
}

/// The vendor link of a site: `warn` unless the link is up, the breaker closed and the data
/// fresh. Never `fail` (RELIABILITY.md R3).
pub fn vendor_check(v: &SiteVitals, now: DateTime<Utc>) -> Check {
    let healthy = v.vendor_up() && v.freshness == Freshness::Fresh;
    let output = if healthy {
        None
    } else if v.vendor.link != LinkState::Up {
        Some(match &v.vendor.last_error {
            Some(e) if !e.message.is_empty() => e.message.clone(),
            Some(e) => e.kind.clone(),
            None if v.vendor.link == LinkState::NeverPolled => {
                "no vendor poll recorded yet".to_owned()
            }
            None => format!("vendor link {}", v.vendor.link),
        })
    } else if v.vendor.breaker != vetric_store::BreakerState::Closed.as_str() {
        Some(format!("circuit breaker {}", v.vendor.breaker))
    } else {
        Some(match v.freshness_view.as_of {
            Some(t) => format!("data {} since {}", v.freshness.as_str(), t.to_rfc3339()),
            None => format!("data {}", v.freshness.as_str()),
        })
    };
    Check {
        observed_value: v.data_age.map(|d| seconds(d).into()),
        link: Some(v.vendor.link),
        freshness: Some(v.freshness.as_str()),
        breaker: Some(v.vendor.breaker),
        output,
        ..check(
            "component",
            if healthy {
                HealthStatus::Pass
            } else {
                HealthStatus::Warn
            },
            "s",
            now,
        )
    }
}

/// The ingest loop of a site: `warn` when no cycle (good or bad) was recorded for about three
/// poll intervals — the loop may be stuck. Never `fail`.
pub fn ingest_check(site: &SiteSettings, v: &SiteVitals, now: DateTime<Utc>) -> Check {
    let stuck = v.ingest_stuck(site);
    let output = stuck.then(|| match v.last_cycle {
        Some(t) => format!(
            "no ingest cycle recorded since {} (expected every {} s)",
            t.to_rfc3339(),
            site.poll_interval.as_secs()
        ),
        None => "no ingest cycle recorded yet".to_owned(),
    });
    Check {
        observed_value: v.ingest_lag.map(|d| seconds(d).into()),
        output,
        ..check(
            "component",
            if stuck {
                HealthStatus::Warn
            } else {
                HealthStatus::Pass
            },
            "s",
            now,
        )
    }
}

/// The `gateway:` and `outbox:` checks of every site with a WhatsApp gateway configured; none
/// when no site has one. The outbox needs the store, so without it only `gateway:` is shown.
async fn gateway_checks(
    state: &AppState,
    store_ok: bool,
    now: DateTime<Utc>,
    checks: &mut BTreeMap<String, Vec<Check>>,
) {
    let ops = state.ops();
    for site in state.sites() {
        if state.gateway(site.id).is_none() {
            continue;
        }
        let seen = ops.gateways.get(site.id);
        checks.insert(
            format!("gateway:{}", site.slug),
            vec![gateway_check(seen.as_ref(), now)],
        );
        if !store_ok {
            continue;
        }
        let read = tokio::time::timeout(ops.store_timeout, async {
            let stats = state.store().outbox_backlog(Some(site.id), now).await?;
            let (policy, _) = crate::notifications::settings::load_policy(state, site.id).await?;
            Ok::<_, vetric_store::StoreError>((stats, policy))
        })
        .await;
        let outbox = match read {
            Ok(Ok((stats, policy))) => outbox_check(&stats, &policy, now),
            Ok(Err(e)) => {
                tracing::warn!(site = %site.slug, error = %e, "health: cannot read the outbox backlog");
                Check {
                    output: Some("could not read this site's outbox from the store".to_owned()),
                    ..check("component", HealthStatus::Warn, "s", now)
                }
            }
            Err(_) => {
                tracing::warn!(site = %site.slug, "health: reading the outbox backlog timed out");
                Check {
                    output: Some("could not read this site's outbox from the store".to_owned()),
                    ..check("component", HealthStatus::Warn, "s", now)
                }
            }
        };
        checks.insert(format!("outbox:{}", site.slug), vec![outbox]);
    }
}

/// A site's WhatsApp gateway as the dispatcher last saw it: `warn` unless `open` (nothing
/// goes out through a gateway that is not), and `warn` before the first check. Never `fail`:
/// this instance still serves pages and the API, and every instance shares the same gateway,
/// so failing would only take all of them out of the load balancer together.
pub fn gateway_check(seen: Option<&GatewayObservation>, now: DateTime<Utc>) -> Check {
    let Some(seen) = seen else {
        return Check {
            observed_value: None,
            output: Some(
                "no gateway check recorded yet (the dispatcher checks on start)".to_owned(),
            ),
            ..check("component", HealthStatus::Warn, "state", now)
        };
    };
    let output = (!seen.open).then(|| {
        let since = seen
            .down_since
            .map(|t| format!(" since {}", t.to_rfc3339()))
            .unwrap_or_default();
        match &seen.error {
            Some(kind) => format!("WhatsApp gateway could not be asked ({kind}){since}"),
            None => format!("WhatsApp gateway not open ({}){since}", seen.state),
        }
    });
    Check {
        observed_value: Some(Observed::State(seen.state.clone())),
        output,
        ..check(
            "component",
            if seen.open {
                HealthStatus::Pass
            } else {
                HealthStatus::Warn
            },
            "state",
            now,
        )
    }
}

/// A site's outbox: `warn` when the oldest message still owed has waited longer than the
/// site's `backlog_alert_min`, or when any message is in doubt (it waits for reconciliation
/// or an operator's decision: never resent blindly).
///
/// Never `fail`. A backlog means messages are not going out — a gateway, SMTP or dispatcher
/// problem that every instance shares. Taking instances out of the load balancer would not
/// send a single message; it would only add a dashboard outage to a notification outage, and
/// with every instance failing at once, nginx would have nowhere to send anyone. The operators
/// hear about it from the dispatcher's own alert and `VetricOutboxBacklogStale`.
pub fn outbox_check(
    stats: &BacklogStats,
    policy: &NotificationPolicy,
    now: DateTime<Utc>,
) -> Check {
    let minutes = if policy.backlog_alert_min > 0 {
        policy.backlog_alert_min
    } else {
        NotificationPolicy::default().backlog_alert_min
    };
    let limit = chrono::TimeDelta::minutes(i64::from(minutes));
    let age = stats
        .oldest_due
        .map(|t| (now - t).max(chrono::TimeDelta::zero()));
    let stale = age.is_some_and(|a| a > limit);
    let mut why = Vec::new();
    if let (true, Some(t)) = (stale, stats.oldest_due) {
        why.push(format!(
            "oldest unsent message waiting since {} (limit {minutes} min)",
            t.to_rfc3339()
        ));
    }
    if stats.in_doubt > 0 {
        why.push(format!(
            "{} message(s) in doubt: reconcile before any resend",
            stats.in_doubt
        ));
    }
    Check {
        observed_value: Some(age.map_or(0.0, seconds).into()),
        backlog: Some(stats.pending + stats.in_doubt),
        in_doubt: Some(stats.in_doubt),
        output: (!why.is_empty()).then(|| why.join("; ")),
        ..check(
            "component",
            if why.is_empty() {
                HealthStatus::Pass
            } else {
                HealthStatus::Warn
            },
            "s",
            now,
        )
    }
}
