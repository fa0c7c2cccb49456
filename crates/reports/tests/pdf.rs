//! The statement PDFs and charts end to end: statements computed by the domain, PDFs read back
//! with poppler's `pdftotext` and `pdfinfo` (package poppler-utils; CI installs it), SVG checked
//! as text.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::America::Sao_Paulo;
use std::io::Write;
use std::process::Command;
use vetric_domain::statement::compute;
use vetric_domain::{
    LocalMonth, ResidentRef, SessionRecord, SessionSource, Statement, StatementInput, Tag,
    TagDirectory, TariffHistory, TariffSpec, TimePrecision,
};
use vetric_reports::pdf::{self, PdfMeta};
use vetric_reports::{ReportError, charts};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn session(
    id: i64,
    tag: Option<&str>,
    start: DateTime<Utc>,
    minutes: i64,
    wh: i64,
    idle: i64,
) -> SessionRecord {
    SessionRecord {
        vendor_id: id,
        charger: "Palmeiras 1".into(),
        tag: tag.map(|t| Tag::parse(t).unwrap()),
        start,
        stop: start + Duration::minutes(minutes),
        energy_wh: wh,
        idle_seconds: idle,
        source: SessionSource::Own,
        precision: TimePrecision::Second,
        import_line: None,
        user_name: None,
    }
}

