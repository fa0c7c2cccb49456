//! The vendor's XLSX export of charging sessions, turned into [`SessionRecord`]s with a report of
//! every row that could not be read (BILLING.md "Import of the vendor's export").
//!
//! This room is the pure half of the import: the I/O crate opens the workbook (calamine), maps
//! each cell of the first sheet into a [`CellValue`] and hands over the header row and the data
//! rows; [`map_rows`] (or [`map_sheet`], which also finds the header row) finds the columns by
//! header name, reads every row and answers an [`ImportReport`] (sessions to import once the
//! user confirms, and one [`RowProblem`] per problem found) or, when the sheet is not such an
//! export at all, one [`ImportFileError`] and nothing to import. The checks of BILLING.md
//! rule 8 that need a tariff (energy ≤ 0, above the maximum, end not after start) belong to
//! the statement ([`crate::statement`]), which lists
//! such sessions under the month of their start; here a row is refused only when something in
//! it cannot be read, because then it has no month to be listed under.
//!
//! What the vendor writes, and how it is read:
//! - Columns `Recarga(ID)`, `Estação`, `Usuário(Tag)`, `Usuário(Nome)` (optional),
//!   `Início - Fim`, `Energia(kWh)`, `Tempo de ociosidade`, in any order, with any other
//!   columns. Header names are compared without case, accents or spaces (`Usuario (tag)` is
//!   `Usuário(Tag)`).
//! - `Início - Fim`: `DD/MM/YYYY HH:mm[:ss] - DD/MM/YYYY HH:mm[:ss]`, local time of the site.
//!   Without seconds, the session's [`TimePrecision`] is the minute, so comparing it with
//!   vetric's own record does not report the missing seconds as a disagreement.
//! - `Energia(kWh)`: pt-BR numbers, `12,345` or `1.234,567`: the dot groups thousands, the comma
//!   starts the decimals (the legacy importer read `1.234,56` as 1.234). At most 3 decimals
//!   (Wh). A dot used as a decimal point (`12.5`) is refused with a hint rather than guessed.
//! - `Tempo de ociosidade`: `HH:mm:ss` (hours may exceed 24).
//!
//! Numbers in cells. calamine gives a numeric cell as an `f64`. XLSX stores numbers as decimal
//! text, which calamine parses to the nearest `f64`; Rust prints an `f64` as the *shortest*
//! decimal that parses back to the same `f64`, and never in exponent form. So a cell that holds
//! 12.345 is read back as exactly `"12.345"`, which [`Decimal`] parses exactly: the float is
//! never multiplied or rounded in binary. A value that still has more than 3 decimals after
//! that (a formula's `0.1 + 0.2` = `0.30000000000000004`) is taken as its 3-decimal value only
//! when it lies within 10⁻⁹ kWh of it — float noise, far below a Wh — and is refused otherwise.
//! An integral `f64` id is exact up to 2⁵³, beyond which it is refused.
//!
//! Decisions where BILLING.md is silent:
//! - Empty rows (every cell empty or blank) are skipped: spreadsheets end in them.
//! - An empty `Tempo de ociosidade` is no idle time; an empty `Usuário(Tag)` is a session
//!   without tag (it goes to "sem morador"); an empty `Estação` is kept as empty.
//! - A vendor id seen on an earlier row is a row problem on the later row (the first is kept).
//! - A local time that happened twice (a DST fall-back) is taken at its first occurrence; one
//!   that did not exist (a spring-forward gap) is a row problem.
//! - At most [`MAX_ROWS`] data rows; a larger sheet is refused as a whole.

use crate::statement::{SessionRecord, SessionSource, TimePrecision};
use crate::tag::{Tag, TagError};
use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;

/// The most data rows one import reads (a month of a large site is a few thousand).
pub const MAX_ROWS: usize = 200_000;

pub const COL_ID: &str = "Recarga(ID)";
pub const COL_STATION: &str = "Estação";
pub const COL_TAG: &str = "Usuário(Tag)";
pub const COL_NAME: &str = "Usuário(Nome)";
pub const COL_PERIOD: &str = "Início - Fim";
pub const COL_ENERGY: &str = "Energia(kWh)";
pub const COL_IDLE: &str = "Tempo de ociosidade";

