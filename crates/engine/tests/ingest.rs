//! The per-site ingest end to end: the CVE-Pro simulator in process → `SiteIngest::cycle` →
//! the store, on SQLite and on PostgreSQL (every test runs on both; PostgreSQL must be up).
//!
//! The tests drive `cycle(Utc::now())` themselves instead of `run`, so they control the pace,
//! and assert behaviour and counts only (never wall-clock durations).

mod support;

use chrono::{TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{ENDING_KINDS, Rig, accepted, count, decode, session_kinds, to_second};
use vetric_cvepro::BreakerPolicy;
use vetric_domain::link::DEFAULT_OFFLINE_AFTER;
use vetric_domain::{EventKind, Freshness, Tag, freshness};
use vetric_engine::CycleOutcome;
use vetric_sim::cvepro::{Fault, FaultKind, SimConfig, StopReason};
use vetric_store::testing::TestDb;
use vetric_store::{EndKind, SessionFilter, SessionStatus};

const POLL: Duration = Duration::from_millis(200);

fn all_sessions() -> SessionFilter {
    SessionFilter {
        limit: Some(100_000),
        ..SessionFilter::default()
    }
}

fn kinds_of(outcome: &CycleOutcome) -> Vec<&'static str> {
    outcome.events().iter().map(|e| e.kind.kind_str()).collect()
}

// ----- 1. a fleet day at high speed ---------------------------------------------------------

