//! Issue #8's import review and report library:
//!
//! * **Import review**: the sessions vetric already has for the vendor ids of an export being
//!   previewed ([`Store::known_sessions`]: its own ended records and rows imported earlier), so
//!   the preview can say which rows match and where they disagree (the comparison itself is
//!   the domain's [`vetric_domain::statement::compare_copies`]); and the rows of a confirmed
//!   import that were not imported ([`NewRejectedRow`], stored with the batch by
//!   [`Store::import_export`]), read back per month by [`Store::rejected_import_rows`].
//! * **Report library**: PDF files uploaded by managers, kept in the database with a generated
//!   name (the uploader's file name is only shown), and the issued statements of every month
//!   ([`Store::issued_versions`]) for the library's listing.

use crate::accounts::{AuditEntry, UserId, audit_in};
use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::statements::{SessionRaw, decode_session};
use crate::store::{Store, in_tx, with_pool};
use chrono::{DateTime, Utc};
use serde::Serialize;
use vetric_domain::{LocalMonth, SessionRecord, SessionSource};

/// One row of a confirmed import that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRejectedRow {
    /// The spreadsheet line (header = 1).
    pub line: u32,
    /// The local month of the row's start; `None` when the start could not be read.
    pub month: Option<LocalMonth>,
    pub vendor_id: Option<i64>,
    /// Every problem of the row, pt-BR.
    pub reason: String,
    /// The row's cells as read, `(column, value)`.
    pub raw: Vec<(String, String)>,
}

/// A stored rejected row, as the statement pages list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedImportRow {
    pub batch_id: i64,
    /// The import's file name as the user gave it (shown only).
    pub file_name: String,
    pub imported_at: DateTime<Utc>,
    pub line: i64,
    pub vendor_id: Option<i64>,
    pub reason: String,
    pub raw: Vec<(String, String)>,
}

#[derive(sqlx::FromRow)]
struct RejectedRaw {
    batch_id: i64,
    file_name: String,
    imported_at: DateTime<Utc>,
    line: i64,
    vendor_id: Option<i64>,
    reason: String,
    raw: String,
}

/// An issued statement version with its month, for listings across months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct IssuedMonthVersion {
    /// `YYYY-MM`.
    pub month: String,
    pub id: i64,
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    pub issued_by: Option<UserId>,
    /// The month's total in R$, `"1208.25"`.
    pub total: String,
}

/// A PDF file to add to the report library (already checked by the caller: PDF content, size,
/// a generated `stored_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReportFile {
    pub month: LocalMonth,
    pub title: String,
    /// As the uploader named it: shown only.
    pub original_name: String,
    /// Generated, `[a-z0-9-]+.pdf`; unique.
    pub stored_name: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// A file of the report library, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReportFileRow {
    pub id: i64,
    pub site_id: SiteId,
    /// `YYYY-MM`.
    pub month: String,
    pub title: String,
    pub original_name: String,
    pub stored_name: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Option<UserId>,
    pub uploaded_at: DateTime<Utc>,
}

const REPORT_COLUMNS: &str = "id, site_id, month, title, original_name, stored_name, size, \
     sha256, uploaded_by, uploaded_at";

/// Ids per `IN (…)` list: far below SQLite's bound-parameter limit.
const IDS_PER_QUERY: usize = 400;