/// The columns a sheet must have to be the vendor's export.
pub const REQUIRED_COLUMNS: [&str; 6] = [
    COL_ID,
    COL_STATION,
    COL_TAG,
    COL_PERIOD,
    COL_ENERGY,
    COL_IDLE,
];

/// One cell as the I/O crate reads it (from calamine's `Data`).
///
/// Mapping: `Data::String` → `String`; `Data::Float` → `Number`; `Data::Int` → `Int`;
/// `Data::Bool` → `Bool`; `Data::DateTime` → `Duration` when it is a duration
/// (`is_duration()`, seconds from `as_duration()`), else `DateTime` (`as_datetime()`);
/// `Data::DateTimeIso` / `DurationIso` → `String`; `Data::Error` → `Error`; `Data::Empty` →
/// `Empty`.
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    Empty,
    String(String),
    Number(f64),
    Int(i64),
    Bool(bool),
    DateTime(NaiveDateTime),
    /// Whole seconds.
    Duration(i64),
    Error(String),
}

impl CellValue {
    fn is_blank(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::String(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    /// The value as a person would read it in the report.
    pub fn display(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::String(s) => s.clone(),
            Self::Number(f) => f.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => if *b { "VERDADEIRO" } else { "FALSO" }.to_owned(),
            Self::DateTime(dt) => dt.format("%d/%m/%Y %H:%M:%S").to_string(),
            Self::Duration(s) => format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60),
            Self::Error(e) => e.clone(),
        }
    }
}

/// One problem of one row: the row is not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    /// The spreadsheet's row number (the header is row 1).
    pub row: u32,
    /// The column's name as BILLING.md writes it.
    pub column: String,
    /// The cell as read.
    pub value: String,
    pub message_pt_br: String,
}

/// One row that was not read, as a whole: what could still be read of it (to list it under
/// the month of its start when that was readable, BILLING.md rule 8) and its cells as they
/// were, to show the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// The spreadsheet's row number (the header is row 1).
    pub row: u32,
    /// The vendor id, when it could be read.
    pub vendor_id: Option<i64>,
    /// The start, when the period could be read.
    pub start: Option<DateTime<Utc>>,
    /// The known columns' cells as read, `(column as BILLING.md writes it, value)`.
    pub raw: Vec<(String, String)>,
}

/// What an export holds, row by row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The rows that were read, in sheet order, to import once the user confirms.
    pub sessions: Vec<SessionRecord>,
    /// Every problem of the rows that were not read (a row may have several).
    pub rejected_rows: Vec<RowProblem>,
    /// The rows that were not read, one each, in sheet order (their problems are in
    /// `rejected_rows`).
    #[serde(default)]
    pub rejected: Vec<RejectedRow>,
    /// Data rows that were not empty.
    pub rows_read: u32,
}

impl ImportReport {
    /// The number of rows refused (distinct rows with a problem).
    pub fn rows_refused(&self) -> usize {
        let mut rows: Vec<u32> = self.rejected_rows.iter().map(|p| p.row).collect();
        rows.dedup();
        rows.len()
    }
}

/// Why a sheet is refused as a whole (nothing is imported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportFileError {
    #[error("the sheet has none of the export's columns ({})", REQUIRED_COLUMNS.join(", "))]
    NotAnExport,
    #[error("the sheet lacks the column(s) {}", .0.join(", "))]
    MissingColumns(Vec<String>),
    #[error("the column {0} appears more than once")]
    DuplicateColumn(String),
    #[error("the sheet has more than {max} rows")]
    TooManyRows { max: usize },
}

impl ImportFileError {
    pub fn message_pt_br(&self) -> String {
        match self {
            Self::NotAnExport => format!(
                "a planilha não parece a exportação de recargas do fornecedor: nenhuma das \
                 colunas {} foi encontrada na primeira linha da primeira aba",
                REQUIRED_COLUMNS.join(", ")
            ),
            Self::MissingColumns(cols) => format!(
                "faltam as colunas {} na primeira linha da planilha; exporte novamente o \
                 relatório de recargas do fornecedor sem remover colunas",
                cols.join(", ")
            ),
            Self::DuplicateColumn(col) => {
                format!("a coluna {col} aparece mais de uma vez; deixe apenas uma")
            }
            Self::TooManyRows { max } => {
                format!("a planilha tem mais de {max} linhas; exporte um período menor")
            }
        }
    }
}

