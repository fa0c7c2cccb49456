//! Residents import from a spreadsheet (issue #4; RELIABILITY.md R7): a manager uploads the
//! condominium's resident list as CSV or XLSX and gets a per-row report before anything is
//! stored.
//!
//! * **Reading** ([`read_sheet`]): CSV in UTF-8 (BOM or not, `;` or `,` told from the header
//!   line, as pt-BR Excel writes `;`) or XLSX (first sheet; calamine). A file vetric cannot read
//!   as a whole (another format, invalid UTF-8, a missing required column, no rows, more than
//!   [`MAX_ROWS`] rows, more than [`FILE_LIMIT`] bytes, an XLSX that unpacks to more than
//!   [`XLSX_UNPACKED_LIMIT`]) is a [`FileError`]: one pt-BR message saying what to fix, and
//!   nothing is imported.
//! * **Checking** ([`check_rows`]): every row goes through the creation form's own validation
//!   ([`ResidentInput::check`]); its field errors are renamed to the spreadsheet's columns.
//!   On top: the same phone or tag twice in the file, a tag already owned in an overlapping
//!   period, a phone already registered in the site.
//! * **Pages**: upload → preview (the report and counts, and a confirm form carrying the file
//!   back base64-encoded with its SHA-256) → the server reads and checks the file again and
//!   imports all valid rows in ONE transaction with one audit row
//!   ([`vetric_store::Store::import_residents`]) → result. If the valid rows are no longer the
//!   ones the user confirmed, nothing is imported and the new report is shown. No server-side
//!   temp files; the uploaded file's name is only shown (sanitised), never used as a path.
//! * **API**: `POST /api/v1/sites/{slug}/residents/import[?commit=true]` with the raw file
//!   body: a dry run by default, the report as JSON.

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{audit, local_date};
use crate::input::commit_flag;
use crate::residents::{FieldErrors, ResidentInput, TagInput, masked_phone, tag_taken};
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
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Cursor, Read};
use vetric_domain::PhoneNumber;
use vetric_store::{
    ImportResident, NewResident, ResidentRow, StoreError, TagGrant, TagOwnershipRow,
};

/// The largest file accepted (the API's body limit too).
pub const FILE_LIMIT: usize = 2 * 1024 * 1024;
/// The body limit of the import pages: a multipart form with the file, or with its base64
/// copy (4/3 of it) on confirm.
pub const PAGE_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The most resident rows in one file.
pub const MAX_ROWS: usize = 5_000;
/// Columns read per row (more are ignored): bounds memory on a hostile sheet.
const MAX_COLUMNS: usize = 64;
/// Total bytes an XLSX may unpack to. A real 5,000-row resident list unpacks to a few MiB;
/// more is a zip bomb or not a resident list.
pub const XLSX_UNPACKED_LIMIT: u64 = 48 * 1024 * 1024;
/// Members of an XLSX zip (a plain workbook has about ten).
const XLSX_MAX_ENTRIES: usize = 500;
/// The CSV template offered for download (`;`, BOM: opens right in pt-BR Excel).
pub const TEMPLATE_CSV: &str = "\u{FEFF}nome;bloco;unidade;telefone;email;tags;tag_valida_desde\r\n\
     Maria Silva;A;302;+55 11 91234-5678;maria@exemplo.com;04A1B2C3|04A1B2C4;01/03/2026\r\n\
     João Souza;B;101;+55 21 98765-4321;;;\r\n";

// ---------------------------------------------------------------------------------- reading

/// Why a file cannot be read at all (nothing is imported). `Display` is the pt-BR message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("o arquivo está vazio: envie a planilha de moradores em CSV ou XLSX")]
    Empty,
    #[error(
        "o arquivo tem mais de {} MiB: divida a planilha em arquivos menores",
        FILE_LIMIT / 1024 / 1024
    )]
    TooLarge,
    #[error(
        "arquivo .xls (Excel 97-2003) não é aceito: abra-o no Excel e salve como .xlsx ou como \
         \"CSV UTF-8 (delimitado por vírgulas)\""
    )]
    OldExcel,
    #[error(
        "o arquivo não é CSV nem XLSX: salve a planilha como .xlsx ou como \"CSV UTF-8 \
         (delimitado por vírgulas)\""
    )]
    UnknownFormat,
    #[error(
        "o arquivo foi enviado como {declared}, mas o conteúdo não é {declared}: envie um CSV \
         como text/csv e uma planilha .xlsx como \
         application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )]
    WrongType { declared: &'static str },
    #[error(
        "o CSV não está em UTF-8 (linha {line}): no Excel use \"Salvar como\" → \"CSV UTF-8 \
         (delimitado por vírgulas)\""
    )]
    NotUtf8 { line: usize },
    #[error("CSV ilegível perto da linha {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error(
        "a planilha XLSX não pôde ser lida ({reason}): abra-a no Excel e salve de novo como \
         .xlsx, ou envie em CSV UTF-8"
    )]
    Xlsx { reason: String },
    #[error(
        "a planilha XLSX descompactada passa de {} MiB (arquivo suspeito): copie só os dados \
         dos moradores para uma planilha nova",
        XLSX_UNPACKED_LIMIT / 1024 / 1024
    )]
    XlsxTooBig,
    #[error(
        "falta a coluna obrigatória \"{column}\" no cabeçalho (linha 1). Colunas aceitas: \
         nome, bloco, unidade (ou apartamento no formato A-302), telefone, email, tags, \
         tag_valida_desde"
    )]
    MissingColumn { column: &'static str },
    #[error("a coluna \"{column}\" aparece duas vezes no cabeçalho: deixe só uma")]
    DuplicateColumn { column: &'static str },
    #[error(
        "use a coluna apartamento (A-302) ou as colunas bloco e unidade, não as duas formas ao \
         mesmo tempo"
    )]
    ApartmentTwice,
    #[error("a planilha não tem nenhuma linha de morador depois do cabeçalho")]
    NoRows,
    #[error(
        "a planilha tem mais de {} linhas de moradores: divida-a em arquivos menores",
        MAX_ROWS
    )]
    TooManyRows,
}

