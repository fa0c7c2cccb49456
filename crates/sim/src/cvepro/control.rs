//! The control API under `/__sim/…`: scripting sessions, injecting faults and reading the
//! ground truth over HTTP. It is not part of CVE-Pro; it needs no authentication and is never
//! counted in [`Calls`](super::server::Calls). The same operations exist in process on
//! [`SimHandle`](super::SimHandle). Routes and bodies are listed in `crates/sim/README.md`.
//!
//! Every body is JSON. `charger` is the charger's index in the fleet (0-based) or its
//! `chargeBoxId`; `connector` is the OCPP connector id and defaults to 1. Errors answer
//! `{"error": "…"}` with 400 (bad body), 404 (unknown charger, connector, tag, transaction) or
//! 409 (the connector is not in a state the operation applies to).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json as j};

use super::engine::{Engine, StopReason};
use super::error::SimError;
use super::faults::{Fault, FaultKind};
use super::server::{Shared, error_json, json};

/// A charger named by index or by `chargeBoxId`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ChargerKey {
    /// Index in the fleet.
    Index(usize),
    /// `chargeBoxId` (or `uuid`).
    Id(String),
}

impl ChargerKey {
    fn resolve(&self, engine: &Engine) -> Result<usize, SimError> {
        match self {
            ChargerKey::Index(i) => engine.charger_index(&i.to_string()),
            ChargerKey::Id(s) => engine.charger_index(s),
        }
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ConnectorReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
}

#[derive(Deserialize)]
struct PlugInReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
    tag: String,
}

#[derive(Deserialize)]
struct PowerReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
    #[serde(default)]
    power_w: Option<f64>,
}

#[derive(Deserialize)]
struct StopReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
    #[serde(default)]
    reason: Option<StopReason>,
}

#[derive(Deserialize)]
struct FaultConnectorReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
    #[serde(default)]
    error_code: Option<String>,
}

#[derive(Deserialize)]
struct ChargerReq {
    charger: ChargerKey,
}

#[derive(Deserialize)]
struct TagEmptyReq {
    transaction_id: i64,
    #[serde(default = "yes")]
    empty: bool,
}

#[derive(Deserialize)]
struct LowercaseReq {
    charger: ChargerKey,
    #[serde(default = "yes")]
    lowercase: bool,
}

#[derive(Deserialize)]
struct GhostReq {
    charger: ChargerKey,
    #[serde(default = "one")]
    connector: u32,
    #[serde(default = "yes")]
    on: bool,
}

#[derive(Deserialize)]
struct AutoReq {
    on: bool,
}

#[derive(Deserialize)]
struct ClearReq {
    #[serde(default)]
    kind: Option<FaultKind>,
}

/// Default power of `start_charging` when the body names none, W.
pub const DEFAULT_POWER_W: f64 = 7_400.0;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__sim/fleet", get(fleet))
        .route("/__sim/state", get(state))
        .route("/__sim/record", get(record))
        .route("/__sim/calls", get(calls))
        .route("/__sim/calls/reset", post(reset_calls))
        .route("/__sim/in_flight", get(in_flight))
        .route("/__sim/plug_in", post(plug_in))
        .route("/__sim/start_charging", post(start_charging))
        .route("/__sim/suspend_ev", post(suspend_ev))
        .route("/__sim/suspend_evse", post(suspend_evse))
        .route("/__sim/resume", post(resume))
        .route("/__sim/stop", post(stop))
        .route("/__sim/unplug", post(unplug))
        .route("/__sim/fault_connector", post(fault_connector))
        .route("/__sim/unfault_connector", post(unfault_connector))
        .route("/__sim/offline", post(offline))
        .route("/__sim/online", post(online))
        .route("/__sim/tag_empty", post(tag_empty))
        .route("/__sim/lowercase_tags", post(lowercase_tags))
        .route("/__sim/ghost", post(ghost))
        .route("/__sim/auto", post(auto))
        .route(
            "/__sim/faults",
            get(list_faults).post(set_fault).delete(clear_all_faults),
        )
        .route("/__sim/faults/clear", post(clear_fault))
        .route("/__sim/revoke_tokens", post(revoke_tokens))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))
}

fn bad_body(message: &str) -> Response {
    error_json(StatusCode::BAD_REQUEST, message)
}

fn sim_error(e: &SimError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_json(status, &e.to_string())
}

/// Parses the body and runs an engine operation at the current instant.
fn op<T: DeserializeOwned>(
    shared: &Shared,
    body: &Bytes,
    f: impl FnOnce(&mut Engine, DateTime<Utc>, T) -> Result<Value, SimError>,
) -> Response {
    let req = match parse::<T>(body) {
        Ok(r) => r,
        Err(m) => return bad_body(&m),
    };
    let (mut engine, now) = shared.engine_now();
    match f(&mut engine, now, req) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => sim_error(&e),
    }
}

