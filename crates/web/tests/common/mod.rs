//! Fixture code shared by the web crate's integration tests (`web`, `pages`, `health`,
//! `account`): a good polling cycle, sites and users in a [`TestDb`], site settings, and
//! in-process requests, logins and response decoding. Each test binary uses a subset.

#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;
use vetric_domain::ConnectorStatus;
use vetric_store::{
    AuditEntry, BreakerState, ChargerWrite, ConnectorWrite, CycleWrite, NewUser, Role, SiteId,
    Store, VendorLinkRow,
};
use vetric_web::SiteSettings;
use vetric_web::auth::hash_password;

pub const PASSWORD: &str = "uma senha comprida 123";
pub const ORIGIN: &str = "http://vetric.test";

/// A healthy vendor link: last success and last update at `at`, breaker closed, one charger.
pub fn link(at: DateTime<Utc>) -> VendorLinkRow {
    VendorLinkRow {
        last_success: Some(at),
        last_error_kind: None,
        last_error_message: None,
        last_error_at: None,
        consecutive_failures: 0,
        breaker: BreakerState::Closed,
        charger_count_last_good: Some(1),
        updated_at: at,
    }
}

/// A good cycle observed at `at`: one online charger (`c1`, "Garagem 1") whose connector 1 is
/// in `status`; no sessions, events or unknown tags.
pub fn cycle(at: DateTime<Utc>, status: ConnectorStatus) -> CycleWrite {
    CycleWrite {
        observed_at: at,
        listed_chargers: None,
        chargers: vec![ChargerWrite {
            uuid: "c1".into(),
            charge_box_id: "BOX-1".into(),
            name: "Garagem 1".into(),
            vendor: "Intelbras".into(),
            model: "CVE".into(),
            firmware: "1".into(),
            last_heartbeat: Some(at),
            online: true,
            connectors: vec![ConnectorWrite {
                connector_id: 1,
                status,
                status_since: at,
                error_code: "NoError".into(),
                power_max_w: Some(7400),
                unidentified_charging: false,
            }],
        }],
        sessions: vec![],
        events: vec![],
        unknown_tags: vec![],
        tracker_state: None,
        vendor_link: link(at),
        notifications: Vec::new(),
        cancellations: Vec::new(),
    }
}

/// Creates (or finds) the site `slug` in São Paulo time.
pub async fn add_site(store: &Store, slug: &str, name: &str) -> SiteId {
    store
        .upsert_site(slug, name, "America/Sao_Paulo")
        .await
        .unwrap()
}

/// Creates each `(email, role, sites)` user with [`PASSWORD`], audited as `user_add`.
pub async fn add_users(store: &Store, users: Vec<(&str, Role, Vec<SiteId>)>) {
    let hash = hash_password(PASSWORD).unwrap();
    for (email, role, sites) in users {
        store
            .create_user(
                &NewUser {
                    email: email.into(),
                    password_hash: hash.clone(),
                    role,
                    sites,
                },
                &AuditEntry::new(Utc::now(), None, "user_add", email),
            )
            .await
            .unwrap();
    }
}

/// Settings of a site in São Paulo time, polled every 10 s, offline after 10 min.
pub fn site_settings(id: SiteId, slug: &str, name: &str) -> SiteSettings {
    SiteSettings {
        id,
        slug: slug.into(),
        name: name.into(),
        timezone: chrono_tz::America::Sao_Paulo,
        poll_interval: Duration::from_secs(10),
        offline_after: Duration::from_secs(600),
    }
}

/// Runs `req` through the app; the body is read up to `limit` bytes.
pub async fn send_limited(
    app: &Router,
    req: Request<Body>,
    limit: usize,
) -> (StatusCode, HeaderMap, Bytes) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.unwrap();
    (parts.status, parts.headers, bytes)
}

/// Runs `req` through the app; the body is read up to 4 MiB.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    send_limited(app, req, 1 << 22).await
}

pub fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn json_of(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", text(b)))
}

/// The value of the `vetric_session` cookie the response sets.
pub fn cookie_of(h: &HeaderMap) -> String {
    h[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("vetric_session=")
        .unwrap()
        .to_owned()
}

pub fn login_req(email: &str, password: &str) -> Request<Body> {
    Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "email": email, "password": password }).to_string(),
        ))
        .unwrap()
}

/// Logs in with [`PASSWORD`], which must succeed; returns (cookie value, bearer token).
pub async fn login(app: &Router, email: &str) -> (String, String) {
    let (status, headers, body) = send(app, login_req(email, PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    (
        cookie_of(&headers),
        json_of(&body)["token"].as_str().unwrap().to_owned(),
    )
}

pub fn get_cookie(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .body(Body::empty())
        .unwrap()
}

pub fn get_bearer(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}
