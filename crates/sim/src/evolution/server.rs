//! The HTTP face of the simulator: the gateway routes with Evolution v2's guards (instance
//! exists, then `apikey`), validation, the instance state machine and the fault gate, plus the
//! shared state the control API (`/__sim/…`, see `control`) and the handle act on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::config::{EvolutionSimConfig, InstanceState};
use super::jid;
use super::wire;

/// Longest `delay` honoured on `sendText`, so a test cannot stall the simulator for long.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Calls received per gateway route (the control API is not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// `POST /message/sendText/:instance`.
    pub send_text: u64,
    /// `GET /instance/connectionState/:instance`.
    pub connection_state: u64,
    /// `GET /instance/fetchInstances`.
    pub fetch_instances: u64,
    /// `POST /chat/findMessages/:instance`.
    pub find_messages: u64,
    /// Any other path or method (answered 404).
    pub other: u64,
    /// All of the above.
    pub total: u64,
}

/// Injected faults. JSON: every field optional on `POST /__sim/faults` (a patch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Percentage (0–100) of `sendText` calls that pass validation and then fail with 500,
    /// drawn from the seeded RNG. A failed send is not recorded.
    #[serde(default)]
    pub fail_send_percent: u8,
    /// Added to every gateway answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Accept every gateway request and never answer, until cleared.
    #[serde(default)]
    pub hang: bool,
    /// Answer 401 on every gateway route after the instance check, whatever the key.
    #[serde(default)]
    pub force_unauthorized: bool,
}

/// A partial update of [`Faults`]: fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct FaultsPatch {
    fail_send_percent: Option<u8>,
    latency_ms: Option<u64>,
    hang: Option<bool>,
    force_unauthorized: Option<bool>,
}

impl Faults {
    pub(crate) fn apply(&mut self, p: FaultsPatch) {
        if let Some(v) = p.fail_send_percent {
            self.fail_send_percent = v.min(100);
        }
        if let Some(v) = p.latency_ms {
            self.latency_ms = v;
        }
        if let Some(v) = p.hang {
            self.hang = v;
        }
        if let Some(v) = p.force_unauthorized {
            self.force_unauthorized = v;
        }
    }
}

/// A message the gateway accepted (answered 201), for test assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// Instance it was sent through.
    pub instance: String,
    /// The `number` field exactly as sent.
    pub number: String,
    /// The `remoteJid` answered (Brazil rule applied).
    pub jid: String,
    /// The text.
    pub text: String,
    /// `key.id` (`3EB0` + 18 uppercase hex).
    pub id: String,
    /// When it was accepted (`messageTimestamp` is this in seconds).
    pub timestamp: DateTime<Utc>,
}

/// One instance of the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub name: String,
    pub id: String,
    pub token: String,
    pub state: InstanceState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// State shared by the server tasks and the handle.
pub(crate) struct Shared {
    pub config: EvolutionSimConfig,
    pub instances: Mutex<Vec<Instance>>,
    pub stores_messages: Mutex<bool>,
    pub not_on_whatsapp: Mutex<BTreeSet<String>>,
    pub messages: Mutex<Vec<SentMessage>>,
    pub faults: Mutex<Faults>,
    pub rng: Mutex<StdRng>,
    pub calls: Mutex<Calls>,
    pub hang: watch::Sender<bool>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a simulator lock is a bug in the simulator; keep serving anyway.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hex_upper(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02X}", rng.random::<u8>()))
        .collect()
}

