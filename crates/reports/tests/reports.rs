//! The statement files and the export reader, end to end through real files: CSV bytes as
//! Excel in Brazil reads them, XLSX written and read back with calamine, and a generated
//! vendor export with a bad row.

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::America::Sao_Paulo;
use rust_xlsxwriter::{Format, Workbook};
use std::io::Cursor;
use vetric_domain::statement::compute;
use vetric_domain::{
    LocalMonth, ResidentRef, SessionRecord, SessionSource, Statement, StatementInput, Tag,
    TagDirectory, TariffHistory, TariffSpec, TimePrecision,
};
use vetric_reports::{ExportReadError, csv, read_export, xlsx};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn session(
    id: i64,
    tag: Option<&str>,
    start: &str,
    stop: &str,
    wh: i64,
    idle: i64,
) -> SessionRecord {
    SessionRecord {
        vendor_id: id,
        charger: "Palmeiras 1".into(),
        tag: tag.map(|t| Tag::parse(t).unwrap()),
        start: utc(start),
        stop: utc(stop),
        energy_wh: wh,
        idle_seconds: idle,
        source: SessionSource::Own,
        precision: TimePrecision::Second,
        import_line: None,
        user_name: None,
    }
}

/// March 2026: apartment A-101 charges 2,329.358 kWh on a Sunday (all off-peak: R$ 1,234.56)
/// and the worked example (Thursday 16:30–18:30, 10 kWh: R$ 18.05) with 40 idle minutes
/// (R$ 2.50); an unknown tag charges 8 kWh on a Sunday (R$ 4.24).
fn statement() -> Statement {
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
    let owner = ResidentRef {
        resident_id: 1,
        name: "Maria; \"Souza\"".into(),
        apartment: "A-101".into(),
    };
    let ownership = TagDirectory::new().with(
        Tag::parse("AA01").unwrap(),
        owner,
        utc("2026-01-01T03:00:00Z"),
        None,
    );
    compute(&StatementInput {
        site_name: "Jardim".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03").unwrap(),
        sessions: vec![
            session(
                1,
                Some("aa01"),
                "2026-03-08T13:00:00Z",
                "2026-03-09T01:00:00Z",
                2_329_358,
                0,
            ),
            session(
                2,
                Some("AA01"),
                "2026-03-05T19:30:00Z",
                "2026-03-05T21:30:00Z",
                10_000,
                2400,
            ),
            session(
                3,
                Some("ZZ99"),
                "2026-03-15T13:00:00Z",
                "2026-03-15T15:00:00Z",
                8_000,
                0,
            ),
        ],
        ownership,
        tariffs: TariffHistory::new([tariff]).unwrap(),
    })
}

#[test]
fn the_statement_adds_up_as_the_files_expect() {
    let st = statement();
    assert_eq!(st.lines.len(), 2);
    assert_eq!(st.lines[0].total.to_string(), "1255.11");
    assert_eq!(st.totals.total.to_string(), "1259.35");
}

#[test]
fn summary_csv_has_bom_semicolons_and_pt_br_decimals() {
    let bytes = csv::summary(&statement());
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM first");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "Apartamento;Moradores;Recargas;kWh;kWh ponta;kWh fora de ponta;Energia (R$);\
         Ociosidade (min);Taxa de ociosidade (R$);Total (R$)"
    );
    // The resident's name holds the separator and quotes: quoted, quotes doubled.
    assert_eq!(
        lines[1],
        "A-101;\"Maria; \"\"Souza\"\"\";2;2.339,358;5,000;2.334,358;1.252,61;40,00;2,50;1.255,11"
    );
    assert_eq!(
        lines[2],
        "sem morador;;1;8,000;0,000;8,000;4,24;0,00;0,00;4,24"
    );
    assert_eq!(
        lines[3],
        "Total;;3;2.347,358;5,000;2.342,358;1.256,85;40,00;2,50;1.259,35"
    );
    assert_eq!(lines[4], "", "the file ends with a line break");
    assert_eq!(lines.len(), 5);
}

#[test]
fn sessions_csv_lists_each_session_with_its_split_in_local_time() {
    let bytes = csv::sessions(&statement()).unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]));
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    // The quoted name holds the separator; take it out to split the rest naively.
    let text = text.replace("\"Maria; \"\"Souza\"\"\"", "Maria");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let worked: Vec<&str> = lines[1].split(';').collect();
    assert_eq!(worked[2], "2", "by start: the Thursday session first");
    assert_eq!(worked[7], "05/03/2026 16:30:00");
    assert_eq!(worked[8], "05/03/2026 18:30:00");
    assert_eq!(worked[10], "1:00:00", "one hour in the peak window");
    assert_eq!(&worked[11..14], ["10,000", "5,000", "5,000"]);
    assert_eq!(&worked[15..18], ["3,0800", "0,5300", "18,05"]);
    assert_eq!(worked[20], "20,55");
    assert!(lines[2].contains(";1.234,56;"), "{}", lines[2]);
}

fn read_back(bytes: Vec<u8>) -> Xlsx<Cursor<Vec<u8>>> {
    open_workbook_from_rs(Cursor::new(bytes)).unwrap()
}

