//! Ingest leadership end to end (RELIABILITY R5): two leader loops — two "instances", each with
//! its own store pool — on one PostgreSQL database and one CVE-Pro simulator. The vendor sees
//! one poller; when the leader dies the other takes over within a few ticks and resumes from
//! the store, with no session event lost or doubled across the hand-over.
//!
//! Progress is measured in leader ticks and store contents, never in wall-clock time; the
//! sleeps below only wait for things to happen (each with a generous bound against hangs).

mod support;

use sqlx::Connection;
use std::time::Duration;
use support::{ENDING_KINDS, Rig, SLUG, count, session_kinds, settings};
use tokio_util::sync::CancellationToken;
use vetric_engine::{LeaderSettings, Leadership, LeadershipBoard};
use vetric_sim::cvepro::{SimConfig, StopReason};
use vetric_store::testing::TestDb;
use vetric_store::{SiteId, Store};

const POLL: Duration = Duration::from_millis(150);
const TICK: Duration = Duration::from_millis(100);

fn leader_settings() -> LeaderSettings {
    LeaderSettings {
        tick: TICK,
        grace: TICK * 2,
    }
}

/// One "instance": its own pool on the database and its own leader loop.
async fn instance(
    db: &TestDb,
    rig: &Rig,
) -> (
    LeadershipBoard,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let store = Store::connect(&db.url).await.expect("second pool");
    let mut leadership = Leadership::new(store, leader_settings());
    leadership.add_site(rig.site, SLUG, rig.fast_client(), settings(POLL));
    let board = leadership.board();
    let stop = CancellationToken::new();
    let task = tokio::spawn(leadership.run(stop.clone()));
    (board, stop, task)
}

fn leads(board: &LeadershipBoard, site: SiteId) -> bool {
    board.get(site).is_some_and(|s| s.is_leader)
}