/// What the sender says the file is (the API's Content-Type); the pages go by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Any,
    Csv,
    Xlsx,
}

/// A sheet as text: the header and the non-blank rows with their spreadsheet row numbers
/// (1-based, as the spreadsheet shows them).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sheet {
    pub header: Vec<String>,
    pub rows: Vec<(usize, Vec<String>)>,
}

/// Reads a CSV or XLSX file into text cells (see the module docs for what is refused).
pub fn read_sheet(bytes: &[u8], declared: Declared) -> Result<Sheet, FileError> {
    if bytes.len() > FILE_LIMIT {
        return Err(FileError::TooLarge);
    }
    let is_zip = bytes.starts_with(b"PK\x03\x04");
    match declared {
        Declared::Xlsx if !is_zip => return Err(FileError::WrongType { declared: "XLSX" }),
        Declared::Csv if is_zip => return Err(FileError::WrongType { declared: "CSV" }),
        _ => {}
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FileError::Empty);
    }
    let sheet = if is_zip {
        read_xlsx(bytes)?
    } else if bytes.starts_with(b"\xD0\xCF\x11\xE0") {
        return Err(FileError::OldExcel);
    } else if body.contains(&0) {
        // NUL bytes: a binary file (PDF, image, UTF-16 text), never a CSV people write.
        return Err(FileError::UnknownFormat);
    } else {
        read_csv(body)?
    };
    if sheet.header.iter().all(|h| h.trim().is_empty()) {
        return Err(FileError::Empty);
    }
    if sheet.rows.is_empty() {
        return Err(FileError::NoRows);
    }
    Ok(sheet)
}

fn blank(cells: &[String]) -> bool {
    cells.iter().all(|c| c.trim().is_empty())
}

/// Rows before the header that are skipped as titles ("Lista de moradores") at most.
const MAX_TITLE_ROWS: usize = 10;

/// Collects rows (row number, cells) into a sheet. The header is the first non-blank row that
/// names a known column (title rows above it are skipped); when none of the first
/// [`MAX_TITLE_ROWS`] does, the first non-blank row is the header, so the error names the
/// missing column.
struct SheetBuilder {
    sheet: Sheet,
    has_header: bool,
    before_header: Vec<(usize, Vec<String>)>,
}

impl SheetBuilder {
    fn new() -> Self {
        Self {
            sheet: Sheet::default(),
            has_header: false,
            before_header: Vec::new(),
        }
    }

    fn push(&mut self, row: usize, mut cells: Vec<String>) -> Result<(), FileError> {
        if blank(&cells) {
            return Ok(());
        }
        cells.truncate(MAX_COLUMNS);
        if self.has_header {
            if self.sheet.rows.len() >= MAX_ROWS {
                return Err(FileError::TooManyRows);
            }
            self.sheet.rows.push((row, cells));
        } else if cells.iter().any(|c| column_name(c).is_some()) {
            self.has_header = true;
            self.sheet.header = cells;
            self.before_header.clear();
        } else {
            self.before_header.push((row, cells));
            if self.before_header.len() >= MAX_TITLE_ROWS {
                self.settle();
            }
        }
        Ok(())
    }

    /// No header found: the first non-blank row is it.
    fn settle(&mut self) {
        let mut rows = std::mem::take(&mut self.before_header).into_iter();
        if let Some((_, header)) = rows.next() {
            self.has_header = true;
            self.sheet.header = header;
            self.sheet.rows.extend(rows);
        }
    }

    fn finish(mut self) -> Sheet {
        if !self.has_header {
            self.settle();
        }
        self.sheet
    }
}

fn read_csv(body: &[u8]) -> Result<Sheet, FileError> {
    let text = std::str::from_utf8(body).map_err(|e| FileError::NotUtf8 {
        line: 1 + body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
    })?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let delimiter = [b';', b',', b'\t']
        .into_iter()
        .max_by_key(|d| first.bytes().filter(|b| b == d).count())
        .unwrap_or(b';');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    // The line a record starts on: what a text editor and Excel call its row (unless an
    // earlier cell held a line break). Counted from the byte offset, as the reader's own line
    // count lags by one after a CRLF; incrementally, as records come in order.
    let bytes = text.as_bytes();
    let (mut seen_byte, mut seen_lines) = (0usize, 0usize);
    let mut line_at = |byte: u64| {
        let mut start = usize::try_from(byte)
            .unwrap_or(bytes.len())
            .min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= seen_byte {
            seen_lines += bytes[seen_byte..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            seen_byte = start;
        }
        1 + seen_lines
    };
    let mut out = SheetBuilder::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let row = record.position().map_or(line, |p| line_at(p.byte()));
                out.push(row, record.iter().map(str::to_owned).collect())?;
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => return Err(FileError::NotUtf8 { line }),
                    _ => "verifique as aspas (\") dessa linha".to_owned(),
                };
                return Err(FileError::Csv { line, reason });
            }
        }
    }
    Ok(out.finish())
}

