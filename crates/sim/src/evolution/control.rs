//! The control API under `/__sim/…`: the record of accepted messages, instance states, faults,
//! call counters. Not part of Evolution; no authentication; never counted in
//! [`Calls`](super::server::Calls). Routes and bodies are listed in `crates/sim/README.md`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::config::InstanceState;
use super::server::{Calls, Faults, FaultsPatch, Shared, json, lock};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__sim/messages", get(messages).delete(clear_messages))
        .route("/__sim/state", get(states).post(set_state))
        .route(
            "/__sim/faults",
            get(faults).post(patch_faults).delete(clear_faults),
        )
        .route("/__sim/calls", get(calls))
        .route("/__sim/calls/reset", post(reset_calls))
        .route("/__sim/stores_messages", post(stores_messages))
        .route("/__sim/not_on_whatsapp", post(not_on_whatsapp))
}

fn ok() -> Response {
    json(StatusCode::OK, &json!({ "ok": true }))
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &json!({ "error": message }))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))
}

async fn messages(State(shared): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &*lock(&shared.messages))
}

async fn clear_messages(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.messages).clear();
    ok()
}

async fn states(State(shared): State<Arc<Shared>>) -> Response {
    let list: Vec<_> = shared
        .states()
        .into_iter()
        .map(|(instance, state)| json!({ "instance": instance, "state": state }))
        .collect();
    json(StatusCode::OK, &list)
}

#[derive(Deserialize)]
struct StateReq {
    state: InstanceState,
    #[serde(default)]
    instance: Option<String>,
}

async fn set_state(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: StateReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if shared.set_state(req.instance.as_deref(), req.state) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "unknown instance")
    }
}

async fn faults(State(shared): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &shared.faults())
}

async fn patch_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: FaultsPatch = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    json(StatusCode::OK, &shared.patch_faults(patch))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.set_faults(Faults::default());
    ok()
}

async fn calls(State(shared): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &*lock(&shared.calls))
}

async fn reset_calls(State(shared): State<Arc<Shared>>) -> Response {
    *lock(&shared.calls) = Calls::default();
    ok()
}

#[derive(Deserialize)]
struct OnReq {
    on: bool,
}

async fn stores_messages(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: OnReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    *lock(&shared.stores_messages) = req.on;
    ok()
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct NumberReq {
    number: String,
    #[serde(default = "yes")]
    on: bool,
}

async fn not_on_whatsapp(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: NumberReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    shared.set_not_on_whatsapp(&req.number, req.on);
    ok()
}