fn tariffs() -> TariffHistory {
    let tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("5000".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    TariffHistory::new([tariff]).unwrap()
}

fn resident(id: i64, name: &str, apartment: &str) -> ResidentRef {
    ResidentRef {
        resident_id: id,
        name: name.into(),
        apartment: apartment.into(),
    }
}

/// The reports crate's March 2026 statement: A-101 owes R$ 1.255,11 (one Sunday session of
/// 2.329,358 kWh and a peak session with idle time), an unknown tag R$ 4,24; total R$ 1.259,35.
fn small() -> Statement {
    let ownership = TagDirectory::new().with(
        Tag::parse("AA01").unwrap(),
        resident(1, "Maria Conceição", "A-101"),
        utc("2026-01-01T03:00:00Z"),
        None,
    );
    compute(&StatementInput {
        site_name: "Condomínio Jardim Botânico".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03").unwrap(),
        sessions: vec![
            session(
                1,
                Some("aa01"),
                utc("2026-03-08T13:00:00Z"),
                720,
                2_329_358,
                0,
            ),
            session(
                2,
                Some("AA01"),
                utc("2026-03-05T19:30:00Z"),
                120,
                10_000,
                2400,
            ),
            session(3, Some("ZZ99"), utc("2026-03-15T13:00:00Z"), 120, 8_000, 0),
        ],
        ownership,
        tariffs: tariffs(),
    })
}

/// `apartments` apartments ("Apto 001"…), each with `per_apartment` sessions spread over
/// March 2026, some in the peak window.
fn big(apartments: i64, per_apartment: i64) -> Statement {
    let mut ownership = TagDirectory::new();
    let mut sessions = Vec::new();
    let first = Sao_Paulo
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    for a in 0..apartments {
        let tag = format!("T{a:04}");
        ownership = ownership.with(
            Tag::parse(&tag).unwrap(),
            resident(a, &format!("Morador {a}"), &format!("Apto {a:03}")),
            utc("2026-01-01T03:00:00Z"),
            None,
        );
        for s in 0..per_apartment {
            let start = first + Duration::hours((a * 7 + s * 23) % (30 * 24));
            sessions.push(session(
                a * 1000 + s,
                Some(&tag),
                start,
                90 + (s % 4) * 30,
                5_000 + (a * 37 + s * 101) % 20_000,
                (s % 3) * 900,
            ));
        }
    }
    compute(&StatementInput {
        site_name: "Residencial Três Corações".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03").unwrap(),
        sessions,
        ownership,
        tariffs: tariffs(),
    })
}

fn meta(version: Option<i64>) -> PdfMeta {
    PdfMeta {
        generated_at: utc("2026-04-02T13:45:00Z"),
        version,
        logo_svg: None,
    }
}

/// Runs a poppler tool on the PDF bytes; fails clearly when poppler-utils is missing.
fn poppler(tool: &str, args: &[&str], pdf: &[u8]) -> String {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(pdf).unwrap();
    file.flush().unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&path);
    if tool == "pdftotext" {
        all.push("-");
    }
    let out = match Command::new(tool).args(&all).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{tool}` is not installed: install poppler-utils (apt-get install poppler-utils) \
             to run the PDF tests"
        ),
        Err(e) => panic!("running {tool}: {e}"),
    };
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn text(pdf: &[u8]) -> String {
    poppler("pdftotext", &["-layout", "-enc", "UTF-8"], pdf)
}

fn pages(pdf: &[u8]) -> usize {
    let info = poppler("pdfinfo", &[], pdf);
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .map(|n| n.trim().parse().unwrap())
        .expect("pdfinfo gives a page count")
}

#[test]
fn site_pdf_is_a4_with_totals_accents_and_page_numbers() {
    let st = small();
    assert_eq!(st.totals.total.to_string(), "1259.35");
    let bytes = pdf::site_statement(&st, &meta(None)).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let info = poppler("pdfinfo", &[], &bytes);
    let size = info
        .lines()
        .find(|l| l.starts_with("Page size:"))
        .unwrap_or_default();
    assert!(
        size.contains("595.") && size.contains("x 841.") && size.contains("(A4)"),
        "{info}"
    );
    let n = pages(&bytes);
    let t = text(&bytes);
    assert!(t.contains("Condomínio Jardim Botânico"), "{t}");
    assert!(t.contains("Extrato de recarga — março de 2026"), "{t}");
    assert!(t.contains("Rascunho"), "{t}");
    assert!(t.contains("Total do mês"), "{t}");
    assert!(t.contains("R$ 1.259,35"), "site total: {t}");
    // A-101's row: sessions, kWh, R$ right-aligned with pt-BR separators.
    let row = t
        .lines()
        .find(|l| l.trim_start().starts_with("A-101"))
        .unwrap_or_else(|| panic!("no A-101 row in {t}"));
    assert!(
        row.contains("1.255,11") && row.contains("2.339,358"),
        "{row}"
    );
    let unassigned = t.lines().find(|l| l.contains("sem morador")).unwrap();
    assert!(unassigned.contains("4,24"), "{unassigned}");
    assert!(
        t.contains("ponta R$ 3,08/kWh · fora de ponta R$ 0,53/kWh"),
        "tariff: {t}"
    );
    assert!(
        t.contains("Consumo diário"),
        "the chart's text is in the PDF: {t}"
    );
    assert!(t.contains(&format!("Página 1 de {n}")), "{t}");
    assert!(t.contains("Sessões") && t.contains("Ociosidade"), "{t}");
}

#[test]
fn issued_version_is_named_and_the_same_input_gives_the_same_bytes() {
    let st = small();
    let a = pdf::site_statement(&st, &meta(Some(2))).unwrap();
    let b = pdf::site_statement(&st, &meta(Some(2))).unwrap();
    assert_eq!(a, b, "deterministic output");
    let t = text(&a);
    assert!(t.contains("Versão 2 emitida em 02/04/2026 10:45"), "{t}");
    assert!(!t.contains("Rascunho"), "{t}");
}

#[test]
fn apartment_pdf_lists_its_sessions_and_total() {
    let st = small();
    let bytes = pdf::apartment_statement(&st, Some("A-101"), &meta(Some(1))).unwrap();
    let t = text(&bytes);
    assert!(t.contains("Apartamento A-101"), "{t}");
    assert!(t.contains("Maria Conceição"), "{t}");
    assert!(t.contains("Total do apartamento"), "{t}");
    assert!(t.contains("R$ 1.255,11"), "{t}");
    // Sessions in local time, idle time and fee.
    assert!(
        t.contains("05/03 16:30") && t.contains("05/03 18:30"),
        "{t}"
    );
    assert!(t.contains("08/03 10:00"), "{t}");
    assert!(t.contains("0:40:00") && t.contains("2,50"), "{t}");
    assert!(t.contains("Página 1 de 1"), "{t}");
    assert!(!t.contains("sem morador"), "only this apartment: {t}");

    let none = pdf::apartment_statement(&st, None, &meta(Some(1))).unwrap();
    let t = text(&none);
    assert!(
        t.contains("Total sem morador") && t.contains("R$ 4,24"),
        "{t}"
    );
}

#[test]
fn unknown_apartment_is_an_error_naming_it() {
    let err = pdf::apartment_statement(&small(), Some("Z-999"), &meta(None)).unwrap_err();
    assert!(
        matches!(&err, ReportError::UnknownApartment(a) if a == "Z-999"),
        "{err:?}"
    );
    assert!(err.to_string().contains("Z-999"));
}

#[test]
fn long_site_table_repeats_its_header_on_every_page() {
    let st = big(130, 1);
    let bytes = pdf::site_statement(&st, &meta(None)).unwrap();
    let n = pages(&bytes);
    assert!(n >= 3, "130 apartments take 3+ pages, got {n}");
    let t = text(&bytes);
    let page_texts: Vec<&str> = t.split('\u{c}').filter(|p| !p.trim().is_empty()).collect();
    assert_eq!(page_texts.len(), n);
    let mut with_rows = 0;
    for (i, p) in page_texts.iter().enumerate() {
        assert!(
            p.contains(&format!("Página {} de {n}", i + 1)),
            "page {}: {p}",
            i + 1
        );
        if p.contains("Apto ") {
            with_rows += 1;
            assert_eq!(
                p.matches("Apartamento").count(),
                1,
                "page {} has rows, so it has the header once: {p}",
                i + 1
            );
        }
    }
    assert!(with_rows >= 3, "the table runs over {with_rows} pages");
    assert_eq!(t.matches("Apartamento").count(), with_rows);
    // Every apartment appears once, the last one and the totals too.
    assert!(t.contains("Apto 129") && t.contains("Apto 000"));
    assert!(
        t.contains(&vetric_reports::pt_br_decimal(st.totals.total, 2)),
        "total"
    );
}

#[test]
fn long_apartment_table_repeats_its_header_on_every_page() {
    let st = big(2, 120);
    let bytes = pdf::apartment_statement(&st, Some("Apto 001"), &meta(None)).unwrap();
    let n = pages(&bytes);
    assert!(n >= 3, "120 sessions take 3+ pages, got {n}");
    let t = text(&bytes);
    assert_eq!(t.matches("Carregador").count(), n, "{t}");
    assert!(t.contains(&format!("Página {n} de {n}")));
    let line = st.line(Some("Apto 001")).unwrap();
    assert!(t.contains(&format!(
        "R$ {}",
        vetric_reports::pt_br_decimal(line.total, 2)
    )));
}

#[test]
fn a_logo_is_used_and_a_broken_one_falls_back() {
    let st = small();
    let mut m = meta(None);
    m.logo_svg = Some(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 10 5\"><rect width=\"10\" height=\"5\" fill=\"red\"/><image href=\"/etc/passwd\" width=\"1\" height=\"1\"/></svg>".into(),
    );
    assert!(pdf::site_statement(&st, &m).is_ok());
    m.logo_svg = Some("<svg".into());
    assert!(pdf::site_statement(&st, &m).is_ok());
}

#[test]
fn an_empty_month_still_renders() {
    let mut st = small();
    st.lines.clear();
    st.totals = compute(&StatementInput {
        site_name: "x".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03").unwrap(),
        sessions: vec![],
        ownership: TagDirectory::new(),
        tariffs: tariffs(),
    })
    .totals;
    let bytes = pdf::site_statement(&st, &meta(None)).unwrap();
    let t = text(&bytes);
    assert!(t.contains("Sem consumo no período"), "{t}");
    assert!(t.contains("R$ 0,00"), "{t}");
}

// ---- charts ----

/// A rough well-formedness check: every opened element is closed in order.
fn assert_balanced(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("unclosed tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "in {svg}");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_owned();
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn daily_chart_has_a_bar_per_day_and_is_accessible() {
    let st = small();
    let svg = charts::daily_consumption(&st);
    assert_balanced(&svg);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\""));
    assert!(svg.contains("<title>Consumo diário — março de 2026</title>"));
    assert_eq!(svg.matches("<g class=\"bar\">").count(), 31);
    // The Sunday 08/03: all off-peak, pt-BR decimal comma.
    assert!(svg.contains("08/03: 2.329,358 kWh"), "{svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert_eq!(svg, charts::daily_consumption(&st), "deterministic");
    // The peak session of the 5th: a peak rect exists.
    assert!(svg.contains("class=\"peak\""));
}

#[test]
fn hourly_chart_spreads_sessions_over_local_hours() {
    let st = small();
    let svg = charts::hourly_consumption(&st);
    assert_balanced(&svg);
    assert_eq!(svg.matches("<g class=\"bar\">").count(), 24);
    // Session 1: 10:00–22:00 local, 2.329,358 kWh → 194,113 kWh an hour; session 3 adds 4 kWh
    // at 10h and 11h; session 2 (16:30–18:30, 10 kWh) 2,5 at 16h and 18h and 5 at 17h.
    assert!(svg.contains("<title>12h–13h: 194,113 kWh</title>"), "{svg}");
    assert!(svg.contains("<title>10h–11h: 198,113 kWh</title>"), "{svg}");
    assert!(svg.contains("<title>17h–18h: 199,113 kWh</title>"), "{svg}");
    assert!(svg.contains("<title>03h–04h: 0,000 kWh</title>"), "{svg}");
}

#[test]
fn ranking_escapes_names_and_respects_the_limit() {
    let mut st = big(5, 2);
    st.lines[0].apartment = Some("<script>alert(1)</script>".into());
    let svg = charts::apartment_ranking(&st, 3);
    assert_balanced(&svg);
    assert!(!svg.contains("<script>"), "{svg}");
    assert_eq!(svg.matches("<g class=\"bar\">").count(), 3);
    let all = charts::apartment_ranking(&st, 100);
    assert_eq!(all.matches("<g class=\"bar\">").count(), 5);
    assert!(all.contains("&lt;script&gt;"), "{all}");
    // The escaped name also survives the PDF, and a character DejaVu lacks does not fail it.
    st.lines[1].apartment = Some("Apto 東京 🚗".into());
    let bytes = pdf::site_statement(&st, &meta(None)).unwrap();
    assert!(text(&bytes).contains("<script>alert(1)"));
    assert!(pdf::apartment_statement(&st, Some("Apto 東京 🚗"), &meta(None)).is_ok());
}

#[test]
fn empty_month_charts_say_so() {
    let st = compute(&StatementInput {
        site_name: "Vazio".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-02").unwrap(),
        sessions: vec![],
        ownership: TagDirectory::new(),
        tariffs: tariffs(),
    });
    for svg in [
        charts::daily_consumption(&st),
        charts::hourly_consumption(&st),
        charts::apartment_ranking(&st, 10),
    ] {
        assert_balanced(&svg);
        assert!(svg.contains("Sem consumo no período"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("<g class=\"bar\">"));
    }
}

#[test]
fn one_apartment_charts_come_from_a_filtered_statement() {
    let st = small();
    let only = charts::for_apartment(&st, Some("A-101"));
    assert_eq!(only.lines.len(), 1);
    assert_eq!(only.totals.total.to_string(), "1255.11");
    let svg = charts::daily_consumption(&only);
    assert!(
        !svg.contains("15/03: 8,000"),
        "the unknown tag's session is not A-101's"
    );
    let none = charts::for_apartment(&st, None);
    assert_eq!(none.totals.total.to_string(), "4.24");
    let missing = charts::for_apartment(&st, Some("nope"));
    assert!(charts::daily_consumption(&missing).contains("Sem consumo no período"));
}
