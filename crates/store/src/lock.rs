//! The SQLite instance lock (DESIGN rule 6, STACK §28).
//!
//! A SQLite store is served by one process at a time: `vetric serve` and `vetric demo` hold an
//! exclusive lock on `<db>.lock` (an OS file lock, `File::try_lock`, released by the kernel
//! when the process dies, so it is never stale) and write who they are into it. A second
//! server refuses to start naming the holder; `migrate` and `restore` check
//! [`InstanceLock::is_held`] and refuse too. Ordinary clients (`status`, `backup`, …) ignore
//! the lock and open the store through WAL.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Who holds (or held) the lock: written into the lock file as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id; 0 when the lock file could not be read.
    pub pid: u32,
    /// What runs, e.g. `vetric serve`.
    pub command: String,
    /// The address it listens on, if any.
    pub listen: Option<String>,
    pub since: DateTime<Utc>,
}

impl LockHolder {
    /// This process, running `command` (e.g. `"vetric serve"`), listening on `listen`.
    pub fn current(command: impl Into<String>, listen: Option<String>) -> Self {
        Self {
            pid: std::process::id(),
            command: command.into(),
            listen,
            since: Utc::now(),
        }
    }

    fn unknown() -> Self {
        Self {
            pid: 0,
            command: "a process that did not say who it is".to_owned(),
            listen: None,
            since: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

impl fmt::Display for LockHolder {
    /// `pid 1234 (vetric serve on 127.0.0.1:8080, since 2026-05-01T12:00:00Z)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            return write!(f, "another process (the lock file does not say which)");
        }
        write!(f, "pid {} ({}", self.pid, self.command)?;
        if let Some(listen) = &self.listen {
            write!(f, " on {listen}")?;
        }
        write!(
            f,
            ", since {})",
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the store {db} is held by {holder}; only one `vetric serve` or `vetric demo` may use a \
         SQLite store at a time: stop that process first, or use PostgreSQL for several instances"
    )]
    LockHeld { db: PathBuf, holder: LockHolder },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive hold on a SQLite store. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
    holder: LockHolder,
}

impl InstanceLock {
    /// The lock file of a database: `vetric.db` → `vetric.db.lock`.
    pub fn lock_path(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock for `db_path` and records `holder` in it, or fails with
    /// [`LockError::LockHeld`] naming the current holder. Never blocks.
    pub fn acquire(db_path: &Path, holder: LockHolder) -> Result<Self, LockError> {
        let path = Self::lock_path(db_path);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Not truncated on open: the current holder's text must survive our failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::LockHeld {
                    db: db_path.to_owned(),
                    holder: read_holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let text = serde_json::to_string(&holder).map_err(|e| io(e.into()))?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        tracing::debug!(lock = %path.display(), %holder, "instance lock acquired");
        Ok(Self { file, path, holder })
    }

    /// Who holds the lock of `db_path` right now, if anyone. For commands that must not run
    /// under a live server (`migrate`, `restore`).
    pub fn is_held(db_path: &Path) -> Result<Option<LockHolder>, LockError> {
        let path = Self::lock_path(db_path);
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => Ok(Some(read_holder(&mut file))),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Clear the text so a stale file never names a process that is gone; the file itself
        // stays (deleting it would race with a process that has just opened it).
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Reads the holder from a lock file held by someone else. The holder writes it right after
/// locking, so an empty or partial file is retried briefly before giving up.
fn read_holder(file: &mut File) -> LockHolder {
    for _ in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(holder) = serde_json::from_str::<LockHolder>(&text)
        {
            return holder;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    LockHolder::unknown()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_text_names_pid_command_address_and_start() {
        let h = LockHolder {
            pid: 1234,
            command: "vetric serve".into(),
            listen: Some("127.0.0.1:8080".into()),
            since: "2026-05-01T12:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            h.to_string(),
            "pid 1234 (vetric serve on 127.0.0.1:8080, since 2026-05-01T12:00:00Z)"
        );
    }

    #[test]
    fn second_acquire_is_refused_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vetric.db");
        assert!(InstanceLock::is_held(&db).unwrap().is_none());

        let holder = LockHolder::current("vetric serve", Some("127.0.0.1:8080".into()));
        let lock = InstanceLock::acquire(&db, holder.clone()).unwrap();
        assert_eq!(lock.path(), dir.path().join("vetric.db.lock"));

        let err = InstanceLock::acquire(&db, LockHolder::current("vetric demo", None)).unwrap_err();
        match &err {
            LockError::LockHeld { holder: h, .. } => assert_eq!(h, &holder),
            other => panic!("expected LockHeld, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "pid {} (vetric serve on 127.0.0.1:8080",
                std::process::id()
            )),
            "{text}"
        );
        assert_eq!(InstanceLock::is_held(&db).unwrap(), Some(holder));

        drop(lock);
        assert!(InstanceLock::is_held(&db).unwrap().is_none());
        let again = InstanceLock::acquire(&db, LockHolder::current("vetric demo", None)).unwrap();
        assert_eq!(again.holder().command, "vetric demo");
    }
}
