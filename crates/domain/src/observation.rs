//! What the vendor says, already decoded and normalised: the input of the session tracker.
//!
//! These types are the boundary between the vendor client (`vetric-cvepro`, which owns the wire
//! format and its quirks) and everything else. Instants are UTC; energy is integer Wh; tags are
//! normalised. Nothing here knows about HTTP or JSON field names.

use crate::{ConnectorStatus, Tag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One complete, successful read of a vendor account: every charger and the transaction window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VendorSnapshot {
    /// When vetric received the data (the caller's clock, passed in).
    pub observed_at: DateTime<Utc>,
    pub chargers: Vec<ChargerSnapshot>,
    /// Active and finished transactions of the window, deduplicated by id.
    pub transactions: Vec<TransactionRecord>,
}

/// A charger (OCPP charge box) and its connectors as last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargerSnapshot {
    /// The vendor's UUID of the charger: the join key with transactions.
    pub uuid: String,
    /// The OCPP identity / serial (`chargeBoxId`).
    pub charge_box_id: String,
    /// The human name (`description`, e.g. "Palmeiras 1").
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub firmware: String,
    /// Last heartbeat, converted from the vendor's local time to UTC. `None` if never seen.
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub connectors: Vec<ConnectorSnapshot>,
}

/// A connector's last OCPP StatusNotification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSnapshot {
    /// OCPP connector number (1-based).
    pub connector_id: u32,
    pub status: ConnectorStatus,
    /// When the vendor recorded this status (`lastStatus.timeStamp`, UTC).
    pub status_since: DateTime<Utc>,
    /// OCPP ChargePointErrorCode (`NoError` when healthy).
    pub error_code: String,
    /// Maximum power in watts, normalised from the vendor's W-or-kW field. `None` if unknown.
    pub power_max_w: Option<u32>,
}

/// A vendor transaction: a charging session, open (`stop` is `None`) or finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// The vendor's transaction id; a session's identity.
    pub id: i64,
    /// The charger's UUID (join key with [`ChargerSnapshot::uuid`]).
    pub charger_uuid: String,
    pub charge_box_id: String,
    pub connector_id: u32,
    /// The tag as reported; `None` when the vendor sent it empty (contract A5.5 #1).
    pub tag: Option<Tag>,
    /// The vendor's tag key, present even when the tag text is empty.
    pub tag_pk: Option<i64>,
    /// The vendor's `startTimestamp`, in UTC after the client's offset calibration.
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    /// Energy delivered so far (or in total once stopped), in Wh.
    pub energy_wh: Option<i64>,
    /// Seconds the car spent idle, as the vendor counts it.
    pub idle_seconds: Option<i64>,
    /// OCPP stop reason (`EVDisconnected`, `Remote`, `Local`, …) once stopped.
    pub stop_reason: Option<String>,
    /// The vendor's user name, raw (may be lowercase with trailing spaces).
    pub user_name: Option<String>,
    /// The vendor's free-text apartment (`userAddressComplement`), not normalised.
    pub apartment_text: Option<String>,
}

impl TransactionRecord {
    pub fn is_open(&self) -> bool {
        self.stop.is_none()
    }
}