/// A header name without case, accents, spaces or invisible characters.
fn header_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{feff}')
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            '–' | '—' => '-',
            other => other,
        })
        .collect()
}

/// Where each known column is.
struct Columns {
    id: usize,
    station: usize,
    tag: usize,
    name: Option<usize>,
    period: usize,
    energy: usize,
    idle: usize,
}

fn find_columns(header: &[String]) -> Result<Columns, ImportFileError> {
    let mut found: HashMap<&'static str, usize> = HashMap::new();
    let known = [
        COL_ID,
        COL_STATION,
        COL_TAG,
        COL_NAME,
        COL_PERIOD,
        COL_ENERGY,
        COL_IDLE,
    ];
    for (i, h) in header.iter().enumerate() {
        let key = header_key(h);
        if let Some(col) = known.iter().find(|k| header_key(k) == key)
            && found.insert(col, i).is_some()
        {
            return Err(ImportFileError::DuplicateColumn((*col).to_owned()));
        }
    }
    let missing: Vec<String> = REQUIRED_COLUMNS
        .iter()
        .filter(|c| !found.contains_key(*c))
        .map(|c| (*c).to_owned())
        .collect();
    if missing.len() == REQUIRED_COLUMNS.len() {
        return Err(ImportFileError::NotAnExport);
    }
    let get = |c: &str| found.get(c).copied();
    match (
        get(COL_ID),
        get(COL_STATION),
        get(COL_TAG),
        get(COL_PERIOD),
        get(COL_ENERGY),
        get(COL_IDLE),
    ) {
        (Some(id), Some(station), Some(tag), Some(period), Some(energy), Some(idle)) => {
            Ok(Columns {
                id,
                station,
                tag,
                name: get(COL_NAME),
                period,
                energy,
                idle,
            })
        }
        _ => Err(ImportFileError::MissingColumns(missing)),
    }
}

/// A cell's problem, before it knows its row.
struct CellProblem {
    column: &'static str,
    value: String,
    message_pt_br: String,
}

type CellResult<T> = Result<T, String>;

/// 2⁵³: the largest integer below which every integer is exact in an `f64`.
const F64_EXACT_INT: f64 = 9_007_199_254_740_992.0;

fn read_id(cell: &CellValue) -> CellResult<i64> {
    const HINT: &str = "deve ser o número da recarga, por exemplo 48213";
    match cell {
        CellValue::Int(i) => Ok(*i),
        CellValue::Number(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < F64_EXACT_INT => {
            // Exact: integral and below 2⁵³ (module docs).
            Ok(*f as i64)
        }
        CellValue::String(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse()
                    .map_err(|_| format!("número grande demais; {HINT}"))
            } else if t.is_empty() {
                Err(format!("está vazio; {HINT}"))
            } else {
                Err(format!("não é um número; {HINT}"))
            }
        }
        CellValue::Empty => Err(format!("está vazio; {HINT}")),
        _ => Err(format!("não é um número; {HINT}")),
    }
}

fn read_text(cell: &CellValue) -> Option<String> {
    let s = match cell {
        CellValue::String(s) => s.trim().to_owned(),
        CellValue::Int(i) => i.to_string(),
        CellValue::Number(f) if f.is_finite() => f.to_string(),
        CellValue::Empty => String::new(),
        other => other.display(),
    };
    (!s.is_empty()).then_some(s)
}

fn read_tag(cell: &CellValue) -> CellResult<Option<Tag>> {
    // A numeric tag may arrive as a number; its text is the tag (leading zeros, if the vendor
    // ever had any, are lost by the spreadsheet, not here).
    let text = read_text(cell).unwrap_or_default();
    Tag::parse_optional(&text).map_err(|e| match e {
        TagError::Empty => "está vazio".to_owned(),
        TagError::TooLong { max } => format!("tem mais de {max} caracteres"),
        TagError::BadCharacter(c) => format!("tem um caractere inválido ({c:?})"),
    })
}

