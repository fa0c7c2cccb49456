//! The real client against the real CVE-Pro simulator (`vetric-sim`), in process on
//! 127.0.0.1:0, for every fault the simulator can inject (RELIABILITY.md R1 and R3).
//!
//! Timing: these tests talk to real sockets, so they run on the real clock with tiny
//! configured timings (backoff base 20 ms, cap 200 ms, …). Tokio's paused clock would
//! auto-advance while socket I/O is pending and fire request timeouts that never happened.
//! Nothing here asserts a wall-clock duration: the assertions are on behaviour and on the calls
//! the simulator counted (`SimHandle::calls`), with bounds that hold however slow the machine.

use chrono::Utc;
use std::future::Future;
use std::time::{Duration, Instant};
use url::Url;
use vetric_cvepro::{
    BreakerPolicy, BreakerState, CveProClient, CveProConfig, CveProError, ErrorKind, RetryPolicy,
    SnapshotReport, transaction_window,
};
use vetric_domain::{ChargerSnapshot, ConnectorStatus, Tag, TransactionRecord};
use vetric_sim::cvepro::{
    BearerPolicy, Calls, CveProSim, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, Fault,
    FaultKind, Route, SimConfig, SimHandle, StopReason,
};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Upper bound for any one test, so that a hang fails the test instead of the CI job.
const TEST_GUARD: Duration = Duration::from_secs(60);

async fn guarded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_GUARD, test)
        .await
        .expect("the test did not finish within its guard: something hangs")
}

async fn start(config: SimConfig) -> SimHandle {
    CveProSim::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

/// Small timings, and a breaker and a budget that stay out of the way unless a test is about
/// them. The request timeout is generous: only the timeout tests depend on it, and they set
/// their own, so a loaded CI machine cannot turn a slow local answer into a retry.
fn config(sim: &SimHandle) -> CveProConfig {
    let mut c = CveProConfig::new(
        Url::parse(sim.base_url()).expect("base url"),
        DEFAULT_API_KEY.into(),
        DEFAULT_EMAIL,
        DEFAULT_PASSWORD.into(),
    );
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 4,
        base: ms(20),
        cap: ms(200),
        budget_ratio: 0.2,
        budget_floor_per_minute: 10,
        max_retry_after: Duration::from_secs(2),
    };
    c.breaker = BreakerPolicy {
        failure_threshold: 1_000,
        probe_interval: ms(300),
    };
    c
}

fn client(config: CveProConfig) -> CveProClient {
    CveProClient::new(config).expect("client builds")
}

async fn snapshot(c: &CveProClient) -> Result<SnapshotReport, CveProError> {
    c.snapshot(Utc::now(), None).await
}

/// Logs in while the vendor is healthy and zeroes the counters, so that what follows counts
/// only the calls under test.
async fn logged_in(sim: &SimHandle, c: &CveProClient) {
    c.login().await.expect("login while healthy");
    sim.reset_calls();
}

fn data_calls(calls: Calls) -> u64 {
    calls.chargepoints + calls.transaction
}

fn charger<'a>(snap: &'a SnapshotReport, uuid: &str) -> &'a ChargerSnapshot {
    snap.snapshot
        .chargers
        .iter()
        .find(|c| c.uuid == uuid)
        .unwrap_or_else(|| panic!("charger {uuid} in the snapshot"))
}

fn transaction(snap: &SnapshotReport, id: i64) -> &TransactionRecord {
    snap.snapshot
        .transactions
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("transaction {id} in the snapshot"))
}

fn tag(text: &str) -> Tag {
    Tag::parse(text).expect("valid tag")
}

// --- healthy ------------------------------------------------------------------------------

