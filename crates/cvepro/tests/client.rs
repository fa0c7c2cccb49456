//! The client against tiny in-test fake CVE-Pro servers on 127.0.0.1:0: login single flight,
//! 401 → re-login → replay, retries, 429, timeouts, breaker, headers and tag resolution.
//! (The client against the real simulator, fault by fault: `against_simulator.rs`.)

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vetric_cvepro::{BreakerState, CveProClient, CveProConfig, CveProError, ErrorKind};
use vetric_domain::Tag;

const CHARGEPOINTS: &str = include_str!("fixtures/cvepro-chargepoints.json");
const TRANSACTIONS: &str = include_str!("fixtures/cvepro-transactions.json");
const LOGIN: &str = include_str!("fixtures/cvepro-login.json");
const ERRORS: &str = include_str!("fixtures/cvepro-errors.json");

const API_KEY: &str = "2f7c1d7e-0000-4000-8000-canary-key";
const PASSWORD: &str = "canary-password-123";

#[derive(Clone)]
enum Reply {
    Json(u16, String),
    Html(u16, String),
    RetryAfter(String),
    Hang,
}

#[derive(Default)]
struct Fake {
    logins: AtomicUsize,
    chargepoint_calls: AtomicUsize,
    transaction_calls: AtomicUsize,
    login_delay: Mutex<Duration>,
    login_reply: Mutex<Option<Reply>>,
    valid_tokens: Mutex<HashSet<String>>,
    reject_all_tokens: Mutex<bool>,
    chargepoint_script: Mutex<VecDeque<Reply>>,
    transaction_script: Mutex<VecDeque<Reply>>,
    seen_headers: Mutex<Vec<HeaderMap>>,
    seen_queries: Mutex<Vec<String>>,
}

impl Fake {
    fn script_chargepoints(&self, replies: impl IntoIterator<Item = Reply>) {
        self.chargepoint_script
            .lock()
            .expect("lock")
            .extend(replies);
    }
    fn script_transactions(&self, replies: impl IntoIterator<Item = Reply>) {
        self.transaction_script
            .lock()
            .expect("lock")
            .extend(replies);
    }
    fn revoke_all(&self) {
        self.valid_tokens.lock().expect("lock").clear();
    }
}

async fn render(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, body) => (
            StatusCode::from_u16(status).expect("status"),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Reply::Html(status, body) => (
            StatusCode::from_u16(status).expect("status"),
            [(header::CONTENT_TYPE, "text/html")],
            body,
        )
            .into_response(),
        Reply::RetryAfter(value) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, value)],
            r#"{"error":"Too Many Requests"}"#.to_owned(),
        )
            .into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

async fn login(State(f): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    let n = f.logins.fetch_add(1, Ordering::SeqCst) + 1;
    f.seen_headers.lock().expect("lock").push(headers.clone());
    let delay = *f.login_delay.lock().expect("lock");
    tokio::time::sleep(delay).await;
    let scripted = f.login_reply.lock().expect("lock").clone();
    if let Some(reply) = scripted {
        return render(reply).await;
    }
    let creds: Value = serde_json::from_str(&body).expect("login body is JSON");
    assert_eq!(creds["password"], PASSWORD);
    assert_eq!(
        headers.get("Api-Key").and_then(|v| v.to_str().ok()),
        Some(API_KEY)
    );
    let mut answer: Value = serde_json::from_str(LOGIN).expect("fixture");
    let token = format!("{:0>160X}", n);
    answer["token"] = Value::from(token.clone());
    f.valid_tokens.lock().expect("lock").insert(token);
    render(Reply::Json(200, answer.to_string())).await
}

fn authorised(f: &Fake, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    !*f.reject_all_tokens.lock().expect("lock")
        && f.valid_tokens.lock().expect("lock").contains(token)
}

const INVALID_AUTH: &str = r#"{"error":"Invalid AUTHORIZATION set in Header!"}"#;

async fn chargepoints(State(f): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    f.chargepoint_calls.fetch_add(1, Ordering::SeqCst);
    f.seen_headers.lock().expect("lock").push(headers.clone());
    if !authorised(&f, &headers) {
        return render(Reply::Json(401, INVALID_AUTH.into())).await;
    }
    let next = f.chargepoint_script.lock().expect("lock").pop_front();
    render(next.unwrap_or_else(|| Reply::Json(200, CHARGEPOINTS.into()))).await
}

async fn transactions(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    f.transaction_calls.fetch_add(1, Ordering::SeqCst);
    f.seen_headers.lock().expect("lock").push(headers.clone());
    f.seen_queries
        .lock()
        .expect("lock")
        .push(query.unwrap_or_default());
    if !authorised(&f, &headers) {
        return render(Reply::Json(401, INVALID_AUTH.into())).await;
    }
    let next = f.transaction_script.lock().expect("lock").pop_front();
    render(next.unwrap_or_else(|| Reply::Json(200, TRANSACTIONS.into()))).await
}