#[test]
fn xlsx_has_real_numbers_dates_and_the_sheets() {
    let st = statement();
    let mut book = read_back(xlsx::statement(&st).unwrap());
    assert_eq!(
        book.sheet_names(),
        vec!["Resumo", "Sessões", "Apto A-101", "Apto sem morador"]
    );
    let summary = book.worksheet_range("Resumo").unwrap();
    let cell = |r: &calamine::Range<Data>, row: u32, col: u32| {
        r.get_value((row, col)).cloned().unwrap_or(Data::Empty)
    };
    assert_eq!(cell(&summary, 2, 0), Data::String("Apartamento".into()));
    assert_eq!(cell(&summary, 3, 0), Data::String("A-101".into()));
    assert_eq!(
        cell(&summary, 3, 9),
        Data::Float(1255.11),
        "a number, not text"
    );
    assert_eq!(cell(&summary, 3, 3), Data::Float(2339.358));
    assert_eq!(cell(&summary, 4, 0), Data::String("sem morador".into()));
    assert_eq!(cell(&summary, 5, 0), Data::String("Total".into()));
    assert_eq!(cell(&summary, 5, 9), Data::Float(1259.35));
    assert_eq!(cell(&summary, 5, 2), Data::Float(3.0));

    let sessions = book.worksheet_range("Sessões").unwrap();
    // Row 3: the worked example; rows 4 and 5: its peak and off-peak parts.
    match cell(&sessions, 3, 6) {
        Data::DateTime(dt) => {
            let local: NaiveDateTime = dt.as_datetime().unwrap();
            assert_eq!(
                local.to_string(),
                "2026-03-05 16:30:00",
                "local time, as a date"
            );
        }
        other => panic!("start is not a date: {other:?}"),
    }
    assert_eq!(cell(&sessions, 3, 11), Data::Float(18.05));
    assert_eq!(cell(&sessions, 3, 14), Data::Float(20.55));
    assert_eq!(cell(&sessions, 4, 3), Data::String("ponta".into()));
    assert_eq!(cell(&sessions, 4, 9), Data::Float(5.0));
    assert_eq!(cell(&sessions, 4, 10), Data::Float(3.08));
    assert_eq!(cell(&sessions, 5, 3), Data::String("fora de ponta".into()));
    assert_eq!(cell(&sessions, 5, 10), Data::Float(0.53));

    let apt = book.worksheet_range("Apto A-101").unwrap();
    // Two sessions of three rows each, then the apartment's total.
    assert_eq!(cell(&apt, 9, 0), Data::String("Total".into()));
    assert_eq!(cell(&apt, 9, 14), Data::Float(1255.11));
}

/// A vendor export as the vendor writes it (strings), with a numeric energy cell, a real
/// time cell for idle, extra columns in another order, and one bad row.
fn export_xlsx() -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let header = [
        "Início - Fim",
        "Recarga(ID)",
        "Observação",
        "Estação",
        "Usuário(Tag)",
        "Usuário(Nome)",
        "Energia(kWh)",
        "Tempo de ociosidade",
    ];
    for (c, h) in header.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let time = Format::new().set_num_format("hh:mm:ss");
    // Line 2: the worked example, pt-BR text number, idle as text.
    for (c, v) in [
        "05/03/2026 16:30 - 05/03/2026 18:30",
        "101",
        "",
        "Palmeiras 1",
        "AA01",
        "Maria",
        "10,000",
        "00:40:00",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(1, c as u16, *v).unwrap();
    }
    // Line 3: numbers as numbers, idle as an Excel time.
    ws.write_string(2, 0, "08/03/2026 10:00:00 - 08/03/2026 22:00:00")
        .unwrap();
    ws.write_number(2, 1, 102).unwrap();
    ws.write_string(2, 3, "Palmeiras 2").unwrap();
    ws.write_string(2, 4, "AA01").unwrap();
    ws.write_number(2, 6, 1234.567).unwrap();
    ws.write_number_with_format(2, 7, 15.0 / 1440.0, &time)
        .unwrap();
    // Line 4: a date that cannot be read and a dot as decimal point.
    for (c, v) in [
        "31/02/2026 10:00 - 31/02/2026 11:00",
        "103",
        "",
        "Palmeiras 1",
        "AA01",
        "",
        "12.5",
        "",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(3, c as u16, *v).unwrap();
    }
    wb.save_to_buffer().unwrap()
}

