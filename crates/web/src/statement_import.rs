//! Import of the vendor's XLSX export (issue #8; BILLING.md "Import of the vendor's export";
//! RELIABILITY.md R7), the same upload → preview → confirm flow as the residents import:
//!
//! * **Upload** (`POST /sites/{slug}/statements/import`, multipart field `file`): the file is
//!   read by [`vetric_reports::read_export`] (size cap, zip unpacked once under a hard cap,
//!   rows capped) off the async workers. A file that is not the export is refused as a whole
//!   with its pt-BR reason; nothing is stored.
//! * **Preview**: rows read; rows that will be imported (vendor ids vetric does not know);
//!   rows matched to a session vetric already has (its own record, or a row imported before)
//!   by vendor id, with the disagreement when energy, times, idle time or tag differ (both
//!   values shown; the comparison is the domain's
//!   [`vetric_domain::statement::compare_copies`], the statement's own rule); rejected rows
//!   with line, column, value and pt-BR reason. The confirm form carries the file back
//!   base64-encoded with its SHA-256 and a digest of the plan the user saw.
//! * **Confirm**: the file is read again and checked against its SHA-256; if the plan changed
//!   since the preview (another import in between), nothing is stored and the new preview is
//!   shown. Otherwise [`vetric_store::Store::import_export`] stores the sessions, the batch,
//!   the rejected rows and the audit row in ONE transaction. A matched row is never doubled:
//!   a copy of an earlier import is not stored again, and a copy of vetric's own record is
//!   kept only as a reference (the statement uses vetric's record and lists the
//!   disagreement).
//! * **API**: `POST /api/v1/sites/{slug}/statements/import[?commit=true]` with the raw file:
//!   a dry run by default, the same report as JSON.

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{audit, local_datetime};
use crate::input::commit_flag;
use crate::residents_import::sha256_hex;
use crate::upload::{confirmed_file, field_text, read_upload, shown_name};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use vetric_domain::statement::compare_copies;
use vetric_domain::{
    Disagreement, DisagreementField, ImportReport, LocalMonth, SessionRecord, SessionSource,
    local_month,
};
use vetric_reports::ExportReadError;
use vetric_store::{ImportOutcome, NewImportBatch, NewRejectedRow, StoreError};

/// The largest export accepted (the API's body limit too).
pub const FILE_LIMIT: usize = vetric_reports::MAX_EXPORT_BYTES as usize;
/// The body limit of the import pages: the multipart form with the file, or with its base64
/// copy (4/3 of it) on confirm, plus the other fields.
pub const PAGE_BODY_LIMIT: usize = FILE_LIMIT / 3 * 4 + 256 * 1024;

// ------------------------------------------------------------------------- the plan

/// How a read row relates to what vetric already has.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    pub vendor_id: i64,
    pub line: Option<u32>,
    /// `own`: vetric recorded it itself; `imported`: an earlier import stored it.
    pub source: SessionSource,
    /// `None`: the copies agree.
    pub disagreement: Option<Disagreement>,
}

/// What a confirm would do with an export.
#[derive(Debug, Clone)]
pub struct Plan {
    pub report: ImportReport,
    /// Vendor ids vetric does not know yet: imported.
    pub new_ids: Vec<i64>,
    /// Rows vetric already has a session for.
    pub matches: Vec<Match>,
}

impl Plan {
    /// Compares the report's sessions with the sessions vetric already has (`known`, as
    /// [`vetric_store::Store::known_sessions`] answers them). Pure.
    pub fn of(report: ImportReport, known: &[SessionRecord]) -> Self {
        let mut by_id: HashMap<i64, Vec<&SessionRecord>> = HashMap::new();
        for k in known {
            by_id.entry(k.vendor_id).or_default().push(k);
        }
        let mut new_ids = Vec::new();
        let mut matches = Vec::new();
        for s in &report.sessions {
            let copies = by_id.get(&s.vendor_id).map(Vec::as_slice).unwrap_or(&[]);
            // vetric's own record counts first (the statement keeps it), then an earlier import.
            let kept = copies
                .iter()
                .find(|k| k.source == SessionSource::Own)
                .or_else(|| copies.first());
            match kept {
                None => new_ids.push(s.vendor_id),
                Some(k) => matches.push(Match {
                    vendor_id: s.vendor_id,
                    line: s.import_line,
                    source: k.source,
                    disagreement: compare_copies(k, s),
                }),
            }
        }
        Self {
            report,
            new_ids,
            matches,
        }
    }

