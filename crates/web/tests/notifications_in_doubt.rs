//! The operator's decision on a notification left in doubt (RELIABILITY R2: what
//! reconciliation cannot settle waits for an operator, never a blind resend), in-process on
//! both backends: "Foi entregue" (sent), "Reenviar mesmo assim" (pending again, attempts kept)
//! and "Descartar" (cancelled, reason `operator`) from the page and the API, each audited in
//! the same transaction; a row that is no longer in doubt (e.g. reconciliation settled it
//! first) is a 409 naming its status and stays as it was; another site's manager gets 404 and a
//! cross-site form is refused; `/health`'s outbox check clears once nothing is in doubt; and a
//! resend goes through the real dispatcher to the Evolution simulator exactly once, with the
//! same reference code.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::{ORIGIN, add_site, add_users, get_cookie, json_of, login, send, text};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;
use vetric_domain::Secret;
use vetric_engine::dispatch::{DispatchSettings, Dispatcher, SiteDispatch, WhatsAppGateway};
use vetric_evolution::{EvolutionClient, EvolutionConfig};
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, EvolutionSimHandle,
};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditRow, NewNotification, NewResident, OutboxEntry, OutboxStatus, ResidentId, Resolution,
    Role, SiteId, Store, test_both_backends,
};
use vetric_web::notifications::SiteGateway;
use vetric_web::{AppState, router};

const PHONE: &str = "5511912345678";
const ACTION: &str = "notification_in_doubt_resolve";

struct Fixture {
    app: Router,
    store: Store,
    home: SiteId,
    resident: ResidentId,
}

async fn fixture(db: &TestDb) -> Fixture {
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
    // `/health` shows the outbox check of sites with a gateway; nothing here calls it.
    .with_gateways(vec![SiteGateway {
        site: home,
        base_url: Url::parse("http://127.0.0.1:9").unwrap(),
        instance: "Palmeiras".into(),
        api_key: Secret::new("evolution-key-abcd1234"),
    }]);
    Fixture {
        app: router(state),
        store,
        home,
        resident,
    }
}

impl Fixture {
    async fn enqueue(&self, key: &str) -> i64 {
        let n = NewNotification {
            dedup_key: format!("doubt:{key}"),
            rule: "session_finished".into(),
            audience: "resident".into(),
            channel: "whatsapp".into(),
            resident_id: Some(self.resident.0),
            recipient: None,
            scope: "session:1".into(),
            session_vendor_id: Some(1),
            subject: None,
            body: format!("🔋 Recarga concluída ({key})"),
            ref_code: vetric_domain::ref_code(key),
            not_before: Utc::now() - TimeDelta::minutes(1),
        };
        self.store
            .enqueue(Some(self.home), &n)
            .await
            .unwrap()
            .unwrap()
    }

    /// Rows `keys` claimed by a process that dies mid-send, then expired: all in doubt.
    /// Returns their ids and an instant after the lease.
    async fn in_doubt(&self, keys: &[&str]) -> (Vec<i64>, DateTime<Utc>) {
        let mut ids = Vec::new();
        for k in keys {
            ids.push(self.enqueue(k).await);
        }
        let now = Utc::now();
        let claimed = self
            .store
            .claim_due("dead", now, TimeDelta::seconds(60), 100)
            .await
            .unwrap();
        assert_eq!(claimed.len(), ids.len());
        let after = now + TimeDelta::seconds(61);
        assert_eq!(self.store.expire_leases(after).await.unwrap(), ids);
        (ids, after)
    }

    async fn entry(&self, id: i64) -> OutboxEntry {
        self.store.outbox_entry(id).await.unwrap().unwrap()
    }

