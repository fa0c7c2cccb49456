//! `vetric demo` as a new user meets it: a statement of last month without importing anything
//! (issue #8), issuing it e-mails the manager (issue #8 item 8, through `vetric statement
//! --issue`), and operator alerts are visible in the demo's log (issue #6).

use chrono::{Datelike, Utc};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vetric");

fn previous_month() -> String {
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .date_naive();
    let prev = today.with_day(1).and_then(|d| d.pred_opt()).unwrap();
    format!("{:04}-{:02}", prev.year(), prev.month())
}

fn positive(v: &serde_json::Value) -> bool {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(|x| x > 0.0)
}

#[tokio::test]
async fn the_demo_has_last_months_statement_and_shows_operator_alerts() {
    let dir = scratch_dir();
    let listen = free_local_addr().to_string();
    let data_dir = dir.path().join("demo");
    let mut demo = VetricProcess::spawn(
        Path::new(BIN),
        &[
            "demo",
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--chargers",
            "2",
            "--poll-interval-s",
            "1",
        ],
        &[("VETRIC_LOG", "info"), ("VETRIC_LOG_FORMAT", "text")],
    );
    demo.wait_for_stdout(Duration::from_secs(60), |l| {
        l.contains("vetric demo is running")
    })
    .await;
    let sim = demo
        .wait_for_stdout(Duration::from_secs(10), |l| {
            l.trim_start().starts_with("simulator:")
        })
        .await;
    let sim_url = sim.split_whitespace().nth(1).unwrap().to_owned();
    demo.wait_for_stdout(Duration::from_secs(10), |l| {
        l.trim_start().starts_with("alerts:")
    })
    .await;

    // Last month's statement, from the demo's store while it runs.
    let out = Command::new(BIN)
        .args([
            "statement",
            "--config",
            data_dir.join("vetric.toml").to_str().unwrap(),
            "--site",
            "jardim-palmeiras",
            "--month",
            &previous_month(),
        ])
        .env_remove("VETRIC_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &doc["totals"];
    assert!(positive(&totals["total"]), "{totals}");
    assert!(
        positive(&totals["peak_kwh"]) && positive(&totals["offpeak_kwh"]),
        "{totals}"
    );
    assert!(positive(&totals["idle_fee"]), "{totals}");
    let lines = doc["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["apartment"].is_null()),
        "sem morador"
    );
    assert!(
        lines.iter().filter(|l| !l["apartment"].is_null()).count() >= 3,
        "several apartments"
    );

    // Issued from the command line, the statement is e-mailed to the site's manager: the
    // demo's mail sink logs it.
    let out = Command::new(BIN)
        .args([
            "statement",
            "--config",
            data_dir.join("vetric.toml").to_str().unwrap(),
            "--site",
            "jardim-palmeiras",
            "--month",
            &previous_month(),
            "--issue",
        ])
        .env_remove("VETRIC_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_logged(
        &demo,
        "demo mail sink: to sindico@vetric.local — Extrato de recarga",
    )
    .await;

    // The vendor's answer changes shape: the operators' alert reaches the demo's sink, and the
    // demo logs it.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .post(format!("{sim_url}/__sim/faults"))
        .json(&serde_json::json!({ "kind": "rename_charge_point_list" }))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let line = wait_logged(&demo, "demo alert sink: [vendor_shape_changed]").await;
    assert!(line.contains("chargePointList"), "{line}");
    demo.terminate(Duration::from_secs(30)).await;
}

/// The first log line of `demo` containing `needle`, waiting up to a minute for it.
async fn wait_logged(demo: &VetricProcess, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logged = demo
            .stderr_lines()
            .into_iter()
            .chain(demo.stdout_lines())
            .find(|l| l.contains(needle));
        if let Some(line) = logged {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not logged within 60 s\n{}",
            demo.transcript()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