/// Unpacks every member of the zip once with a hard cap, before calamine sees it: declared
/// sizes can lie, so the bytes actually produced are counted.
fn check_zip(bytes: &[u8], limit: u64) -> Result<(), FileError> {
    let bad = |e: zip::result::ZipError| FileError::Xlsx {
        reason: format!("zip inválido: {e}"),
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(bad)?;
    if archive.len() > XLSX_MAX_ENTRIES {
        return Err(FileError::XlsxTooBig);
    }
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        if entry.size() > limit {
            return Err(FileError::XlsxTooBig);
        }
        loop {
            let n = entry.read(&mut buf).map_err(|e| FileError::Xlsx {
                reason: format!("conteúdo compactado inválido: {e}"),
            })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Err(FileError::XlsxTooBig);
            }
        }
    }
    Ok(())
}

fn read_xlsx(bytes: &[u8]) -> Result<Sheet, FileError> {
    use calamine::{DataRef, Reader, Xlsx};
    check_zip(bytes, XLSX_UNPACKED_LIMIT)?;
    let xlsx_err = |e: calamine::XlsxError| FileError::Xlsx {
        reason: e.to_string(),
    };
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(xlsx_err)?;
    let first = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| FileError::Xlsx {
            reason: "nenhuma aba".into(),
        })?;
    let mut cells = book.worksheet_cells_reader(&first).map_err(xlsx_err)?;
    let mut out = SheetBuilder::new();
    let mut current: Option<(u32, Vec<String>)> = None;
    while let Some(cell) = cells.next_cell().map_err(xlsx_err)? {
        let (r, c) = cell.get_position();
        let text = match cell.get_value() {
            DataRef::Empty => continue,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
            DataRef::SharedString(s) => (*s).to_owned(),
            DataRef::Int(i) => i.to_string(),
            // Phones typed as numbers arrive as floats: 5511912345678, not 5.511912345678e12.
            DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
            DataRef::Float(f) => f.to_string(),
            DataRef::Bool(b) => if *b { "VERDADEIRO" } else { "FALSO" }.to_owned(),
            // A date cell (tag_valida_desde): the calendar date as typed, no time zone.
            DataRef::DateTime(d) => d
                .as_datetime()
                .map(|t| t.date().format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| d.as_f64().to_string()),
            DataRef::Error(e) => format!("#{e}"),
        };
        if c as usize >= MAX_COLUMNS {
            continue;
        }
        if current.as_ref().is_some_and(|(row, _)| *row != r)
            && let Some((row, cells)) = current.take()
        {
            out.push(row as usize + 1, cells)?;
        }
        let (_, row) = current.get_or_insert_with(|| (r, Vec::new()));
        if row.len() <= c as usize {
            row.resize(c as usize + 1, String::new());
        }
        row[c as usize] = text;
    }
    if let Some((row, cells)) = current {
        out.push(row as usize + 1, cells)?;
    }
    Ok(out.finish())
}

// --------------------------------------------------------------------------------- columns

/// Where each known column sits in the header.
#[derive(Debug, Default, Clone)]
pub struct Columns {
    name: usize,
    phone: usize,
    /// `bloco` + `unidade`, or `apartamento` (`A-302`).
    block: Option<usize>,
    unit: Option<usize>,
    apartment: Option<usize>,
    email: Option<usize>,
    tags: Option<usize>,
    tag_from: Option<usize>,
    /// Header cells that are none of the above (shown, not read).
    pub ignored: Vec<String>,
}

/// Lowercase, no accents, `_` for spaces and hyphens: "Tag válida desde" → "tag_valida_desde".
fn normalise(h: &str) -> String {
    h.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            ' ' | '-' | '.' => '_',
            c => c,
        })
        .collect()
}

/// The column a header names (its documented name), if any.
fn column_name(h: &str) -> Option<&'static str> {
    Some(match normalise(h).as_str() {
        "nome" | "nome_completo" | "morador" => "nome",
        "bloco" | "torre" | "bloco_torre" | "bloco/torre" => "bloco",
        "unidade" | "apto" | "unid" => "unidade",
        "apartamento" => "apartamento",
        "telefone" | "whatsapp" | "celular" | "fone" | "telefone_whatsapp" => "telefone",
        "email" | "e_mail" => "email",
        "tags" | "tag" => "tags",
        "tag_valida_desde" | "valida_desde" | "tags_validas_desde" | "tag_desde" => {
            "tag_valida_desde"
        }
        _ => return None,
    })
}

