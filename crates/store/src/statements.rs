//! Monthly statements (BILLING.md; issue #8): the rows imported from the vendor's XLSX export,
//! the assembly of everything a statement of one site and month depends on
//! ([`Store::statement_input`]), and issued statements as frozen, versioned snapshots.
//!
//! The store does not price anything: it reads plain data into the domain's
//! [`StatementInput`] and lets [`vetric_domain::statement::compute`] answer. Issuing freezes
//! that input *and* its result as JSON in one row per version, so an issued statement reads
//! back exactly as it was issued whatever arrives later (an imported row, a corrected tag
//! owner): late data only ever shows up in the next draft and, when issued, a new version.
//!
//! Imports keep one row per vendor id and site: a row already imported is reported, not
//! stored again, and a vendor id vetric also recorded itself is stored but never doubled —
//! the statement collapses copies and lists their disagreements (domain step 1).

use crate::accounts::{AuditEntry, UserId, audit_in};
use crate::error::{Ctx, StoreError};
use crate::model::{NewNotification, SiteId};
use crate::store::{Store, in_tx, with_pool};
use crate::tariffs::lock_site_in;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeSet;
use vetric_domain::statement::compute;
use vetric_domain::{
    LocalMonth, ResidentRef, SessionRecord, SessionSource, Statement, StatementInput, Tag,
    TagDirectory, TimePrecision, format_money, local_midnight,
};

/// One confirmed import of the vendor's export, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImportBatch {
    /// The file's name as the user gave it (shown, never used as a path).
    pub file_name: String,
    /// Non-empty data rows of the sheet.
    pub rows_read: u32,
    /// Rows the import report refused (not stored).
    pub rows_refused: u32,
}

/// What a confirmed import stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    pub batch_id: i64,
    /// Vendor ids stored by this import.
    pub imported: Vec<i64>,
    /// Vendor ids an earlier import already stored: not stored again (the first import wins).
    pub already_imported: Vec<i64>,
    /// Vendor ids of this import that vetric also recorded itself: the statement uses
    /// vetric's record and lists any disagreement.
    pub also_recorded: Vec<i64>,
}

/// An issued statement: one frozen version.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedStatement {
    pub id: i64,
    pub site_id: SiteId,
    pub month: LocalMonth,
    /// 1 for the first issue of the month, then 2, 3…
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    /// `None`: issued from the command line (or by a user since removed).
    pub issued_by: Option<UserId>,
    pub input: StatementInput,
    pub statement: Statement,
}

/// One version of a month's statement, for listings (no snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct IssuedVersion {
    pub id: i64,
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    pub issued_by: Option<UserId>,
    /// The month's total in R$, `"1208.25"`.
    pub total: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRaw {
    vendor_id: i64,
    charger: String,
    tag: Option<String>,
    user_name: Option<String>,
    start: DateTime<Utc>,
    stop: DateTime<Utc>,
    energy_wh: i64,
    idle_seconds: i64,
    time_precision: String,
    import_line: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct IssuedRaw {
    id: i64,
    site_id: SiteId,
    month: String,
    version: i64,
    issued_at: DateTime<Utc>,
    issued_by: Option<UserId>,
    input: String,
    result: String,
}

/// vetric's own sessions: only ended ones with a stop and an energy figure (an open session
/// has no price yet). Own records have second precision and no spreadsheet line.
const OWN_SESSIONS: &str = "SELECT s.vendor_id, COALESCE(c.name, s.charger_uuid) AS charger, \
     s.tag, CAST(NULL AS TEXT) AS user_name, s.start, s.stop, s.energy_wh, \
     s.idle_seconds, 'second' AS time_precision, CAST(NULL AS BIGINT) AS import_line \
     FROM sessions s LEFT JOIN chargers c ON c.site_id = s.site_id AND c.uuid = s.charger_uuid \
     WHERE s.site_id = $1 AND s.status = 'ended' AND s.stop IS NOT NULL \
     AND s.energy_wh IS NOT NULL AND s.start >= $2 AND s.start < $3 \
     ORDER BY s.start, s.vendor_id";

const IMPORTED_SESSIONS: &str = "SELECT vendor_id, charger, tag, user_name, start, stop, \
     energy_wh, idle_seconds, time_precision, import_line FROM imported_sessions \
     WHERE site_id = $1 AND start >= $2 AND start < $3 ORDER BY start, vendor_id";

const ISSUED_SELECT: &str = "SELECT id, site_id, month, version, issued_at, issued_by, input, \
     result FROM statements WHERE site_id = $1 AND month = $2";

/// `audit` with `detail`'s keys added to its own detail (replacing it when that is not an
/// object): the caller's context stays, the store adds what only it knows.
fn with_detail(audit: &AuditEntry, detail: serde_json::Value) -> AuditEntry {
    let mut entry = audit.clone();
    match &mut entry.detail {
        serde_json::Value::Object(map) => {
            if let serde_json::Value::Object(d) = detail {
                map.extend(d);
            }
        }
        other => *other = detail,
    }
    entry
}

fn precision_str(p: TimePrecision) -> &'static str {
    match p {
        TimePrecision::Second => "second",
        TimePrecision::Minute => "minute",
    }
}