#[tokio::test]
async fn healthy_snapshot_decodes_the_fleet_and_follows_a_session_to_its_end() {
    let sim = start(SimConfig {
        chargers: 7,
        speed: 100.0,
        ..SimConfig::scripted()
    })
    .await;
    let fleet = sim.fleet();
    let c = client(config(&sim));

    let idle = snapshot(&c).await.expect("healthy snapshot");
    assert_eq!(idle.snapshot.chargers.len(), 7);
    for spec in &fleet.chargers {
        let ch = charger(&idle, &spec.uuid);
        assert_eq!(ch.charge_box_id, spec.charge_box_id);
        assert_eq!(ch.name, spec.description);
        assert_eq!(ch.model, spec.model);
        assert!(
            ch.last_heartbeat.is_some(),
            "{} heartbeat",
            spec.charge_box_id
        );
        assert_eq!(ch.connectors.len(), spec.connectors.len());
        for co in &ch.connectors {
            assert_eq!(co.status, ConnectorStatus::Available);
            assert_eq!(co.error_code, "NoError");
        }
        // W or kW on the wire, watts after the client's normalisation.
        if spec.power_max_wire.is_some() {
            assert_eq!(ch.connectors[0].power_max_w, Some(spec.power_max_w));
        } else {
            assert_eq!(ch.connectors[0].power_max_w, None);
        }
    }
    assert!(idle.snapshot.transactions.is_empty());

    let resident = &fleet.residents[0];
    let card = &resident.tags[0];
    let id = sim
        .start_session(0, 1, &card.id_tag, 7_400.0)
        .expect("start session");
    // At speed 100, 7.4 kW is 740 kW on the real clock: ~60 Wh in 300 ms.
    tokio::time::sleep(ms(300)).await;
    let open = snapshot(&c).await.expect("snapshot with a session");
    let ch0 = charger(&open, &fleet.chargers[0].uuid);
    assert_eq!(ch0.connectors[0].status, ConnectorStatus::Charging);
    let tx = transaction(&open, id);
    assert!(tx.is_open());
    assert_eq!(tx.tag, Some(tag(&card.id_tag)));
    assert_eq!(tx.tag_pk, Some(card.tag_pk));
    assert_eq!(tx.charger_uuid, fleet.chargers[0].uuid);
    assert_eq!(tx.charge_box_id, fleet.chargers[0].charge_box_id);
    assert_eq!(tx.connector_id, 1);
    assert_eq!(tx.stop_reason, None);
    assert_eq!(open.quirks.transaction_offset_hours, 0);

    sim.stop(0, 1, StopReason::Remote).expect("stop");
    let done = snapshot(&c).await.expect("snapshot after the stop");
    let ch0 = charger(&done, &fleet.chargers[0].uuid);
    assert_eq!(ch0.connectors[0].status, ConnectorStatus::Available);
    let tx = transaction(&done, id);
    let stop = tx.stop.expect("finished");
    assert!(stop >= tx.start);
    assert_eq!(tx.stop_reason.as_deref(), Some("Remote"));
    let energy = tx.energy_wh.expect("energy");
    assert!(energy > 0, "energy {energy}");
    let truth = &sim.record()[0];
    assert_eq!(truth.transaction_id, id);
    assert_eq!(energy, truth.energy_wh.round() as i64);

    // Three snapshots, one login: the token is reused.
    let calls = sim.calls();
    assert_eq!(calls.login, 1);
    assert_eq!(calls.chargepoints, 3);
    assert_eq!(calls.transaction, 3);
    assert_eq!(c.link_status().breaker, BreakerState::Closed);
}

// --- 502 / 503 outages --------------------------------------------------------------------

#[tokio::test]
async fn an_outage_shorter_than_the_retries_is_ridden_out() {
    for status in [502, 503] {
        let sim = start(SimConfig::scripted()).await;
        let mut cfg = config(&sim);
        // Enough attempts that even short jittered delays outlast a 150 ms outage (eleven
        // delays drawn from [0, 20..200 ms] all summing under 150 ms: p < 1e-6), and a budget
        // floor that does not stand in the way of this one snapshot.
        cfg.retry.max_attempts = 12;
        cfg.retry.budget_floor_per_minute = 50;
        let c = client(cfg);
        logged_in(&sim, &c).await;

        sim.set_fault(Fault::Outage {
            status,
            duration_s: Some(0.15),
        });
        let report = snapshot(&c)
            .await
            .unwrap_or_else(|e| panic!("{status} outage of 150 ms ridden out: {e}"));
        assert_eq!(report.snapshot.chargers.len(), 5);

        let calls = sim.calls();
        for (endpoint, n) in [
            ("chargepoints", calls.chargepoints),
            ("transaction", calls.transaction),
        ] {
            assert!(
                (2..=12).contains(&n),
                "{status}: {endpoint} called {n} times: at least one failure and one success, \
                 at most max_attempts"
            );
        }
        assert_eq!(calls.login, 0, "{status}: the token was still good");
        assert_eq!(c.link_status().breaker, BreakerState::Closed);
    }
}