fn uuid_like(rng: &mut StdRng) -> String {
    let h = hex_upper(rng, 16).to_lowercase();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl Shared {
    pub fn new(config: EvolutionSimConfig) -> Shared {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let now = Utc::now();
        let instances = config
            .instances
            .iter()
            .map(|name| {
                let token = hex_upper(&mut rng, 16);
                Instance {
                    name: name.clone(),
                    id: uuid_like(&mut rng),
                    token: format!(
                        "{}-{}-{}-{}",
                        &token[0..12],
                        &token[12..16],
                        &token[16..20],
                        &token[20..32]
                    ),
                    state: config.initial_state,
                    created_at: now,
                    updated_at: now,
                }
            })
            .collect();
        let not_on_whatsapp = config
            .not_on_whatsapp
            .iter()
            .map(|n| jid::normalize(n))
            .collect();
        let (hang, _) = watch::channel(false);
        Shared {
            stores_messages: Mutex::new(config.stores_messages),
            config,
            instances: Mutex::new(instances),
            not_on_whatsapp: Mutex::new(not_on_whatsapp),
            messages: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(rng),
            calls: Mutex::new(Calls::default()),
            hang,
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        let hang = faults.hang;
        *lock(&self.faults) = faults;
        self.hang.send_replace(hang);
    }

    pub fn patch_faults(&self, patch: FaultsPatch) -> Faults {
        let mut f = self.faults();
        f.apply(patch);
        self.set_faults(f.clone());
        f
    }

    /// Sets the state of one instance (`Some(name)`) or all; false if the name is unknown.
    pub fn set_state(&self, instance: Option<&str>, state: InstanceState) -> bool {
        let mut list = lock(&self.instances);
        let mut found = false;
        for i in list.iter_mut() {
            if instance.is_none_or(|n| n == i.name) {
                i.state = state;
                i.updated_at = Utc::now();
                found = true;
            }
        }
        found
    }

    pub fn states(&self) -> Vec<(String, InstanceState)> {
        lock(&self.instances)
            .iter()
            .map(|i| (i.name.clone(), i.state))
            .collect()
    }

    fn instance(&self, name: &str) -> Option<Instance> {
        lock(&self.instances)
            .iter()
            .find(|i| i.name == name)
            .cloned()
    }

    pub fn set_not_on_whatsapp(&self, number: &str, on: bool) {
        let digits = jid::normalize(number);
        let mut set = lock(&self.not_on_whatsapp);
        if on {
            set.insert(digits);
        } else {
            set.remove(&digits);
        }
    }

    fn is_on_whatsapp(&self, number: &str) -> bool {
        if number.contains('@') {
            return true;
        }
        let digits = jid::normalize(number);
        if digits.is_empty() {
            return false;
        }
        let set = lock(&self.not_on_whatsapp);
        !jid::br_forms(&digits).iter().any(|f| set.contains(f))
    }
}

/// The router: gateway routes behind the fault gate, plus the control API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/message/sendText/{instance}",
            post(send_text).fallback(not_found),
        )
        .route(
            "/instance/connectionState/{instance}",
            get(connection_state).fallback(not_found),
        )
        .route(
            "/instance/fetchInstances",
            get(fetch_instances).fallback(not_found),
        )
        .route(
            "/chat/findMessages/{instance}",
            post(find_messages).fallback(not_found),
        )
        .merge(super::control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => {
            let mut r = (status, b).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("serialize: {e}")).into_response(),
    }
}

fn gateway_error(status: StatusCode, message: Value) -> Response {
    json(status, &wire::error_envelope(status.as_u16(), message))
}

fn unauthorized() -> Response {
    gateway_error(StatusCode::UNAUTHORIZED, json!("Unauthorized"))
}

fn connection_closed() -> Response {
    gateway_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!("Connection Closed"),
    )
}

fn bad_request(message: Value) -> Response {
    gateway_error(StatusCode::BAD_REQUEST, message)
}

/// Express's answer for a route it does not know.
async fn not_found(method: Method, uri: Uri) -> Response {
    gateway_error(
        StatusCode::NOT_FOUND,
        json!([format!("Cannot {} {}", method, uri.path())]),
    )
}

/// Counts gateway calls and applies latency and hang.
async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/__sim") {
        return next.run(req).await;
    }
    {
        let mut c = lock(&shared.calls);
        let m = req.method();
        // `/prefix/<instance>` with a non-empty instance segment.
        let with_instance = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        };
        if *m == Method::POST && with_instance("/message/sendText/") {
            c.send_text += 1;
        } else if *m == Method::GET && with_instance("/instance/connectionState/") {
            c.connection_state += 1;
        } else if *m == Method::GET && path == "/instance/fetchInstances" {
            c.fetch_instances += 1;
        } else if *m == Method::POST && with_instance("/chat/findMessages/") {
            c.find_messages += 1;
        } else {
            c.other += 1;
        }
        c.total += 1;
    }
    let latency = lock(&shared.faults).latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut hang = shared.hang.subscribe();
    if *hang.borrow_and_update() {
        // Accept and answer nothing until the fault is cleared (or the server stops).
        if hang.wait_for(|h| !*h).await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    next.run(req).await
}

fn key_matches(shared: &Shared, headers: &HeaderMap, instance: Option<&Instance>) -> bool {
    let Some(key) = headers.get("apikey").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    key == shared.config.api_key || instance.is_some_and(|i| key == i.token)
}

/// Why a guard refused a request.
pub(crate) enum Refusal {
    UnknownInstance(String),
    Unauthorized,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UnknownInstance(name) => gateway_error(
                StatusCode::NOT_FOUND,
                json!([format!("The \"{name}\" instance does not exist")]),
            ),
            Refusal::Unauthorized => unauthorized(),
        }
    }
}

