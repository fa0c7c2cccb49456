//! A statement as CSV, the way Excel in Brazil opens it by double-click: `;` between fields,
//! UTF-8 with a byte-order mark (without it Excel reads the accents as Latin-1), decimals with
//! a comma and thousands with a dot (`1.234,56`), CRLF line ends.
//!
//! Two files: [`summary`] (one line per apartment, the "sem morador" line, then the totals) and
//! [`sessions`] (one line per session, with its peak/off-peak split and the tariff that priced
//! it). Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) is prefixed
//! with `'`, since names and tags come from residents and from the vendor.

use crate::{ReportError, hms, local, pt_br_decimal, zone};
use rust_decimal::Decimal;
use vetric_domain::{ApartmentLine, SessionSource, Statement, Totals};

const BOM: &str = "\u{feff}";
const SEP: char = ';';
const EOL: &str = "\r\n";

/// One field, quoted when it holds the separator, a quote or a line break.
fn text(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if guarded.contains([SEP, '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn money(d: Decimal) -> String {
    pt_br_decimal(d, 2)
}

fn kwh(d: Decimal) -> String {
    pt_br_decimal(d, 3)
}

fn row(out: &mut String, fields: &[String]) {
    let line: Vec<&str> = fields.iter().map(String::as_str).collect();
    out.push_str(&line.join(&SEP.to_string()));
    out.push_str(EOL);
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

fn line_fields(l: &ApartmentLine) -> Vec<String> {
    let residents: Vec<&str> = l.residents.iter().map(|r| r.name.as_str()).collect();
    vec![
        text(l.label()),
        text(&residents.join(", ")),
        l.sessions.to_string(),
        kwh(l.kwh),
        kwh(l.peak_kwh),
        kwh(l.offpeak_kwh),
        money(l.energy_cost),
        money(l.idle_minutes),
        money(l.idle_fee),
        money(l.total),
    ]
}

fn totals_fields(t: &Totals) -> Vec<String> {
    vec![
        text("Total"),
        String::new(),
        t.sessions.to_string(),
        kwh(t.kwh),
        kwh(t.peak_kwh),
        kwh(t.offpeak_kwh),
        money(t.energy_cost),
        money(t.idle_minutes),
        money(t.idle_fee),
        money(t.total),
    ]
}

/// The statement's summary: a header, one line per apartment (the "sem morador" line last, as
/// the statement orders them) and a "Total" line that is the sum of the lines.
pub fn summary(statement: &Statement) -> Vec<u8> {
    let mut out = String::from(BOM);
    row(
        &mut out,
        &SUMMARY_HEADER.iter().map(|h| text(h)).collect::<Vec<_>>(),
    );
    for l in &statement.lines {
        row(&mut out, &line_fields(l));
    }
    row(&mut out, &totals_fields(&statement.totals));
    out.into_bytes()
}

const SESSIONS_HEADER: [&str; 21] = [
    "Apartamento",
    "Morador",
    "Recarga",
    "Origem",
    "Linha da planilha",
    "Estação",
    "Tag",
    "Início",
    "Fim",
    "Duração",
    "Tempo na ponta",
    "kWh",
    "kWh ponta",
    "kWh fora de ponta",
    "Tarifa desde",
    "Preço ponta (R$/kWh)",
    "Preço fora de ponta (R$/kWh)",
    "Energia (R$)",
    "Ociosidade",
    "Taxa de ociosidade (R$)",
    "Total (R$)",
];

/// Every accepted session of the month, by apartment then start, with the split that priced
/// it; times in the statement's zone as `DD/MM/AAAA HH:MM:SS`.
pub fn sessions(statement: &Statement) -> Result<Vec<u8>, ReportError> {
    let tz = zone(&statement.tz)?;
    let when = |t| local(tz, t).format("%d/%m/%Y %H:%M:%S").to_string();
    let mut out = String::from(BOM);
    row(
        &mut out,
        &SESSIONS_HEADER.iter().map(|h| text(h)).collect::<Vec<_>>(),
    );
    for l in &statement.lines {
        for s in &l.session_details {
            row(
                &mut out,
                &[
                    text(l.label()),
                    text(s.resident.as_ref().map_or("", |r| r.name.as_str())),
                    s.vendor_id.to_string(),
                    text(match s.source {
                        SessionSource::Own => "vetric",
                        SessionSource::Imported => "planilha",
                    }),
                    s.import_line.map(|n| n.to_string()).unwrap_or_default(),
                    text(&s.charger),
                    text(s.tag.as_ref().map_or("", |t| t.as_str())),
                    when(s.start),
                    when(s.stop),
                    hms(s.seconds),
                    hms(s.peak_seconds),
                    kwh(s.energy_kwh),
                    kwh(s.peak_kwh),
                    kwh(s.offpeak_kwh),
                    s.tariff_effective_from
                        .map(|d| d.format("%d/%m/%Y").to_string())
                        .unwrap_or_default(),
                    pt_br_decimal(s.peak_price, 4),
                    pt_br_decimal(s.offpeak_price, 4),
                    money(s.energy_cost),
                    hms(s.idle_seconds),
                    money(s.idle_fee),
                    money(s.total),
                ],
            );
        }
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(text("A-302"), "A-302");
        assert_eq!(text("a;b"), "\"a;b\"");
        assert_eq!(text("diz \"oi\""), "\"diz \"\"oi\"\"\"");
        assert_eq!(text("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(text("-1"), "'-1");
    }
}