#[tokio::test]
async fn an_outage_longer_than_the_retries_fails_with_vendor_unavailable() {
    for (status, title) in [(502, "502 Bad Gateway"), (503, "503 Service Temporarily")] {
        let sim = start(SimConfig::scripted()).await;
        let c = client(config(&sim));
        logged_in(&sim, &c).await;

        sim.set_fault(Fault::Outage {
            status,
            duration_s: None,
        });
        let err = c.chargers().await.expect_err("outage outlasts the retries");
        assert_eq!(err.kind(), ErrorKind::VendorUnavailable, "{err}");
        match &err {
            CveProError::VendorUnavailable {
                status: s, excerpt, ..
            } => {
                assert_eq!(*s, status);
                assert!(excerpt.contains(title), "nginx page in {excerpt:?}");
            }
            other => panic!("expected VendorUnavailable, got {other:?}"),
        }
        // One logical call = exactly max_attempts requests, no more.
        assert_eq!(sim.calls().chargepoints, 4, "{status}");

        // A snapshot is two logical calls: at most max_attempts each.
        sim.reset_calls();
        let err = snapshot(&c).await.expect_err("snapshot during the outage");
        assert_eq!(err.kind(), ErrorKind::VendorUnavailable);
        let calls = sim.calls();
        assert!(
            calls.chargepoints <= 4 && calls.transaction <= 4,
            "{calls:?}"
        );
        assert!(data_calls(calls) >= 4, "{calls:?}");

        sim.clear_fault(FaultKind::Outage);
        assert_eq!(
            snapshot(&c)
                .await
                .expect("recovered")
                .snapshot
                .chargers
                .len(),
            5
        );
    }
}

#[tokio::test]
async fn an_outage_before_the_first_login_fails_without_any_data_call() {
    let sim = start(SimConfig::scripted()).await;
    let c = client(config(&sim));
    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    let err = snapshot(&c).await.expect_err("login fails");
    assert_eq!(err.kind(), ErrorKind::VendorUnavailable);
    let calls = sim.calls();
    assert!(
        (4..=8).contains(&calls.login),
        "login retried up to max_attempts, by at most the two callers: {calls:?}"
    );
    assert_eq!(data_calls(calls), 0, "no data call without a token");

    sim.clear_fault(FaultKind::Outage);
    snapshot(&c).await.expect("recovered");
}

#[tokio::test]
async fn a_server_error_on_one_route_is_retried_and_reported() {
    let sim = start(SimConfig::scripted()).await;
    let c = client(config(&sim));
    logged_in(&sim, &c).await;

    sim.set_fault(Fault::ServerError {
        route: Route::Transaction,
    });
    let err = snapshot(&c).await.expect_err("500 on /transaction");
    assert!(
        matches!(err, CveProError::VendorUnavailable { status: 500, .. }),
        "{err:?}"
    );
    let calls = sim.calls();
    assert_eq!(calls.transaction, 4, "max_attempts on the failing route");
    assert_eq!(calls.chargepoints, 1, "the healthy route once");

    sim.clear_fault(FaultKind::ServerError);
    snapshot(&c).await.expect("recovered");
}

// --- retry budget and breaker over a long outage -------------------------------------------

