//! Notification pages and API, in-process against a real store on both backends: the log lists
//! rows with the phone masked and filters work; another site's manager gets 404; "Reenviar"
//! works only on failed rows and is audited; a policy with an unknown placeholder is refused
//! naming the field and nothing is stored, a good one is stored with its audit row; the preview
//! renders; a resident's preferences round-trip; the test message enqueues one outbox row of
//! rule `test` (a double submission of the same form still one).

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use common::{ORIGIN, add_site, add_users, get_bearer, get_cookie, json_of, login, send, text};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;
use vetric_domain::Secret;
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, InstanceState,
};
use vetric_store::testing::TestDb;
use vetric_store::{
    Completion, NewNotification, NewResident, OutboxFilter, ResidentId, Role, SiteId, Store,
    test_both_backends,
};
use vetric_web::notifications::SiteGateway;
use vetric_web::{AppState, router};

const PHONE: &str = "5511912345678";

struct Fixture {
    app: Router,
    store: Store,
    home: SiteId,
    resident: ResidentId,
}

async fn fixture(db: &TestDb) -> Fixture {
    // Nothing listens here: the tests using this fixture never call the gateway.
    fixture_with(
        db,
        "http://127.0.0.1:9",
        "evolution-key-abcd1234",
        "Palmeiras",
    )
    .await
}

async fn fixture_with(db: &TestDb, base_url: &str, key: &str, instance: &str) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
            ("outro@example.com", Role::Manager, vec![other]),
        ],
    )
    .await;
    let resident = store
        .add_resident(
            home,
            &NewResident {
                name: "Maria Souza".into(),
                phone: PHONE.into(),
                email: None,
                block: "A".into(),
                unit: "101".into(),
            },
        )
        .await
        .unwrap();
    let state = AppState::new(
        store.clone(),
        vec![
            common::site_settings(home, "palmeiras", "Jardim Palmeiras"),
            common::site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    )
    .with_gateways(vec![SiteGateway {
        site: home,
        base_url: Url::parse(base_url).unwrap(),
        instance: instance.into(),
        api_key: Secret::new(key),
    }]);
    Fixture {
        app: router(state),
        store,
        home,
        resident,
    }
}

fn notification(key: &str, rule: &str, resident: Option<ResidentId>) -> NewNotification {
    NewNotification {
        dedup_key: key.into(),
        rule: rule.into(),
        audience: "resident".into(),
        channel: "whatsapp".into(),
        resident_id: resident.map(|r| r.0),
        recipient: None,
        scope: "session:1".into(),
        session_vendor_id: Some(1),
        subject: None,
        body: "Olá Maria, sua recarga começou.".into(),
        ref_code: "ABCD2345".into(),
        not_before: Utc::now() - chrono::TimeDelta::minutes(1),
    }
}

/// One failed row (resident, session_finished) and one pending row (session_started).
async fn failed_and_pending(f: &Fixture) -> (i64, i64) {
    let failed = f
        .store
        .enqueue(
            Some(f.home),
            &notification("t:1", "session_finished", Some(f.resident)),
        )
        .await
        .unwrap()
        .unwrap();
    let claimed = f
        .store
        .claim_due("test", Utc::now(), chrono::TimeDelta::minutes(1), 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, failed);
    assert!(
        f.store
            .complete(
                failed,
                "test",
                &Completion::Failed {
                    reason: "number not on WhatsApp: 5511912345678".into()
                },
                Utc::now(),
            )
            .await
            .unwrap()
    );
    let pending = f
        .store
        .enqueue(
            Some(f.home),
            &notification("t:2", "session_started", Some(f.resident)),
        )
        .await
        .unwrap()
        .unwrap();
    (failed, pending)
}

fn post_form(path: &str, cookie: &str, pairs: &[(&str, &str)], htmx: bool) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut req = Request::post(path)
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if htmx {
        req = req.header("HX-Request", "true");
    }
    req.body(Body::from(body)).unwrap()
}

fn json_req(method: &str, path: &str, token: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn audit_actions(store: &Store, action: &str) -> Vec<vetric_store::AuditRow> {
    store
        .audit_log(200)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == action)
        .collect()
}

