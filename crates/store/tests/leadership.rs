//! Ingest leadership on the database (RELIABILITY R5): on PostgreSQL, one dedicated session
//! holds a site's advisory lock and loses it when it closes or dies; on SQLite this process
//! always leads.

use sqlx::{Connection, PgConnection};
use vetric_store::testing::TestDb;
use vetric_store::{LeadershipBoard, SiteId, ingest_lock_key};

#[tokio::test]
async fn only_one_session_holds_a_site_and_closing_hands_it_over() {
    let db = TestDb::postgres().await;
    let key = ingest_lock_key("jardim");
    let mut a = db.store.leader_connection().await.expect("connection a");
    let mut b = db.store.leader_connection().await.expect("connection b");

    assert!(a.try_lock(key).await.expect("a tries"), "a leads first");
    assert!(!b.try_lock(key).await.expect("b tries"), "b must follow");
    assert!(!b.try_lock(key).await.expect("b tries again"));
    // Another site is independent.
    assert!(b.try_lock(ingest_lock_key("outro")).await.expect("b other"));
    a.check().await.expect("a's session answers");

    a.close().await;
    assert!(
        b.try_lock(key).await.expect("b after a closed"),
        "b takes over"
    );
}

#[tokio::test]
async fn unlock_hands_over_without_closing() {
    let db = TestDb::postgres().await;
    let key = ingest_lock_key("jardim");
    let mut a = db.store.leader_connection().await.expect("connection a");
    let mut b = db.store.leader_connection().await.expect("connection b");
    assert!(a.try_lock(key).await.expect("a"));
    assert!(a.unlock(key).await.expect("a unlocks"));
    assert!(b.try_lock(key).await.expect("b"));
    assert!(!a.try_lock(key).await.expect("a again"));
}

#[tokio::test]
async fn a_killed_session_releases_its_lock() {
    let db = TestDb::postgres().await;
    let key = ingest_lock_key("jardim");
    let mut a = db.store.leader_connection().await.expect("connection a");
    let mut b = db.store.leader_connection().await.expect("connection b");
    assert!(a.try_lock(key).await.expect("a"));
    let pid = a.backend_pid().await.expect("pid").expect("postgres pid");

    let mut third = PgConnection::connect(&db.url).await.expect("third");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut third)
        .await
        .expect("terminate");
    assert!(killed);

    // The dead holder notices at its next check; the server has already released the lock
    // (pg_terminate_backend returns once the signal is sent, so wait for the backend to go).
    assert!(
        a.check().await.is_err(),
        "the killed session must fail its check"
    );
    let mut took = false;
    for _ in 0..100 {
        if b.try_lock(key).await.expect("b") {
            took = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(took, "b takes over once the killed session is gone");
    let _ = third.close().await;
}

#[tokio::test]
async fn sqlite_always_leads() {
    let db = TestDb::sqlite().await;
    let mut a = db.store.leader_connection().await.expect("connection");
    assert!(a.try_lock(ingest_lock_key("jardim")).await.expect("lock"));
    a.check().await.expect("check");
    assert_eq!(a.backend_pid().await.expect("pid"), None);
    a.close().await;
}

#[test]
fn the_board_moves_since_only_on_a_role_change() {
    let board = LeadershipBoard::new();
    let t0 = chrono::Utc::now();
    let t1 = t0 + chrono::TimeDelta::seconds(5);
    board.set(SiteId(1), false, "h:1:a", t0);
    board.set(SiteId(1), false, "h:1:a", t1);
    assert_eq!(board.get(SiteId(1)).expect("site").since, t0);
    board.set(SiteId(1), true, "h:1:a", t1);
    let s = board.get(SiteId(1)).expect("site");
    assert!(s.is_leader);
    assert_eq!(s.since, t1);
}
