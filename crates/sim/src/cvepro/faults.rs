//! Injected faults of the vendor service (RELIABILITY.md R1/R3): gateway outages with the
//! recorded nginx HTML, latency, hangs, 429 with `Retry-After`, 500 on a route, and shape drift
//! of the charger list (renamed field, dropped field, malformed JSON, a real empty list), and a
//! charger removed from the list.
//!
//! Faults are toggles: set one with [`Fault`], clear it by [`FaultKind`] (or all at once). An
//! outage or a rate limit may carry a duration after which it clears by itself.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A vendor route faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /api/v1/login`.
    Login,
    /// `GET /api/v1/chargepoints`.
    Chargepoints,
    /// `GET /api/v1/transaction`.
    Transaction,
}

/// A fault to inject. JSON form: `{"kind": "<snake_case name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Every vendor route answers `status` (502 or 503) with nginx's HTML body, for
    /// `duration_s` seconds or until cleared.
    Outage {
        /// 502 or 503 (other values get a generic body).
        status: u16,
        /// Clears by itself after this many seconds.
        #[serde(default)]
        duration_s: Option<f64>,
    },
    /// Every vendor route answers `ms` milliseconds late.
    Latency {
        /// Added delay.
        ms: u64,
    },
    /// Every vendor route accepts the request and never answers until cleared.
    Hang,
    /// Every vendor route answers 429 with `Retry-After: retry_after_s`.
    RateLimit {
        /// Value of `Retry-After`, seconds.
        retry_after_s: u64,
        /// Clears by itself after this many seconds.
        #[serde(default)]
        duration_s: Option<f64>,
    },
    /// `/chargepoints` answers with `chargeBoxes` instead of `chargePointList`.
    RenameChargePointList,
    /// `/chargepoints` omits `connectors[].lastStatus.status`.
    DropConnectorStatus,
    /// The route answers 200 with truncated JSON.
    MalformedJson {
        /// Which route.
        route: Route,
    },
    /// `/chargepoints` answers a genuine empty list (`[]`, `count: 0`).
    EmptyChargerList,
    /// `/chargepoints` leaves out the charger with this `uuid` (removed from the account);
    /// the rest of the list is as usual.
    HideCharger {
        /// The charger's vendor uuid.
        uuid: String,
    },
    /// The route answers 500.
    ServerError {
        /// Which route.
        route: Route,
    },
}

/// The kind of a fault, to clear it. JSON: `{"kind": "<snake_case name>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// [`Fault::Outage`].
    Outage,
    /// [`Fault::Latency`].
    Latency,
    /// [`Fault::Hang`].
    Hang,
    /// [`Fault::RateLimit`].
    RateLimit,
    /// [`Fault::RenameChargePointList`].
    RenameChargePointList,
    /// [`Fault::DropConnectorStatus`].
    DropConnectorStatus,
    /// [`Fault::MalformedJson`] (every route).
    MalformedJson,
    /// [`Fault::EmptyChargerList`].
    EmptyChargerList,
    /// [`Fault::HideCharger`].
    HideCharger,
    /// [`Fault::ServerError`] (every route).
    ServerError,
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Outage { .. } => FaultKind::Outage,
            Fault::Latency { .. } => FaultKind::Latency,
            Fault::Hang => FaultKind::Hang,
            Fault::RateLimit { .. } => FaultKind::RateLimit,
            Fault::RenameChargePointList => FaultKind::RenameChargePointList,
            Fault::DropConnectorStatus => FaultKind::DropConnectorStatus,
            Fault::MalformedJson { .. } => FaultKind::MalformedJson,
            Fault::EmptyChargerList => FaultKind::EmptyChargerList,
            Fault::HideCharger { .. } => FaultKind::HideCharger,
            Fault::ServerError { .. } => FaultKind::ServerError,
        }
    }

    fn route(&self) -> Option<Route> {
        match self {
            Fault::MalformedJson { route } | Fault::ServerError { route } => Some(*route),
            _ => None,
        }
    }
}

