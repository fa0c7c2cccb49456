//! The ingest write: everything one poll cycle learned, in one transaction.

use crate::changes::CHANGES_CHANNEL;
use crate::error::{Ctx, StoreError};
use crate::leadership::WriteFence;
use crate::model::{CancelPending, CycleWrite, NewNotification, SiteId, VendorLinkRow};
use crate::outbox::{cancel_in, enqueue_in};
use crate::store::{Backend, Store, in_tx};
use chrono::Utc;

/// The write fence (see `leadership.rs`): FIRST statement of a fenced write, so the row lock
/// it takes covers everything the transaction writes after it.
const CHECK_FENCE: &str = "UPDATE site_leadership SET last_write_at = $3 \
     WHERE site_id = $1 AND generation = $2";

/// A fenced write's transaction may sit idle (its client gone quiet mid-write) at most this
/// long before PostgreSQL ends it, releasing the fence row a new leader's bump waits for.
const FENCED_IDLE_LIMIT: &str = "SET LOCAL idle_in_transaction_session_timeout = '10s'";

/// Wakes every instance's live pages for `$site` on commit (PostgreSQL only; on SQLite the
/// in-process announcement after the commit is all there is). Inside the transaction, so a
/// write that rolls back notifies nobody.
macro_rules! notify_in {
    ($tx:expr, $backend:expr, $site:expr) => {
        if $backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind($site.0.to_string())
                .execute($tx)
                .await
                .ctx("notifying the live pages")?;
        }
    };
}

const UPSERT_CHARGER: &str = "INSERT INTO chargers (site_id, uuid, charge_box_id, name, vendor, \
     model, firmware, last_heartbeat, online, observed_at, changed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
     ON CONFLICT (site_id, uuid) DO UPDATE SET \
     charge_box_id = excluded.charge_box_id, name = excluded.name, vendor = excluded.vendor, \
     model = excluded.model, firmware = excluded.firmware, \
     last_heartbeat = excluded.last_heartbeat, online = excluded.online, \
     observed_at = excluded.observed_at, retired_at = NULL, \
     changed_at = CASE WHEN chargers.retired_at IS NOT NULL \
       OR chargers.charge_box_id IS DISTINCT FROM excluded.charge_box_id \
       OR chargers.name IS DISTINCT FROM excluded.name \
       OR chargers.vendor IS DISTINCT FROM excluded.vendor \
       OR chargers.model IS DISTINCT FROM excluded.model \
       OR chargers.firmware IS DISTINCT FROM excluded.firmware \
       OR chargers.online IS DISTINCT FROM excluded.online \
       THEN excluded.changed_at ELSE chargers.changed_at END";

const UPSERT_CONNECTOR: &str = "INSERT INTO connectors (site_id, charger_uuid, connector_id, \
     status, status_since, error_code, power_max_w, unidentified_charging, observed_at, \
     changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
     ON CONFLICT (site_id, charger_uuid, connector_id) DO UPDATE SET \
     status = excluded.status, status_since = excluded.status_since, \
     error_code = excluded.error_code, power_max_w = excluded.power_max_w, \
     unidentified_charging = excluded.unidentified_charging, \
     observed_at = excluded.observed_at, \
     changed_at = CASE WHEN connectors.status IS DISTINCT FROM excluded.status \
       OR connectors.status_since IS DISTINCT FROM excluded.status_since \
       OR connectors.error_code IS DISTINCT FROM excluded.error_code \
       OR connectors.power_max_w IS DISTINCT FROM excluded.power_max_w \
       OR connectors.unidentified_charging IS DISTINCT FROM excluded.unidentified_charging \
       THEN excluded.changed_at ELSE connectors.changed_at END";

/// Retires the site's shown chargers that an accepted list no longer has: `$1` site, `$2` the
/// cycle's instant, then the listed uuids (see [`retire_sql`]). Only rows not yet retired are
/// touched, so a list that did not shrink writes nothing. `changed_at` moves so live pages
/// look again.
const RETIRE_CHARGERS: &str = "UPDATE chargers SET retired_at = $2, changed_at = $2 \
     WHERE site_id = $1 AND retired_at IS NULL";