#[tokio::test]
async fn retries_stay_inside_the_budget_during_a_long_outage() {
    let sim = start(SimConfig::scripted()).await;
    let mut cfg = config(&sim);
    cfg.retry.max_attempts = 5;
    // The breaker stays out of this test (threshold 1000) so that only the budget limits.
    let (ratio, floor) = (cfg.retry.budget_ratio, cfg.retry.budget_floor_per_minute);
    let c = client(cfg);
    logged_in(&sim, &c).await;

    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    const SNAPSHOTS: u64 = 50;
    let mut exhausted = 0;
    for _ in 0..SNAPSHOTS {
        let err = snapshot(&c).await.expect_err("outage");
        match err.kind() {
            ErrorKind::RetryBudgetExhausted => exhausted += 1,
            ErrorKind::VendorUnavailable => {}
            other => panic!("unexpected {other}: {err}"),
        }
    }
    let calls = sim.calls();
    // Each snapshot is two logical calls (chargers, transactions), each with one first
    // attempt; retries within one 60 s window are at most max(floor, ratio × calls).
    let logical = 2 * SNAPSHOTS;
    let retries_allowed = (ratio * logical as f64).max(f64::from(floor)) as u64;
    let data = data_calls(calls);
    assert!(
        data <= logical + retries_allowed,
        "{data} vendor calls for {logical} logical calls: more than {retries_allowed} retries \
         ({calls:?}); without a budget it would be up to {}",
        logical * 5
    );
    assert!(
        data >= SNAPSHOTS,
        "every snapshot reached the vendor: {calls:?}"
    );
    assert!(
        exhausted > SNAPSHOTS / 2,
        "once the budget is spent, failures are not retried ({exhausted} of {SNAPSHOTS})"
    );
    assert_eq!(calls.login, 0);
}

#[tokio::test]
async fn vendor_calls_in_a_long_outage_stay_within_the_budget_plus_breaker_probes() {
    let sim = start(SimConfig::scripted()).await;
    let mut cfg = config(&sim);
    cfg.retry.max_attempts = 5;
    cfg.breaker = BreakerPolicy {
        failure_threshold: 5,
        probe_interval: ms(300),
    };
    let (threshold, interval) = (cfg.breaker.failure_threshold, cfg.breaker.probe_interval);
    let c = client(cfg);
    logged_in(&sim, &c).await;

    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    let started = Instant::now();
    let mut breaker_open: u64 = 0;
    for _ in 0..50 {
        let err = snapshot(&c).await.expect_err("outage");
        if err.kind() == ErrorKind::BreakerOpen {
            breaker_open += 1;
        }
        tokio::time::sleep(ms(20)).await;
    }
    let elapsed = started.elapsed();
    let calls = sim.calls();
    // Before the breaker opens: `threshold` failures, plus at most one attempt of the other
    // concurrent call still in flight. After: one probe per interval at most.
    let probes = (elapsed.as_millis() / interval.as_millis()) as u64 + 1;
    let bound = u64::from(threshold) + 1 + probes;
    let data = data_calls(calls);
    assert!(
        data <= bound,
        "{data} vendor calls in {elapsed:?}: more than {threshold} + 1 + {probes} probes \
         ({calls:?})"
    );
    // Every snapshot but the first (which opened the breaker) and the probes failed fast.
    assert!(
        breaker_open + 1 + probes >= 50,
        "{breaker_open} of 50 snapshots failed fast, with at most {probes} probes"
    );
    assert!(breaker_open > 0);
    assert_eq!(c.link_status().breaker, BreakerState::Open);

    // Recovery: after one probe interval the next snapshot is fresh data again.
    sim.clear_fault(FaultKind::Outage);
    tokio::time::sleep(interval + ms(100)).await;
    let report = snapshot(&c).await.expect("first snapshot after recovery");
    assert_eq!(report.snapshot.chargers.len(), 5);
    assert_eq!(c.link_status().breaker, BreakerState::Closed);
}

