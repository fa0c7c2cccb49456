//! The vendor's XLSX export, read with calamine (STACK.md §21) into the domain's
//! [`CellValue`]s and handed to [`vetric_domain::vendor_export::map_sheet`], which finds the
//! columns by name and answers the per-row [`ImportReport`].
//!
//! An upload is untrusted: the file is refused above [`MAX_EXPORT_BYTES`], cells are streamed
//! (not loaded as one range) and the sheet is refused as soon as it has more than
//! [`MAX_EXPORT_ROWS`] rows, so a zip bomb of empty-looking rows cannot exhaust memory; cells
//! beyond column [`MAX_COLUMNS`] are ignored (the export has about ten); before that, the zip
//! is unpacked once under [`MAX_UNPACKED_BYTES`] (bytes really produced, not declared). Only the first sheet
//! is read, as BILLING.md says. Rows are numbered as the user sees them in the spreadsheet
//! (the sheet's first row may be below row 1, hence `first_row`).

use calamine::{DataRef, Reader, Xlsx, XlsxError, open_workbook_from_rs};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;
use vetric_domain::vendor_export::{HEADER_SEARCH_ROWS, map_sheet};
use vetric_domain::{CellValue, ImportFileError, ImportReport};

/// The largest export accepted (a month of a large site is well under 1 MiB).
pub const MAX_EXPORT_BYTES: u64 = 5 * 1024 * 1024;
/// The most rows (header included) read from the sheet.
pub const MAX_EXPORT_ROWS: usize = 20_000;
/// Cells right of this column (0-based) are ignored.
pub const MAX_COLUMNS: u32 = 256;
/// The most bytes the whole export may unpack to. A 20,000-row export unpacks to about
/// 10 MiB; more is a zip bomb or not the export.
pub const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;
/// Members of the zip (a plain workbook has about ten).
pub const MAX_ZIP_ENTRIES: usize = 500;

/// Why an export was refused as a whole (nothing is imported).
#[derive(Debug, thiserror::Error)]
pub enum ExportReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the file has {size} bytes; the most accepted is {max} (5 MiB): export a shorter period"
    )]
    TooLarge { size: u64, max: u64 },
    #[error("the file is an old .xls workbook, not .xlsx: save it as .xlsx (Excel 2007 or later)")]
    OldXls,
    #[error("the file is not an XLSX workbook ({0})")]
    NotXlsx(String),
    #[error("the workbook has no sheet")]
    NoSheet,
    #[error("the first sheet has more than {max} rows: export a shorter period")]
    TooManyRows { max: usize },
    #[error("the workbook unpacks to more than {max} bytes (a zip bomb, or not the export)")]
    TooLargeUnpacked { max: u64 },
    #[error("the first sheet is not the vendor's export: {0}")]
    Sheet(#[from] ImportFileError),
}

impl ExportReadError {
    /// The reason in pt-BR, for the import page.
    pub fn message_pt_br(&self) -> String {
        match self {
            Self::Io { .. } => "não foi possível ler o arquivo enviado".to_owned(),
            Self::TooLarge { .. } => {
                "o arquivo passa de 5 MiB; exporte um período menor".to_owned()
            }
            Self::OldXls => {
                "o arquivo está no formato .xls antigo; salve-o como .xlsx e envie de novo"
                    .to_owned()
            }
            Self::NotXlsx(_) => {
                "o arquivo não é uma planilha .xlsx; envie a exportação de recargas do \
                 fornecedor"
                    .to_owned()
            }
            Self::NoSheet => "a planilha não tem nenhuma aba".to_owned(),
            Self::TooManyRows { max } => {
                format!("a planilha tem mais de {max} linhas; exporte um período menor")
            }
            Self::TooLargeUnpacked { max } => format!(
                "a planilha descompactada passa de {} MiB (arquivo suspeito); exporte de novo \
                 o relatório de recargas do fornecedor",
                max / 1024 / 1024
            ),
            Self::Sheet(e) => e.message_pt_br(),
        }
    }
}

fn cell_value(d: &DataRef<'_>) -> CellValue {
    match d {
        DataRef::Empty => CellValue::Empty,
        DataRef::String(s) => CellValue::String(s.clone()),
        DataRef::SharedString(s) => CellValue::String((*s).to_owned()),
        DataRef::Float(f) => CellValue::Number(*f),
        DataRef::Int(i) => CellValue::Int(*i),
        DataRef::Bool(b) => CellValue::Bool(*b),
        DataRef::DateTime(dt) if dt.is_duration() => match dt.as_duration() {
            // calamine rounds to the millisecond; an hh:mm:ss cell is whole seconds.
            Some(d) => CellValue::Duration((d.num_milliseconds() as f64 / 1000.0).round() as i64),
            None => CellValue::Error("duração inválida".to_owned()),
        },
        DataRef::DateTime(dt) => match dt.as_datetime() {
            Some(t) => CellValue::DateTime(t),
            None => CellValue::Error("data inválida".to_owned()),
        },
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => CellValue::String(s.clone()),
        DataRef::Error(e) => CellValue::Error(e.to_string()),
    }
}

