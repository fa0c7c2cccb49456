//! `vetric cvepro check`: probe a vendor account once, the "test the vendor connection" step of
//! a deployment checklist. It logs in, reads the chargers and the transaction window, and says
//! what it found and which vendor quirks it had to work around; on failure it says what failed
//! and what to check.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use url::Url;
use vetric_cvepro::{CveProClient, CveProConfig, CveProError, SnapshotReport};
use vetric_domain::{Secret, VendorSnapshot};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// CVE-Pro base URL (production: https://cs.intelbras-cve-pro.com.br).
    #[arg(long, env = "CVEPRO_BASE_URL")]
    base_url: String,
    /// The tenant's API key.
    #[arg(long, env = "CVEPRO_API_KEY", hide_env_values = true)]
    api_key: String,
    /// The API account's e-mail.
    #[arg(long, env = "CVEPRO_EMAIL")]
    email: String,
    /// The API account's password.
    #[arg(long, env = "CVEPRO_PASSWORD", hide_env_values = true)]
    password: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct CheckOutput {
    ok: bool,
    base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<CheckError>,
    chargers: Vec<ChargerOut>,
    active_sessions: Vec<SessionOut>,
    transactions_in_window: usize,
    transaction_offset_hours: i64,
    quirks: Vec<String>,
}

#[derive(Serialize)]
struct CheckError {
    kind: &'static str,
    message: String,
    hint: String,
}

#[derive(Serialize)]
struct ChargerOut {
    name: String,
    charge_box_id: String,
    uuid: String,
    last_heartbeat: Option<DateTime<Utc>>,
    connectors: Vec<ConnectorOut>,
}

#[derive(Serialize)]
struct ConnectorOut {
    connector_id: u32,
    status: String,
    since: DateTime<Utc>,
    error_code: String,
    power_max_w: Option<u32>,
}

#[derive(Serialize)]
struct SessionOut {
    id: i64,
    charger: String,
    connector_id: u32,
    tag: Option<String>,
    user_name: Option<String>,
    start: DateTime<Utc>,
    energy_wh: Option<i64>,
}

/// Runs the probe; `Ok(true)` when the vendor answered as expected.
pub async fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let base_url = Url::parse(&args.base_url)
        .map_err(|e| anyhow::anyhow!("--base-url {:?} is not a URL ({e})", args.base_url))?;
    let config = CveProConfig::new(
        base_url.clone(),
        Secret::new(args.api_key),
        args.email,
        Secret::new(args.password),
    );
    let client = CveProClient::new(config)?;
    let now = Utc::now();
    let result = client.snapshot(now, None).await;
    let out = match &result {
        Ok(report) => success_output(&base_url, report),
        Err(e) => failure_output(&base_url, e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.ok {
        print!("{}", render_text(&out));
    }
    if let Err(e) = result {
        eprintln!("error: CVE-Pro check failed: {e}. {}", e.hint());
        return Ok(false);
    }
    Ok(true)
}

fn success_output(base_url: &Url, report: &SnapshotReport) -> CheckOutput {
    let VendorSnapshot {
        chargers,
        transactions,
        ..
    } = &report.snapshot;
    let charger_name = |uuid: &str| {
        chargers
            .iter()
            .find(|c| c.uuid == uuid)
            .map(|c| c.name.clone())
    };
    CheckOutput {
        ok: true,
        base_url: base_url.to_string(),
        error: None,
        chargers: chargers
            .iter()
            .map(|c| ChargerOut {
                name: c.name.clone(),
                charge_box_id: c.charge_box_id.clone(),
                uuid: c.uuid.clone(),
                last_heartbeat: c.last_heartbeat,
                connectors: c
                    .connectors
                    .iter()
                    .map(|k| ConnectorOut {
                        connector_id: k.connector_id,
                        status: k.status.as_vendor_str().to_owned(),
                        since: k.status_since,
                        error_code: k.error_code.clone(),
                        power_max_w: k.power_max_w,
                    })
                    .collect(),
            })
            .collect(),
        active_sessions: transactions
            .iter()
            .filter(|t| t.is_open())
            .map(|t| SessionOut {
                id: t.id,
                charger: charger_name(&t.charger_uuid).unwrap_or_else(|| t.charge_box_id.clone()),
                connector_id: t.connector_id,
                tag: t.tag.as_ref().map(|t| t.as_str().to_owned()),
                user_name: t.user_name.as_ref().map(|n| n.trim().to_owned()),
                start: t.start,
                energy_wh: t.energy_wh,
            })
            .collect(),
        transactions_in_window: transactions.len(),
        transaction_offset_hours: report.quirks.transaction_offset_hours,
        quirks: report.quirks.notes(),
    }
}

fn failure_output(base_url: &Url, e: &CveProError) -> CheckOutput {
    CheckOutput {
        ok: false,
        base_url: base_url.to_string(),
        error: Some(CheckError {
            kind: e.kind().as_str(),
            message: e.to_string(),
            hint: e.hint(),
        }),
        chargers: vec![],
        active_sessions: vec![],
        transactions_in_window: 0,
        transaction_offset_hours: 0,
        quirks: vec![],
    }
}

/// Human-readable report; times in the vendor's zone, as the operator reads them in its panel.
fn render_text(out: &CheckOutput) -> String {
    use std::fmt::Write;
    let tz: Tz = chrono_tz::America::Sao_Paulo;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%d/%m/%Y %H:%M:%S").to_string();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CVE-Pro at {}: ok (login, chargers, transactions)",
        out.base_url
    );
    let _ = writeln!(s, "chargers: {}", out.chargers.len());
    for c in &out.chargers {
        let hb = c
            .last_heartbeat
            .map(local)
            .unwrap_or_else(|| "never".into());
        let _ = writeln!(s, "  {} ({}), last heartbeat {hb}", c.name, c.charge_box_id);
        for k in &c.connectors {
            let power = k
                .power_max_w
                .map(|w| format!(", max {:.1} kW", f64::from(w) / 1000.0))
                .unwrap_or_default();
            let error = if k.error_code == "NoError" {
                String::new()
            } else {
                format!(", error {}", k.error_code)
            };
            let _ = writeln!(
                s,
                "    connector {}: {} since {}{power}{error}",
                k.connector_id,
                k.status,
                local(k.since)
            );
        }
    }
    let _ = writeln!(
        s,
        "active sessions: {} (of {} transactions in the window)",
        out.active_sessions.len(),
        out.transactions_in_window
    );
    for t in &out.active_sessions {
        let energy = t
            .energy_wh
            .map(|wh| format!(", {:.3} kWh so far", wh as f64 / 1000.0))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  #{} on {} connector {}, tag {}, started {}{energy}",
            t.id,
            t.charger,
            t.connector_id,
            t.tag.as_deref().unwrap_or("(empty)"),
            local(t.start)
        );
    }
    let _ = writeln!(
        s,
        "transaction time offset: {:+} h (0 means the vendor's transaction times are UTC)",
        out.transaction_offset_hours
    );
    if out.quirks.is_empty() {
        let _ = writeln!(s, "quirks worked around: none");
    } else {
        let _ = writeln!(s, "quirks worked around:");
        for q in &out.quirks {
            let _ = writeln!(s, "  - {q}");
        }
    }
    s
}