/// `RETIRE_CHARGERS` for a list of `listed` uuids bound from `$3` on. An empty list retires
/// every charger of the site (a confirmed empty list); `NOT IN ()` is not valid SQL.
fn retire_sql(listed: usize) -> String {
    if listed == 0 {
        RETIRE_CHARGERS.to_owned()
    } else {
        format!(
            "{RETIRE_CHARGERS} AND uuid NOT IN ({})",
            placeholders(3, listed)
        )
    }
}

/// Deletes the connectors of the chargers written this cycle that this cycle did not write
/// (every connector it wrote has `observed_at` = the cycle's instant): `$1` site, `$2` the
/// cycle's instant, then the written chargers' uuids from `$3` on. One statement per cycle,
/// whatever the number of chargers. Connectors carry no history (sessions keep the connector
/// number themselves), so a deleted one loses nothing.
fn prune_connectors_sql(written: usize) -> String {
    format!(
        "DELETE FROM connectors WHERE site_id = $1 AND observed_at < $2 \
         AND charger_uuid IN ({})",
        placeholders(3, written)
    )
}

/// `$from, $from+1, …` (`n` of them).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upsert by vendor transaction id. With no resident given, the tag's owner at the session's
/// start is looked up; an owner already stored is kept when the update brings none.
const UPSERT_SESSION: &str = "INSERT INTO sessions (site_id, vendor_id, charger_uuid, \
     connector_id, tag, tag_pk, resident_id, start, stop, energy_wh, idle_seconds, stop_reason, \
     end_kind, status, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, \
       COALESCE($7, (SELECT t.resident_id FROM tags t WHERE t.site_id = $1 AND t.tag = $5 \
         AND t.valid_from <= $8 AND (t.valid_to IS NULL OR t.valid_to > $8) LIMIT 1)), \
       $8, $9, $10, $11, $12, $13, $14, $15, $15) \
     ON CONFLICT (site_id, vendor_id) DO UPDATE SET \
     charger_uuid = excluded.charger_uuid, connector_id = excluded.connector_id, \
     tag = COALESCE(excluded.tag, sessions.tag), \
     tag_pk = COALESCE(excluded.tag_pk, sessions.tag_pk), \
     resident_id = COALESCE(excluded.resident_id, sessions.resident_id), \
     start = excluded.start, stop = excluded.stop, energy_wh = excluded.energy_wh, \
     idle_seconds = excluded.idle_seconds, stop_reason = excluded.stop_reason, \
     end_kind = excluded.end_kind, status = excluded.status, updated_at = excluded.updated_at";

const INSERT_EVENT: &str = "INSERT INTO events (site_id, at, kind, session_vendor_id, \
     charger_uuid, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

const UPSERT_UNKNOWN_TAG: &str = "INSERT INTO unknown_tags (site_id, tag, first_seen, last_seen, \
     charger_uuid, session_vendor_id, seen_count, resolved_at) \
     VALUES ($1, $2, $3, $3, $4, $5, 1, NULL) \
     ON CONFLICT (site_id, tag) DO UPDATE SET \
     last_seen = CASE WHEN excluded.last_seen > unknown_tags.last_seen \
       THEN excluded.last_seen ELSE unknown_tags.last_seen END, \
     charger_uuid = COALESCE(excluded.charger_uuid, unknown_tags.charger_uuid), \
     session_vendor_id = COALESCE(excluded.session_vendor_id, unknown_tags.session_vendor_id), \
     seen_count = unknown_tags.seen_count + 1, resolved_at = NULL";

const UPSERT_TRACKER_STATE: &str = "INSERT INTO tracker_state (site_id, state, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (site_id) DO UPDATE SET \
     state = excluded.state, updated_at = excluded.updated_at";

const UPSERT_VENDOR_LINK: &str = "INSERT INTO vendor_links (site_id, last_success, \
     last_error_kind, last_error_message, last_error_at, consecutive_failures, breaker, \
     charger_count_last_good, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (site_id) DO UPDATE SET last_success = excluded.last_success, \
     last_error_kind = excluded.last_error_kind, \
     last_error_message = excluded.last_error_message, \
     last_error_at = excluded.last_error_at, \
     consecutive_failures = excluded.consecutive_failures, breaker = excluded.breaker, \
     charger_count_last_good = excluded.charger_count_last_good, \
     updated_at = excluded.updated_at";