/// v2's guards in order: the instance exists (404), then `apikey` (401).
fn guard(shared: &Shared, name: &str, headers: &HeaderMap) -> Result<Instance, Refusal> {
    let Some(instance) = shared.instance(name) else {
        return Err(Refusal::UnknownInstance(name.to_owned()));
    };
    if lock(&shared.faults).force_unauthorized || !key_matches(shared, headers, Some(&instance)) {
        return Err(Refusal::Unauthorized);
    }
    Ok(instance)
}

/// JSON-schema check of the `sendText` body, with jsonschema's messages.
fn schema_errors(body: &Value) -> Vec<String> {
    let Some(obj) = body.as_object() else {
        return vec!["instance is not of a type(s) object".to_owned()];
    };
    let mut errors = Vec::new();
    for field in ["number", "text"] {
        match obj.get(field) {
            None => errors.push(format!("instance requires property \"{field}\"")),
            Some(v) if !v.is_string() => {
                errors.push(format!("instance.{field} is not of a type(s) string"));
            }
            Some(_) => {}
        }
    }
    if obj
        .get("delay")
        .is_some_and(|d| !(d.is_u64() || d.is_i64()))
    {
        errors.push("instance.delay is not of a type(s) integer".to_owned());
    }
    if obj.get("linkPreview").is_some_and(|v| !v.is_boolean()) {
        errors.push("instance.linkPreview is not of a type(s) boolean".to_owned());
    }
    errors
}

async fn send_text(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let instance = match guard(&shared, &name, &headers) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let errors = schema_errors(&body);
    if !errors.is_empty() {
        return bad_request(json!([errors]));
    }
    let number = body["number"].as_str().unwrap_or_default().to_owned();
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    if text.trim().is_empty() {
        return bad_request(json!(["Text is required"]));
    }
    if instance.state != InstanceState::Open {
        return connection_closed();
    }
    let jid = jid::create_jid(&number);
    if !shared.is_on_whatsapp(&number) {
        return bad_request(json!([{ "jid": jid, "exists": false, "number": number }]));
    }
    let fail = {
        let pct = lock(&shared.faults).fail_send_percent;
        pct > 0 && lock(&shared.rng).random_range(0..100u8) < pct
    };
    if fail {
        return gateway_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!("Internal Server Error (simulated)"),
        );
    }
    if let Some(ms) = body.get("delay").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms).min(MAX_DELAY)).await;
    }
    let id = format!("3EB0{}", hex_upper(&mut lock(&shared.rng), 9));
    let now = Utc::now();
    lock(&shared.messages).push(SentMessage {
        instance: instance.name.clone(),
        number,
        jid: jid.clone(),
        text: text.clone(),
        id: id.clone(),
        timestamp: now,
    });
    tracing::debug!(instance = %instance.name, %id, "evolution simulator accepted a message");
    json(
        StatusCode::CREATED,
        &wire::SendTextResponse {
            key: wire::MessageKey {
                remote_jid: jid,
                from_me: true,
                id,
            },
            push_name: "Você",
            status: "PENDING",
            message: wire::Conversation { conversation: text },
            context_info: wire::ContextInfo {
                mentioned_jid: Vec::new(),
                group_mentions: Vec::new(),
                ephemeral_setting_timestamp: wire::LowHigh {
                    low: instance.created_at.timestamp(),
                    high: 0,
                    unsigned: false,
                },
                disappearing_mode: wire::DisappearingMode { initiator: 0 },
            },
            message_type: "conversation",
            message_timestamp: now.timestamp(),
            instance_id: instance.id,
            source: "web",
        },
    )
}

async fn connection_state(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let instance = match guard(&shared, &name, &headers) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let body = match instance.state.wire() {
        Some(state) => json!({ "instance": { "instanceName": instance.name, "state": state } }),
        None => json!({ "instance": { "instanceName": instance.name } }),
    };
    json(StatusCode::OK, &body)
}