#[tokio::test]
async fn breaker_opens_fails_fast_probes_once_per_interval_and_closes() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let mut cfg = config(&sim);
        // A whole second between probes: the "no call while open" checks below take
        // microseconds, so a slow machine cannot reach the next probe by accident.
        let interval = Duration::from_secs(1);
        cfg.breaker = BreakerPolicy {
            failure_threshold: 3,
            probe_interval: interval,
        };
        let c = client(cfg);
        logged_in(&sim, &c).await;

        sim.set_fault(Fault::Outage {
            status: 502,
            duration_s: None,
        });
        // Closed → open after 3 consecutive failures, inside the first call (max_attempts 4):
        // the 4th attempt is not sent, and the error names the real cause.
        let err = c.chargers().await.expect_err("outage");
        assert_eq!(err.kind(), ErrorKind::VendorUnavailable, "{err}");
        assert_eq!(sim.calls().chargepoints, 3);
        let link = c.link_status();
        assert_eq!(link.breaker, BreakerState::Open);
        assert_eq!(link.consecutive_failures, 3);

        // Open: every call fails fast and the vendor sees nothing.
        for _ in 0..10 {
            let err = c.chargers().await.expect_err("open");
            assert_eq!(err.kind(), ErrorKind::BreakerOpen, "{err}");
            let err = snapshot(&c).await.expect_err("open");
            assert_eq!(err.kind(), ErrorKind::BreakerOpen, "{err}");
        }
        let calls = sim.calls();
        assert_eq!(
            (calls.chargepoints, calls.transaction, calls.login),
            (3, 0, 0)
        );

        // After the interval: exactly one probe; it fails, so open again at once.
        tokio::time::sleep(interval + ms(100)).await;
        let err = c.chargers().await.expect_err("probe fails");
        assert_eq!(err.kind(), ErrorKind::VendorUnavailable, "{err}");
        assert_eq!(sim.calls().chargepoints, 4, "one probe");
        assert_eq!(c.link_status().breaker, BreakerState::Open);
        let err = c.chargers().await.expect_err("open again");
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);

        // The vendor is back, but the breaker waits for its interval.
        sim.clear_fault(FaultKind::Outage);
        let err = c.chargers().await.expect_err("still open");
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);
        assert_eq!(sim.calls().chargepoints, 4);

        // Half-open: one probe in flight (slowed down so it can be watched), everyone else
        // still fails fast, and its success closes the breaker.
        tokio::time::sleep(interval + ms(100)).await;
        sim.set_fault(Fault::Latency { ms: 400 });
        let probe = tokio::spawn({
            let c = c.clone();
            async move { c.chargers().await }
        });
        while sim.calls().chargepoints < 5 {
            tokio::time::sleep(ms(5)).await;
        }
        assert_eq!(c.link_status().breaker, BreakerState::HalfOpen);
        let err = c.chargers().await.expect_err("one probe at a time");
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);
        let chargers = probe.await.expect("probe task").expect("probe succeeds");
        assert_eq!(chargers.len(), 5);
        assert_eq!(
            sim.calls().chargepoints,
            5,
            "only the probe reached the vendor"
        );
        let link = c.link_status();
        assert_eq!(link.breaker, BreakerState::Closed);
        assert_eq!(link.consecutive_failures, 0);

        sim.clear_fault(FaultKind::Latency);
        snapshot(&c).await.expect("closed: snapshots flow again");
    })
    .await;
}

/// The ingest polls with `snapshot()` only, which makes two calls at once. When the breaker is
/// due for a probe, one of them must be allowed to probe and the other must not kill it.
#[tokio::test]
async fn snapshot_alone_closes_the_breaker_after_an_outage() {
    let sim = start(SimConfig::scripted()).await;
    let mut cfg = config(&sim);
    cfg.breaker = BreakerPolicy {
        failure_threshold: 3,
        probe_interval: ms(300),
    };
    let interval = cfg.breaker.probe_interval;
    let c = client(cfg);
    logged_in(&sim, &c).await;

    sim.set_fault(Fault::Outage {
        status: 503,
        duration_s: None,
    });
    snapshot(&c).await.expect_err("outage");
    assert_eq!(c.link_status().breaker, BreakerState::Open);

    sim.clear_fault(FaultKind::Outage);
    tokio::time::sleep(interval + ms(100)).await;
    let report = snapshot(&c)
        .await
        .expect("the first snapshot after the probe interval succeeds");
    assert_eq!(report.snapshot.chargers.len(), 5);
    assert_eq!(c.link_status().breaker, BreakerState::Closed);
}

// --- hang and latency ---------------------------------------------------------------------

#[tokio::test]
async fn a_hanging_vendor_ends_at_the_request_timeout() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let mut cfg = config(&sim);
        let timeout = ms(500);
        cfg.request_timeout = timeout;
        cfg.retry.max_attempts = 2;
        let c = client(cfg);
        logged_in(&sim, &c).await;

        sim.set_fault(Fault::Hang);
        let err = c.chargers().await.expect_err("hang");
        match &err {
            CveProError::Timeout { after, .. } => assert_eq!(*after, timeout),
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert_eq!(
            sim.calls().chargepoints,
            2,
            "each attempt reached the vendor"
        );

        let err = snapshot(&c).await.expect_err("hang");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

        // Nothing is left stuck in the client: once the vendor answers again, so does it.
        sim.clear_fault(FaultKind::Hang);
        snapshot(&c).await.expect("answers again");
        assert_eq!(c.link_status().breaker, BreakerState::Closed);
    })
    .await;
}

