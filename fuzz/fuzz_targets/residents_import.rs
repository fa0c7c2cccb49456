//! The residents import reader (CSV or XLSX) and column finder on arbitrary bytes: never
//! panics; a refused file has a pt-BR message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vetric_web::residents_import::{Columns, Declared, read_sheet};

fuzz_target!(|data: &[u8]| {
    match read_sheet(data, Declared::Any) {
        Ok(sheet) => {
            let _ = Columns::of(&sheet.header);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
