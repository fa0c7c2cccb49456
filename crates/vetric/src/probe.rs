//! `vetric cvepro check`: probe a vendor account once, the "test the vendor connection" step of
//! a deployment checklist. It logs in, reads the chargers and the transaction window, and says
//! what it found and which vendor quirks it had to work around; on failure it says what failed
//! and what to check. The probe itself is [`vetric_cvepro::probe`], shared with the site
//! settings page; this module owns the flags and the text output.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use url::Url;
use vetric_cvepro::CveProConfig;
use vetric_cvepro::probe::{self, ProbeReport};
use vetric_domain::Secret;

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

/// Runs the probe; `Ok(true)` when the vendor answered as expected.
pub async fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let base_url = Url::parse(&args.base_url)
        .map_err(|e| anyhow::anyhow!("--base-url {:?} is not a URL ({e})", args.base_url))?;
    let config = CveProConfig::new(
        base_url,
        Secret::new(args.api_key),
        args.email,
        Secret::new(args.password),
    );
    // The same probe as the site settings page's "Testar conexão" button.
    let out = probe::probe(config, Utc::now(), None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.ok {
        print!("{}", render_text(&out));
    }
    if let Some(e) = &out.error {
        eprintln!("error: CVE-Pro check failed: {}. {}", e.message, e.hint);
        return Ok(false);
    }
    Ok(true)
}

/// Human-readable report; times in the vendor's zone, as the operator reads them in its panel.
fn render_text(out: &ProbeReport) -> String {
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