pub(crate) fn decode_session(
    raw: SessionRaw,
    source: SessionSource,
) -> Result<SessionRecord, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        what: format!("session {}: {why}", raw.vendor_id),
    };
    let tag = raw
        .tag
        .as_deref()
        .map(Tag::parse)
        .transpose()
        .map_err(|e| corrupt(format!("tag: {e}")))?;
    let precision = match raw.time_precision.as_str() {
        "second" => TimePrecision::Second,
        "minute" => TimePrecision::Minute,
        other => return Err(corrupt(format!("unknown time precision {other:?}"))),
    };
    let import_line = raw
        .import_line
        .map(u32::try_from)
        .transpose()
        .map_err(|_| corrupt("spreadsheet line out of range".to_owned()))?;
    Ok(SessionRecord {
        vendor_id: raw.vendor_id,
        charger: raw.charger,
        tag,
        start: raw.start,
        stop: raw.stop,
        energy_wh: raw.energy_wh,
        idle_seconds: raw.idle_seconds,
        source,
        precision,
        import_line,
        user_name: raw.user_name,
    })
}

fn decode_issued(raw: IssuedRaw) -> Result<IssuedStatement, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        what: format!(
            "statement {} version {} of site {}: {why}",
            raw.month, raw.version, raw.site_id
        ),
    };
    let month = LocalMonth::parse(&raw.month).map_err(|e| corrupt(e.to_string()))?;
    let input: StatementInput =
        serde_json::from_str(&raw.input).map_err(|e| corrupt(format!("input: {e}")))?;
    let statement: Statement =
        serde_json::from_str(&raw.result).map_err(|e| corrupt(format!("result: {e}")))?;
    Ok(IssuedStatement {
        id: raw.id,
        site_id: raw.site_id,
        month,
        version: raw.version,
        issued_at: raw.issued_at,
        issued_by: raw.issued_by,
        input,
        statement,
    })
}

/// The UTC instants `[from, to)` of the local month, widened by two days on each side: the
/// domain picks the month's sessions itself, and copies of one vendor id whose times disagree
/// across the month's edge must both reach it to be compared.
fn month_window(tz: Tz, month: LocalMonth) -> Result<(DateTime<Utc>, DateTime<Utc>), StoreError> {
    let out_of_range = || StoreError::NotFound {
        what: format!("the month {month} (out of the supported range of dates)"),
    };
    let first =
        chrono::NaiveDate::from_ymd_opt(month.year(), month.month(), 1).ok_or_else(out_of_range)?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(out_of_range)?;
    let from = local_midnight(tz, first).ok_or_else(out_of_range)?;
    let to = local_midnight(tz, next).ok_or_else(out_of_range)?;
    let margin = TimeDelta::days(2);
    Ok((from - margin, to + margin))
}

