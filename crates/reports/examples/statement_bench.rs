//! Times a large site's statement end to end: 1,000 apartments × 30 sessions in a month,
//! computed by the domain, then written as CSV, XLSX, the site's PDF and one apartment's PDF.
//! Prints each step's wall time and the process's peak RSS so far (VmHWM).
//!
//! `cargo run --release -p vetric-reports --example statement_bench [-- APARTMENTS SESSIONS [OUT_DIR]]`
//! (with OUT_DIR the files are written there, to look at them).

use chrono::{Duration, TimeZone, Utc};
use chrono_tz::America::Sao_Paulo;
use std::time::Instant;
use vetric_domain::statement::compute;
use vetric_domain::{
    LocalMonth, ResidentRef, SessionRecord, SessionSource, StatementInput, Tag, TagDirectory,
    TariffHistory, TariffSpec, TimePrecision,
};
use vetric_reports::pdf::{self, PdfMeta};
use vetric_reports::{csv, xlsx};

/// The process's peak resident set so far, from /proc (Linux); "?" elsewhere.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn step<T>(name: &str, f: impl FnOnce() -> T, size: impl Fn(&T) -> String) -> T {
    let t = Instant::now();
    let out = f();
    let elapsed = t.elapsed();
    println!(
        "{name:<22} {:>9.1} ms  {:>14}  peak RSS {}",
        elapsed.as_secs_f64() * 1000.0,
        size(&out),
        peak_rss()
    );
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let apartments: i64 = args.get(1).map_or(Ok(1000), |a| a.parse())?;
    let per_apartment: i64 = args.get(2).map_or(Ok(30), |a| a.parse())?;
    let out_dir = args.get(3).map(std::path::PathBuf::from);

    let tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .map_err(|e| format!("tariff: {e:?}"))?;
    let first = Sao_Paulo
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .ok_or("no local midnight")?
        .with_timezone(&Utc);
    let mut ownership = TagDirectory::new();
    let mut sessions = Vec::new();
    for a in 0..apartments {
        let tag = Tag::parse(&format!("T{a:05}"))?;
        ownership = ownership.with(
            tag.clone(),
            ResidentRef {
                resident_id: a,
                name: format!("Morador {a}"),
                apartment: format!("Bloco {} – {:04}", a % 4 + 1, a),
            },
            first - Duration::days(60),
            None,
        );
        for s in 0..per_apartment {
            let start = first + Duration::minutes((a * 397 + s * 1439) % (30 * 24 * 60));
            sessions.push(SessionRecord {
                vendor_id: a * 10_000 + s,
                charger: format!("Carregador {}", (a + s) % 6 + 1),
                tag: Some(tag.clone()),
                start,
                stop: start + Duration::minutes(45 + (s % 7) * 35),
                energy_wh: 3_000 + (a * 37 + s * 101) % 40_000,
                idle_seconds: (s % 5) * 600,
                source: SessionSource::Own,
                precision: TimePrecision::Second,
                import_line: None,
                user_name: None,
            });
        }
    }
    let input = StatementInput {
        site_name: "Residencial Bench".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse("2026-03")?,
        sessions,
        ownership,
        tariffs: TariffHistory::new([tariff])?,
    };
    println!(
        "{apartments} apartments × {per_apartment} sessions = {} sessions",
        input.sessions.len()
    );
    let kib = |b: &Vec<u8>| format!("{} KiB", b.len() / 1024);
    let st = step(
        "compute (domain)",
        || compute(&input),
        |s| format!("{} lines", s.lines.len()),
    );
    let summary = step("CSV summary", || csv::summary(&st), kib);
    let detail = step(
        "CSV sessions",
        || csv::sessions(&st),
        |r| match r {
            Ok(b) => kib(b),
            Err(e) => e.to_string(),
        },
    )?;
    let meta = PdfMeta {
        generated_at: Utc::now(),
        version: Some(1),
        logo_svg: None,
    };
    let site = step(
        "PDF site",
        || pdf::site_statement(&st, &meta),
        |r| match r {
            Ok(b) => kib(b),
            Err(e) => e.to_string(),
        },
    )?;
    let apt = st.lines[st.lines.len() / 2].apartment.clone();
    let one = step(
        "PDF one apartment",
        || pdf::apartment_statement(&st, apt.as_deref(), &meta),
        |r| match r {
            Ok(b) => kib(b),
            Err(e) => e.to_string(),
        },
    )?;
    let _ = step(
        "PDF one apartment (2)",
        || pdf::apartment_statement(&st, apt.as_deref(), &meta),
        |r| match r {
            Ok(b) => kib(b),
            Err(e) => e.to_string(),
        },
    )?;
    // Last: the XLSX writer's memory would hide the PDFs' peak RSS.
    let book = step(
        "XLSX",
        || xlsx::statement(&st),
        |r| match r {
            Ok(b) => kib(b),
            Err(e) => e.to_string(),
        },
    )?;
    println!("total {}", st.totals.total);
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("summary.csv"), &summary)?;
        std::fs::write(dir.join("sessions.csv"), &detail)?;
        std::fs::write(dir.join("statement.xlsx"), &book)?;
        std::fs::write(dir.join("site.pdf"), &site)?;
        std::fs::write(dir.join("apartment.pdf"), &one)?;
        println!("written to {}", dir.display());
    }
    Ok(())
}