async fn the_log_masks_phones_and_filters(db: &TestDb) {
    let f = fixture(db).await;
    let (failed, pending) = failed_and_pending(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/notifications", &cookie),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK, "{page}");
    for expected in [
        "Recarga concluída",
        "Recarga iniciada",
        "Falhou",
        "Na fila",
        "Maria Souza",
        "+55 11 9****-5678",
        "*********5678",
        "Reenviar",
        "Notificações",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    assert!(
        !page.contains(PHONE),
        "a full phone number in the log:\n{page}"
    );

    let (s, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/notifications", &token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let body = json_of(&b);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], json!(pending), "newest first");
    assert_eq!(data[0]["status"], "pending");
    assert_eq!(data[1]["status"], "failed");
    assert_eq!(data[1]["recipient"], "+55 11 9****-5678");
    assert_eq!(data[1]["attempts"], 1);
    assert!(
        !b.iter()
            .as_slice()
            .windows(PHONE.len())
            .any(|w| w == PHONE.as_bytes())
    );

    // A period around today in the site's zone (never at a day's edge).
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .date_naive();
    let around_today = format!(
        "from={}&to={}",
        today.pred_opt().unwrap(),
        today.succ_opt().unwrap()
    );
    for (query, ids) in [
        ("status=failed", vec![failed]),
        ("rule=session_started", vec![pending]),
        (
            &format!("resident={}", f.resident.0) as &str,
            vec![pending, failed],
        ),
        ("resident=999999", vec![]),
        ("from=2000-01-01&to=2000-01-02", vec![]),
        (&around_today as &str, vec![pending, failed]),
        ("limit=1", vec![pending]),
        (&format!("before={pending}") as &str, vec![failed]),
    ] {
        let (s, _, b) = send(
            &f.app,
            get_bearer(
                &format!("/api/v1/sites/palmeiras/notifications?{query}"),
                &token,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{query}");
        let got: Vec<i64> = json_of(&b)["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, ids, "{query}");
    }
    let (s, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/notifications?status=lost", &token),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&b)["error"]["field"], "status");
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/notifications?status=failed", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!text(&b).contains("data-status=\"pending\""));
}

async fn another_sites_manager_gets_404(db: &TestDb) {
    let f = fixture(db).await;
    let (failed, _) = failed_and_pending(&f).await;
    let (cookie, token) = login(&f.app, "outro@example.com").await;
    for path in [
        "/sites/palmeiras/notifications",
        "/sites/palmeiras/notifications/settings",
        &format!("/sites/palmeiras/residents/{}/notifications", f.resident.0) as &str,
    ] {
        let (s, _, _) = send(&f.app, get_cookie(path, &cookie)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/api/v1/sites/palmeiras/notifications",
        "/api/v1/sites/palmeiras/notification-policy",
        &format!(
            "/api/v1/sites/palmeiras/residents/{}/notification-prefs",
            f.resident.0
        ) as &str,
    ] {
        let (s, _, _) = send(&f.app, get_bearer(path, &token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _, _) = send(
        &f.app,
        json_req(
            "POST",
            &format!("/api/v1/sites/palmeiras/notifications/{failed}/resend"),
            &token,
            json!({}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Through their own site, the other site's row is as absent as a missing one.
    let (s, _, _) = send(
        &f.app,
        json_req(
            "POST",
            &format!("/api/v1/sites/outro/notifications/{failed}/resend"),
            &token,
            json!({}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        audit_actions(&f.store, "notification_resend")
            .await
            .is_empty()
    );
}

async fn resend_only_failed_and_audited(db: &TestDb) {
    let f = fixture(db).await;
    let (failed, pending) = failed_and_pending(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, _) = send(
        &f.app,
        json_req(
            "POST",
            &format!("/api/v1/sites/palmeiras/notifications/{pending}/resend"),
            &token,
            json!({}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, h, _) = send(
        &f.app,
        post_form(
            &format!("/sites/palmeiras/notifications/{failed}/resend"),
            &cookie,
            &[],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        h[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("ok=reenviada")
    );
    let row = f.store.outbox_entry(failed).await.unwrap().unwrap();
    assert_eq!(row.row.status.as_str(), "pending");
    assert_eq!(row.row.attempts, 0);
    let audits = audit_actions(&f.store, "notification_resend").await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].target, format!("notification:{failed}"));
    // A second click finds nothing to resend.
    let (s, _, _) = send(
        &f.app,
        post_form(
            &format!("/sites/palmeiras/notifications/{failed}/resend"),
            &cookie,
            &[],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        audit_actions(&f.store, "notification_resend").await.len(),
        1
    );
}

async fn policy_put_is_validated_stored_and_audited(db: &TestDb) {
    let f = fixture(db).await;
    let (_, token) = login(&f.app, "sindico@example.com").await;
    let path = "/api/v1/sites/palmeiras/notification-policy";
    let (s, _, b) = send(&f.app, get_bearer(path, &token)).await;
    assert_eq!(s, StatusCode::OK);
    let mut policy = json_of(&b)["data"].clone();
    assert_eq!(policy["idle_grace_min"], 10);
    assert!(policy["rules"]["session_started"]["template"].is_string());

    let mut bad = policy.clone();
    bad["rules"]["session_started"]["template"] = json!("Oi {{nome}}, custo {{custo}}");
    let (s, _, b) = send(&f.app, json_req("PUT", path, &token, bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{}", text(&b));
    let err = json_of(&b);
    assert_eq!(err["error"]["field"], "rules.session_started.template");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("{{custo}}")
    );
    assert!(f.store.site_policy(f.home).await.unwrap().is_none());
    assert!(
        audit_actions(&f.store, "notification_policy_set")
            .await
            .is_empty()
    );

    policy["rules"]["session_started"]["template"] =
        json!("Oi {{nome}}, começou em {{carregador}}.");
    policy["reminder_max"] = json!(5);
    let (s, _, b) = send(&f.app, json_req("PUT", path, &token, policy)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let stored = f.store.site_policy(f.home).await.unwrap().unwrap();
    assert_eq!(stored.policy["reminder_max"], 5);
    assert_eq!(stored.updated_by.as_deref(), Some("sindico@example.com"));
    let audits = audit_actions(&f.store, "notification_policy_set").await;
    assert_eq!(audits.len(), 1);
    let changed = audits[0].detail["changed"].as_array().unwrap();
    assert!(changed.contains(&json!("reminder_max")), "{changed:?}");
    assert!(changed.contains(&json!("rules.session_started.template")));

    // The page shows the stored text and an error at the field.
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/notifications/settings",
            &cookie,
            &[("idle_grace_min", "abc")],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&b).contains("Nada foi salvo"));
    assert_eq!(
        audit_actions(&f.store, "notification_policy_set")
            .await
            .len(),
        1
    );
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/notifications/settings", &cookie),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("começou em {{carregador}}"), "{page}");
    assert!(page.contains("definido no arquivo de configuração"));
    assert!(page.contains("••••••••1234"));
    assert!(!page.contains("evolution-key-abcd1234"));
    assert!(
        !page.contains("Enviar mensagem de teste"),
        "managers do not get it"
    );
}

async fn preview_renders_and_names_unknown_placeholders(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let path = "/sites/palmeiras/notifications/settings/preview";
    let (s, _, b) = send(
        &f.app,
        post_form(
            path,
            &cookie,
            &[
                ("rule", "session_started"),
                ("rules.session_started.template", "Olá {{nome}}!"),
            ],
            true,
        ),
    )
    .await;
    let fragment = text(&b);
    assert_eq!(s, StatusCode::OK, "{fragment}");
    assert!(fragment.contains("Olá "), "{fragment}");
    assert!(!fragment.contains("{{nome}}"), "{fragment}");
    let (_, _, b) = send(
        &f.app,
        post_form(
            path,
            &cookie,
            &[
                ("rule", "session_started"),
                ("rules.session_started.template", "Olá {{quem}}"),
            ],
            true,
        ),
    )
    .await;
    assert!(text(&b).contains("{{quem}}"), "{}", text(&b));
    // "Restaurar texto padrão" puts the default back in the form without saving.
    let (s, _, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/notifications/settings",
            &cookie,
            &[
                ("reset", "session_started"),
                ("rules.session_started.template", "xyz"),
            ],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("restaurado"));
    assert!(f.store.site_policy(f.home).await.unwrap().is_none());
}

async fn prefs_round_trip(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let api = format!(
        "/api/v1/sites/palmeiras/residents/{}/notification-prefs",
        f.resident.0
    );
    let (s, _, b) = send(&f.app, get_bearer(&api, &token)).await;
    assert_eq!(s, StatusCode::OK);
    let got = json_of(&b);
    assert_eq!(got["data"]["opted_out"], json!([]));
    assert_eq!(got["data"]["quiet_hours"], Value::Null);

    let (s, _, b) = send(
        &f.app,
        json_req(
            "PUT",
            &api,
            &token,
            json!({ "opted_out": ["vendor_down"], "quiet_hours": null }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "opted_out[0]");
    let (s, _, b) = send(
        &f.app,
        json_req(
            "PUT",
            &api,
            &token,
            json!({ "quiet_hours": { "start": "25:00", "end": "07:00" } }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "quiet_hours.start");
    assert!(f.store.resident_prefs(f.resident).await.unwrap().is_none());

    let (s, _, b) = send(
        &f.app,
        json_req(
            "PUT",
            &api,
            &token,
            json!({ "opted_out": ["idle_reminder"],
                    "quiet_hours": { "start": "22:00", "end": "07:00" } }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let (_, _, b) = send(&f.app, get_bearer(&api, &token)).await;
    let got = json_of(&b);
    assert_eq!(got["data"]["opted_out"], json!(["idle_reminder"]));
    assert_eq!(
        got["data"]["quiet_hours"],
        json!({ "start": "22:00", "end": "07:00" })
    );
    assert_eq!(
        audit_actions(&f.store, "resident_notification_prefs")
            .await
            .len(),
        1
    );

    // The resident's page loads the form (and links to it without JavaScript).
    let page = format!("/sites/palmeiras/residents/{}/notifications", f.resident.0);
    let (s, _, b) = send(
        &f.app,
        get_cookie(
            &format!("/sites/palmeiras/residents/{}", f.resident.0),
            &cookie,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text(&b).contains(&format!("hx-get=\"{page}\"")),
        "{}",
        text(&b)
    );
    // The form: everything on again, quiet hours off.
    let (s, _, b) = send(&f.app, get_cookie(&page, &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("Horário de silêncio"));
    let (s, _, _) = send(
        &f.app,
        post_form(
            &page,
            &cookie,
            &[
                ("rule", "session_started"),
                ("rule", "idle_started"),
                ("rule", "idle_reminder"),
                ("rule", "session_finished"),
                ("rule", "session_interrupted"),
                ("rule", "statement_apartment_summary"),
            ],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let row = f.store.resident_prefs(f.resident).await.unwrap().unwrap();
    assert!(row.opted_out.is_empty());
    assert_eq!(row.quiet, None);
    let (s, _, b) = send(
        &f.app,
        post_form(
            &page,
            &cookie,
            &[("quiet", "1"), ("quiet_start", "22:00"), ("quiet_end", "")],
            true,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&b).contains("informe o fim"));
}

async fn test_message_enqueues_one_row(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, token) = login(&f.app, "admin@example.com").await;
    let path = "/sites/palmeiras/notifications/settings/test-message";
    let (s, _, b) = send(
        &f.app,
        post_form(path, &cookie, &[("phone", "11 1234"), ("key", "k1")], false),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{}", text(&b));
    for _ in 0..2 {
        let (s, _, b) = send(
            &f.app,
            post_form(
                path,
                &cookie,
                &[("phone", "+55 11 91234-5678"), ("key", "k1")],
                false,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", text(&b));
    }
    let rows = f
        .store
        .outbox_log(&OutboxFilter {
            site: Some(f.home),
            rule: Some("test".into()),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one row for a double submission");
    let row = &rows[0].row;
    assert_eq!(row.channel, "whatsapp");
    assert_eq!(row.recipient.as_deref(), Some(PHONE));
    assert_eq!(row.status.as_str(), "pending");
    assert!(row.body.contains("Jardim Palmeiras"), "{}", row.body);
    assert_eq!(audit_actions(&f.store, "notification_test").await.len(), 1);
    // Managers may not; the API twin queues another with a new key.
    let (sindico, sindico_token) = login(&f.app, "sindico@example.com").await;
    let (s, _, _) = send(
        &f.app,
        post_form(path, &sindico, &[("phone", "+55 11 91234-5678")], false),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let api = "/api/v1/sites/palmeiras/notifications/test";
    let (s, _, _) = send(
        &f.app,
        json_req("POST", api, &sindico_token, json!({ "phone": PHONE })),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = send(
        &f.app,
        json_req("POST", api, &token, json!({ "phone": PHONE, "key": "k2" })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    let (s, _, _) = send(
        &f.app,
        json_req("POST", api, &token, json!({ "phone": PHONE, "key": "k2" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // The outbox is read by the log API.
    let (_, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/notifications?rule=test", &token),
    )
    .await;
    assert_eq!(json_of(&b)["data"].as_array().unwrap().len(), 2);
}

async fn gateway_check_asks_the_simulator(db: &TestDb) {
    let sim = EvolutionSim::start(
        EvolutionSimConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let f = fixture_with(db, sim.base_url(), DEFAULT_API_KEY, DEFAULT_INSTANCE).await;
    let (cookie, token) = login(&f.app, "admin@example.com").await;
    let path = "/sites/palmeiras/notifications/settings/gateway-check";
    let (s, _, b) = send(&f.app, post_form(path, &cookie, &[], true)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(text(&b).contains("Conectado"), "{}", text(&b));
    sim.set_state(DEFAULT_INSTANCE, InstanceState::Close)
        .unwrap();
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/notifications/gateway-check",
            &token,
            json!({}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let got = json_of(&b);
    assert_eq!(got["data"]["ok"], false);
    assert!(
        got["data"]["message"]
            .as_str()
            .unwrap()
            .contains("Desconectado")
    );
    assert_eq!(audit_actions(&f.store, "gateway_check").await.len(), 2);
    // Managers see the page but never make vetric call out.
    let (sindico, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, _) = send(&f.app, post_form(path, &sindico, &[], true)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(audit_actions(&f.store, "gateway_check").await.len(), 2);
    assert!(sim.messages().is_empty(), "a check sends nothing");
}

test_both_backends!(
    gateway_check_asks_the_simulator,
    the_log_masks_phones_and_filters,
    another_sites_manager_gets_404,
    resend_only_failed_and_audited,
    policy_put_is_validated_stored_and_audited,
    preview_renders_and_names_unknown_placeholders,
    prefs_round_trip,
    test_message_enqueues_one_row,
);
