//! Events: the facts the tracker and the vendor link derive from observations.
//!
//! An event is what the store writes (in the same transaction as the state that produced it),
//! what the notification rules read to decide whether someone gets a message, what the dashboard
//! receives over SSE and what the metrics count. It therefore carries everything those readers
//! need — the resident, the charger's name, the energy — so none of them has to join back to the
//! state that was current when it happened.
//!
//! Events are site-agnostic: the caller knows which site it observed and stores that alongside.
//! [`Event::at`] is when vetric established the fact (the `now` of the observation); the instants
//! the fact is *about* (a session's start, an idle period's beginning) travel inside the kind.

use crate::directory::ResidentRef;
use crate::{ConnectorStatus, Tag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

impl Event {
    pub fn new(at: DateTime<Utc>, kind: EventKind) -> Self {
        Self { at, kind }
    }
}

/// A charger as events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargerRef {
    pub uuid: String,
    /// The human name ("Palmeiras 1"); the `chargeBoxId` when the charger was never listed.
    pub name: String,
}

/// Who charged where, since when: the part every session event shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The vendor's transaction id.
    pub session_id: i64,
    pub charger: ChargerRef,
    pub connector_id: u32,
    /// `None` when the vendor sent the tag empty and the ingest could not resolve it.
    pub tag: Option<Tag>,
    pub tag_pk: Option<i64>,
    /// The owner of the tag at the session's start; `None` for an unknown or missing tag.
    pub resident: Option<ResidentRef>,
    /// The vendor's start, not when vetric noticed.
    pub start: DateTime<Utc>,
}

/// How a session ended, from the vendor's stopped transaction record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub stop: DateTime<Utc>,
    /// Total energy in Wh; `None` when the vendor never reported any.
    pub energy_wh: Option<i64>,
    pub duration_s: i64,
    /// The vendor's idle count when it sent one, else vetric's own accumulation.
    pub idle_s: i64,
    /// OCPP stop reason as the vendor spelled it.
    pub stop_reason: Option<String>,
}

/// Why a session counts as interrupted rather than finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptCause {
    /// Stopped while energy was still flowing, for a reason other than a user's `Local` or
    /// `Remote` stop (e.g. `EVDisconnected`, `PowerLoss`, `EmergencyStop`).
    StoppedWhileCharging,
    /// The connector went `Faulted` while the session was open.
    ConnectorFaulted,
}

/// Why a vendor-link failure happened, as the upstream client classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum FailureClass {
    /// Network error, timeout, 5xx, open breaker.
    Unavailable,
    /// The payload did not decode: a field is missing or renamed (`path` names it).
    ShapeChanged {
        path: String,
    },
    /// Credentials refused (not a blip: someone has to act).
    Auth,
    Other,
}

impl FailureClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::ShapeChanged { .. } => "shape_changed",
            Self::Auth => "auth",
            Self::Other => "other",
        }
    }
}

