//! Test helpers: a fresh, migrated store on either backend, for this crate's tests and for the
//! tests of crates that use the store (enable the `testing` feature in their dev-dependencies).
//!
//! * SQLite: a file in a temporary directory, removed when the [`TestDb`] drops.
//! * PostgreSQL: a new database per test, named `vetric_test_<pid>_<counter>_<random>`, on
//!   the server of `VETRIC_TEST_PG_URL` (default [`DEFAULT_PG_URL`]); dropped (`WITH (FORCE)`)
//!   when the [`TestDb`] drops, even after a panic. Databases left by killed test processes
//!   are dropped by the next run. When the server is unreachable the test **fails** with the
//!   command that starts it; it never skips.
//!
//! [`test_both_backends!`](crate::test_both_backends) turns `async fn name(db: &TestDb)` into
//! the tests `name::sqlite` and `name::postgres`.

use crate::{Backend, Store};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The development and CI server (trust auth for `postgres`).
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The maintenance database URL used to create and drop test databases.
pub fn pg_admin_url() -> String {
    std::env::var("VETRIC_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A migrated store that cleans up after itself.
pub struct TestDb {
    pub store: Store,
    /// The database URL (give it to a binary under test as `database_url`).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh migrated store on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A migrated SQLite store in a new temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory for a SQLite store");
        let path = dir.path().join("vetric.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url)
            .await
            .expect("open a temporary SQLite store");
        store
            .migrate()
            .await
            .expect("migrate a temporary SQLite store");
        Self {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A migrated store in a new PostgreSQL database. Panics, saying how to start the server,
    /// when PostgreSQL is unreachable.
    pub async fn postgres() -> Self {
        let admin_url = pg_admin_url();
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => panic!(
                "PostgreSQL tests need a server at {} but it is unreachable: {e}\n\
                 Start it with `pg_ctlcluster 15 main start` (Debian; or `systemctl start \
                 postgresql`), or point VETRIC_TEST_PG_URL at another server. These tests \
                 never skip.",
                crate::redact_url(&admin_url)
            ),
        };
        static SWEEP: Once = Once::new();
        let mut sweep = false;
        SWEEP.call_once(|| sweep = true);
        if sweep {
            drop_leftovers(&mut admin).await;
        }
        let name = unique_name();
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        let cleanup = Cleanup::Postgres {
            admin_url,
            name: name.clone(),
        };
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("open test database {name}: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate test database {name}: {e:?}"));
        Self {
            store,
            url,
            cleanup,
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Rows per table (every table of the schema but the migrations' own), so a test can
    /// prove a refused request stored nothing, in tables it does not know about too.
    pub async fn row_counts(&self) -> std::collections::BTreeMap<String, i64> {
        let list = match self.backend() {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'"
            }
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name NOT LIKE '\\_sqlx%'"
            }
        };
        let tables: Vec<String> = crate::store::with_pool!(self.store, |pool| {
            sqlx::query_scalar(list).fetch_all(pool).await
        })
        .expect("list the tables of a test store");
        let mut counts = std::collections::BTreeMap::new();
        for t in tables {
            let sql = format!("SELECT COUNT(*) FROM \"{t}\"");
            let n: i64 = crate::store::with_pool!(self.store, |pool| {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(pool)
                    .await
            })
            .unwrap_or_else(|e| panic!("count the rows of {t}: {e}"));
            counts.insert(t, n);
        }
        counts
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop cannot await, and the test's runtime may be unwinding: use a thread with
            // its own runtime. WITH (FORCE) ends the pool's connections.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                    admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await
                        .ok()?;
                    let _ = admin.close().await;
                    Some(())
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(()))) {
                eprintln!("note: could not drop a test database; the next test run will");
            }
        }
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let random = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(nanos);
        h.write_u64(n);
        h.finish() & 0xff_ffff
    };
    format!("vetric_test_{}_{n}_{random:06x}", std::process::id())
}

/// `admin_url` with its database replaced by `name`.
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

/// Drops `vetric_test_<pid>_…` databases whose process is gone (killed test runs).
async fn drop_leftovers(admin: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'vetric\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix("vetric_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .await;
    }
}

/// Generates, for each `async fn name(db: &TestDb)` named, two tests: `name::sqlite` and
/// `name::postgres`. The calling crate needs `tokio` with the `macros` feature.
///
/// ```no_run
/// use vetric_store::testing::TestDb;
///
/// async fn site_upsert_is_idempotent(db: &TestDb) {
///     let a = db.store.upsert_site("s", "S", "America/Sao_Paulo").await.unwrap();
///     assert_eq!(db.store.upsert_site("s", "S", "America/Sao_Paulo").await.unwrap(), a);
/// }
///
/// vetric_store::test_both_backends!(site_upsert_is_idempotent);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let db = $crate::testing::TestDb::new($crate::Backend::Sqlite).await;
                    super::$name(&db).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let db = $crate::testing::TestDb::new($crate::Backend::Postgres).await;
                    super::$name(&db).await;
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