/// `D/M/YYYY H:mm[:ss]` → (local time, had seconds).
fn parse_local(s: &str) -> Option<(NaiveDateTime, bool)> {
    let mut parts = s.split_whitespace();
    let (d, t) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let digits = |x: &str, min: usize, max: usize| {
        (min..=max).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    let dp: Vec<&str> = d.split('/').collect();
    let [day, month, year] = dp.as_slice() else {
        return None;
    };
    if !digits(day, 1, 2) || !digits(month, 1, 2) || !digits(year, 4, 4) {
        return None;
    }
    let tp: Vec<&str> = t.split(':').collect();
    let (h, m, sec) = match tp.as_slice() {
        [h, m] => (*h, *m, None),
        [h, m, s] => (*h, *m, Some(*s)),
        _ => return None,
    };
    if !digits(h, 1, 2) || !digits(m, 2, 2) || sec.is_some_and(|s| !digits(s, 2, 2)) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)?;
    let time = NaiveTime::from_hms_opt(
        h.parse().ok()?,
        m.parse().ok()?,
        sec.map_or(Some(0), |s| s.parse().ok())?,
    )?;
    Some((date.and_time(time), sec.is_some()))
}

fn to_utc(tz: Tz, local: NaiveDateTime) -> CellResult<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Ok(a.min(b).with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "o horário {} não existiu no fuso {} (mudança de horário de verão)",
            local.format("%d/%m/%Y %H:%M:%S"),
            tz.name()
        )),
    }
}

fn read_period(
    cell: &CellValue,
    tz: Tz,
) -> CellResult<(DateTime<Utc>, DateTime<Utc>, TimePrecision)> {
    const HINT: &str = "escreva DD/MM/AAAA HH:mm[:ss] - DD/MM/AAAA HH:mm[:ss], por exemplo 05/03/2026 16:30 - 05/03/2026 18:30";
    let text = match cell {
        CellValue::String(s) => s.trim(),
        CellValue::Empty => return Err(format!("está vazio; {HINT}")),
        _ => return Err(format!("não é um período de início e fim; {HINT}")),
    };
    if text.is_empty() {
        return Err(format!("está vazio; {HINT}"));
    }
    // Dates are written with '/', so the only dash separates start and end.
    let pieces: Vec<&str> = text.split(['-', '–', '—']).collect();
    let [start, end] = pieces.as_slice() else {
        return Err(format!(
            "não tem início e fim separados por \" - \"; {HINT}"
        ));
    };
    let (Some((start, s_secs)), Some((end, e_secs))) = (parse_local(start), parse_local(end))
    else {
        let bad = if parse_local(start).is_none() {
            "o início"
        } else {
            "o fim"
        };
        return Err(format!(
            "não foi possível ler {bad} como data e hora; {HINT}"
        ));
    };
    let precision = if s_secs && e_secs {
        TimePrecision::Second
    } else {
        TimePrecision::Minute
    };
    Ok((to_utc(tz, start)?, to_utc(tz, end)?, precision))
}

/// A pt-BR number: optional sign, digits grouped by '.' in threes or not grouped, optional ','
/// and decimals.
fn parse_pt_br_decimal(s: &str) -> CellResult<Decimal> {
    const HINT: &str = "escreva em kWh com vírgula decimal, por exemplo 12,345 ou 1.234,567";
    let t = s.trim();
    let t = t
        .strip_suffix("kWh")
        .or_else(|| t.strip_suffix("kwh"))
        .unwrap_or(t)
        .trim_end();
    let (sign, body) = match t.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", t),
    };
    let (int_part, frac) = match body.split_once(',') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let all_digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let groups: Vec<&str> = int_part.split('.').collect();
    let int_ok = match groups.as_slice() {
        [single] => all_digits(single),
        [first, rest @ ..] => {
            all_digits(first)
                && first.len() <= 3
                && rest.iter().all(|g| g.len() == 3 && all_digits(g))
        }
        [] => false,
    };
    let frac_ok = frac.is_none_or(all_digits);
    if !int_ok || !frac_ok {
        // "12.5": a dot as the decimal point, which pt-BR does not use.
        let dotted =
            groups.len() == 2 && frac.is_none() && all_digits(groups[0]) && all_digits(groups[1]);
        return Err(if dotted {
            format!("o ponto separa milhares em pt-BR; para decimais use vírgula ({HINT})")
        } else {
            format!("não é um número; {HINT}")
        });
    }
    let plain = format!(
        "{sign}{}{}",
        groups.concat(),
        frac.map(|f| format!(".{f}")).unwrap_or_default()
    );
    Decimal::from_str(&plain).map_err(|_| format!("número fora do intervalo; {HINT}"))
}