fn ok() -> Value {
    j!({ "ok": true })
}

async fn fleet(State(s): State<Arc<Shared>>) -> Response {
    let fleet = s.engine().fleet().clone();
    json(StatusCode::OK, &fleet)
}

async fn state(State(s): State<Arc<Shared>>) -> Response {
    let (engine, _) = s.engine_now();
    json(StatusCode::OK, &super::state_view(&engine))
}

async fn record(State(s): State<Arc<Shared>>) -> Response {
    let (engine, _) = s.engine_now();
    json(StatusCode::OK, &engine.record())
}

async fn calls(State(s): State<Arc<Shared>>) -> Response {
    let c = *s.calls();
    json(StatusCode::OK, &c)
}

async fn reset_calls(State(s): State<Arc<Shared>>) -> Response {
    *s.calls() = Default::default();
    json(StatusCode::OK, &ok())
}

async fn in_flight(State(s): State<Arc<Shared>>) -> Response {
    let f = *s.in_flight();
    json(StatusCode::OK, &f)
}

async fn plug_in(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: PlugInReq| {
        let c = r.charger.resolve(e)?;
        e.plug_in(now, c, r.connector, &r.tag).map(|_| ok())
    })
}

async fn start_charging(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: PowerReq| {
        let c = r.charger.resolve(e)?;
        let id = e.start_charging(now, c, r.connector, r.power_w.unwrap_or(DEFAULT_POWER_W))?;
        Ok(j!({ "transaction_id": id }))
    })
}

async fn suspend_ev(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ConnectorReq| {
        let c = r.charger.resolve(e)?;
        e.suspend_ev(now, c, r.connector).map(|_| ok())
    })
}

async fn suspend_evse(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ConnectorReq| {
        let c = r.charger.resolve(e)?;
        e.suspend_evse(now, c, r.connector).map(|_| ok())
    })
}

async fn resume(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: PowerReq| {
        let c = r.charger.resolve(e)?;
        e.resume(now, c, r.connector, r.power_w).map(|_| ok())
    })
}

async fn stop(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: StopReq| {
        let c = r.charger.resolve(e)?;
        let reason = r.reason.unwrap_or(StopReason::EVDisconnected);
        let id = e.stop(now, c, r.connector, reason)?;
        Ok(j!({ "transaction_id": id }))
    })
}

async fn unplug(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ConnectorReq| {
        let c = r.charger.resolve(e)?;
        e.unplug(now, c, r.connector).map(|_| ok())
    })
}

async fn fault_connector(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: FaultConnectorReq| {
        let c = r.charger.resolve(e)?;
        let code = r.error_code.unwrap_or_else(|| "OtherError".to_string());
        e.fault(now, c, r.connector, &code).map(|_| ok())
    })
}

async fn unfault_connector(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ConnectorReq| {
        let c = r.charger.resolve(e)?;
        e.unfault(now, c, r.connector).map(|_| ok())
    })
}

async fn offline(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ChargerReq| {
        let c = r.charger.resolve(e)?;
        e.set_offline(now, c).map(|_| ok())
    })
}

async fn online(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: ChargerReq| {
        let c = r.charger.resolve(e)?;
        e.set_online(now, c).map(|_| ok())
    })
}

async fn tag_empty(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: TagEmptyReq| {
        e.set_tag_empty(now, r.transaction_id, r.empty)
            .map(|_| ok())
    })
}

async fn lowercase_tags(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: LowercaseReq| {
        let c = r.charger.resolve(e)?;
        e.set_lowercase_tags(now, c, r.lowercase).map(|_| ok())
    })
}

async fn ghost(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: GhostReq| {
        let c = r.charger.resolve(e)?;
        e.set_ghost(now, c, r.connector, r.on).map(|_| ok())
    })
}

async fn auto(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    op(&s, &body, |e, now, r: AutoReq| {
        e.set_auto(now, r.on);
        Ok(ok())
    })
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Response {
    let list = s.faults().list(Utc::now());
    json(StatusCode::OK, &list)
}

async fn set_fault(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<Fault>(&body) {
        Ok(f) => {
            s.set_fault(f);
            json(StatusCode::OK, &ok())
        }
        Err(m) => bad_body(&m),
    }
}

async fn clear_fault(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<ClearReq>(&body) {
        Ok(ClearReq { kind: Some(k) }) => s.clear_fault(k),
        Ok(ClearReq { kind: None }) => s.clear_faults(),
        Err(m) => return bad_body(&m),
    }
    json(StatusCode::OK, &ok())
}

async fn clear_all_faults(State(s): State<Arc<Shared>>) -> Response {
    s.clear_faults();
    json(StatusCode::OK, &ok())
}

async fn revoke_tokens(State(s): State<Arc<Shared>>) -> Response {
    s.revoke_tokens();
    json(StatusCode::OK, &ok())
}
