//! The JSON API under `/api/v1` (DESIGN.md "HTTP"). Lists answer
//! `{"data": [...], "freshness": {"state", "as_of"}}`; errors `{"error": {"code", "message",
//! "field"?}}`. A site the caller may not see is a 404, exactly like one that does not exist.

use crate::auth::{self, AuthUser, LoginFailure, cookie_token};
use crate::error::ApiError;
use crate::input::{Fields, JsonObject};
use crate::security::is_tls;
use crate::view::{self, FreshnessView};
use crate::{AppState, SiteSettings};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use vetric_store::SessionView;

/// `POST /api/v1/auth/login` `{"email", "password"}` → the session cookie and `{"token"}`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: crate::ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let email = body.required_str("email", 254)?;
    let password = body.required_str("password", 1024)?;
    if email.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            "o campo email é obrigatório",
        )
        .field("email"));
    }
    let previous = cookie_token(&headers);
    let grant = auth::login(&state, &email, &password, &peer.0, previous.as_deref())
        .await
        .map_err(|f: LoginFailure| ApiError::from(f))?;
    let mut res = Json(json!({
        "token": grant.api_token,
        "user": { "email": grant.user.email, "role": grant.user.role.as_str() },
    }))
    .into_response();
    let cookie = auth::session_cookie(&grant.session_token, is_tls(&state, &headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /api/v1/auth/logout`: revokes the token presented (cookie or bearer) at once.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: crate::ClientAddr,
    user: AuthUser,
) -> Result<Response, ApiError> {
    auth::logout(&state, &user, &peer.0).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_session_cookie(is_tls(&state, &headers))) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[derive(Serialize)]
struct SiteItem {
    slug: String,
    name: String,
    timezone: String,
    freshness: FreshnessView,
}

/// `GET /api/v1/sites`: the sites the caller may see, each with its freshness.
pub async fn sites(State(state): State<AppState>, user: AuthUser) -> Result<Response, ApiError> {
    let now = Utc::now();
    let mut data = Vec::new();
    for s in state.visible_sites(&user) {
        let link = state.store().vendor_link(s.id).await?;
        data.push(SiteItem {
            slug: s.slug.clone(),
            name: s.name.clone(),
            timezone: s.timezone.name().to_owned(),
            freshness: view::site_freshness(s, link.as_ref(), now).1,
        });
    }
    Ok(Json(json!({ "data": data })).into_response())
}

pub(crate) fn site<'a>(
    state: &'a AppState,
    user: &AuthUser,
    slug: &str,
) -> Result<&'a SiteSettings, ApiError> {
    state.site_for(user, slug).ok_or_else(ApiError::not_found)
}

#[derive(Serialize)]
struct ChargerItem {
    charger: String,
    charger_uuid: String,
    charge_box_id: String,
    connector_id: u32,
    /// The OCPP status as the vendor spells it.
    status: String,
    label: &'static str,
    since: DateTime<Utc>,
    offline: bool,
    unidentified_charging: bool,
    idle: bool,
    last_heartbeat: Option<DateTime<Utc>>,
    session: Option<OpenSessionItem>,
}

#[derive(Serialize)]
struct OpenSessionItem {
    id: i64,
    resident: Option<String>,
    apartment: Option<String>,
    tag: Option<String>,
    start: DateTime<Utc>,
    energy_wh: Option<i64>,
    idle_seconds: i64,
}

/// `GET /api/v1/sites/{slug}/chargers`: every connector as last known, with its open session,
/// and how old the data is. During a vendor outage this is the last good list, `stale`.
pub async fn chargers(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let site = site(&state, &user, &slug)?;
    let snap = view::snapshot(state.store(), site, Utc::now()).await?;
    let data: Vec<ChargerItem> = snap
        .cards
        .into_iter()
        .map(|c| ChargerItem {
            charger: c.connector.charger_name,
            charger_uuid: c.connector.charger_uuid,
            charge_box_id: c.connector.charge_box_id,
            connector_id: c.connector.connector_id,
            status: c.connector.status.as_vendor_str().to_owned(),
            label: c.label,
            since: c.connector.status_since,
            offline: c.offline,
            unidentified_charging: c.connector.unidentified_charging,
            idle: c.idle,
            last_heartbeat: c.connector.last_heartbeat,
            session: c.session.map(|s| OpenSessionItem {
                id: s.vendor_id,
                resident: s.resident_name,
                apartment: s.apartment_label,
                tag: s.tag.map(|t| t.as_str().to_owned()),
                start: s.start,
                energy_wh: s.energy_wh,
                idle_seconds: s.idle_seconds,
            }),
        })
        .collect();
    Ok(Json(json!({ "data": data, "freshness": snap.freshness })).into_response())
}

#[derive(Serialize)]
struct SessionItem {
    id: i64,
    charger: String,
    charger_uuid: String,
    connector_id: u32,
    resident: Option<String>,
    apartment: Option<String>,
    tag: Option<String>,
    start: DateTime<Utc>,
    stop: Option<DateTime<Utc>>,
    energy_wh: Option<i64>,
    idle_seconds: i64,
    status: &'static str,
    end_kind: Option<&'static str>,
    stop_reason: Option<String>,
}

impl From<SessionView> for SessionItem {
    fn from(s: SessionView) -> Self {
        Self {
            id: s.vendor_id,
            charger: s.charger_name.unwrap_or_else(|| s.charger_uuid.clone()),
            charger_uuid: s.charger_uuid,
            connector_id: s.connector_id,
            resident: s.resident_name,
            apartment: s.apartment_label,
            tag: s.tag.map(|t| t.as_str().to_owned()),
            start: s.start,
            stop: s.stop,
            energy_wh: s.energy_wh,
            idle_seconds: s.idle_seconds,
            status: s.status.as_str(),
            end_kind: s.end_kind.map(|k| k.as_str()),
            stop_reason: s.stop_reason,
        }
    }
}

/// Largest `limit` of the sessions list.
pub const MAX_SESSIONS_LIMIT: i64 = crate::sessions::MAX_SESSIONS_LIMIT;

/// `GET /api/v1/sites/{slug}/sessions?from&to&limit&charger&resident&apartment`: sessions
/// that started in `[from, to)`, newest first (`limit` 1–1000, default 100); filters as in
/// [`crate::sessions::parse_session_query`].
pub async fn sessions(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = site(&state, &user, &slug)?;
    let filter = crate::sessions::parse_session_query(site, raw.as_deref(), false)?.filter;
    let rows = state.store().sessions(site.id, &filter).await?;
    let link = state.store().vendor_link(site.id).await?;
    let freshness = view::site_freshness(site, link.as_ref(), Utc::now()).1;
    let data: Vec<SessionItem> = rows.into_iter().map(SessionItem::from).collect();
    Ok(Json(json!({ "data": data, "freshness": freshness })).into_response())
}

/// Anything else under `/api/`.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Turns the errors axum answers by itself (a path segment that is not UTF-8: plain text; a
/// method the route does not take: an empty 405) into the API's `{"error": …}`, so a program
/// gets JSON on every 4xx/5xx (RELIABILITY.md R7). Other headers (`Allow`) are kept.
pub async fn json_errors(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // axum's rejection texts are one short line, e.g. "Invalid URL: Invalid UTF-8 in `tag`".
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut err = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "método não aceito nesta rota (veja /api/v1/openapi.json)",
        ),
        s if s.is_server_error() => ApiError::new(
            status,
            "internal",
            "erro interno; tente novamente em instantes",
        ),
        _ => ApiError::new(
            status,
            "invalid_request",
            "pedido inválido: confira o endereço (caracteres do caminho) e o corpo",
        ),
    };
    err.field = text
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && f.len() <= 64)
        .map(str::to_owned);
    let (json_parts, json_body) = err.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = json_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    Response::from_parts(parts, json_body)
}

/// `GET /api/v1/openapi.json`: the routes above, hand-written (kept next to the handlers; a
/// test checks every API route is listed).
pub async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

pub fn openapi_document() -> serde_json::Value {
    let mut doc = base_openapi_document();
    crate::openapi_more::extend(&mut doc);
    crate::residents_import::extend_openapi(&mut doc);
    crate::account::extend_openapi(&mut doc);
    crate::audit::extend_openapi(&mut doc);
    crate::settings::extend_openapi(&mut doc);
    crate::notifications::extend_openapi(&mut doc);
    crate::users::extend_openapi(&mut doc);
    crate::statement_import::extend_openapi(&mut doc);
    crate::report_library::extend_openapi(&mut doc);
    crate::statements::extend_openapi(&mut doc);
    doc
}

fn base_openapi_document() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": error } } });
    let ok = |d: &str, schema: serde_json::Value| json!({ "description": d, "content": { "application/json": { "schema": schema } } });
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vetric API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "EV chargers of condominiums: sites, chargers, sessions. Lists carry \
                `freshness` (fresh/stale/offline, as_of): during a vendor outage they return the \
                last good data marked stale."
        },
        "paths": {
            "/api/v1/auth/login": { "post": {
                "summary": "Log in: sets the session cookie and returns a bearer token",
                "security": [],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["email", "password"],
                    "properties": { "email": { "type": "string", "maxLength": 254 },
                                    "password": { "type": "string", "maxLength": 1024 } } } } } },
                "responses": {
                    "200": ok("Logged in", json!({ "type": "object", "required": ["token"],
                        "properties": { "token": { "type": "string" },
                            "user": { "type": "object", "properties": {
                                "email": { "type": "string" },
                                "role": { "type": "string", "enum": ["admin", "manager"] } } } } })),
                    "400": err("Malformed JSON or invalid UTF-8"),
                    "401": err("Wrong e-mail or password (one generic answer)"),
                    "413": err("Body over 64 KiB"),
                    "415": err("Not JSON"),
                    "422": err("A field is missing or has the wrong type (`field` names it)"),
                    "429": err("Too many failed attempts; see Retry-After")
                } } },
            "/api/v1/auth/logout": { "post": {
                "summary": "Revoke the token presented (cookie or bearer), at once",
                "security": auth,
                "responses": { "204": { "description": "Logged out" }, "401": err("Not logged in") } } },
            "/api/v1/sites": { "get": {
                "summary": "Sites the caller may see",
                "security": auth,
                "responses": { "200": ok("Sites", json!({ "type": "object", "properties": {
                    "data": { "type": "array", "items": { "type": "object", "properties": {
                        "slug": { "type": "string" }, "name": { "type": "string" },
                        "timezone": { "type": "string" },
                        "freshness": { "$ref": "#/components/schemas/Freshness" } } } } } })),
                    "401": err("Not logged in") } } },
            "/api/v1/sites/{slug}/chargers": { "get": {
                "summary": "Every connector as last known, with its open session",
                "security": auth,
                "parameters": [slug],
                "responses": { "200": ok("Connectors", json!({ "type": "object", "properties": {
                    "data": { "type": "array", "items": { "$ref": "#/components/schemas/Connector" } },
                    "freshness": { "$ref": "#/components/schemas/Freshness" } } })),
                    "401": err("Not logged in"), "404": err("No such site, or not yours") } } },
            "/api/v1/sites/{slug}/sessions": { "get": {
                "summary": "Sessions that started in [from, to), newest first",
                "security": auth,
                "parameters": [slug,
                    { "name": "from", "in": "query", "schema": { "type": "string" },
                      "description": "RFC 3339 instant or YYYY-MM-DD (site's zone)" },
                    { "name": "to", "in": "query", "schema": { "type": "string" },
                      "description": "RFC 3339 instant or YYYY-MM-DD (site's zone), exclusive" },
                    { "name": "limit", "in": "query",
                      "schema": { "type": "integer", "minimum": 1, "maximum": MAX_SESSIONS_LIMIT, "default": 100 } }],
                "responses": { "200": ok("Sessions", json!({ "type": "object", "properties": {
                    "data": { "type": "array", "items": { "type": "object" } },
                    "freshness": { "$ref": "#/components/schemas/Freshness" } } })),
                    "400": err("A bad query parameter (`field` names it)"),
                    "401": err("Not logged in"), "404": err("No such site, or not yours") } } },
            "/api/v1/openapi.json": { "get": {
                "summary": "This document", "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "cookie": { "type": "apiKey", "in": "cookie", "name": auth::SESSION_COOKIE }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" },
                        "field": { "type": "string" } } } } },
                "Freshness": { "type": "object", "required": ["state", "as_of"], "properties": {
                    "state": { "type": "string", "enum": ["fresh", "stale", "offline"] },
                    "as_of": { "type": ["string", "null"], "format": "date-time" } } },
                "Connector": { "type": "object", "properties": {
                    "charger": { "type": "string" }, "charger_uuid": { "type": "string" },
                    "charge_box_id": { "type": "string" }, "connector_id": { "type": "integer" },
                    "status": { "type": "string", "description": "OCPP status as the vendor spells it" },
                    "label": { "type": "string", "description": "pt-BR label (DESIGN.md table)" },
                    "since": { "type": "string", "format": "date-time" },
                    "offline": { "type": "boolean" }, "unidentified_charging": { "type": "boolean" },
                    "idle": { "type": "boolean" },
                    "last_heartbeat": { "type": ["string", "null"], "format": "date-time" },
                    "session": { "type": ["object", "null"] } } }
            }
        }
    })
}