    async fn audits(&self) -> Vec<AuditRow> {
        self.store
            .audit_log(200)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == ACTION)
            .collect()
    }

    async fn resolve_api(
        &self,
        slug: &str,
        id: i64,
        token: &str,
        body: Value,
    ) -> (StatusCode, Bytes) {
        let req = Request::post(format!("/api/v1/sites/{slug}/notifications/{id}/resolve"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (s, _, b) = send(&self.app, req).await;
        (s, b)
    }

    async fn resolve_form(
        &self,
        id: i64,
        cookie: &str,
        decision: &str,
        origin: &str,
    ) -> (StatusCode, String, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("decision", decision)
            .finish();
        let req = Request::post(format!("/sites/palmeiras/notifications/{id}/resolve"))
            .header(header::COOKIE, format!("vetric_session={cookie}"))
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (s, h, b) = send(&self.app, req).await;
        let location = h
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (s, location, text(&b))
    }

    /// `/health`'s `outbox:palmeiras` check: (status, inDoubt).
    async fn outbox_health(&self) -> (String, i64) {
        let (_, _, b) = send(
            &self.app,
            Request::get("/health").body(Body::empty()).unwrap(),
        )
        .await;
        let h = json_of(&b);
        let c = &h["checks"]["outbox:palmeiras"][0];
        (
            c["status"].as_str().unwrap_or_default().to_owned(),
            c["inDoubt"].as_i64().unwrap_or(-1),
        )
    }
}

async fn each_decision_settles_the_row_and_is_audited(db: &TestDb) {
    let f = fixture(db).await;
    let (ids, _) = f.in_doubt(&["a", "b", "c"]).await;
    let (sent, resend, discard) = (ids[0], ids[1], ids[2]);
    assert_eq!(f.outbox_health().await, ("warn".to_owned(), 3));

    // The page explains "em dúvida" and offers the three buttons; the filter lists them.
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/notifications?status=in_doubt", &cookie),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK, "{page}");
    for expected in [
        "3 mensagens em dúvida",
        "pode ter chegado ao morador ou não",
        "Foi entregue",
        "Reenviar mesmo assim",
        "Descartar",
        "duas vezes",
        &format!("/sites/palmeiras/notifications/{sent}/resolve") as &str,
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    assert_eq!(
        page.matches("name=\"decision\" value=\"resend\"").count(),
        3
    );

    // "Foi entregue" from the page (an admin).
    let (admin_cookie, _) = login(&f.app, "admin@example.com").await;
    let (s, location, body) = f.resolve_form(sent, &admin_cookie, "sent", ORIGIN).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert!(location.contains("ok=entregue"), "{location}");
    let e = f.entry(sent).await;
    assert_eq!(e.row.status, OutboxStatus::Sent);
    assert_eq!(e.row.reason.as_deref(), Some("operator_confirmed"));
    assert!(e.row.sent_at.is_some());
    assert_eq!(e.attempts.last().unwrap().outcome, "operator_sent");

    // "Reenviar mesmo assim" from the API (the site's manager): pending, due now, attempts kept.
    let (s, b) = f
        .resolve_api("palmeiras", resend, &token, json!({ "decision": "resend" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(json_of(&b)["data"]["status"], "pending");
    let e = f.entry(resend).await;
    assert_eq!(e.row.status, OutboxStatus::Pending);
    assert_eq!(e.row.attempts, 1, "attempts kept");
    assert!(e.row.next_attempt_at <= Utc::now());
    assert_eq!(e.attempts.last().unwrap().outcome, "operator_resend");

    // "Descartar" from the API.
    let (s, b) = f
        .resolve_api(
            "palmeiras",
            discard,
            &token,
            json!({ "decision": "discard" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let e = f.entry(discard).await;
    assert_eq!(e.row.status, OutboxStatus::Cancelled);
    assert_eq!(e.row.reason.as_deref(), Some("operator"));

    // One audit row per decision, naming it and the row.
    let audits = f.audits().await;
    assert_eq!(audits.len(), 3, "{audits:#?}");
    for (id, decision) in [(sent, "sent"), (resend, "resend"), (discard, "discard")] {
        let a = audits
            .iter()
            .find(|a| a.target == format!("notification:{id}"))
            .unwrap_or_else(|| panic!("no audit row for {id}: {audits:#?}"));
        assert_eq!(a.detail["decision"], decision, "{a:#?}");
        assert_eq!(a.detail["site"], "palmeiras");
    }

    // Nothing in doubt any more: /health's outbox check clears and the page says nothing.
    let (status, in_doubt) = f.outbox_health().await;
    assert_eq!(in_doubt, 0);
    assert_eq!(status, "pass");
    let (_, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/notifications", &cookie),
    )
    .await;
    let page = text(&b);
    assert!(!page.contains("em dúvida</h3>"), "{page}");
    assert!(page.contains("descartada por um operador"), "{page}");
    assert!(page.contains("entrega confirmada manualmente"), "{page}");
}

async fn a_row_no_longer_in_doubt_is_a_409_and_unchanged(db: &TestDb) {
    let f = fixture(db).await;
    let (ids, _) = f.in_doubt(&["a", "b"]).await;
    let (raced, bad) = (ids[0], ids[1]);
    let pending = f.enqueue("p").await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;

    // Reconciliation settles the row just before the operator clicks.
    let found = Resolution::Sent {
        gateway_message_id: Some("GW1".into()),
    };
    assert!(f.store.resolve_in_doubt(raced, &found, None).await.unwrap());
    let before = f.entry(raced).await;
    for decision in ["sent", "resend", "discard"] {
        let (s, b) = f
            .resolve_api("palmeiras", raced, &token, json!({ "decision": decision }))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{}", text(&b));
        let e = &json_of(&b)["error"];
        assert_eq!(e["code"], "already_resolved", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("a mensagem já foi resolvida: sent"),
            "{e}"
        );
    }
    let (s, _, page) = f.resolve_form(raced, &cookie, "resend", ORIGIN).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(page.contains("A mensagem já foi resolvida: sent"), "{page}");
    assert_eq!(
        f.entry(raced).await,
        before,
        "a settled row is left as it was"
    );

    // A row that was never in doubt.
    let before = f.entry(pending).await;
    let (s, b) = f
        .resolve_api(
            "palmeiras",
            pending,
            &token,
            json!({ "decision": "discard" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(text(&b).contains("a mensagem já foi resolvida: pending"));
    assert_eq!(f.entry(pending).await, before);

    // A bad decision is named and changes nothing.
    let doubt = f.entry(bad).await;
    for (body, field) in [
        (json!({}), "decision"),
        (json!({ "decision": 1 }), "decision"),
        (json!({ "decision": "talvez" }), "decision"),
        (json!({ "decision": "sent", "nota": "x" }), "nota"),
    ] {
        let (s, b) = f.resolve_api("palmeiras", bad, &token, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", text(&b));
        assert_eq!(json_of(&b)["error"]["field"], field, "{body}");
    }
    let (s, _, _) = f.resolve_form(bad, &cookie, "talvez", ORIGIN).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.entry(bad).await, doubt);
    assert!(f.audits().await.is_empty());
}

async fn another_sites_manager_gets_404_and_cross_site_forms_are_refused(db: &TestDb) {
    let f = fixture(db).await;
    let (ids, _) = f.in_doubt(&["a"]).await;
    let id = ids[0];
    let before = f.entry(id).await;
    let (cookie, token) = login(&f.app, "outro@example.com").await;
    for slug in ["palmeiras", "outro"] {
        let (s, _) = f
            .resolve_api(slug, id, &token, json!({ "decision": "sent" }))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{slug}");
    }
    let (s, _, _) = f.resolve_form(id, &cookie, "sent", ORIGIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The site's own manager, from another origin (CSRF): refused.
    let (sindico, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, _) = f
        .resolve_form(id, &sindico, "sent", "https://evil.example")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(f.entry(id).await, before);
    assert!(f.audits().await.is_empty());
}

fn gateway(sim: &EvolutionSimHandle) -> WhatsAppGateway {
    let mut cfg = EvolutionConfig::new(
        Url::parse(sim.base_url()).unwrap(),
        Secret::new(DEFAULT_API_KEY),
        DEFAULT_INSTANCE,
    );
    cfg.request_timeout = Duration::from_secs(5);
    WhatsAppGateway {
        client: EvolutionClient::new(cfg).unwrap(),
        // The default: absence at the gateway proves nothing, so the row waits for a person.
        stores_messages: false,
    }
}

async fn resend_goes_out_once_through_the_dispatcher(db: &TestDb) {
    let f = fixture(db).await;
    let sim = EvolutionSim::start(
        EvolutionSimConfig {
            stores_messages: false,
            ..EvolutionSimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let id = f.enqueue("a").await;
    let ref_code = f.entry(id).await.row.ref_code;
    // A dispatcher dies between claiming the row and recording the gateway's answer.
    let now = Utc::now();
    let claimed = f
        .store
        .claim_due("dead", now, TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let mut d = Dispatcher::new(
        f.store.clone(),
        DispatchSettings {
            owner: "B".into(),
            tick: Duration::from_millis(20),
            lease: Duration::from_secs(120),
            gateway_check: Duration::ZERO,
            ..DispatchSettings::default()
        },
        vec![SiteDispatch {
            site: f.home,
            slug: "palmeiras".into(),
            name: "Jardim Palmeiras".into(),
            tz: chrono_tz::America::Sao_Paulo,
            whatsapp: Some(gateway(&sim)),
        }],
    );
    let cancel = CancellationToken::new();
    let after_lease = now + TimeDelta::seconds(61);
    let report = d.tick(after_lease, &cancel).await.unwrap();
    assert_eq!(
        (report.expired, report.still_in_doubt),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(f.entry(id).await.row.status, OutboxStatus::InDoubt);
    assert!(sim.messages().is_empty(), "never a blind resend");

    let (_, token) = login(&f.app, "sindico@example.com").await;
    let (s, b) = f
        .resolve_api("palmeiras", id, &token, json!({ "decision": "resend" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    for i in 1..=3 {
        d.tick(after_lease + TimeDelta::minutes(i), &cancel)
            .await
            .unwrap();
    }
    let e = f.entry(id).await;
    assert_eq!(e.row.status, OutboxStatus::Sent, "{e:#?}");
    assert_eq!(e.row.attempts, 2, "the resend is the second attempt");
    let sent = sim.messages();
    assert_eq!(sent.len(), 1, "sent exactly once: {sent:#?}");
    assert!(sent[0].text.contains(&ref_code), "same reference code");
    assert_eq!(
        e.row.gateway_message_id.as_deref(),
        Some(sent[0].id.as_str())
    );
    assert_eq!(f.audits().await.len(), 1);
}

test_both_backends!(
    each_decision_settles_the_row_and_is_audited,
    a_row_no_longer_in_doubt_is_a_409_and_unchanged,
    another_sites_manager_gets_404_and_cross_site_forms_are_refused,
    resend_goes_out_once_through_the_dispatcher,
);