/// The acceptance test: a simulated day of the automatic fleet (normal, interrupted
/// and never-started sessions, faults, chargers dropping offline mid-session, empty tags,
/// lower-case tags) must come out of the store exactly as the simulator's ground truth says.
async fn fleet_day_at_high_speed(db: &TestDb) {
    const SPEED: f64 = 8_000.0;
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 4,
            dual_connector_chargers: 1,
            seed: 20_260_211,
            speed: SPEED,
            // Turned on right after the first poll: a session that ended before vetric's first
            // look would be history (session_recorded), not a tracked session.
            auto_fleet: false,
            tick: Duration::from_millis(50),
            ..SimConfig::default()
        },
    )
    .await;
    // Generous timeouts: this test is about sessions, not about a slow machine's blips. A
    // failed cycle is retried by the next one anyway (and counted below).
    let client = rig.client_with(|c| {
        c.request_timeout = Duration::from_secs(10);
        c.retry = support::fast_retry();
    });
    let mut ingest = rig.ingest(client).await;
    accepted(&mut ingest).await;
    // The vendor's transaction times have whole seconds: a session started and stopped within
    // the second of the first poll would read as stopped before vetric watched (history,
    // `session_recorded`). At this speed the first sessions start at once, and some last less
    // than a second; let that second pass first.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rig.sim.set_auto(true);

    let mut stats = Stats::default();

    let day = Duration::from_secs_f64(86_400.0 / SPEED);
    let started = tokio::time::Instant::now();
    while started.elapsed() < day {
        stats.poll(&mut ingest).await;
        tokio::time::sleep(POLL).await;
    }
    // No new sessions; those under way (and any already planned) play to their end.
    rig.sim.set_auto(false);
    let drain = tokio::time::Instant::now();
    let records = loop {
        let before = rig.sim.record();
        let ok = stats.poll(&mut ingest).await;
        let after = rig.sim.record();
        // Everything the simulator had was over and visible before this accepted cycle read it.
        if ok && before.len() == after.len() && before.iter().all(|r| r.stop_delivered_at.is_some())
        {
            break after;
        }
        assert!(
            drain.elapsed() < Duration::from_secs(60),
            "the simulator's sessions did not all end: {:?}",
            after
                .iter()
                .filter(|r| r.stop_delivered_at.is_none())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    };
    eprintln!(
        "fleet day ({:?}): {} sessions, {} cycles ({} not accepted), drained in {:?}",
        db.backend(),
        records.len(),
        stats.cycles,
        stats.failed,
        drain.elapsed()
    );
    assert!(
        records.len() >= 10,
        "a simulated day of 4 chargers should have sessions, got {}",
        records.len()
    );

    let stored = rig
        .store
        .sessions(rig.site, &all_sessions())
        .await
        .expect("sessions");
    let by_id: BTreeMap<i64, _> = stored.iter().map(|s| (s.vendor_id, s)).collect();
    assert_eq!(by_id.len(), stored.len(), "a session stored twice");
    let truth_ids: BTreeSet<i64> = records.iter().map(|r| r.transaction_id).collect();
    let stored_ids: BTreeSet<i64> = by_id.keys().copied().collect();
    assert_eq!(
        stored_ids, truth_ids,
        "stored sessions differ from the simulator's transactions"
    );

    let events = rig.events().await;
    for r in &records {
        let s = by_id[&r.transaction_id];
        let id = r.transaction_id;
        let story = || {
            events
                .iter()
                .filter(|e| {
                    e.session_vendor_id == Some(id)
                        || e.charger_uuid.as_ref() == Some(&r.charger_uuid)
                })
                .map(|e| format!("{} {} {}", e.at, e.kind, e.payload))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(s.status, SessionStatus::Ended, "session {id} still open");
        assert!(
            matches!(s.end_kind, Some(EndKind::Finished | EndKind::Interrupted)),
            "session {id} ended as {:?}; truth {r:?}; its charger's events:\n{}",
            s.end_kind,
            story()
        );
        assert_eq!(s.charger_uuid, r.charger_uuid, "session {id} charger");
        assert_eq!(s.connector_id, r.connector_id, "session {id} connector");
        assert_eq!(s.start, to_second(r.start), "session {id} start");
        assert_eq!(s.stop, r.stop.map(to_second), "session {id} stop");
        assert_eq!(
            s.energy_wh,
            Some(r.energy_wh.round() as i64),
            "session {id} energy"
        );
        assert_eq!(
            s.tag,
            Some(Tag::parse(&r.tag).expect("tag")),
            "session {id} tag"
        );
        assert_eq!(
            s.resident_name, r.resident_name,
            "session {id} resident (tag {})",
            r.tag
        );
        assert_eq!(
            s.stop_reason.as_deref(),
            r.stop_reason.map(|x| x.as_str()),
            "session {id} stop reason"
        );
    }

    let per_session = session_kinds(&events);
    for id in &truth_ids {
        let kinds = per_session.get(id).cloned().unwrap_or_default();
        assert_eq!(
            count(&kinds, &["session_started"]),
            1,
            "session {id}: {kinds:?}"
        );
        assert_eq!(count(&kinds, &ENDING_KINDS), 1, "session {id}: {kinds:?}");
        assert_eq!(
            count(&kinds, &["session_amended", "session_recorded"]),
            0,
            "session {id}: {kinds:?}"
        );
    }
    let strays: Vec<_> = per_session
        .keys()
        .filter(|id| !truth_ids.contains(id))
        .collect();
    assert!(
        strays.is_empty(),
        "events about unknown sessions {strays:?}"
    );
    assert!(
        rig.store
            .open_sessions(rig.site)
            .await
            .expect("open sessions")
            .is_empty()
    );
    // Every tag belongs to a registered resident: nothing for the inbox.
    assert_eq!(
        rig.store.unknown_tags(rig.site).await.expect("inbox"),
        vec![]
    );
}

#[derive(Default)]
struct Stats {
    cycles: u32,
    failed: u32,
}

impl Stats {
    /// One cycle; `true` when accepted. A failed vendor call is tolerated (and counted): the
    /// next cycle reads the same transactions again.
    async fn poll(&mut self, ingest: &mut vetric_engine::SiteIngest) -> bool {
        self.cycles += 1;
        match ingest.cycle(Utc::now()).await.expect("cycle stored") {
            CycleOutcome::Accepted { .. } => true,
            other => {
                self.failed += 1;
                eprintln!("fleet day: cycle not accepted: {other:?}");
                false
            }
        }
    }
}

// ----- 2. vendor outage ---------------------------------------------------------------------

/// A 502 outage: the last good state stays, the link counts failures, `vendor_down` once at
/// the third failed cycle, `vendor_recovered` and fresh data on the first cycle after.
async fn vendor_outage_keeps_last_good(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(1, 1, &rig.tag(0), 7_400.0)
        .expect("start");
    let mut ingest = rig.ingest(rig.fast_client()).await;
    assert!(accepted(&mut ingest).await.contains(&"session_started"));
    let last_good = rig.store.connectors(rig.site).await.expect("connectors");
    assert_eq!(last_good.len(), 3);
    assert_eq!(
        last_good
            .iter()
            .filter(|c| c.status.as_vendor_str() == "Charging")
            .count(),
        1
    );
    let good_link = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("a link row after a cycle");
    assert_eq!(good_link.consecutive_failures, 0);
    let good_success = good_link.last_success.expect("last success");

    rig.sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    for i in 1..=5_i64 {
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        let CycleOutcome::VendorFailed { kind, events } = &out else {
            panic!("cycle {i} during the outage: {out:?}")
        };
        assert_eq!(*kind, "vendor_unavailable", "cycle {i}");
        let down = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::VendorDown { .. }))
            .count();
        assert_eq!(down, usize::from(i == 3), "cycle {i}: {events:?}");
        assert_eq!(
            rig.store.connectors(rig.site).await.expect("connectors"),
            last_good,
            "cycle {i}: the last good connectors must stay as they were"
        );
        let link = rig
            .store
            .vendor_link(rig.site)
            .await
            .expect("link")
            .expect("row");
        assert_eq!(link.consecutive_failures, i);
        assert_eq!(link.last_error_kind.as_deref(), Some("vendor_unavailable"));
        assert!(
            link.last_error_message
                .as_deref()
                .is_some_and(|m| m.contains("502")),
            "{link:?}"
        );
        assert_eq!(link.last_success, Some(good_success), "cycle {i}");
        assert_eq!(link.charger_count_last_good, Some(3));
        // The data being served is the last good one, and it ages.
        let poll = TimeDelta::seconds(10);
        assert_eq!(
            freshness(
                good_success + poll * 3,
                link.last_success,
                poll,
                DEFAULT_OFFLINE_AFTER
            ),
            Freshness::Stale
        );
    }
    assert_eq!(rig.count_events("vendor_down").await, 1);
    assert_eq!(rig.count_events("vendor_recovered").await, 0);
    let open = rig.store.open_sessions(rig.site).await.expect("open");
    assert_eq!(open.len(), 1, "the open session stays open");
    assert_eq!(open[0].vendor_id, tx);

    rig.sim.clear_fault(FaultKind::Outage);
    let now = Utc::now();
    let out = ingest.cycle(now).await.expect("cycle stored");
    assert!(
        matches!(out, CycleOutcome::Accepted { .. }),
        "the first cycle after the outage: {out:?}"
    );
    assert_eq!(kinds_of(&out), ["vendor_recovered"]);
    assert_eq!(rig.count_events("vendor_recovered").await, 1);
    assert_eq!(rig.count_events("vendor_down").await, 1);
    let link = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("row");
    assert_eq!(link.consecutive_failures, 0);
    let success = link.last_success.expect("last success");
    assert!(success > good_success);
    assert_eq!(
        freshness(
            now,
            Some(success),
            TimeDelta::seconds(10),
            DEFAULT_OFFLINE_AFTER
        ),
        Freshness::Fresh
    );
    // The session went through the outage untouched: still one start, no end.
    let kinds = session_kinds(&rig.events().await)
        .remove(&tx)
        .unwrap_or_default();
    assert_eq!(kinds, ["session_started"]);
    // Freshness comes from the link's last success (checked above); unchanged connector rows
    // are not rewritten, so they still read exactly as before the outage.
    let after: Vec<_> = rig
        .store
        .connectors(rig.site)
        .await
        .expect("connectors")
        .into_iter()
        .map(|c| (c.charger_uuid, c.connector_id, c.status, c.status_since))
        .collect();
    let before: Vec<_> = last_good
        .iter()
        .map(|c| {
            (
                c.charger_uuid.clone(),
                c.connector_id,
                c.status.clone(),
                c.status_since,
            )
        })
        .collect();
    assert_eq!(after, before, "connectors after recovery");
}

