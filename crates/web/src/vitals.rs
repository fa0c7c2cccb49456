//! A site's vital signs as the store knows them: how fresh its data is, the state of its
//! vendor link and how long ago the ingest loop last recorded a cycle.
//!
//! Computed here once and shown three ways: `vetric status` (the binary's status command),
//! `GET /health` and the per-site gauges of `GET /metrics`. Pure functions of the stored
//! [`VendorLinkRow`], the site's settings and `now`; [`read`] adds the one store read.

use crate::SiteSettings;
use crate::view::{FreshnessView, site_freshness};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::fmt;
use vetric_domain::Freshness;
use vetric_store::{BreakerState, SiteId, Store, StoreError, VendorLinkRow};

/// The vendor link as people read it (the `vendor.link` of `vetric status --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The last poll succeeded.
    Up,
    /// The last poll(s) failed (timeouts, HTTP errors, login refused, breaker open).
    Failing,
    /// The vendor's answer no longer has the expected shape (RELIABILITY.md R3).
    ShapeChanged,
    /// Configured, but no cycle has been recorded yet.
    NeverPolled,
    /// The site has no vendor account configured (`[sites.cvepro]`).
    NotConfigured,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Failing => "failing",
            Self::ShapeChanged => "shape_changed",
            Self::NeverPolled => "never_polled",
            Self::NotConfigured => "not_configured",
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last vendor error as recorded by the ingest loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorError {
    /// A short machine-readable kind (`timeout`, `http_502`, `shape_changed`, …).
    pub kind: String,
    /// What happened, e.g. "shape changed at chargePointList".
    pub message: String,
    pub at: Option<DateTime<Utc>>,
}

/// The `vendor` object of `vetric status --json` (public shape, DESIGN.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorView {
    pub link: LinkState,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<VendorError>,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    pub consecutive_failures: i64,
}

/// Classifies a site's vendor link. `configured` says whether the site has a vendor account;
/// `link` is `None` before the first recorded cycle.
pub fn vendor_view(configured: bool, link: Option<&VendorLinkRow>) -> VendorView {
    let Some(link) = link else {
        return VendorView {
            link: if configured {
                LinkState::NeverPolled
            } else {
                LinkState::NotConfigured
            },
            last_success: None,
            last_error: None,
            breaker: BreakerState::Closed.as_str(),
            consecutive_failures: 0,
        };
    };
    let state = if link.consecutive_failures == 0 && link.last_success.is_some() {
        LinkState::Up
    } else if link.last_error_kind.as_deref() == Some("shape_changed") {
        LinkState::ShapeChanged
    } else if link.consecutive_failures > 0 {
        LinkState::Failing
    } else {
        LinkState::NeverPolled
    };
    VendorView {
        link: state,
        last_success: link.last_success,
        last_error: link.last_error_kind.as_ref().map(|kind| VendorError {
            kind: kind.clone(),
            message: link.last_error_message.clone().unwrap_or_default(),
            at: link.last_error_at,
        }),
        breaker: link.breaker.as_str(),
        consecutive_failures: link.consecutive_failures,
    }
}

/// Everything the store says about one site's data and vendor link at `now`.
#[derive(Debug, Clone)]
pub struct SiteVitals {
    pub site: SiteId,
    pub freshness: Freshness,
    /// `{"state", "as_of"}` as every list response and `vetric status` show it.
    pub freshness_view: FreshnessView,
    pub vendor: VendorView,
    /// `now − last good read`; `None` when there never was one.
    pub data_age: Option<TimeDelta>,
    /// When the ingest loop last recorded a cycle, good or bad (`vendor_links.updated_at`).
    pub last_cycle: Option<DateTime<Utc>>,
    /// `now − last_cycle`.
    pub ingest_lag: Option<TimeDelta>,
}

impl SiteVitals {
    /// The vendor answered the last poll and the breaker lets calls through.
    pub fn vendor_up(&self) -> bool {
        self.vendor.link == LinkState::Up && self.vendor.breaker == BreakerState::Closed.as_str()
    }

    /// The ingest loop has not recorded a cycle for longer than [`ingest_stuck_after`] (or
    /// never did).
    pub fn ingest_stuck(&self, site: &SiteSettings) -> bool {
        self.ingest_lag
            .is_none_or(|lag| lag > ingest_stuck_after(site.poll_interval))
    }
}

