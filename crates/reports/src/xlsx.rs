//! A statement as an XLSX workbook (STACK.md §20): a "Resumo" sheet (one row per apartment,
//! the "sem morador" row, the totals), a "Sessões" sheet (every session, each followed by its
//! peak and off-peak rows), and one sheet per apartment with its sessions.
//!
//! Every figure is a real number with a number format (R$ with two decimals, kWh with three,
//! prices with four), every instant a real date-time in the statement's zone, durations real
//! `[h]:mm:ss` values: a manager can sum and filter them, which text would not allow. The
//! numbers are the domain's exact decimals converted to the nearest `f64` at the very end; the
//! totals are written as the statement's totals (not as formulas), so the file shows exactly
//! what was computed.

use crate::{ReportError, local, zone};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use rust_xlsxwriter::{Format, FormatAlign, Workbook, Worksheet};
use std::collections::BTreeSet;
use vetric_domain::{ApartmentLine, SessionLine, SessionSource, Statement};

/// Excel's Brazilian currency format (locale 0x416 = pt-BR).
const MONEY: &str = "[$R$-416] #,##0.00";
const PRICE: &str = "[$R$-416] #,##0.0000";
const KWH: &str = "#,##0.000";
const MINUTES: &str = "#,##0.00";
const WHEN: &str = "dd/mm/yyyy hh:mm:ss";
const ELAPSED: &str = "[h]:mm:ss";

struct Formats {
    bold: Format,
    header: Format,
    money: Format,
    money_bold: Format,
    price: Format,
    kwh: Format,
    kwh_bold: Format,
    minutes: Format,
    minutes_bold: Format,
    when: Format,
    elapsed: Format,
    int: Format,
    int_bold: Format,
    indent: Format,
}

impl Formats {
    fn new() -> Self {
        let bold = Format::new().set_bold();
        Self {
            header: Format::new()
                .set_bold()
                .set_text_wrap()
                .set_align(FormatAlign::Center),
            money: Format::new().set_num_format(MONEY),
            money_bold: bold.clone().set_num_format(MONEY),
            price: Format::new().set_num_format(PRICE),
            kwh: Format::new().set_num_format(KWH),
            kwh_bold: bold.clone().set_num_format(KWH),
            minutes: Format::new().set_num_format(MINUTES),
            minutes_bold: bold.clone().set_num_format(MINUTES),
            when: Format::new().set_num_format(WHEN),
            elapsed: Format::new().set_num_format(ELAPSED),
            int: Format::new().set_num_format("0"),
            int_bold: bold.clone().set_num_format("0"),
            indent: Format::new().set_indent(1),
            bold,
        }
    }
}

fn num(d: Decimal) -> Result<f64, ReportError> {
    d.to_f64()
        .filter(|f| f.is_finite())
        .ok_or(ReportError::NotANumber(d))
}

/// Seconds as a fraction of a day (Excel's durations).
fn days(seconds: i64) -> f64 {
    seconds as f64 / 86_400.0
}

fn headers(ws: &mut Worksheet, row: u32, names: &[&str], f: &Formats) -> Result<(), ReportError> {
    for (c, name) in names.iter().enumerate() {
        ws.write_string_with_format(row, c as u16, *name, &f.header)?;
    }
    Ok(())
}

const SUMMARY_HEADER: [&str; 10] = [
    "Apartamento",
    "Moradores",
    "Recargas",
    "kWh",
    "kWh ponta",
    "kWh fora de ponta",
    "Energia (R$)",
    "Ociosidade (min)",
    "Taxa de ociosidade (R$)",
    "Total (R$)",
];

#[allow(clippy::too_many_arguments)]
fn summary_row(
    ws: &mut Worksheet,
    row: u32,
    label: &str,
    residents: &str,
    l: (
        u64,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
    ),
    f: &Formats,
    bold: bool,
) -> Result<(), ReportError> {
    let (sessions, kwh, peak, offpeak, energy, idle_min, idle_fee, total) = l;
    let (t, i, k, m, mi) = if bold {
        (
            &f.bold,
            &f.int_bold,
            &f.kwh_bold,
            &f.money_bold,
            &f.minutes_bold,
        )
    } else {
        (&Format::new(), &f.int, &f.kwh, &f.money, &f.minutes)
    };
    ws.write_string_with_format(row, 0, label, t)?;
    ws.write_string(row, 1, residents)?;
    ws.write_number_with_format(row, 2, sessions as f64, i)?;
    ws.write_number_with_format(row, 3, num(kwh)?, k)?;
    ws.write_number_with_format(row, 4, num(peak)?, k)?;
    ws.write_number_with_format(row, 5, num(offpeak)?, k)?;
    ws.write_number_with_format(row, 6, num(energy)?, m)?;
    ws.write_number_with_format(row, 7, num(idle_min)?, mi)?;
    ws.write_number_with_format(row, 8, num(idle_fee)?, m)?;
    ws.write_number_with_format(row, 9, num(total)?, m)?;
    Ok(())
}

