//! What pages, the API and `vetric status` read. Nothing here calls the vendor.

use crate::error::{Ctx, StoreError};
use crate::model::{
    ConnectorView, EventRow, SessionFilter, SessionRaw, SessionView, SiteId, UnknownTagRow,
    VendorLinkRow,
};
use crate::store::{Store, with_pool};

const SESSION_SELECT: &str = "SELECT s.vendor_id, s.charger_uuid, c.name AS charger_name, \
     s.connector_id, s.tag, s.tag_pk, s.resident_id, r.name AS resident_name, a.block, a.unit, \
     s.start, s.stop, s.energy_wh, s.idle_seconds, s.stop_reason, s.end_kind, s.status, \
     s.updated_at \
     FROM sessions s \
     LEFT JOIN chargers c ON c.site_id = s.site_id AND c.uuid = s.charger_uuid \
     LEFT JOIN residents r ON r.id = s.resident_id \
     LEFT JOIN apartments a ON a.id = r.apartment_id";

/// The `WHERE` of [`Store::sessions`] and [`Store::session_totals`]: `$1` site, `$2` from,
/// `$3` to, `$4` charger uuid, `$5` resident, `$6` apartment (`r` is the resident join).
const SESSION_FILTER: &str = "s.site_id = $1 \
     AND ($2 IS NULL OR s.start >= $2) AND ($3 IS NULL OR s.start < $3) \
     AND ($4 IS NULL OR s.charger_uuid = $4) AND ($5 IS NULL OR s.resident_id = $5) \
     AND ($6 IS NULL OR r.apartment_id = $6)";

impl Store {
    /// The session tracker's last stored state, if any.
    pub async fn tracker_state(
        &self,
        site: SiteId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        with_pool!(self, |pool| sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT state FROM tracker_state WHERE site_id = $1"
        )
        .bind(site)
        .fetch_optional(pool)
        .await
        .ctx("reading the tracker state"))
    }

    /// Every connector of the site with its charger, by charger name then connector. Chargers
    /// the vendor no longer lists (retired by an accepted list) are left out.
    pub async fn connectors(&self, site: SiteId) -> Result<Vec<ConnectorView>, StoreError> {
        with_pool!(self, |pool| {
            sqlx::query_as::<_, ConnectorView>(
            "SELECT k.charger_uuid, c.name AS charger_name, c.charge_box_id, \
             c.online AS charger_online, c.last_heartbeat, k.connector_id, k.status, \
             k.status_since, k.error_code, k.power_max_w, k.unidentified_charging, \
             k.observed_at, k.changed_at \
             FROM connectors k JOIN chargers c ON c.site_id = k.site_id AND c.uuid = k.charger_uuid \
             WHERE k.site_id = $1 AND c.retired_at IS NULL \
             ORDER BY c.name, k.charger_uuid, k.connector_id"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("reading connectors")
        })
    }

    /// Sessions in progress, oldest first.
    pub async fn open_sessions(&self, site: SiteId) -> Result<Vec<SessionView>, StoreError> {
        let rows = with_pool!(self, |pool| sqlx::query_as::<_, SessionRaw>(
            sqlx::AssertSqlSafe(format!(
                "{SESSION_SELECT} WHERE s.site_id = $1 AND s.status = 'open' \
                 ORDER BY s.start, s.vendor_id"
            ))
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("reading open sessions"))?;
        rows.into_iter().map(SessionView::try_from).collect()
    }

    /// Sessions that started in `[filter.from, filter.to)`, newest first.
    pub async fn sessions(
        &self,
        site: SiteId,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionView>, StoreError> {
        let limit = filter.limit.unwrap_or(1000).max(0);
        let rows = with_pool!(self, |pool| sqlx::query_as::<_, SessionRaw>(
            sqlx::AssertSqlSafe(format!(
                "{SESSION_SELECT} WHERE {SESSION_FILTER} \
                 ORDER BY s.start DESC, s.vendor_id DESC LIMIT $7"
            ))
        )
        .bind(site)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.charger_uuid.as_deref())
        .bind(filter.resident)
        .bind(filter.apartment)
        .bind(limit)
        .fetch_all(pool)
        .await
        .ctx("reading sessions"))?;
        rows.into_iter().map(SessionView::try_from).collect()
    }

    /// How many sessions match `filter` (ignoring its `limit`) and their energy in Wh.
    pub async fn session_totals(
        &self,
        site: SiteId,
        filter: &SessionFilter,
    ) -> Result<(i64, i64), StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, (i64, i64)>(
            sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(s.energy_wh), 0) AS BIGINT) \
                 FROM sessions s LEFT JOIN residents r ON r.id = s.resident_id \
                 WHERE {SESSION_FILTER}"
            ))
        )
        .bind(site)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.charger_uuid.as_deref())
        .bind(filter.resident)
        .bind(filter.apartment)
        .fetch_one(pool)
        .await
        .ctx("counting sessions"))
    }

    /// One session by vendor transaction id.
    pub async fn session(
        &self,
        site: SiteId,
        vendor_id: i64,
    ) -> Result<Option<SessionView>, StoreError> {
        let row = with_pool!(self, |pool| sqlx::query_as::<_, SessionRaw>(
            sqlx::AssertSqlSafe(format!(
                "{SESSION_SELECT} WHERE s.site_id = $1 AND s.vendor_id = $2"
            ))
        )
        .bind(site)
        .bind(vendor_id)
        .fetch_optional(pool)
        .await
        .ctx("reading a session"))?;
        row.map(SessionView::try_from).transpose()
    }

    /// Events with an id above `after_id` (0 for all), in id order, at most `limit`.
    ///
    /// Ids follow write order within a site as long as one writer appends a site's events
    /// (one ingest leader per site). With concurrent writers on PostgreSQL an id can become
    /// visible after a larger one, so a reader that must never miss one re-reads a window.
    pub async fn events(
        &self,
        site: SiteId,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, EventRow>(
            "SELECT id, at, kind, session_vendor_id, charger_uuid, payload, created_at \
             FROM events WHERE site_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )
        .bind(site)
        .bind(after_id)
        .bind(limit.max(0))
        .fetch_all(pool)
        .await
        .ctx("reading events"))
    }

    /// The vendor link as last recorded; `None` before the first cycle.
    pub async fn vendor_link(&self, site: SiteId) -> Result<Option<VendorLinkRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, VendorLinkRow>(
            "SELECT last_success, last_error_kind, last_error_message, last_error_at, \
             consecutive_failures, breaker, charger_count_last_good, updated_at \
             FROM vendor_links WHERE site_id = $1"
        )
        .bind(site)
        .fetch_optional(pool)
        .await
        .ctx("reading the vendor link"))
    }

    /// The unknown-tag inbox: tags seen and not yet assigned, most recently seen first.
    pub async fn unknown_tags(&self, site: SiteId) -> Result<Vec<UnknownTagRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, UnknownTagRow>(
            "SELECT tag, first_seen, last_seen, charger_uuid, session_vendor_id, seen_count, \
             resolved_at FROM unknown_tags WHERE site_id = $1 AND resolved_at IS NULL \
             ORDER BY last_seen DESC, tag"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("reading unknown tags"))
    }
}
