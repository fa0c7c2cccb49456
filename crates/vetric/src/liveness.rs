//! Is this process really alive? The one answer that systemd's watchdog (`serve/systemd.rs`) and
//! the outside heartbeat (`heartbeat.rs`) both act on: the store answers a ping, and every site
//! with a vendor account has had an ingest cycle recorded (`vendor_links.updated_at`, good or
//! bad: a vendor outage is not vetric being dead) within
//! [`vetric_web::vitals::ingest_stuck_after`] of its poll interval.

use chrono::Utc;
use std::time::Duration;
use vetric_store::{SiteId, Store};
use vetric_web::vitals::ingest_stuck_after;

/// A site whose ingest loop must be recording cycles.
#[derive(Debug, Clone)]
pub struct PolledSite {
    pub id: SiteId,
    pub slug: String,
    pub poll_interval: Duration,
}

/// `Ok` when alive; otherwise what is wrong, for a log line. A process younger than a site's
/// bound is not judged on that site yet: its first cycle may not have run.
pub async fn check(store: &Store, sites: &[PolledSite], uptime: Duration) -> Result<(), String> {
    store
        .ping()
        .await
        .map_err(|e| format!("the store does not answer: {e}"))?;
    let now = Utc::now();
    for site in sites {
        let bound = ingest_stuck_after(site.poll_interval);
        if chrono::TimeDelta::from_std(uptime).is_ok_and(|u| u <= bound) {
            continue;
        }
        let link = store
            .vendor_link(site.id)
            .await
            .map_err(|e| format!("cannot read site {}: {e}", site.slug))?;
        match link.map(|l| now - l.updated_at) {
            Some(lag) if lag <= bound => {}
            Some(lag) => {
                return Err(format!(
                    "the ingest of site {} recorded no cycle for {} s",
                    site.slug,
                    lag.num_seconds()
                ));
            }
            None => {
                return Err(format!(
                    "the ingest of site {} never recorded a cycle",
                    site.slug
                ));
            }
        }
    }
    Ok(())
}
