//! The HTTP face of the simulator: the vendor routes (`/api/v1/…`) with CVE-Pro's
//! authentication rules (A2, A7, A10), the fault gate in front of them, and the shared state
//! the control API (`/__sim/…`, see `control`) and `SimHandle` act on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::America::Sao_Paulo;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::config::{BearerPolicy, SimConfig, TimeMode};
use super::engine::Engine;
use super::faults::{Fault, FaultKind, FaultState, Route, gateway_html};
use super::wire;

/// Calls received per vendor endpoint (the control API is not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    /// `POST /api/v1/login`.
    pub login: u64,
    /// `GET /api/v1/chargepoints`.
    pub chargepoints: u64,
    /// `GET /api/v1/transaction`.
    pub transaction: u64,
    /// Any other path or method (answered 404).
    pub other: u64,
    /// All of the above.
    pub total: u64,
}

/// Vendor requests the simulator is answering right now, and the most at once since the last
/// reset. A request leaves when its answer is sent or when the client gives up (hyper drops
/// the handler when the connection closes), so a client that times out and hangs up does not
/// count; one that piles up requests does (RELIABILITY.md R1, "no task leak").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Requests in progress now.
    pub now: u64,
    /// The most in progress at the same time since the start (or the last reset).
    pub peak: u64,
}

/// State shared by the server tasks and the handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub engine: Mutex<Engine>,
    pub faults: Mutex<FaultState>,
    pub tokens: Mutex<HashMap<String, DateTime<Utc>>>,
    pub calls: Mutex<Calls>,
    pub in_flight: Mutex<InFlight>,
    pub hang: watch::Sender<bool>,
}

/// Counts one vendor request as in flight until dropped (answered, or cancelled by a client
/// that hung up).
struct InFlightGuard(Arc<Shared>);

impl InFlightGuard {
    fn enter(shared: &Arc<Shared>) -> InFlightGuard {
        let mut f = shared.in_flight();
        f.now += 1;
        f.peak = f.peak.max(f.now);
        InFlightGuard(shared.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut f = self.0.in_flight();
        f.now = f.now.saturating_sub(1);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a simulator lock is a bug in the simulator; keep serving anyway.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(config: SimConfig, engine: Engine) -> Shared {
        let (hang, _) = watch::channel(false);
        Shared {
            config,
            engine: Mutex::new(engine),
            faults: Mutex::new(FaultState::default()),
            tokens: Mutex::new(HashMap::new()),
            calls: Mutex::new(Calls::default()),
            in_flight: Mutex::new(InFlight::default()),
            hang,
        }
    }

    /// Locks the engine after advancing it to now.
    pub fn engine_now(&self) -> (MutexGuard<'_, Engine>, DateTime<Utc>) {
        let mut e = lock(&self.engine);
        let now = Utc::now().max(e.now());
        e.advance_to(now);
        (e, now)
    }

    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub fn calls(&self) -> MutexGuard<'_, Calls> {
        lock(&self.calls)
    }

    pub fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        lock(&self.in_flight)
    }

    pub fn set_fault(&self, fault: Fault) {
        let mut f = self.faults();
        f.set(fault, Utc::now());
        let hang = f.has(Utc::now(), FaultKind::Hang);
        self.hang.send_replace(hang);
    }

    pub fn clear_fault(&self, kind: FaultKind) {
        let mut f = self.faults();
        f.clear(kind);
        let hang = f.has(Utc::now(), FaultKind::Hang);
        self.hang.send_replace(hang);
    }

    pub fn clear_faults(&self) {
        self.faults().clear_all();
        self.hang.send_replace(false);
    }

    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }

    fn issue_token(&self) -> String {
        let mut rng = rand::rng();
        let token: String = (0..80)
            .map(|_| format!("{:02X}", rng.random::<u8>()))
            .collect();
        let ttl = TimeDelta::from_std(self.config.token_ttl).unwrap_or(TimeDelta::days(1));
        lock(&self.tokens).insert(token.clone(), Utc::now() + ttl);
        token
    }

    fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|exp| *exp > Utc::now())
    }
}