impl Columns {
    pub fn of(header: &[String]) -> Result<Self, FileError> {
        let mut found: HashMap<&'static str, usize> = HashMap::new();
        let mut ignored = Vec::new();
        for (i, h) in header.iter().enumerate() {
            match column_name(h) {
                Some(c) => {
                    if found.insert(c, i).is_some() {
                        return Err(FileError::DuplicateColumn { column: c });
                    }
                }
                None if h.trim().is_empty() => {}
                None => ignored.push(h.trim().chars().take(60).collect()),
            }
        }
        let need = |c: &'static str| {
            found
                .get(c)
                .copied()
                .ok_or(FileError::MissingColumn { column: c })
        };
        let apartment = found.get("apartamento").copied();
        let (block, unit) = (found.get("bloco").copied(), found.get("unidade").copied());
        if apartment.is_some() && (block.is_some() || unit.is_some()) {
            return Err(FileError::ApartmentTwice);
        }
        let name = need("nome")?;
        if apartment.is_none() {
            need("bloco")?;
            need("unidade")?;
        }
        let phone = need("telefone")?;
        Ok(Self {
            name,
            phone,
            block,
            unit,
            apartment,
            email: found.get("email").copied(),
            tags: found.get("tags").copied(),
            tag_from: found.get("tag_valida_desde").copied(),
            ignored,
        })
    }

    /// The spreadsheet column of a field of [`ResidentInput::check`]'s errors.
    fn of_field(&self, field: &str) -> &'static str {
        let apartment = self.apartment.is_some();
        match field {
            "name" => "nome",
            "block" if apartment => "apartamento",
            "unit" if apartment => "apartamento",
            "block" => "bloco",
            "unit" => "unidade",
            "phone" => "telefone",
            "email" => "email",
            f if f.ends_with(".valid_from") => "tag_valida_desde",
            _ => "tags",
        }
    }
}

// -------------------------------------------------------------------------------- checking

/// A problem of one row, at one column (pt-BR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub column: &'static str,
    pub message: String,
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct RowReport {
    /// As the spreadsheet numbers it (header = 1).
    pub row: usize,
    pub problems: Vec<Problem>,
    pub name: String,
    pub apartment: String,
    /// Masked, as in the residents list.
    pub phone: String,
    pub tags: String,
    /// What is stored when the row is valid.
    pub import: Option<ImportResident>,
}

impl RowReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The whole report of a file.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<RowReport>,
    pub ignored_columns: Vec<String>,
}

impl Report {
    pub fn valid(&self) -> usize {
        self.rows.iter().filter(|r| r.ok()).count()
    }

    pub fn invalid(&self) -> usize {
        self.rows.len() - self.valid()
    }