    pub fn disagreements(&self) -> usize {
        self.matches
            .iter()
            .filter(|m| m.disagreement.is_some())
            .count()
    }

    /// A digest of what a confirm would do: it must not change between preview and confirm.
    pub fn digest(&self) -> String {
        let matched: Vec<String> = self
            .matches
            .iter()
            .map(|m| {
                format!(
                    "{}:{:?}:{}",
                    m.vendor_id,
                    m.source,
                    m.disagreement.is_some()
                )
            })
            .collect();
        let rejected: Vec<String> = self
            .report
            .rejected
            .iter()
            .map(|r| r.row.to_string())
            .collect();
        let text = format!(
            "new={:?};matched={};rejected={}",
            self.new_ids,
            matched.join(","),
            rejected.join(",")
        );
        sha256_hex(text.as_bytes())
    }

    /// The local months of the read rows and of the rejected rows with a readable start.
    pub fn months(&self, site: &SiteSettings) -> Vec<LocalMonth> {
        let mut months: BTreeSet<LocalMonth> = self
            .report
            .sessions
            .iter()
            .map(|s| local_month(s.start, site.timezone))
            .collect();
        months.extend(
            self.report
                .rejected
                .iter()
                .filter_map(|r| r.start)
                .map(|t| local_month(t, site.timezone)),
        );
        months.into_iter().collect()
    }

    /// The rejected rows as the store keeps them (one per line, every problem in one text).
    pub fn rejected_rows(&self, site: &SiteSettings) -> Vec<NewRejectedRow> {
        self.report
            .rejected
            .iter()
            .map(|r| {
                let reason: Vec<String> = self
                    .report
                    .rejected_rows
                    .iter()
                    .filter(|p| p.row == r.row)
                    .map(|p| format!("{}: {}", p.column, p.message_pt_br))
                    .collect();
                NewRejectedRow {
                    line: r.row,
                    month: r.start.map(|t| local_month(t, site.timezone)),
                    vendor_id: r.vendor_id,
                    reason: reason.join("; "),
                    raw: r.raw.clone(),
                }
            })
            .collect()
    }
}

/// Why an upload could not be turned into a plan.
pub enum PlanError {
    /// The file is refused as a whole.
    File(ExportReadError),
    Store(StoreError),
}

/// Reads the export (off the async workers) and compares it with what vetric has.
pub async fn plan_of(
    state: &AppState,
    site: &SiteSettings,
    bytes: Bytes,
) -> Result<Plan, PlanError> {
    let tz = site.timezone;
    let read = tokio::task::spawn_blocking(move || vetric_reports::read_export(&bytes, tz))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the export reader panicked");
            Err(ExportReadError::NotXlsx("unreadable".to_owned()))
        });
    let report = read.map_err(PlanError::File)?;
    let ids: Vec<i64> = report.sessions.iter().map(|s| s.vendor_id).collect();
    let known = state
        .store()
        .known_sessions(site.id, &ids)
        .await
        .map_err(PlanError::Store)?;
    Ok(Plan::of(report, &known))
}

/// Stores a confirmed plan: sessions, batch, rejected rows and one audit row, all or nothing.
pub async fn commit(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    plan: &Plan,
    file_name: &str,
    sha256: &str,
) -> Result<ImportOutcome, StoreError> {
    let batch = NewImportBatch {
        file_name: file_name.to_owned(),
        rows_read: plan.report.rows_read,
        rows_refused: u32::try_from(plan.report.rows_refused()).unwrap_or(u32::MAX),
    };
    let months: Vec<String> = plan.months(site).iter().map(ToString::to_string).collect();
    let entry =
        audit(user, ip, "statement_import", format!("site:{}", site.slug)).with_detail(json!({
            "via": user.via.as_str(),
            "site": site.slug,
            "file_sha256": sha256,
            "matched": plan.matches.len(),
            "disagreements": plan.disagreements(),
            "months": months,
        }));
    state
        .store()
        .import_export(
            site.id,
            &batch,
            &plan.report.sessions,
            &plan.rejected_rows(site),
            &entry,
        )
        .await
}

