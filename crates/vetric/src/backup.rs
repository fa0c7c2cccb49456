//! `vetric backup`, `vetric restore` and the scheduled daily backup of `serve` (issue 6 item 7).
//!
//! * SQLite: `backup` opens the store as an ordinary client (it works while `serve` runs) and
//!   writes a consistent copy ([`vetric_store::Store::backup_to`]); `restore` refuses while a
//!   server holds the store and replaces the file atomically.
//! * PostgreSQL: `pg_dump --format=custom` and `pg_restore --clean --if-exists --no-owner`.
//! * While `serve` runs on SQLite, a task writes `vetric-YYYYMMDD-HHMMSS.db` into the backup
//!   directory once a day at the configured local hour and deletes the ones older than
//!   `keep_days` (only files named that way).

use crate::config::{BackupConfig, Config, DatabaseUrl};
use anyhow::Context;
use chrono::{DateTime, Days, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use vetric_store::{BackupError, Store};

/// The name pattern of scheduled backups; pruning touches nothing else.
const PREFIX: &str = "vetric-";
const SUFFIX: &str = ".db";
const STAMP: &str = "%Y%m%d-%H%M%S";

/// Exit code of a restore refused because a server holds the store (as `serve`'s refusal).
const EXIT_IN_USE: u8 = 3;

/// `vetric backup --out FILE [--force]`.
pub async fn backup_command(cfg: &Config, out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let (store, _) = crate::serve::open_store(cfg).await?;
    let info = match &cfg.database {
        DatabaseUrl::Sqlite(_) => {
            let info = store.backup_to(out, force).await;
            store.close().await;
            info?
        }
        DatabaseUrl::Postgres(url) => {
            store.close().await;
            let url = url.expose().to_owned();
            let out = out.to_owned();
            tokio::task::spawn_blocking(move || vetric_store::pg_dump(&url, &out, force))
                .await
                .context("running pg_dump")??
        }
    };
    println!("{} ({} bytes)", info.path.display(), info.bytes);
    Ok(ExitCode::SUCCESS)
}

/// `vetric restore FILE [--yes]`. Without `--yes` it checks everything, says what it would
/// do, and exits non-zero having changed nothing.
pub async fn restore_command(cfg: &Config, file: &Path, yes: bool) -> anyhow::Result<ExitCode> {
    let outcome = match &cfg.database {
        DatabaseUrl::Sqlite(db) => {
            if let Some(holder) = vetric_store::InstanceLock::is_held(db)? {
                return Ok(in_use(BackupError::InUse {
                    db: db.clone(),
                    holder,
                }));
            }
            let found = vetric_store::verify_sqlite_backup(file).await?;
            if !yes {
                let current = std::fs::metadata(db)
                    .map(|m| format!("{} bytes", m.len()))
                    .unwrap_or_else(|_| "absent".into());
                eprintln!(
                    "would replace the store {} ({current}) with {} ({} bytes, schema version \
                     {}, integrity ok); everything written since that backup is lost. Rerun \
                     with --yes to do it",
                    cfg.database,
                    file.display(),
                    found.bytes,
                    found.schema_version
                );
                return Ok(ExitCode::FAILURE);
            }
            vetric_store::restore_sqlite(db, file).await
        }
        DatabaseUrl::Postgres(url) => {
            check_pg_dump_file(file)?;
            if !yes {
                eprintln!(
                    "would restore {} into {} with pg_restore --clean --if-exists: its tables \
                     are dropped and recreated from the dump; everything written since is lost. \
                     Rerun with --yes to do it",
                    file.display(),
                    cfg.database
                );
                return Ok(ExitCode::FAILURE);
            }
            let url = url.expose().to_owned();
            let from = file.to_owned();
            tokio::task::spawn_blocking(move || vetric_store::pg_restore(&url, &from))
                .await
                .context("running pg_restore")?
        }
    };
    match outcome {
        Ok(_) => {}
        Err(e @ BackupError::InUse { .. }) => return Ok(in_use(e)),
        Err(e) => return Err(e.into()),
    }
    // Bring the restored store to this version's schema and the configured sites.
    let (store, _) = crate::serve::open_store(cfg)
        .await
        .context("opening the restored store")?;
    store.close().await;
    println!("restored {} into {}", file.display(), cfg.database);
    Ok(ExitCode::SUCCESS)
}

fn in_use(e: BackupError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_IN_USE)
}

