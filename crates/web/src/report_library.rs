//! The report library (issue #8; the legacy feature managers already use): per month, the
//! issued statements and the PDF files managers uploaded (assembly minutes, the vendor's
//! invoices…), with a search box (title or file name) and a month filter.
//!
//! * Who: admins and the site's managers (anyone else gets the 404 of a site that does not
//!   exist), on the pages and on the API twins.
//! * Uploads are checked by content, not by name ([`check_pdf`]): a PDF starts with `%PDF-` and
//!   ends with `%%EOF` (within its last KiB: writers add a newline or a little padding). An
//!   empty file, a file over [`FILE_LIMIT`], a PNG renamed `.pdf`, a truncated PDF are refused
//!   with a pt-BR message naming the problem, and nothing is stored.
//! * The bytes live in the database. The stored name is generated (`relatorio-YYYY-MM-<hex>.pdf`,
//!   `[a-z0-9-]+\.pdf`) and is the download's only file name; the uploader's file name is shown
//!   (escaped by the templates) and never used as a path or a header.
//! * Downloads answer `application/pdf` as an attachment with `nosniff`; uploads and deletes
//!   are audited in the same transaction as the write.

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{audit, local_datetime};
use crate::input::query_pairs;
use crate::residents_import::sha256_hex;
use crate::upload::{Upload, field_text, read_upload};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use std::collections::BTreeMap;
use vetric_domain::{LocalMonth, local_month};
use vetric_store::{IssuedMonthVersion, NewReportFile, ReportFileRow, StoreError};

/// The largest PDF accepted (the API's body limit too).
pub const FILE_LIMIT: usize = 20 * 1024 * 1024;
/// The pages' body limit: the file plus the form's other fields.
pub const PAGE_BODY_LIMIT: usize = FILE_LIMIT + 64 * 1024;
/// The most characters of a title.
pub const TITLE_MAX: usize = 200;
/// How far from the end `%%EOF` may be.
const EOF_WINDOW: usize = 1024;

/// Why an upload is not a PDF the library keeps. `Display` is the pt-BR message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    #[error("o arquivo está vazio: envie o relatório em PDF")]
    Empty,
    #[error("o arquivo passa de {} MiB: reduza o PDF ou divida-o", FILE_LIMIT / 1024 / 1024)]
    TooLarge,
    #[error(
        "o arquivo não é um PDF: o conteúdo é {0}, mesmo que o nome termine em .pdf; exporte \
         ou salve o documento como PDF"
    )]
    NotPdf(&'static str),
    #[error(
        "o PDF está incompleto (não termina com %%EOF): o envio pode ter sido interrompido; \
         envie o arquivo de novo"
    )]
    Truncated,
}

/// Checks that `bytes` are a PDF by content (module docs).
pub fn check_pdf(bytes: &[u8]) -> Result<(), PdfError> {
    if bytes.is_empty() {
        return Err(PdfError::Empty);
    }
    if bytes.len() > FILE_LIMIT {
        return Err(PdfError::TooLarge);
    }
    if !bytes.starts_with(b"%PDF-") {
        let what = if bytes.starts_with(b"\x89PNG") {
            "uma imagem PNG"
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            "uma imagem JPEG"
        } else if bytes.starts_with(b"PK\x03\x04") {
            "um arquivo compactado (ZIP, DOCX ou XLSX)"
        } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
            "um documento do Office antigo (.doc ou .xls)"
        } else if bytes.starts_with(b"GIF8") {
            "uma imagem GIF"
        } else if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
            "texto (não começa com %PDF-)"
        } else {
            "de outro tipo (não começa com %PDF-)"
        };
        return Err(PdfError::NotPdf(what));
    }
    let tail = &bytes[bytes.len().saturating_sub(EOF_WINDOW)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(PdfError::Truncated);
    }
    Ok(())
}

/// A generated stored name: `relatorio-<month>-<16 hex>.pdf`, unique per upload.
fn stored_name(month: LocalMonth, sha256: &str) -> String {
    let salt: u64 = rand::random();
    let id = sha256_hex(format!("{sha256}:{salt}").as_bytes());
    format!("relatorio-{month}-{}.pdf", &id[..16])
}