fn too_large_page() -> PageError {
    PageError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "Arquivo grande demais: o máximo é {} MiB. Exporte um período menor.",
            FILE_LIMIT / 1024 / 1024
        ),
    }
}

// ------------------------------------------------------------------------------- pages

/// A matched row as the preview shows it.
struct MatchLine {
    vendor_id: i64,
    line: String,
    source: &'static str,
    agrees: bool,
    what: String,
    /// `(field, vetric's value, the export's value)`.
    values: Vec<(String, String, String)>,
}

struct RejectedLine {
    row: u32,
    column: String,
    value: String,
    message: String,
}

fn match_lines(site: &SiteSettings, plan: &Plan) -> Vec<MatchLine> {
    let kwh = |d: rust_decimal::Decimal| format!("{} kWh", vetric_domain::format_kwh_pt_br(d));
    plan.matches
        .iter()
        .map(|m| {
            let (what, values) = match &m.disagreement {
                None => (String::new(), Vec::new()),
                Some(d) => {
                    let values = d
                        .fields
                        .iter()
                        .map(|f| {
                            let (label, kept, other) = match f {
                                DisagreementField::Energy => {
                                    ("Energia", kwh(d.kept.energy_kwh), kwh(d.dropped.energy_kwh))
                                }
                                DisagreementField::Start => (
                                    "Início",
                                    local_datetime(site, d.kept.start),
                                    local_datetime(site, d.dropped.start),
                                ),
                                DisagreementField::Stop => (
                                    "Fim",
                                    local_datetime(site, d.kept.stop),
                                    local_datetime(site, d.dropped.stop),
                                ),
                                DisagreementField::Idle => (
                                    "Ociosidade",
                                    crate::view::duration_pt_br(d.kept.idle_seconds),
                                    crate::view::duration_pt_br(d.dropped.idle_seconds),
                                ),
                                DisagreementField::Tag => (
                                    "Tag",
                                    d.kept
                                        .tag
                                        .as_ref()
                                        .map(|t| t.to_string())
                                        .unwrap_or_default(),
                                    d.dropped
                                        .tag
                                        .as_ref()
                                        .map(|t| t.to_string())
                                        .unwrap_or_default(),
                                ),
                            };
                            (label.to_owned(), kept, other)
                        })
                        .collect();
                    (d.message_pt_br.clone(), values)
                }
            };
            MatchLine {
                vendor_id: m.vendor_id,
                line: m.line.map(|l| l.to_string()).unwrap_or_default(),
                source: match m.source {
                    SessionSource::Own => "registro do vetric",
                    SessionSource::Imported => "importação anterior",
                },
                agrees: m.disagreement.is_none(),
                what,
                values,
            }
        })
        .collect()
}

fn rejected_lines(plan: &Plan) -> Vec<RejectedLine> {
    plan.report
        .rejected_rows
        .iter()
        .map(|p| RejectedLine {
            row: p.row,
            column: p.column.clone(),
            value: p.value.clone(),
            message: p.message_pt_br.clone(),
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "statement_import.html")]
struct UploadPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    error: Option<String>,
    max_mib: usize,
    max_rows: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "statement_import_preview.html")]
struct PreviewPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    file_name: String,
    alert: Option<String>,
    rows_read: u32,
    new_rows: usize,
    matched: usize,
    disagreements: usize,
    refused: usize,
    matches: Vec<MatchLine>,
    rejected: Vec<RejectedLine>,
    payload: String,
    sha256: String,
    plan: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "statement_import_done.html")]
struct DonePage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    imported: usize,
    already: usize,
    also_recorded: usize,
    refused: usize,
    disagreements: usize,
    months: Vec<String>,
}

fn upload_page(user: &AuthUser, site: &SiteSettings, error: Option<String>) -> UploadPage {
    UploadPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        error,
        max_mib: FILE_LIMIT / 1024 / 1024,
        max_rows: vetric_reports::MAX_EXPORT_ROWS,
    }
}

