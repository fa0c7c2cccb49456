//! The vendor's XLSX export reader on arbitrary bytes: never panics, and a refused file always
//! has a pt-BR reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match vetric_reports::read_export(data, chrono_tz::America::Sao_Paulo) {
        Ok(report) => {
            assert!(report.rows_refused() <= report.rows_read as usize);
            assert!(report.sessions.len() <= report.rows_read as usize);
        }
        Err(e) => assert!(!e.message_pt_br().is_empty()),
    }
});