/// While the client's circuit breaker refuses calls, the vendor link row names the failure
/// that opened it (`vendor_unavailable`), not "breaker open".
async fn open_breaker_link_names_the_real_cause(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
        },
    )
    .await;
    let client = rig.client_with(|c| {
        c.request_timeout = Duration::from_secs(1);
        c.retry = vetric_cvepro::RetryPolicy {
            max_attempts: 1,
            ..support::fast_retry()
        };
        // Two failed attempts (one cycle) open it; no probe during this test.
        c.breaker = BreakerPolicy {
            failure_threshold: 2,
            probe_interval: Duration::from_secs(600),
        };
    });
    let mut ingest = rig.ingest(client).await;
    accepted(&mut ingest).await;
    rig.sim.set_fault(Fault::Outage {
        status: 503,
        duration_s: None,
    });
    let mut outcome_kinds = Vec::new();
    for i in 1..=4_i64 {
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        let CycleOutcome::VendorFailed { kind, .. } = out else {
            panic!("cycle {i}: {out:?}")
        };
        outcome_kinds.push(kind);
        let link = rig
            .store
            .vendor_link(rig.site)
            .await
            .expect("link")
            .expect("row");
        assert_eq!(link.consecutive_failures, i);
        assert_eq!(
            link.last_error_kind.as_deref(),
            Some("vendor_unavailable"),
            "cycle {i} ({kind}): {link:?}"
        );
        assert!(
            link.last_error_message
                .as_deref()
                .is_some_and(|m| m.contains("503")),
            "cycle {i}: {link:?}"
        );
    }
    assert_eq!(outcome_kinds[0], "vendor_unavailable");
    assert!(
        outcome_kinds.contains(&"breaker_open"),
        "the breaker should have refused some calls: {outcome_kinds:?}"
    );
    assert_eq!(rig.count_events("vendor_down").await, 1);
}

