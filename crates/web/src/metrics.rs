//! `GET /metrics`: Prometheus text format, names prefixed `vetric_` (STACK.md §17).
//!
//! The binary installs the recorder once per process ([`install`]) and hands its handle to
//! the app ([`crate::OpsSettings::metrics`]); a task runs [`upkeep`] so histograms roll over.
//! Tests build a local recorder instead ([`builder`]`().build_recorder()` with
//! `metrics::set_default_local_recorder`): the global one may be installed only once.
//!
//! What this crate records:
//! * `vetric_build_info{version}` — 1 (set on every scrape).
//! * `vetric_http_requests_total{route,method,status}` and
//!   `vetric_http_request_duration_seconds{route,method,status}` — by [`track`]. `route` is
//!   the matched route template (`/sites/{slug}`), `unmatched` for anything no route matched,
//!   never the raw URL; `method` is one of the standard methods or `other`.
//! * `vetric_sse_clients` — open live streams ([`SseClient`]).
//! * `vetric_store_up` — 1 when the store answered a ping during this scrape.
//! * `vetric_data_age_seconds{site}` and `vetric_vendor_up{site}` — refreshed from the store
//!   on every scrape, for each site with a vendor account.
//! * `vetric_outbox_backlog` (messages still owed: pending and in doubt) and
//!   `vetric_outbox_oldest_age_seconds` (how long the oldest due one has waited; 0 when none) —
//!   refreshed from the store on every scrape. The dispatcher sets the same two gauges when it
//!   measures the backlog; reading them here too keeps them true when the dispatcher itself is
//!   stuck, which is exactly when the backlog-age alert must fire.
//! * `vetric_outbox_in_doubt` — rows in doubt right now (all sites), refreshed on every scrape.
//!
//! Recorded by the engine's dispatcher, rendered here: `vetric_notifications_total{status,
//! channel}`, `vetric_gateway_up{site}`, `vetric_dispatcher_errors_total`.
//!
//! Label values are bounded: route templates, methods, status codes and configured site
//! slugs — never user ids, tokens or raw paths.

use crate::AppState;
use crate::vitals;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often [`upkeep`] runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Histogram buckets (seconds) for every `*_seconds` histogram: HTTP requests, vendor and
/// gateway calls, ingest cycles (a cycle with retries can take tens of seconds).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
}

/// The recorder's configuration: `*_seconds` histograms are rendered as real Prometheus
/// histograms (aggregatable across instances) rather than summaries.
pub fn builder() -> PrometheusBuilder {
    let b = PrometheusBuilder::new();
    match b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS) {
        Ok(b) => b,
        // Only fails on an empty bucket list, which SECONDS_BUCKETS is not.
        Err(_) => PrometheusBuilder::new(),
    }
}

/// Installs the process-wide recorder and returns its handle. Idempotent: a second call in
/// the same process (`install_recorder` may run only once) returns the same handle.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    static INSTALLED: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| builder().install_recorder().map_err(|e| e.to_string()))
        .clone()
        .map_err(MetricsError::Install)
}

/// Runs the recorder's upkeep (histogram windows) every [`UPKEEP_EVERY`] until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route label: the matched template, or `unmatched`. Axum's internal catch-all names
/// (nest tails) are folded into `unmatched` too.
pub(crate) fn route_label(matched: Option<&MatchedPath>) -> String {
    match matched.map(MatchedPath::as_str) {
        Some(p) if !p.contains("__private__") => p.to_owned(),
        _ => "unmatched".to_owned(),
    }
}

/// Middleware: counts and times every request by route template, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status),
    ];
    metrics::counter!("vetric_http_requests_total", &labels).increment(1);
    metrics::histogram!("vetric_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    res
}

/// Counts an open live stream in `vetric_sse_clients` while it lives.
pub struct SseClient(metrics::Gauge);

impl SseClient {
    pub fn open() -> Self {
        let g = metrics::gauge!("vetric_sse_clients");
        g.increment(1.0);
        Self(g)
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// `GET /metrics`. No login (Prometheus scrapes it); it carries no secrets or residents'
/// data, but should still be reachable only from the monitoring network (README).
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = state.ops().metrics.clone() else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    refresh(&state).await;
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        handle.render(),
    )
        .into_response()
}

/// Sets the gauges that come from the store rather than from events.
async fn refresh(state: &AppState) {
    let ops = state.ops();
    metrics::gauge!("vetric_build_info", "version" => ops.version).set(1.0);
    // Present (at 0) before the first live stream opens.
    metrics::gauge!("vetric_sse_clients").increment(0.0);
    let store = state.store();
    let up = matches!(
        tokio::time::timeout(ops.store_timeout, store.ping()).await,
        Ok(Ok(()))
    );
    metrics::gauge!("vetric_store_up").set(if up { 1.0 } else { 0.0 });
    if !up {
        return;
    }
    let now = chrono::Utc::now();
    outbox_gauges(state, now).await;
    for site in state.sites() {
        if !ops.vendor_configured(site.id) {
            continue;
        }
        let read = tokio::time::timeout(ops.store_timeout, vitals::read(store, site, true, now));
        let Ok(Ok(v)) = read.await else {
            tracing::warn!(site = %site.slug, "metrics: cannot read the vendor link");
            continue;
        };
        let slug = site.slug.clone();
        metrics::gauge!("vetric_vendor_up", "site" => slug.clone()).set(if v.vendor_up() {
            1.0
        } else {
            0.0
        });
        if let Some(age) = v.data_age {
            metrics::gauge!("vetric_data_age_seconds", "site" => slug)
                .set(age.num_milliseconds() as f64 / 1000.0);
        }
    }
}

/// `vetric_outbox_backlog` and `vetric_outbox_oldest_age_seconds`, all sites together (the
/// same figures, by the same query, as the dispatcher's).
async fn outbox_gauges(state: &AppState, now: chrono::DateTime<chrono::Utc>) {
    let read = tokio::time::timeout(
        state.ops().store_timeout,
        state.store().outbox_backlog(None, now),
    );
    let Ok(Ok(stats)) = read.await else {
        tracing::warn!("metrics: cannot read the outbox backlog");
        return;
    };
    metrics::gauge!("vetric_outbox_backlog").set((stats.pending + stats.in_doubt) as f64);
    // The live count the `VetricNotificationsInDoubt` alert reads: it clears as soon as the
    // last row in doubt is settled (by reconciliation or an operator's decision).
    metrics::gauge!("vetric_outbox_in_doubt").set(stats.in_doubt as f64);
    let age = stats
        .oldest_due
        .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!("vetric_outbox_oldest_age_seconds").set(age);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or(Method::GET)),
            "other"
        );
        assert_eq!(route_label(None), "unmatched");
    }
}