/// Binds a [`VendorLinkRow`] to [`UPSERT_VENDOR_LINK`] and runs it on `$exec`.
macro_rules! upsert_link {
    ($exec:expr, $site:expr, $link:expr) => {{
        let link: &VendorLinkRow = $link;
        sqlx::query(UPSERT_VENDOR_LINK)
            .bind($site)
            .bind(link.last_success)
            .bind(link.last_error_kind.as_deref())
            .bind(link.last_error_message.as_deref())
            .bind(link.last_error_at)
            .bind(link.consecutive_failures)
            .bind(link.breaker.as_str())
            .bind(link.charger_count_last_good)
            .bind(link.updated_at)
            .execute($exec)
            .await
            .ctx("writing the vendor link")?;
    }};
}

impl Store {
    /// Writes one successful ingest cycle in ONE transaction: chargers and connectors
    /// (`observed_at` always, `changed_at` only when a shown value changed; a written charger
    /// is no longer retired), the retirement of chargers an accepted list no longer has
    /// ([`CycleWrite::listed_chargers`]), sessions
    /// (inserted or updated by vendor id, so a replayed cycle does not double them), events
    /// (appended; their ids are returned in order), unknown-tag sightings (`seen_count`
    /// incremented), the tracker state and the vendor link. Either all of it is stored or,
    /// on any error, none of it. On commit the site's live pages are woken (`pg_notify` on
    /// PostgreSQL, [`Store::local_changes`] in process).
    ///
    /// Unfenced: for a writer that is the site's only one by construction (tests, tools, a
    /// single process on SQLite). The ingest leader uses [`Store::write_cycle_fenced`].
    pub async fn write_cycle(
        &self,
        site: SiteId,
        cycle: &CycleWrite,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_cycle_inner(site, None, cycle).await
    }

    /// [`Store::write_cycle`] for the site of `fence`, only while `fence` is still the site's
    /// current leadership: checked FIRST inside the transaction, under the row lock of the
    /// site's `site_leadership` row (the ordering argument is in `leadership.rs`). When
    /// another instance has taken the site since, nothing is written and the answer is
    /// [`StoreError::LostLeadership`].
    pub async fn write_cycle_fenced(
        &self,
        fence: &WriteFence,
        cycle: &CycleWrite,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_cycle_inner(fence.site, Some(fence), cycle).await
    }