fn preview_page(
    user: &AuthUser,
    site: &SiteSettings,
    file_name: String,
    plan: &Plan,
    bytes: &[u8],
    alert: Option<String>,
) -> PreviewPage {
    PreviewPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        file_name,
        alert,
        rows_read: plan.report.rows_read,
        new_rows: plan.new_ids.len(),
        matched: plan.matches.len(),
        disagreements: plan.disagreements(),
        refused: plan.report.rows_refused(),
        matches: match_lines(site, plan),
        rejected: rejected_lines(plan),
        payload: BASE64.encode(bytes),
        sha256: sha256_hex(bytes),
        plan: plan.digest(),
    }
}

fn file_status(e: &ExportReadError) -> StatusCode {
    match e {
        ExportReadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// `GET /sites/{slug}/statements/import`: the upload form.
pub async fn form(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    Ok(upload_page(&user, site, None).into_response())
}

/// `POST /sites/{slug}/statements/import` (multipart, field `file`): the preview.
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let upload = read_upload(req, &state, too_large_page).await?;
    let Some(bytes) = upload.fields.get("file").cloned() else {
        let page = upload_page(&user, site, Some("Escolha o arquivo da exportação.".into()));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    };
    match plan_of(&state, site, bytes.clone()).await {
        Err(PlanError::File(e)) => Ok((
            file_status(&e),
            upload_page(
                &user,
                site,
                Some(format!("Nada foi importado: {}.", e.message_pt_br())),
            ),
        )
            .into_response()),
        Err(PlanError::Store(e)) => Err(PageError::from(e)),
        Ok(plan) => {
            Ok(preview_page(&user, site, upload.file_name, &plan, &bytes, None).into_response())
        }
    }
}

/// `POST /sites/{slug}/statements/import/confirm` (multipart: `payload` = the file in base64,
/// `sha256`, `plan` = the digest of the preview, `file_name`): reads the file again and stores
/// it, all or nothing, when the plan is still the one the user saw.
pub async fn confirm(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    req: Request,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let upload = read_upload(req, &state, too_large_page).await?;
    let bytes = confirmed_file(&upload)?;
    let sha = sha256_hex(&bytes);
    let file_name = shown_name(Some(&field_text(&upload, "file_name")));
    let plan = match plan_of(&state, site, Bytes::from(bytes.clone())).await {
        Ok(p) => p,
        Err(PlanError::File(e)) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                upload_page(
                    &user,
                    site,
                    Some(format!("Nada foi importado: {}.", e.message_pt_br())),
                ),
            )
                .into_response());
        }
        Err(PlanError::Store(e)) => return Err(PageError::from(e)),
    };
    let again = |alert: &str| {
        (
            StatusCode::CONFLICT,
            preview_page(
                &user,
                site,
                file_name.clone(),
                &plan,
                &bytes,
                Some(alert.to_owned()),
            ),
        )
            .into_response()
    };
    if plan.digest() != field_text(&upload, "plan") {
        return Ok(again(
            "As recargas registradas mudaram desde a prévia. Nada foi importado: revise o \
             relatório abaixo e confirme de novo.",
        ));
    }
    if plan.report.sessions.is_empty() {
        return Ok(again(
            "Nenhuma linha válida para importar. Nada foi importado.",
        ));
    }
    let outcome = commit(&state, site, &user, &peer.0, &plan, &file_name, &sha).await?;
    Ok(DonePage {
        user_email: crate::account::NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        imported: outcome.imported.len(),
        already: outcome.already_imported.len(),
        also_recorded: outcome.also_recorded.len(),
        refused: plan.report.rows_refused(),
        disagreements: plan.disagreements(),
        months: plan.months(site).iter().map(ToString::to_string).collect(),
    }
    .into_response())
}

// -------------------------------------------------------------------------------- API