/// After the breaker opened during an outage, the ingest gets data again on the first cycle
/// once a probe is due (RELIABILITY R1: fresh data within about one poll interval after
/// recovery). A snapshot's two calls must not make the half-open probe fail: the refused one
/// would fail the snapshot and drop the probe with it, and the breaker would never close.
async fn recovers_after_the_breaker_opened(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
        },
    )
    .await;
    let probe_interval = Duration::from_millis(300);
    let client = rig.client_with(|c| {
        c.request_timeout = Duration::from_secs(1);
        c.retry = support::fast_retry();
        c.breaker = BreakerPolicy {
            failure_threshold: 2,
            probe_interval,
        };
    });
    let mut ingest = rig.ingest(client).await;
    accepted(&mut ingest).await;
    rig.sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    for _ in 0..3 {
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        assert!(matches!(out, CycleOutcome::VendorFailed { .. }), "{out:?}");
    }
    rig.sim.clear_fault(FaultKind::Outage);
    let mut failed_after = 0;
    loop {
        tokio::time::sleep(probe_interval + Duration::from_millis(50)).await;
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        if matches!(out, CycleOutcome::Accepted { .. }) {
            break;
        }
        failed_after += 1;
        assert!(
            failed_after < 10,
            "no accepted cycle in {failed_after} cycles after the outage cleared: {out:?}"
        );
    }
    assert!(
        failed_after <= 1,
        "{failed_after} failed cycles after the outage"
    );
    assert_eq!(rig.count_events("vendor_recovered").await, 1);
}

// ----- 3. shape change ----------------------------------------------------------------------

async fn shape_change_keeps_last_good_and_alerts_once(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            ..SimConfig::scripted()
        },
    )
    .await;
    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    let last_good = rig.store.connectors(rig.site).await.expect("connectors");
    assert_eq!(last_good.len(), 3);

    rig.sim.set_fault(Fault::RenameChargePointList);
    for i in 1..=3_i64 {
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        let CycleOutcome::VendorFailed { kind, events } = &out else {
            panic!("cycle {i} with a renamed field: {out:?}")
        };
        assert_eq!(*kind, "shape_changed");
        let shape: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::VendorShapeChanged { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        if i == 1 {
            assert_eq!(shape.len(), 1, "{events:?}");
            assert!(shape[0].contains("chargePointList"), "{shape:?}");
        } else {
            assert!(shape.is_empty(), "cycle {i}: {events:?}");
        }
        assert_eq!(
            rig.store.connectors(rig.site).await.expect("connectors"),
            last_good,
            "never zero chargers on a shape error"
        );
        let link = rig
            .store
            .vendor_link(rig.site)
            .await
            .expect("link")
            .expect("row");
        assert_eq!(link.last_error_kind.as_deref(), Some("shape_changed"));
        assert_eq!(link.consecutive_failures, i);
        assert_eq!(link.charger_count_last_good, Some(3));
    }
    assert_eq!(rig.count_events("vendor_shape_changed").await, 1);

    rig.sim.clear_fault(FaultKind::RenameChargePointList);
    let kinds = accepted(&mut ingest).await;
    assert!(kinds.contains(&"vendor_recovered"), "{kinds:?}");
    assert_eq!(rig.count_events("vendor_shape_changed").await, 1);
    let link = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("row");
    assert_eq!(link.consecutive_failures, 0);
}

