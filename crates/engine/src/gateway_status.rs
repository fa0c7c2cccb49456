//! The last known connection state of each site's WhatsApp gateway, shared in-process.
//!
//! The dispatcher asks every configured gateway its state on its own schedule
//! (`DispatchSettings::gateway_check`) and records the answer here; `/health` reads it. That
//! way a health probe — which load balancers send every few seconds — never calls the gateway
//! itself (DESIGN.md rule 1: no request path calls an outside service), and it reports what
//! this instance's dispatcher really saw. Each instance has its own dispatcher, so each
//! instance's view is about the sends it makes.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use vetric_store::SiteId;

/// What one gateway check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayObservation {
    /// `open`, `connecting`, `close`, `unknown` (as the gateway says), or `unreachable` when
    /// the gateway could not be asked.
    pub state: String,
    /// Only `open` lets sends go out.
    pub open: bool,
    /// Why the gateway could not be asked: the error's short kind (`timeout`, `auth`, …),
    /// never its full text, which may echo what the gateway answered.
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
    /// The first check of the current run of not-open answers; `None` while open.
    pub down_since: Option<DateTime<Utc>>,
}

/// A cheap-to-clone handle on every site's last [`GatewayObservation`].
#[derive(Debug, Clone, Default)]
pub struct GatewayStatus(Arc<RwLock<HashMap<SiteId, GatewayObservation>>>);

impl GatewayStatus {
    /// Records a check of `site`'s gateway made at `at`. `error` is the failure's short kind
    /// when the gateway could not be asked (the state is then `unreachable`).
    pub fn record(
        &self,
        site: SiteId,
        state: &str,
        open: bool,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) {
        // A writer that panicked mid-insert leaves a whole map behind (insert is the only
        // write), so the data is still sound: keep using it rather than go blind.
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let down_since = if open {
            None
        } else {
            map.get(&site).and_then(|prev| prev.down_since).or(Some(at))
        };
        map.insert(
            site,
            GatewayObservation {
                state: if error.is_some() {
                    "unreachable".to_owned()
                } else {
                    state.to_owned()
                },
                open,
                error: error.map(str::to_owned),
                checked_at: at,
                down_since,
            },
        );
    }

    /// The last check of `site`'s gateway; `None` before the first one.
    pub fn get(&self, site: SiteId) -> Option<GatewayObservation> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&site)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn down_since_spans_a_run_of_bad_checks() {
        let s = GatewayStatus::default();
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(s.get(SiteId(1)), None);
        s.record(SiteId(1), "open", true, None, t0);
        assert_eq!(s.get(SiteId(1)).map(|o| o.down_since), Some(None));
        s.record(SiteId(1), "close", false, None, t0 + TimeDelta::seconds(30));
        s.record(
            SiteId(1),
            "connecting",
            false,
            None,
            t0 + TimeDelta::seconds(60),
        );
        let o = s.get(SiteId(1)).expect("recorded");
        assert_eq!(o.state, "connecting");
        assert_eq!(o.down_since, Some(t0 + TimeDelta::seconds(30)));
        s.record(
            SiteId(1),
            "unknown",
            false,
            Some("timeout"),
            t0 + TimeDelta::seconds(90),
        );
        let o = s.get(SiteId(1)).expect("recorded");
        assert_eq!(
            (o.state.as_str(), o.error.as_deref()),
            ("unreachable", Some("timeout"))
        );
        s.record(SiteId(1), "open", true, None, t0 + TimeDelta::seconds(120));
        assert_eq!(s.get(SiteId(1)).and_then(|o| o.down_since), None);
        assert_eq!(s.get(SiteId(2)), None);
    }
}
