//! What goes in and comes out of the store: ids, the rows it returns, and the writes it takes.
//!
//! Integers are `i64` as stored (BIGINT on PostgreSQL, INTEGER on SQLite) except where the
//! domain has a narrower type (connector ids are `u32`). Instants are UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use vetric_domain::{ChargerSnapshot, ConnectorSnapshot, ConnectorStatus, Tag};

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A site (condominium) in this store.
    SiteId
);
id_type!(
    /// An apartment (block + unit) of a site.
    ApartmentId
);
id_type!(
    /// A resident of a site.
    ResidentId
);

/// `A-302`: how an apartment is shown.
pub fn apartment_label(block: &str, unit: &str) -> String {
    format!("{block}-{unit}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SiteRow {
    pub id: SiteId,
    pub slug: String,
    pub name: String,
    /// IANA name, e.g. `America/Sao_Paulo`.
    pub timezone: String,
    pub created_at: DateTime<Utc>,
}

/// A resident to add; the apartment is created when it does not exist yet (block and unit
/// compare case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewResident {
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub block: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ResidentRow {
    pub id: ResidentId,
    pub apartment_id: ApartmentId,
    pub name: String,
    /// Full number: mask it in lists, exports and logs.
    pub phone: String,
    pub email: Option<String>,
    pub active: bool,
    pub block: String,
    pub unit: String,
    pub created_at: DateTime<Utc>,
}

impl ResidentRow {
    pub fn apartment_label(&self) -> String {
        apartment_label(&self.block, &self.unit)
    }
}

/// One ownership interval of a tag: `[valid_from, valid_to)`, open-ended when `valid_to` is
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagOwnershipRow {
    pub tag: Tag,
    pub resident_id: ResidentId,
    pub resident_name: String,
    /// `A-302` style: block-unit.
    pub apartment_label: String,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TagOwnershipRaw {
    #[sqlx(try_from = "String")]
    pub tag: Tag,
    pub resident_id: ResidentId,
    pub resident_name: String,
    pub block: String,
    pub unit: String,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

impl From<TagOwnershipRaw> for TagOwnershipRow {
    fn from(r: TagOwnershipRaw) -> Self {
        Self {
            apartment_label: apartment_label(&r.block, &r.unit),
            tag: r.tag,
            resident_id: r.resident_id,
            resident_name: r.resident_name,
            valid_from: r.valid_from,
            valid_to: r.valid_to,
        }
    }
}

/// The circuit breaker in front of a vendor account, as last recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A stored text that is not one of the values its column allows.
#[derive(Debug, thiserror::Error)]
#[error("unexpected stored value {0:?}")]
pub struct BadValue(pub String);

impl TryFrom<String> for BreakerState {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        match s.as_str() {
            "closed" => Ok(Self::Closed),
            "open" => Ok(Self::Open),
            "half_open" => Ok(Self::HalfOpen),
            _ => Err(BadValue(s)),
        }
    }
}

/// The state of a site's vendor link. Written whole by [`crate::Store::write_cycle`] and
/// [`crate::Store::write_link_only`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VendorLinkRow {
    pub last_success: Option<DateTime<Utc>>,
    /// A short machine-readable kind (`timeout`, `http_502`, `shape_changed`, …).
    pub last_error_kind: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    #[sqlx(try_from = "String")]
    pub breaker: BreakerState,
    /// How many chargers the last good read had (a drop to zero must be confirmed).
    pub charger_count_last_good: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// A charger as observed this cycle, with its connectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargerWrite {
    pub uuid: String,
    pub charge_box_id: String,
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub firmware: String,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Decided by the caller (heartbeat age against the site's limit).
    pub online: bool,
    pub connectors: Vec<ConnectorWrite>,
}

impl ChargerWrite {
    /// From a decoded vendor snapshot; `online` is the caller's judgement.
    pub fn from_snapshot(c: &ChargerSnapshot, online: bool) -> Self {
        Self {
            uuid: c.uuid.clone(),
            charge_box_id: c.charge_box_id.clone(),
            name: c.name.clone(),
            vendor: c.vendor.clone(),
            model: c.model.clone(),
            firmware: c.firmware.clone(),
            last_heartbeat: c.last_heartbeat,
            online,
            connectors: c.connectors.iter().map(ConnectorWrite::from).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorWrite {
    pub connector_id: u32,
    pub status: ConnectorStatus,
    pub status_since: DateTime<Utc>,
    pub error_code: String,
    pub power_max_w: Option<u32>,
    /// Charging with no known transaction ("carregando, sessão não identificada").
    pub unidentified_charging: bool,
}

impl From<&ConnectorSnapshot> for ConnectorWrite {
    fn from(c: &ConnectorSnapshot) -> Self {
        Self {
            connector_id: c.connector_id,
            status: c.status.clone(),
            status_since: c.status_since,
            error_code: c.error_code.clone(),
            power_max_w: c.power_max_w,
            unidentified_charging: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Open,
    Ended,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Ended => "ended",
        }
    }
}

impl TryFrom<String> for SessionStatus {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        match s.as_str() {
            "open" => Ok(Self::Open),
            "ended" => Ok(Self::Ended),
            _ => Err(BadValue(s)),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    /// The vendor reported the stop.
    Finished,
    /// The transaction vanished while open (e.g. the charger rebooted).
    Interrupted,
    /// Closed by vetric after it stopped hearing about it for too long.
    Stale,
    /// Imported or recorded after the fact (e.g. from the vendor's export).
    Recorded,
}

impl EndKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Interrupted => "interrupted",
            Self::Stale => "stale",
            Self::Recorded => "recorded",
        }
    }
}

impl TryFrom<String> for EndKind {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        match s.as_str() {
            "finished" => Ok(Self::Finished),
            "interrupted" => Ok(Self::Interrupted),
            "stale" => Ok(Self::Stale),
            "recorded" => Ok(Self::Recorded),
            _ => Err(BadValue(s)),
        }
    }
}

/// A session to insert or update, keyed by the vendor transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWrite {
    pub vendor_id: i64,
    pub charger_uuid: String,
    pub connector_id: u32,
    pub tag: Option<Tag>,
    pub tag_pk: Option<i64>,
    /// `None`: the store looks the tag's owner up at `start` (and keeps an owner already
    /// stored on updates).
    pub resident_id: Option<ResidentId>,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub energy_wh: Option<i64>,
    pub idle_seconds: i64,
    pub stop_reason: Option<String>,
    pub end_kind: Option<EndKind>,
    pub status: SessionStatus,
}

/// A session with the names people read: charger, resident, apartment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub vendor_id: i64,
    pub charger_uuid: String,
    pub charger_name: Option<String>,
    pub connector_id: u32,
    pub tag: Option<Tag>,
    pub tag_pk: Option<i64>,
    pub resident_id: Option<ResidentId>,
    pub resident_name: Option<String>,
    pub apartment_label: Option<String>,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub energy_wh: Option<i64>,
    pub idle_seconds: i64,
    pub stop_reason: Option<String>,
    pub end_kind: Option<EndKind>,
    pub status: SessionStatus,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRaw {
    pub vendor_id: i64,
    pub charger_uuid: String,
    pub charger_name: Option<String>,
    #[sqlx(try_from = "i64")]
    pub connector_id: u32,
    pub tag: Option<String>,
    pub tag_pk: Option<i64>,
    pub resident_id: Option<ResidentId>,
    pub resident_name: Option<String>,
    pub block: Option<String>,
    pub unit: Option<String>,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub energy_wh: Option<i64>,
    pub idle_seconds: i64,
    pub stop_reason: Option<String>,
    pub end_kind: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: SessionStatus,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<SessionRaw> for SessionView {
    type Error = crate::StoreError;
    fn try_from(r: SessionRaw) -> Result<Self, Self::Error> {
        let corrupt = |what: String| crate::StoreError::Corrupt { what };
        let tag = r
            .tag
            .map(|t| {
                Tag::parse(&t).map_err(|e| corrupt(format!("session {} tag: {e}", r.vendor_id)))
            })
            .transpose()?;
        let end_kind = r
            .end_kind
            .map(|k| {
                EndKind::try_from(k).map_err(|e| corrupt(format!("session {}: {e}", r.vendor_id)))
            })
            .transpose()?;
        let apartment_label = match (&r.block, &r.unit) {
            (Some(b), Some(u)) => Some(apartment_label(b, u)),
            _ => None,
        };
        Ok(Self {
            vendor_id: r.vendor_id,
            charger_uuid: r.charger_uuid,
            charger_name: r.charger_name,
            connector_id: r.connector_id,
            tag,
            tag_pk: r.tag_pk,
            resident_id: r.resident_id,
            resident_name: r.resident_name,
            apartment_label,
            start: r.start,
            stop: r.stop,
            energy_wh: r.energy_wh,
            idle_seconds: r.idle_seconds,
            stop_reason: r.stop_reason,
            end_kind,
            status: r.status,
            updated_at: r.updated_at,
        })
    }
}

/// Which sessions [`crate::Store::sessions`] returns: those that started in `[from, to)`
/// (and match the charger, resident and apartment when given), newest first, at most `limit`
/// (default 1000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    /// Only sessions on this charger (its vendor uuid).
    pub charger_uuid: Option<String>,
    /// Only sessions attributed to this resident.
    pub resident: Option<ResidentId>,
    /// Only sessions of residents who live in this apartment (their current apartment).
    pub apartment: Option<ApartmentId>,
}

/// An event to append. `kind` and `payload` belong to the domain's event model; the store
/// keeps them opaque.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub session_vendor_id: Option<i64>,
    pub charger_uuid: Option<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub session_vendor_id: Option<i64>,
    pub charger_uuid: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A tag seen on a charger that nobody owned at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTagSighting {
    pub tag: Tag,
    pub at: DateTime<Utc>,
    pub charger_uuid: Option<String>,
    pub session_vendor_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UnknownTagRow {
    #[sqlx(try_from = "String")]
    pub tag: Tag,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub charger_uuid: Option<String>,
    pub session_vendor_id: Option<i64>,
    pub seen_count: i64,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A connector with its charger's name and state, for dashboards and `vetric status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ConnectorView {
    pub charger_uuid: String,
    pub charger_name: String,
    pub charge_box_id: String,
    pub charger_online: bool,
    pub last_heartbeat: Option<DateTime<Utc>>,
    #[sqlx(try_from = "i64")]
    pub connector_id: u32,
    /// As the vendor spells it.
    #[sqlx(try_from = "String")]
    pub status: ConnectorStatus,
    pub status_since: DateTime<Utc>,
    pub error_code: String,
    pub power_max_w: Option<i64>,
    pub unidentified_charging: bool,
    pub observed_at: DateTime<Utc>,
    /// When any shown value last changed (not bumped by identical reads).
    pub changed_at: DateTime<Utc>,
}

/// Everything one successful ingest cycle writes, in one transaction
/// ([`crate::Store::write_cycle`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CycleWrite {
    /// When the vendor data was received; `observed_at` of every charger and connector.
    pub observed_at: DateTime<Utc>,
    /// Chargers to write: only those that changed (the ingest skips rows it already wrote),
    /// so this is NOT the vendor's whole list — see `listed_chargers`. A charger written here
    /// is shown again if it was retired.
    pub chargers: Vec<ChargerWrite>,
    /// `Some`: this cycle's charger list was ACCEPTED as the vendor's whole list (a confirmed
    /// empty list included), and these are the uuids on it. Chargers of the site not on it are
    /// retired (hidden from dashboards, the API and `vetric status`; kept for the history that
    /// names them), as are connectors of a written charger that its write no longer lists.
    /// `None` (a failed read, a shape error, an empty list awaiting confirmation, a writer that
    /// only adds rows): nothing is retired.
    pub listed_chargers: Option<Vec<String>>,
    pub sessions: Vec<SessionWrite>,
    pub events: Vec<NewEvent>,
    pub unknown_tags: Vec<UnknownTagSighting>,
    /// The session tracker's state after this cycle (opaque to the store); `None` keeps the
    /// stored one.
    pub tracker_state: Option<serde_json::Value>,
    pub vendor_link: VendorLinkRow,
    /// Notifications this cycle decided on, enqueued in the same transaction as the events
    /// that caused them (DESIGN rule 5); a repeated dedup key enqueues nothing.
    pub notifications: Vec<NewNotification>,
    /// Pending notifications this cycle made pointless (e.g. the car left before the idle
    /// reminder went out).
    pub cancellations: Vec<CancelPending>,
}

/// A notification to put in the outbox. Idempotent by `dedup_key`: enqueuing the same key
/// again (a replayed cycle, a restarted process) adds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Unique across the WHOLE store (all sites): include the site, e.g.
    /// `site:{id}:{rule}:{session}`.
    pub dedup_key: String,
    pub rule: String,
    pub audience: String,
    /// `whatsapp`, `email` or `webhook`.
    pub channel: String,
    /// With `recipient` `None`, the store takes the resident's phone at insert; a resident
    /// with no phone (or inactive) gets the row cancelled with reason `no_phone`, so the log
    /// still shows why nobody was told.
    pub resident_id: Option<i64>,
    pub recipient: Option<String>,
    /// `session:{id}`, `charger:{uuid}` or `site`: what [`CancelPending`] matches on.
    pub scope: String,
    pub session_vendor_id: Option<i64>,
    pub subject: Option<String>,
    pub body: String,
    /// The short code printed in the message; reconciliation looks for it at the gateway.
    pub ref_code: String,
    pub not_before: DateTime<Utc>,
}

/// Cancels the still-`pending` notifications of a site with this scope and one of these
/// rules. Rows already being sent (or sent, or in doubt) are never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelPending {
    pub scope: String,
    pub rules: Vec<String>,
    pub reason: String,
}