// ----- 4. a real empty list -----------------------------------------------------------------

async fn real_empty_list_is_accepted_after_confirmation(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            ..SimConfig::scripted()
        },
    )
    .await;
    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    let last_good = rig.store.connectors(rig.site).await.expect("connectors");
    assert_eq!(last_good.len(), 3);
    let good_success = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("row")
        .last_success;

    rig.sim.set_fault(Fault::EmptyChargerList);
    let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
    assert!(
        matches!(&out, CycleOutcome::KeptLastGood { events } if events.is_empty()),
        "the first empty read waits for confirmation: {out:?}"
    );
    assert_eq!(
        rig.store.connectors(rig.site).await.expect("connectors"),
        last_good
    );
    let link = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("row");
    assert_eq!(
        link.last_success, good_success,
        "an unconfirmed read is not fresh data"
    );
    assert_eq!(link.charger_count_last_good, Some(3));
    assert_eq!(rig.count_events("charger_count_dropped_to_zero").await, 0);

    let kinds = accepted(&mut ingest).await;
    assert_eq!(kinds, ["charger_count_dropped_to_zero"]);
    let link = rig
        .store
        .vendor_link(rig.site)
        .await
        .expect("link")
        .expect("row");
    assert_eq!(link.charger_count_last_good, Some(0));
    assert!(link.last_success > good_success);
    // The confirmed empty list is what the dashboard shows now: no chargers (retired in the
    // same transaction as the acceptance).
    assert_eq!(
        rig.store.connectors(rig.site).await.expect("connectors"),
        Vec::new(),
        "a confirmed empty list still shows chargers"
    );
    // Zero is now the last good: further empty reads are plain accepted cycles.
    assert_eq!(accepted(&mut ingest).await, Vec::<&str>::new());
    assert_eq!(rig.count_events("charger_count_dropped_to_zero").await, 1);
    let event = rig
        .events()
        .await
        .into_iter()
        .find(|e| e.kind == "charger_count_dropped_to_zero")
        .expect("stored");
    assert_eq!(
        decode(&event),
        EventKind::ChargerCountDroppedToZero { previous: 3 }
    );

    // The chargers come back exactly as they left: the ingest writes them again (its "already
    // written" cache forgot the retired ones), so they are shown again, freshly observed.
    rig.sim.clear_fault(FaultKind::EmptyChargerList);
    let back_at = Utc::now();
    accepted(&mut ingest).await;
    let back = rig.store.connectors(rig.site).await.expect("connectors");
    let keys = |v: &[vetric_store::ConnectorView]| -> Vec<(String, u32)> {
        v.iter()
            .map(|k| (k.charger_uuid.clone(), k.connector_id))
            .collect()
    };
    assert_eq!(keys(&back), keys(&last_good));
    assert!(back.iter().all(|k| k.observed_at >= back_at));
}

/// A charger the vendor stops listing (the rest of the list still there) leaves the dashboard
/// at once — a shrinking non-empty list needs no confirmation — and its sessions keep their
/// charger; a read that fails in between retires nothing.
async fn a_charger_missing_from_the_list_is_retired(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            ..SimConfig::scripted()
        },
    )
    .await;
    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    let all = rig.store.connectors(rig.site).await.expect("connectors");
    assert_eq!(all.len(), 3);
    let gone = all[1].charger_uuid.clone();

    // A failed read first: nothing is retired.
    rig.sim.set_fault(Fault::RenameChargePointList);
    let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
    assert!(matches!(out, CycleOutcome::VendorFailed { .. }), "{out:?}");
    assert_eq!(
        rig.store
            .connectors(rig.site)
            .await
            .expect("connectors")
            .len(),
        3
    );
    rig.sim.clear_fault(FaultKind::RenameChargePointList);

    rig.sim.set_fault(Fault::HideCharger { uuid: gone.clone() });
    accepted(&mut ingest).await;
    let shown = rig.store.connectors(rig.site).await.expect("connectors");
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|k| k.charger_uuid != gone));

    rig.sim.clear_fault(FaultKind::HideCharger);
    accepted(&mut ingest).await;
    assert_eq!(
        rig.store
            .connectors(rig.site)
            .await
            .expect("connectors")
            .len(),
        3
    );
}

