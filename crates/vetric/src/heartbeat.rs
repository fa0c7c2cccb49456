//! The outside heartbeat (issue 6 item 8, RELIABILITY.md R4): every `heartbeat_interval_s`,
//! while vetric is healthy, a GET to `heartbeat_url` (healthchecks.io, UptimeRobot and the
//! like). The monitor alerts when the pings stop, which is what happens when the process dies,
//! hangs, or stops ingesting.
//!
//! Healthy means: the store answers, and every site with a vendor account recorded an ingest
//! cycle (good or bad: a vendor outage is not vetric being dead) within
//! [`vetric_web::vitals::ingest_stuck_after`] of its poll interval.
//!
//! The task runs on its own, every request is bounded by a short timeout, and nothing waits for
//! it. The URL may carry a token (in its path or query), so only its origin is ever logged, and
//! reqwest errors are logged without their URL.

use crate::liveness::PolledSite;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;
use vetric_store::Store;

/// The part of the URL that is safe to log: `scheme://host[:port]`.
pub fn safe_origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Runs until `stop` is cancelled.
pub async fn run(
    url: Url,
    interval: Duration,
    store: Store,
    sites: Vec<PolledSite>,
    stop: CancellationToken,
) {
    let origin = safe_origin(&url);
    // Short: a slow monitor must not make pings pile up or drift.
    let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e.without_url(), "heartbeat disabled: cannot build an HTTP client");
            return;
        }
    };
    info!(monitor = %origin, every_s = interval.as_secs(), "heartbeat enabled");
    let started = Instant::now();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let check = tokio::time::timeout(
            timeout,
            crate::liveness::check(&store, &sites, started.elapsed()),
        );
        match check.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                warn!(%why, "not healthy: heartbeat withheld");
                continue;
            }
            Err(_) => {
                warn!("not healthy: the store did not answer in time; heartbeat withheld");
                continue;
            }
        }
        let sent = tokio::select! {
            () = stop.cancelled() => break,
            r = client.get(url.clone()).send() => r,
        };
        match sent.and_then(reqwest::Response::error_for_status) {
            Ok(_) => {
                if failing {
                    info!(monitor = %origin, "heartbeat delivered again");
                }
                failing = false;
                debug!(monitor = %origin, "heartbeat sent");
            }
            Err(e) => {
                failing = true;
                warn!(monitor = %origin, error = %e.without_url(), "heartbeat not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origin_is_logged() {
        let u = Url::parse("https://hc-ping.com/5f1c-secret-uuid?token=abc").unwrap();
        assert_eq!(safe_origin(&u), "https://hc-ping.com");
    }
}
