//! The strict CVE-Pro decoder on arbitrary bodies of each endpoint: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vetric_cvepro::wire::{self, chargepoints, login, transaction};

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<chargepoints::ChargepointsResponse>(
        "chargepoints",
        data,
        chargepoints::KNOWN,
    );
    let _ =
        wire::decode::<transaction::TransactionResponse>("transaction", data, transaction::KNOWN);
    let _ = wire::decode::<login::LoginResponse>("login", data, login::KNOWN);
    let _ = wire::vendor_error(data);
});