/// `[a-z0-9-]+\.pdf`: the only names a download header ever carries.
pub fn is_safe_stored_name(name: &str) -> bool {
    name.strip_suffix(".pdf").is_some_and(|stem| {
        !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// An uploaded file's name: browsers send the bare name, so a path in it (`../../etc/passwd.pdf`,
/// `C:\\x.pdf`) or control characters are refused rather than trimmed. The name is only shown.
fn check_file_name(raw: &str) -> Result<String, String> {
    if raw.contains(['/', '\\']) || raw.contains("..") || raw.chars().any(char::is_control) {
        return Err(
            "o nome do arquivo contém um caminho ou caracteres inválidos; renomeie o arquivo \
             (por exemplo ata-marco.pdf) e envie de novo"
                .into(),
        );
    }
    if raw.chars().count() > 200 {
        return Err("o nome do arquivo passa de 200 caracteres; renomeie o arquivo".into());
    }
    Ok(raw.trim().to_owned())
}

/// A title as typed: trimmed, no control characters, at most [`TITLE_MAX`] characters.
fn check_title(raw: &str, fallback: &str) -> Result<String, String> {
    let t = raw.trim();
    let t = if t.is_empty() { fallback.trim() } else { t };
    if t.is_empty() {
        return Err("dê um título ao relatório".into());
    }
    if t.chars().any(char::is_control) {
        return Err("o título não pode ter quebras de linha nem caracteres de controle".into());
    }
    if t.chars().count() > TITLE_MAX {
        return Err(format!("o título passa de {TITLE_MAX} caracteres"));
    }
    Ok(t.to_owned())
}

fn check_month(raw: &str) -> Result<LocalMonth, String> {
    LocalMonth::parse(raw.trim())
        .map_err(|_| format!("mês inválido ({raw:?}): use AAAA-MM, por exemplo 2026-03"))
}

/// What an upload must have besides its bytes.
struct UploadInput {
    month: LocalMonth,
    title: String,
    original_name: String,
}

/// Checks an upload and stores it with one audit row. `Err(Ok(field, message))` is bad
/// input (nothing stored).
async fn store_upload(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    input: UploadInput,
    bytes: &[u8],
) -> Result<Result<ReportFileRow, (&'static str, String, StatusCode)>, StoreError> {
    if let Err(e) = check_pdf(bytes) {
        let status = match e {
            PdfError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        return Ok(Err(("file", e.to_string(), status)));
    }
    let sha256 = sha256_hex(bytes);
    let file = NewReportFile {
        month: input.month,
        title: input.title,
        original_name: input.original_name,
        stored_name: stored_name(input.month, &sha256),
        sha256,
        bytes: bytes.to_vec(),
    };
    let entry =
        audit(user, ip, "report_upload", format!("site:{}", site.slug)).with_detail(json!({
            "via": user.via.as_str(),
            "site": site.slug,
            "month": file.month.to_string(),
            "title": file.title,
            "original_name": file.original_name,
            "size": bytes.len(),
            "sha256": file.sha256,
        }));
    Ok(Ok(state
        .store()
        .add_report_file(site.id, &file, &entry)
        .await?))
}

/// Folds case and the usual pt-BR accents, for the search.
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            other => other,
        })
        .collect()
}

/// The library's filter: month and search text.
#[derive(Debug, Default, Clone)]
struct Filter {
    month: Option<LocalMonth>,
    q: String,
}

impl Filter {
    fn keeps_file(&self, f: &ReportFileRow) -> bool {
        let month_ok = self.month.is_none_or(|m| m.to_string() == f.month);
        let q = fold(self.q.trim());
        month_ok
            && (q.is_empty() || fold(&f.title).contains(&q) || fold(&f.original_name).contains(&q))
    }

    fn keeps_statement(&self, s: &IssuedMonthVersion) -> bool {
        self.month.is_none_or(|m| m.to_string() == s.month)
    }
}

/// The library's content after the filter: files and issued versions.
async fn listing(
    state: &AppState,
    site: &SiteSettings,
    filter: &Filter,
) -> Result<(Vec<ReportFileRow>, Vec<IssuedMonthVersion>), StoreError> {
    let files = state.store().report_files(site.id).await?;
    let statements = state.store().issued_versions(site.id).await?;
    Ok((
        files.into_iter().filter(|f| filter.keeps_file(f)).collect(),
        statements
            .into_iter()
            .filter(|s| filter.keeps_statement(s))
            .collect(),
    ))
}

// ------------------------------------------------------------------------------- pages

struct FileLine {
    id: i64,
    title: String,
    original_name: String,
    size: String,
    uploaded_at: String,
}

struct StatementLine {
    version: i64,
    issued_at: String,
    total: String,
}

struct MonthGroup {
    month: String,
    statements: Vec<StatementLine>,
    files: Vec<FileLine>,
}

#[derive(Template, WebTemplate)]
#[template(path = "report_library.html")]
struct LibraryPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    groups: Vec<MonthGroup>,
    q: String,
    month: String,
    upload_month: String,
    upload_title: String,
    error: Option<String>,
    notice: Option<String>,
    max_mib: usize,
}