impl Store {
    /// Everything the statement of `site` for the local `month` depends on: the site's name
    /// and zone, vetric's own ended sessions and the imported ones around the month (the
    /// domain keeps those of the month), the tag ownership with apartments, and the tariff
    /// history. [`StoreError::NotFound`] when the site does not exist;
    /// [`StoreError::Corrupt`] when its time zone is not one vetric knows.
    pub async fn statement_input(
        &self,
        site: SiteId,
        month: LocalMonth,
    ) -> Result<StatementInput, StoreError> {
        let row = with_pool!(self, |pool| sqlx::query_as::<_, (String, String)>(
            "SELECT name, timezone FROM sites WHERE id = $1"
        )
        .bind(site)
        .fetch_optional(pool)
        .await
        .ctx("reading a site"))?;
        let Some((site_name, zone)) = row else {
            return Err(StoreError::NotFound {
                what: format!("site {site}"),
            });
        };
        let tz: Tz = zone.parse().map_err(|_| StoreError::Corrupt {
            what: format!("site {site}: time zone {zone:?} is not an IANA zone"),
        })?;
        let (from, to) = month_window(tz, month)?;
        let own = with_pool!(self, |pool| sqlx::query_as::<_, SessionRaw>(OWN_SESSIONS)
            .bind(site)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await
            .ctx("reading the month's sessions"))?;
        let imported = with_pool!(self, |pool| sqlx::query_as::<_, SessionRaw>(
            IMPORTED_SESSIONS
        )
        .bind(site)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
        .ctx("reading the month's imported sessions"))?;
        let mut sessions = Vec::with_capacity(own.len() + imported.len());
        for raw in own {
            sessions.push(decode_session(raw, SessionSource::Own)?);
        }
        for raw in imported {
            sessions.push(decode_session(raw, SessionSource::Imported)?);
        }
        let mut ownership = TagDirectory::new();
        for row in self.tag_directory(site).await? {
            let resident = ResidentRef {
                resident_id: row.resident_id.0,
                name: row.resident_name,
                apartment: row.apartment_label,
            };
            ownership.insert(row.tag, resident, row.valid_from, row.valid_to);
        }
        let tariffs = self.tariff_history(site).await?;
        Ok(StatementInput {
            site_name,
            tz,
            month,
            sessions,
            ownership,
            tariffs,
        })
    }

    /// Stores the good rows of a confirmed import of the vendor's export, the batch and
    /// `audit` in one transaction. A vendor id already imported for the site is not stored
    /// again (reported in [`ImportOutcome::already_imported`]). Only imported sessions are
    /// accepted ([`StoreError::Conflict`] otherwise: vetric's own records come from ingest).
    pub async fn import_sessions(
        &self,
        site: SiteId,
        batch: &NewImportBatch,
        sessions: &[SessionRecord],
        audit: &AuditEntry,
    ) -> Result<ImportOutcome, StoreError> {
        self.import_export(site, batch, sessions, &[], audit).await
    }

