//! Per-site ingest leadership: which instance may poll a site's vendor (DESIGN rule 5,
//! RELIABILITY R5).
//!
//! **PostgreSQL.** Each instance opens ONE dedicated connection ([`LeaderConnection`], made
//! with `PgConnection::connect` from the pool's options, never borrowed from the pool) and on
//! it takes a session advisory lock per site with `pg_try_advisory_lock(key)`. Whoever holds a
//! site's lock is its leader; everyone else is a follower and simply tries again later. The
//! lock lives exactly as long as that server session: when the leader's process dies, or its
//! connection is closed or terminated, the server releases the lock by itself, which is what
//! makes a takeover safe without any home-made protocol. A pooled connection would be wrong:
//! the pool recycles and shares connections, so the lock would outlive its owner or be
//! released by a stranger.
//!
//! The key is [`ingest_lock_key`]: FNV-1a 64 of `"vetric-ingest:" + site slug`, as `i64`.
//! The `vetric-ingest:` namespace keeps these keys apart from any other advisory lock in the
//! same database (sqlx's migrator uses its own key); FNV-1a is spelled out here rather than
//! taken from `std` because `DefaultHasher` may change between Rust releases, and two
//! versions of vetric during a rolling upgrade must agree on the key. Advisory locks are
//! per database, so two vetric databases on one server do not collide.
//!
//! A half-dead connection (network gone, server unreachable) must be noticed by the holder
//! before the server gives the lock away, or two instances could poll at once. So every query
//! here has a client-side timeout ([`QUERY_TIMEOUT`]), and the session asks the server for TCP
//! keepalives (`tcp_keepalives_idle` 5 s, interval 2 s, 3 probes: a vanished client is
//! dropped after about 11 s) and a `statement_timeout`. The holder checks its connection every
//! leader tick; a failed or slow check gives up every lock at once (the caller stops its
//! ingests and drops the connection) — seconds before the server would release it.
//!
//! **SQLite.** One serving process per file is already guaranteed by the instance lock
//! ([`crate::InstanceLock`]), so this process is always the leader: the same interface, no
//! connection, every `try_lock` succeeds.
//!
//! **The write fence.** A lock alone cannot stop a write the old leader already has in flight
//! when its lock connection dies: the server frees the lock at once, but the old leader's
//! write transaction runs on a pooled connection and may still commit after the new leader
//! read the state, doubling that cycle's events. So every leadership also has a fencing
//! token, the site's `generation` in `site_leadership` (migration 0008):
//!
//! 1. the new leader, holding the advisory lock, bumps it ([`Store::take_write_fence`]:
//!    `INSERT … ON CONFLICT DO UPDATE SET generation = generation + 1 … RETURNING`) and only
//!    then reads the site's state;
//! 2. every ingest write ([`Store::write_cycle_fenced`]) starts with
//!    `UPDATE site_leadership SET last_write_at = … WHERE site_id = $1 AND generation = $2`
//!    in its own transaction, and writes nothing (error [`StoreError::LostLeadership`]) when
//!    no row matched.
//!
//! Why that closes the window (PostgreSQL, READ COMMITTED). The fence UPDATE takes the row
//! lock of the site's `site_leadership` row and keeps it until its transaction ends. Either
//! the old leader's fence UPDATE comes first: then the new leader's bump waits for that row
//! lock, so it returns only after the old write committed (or rolled back), and the state the
//! new leader reads afterwards includes that write — its events are not derived again. Or the
//! bump comes first: then the old leader's UPDATE (waiting for the bump's row lock if needed,
//! and re-checking its WHERE on the new row version) finds `generation` moved on, matches
//! nothing, and its transaction writes nothing. There is no third order. A write transaction
//! also sets `idle_in_transaction_session_timeout` locally, so an old leader that vanished
//! mid-write (network gone) cannot hold the row lock, and with it the hand-over, for longer
//! than that. On SQLite the same statements run (one serving process, so the fence never
//! refuses there, but the code and its tests are the same).
//!
//! [`LeadershipBoard`] is the plain-data view of "who leads what here" that `/health` and
//! `/metrics` read; the engine's leader loop keeps it current.

use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::store::{Db, Store};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long any leadership query may take before the connection counts as dead.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The namespace of ingest leadership keys (see the module doc).
pub const INGEST_LOCK_NAMESPACE: &str = "vetric-ingest:";