/// What happened. Serialised with a `type` field equal to [`EventKind::kind_str`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A vendor transaction vetric had not seen before. Also emitted for a session that was
    /// already over when first seen (immediately followed by its ending event); notification
    /// rules decide not to announce a start that is already history.
    SessionStarted { session: SessionInfo },
    /// The car stopped taking energy after charging (SuspendedEV) and now blocks the charger.
    IdleStarted {
        session: SessionInfo,
        since: DateTime<Utc>,
    },
    /// Charging again after an idle period.
    ChargingResumed {
        session: SessionInfo,
        since: DateTime<Utc>,
        /// Idle seconds accumulated in this session so far.
        idle_s: i64,
    },
    SessionFinished {
        session: SessionInfo,
        end: SessionEnd,
    },
    /// Ended abnormally; emitted *instead of* [`EventKind::SessionFinished`].
    SessionInterrupted {
        session: SessionInfo,
        end: SessionEnd,
        reason: InterruptCause,
    },
    /// vetric gave up waiting for the vendor's stop. The session's ending event; a stop that
    /// arrives later produces [`EventKind::SessionAmended`], never a second ending.
    SessionClosedStale {
        session: SessionInfo,
        energy_wh: Option<i64>,
        idle_s: i64,
        reason: String,
    },
    /// The vendor's stop for a session closed stale: the real figures, for billing.
    SessionAmended {
        session: SessionInfo,
        end: SessionEnd,
        /// Set when the vendor's data shows the session was interrupted.
        interrupted: Option<InterruptCause>,
    },
    /// A session that ended before vetric started watching: billed, never notified.
    SessionRecorded {
        session: SessionInfo,
        end: SessionEnd,
    },
    ChargerFaulted {
        charger: ChargerRef,
        connector_id: u32,
        error_code: String,
        since: DateTime<Utc>,
    },
    ChargerRecovered {
        charger: ChargerRef,
        connector_id: u32,
        status: ConnectorStatus,
    },
    /// The charger's heartbeat is older than the limit (or it never sent one).
    ChargerOffline {
        charger: ChargerRef,
        /// The last heartbeat, if any was ever seen.
        since: Option<DateTime<Utc>>,
    },
    ChargerOnline {
        charger: ChargerRef,
        last_heartbeat: Option<DateTime<Utc>>,
    },
    /// A tag nobody owned at the session's start: goes to the managers' inbox, once per tag.
    UnknownTag {
        tag: Tag,
        charger: ChargerRef,
        connector_id: u32,
        session_id: i64,
    },
    /// The connector reads Charging/SuspendedEV with no known transaction
    /// ("carregando, sessão não identificada"). Not a session: nothing is billed or notified.
    UnidentifiedCharging {
        charger: ChargerRef,
        connector_id: u32,
        status: ConnectorStatus,
        since: DateTime<Utc>,
    },
    /// The vendor failed enough consecutive cycles to alert the operators.
    VendorDown {
        since: DateTime<Utc>,
        failed_cycles: u32,
        last_failure: FailureClass,
    },
    /// The first successful cycle after [`EventKind::VendorDown`].
    VendorRecovered {
        down_since: DateTime<Utc>,
        failed_cycles: u32,
    },
    /// A payload no longer decodes: the vendor changed its API. Once per failure episode.
    VendorShapeChanged { path: String },
    /// A confirmed drop from `previous` chargers to none (accepted only after confirmation).
    ChargerCountDroppedToZero { previous: usize },
}

