use super::*;
use crate::statement::{StatementInput, compute};
use crate::tariff::{TariffHistory, TariffSpec};
use crate::{LocalMonth, TagDirectory};
use chrono_tz::America::Sao_Paulo;
use proptest::prelude::*;

fn s(v: &str) -> CellValue {
    CellValue::String(v.to_owned())
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The export's columns in the vendor's order.
fn vendor_header() -> Vec<String> {
    header(&[
        "Recarga(ID)",
        "Estação",
        "Usuário(Tag)",
        "Usuário(Nome)",
        "Início - Fim",
        "Energia(kWh)",
        "Tempo de ociosidade",
    ])
}

fn row(id: &str, tag: &str, period: &str, energy: &str, idle: &str) -> Vec<CellValue> {
    vec![
        s(id),
        s("Palmeiras 1"),
        s(tag),
        s("maria souza "),
        s(period),
        s(energy),
        s(idle),
    ]
}

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn map(header: &[String], rows: &[Vec<CellValue>]) -> ImportReport {
    map_rows(header, rows, Sao_Paulo).unwrap()
}

fn problems(r: &ImportReport) -> Vec<(u32, &str)> {
    r.rejected_rows
        .iter()
        .map(|p| (p.row, p.column.as_str()))
        .collect()
}

#[test]
fn a_real_looking_export_reads_with_pt_br_numbers_and_optional_seconds() {
    let rows = vec![
        row(
            "48213",
            " 5be07d1a ",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "10,000",
            "00:00:00",
        ),
        row(
            "48214",
            "",
            "05/03/2026 23:00:15 - 06/03/2026 19:00:45",
            "1.234,567",
            "00:40:00",
        ),
        row(
            "48215",
            "AB12",
            "6/3/2026 7:05:09 - 06/03/2026 08:00",
            "12,3",
            "25:10:05",
        ),
    ];
    let r = map(&vendor_header(), &rows);
    assert!(r.rejected_rows.is_empty(), "{:?}", r.rejected_rows);
    assert_eq!(r.rows_read, 3);
    let [a, b, c] = r.sessions.as_slice() else {
        panic!("{:?}", r.sessions)
    };
    assert_eq!(a.vendor_id, 48213);
    assert_eq!(a.charger, "Palmeiras 1");
    assert_eq!(a.tag.as_ref().unwrap().as_str(), "5BE07D1A");
    assert_eq!(a.user_name.as_deref(), Some("maria souza"));
    assert_eq!(a.start, utc("2026-03-05T19:30:00Z"));
    assert_eq!(a.stop, utc("2026-03-05T21:30:00Z"));
    assert_eq!(a.energy_wh, 10_000);
    assert_eq!(a.precision, TimePrecision::Minute);
    assert_eq!(a.source, SessionSource::Imported);
    assert_eq!(a.import_line, Some(2));
    // Thousands separator: 1.234,567 kWh, not 1.234.
    assert_eq!(b.energy_wh, 1_234_567);
    assert_eq!(b.tag, None);
    assert_eq!(b.precision, TimePrecision::Second);
    assert_eq!(b.start, utc("2026-03-06T02:00:15Z"));
    assert_eq!(b.idle_seconds, 40 * 60);
    assert_eq!(b.import_line, Some(3));
    // One side without seconds makes the row minute-precise.
    assert_eq!(c.precision, TimePrecision::Minute);
    assert_eq!(c.start, utc("2026-03-06T10:05:09Z"));
    assert_eq!(c.energy_wh, 12_300);
    assert_eq!(c.idle_seconds, 25 * 3600 + 10 * 60 + 5);
}

#[test]
fn the_legacy_bug_1_234_56_is_1234_56_kwh() {
    assert_eq!(
        parse_pt_br_decimal("1.234,56").unwrap(),
        Decimal::new(123_456, 2)
    );
    assert_eq!(
        parse_pt_br_decimal("12,345").unwrap(),
        Decimal::new(12_345, 3)
    );
    assert_eq!(parse_pt_br_decimal("1.234").unwrap(), Decimal::from(1234));
    assert_eq!(
        parse_pt_br_decimal("1.234.567,8").unwrap(),
        Decimal::new(12_345_678, 1)
    );
    assert_eq!(parse_pt_br_decimal(" 7 kWh").unwrap(), Decimal::from(7));
    assert_eq!(parse_pt_br_decimal("-0,5").unwrap(), Decimal::new(-5, 1));
    assert!(parse_pt_br_decimal("12.5").unwrap_err().contains("vírgula"));
    for bad in [
        "",
        "abc",
        "1,2,3",
        "12.34,5",
        "1234.567,1",
        ",5",
        "1.",
        "1,",
        "--1",
        "1 234",
    ] {
        assert!(parse_pt_br_decimal(bad).is_err(), "{bad}");
    }
}

#[test]
fn columns_are_found_by_name_in_any_order_with_extra_columns() {
    let h = header(&[
        "Observação",
        "energia (kwh)",
        "TEMPO DE OCIOSIDADE",
        "Inicio-Fim",
        "usuario (tag)",
        "Potência",
        "recarga (id)",
        "\u{feff}Estacao",
    ]);
    let rows = vec![vec![
        s("x"),
        s("3,5"),
        s("00:16:00"),
        s("02/03/2026 10:00 - 02/03/2026 11:00"),
        s("aa"),
        CellValue::Number(7.4),
        CellValue::Int(99),
        s("Garagem 2"),
    ]];
    let r = map(&h, &rows);
    assert!(r.rejected_rows.is_empty(), "{:?}", r.rejected_rows);
    let x = &r.sessions[0];
    assert_eq!((x.vendor_id, x.energy_wh, x.idle_seconds), (99, 3_500, 960));
    assert_eq!(x.charger, "Garagem 2");
    // No Usuário(Nome) column: optional.
    assert_eq!(x.user_name, None);
}

#[test]
fn a_sheet_that_is_not_the_export_is_refused_whole() {
    let rows = vec![row(
        "1",
        "AA",
        "02/03/2026 10:00 - 02/03/2026 11:00",
        "1,0",
        "",
    )];
    let err = map_rows(&header(&["Nome", "Valor"]), &rows, Sao_Paulo).unwrap_err();
    assert_eq!(err, ImportFileError::NotAnExport);
    assert!(err.message_pt_br().contains("não parece a exportação"));
    assert_eq!(
        map_rows(&[], &rows, Sao_Paulo).unwrap_err(),
        ImportFileError::NotAnExport
    );

    let mut h = vendor_header();
    h.retain(|c| c != "Energia(kWh)" && c != "Tempo de ociosidade");
    let err = map_rows(&h, &rows, Sao_Paulo).unwrap_err();
    assert_eq!(
        err,
        ImportFileError::MissingColumns(vec![
            "Energia(kWh)".to_owned(),
            "Tempo de ociosidade".to_owned()
        ])
    );
    assert_eq!(
        err.message_pt_br(),
        "faltam as colunas Energia(kWh), Tempo de ociosidade na primeira linha da planilha; \
         exporte novamente o relatório de recargas do fornecedor sem remover colunas"
    );

    let mut h = vendor_header();
    h.push("ENERGIA(KWH)".into());
    assert_eq!(
        map_rows(&h, &rows, Sao_Paulo).unwrap_err(),
        ImportFileError::DuplicateColumn("Energia(kWh)".into())
    );

    let many = vec![Vec::new(); MAX_ROWS + 1];
    assert!(matches!(
        map_rows(&vendor_header(), &many, Sao_Paulo),
        Err(ImportFileError::TooManyRows { .. })
    ));
}

#[test]
fn bad_rows_are_listed_by_row_and_column_and_the_rest_imported() {
    let ok = "02/03/2026 10:00 - 02/03/2026 11:00";
    let rows = vec![
        row("1", "AA", ok, "1,000", "00:00:00"), // row 2
        row("", "AA", ok, "1,000", ""),          // row 3: no id
        row("3", "AA", "31/02/2026 10:00 - 01/03/2026 11:00", "1,0", ""), // row 4: no such date
        vec![CellValue::Empty; 7],               // row 5: empty, skipped
        row("5", "AA", ok, "12.5", "1:2:3"),     // row 6: two problems
        row("6", "A B", ok, "1,0", ""),          // row 7: bad tag
        row("1", "BB", ok, "2,0", ""),           // row 8: repeated id
        row("8", "AA", "02/03/2026 10:00", "1,0", ""), // row 9: no end
        row(
            "9",
            "AA",
            "02/03/2026 11:00 - 02/03/2026 10:00",
            "0,000",
            "",
        ), // row 10: for the statement
        row("10", "AA", ok, "1,2345", ""),       // row 11: sub-Wh
    ];
    let r = map(&vendor_header(), &rows);
    assert_eq!(
        problems(&r),
        [
            (3, "Recarga(ID)"),
            (4, "Início - Fim"),
            (6, "Energia(kWh)"),
            (6, "Tempo de ociosidade"),
            (7, "Usuário(Tag)"),
            (8, "Recarga(ID)"),
            (9, "Início - Fim"),
            (11, "Energia(kWh)"),
        ]
    );
    assert_eq!(r.rows_read, 9);
    assert_eq!(r.rows_refused(), 7);
    let ids: Vec<i64> = r.sessions.iter().map(|s| s.vendor_id).collect();
    // Row 10 (end before start, zero energy) is readable: the statement rejects it under its
    // month with rule 8's reason.
    assert_eq!(ids, [1, 9]);
    let p = &r.rejected_rows[1];
    assert_eq!(p.value, "31/02/2026 10:00 - 01/03/2026 11:00");
    assert!(
        p.message_pt_br.starts_with("não foi possível ler o início"),
        "{}",
        p.message_pt_br
    );
    assert_eq!(
        r.rejected_rows[5].message_pt_br,
        "a recarga 1 já aparece na linha 2; esta linha foi ignorada"
    );
    assert!(r.rejected_rows[2].message_pt_br.contains("use vírgula"));
    assert!(
        r.rejected_rows[7]
            .message_pt_br
            .contains("3 casas decimais")
    );
}

#[test]
fn numeric_cells_are_read_exactly() {
    let period = s("02/03/2026 10:00:00 - 02/03/2026 11:00:00");
    let mk = |id: CellValue, energy: CellValue, idle: CellValue| {
        vec![
            id,
            s("P1"),
            CellValue::Empty,
            CellValue::Empty,
            period.clone(),
            energy,
            idle,
        ]
    };
    let rows = vec![
        mk(
            CellValue::Number(101.0),
            CellValue::Number(12.345),
            CellValue::Number(25.0 / 1440.0),
        ),
        // A formula's float noise is below a Wh.
        mk(
            CellValue::Int(102),
            CellValue::Number(0.1 + 0.2),
            CellValue::Duration(90),
        ),
        mk(
            s(" 103 "),
            CellValue::Int(7),
            CellValue::DateTime(
                NaiveDate::from_ymd_opt(1899, 12, 31)
                    .unwrap()
                    .and_hms_opt(0, 25, 0)
                    .unwrap(),
            ),
        ),
        // Refused: a real fourth decimal, a fractional id, a date as idle time.
        mk(
            CellValue::Number(104.5),
            CellValue::Number(12.3456),
            CellValue::Bool(true),
        ),
        mk(
            CellValue::Number(1e300),
            CellValue::Number(f64::NAN),
            CellValue::DateTime(
                NaiveDate::from_ymd_opt(2026, 3, 2)
                    .unwrap()
                    .and_hms_opt(0, 25, 0)
                    .unwrap(),
            ),
        ),
    ];
    let r = map(&vendor_header(), &rows);
    let got: Vec<(i64, i64, i64)> = r
        .sessions
        .iter()
        .map(|s| (s.vendor_id, s.energy_wh, s.idle_seconds))
        .collect();
    assert_eq!(
        got,
        [(101, 12_345, 1_500), (102, 300, 90), (103, 7_000, 1_500)]
    );
    assert_eq!(r.sessions[0].precision, TimePrecision::Second);
    assert_eq!(
        problems(&r),
        [
            (5, "Recarga(ID)"),
            (5, "Energia(kWh)"),
            (5, "Tempo de ociosidade"),
            (6, "Recarga(ID)"),
            (6, "Energia(kWh)"),
            (6, "Tempo de ociosidade"),
        ]
    );
    assert_eq!(r.rejected_rows[1].value, "12.3456");
}

#[test]
fn period_forms() {
    let tz = Sao_Paulo;
    let read = |t: &str| read_period(&s(t), tz);
    assert!(
        read("02/03/2026 10:00 – 02/03/2026 11:00").is_ok(),
        "en dash"
    );
    assert!(read("02/03/2026  10:00-02/03/2026 11:00:30").is_ok());
    for bad in [
        "",
        "02/03/2026 10:00",
        "02/03/26 10:00 - 02/03/26 11:00",
        "2026-03-02 10:00 - 2026-03-02 11:00",
        "02/03/2026 10:0 - 02/03/2026 11:00",
        "02/03/2026 24:00 - 02/03/2026 11:00",
        "02/03/2026 10:00 - 02/03/2026 11:00 - 02/03/2026 12:00",
    ] {
        assert!(read(bad).is_err(), "{bad}");
    }
    assert!(read_period(&CellValue::Number(46000.5), tz).is_err());
    // 2018-11-04 00:30 never happened in São Paulo (DST began at midnight).
    let err = read("04/11/2018 00:30 - 04/11/2018 02:00").unwrap_err();
    assert!(err.contains("não existiu"), "{err}");
}

#[test]
fn idle_forms() {
    assert_eq!(read_idle(&s("00:25:00")), Ok(1500));
    assert_eq!(read_idle(&s("0:25")), Ok(1500));
    assert_eq!(read_idle(&s("100:00:01")), Ok(360_001));
    assert_eq!(read_idle(&CellValue::Empty), Ok(0));
    assert_eq!(read_idle(&s("  ")), Ok(0));
    for bad in ["25", "00:60:00", "00:00:60", "-1:00:00", "a:b:c", "1:2:3:4"] {
        assert!(read_idle(&s(bad)).is_err(), "{bad}");
    }
    assert!(read_idle(&CellValue::Duration(-5)).is_err());
    assert!(read_idle(&CellValue::Number(-0.5)).is_err());
}

#[test]
fn imported_rows_feed_the_statement_and_match_own_sessions() {
    let rows = vec![
        // The worked example, without seconds.
        row(
            "1",
            "aa",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "10,000",
            "00:00:00",
        ),
        // The legacy bug's number: 1234.56 kWh is above the site's maximum → rejected.
        row(
            "2",
            "aa",
            "06/03/2026 10:00 - 06/03/2026 11:00",
            "1.234,56",
            "",
        ),
        // Also recorded by vetric, to the second, with the same figures.
        row(
            "3",
            "aa",
            "07/03/2026 10:00 - 07/03/2026 11:00",
            "1,000",
            "00:40:00",
        ),
    ];
    let report = map(&vendor_header(), &rows);
    assert_eq!(report.sessions.len(), 3);
    let mut own = report.sessions[2].clone();
    own.source = SessionSource::Own;
    own.import_line = None;
    own.precision = TimePrecision::Second;
    own.start += chrono::TimeDelta::seconds(12);
    let mut sessions = report.sessions.clone();
    sessions.push(own);
    let tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    let st = compute(&StatementInput {
        site_name: "Jardim".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03").unwrap(),
        sessions,
        ownership: TagDirectory::new(),
        tariffs: TariffHistory::new([tariff]).unwrap(),
    });
    assert!(st.disagreements.is_empty(), "{:?}", st.disagreements);
    assert_eq!(st.rejected.len(), 1);
    assert_eq!(
        (st.rejected[0].vendor_id, st.rejected[0].line),
        (2, Some(3))
    );
    assert_eq!(
        st.rejected[0].reason_pt_br,
        "energia de 1.234,560 kWh acima do máximo do condomínio (150,000 kWh)"
    );
    let line = st.unassigned().unwrap();
    assert_eq!(line.sessions, 2);
    assert_eq!(line.session_details[0].energy_cost.to_string(), "18.05");
    assert_eq!(line.session_details[1].source, SessionSource::Own);
    assert_eq!(line.session_details[1].idle_fee.to_string(), "2.50");
    assert_eq!(st.totals.total.to_string(), "21.08");
}

fn any_cell() -> impl Strategy<Value = CellValue> {
    prop_oneof![
        Just(CellValue::Empty),
        "[0-9 .,:/\\-a-zA-Z]{0,40}".prop_map(CellValue::String),
        "[0-9]{1,2}/[0-9]{1,2}/[0-9]{4} [0-9]{1,2}:[0-9]{2}(:[0-9]{2})? - [0-9]{1,2}/[0-9]{1,2}/[0-9]{4} [0-9]{1,2}:[0-9]{2}"
            .prop_map(CellValue::String),
        "[0-9]{1,3}(\\.[0-9]{3}){0,2}(,[0-9]{1,4})?".prop_map(CellValue::String),
        any::<f64>().prop_map(CellValue::Number),
        any::<i64>().prop_map(CellValue::Int),
        any::<i64>().prop_map(CellValue::Duration),
        any::<bool>().prop_map(CellValue::Bool),
    ]
}

proptest! {
    #[test]
    fn any_rows_give_a_report_and_never_panic(
        rows in proptest::collection::vec(proptest::collection::vec(any_cell(), 0..9), 0..20),
    ) {
        let r = map_rows(&vendor_header(), &rows, Sao_Paulo).unwrap();
        // Every non-empty row is imported or listed.
        let mut refused: Vec<u32> = r.rejected_rows.iter().map(|p| p.row).collect();
        refused.dedup();
        prop_assert_eq!(r.sessions.len() + refused.len(), r.rows_read as usize);
        for p in &r.rejected_rows {
            prop_assert!(p.row >= 2 && !p.message_pt_br.is_empty());
        }
        for s in &r.sessions {
            prop_assert_eq!(s.source, SessionSource::Imported);
        }
    }
}

#[test]
fn a_sheet_with_a_title_above_the_header_is_numbered_as_the_user_sees_it() {
    let mut sheet = vec![
        vec![s("Relatório de recargas — março/2026")],
        vec![CellValue::Empty],
        vendor_header().into_iter().map(CellValue::String).collect(),
    ];
    sheet.push(row(
        "1",
        "AA",
        "02/03/2026 10:00 - 02/03/2026 11:00",
        "1,0",
        "",
    ));
    sheet.push(row("2", "AA", "02/03/2026 10:00", "1,0", ""));
    // The sheet's data starts at row 3 (calamine's range began at its first non-empty cell).
    let r = map_sheet(&sheet, Sao_Paulo, 3).unwrap();
    assert_eq!(r.sessions[0].import_line, Some(6));
    assert_eq!(problems(&r), [(7, "Início - Fim")]);
    // With the header in row 1 it is the same as map_rows.
    let plain = map_sheet(&sheet[2..], Sao_Paulo, 1).unwrap();
    assert_eq!(plain, map(&vendor_header(), &sheet[3..]));
    assert_eq!(
        map_sheet(&[vec![s("Nome")], vec![s("x")]], Sao_Paulo, 1).unwrap_err(),
        ImportFileError::NotAnExport
    );
    assert_eq!(
        map_sheet(&[], Sao_Paulo, 1).unwrap_err(),
        ImportFileError::NotAnExport
    );
    // A header missing a column is refused with its name.
    let partial = vec![vec![s("Recarga(ID)"), s("Energia(kWh)")]];
    assert!(matches!(
        map_sheet(&partial, Sao_Paulo, 1),
        Err(ImportFileError::MissingColumns(cols)) if cols.len() == 4
    ));
}

/// A refused row keeps what could still be read (its id and start, so it is listed under the
/// month of its start) and its cells as they were; a row whose date cannot be read has no start.
#[test]
fn refused_rows_keep_their_id_start_and_cells() {
    let rows = vec![
        row(
            "1",
            "AB12",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "12.5",
            "",
        ),
        row(
            "2",
            "AB12",
            "31/02/2026 10:00 - 31/02/2026 11:00",
            "1,000",
            "",
        ),
        row(
            "x",
            "AB12",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "1,000",
            "",
        ),
        row(
            "4",
            "AB12",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "1,000",
            "",
        ),
        row(
            "4",
            "AB12",
            "05/03/2026 16:30 - 05/03/2026 18:30",
            "2,000",
            "",
        ),
    ];
    let r = map(&vendor_header(), &rows);
    assert_eq!(r.sessions.len(), 1);
    let seen: Vec<(u32, Option<i64>, bool)> = r
        .rejected
        .iter()
        .map(|x| (x.row, x.vendor_id, x.start.is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (2, Some(1), true),
            (3, Some(2), false),
            (4, None, true),
            (6, Some(4), true)
        ]
    );
    assert_eq!(r.rejected[0].start, Some(utc("2026-03-05T19:30:00Z")));
    assert!(
        r.rejected[0]
            .raw
            .contains(&(COL_ENERGY.to_owned(), "12.5".to_owned()))
    );
    assert_eq!(r.rows_refused(), r.rejected.len());
}
