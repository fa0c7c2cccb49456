//! The ingest write fence (issue 7, RELIABILITY R5): a write of a leader that lost the site
//! either lands before the new leader reads the state or not at all — never after, which is
//! what would double a cycle's events — and the live-update notices ride on the write's
//! commit.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use vetric_store::testing::TestDb;
use vetric_store::{
    BreakerState, ChangeNotice, CycleWrite, NewEvent, SiteId, Store, StoreError, VendorLinkRow,
    ingest_lock_key, test_both_backends,
};

/// Cycle `n`: one event numbered `n` and the tracker state "after cycle n".
fn cycle(n: i64) -> CycleWrite {
    let at = Utc::now();
    CycleWrite {
        observed_at: at,
        listed_chargers: None,
        chargers: vec![],
        sessions: vec![],
        events: vec![NewEvent {
            at,
            kind: "session_started".into(),
            session_vendor_id: Some(n),
            charger_uuid: Some("c1".into()),
            payload: json!({ "n": n }),
        }],
        unknown_tags: vec![],
        tracker_state: Some(json!({ "cycle": n })),
        vendor_link: link(at),
        notifications: Vec::new(),
        cancellations: Vec::new(),
    }
}

fn link(at: DateTime<Utc>) -> VendorLinkRow {
    VendorLinkRow {
        last_success: Some(at),
        last_error_kind: None,
        last_error_message: None,
        last_error_at: None,
        consecutive_failures: 0,
        breaker: BreakerState::Closed,
        charger_count_last_good: Some(1),
        updated_at: at,
    }
}

async fn site(store: &Store) -> SiteId {
    store
        .upsert_site("jardim", "Jardim", "America/Sao_Paulo")
        .await
        .expect("site")
}

/// The numbers of the stored events, in order.
async fn numbers(store: &Store, site: SiteId) -> Vec<i64> {
    store
        .events(site, 0, 1000)
        .await
        .expect("events")
        .iter()
        .map(|e| e.payload["n"].as_i64().expect("n"))
        .collect()
}

async fn state_cycle(store: &Store, site: SiteId) -> Option<i64> {
    store
        .tracker_state(site)
        .await
        .expect("state")
        .and_then(|s| s["cycle"].as_i64())
}

/// Only the newest fence writes; a refused write leaves no trace; unfenced writes (tools,
/// tests) are not affected.
async fn only_the_newest_fence_writes(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let a = store.take_write_fence(s, "a").await.expect("fence a");
    store
        .write_cycle_fenced(&a, &cycle(1))
        .await
        .expect("a writes");
    let b = store.take_write_fence(s, "b").await.expect("fence b");
    assert!(b.generation > a.generation, "{a:?} {b:?}");

    let refused = store.write_cycle_fenced(&a, &cycle(2)).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::LostLeadership { site, generation } if site == s && generation == a.generation),
        "{refused:?}"
    );
    assert_eq!(
        numbers(store, s).await,
        vec![1],
        "a refused write wrote nothing"
    );
    assert_eq!(state_cycle(store, s).await, Some(1));

    store
        .write_cycle_fenced(&b, &cycle(2))
        .await
        .expect("b writes");
    store.write_cycle(s, &cycle(3)).await.expect("unfenced");
    assert_eq!(numbers(store, s).await, vec![1, 2, 3]);
    // Sites are fenced independently.
    let other = store
        .upsert_site("outro", "Outro", "America/Sao_Paulo")
        .await
        .expect("other site");
    let o = store.take_write_fence(other, "a").await.expect("fence");
    store
        .write_cycle_fenced(&o, &cycle(9))
        .await
        .expect("other");
    store
        .write_cycle_fenced(&b, &cycle(4))
        .await
        .expect("b still");
}

test_both_backends!(only_the_newest_fence_writes);

/// Waits until a backend of this database waits for a lock in a statement starting with
/// `prefix`; panics after a generous bound (a hang guard, not a timing assertion).
async fn wait_for_lock_wait(admin: &mut PgConnection, prefix: &str) {
    for _ in 0..400 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_one(&mut *admin)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no backend ever waited for a lock in `{prefix}…`");
}

