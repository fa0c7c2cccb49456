//! The vendor export reader as CI fuzzes it (STACK.md §34: the `fuzz/` targets need nightly, so
//! CI runs the same input classes here, on stable, with a fixed number of cases): random bytes,
//! random bytes behind a zip signature, and a real export truncated, with bytes flipped, with
//! its sheet XML mutated and re-zipped, and with huge declared sizes. Whatever comes in, the
//! reader never panics and a refused file has a pt-BR reason; a report never counts more
//! refused or read sessions than rows.

use chrono_tz::America::Sao_Paulo;
use proptest::prelude::*;
use proptest::sample::Index;
use rust_xlsxwriter::Workbook;
use std::io::{Cursor, Read, Write};
use std::sync::LazyLock;
use vetric_reports::read_export;

/// A real-looking export: the columns in another order, an extra column, pt-BR numbers, times
/// with and without seconds, a bad row.
static EXPORT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let rows = [
        [
            "Energia(kWh)",
            "Recarga(ID)",
            "Extra",
            "Estação",
            "Usuário(Tag)",
            "Usuário(Nome)",
            "Início - Fim",
            "Tempo de ociosidade",
        ],
        [
            "1.234,567",
            "1",
            "x",
            "Vaga 1",
            "AA01",
            "Maria",
            "05/03/2026 16:30:00 - 05/03/2026 18:30:00",
            "00:40:00",
        ],
        [
            "10,000",
            "2",
            "",
            "Vaga 2",
            "",
            "",
            "06/03/2026 08:00 - 06/03/2026 09:00",
            "",
        ],
        [
            "12.5",
            "3",
            "",
            "Vaga 1",
            "AA01",
            "",
            "31/02/2026 10:00 - 31/02/2026 11:00",
            "",
        ],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
});

/// Reads `bytes`; panics (failing the case) only on a broken promise.
fn check(bytes: &[u8]) {
    match read_export(bytes, Sao_Paulo) {
        Ok(report) => {
            assert!(report.rows_refused() <= report.rows_read as usize);
            assert!(report.sessions.len() + report.rows_refused() <= report.rows_read as usize);
        }
        Err(e) => assert!(!e.message_pt_br().trim().is_empty(), "{e:?}"),
    }
}

/// The export's members, unpacked.
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

/// Members zipped again without compression.
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
        // Regressions found here are kept as named tests instead of a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_zip_signature(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut b = b"PK\x03\x04".to_vec();
        b.extend(bytes);
        check(&b);
    }

    #[test]
    fn truncated_export(cut in any::<Index>()) {
        let export = &*EXPORT;
        check(&export[..cut.index(export.len())]);
    }

    #[test]
    fn export_with_flipped_bytes(flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..16)) {
        let mut b = EXPORT.clone();
        for (at, value) in flips {
            let i = at.index(b.len());
            b[i] ^= value | 1;
        }
        check(&b);
    }

    /// The sheet's XML itself mutated (re-zipped, so the zip is valid and calamine parses the
    /// damage): bytes overwritten, a piece cut out.
    #[test]
    fn export_with_mutated_sheet_xml(
        flips in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of((any::<Index>(), 0usize..64)),
    ) {
        let mut m = members(&EXPORT);
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
fn the_real_export_reads() {
    let report = read_export(&EXPORT, Sao_Paulo).unwrap();
    assert_eq!(report.rows_read, 3);
    assert_eq!(report.sessions.len(), 2);
    assert_eq!(
        report.sessions[0].energy_wh, 1_234_567,
        "thousands separator"
    );
    assert_eq!(report.rows_refused(), 1);
    // The re-zipped copy reads the same: the mutation test starts from a valid file.
    assert_eq!(
        read_export(&rezip(&members(&EXPORT)), Sao_Paulo).unwrap(),
        report
    );
}

/// Every size field of the zip (local headers and central directory) says ~4 GiB: refused as
/// a whole, with a reason, before anything is inflated.
#[test]
fn huge_declared_sizes_are_refused() {
    let mut b = rezip(&members(&EXPORT));
    let put =
        |b: &mut Vec<u8>, at: usize| b[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let mut i = 0;
    while i + 30 <= b.len() {
        match &b[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => {
                put(&mut b, i + 18);
                put(&mut b, i + 22);
            }
            [0x50, 0x4b, 0x01, 0x02] if i + 28 <= b.len() => {
                put(&mut b, i + 20);
                put(&mut b, i + 24);
            }
            _ => {}
        }
        i += 1;
    }
    let err = read_export(&b, Sao_Paulo).unwrap_err();
    assert!(!err.message_pt_br().is_empty(), "{err:?}");
}

/// An entry that really inflates past the cap (about 65 MiB of one byte, under 100 KiB
/// compressed) is refused by the bytes it produces.
#[test]
fn a_zip_bomb_is_refused() {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, data) in members(&EXPORT) {
        out.start_file(name.as_str(), deflated).unwrap();
        out.write_all(&data).unwrap();
    }
    out.start_file("xl/media/bomb.bin", deflated).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..=(vetric_reports::vendor::MAX_UNPACKED_BYTES >> 20) {
        out.write_all(&chunk).unwrap();
    }
    let bytes = out.finish().unwrap().into_inner();
    assert!(bytes.len() < vetric_reports::MAX_EXPORT_BYTES as usize);
    let err = read_export(&bytes, Sao_Paulo).unwrap_err();
    assert!(
        matches!(
            err,
            vetric_reports::ExportReadError::TooLargeUnpacked { .. }
        ),
        "{err:?}"
    );
}
