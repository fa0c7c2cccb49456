//! The account and operator routes in-process against a real store: the password change
//! (page and API: old tokens die at once, errors at the field, rate limit, CSRF), the audit
//! log (admins only), and CORS for the configured allow-list on `/api/v1` only.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use common::{
    ORIGIN, PASSWORD, add_site, add_users, cookie_of, get_bearer, get_cookie, json_of, login,
    login_req, send, site_settings, text,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vetric_store::testing::TestDb;
use vetric_store::{Role, test_both_backends};
use vetric_web::auth::LoginLimiter;
use vetric_web::{AppState, router};

const NEW_PASSWORD: &str = "outra senha bem longa 456";
const PAINEL: &str = "https://painel.example.com";

async fn app(db: &TestDb, limiter: LoginLimiter, cors: &[&str]) -> Router {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
        ],
    )
    .await;
    let state = AppState::with_limiter(
        store,
        vec![site_settings(home, "palmeiras", "Jardim Palmeiras")],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
        limiter,
    )
    .with_cors_origins(cors.iter().map(|s| s.to_string()).collect());
    router(state)
}

async fn login_with(app: &Router, email: &str, password: &str) -> StatusCode {
    send(app, login_req(email, password)).await.0
}

fn change_req(cookie: &str, origin: &str, body: Value) -> Request<Body> {
    Request::post("/api/v1/auth/password")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header(header::ORIGIN, origin)
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn api_password_change_ends_every_old_token_at_once(db: &TestDb) {
    let app = app(db, LoginLimiter::default(), &[]).await;
    let (cookie, token) = login(&app, "sindico@example.com").await;
    let (other_cookie, _) = login(&app, "sindico@example.com").await;
    let (s, h, b) = send(
        &app,
        change_req(
            &cookie,
            ORIGIN,
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(!text(&b).contains(NEW_PASSWORD));
    let new_cookie = cookie_of(&h);
    let new_token = json_of(&b)["token"].as_str().unwrap().to_owned();
    assert_ne!(new_cookie, cookie);
    for req in [
        get_cookie("/api/v1/sites", &cookie),
        get_cookie("/api/v1/sites", &other_cookie),
        get_bearer("/api/v1/sites", &token),
    ] {
        assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
    }
    // This browser stays logged in, with the fresh cookie; the new token works too.
    for req in [
        get_cookie("/api/v1/sites", &new_cookie),
        get_bearer("/api/v1/sites", &new_token),
    ] {
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
    }
    assert_eq!(
        login_with(&app, "sindico@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_with(&app, "sindico@example.com", NEW_PASSWORD).await,
        StatusCode::OK
    );
    let audit = db.store.audit_page(10, None).await.unwrap();
    let change = audit
        .iter()
        .find(|r| r.action == "password_change")
        .expect("a password_change row");
    assert_eq!(change.user_email.as_deref(), Some("sindico@example.com"));
    assert!(!change.detail.to_string().contains(NEW_PASSWORD));
}

test_both_backends!(api_password_change_ends_every_old_token_at_once);

#[tokio::test]
async fn bad_password_changes_name_the_field_and_change_nothing() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::new(Duration::from_secs(60), 3, 100), &[]).await;
    let (cookie, _) = login(&app, "sindico@example.com").await;
    for (body, field) in [
        (
            json!({ "current_password": "errada errada", "new_password": NEW_PASSWORD }),
            "current_password",
        ),
        (
            json!({ "current_password": PASSWORD, "new_password": "curta" }),
            "new_password",
        ),
        (
            json!({ "current_password": PASSWORD, "new_password": PASSWORD }),
            "new_password",
        ),
        (json!({ "new_password": NEW_PASSWORD }), "current_password"),
        (
            json!({ "current_password": PASSWORD, "new_password": 5 }),
            "new_password",
        ),
    ] {
        let (s, _, b) = send(&app, change_req(&cookie, ORIGIN, body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", text(&b));
        assert_eq!(json_of(&b)["error"]["field"], field, "{body}");
    }
    // Nothing changed: the session lives and the old password still logs in.
    assert_eq!(
        send(&app, get_cookie("/api/v1/sites", &cookie)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        login_with(&app, "sindico@example.com", PASSWORD).await,
        StatusCode::OK
    );
    // Wrong current passwords count against the login limiter (3 per account here; the
    // successful login above cleared the account's count).
    for _ in 0..3 {
        let (s, _, _) = send(
            &app,
            change_req(
                &cookie,
                ORIGIN,
                json!({ "current_password": "errada de novo", "new_password": NEW_PASSWORD }),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, h, b) = send(
        &app,
        change_req(
            &cookie,
            ORIGIN,
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{}", text(&b));
    assert!(h.contains_key(header::RETRY_AFTER));
    assert_eq!(
        login_with(&app, "sindico@example.com", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let failed = db
        .store
        .audit_page(50, None)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.action == "password_change_failed")
        .count();
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn cross_site_password_changes_are_refused() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[PAINEL]).await;
    let (cookie, _) = login(&app, "sindico@example.com").await;
    let body = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    let (s, _, b) = send(
        &app,
        change_req(&cookie, "https://evil.example", body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&b)["error"]["code"], "cross_site_request");
    let form = Request::post("/account/password")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(format!(
            "current_password={}&new_password={}&new_password_confirm={}",
            PASSWORD.replace(' ', "+"),
            NEW_PASSWORD.replace(' ', "+"),
            NEW_PASSWORD.replace(' ', "+")
        )))
        .unwrap();
    assert_eq!(send(&app, form).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        login_with(&app, "sindico@example.com", PASSWORD).await,
        StatusCode::OK
    );
}

fn form_req(cookie: &str, current: &str, new: &str, confirm: &str) -> Request<Body> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Request::post("/account/password")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(format!(
            "current_password={}&new_password={}&new_password_confirm={}",
            enc(current),
            enc(new),
            enc(confirm)
        )))
        .unwrap()
}

#[tokio::test]
async fn the_password_page_shows_errors_at_the_field_and_keeps_this_browser_in() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[]).await;
    let (cookie, _) = login(&app, "sindico@example.com").await;
    let (s, _, b) = send(&app, get_cookie("/account/password", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let html = text(&b);
    assert!(html.contains(r#"name="current_password""#), "{html}");
    assert!(html.contains(r#"href="/account/password""#));
    // A manager's top bar has no audit link.
    assert!(!html.contains(r#"href="/audit""#));
    let (s, _, b) = send(&app, form_req(&cookie, "errada", "curta", "outra")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let html = text(&b);
    assert!(
        html.contains(r#"id="e-current_password">senha atual incorreta"#),
        "{html}"
    );
    assert!(html.contains(r#"id="e-new_password">a nova senha precisa ter pelo menos 12"#));
    assert!(html.contains(r#"id="e-new_password_confirm""#));
    let (s, h, b) = send(
        &app,
        form_req(&cookie, PASSWORD, NEW_PASSWORD, NEW_PASSWORD),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(text(&b).contains("Senha alterada"));
    let fresh = cookie_of(&h);
    assert_eq!(
        send(&app, get_cookie("/account/password", &cookie)).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        send(&app, get_cookie("/account/password", &fresh)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admins_read_the_audit_log_and_managers_get_404() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[]).await;
    let (admin, admin_token) = login(&app, "admin@example.com").await;
    let (manager, manager_token) = login(&app, "sindico@example.com").await;
    let (s, h, _) = send(
        &app,
        change_req(
            &manager,
            ORIGIN,
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let manager = cookie_of(&h);

    let (s, _, b) = send(&app, get_cookie("/audit", &admin)).await;
    assert_eq!(s, StatusCode::OK);
    let html = text(&b);
    assert!(
        html.contains(r#"href="/audit""#),
        "the admin's top bar links the log"
    );
    assert!(html.contains("password_change"), "{html}");
    assert!(html.contains("login"));
    assert!(html.contains("sindico@example.com"));
    // dd/mm/aaaa HH:MM:SS in America/Sao_Paulo.
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .format("%d/%m/%Y ")
        .to_string();
    assert!(html.contains(&today), "{today} in {html}");
    assert!(
        html.find("password_change") < html.find(">login<"),
        "newest first"
    );

    let (s, _, b) = send(&app, get_bearer("/api/v1/audit?limit=2", &admin_token)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let page = json_of(&b);
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["action"], "password_change");
    assert_eq!(rows[0]["user_email"], "sindico@example.com");
    let next = page["next_before"].as_i64().unwrap();
    let (_, _, b) = send(
        &app,
        get_bearer(&format!("/api/v1/audit?before={next}"), &admin_token),
    )
    .await;
    let older = json_of(&b);
    assert!(
        older["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"].as_i64().unwrap() < next)
    );
    assert!(
        older["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "login")
    );
    let (s, _, b) = send(&app, get_bearer("/api/v1/audit?limit=0", &admin_token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&b)["error"]["field"], "limit");

    // A manager: 404 on the page and on the API, like a page that does not exist.
    assert_eq!(
        send(&app, get_cookie("/audit", &manager)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get_bearer("/api/v1/audit", &manager_token))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the manager's old token died with the password change"
    );
    assert_eq!(
        send(&app, get_cookie("/api/v1/audit", &manager)).await.0,
        StatusCode::NOT_FOUND
    );
}

fn with_origin(method: Method, path: &str, origin: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::ORIGIN, origin)
}

#[tokio::test]
async fn cors_allows_exactly_the_configured_origins_on_the_api() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[PAINEL]).await;
    let (cookie, _) = login(&app, "sindico@example.com").await;
    let get = |origin: &str| {
        with_origin(Method::GET, "/api/v1/sites", origin)
            .header(header::COOKIE, format!("vetric_session={cookie}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, h, _) = send(&app, get(PAINEL)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAINEL);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let (_, h, _) = send(&app, get("https://evil.example")).await;
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

    let preflight = |origin: &str, path: &str| {
        with_origin(Method::OPTIONS, path, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let (s, h, _) = send(&app, preflight(PAINEL, "/api/v1/auth/password")).await;
    assert!(s.is_success(), "{s}");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAINEL);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(
        allowed.to_ascii_lowercase().contains("content-type"),
        "{allowed}"
    );
    let (_, h, _) = send(&app, preflight("https://evil.example", "/api/v1/sites")).await;
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // Only the API: pages never answer with CORS headers.
    let (_, h, _) = send(
        &app,
        with_origin(Method::GET, "/login", PAINEL)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    // The allowed origin may call state-changing API routes with the cookie; others may not.
    let logout = |origin: &str| {
        with_origin(Method::POST, "/api/v1/auth/logout", origin)
            .header(header::COOKIE, format!("vetric_session={cookie}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&app, logout("https://evil.example")).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, h, _) = send(&app, logout(PAINEL)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAINEL);
}

#[tokio::test]
async fn no_cors_origins_means_no_cors_headers() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[]).await;
    let (cookie, _) = login(&app, "sindico@example.com").await;
    let (s, h, _) = send(
        &app,
        with_origin(Method::GET, "/api/v1/sites", PAINEL)
            .header(header::COOKIE, format!("vetric_session={cookie}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !h.keys().any(|k| k.as_str().starts_with("access-control-")),
        "{h:?}"
    );
    let (_, h, _) = send(
        &app,
        with_origin(Method::OPTIONS, "/api/v1/sites", PAINEL)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!h.keys().any(|k| k.as_str().starts_with("access-control-")));
}

#[tokio::test]
async fn openapi_lists_the_account_and_audit_routes() {
    let db = TestDb::sqlite().await;
    let app = app(&db, LoginLimiter::default(), &[]).await;
    let (s, _, b) = send(
        &app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let doc = json_of(&b);
    assert!(doc["paths"]["/api/v1/auth/password"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/audit"]["get"].is_object());
}