    /// As [`Self::import_sessions`], also keeping the rows the import report refused
    /// (`rejected`, listed later by [`Self::rejected_import_rows`]), in the same transaction.
    pub async fn import_export(
        &self,
        site: SiteId,
        batch: &NewImportBatch,
        sessions: &[SessionRecord],
        rejected: &[crate::library::NewRejectedRow],
        audit: &AuditEntry,
    ) -> Result<ImportOutcome, StoreError> {
        if let Some(s) = sessions
            .iter()
            .find(|s| s.source != SessionSource::Imported)
        {
            return Err(StoreError::Conflict {
                what: format!(
                    "session {} is not an imported row; only rows of the vendor's export are \
                     imported",
                    s.vendor_id
                ),
            });
        }
        let at = audit.at;
        let by = audit.user_id;
        Ok(in_tx!(self, |tx, backend| {
            lock_site_in!(tx, backend, site, "locking a site for an import");
            let batch_id = sqlx::query_scalar::<_, i64>(
                "INSERT INTO import_batches (site_id, file_name, rows_read, rows_refused, \
                 rows_imported, imported_at, imported_by) VALUES ($1, $2, $3, $4, 0, $5, $6) \
                 RETURNING id",
            )
            .bind(site)
            .bind(&batch.file_name)
            .bind(i64::from(batch.rows_read))
            .bind(i64::from(batch.rows_refused))
            .bind(at)
            .bind(by)
            .fetch_one(&mut *tx)
            .await
            .ctx("recording an import batch")?;
            let mut imported = Vec::new();
            let mut already_imported = Vec::new();
            for s in sessions {
                let id = sqlx::query_scalar::<_, i64>(
                    "INSERT INTO imported_sessions (site_id, vendor_id, charger, tag, user_name, \
                     start, stop, energy_wh, idle_seconds, time_precision, import_line, \
                     batch_id, imported_at, imported_by) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     $8, $9, $10, $11, $12, $13, $14) \
                     ON CONFLICT (site_id, vendor_id) DO NOTHING RETURNING id",
                )
                .bind(site)
                .bind(s.vendor_id)
                .bind(&s.charger)
                .bind(s.tag.as_ref().map(Tag::as_str))
                .bind(&s.user_name)
                .bind(s.start)
                .bind(s.stop)
                .bind(s.energy_wh)
                .bind(s.idle_seconds)
                .bind(precision_str(s.precision))
                .bind(s.import_line.map(i64::from))
                .bind(batch_id)
                .bind(at)
                .bind(by)
                .fetch_optional(&mut *tx)
                .await
                .ctx("storing an imported session")?;
                match id {
                    Some(_) => imported.push(s.vendor_id),
                    None => already_imported.push(s.vendor_id),
                }
            }
            sqlx::query("UPDATE import_batches SET rows_imported = $2 WHERE id = $1")
                .bind(batch_id)
                .bind(imported.len() as i64)
                .execute(&mut *tx)
                .await
                .ctx("recording an import batch")?;
            for r in rejected {
                let raw = serde_json::to_string(&r.raw).map_err(|e| StoreError::Corrupt {
                    what: format!("rejected row {}: {e}", r.line),
                })?;
                sqlx::query(
                    "INSERT INTO import_rejected_rows (site_id, batch_id, line, month, \
                     vendor_id, reason, raw) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(site)
                .bind(batch_id)
                .bind(i64::from(r.line))
                .bind(r.month.map(|m| m.to_string()))
                .bind(r.vendor_id)
                .bind(&r.reason)
                .bind(raw)
                .execute(&mut *tx)
                .await
                .ctx("storing a rejected import row")?;
            }
            let own: BTreeSet<i64> = sqlx::query_scalar::<_, i64>(
                "SELECT s.vendor_id FROM sessions s JOIN imported_sessions i \
                 ON i.site_id = s.site_id AND i.vendor_id = s.vendor_id \
                 WHERE s.site_id = $1 AND i.batch_id = $2",
            )
            .bind(site)
            .bind(batch_id)
            .fetch_all(&mut *tx)
            .await
            .ctx("matching imported sessions with recorded ones")?
            .into_iter()
            .collect();
            let detail = serde_json::json!({
                "site_id": site.0,
                "batch_id": batch_id,
                "file_name": batch.file_name,
                "rows_read": batch.rows_read,
                "rows_refused": batch.rows_refused,
                "imported": imported.len(),
                "already_imported": already_imported.len(),
            });
            audit_in!(tx, &with_detail(audit, detail));
            ImportOutcome {
                batch_id,
                also_recorded: imported
                    .iter()
                    .copied()
                    .filter(|id| own.contains(id))
                    .collect(),
                imported,
                already_imported,
            }
        }))
    }

    /// Issues the statement computed from `input` (normally just read by
    /// [`Self::statement_input`] and shown to the user) for `site`: freezes `input` and its
    /// result as the next version of the month, with `audit` (its `at` and `user_id` are the
    /// issue's time and author), in one transaction. Earlier versions are never touched.
    pub async fn issue_statement(
        &self,
        site: SiteId,
        input: &StatementInput,
        audit: &AuditEntry,
    ) -> Result<IssuedStatement, StoreError> {
        self.issue_statement_with_messages(site, input, audit, None, |_| Vec::new())
            .await
    }

    /// [`Self::issue_statement`] that also enqueues, in the same transaction, the notifications
    /// `messages` makes for the new version (its argument): the announcements of the issue
    /// (issue #8 item 8). A dedup key already in the outbox enqueues nothing; a failure to
    /// enqueue rolls the whole issue back, so a version never exists without its messages.
    pub async fn issue_statement_with_messages<F>(
        &self,
        site: SiteId,
        input: &StatementInput,
        audit: &AuditEntry,
        expected_latest: Option<i64>,
        messages: F,
    ) -> Result<IssuedStatement, StoreError>
    where
        F: Fn(i64) -> Vec<NewNotification> + Sync,
    {
        let statement = compute(input);
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            what: format!("a statement that cannot be written as JSON: {e}"),
        };
        let input_json = serde_json::to_string(input).map_err(corrupt)?;
        let result_json = serde_json::to_string(&statement).map_err(corrupt)?;
        let month = input.month.to_string();
        let total = format_money(statement.totals.total);
        let (id, version) = in_tx!(self, |tx, backend| {
            lock_site_in!(tx, backend, site, "locking a site to issue a statement");
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(version) FROM statements WHERE site_id = $1 AND month = $2",
            )
            .bind(site)
            .bind(&month)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading the last statement version")?;
            // Two managers pressing "Emitir" on the same page would otherwise both issue, the
            // second an identical copy: checked here, under the site lock, not before it.
            if let Some(expected) = expected_latest
                && last.unwrap_or(0) != expected
            {
                return Err(StoreError::Conflict {
                    what: format!(
                        "version {} of {month} was issued after the draft was read (expected \
                         the latest to be {expected})",
                        last.unwrap_or(0)
                    ),
                });
            }
            let version = last.unwrap_or(0) + 1;
            let id = sqlx::query_scalar::<_, i64>(
                "INSERT INTO statements (site_id, month, version, issued_at, issued_by, total, \
                 input, result) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(site)
            .bind(&month)
            .bind(version)
            .bind(audit.at)
            .bind(audit.user_id)
            .bind(&total)
            .bind(&input_json)
            .bind(&result_json)
            .fetch_one(&mut *tx)
            .await
            .ctx("issuing a statement")?;
            let mut enqueued = 0_usize;
            for n in &messages(version) {
                if crate::outbox::enqueue_in!(&mut *tx, Some(site), n, audit.at).is_some() {
                    enqueued += 1;
                }
            }
            let detail = serde_json::json!({
                "site_id": site.0,
                "month": month,
                "version": version,
                "statement_id": id,
                "total": total,
                "notifications": enqueued,
            });
            audit_in!(tx, &with_detail(audit, detail));
            (id, version)
        });
        Ok(IssuedStatement {
            id,
            site_id: site,
            month: input.month,
            version,
            issued_at: audit.at,
            issued_by: audit.user_id,
            input: input.clone(),
            statement,
        })
    }