async fn start() -> (Arc<Fake>, url::Url) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/chargepoints", get(chargepoints))
        .route("/api/v1/transaction", get(transactions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (
        fake,
        url::Url::parse(&format!("http://{addr}/")).expect("url"),
    )
}

/// A config with short, test-friendly timings.
fn config(base: url::Url) -> CveProConfig {
    let mut cfg = CveProConfig::new(
        base,
        API_KEY.into(),
        "integracao@example.com",
        PASSWORD.into(),
    );
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry.base = Duration::from_millis(5);
    cfg.retry.cap = Duration::from_millis(20);
    cfg
}

fn client(cfg: CveProConfig) -> CveProClient {
    CveProClient::new(cfg).expect("client builds")
}

fn assert_no_secrets(e: &CveProError) {
    let text = format!("{e} {e:?} {}", e.hint());
    assert!(
        !text.contains(API_KEY) && !text.contains(PASSWORD),
        "secret leaked: {text}"
    );
}

#[tokio::test]
async fn concurrent_callers_cause_exactly_one_login() {
    let (fake, base) = start().await;
    *fake.login_delay.lock().expect("lock") = Duration::from_millis(200);
    let c = client(config(base));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.chargers().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("join").expect("ok").len(), 5);
    }
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1);
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn data_calls_send_the_raw_token_and_nothing_forbidden() {
    let (fake, base) = start().await;
    let c = client(config(base));
    c.snapshot(chrono::Utc::now(), None)
        .await
        .expect("snapshot");
    let token = format!("{:0>160X}", 1);
    let headers = fake.seen_headers.lock().expect("lock").clone();
    assert!(headers.len() >= 3, "login + two data calls");
    for h in &headers[1..] {
        assert_eq!(
            h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
            Some(token.as_str())
        );
        assert_eq!(
            h.get("Api-Key").and_then(|v| v.to_str().ok()),
            Some(API_KEY)
        );
        assert_eq!(
            h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        assert!(h.get("Platform").is_none());
        assert!(h.get("X-Timezone-Offset").is_none());
    }
    let queries = fake.seen_queries.lock().expect("lock").clone();
    assert_eq!(queries.len(), 1);
    let q = &queries[0];
    assert!(!q.to_ascii_lowercase().contains("timezone"), "{q}");
    assert!(
        q.starts_with("fromDate=") && q.contains("%2000:00:00&toDate="),
        "{q}"
    );
}

#[tokio::test]
async fn revoked_token_means_one_relogin_and_a_replay() {
    let (fake, base) = start().await;
    let c = client(config(base));
    c.chargers().await.expect("first");
    fake.revoke_all();
    // Several callers hit the 401 at once: still only one re-login.
    let (a, b, d) = tokio::join!(c.chargers(), c.chargers(), c.chargers());
    assert!(a.is_ok() && b.is_ok() && d.is_ok());
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_second_401_is_an_error() {
    let (fake, base) = start().await;
    *fake.reject_all_tokens.lock().expect("lock") = true;
    let c = client(config(base));
    let err = c.chargers().await.expect_err("401 twice");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(
        fake.logins.load(Ordering::SeqCst),
        2,
        "initial login + one re-login"
    );
    assert_eq!(
        fake.chargepoint_calls.load(Ordering::SeqCst),
        2,
        "call + one replay"
    );
    assert_no_secrets(&err);
}

#[tokio::test]
async fn login_errors_map_to_their_kinds_and_are_not_retried() {
    let errors: Value = serde_json::from_str(ERRORS).expect("fixture");
    for (key, status, kind) in [
        ("login_tenant_not_found", 401, ErrorKind::TenantNotFound),
        ("login_tenant_not_found", 200, ErrorKind::TenantNotFound),
        ("login_401_bad_credentials", 401, ErrorKind::BadCredentials),
    ] {
        let (fake, base) = start().await;
        *fake.login_reply.lock().expect("lock") =
            Some(Reply::Json(status, errors[key].to_string()));
        let c = client(config(base));
        let err = c.chargers().await.expect_err("login fails");
        assert_eq!(err.kind(), kind, "{key} {status}: {err}");
        assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "never retried");
        assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 0);
        assert_no_secrets(&err);
        assert_eq!(c.link_status().last_error.map(|e| e.kind), Some(kind));
    }
}

#[tokio::test]
async fn gateway_5xx_is_retried_then_succeeds() {
    let (fake, base) = start().await;
    let errors: Value = serde_json::from_str(ERRORS).expect("fixture");
    let html = errors["gateway_502_html"]
        .as_str()
        .expect("html")
        .to_owned();
    fake.script_chargepoints([
        Reply::Html(502, html),
        Reply::Html(503, "<html>503</html>".into()),
    ]);
    let c = client(config(base));
    assert_eq!(c.chargers().await.expect("recovers").len(), 5);
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 3);
    let link = c.link_status();
    assert_eq!(link.breaker, BreakerState::Closed);
    assert_eq!(link.consecutive_failures, 0);
    assert!(link.last_success.is_some());
}