/// An active fault and when it clears by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// The fault.
    pub fault: Fault,
    /// When it expires, if it has a duration.
    pub until: Option<DateTime<Utc>>,
}

/// The set of active faults.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    active: Vec<ActiveFault>,
}

/// The recorded nginx 502 body (`cvepro-errors.json`).
pub const GATEWAY_502_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";
/// nginx's 503 body, same shape.
pub const GATEWAY_503_HTML: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n";

/// The HTML nginx answers for a gateway status.
pub fn gateway_html(status: u16) -> String {
    match status {
        502 => GATEWAY_502_HTML.to_string(),
        503 => GATEWAY_503_HTML.to_string(),
        s => format!(
            "<html>\r\n<head><title>{s} Error</title></head>\r\n<body>\r\n<center><h1>{s} Error</h1></center>\r\n</body>\r\n</html>\r\n"
        ),
    }
}

impl FaultState {
    /// Sets a fault, replacing one of the same kind (and route).
    pub fn set(&mut self, fault: Fault, now: DateTime<Utc>) {
        let duration = match &fault {
            Fault::Outage { duration_s, .. } | Fault::RateLimit { duration_s, .. } => *duration_s,
            _ => None,
        };
        let until = duration.map(|s| now + TimeDelta::milliseconds((s.max(0.0) * 1000.0) as i64));
        let (kind, route) = (fault.kind(), fault.route());
        self.active
            .retain(|a| !(a.fault.kind() == kind && a.fault.route() == route));
        self.active.push(ActiveFault { fault, until });
    }

    /// Clears every fault of a kind.
    pub fn clear(&mut self, kind: FaultKind) {
        self.active.retain(|a| a.fault.kind() != kind);
    }

    /// Clears everything.
    pub fn clear_all(&mut self) {
        self.active.clear();
    }

    /// Drops expired faults and lists the rest.
    pub fn list(&mut self, now: DateTime<Utc>) -> Vec<ActiveFault> {
        self.prune(now);
        self.active.clone()
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        self.active.retain(|a| a.until.is_none_or(|u| u > now));
    }

    fn find(&mut self, now: DateTime<Utc>, kind: FaultKind) -> Option<&Fault> {
        self.prune(now);
        self.active
            .iter()
            .find(|a| a.fault.kind() == kind)
            .map(|a| &a.fault)
    }

    /// Status of an outage in force.
    pub fn outage(&mut self, now: DateTime<Utc>) -> Option<u16> {
        match self.find(now, FaultKind::Outage) {
            Some(Fault::Outage { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// Added latency in force.
    pub fn latency(&mut self, now: DateTime<Utc>) -> Option<std::time::Duration> {
        match self.find(now, FaultKind::Latency) {
            Some(Fault::Latency { ms }) => Some(std::time::Duration::from_millis(*ms)),
            _ => None,
        }
    }

    /// `Retry-After` of a rate limit in force.
    pub fn rate_limit(&mut self, now: DateTime<Utc>) -> Option<u64> {
        match self.find(now, FaultKind::RateLimit) {
            Some(Fault::RateLimit { retry_after_s, .. }) => Some(*retry_after_s),
            _ => None,
        }
    }

    /// The uuid of the charger a [`Fault::HideCharger`] in force leaves out.
    pub fn hidden_charger(&mut self, now: DateTime<Utc>) -> Option<String> {
        match self.find(now, FaultKind::HideCharger) {
            Some(Fault::HideCharger { uuid }) => Some(uuid.clone()),
            _ => None,
        }
    }

    /// Whether a fault without parameters is in force.
    pub fn has(&mut self, now: DateTime<Utc>, kind: FaultKind) -> bool {
        self.find(now, kind).is_some()
    }

    /// Whether a route-targeted fault is in force for `route`.
    pub fn has_on(&mut self, now: DateTime<Utc>, kind: FaultKind, route: Route) -> bool {
        self.prune(now);
        self.active
            .iter()
            .any(|a| a.fault.kind() == kind && a.fault.route() == Some(route))
    }
}