    /// The latest issued version of the month's statement, if any, exactly as issued.
    pub async fn issued_statement(
        &self,
        site: SiteId,
        month: LocalMonth,
    ) -> Result<Option<IssuedStatement>, StoreError> {
        self.issued_one(site, month, None).await
    }

    /// One issued version of the month's statement.
    pub async fn issued_statement_version(
        &self,
        site: SiteId,
        month: LocalMonth,
        version: i64,
    ) -> Result<Option<IssuedStatement>, StoreError> {
        self.issued_one(site, month, Some(version)).await
    }

    /// The issued version `version` of the month's statement, or the latest one for `None`.
    async fn issued_one(
        &self,
        site: SiteId,
        month: LocalMonth,
        version: Option<i64>,
    ) -> Result<Option<IssuedStatement>, StoreError> {
        let sql = match version {
            Some(_) => format!("{ISSUED_SELECT} AND version = $3"),
            None => format!("{ISSUED_SELECT} ORDER BY version DESC LIMIT 1"),
        };
        let raw = with_pool!(self, |pool| {
            let query = sqlx::query_as::<_, IssuedRaw>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(site)
                .bind(month.to_string());
            match version {
                Some(v) => query.bind(v),
                None => query,
            }
            .fetch_optional(pool)
            .await
            .ctx("reading an issued statement")
        })?;
        raw.map(decode_issued).transpose()
    }

    /// Every issued version of the month's statement, newest first.
    pub async fn statement_versions(
        &self,
        site: SiteId,
        month: LocalMonth,
    ) -> Result<Vec<IssuedVersion>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, IssuedVersion>(
            "SELECT id, version, issued_at, issued_by, total FROM statements \
             WHERE site_id = $1 AND month = $2 ORDER BY version DESC"
        )
        .bind(site)
        .bind(month.to_string())
        .fetch_all(pool)
        .await
        .ctx("listing statement versions"))
    }
}

impl Store {
    /// The addresses an issued statement of `site` is e-mailed to: its managers — active users
    /// with the `manager` role who may see the site and have accepted their invite — in
    /// address order. Admins are left out on purpose: they run every site and are not the
    /// condominium's managers (they read statements on the site's page).
    pub async fn site_manager_emails(&self, site: SiteId) -> Result<Vec<String>, StoreError> {
        with_pool!(self, |pool| sqlx::query_scalar::<_, String>(
            "SELECT u.email FROM users u JOIN user_sites us ON us.user_id = u.id \
             WHERE us.site_id = $1 AND u.role = 'manager' AND u.active \
             AND u.password_hash <> $2 ORDER BY lower(u.email)"
        )
        .bind(site)
        .bind(crate::invites::PENDING_PASSWORD_HASH)
        .fetch_all(pool)
        .await
        .ctx("listing the managers of a site"))
    }
}
