//! Opening a store: the two backends behind one [`Store`], connection settings, migrations.

use crate::error::{Ctx, StoreError, redact_url};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store: a pool on one of the two backends. Cheap to clone (pools are shared).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    url: String,
    /// Sites whose shown state this process just committed (see [`Store::local_changes`]);
    /// shared by every clone, so the web's live hub hears the ingest of the same process.
    pub(crate) changed: tokio::sync::broadcast::Sender<crate::model::SiteId>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.url)
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is compiled once per
/// backend, so the same SQL text and binds serve both.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside one write transaction bound to `$tx` (use `&mut *$tx` as executor),
/// committing at the end. `?` inside the body returns early and the dropped transaction rolls
/// back, so nothing of a failed body is kept. SQLite transactions start `IMMEDIATE` (take the
/// write lock up front: no upgrade deadlock under WAL). `$backend` is bound to [`Backend`].
macro_rules! in_tx {
    ($store:expr, |$tx:ident, $backend:ident| $body:block) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pool) => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Sqlite;
                #[allow(unused_mut)]
                let mut $tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .ctx("starting a transaction")?;
                let out = $body;
                $tx.commit().await.ctx("committing")?;
                out
            }
            $crate::store::Db::Postgres(pool) => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Postgres;
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await.ctx("starting a transaction")?;
                let out = $body;
                $tx.commit().await.ctx("committing")?;
                out
            }
        }
    };
}

pub(crate) use {in_tx, with_pool};

/// The path of a `sqlite:` database URL (`None` for other URLs and in-memory databases).
/// Used to place the instance lock next to the file.
pub fn sqlite_path_from_url(url: &str) -> Option<PathBuf> {
    if !url.starts_with("sqlite:") || is_memory(url) {
        return None;
    }
    let opts = SqliteConnectOptions::from_str(url).ok()?;
    Some(opts.get_filename().to_owned())
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Store {
    /// Opens `sqlite://PATH` (file created when missing, with its directory; WAL, busy
    /// timeout 5 s, foreign keys on) or `postgres://…`. Does not migrate: call
    /// [`Store::migrate`].
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(database_url);
        if database_url.starts_with("sqlite:") {
            Self::connect_sqlite(database_url, shown).await
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Self::connect_postgres(database_url, shown).await
        } else {
            Err(StoreError::BadUrl {
                url: shown,
                reason: "expected sqlite://PATH or postgres://USER@HOST:PORT/DB".into(),
            })
        }
    }

    async fn connect_sqlite(url: &str, shown: String) -> Result<Self, StoreError> {
        let memory = is_memory(url);
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let path = opts.get_filename().to_owned();
        if !memory
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            // Best effort; opening reports the real problem if this fails.
            let _ = std::fs::create_dir_all(dir);
        }
        // An in-memory database lives as long as its one connection: never let it go.
        let pool_opts = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_opts
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Unreachable {
                hint: format!(
                    "check that {} can be created or opened: its directory must exist and be \
                     writable by this user, and the file must be a SQLite database",
                    path.display()
                ),
                url_without_password: shown.clone(),
                source,
            })?;
        Ok(Self {
            db: Db::Sqlite(pool),
            url: shown,
            changed: crate::changes::local_channel(),
        })
    }

    async fn connect_postgres(url: &str, shown: String) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        // One direct connection first: it fails fast and precisely, where the pool would
        // retry until its acquire timeout.
        let probe = opts
            .connect()
            .await
            .map_err(|source| StoreError::Unreachable {
                hint: pg_hint(&source, &opts),
                url_without_password: shown.clone(),
                source,
            })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .map_err(|source| StoreError::Unreachable {
                hint: pg_hint(&source, &opts),
                url_without_password: shown.clone(),
                source,
            })?;
        Ok(Self {
            db: Db::Postgres(pool),
            url: shown,
            changed: crate::changes::local_channel(),
        })
    }

    /// Applies the embedded migrations of this backend. Applying them again is a no-op; on
    /// PostgreSQL concurrent callers serialise on the migrator's advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The database URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PostgreSQL pool, for coordination that only exists there (advisory locks on a
    /// dedicated connection, `LISTEN/NOTIFY`, `SKIP LOCKED`). `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }

    /// Answers when the database does (`/health/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ())
            .ctx("pinging the database"))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

fn pg_hint(e: &sqlx::Error, opts: &PgConnectOptions) -> String {
    let at = format!("{}:{}", opts.get_host(), opts.get_port());
    if let sqlx::Error::Database(db) = e {
        return match db.code().as_deref() {
            Some("3D000") => format!(
                "the database does not exist on {at}; create it (e.g. `createdb -h {} -p {} -U {} {}`) \
                 or fix database_url",
                opts.get_host(),
                opts.get_port(),
                opts.get_username(),
                opts.get_database().unwrap_or("vetric"),
            ),
            Some("28P01") | Some("28000") => format!(
                "PostgreSQL on {at} refused the credentials of user {:?}; check database_url \
                 (or give the password through a *_file secret)",
                opts.get_username()
            ),
            _ => format!("PostgreSQL on {at} refused the connection"),
        };
    }
    format!(
        "is PostgreSQL running and accepting TCP connections on {at}? On Debian start it with \
         `pg_ctlcluster 15 main start` (or `systemctl start postgresql`), then check \
         database_url"
    )
}