// ----- 5. restart -----------------------------------------------------------------------------

/// A new `SiteIngest` resumed from the store (the process died between cycles, and once in the
/// middle of a cycle) carries on with the same session: one start, one end.
async fn restart_resumes_without_duplicates(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            speed: 60.0,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(0, 1, &rig.tag(3), 7_400.0)
        .expect("start");
    let mut ingest = rig.ingest(rig.fast_client()).await;
    assert!(accepted(&mut ingest).await.contains(&"session_started"));
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        accepted(&mut ingest).await;
    }
    let state = ingest.state().clone();
    drop(ingest);

    // "Restart": a new client and a new ingest, from the store alone.
    let mut ingest = rig.ingest(rig.fast_client()).await;
    assert_eq!(
        ingest.state(),
        &state,
        "the stored state is the last committed one"
    );
    let kinds = accepted(&mut ingest).await;
    assert!(
        !kinds.contains(&"session_started"),
        "the resumed ingest must not start the session again: {kinds:?}"
    );

    // The session stops; the process dies in the middle of the cycle that would see it.
    rig.sim
        .stop(0, 1, StopReason::EVDisconnected)
        .expect("stop");
    rig.sim.set_fault(Fault::Latency { ms: 2_000 });
    let cut = tokio::time::timeout(Duration::from_millis(100), ingest.cycle(Utc::now())).await;
    assert!(
        cut.is_err(),
        "the cycle should still be waiting on the vendor"
    );
    drop(ingest);
    rig.sim.clear_fault(FaultKind::Latency);

    let mut ingest = rig.ingest(rig.fast_client()).await;
    let kinds = accepted(&mut ingest).await;
    assert_eq!(
        kinds.iter().filter(|k| ENDING_KINDS.contains(k)).count(),
        1,
        "{kinds:?}"
    );
    accepted(&mut ingest).await;
    drop(ingest);
    let mut ingest = rig.ingest(rig.fast_client()).await;
    let kinds = accepted(&mut ingest).await;
    assert!(kinds.iter().all(|k| !ENDING_KINDS.contains(k)), "{kinds:?}");

    let truth = rig
        .sim
        .record()
        .into_iter()
        .find(|r| r.transaction_id == tx)
        .expect("ground truth");
    let kinds = session_kinds(&rig.events().await)
        .remove(&tx)
        .unwrap_or_default();
    assert_eq!(count(&kinds, &["session_started"]), 1, "{kinds:?}");
    assert_eq!(count(&kinds, &ENDING_KINDS), 1, "{kinds:?}");
    let s = rig
        .store
        .session(rig.site, tx)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(s.status, SessionStatus::Ended);
    assert_eq!(s.stop, truth.stop.map(to_second));
    assert_eq!(s.energy_wh, Some(truth.energy_wh.round() as i64));
    assert!(truth.energy_wh > 0.0);
    assert_eq!(
        s.resident_name.as_deref(),
        Some(rig.resident_name(3).as_str())
    );
    assert_eq!(
        rig.store
            .sessions(rig.site, &all_sessions())
            .await
            .expect("sessions")
            .len(),
        1
    );
}

// ----- 6. contract cases ----------------------------------------------------------------------

/// A transaction listed with `ocppIdTag: ""` (A5.5 #1) is attributed through a finished
/// transaction with the same `ocppTagPk`.
async fn empty_tag_resolved_from_the_vendors_history(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tag = rig.tag(5);
    let first = rig.sim.start_session(0, 1, &tag, 7_400.0).expect("start");
    rig.sim.stop(0, 1, StopReason::Remote).expect("stop");
    let tx = rig.sim.start_session(1, 1, &tag, 7_400.0).expect("start");
    rig.sim.set_tag_empty(tx, true).expect("empty tag");

    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    let started = rig
        .events()
        .await
        .into_iter()
        .find(|e| e.kind == "session_started" && e.session_vendor_id == Some(tx))
        .expect("session started");
    let EventKind::SessionStarted { session } = decode(&started) else {
        panic!("not a start")
    };
    assert_eq!(session.tag, Some(Tag::parse(&tag).expect("tag")));
    assert_eq!(
        session.resident.map(|r| r.name),
        Some(rig.resident_name(5)),
        "attributed at the start, not only at the end"
    );
    let s = rig
        .store
        .session(rig.site, tx)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(s.resident_name, Some(rig.resident_name(5)));
    assert!(
        rig.store
            .session(rig.site, first)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        rig.store.unknown_tags(rig.site).await.expect("inbox"),
        vec![]
    );
}

