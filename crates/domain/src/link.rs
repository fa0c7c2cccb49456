//! The vendor link: is the vendor answering, and may its latest answer be believed?
//!
//! The legacy system's worst night came from two things this module exists to stop: a 502 that
//! nobody was told about for hours, and a renamed field that turned into "0 chargers" on the
//! dashboard without any error. The ingest loop feeds every poll cycle's outcome into a
//! [`VendorLink`] (`on_success` / `on_failure`); it answers with events for the operators
//! (vendor down / recovered / shape changed / chargers dropped to zero) and, for a successful
//! read, whether the snapshot may replace the last-known-good one.
//!
//! [`freshness`] turns the age of the last accepted snapshot into what pages and the API show.
//!
//! Like the rest of the crate this is pure: time is passed in, and the state is plain serde data
//! the store persists next to the site's tracker state.

use crate::event::{Event, EventKind, FailureClass};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Tunables of the vendor link (defaults from DESIGN.md / RELIABILITY.md R3, R4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Consecutive failed poll cycles before `VendorDown` (R4: 3, i.e. 30 s at a 10 s poll).
    pub down_after_failed_cycles: u32,
    /// Consecutive zero-charger reads needed before an empty list replaces a non-empty one (R3).
    pub zero_confirmations: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            down_after_failed_cycles: 3,
            zero_confirmations: 2,
        }
    }
}

/// What the ingest loop does with a successfully decoded snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum SnapshotDecision {
    /// Feed it to the tracker and make it the last-known-good.
    Accept,
    /// Do not believe it yet: keep serving the last-known-good. Happens while an empty charger
    /// list after a non-empty one waits for confirmation (`zero_reads` of `needed` so far).
    KeepLastGood { zero_reads: u32, needed: u32 },
}

/// Per-site vendor link state. Start from `VendorLink::default()`; persist it between cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorLink {
    /// Failed cycles in a row (0 while healthy).
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// `VendorDown` was emitted for the current episode.
    pub down: bool,
    /// `VendorShapeChanged` was emitted for the current episode.
    pub shape_change_reported: bool,
    pub last_failure: Option<FailureClass>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The last time a snapshot was *accepted* (the freshness clock: `as_of`).
    pub last_success: Option<DateTime<Utc>>,
    /// Charger count of the last accepted snapshot.
    pub last_good_charger_count: Option<usize>,
    /// Consecutive zero-charger reads not yet accepted.
    pub zero_reads: u32,
}

impl VendorLink {
    /// A poll cycle that read and decoded everything. `charger_count` is the snapshot's.
    pub fn on_success(
        &mut self,
        config: &LinkConfig,
        now: DateTime<Utc>,
        charger_count: usize,
    ) -> (SnapshotDecision, Vec<Event>) {
        let mut events = Vec::new();
        if self.down {
            events.push(Event::new(
                now,
                EventKind::VendorRecovered {
                    down_since: self.failing_since.unwrap_or(now),
                    failed_cycles: self.consecutive_failures,
                },
            ));
        }
        // Any answer that decoded ends the failure episode, so the next outage or shape change
        // is reported again.
        self.consecutive_failures = 0;
        self.failing_since = None;
        self.down = false;
        self.shape_change_reported = false;

        let previous = self.last_good_charger_count.unwrap_or(0);
        let decision = if charger_count == 0 && previous > 0 {
            // The legacy dashboard showed 0 chargers for hours because an empty list was believed
            // at once. A real empty list (every charger removed) is rare and can wait a cycle.
            self.zero_reads = self.zero_reads.saturating_add(1);
            let needed = config.zero_confirmations.max(1);
            if self.zero_reads >= needed {
                events.push(Event::new(
                    now,
                    EventKind::ChargerCountDroppedToZero { previous },
                ));
                SnapshotDecision::Accept
            } else {
                SnapshotDecision::KeepLastGood {
                    zero_reads: self.zero_reads,
                    needed,
                }
            }
        } else {
            SnapshotDecision::Accept
        };
        if decision == SnapshotDecision::Accept {
            self.zero_reads = 0;
            self.last_good_charger_count = Some(charger_count);
            self.last_success = Some(now);
        }
        (decision, events)
    }

