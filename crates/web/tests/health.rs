//! `/health/ready`, `/health` and `/metrics` in-process against a real store, on SQLite and
//! PostgreSQL: pass when all is well, warn (200, never fail) for vendor trouble, fail (503)
//! without the store; only configured dependencies are checked; metric names and bounded
//! labels after some requests. Each test records into its own local Prometheus recorder (the
//! global one may be installed once per process); `#[tokio::test]` runs on one thread, so
//! the thread-local default recorder sees everything the app records.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{TimeDelta, Utc};
use common::{add_site, cycle, link, send, site_settings};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vetric_domain::ConnectorStatus;
use vetric_domain::Secret;
use vetric_engine::GatewayStatus;
use vetric_store::testing::TestDb;
use vetric_store::{BreakerState, NewNotification, SiteId, VendorLinkRow, test_both_backends};
use vetric_web::notifications::SiteGateway;
use vetric_web::{AppState, OpsSettings, router};

struct Fixture {
    app: Router,
    polled: SiteId,
}

/// Two sites: `palmeiras` is polled (a good cycle just now), `sem-fornecedor` has no vendor
/// account configured.
async fn fixture(db: &TestDb) -> Fixture {
    let handle = vetric_web::metrics::builder().build_recorder().handle();
    fixture_with(db, handle).await
}