/// Waits (bounded by `max_ticks` of `board`) until `done` holds; returns the ticks it took.
async fn within_ticks(
    board: &LeadershipBoard,
    max_ticks: u64,
    mut done: impl AsyncFnMut() -> bool,
) -> u64 {
    let start = board.ticks();
    loop {
        if done().await {
            return board.ticks() - start;
        }
        assert!(
            board.ticks() - start <= max_ticks,
            "not done within {max_ticks} leader ticks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poller_and_a_clean_hand_over() {
    let db = TestDb::postgres().await;
    let rig = Rig::start(
        &db,
        SimConfig {
            chargers: 3,
            speed: 60.0,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx_a = rig
        .sim
        .start_session(0, 1, &rig.tag(0), 7_400.0)
        .expect("start a");

    let (board_a, _stop_a, task_a) = instance(&db, &rig).await;
    within_ticks(&board_a, 50, async || leads(&board_a, rig.site)).await;
    let (board_b, stop_b, task_b) = instance(&db, &rig).await;
    // The leader stores the session start.
    within_ticks(&board_a, 100, async || {
        rig.count_events("session_started").await >= 1
    })
    .await;

    // B follows for many of its ticks, and the vendor only ever saw one login: one poller.
    within_ticks(&board_b, 100, async || board_b.ticks() >= 10).await;
    assert!(leads(&board_a, rig.site));
    assert!(!leads(&board_b, rig.site), "two leaders for one site");
    assert_eq!(
        rig.sim.calls().login,
        1,
        "only the leader talks to the vendor"
    );
    let b_role = board_b.get(rig.site).expect("b knows the site");
    let a_role = board_a.get(rig.site).expect("a knows the site");
    assert_ne!(a_role.instance_id, b_role.instance_id);

    // A second session starts and the first ends while A dies: its leader loop is aborted
    // (its site task is cancelled with it and its connection dropped, as with a killed process).
    let tx_b = rig
        .sim
        .start_session(1, 1, &rig.tag(1), 7_400.0)
        .expect("start b");
    rig.sim
        .stop(0, 1, StopReason::EVDisconnected)
        .expect("stop a");
    task_a.abort();
    let _ = task_a.await;

    let took = within_ticks(&board_b, 20, async || leads(&board_b, rig.site)).await;
    eprintln!("takeover after {took} follower ticks of {TICK:?}");
    // B resumes from the store and finishes what A left.
    within_ticks(&board_b, 200, async || {
        let kinds = session_kinds(&rig.events().await);
        kinds
            .get(&tx_a)
            .is_some_and(|k| count(k, &ENDING_KINDS) == 1)
            && kinds
                .get(&tx_b)
                .is_some_and(|k| count(k, &["session_started"]) == 1)
    })
    .await;
    assert_eq!(rig.sim.calls().login, 2, "the new leader logs in once");
    // A few more cycles, then a graceful stop releases the lock.
    within_ticks(&board_b, 100, async || board_b.ticks() >= 60).await;
    stop_b.cancel();
    task_b.await.expect("b stops");
    assert!(!leads(&board_b, rig.site));

    let per_session = session_kinds(&rig.events().await);
    for tx in [tx_a, tx_b] {
        let kinds = per_session.get(&tx).cloned().unwrap_or_default();
        assert_eq!(
            count(&kinds, &["session_started"]),
            1,
            "session {tx}: {kinds:?}"
        );
    }
    let kinds = &per_session[&tx_a];
    assert_eq!(count(kinds, &ENDING_KINDS), 1, "{kinds:?}");
    // Every event exactly once: no two rows with the same kind and payload.
    let events = rig.events().await;
    let mut seen = std::collections::BTreeSet::new();
    for e in &events {
        assert!(
            seen.insert((e.kind.clone(), e.payload.to_string())),
            "event doubled across the hand-over: {} {}",
            e.kind,
            e.payload
        );
    }
}

#[tokio::test]
async fn graceful_stop_hands_over_at_the_next_tick() {
    let db = TestDb::postgres().await;
    let rig = Rig::start(&db, SimConfig::scripted()).await;
    let (board_a, stop_a, task_a) = instance(&db, &rig).await;
    within_ticks(&board_a, 50, async || leads(&board_a, rig.site)).await;
    let (board_b, _stop_b, _task_b) = instance(&db, &rig).await;
    within_ticks(&board_b, 100, async || board_b.ticks() >= 5).await;
    assert!(!leads(&board_b, rig.site));
    stop_a.cancel();
    task_a.await.expect("a stops");
    let took = within_ticks(&board_b, 3, async || leads(&board_b, rig.site)).await;
    assert!(took <= 2, "took {took} ticks");
}

#[tokio::test]
async fn sqlite_leads_at_once() {
    let db = TestDb::sqlite().await;
    let rig = Rig::start(&db, SimConfig::scripted()).await;
    let mut leadership = Leadership::new(db.store.clone(), leader_settings());
    leadership.add_site(rig.site, SLUG, rig.fast_client(), settings(POLL));
    let board = leadership.board();
    let stop = CancellationToken::new();
    let task = tokio::spawn(leadership.run(stop.clone()));
    within_ticks(&board, 3, async || leads(&board, rig.site)).await;
    within_ticks(&board, 100, async || rig.sim.calls().chargepoints >= 1).await;
    stop.cancel();
    task.await.expect("stops");
}

/// The leader's session is killed by the server while its process lives (what a network cut
/// or an operator's `pg_terminate_backend` does): it must stop polling at its next check, and
/// exactly one instance leads again, with no event doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_session_stops_the_ingest_and_hands_over() {
    let db = TestDb::postgres().await;
    let rig = Rig::start(
        &db,
        SimConfig {
            chargers: 2,
            speed: 60.0,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(0, 1, &rig.tag(0), 7_400.0)
        .expect("start");
    let (board_a, _stop_a, _task_a) = instance(&db, &rig).await;
    within_ticks(&board_a, 50, async || leads(&board_a, rig.site)).await;
    let (board_b, _stop_b, _task_b) = instance(&db, &rig).await;
    within_ticks(&board_a, 100, async || {
        rig.count_events("session_started").await >= 1
    })
    .await;

    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("admin");
    let holder: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut admin)
    .await
    .expect("the holder's pid");
    let since = board_a.get(rig.site).map(|s| s.since);
    rig.sim
        .stop(0, 1, StopReason::EVDisconnected)
        .expect("stop");
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(holder)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");

    // A notices within a couple of its ticks: its role changes (it may lead again at once,
    // after reconnecting, so the change is what is awaited, not the follower state).
    within_ticks(&board_a, 5, async || {
        board_a.get(rig.site).map(|s| s.since) != since
    })
    .await;
    within_ticks(&board_b, 50, async || {
        leads(&board_a, rig.site) || leads(&board_b, rig.site)
    })
    .await;
    within_ticks(&board_b, 200, async || {
        session_kinds(&rig.events().await)
            .get(&tx)
            .is_some_and(|k| count(k, &ENDING_KINDS) == 1)
    })
    .await;
    within_ticks(&board_b, 100, async || board_b.ticks() >= 60).await;
    assert!(
        leads(&board_a, rig.site) != leads(&board_b, rig.site),
        "exactly one leader"
    );
    let kinds = session_kinds(&rig.events().await)[&tx].clone();
    assert_eq!(count(&kinds, &["session_started"]), 1, "{kinds:?}");
    assert_eq!(count(&kinds, &ENDING_KINDS), 1, "{kinds:?}");
    let _ = admin.close().await;
}

/// A fenced ingest whose fence another instance superseded stores nothing and says it lost
/// the site; its state in memory does not move (both backends run the same fence).
#[tokio::test]
async fn a_superseded_fence_refuses_the_cycle_and_keeps_the_state() {
    for db in [TestDb::sqlite().await, TestDb::postgres().await] {
        let rig = Rig::start(&db, SimConfig::scripted()).await;
        let fence = db
            .store
            .take_write_fence(rig.site, "a")
            .await
            .expect("fence");
        let mut ingest = rig.ingest(rig.fast_client()).await.with_fence(fence);
        support::accepted(&mut ingest).await;
        rig.sim
            .start_session(0, 1, &rig.tag(0), 7_400.0)
            .expect("start");
        let before = ingest.state().clone();
        let events = rig.events().await.len();
        db.store
            .take_write_fence(rig.site, "b")
            .await
            .expect("another instance takes the site");
        let err = ingest.cycle(chrono::Utc::now()).await.expect_err("refused");
        assert!(err.is_lost_leadership(), "{err}");
        assert_eq!(ingest.state(), &before, "the state did not move");
        assert_eq!(rig.events().await.len(), events, "nothing stored");
    }
}

/// The leader loop's answer to a refused write: it stops the site's ingest, gives the site
/// up and tries again from the next tick — here it leads again (nobody else holds the lock),
/// under a newer generation, and the session's events are still stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_makes_the_leader_give_the_site_up_and_retake_it() {
    let db = TestDb::postgres().await;
    let rig = Rig::start(
        &db,
        SimConfig {
            chargers: 2,
            speed: 60.0,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(0, 1, &rig.tag(0), 7_400.0)
        .expect("start");
    let (board, stop, task) = instance(&db, &rig).await;
    within_ticks(&board, 100, async || {
        rig.count_events("session_started").await >= 1
    })
    .await;
    let first = leader_generation(&db, rig.site).await;
    // Someone else takes the fence (as a new leader would) while the leader keeps its lock.
    let intruder = db
        .store
        .take_write_fence(rig.site, "intruder")
        .await
        .expect("fence");
    assert_eq!(intruder.generation, first + 1);
    within_ticks(&board, 100, async || {
        leader_generation(&db, rig.site).await > intruder.generation
    })
    .await;
    rig.sim
        .stop(0, 1, StopReason::EVDisconnected)
        .expect("stop");
    within_ticks(&board, 200, async || {
        session_kinds(&rig.events().await)
            .get(&tx)
            .is_some_and(|k| count(k, &ENDING_KINDS) == 1)
    })
    .await;
    assert!(leads(&board, rig.site));
    stop.cancel();
    task.await.expect("stops");
    let kinds = session_kinds(&rig.events().await)[&tx].clone();
    assert_eq!(count(&kinds, &["session_started"]), 1, "{kinds:?}");
    assert_eq!(count(&kinds, &ENDING_KINDS), 1, "{kinds:?}");
}

async fn leader_generation(db: &TestDb, site: SiteId) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT generation FROM site_leadership WHERE site_id = $1")
        .bind(site)
        .fetch_optional(db.store.pg_pool().expect("postgres"))
        .await
        .expect("generation")
        .unwrap_or(0)
}
