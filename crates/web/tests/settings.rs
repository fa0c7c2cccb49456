//! Site settings and tariffs, in-process against a real store on both backends: the settings
//! page shows the configured values read-only and no secret; "Testar conexão" probes the
//! in-process CVE-Pro simulator (ok with the charger count; a 502 outage shown with its hint)
//! and is audited; a manager of another site gets 404; tariff versions are validated field by
//! field (nothing stored on error), audited, listed in the history, and refused when the config
//! file declares the tariff.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{ORIGIN, add_site, add_users, get_bearer, get_cookie, json_of, login, send, text};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;
use vetric_domain::{Secret, TariffSpec};
use vetric_sim::cvepro::{
    CveProSim, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, Fault, SimConfig, SimHandle,
};
use vetric_store::testing::TestDb;
use vetric_store::{Role, SiteId, Store, test_both_backends};
use vetric_web::settings::{SiteConfigured, VendorAccount};
use vetric_web::{AppState, router};

struct Fixture {
    app: Router,
    store: Store,
    home: SiteId,
    /// Declares its tariff in the config file.
    fixed: SiteId,
    sim: SimHandle,
}

async fn fixture(db: &TestDb) -> Fixture {
    fixture_with(db, None).await
}

async fn fixture_with(db: &TestDb, probe_timeout: Option<Duration>) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    let fixed = add_site(&store, "fixo", "Condomínio Fixo").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
            ("outro@example.com", Role::Manager, vec![other]),
        ],
    )
    .await;
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config_tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    store
        .upsert_config_tariff(fixed, &config_tariff)
        .await
        .unwrap();
    let vendor = VendorAccount {
        base_url: Url::parse(sim.base_url()).unwrap(),
        email: DEFAULT_EMAIL.into(),
        api_key: Secret::new(DEFAULT_API_KEY),
        password: Secret::new(DEFAULT_PASSWORD),
    };
    let configured = |site, vendor: Option<VendorAccount>, tariff| SiteConfigured {
        site,
        heartbeat_offline_after: Duration::from_secs(900),
        vendor,
        tariff_in_config: tariff,
    };
    let state = AppState::new(
        store.clone(),
        vec![
            common::site_settings(home, "palmeiras", "Jardim Palmeiras"),
            common::site_settings(other, "outro", "Outro Condomínio"),
            common::site_settings(fixed, "fixo", "Condomínio Fixo"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    )
    .with_site_config(vec![
        configured(home, Some(vendor), false),
        configured(other, None, false),
        configured(fixed, None, true),
    ]);
    let state = match probe_timeout {
        Some(t) => state.with_probe_timeout(t),
        None => state,
    };
    Fixture {
        app: router(state),
        store,
        home,
        fixed,
        sim,
    }
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

fn post_json(path: &str, token: &str, body: Value) -> Request<Body> {
    Request::post(path)
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

async fn settings_page_is_read_only_and_shows_no_secret(db: &TestDb) {
    let f = fixture(db).await;
    let (admin, _) = login(&f.app, "admin@example.com").await;
    let (s, _, b) = send(&f.app, get_cookie("/sites/palmeiras/settings", &admin)).await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK, "{page}");
    for expected in [
        "Jardim Palmeiras",
        "America/Sao_Paulo",
        "definido no arquivo de configuração",
        f.sim.base_url(),
        DEFAULT_EMAIL,
        "a cada 10 s",
        "10 min",
        "15 min",
        "Testar conexão",
        "Configurações",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    assert!(!page.contains(DEFAULT_API_KEY), "{page}");
    assert!(!page.contains(DEFAULT_PASSWORD), "{page}");
    // The site's manager may look, without the button; another site's manager gets 404.
    let (sindico, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(&f.app, get_cookie("/sites/palmeiras/settings", &sindico)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!text(&b).contains("Testar conexão"));
    let (outro, outro_token) = login(&f.app, "outro@example.com").await;
    for path in ["/sites/palmeiras/settings", "/sites/palmeiras/tariff"] {
        let (s, _, _) = send(&f.app, get_cookie(path, &outro)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _, _) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/tariffs", &outro_token),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(
        &f.app,
        post_form("/sites/palmeiras/settings/vendor-test", &sindico, &[], true),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "only admins test the connection");
    assert!(audit_actions(&f.store, "vendor_test").await.is_empty());
}

async fn test_connection_reports_ok_and_then_the_outage(db: &TestDb) {
    let f = fixture(db).await;
    let (admin, token) = login(&f.app, "admin@example.com").await;
    let (s, _, b) = send(
        &f.app,
        post_form("/sites/palmeiras/settings/vendor-test", &admin, &[], true),
    )
    .await;
    let fragment = text(&b);
    assert_eq!(s, StatusCode::OK, "{fragment}");
    assert!(
        fragment.contains("Conexão OK: 5 carregadores"),
        "{fragment}"
    );
    assert!(!fragment.contains("<html"), "htmx gets the fragment only");

    f.sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    // Without htmx the whole page comes back, with the result in it.
    let (s, _, b) = send(
        &f.app,
        post_form("/sites/palmeiras/settings/vendor-test", &admin, &[], false),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<html"), "{page}");
    assert!(
        page.contains("o fornecedor está fora do ar (erro HTTP 5xx)"),
        "{page}"
    );
    assert!(page.contains("O que fazer:"), "{page}");
    assert!(page.contains("vendor_unavailable"), "{page}");

    let (s, _, b) = send(
        &f.app,
        post_json("/api/v1/sites/palmeiras/vendor/test", &token, json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v = json_of(&b);
    assert_eq!(v["data"]["ok"], json!(false));
    assert_eq!(v["data"]["error"]["kind"], json!("vendor_unavailable"));
    assert!(v["data"]["hint"].as_str().unwrap().contains("fornecedor"));

    let audits = audit_actions(&f.store, "vendor_test").await;
    assert_eq!(audits.len(), 3);
    assert_eq!(audits[0].detail["ok"], json!(false));
    assert_eq!(audits[2].detail["ok"], json!(true));
    assert_eq!(audits[2].detail["chargers"], json!(5));
    // A site without a vendor account has nothing to test.
    let (s, _, _) = send(
        &f.app,
        post_json("/api/v1/sites/outro/vendor/test", &token, json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// One probe per site at a time: a second click while the vendor hangs is told so, and the
/// first ends at the probe's total limit as a timeout, with its hint.
async fn a_second_click_while_probing_is_told_to_wait(db: &TestDb) {
    let f = fixture_with(db, Some(Duration::from_millis(1500))).await;
    let (admin, _) = login(&f.app, "admin@example.com").await;
    f.sim.set_fault(Fault::Hang);
    let first = tokio::spawn({
        let app = f.app.clone();
        let req = post_form("/sites/palmeiras/settings/vendor-test", &admin, &[], true);
        async move { send(&app, req).await }
    });
    // The first probe is in flight once its login reached the (hanging) vendor.
    for _ in 0..200 {
        if f.sim.calls().login > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _, b) = send(
        &f.app,
        post_form("/sites/palmeiras/settings/vendor-test", &admin, &[], true),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("já está em andamento"), "{}", text(&b));
    let (s, _, b) = first.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let fragment = text(&b);
    assert!(
        fragment.contains("o fornecedor não respondeu a tempo"),
        "{fragment}"
    );
    assert!(fragment.contains("O que fazer:"), "{fragment}");
    // Only the probe that ran is audited; the slot is free again.
    assert_eq!(audit_actions(&f.store, "vendor_test").await.len(), 1);
    f.sim.clear_fault(vetric_sim::cvepro::FaultKind::Hang);
    let (_, _, b) = send(
        &f.app,
        post_form("/sites/palmeiras/settings/vendor-test", &admin, &[], true),
    )
    .await;
    assert!(text(&b).contains("Conexão OK"), "{}", text(&b));
}

fn good_tariff() -> Value {
    json!({
        "effective_from": "2026-03-01",
        "peak_price": "3.08",
        "offpeak_price": "0.53",
        "peak_weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "holidays": ["2026-04-03"],
        "idle_grace_min": 15,
        "idle_fee_per_min": "0.10",
        "idle_fee_cap": "30.00",
        "max_kwh": "150"
    })
}

async fn tariff_versions_are_validated_audited_and_listed(db: &TestDb) {
    let f = fixture(db).await;
    let (_, token) = login(&f.app, "sindico@example.com").await;
    let url = "/api/v1/sites/palmeiras/tariffs";
    // Bad fields: 422 naming the field, nothing stored.
    for (patch, field) in [
        (json!({ "peak_price": "3,08.1" }), "peak_price"),
        (json!({ "peak_price": 3.08 }), "peak_price"),
        (json!({ "peak_end": "25:00" }), "peak_end"),
        (json!({ "effective_from": null }), "effective_from"),
        (json!({ "holidays": [3] }), "holidays[0]"),
        (json!({ "max_kw": "1" }), "max_kw"),
        (json!({ "peak_weekdays": ["seg"] }), "peak_weekdays"),
    ] {
        let mut body = good_tariff();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, _, b) = send(&f.app, post_json(url, &token, body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", text(&b));
        assert_eq!(json_of(&b)["error"]["field"], json!(field), "{}", text(&b));
    }
    assert!(f.store.tariff_versions(f.home).await.unwrap().is_empty());
    assert!(audit_actions(&f.store, "tariff_add").await.is_empty());

    let (s, _, b) = send(&f.app, post_json(url, &token, good_tariff())).await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    let created = json_of(&b);
    assert_eq!(created["data"]["source"], json!("ui"));
    assert_eq!(created["data"]["created_by"], json!("sindico@example.com"));
    assert_eq!(created["data"]["tariff"]["peak_price"], json!("3.08"));
    let history = f.store.tariff_history(f.home).await.unwrap();
    assert_eq!(history.tariffs().len(), 1);
    let audits = audit_actions(&f.store, "tariff_add").await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].detail["site"], json!("palmeiras"));

    // The form: a bad field shown at the field, nothing stored; a good one redirects.
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let form = [
        ("effective_from", "2026-06-01"),
        ("peak_price", "abc"),
        ("offpeak_price", "0,60"),
        ("peak_start", "17:30"),
        ("peak_end", "20:30"),
        ("peak_weekdays", "mon"),
        ("peak_weekdays", "fri"),
        ("idle_grace_min", "15"),
        ("idle_fee_per_min", "0,10"),
        ("max_kwh", "150"),
    ];
    let (s, _, b) = send(
        &f.app,
        post_form("/sites/palmeiras/tariff", &cookie, &form, false),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("id=\"e-peak_price\""), "{page}");
    assert!(page.contains("Nada foi salvo"), "{page}");
    assert_eq!(f.store.tariff_versions(f.home).await.unwrap().len(), 1);
    let mut good = form.to_vec();
    good[1] = ("peak_price", "3,50");
    let (s, h, _) = send(
        &f.app,
        post_form("/sites/palmeiras/tariff", &cookie, &good, false),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/sites/palmeiras/tariff?salvo=1");
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/tariff?salvo=1", &cookie),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK);
    for expected in [
        "Nova versão da tarifa registrada.",
        "01/06/2026",
        "01/03/2026",
        "ponta R$ 3,50 · fora de ponta R$ 0,60",
        "página de tarifa",
        "sindico@example.com",
        "Registrar nova versão",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    let (s, _, b) = send(&f.app, get_bearer(url, &token)).await;
    assert_eq!(s, StatusCode::OK);
    let list = json_of(&b);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["data"][0]["effective_from"], json!("2026-06-01"));
    assert_eq!(list["in_config"], json!(false));
    assert_eq!(audit_actions(&f.store, "tariff_add").await.len(), 2);
}

async fn a_config_tariff_is_read_only(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, token) = login(&f.app, "admin@example.com").await;
    let (s, _, b) = send(&f.app, get_cookie("/sites/fixo/tariff", &cookie)).await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("definido no arquivo de configuração"),
        "{page}"
    );
    assert!(page.contains("R$ 3,08/kWh"), "{page}");
    assert!(page.contains("arquivo de configuração"), "{page}");
    assert!(!page.contains("Registrar nova versão"), "{page}");
    let (s, _, b) = send(
        &f.app,
        post_json("/api/v1/sites/fixo/tariffs", &token, good_tariff()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", text(&b));
    let (s, _, _) = send(
        &f.app,
        post_form(
            "/sites/fixo/tariff",
            &cookie,
            &[("effective_from", "2026-01-01")],
            false,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(f.store.tariff_versions(f.fixed).await.unwrap().len(), 1);
}

test_both_backends!(
    settings_page_is_read_only_and_shows_no_secret,
    test_connection_reports_ok_and_then_the_outage,
    a_second_click_while_probing_is_told_to_wait,
    tariff_versions_are_validated_audited_and_listed,
    a_config_tariff_is_read_only,
);