fn not_xlsx(e: XlsxError) -> ExportReadError {
    ExportReadError::NotXlsx(e.to_string())
}

/// Unpacks every member of the zip once, counting the bytes actually produced (declared sizes
/// can lie), and refuses the file past [`MAX_UNPACKED_BYTES`] or [`MAX_ZIP_ENTRIES`] before
/// calamine sees it.
fn check_zip(bytes: &[u8]) -> Result<(), ExportReadError> {
    let bad = |e: zip::result::ZipError| ExportReadError::NotXlsx(format!("invalid zip: {e}"));
    let too_big = ExportReadError::TooLargeUnpacked {
        max: MAX_UNPACKED_BYTES,
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(bad)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(too_big);
    }
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        if entry.size() > MAX_UNPACKED_BYTES {
            return Err(too_big);
        }
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| ExportReadError::NotXlsx(format!("invalid compressed data: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_UNPACKED_BYTES {
                return Err(too_big);
            }
        }
    }
    Ok(())
}

/// The first sheet's rows from `bytes` and the sheet row number of the first of them.
fn first_sheet(bytes: &[u8]) -> Result<(Vec<Vec<CellValue>>, u32), ExportReadError> {
    let size = bytes.len() as u64;
    if size > MAX_EXPORT_BYTES {
        return Err(ExportReadError::TooLarge {
            size,
            max: MAX_EXPORT_BYTES,
        });
    }
    // The OLE2 signature of .xls: say so rather than "not a zip".
    if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Err(ExportReadError::OldXls);
    }
    if !bytes.starts_with(b"PK") {
        return Err(ExportReadError::NotXlsx(
            "it is not a zip container".to_owned(),
        ));
    }
    check_zip(bytes)?;
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).map_err(not_xlsx)?;
    let name = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or(ExportReadError::NoSheet)?;
    let mut reader = book.worksheet_cells_reader(&name).map_err(not_xlsx)?;
    let mut rows: BTreeMap<u32, Vec<(u32, CellValue)>> = BTreeMap::new();
    while let Some(cell) = reader.next_cell().map_err(not_xlsx)? {
        let (r, c) = cell.get_position();
        let value = cell_value(cell.get_value());
        if c >= MAX_COLUMNS || value == CellValue::Empty {
            continue;
        }
        rows.entry(r).or_default().push((c, value));
        if rows.len() > MAX_EXPORT_ROWS {
            return Err(ExportReadError::TooManyRows {
                max: MAX_EXPORT_ROWS,
            });
        }
    }
    let Some(first) = rows.keys().next().copied() else {
        return Ok((Vec::new(), 1));
    };
    let last = rows.keys().next_back().copied().unwrap_or(first);
    // At most MAX_EXPORT_ROWS non-empty rows, but the empty ones between them count too.
    let span = (last - first) as usize + 1;
    if span > MAX_EXPORT_ROWS + HEADER_SEARCH_ROWS {
        return Err(ExportReadError::TooManyRows {
            max: MAX_EXPORT_ROWS,
        });
    }
    let mut sheet = vec![Vec::new(); span];
    for (r, cells) in rows {
        let width = cells
            .iter()
            .map(|(c, _)| *c as usize + 1)
            .max()
            .unwrap_or(0);
        let mut row = vec![CellValue::Empty; width];
        for (c, v) in cells {
            row[c as usize] = v;
        }
        sheet[(r - first) as usize] = row;
    }
    Ok((sheet, first + 1))
}

/// Reads the vendor's export from `bytes` (an uploaded body) with times in the site's `tz`.
pub fn read_export(bytes: &[u8], tz: Tz) -> Result<ImportReport, ExportReadError> {
    let (sheet, first_row) = first_sheet(bytes)?;
    Ok(map_sheet(&sheet, tz, first_row)?)
}

/// Reads the vendor's export from a file, refusing a too-large one before reading it.
pub fn read_export_file(path: &Path, tz: Tz) -> Result<ImportReport, ExportReadError> {
    let io = |source| ExportReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_EXPORT_BYTES {
        return Err(ExportReadError::TooLarge {
            size,
            max: MAX_EXPORT_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_EXPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    read_export(&bytes, tz)
}