#[tokio::test]
async fn latency_below_the_timeout_is_tolerated_and_above_it_times_out() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let mut cfg = config(&sim);
        cfg.request_timeout = ms(500);
        cfg.retry.max_attempts = 2;
        let c = client(cfg);
        logged_in(&sim, &c).await;

        sim.set_fault(Fault::Latency { ms: 100 });
        snapshot(&c).await.expect("100 ms late is fine");
        let calls = sim.calls();
        assert_eq!((calls.chargepoints, calls.transaction), (1, 1), "no retry");

        sim.reset_calls();
        sim.set_fault(Fault::Latency { ms: 1_500 });
        let err = c.chargers().await.expect_err("too slow");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_eq!(sim.calls().chargepoints, 2);
    })
    .await;
}

// --- tokens -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_cost_exactly_one_login_even_with_concurrent_callers() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let c = client(config(&sim));
        snapshot(&c).await.expect("first snapshot");
        sim.reset_calls();

        sim.revoke_tokens();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.snapshot(Utc::now(), None).await })
            })
            .collect();
        for caller in callers {
            let report = caller.await.expect("task").expect("no user-visible error");
            assert_eq!(report.snapshot.chargers.len(), 5);
        }
        let calls = sim.calls();
        assert_eq!(calls.login, 1, "one re-login for all callers: {calls:?}");
        // Each logical call is sent at most twice (401, then the replay).
        assert!(data_calls(calls) <= 8 * 2 * 2, "{calls:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_logs_in_once_for_many_concurrent_callers() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let c = client(config(&sim));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.snapshot(Utc::now(), None).await })
            })
            .collect();
        for caller in callers {
            caller.await.expect("task").expect("snapshot");
        }
        let calls = sim.calls();
        assert_eq!(calls.login, 1, "{calls:?}");
        assert_eq!((calls.chargepoints, calls.transaction), (8, 8));
    })
    .await;
}

// --- 429 ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_short_retry_after_is_honoured() {
    guarded(async {
        let sim = start(SimConfig::scripted()).await;
        let c = client(config(&sim));
        logged_in(&sim, &c).await;

        // 429 with `Retry-After: 1` for the next 300 ms: the call waits 1 s and succeeds.
        sim.set_fault(Fault::RateLimit {
            retry_after_s: 1,
            duration_s: Some(0.3),
        });
        let chargers = c
            .chargers()
            .await
            .expect("waits Retry-After, then succeeds");
        assert_eq!(chargers.len(), 5);
        assert_eq!(
            sim.calls().chargepoints,
            2,
            "the 429, then one retry after the wait (not a burst of retries)"
        );
        assert_eq!(c.link_status().breaker, BreakerState::Closed);
    })
    .await;
}