/// How long without any recorded cycle (good or bad) before the ingest loop counts as stuck:
/// three poll intervals plus the same slack freshness allows (half an interval, at least
/// 2 s), so a slow but live cycle does not flap.
pub fn ingest_stuck_after(poll_interval: std::time::Duration) -> TimeDelta {
    let poll = TimeDelta::from_std(poll_interval).unwrap_or(TimeDelta::MAX);
    let slack = (poll / 2).max(TimeDelta::seconds(2));
    poll.checked_mul(3)
        .and_then(|d| d.checked_add(&slack))
        .unwrap_or(TimeDelta::MAX)
}

/// A site's vitals from its stored vendor link row (pure).
pub fn site_vitals(
    site: &SiteSettings,
    vendor_configured: bool,
    link: Option<&VendorLinkRow>,
    now: DateTime<Utc>,
) -> SiteVitals {
    let (freshness, freshness_view) = site_freshness(site, link, now);
    let last_cycle = link.map(|l| l.updated_at);
    SiteVitals {
        site: site.id,
        freshness,
        data_age: freshness_view
            .as_of
            .map(|t| (now - t).max(TimeDelta::zero())),
        freshness_view,
        vendor: vendor_view(vendor_configured, link),
        ingest_lag: last_cycle.map(|t| (now - t).max(TimeDelta::zero())),
        last_cycle,
    }
}

/// Reads the site's vendor link and computes its vitals.
pub async fn read(
    store: &Store,
    site: &SiteSettings,
    vendor_configured: bool,
    now: DateTime<Utc>,
) -> Result<SiteVitals, StoreError> {
    let link = store.vendor_link(site.id).await?;
    Ok(site_vitals(site, vendor_configured, link.as_ref(), now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn site() -> SiteSettings {
        SiteSettings {
            id: SiteId(1),
            slug: "s".into(),
            name: "S".into(),
            timezone: chrono_tz::America::Sao_Paulo,
            poll_interval: Duration::from_secs(10),
            offline_after: Duration::from_secs(600),
        }
    }

    fn row(now: DateTime<Utc>) -> VendorLinkRow {
        VendorLinkRow {
            last_success: Some(now),
            last_error_kind: None,
            last_error_message: None,
            last_error_at: None,
            consecutive_failures: 0,
            breaker: BreakerState::Closed,
            charger_count_last_good: Some(1),
            updated_at: now,
        }
    }

    #[test]
    fn link_states() {
        let now = Utc::now();
        assert_eq!(vendor_view(false, None).link, LinkState::NotConfigured);
        assert_eq!(vendor_view(true, None).link, LinkState::NeverPolled);
        assert_eq!(vendor_view(true, Some(&row(now))).link, LinkState::Up);
        let mut failing = row(now);
        failing.consecutive_failures = 2;
        failing.last_error_kind = Some("http_502".into());
        assert_eq!(vendor_view(true, Some(&failing)).link, LinkState::Failing);
        failing.last_error_kind = Some("shape_changed".into());
        assert_eq!(
            vendor_view(true, Some(&failing)).link,
            LinkState::ShapeChanged
        );
    }

    #[test]
    fn ingest_lag_and_data_age() {
        let now = Utc::now();
        let mut r = row(now - TimeDelta::seconds(100));
        r.updated_at = now - TimeDelta::seconds(5);
        let v = site_vitals(&site(), true, Some(&r), now);
        assert_eq!(v.data_age, Some(TimeDelta::seconds(100)));
        assert_eq!(v.ingest_lag, Some(TimeDelta::seconds(5)));
        assert!(!v.ingest_stuck(&site()));
        assert_eq!(v.freshness, Freshness::Stale);
        r.updated_at = now - TimeDelta::seconds(36);
        assert!(site_vitals(&site(), true, Some(&r), now).ingest_stuck(&site()));
        assert!(site_vitals(&site(), true, None, now).ingest_stuck(&site()));
        assert_eq!(
            ingest_stuck_after(Duration::from_secs(10)),
            TimeDelta::seconds(35)
        );
    }
}