/// `$from, $from+1, …` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// The sessions vetric already has for `vendor_ids` in `site`: its own ended records (with
    /// a stop and an energy figure, as a statement uses them) and rows imported earlier, each
    /// with its [`SessionSource`]. Order: vendor id, then own before imported.
    pub async fn known_sessions(
        &self,
        site: SiteId,
        vendor_ids: &[i64],
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out = Vec::new();
        for chunk in vendor_ids.chunks(IDS_PER_QUERY) {
            let list = placeholders(2, chunk.len());
            let own = format!(
                "SELECT s.vendor_id, COALESCE(c.name, s.charger_uuid) AS charger, s.tag, \
                 CAST(NULL AS TEXT) AS user_name, s.start, s.stop, s.energy_wh, \
                 s.idle_seconds, 'second' AS time_precision, CAST(NULL AS BIGINT) AS import_line \
                 FROM sessions s LEFT JOIN chargers c ON c.site_id = s.site_id \
                 AND c.uuid = s.charger_uuid WHERE s.site_id = $1 AND s.status = 'ended' \
                 AND s.stop IS NOT NULL AND s.energy_wh IS NOT NULL AND s.vendor_id IN ({list})"
            );
            let imported = format!(
                "SELECT vendor_id, charger, tag, user_name, start, stop, energy_wh, \
                 idle_seconds, time_precision, import_line FROM imported_sessions \
                 WHERE site_id = $1 AND vendor_id IN ({list})"
            );
            for (sql, source) in [
                (own, SessionSource::Own),
                (imported, SessionSource::Imported),
            ] {
                let rows = with_pool!(self, |pool| {
                    let mut q = sqlx::query_as::<_, SessionRaw>(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(site);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.fetch_all(pool)
                        .await
                        .ctx("reading the sessions an import matches")
                })?;
                for raw in rows {
                    out.push(decode_session(raw, source)?);
                }
            }
        }
        out.sort_by_key(|s| (s.vendor_id, s.source != SessionSource::Own));
        Ok(out)
    }

    /// The rows of confirmed imports of `site` that were not imported and whose start lies in
    /// the local `month`, by import then line. Rows whose start could not be read have no
    /// month and are listed only in their import's report.
    pub async fn rejected_import_rows(
        &self,
        site: SiteId,
        month: LocalMonth,
    ) -> Result<Vec<RejectedImportRow>, StoreError> {
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, RejectedRaw>(
            "SELECT r.batch_id, b.file_name, b.imported_at, r.line, r.vendor_id, r.reason, r.raw \
             FROM import_rejected_rows r JOIN import_batches b ON b.id = r.batch_id \
             WHERE r.site_id = $1 AND r.month = $2 ORDER BY r.batch_id, r.line"
        )
        .bind(site)
        .bind(month.to_string())
        .fetch_all(pool)
        .await
        .ctx("reading rejected import rows")
        })?;
        rows.into_iter()
            .map(|r| {
                let raw: Vec<(String, String)> =
                    serde_json::from_str(&r.raw).map_err(|e| StoreError::Corrupt {
                        what: format!("rejected row {} of import {}: {e}", r.line, r.batch_id),
                    })?;
                Ok(RejectedImportRow {
                    batch_id: r.batch_id,
                    file_name: r.file_name,
                    imported_at: r.imported_at,
                    line: r.line,
                    vendor_id: r.vendor_id,
                    reason: r.reason,
                    raw,
                })
            })
            .collect()
    }

    /// Every issued statement version of `site`, newest month first, then newest version.
    pub async fn issued_versions(
        &self,
        site: SiteId,
    ) -> Result<Vec<IssuedMonthVersion>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, IssuedMonthVersion>(
            "SELECT month, id, version, issued_at, issued_by, total FROM statements \
             WHERE site_id = $1 ORDER BY month DESC, version DESC"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("listing issued statements"))
    }

    /// Adds a PDF file to the report library with `audit`, in one transaction.
    pub async fn add_report_file(
        &self,
        site: SiteId,
        file: &NewReportFile,
        audit: &AuditEntry,
    ) -> Result<ReportFileRow, StoreError> {
        let size = i64::try_from(file.bytes.len()).map_err(|_| StoreError::Conflict {
            what: "a file too large to store".to_owned(),
        })?;
        let month = file.month.to_string();
        let sql = format!(
            "INSERT INTO report_files (site_id, month, title, original_name, stored_name, size, \
             sha256, uploaded_by, uploaded_at, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10) RETURNING {REPORT_COLUMNS}"
        );
        Ok(in_tx!(self, |tx, backend| {
            crate::tariffs::lock_site_in!(tx, backend, site, "locking a site for an upload");
            let row = sqlx::query_as::<_, ReportFileRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(site)
                .bind(&month)
                .bind(&file.title)
                .bind(&file.original_name)
                .bind(&file.stored_name)
                .bind(size)
                .bind(&file.sha256)
                .bind(audit.user_id)
                .bind(audit.at)
                .bind(&file.bytes)
                .fetch_one(&mut *tx)
                .await
                .ctx("storing a report file")?;
            let mut entry = audit.clone();
            if let serde_json::Value::Object(map) = &mut entry.detail {
                map.insert("report_file_id".into(), row.id.into());
                map.insert("stored_name".into(), row.stored_name.clone().into());
            }
            audit_in!(tx, &entry);
            row
        }))
    }

    /// The report library of `site` (no bytes), newest month first, then newest upload.
    pub async fn report_files(&self, site: SiteId) -> Result<Vec<ReportFileRow>, StoreError> {
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM report_files WHERE site_id = $1 \
             ORDER BY month DESC, id DESC"
        );
        with_pool!(self, |pool| sqlx::query_as::<_, ReportFileRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("listing report files"))
    }

    /// One file of `site`'s library with its bytes; `None` when it is not there (or belongs
    /// to another site).
    pub async fn report_file(
        &self,
        site: SiteId,
        id: i64,
    ) -> Result<Option<(ReportFileRow, Vec<u8>)>, StoreError> {
        let sql =
            format!("SELECT {REPORT_COLUMNS} FROM report_files WHERE site_id = $1 AND id = $2");
        let row = with_pool!(self, |pool| sqlx::query_as::<_, ReportFileRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(site)
        .bind(id)
        .fetch_optional(pool)
        .await
        .ctx("reading a report file"))?;
        let Some(row) = row else { return Ok(None) };
        let bytes: Vec<u8> = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT bytes FROM report_files WHERE id = $1"
        )
        .bind(row.id)
        .fetch_one(pool)
        .await
        .ctx("reading a report file"))?;
        Ok(Some((row, bytes)))
    }

    /// Deletes a file of `site`'s library with `audit`, in one transaction; the deleted row
    /// (for the audit detail and the page), or [`StoreError::NotFound`].
    pub async fn delete_report_file(
        &self,
        site: SiteId,
        id: i64,
        audit: &AuditEntry,
    ) -> Result<ReportFileRow, StoreError> {
        let sql = format!(
            "DELETE FROM report_files WHERE site_id = $1 AND id = $2 RETURNING {REPORT_COLUMNS}"
        );
        Ok(in_tx!(self, |tx, backend| {
            let row = sqlx::query_as::<_, ReportFileRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(site)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("deleting a report file")?;
            let Some(row) = row else {
                return Err(StoreError::NotFound {
                    what: format!("report file {id}"),
                });
            };
            let mut entry = audit.clone();
            if let serde_json::Value::Object(map) = &mut entry.detail {
                map.insert("report_file_id".into(), row.id.into());
                map.insert("stored_name".into(), row.stored_name.clone().into());
                map.insert("original_name".into(), row.original_name.clone().into());
                map.insert("title".into(), row.title.clone().into());
                map.insert("month".into(), row.month.clone().into());
                map.insert("sha256".into(), row.sha256.clone().into());
            }
            audit_in!(tx, &entry);
            row
        }))
    }
}
