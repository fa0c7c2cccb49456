//! A cheap "has anything shown about this site changed?" read, for live pages, and the two
//! ways a live page hears that it should look again:
//!
//! * **in process** ([`Store::local_changes`]): every ingest write of this process announces
//!   its site after the commit (both backends; on SQLite that is every writer there is);
//! * **across instances** ([`Store::listen_changes`], PostgreSQL): the ingest write sends
//!   `pg_notify('vetric_changes', '<site id>')` inside its transaction, so PostgreSQL delivers
//!   it on commit — never for a write that rolled back — to every instance listening.
//!
//! A notice only says "look again": the reader still compares [`SiteChangeMarker`]s, so a
//! lost, doubled or early notice costs at most one extra read. Notices are transient (a
//! listener that was disconnected missed them), which is why the web keeps a slower poll.

use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::store::{Db, Store, with_pool};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::time::Duration;
use tokio::sync::broadcast;

/// The `LISTEN/NOTIFY` channel of ingest writes; the payload is the site id in decimal.
pub const CHANGES_CHANNEL: &str = "vetric_changes";

/// How long the listener's connection may take to open or to answer a ping.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(5);

/// The in-process channel behind [`Store::local_changes`]. Small: a receiver that lags only
/// loses "look again" notices, and learns that it lagged.
pub(crate) fn local_channel() -> broadcast::Sender<SiteId> {
    broadcast::channel(64).0
}

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

impl Store {
    /// Sites whose shown state THIS process committed, announced after each commit of an
    /// ingest write. `Lagged` means some notices were dropped: look at every site again.
    pub fn local_changes(&self) -> broadcast::Receiver<SiteId> {
        self.changed.subscribe()
    }

    /// Announces a committed change of `site` in process (no receivers is fine).
    pub(crate) fn announce_local(&self, site: SiteId) {
        let _ = self.changed.send(site);
    }

    /// PostgreSQL: a listener on [`CHANGES_CHANNEL`] over a connection of its own (a
    /// one-connection pool from the store's settings, so it never takes one of the store's
    /// pooled connections and reconnects by itself). `None` on SQLite, where
    /// [`Store::local_changes`] already hears every writer.
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(None);
        };
        let opts = (*pool.connect_options())
            .clone()
            .application_name("vetric-live");
        let own = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(LISTENER_TIMEOUT)
            .connect_lazy_with(opts);
        let mut listener = tokio::time::timeout(LISTENER_TIMEOUT, async {
            let mut l = PgListener::connect_with(&own).await?;
            l.ignore_pool_close_event(true);
            l.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        })
        .await
        .map_err(|_| StoreError::Query {
            context: "opening the change listener",
            source: sqlx::Error::PoolTimedOut,
        })?
        .ctx("opening the change listener")?;
        // A lost connection is re-opened on the next call, not inside `next` (see there).
        listener.eager_reconnect(false);
        Ok(Some(ChangeListener { inner: listener }))
    }
}

/// What a [`ChangeListener`] heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeNotice {
    /// A write of this site committed (on any instance).
    Site(SiteId),
    /// The connection was lost: notices may have been missed, so look at every site again.
    /// The next call reconnects (and fails if it cannot).
    Lost,
}

/// A `LISTEN vetric_changes` connection (see [`Store::listen_changes`]).
pub struct ChangeListener {
    inner: PgListener,
}

impl ChangeListener {
    /// Waits for the next notice. An error means the database cannot be reached now: back
    /// off and call again (the listener reconnects on the next call).
    pub async fn next(&mut self) -> Result<ChangeNotice, StoreError> {
        loop {
            match self
                .inner
                .try_recv()
                .await
                .ctx("waiting for change notices")?
            {
                None => return Ok(ChangeNotice::Lost),
                Some(n) => match n.payload().parse::<i64>() {
                    Ok(id) => return Ok(ChangeNotice::Site(SiteId(id))),
                    // Not ours (someone else used the channel): ignore it.
                    Err(_) => continue,
                },
            }
        }
    }

    /// A round trip on the listener's connection, for a listener that has been quiet for a
    /// while: a connection that vanished without a word (network gone) fails here instead
    /// of waiting silently forever.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        tokio::time::timeout(
            LISTENER_TIMEOUT,
            sqlx::query("SELECT 1").execute(&mut self.inner),
        )
        .await
        .map_err(|_| StoreError::Query {
            context: "pinging the change listener",
            source: sqlx::Error::PoolTimedOut,
        })?
        .map(|_| ())
        .ctx("pinging the change listener")
    }
}
