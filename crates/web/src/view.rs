//! What a site looks like right now, computed once from the store and shown three ways: the
//! overview page, its live fragment, and the chargers API. The same rules everywhere:
//! freshness from `vetric_domain::freshness`, labels from the DESIGN.md status table
//! (offline chargers and unidentified charging first), pt-BR formats in the site's zone.

use crate::SiteSettings;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use vetric_domain::{ConnectorStatus, Freshness, freshness};
use vetric_store::{ConnectorView, SessionView, Store, StoreError, VendorLinkRow};

/// The label of a charger whose heartbeat is too old (or that says Unavailable).
pub const OFFLINE_LABEL: &str = "Offline / Indisponível";

/// `{"state", "as_of"}` of every list response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FreshnessView {
    pub state: &'static str,
    pub as_of: Option<DateTime<Utc>>,
}

/// One connector with what people need to know about it.
#[derive(Debug, Clone)]
pub struct Card {
    pub connector: ConnectorView,
    pub session: Option<SessionView>,
    pub label: &'static str,
    /// CSS tone: `free`, `charging`, `idle`, `paused`, `waiting`, `finishing`, `reserved`,
    /// `fault`, `offline`, `unknown`, `unidentified`.
    pub tone: &'static str,
    pub offline: bool,
    pub idle: bool,
}

/// A site's state at `now`.
pub struct SiteSnapshot {
    pub freshness: FreshnessView,
    pub freshness_state: Freshness,
    pub link: Option<VendorLinkRow>,
    pub cards: Vec<Card>,
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The freshness of a site's data at `now` given its vendor link row.
pub fn site_freshness(
    site: &SiteSettings,
    link: Option<&VendorLinkRow>,
    now: DateTime<Utc>,
) -> (Freshness, FreshnessView) {
    let last = link.and_then(|l| l.last_success);
    let f = freshness(
        now,
        last,
        delta(site.poll_interval),
        delta(site.offline_after),
    );
    (
        f,
        FreshnessView {
            state: f.as_str(),
            as_of: last,
        },
    )
}

/// Label and tone of a connector (DESIGN.md status table).
pub fn label_and_tone(c: &ConnectorView) -> (&'static str, &'static str) {
    if !c.charger_online || c.status == ConnectorStatus::Unavailable {
        return (OFFLINE_LABEL, "offline");
    }
    if c.unidentified_charging {
        return (
            vetric_domain::tracker::UNIDENTIFIED_CHARGING_LABEL_PT_BR,
            "unidentified",
        );
    }
    let tone = match c.status {
        ConnectorStatus::Available => "free",
        ConnectorStatus::Preparing => "waiting",
        ConnectorStatus::Charging => "charging",
        ConnectorStatus::SuspendedEV => "idle",
        ConnectorStatus::SuspendedEVSE => "paused",
        ConnectorStatus::Finishing => "finishing",
        ConnectorStatus::Reserved => "reserved",
        ConnectorStatus::Faulted => "fault",
        ConnectorStatus::Unavailable => "offline",
        ConnectorStatus::Other(_) => "unknown",
    };
    (c.status.label_pt_br(), tone)
}

/// Reads a site's connectors, open sessions and vendor link and puts them together.
pub async fn snapshot(
    store: &Store,
    site: &SiteSettings,
    now: DateTime<Utc>,
) -> Result<SiteSnapshot, StoreError> {
    let link = store.vendor_link(site.id).await?;
    let connectors = store.connectors(site.id).await?;
    let mut open = store.open_sessions(site.id).await?;
    let (freshness_state, freshness) = site_freshness(site, link.as_ref(), now);
    let cards = connectors
        .into_iter()
        .map(|c| {
            let session = open
                .iter()
                .position(|s| s.charger_uuid == c.charger_uuid && s.connector_id == c.connector_id)
                .map(|i| open.swap_remove(i));
            let (label, tone) = label_and_tone(&c);
            Card {
                offline: tone == "offline",
                idle: tone == "idle",
                label,
                tone,
                session,
                connector: c,
            }
        })
        .collect();
    Ok(SiteSnapshot {
        freshness,
        freshness_state,
        link,
        cards,
    })
}

/// `1.234,567 kWh` from watt-hours.
pub fn kwh_pt_br(wh: i64) -> String {
    let sign = if wh < 0 { "-" } else { "" };
    let wh = wh.unsigned_abs();
    let int = (wh / 1000).to_string();
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped},{:03} kWh", wh % 1000)
}

/// `2 h 05 min`, `12 min`, `menos de 1 min`.
pub fn duration_pt_br(seconds: i64) -> String {
    let m = seconds.max(0) / 60;
    match (m / 60, m % 60) {
        (0, 0) => "menos de 1 min".into(),
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_written_the_brazilian_way() {
        assert_eq!(kwh_pt_br(1_234_567), "1.234,567 kWh");
        assert_eq!(kwh_pt_br(5), "0,005 kWh");
        assert_eq!(kwh_pt_br(12_000), "12,000 kWh");
        assert_eq!(kwh_pt_br(1_234_567_890), "1.234.567,890 kWh");
        assert_eq!(kwh_pt_br(-1500), "-1,500 kWh");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_pt_br(30), "menos de 1 min");
        assert_eq!(duration_pt_br(12 * 60 + 5), "12 min");
        assert_eq!(duration_pt_br(2 * 3600 + 5 * 60), "2 h 05 min");
    }
}