fn size_pt_br(bytes: i64) -> String {
    if bytes < 1024 * 1024 {
        format!("{} KiB", (bytes + 1023) / 1024)
    } else {
        let tenths = bytes * 10 / (1024 * 1024);
        format!("{},{} MiB", tenths / 10, tenths % 10)
    }
}

fn groups(
    site: &SiteSettings,
    files: &[ReportFileRow],
    statements: &[IssuedMonthVersion],
) -> Vec<MonthGroup> {
    let mut by_month: BTreeMap<String, MonthGroup> = BTreeMap::new();
    let group = |m: &str, by_month: &mut BTreeMap<String, MonthGroup>| {
        by_month.entry(m.to_owned()).or_insert_with(|| MonthGroup {
            month: m.to_owned(),
            statements: Vec::new(),
            files: Vec::new(),
        });
    };
    for s in statements {
        group(&s.month, &mut by_month);
        if let Some(g) = by_month.get_mut(&s.month) {
            g.statements.push(StatementLine {
                version: s.version,
                issued_at: local_datetime(site, s.issued_at),
                total: s
                    .total
                    .parse::<rust_decimal::Decimal>()
                    .map(vetric_domain::format_money_pt_br)
                    .unwrap_or_else(|_| s.total.clone()),
            });
        }
    }
    for f in files {
        group(&f.month, &mut by_month);
        if let Some(g) = by_month.get_mut(&f.month) {
            g.files.push(FileLine {
                id: f.id,
                title: f.title.clone(),
                original_name: f.original_name.clone(),
                size: size_pt_br(f.size),
                uploaded_at: local_datetime(site, f.uploaded_at),
            });
        }
    }
    by_month.into_values().rev().collect()
}

#[allow(clippy::too_many_arguments)]
async fn library_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    filter: &Filter,
    upload_month: String,
    upload_title: String,
    error: Option<String>,
    notice: Option<String>,
) -> Result<LibraryPage, StoreError> {
    let (files, statements) = listing(state, site, filter).await?;
    Ok(LibraryPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "reports",
        groups: groups(site, &files, &statements),
        q: filter.q.clone(),
        month: filter.month.map(|m| m.to_string()).unwrap_or_default(),
        upload_month,
        upload_title,
        error,
        notice,
        max_mib: FILE_LIMIT / 1024 / 1024,
    })
}

fn current_month(site: &SiteSettings) -> String {
    local_month(chrono::Utc::now(), site.timezone).to_string()
}

/// `GET /sites/{slug}/reports[?q=…&month=YYYY-MM]`: the library.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let mut filter = Filter::default();
    let mut notice = None;
    let mut error = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "q" => filter.q = v.chars().filter(|c| !c.is_control()).take(100).collect(),
            "month" if !v.trim().is_empty() => match check_month(&v) {
                Ok(m) => filter.month = Some(m),
                Err(e) => error = Some(format!("Filtro ignorado: {e}.")),
            },
            "enviado" => notice = Some("Relatório enviado.".to_owned()),
            "removido" => notice = Some("Relatório removido.".to_owned()),
            _ => {}
        }
    }
    let page = library_page(
        &state,
        &user,
        site,
        &filter,
        current_month(site),
        String::new(),
        error,
        notice,
    )
    .await?;
    Ok(page.into_response())
}