#[test]
fn the_vendor_reader_maps_a_generated_export_and_reports_the_bad_row() {
    let report = read_export(&export_xlsx(), Sao_Paulo).unwrap();
    assert_eq!(report.rows_read, 3);
    let ids: Vec<i64> = report.sessions.iter().map(|s| s.vendor_id).collect();
    assert_eq!(ids, vec![101, 102]);
    let first = &report.sessions[0];
    assert_eq!(first.start, utc("2026-03-05T19:30:00Z"));
    assert_eq!(first.energy_wh, 10_000);
    assert_eq!(first.idle_seconds, 2400);
    assert_eq!(first.precision, TimePrecision::Minute);
    assert_eq!(first.import_line, Some(2));
    let second = &report.sessions[1];
    assert_eq!(second.energy_wh, 1_234_567, "1234.567 kWh read exactly");
    assert_eq!(second.idle_seconds, 15 * 60);
    assert_eq!(second.charger, "Palmeiras 2");
    assert_eq!(second.precision, TimePrecision::Second);
    let bad: Vec<(u32, &str)> = report
        .rejected_rows
        .iter()
        .map(|p| (p.row, p.column.as_str()))
        .collect();
    assert_eq!(bad, vec![(4, "Início - Fim"), (4, "Energia(kWh)")]);
    assert_eq!(report.rows_refused(), 1);
}

#[test]
fn files_that_are_not_the_export_are_refused_whole() {
    let err = read_export(b"Recarga(ID);Estacao\n1;2\n", Sao_Paulo).unwrap_err();
    assert!(matches!(err, ExportReadError::NotXlsx(_)), "{err}");
    let err = read_export(b"PK\x03\x04garbage", Sao_Paulo).unwrap_err();
    assert!(matches!(err, ExportReadError::NotXlsx(_)), "{err}");
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.extend([0; 100]);
    assert!(matches!(
        read_export(&ole, Sao_Paulo),
        Err(ExportReadError::OldXls)
    ));
    let big = vec![0u8; (vetric_reports::MAX_EXPORT_BYTES + 1) as usize];
    assert!(matches!(
        read_export(&big, Sao_Paulo),
        Err(ExportReadError::TooLarge { .. })
    ));
    // A real workbook that is not the export: the domain's reason.
    let mut wb = Workbook::new();
    wb.add_worksheet().write_string(0, 0, "Nome").unwrap();
    let err = read_export(&wb.save_to_buffer().unwrap(), Sao_Paulo).unwrap_err();
    assert!(matches!(err, ExportReadError::Sheet(_)), "{err}");
    assert!(
        err.message_pt_br().contains("não parece"),
        "{}",
        err.message_pt_br()
    );
}

#[test]
fn a_sheet_with_too_many_rows_is_refused() {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Recarga(ID)").unwrap();
    for r in 1..=vetric_reports::MAX_EXPORT_ROWS as u32 {
        ws.write_number(r, 0, r).unwrap();
    }
    let err = read_export(&wb.save_to_buffer().unwrap(), Sao_Paulo).unwrap_err();
    assert!(matches!(err, ExportReadError::TooManyRows { .. }), "{err}");
}

/// A workbook with readable rows under a header that is not the export's (a column missing,
/// or one twice) is refused as a whole with the reason naming the column: no row of it is
/// offered for import, however good.
#[test]
fn an_export_missing_or_doubling_a_column_is_refused_whole_despite_good_rows() {
    let workbook = |header: &[&str]| {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in header.iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        // Two rows that would import under the full header (the worked example's figures).
        for r in 1..=2u32 {
            for (c, h) in header.iter().enumerate() {
                let v = match *h {
                    "Recarga(ID)" => format!("90{r}"),
                    "Estação" => "Palmeiras 1".to_owned(),
                    "Usuário(Tag)" => "AA01".to_owned(),
                    "Início - Fim" => format!("0{r}/03/2026 16:30 - 0{r}/03/2026 18:30"),
                    "Energia(kWh)" => "10,000".to_owned(),
                    "Tempo de ociosidade" => "00:40:00".to_owned(),
                    _ => String::new(),
                };
                ws.write_string(r, c as u16, v).unwrap();
            }
        }
        wb.save_to_buffer().unwrap()
    };
    let full = [
        "Recarga(ID)",
        "Estação",
        "Usuário(Tag)",
        "Início - Fim",
        "Energia(kWh)",
        "Tempo de ociosidade",
    ];
    // The control: with every column the two rows import.
    assert_eq!(
        read_export(&workbook(&full), Sao_Paulo)
            .unwrap()
            .sessions
            .len(),
        2
    );

    let err = read_export(&workbook(&full[..5]), Sao_Paulo).unwrap_err();
    assert!(
        matches!(
            &err,
            ExportReadError::Sheet(vetric_domain::ImportFileError::MissingColumns(cols))
                if cols == &["Tempo de ociosidade".to_owned()]
        ),
        "{err:?}"
    );
    assert_eq!(
        err.message_pt_br(),
        "faltam as colunas Tempo de ociosidade na primeira linha da planilha; exporte \
         novamente o relatório de recargas do fornecedor sem remover colunas"
    );

    let mut doubled = full.to_vec();
    doubled.push("energia (kwh)");
    let err = read_export(&workbook(&doubled), Sao_Paulo).unwrap_err();
    assert!(
        matches!(
            &err,
            ExportReadError::Sheet(vetric_domain::ImportFileError::DuplicateColumn(c))
                if c == "Energia(kWh)"
        ),
        "{err:?}"
    );
    assert_eq!(
        err.message_pt_br(),
        "a coluna Energia(kWh) aparece mais de uma vez; deixe apenas uma"
    );
}