/// kWh (at most 3 decimals) → Wh.
fn kwh_to_wh(kwh: Decimal) -> CellResult<i64> {
    if kwh.normalize().scale() > 3 {
        return Err("tem mais de 3 casas decimais (a energia é registrada em Wh)".to_owned());
    }
    let wh = kwh
        .checked_mul(Decimal::from(1000))
        .ok_or_else(|| "número fora do intervalo".to_owned())?;
    i64::try_from(wh).map_err(|_| "número fora do intervalo".to_owned())
}

/// A numeric cell's kWh as Wh, through its shortest decimal text (module docs).
fn f64_kwh_to_wh(f: f64) -> CellResult<i64> {
    if !f.is_finite() {
        return Err("não é um número".to_owned());
    }
    let text = f.to_string();
    let exact = Decimal::from_str(&text).map_err(|_| "número fora do intervalo".to_owned())?;
    let rounded = exact.round_dp(3);
    if (exact - rounded).abs() > Decimal::new(1, 9) {
        return Err("tem mais de 3 casas decimais (a energia é registrada em Wh)".to_owned());
    }
    kwh_to_wh(rounded)
}

fn read_energy(cell: &CellValue) -> CellResult<i64> {
    match cell {
        CellValue::String(s) if s.trim().is_empty() => Err("está vazio".to_owned()),
        CellValue::String(s) => kwh_to_wh(parse_pt_br_decimal(s)?),
        CellValue::Number(f) => f64_kwh_to_wh(*f),
        CellValue::Int(i) => i
            .checked_mul(1000)
            .ok_or_else(|| "número fora do intervalo".to_owned()),
        CellValue::Empty => Err("está vazio".to_owned()),
        _ => Err("não é um número de kWh".to_owned()),
    }
}