fn too_large_page() -> PageError {
    PageError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "Arquivo grande demais: o máximo é {} MiB. Nada foi enviado.",
            FILE_LIMIT / 1024 / 1024
        ),
    }
}

/// The library page again with the upload form as it was and why nothing was stored.
async fn refuse_upload(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    (month_raw, title_raw): (String, String),
    status: StatusCode,
    message: String,
) -> Result<Response, PageError> {
    let page = library_page(
        state,
        user,
        site,
        &Filter::default(),
        month_raw,
        title_raw,
        Some(format!("Nada foi enviado: {message}.")),
        None,
    )
    .await?;
    Ok((status, page).into_response())
}

/// `POST /sites/{slug}/reports` (multipart: `file`, `title`, `month`): stores the PDF.
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    req: Request,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let upload: Upload = read_upload(req, &state, too_large_page).await?;
    let month_raw = field_text(&upload, "month");
    let title_raw = field_text(&upload, "title");
    let refuse = |status: StatusCode, message: String| {
        refuse_upload(
            &state,
            &user,
            site,
            (month_raw.clone(), title_raw.clone()),
            status,
            message,
        )
    };
    let Some(bytes) = upload.fields.get("file") else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "escolha o arquivo PDF".into(),
        )
        .await;
    };
    let month = match check_month(&month_raw) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e).await,
    };
    if let Err(e) = check_file_name(&upload.raw_file_name) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, e).await;
    }
    let stem = upload
        .file_name
        .rsplit_once('.')
        .map_or(upload.file_name.as_str(), |(s, _)| s)
        .to_owned();
    let title = match check_title(&title_raw, &stem) {
        Ok(t) => t,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e).await,
    };
    let input = UploadInput {
        month,
        title,
        original_name: upload.file_name.clone(),
    };
    match store_upload(&state, site, &user, &peer.0, input, bytes).await? {
        Ok(row) => Ok(Redirect::to(&format!(
            "/sites/{}/reports?month={}&enviado=1",
            site.slug, row.month
        ))
        .into_response()),
        Err((_, message, status)) => refuse(status, message).await,
    }
}

fn parse_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|i| *i > 0)
}

