//! Backups and restores (issue 6 item 7, DESIGN rule 6).
//!
//! * **SQLite:** [`Store::backup_to`] writes an online, consistent copy with `VACUUM INTO`
//!   (a read transaction: it runs beside a live `serve` under WAL and sees one snapshot). The
//!   copy goes to a temporary name in the destination's directory, is checked with
//!   `PRAGMA integrity_check`, made durable and renamed into place, so a half-written backup
//!   never carries the final name. [`restore_sqlite`] checks that a file is a vetric store
//!   this version can read, then replaces the database file atomically while holding the
//!   instance lock (so no server can start meanwhile; a running one makes it refuse).
//! * **PostgreSQL:** the database's own tools, `pg_dump --format=custom` ([`pg_dump`]) and
//!   `pg_restore --clean --if-exists --no-owner` ([`pg_restore`]). The password of the URL
//!   travels in `PGPASSWORD`, never on a command line.

use crate::lock::{InstanceLock, LockError, LockHolder};
use crate::store::{Db, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything a backup or a restore can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path} already exists; choose another file or pass --force to overwrite it")]
    Exists { path: PathBuf },

    #[error(
        "this store is PostgreSQL: back it up with pg_dump (`vetric backup` runs `pg_dump \
         --format=custom` for you when it is installed)"
    )]
    UsePgDump,

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("SQLite failed while {context} ({path}): {source}")]
    Sqlite {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error("{path} is not a vetric backup: {reason}")]
    NotAVetricStore { path: PathBuf, reason: String },

    #[error("{path} failed SQLite's integrity check: {report}")]
    Corrupt { path: PathBuf, report: String },

    #[error("the store {db} is in use by {holder}; stop it before restoring")]
    InUse { db: PathBuf, holder: LockHolder },

    #[error(transparent)]
    Lock(LockError),

    #[error(
        "{tool} is not installed (looked on PATH and in /usr/lib/postgresql/*/bin); on Debian \
         install it with `apt-get install postgresql-client`"
    )]
    ToolMissing { tool: &'static str },

    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
}

/// What a backup or restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
}

/// What [`verify_sqlite_backup`] found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBackup {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration applied in it.
    pub schema_version: i64,
}

/// The tables every vetric store has (a file without them is not one).
const KNOWN_TABLES: &[&str] = &["sites", "sessions", "events", "users"];