/// An empty `ocppIdTag` the vendor cannot resolve (no finished transaction of that key) is
/// resolved from the store's `ocppTagPk → tag` map.
async fn empty_tag_resolved_from_the_stores_tag_key_map(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
        },
    )
    .await;
    let resident = &rig.fleet.residents[6];
    let (tag, tag_pk) = (resident.tags[0].id_tag.clone(), resident.tags[0].tag_pk);
    rig.store
        .learn_tag_pk(rig.site, tag_pk, &Tag::parse(&tag).expect("tag"))
        .await
        .expect("learn");
    let tx = rig.sim.start_session(1, 1, &tag, 7_400.0).expect("start");
    rig.sim.set_tag_empty(tx, true).expect("empty tag");

    let mut ingest = rig.ingest(rig.fast_client()).await;
    assert!(accepted(&mut ingest).await.contains(&"session_started"));
    let s = rig
        .store
        .session(rig.site, tx)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(s.tag, Some(Tag::parse(&tag).expect("tag")));
    assert_eq!(s.tag_pk, Some(tag_pk));
    assert_eq!(s.resident_name, Some(resident.name.clone()));
    assert_eq!(
        rig.store.unknown_tags(rig.site).await.expect("inbox"),
        vec![]
    );
}

/// A charger that reports tags in lower case (A5.5 #2) still attributes the session.
async fn lowercase_tag_is_attributed(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
        },
    )
    .await;
    let (resident, tag) = rig
        .fleet
        .residents
        .iter()
        .enumerate()
        .find_map(|(i, r)| {
            r.tags
                .iter()
                .find(|t| t.id_tag.chars().any(|c| c.is_ascii_uppercase()))
                .map(|t| (i, t.id_tag.clone()))
        })
        .expect("a tag with letters");
    rig.sim.set_lowercase_tags(0, true).expect("lowercase");
    let tx = rig.sim.start_session(0, 1, &tag, 7_400.0).expect("start");
    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    rig.sim.stop(0, 1, StopReason::Local).expect("stop");
    let kinds = accepted(&mut ingest).await;
    assert!(kinds.contains(&"session_finished"), "{kinds:?}");
    let s = rig
        .store
        .session(rig.site, tx)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(s.tag.as_ref().map(Tag::as_str), Some(tag.as_str()));
    assert_eq!(s.resident_name, Some(rig.resident_name(resident)));
    assert_eq!(
        rig.store.unknown_tags(rig.site).await.expect("inbox"),
        vec![]
    );
    assert_eq!(rig.count_events("unknown_tag").await, 0);
}

/// `Charging` with no transaction (A5.5 #3) flags the connector and is never a session.
async fn ghost_charging_is_flagged_not_a_session(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
        },
    )
    .await;
    let mut ingest = rig.ingest(rig.fast_client()).await;
    accepted(&mut ingest).await;
    rig.sim.set_ghost(1, 1, true).expect("ghost");
    let kinds = accepted(&mut ingest).await;
    assert_eq!(kinds, ["unidentified_charging"]);
    accepted(&mut ingest).await;
    let flagged: Vec<_> = rig
        .store
        .connectors(rig.site)
        .await
        .expect("connectors")
        .into_iter()
        .filter(|c| c.unidentified_charging)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].charger_uuid, rig.fleet.chargers[1].uuid);
    assert_eq!(flagged[0].status.as_vendor_str(), "Charging");
    assert!(
        rig.store
            .sessions(rig.site, &all_sessions())
            .await
            .expect("sessions")
            .is_empty(),
        "a ghost is not a session"
    );
    assert_eq!(rig.count_events("unidentified_charging").await, 1);
    assert_eq!(rig.count_events("session_started").await, 0);

    rig.sim.set_ghost(1, 1, false).expect("ghost off");
    accepted(&mut ingest).await;
    assert!(
        rig.store
            .connectors(rig.site)
            .await
            .expect("connectors")
            .iter()
            .all(|c| !c.unidentified_charging)
    );
}