    /// The row numbers of the valid rows, as the confirm form carries them: `2,3,5`.
    pub fn valid_rows(&self) -> String {
        self.rows
            .iter()
            .filter(|r| r.ok())
            .map(|r| r.row.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The spreadsheet row of the `index`-th tag grant of the valid rows (the store's
    /// [`StoreError::TagTaken`] index).
    fn row_of_grant(&self, index: usize) -> Option<usize> {
        let mut seen = 0;
        for r in self.rows.iter().filter(|r| r.ok()) {
            let n = r.import.as_ref().map_or(0, |i| i.tags.len());
            if index < seen + n {
                return Some(r.row);
            }
            seen += n;
        }
        None
    }
}

/// What the store already holds that a row may clash with.
pub struct Known {
    pub tags: Vec<TagOwnershipRow>,
    pub residents: Vec<ResidentRow>,
}

impl Known {
    pub async fn load(state: &AppState, site: &SiteSettings) -> Result<Self, StoreError> {
        Ok(Self {
            tags: state.store().tag_directory(site.id).await?,
            residents: state.store().residents(site.id).await?,
        })
    }
}

fn cell(cells: &[String], i: Option<usize>) -> String {
    i.and_then(|i| cells.get(i))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

fn overlaps(t: &TagOwnershipRow, g: &TagGrant) -> bool {
    t.tag == g.tag
        && g.valid_to.is_none_or(|to| t.valid_from < to)
        && t.valid_to.is_none_or(|to| to > g.valid_from)
}

/// Checks every row (see the module docs).
pub fn check_rows(site: &SiteSettings, sheet: &Sheet, cols: &Columns, known: &Known) -> Report {
    let stored_phones: HashMap<String, &ResidentRow> = known
        .residents
        .iter()
        .filter(|r| r.active)
        .filter_map(|r| Some((PhoneNumber::parse(&r.phone).ok()?.digits().to_owned(), r)))
        .collect();
    let mut phones_seen: HashMap<String, usize> = HashMap::new();
    let mut tags_seen: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(sheet.rows.len());
    for (row, cells) in &sheet.rows {
        let mut problems: Vec<Problem> = Vec::new();
        let mut push = |column: &'static str, message: String| {
            let p = Problem { column, message };
            if !problems.contains(&p) {
                problems.push(p);
            }
        };
        let (block, unit) = match cols.apartment {
            Some(i) => {
                let apt = cell(cells, Some(i));
                match apt.split_once('-') {
                    Some((b, u)) => (b.trim().to_owned(), u.trim().to_owned()),
                    None if apt.is_empty() => (String::new(), String::new()),
                    None => {
                        push(
                            "apartamento",
                            format!("\"{apt}\": use BLOCO-UNIDADE (ex.: A-302)"),
                        );
                        (apt.clone(), apt)
                    }
                }
            }
            None => (cell(cells, cols.block), cell(cells, cols.unit)),
        };
        let tag_from = cell(cells, cols.tag_from);
        let raw_tags: Vec<String> = cell(cells, cols.tags)
            .split([',', '|'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let input = ResidentInput {
            name: cell(cells, Some(cols.name)),
            block,
            unit,
            phone: cell(cells, Some(cols.phone)),
            email: cell(cells, cols.email),
            active: true,
            tags: raw_tags
                .iter()
                .map(|t| TagInput {
                    tag: t.clone(),
                    valid_from: tag_from.clone(),
                    valid_to: String::new(),
                })
                .collect(),
        };
        if !tag_from.is_empty() && raw_tags.is_empty() {
            push(
                "tag_valida_desde",
                "há data em tag_valida_desde mas nenhuma tag na coluna tags".into(),
            );
        }
        let checked = match input.check(site) {
            Ok(c) => Some(c),
            Err(errors) => {
                push_field_errors(&mut push, cols, &input, errors);
                None
            }
        };
        let mut import = None;
        if let Some(c) = checked {
            let digits = c.phone.digits().to_owned();
            if let Some(first) = phones_seen.get(&digits) {
                push(
                    "telefone",
                    format!("telefone repetido: o mesmo da linha {first}"),
                );
            } else if let Some(r) = stored_phones.get(&digits) {
                push(
                    "telefone",
                    format!(
                        "telefone já cadastrado para {} ({}): edite esse morador em vez de \
                         importá-lo de novo",
                        r.name,
                        r.apartment_label()
                    ),
                );
            }
            for g in &c.tags {
                let key = g.tag.as_str().to_owned();
                if let Some(first) = tags_seen.get(&key) {
                    push(
                        "tags",
                        format!("tag {key} repetida: já está na linha {first}"),
                    );
                } else if let Some(t) = known.tags.iter().find(|t| overlaps(t, g)) {
                    let taken = StoreError::TagTaken {
                        index: 0,
                        tag: key.clone(),
                        owner: t.resident_name.clone(),
                        apartment: t.apartment_label.clone(),
                        valid_from: t.valid_from,
                        valid_to: t.valid_to,
                    };
                    if let Some((_, m)) = tag_taken(site, &taken, String::new()) {
                        push("tags", m);
                    }
                }
            }
            phones_seen.entry(digits).or_insert(*row);
            for g in &c.tags {
                tags_seen.entry(g.tag.as_str().to_owned()).or_insert(*row);
            }
            import = Some(ImportResident {
                resident: NewResident {
                    name: c.name,
                    phone: c.phone.digits().to_owned(),
                    email: c.email,
                    block: c.block,
                    unit: c.unit,
                },
                tags: c.tags,
            });
        }
        let ok = problems.is_empty();
        rows.push(RowReport {
            row: *row,
            name: input.name.chars().take(200).collect(),
            apartment: if input.block.is_empty() && input.unit.is_empty() {
                String::new()
            } else {
                vetric_store::apartment_label(&input.block, &input.unit)
            },
            phone: if input.phone.is_empty() {
                String::new()
            } else {
                masked_phone(&input.phone)
            },
            tags: raw_tags.join(", "),
            import: if ok { import } else { None },
            problems,
        });
    }
    Report {
        rows,
        ignored_columns: cols.ignored.clone(),
    }
}

/// Renames the creation form's field errors to the spreadsheet's columns; a tag's message
/// names the tag (a cell may hold several).
fn push_field_errors(
    push: &mut impl FnMut(&'static str, String),
    cols: &Columns,
    input: &ResidentInput,
    errors: FieldErrors,
) {
    for (field, message) in errors {
        let column = cols.of_field(&field);
        let tag = field
            .strip_prefix("tags[")
            .and_then(|r| r.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
            .and_then(|i| input.tags.get(i));
        let message = match (column, tag) {
            ("tags", Some(t)) if !t.tag.is_empty() => format!("tag {}: {message}", t.tag),
            _ => message,
        };
        push(column, message);
    }
}

// ------------------------------------------------------------------------------- importing

/// The outcome of [`commit`].
pub enum CommitError {
    /// The store said no (a tag taken meanwhile): the row and the message; nothing kept.
    Row {
        row: usize,
        message: String,
    },
    Store(StoreError),
}

/// Imports the valid rows of `report` in one transaction with one audit row.
pub async fn commit(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    report: &Report,
    sha256: &str,
) -> Result<usize, CommitError> {
    let rows: Vec<ImportResident> = report
        .rows
        .iter()
        .filter_map(|r| r.import.clone())
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let entry =
        audit(user, ip, "residents_import", format!("site:{}", site.slug)).with_detail(json!({
            "via": user.via.as_str(),
            "site": site.slug,
            "imported": rows.len(),
            "skipped_invalid": report.invalid(),
            "rows": report.rows.iter().filter(|r| r.ok()).map(|r| r.row).collect::<Vec<_>>(),
            "file_sha256": sha256,
        }));
    match state.store().import_residents(site.id, &rows, &entry).await {
        Ok(ids) => Ok(ids.len()),
        Err(e) => {
            if let StoreError::TagTaken { index, .. } = &e
                && let Some(row) = report.row_of_grant(*index)
                && let Some((_, m)) = tag_taken(site, &e, String::new())
            {
                return Err(CommitError::Row { row, message: m });
            }
            Err(CommitError::Store(e))
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads and checks a file: the report, or why the file cannot be read.
async fn report_of(
    state: &AppState,
    site: &SiteSettings,
    bytes: Bytes,
    declared: Declared,
) -> Result<Result<Report, FileError>, StoreError> {
    // Parsing a 2 MiB file (or unpacking a 48 MiB XLSX) is CPU work: off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        let sheet = read_sheet(&bytes, declared)?;
        let cols = Columns::of(&sheet.header)?;
        Ok::<_, FileError>((sheet, cols))
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "the import parser panicked");
        Err(FileError::UnknownFormat)
    });
    let (sheet, cols) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let known = Known::load(state, site).await?;
    Ok(Ok(check_rows(site, &sheet, &cols, &known)))
}

// ------------------------------------------------------------------------------------ pages

struct ReportLine {
    row: usize,
    ok: bool,
    name: String,
    apartment: String,
    phone: String,
    tags: String,
    problems: Vec<Problem>,
}

fn lines(report: &Report) -> Vec<ReportLine> {
    report
        .rows
        .iter()
        .map(|r| ReportLine {
            row: r.row,
            ok: r.ok(),
            name: r.name.clone(),
            apartment: r.apartment.clone(),
            phone: r.phone.clone(),
            tags: r.tags.clone(),
            problems: r.problems.clone(),
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "residents_import.html")]
struct UploadPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    error: Option<String>,
    max_rows: usize,
    max_mib: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "residents_import_preview.html")]
struct PreviewPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    file_name: String,
    alert: Option<String>,
    lines: Vec<ReportLine>,
    valid: usize,
    invalid: usize,
    ignored: String,
    payload: String,
    sha256: String,
    valid_rows: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "residents_import_done.html")]
struct DonePage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    imported: usize,
    skipped: usize,
    at: String,
}

fn upload_page(user: &AuthUser, site: &SiteSettings, error: Option<String>) -> UploadPage {
    UploadPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "residents",
        error,
        max_rows: MAX_ROWS,
        max_mib: FILE_LIMIT / 1024 / 1024,
    }
}

#[allow(clippy::too_many_arguments)]
fn preview_page(
    user: &AuthUser,
    site: &SiteSettings,
    file_name: String,
    report: &Report,
    bytes: &[u8],
    sha256: String,
    alert: Option<String>,
) -> PreviewPage {
    PreviewPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "residents",
        file_name,
        alert,
        lines: lines(report),
        valid: report.valid(),
        invalid: report.invalid(),
        ignored: report.ignored_columns.join(", "),
        payload: BASE64.encode(bytes),
        sha256,
        valid_rows: report.valid_rows(),
    }
}

/// `GET /sites/{slug}/residents/import`: the upload form and the accepted columns.
pub async fn form(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    Ok(upload_page(&user, site, None).into_response())
}

/// `GET /sites/{slug}/residents/import/modelo.csv`: the template to fill in.
pub async fn template_csv(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    state.site_page(&user, &slug)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"modelo-moradores.csv\"",
            ),
        ],
        TEMPLATE_CSV,
    )
        .into_response())
}