/// `H+:mm[:ss]` → seconds.
fn parse_elapsed(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] if s.len() == 2 => (*h, *m, *s),
        _ => return None,
    };
    let digits = |x: &str, min: usize, max: usize| {
        (min..=max).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1, 6) || !digits(m, 2, 2) || !digits(sec, 1, 2) {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    (m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

fn read_idle(cell: &CellValue) -> CellResult<i64> {
    const HINT: &str = "escreva HH:mm:ss, por exemplo 00:25:00";
    let day_fraction = |days: f64| {
        // Excel's time cells are fractions of a day; an hh:mm:ss value is whole seconds, so
        // rounding to the nearest second only removes float noise.
        let secs = (days * 86_400.0).round();
        if secs.is_finite() && (0.0..F64_EXACT_INT).contains(&secs) {
            Ok(secs as i64)
        } else {
            Err(format!("não é um tempo válido; {HINT}"))
        }
    };
    match cell {
        CellValue::Empty => Ok(0),
        CellValue::String(s) if s.trim().is_empty() => Ok(0),
        CellValue::String(s) => parse_elapsed(s).ok_or_else(|| format!("não é um tempo; {HINT}")),
        CellValue::Duration(secs) if *secs >= 0 => Ok(*secs),
        CellValue::Number(f) => day_fraction(*f),
        CellValue::Int(days) => day_fraction(*days as f64),
        CellValue::DateTime(dt) => {
            // A time cell that calamine rendered as a date: Excel's serial 0 is 1899-12-31
            // for the first 59 days (its 1900 leap-year quirk), so an elapsed time shows as a
            // date in the first weeks of 1900.
            let epoch = NaiveDate::from_ymd_opt(1899, 12, 31).and_then(|d| d.and_hms_opt(0, 0, 0));
            let limit = NaiveDate::from_ymd_opt(1900, 2, 28).and_then(|d| d.and_hms_opt(0, 0, 0));
            match (epoch, limit) {
                (Some(epoch), Some(limit)) if *dt >= epoch && *dt < limit => {
                    Ok((*dt - epoch).num_seconds())
                }
                _ => Err(format!("é uma data, não um tempo; {HINT}")),
            }
        }
        _ => Err(format!("não é um tempo; {HINT}")),
    }
}

/// Read one non-empty row.
/// A row that was not read: its problems, and its id and start when those were readable.
struct RowFailure {
    problems: Vec<CellProblem>,
    vendor_id: Option<i64>,
    start: Option<DateTime<Utc>>,
}

fn read_row(
    cols: &Columns,
    row: &[CellValue],
    tz: Tz,
    line: u32,
) -> Result<SessionRecord, RowFailure> {
    let empty = CellValue::Empty;
    let cell = |i: usize| row.get(i).unwrap_or(&empty);
    let mut problems = Vec::new();
    let mut check = |column: &'static str, i: usize, message: String| {
        problems.push(CellProblem {
            column,
            value: cell(i).display(),
            message_pt_br: message,
        });
    };
    let id = read_id(cell(cols.id)).map_err(|m| check(COL_ID, cols.id, m));
    let tag = read_tag(cell(cols.tag)).map_err(|m| check(COL_TAG, cols.tag, m));
    let period = read_period(cell(cols.period), tz).map_err(|m| check(COL_PERIOD, cols.period, m));
    let energy = read_energy(cell(cols.energy)).map_err(|m| check(COL_ENERGY, cols.energy, m));
    let idle = read_idle(cell(cols.idle)).map_err(|m| check(COL_IDLE, cols.idle, m));
    match (id, tag, period, energy, idle) {
        (Ok(vendor_id), Ok(tag), Ok((start, stop, precision)), Ok(energy_wh), Ok(idle_seconds)) => {
            Ok(SessionRecord {
                vendor_id,
                charger: read_text(cell(cols.station)).unwrap_or_default(),
                tag,
                start,
                stop,
                energy_wh,
                idle_seconds,
                source: SessionSource::Imported,
                precision,
                import_line: Some(line),
                user_name: cols.name.and_then(|i| read_text(cell(i))),
            })
        }
        (id, _, period, _, _) => Err(RowFailure {
            problems,
            vendor_id: id.ok(),
            start: period.ok().map(|(start, _, _)| start),
        }),
    }
}

/// The known columns' cells of `row`, as read, for the report of a row that was not read.
fn raw_cells(cols: &Columns, row: &[CellValue]) -> Vec<(String, String)> {
    let mut out = vec![
        (COL_ID, cols.id),
        (COL_STATION, cols.station),
        (COL_TAG, cols.tag),
    ];
    if let Some(name) = cols.name {
        out.push((COL_NAME, name));
    }
    out.extend([
        (COL_PERIOD, cols.period),
        (COL_ENERGY, cols.energy),
        (COL_IDLE, cols.idle),
    ]);
    out.into_iter()
        .map(|(c, i)| {
            let value = row.get(i).map(CellValue::display).unwrap_or_default();
            (c.to_owned(), value)
        })
        .collect()
}

/// Map the export's rows into sessions and row problems (module docs). `header` is the sheet's
/// first row; `rows` the rows after it (row 2 onwards); `tz` the site's zone, in which the
/// export's times are written.
pub fn map_rows(
    header: &[String],
    rows: &[Vec<CellValue>],
    tz: Tz,
) -> Result<ImportReport, ImportFileError> {
    map_rows_at(header, 1, rows, tz)
}

/// How many rows from the top [`map_sheet`] looks at for the header: the vendor's export has it
/// in the first row, a sheet saved again by hand may have a title above it.
pub const HEADER_SEARCH_ROWS: usize = 10;

/// Map a whole sheet whose first row is the sheet's row `first_row` (1 when the data starts at
/// A1; with calamine, `range.start()`'s row + 1, since a range starts at its first non-empty
/// cell). The header is the row, among the first [`HEADER_SEARCH_ROWS`], that names the most of
/// the export's columns (the first such row on a tie); rows are reported with the numbers the
/// user sees in the spreadsheet.
pub fn map_sheet(
    sheet: &[Vec<CellValue>],
    tz: Tz,
    first_row: u32,
) -> Result<ImportReport, ImportFileError> {
    let known: Vec<String> = [
        COL_ID,
        COL_STATION,
        COL_TAG,
        COL_NAME,
        COL_PERIOD,
        COL_ENERGY,
        COL_IDLE,
    ]
    .iter()
    .map(|c| header_key(c))
    .collect();
    let as_header = |row: &[CellValue]| -> Vec<String> {
        row.iter().map(|c| c.display().trim().to_owned()).collect()
    };
    let score = |row: &[CellValue]| {
        row.iter()
            .filter(|c| known.contains(&header_key(&c.display())))
            .count()
    };
    let mut best: Option<(usize, usize)> = None; // (index, score)
    for (i, row) in sheet.iter().take(HEADER_SEARCH_ROWS).enumerate() {
        let n = score(row);
        if n > 0 && best.is_none_or(|(_, b)| n > b) {
            best = Some((i, n));
        }
    }
    let Some((at, _)) = best else {
        return Err(ImportFileError::NotAnExport);
    };
    // HEADER_SEARCH_ROWS keeps `at` tiny.
    let header_line = first_row.saturating_add(u32::try_from(at).unwrap_or(u32::MAX));
    map_rows_at(&as_header(&sheet[at]), header_line, &sheet[at + 1..], tz)
}

fn map_rows_at(
    header: &[String],
    header_line: u32,
    rows: &[Vec<CellValue>],
    tz: Tz,
) -> Result<ImportReport, ImportFileError> {
    if rows.len() > MAX_ROWS {
        return Err(ImportFileError::TooManyRows { max: MAX_ROWS });
    }
    let cols = find_columns(header)?;
    let mut sessions: Vec<SessionRecord> = Vec::new();
    let mut rejected_rows = Vec::new();
    let mut rejected = Vec::new();
    let mut first_line_of: HashMap<i64, u32> = HashMap::new();
    let mut rows_read = 0u32;
    for (i, row) in rows.iter().enumerate() {
        if row.iter().all(CellValue::is_blank) {
            continue;
        }
        rows_read += 1;
        // MAX_ROWS keeps this far inside u32.
        let line = header_line.saturating_add(u32::try_from(i + 1).unwrap_or(u32::MAX));
        match read_row(&cols, row, tz, line) {
            Ok(s) => {
                if let Some(first) = first_line_of.get(&s.vendor_id) {
                    rejected_rows.push(RowProblem {
                        row: line,
                        column: COL_ID.to_owned(),
                        value: s.vendor_id.to_string(),
                        message_pt_br: format!(
                            "a recarga {} já aparece na linha {first}; esta linha foi ignorada",
                            s.vendor_id
                        ),
                    });
                    rejected.push(RejectedRow {
                        row: line,
                        vendor_id: Some(s.vendor_id),
                        start: Some(s.start),
                        raw: raw_cells(&cols, row),
                    });
                } else {
                    first_line_of.insert(s.vendor_id, line);
                    sessions.push(s);
                }
            }
            Err(RowFailure {
                problems,
                vendor_id,
                start,
            }) => {
                rejected.push(RejectedRow {
                    row: line,
                    vendor_id,
                    start,
                    raw: raw_cells(&cols, row),
                });
                rejected_rows.extend(problems.into_iter().map(|p| RowProblem {
                    row: line,
                    column: p.column.to_owned(),
                    value: p.value,
                    message_pt_br: p.message_pt_br,
                }));
            }
        }
    }
    Ok(ImportReport {
        sessions,
        rejected_rows,
        rejected,
        rows_read,
    })
}

#[cfg(test)]
mod tests;