    /// A poll cycle that failed (after the client's own retries).
    pub fn on_failure(
        &mut self,
        config: &LinkConfig,
        now: DateTime<Utc>,
        class: FailureClass,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        if self.consecutive_failures == 0 {
            self.failing_since = Some(now);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if let FailureClass::ShapeChanged { path } = &class
            && !self.shape_change_reported
        {
            // A shape change is a bug report about the vendor, not a blip: say so on the first
            // occurrence instead of waiting for the down threshold.
            self.shape_change_reported = true;
            events.push(Event::new(
                now,
                EventKind::VendorShapeChanged { path: path.clone() },
            ));
        }
        if !self.down && self.consecutive_failures >= config.down_after_failed_cycles.max(1) {
            self.down = true;
            events.push(Event::new(
                now,
                EventKind::VendorDown {
                    since: self.failing_since.unwrap_or(now),
                    failed_cycles: self.consecutive_failures,
                    last_failure: class.clone(),
                },
            ));
        }
        // Failed cycles are not reads: they neither confirm nor reset a pending zero-charger
        // confirmation.
        self.last_failure = Some(class);
        self.last_failure_at = Some(now);
        events
    }
}

/// How old the data a page shows is, in the words of the API (`"fresh"`, `"stale"`, `"offline"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    Fresh,
    Stale,
    Offline,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Stale => "stale",
            Self::Offline => "offline",
        }
    }
}

/// Default for `offline_after` (DESIGN.md: data `offline` after 10 min).
pub const DEFAULT_OFFLINE_AFTER: TimeDelta = TimeDelta::minutes(10);

