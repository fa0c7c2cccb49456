//! systemd supervision (`Type=notify`, `WatchdogSec=`; STACK.md §27, deploy/systemd).
//!
//! * `READY=1` once the port is bound, the store migrated and HTTP about to be served
//!   ([`ready`]).
//! * `WATCHDOG=1` at half the watchdog interval, but only while the process is really alive:
//!   the store answers a ping, and every site with a vendor account has had an ingest cycle
//!   recorded (`vendor_links.updated_at`, good or bad) within
//!   [`vetric_web::vitals::ingest_stuck_after`] of its poll interval. A hung store connection
//!   or a dead or wedged ingest loop withholds the keep-alive, and systemd restarts the
//!   service `WatchdogSec` later. A vendor outage does not: failed cycles are recorded too.
//! * `STOPPING=1` as soon as draining starts.
//!
//! Everything here is a no-op when `NOTIFY_SOCKET` is unset (not started by systemd, the
//! demo, tests); the watchdog task only runs when systemd asked for one (`WATCHDOG_USEC`).

use crate::liveness::PolledSite;
use sd_notify::NotifyState;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use vetric_store::Store;

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// `READY=1` (with a `STATUS=` line for `systemctl status`).
pub fn ready(listen: &str) {
    let status = format!("serving on {listen}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Runs until `stop`: sends `STOPPING=1` when it is cancelled and, if systemd enabled the
/// watchdog, keep-alives while [`alive`] says so.
pub async fn supervise(store: Store, sites: Vec<PolledSite>, stop: CancellationToken) {
    let started = Instant::now();
    match sd_notify::watchdog_enabled() {
        Some(interval) => {
            let every = (interval / 2).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                // Bounded so that keep-alives stay well inside the interval even when the
                // store hangs: at most 3/4 of it between two of them.
                let check = tokio::time::timeout(
                    every / 2,
                    crate::liveness::check(&store, &sites, started.elapsed()),
                );
                let verdict = check.await.unwrap_or_else(|_| {
                    Err(format!("the store did not answer within {:?}", every / 2))
                });
                match verdict {
                    Ok(()) => send(&[NotifyState::Watchdog]),
                    Err(why) => {
                        warn!(%why, "withholding the systemd watchdog keep-alive");
                        let status = format!("unhealthy: {why}");
                        send(&[NotifyState::Status(&status)]);
                    }
                }
            }
        }
        None => stop.cancelled().await,
    }
    debug!("draining: notifying systemd");
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}
