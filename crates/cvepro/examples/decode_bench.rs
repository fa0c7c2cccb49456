//! Decoding throughput of a large `/chargepoints` payload (BENCHMARKS.md).
//!
//! Builds a payload of N chargers (default 1,000) by repeating the recorded fixture's chargers
//! with distinct ids, then decodes and maps it repeatedly, exactly as the client does for a
//! real response (strict decoding with path tracking and unknown-field counting, then wire →
//! domain). Prints time per payload, per charger, and the peak resident memory of a fresh
//! process that only reads the payload and decodes it (the payload is built in this process,
//! written to a temporary file, and decoded by a child run of this same example, so building
//! it does not inflate the peak).
//!
//!     cargo run --release -p vetric-cvepro --example decode_bench -- [CHARGERS] [ROUNDS]

use std::time::Instant;
use vetric_cvepro::QuirkReport;
use vetric_cvepro::map::map_chargers;
use vetric_cvepro::wire::{self, chargepoints};

const FIXTURE: &str = include_str!("../tests/fixtures/cvepro-chargepoints.json");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--decode-file") {
        let path = args.next().ok_or("--decode-file needs a path")?;
        let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
        return decode_file(&path, rounds);
    }
    let chargers: usize = first.map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);

    let fixture: serde_json::Value = serde_json::from_str(FIXTURE)?;
    let template = fixture["chargePointList"]
        .as_array()
        .ok_or("fixture has no chargePointList")?;
    let mut list = Vec::with_capacity(chargers);
    for i in 0..chargers {
        let mut cp = template[i % template.len()].clone();
        cp["chargeBoxPk"] = (100_000 + i).into();
        cp["chargeBoxId"] = format!("BENCH{i:08}").into();
        cp["uuid"] = format!("00000000-0000-4000-8000-{i:012}").into();
        cp["description"] = format!("Bench {i}").into();
        list.push(cp);
    }
    let body = serde_json::to_vec(&serde_json::json!({
        "error": null, "chargePointList": list, "count": chargers
    }))?;

    let path =
        std::env::temp_dir().join(format!("vetric-decode-bench-{}.json", std::process::id()));
    std::fs::write(&path, &body)?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--decode-file")
        .arg(&path)
        .arg(rounds.to_string())
        .status();
    let _ = std::fs::remove_file(&path);
    if !status?.success() {
        return Err("the decoding child failed".into());
    }
    Ok(())
}

fn decode_file(path: &str, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rss_start = peak_rss_kib();
    let body = std::fs::read(path)?;
    let rss_before = peak_rss_kib();

    // The floor: plain serde into the same wire types, no path tracking, no unknown-field count.
    let started = Instant::now();
    for _ in 0..rounds {
        let plain: chargepoints::ChargepointsResponse = serde_json::from_slice(&body)?;
        std::hint::black_box(plain);
    }
    let plain_per_payload = started.elapsed() / rounds as u32;

    let mut decoded = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        let resp = wire::decode::<chargepoints::ChargepointsResponse>(
            chargepoints::ENDPOINT,
            &body,
            chargepoints::KNOWN,
        )?;
        let mut report = QuirkReport::default();
        decoded = map_chargers(resp.value, chrono_tz::America::Sao_Paulo, &mut report)?.len();
    }
    let elapsed = started.elapsed();
    let per_payload = elapsed / rounds as u32;
    let chargers = decoded;
    println!("payload: {chargers} chargers, {} bytes", body.len());
    println!("rounds: {rounds}, decoded {decoded} chargers per round");
    println!(
        "time per payload: {:.2} ms; per charger: {:.2} µs; throughput: {:.1} MB/s",
        per_payload.as_secs_f64() * 1e3,
        per_payload.as_secs_f64() * 1e6 / chargers as f64,
        body.len() as f64 / per_payload.as_secs_f64() / 1e6
    );
    println!(
        "plain serde_json into the same types (no strictness bookkeeping): {:.2} ms per payload",
        plain_per_payload.as_secs_f64() * 1e3
    );
    println!(
        "peak RSS: {rss_start} KiB at start, {rss_before} KiB with the payload read, {} KiB peak while decoding",
        peak_rss_kib()
    );
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB; 0 elsewhere.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