/// Fresh until two polls were missed, stale after that, offline after `offline_after`.
///
/// "Two missed polls" is `2 × poll_interval` plus a slack of half an interval (at least 2 s),
/// because a healthy cycle also spends time in the vendor call and on a loaded 2-core machine:
/// without slack the badge would flicker to stale on every slow but successful poll.
/// No accepted snapshot at all is `Offline`.
pub fn freshness(
    now: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    poll_interval: TimeDelta,
    offline_after: TimeDelta,
) -> Freshness {
    let Some(last) = last_success else {
        return Freshness::Offline;
    };
    let age = now - last;
    let slack = (poll_interval / 2).max(TimeDelta::seconds(2));
    // Checked: a nonsensical configured interval must saturate, not panic.
    let stale_after = poll_interval
        .checked_mul(2)
        .and_then(|d| d.checked_add(&slack))
        .unwrap_or(TimeDelta::MAX);
    if age > offline_after {
        Freshness::Offline
    } else if age > stale_after {
        Freshness::Stale
    } else {
        Freshness::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 12, 3, 0, 0).unwrap() + TimeDelta::seconds(s)
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.kind_str()).collect()
    }

    #[test]
    fn vendor_down_after_three_failed_cycles_once_then_recovered() {
        let cfg = LinkConfig::default();
        let mut link = VendorLink::default();
        assert_eq!(link.on_success(&cfg, t(0), 4).0, SnapshotDecision::Accept);
        assert!(
            link.on_failure(&cfg, t(10), FailureClass::Unavailable)
                .is_empty()
        );
        assert!(
            link.on_failure(&cfg, t(20), FailureClass::Unavailable)
                .is_empty()
        );
        let ev = link.on_failure(&cfg, t(30), FailureClass::Unavailable);
        assert_eq!(kinds(&ev), ["vendor_down"]);
        match &ev[0].kind {
            EventKind::VendorDown {
                since,
                failed_cycles,
                ..
            } => {
                assert_eq!(*since, t(10));
                assert_eq!(*failed_cycles, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        for i in 4..20 {
            assert!(
                link.on_failure(&cfg, t(i * 10), FailureClass::Unavailable)
                    .is_empty()
            );
        }
        let (decision, ev) = link.on_success(&cfg, t(200), 4);
        assert_eq!(decision, SnapshotDecision::Accept);
        assert_eq!(kinds(&ev), ["vendor_recovered"]);
        assert_eq!(link.last_success, Some(t(200)));
        // A blip shorter than the threshold says nothing either way.
        assert!(
            link.on_failure(&cfg, t(210), FailureClass::Other)
                .is_empty()
        );
        assert!(link.on_success(&cfg, t(220), 4).1.is_empty());
    }

    #[test]
    fn shape_change_is_reported_at_once_and_once_per_episode() {
        let cfg = LinkConfig::default();
        let mut link = VendorLink::default();
        let shape = || FailureClass::ShapeChanged {
            path: "chargePointList".into(),
        };
        assert_eq!(
            kinds(&link.on_failure(&cfg, t(0), shape())),
            ["vendor_shape_changed"]
        );
        assert!(link.on_failure(&cfg, t(10), shape()).is_empty());
        assert_eq!(
            kinds(&link.on_failure(&cfg, t(20), shape())),
            ["vendor_down"]
        );
        assert!(link.on_failure(&cfg, t(30), shape()).is_empty());
        assert_eq!(
            kinds(&link.on_success(&cfg, t(40), 1).1),
            ["vendor_recovered"]
        );
        // A new episode reports again.
        assert_eq!(
            kinds(&link.on_failure(&cfg, t(50), shape())),
            ["vendor_shape_changed"]
        );
    }

    #[test]
    fn zero_chargers_after_some_is_accepted_only_when_confirmed() {
        let cfg = LinkConfig::default();
        let mut link = VendorLink::default();
        assert_eq!(link.on_success(&cfg, t(0), 3).0, SnapshotDecision::Accept);
        let (d, ev) = link.on_success(&cfg, t(10), 0);
        assert_eq!(
            d,
            SnapshotDecision::KeepLastGood {
                zero_reads: 1,
                needed: 2
            }
        );
        assert!(ev.is_empty());
        assert_eq!(
            link.last_success,
            Some(t(0)),
            "an unconfirmed read is not fresh data"
        );
        let (d, ev) = link.on_success(&cfg, t(20), 0);
        assert_eq!(d, SnapshotDecision::Accept);
        assert_eq!(kinds(&ev), ["charger_count_dropped_to_zero"]);
        // Zero is now the last good: further empty reads are simply accepted.
        let (d, ev) = link.on_success(&cfg, t(30), 0);
        assert_eq!(d, SnapshotDecision::Accept);
        assert!(ev.is_empty());
    }

    #[test]
    fn a_single_zero_read_between_good_ones_is_ignored() {
        let cfg = LinkConfig::default();
        let mut link = VendorLink::default();
        link.on_success(&cfg, t(0), 3);
        assert!(matches!(
            link.on_success(&cfg, t(10), 0).0,
            SnapshotDecision::KeepLastGood { .. }
        ));
        assert_eq!(link.on_success(&cfg, t(20), 3).0, SnapshotDecision::Accept);
        // The count restarts: one more zero is again not enough.
        assert!(matches!(
            link.on_success(&cfg, t(30), 0).0,
            SnapshotDecision::KeepLastGood { zero_reads: 1, .. }
        ));
        // A site that never had chargers accepts an empty list at once.
        let mut empty = VendorLink::default();
        assert_eq!(empty.on_success(&cfg, t(0), 0).0, SnapshotDecision::Accept);
    }

    #[test]
    fn freshness_fresh_stale_offline() {
        let poll = TimeDelta::seconds(10);
        let off = DEFAULT_OFFLINE_AFTER;
        assert_eq!(freshness(t(0), None, poll, off), Freshness::Offline);
        assert_eq!(freshness(t(10), Some(t(0)), poll, off), Freshness::Fresh);
        assert_eq!(freshness(t(25), Some(t(0)), poll, off), Freshness::Fresh);
        assert_eq!(freshness(t(26), Some(t(0)), poll, off), Freshness::Stale);
        assert_eq!(freshness(t(600), Some(t(0)), poll, off), Freshness::Stale);
        assert_eq!(freshness(t(601), Some(t(0)), poll, off), Freshness::Offline);
        // CI polls every second: the slack floor keeps a slow healthy cycle fresh.
        let fast = TimeDelta::seconds(1);
        assert_eq!(freshness(t(4), Some(t(0)), fast, off), Freshness::Fresh);
        assert_eq!(freshness(t(5), Some(t(0)), fast, off), Freshness::Stale);
        assert_eq!(
            serde_json::to_string(&Freshness::Stale).unwrap(),
            "\"stale\""
        );
        assert_eq!(
            serde_json::from_str::<Freshness>("\"offline\"").unwrap(),
            Freshness::Offline
        );
    }

    #[test]
    fn link_state_round_trips() {
        let cfg = LinkConfig::default();
        let mut link = VendorLink::default();
        link.on_success(&cfg, t(0), 2);
        link.on_failure(
            &cfg,
            t(10),
            FailureClass::ShapeChanged { path: "a.b".into() },
        );
        let back: VendorLink =
            serde_json::from_str(&serde_json::to_string(&link).unwrap()).unwrap();
        assert_eq!(back, link);
    }
}