async fn fixture_with(db: &TestDb, handle: PrometheusHandle) -> Fixture {
    let store = db.store.clone();
    let polled = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let unpolled = add_site(&store, "sem-fornecedor", "Sem Fornecedor").await;
    store
        .write_cycle(polled, &cycle(Utc::now(), ConnectorStatus::Available))
        .await
        .unwrap();
    let state = AppState::new(
        store,
        vec![
            site_settings(polled, "palmeiras", "palmeiras"),
            site_settings(unpolled, "sem-fornecedor", "sem-fornecedor"),
        ],
        Some("http://vetric.test".parse().unwrap()),
        CancellationToken::new(),
    )
    .with_ops(OpsSettings {
        metrics: Some(handle),
        without_vendor: HashSet::from([unpolled]),
        store_timeout: Duration::from_secs(2),
        ..OpsSettings::default()
    });
    Fixture {
        app: router(state),
        polled,
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn health(app: &Router) -> (StatusCode, Value) {
    let (status, headers, body) = get(app, "/health").await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// Records a failed cycle: the last good read `data_age` ago, a cycle attempt just now.
async fn fail_link(db: &TestDb, site: SiteId, data_age: TimeDelta, kind: &str, message: &str) {
    let now = Utc::now();
    let row = VendorLinkRow {
        last_success: Some(now - data_age),
        last_error_kind: Some(kind.into()),
        last_error_message: Some(message.into()),
        last_error_at: Some(now),
        consecutive_failures: 3,
        breaker: BreakerState::Open,
        charger_count_last_good: Some(1),
        updated_at: now,
    };
    db.store
        .write_link_only(site, &row, &[], &[])
        .await
        .unwrap();
}

async fn all_good_is_pass(db: &TestDb) {
    let f = fixture(db).await;
    let (status, h) = health(&f.app).await;
    assert_eq!(status, StatusCode::OK, "{h:#}");
    assert_eq!(h["status"], "pass", "{h:#}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let store = &h["checks"]["store:responseTime"][0];
    assert_eq!(store["status"], "pass");
    assert_eq!(store["observedUnit"], "ms");
    assert!(store["observedValue"].as_f64().is_some());
    assert!(store["time"].is_string());
    let vendor = &h["checks"]["vendor:palmeiras"][0];
    assert_eq!(vendor["status"], "pass", "{h:#}");
    assert_eq!(vendor["link"], "up");
    assert_eq!(vendor["breaker"], "closed");
    assert_eq!(vendor["observedUnit"], "s");
    assert!(vendor["observedValue"].as_f64().unwrap() < 60.0);
    assert!(vendor.get("output").is_none());
    assert_eq!(h["checks"]["ingest:palmeiras"][0]["status"], "pass");

    // A site without a vendor account has no vendor or ingest check; nothing that is not
    // built yet (gateway, outbox) appears either.
    let names: Vec<&str> = h["checks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        ["ingest:palmeiras", "store:responseTime", "vendor:palmeiras"]
    );

    let (status, headers, body) = get(&f.app, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
    assert_eq!(&body[..], br#"{"status":"pass"}"#);
    let (status, _, _) = get(&f.app, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
}

async fn vendor_failing_is_warn_not_fail(db: &TestDb) {
    let f = fixture(db).await;
    fail_link(
        db,
        f.polled,
        TimeDelta::seconds(45),
        "http_502",
        "CVE-Pro chargers: HTTP 502 (circuit breaker open)",
    )
    .await;
    let (status, h) = health(&f.app).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a vendor incident never fails /health"
    );
    assert_eq!(h["status"], "warn", "{h:#}");
    let vendor = &h["checks"]["vendor:palmeiras"][0];
    assert_eq!(vendor["status"], "warn");
    assert_eq!(vendor["link"], "failing");
    assert_eq!(vendor["breaker"], "open");
    assert_eq!(vendor["freshness"], "stale");
    assert_eq!(
        vendor["output"],
        "CVE-Pro chargers: HTTP 502 (circuit breaker open)"
    );
    let age = vendor["observedValue"].as_f64().unwrap();
    assert!((44.0..120.0).contains(&age), "{age}");
    // The loop itself is alive: it recorded a cycle just now.
    assert_eq!(h["checks"]["ingest:palmeiras"][0]["status"], "pass");
    assert_eq!(h["checks"]["store:responseTime"][0]["status"], "pass");
    let (status, _, _) = get(&f.app, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
}

async fn shape_changed_is_warn(db: &TestDb) {
    let f = fixture(db).await;
    fail_link(
        db,
        f.polled,
        TimeDelta::seconds(5),
        "shape_changed",
        "shape changed at chargePointList",
    )
    .await;
    let (status, h) = health(&f.app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "warn");
    let vendor = &h["checks"]["vendor:palmeiras"][0];
    assert_eq!(vendor["status"], "warn");
    assert_eq!(vendor["link"], "shape_changed");
    assert_eq!(vendor["output"], "shape changed at chargePointList");
}

async fn stale_data_and_stuck_ingest_are_warn(db: &TestDb) {
    let f = fixture(db).await;
    // The last good cycle 10 minutes ago, and nothing since: data offline, loop stuck.
    let long_ago = Utc::now() - TimeDelta::minutes(10) - TimeDelta::seconds(5);
    db.store
        .write_link_only(f.polled, &link(long_ago), &[], &[])
        .await
        .unwrap();
    let (status, h) = health(&f.app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "warn", "{h:#}");
    let vendor = &h["checks"]["vendor:palmeiras"][0];
    assert_eq!(vendor["status"], "warn");
    assert_eq!(vendor["link"], "up");
    assert_eq!(vendor["freshness"], "offline");
    assert!(
        vendor["output"]
            .as_str()
            .unwrap()
            .starts_with("data offline since"),
        "{vendor}"
    );
    let ingest = &h["checks"]["ingest:palmeiras"][0];
    assert_eq!(ingest["status"], "warn");
    assert!(ingest["observedValue"].as_f64().unwrap() >= 600.0);
    assert!(
        ingest["output"]
            .as_str()
            .unwrap()
            .starts_with("no ingest cycle recorded since")
    );
}

async fn store_gone_is_fail(db: &TestDb) {
    let f = fixture(db).await;
    db.store.close().await;
    let (status, h) = health(&f.app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["status"], "fail");
    let store = &h["checks"]["store:responseTime"][0];
    assert_eq!(store["status"], "fail");
    assert!(store["output"].is_string());
    // Nothing else can be read without the store, and no error detail leaks.
    assert_eq!(h["checks"].as_object().unwrap().len(), 1);
    assert!(!h.to_string().contains(&db.url));
    let (status, headers, body) = get(&f.app, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/health+json");
    assert_eq!(&body[..], br#"{"status":"fail"}"#);
    // Liveness does not depend on the store.
    let (status, _, _) = get(&f.app, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
}

test_both_backends!(
    all_good_is_pass,
    vendor_failing_is_warn_not_fail,
    shape_changed_is_warn,
    stale_data_and_stuck_ingest_are_warn,
    store_gone_is_fail,
);

/// A never-polled but configured site warns (the vendor may never have answered); it does
/// not fail.
#[tokio::test]
async fn configured_but_never_polled_is_warn() {
    let db = TestDb::sqlite().await;
    let site = add_site(&db.store, "novo", "Novo").await;
    let state = AppState::new(
        db.store.clone(),
        vec![site_settings(site, "novo", "Novo")],
        None,
        CancellationToken::new(),
    );
    let app = router(state);
    let (status, h) = health(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "warn");
    let vendor = &h["checks"]["vendor:novo"][0];
    assert_eq!(vendor["link"], "never_polled");
    assert_eq!(vendor["output"], "no vendor poll recorded yet");
    assert!(vendor["observedValue"].is_null());
    assert_eq!(
        h["checks"]["ingest:novo"][0]["output"],
        "no ingest cycle recorded yet"
    );
    // Without a metrics handle, /metrics is simply not there.
    let (status, _, _) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn metrics_after_requests(db: &TestDb) {
    let recorder = vetric_web::metrics::builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let f = fixture_with(db, handle).await;
    let app = f.app.clone();
    fail_link(
        db,
        f.polled,
        TimeDelta::seconds(30),
        "http_502",
        "CVE-Pro: HTTP 502",
    )
    .await;
    for uri in [
        "/health/live",
        "/health",
        "/health/ready",
        "/sites/palmeiras",
        "/no/such/page/12345",
        "/api/v1/sites/palmeiras/chargers",
        "/api/v1/nothing-here-67890",
    ] {
        let _ = get(&app, uri).await;
    }
    let (status, headers, body) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    for name in [
        "vetric_build_info{version=\"",
        "vetric_http_requests_total{",
        "vetric_http_request_duration_seconds_bucket{",
        "vetric_http_request_duration_seconds_count{",
        "vetric_store_up 1",
        "vetric_sse_clients 0",
        "vetric_vendor_up{site=\"palmeiras\"} 0",
        "vetric_data_age_seconds{site=\"palmeiras\"} ",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert!(
        text.contains(r#"route="/health",method="GET",status="200""#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/sites/{slug}""#),
        "route templates, not paths:\n{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/sites/{slug}/chargers""#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    // Label values are bounded: no raw paths, no slugs in routes. Only the label sets are
    // searched: a sample value such as a duration sum of 0.000123455 s contains "12345" too.
    let labels: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some(&l[l.find('{')?..=l.rfind('}')?]))
        .collect();
    for raw in ["12345", "67890", "/sites/palmeiras\"", "__private__"] {
        assert!(
            labels.iter().all(|l| !l.contains(raw)),
            "{raw} leaked into a label:\n{text}"
        );
    }
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vetric_data_age_seconds{site=\"palmeiras\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((29.0..120.0).contains(&age), "{age}");
}

test_both_backends!(metrics_after_requests);

/// The live stream is counted while open and uncounted when the client goes.
#[tokio::test]
async fn sse_clients_gauge_follows_streams() {
    let recorder = vetric_web::metrics::builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("vetric_sse_clients "))
            .map(|v| v.parse::<f64>().unwrap())
    };
    {
        let a = vetric_web::metrics::SseClient::open();
        let _b = vetric_web::metrics::SseClient::open();
        assert_eq!(gauge(&handle.render()), Some(2.0));
        drop(a);
        assert_eq!(gauge(&handle.render()), Some(1.0));
    }
    assert_eq!(gauge(&handle.render()), Some(0.0));
}

// ------------------------------------------------------------------ gateway and outbox

/// The two sites of [`fixture`], both with a WhatsApp gateway configured, and the gateway
/// states the dispatcher would have recorded.
async fn whatsapp_fixture(db: &TestDb, gateways: GatewayStatus) -> (Router, SiteId, SiteId) {
    let store = db.store.clone();
    let polled = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "sem-fornecedor", "Sem Fornecedor").await;
    store
        .write_cycle(polled, &cycle(Utc::now(), ConnectorStatus::Available))
        .await
        .unwrap();
    let gateway = |site| SiteGateway {
        site,
        base_url: "http://127.0.0.1:9".parse().unwrap(),
        instance: "vetric".into(),
        api_key: Secret::new("health-test-key"),
    };
    let state = AppState::new(
        store,
        vec![
            site_settings(polled, "palmeiras", "palmeiras"),
            site_settings(other, "sem-fornecedor", "sem-fornecedor"),
        ],
        None,
        CancellationToken::new(),
    )
    .with_ops(OpsSettings {
        without_vendor: HashSet::from([other]),
        gateways,
        ..OpsSettings::default()
    })
    .with_gateways(vec![gateway(polled), gateway(other)]);
    (router(state), polled, other)
}

/// Enqueues an e-mail row of `site` due at `not_before`.
async fn enqueue(db: &TestDb, site: SiteId, key: &str, not_before: chrono::DateTime<Utc>) {
    let n = NewNotification {
        dedup_key: format!("health-test:{key}"),
        rule: "backlog_stale".into(),
        audience: "operator".into(),
        channel: "email".into(),
        resident_id: None,
        recipient: Some("ops@example.com".into()),
        scope: "site".into(),
        session_vendor_id: None,
        subject: Some("teste".into()),
        body: "teste".into(),
        ref_code: format!("T{key}"),
        not_before,
    };
    db.store.enqueue(Some(site), &n).await.unwrap().unwrap();
}

async fn gateway_and_outbox_checks(db: &TestDb) {
    let gateways = GatewayStatus::default();
    let (app, polled, other) = whatsapp_fixture(db, gateways.clone()).await;
    let now = Utc::now();
    gateways.record(polled, "open", true, None, now);

    // Empty backlog, gateway open: pass. `sem-fornecedor` has no gateway check recorded yet.
    let (status, h) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{h:#}");
    let gw = &h["checks"]["gateway:palmeiras"][0];
    assert_eq!(gw["status"], "pass", "{h:#}");
    assert_eq!(gw["observedValue"], "open");
    assert_eq!(gw["observedUnit"], "state");
    let outbox = &h["checks"]["outbox:palmeiras"][0];
    assert_eq!(outbox["status"], "pass", "{h:#}");
    assert_eq!(outbox["backlog"], 0);
    assert_eq!(outbox["inDoubt"], 0);
    assert_eq!(outbox["observedValue"], 0.0);
    assert_eq!(outbox["observedUnit"], "s");
    let unseen = &h["checks"]["gateway:sem-fornecedor"][0];
    assert_eq!(unseen["status"], "warn", "{h:#}");
    assert!(unseen["observedValue"].is_null());
    assert_eq!(h["checks"]["outbox:sem-fornecedor"][0]["status"], "pass");

    // The gateway closes: warn (200), observed value the state.
    gateways.record(other, "close", false, None, now);
    let (status, h) = health(&app).await;
    assert_eq!(status, StatusCode::OK);
    let gw = &h["checks"]["gateway:sem-fornecedor"][0];
    assert_eq!(gw["status"], "warn", "{h:#}");
    assert_eq!(gw["observedValue"], "close");
    assert!(
        gw["output"].as_str().unwrap().contains("not open (close)"),
        "{gw}"
    );
    gateways.record(other, "open", true, None, now);

    // A fresh pending message: owed, but within the site's 15 minutes.
    enqueue(db, polled, "fresh", Utc::now()).await;
    let (_, h) = health(&app).await;
    let outbox = &h["checks"]["outbox:palmeiras"][0];
    assert_eq!(outbox["status"], "pass", "{h:#}");
    assert_eq!(outbox["backlog"], 1);
    assert_eq!(h["status"], "pass", "{h:#}");

    // Claimed, and the claim runs out mid-send: in doubt, so warn (200), never fail.
    let claimed = db
        .store
        .claim_due("health-test", Utc::now(), TimeDelta::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let expired = db
        .store
        .expire_leases(Utc::now() + TimeDelta::seconds(5))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    let (status, h) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{h:#}");
    assert_eq!(h["status"], "warn");
    let outbox = &h["checks"]["outbox:palmeiras"][0];
    assert_eq!(outbox["status"], "warn", "{h:#}");
    assert_eq!(outbox["inDoubt"], 1);
    assert_eq!(outbox["backlog"], 1);
    assert!(
        outbox["output"].as_str().unwrap().contains("in doubt"),
        "{outbox}"
    );
    // Per site: the other site's outbox is still fine.
    assert_eq!(h["checks"]["outbox:sem-fornecedor"][0]["status"], "pass");

    // A pending message of the other site due 20 minutes ago: older than 15 min, warn.
    enqueue(db, other, "old", Utc::now() - TimeDelta::minutes(20)).await;
    let (status, h) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{h:#}");
    let outbox = &h["checks"]["outbox:sem-fornecedor"][0];
    assert_eq!(outbox["status"], "warn", "{h:#}");
    assert_eq!(outbox["inDoubt"], 0);
    let age = outbox["observedValue"].as_f64().unwrap();
    assert!(age >= 20.0 * 60.0, "{age}");
    assert!(
        outbox["output"].as_str().unwrap().contains("limit 15 min"),
        "{outbox}"
    );
}

/// No site has a WhatsApp gateway: no `gateway:` or `outbox:` check, even with rows owed.
async fn gateway_and_outbox_left_out_when_unconfigured(db: &TestDb) {
    let f = fixture(db).await;
    enqueue(db, f.polled, "old", Utc::now() - TimeDelta::hours(2)).await;
    let (status, h) = health(&f.app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["status"], "pass", "{h:#}");
    let names: Vec<&str> = h["checks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        ["ingest:palmeiras", "store:responseTime", "vendor:palmeiras"]
    );
}

/// `/metrics` shows the outbox backlog and its oldest age, read from the store at scrape.
async fn metrics_show_the_outbox(db: &TestDb) {
    let recorder = vetric_web::metrics::builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let f = fixture_with(db, handle).await;
    let (_, _, body) = get(&f.app, "/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("vetric_outbox_backlog 0"), "{text}");
    assert!(
        text.contains("vetric_outbox_oldest_age_seconds 0"),
        "{text}"
    );

    enqueue(db, f.polled, "old", Utc::now() - TimeDelta::minutes(20)).await;
    enqueue(db, f.polled, "later", Utc::now() + TimeDelta::hours(1)).await;
    let (_, _, body) = get(&f.app, "/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    // Both are owed; only the due one has an age.
    assert!(text.contains("vetric_outbox_backlog 2"), "{text}");
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vetric_outbox_oldest_age_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(age >= 20.0 * 60.0, "{age}");
}

test_both_backends!(
    gateway_and_outbox_checks,
    gateway_and_outbox_left_out_when_unconfigured,
    metrics_show_the_outbox,
);