/// The router: vendor routes behind the fault gate, plus the control API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/chargepoints", get(chargepoints))
        .route("/api/v1/transaction", get(transaction))
        .merge(super::control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), vendor_gate))
        .with_state(shared)
}

fn classify(method: &Method, path: &str) -> Option<Route> {
    match (method, path) {
        (&Method::POST, "/api/v1/login") => Some(Route::Login),
        (&Method::GET, "/api/v1/chargepoints") => Some(Route::Chargepoints),
        (&Method::GET, "/api/v1/transaction") => Some(Route::Transaction),
        _ => None,
    }
}

pub(crate) fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => json_body(status, b),
        Err(e) => error_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("serialize: {e}"),
        ),
    }
}

pub(crate) fn error_json(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

fn unauthorized() -> Response {
    error_json(
        StatusCode::UNAUTHORIZED,
        "Invalid AUTHORIZATION set in Header!",
    )
}

/// Counts vendor calls and applies latency, hang, outage, rate limit and 500 faults.
async fn vendor_gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/__sim") {
        return next.run(req).await;
    }
    let route = classify(req.method(), &path);
    {
        let mut c = shared.calls();
        match route {
            Some(Route::Login) => c.login += 1,
            Some(Route::Chargepoints) => c.chargepoints += 1,
            Some(Route::Transaction) => c.transaction += 1,
            None => c.other += 1,
        }
        c.total += 1;
    }
    let _in_flight = InFlightGuard::enter(&shared);
    let latency = shared.faults().latency(Utc::now());
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let mut hang = shared.hang.subscribe();
    if *hang.borrow_and_update() {
        // Accept and answer nothing until the fault is cleared (or the server stops).
        if hang.wait_for(|h| !*h).await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let now = Utc::now();
    let (outage, rate_limit, error500) = {
        let mut f = shared.faults();
        (
            f.outage(now),
            f.rate_limit(now),
            route.is_some_and(|r| f.has_on(now, FaultKind::ServerError, r)),
        )
    };
    if let Some(status) = outage {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = (code, gateway_html(status)).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    if let Some(retry_after) = rate_limit {
        let mut r = error_json(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    if error500 {
        return error_json(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    next.run(req).await
}

fn malformed(shared: &Shared, route: Route) -> Option<Response> {
    shared
        .faults()
        .has_on(Utc::now(), FaultKind::MalformedJson, route)
        .then(|| {
            json_body(
                StatusCode::OK,
                br#"{"error":null,"chargePointList":[{"chargeBoxPk":58"#.to_vec(),
            )
        })
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

async fn login(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = malformed(&shared, Route::Login) {
        return r;
    }
    let cfg = &shared.config;
    let key_ok = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == cfg.api_key);
    if !key_ok {
        let status =
            StatusCode::from_u16(cfg.tenant_not_found_status).unwrap_or(StatusCode::UNAUTHORIZED);
        return json(
            status,
            &wire::LoginError {
                error: "E000 - Tenant Not Found",
                user: (),
                token: (),
            },
        );
    }
    let creds: Option<LoginBody> = serde_json::from_slice(&body).ok();
    let ok = creds.is_some_and(|c| {
        c.email.as_deref() == Some(cfg.email.as_str())
            && c.password.as_deref() == Some(cfg.password.as_str())
    });
    if !ok {
        return json(
            StatusCode::UNAUTHORIZED,
            &wire::LoginError {
                error: "E000 - Senha incorreta ou usuário não encontrado",
                user: (),
                token: (),
            },
        );
    }
    let token = shared.issue_token();
    json(
        StatusCode::OK,
        &wire::LoginOk {
            error: (),
            token: &token,
            user: wire::LoginUser {
                id: 48213,
                name: format!("Integracao {}", shared.fleet_site_name()),
                email: &cfg.email,
                permissions: wire::PERMISSIONS,
            },
        },
    )
}

impl Shared {
    fn fleet_site_name(&self) -> String {
        self.engine().fleet().site_name.clone()
    }
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

/// Applies A2.2 (true = authorised): raw token, `Bearer` per policy, no `Platform`, `timeZone` per toggle.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    route: Route,
    query: &[(String, String)],
) -> bool {
    let cfg = &shared.config;
    if cfg.reject_platform_header && headers.contains_key("platform") {
        return false;
    }
    if cfg.reject_timezone_param && query.iter().any(|(k, _)| k == "timeZone") {
        return false;
    }
    let Some(raw) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return false;
    };
    let token = match raw.strip_prefix("Bearer ") {
        Some(t) => {
            let allowed = match cfg.bearer_policy {
                BearerPolicy::AcceptAll => true,
                BearerPolicy::RejectAll => false,
                BearerPolicy::ChargepointsOnly => route == Route::Chargepoints,
            };
            if !allowed {
                return false;
            }
            t.trim()
        }
        None => raw,
    };
    shared.token_valid(token)
}

async fn chargepoints(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let query = query_pairs(q.as_deref());
    if !authorize(&shared, &headers, Route::Chargepoints, &query) {
        return unauthorized();
    }
    if let Some(r) = malformed(&shared, Route::Chargepoints) {
        return r;
    }
    let now = Utc::now();
    let (empty, rename, drop_status, hidden) = {
        let mut f = shared.faults();
        (
            f.has(now, FaultKind::EmptyChargerList),
            f.has(now, FaultKind::RenameChargePointList),
            f.has(now, FaultKind::DropConnectorStatus),
            f.hidden_charger(now),
        )
    };
    let filter = query
        .iter()
        .find(|(k, _)| k == "chargeBoxId")
        .map(|(_, v)| v.as_str());
    let list = if empty {
        Vec::new()
    } else {
        let (engine, now) = shared.engine_now();
        let mut list = wire::chargepoints(
            &engine,
            now,
            &wire::ChargepointsView {
                charge_box_id: filter,
                drop_status,
            },
        );
        if let Some(uuid) = hidden {
            list.retain(|c| c.uuid() != uuid);
        }
        list
    };
    let count = list.len();
    let (charge_point_list, charge_boxes) = if rename {
        (None, Some(list))
    } else {
        (Some(list), None)
    };
    json(
        StatusCode::OK,
        &wire::ChargepointsEnvelope {
            error: (),
            charge_point_list,
            charge_boxes,
            count,
        },
    )
}

/// Parses `YYYY-MM-DD HH:mm:ss` strictly.
fn parse_vendor_date(s: &str) -> Option<NaiveDateTime> {
    if s.len() != 19 || s.as_bytes().get(10) != Some(&b' ') {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()
}

fn to_instant(naive: NaiveDateTime, mode: TimeMode) -> DateTime<Utc> {
    match mode {
        TimeMode::Local => Sao_Paulo
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| naive.and_utc() + TimeDelta::hours(3)),
        TimeMode::Utc | TimeMode::TruncateToDate => naive.and_utc(),
    }
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(chrono::NaiveTime::MIN)
}

async fn transaction(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let query = query_pairs(q.as_deref());
    if !authorize(&shared, &headers, Route::Transaction, &query) {
        return unauthorized();
    }
    if let Some(r) = malformed(&shared, Route::Transaction) {
        return r;
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(from), Some(to)) = (
        param("fromDate").and_then(parse_vendor_date),
        param("toDate").and_then(parse_vendor_date),
    ) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "fromDate and toDate are required, formatted as YYYY-MM-DD HH:mm:ss",
        );
    };
    let mode = shared.config.time_mode;
    let to = if mode == TimeMode::TruncateToDate {
        midnight(to.date())
    } else {
        to
    };
    let (from, to) = (to_instant(from, mode), to_instant(to, mode));
    let (engine, now) = shared.engine_now();
    let list = wire::transactions(&engine, now, from, to, mode);
    drop(engine);
    let count = list.len();
    json(
        StatusCode::OK,
        &wire::TransactionsEnvelope {
            error: (),
            list,
            count,
        },
    )
}

async fn not_found() -> Response {
    error_json(StatusCode::NOT_FOUND, "Not Found")
}