/// The advisory-lock key of a site's ingest: FNV-1a 64 of `"vetric-ingest:" + slug`, as the
/// `bigint` PostgreSQL expects. Stable across builds and platforms.
pub fn ingest_lock_key(slug: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for b in INGEST_LOCK_NAMESPACE.bytes().chain(slug.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(PRIME);
    }
    // Reinterpreting the bits is the point: any 64-bit value is a valid key.
    hash as i64
}

/// This process among the instances: `hostname:pid:random`, so two instances on one machine
/// (or a restarted one with a reused pid) never look alike in `/health`.
pub fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    // RandomState is seeded randomly per process: enough to tell two processes apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        h.finish() & 0xffff_ffff
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    #[error("cannot open the leadership connection: {0}")]
    Connect(#[source] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the leadership connection did not answer {what} within {after:?}")]
    TimedOut { what: &'static str, after: Duration },
}

enum Conn {
    /// `None` once closed or given up.
    Postgres(Option<PgConnection>),
    Sqlite,
}

/// The dedicated connection that holds this instance's ingest locks (see the module doc).
pub struct LeaderConnection {
    conn: Conn,
}

impl Store {
    /// Opens the dedicated leadership connection: a new PostgreSQL session (not from the pool)
    /// with keepalives and a statement timeout; on SQLite a stand-in that always leads.
    pub async fn leader_connection(&self) -> Result<LeaderConnection, LeadershipError> {
        let conn = match &self.db {
            Db::Sqlite(_) => Conn::Sqlite,
            Db::Postgres(pool) => {
                let opts = (*pool.connect_options())
                    .clone()
                    .application_name("vetric-leadership")
                    .options([
                        ("tcp_keepalives_idle", "5"),
                        ("tcp_keepalives_interval", "2"),
                        ("tcp_keepalives_count", "3"),
                        ("statement_timeout", "3000"),
                    ]);
                let c = tokio::time::timeout(QUERY_TIMEOUT, opts.connect())
                    .await
                    .map_err(|_| LeadershipError::TimedOut {
                        what: "the connection attempt",
                        after: QUERY_TIMEOUT,
                    })?
                    .map_err(LeadershipError::Connect)?;
                Conn::Postgres(Some(c))
            }
        };
        Ok(LeaderConnection { conn })
    }
}

async fn timed<T>(
    what: &'static str,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, LeadershipError> {
    match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LeadershipError::TimedOut {
            what,
            after: QUERY_TIMEOUT,
        }),
    }
}

impl LeaderConnection {
    fn pg(&mut self) -> Result<Option<&mut PgConnection>, LeadershipError> {
        match &mut self.conn {
            Conn::Sqlite => Ok(None),
            Conn::Postgres(Some(c)) => Ok(Some(c)),
            Conn::Postgres(None) => Err(LeadershipError::Store(StoreError::Conflict {
                what: "the leadership connection was closed".to_owned(),
            })),
        }
    }

    /// Takes the lock `key` if nobody holds it. `true`: this instance now leads (taking a
    /// lock it already holds also answers `true`, but stacks: release with [`Self::unlock`]
    /// once per success).
    pub async fn try_lock(&mut self, key: i64) -> Result<bool, LeadershipError> {
        let Some(c) = self.pg()? else {
            return Ok(true);
        };
        timed("pg_try_advisory_lock", async {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *c)
                .await
                .ctx("taking an ingest leadership lock")
        })
        .await
    }

    /// Releases the lock `key`; `false` if this session did not hold it.
    pub async fn unlock(&mut self, key: i64) -> Result<bool, LeadershipError> {
        let Some(c) = self.pg()? else {
            return Ok(true);
        };
        timed("pg_advisory_unlock", async {
            sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *c)
                .await
                .ctx("releasing an ingest leadership lock")
        })
        .await
    }

    /// The holder's per-tick check: the session still answers (so its locks still stand).
    pub async fn check(&mut self) -> Result<(), LeadershipError> {
        let Some(c) = self.pg()? else {
            return Ok(());
        };
        timed("SELECT 1", async {
            sqlx::query("SELECT 1")
                .execute(&mut *c)
                .await
                .map(|_| ())
                .ctx("checking the leadership connection")
        })
        .await
    }

    /// The server process id of this session (`None` on SQLite): what an operator (or a test)
    /// gives `pg_terminate_backend` to force a hand-over.
    pub async fn backend_pid(&mut self) -> Result<Option<i32>, LeadershipError> {
        let Some(c) = self.pg()? else {
            return Ok(None);
        };
        timed("pg_backend_pid", async {
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *c)
                .await
                .ctx("reading the leadership session pid")
        })
        .await
        .map(Some)
    }

    /// Graceful shutdown: releases every advisory lock of this session and closes it, so a
    /// peer takes over at its next try instead of waiting for the server to notice.
    pub async fn close(mut self) {
        if let Conn::Postgres(Some(mut c)) = std::mem::replace(&mut self.conn, Conn::Sqlite) {
            let _ = tokio::time::timeout(
                QUERY_TIMEOUT,
                sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut c),
            )
            .await;
            let _ = tokio::time::timeout(QUERY_TIMEOUT, c.close()).await;
        }
    }
}