/// The hand-over race of issue 7 on PostgreSQL, staged step by step. A (leader, generation g)
/// has a write in flight — past its fence check, held up before its commit — when its lock
/// connection is terminated. B takes the lock at once; B's fence bump must wait for A's write,
/// so B reads a state that includes it. A's next write is refused and writes nothing; B's
/// writes land; every event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_at_the_hand_over_lands_before_the_new_leader_reads_or_not_at_all() {
    let db = TestDb::postgres().await;
    let s = site(&db.store).await;
    // Two "instances": each its own pool and its own leadership connection.
    let store_a = Store::connect(&db.url).await.expect("pool a");
    let store_b = Store::connect(&db.url).await.expect("pool b");
    let key = ingest_lock_key("jardim");
    let mut lock_a = store_a.leader_connection().await.expect("lock conn a");
    let mut lock_b = store_b.leader_connection().await.expect("lock conn b");
    assert!(lock_a.try_lock(key).await.expect("a locks"));
    let fence_a = store_a.take_write_fence(s, "a").await.expect("fence a");
    store_a
        .write_cycle_fenced(&fence_a, &cycle(1))
        .await
        .expect("a's first cycle");

    // Hold A's next write after its fence check: a bystander locks the tracker_state row,
    // which the write updates after the events.
    let mut admin = PgConnection::connect(&db.url).await.expect("admin");
    let mut blocker = PgConnection::connect(&db.url).await.expect("blocker");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM tracker_state WHERE site_id = $1 FOR UPDATE")
        .bind(s)
        .execute(&mut blocker)
        .await
        .expect("row lock");
    let in_flight = {
        let store_a = store_a.clone();
        tokio::spawn(async move { store_a.write_cycle_fenced(&fence_a, &cycle(2)).await })
    };
    wait_for_lock_wait(&mut admin, "INSERT INTO tracker_state").await;

    // A's lock connection dies; B takes the lock.
    let pid = lock_a.backend_pid().await.expect("pid").expect("pg pid");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    let mut b_leads = false;
    for _ in 0..200 {
        if lock_b.try_lock(key).await.expect("b tries") {
            b_leads = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(b_leads, "b takes the lock once a's session is gone");

    // B's bump waits for A's write in flight (it holds the fence row)…
    let bump = {
        let store_b = store_b.clone();
        tokio::spawn(async move { store_b.take_write_fence(s, "b").await })
    };
    wait_for_lock_wait(&mut admin, "INSERT INTO site_leadership").await;
    assert!(
        !bump.is_finished(),
        "the bump must wait for the write in flight"
    );
    assert!(!in_flight.is_finished());

    // …which, once let go, commits (it passed its fence before the bump).
    sqlx::query("COMMIT")
        .execute(&mut blocker)
        .await
        .expect("commit");
    in_flight
        .await
        .expect("join")
        .expect("a's in-flight write commits");
    let fence_b = bump.await.expect("join").expect("b's fence");
    assert!(fence_b.generation > fence_a.generation);
    // B reads the state only now: it includes A's last cycle, so B does not derive it again.
    assert_eq!(state_cycle(&store_b, s).await, Some(2));

    // A's next write is refused and leaves nothing; B's land.
    let refused = store_a
        .write_cycle_fenced(&fence_a, &cycle(3))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::LostLeadership { .. }),
        "{refused:?}"
    );
    assert_eq!(numbers(&db.store, s).await, vec![1, 2]);
    store_b
        .write_cycle_fenced(&fence_b, &cycle(3))
        .await
        .expect("b's cycle");
    store_b
        .write_cycle_fenced(&fence_b, &cycle(4))
        .await
        .expect("b's next cycle");
    assert_eq!(
        numbers(&db.store, s).await,
        vec![1, 2, 3, 4],
        "every event exactly once"
    );
    assert_eq!(state_cycle(&db.store, s).await, Some(4));
    let _ = admin.close().await;
    let _ = blocker.close().await;
}

/// A committed ingest write notifies every listening instance and this process; a write the
/// fence refused notifies nobody (the notice is sent inside the transaction).
#[tokio::test]
async fn committed_writes_notify_listeners_and_refused_ones_do_not() {
    let db = TestDb::postgres().await;
    let s = site(&db.store).await;
    let other_instance = Store::connect(&db.url).await.expect("pool");
    let mut listener = other_instance
        .listen_changes()
        .await
        .expect("listen")
        .expect("a listener on PostgreSQL");
    let mut local = db.store.local_changes();

    let old = db.store.take_write_fence(s, "a").await.expect("fence");
    let new = db.store.take_write_fence(s, "b").await.expect("fence");
    assert!(db.store.write_cycle_fenced(&old, &cycle(1)).await.is_err());
    db.store
        .write_cycle_fenced(&new, &cycle(2))
        .await
        .expect("write");

    // The first notice heard is the committed write's: the refused one sent none.
    let heard = tokio::time::timeout(Duration::from_secs(30), listener.next())
        .await
        .expect("a notice (hang guard)")
        .expect("listener");
    assert_eq!(heard, ChangeNotice::Site(s));
    assert_eq!(local.try_recv().expect("in-process notice"), s);
    assert!(local.try_recv().is_err(), "one notice per committed write");
    listener.ping().await.expect("ping");
}

#[tokio::test]
async fn sqlite_has_no_listener_but_announces_in_process() {
    let db = TestDb::sqlite().await;
    let s = site(&db.store).await;
    assert!(db.store.listen_changes().await.expect("listen").is_none());
    let mut local = db.store.local_changes();
    db.store.write_cycle(s, &cycle(1)).await.expect("write");
    assert_eq!(local.try_recv().expect("in-process notice"), s);
}