#[tokio::test]
async fn other_4xx_is_not_retried() {
    let (fake, base) = start().await;
    fake.script_chargepoints([Reply::Json(404, r#"{"error":"Not Found"}"#.into())]);
    let c = client(config(base));
    let err = c.chargers().await.expect_err("404");
    assert_eq!(err.kind(), ErrorKind::ClientError);
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_when_short_and_refused_when_long() {
    let (fake, base) = start().await;
    fake.script_chargepoints([Reply::RetryAfter("1".into())]);
    let c = client(config(base));
    let started = std::time::Instant::now();
    c.chargers().await.expect("after waiting");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 2);

    fake.script_chargepoints([Reply::RetryAfter("3600".into())]);
    let err = c.chargers().await.expect_err("too long to wait");
    match err {
        CveProError::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_retry_after_not_waited_for_still_holds_for_the_next_calls() {
    let (fake, base) = start().await;
    fake.script_chargepoints([Reply::RetryAfter("3600".into())]);
    let c = client(config(base));
    let err = c.chargers().await.expect_err("too long to wait");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 1);
    // The next poll does not knock again before the vendor said it may: it fails at once,
    // without a request, saying how long is left (an hour is remembered as at most 15 min).
    match c.chargers().await.expect_err("still rate limited") {
        CveProError::RateLimited { retry_after, .. } => {
            assert!(
                retry_after
                    .is_some_and(|d| d > Duration::from_secs(800) && d <= Duration::from_secs(900)),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.chargepoint_calls.load(Ordering::SeqCst),
        1,
        "no request"
    );
    // Any endpoint of the same client.
    let now = chrono::Utc::now();
    assert_eq!(
        c.snapshot(now, None)
            .await
            .expect_err("rate limited")
            .kind(),
        ErrorKind::RateLimited
    );
    assert_eq!(
        fake.chargepoint_calls.load(Ordering::SeqCst),
        1,
        "no request"
    );
}

#[tokio::test]
async fn a_hanging_vendor_ends_at_the_request_timeout() {
    let (fake, base) = start().await;
    fake.script_chargepoints([Reply::Hang, Reply::Hang]);
    let mut cfg = config(base);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry.max_attempts = 2;
    let c = client(cfg);
    c.login().await.expect("login");
    let started = std::time::Instant::now();
    let err = c.chargers().await.expect_err("times out");
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn breaker_opens_fails_fast_probes_and_closes() {
    let (fake, base) = start().await;
    let mut cfg = config(base);
    cfg.retry.max_attempts = 1;
    cfg.breaker.failure_threshold = 3;
    cfg.breaker.probe_interval = Duration::from_millis(300);
    let c = client(cfg);
    c.login().await.expect("login");
    fake.script_chargepoints((0..4).map(|_| Reply::Html(502, "<html>bad gateway</html>".into())));
    for _ in 0..3 {
        assert_eq!(
            c.chargers().await.expect_err("502").kind(),
            ErrorKind::VendorUnavailable
        );
    }
    assert_eq!(c.link_status().breaker, BreakerState::Open);
    // Open: fail fast, the vendor sees nothing.
    let err = c.chargers().await.expect_err("open");
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 3);

    // One probe after the interval; it fails (4th scripted 502): open again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        c.chargers().await.expect_err("probe").kind(),
        ErrorKind::VendorUnavailable
    );
    assert_eq!(c.link_status().breaker, BreakerState::Open);
    assert_eq!(
        c.chargers().await.expect_err("open").kind(),
        ErrorKind::BreakerOpen
    );
    assert_eq!(fake.chargepoint_calls.load(Ordering::SeqCst), 4);

    // Next probe succeeds: closed.
    tokio::time::sleep(Duration::from_millis(350)).await;
    c.chargers().await.expect("probe succeeds");
    let link = c.link_status();
    assert_eq!(link.breaker, BreakerState::Closed);
    assert_eq!(link.consecutive_failures, 0);
    assert_eq!(
        link.last_error.map(|e| e.kind),
        Some(ErrorKind::BreakerOpen)
    );
}

#[tokio::test]
async fn the_retry_budget_stops_retries_when_spent() {
    let (fake, base) = start().await;
    let mut cfg = config(base);
    cfg.retry.budget_floor_per_minute = 2;
    cfg.breaker.failure_threshold = 100;
    let c = client(cfg);
    c.login().await.expect("login");
    fake.script_chargepoints((0..10).map(|_| Reply::Html(503, "<html>503</html>".into())));
    let err = c.chargers().await.expect_err("budget");
    assert_eq!(err.kind(), ErrorKind::RetryBudgetExhausted);
    assert_eq!(
        fake.chargepoint_calls.load(Ordering::SeqCst),
        3,
        "1 call + 2 retries"
    );
}

#[tokio::test]
async fn shape_change_reaches_the_caller_and_the_link_status() {
    let (fake, base) = start().await;
    let renamed = CHARGEPOINTS.replace("\"chargePointList\"", "\"chargeBoxes\"");
    fake.script_chargepoints([
        Reply::Json(200, renamed),
        Reply::Html(200, "<html>oops</html>".into()),
    ]);
    let c = client(config(base));
    let err = c.chargers().await.expect_err("shape");
    match &err {
        CveProError::ShapeChanged { path, .. } => assert_eq!(path, "chargePointList"),
        other => panic!("{other:?}"),
    }
    let link = c.link_status();
    assert_eq!(
        link.last_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::ShapeChanged)
    );
    assert!(
        link.last_error
            .expect("error")
            .hint
            .contains("chargePointList")
    );
    assert_eq!(
        c.chargers().await.expect_err("html").kind(),
        ErrorKind::MalformedBody
    );
}

#[tokio::test]
async fn snapshot_resolves_empty_tags_and_reports_quirks() {
    let (fake, base) = start().await;
    let c = client(config(base));
    let report = c
        .snapshot(chrono::Utc::now(), None)
        .await
        .expect("snapshot");
    let snap = &report.snapshot;
    assert_eq!(snap.chargers.len(), 5);
    assert_eq!(snap.transactions.len(), 6);
    let open = snap
        .transactions
        .iter()
        .find(|t| t.id == 451907)
        .expect("open");
    assert_eq!(open.tag, Some(Tag::parse("D41A0B7C").expect("tag")));
    let q = &report.quirks;
    assert_eq!((q.empty_tags, q.empty_tags_resolved), (1, 1));
    assert_eq!(q.power_max_in_kw, 1);
    assert_eq!(q.lowercase_tags_normalised, 1);
    assert!(q.notes().iter().any(|n| n.contains("powerMax in kW on 1")));
    assert_eq!(
        fake.transaction_calls.load(Ordering::SeqCst),
        1,
        "resolved from the list itself"
    );
}

#[tokio::test]
async fn tag_history_is_queried_once_then_cached() {
    let (fake, base) = start().await;
    let mut without: Value = serde_json::from_str(TRANSACTIONS).expect("fixture");
    without["list"]
        .as_array_mut()
        .expect("list")
        .retain(|t| t["id"] != 451702);
    without["count"] = Value::from(5);
    let without = without.to_string();
    fake.script_transactions([
        Reply::Json(200, without.clone()),     // window
        Reply::Json(200, TRANSACTIONS.into()), // 30-day history
        Reply::Json(200, without),             // next poll's window
    ]);
    let c = client(config(base));
    for _ in 0..2 {
        let report = c
            .snapshot(chrono::Utc::now(), None)
            .await
            .expect("snapshot");
        let open = report
            .snapshot
            .transactions
            .iter()
            .find(|t| t.id == 451907)
            .expect("open");
        assert_eq!(open.tag, Some(Tag::parse("D41A0B7C").expect("tag")));
        assert_eq!(report.quirks.empty_tags_resolved, 1);
    }
    assert_eq!(
        fake.transaction_calls.load(Ordering::SeqCst),
        3,
        "window, history, window"
    );
    let queries = fake.seen_queries.lock().expect("lock").clone();
    assert_ne!(queries[0], queries[1], "history uses its own, wider window");
}

#[tokio::test]
async fn a_failed_history_lookup_does_not_fail_the_snapshot() {
    let (fake, base) = start().await;
    let mut without: Value = serde_json::from_str(TRANSACTIONS).expect("fixture");
    without["list"]
        .as_array_mut()
        .expect("list")
        .retain(|t| t["id"] != 451702);
    fake.script_transactions([
        Reply::Json(200, without.to_string()),
        Reply::Json(400, r#"{"error":"bad dates"}"#.into()),
    ]);
    let c = client(config(base));
    let report = c
        .snapshot(chrono::Utc::now(), None)
        .await
        .expect("snapshot");
    assert_eq!(report.quirks.empty_tags_resolved, 0);
    assert!(report.quirks.tag_history_error.is_some());
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    let (fake, base) = start().await;
    let mut cfg = config(base);
    // Renew 1 s after login: wide enough that a slow CI cannot renew early.
    cfg.token_lifetime = Duration::from_secs(2);
    cfg.renew_before = Duration::from_secs(1);
    let c = client(cfg);
    c.chargers().await.expect("first");
    c.chargers().await.expect("same token");
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.chargers().await.expect("renewed");
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
}