fn api_report(
    site: &SiteSettings,
    plan: &Plan,
    outcome: Option<&ImportOutcome>,
) -> serde_json::Value {
    let months: Vec<String> = plan.months(site).iter().map(ToString::to_string).collect();
    json!({ "data": {
        "rows_read": plan.report.rows_read,
        "sessions": plan.report.sessions.len(),
        "new": plan.new_ids,
        "matched": plan.matches,
        "rows_refused": plan.report.rows_refused(),
        "rejected_rows": plan.report.rejected_rows,
        "months": months,
        "committed": outcome.is_some(),
        "imported": outcome.map(|o| o.imported.len()).unwrap_or(0),
        "already_imported": outcome.map(|o| o.already_imported.len()).unwrap_or(0),
        "batch_id": outcome.map(|o| o.batch_id),
    } })
}

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// `POST /api/v1/sites/{slug}/statements/import[?commit=true]`: the raw XLSX as the body
/// (`Content-Type` the XLSX type or `application/octet-stream`). A dry run by default;
/// `commit=true` stores the read rows and the rejected rows in one transaction (one audit
/// row). Always answers the report.
pub async fn api_import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let do_commit = commit_flag(raw.as_deref())?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != XLSX_TYPE && mime != "application/octet-stream" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("envie a planilha .xlsx no corpo com Content-Type {XLSX_TYPE}"),
        ));
    }
    let bytes = Bytes::from_request(req, &state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!(
                    "arquivo grande demais (máximo {} MiB): exporte um período menor",
                    FILE_LIMIT / 1024 / 1024
                ),
            )
            .field("file")
        } else {
            crate::input::body_rejection(r.status())
        }
    })?;
    let sha = sha256_hex(&bytes);
    let plan = match plan_of(&state, site, bytes).await {
        Ok(p) => p,
        Err(PlanError::File(e)) => {
            return Err(ApiError::new(
                file_status(&e),
                "invalid_file",
                format!("nada foi importado: {}", e.message_pt_br()),
            )
            .field("file"));
        }
        Err(PlanError::Store(e)) => return Err(ApiError::from(e)),
    };
    let outcome = if do_commit && !plan.report.sessions.is_empty() {
        Some(commit(&state, site, &user, &peer.0, &plan, "api", &sha).await?)
    } else {
        None
    };
    let mut res = Json(api_report(site, &plan, outcome.as_ref())).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Adds the import route to the OpenAPI document.
pub fn extend_openapi(doc: &mut serde_json::Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let problem = json!({ "type": "object", "properties": {
        "row": { "type": "integer", "description": "the spreadsheet's line; the header is line 1" },
        "column": { "type": "string" }, "value": { "type": "string" },
        "message_pt_br": { "type": "string" } } });
    doc["paths"]["/api/v1/sites/{slug}/statements/import"] = json!({ "post": {
        "summary": "Import the vendor's XLSX export (BILLING.md): a per-row report with the rows matched to sessions vetric already has and their disagreements; with commit=true the read rows and the refused rows are stored in one transaction (one audit row)",
        "security": [{ "bearer": [] }, { "cookie": [] }],
        "parameters": [
            { "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } },
            { "name": "commit", "in": "query", "schema": { "type": "boolean", "default": false },
              "description": "false: dry run (the report only)" }],
        "requestBody": { "required": true, "content": {
            XLSX_TYPE: { "schema": { "type": "string", "format": "binary" } },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
        "responses": {
            "200": { "description": "The report", "content": { "application/json": { "schema": {
                "type": "object", "properties": { "data": { "type": "object", "properties": {
                    "rows_read": { "type": "integer" },
                    "sessions": { "type": "integer", "description": "rows read without problems" },
                    "new": { "type": "array", "items": { "type": "integer" }, "description": "vendor ids vetric does not have yet" },
                    "matched": { "type": "array", "items": { "type": "object", "properties": {
                        "vendor_id": { "type": "integer" }, "line": { "type": "integer" },
                        "source": { "type": "string", "enum": ["own", "imported"] },
                        "disagreement": { "type": "object", "nullable": true } } } },
                    "rows_refused": { "type": "integer" },
                    "rejected_rows": { "type": "array", "items": problem },
                    "months": { "type": "array", "items": { "type": "string" } },
                    "committed": { "type": "boolean" },
                    "imported": { "type": "integer" }, "already_imported": { "type": "integer" },
                    "batch_id": { "type": "integer", "nullable": true } } } } } } } },
            "400": err("A bad query parameter"), "401": err("Not logged in"),
            "403": err("Cross-site request"), "404": err("No such site, or not yours"),
            "413": err("File over 5 MiB"), "415": err("Not an XLSX body"),
            "422": err("A file that is not the vendor's export (`field` is file; the message says why): nothing imported") } } });
}