impl EventKind {
    /// Stable name: the events table's `kind` column and the metrics label. Never rename one.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::SessionStarted { .. } => "session_started",
            Self::IdleStarted { .. } => "idle_started",
            Self::ChargingResumed { .. } => "charging_resumed",
            Self::SessionFinished { .. } => "session_finished",
            Self::SessionInterrupted { .. } => "session_interrupted",
            Self::SessionClosedStale { .. } => "session_closed_stale",
            Self::SessionAmended { .. } => "session_amended",
            Self::SessionRecorded { .. } => "session_recorded",
            Self::ChargerFaulted { .. } => "charger_faulted",
            Self::ChargerRecovered { .. } => "charger_recovered",
            Self::ChargerOffline { .. } => "charger_offline",
            Self::ChargerOnline { .. } => "charger_online",
            Self::UnknownTag { .. } => "unknown_tag",
            Self::UnidentifiedCharging { .. } => "unidentified_charging",
            Self::VendorDown { .. } => "vendor_down",
            Self::VendorRecovered { .. } => "vendor_recovered",
            Self::VendorShapeChanged { .. } => "vendor_shape_changed",
            Self::ChargerCountDroppedToZero { .. } => "charger_count_dropped_to_zero",
        }
    }

    /// The session this event is about, if any (the store's `session_id` column).
    pub fn session_id(&self) -> Option<i64> {
        match self {
            Self::SessionStarted { session }
            | Self::IdleStarted { session, .. }
            | Self::ChargingResumed { session, .. }
            | Self::SessionFinished { session, .. }
            | Self::SessionInterrupted { session, .. }
            | Self::SessionClosedStale { session, .. }
            | Self::SessionAmended { session, .. }
            | Self::SessionRecorded { session, .. } => Some(session.session_id),
            Self::UnknownTag { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }

    /// The session information, for the session events.
    pub fn session(&self) -> Option<&SessionInfo> {
        match self {
            Self::SessionStarted { session }
            | Self::IdleStarted { session, .. }
            | Self::ChargingResumed { session, .. }
            | Self::SessionFinished { session, .. }
            | Self::SessionInterrupted { session, .. }
            | Self::SessionClosedStale { session, .. }
            | Self::SessionAmended { session, .. }
            | Self::SessionRecorded { session, .. } => Some(session),
            _ => None,
        }
    }

    /// True for the events that end a session (exactly one per started session).
    pub fn is_session_ending(&self) -> bool {
        matches!(
            self,
            Self::SessionFinished { .. }
                | Self::SessionInterrupted { .. }
                | Self::SessionClosedStale { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn all_kinds() -> Vec<EventKind> {
        let t = Utc.with_ymd_and_hms(2026, 1, 15, 0, 26, 33).unwrap();
        let charger = ChargerRef {
            uuid: "u".into(),
            name: "Palmeiras 1".into(),
        };
        let session = SessionInfo {
            session_id: 432998,
            charger: charger.clone(),
            connector_id: 1,
            tag: Some(Tag::parse("5be07d1a").unwrap()),
            tag_pk: Some(5120418),
            resident: Some(ResidentRef {
                resident_id: 7,
                name: "Maria".into(),
                apartment: "Torre A 101".into(),
            }),
            start: t,
        };
        let end = SessionEnd {
            stop: t,
            energy_wh: Some(20820),
            duration_s: 3600,
            idle_s: 1,
            stop_reason: Some("EVDisconnected".into()),
        };
        vec![
            EventKind::SessionStarted {
                session: session.clone(),
            },
            EventKind::IdleStarted {
                session: session.clone(),
                since: t,
            },
            EventKind::ChargingResumed {
                session: session.clone(),
                since: t,
                idle_s: 5,
            },
            EventKind::SessionFinished {
                session: session.clone(),
                end: end.clone(),
            },
            EventKind::SessionInterrupted {
                session: session.clone(),
                end: end.clone(),
                reason: InterruptCause::ConnectorFaulted,
            },
            EventKind::SessionClosedStale {
                session: session.clone(),
                energy_wh: None,
                idle_s: 0,
                reason: "r".into(),
            },
            EventKind::SessionAmended {
                session: session.clone(),
                end: end.clone(),
                interrupted: None,
            },
            EventKind::SessionRecorded {
                session: session.clone(),
                end,
            },
            EventKind::ChargerFaulted {
                charger: charger.clone(),
                connector_id: 2,
                error_code: "GroundFailure".into(),
                since: t,
            },
            EventKind::ChargerRecovered {
                charger: charger.clone(),
                connector_id: 2,
                status: ConnectorStatus::Available,
            },
            EventKind::ChargerOffline {
                charger: charger.clone(),
                since: Some(t),
            },
            EventKind::ChargerOnline {
                charger: charger.clone(),
                last_heartbeat: Some(t),
            },
            EventKind::UnknownTag {
                tag: Tag::parse("AB").unwrap(),
                charger: charger.clone(),
                connector_id: 1,
                session_id: 1,
            },
            EventKind::UnidentifiedCharging {
                charger,
                connector_id: 1,
                status: ConnectorStatus::Charging,
                since: t,
            },
            EventKind::VendorDown {
                since: t,
                failed_cycles: 3,
                last_failure: FailureClass::ShapeChanged {
                    path: "chargePointList".into(),
                },
            },
            EventKind::VendorRecovered {
                down_since: t,
                failed_cycles: 4,
            },
            EventKind::VendorShapeChanged {
                path: "chargePointList".into(),
            },
            EventKind::ChargerCountDroppedToZero { previous: 3 },
        ]
    }

    #[test]
    fn kind_str_is_the_serde_tag_and_events_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 1, 15, 3, 0, 0).unwrap();
        let kinds = all_kinds();
        let mut names: Vec<_> = kinds.iter().map(EventKind::kind_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kinds.len(), "kind_str values must be distinct");
        for kind in kinds {
            let event = Event::new(t, kind);
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["kind"]["type"], event.kind.kind_str());
            let back: Event = serde_json::from_value(json).unwrap();
            assert_eq!(back, event);
        }
    }
}