/// The PDF as an attachment named by its stored name.
fn pdf_response(row: &ReportFileRow, bytes: Vec<u8>) -> Response {
    // Generated names are always safe; a row that says otherwise gets a fixed name rather
    // than a header built from it.
    let name = if is_safe_stored_name(&row.stored_name) {
        row.stored_name.as_str()
    } else {
        "relatorio.pdf"
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    res
}

/// `GET /sites/{slug}/reports/{id}`: the PDF.
pub async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let (row, bytes) = state
        .store()
        .report_file(site.id, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    Ok(pdf_response(&row, bytes))
}

async fn delete_file(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: i64,
) -> Result<Option<ReportFileRow>, StoreError> {
    let entry = audit(user, ip, "report_delete", format!("site:{}", site.slug))
        .with_detail(json!({ "via": user.via.as_str(), "site": site.slug }));
    match state.store().delete_report_file(site.id, id, &entry).await {
        Ok(row) => Ok(Some(row)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `POST /sites/{slug}/reports/{id}/delete`: removes the file (audited).
pub async fn delete_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let row = delete_file(&state, site, &user, &peer.0, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    Ok(Redirect::to(&format!(
        "/sites/{}/reports?month={}&removido=1",
        site.slug, row.month
    ))
    .into_response())
}

// -------------------------------------------------------------------------------- API

fn api_file(f: &ReportFileRow) -> serde_json::Value {
    json!({
        "id": f.id, "month": f.month, "title": f.title, "original_name": f.original_name,
        "stored_name": f.stored_name, "size": f.size, "sha256": f.sha256,
        "uploaded_at": f.uploaded_at, "uploaded_by": f.uploaded_by.map(|u| u.0),
    })
}

/// `GET /api/v1/sites/{slug}/reports[?q=…&month=YYYY-MM]`.
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let mut filter = Filter::default();
    for (k, v) in query_pairs(raw.as_deref(), &["q", "month"])? {
        match k.as_str() {
            "month" => {
                filter.month = Some(
                    check_month(&v)
                        .map_err(|e| ApiError::bad_request("invalid_parameter", "month", e))?,
                );
            }
            _ => {
                if v.chars().any(char::is_control) || v.chars().count() > 100 {
                    return Err(ApiError::bad_request(
                        "invalid_parameter",
                        "q",
                        "q: até 100 caracteres, sem caracteres de controle",
                    ));
                }
                filter.q = v;
            }
        }
    }
    let (files, statements) = listing(&state, site, &filter).await?;
    let files: Vec<_> = files.iter().map(api_file).collect();
    let statements: Vec<_> = statements
        .iter()
        .map(|s| {
            json!({
                "month": s.month, "version": s.version, "issued_at": s.issued_at,
                "total": s.total,
                "url": format!("/sites/{}/statements?month={}", site.slug, s.month),
            })
        })
        .collect();
    Ok(Json(json!({ "data": { "files": files, "statements": statements } })).into_response())
}

/// `POST /api/v1/sites/{slug}/reports?month=YYYY-MM&title=…[&name=…]`: the raw PDF as the
/// body (`Content-Type: application/pdf`).
pub async fn api_upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let mut month = None;
    let mut title = String::new();
    let mut name = String::new();
    for (k, v) in query_pairs(raw.as_deref(), &["month", "title", "name"])? {
        match k.as_str() {
            "month" => {
                month = Some(
                    check_month(&v)
                        .map_err(|e| ApiError::bad_request("invalid_parameter", "month", e))?,
                );
            }
            "title" => title = v,
            _ => {
                name = check_file_name(&v)
                    .map_err(|e| ApiError::bad_request("invalid_parameter", "name", e))?;
            }
        }
    }
    let month = month.ok_or_else(|| {
        ApiError::bad_request("missing_parameter", "month", "informe month=AAAA-MM")
    })?;
    let title = check_title(&title, &name)
        .map_err(|e| ApiError::bad_request("invalid_parameter", "title", e))?;
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
    if mime != "application/pdf" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "envie o PDF no corpo com Content-Type application/pdf",
        ));
    }
    let bytes = Bytes::from_request(req, &state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                PdfError::TooLarge.to_string(),
            )
            .field("file")
        } else {
            crate::input::body_rejection(r.status())
        }
    })?;
    let input = UploadInput {
        month,
        title,
        original_name: if name.is_empty() {
            "relatorio.pdf".to_owned()
        } else {
            name
        },
    };
    match store_upload(&state, site, &user, &peer.0, input, &bytes).await? {
        Ok(row) => {
            Ok((StatusCode::CREATED, Json(json!({ "data": api_file(&row) }))).into_response())
        }
        Err((field, message, status)) => {
            Err(ApiError::new(status, "invalid_file", message).field(field))
        }
    }
}

