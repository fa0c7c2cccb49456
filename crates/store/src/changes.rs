//! A cheap "has anything shown about this site changed?" read, for live pages: the web crate
//! polls it about once a second per watched site and re-renders only when it moves.

use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::store::{Store, with_pool};
use chrono::{DateTime, Utc};

/// What moves when something a dashboard shows changes: connector and charger rows
/// (`changed_at` is only bumped by real changes), the vendor link row (written every cycle,
/// so "updated at" and freshness follow), and open sessions (energy, idle, start/stop).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SiteChangeMarker {
    pub connectors: i64,
    pub connectors_changed: Option<DateTime<Utc>>,
    pub chargers_changed: Option<DateTime<Utc>>,
    pub link_updated: Option<DateTime<Utc>>,
    pub open_sessions: i64,
    pub open_sessions_updated: Option<DateTime<Utc>>,
}

impl Store {
    /// The change marker of a site (see [`SiteChangeMarker`]). One statement, indexed reads.
    pub async fn site_change_marker(&self, site: SiteId) -> Result<SiteChangeMarker, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, SiteChangeMarker>(
            "SELECT \
             (SELECT COUNT(*) FROM connectors WHERE site_id = $1) AS connectors, \
             (SELECT MAX(changed_at) FROM connectors WHERE site_id = $1) AS connectors_changed, \
             (SELECT MAX(changed_at) FROM chargers WHERE site_id = $1) AS chargers_changed, \
             (SELECT updated_at FROM vendor_links WHERE site_id = $1) AS link_updated, \
             (SELECT COUNT(*) FROM sessions WHERE site_id = $1 AND status = 'open') \
                AS open_sessions, \
             (SELECT MAX(updated_at) FROM sessions WHERE site_id = $1 AND status = 'open') \
                AS open_sessions_updated"
        )
        .bind(site)
        .fetch_one(pool)
        .await
        .ctx("reading a site's change marker"))
    }
}