fn too_large_page() -> PageError {
    PageError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "Arquivo grande demais: o máximo é {} MiB. Divida a planilha em arquivos menores.",
            FILE_LIMIT / 1024 / 1024
        ),
    }
}

/// `POST /sites/{slug}/residents/import` (multipart, field `file`): the preview.
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let upload = read_upload(req, &state, too_large_page).await?;
    let Some(bytes) = upload.fields.get("file").cloned() else {
        let page = upload_page(&user, site, Some("Escolha o arquivo da planilha.".into()));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    };
    let status_of = |e: &FileError| match e {
        FileError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    match report_of(&state, site, bytes.clone(), Declared::Any).await? {
        Err(e) => {
            let msg = format!("Nada foi importado: {e}.");
            Ok((status_of(&e), upload_page(&user, site, Some(msg))).into_response())
        }
        Ok(report) => {
            let sha = sha256_hex(&bytes);
            let page = preview_page(&user, site, upload.file_name, &report, &bytes, sha, None);
            Ok(page.into_response())
        }
    }
}

/// `POST /sites/{slug}/residents/import/confirm` (multipart: `payload` = the file in
/// base64, `sha256` of the file, `rows` = the valid rows the user saw, `file_name`): reads and
/// checks the file again and imports its valid rows, all or nothing.
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
    let report = match report_of(&state, site, Bytes::from(bytes.clone()), Declared::Any).await? {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("Nada foi importado: {e}.");
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                upload_page(&user, site, Some(msg)),
            )
                .into_response());
        }
    };
    let again = |alert: String| {
        (
            StatusCode::CONFLICT,
            preview_page(
                &user,
                site,
                file_name.clone(),
                &report,
                &bytes,
                sha.clone(),
                Some(alert),
            ),
        )
            .into_response()
    };
    if report.valid_rows() != field_text(&upload, "rows") {
        let changed: Vec<String> = {
            let confirmed = field_text(&upload, "rows");
            let confirmed: Vec<&str> = confirmed.split(',').collect();
            report
                .rows
                .iter()
                .filter(|r| !r.ok() && confirmed.contains(&r.row.to_string().as_str()))
                .map(|r| r.row.to_string())
                .collect()
        };
        let which = if changed.is_empty() {
            String::new()
        } else {
            format!(" (agora com problema: linha {})", changed.join(", "))
        };
        return Ok(again(format!(
            "Os cadastros mudaram desde a prévia{which}. Nada foi importado: revise o relatório \
             abaixo e confirme de novo."
        )));
    }
    if report.valid() == 0 {
        return Ok(again(
            "Nenhuma linha válida para importar. Nada foi importado.".into(),
        ));
    }
    match commit(&state, site, &user, &peer.0, &report, &sha).await {
        Ok(imported) => Ok(DonePage {
            user_email: crate::account::NavUser::of(&user),
            slug: site.slug.clone(),
            name: site.name.clone(),
            nav: "residents",
            imported,
            skipped: report.invalid(),
            at: local_date(site, chrono::Utc::now()),
        }
        .into_response()),
        Err(CommitError::Row { row, message }) => Ok(again(format!(
            "Linha {row}: {message}. Nada foi importado: corrija a planilha e envie de novo."
        ))),
        Err(CommitError::Store(e)) => Err(PageError::from(e)),
    }
}