/// `GET /api/v1/sites/{slug}/reports/{id}`: the PDF.
pub async fn api_download(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = parse_id(&id).ok_or_else(ApiError::not_found)?;
    let (row, bytes) = state
        .store()
        .report_file(site.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(pdf_response(&row, bytes))
}

/// `DELETE /api/v1/sites/{slug}/reports/{id}` (audited).
pub async fn api_delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = parse_id(&id).ok_or_else(ApiError::not_found)?;
    delete_file(&state, site, &user, &peer.0, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Adds the library's routes to the OpenAPI document.
pub fn extend_openapi(doc: &mut serde_json::Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let month = |required: bool| {
        json!({ "name": "month", "in": "query", "required": required,
        "schema": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" } })
    };
    let file = json!({ "type": "object", "properties": {
        "id": { "type": "integer" }, "month": { "type": "string" }, "title": { "type": "string" },
        "original_name": { "type": "string", "description": "as uploaded; shown only" },
        "stored_name": { "type": "string", "pattern": "^[a-z0-9-]+\\.pdf$" },
        "size": { "type": "integer" }, "sha256": { "type": "string" },
        "uploaded_at": { "type": "string", "format": "date-time" },
        "uploaded_by": { "type": "integer", "nullable": true } } });
    doc["paths"]["/api/v1/sites/{slug}/reports"] = json!({
        "get": {
            "summary": "The report library: uploaded PDF files and issued statements, filtered by month and by a search on title or file name",
            "security": auth,
            "parameters": [slug, month(false),
                { "name": "q", "in": "query", "schema": { "type": "string", "maxLength": 100 } }],
            "responses": {
                "200": { "description": "The library", "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "data": { "type": "object", "properties": {
                        "files": { "type": "array", "items": file },
                        "statements": { "type": "array", "items": { "type": "object", "properties": {
                            "month": { "type": "string" }, "version": { "type": "integer" },
                            "issued_at": { "type": "string", "format": "date-time" },
                            "total": { "type": "string" }, "url": { "type": "string" } } } } } } } } } } },
                "400": err("A bad query parameter"), "401": err("Not logged in"),
                "404": err("No such site, or not yours") } },
        "post": {
            "summary": "Upload a PDF to the library (checked by content: %PDF- … %%EOF; at most 20 MiB); audited",
            "security": auth,
            "parameters": [slug, month(true),
                { "name": "title", "in": "query", "schema": { "type": "string", "maxLength": 200 } },
                { "name": "name", "in": "query", "schema": { "type": "string" }, "description": "the original file name (shown only)" }],
            "requestBody": { "required": true, "content": {
                "application/pdf": { "schema": { "type": "string", "format": "binary" } } } },
            "responses": {
                "201": { "description": "Stored", "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "data": file } } } } },
                "400": err("A bad query parameter (month, title)"), "401": err("Not logged in"),
                "403": err("Cross-site request"), "404": err("No such site, or not yours"),
                "413": err("File over 20 MiB"), "415": err("Not application/pdf"),
                "422": err("Not a PDF, empty or truncated (`field` is file): nothing stored") } } });
    doc["paths"]["/api/v1/sites/{slug}/reports/{id}"] = json!({
        "get": {
            "summary": "Download a library file (application/pdf, attachment named by its stored name)",
            "security": auth,
            "parameters": [slug, id],
            "responses": {
                "200": { "description": "The PDF", "content": { "application/pdf": { "schema": { "type": "string", "format": "binary" } } } },
                "401": err("Not logged in"), "404": err("No such file, site, or not yours") } },
        "delete": {
            "summary": "Delete a library file (audited)",
            "security": auth,
            "parameters": [slug, id],
            "responses": {
                "204": { "description": "Deleted" },
                "401": err("Not logged in"), "403": err("Cross-site request"),
                "404": err("No such file, site, or not yours") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_content_is_checked_not_the_name() {
        assert_eq!(check_pdf(b""), Err(PdfError::Empty));
        assert!(check_pdf(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n").is_ok());
        assert!(matches!(
            check_pdf(b"\x89PNG\r\n\x1a\n...."),
            Err(PdfError::NotPdf(w)) if w.contains("PNG")
        ));
        assert_eq!(check_pdf(b"%PDF-1.7\n1 0 obj\n"), Err(PdfError::Truncated));
        let mut big = b"%PDF-1.7\n".to_vec();
        big.resize(FILE_LIMIT + 1, b' ');
        assert_eq!(check_pdf(&big), Err(PdfError::TooLarge));
        assert!(PdfError::Truncated.to_string().contains("%%EOF"));
    }

    #[test]
    fn stored_names_are_generated_and_safe() {
        let m = LocalMonth::parse("2026-03").unwrap();
        let a = stored_name(m, "abc");
        assert!(is_safe_stored_name(&a), "{a}");
        assert!(a.starts_with("relatorio-2026-03-"));
        assert_ne!(a, stored_name(m, "abc"), "unique per upload");
        for bad in [
            "../../etc/passwd.pdf",
            "a b.pdf",
            ".pdf",
            "A.pdf",
            "x.pdf.exe",
            "x",
        ] {
            assert!(!is_safe_stored_name(bad), "{bad}");
        }
    }

    #[test]
    fn titles_and_search() {
        assert_eq!(check_title("  Ata  ", "x").unwrap(), "Ata");
        assert_eq!(check_title("", "ata-marco").unwrap(), "ata-marco");
        assert!(check_title("a\nb", "").is_err());
        assert!(check_title(&"t".repeat(201), "").is_err());
        assert_eq!(fold("Relatório de Março"), "relatorio de marco");
        assert!(check_file_name("../../etc/passwd.pdf").is_err());
        assert!(check_file_name("..\\x.pdf").is_err());
        assert_eq!(check_file_name("Ata março.pdf").unwrap(), "Ata março.pdf");
    }
}