fn line_figures(
    l: &ApartmentLine,
) -> (
    u64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
) {
    (
        l.sessions,
        l.kwh,
        l.peak_kwh,
        l.offpeak_kwh,
        l.energy_cost,
        l.idle_minutes,
        l.idle_fee,
        l.total,
    )
}

fn title(
    ws: &mut Worksheet,
    statement: &Statement,
    what: &str,
    f: &Formats,
) -> Result<(), ReportError> {
    let month = statement.month;
    ws.write_string_with_format(
        0,
        0,
        format!(
            "{} — {what} — {:02}/{}",
            statement.site_name,
            month.month(),
            month.year()
        ),
        &f.bold,
    )?;
    Ok(())
}

fn write_summary(
    ws: &mut Worksheet,
    statement: &Statement,
    f: &Formats,
) -> Result<(), ReportError> {
    ws.set_name("Resumo")?;
    title(ws, statement, "Extrato de recargas", f)?;
    headers(ws, 2, &SUMMARY_HEADER, f)?;
    let mut row = 3;
    for l in &statement.lines {
        let residents: Vec<&str> = l.residents.iter().map(|r| r.name.as_str()).collect();
        summary_row(
            ws,
            row,
            l.label(),
            &residents.join(", "),
            line_figures(l),
            f,
            false,
        )?;
        row += 1;
    }
    let t = &statement.totals;
    summary_row(
        ws,
        row,
        "Total",
        "",
        (
            t.sessions,
            t.kwh,
            t.peak_kwh,
            t.offpeak_kwh,
            t.energy_cost,
            t.idle_minutes,
            t.idle_fee,
            t.total,
        ),
        f,
        true,
    )?;
    ws.set_column_width(0, 16)?;
    ws.set_column_width(1, 32)?;
    for c in 2..10 {
        ws.set_column_width(c, 14)?;
    }
    ws.set_freeze_panes(3, 1)?;
    Ok(())
}

const SESSION_HEADER: [&str; 15] = [
    "Apartamento",
    "Morador",
    "Recarga",
    "Parte",
    "Estação",
    "Tag",
    "Início",
    "Fim",
    "Duração",
    "kWh",
    "Preço (R$/kWh)",
    "Energia (R$)",
    "Ociosidade",
    "Taxa de ociosidade (R$)",
    "Total (R$)",
];

/// One session row, then its "ponta" and "fora de ponta" rows (kWh, time and price of each
/// part; the money stays on the session row, where the domain rounds it). Returns the next row.
fn session_rows(
    ws: &mut Worksheet,
    mut row: u32,
    tz: Tz,
    apartment: &str,
    s: &SessionLine,
    f: &Formats,
) -> Result<u32, ReportError> {
    let who = s.resident.as_ref().map_or("", |r| r.name.as_str());
    ws.write_string(row, 0, apartment)?;
    ws.write_string(row, 1, who)?;
    ws.write_number_with_format(row, 2, s.vendor_id as f64, &f.int)?;
    ws.write_string(
        row,
        3,
        match s.source {
            SessionSource::Own => "Recarga",
            SessionSource::Imported => "Recarga (planilha)",
        },
    )?;
    ws.write_string(row, 4, &s.charger)?;
    ws.write_string(row, 5, s.tag.as_ref().map_or("", |t| t.as_str()))?;
    ws.write_datetime_with_format(row, 6, local(tz, s.start), &f.when)?;
    ws.write_datetime_with_format(row, 7, local(tz, s.stop), &f.when)?;
    ws.write_number_with_format(row, 8, days(s.seconds), &f.elapsed)?;
    ws.write_number_with_format(row, 9, num(s.energy_kwh)?, &f.kwh)?;
    ws.write_number_with_format(row, 11, num(s.energy_cost)?, &f.money)?;
    ws.write_number_with_format(row, 12, days(s.idle_seconds), &f.elapsed)?;
    ws.write_number_with_format(row, 13, num(s.idle_fee)?, &f.money)?;
    ws.write_number_with_format(row, 14, num(s.total)?, &f.money)?;
    row += 1;
    for (part, seconds, kwh, price) in [
        ("ponta", s.peak_seconds, s.peak_kwh, s.peak_price),
        (
            "fora de ponta",
            s.offpeak_seconds,
            s.offpeak_kwh,
            s.offpeak_price,
        ),
    ] {
        ws.write_string(row, 0, apartment)?;
        ws.write_number_with_format(row, 2, s.vendor_id as f64, &f.int)?;
        ws.write_string_with_format(row, 3, part, &f.indent)?;
        ws.write_number_with_format(row, 8, days(seconds), &f.elapsed)?;
        ws.write_number_with_format(row, 9, num(kwh)?, &f.kwh)?;
        ws.write_number_with_format(row, 10, num(price)?, &f.price)?;
        row += 1;
    }
    Ok(row)
}

