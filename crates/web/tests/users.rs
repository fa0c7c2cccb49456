//! People management in-process against a real store (both backends): invitations (accept,
//! single use, expiry, re-invite, the same 404 for every dead link), the role rules of the
//! users page and API (a manager never sees or acts outside their sites, never invites an
//! admin), deactivation ending sessions and bearer tokens at once, the last-admin and
//! self-deactivation guards, personal API tokens, CSRF and the audit rows.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeDelta, Utc};
use common::{
    ORIGIN, PASSWORD, add_site, add_users, cookie_of, get_bearer, get_cookie, json_of, login,
    login_req, send, site_settings, text,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vetric_store::testing::TestDb;
use vetric_store::{ActiveChange, AuditEntry, NewInvite, Role, SiteId, UserId, test_both_backends};
use vetric_web::auth::{LoginLimiter, new_token, token_hash};
use vetric_web::users::INVALID_INVITE;
use vetric_web::{AppState, router};

const FIRST_PASSWORD: &str = "minha primeira senha 789";

struct Fixture {
    app: Router,
    home: SiteId,
    other: SiteId,
}

/// Sites `palmeiras` (managers síndico and zelador) and `outra` (its own manager, and one
/// manager of both); one admin.
async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outra", "Residencial Outra").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
            ("zelador@example.com", Role::Manager, vec![home]),
            ("vizinho@example.com", Role::Manager, vec![other]),
            ("ambos@example.com", Role::Manager, vec![home, other]),
        ],
    )
    .await;
    let state = AppState::with_limiter(
        store,
        vec![
            site_settings(home, "palmeiras", "Jardim Palmeiras"),
            site_settings(other, "outra", "Residencial Outra"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
        LoginLimiter::default(),
    );
    Fixture {
        app: router(state),
        home,
        other,
    }
}

fn api(method: &str, path: &str, token: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

fn form(path: &str, cookie: Option<&str>, origin: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut b = Request::post(path)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("vetric_session={c}"));
    }
    b.body(Body::from(body)).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// The path `/invite/{token}` of an invite link.
fn invite_path(url: &str) -> String {
    let path = url.strip_prefix(ORIGIN).unwrap_or_else(|| panic!("{url}"));
    assert!(
        path.starts_with("/invite/") && path.len() == "/invite/".len() + 64,
        "{url}"
    );
    path.to_owned()
}

async fn user_id(app: &Router, admin_token: &str, email: &str) -> i64 {
    let (s, _, b) = send(app, get_bearer("/api/v1/users", admin_token)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    json_of(&b)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("{email} not listed"))["id"]
        .as_i64()
        .unwrap()
}

async fn emails(app: &Router, token: &str) -> Vec<String> {
    let (s, _, b) = send(app, get_bearer("/api/v1/users", token)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    json_of(&b)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn actions(db: &TestDb) -> Vec<String> {
    db.store
        .audit_page(500, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

async fn user_count(db: &TestDb) -> usize {
    db.store.users().await.unwrap().len()
}

async fn invite_accept_then_login_and_the_link_is_single_use(db: &TestDb) {
    let f = fixture(db).await;
    let (_, admin) = login(&f.app, "admin@example.com").await;
    let (s, h, b) = send(
        &f.app,
        api(
            "POST",
            "/api/v1/users/invite",
            &admin,
            Some(json!({ "email": "Nova@Example.com", "role": "manager", "sites": ["palmeiras"] })),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let path = invite_path(json_of(&b)["invite_url"].as_str().unwrap());
    // Listed as pending; the invited user cannot log in with anything yet.
    let (_, _, b) = send(&f.app, get_bearer("/api/v1/users", &admin)).await;
    let listed = json_of(&b)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "Nova@Example.com")
        .cloned()
        .unwrap();
    assert_eq!(listed["status"], "invited");
    assert_eq!(listed["sites"], json!(["palmeiras"]));
    assert!(listed["invite_expires_at"].is_string());
    assert_eq!(
        send(&f.app, login_req("nova@example.com", "!invite-pending"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    let (s, _, b) = send(&f.app, get(&path)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(text(&b).contains("Nova@Example.com"));
    // A short password or a wrong confirmation is refused at its field; the link still works.
    let (s, _, b) = send(
        &f.app,
        form(
            &path,
            None,
            ORIGIN,
            &[("new_password", "curta"), ("new_password_confirm", "curta")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text(&b).contains("pelo menos 12 caracteres"),
        "{}",
        text(&b)
    );
    let (s, _, _) = send(
        &f.app,
        form(
            &path,
            None,
            ORIGIN,
            &[
                ("new_password", FIRST_PASSWORD),
                ("new_password_confirm", "outra coisa qualquer"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, h, b) = send(
        &f.app,
        form(
            &path,
            None,
            ORIGIN,
            &[
                ("new_password", FIRST_PASSWORD),
                ("new_password_confirm", FIRST_PASSWORD),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    assert_eq!(h[header::LOCATION], "/");
    let cookie = cookie_of(&h);
    let (s, _, b) = send(&f.app, get_cookie("/api/v1/sites", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        send(&f.app, login_req("nova@example.com", FIRST_PASSWORD))
            .await
            .0,
        StatusCode::OK
    );

    // Used: the page and the form both answer the one 404.
    for req in [
        get(&path),
        form(
            &path,
            None,
            ORIGIN,
            &[
                ("new_password", "mais uma senha longa"),
                ("new_password_confirm", "mais uma senha longa"),
            ],
        ),
    ] {
        let (s, _, b) = send(&f.app, req).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(text(&b).contains(INVALID_INVITE));
    }
    assert_eq!(
        send(
            &f.app,
            login_req("nova@example.com", "mais uma senha longa")
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let audit = db.store.audit_page(100, None).await.unwrap();
    let invite = audit.iter().find(|r| r.action == "user_invite").unwrap();
    assert_eq!(invite.user_email.as_deref(), Some("admin@example.com"));
    assert_eq!(invite.target, "Nova@Example.com");
    let accept = audit.iter().find(|r| r.action == "invite_accept").unwrap();
    assert_eq!(accept.user_email.as_deref(), Some("Nova@Example.com"));
    let token = path.trim_start_matches("/invite/");
    for r in &audit {
        assert!(!r.detail.to_string().contains(token));
        assert!(!r.detail.to_string().contains(FIRST_PASSWORD));
    }
}

async fn dead_links_all_answer_the_same_404_and_reinvite_replaces_the_link(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, admin) = login(&f.app, "admin@example.com").await;
    // Invited through the page: the link is on the page once.
    let (s, h, b) = send(
        &f.app,
        form(
            "/users/invite",
            Some(&cookie),
            ORIGIN,
            &[
                ("email", "porteiro@example.com"),
                ("role", "manager"),
                ("sites", "palmeiras"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let html = text(&b);
    let start = html.find(&format!("{ORIGIN}/invite/")).unwrap();
    let first = invite_path(&html[start..start + ORIGIN.len() + "/invite/".len() + 64]);
    assert_eq!(send(&f.app, get(&first)).await.0, StatusCode::OK);

    let id = user_id(&f.app, &admin, "porteiro@example.com").await;
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{id}/reinvite"),
            &admin,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let second = invite_path(json_of(&b)["invite_url"].as_str().unwrap());
    assert_ne!(first, second);

    // Expired: an invite whose 72 h are over.
    let expired_raw = new_token();
    let now = Utc::now();
    db.store
        .invite_user(
            &NewInvite {
                email: "atrasado@example.com".into(),
                role: Role::Manager,
                sites: vec![f.home],
                token_hash: token_hash(&expired_raw),
                created_by: None,
                created_at: now - TimeDelta::hours(73),
                expires_at: now - TimeDelta::hours(1),
            },
            &AuditEntry::new(now, None, "user_invite", "atrasado@example.com"),
        )
        .await
        .unwrap();
    let expired = format!("/invite/{expired_raw}");
    let unknown = format!("/invite/{}", new_token());
    let mut bodies = Vec::new();
    for path in [&first, &expired, &unknown, &"/invite/nada".to_owned()] {
        let (s, _, b) = send(&f.app, get(path)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(text(&b).contains(INVALID_INVITE));
        bodies.push(text(&b));
        let (s, _, _) = send(
            &f.app,
            form(
                path,
                None,
                ORIGIN,
                &[
                    ("new_password", FIRST_PASSWORD),
                    ("new_password_confirm", FIRST_PASSWORD),
                ],
            ),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "dead links must not be told apart");
    assert_eq!(
        send(&f.app, login_req("atrasado@example.com", FIRST_PASSWORD))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (_, _, b) = send(&f.app, get_bearer("/api/v1/users", &admin)).await;
    let late = json_of(&b)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "atrasado@example.com")
        .cloned()
        .unwrap();
    assert_eq!(late["status"], "invite_expired");

    // The second link works.
    let (s, _, _) = send(
        &f.app,
        form(
            &second,
            None,
            ORIGIN,
            &[
                ("new_password", FIRST_PASSWORD),
                ("new_password_confirm", FIRST_PASSWORD),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // Once the password is set there is nothing to re-invite.
    let (s, _, _) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{id}/reinvite"),
            &admin,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let acts = actions(db).await;
    assert!(acts.contains(&"user_reinvite".to_owned()));
}

async fn a_manager_stays_inside_their_sites(db: &TestDb) {
    let f = fixture(db).await;
    let (_, admin) = login(&f.app, "admin@example.com").await;
    let (cookie, sindico) = login(&f.app, "sindico@example.com").await;
    let mut seen = emails(&f.app, &sindico).await;
    seen.sort();
    assert_eq!(
        seen,
        [
            "ambos@example.com",
            "sindico@example.com",
            "zelador@example.com"
        ]
    );
    // A co-manager's other sites are not shown to this manager.
    let (_, _, b) = send(&f.app, get_bearer("/api/v1/users", &sindico)).await;
    let ambos = json_of(&b)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ambos@example.com")
        .cloned()
        .unwrap();
    assert_eq!(ambos["sites"], json!(["palmeiras"]));
    let (s, _, b) = send(&f.app, get_cookie("/users", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&b);
    assert!(page.contains("zelador@example.com"));
    assert!(!page.contains("vizinho@example.com"));
    assert!(!page.contains("admin@example.com"));
    assert!(!page.contains("Residencial Outra"));
    assert_eq!(emails(&f.app, &admin).await.len(), 5);

    let before = user_count(db).await;
    for (body, status, field) in [
        (
            json!({ "email": "x@example.com", "role": "manager", "sites": ["outra"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sites",
        ),
        (
            json!({ "email": "x@example.com", "role": "manager", "sites": ["palmeiras", "outra"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sites",
        ),
        (
            json!({ "email": "x@example.com", "role": "admin", "sites": [] }),
            StatusCode::FORBIDDEN,
            "role",
        ),
        (
            json!({ "email": "x@example.com", "role": "manager", "sites": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sites",
        ),
        (
            json!({ "email": "x@example.com", "role": "manager", "sites": "palmeiras" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sites",
        ),
        (
            json!({ "email": "sem arroba", "role": "manager", "sites": ["palmeiras"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({ "role": "manager", "sites": ["palmeiras"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({ "email": "x@example.com", "role": "dono", "sites": ["palmeiras"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
        (
            json!({ "email": "ZELADOR@example.com", "role": "manager", "sites": ["palmeiras"] }),
            StatusCode::CONFLICT,
            "email",
        ),
    ] {
        let (s, _, b) = send(
            &f.app,
            api("POST", "/api/v1/users/invite", &sindico, Some(body.clone())),
        )
        .await;
        assert_eq!(s, status, "{body}: {}", text(&b));
        assert_eq!(json_of(&b)["error"]["field"], field, "{body}");
    }
    assert_eq!(user_count(db).await, before, "nothing stored");
    // The page form refuses an admin invite from a manager too.
    let (s, _, _) = send(
        &f.app,
        form(
            "/users/invite",
            Some(&cookie),
            ORIGIN,
            &[("email", "x@example.com"), ("role", "admin")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(user_count(db).await, before);

    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            "/api/v1/users/invite",
            &sindico,
            Some(json!({ "email": "novo@example.com", "role": "manager", "sites": ["palmeiras"] })),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));

    // Out of scope: the same 404 as a user that does not exist.
    let vizinho = user_id(&f.app, &admin, "vizinho@example.com").await;
    let admin_id = user_id(&f.app, &admin, "admin@example.com").await;
    for id in [vizinho, admin_id, 999_999] {
        for action in ["deactivate", "reactivate", "reinvite"] {
            let (s, _, _) = send(
                &f.app,
                api(
                    "POST",
                    &format!("/api/v1/users/{id}/{action}"),
                    &sindico,
                    None,
                ),
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{id} {action}");
        }
    }
    // A manager with a site that is not theirs: visible, but not theirs to switch off.
    let ambos_id = user_id(&f.app, &admin, "ambos@example.com").await;
    let (s, _, _) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{ambos_id}/deactivate"),
            &sindico,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A colleague of their own site: allowed.
    let zelador = user_id(&f.app, &admin, "zelador@example.com").await;
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{zelador}/deactivate"),
            &sindico,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(json_of(&b)["user"]["active"], false);
    let _ = f.other;
}

async fn deactivation_ends_sessions_and_bearer_tokens_at_once(db: &TestDb) {
    let f = fixture(db).await;
    let (admin_cookie, admin) = login(&f.app, "admin@example.com").await;
    let (cookie, bearer) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            "/api/v1/account/tokens",
            &bearer,
            Some(json!({ "name": "integração" })),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    let personal = json_of(&b)["token"].as_str().unwrap().to_owned();
    for req in [
        get_cookie("/api/v1/sites", &cookie),
        get_bearer("/api/v1/sites", &bearer),
        get_bearer("/api/v1/sites", &personal),
    ] {
        assert_eq!(send(&f.app, req).await.0, StatusCode::OK);
    }
    let id = user_id(&f.app, &admin, "sindico@example.com").await;
    let (s, h, b) = send(
        &f.app,
        form(
            &format!("/users/{id}/deactivate"),
            Some(&admin_cookie),
            ORIGIN,
            &[],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    assert_eq!(h[header::LOCATION], "/users?ok=desativado");
    for req in [
        get_cookie("/api/v1/sites", &cookie),
        get_bearer("/api/v1/sites", &bearer),
        get_bearer("/api/v1/sites", &personal),
    ] {
        assert_eq!(send(&f.app, req).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        send(&f.app, login_req("sindico@example.com", PASSWORD))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, b) = send(&f.app, get_cookie("/users", &admin_cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("Desativado"));

    // Reactivated: they log in again, but what they held before stays dead.
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{id}/reactivate"),
            &admin,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(json_of(&b)["user"]["status"], "active");
    login(&f.app, "sindico@example.com").await;
    for req in [
        get_cookie("/api/v1/sites", &cookie),
        get_bearer("/api/v1/sites", &personal),
    ] {
        assert_eq!(send(&f.app, req).await.0, StatusCode::UNAUTHORIZED);
    }
    let audit = db.store.audit_page(100, None).await.unwrap();
    let off = audit
        .iter()
        .find(|r| r.action == "user_deactivate")
        .unwrap();
    assert_eq!(off.user_email.as_deref(), Some("admin@example.com"));
    assert_eq!(off.target, "sindico@example.com");
    assert!(off.ip.is_some());
    assert!(audit.iter().any(|r| r.action == "user_reactivate"));
}

async fn nobody_deactivates_themselves_or_the_last_admin(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, admin) = login(&f.app, "admin@example.com").await;
    let (_, sindico) = login(&f.app, "sindico@example.com").await;
    let admin_id = user_id(&f.app, &admin, "admin@example.com").await;
    let sindico_id = user_id(&f.app, &admin, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{admin_id}/deactivate"),
            &admin,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        json_of(&b)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("própria conta")
    );
    let (s, _, b) = send(
        &f.app,
        form(
            &format!("/users/{admin_id}/deactivate"),
            Some(&cookie),
            ORIGIN,
            &[],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(text(&b).contains("própria conta"));
    let (s, _, _) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{sindico_id}/deactivate"),
            &sindico,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The store guards the last admin whoever asks (the command line, a race).
    let before = actions(db).await.len();
    let entry = AuditEntry::new(Utc::now(), None, "user_deactivate", "admin@example.com");
    assert_eq!(
        db.store
            .set_user_active(UserId(admin_id), false, &entry)
            .await
            .unwrap(),
        ActiveChange::LastAdmin
    );
    assert_eq!(actions(db).await.len(), before, "a refusal writes nothing");
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &admin)).await.0,
        StatusCode::OK
    );
    // With a second admin, one may deactivate the other.
    add_users(&db.store, vec![("admin2@example.com", Role::Admin, vec![])]).await;
    let admin2 = user_id(&f.app, &admin, "admin2@example.com").await;
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("/api/v1/users/{admin2}/deactivate"),
            &admin,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(
        db.store
            .set_user_active(UserId(admin_id), false, &entry)
            .await
            .unwrap(),
        ActiveChange::LastAdmin
    );
}

async fn personal_tokens_are_created_listed_and_revoked(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, bearer) = login(&f.app, "sindico@example.com").await;
    let (_, other) = login(&f.app, "zelador@example.com").await;
    let list = |token: String| {
        let app = f.app.clone();
        async move {
            let (s, _, b) = send(&app, get_bearer("/api/v1/account/tokens", &token)).await;
            assert_eq!(s, StatusCode::OK, "{}", text(&b));
            json_of(&b)["data"].as_array().unwrap().clone()
        }
    };
    // Tokens handed out by a login are not personal tokens.
    assert!(list(bearer.clone()).await.is_empty());
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "  " }), "name"),
        (json!({ "name": 7 }), "name"),
        (json!({ "name": "x".repeat(101) }), "name"),
        (json!({ "name": "a\nb" }), "name"),
    ] {
        let (s, _, b) = send(
            &f.app,
            api(
                "POST",
                "/api/v1/account/tokens",
                &bearer,
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(json_of(&b)["error"]["field"], field);
    }
    assert!(list(bearer.clone()).await.is_empty(), "nothing stored");

    let (s, h, b) = send(
        &f.app,
        api(
            "POST",
            "/api/v1/account/tokens",
            &bearer,
            Some(json!({ "name": "portal" })),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let created = json_of(&b);
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &token)).await.0,
        StatusCode::OK
    );
    let listed = list(bearer.clone()).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "portal");
    assert_eq!(listed[0]["id"], id);
    assert!(!Value::Array(listed.clone()).to_string().contains(&token));
    assert!(list(other.clone()).await.is_empty());

    // Someone else's token: 404, and it keeps working.
    let (s, _, _) = send(
        &f.app,
        api(
            "DELETE",
            &format!("/api/v1/account/tokens/{id}"),
            &other,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &token)).await.0,
        StatusCode::OK
    );
    let (s, _, _) = send(
        &f.app,
        api(
            "DELETE",
            &format!("/api/v1/account/tokens/{id}"),
            &bearer,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, _) = send(
        &f.app,
        api(
            "DELETE",
            &format!("/api/v1/account/tokens/{id}"),
            &bearer,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The page: create (shown once), list without the value, revoke.
    let (s, h, b) = send(
        &f.app,
        form(
            "/account/tokens",
            Some(&cookie),
            ORIGIN,
            &[("name", "planilha")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let listed = list(bearer.clone()).await;
    assert_eq!(listed.len(), 1);
    let page_id = listed[0]["id"].as_i64().unwrap();
    let (s, _, b) = send(&f.app, get_cookie("/account/tokens", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("planilha"));
    assert!(!text(&b).contains("Copie-o agora"));
    let (s, _, _) = send(
        &f.app,
        form("/account/tokens", Some(&cookie), ORIGIN, &[("name", "")]),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, h, _) = send(
        &f.app,
        form(
            &format!("/account/tokens/{page_id}/revoke"),
            Some(&cookie),
            ORIGIN,
            &[],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/account/tokens?ok=revogado");
    assert!(list(bearer.clone()).await.is_empty());
    let acts = actions(db).await;
    assert_eq!(acts.iter().filter(|a| *a == "token_create").count(), 2);
    assert_eq!(acts.iter().filter(|a| *a == "token_revoke").count(), 2);
}

test_both_backends!(
    invite_accept_then_login_and_the_link_is_single_use,
    dead_links_all_answer_the_same_404_and_reinvite_replaces_the_link,
    a_manager_stays_inside_their_sites,
    deactivation_ends_sessions_and_bearer_tokens_at_once,
    nobody_deactivates_themselves_or_the_last_admin,
    personal_tokens_are_created_listed_and_revoked,
);

#[tokio::test]
async fn cross_site_user_changes_are_refused() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (cookie, admin) = login(&f.app, "admin@example.com").await;
    let before = user_count(&db).await;
    let sindico = user_id(&f.app, &admin, "sindico@example.com").await;
    for (path, pairs) in [
        (
            "/users/invite".to_owned(),
            vec![
                ("email", "x@example.com"),
                ("role", "admin"),
                ("sites", "palmeiras"),
            ],
        ),
        (format!("/users/{sindico}/deactivate"), vec![]),
        ("/account/tokens".to_owned(), vec![("name", "roubado")]),
    ] {
        let (s, _, b) = send(
            &f.app,
            form(&path, Some(&cookie), "https://evil.example", &pairs),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {}", text(&b));
    }
    assert_eq!(user_count(&db).await, before);
    let (_, sindico_token) = login(&f.app, "sindico@example.com").await;
    assert_eq!(
        send(&f.app, get_bearer("/api/v1/sites", &sindico_token))
            .await
            .0,
        StatusCode::OK
    );
    let (_, _, b) = send(&f.app, get_bearer("/api/v1/account/tokens", &admin)).await;
    assert!(json_of(&b)["data"].as_array().unwrap().is_empty());
    assert!(
        !actions(&db)
            .await
            .iter()
            .any(|a| a == "user_invite" || a == "user_deactivate" || a == "token_create")
    );
}

#[tokio::test]
async fn users_routes_need_a_login_and_are_in_the_openapi_document() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (s, _, _) = send(&f.app, get("/api/v1/users")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h, _) = send(&f.app, get("/users")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/login");
    let (s, _, _) = send(&f.app, get("/account/tokens")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, _, b) = send(&f.app, get("/api/v1/openapi.json")).await;
    let doc = json_of(&b);
    for (path, method) in [
        ("/api/v1/users", "get"),
        ("/api/v1/users/invite", "post"),
        ("/api/v1/users/{id}/reinvite", "post"),
        ("/api/v1/users/{id}/deactivate", "post"),
        ("/api/v1/users/{id}/reactivate", "post"),
        ("/api/v1/account/tokens", "get"),
        ("/api/v1/account/tokens", "post"),
        ("/api/v1/account/tokens/{id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
}
