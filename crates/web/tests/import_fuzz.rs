//! The residents import reader as CI fuzzes it (STACK.md §34; the `fuzz/` targets need
//! nightly): a real CSV and a real XLSX truncated, with bytes flipped, with the sheet XML
//! mutated and re-zipped, and with huge declared zip sizes. The reader never panics and a
//! refused file has a pt-BR message. (Random bytes and random text are the unit tests of
//! `residents_import`.)

use proptest::prelude::*;
use proptest::sample::Index;
use rust_xlsxwriter::Workbook;
use std::io::{Cursor, Read, Write};
use std::sync::LazyLock;
use vetric_web::residents_import::{Columns, Declared, read_sheet};

const CSV: &[u8] = "\u{FEFF}nome;bloco;unidade;telefone;email;tags;tag_valida_desde\r\n\
     Maria Silva;A;302;+55 11 91234-5678;maria@exemplo.com;04A1B2C3|04A1B2C4;01/03/2026\r\n\
     \"Souza; João\";B;101;+55 21 98765-4321;;;\r\n"
    .as_bytes();

static XLSX: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Lista de moradores").unwrap();
    for (c, h) in ["nome", "apartamento", "telefone", "tags", "extra"]
        .iter()
        .enumerate()
    {
        ws.write_string(1, c as u16, *h).unwrap();
    }
    ws.write_string(2, 0, "Maria").unwrap();
    ws.write_string(2, 1, "A-302").unwrap();
    ws.write_number(2, 2, 5511912345678.0).unwrap();
    ws.write_string(2, 3, "AAA1").unwrap();
    wb.save_to_buffer().unwrap()
});

fn check(bytes: &[u8]) {
    match read_sheet(bytes, Declared::Any) {
        Ok(sheet) => {
            let _ = Columns::of(&sheet.header);
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "{e:?}"),
    }
}

fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let name = entry.name().unwrap().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn rezip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        out.start_file(name.as_str(), stored).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn truncated_files(cut in any::<Index>()) {
        check(&CSV[..cut.index(CSV.len())]);
        check(&XLSX[..cut.index(XLSX.len())]);
    }

    #[test]
    fn files_with_flipped_bytes(flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..16)) {
        let mut csv = CSV.to_vec();
        let mut xlsx = XLSX.clone();
        for (at, value) in flips {
            let i = at.index(csv.len());
            csv[i] ^= value | 1;
            let i = at.index(xlsx.len());
            xlsx[i] ^= value | 1;
        }
        check(&csv);
        check(&xlsx);
    }

    #[test]
    fn xlsx_with_mutated_sheet_xml(
        flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of((any::<Index>(), 0usize..64)),
    ) {
        let mut m = members(&XLSX);
        for (name, data) in m.iter_mut() {
            if name.starts_with("xl/worksheets/") || name == "xl/sharedStrings.xml" {
                for (at, value) in &flips {
                    let i = at.index(data.len());
                    data[i] = *value;
                }
                if let Some((at, len)) = &cut {
                    let i = at.index(data.len());
                    let end = (i + len).min(data.len());
                    data.drain(i..end);
                }
            }
        }
        check(&rezip(&m));
    }
}

#[test]
fn the_real_files_read() {
    assert_eq!(read_sheet(CSV, Declared::Any).unwrap().rows.len(), 2);
    assert_eq!(read_sheet(&XLSX, Declared::Any).unwrap().rows.len(), 1);
    assert_eq!(
        read_sheet(&rezip(&members(&XLSX)), Declared::Any).unwrap(),
        read_sheet(&XLSX, Declared::Any).unwrap()
    );
}

#[test]
fn huge_declared_sizes_are_refused() {
    let mut b = rezip(&members(&XLSX));
    let put =
        |b: &mut Vec<u8>, at: usize| b[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let mut i = 0;
    while i + 30 <= b.len() {
        match &b[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => {
                put(&mut b, i + 18);
                put(&mut b, i + 22);
            }
            [0x50, 0x4b, 0x01, 0x02] => {
                put(&mut b, i + 20);
                put(&mut b, i + 24);
            }
            _ => {}
        }
        i += 1;
    }
    let err = read_sheet(&b, Declared::Any).unwrap_err();
    assert!(!err.to_string().is_empty());
}