fn session_columns(ws: &mut Worksheet) -> Result<(), ReportError> {
    for (c, w) in [12, 24, 10, 18, 18, 12, 19, 19, 10, 11, 14, 13, 11, 14, 13]
        .into_iter()
        .enumerate()
    {
        ws.set_column_width(c as u16, w)?;
    }
    Ok(())
}

fn write_sessions(
    ws: &mut Worksheet,
    statement: &Statement,
    tz: Tz,
    f: &Formats,
) -> Result<(), ReportError> {
    ws.set_name("Sessões")?;
    title(ws, statement, "Recargas", f)?;
    headers(ws, 2, &SESSION_HEADER, f)?;
    let mut row = 3;
    for l in &statement.lines {
        for s in &l.session_details {
            row = session_rows(ws, row, tz, l.label(), s, f)?;
        }
    }
    session_columns(ws)?;
    ws.set_freeze_panes(3, 0)?;
    Ok(())
}

/// A sheet name from an apartment label: at most 31 characters, none of `[]:*?/\`, unique in
/// the workbook (a suffix ` (2)` on a clash).
fn sheet_name(label: &str, taken: &mut BTreeSet<String>) -> String {
    let clean: String = label
        .chars()
        .map(|c| if "[]:*?/\\'".contains(c) { '_' } else { c })
        .collect();
    let base: String = format!("Apto {clean}").chars().take(31).collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name.to_lowercase()) || name == "Resumo" || name == "Sessões" {
        let suffix = format!(" ({n})");
        name = base
            .chars()
            .take(31 - suffix.chars().count())
            .collect::<String>()
            + &suffix;
        n += 1;
    }
    taken.insert(name.to_lowercase());
    name
}

fn write_apartment(
    ws: &mut Worksheet,
    name: &str,
    statement: &Statement,
    l: &ApartmentLine,
    tz: Tz,
    f: &Formats,
) -> Result<(), ReportError> {
    ws.set_name(name)?;
    title(ws, statement, l.label(), f)?;
    headers(ws, 2, &SESSION_HEADER, f)?;
    let mut row = 3;
    for s in &l.session_details {
        row = session_rows(ws, row, tz, l.label(), s, f)?;
    }
    ws.write_string_with_format(row, 0, "Total", &f.bold)?;
    ws.write_number_with_format(row, 2, l.sessions as f64, &f.int_bold)?;
    ws.write_number_with_format(row, 9, num(l.kwh)?, &f.kwh_bold)?;
    ws.write_number_with_format(row, 11, num(l.energy_cost)?, &f.money_bold)?;
    ws.write_number_with_format(row, 13, num(l.idle_fee)?, &f.money_bold)?;
    ws.write_number_with_format(row, 14, num(l.total)?, &f.money_bold)?;
    session_columns(ws)?;
    ws.set_freeze_panes(3, 0)?;
    Ok(())
}

/// The statement as XLSX bytes.
pub fn statement(statement: &Statement) -> Result<Vec<u8>, ReportError> {
    let tz = zone(&statement.tz)?;
    let f = Formats::new();
    let mut wb = Workbook::new();
    write_summary(wb.add_worksheet(), statement, &f)?;
    write_sessions(wb.add_worksheet(), statement, tz, &f)?;
    let mut taken = BTreeSet::new();
    for l in &statement.lines {
        let name = sheet_name(l.label(), &mut taken);
        write_apartment(wb.add_worksheet(), &name, statement, l, tz, &f)?;
    }
    Ok(wb.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    use super::sheet_name;
    use std::collections::BTreeSet;

    #[test]
    fn sheet_names_are_legal_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(sheet_name("A-302", &mut taken), "Apto A-302");
        assert_eq!(sheet_name("a-302", &mut taken), "Apto a-302 (2)");
        assert_eq!(sheet_name("B/1:2", &mut taken), "Apto B_1_2");
        let long = sheet_name(&"x".repeat(50), &mut taken);
        assert_eq!(long.chars().count(), 31);
        assert_eq!(sheet_name("sem morador", &mut taken), "Apto sem morador");
    }
}
