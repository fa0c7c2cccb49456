//! The web app in-process (`tower::ServiceExt::oneshot`) against a real store: login, logout,
//! rate limit, roles, security headers, CSRF, bad input, freshness and the live stream.
//! Handler tests run on SQLite; the login flow also runs on PostgreSQL.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::{
    ORIGIN, PASSWORD, add_site, add_users, cycle, get_bearer, get_cookie, json_of, login,
    login_req, send, site_settings,
};
use futures_util::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use vetric_domain::ConnectorStatus;
use vetric_store::testing::TestDb;
use vetric_store::{Role, SiteId, test_both_backends};
use vetric_web::auth::LoginLimiter;
use vetric_web::{AppState, router};

struct Fixture {
    app: Router,
    state: AppState,
    home: SiteId,
    shutdown: CancellationToken,
}

async fn fixture(db: &TestDb, limiter: LoginLimiter, public_url: &str) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    store
        .write_cycle(home, &cycle(Utc::now(), ConnectorStatus::Available))
        .await
        .unwrap();
    store
        .write_cycle(other, &cycle(Utc::now(), ConnectorStatus::Charging))
        .await
        .unwrap();
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
        ],
    )
    .await;
    let shutdown = CancellationToken::new();
    let state = AppState::with_limiter(
        store,
        vec![
            site_settings(home, "palmeiras", "Jardim Palmeiras"),
            site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(public_url.parse().unwrap()),
        shutdown.clone(),
        limiter,
    );
    Fixture {
        app: router(state.clone()),
        state,
        home,
        shutdown,
    }
}

fn assert_security_headers(h: &HeaderMap, tls: bool) {
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(h.contains_key(header::REFERRER_POLICY));
    assert_eq!(h.contains_key(header::STRICT_TRANSPORT_SECURITY), tls);
}

async fn login_sets_cookie_and_token_and_logout_kills_it(db: &TestDb) {
    let f = fixture(db, LoginLimiter::default(), ORIGIN).await;
    let (status, headers, body) = send(&f.app, login_req("SINDICO@example.com", PASSWORD)).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["vetric_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let token = json_of(&body)["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);

    // Rotation: a second login gives a different session.
    let (cookie1, _) = login(&f.app, "sindico@example.com").await;
    let (cookie2, token2) = login(&f.app, "sindico@example.com").await;
    assert_ne!(cookie1, cookie2);

    // Both work.
    let (s, _, body) = send(&f.app, get_bearer("/api/v1/sites", &token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&body)["data"].as_array().unwrap().len(), 1);
    let (s, _, _) = send(&f.app, get_cookie("/api/v1/sites", &cookie2)).await;
    assert_eq!(s, StatusCode::OK);

    // Bearer logout: that token is dead at once, the others live.
    let req = Request::post("/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::NO_CONTENT);
    let (s, h, body) = send(&f.app, get_bearer("/api/v1/sites", &token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body)["error"]["code"], "unauthorized");
    assert_security_headers(&h, false);
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &token2)).await.0,
        StatusCode::OK
    );

    // Cookie logout from our own page: the session is dead at once.
    let req = Request::post("/api/v1/auth/logout")
        .header(header::COOKIE, format!("vetric_session={cookie2}"))
        .header(header::ORIGIN, ORIGIN)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&f.app, get_cookie("/api/v1/sites", &cookie2)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Pages send a dead session to the login form.
    let (s, h, _) = send(&f.app, get_cookie("/sites/palmeiras", &cookie2)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/login");

    let actions: Vec<String> = f
        .state
        .store()
        .audit_log(50)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "login").count(), 3);
    assert_eq!(actions.iter().filter(|a| *a == "logout").count(), 2);
}

