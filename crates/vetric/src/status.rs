//! `vetric status`: what the store knows now, per site — freshness, the vendor link, every
//! connector, the open sessions. It reads the store only (it works while `serve` runs, and
//! while the vendor is down), and its JSON shape is public (DESIGN.md).
//!
//! Freshness and the vendor link are computed by [`vetric_web::vitals`], the same code
//! `/health` and `/metrics` use.

use crate::config::SiteConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;
use vetric_store::{SiteId, Store};
use vetric_web::view::FreshnessView;
use vetric_web::vitals::{self, VendorView};

#[derive(Serialize)]
pub struct Status {
    pub sites: Vec<SiteStatus>,
}

#[derive(Serialize)]
pub struct SiteStatus {
    pub slug: String,
    pub name: String,
    /// `{"state": "fresh"|"stale"|"offline", "as_of"}`.
    pub freshness: FreshnessView,
    /// `{"link", "last_success", "last_error", "breaker", "consecutive_failures"}`.
    pub vendor: VendorView,
    pub connectors: Vec<Connector>,
    pub open_sessions: Vec<OpenSession>,
}

#[derive(Serialize)]
pub struct Connector {
    pub charger: String,
    pub connector_id: u32,
    /// The OCPP status as the vendor spells it.
    pub status: String,
    pub label: &'static str,
    pub since: DateTime<Utc>,
    pub offline: bool,
    pub unidentified_charging: bool,
}

#[derive(Serialize)]
pub struct OpenSession {
    pub id: i64,
    pub charger: String,
    pub connector_id: u32,
    pub resident: Option<String>,
    pub apartment: Option<String>,
    pub tag: Option<String>,
    pub start: DateTime<Utc>,
    pub energy_wh: Option<i64>,
}

pub async fn collect(
    store: &Store,
    sites: &[(SiteId, SiteConfig)],
    now: DateTime<Utc>,
) -> anyhow::Result<Status> {
    let mut out = Vec::new();
    let settings = crate::serve::web_sites(sites);
    for ((id, site), settings) in sites.iter().zip(&settings) {
        let vitals = vitals::read(store, settings, site.cvepro.is_some(), now).await?;
        let connectors = store
            .connectors(*id)
            .await?
            .into_iter()
            .map(|c| Connector {
                label: if !c.charger_online {
                    "Offline / Indisponível"
                } else if c.unidentified_charging {
                    vetric_domain::tracker::UNIDENTIFIED_CHARGING_LABEL_PT_BR
                } else {
                    c.status.label_pt_br()
                },
                charger: c.charger_name,
                connector_id: c.connector_id,
                status: c.status.as_vendor_str().to_owned(),
                since: c.status_since,
                offline: !c.charger_online,
                unidentified_charging: c.unidentified_charging,
            })
            .collect();
        let open_sessions = store
            .open_sessions(*id)
            .await?
            .into_iter()
            .map(|s| OpenSession {
                id: s.vendor_id,
                charger: s.charger_name.unwrap_or(s.charger_uuid),
                connector_id: s.connector_id,
                resident: s.resident_name,
                apartment: s.apartment_label,
                tag: s.tag.map(|t| t.as_str().to_owned()),
                start: s.start,
                energy_wh: s.energy_wh,
            })
            .collect();
        out.push(SiteStatus {
            slug: site.slug.to_string(),
            name: site.name.clone(),
            freshness: vitals.freshness_view,
            vendor: vitals.vendor,
            connectors,
            open_sessions,
        });
    }
    Ok(Status { sites: out })
}

/// The text form: times in each site's zone, as a manager reads them.
pub fn render_text(status: &Status, sites: &[(SiteId, SiteConfig)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for (site, (_, cfg)) in status.sites.iter().zip(sites) {
        let tz = cfg.timezone;
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%d/%m/%Y %H:%M:%S").to_string();
        let as_of = site
            .freshness
            .as_of
            .map(local)
            .unwrap_or_else(|| "never".into());
        let _ = writeln!(
            s,
            "{} ({}): data {} as of {as_of}; vendor {} (breaker {})",
            site.name, site.slug, site.freshness.state, site.vendor.link, site.vendor.breaker
        );
        if let Some(e) = &site.vendor.last_error {
            let _ = writeln!(s, "  last vendor error ({}): {}", e.kind, e.message);
        }
        for c in &site.connectors {
            let _ = writeln!(
                s,
                "  {} #{}: {} ({}) since {}",
                c.charger,
                c.connector_id,
                c.label,
                c.status,
                local(c.since)
            );
        }
        let _ = writeln!(s, "  open sessions: {}", site.open_sessions.len());
        for o in &site.open_sessions {
            let who = match (&o.resident, &o.apartment) {
                (Some(r), Some(a)) => format!("{r} ({a})"),
                (Some(r), None) => r.clone(),
                _ => format!("tag {} (sem morador)", o.tag.as_deref().unwrap_or("?")),
            };
            let energy = o
                .energy_wh
                .map(|wh| format!(", {:.3} kWh", wh as f64 / 1000.0))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "    #{} {} #{}: {who}, since {}{energy}",
                o.id,
                o.charger,
                o.connector_id,
                local(o.start)
            );
        }
    }
    s
}