/// A charger goes offline mid-session, the car leaves meanwhile, the stop arrives when the
/// charger is back (A5.5 #4): one ending, dated with the vendor's stop, not the delivery.
async fn late_stop_after_offline_ends_once_at_the_vendors_stop(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 3,
            speed: 60.0,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(2, 1, &rig.tag(9), 7_400.0)
        .expect("start");
    let mut ingest = rig.ingest(rig.fast_client()).await;
    assert!(accepted(&mut ingest).await.contains(&"session_started"));

    rig.sim.set_offline(2).expect("offline");
    accepted(&mut ingest).await;
    let connector = |all: Vec<vetric_store::ConnectorView>| {
        all.into_iter()
            .find(|c| c.charger_uuid == rig.fleet.chargers[2].uuid)
            .expect("listed")
    };
    assert_eq!(
        connector(rig.store.connectors(rig.site).await.expect("connectors"))
            .status
            .as_vendor_str(),
        "Unavailable"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rig.sim
        .stop(2, 1, StopReason::EVDisconnected)
        .expect("stop while offline");
    let kinds = accepted(&mut ingest).await;
    assert!(
        kinds.iter().all(|k| !ENDING_KINDS.contains(k)),
        "the stop is not visible yet: {kinds:?}"
    );
    assert_eq!(
        rig.store.open_sessions(rig.site).await.expect("open").len(),
        1
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rig.sim.set_online(2).expect("online");
    let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
    let endings: Vec<_> = out
        .events()
        .iter()
        .filter(|e| ENDING_KINDS.contains(&e.kind.kind_str()))
        .collect();
    assert_eq!(endings.len(), 1, "{out:?}");
    let truth = rig
        .sim
        .record()
        .into_iter()
        .find(|r| r.transaction_id == tx)
        .expect("truth");
    let (stop, delivered) = (
        truth.stop.expect("stopped"),
        truth.stop_delivered_at.expect("delivered"),
    );
    assert!(delivered - stop >= TimeDelta::seconds(1), "{truth:?}");
    let end = match &endings[0].kind {
        EventKind::SessionFinished { end, .. } | EventKind::SessionInterrupted { end, .. } => {
            end.clone()
        }
        other => panic!("ended as {other:?}"),
    };
    assert_eq!(
        end.stop,
        to_second(stop),
        "the vendor's stop, not the delivery"
    );
    assert_eq!(end.energy_wh, Some(truth.energy_wh.round() as i64));
    for _ in 0..2 {
        let kinds = accepted(&mut ingest).await;
        assert!(kinds.iter().all(|k| !ENDING_KINDS.contains(k)), "{kinds:?}");
    }
    let per_session = session_kinds(&rig.events().await);
    assert_eq!(count(&per_session[&tx], &ENDING_KINDS), 1);
    assert_eq!(count(&per_session[&tx], &["session_started"]), 1);
    let s = rig
        .store
        .session(rig.site, tx)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(s.status, SessionStatus::Ended);
    assert_eq!(s.stop, Some(to_second(stop)));
    assert_eq!(s.energy_wh, Some(truth.energy_wh.round() as i64));
    assert_eq!(
        connector(rig.store.connectors(rig.site).await.expect("connectors"))
            .status
            .as_vendor_str(),
        "Available"
    );
}

vetric_store::test_both_backends!(
    fleet_day_at_high_speed,
    vendor_outage_keeps_last_good,
    open_breaker_link_names_the_real_cause,
    shape_change_keeps_last_good_and_alerts_once,
    real_empty_list_is_accepted_after_confirmation,
    a_charger_missing_from_the_list_is_retired,
    restart_resumes_without_duplicates,
    empty_tag_resolved_from_the_vendors_history,
    empty_tag_resolved_from_the_stores_tag_key_map,
    lowercase_tag_is_attributed,
    ghost_charging_is_flagged_not_a_session,
    late_stop_after_offline_ends_once_at_the_vendors_stop,
    recovers_after_the_breaker_opened,
);
