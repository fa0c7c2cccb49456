//! The one-shot probe of a vendor account: log in, read the chargers and the transaction
//! window once, and say what was found and which quirks were worked around — or what failed
//! and what to check.
//!
//! It lives here, beside the client, so that `vetric cvepro check` (the deployment checklist)
//! and the site settings page's "Testar conexão" button run the very same code: an operator
//! who sees "ok" in one place must never see a different verdict in the other. The report is
//! plain data (serialisable as the CLI's `--json` output); how it is shown is the caller's job.

use crate::client::{BuildError, CveProClient};
use crate::config::CveProConfig;
use crate::error::CveProError;
use crate::report::SnapshotReport;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use vetric_domain::VendorSnapshot;

/// Total time an interactive probe (a button on a page) may take, login included.
pub const INTERACTIVE_TOTAL: Duration = Duration::from_secs(10);

/// What one probe found. Field names are the `vetric cvepro check --json` output.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ProbeError>,
    pub chargers: Vec<ProbeCharger>,
    pub active_sessions: Vec<ProbeSession>,
    pub transactions_in_window: usize,
    pub transaction_offset_hours: i64,
    pub quirks: Vec<String>,
}

/// Why a probe failed: the error kind ([`crate::ErrorKind::as_str`]), the message (never a
/// secret) and what to check.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeError {
    pub kind: &'static str,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeCharger {
    pub name: String,
    pub charge_box_id: String,
    pub uuid: String,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub connectors: Vec<ProbeConnector>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeConnector {
    pub connector_id: u32,
    pub status: String,
    pub since: DateTime<Utc>,
    pub error_code: String,
    pub power_max_w: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSession {
    pub id: i64,
    pub charger: String,
    pub connector_id: u32,
    pub tag: Option<String>,
    pub user_name: Option<String>,
    pub start: DateTime<Utc>,
    pub energy_wh: Option<i64>,
}

/// `config` with timings fit for a person waiting on a page: short connect and request
/// timeouts and a single retry, so a failure is reported well inside [`INTERACTIVE_TOTAL`]
/// instead of being cut off by it.
pub fn interactive(mut config: CveProConfig) -> CveProConfig {
    config.connect_timeout = Duration::from_secs(3);
    config.request_timeout = Duration::from_secs(4);
    config.retry.max_attempts = 2;
    config.retry.base = Duration::from_millis(200);
    config.retry.cap = Duration::from_millis(500);
    config.retry.max_retry_after = Duration::from_secs(1);
    config
}

/// Probes the account once with a fresh client (no shared token, breaker or budget), reading
/// the transaction window as of `now`. With `total`, a probe still running after that long is
/// abandoned and reported as a timeout. Fails only when the client cannot be built.
pub async fn probe(
    config: CveProConfig,
    now: DateTime<Utc>,
    total: Option<Duration>,
) -> Result<ProbeReport, BuildError> {
    let base_url = config.base_url.to_string();
    let client = CveProClient::new(config)?;
    let result = match total {
        None => client.snapshot(now, None).await,
        Some(limit) => match tokio::time::timeout(limit, client.snapshot(now, None)).await {
            Ok(r) => r,
            Err(_) => Err(CveProError::Timeout {
                endpoint: "check",
                after: limit,
            }),
        },
    };
    Ok(match &result {
        Ok(report) => success(base_url, report),
        Err(e) => failure(base_url, e),
    })
}

fn success(base_url: String, report: &SnapshotReport) -> ProbeReport {
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
    ProbeReport {
        ok: true,
        base_url,
        error: None,
        chargers: chargers
            .iter()
            .map(|c| ProbeCharger {
                name: c.name.clone(),
                charge_box_id: c.charge_box_id.clone(),
                uuid: c.uuid.clone(),
                last_heartbeat: c.last_heartbeat,
                connectors: c
                    .connectors
                    .iter()
                    .map(|k| ProbeConnector {
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
            .map(|t| ProbeSession {
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

fn failure(base_url: String, e: &CveProError) -> ProbeReport {
    ProbeReport {
        ok: false,
        base_url,
        error: Some(ProbeError {
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