    async fn write_cycle_inner(
        &self,
        site: SiteId,
        fence: Option<&WriteFence>,
        cycle: &CycleWrite,
    ) -> Result<Vec<i64>, StoreError> {
        let now = Utc::now();
        let at = cycle.observed_at;
        let ids = in_tx!(self, |tx, backend| {
            if let Some(fence) = fence {
                if backend == Backend::Postgres {
                    sqlx::query(FENCED_IDLE_LIMIT)
                        .execute(&mut *tx)
                        .await
                        .ctx("limiting the write's idle time")?;
                }
                let matched = sqlx::query(CHECK_FENCE)
                    .bind(site)
                    .bind(fence.generation)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("checking the ingest write fence")?
                    .rows_affected();
                if matched != 1 {
                    // Returning drops the transaction: it rolls back (it wrote nothing yet).
                    return Err(StoreError::LostLeadership {
                        site,
                        generation: fence.generation,
                    });
                }
            }
            for c in &cycle.chargers {
                sqlx::query(UPSERT_CHARGER)
                    .bind(site)
                    .bind(&c.uuid)
                    .bind(&c.charge_box_id)
                    .bind(&c.name)
                    .bind(&c.vendor)
                    .bind(&c.model)
                    .bind(&c.firmware)
                    .bind(c.last_heartbeat)
                    .bind(c.online)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a charger")?;
                for k in &c.connectors {
                    sqlx::query(UPSERT_CONNECTOR)
                        .bind(site)
                        .bind(&c.uuid)
                        .bind(i64::from(k.connector_id))
                        .bind(k.status.as_vendor_str())
                        .bind(k.status_since)
                        .bind(&k.error_code)
                        .bind(k.power_max_w.map(i64::from))
                        .bind(k.unidentified_charging)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .ctx("writing a connector")?;
                }
            }
            // Only an accepted list is the vendor's whole list (of chargers, and of each written
            // charger's connectors); a writer that merely adds rows (`None`) retires nothing.
            if let Some(listed) = &cycle.listed_chargers {
                if !cycle.chargers.is_empty() {
                    let sql = prune_connectors_sql(cycle.chargers.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(site).bind(at);
                    for c in &cycle.chargers {
                        q = q.bind(&c.uuid);
                    }
                    q.execute(&mut *tx)
                        .await
                        .ctx("removing connectors the vendor no longer lists")?;
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(retire_sql(listed.len())))
                    .bind(site)
                    .bind(at);
                for uuid in listed {
                    q = q.bind(uuid);
                }
                q.execute(&mut *tx)
                    .await
                    .ctx("retiring chargers the vendor no longer lists")?;
            }
            for s in &cycle.sessions {
                sqlx::query(UPSERT_SESSION)
                    .bind(site)
                    .bind(s.vendor_id)
                    .bind(&s.charger_uuid)
                    .bind(i64::from(s.connector_id))
                    .bind(s.tag.as_ref().map(|t| t.as_str()))
                    .bind(s.tag_pk)
                    .bind(s.resident_id)
                    .bind(s.start)
                    .bind(s.stop)
                    .bind(s.energy_wh)
                    .bind(s.idle_seconds)
                    .bind(s.stop_reason.as_deref())
                    .bind(s.end_kind.map(|k| k.as_str()))
                    .bind(s.status.as_str())
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a session")?;
            }
            let mut ids = Vec::with_capacity(cycle.events.len());
            for e in &cycle.events {
                let id = sqlx::query_scalar::<_, i64>(INSERT_EVENT)
                    .bind(site)
                    .bind(e.at)
                    .bind(&e.kind)
                    .bind(e.session_vendor_id)
                    .bind(e.charger_uuid.as_deref())
                    .bind(&e.payload)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("appending an event")?;
                ids.push(id);
            }
            for u in &cycle.unknown_tags {
                sqlx::query(UPSERT_UNKNOWN_TAG)
                    .bind(site)
                    .bind(u.tag.as_str())
                    .bind(u.at)
                    .bind(u.charger_uuid.as_deref())
                    .bind(u.session_vendor_id)
                    .execute(&mut *tx)
                    .await
                    .ctx("recording an unknown tag")?;
            }
            if let Some(state) = &cycle.tracker_state {
                sqlx::query(UPSERT_TRACKER_STATE)
                    .bind(site)
                    .bind(state)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing the tracker state")?;
            }
            upsert_link!(&mut *tx, site, &cycle.vendor_link);
            // Notifications ride in the same transaction as the events that caused them
            // (DESIGN rule 4). Inserts first, then cancellations: a cancellation states what
            // is true after this cycle, so it wins over a row this same cycle enqueued.
            for n in &cycle.notifications {
                enqueue_in!(&mut *tx, Some(site), n, now);
            }
            for c in &cycle.cancellations {
                cancel_in!(tx, site, c, now);
            }
            // Every cycle changes something shown (at least the link's "updated at"), so
            // every committed cycle wakes the live pages; they re-render only on a change.
            notify_in!(&mut *tx, backend, site);
            ids
        });
        self.announce_local(site);
        Ok(ids)
    }

    /// Records the vendor link alone, for a cycle that failed (nothing else is known), with
    /// the notifications that failure decided on (e.g. "vendor down") and cancellations, in
    /// one transaction.
    pub async fn write_link_only(
        &self,
        site: SiteId,
        link: &VendorLinkRow,
        notifications: &[NewNotification],
        cancellations: &[CancelPending],
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        in_tx!(self, |tx, backend| {
            upsert_link!(&mut *tx, site, link);
            for n in notifications {
                enqueue_in!(&mut *tx, Some(site), n, now);
            }
            for c in cancellations {
                cancel_in!(tx, site, c, now);
            }
            notify_in!(&mut *tx, backend, site);
        });
        self.announce_local(site);
        Ok(())
    }
}