impl Store {
    /// Writes a consistent copy of a SQLite store to `dest` while the store stays in use.
    /// Refuses to replace an existing `dest` unless `overwrite`. On PostgreSQL this is
    /// [`BackupError::UsePgDump`]: see [`pg_dump`].
    pub async fn backup_to(&self, dest: &Path, overwrite: bool) -> Result<BackupInfo, BackupError> {
        let Db::Sqlite(pool) = &self.db else {
            return Err(BackupError::UsePgDump);
        };
        if !overwrite && dest.exists() {
            return Err(BackupError::Exists {
                path: dest.to_owned(),
            });
        }
        let dir = parent_dir(dest);
        std::fs::create_dir_all(&dir).map_err(io("creating the directory", &dir))?;
        let temp = temp_name(dest);
        let _ = std::fs::remove_file(&temp);
        let sql_err = |context| {
            let path = dest.to_owned();
            move |source| BackupError::Sqlite {
                context,
                path,
                source,
            }
        };
        let result = async {
            sqlx::query("VACUUM INTO $1")
                .bind(temp.to_string_lossy().into_owned())
                .execute(pool)
                .await
                .map_err(sql_err("writing the copy (VACUUM INTO)"))?;
            check_copy(&temp).await?;
            finish_file(&temp, dest, !overwrite)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Checks that `path` is a SQLite database with vetric's schema, intact, and not newer than
/// this version of vetric. Opens it read-only; changes nothing.
pub async fn verify_sqlite_backup(path: &Path) -> Result<VerifiedBackup, BackupError> {
    let meta = std::fs::metadata(path).map_err(io("reading", path))?;
    if !meta.is_file() {
        return Err(BackupError::NotAVetricStore {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    let mut header = [0u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(io("opening", path))?;
        if f.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
            return Err(BackupError::NotAVetricStore {
                path: path.to_owned(),
                reason: "not a SQLite database (a PostgreSQL dump is restored on a PostgreSQL \
                         store)"
                    .into(),
            });
        }
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let mut conn = opts.connect().await.map_err(|source| BackupError::Sqlite {
        context: "opening the backup",
        path: path.to_owned(),
        source,
    })?;
    let out = inspect(&mut conn, path).await;
    let _ = conn.close().await;
    let schema_version = out?;
    Ok(VerifiedBackup {
        path: path.to_owned(),
        bytes: meta.len(),
        schema_version,
    })
}

async fn inspect(conn: &mut SqliteConnection, path: &Path) -> Result<i64, BackupError> {
    let not_vetric = |reason: String| BackupError::NotAVetricStore {
        path: path.to_owned(),
        reason,
    };
    integrity(conn, path).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(|source| BackupError::Sqlite {
                context: "listing tables",
                path: path.to_owned(),
                source,
            })?;
    let missing: Vec<&str> = std::iter::once("_sqlx_migrations")
        .chain(KNOWN_TABLES.iter().copied())
        .filter(|t| !tables.iter().any(|have| have == t))
        .collect();
    if !missing.is_empty() {
        return Err(not_vetric(format!(
            "it lacks the table(s) {}",
            missing.join(", ")
        )));
    }
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|source| BackupError::Sqlite {
                context: "reading its migrations",
                path: path.to_owned(),
                source,
            })?;
    let known: Vec<i64> = sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .collect();
    if let Some((v, _)) = applied.iter().find(|(v, _)| !known.contains(v)) {
        return Err(not_vetric(format!(
            "it was written by a newer vetric (schema migration {v} is unknown to this \
             version); restore it with that version"
        )));
    }
    if let Some((v, _)) = applied.iter().find(|(_, ok)| !ok) {
        return Err(not_vetric(format!("its migration {v} did not complete")));
    }
    applied
        .last()
        .map(|(v, _)| *v)
        .ok_or_else(|| not_vetric("no migration was ever applied to it".into()))
}

async fn integrity(conn: &mut SqliteConnection, path: &Path) -> Result<(), BackupError> {
    let report: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| BackupError::Sqlite {
            context: "checking integrity",
            path: path.to_owned(),
            source,
        })?;
    if report.len() == 1 && report[0] == "ok" {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_owned(),
            report: report.join("; "),
        })
    }
}

/// Opens a fresh copy (ours, read-write), makes it a single self-contained file (rollback
/// journal, no `-wal`), and checks its integrity and its schema.
async fn check_copy(path: &Path) -> Result<(), BackupError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Delete);
    let mut conn = opts.connect().await.map_err(|source| BackupError::Sqlite {
        context: "opening the copy",
        path: path.to_owned(),
        source,
    })?;
    let out = inspect(&mut conn, path).await.map(|_| ());
    let _ = conn.close().await;
    out
}

/// Replaces the SQLite database at `db_path` with the backup `from`, after checking it
/// ([`verify_sqlite_backup`]). Holds the instance lock meanwhile, so it refuses while a
/// `serve` or `demo` holds the store ([`BackupError::InUse`], naming it) and no server can
/// start half-way. The old `-wal`/`-shm` files are removed: they belong to the old database.
pub async fn restore_sqlite(db_path: &Path, from: &Path) -> Result<BackupInfo, BackupError> {
    let lock = InstanceLock::acquire(db_path, LockHolder::current("vetric restore", None))
        .map_err(|e| match e {
            LockError::LockHeld { db, holder } => BackupError::InUse { db, holder },
            other => BackupError::Lock(other),
        })?;
    verify_sqlite_backup(from).await?;
    let dir = parent_dir(db_path);
    std::fs::create_dir_all(&dir).map_err(io("creating the directory", &dir))?;
    let temp = temp_name(db_path);
    let result = async {
        std::fs::copy(from, &temp).map_err(io("copying the backup to", &temp))?;
        // Check the bytes that will be put in place, not only the source.
        check_copy(&temp).await?;
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = db_path.as_os_str().to_owned();
            side.push(suffix);
            match std::fs::remove_file(PathBuf::from(&side)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", Path::new(&side))(e)),
            }
        }
        finish_file(&temp, db_path, false)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    drop(lock);
    result
}