// -------------------------------------------------------------------------------------- API

#[derive(Serialize)]
struct ApiRow<'a> {
    row: usize,
    ok: bool,
    problems: &'a [Problem],
}

fn api_report(report: &Report, imported: usize) -> serde_json::Value {
    let rows: Vec<ApiRow<'_>> = report
        .rows
        .iter()
        .map(|r| ApiRow {
            row: r.row,
            ok: r.ok(),
            problems: &r.problems,
        })
        .collect();
    json!({ "data": {
        "rows": rows,
        "valid": report.valid(),
        "invalid": report.invalid(),
        "imported": imported,
        "ignored_columns": report.ignored_columns,
    } })
}

fn declared_of(headers: &HeaderMap) -> Result<Declared, ApiError> {
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
    match mime.as_str() {
        "text/csv" | "application/csv" => Ok(Declared::Csv),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Ok(Declared::Xlsx),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "envie o arquivo no corpo com Content-Type text/csv ou \
             application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )),
    }
}

/// `POST /api/v1/sites/{slug}/residents/import[?commit=true]`: the raw file as the body
/// (`text/csv` or the XLSX type). A dry run by default; `commit=true` imports the valid rows
/// (all in one transaction, one audit row). Always answers the report.
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
    let declared = declared_of(&headers)?;
    let bytes = Bytes::from_request(req, &state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!(
                    "arquivo grande demais (máximo {} MiB): divida a planilha em arquivos \
                     menores",
                    FILE_LIMIT / 1024 / 1024
                ),
            )
            .field("file")
        } else {
            crate::input::body_rejection(r.status())
        }
    })?;
    let sha = sha256_hex(&bytes);
    let report = match report_of(&state, site, bytes, declared).await? {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                FileError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return Err(
                ApiError::new(status, "invalid_file", format!("nada foi importado: {e}"))
                    .field("file"),
            );
        }
    };
    let imported = if do_commit {
        match commit(&state, site, &user, &peer.0, &report, &sha).await {
            Ok(n) => n,
            Err(CommitError::Row { row, message }) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "tag_taken",
                    format!("linha {row}: {message}; nada foi importado"),
                )
                .field(format!("rows[{row}].tags")));
            }
            Err(CommitError::Store(e)) => return Err(ApiError::from(e)),
        }
    } else {
        0
    };
    let mut res = Json(api_report(&report, imported)).into_response();
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
        "column": { "type": "string", "description": "the spreadsheet column: nome, bloco, unidade, apartamento, telefone, email, tags, tag_valida_desde" },
        "message": { "type": "string", "description": "pt-BR" } } });
    doc["paths"]["/api/v1/sites/{slug}/residents/import"] = json!({ "post": {
        "summary": "Import residents from a CSV or XLSX file: a per-row report; with commit=true the valid rows are stored in one transaction (one audit row)",
        "security": [{ "bearer": [] }, { "cookie": [] }],
        "parameters": [
            { "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } },
            { "name": "commit", "in": "query", "schema": { "type": "boolean", "default": false },
              "description": "false: dry run (the report only)" }],
        "requestBody": { "required": true, "content": {
            "text/csv": { "schema": { "type": "string", "format": "binary" } },
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                { "schema": { "type": "string", "format": "binary" } } } },
        "responses": {
            "200": { "description": "The report", "content": { "application/json": { "schema": {
                "type": "object", "properties": { "data": { "type": "object", "properties": {
                    "rows": { "type": "array", "items": { "type": "object", "properties": {
                        "row": { "type": "integer", "description": "as the spreadsheet numbers it; the header is row 1" },
                        "ok": { "type": "boolean" },
                        "problems": { "type": "array", "items": problem } } } },
                    "valid": { "type": "integer" }, "invalid": { "type": "integer" },
                    "imported": { "type": "integer" },
                    "ignored_columns": { "type": "array", "items": { "type": "string" } } } } } } } } },
            "400": err("A bad query parameter"), "401": err("Not logged in"),
            "403": err("Cross-site request"), "404": err("No such site, or not yours"),
            "409": err("A tag was taken between the check and the write: nothing imported"),
            "413": err("File over 2 MiB"), "415": err("Not text/csv nor XLSX"),
            "422": err("A file that cannot be read (`field` is file; the message says what to fix): nothing imported") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(csv: &str) -> Sheet {
        read_sheet(csv.as_bytes(), Declared::Any).unwrap()
    }

    #[test]
    fn csv_with_bom_and_semicolons() {
        let s = sheet("\u{FEFF}Nome;Bloco;Unidade;Telefone\r\nMaria;A;302;+55 11 91234-5678\r\n");
        assert_eq!(s.header, ["Nome", "Bloco", "Unidade", "Telefone"]);
        assert_eq!(
            s.rows,
            vec![(
                2,
                vec![
                    "Maria".into(),
                    "A".into(),
                    "302".into(),
                    "+55 11 91234-5678".into()
                ]
            )]
        );
    }

    #[test]
    fn comma_separator_and_quoted_cells() {
        let s = sheet(
            "nome,apartamento,telefone,tags\n\"Silva, Maria\",A-302,11912345678,\"T1,T2\"\n\n,,,\nJoão,B-1,x,\n",
        );
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].1[0], "Silva, Maria");
        assert_eq!(s.rows[0].1[3], "T1,T2");
        assert_eq!(
            s.rows[1].0, 5,
            "the row number counts the blank lines, as a spreadsheet does"
        );
    }

    #[test]
    fn headers_are_case_and_accent_insensitive() {
        let h: Vec<String> = ["NOME", "Telefone", "Apartamento", "Tag válida desde", "Obs"]
            .map(String::from)
            .to_vec();
        let c = Columns::of(&h).unwrap();
        assert_eq!(
            (c.name, c.phone, c.apartment, c.tag_from),
            (0, 1, Some(2), Some(3))
        );
        assert_eq!(c.ignored, ["Obs"]);
        let h: Vec<String> = ["nome", "bloco", "unidade"].map(String::from).to_vec();
        assert_eq!(
            Columns::of(&h).unwrap_err(),
            FileError::MissingColumn { column: "telefone" }
        );
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        assert_eq!(read_sheet(b"", Declared::Any), Err(FileError::Empty));
        assert_eq!(
            read_sheet(b"nome;telefone\n", Declared::Any),
            Err(FileError::NoRows)
        );
        assert_eq!(
            read_sheet(b"nome;telefone\nJos\xe9;1\n", Declared::Any),
            Err(FileError::NotUtf8 { line: 2 })
        );
        assert_eq!(
            read_sheet(b"%PDF-1.4\0\0", Declared::Any),
            Err(FileError::UnknownFormat)
        );
        assert_eq!(
            read_sheet(b"\xD0\xCF\x11\xE0\xA1\xB1", Declared::Any),
            Err(FileError::OldExcel)
        );
        assert!(matches!(
            read_sheet(b"PK\x03\x04garbage", Declared::Any),
            Err(FileError::Xlsx { .. })
        ));
        assert_eq!(
            read_sheet(b"a;b\n1;2\n", Declared::Xlsx),
            Err(FileError::WrongType { declared: "XLSX" })
        );
        let mut many = String::from("nome;telefone\n");
        for i in 0..=MAX_ROWS {
            many.push_str(&format!("n{i};1\n"));
        }
        assert_eq!(
            read_sheet(many.as_bytes(), Declared::Any),
            Err(FileError::TooManyRows)
        );
        assert_eq!(
            read_sheet(&vec![b'a'; FILE_LIMIT + 1], Declared::Any),
            Err(FileError::TooLarge)
        );
    }

    #[test]
    fn the_downloadable_template_is_valid() {
        let s = read_sheet(TEMPLATE_CSV.as_bytes(), Declared::Any).unwrap();
        let cols = Columns::of(&s.header).unwrap();
        let site = SiteSettings {
            id: vetric_store::SiteId(1),
            slug: "s".into(),
            name: "S".into(),
            timezone: chrono_tz::America::Sao_Paulo,
            poll_interval: std::time::Duration::from_secs(10),
            offline_after: std::time::Duration::from_secs(600),
        };
        let known = Known {
            tags: Vec::new(),
            residents: Vec::new(),
        };
        let report = check_rows(&site, &s, &cols, &known);
        assert_eq!((report.valid(), report.invalid()), (2, 0), "{report:?}");
        assert_eq!(report.rows[0].import.as_ref().unwrap().tags.len(), 2);
    }

    #[test]
    fn a_zip_that_unpacks_past_the_limit_is_refused() {
        use std::io::Write;
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(
            "xl/worksheets/sheet1.xml",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(&vec![b'a'; 3 << 20]).unwrap();
        w.finish().unwrap();
        let bytes = out.into_inner();
        assert!(bytes.len() < 64 * 1024, "a small file: {}", bytes.len());
        assert_eq!(check_zip(&bytes, 2 << 20), Err(FileError::XlsxTooBig));
        assert_eq!(check_zip(&bytes, 4 << 20), Ok(()));
    }

    #[test]
    fn file_names_are_only_shown() {
        assert_eq!(shown_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(
            shown_name(Some("C:\\x\\mor\u{7}adores.csv")),
            "moradores.csv"
        );
        assert_eq!(shown_name(None), "");
    }

    proptest::proptest! {
        /// Any bytes: an answer (a sheet or a FileError), never a panic (RELIABILITY.md R7's
        /// bounded stand-in for the import fuzz target).
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            if let Ok(s) = read_sheet(&bytes, Declared::Any) {
                let _ = Columns::of(&s.header);
            }
        }

        #[test]
        fn any_text_never_panics(text in "[a-zA-Z0-9;,\"\n\r |-]{0,400}") {
            if let Ok(s) = read_sheet(text.as_bytes(), Declared::Any) {
                let _ = Columns::of(&s.header);
            }
        }
    }
}