test_both_backends!(login_sets_cookie_and_token_and_logout_kills_it);

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_generic_401() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (s1, h1, b1) = send(&f.app, login_req("sindico@example.com", "errada")).await;
    let (s2, _, b2) = send(&f.app, login_req("ninguem@example.com", "errada")).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(b1, b2);
    assert_eq!(
        json_of(&b1)["error"]["message"],
        "e-mail ou senha inválidos"
    );
    assert!(!h1.contains_key(header::SET_COOKIE));
    assert_security_headers(&h1, false);
    let audit = f.state.store().audit_log(10).await.unwrap();
    assert_eq!(audit[0].action, "login_failed");
    assert!(!audit[0].detail.to_string().contains("errada"));
}

#[tokio::test]
async fn failed_logins_are_rate_limited_with_retry_after() {
    let db = TestDb::sqlite().await;
    let f = fixture(
        &db,
        LoginLimiter::new(Duration::from_secs(900), 3, 100),
        ORIGIN,
    )
    .await;
    for _ in 0..3 {
        let (s, _, _) = send(&f.app, login_req("sindico@example.com", "errada")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while the account is locked out.
    let (s, h, b) = send(&f.app, login_req("Sindico@Example.com", PASSWORD)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(json_of(&b)["error"]["code"], "too_many_attempts");
    assert_security_headers(&h, false);
    // Another account is not affected.
    login(&f.app, "admin@example.com").await;

    // Per address: spraying many accounts from one address is stopped too.
    let db = TestDb::sqlite().await;
    let f = fixture(
        &db,
        LoginLimiter::new(Duration::from_secs(900), 100, 4),
        ORIGIN,
    )
    .await;
    for i in 0..4 {
        let (s, _, _) = send(&f.app, login_req(&format!("x{i}@example.com"), "errada")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, _) = send(&f.app, login_req("admin@example.com", PASSWORD)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn a_manager_never_sees_another_site() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    for path in [
        "/api/v1/sites/outro/chargers",
        "/api/v1/sites/outro/sessions",
        "/api/v1/sites/nao-existe/chargers",
    ] {
        let (s, h, b) = send(&f.app, get_bearer(path, &token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json_of(&b)["error"]["code"], "not_found");
        assert_security_headers(&h, false);
    }
    for path in ["/sites/outro", "/sites/outro/cards", "/sites/outro/events"] {
        let (s, _, b) = send(&f.app, get_cookie(path, &cookie)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(!String::from_utf8_lossy(&b).contains("Outro Condomínio"));
    }
    // Their own site works; the list shows only it, and `/` goes straight there.
    let (s, _, b) = send(&f.app, get_bearer("/api/v1/sites", &token)).await;
    assert_eq!(s, StatusCode::OK);
    let list = json_of(&b);
    let slugs: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["palmeiras"]);
    let (s, h, _) = send(&f.app, get_cookie("/", &cookie)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/sites/palmeiras");
    let (s, h, b) = send(&f.app, get_cookie("/sites/palmeiras", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert_security_headers(&h, false);
    let html = String::from_utf8_lossy(&b);
    assert!(
        html.contains("Garagem 1") && html.contains("Disponível"),
        "{html}"
    );
    assert!(html.contains("Conectando"));
    assert!(!html.contains("<script>"), "no inline scripts");
    // The admin sees both.
    let (_, admin) = login(&f.app, "admin@example.com").await;
    let (_, _, b) = send(&f.app, get_bearer("/api/v1/sites", &admin)).await;
    assert_eq!(json_of(&b)["data"].as_array().unwrap().len(), 2);
    let (s, _, b) = send(&f.app, get_bearer("/api/v1/sites/outro/chargers", &admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["data"][0]["status"], "Charging");
}

#[tokio::test]
async fn security_headers_on_every_kind_of_response() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let (s, h, _) = send(&f.app, get("/health/live")).await;
    assert_eq!(s, StatusCode::OK);
    assert_security_headers(&h, false);
    let (s, h, _) = send(&f.app, get("/nada/aqui")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_security_headers(&h, false);
    let (s, h, b) = send(&f.app, get("/api/v1/nada")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&b)["error"]["code"], "not_found");
    assert_security_headers(&h, false);
    let (s, h, _) = send(&f.app, get("/api/v1/sites")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_security_headers(&h, false);
    let (s, h, _) = send(&f.app, get("/static/vendor/htmx-2.0.11.min.js")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_security_headers(&h, false);
    let (s, _, _) = send(&f.app, get("/static/../Cargo.toml")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, h, _) = send(&f.app, get("/login")).await;
    assert_eq!(s, StatusCode::OK);
    assert_security_headers(&h, false);

    // Over TLS: HSTS and Secure cookies.
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), "https://vetric.example").await;
    let (s, h, _) = send(&f.app, login_req("admin@example.com", PASSWORD)).await;
    assert_eq!(s, StatusCode::OK);
    assert_security_headers(&h, true);
    assert!(h[header::SET_COOKIE].to_str().unwrap().contains("Secure"));
    let (_, h, _) = send(&f.app, get("/nada")).await;
    assert_security_headers(&h, true);
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let post = |extra: &[(&str, &str)]| {
        let mut b = Request::post("/api/v1/auth/logout")
            .header(header::COOKIE, format!("vetric_session={cookie}"));
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    };
    for extra in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("referer", "https://evil.example/page")],
        vec![],
    ] {
        let (s, h, b) = send(&f.app, post(&extra)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{extra:?}");
        assert_eq!(json_of(&b)["error"]["code"], "cross_site_request");
        assert_security_headers(&h, false);
    }
    // Still logged in: none of those reached the handler.
    assert_eq!(
        send(&f.app, get_cookie("/api/v1/sites", &cookie)).await.0,
        StatusCode::OK
    );
    // The login form from another site is refused too (login CSRF).
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(Body::from("email=admin%40example.com&password=x"))
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::FORBIDDEN);
    // Our own origin, by Host or by Sec-Fetch-Site, passes; a bearer call needs no origin.
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", "http://127.0.0.1:8080")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::from(format!(
            "email=admin%40example.com&password={}",
            PASSWORD.replace(' ', "+")
        )))
        .unwrap();
    let (s, h, _) = send(&f.app, req).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        h[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("vetric_session=")
    );
    let req = Request::post("/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, req).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&f.app, post(&[("sec-fetch-site", "same-origin")]))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_field() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let post = |body: Vec<u8>| {
        Request::post("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (s, h, b) = send(&f.app, post(vec![b' '; 100 * 1024])).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_of(&b)["error"]["code"], "body_too_large");
    assert_security_headers(&h, false);

    let (s, _, b) = send(&f.app, post(br#"{"email":"a@b.c"}"#.to_vec())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "password");
    let (s, _, b) = send(&f.app, post(br#"{"email":1,"password":"x"}"#.to_vec())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "email");
    let mut bad = br#"{"email":"a@b.c","password":"ab"#.to_vec();
    bad.extend_from_slice(&[0xc3, 0x28]);
    bad.extend_from_slice(b"\"}");
    let (s, _, b) = send(&f.app, post(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&b)["error"]["field"], "password");
    let (s, _, b) = send(&f.app, post(b"{not json".to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&b)["error"]["code"], "invalid_json");
    let req = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(
        send(&f.app, req).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let (_, token) = login(&f.app, "sindico@example.com").await;
    for (query, field) in [
        ("from=ontem", "from"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limt=5", "limt"),
        ("from=2026-03-02&to=2026-03-01", "to"),
    ] {
        let path = format!("/api/v1/sites/palmeiras/sessions?{query}");
        let (s, _, b) = send(&f.app, get_bearer(&path, &token)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(json_of(&b)["error"]["field"], field, "{query}");
    }
    let path = "/api/v1/sites/palmeiras/sessions?from=2026-01-01&to=2026-12-31T00:00:00Z&limit=5";
    let (s, _, b) = send(&f.app, get_bearer(path, &token)).await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b);
    assert!(v["data"].is_array() && v["freshness"]["state"].is_string());
}

#[tokio::test]
async fn chargers_stay_listed_and_say_stale_when_the_vendor_is_old() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (_, token) = login(&f.app, "sindico@example.com").await;
    let (_, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/chargers", &token),
    )
    .await;
    let fresh = json_of(&b);
    assert_eq!(fresh["freshness"]["state"], "fresh");
    assert_eq!(fresh["data"].as_array().unwrap().len(), 1);

    // The vendor has failed for a minute (6 polls): only the link row moved.
    let last_good = Utc::now() - TimeDelta::seconds(60);
    let mut write = cycle(last_good, ConnectorStatus::Available);
    write.chargers.clear();
    let mut link = write.vendor_link.clone();
    link.consecutive_failures = 6;
    link.last_error_kind = Some("http_502".into());
    link.updated_at = Utc::now();
    f.state
        .store()
        .write_link_only(f.home, &link, &[], &[])
        .await
        .unwrap();
    let (s, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/chargers", &token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let stale = json_of(&b);
    assert_eq!(stale["freshness"]["state"], "stale");
    assert_eq!(stale["data"], fresh["data"], "the exact last-good list");
    let as_of: DateTime<Utc> = serde_json::from_value(stale["freshness"]["as_of"].clone()).unwrap();
    assert_eq!(as_of.timestamp(), last_good.timestamp());
    // The page keeps the cards and says since when the data is old.
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (_, _, b) = send(&f.app, get_cookie("/sites/palmeiras", &cookie)).await;
    let html = String::from_utf8_lossy(&b);
    assert!(
        html.contains("dados do fornecedor desatualizados desde"),
        "{html}"
    );
    assert!(html.contains("Garagem 1"));
}

async fn read_until(
    stream: &mut axum::body::BodyDataStream,
    seen: &mut String,
    needle: &str,
    bound: Duration,
) {
    let found = tokio::time::timeout(bound, async {
        while !seen.contains(needle) {
            let chunk = stream.next().await.expect("stream open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle:?} in the stream: {seen}");
}

#[tokio::test]
async fn the_event_stream_pushes_a_store_change_and_ends_on_shutdown() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let res = f
        .app
        .clone()
        .oneshot(get_cookie("/sites/palmeiras/events", &cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_security_headers(res.headers(), false);
    let mut stream = res.into_body().into_data_stream();
    let mut seen = String::new();
    // Generous bounds: they only stop a broken stream from hanging the test run.
    let bound = Duration::from_secs(60);
    read_until(&mut stream, &mut seen, "Disponível", bound).await;
    assert!(seen.starts_with("event: cards"), "{seen}");
    seen.clear();
    f.state
        .store()
        .write_cycle(f.home, &cycle(Utc::now(), ConnectorStatus::SuspendedEV))
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, "Ocioso", bound).await;
    assert!(seen.contains("event: cards"));
    assert!(seen.contains("is-idle"), "idle is highlighted: {seen}");
    assert_eq!(f.state.live().watched_sites(), 1);

    f.shutdown.cancel();
    let end = tokio::time::timeout(bound, async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends when the server shuts down");
}

#[tokio::test]
async fn html_login_form_logs_in_and_out() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let form = |body: String| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(body))
            .unwrap()
    };
    let (s, _, b) = send(
        &f.app,
        form("email=sindico%40example.com&password=x".into()),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&b).contains("E-mail ou senha inválidos."));
    let (s, h, _) = send(
        &f.app,
        form(format!(
            "email=sindico%40example.com&password={}",
            PASSWORD.replace(' ', "+")
        )),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = h[header::SET_COOKIE].to_str().unwrap();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("vetric_session=")
        .unwrap();
    let req = Request::post("/logout")
        .header(header::COOKIE, format!("vetric_session={value}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::empty())
        .unwrap();
    let (s, h, _) = send(&f.app, req).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        h[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        send(&f.app, get_cookie("/api/v1/sites", value)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn openapi_lists_every_api_route() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db, LoginLimiter::default(), ORIGIN).await;
    let (s, _, b) = send(
        &f.app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let doc = json_of(&b);
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/password",
        "/api/v1/audit",
        "/api/v1/sites",
        "/api/v1/sites/{slug}/chargers",
        "/api/v1/sites/{slug}/sessions",
        "/api/v1/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}