#[tokio::test]
async fn a_long_retry_after_fails_with_rate_limited_at_once() {
    let sim = start(SimConfig::scripted()).await;
    let c = client(config(&sim)); // max_retry_after: 2 s
    logged_in(&sim, &c).await;

    sim.set_fault(Fault::RateLimit {
        retry_after_s: 60,
        duration_s: None,
    });
    let err = c.chargers().await.expect_err("not waited for");
    match &err {
        CveProError::RateLimited { retry_after, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(60)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(sim.calls().chargepoints, 1, "no retry");
    // The vendor is alive: a 429 does not count towards the breaker.
    assert_eq!(c.link_status().consecutive_failures, 0);
}

// --- shape drift (R3) ---------------------------------------------------------------------

async fn shape_error(fault: Fault) -> (CveProError, Calls, CveProClient) {
    let sim = start(SimConfig::scripted()).await;
    let c = client(config(&sim));
    logged_in(&sim, &c).await;
    sim.set_fault(fault);
    let err = snapshot(&c).await.expect_err("shape fault");
    (err, sim.calls(), c)
}

#[tokio::test]
async fn a_renamed_charge_point_list_is_a_shape_change_at_that_path() {
    let (err, calls, c) = shape_error(Fault::RenameChargePointList).await;
    match &err {
        CveProError::ShapeChanged { path, .. } => assert_eq!(path, "chargePointList"),
        other => panic!("expected ShapeChanged, got {other:?}"),
    }
    assert_eq!(calls.chargepoints, 1, "a shape change is not retried");
    let link = c.link_status();
    assert_eq!(link.breaker, BreakerState::Closed, "the vendor answered");
    assert_eq!(
        link.last_error.map(|e| e.kind),
        Some(ErrorKind::ShapeChanged)
    );
}

#[tokio::test]
async fn a_dropped_connector_status_is_a_shape_change_at_that_path() {
    let (err, calls, _) = shape_error(Fault::DropConnectorStatus).await;
    match &err {
        CveProError::ShapeChanged { path, .. } => {
            assert_eq!(path, "chargePointList[0].connectors[0].lastStatus.status");
        }
        other => panic!("expected ShapeChanged, got {other:?}"),
    }
    assert_eq!(calls.chargepoints, 1);
}

#[tokio::test]
async fn malformed_json_is_a_malformed_body_and_not_retried() {
    for route in [Route::Chargepoints, Route::Transaction] {
        let (err, calls, _) = shape_error(Fault::MalformedJson { route }).await;
        assert_eq!(err.kind(), ErrorKind::MalformedBody, "{route:?}: {err}");
        let n = match route {
            Route::Transaction => calls.transaction,
            _ => calls.chargepoints,
        };
        assert_eq!(n, 1, "{route:?}: not retried");
    }
}

#[tokio::test]
async fn a_genuine_empty_charger_list_decodes_as_empty() {
    let sim = start(SimConfig::scripted()).await;
    let c = client(config(&sim));
    sim.set_fault(Fault::EmptyChargerList);
    // Confirming a real zero is the ingest's job, not the client's.
    let report = snapshot(&c).await.expect("an empty list is valid");
    assert!(report.snapshot.chargers.is_empty());
    assert!(c.chargers().await.expect("empty").is_empty());
}

// --- tag quirks and ghosts ----------------------------------------------------------------

#[tokio::test]
async fn an_empty_tag_is_resolved_through_the_ocpp_tag_pk_of_a_finished_session() {
    let sim = start(SimConfig {
        speed: 100.0,
        ..SimConfig::scripted()
    })
    .await;
    let fleet = sim.fleet();
    let card = &fleet.residents[2].tags[0];
    let c = client(config(&sim));

    let first = sim.start_session(0, 1, &card.id_tag, 7_400.0).expect("1st");
    tokio::time::sleep(ms(50)).await;
    sim.stop(0, 1, StopReason::EVDisconnected).expect("stop");
    let second = sim.start_session(0, 1, &card.id_tag, 7_400.0).expect("2nd");
    sim.set_tag_empty(second, true).expect("empty tag");

    let report = snapshot(&c).await.expect("snapshot");
    assert!(!transaction(&report, first).is_open());
    let open = transaction(&report, second);
    assert!(open.is_open());
    assert_eq!(open.tag_pk, Some(card.tag_pk));
    assert_eq!(open.tag, Some(tag(&card.id_tag)), "resolved by ocppTagPk");
    assert_eq!(report.quirks.empty_tags, 1);
    assert_eq!(report.quirks.empty_tags_resolved, 1);
    assert_eq!(
        sim.calls().transaction,
        1,
        "resolved from the list at hand, no history query"
    );
}

#[tokio::test]
async fn an_empty_tag_without_history_stays_unknown_and_is_looked_up_once() {
    let sim = start(SimConfig::scripted()).await;
    let fleet = sim.fleet();
    let card = &fleet.residents[4].tags[0];
    let c = client(config(&sim));

    let id = sim
        .start_session(1, 1, &card.id_tag, 7_400.0)
        .expect("start");
    sim.set_tag_empty(id, true).expect("empty tag");

    let report = snapshot(&c).await.expect("snapshot");
    let open = transaction(&report, id);
    assert_eq!(open.tag, None, "no finished session has this ocppTagPk");
    assert_eq!(open.tag_pk, Some(card.tag_pk));
    assert_eq!(
        (report.quirks.empty_tags, report.quirks.empty_tags_resolved),
        (1, 0)
    );
    assert_eq!(
        sim.calls().transaction,
        2,
        "the window, then one history query"
    );

    sim.reset_calls();
    snapshot(&c).await.expect("second snapshot");
    assert_eq!(sim.calls().transaction, 1, "the miss is cached");
}

#[tokio::test]
async fn lowercase_tags_are_normalised() {
    let sim = start(SimConfig::scripted()).await;
    let fleet = sim.fleet();
    // A tag with letters in it, or lower case would look the same.
    let card = fleet
        .residents
        .iter()
        .flat_map(|r| &r.tags)
        .find(|t| t.id_tag.chars().any(|ch| ch.is_ascii_alphabetic()))
        .expect("a tag with letters");
    let c = client(config(&sim));

    sim.set_lowercase_tags(1, true).expect("lowercase");
    let id = sim
        .start_session(1, 1, &card.id_tag, 7_400.0)
        .expect("start");
    let report = snapshot(&c).await.expect("snapshot");
    let tx = transaction(&report, id);
    assert_eq!(
        tx.tag.as_ref().map(Tag::as_str),
        Some(card.id_tag.to_ascii_uppercase().as_str())
    );
    assert!(report.quirks.lowercase_tags_normalised >= 1);
}

#[tokio::test]
async fn ghost_charging_shows_as_charging_with_no_open_transaction() {
    let sim = start(SimConfig::scripted()).await;
    let fleet = sim.fleet();
    let c = client(config(&sim));

    sim.set_ghost(2, 1, true).expect("ghost");
    let report = snapshot(&c).await.expect("snapshot");
    let ghost = charger(&report, &fleet.chargers[2].uuid);
    assert_eq!(ghost.connectors[0].status, ConnectorStatus::Charging);
    assert!(
        !report
            .snapshot
            .transactions
            .iter()
            .any(|t| t.charger_uuid == ghost.uuid && t.is_open()),
        "no open transaction behind the ghost"
    );
}

// --- login errors and headers -------------------------------------------------------------

#[tokio::test]
async fn a_wrong_api_key_is_tenant_not_found_and_not_retried() {
    let sim = start(SimConfig::scripted()).await;
    let mut cfg = config(&sim);
    cfg.api_key = "wrong-api-key".into();
    let c = client(cfg);
    let err = snapshot(&c).await.expect_err("wrong key");
    assert_eq!(err.kind(), ErrorKind::TenantNotFound, "{err}");
    let calls = sim.calls();
    assert_eq!(calls.login, 1, "not retried: {calls:?}");
    assert_eq!(data_calls(calls), 0);
    assert!(
        !err.to_string().contains("wrong-api-key"),
        "no secret in {err}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_bad_credentials_and_not_retried() {
    let sim = start(SimConfig::scripted()).await;
    let mut cfg = config(&sim);
    cfg.password = "canary-wrong-password".into();
    let c = client(cfg);
    let err = c.login().await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::BadCredentials, "{err}");
    assert_eq!(sim.calls().login, 1, "not retried");
    assert!(!err.to_string().contains("canary-wrong-password"));
    let err = snapshot(&c).await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::BadCredentials, "{err}");
    assert_eq!(data_calls(sim.calls()), 0);
}

/// The simulator refuses `Bearer` on every route, any `Platform` header and a `timeZone`
/// parameter with 401: one login and one call each prove the client sends none of them
/// (a 401 would show as a second login and a replay).
#[tokio::test]
async fn the_client_sends_neither_bearer_nor_platform_nor_time_zone() {
    let sim = start(SimConfig {
        bearer_policy: BearerPolicy::RejectAll,
        reject_platform_header: true,
        reject_timezone_param: true,
        ..SimConfig::scripted()
    })
    .await;
    let c = client(config(&sim));
    let (from, to) = transaction_window(Utc::now(), None, chrono_tz::America::Sao_Paulo, 30);
    c.transactions(from, to).await.expect("/transaction");
    c.chargers().await.expect("/chargepoints");
    let calls = sim.calls();
    assert_eq!(
        (calls.login, calls.transaction, calls.chargepoints),
        (1, 1, 1),
        "{calls:?}"
    );
}