/// One item of `fetchInstances` (B5, `evolution-fetch-instances.json`), in the recorded order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceItem {
    id: String,
    name: String,
    connection_status: &'static str,
    owner_jid: Option<String>,
    profile_name: Option<String>,
    profile_pic_url: Option<String>,
    integration: &'static str,
    number: Option<String>,
    business_id: Option<String>,
    token: String,
    client_name: &'static str,
    disconnection_reason_code: Option<u16>,
    disconnection_object: Option<Value>,
    disconnection_at: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(rename = "Chatwoot")]
    chatwoot: Option<Value>,
    #[serde(rename = "Proxy")]
    proxy: Option<Value>,
    #[serde(rename = "Rabbitmq")]
    rabbitmq: Option<Value>,
    #[serde(rename = "Nats")]
    nats: Option<Value>,
    #[serde(rename = "Sqs")]
    sqs: Option<Value>,
    #[serde(rename = "Websocket")]
    websocket: Option<Value>,
    #[serde(rename = "Setting")]
    setting: Value,
    #[serde(rename = "_count")]
    count: Value,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn instance_item(i: &Instance, messages: usize) -> InstanceItem {
    let open = i.state == InstanceState::Open;
    let closed = i.state == InstanceState::Close;
    InstanceItem {
        id: i.id.clone(),
        name: i.name.clone(),
        connection_status: i.state.wire().unwrap_or("close"),
        owner_jid: open.then(|| "558290009999@s.whatsapp.net".to_owned()),
        profile_name: open.then(|| i.name.clone()),
        profile_pic_url: None,
        integration: "WHATSAPP-BAILEYS",
        number: open.then(|| "558290009999".to_owned()),
        business_id: None,
        token: i.token.clone(),
        client_name: "evolution_exchange",
        disconnection_reason_code: closed.then_some(401),
        disconnection_object: closed.then(|| {
            json!({"error":{"data":{"reason":"401","location":"rva"},"isBoom":true,"isServer":false,"output":{"statusCode":401,"payload":{"statusCode":401,"error":"Unauthorized","message":"Connection Failure"},"headers":{}}},"date":iso(i.updated_at)})
        }),
        disconnection_at: closed.then(|| iso(i.updated_at)),
        created_at: iso(i.created_at),
        updated_at: iso(i.updated_at),
        chatwoot: None,
        proxy: None,
        rabbitmq: None,
        nats: None,
        sqs: None,
        websocket: None,
        setting: json!({
            "id": format!("sim{}", &i.id[..8]),
            "rejectCall": false,
            "msgCall": "",
            "groupsIgnore": false,
            "alwaysOnline": false,
            "readMessages": false,
            "readStatus": false,
            "syncFullHistory": false,
            "wavoipToken": "",
            "createdAt": iso(i.created_at),
            "updatedAt": iso(i.created_at),
            "instanceId": i.id,
        }),
        count: json!({ "Message": messages, "Contact": 0, "Chat": 0 }),
    }
}

async fn fetch_instances(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if lock(&shared.faults).force_unauthorized {
        return unauthorized();
    }
    let key = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let instances = lock(&shared.instances).clone();
    let selected: Vec<&Instance> = if key == shared.config.api_key {
        instances.iter().collect()
    } else {
        instances.iter().filter(|i| i.token == key).collect()
    };
    if selected.is_empty() {
        return unauthorized();
    }
    let stores = *lock(&shared.stores_messages);
    let messages = lock(&shared.messages).clone();
    let items: Vec<InstanceItem> = selected
        .into_iter()
        .map(|i| {
            let n = if stores {
                messages.iter().filter(|m| m.instance == i.name).count()
            } else {
                0
            };
            instance_item(i, n)
        })
        .collect();
    json(StatusCode::OK, &items)
}

async fn find_messages(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let instance = match guard(&shared, &name, &headers) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return bad_request(json!([["instance is not of a type(s) object"]])),
        }
    };
    let key = &body["where"]["key"];
    let remote_jid = key["remoteJid"].as_str();
    let id = key["id"].as_str();
    let page = body["page"].as_u64().unwrap_or(1).max(1) as usize;
    let size = body["offset"].as_u64().unwrap_or(50).max(1) as usize;
    let stores = *lock(&shared.stores_messages);
    let mut matching: Vec<SentMessage> = if stores {
        lock(&shared.messages)
            .iter()
            .filter(|m| m.instance == instance.name)
            .filter(|m| remote_jid.is_none_or(|j| j == m.jid))
            .filter(|m| id.is_none_or(|i| i == m.id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    matching.reverse(); // newest first
    let total = matching.len();
    let pages = total.div_ceil(size);
    let records = matching
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|m| wire::FoundRecord {
            id: format!("sim{}", m.id.to_lowercase()),
            key: wire::MessageKey {
                remote_jid: m.jid,
                from_me: true,
                id: m.id,
            },
            push_name: "Você",
            message_type: "conversation",
            message: wire::Conversation {
                conversation: m.text,
            },
            message_timestamp: m.timestamp.timestamp(),
            instance_id: instance.id.clone(),
            source: "web",
            status: "SERVER_ACK",
        })
        .collect();
    json(
        StatusCode::OK,
        &wire::FindMessagesResponse {
            messages: wire::FoundPage {
                total,
                pages,
                current_page: page,
                records,
            },
        },
    )
}