fn check_pg_dump_file(file: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut head = [0u8; 5];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading {}", file.display()))?;
    if &head != b"PGDMP" {
        anyhow::bail!(
            "{} is not a pg_dump custom-format archive (a SQLite backup is restored on a SQLite \
             store)",
            file.display()
        );
    }
    Ok(())
}

/// The next instant strictly after `now` at which the local time in `tz` is `hour`:00. A
/// local hour skipped by a daylight-saving change runs at the first instant after the gap; a
/// repeated one runs the first time.
pub fn next_run(now: DateTime<Utc>, hour: u32, tz: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    for offset in 0..=2 {
        let Some(day) = today.checked_add_days(Days::new(offset)) else {
            break;
        };
        let Some(naive) = day.and_hms_opt(hour.min(23), 0, 0) else {
            break;
        };
        let at = match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
            LocalResult::None => match first_after_gap(tz, naive) {
                Some(t) => t,
                None => continue,
            },
        };
        let at = at.with_timezone(&Utc);
        if at > now {
            return at;
        }
    }
    now + TimeDelta::days(1)
}

fn first_after_gap(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Tz>> {
    (1..=180).find_map(|m| {
        tz.from_local_datetime(&(naive + TimeDelta::minutes(m)))
            .earliest()
    })
}

/// `vetric-YYYYMMDD-HHMMSS.db` for the local time of `at` in `tz`.
pub fn file_name(at: DateTime<Utc>, tz: Tz) -> String {
    format!("{PREFIX}{}{SUFFIX}", at.with_timezone(&tz).format(STAMP))
}

/// The local time in a scheduled backup's name, `None` for any other file.
fn stamp_of(name: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if stamp.len() != 15 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?;
    Some(
        tz.from_local_datetime(&naive)
            .earliest()?
            .with_timezone(&Utc),
    )
}

/// Deletes the scheduled backups in `dir` older than `keep_days` (by the time in their name);
/// other files are never touched. Returns what it deleted.
pub fn prune(
    dir: &Path,
    keep_days: u32,
    now: DateTime<Utc>,
    tz: Tz,
) -> std::io::Result<Vec<PathBuf>> {
    let cutoff = now - TimeDelta::days(i64::from(keep_days));
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(at) = name.to_str().and_then(|n| stamp_of(n, tz)) else {
            continue;
        };
        if at < cutoff && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// One scheduled backup and the pruning after it; logs the outcome.
pub async fn run_once(store: &Store, settings: &BackupConfig, tz: Tz, now: DateTime<Utc>) {
    let path = settings.dir.join(file_name(now, tz));
    match store.backup_to(&path, false).await {
        Ok(info) => {
            info!(path = %info.path.display(), bytes = info.bytes, "scheduled backup written");
            metrics::gauge!("vetric_backup_last_success_timestamp").set(now.timestamp() as f64);
        }
        Err(e) => {
            error!(path = %path.display(), error = %e, "scheduled backup failed");
            return;
        }
    }
    match prune(&settings.dir, settings.keep_days, now, tz) {
        Ok(removed) => {
            for p in removed {
                info!(path = %p.display(), "old backup removed");
            }
        }
        Err(e) => warn!(dir = %settings.dir.display(), error = %e, "pruning old backups failed"),
    }
}

/// The daily backup loop of `serve` (SQLite only), until `stop`.
pub async fn scheduled(store: Store, settings: BackupConfig, tz: Tz, stop: CancellationToken) {
    loop {
        let next = next_run(Utc::now(), settings.hour, tz);
        info!(next = %next.with_timezone(&tz), dir = %settings.dir.display(), "next scheduled backup");
        // Short naps against the wall clock, so a suspended machine or a clock change does not
        // push the backup a day off.
        loop {
            let left = (next - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(Duration::from_secs(300))) => {}
                () = stop.cancelled() => return,
            }
        }
        run_once(&store, &settings, tz, Utc::now()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::Sao_Paulo;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn next_run_is_the_coming_local_hour() {
        // São Paulo is UTC-3 (no daylight saving since 2019): 03:00 local is 06:00Z.
        assert_eq!(
            next_run(utc("2026-05-01T05:59:59Z"), 3, Sao_Paulo),
            utc("2026-05-01T06:00:00Z")
        );
        // Exactly at the hour: the next day (strictly after now).
        assert_eq!(
            next_run(utc("2026-05-01T06:00:00Z"), 3, Sao_Paulo),
            utc("2026-05-02T06:00:00Z")
        );
        assert_eq!(
            next_run(utc("2026-05-01T12:00:00Z"), 3, Sao_Paulo),
            utc("2026-05-02T06:00:00Z")
        );
        // Late evening local is already the next UTC day.
        assert_eq!(
            next_run(utc("2026-05-02T02:30:00Z"), 23, Sao_Paulo),
            utc("2026-05-02T02:00:00Z") + TimeDelta::days(1)
        );
        // Year end.
        assert_eq!(
            next_run(utc("2026-12-31T23:00:00Z"), 0, Sao_Paulo),
            utc("2027-01-01T03:00:00Z")
        );
    }

    #[test]
    fn next_run_handles_daylight_saving() {
        let ny = chrono_tz::America::New_York;
        // 2026-03-08 02:00 does not exist in New York: run at 03:00 EDT (07:00Z).
        assert_eq!(
            next_run(utc("2026-03-08T05:00:00Z"), 2, ny),
            utc("2026-03-08T07:00:00Z")
        );
        // 2026-11-01 01:00 happens twice: the first one (EDT, 05:00Z), once.
        let first = next_run(utc("2026-11-01T04:00:00Z"), 1, ny);
        assert_eq!(first, utc("2026-11-01T05:00:00Z"));
        assert_eq!(next_run(first, 1, ny), utc("2026-11-02T06:00:00Z"));
        // São Paulo's old midnight DST gap (2018-11-04 00:00 did not exist).
        assert_eq!(
            next_run(utc("2018-11-04T02:00:00Z"), 0, Sao_Paulo),
            utc("2018-11-04T03:00:00Z")
        );
    }

    #[test]
    fn names_carry_the_local_time_and_read_back() {
        let at = utc("2026-05-01T06:00:07Z");
        let name = file_name(at, Sao_Paulo);
        assert_eq!(name, "vetric-20260501-030007.db");
        assert_eq!(stamp_of(&name, Sao_Paulo), Some(at));
        assert_eq!(
            stamp_of("vetric-20260501-030007.db.partial", Sao_Paulo),
            None
        );
        assert_eq!(stamp_of("vetric-2026050-030007.db", Sao_Paulo), None);
        assert_eq!(stamp_of("other-20260501-030007.db", Sao_Paulo), None);
    }

    #[test]
    fn pruning_removes_only_old_scheduled_backups() {
        let dir = tempfile::tempdir().unwrap();
        let now = utc("2026-05-20T06:00:00Z");
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        for days_ago in [0, 1, 13, 14, 15, 40] {
            touch(&file_name(
                now - TimeDelta::days(days_ago) - TimeDelta::seconds(1),
                Sao_Paulo,
            ));
        }
        touch("vetric-old-by-hand.db");
        touch("vetric-20200101-030000.db.keep");
        touch("vetric.db");
        std::fs::create_dir(dir.path().join("vetric-20200101-030000.db")).unwrap();

        let removed = prune(dir.path(), 14, now, Sao_Paulo).unwrap();
        let removed: Vec<String> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            removed,
            vec![
                "vetric-20260410-025959.db",
                "vetric-20260505-025959.db",
                "vetric-20260506-025959.db"
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "vetric-20200101-030000.db",
                "vetric-20200101-030000.db.keep",
                "vetric-20260507-025959.db",
                "vetric-20260519-025959.db",
                "vetric-20260520-025959.db",
                "vetric-old-by-hand.db",
                "vetric.db",
            ]
        );
    }

    #[tokio::test]
    async fn a_scheduled_run_writes_a_named_backup_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vetric.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let settings = BackupConfig {
            enabled: true,
            dir: dir.path().join("backups"),
            keep_days: 14,
            hour: 3,
        };
        let now = utc("2026-05-20T06:00:00Z");
        std::fs::create_dir_all(&settings.dir).unwrap();
        let old = settings
            .dir
            .join(file_name(now - TimeDelta::days(20), Sao_Paulo));
        std::fs::write(&old, b"x").unwrap();
        run_once(&store, &settings, Sao_Paulo, now).await;
        let written = settings.dir.join("vetric-20260520-030000.db");
        vetric_store::verify_sqlite_backup(&written).await.unwrap();
        assert!(!old.exists());
        store.close().await;
    }
}