/// fsyncs `temp`, renames it to `dest` and fsyncs the directory. With `no_clobber`, a `dest`
/// that appeared meanwhile is kept ([`BackupError::Exists`]): the copy is linked, not renamed.
fn finish_file(temp: &Path, dest: &Path, no_clobber: bool) -> Result<BackupInfo, BackupError> {
    let file = std::fs::File::open(temp).map_err(io("opening", temp))?;
    file.sync_all().map_err(io("syncing", temp))?;
    let bytes = file.metadata().map_err(io("reading", temp))?.len();
    drop(file);
    let linked = no_clobber
        && match std::fs::hard_link(temp, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(temp);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists {
                    path: dest.to_owned(),
                });
            }
            // A file system without hard links: the check before the copy has to do.
            Err(_) => false,
        };
    if !linked {
        std::fs::rename(temp, dest).map_err(io("renaming the copy to", dest))?;
    }
    let dir = parent_dir(dest);
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(BackupInfo {
        path: dest.to_owned(),
        bytes,
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `dir/.name.partial-<pid>`: same directory (so the rename is atomic), hidden, per process.
fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vetric-backup".into());
    parent_dir(dest).join(format!(".{name}.partial-{}", std::process::id()))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: pg_dump / pg_restore.

/// Finds a PostgreSQL client tool: on `PATH` first, then the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_pg_tool(tool: &'static str) -> Result<PathBuf, BackupError> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(tool);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let candidate = e.path().join("bin").join(tool);
            is_executable(&candidate).then_some((v, candidate))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or(BackupError::ToolMissing { tool })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Splits a PostgreSQL URL into the URL without its password and the (percent-decoded)
/// password, for `PGPASSWORD`.
pub fn split_pg_password(url: &str) -> (String, Option<String>) {
    let password = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| percent_decode(pw))
        .or_else(|| {
            url.split_once('?').and_then(|(_, q)| {
                q.split('&').find_map(|kv| {
                    kv.split_once('=')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
                        .map(|(_, v)| percent_decode(v))
                })
            })
        });
    (crate::redact_url(url), password)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run_pg_tool(tool: &'static str, args: &[&str], url: &str) -> Result<(), BackupError> {
    let program = find_pg_tool(tool)?;
    let (bare, password) = split_pg_password(url);
    let mut cmd = Command::new(&program);
    cmd.args(args).arg(format!("--dbname={bare}"));
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd.output().map_err(io("running", &program))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim().lines().collect::<Vec<_>>().join(" / ");
        Err(BackupError::ToolFailed {
            tool,
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// `pg_dump --format=custom` of the database at `url` into `dest` (via a temporary name in
/// the same directory, renamed when complete). Refuses an existing `dest` unless `overwrite`.
/// Blocking: call it from `spawn_blocking` in async code.
pub fn pg_dump(url: &str, dest: &Path, overwrite: bool) -> Result<BackupInfo, BackupError> {
    if !overwrite && dest.exists() {
        return Err(BackupError::Exists {
            path: dest.to_owned(),
        });
    }
    let dir = parent_dir(dest);
    std::fs::create_dir_all(&dir).map_err(io("creating the directory", &dir))?;
    let temp = temp_name(dest);
    let temp_str = temp.to_string_lossy().into_owned();
    let result = run_pg_tool(
        "pg_dump",
        &["--format=custom", "--no-password", "--file", &temp_str],
        url,
    )
    .and_then(|()| finish_file(&temp, dest, !overwrite));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// `pg_restore --clean --if-exists --no-owner` of the custom-format dump `from` into the
/// database at `url`. Blocking.
pub fn pg_restore(url: &str, from: &Path) -> Result<BackupInfo, BackupError> {
    let bytes = std::fs::metadata(from).map_err(io("reading", from))?.len();
    let from_str = from.to_string_lossy().into_owned();
    run_pg_tool(
        "pg_restore",
        &[
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-password",
            "--exit-on-error",
            "--single-transaction",
            &from_str,
        ],
        url,
    )?;
    Ok(BackupInfo {
        path: from.to_owned(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_for_pgpassword() {
        assert_eq!(
            split_pg_password("postgres://vetric:s3cr%40t@db:5432/vetric?sslmode=require"),
            (
                "postgres://vetric@db:5432/vetric?sslmode=require".to_owned(),
                Some("s3cr@t".to_owned())
            )
        );
        assert_eq!(
            split_pg_password("postgres://u@h/db?password=x%21&application_name=v"),
            (
                "postgres://u@h/db?application_name=v".to_owned(),
                Some("x!".to_owned())
            )
        );
        assert_eq!(
            split_pg_password("postgres://postgres@127.0.0.1:5432/postgres"),
            (
                "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
                None
            )
        );
    }

    #[test]
    fn temp_names_stay_in_the_destination_directory() {
        let t = temp_name(Path::new("/var/backups/v.db"));
        assert_eq!(t.parent(), Some(Path::new("/var/backups")));
        assert!(
            t.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".v.db.partial-"))
        );
    }
}