/// The fencing token of one site's ingest leadership: the `generation` this instance set when
/// it took the site (see the module doc). Give it to [`Store::write_cycle_fenced`]; once
/// another instance takes the site, writes with it are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFence {
    pub site: SiteId,
    pub generation: i64,
}

const BUMP_GENERATION: &str = "INSERT INTO site_leadership (site_id, generation, holder, \
     acquired_at, last_write_at) VALUES ($1, 1, $2, $3, NULL) \
     ON CONFLICT (site_id) DO UPDATE SET generation = site_leadership.generation + 1, \
     holder = excluded.holder, acquired_at = excluded.acquired_at \
     RETURNING generation";

impl Store {
    /// Makes this instance the only one whose ingest writes of `site` are accepted: bumps the
    /// site's generation and returns it. Call it while holding the site's leadership lock,
    /// and BEFORE reading the site's state: on PostgreSQL the bump waits until a write of the
    /// previous leader that passed its fence has ended, so the state read afterwards
    /// includes it (module doc). `holder` names this instance ([`instance_id`]).
    pub async fn take_write_fence(
        &self,
        site: SiteId,
        holder: &str,
    ) -> Result<WriteFence, StoreError> {
        let now = Utc::now();
        let generation =
            crate::store::with_pool!(self, |pool| sqlx::query_scalar::<_, i64>(BUMP_GENERATION)
                .bind(site)
                .bind(holder)
                .bind(now)
                .fetch_one(pool)
                .await
                .ctx("taking the ingest write fence"))?;
        Ok(WriteFence { site, generation })
    }
}

/// One site's leadership as this instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLeadership {
    pub is_leader: bool,
    /// Since when this instance leads or follows.
    pub since: DateTime<Utc>,
    /// This instance ([`instance_id`]).
    pub instance_id: String,
}

/// Who leads what in this instance, shared by the leader loop (writer) and `/health`,
/// `/metrics` (readers). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LeadershipBoard {
    inner: Arc<RwLock<BoardInner>>,
}

#[derive(Debug, Default)]
struct BoardInner {
    sites: BTreeMap<SiteId, SiteLeadership>,
    ticks: u64,
}

impl LeadershipBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a site's role; `since` moves only when the role changes.
    pub fn set(&self, site: SiteId, is_leader: bool, instance_id: &str, now: DateTime<Utc>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match inner.sites.get_mut(&site) {
            Some(s) if s.is_leader == is_leader => {}
            _ => {
                inner.sites.insert(
                    site,
                    SiteLeadership {
                        is_leader,
                        since: now,
                        instance_id: instance_id.to_owned(),
                    },
                );
            }
        }
    }

    pub fn get(&self, site: SiteId) -> Option<SiteLeadership> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.sites.get(&site).cloned()
    }

    pub fn snapshot(&self) -> BTreeMap<SiteId, SiteLeadership> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.sites.clone()
    }

    /// Counts a leader-loop tick (tests measure takeover in ticks, not seconds).
    pub fn tick(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.ticks += 1;
    }

    pub fn ticks(&self) -> u64 {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_namespaced() {
        // A rolling upgrade needs old and new builds to agree on the key: same input, same key.
        assert_eq!(ingest_lock_key("jardim"), ingest_lock_key("jardim"));
        assert_ne!(ingest_lock_key("jardim"), ingest_lock_key("jardim2"));
        let raw = {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in b"jardim" {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h as i64
        };
        assert_ne!(
            ingest_lock_key("jardim"),
            raw,
            "the namespace is part of the key"
        );
    }

    #[test]
    fn instance_id_is_host_pid_random() {
        let a = instance_id();
        assert_eq!(a.split(':').count(), 3, "{a}");
    }
}
