//! Process-level (RELIABILITY R5, PostgreSQL mode): two `vetric serve` on one PostgreSQL
//! database (different ports) and one CVE-Pro simulator. Exactly one polls; SIGKILL the leader
//! and the other takes over, and every session and session event ends up stored exactly once
//! against the simulator's ground truth. The takeover time is printed (BENCHMARKS.md,
//! "Leadership"), not asserted: the waits below are bounds against hangs only.

mod ops_common;

use ops_common::{BIN, write_site_config};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vetric_sim::cvepro::{CveProSim, SimConfig, SimHandle};
use vetric_store::SessionFilter;
use vetric_store::testing::TestDb;
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const SLUG: &str = "leader-test";

fn write_pg_config(dir: &Path, listen: SocketAddr, sim: &SimHandle, url: &str) -> PathBuf {
    let path = write_site_config(dir, listen, sim, SLUG, "Leader test", "");
    let text = std::fs::read_to_string(&path).expect("read config");
    let text = text.replace(
        "database_url = \"sqlite://vetric.db\"",
        &format!("database_url = \"{url}\""),
    );
    assert!(text.contains(url), "the config names the PostgreSQL store");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn start(config: &Path, listen: SocketAddr) -> VetricProcess {
    let mut p = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LOG", "info")],
    );
    p.wait_live(&format!("http://{listen}"), Duration::from_secs(60))
        .await;
    p
}

/// `leader`, `follower`, or `None` when `/health` does not say (yet).
async fn role(listen: SocketAddr) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
        .ok()?;
    let body: Value = client
        .get(format!("http://{listen}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["checks"][format!("ingest:{SLUG}")]
        .as_array()?
        .iter()
        .find(|c| c["observedUnit"] == "role")
        .and_then(|c| c["observedValue"].as_str().map(str::to_owned))
}

async fn wait_role(listen: SocketAddr, wanted: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if role(listen).await.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{listen} did not become {wanted} (hang guard {limit:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_hands_over_without_loss_or_doubles() {
    let db = TestDb::postgres().await;
    let sim = CveProSim::start(
        SimConfig {
            chargers: 6,
            seed: 11,
            speed: 3000.0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let (dir_a, dir_b) = (scratch_dir(), scratch_dir());
    let (listen_a, listen_b) = (free_local_addr(), free_local_addr());
    let config_a = write_pg_config(dir_a.path(), listen_a, &sim, &db.url);
    let config_b = write_pg_config(dir_b.path(), listen_b, &sim, &db.url);

    let mut a = start(&config_a, listen_a).await;
    wait_role(listen_a, "leader", Duration::from_secs(30)).await;
    let mut b = start(&config_b, listen_b).await;
    // B follows while A lives, and only A ever talks to the vendor.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(role(listen_b).await.as_deref(), Some("follower"));
        assert_eq!(role(listen_a).await.as_deref(), Some("leader"));
    }
    assert_eq!(sim.calls().login, 1, "one poller: only the leader logs in");

    let killed = Instant::now();
    a.kill9().await;
    wait_role(listen_b, "leader", Duration::from_secs(60)).await;
    let takeover = killed.elapsed();
    // The first cycle of the new leader: the vendor sees its login.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.calls().login < 2 {
        assert!(Instant::now() < deadline, "the new leader never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_poll = killed.elapsed();
    eprintln!(
        "LEADERSHIP takeover: leader after {:.2} s, first vendor poll after {:.2} s (poll interval 1 s)",
        takeover.as_secs_f64(),
        first_poll.as_secs_f64()
    );

    // Let the new leader catch up, then stop it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = b.terminate(Duration::from_secs(35)).await;
    assert!(status.success(), "{}", b.transcript());
    let truth = sim.record();
    sim.shutdown().await;

    let store = &db.store;
    let site = store
        .site_by_slug(SLUG)
        .await
        .expect("query")
        .expect("site exists");
    let sessions = store
        .sessions(
            site.id,
            &SessionFilter {
                limit: Some(100_000),
                ..SessionFilter::default()
            },
        )
        .await
        .expect("sessions");
    let events = store.events(site.id, 0, 1_000_000).await.expect("events");

    let settled = chrono::Utc::now() - chrono::TimeDelta::seconds(4);
    let stored: BTreeMap<i64, _> = sessions.iter().map(|s| (s.vendor_id, s)).collect();
    assert_eq!(stored.len(), sessions.len(), "a session is stored twice");
    let mut compared = 0;
    for t in truth.iter().filter(|t| t.start < settled) {
        let s = stored
            .get(&t.transaction_id)
            .unwrap_or_else(|| panic!("transaction {} missing from the store", t.transaction_id));
        assert_eq!(s.start.timestamp(), t.start.timestamp());
        if let Some(delivered) = t.stop_delivered_at
            && delivered < settled
        {
            let stop = s.stop.unwrap_or_else(|| {
                panic!("transaction {} stopped but stored open", t.transaction_id)
            });
            assert_eq!(
                stop.timestamp(),
                t.stop
                    .expect("a delivered stop has a stop time")
                    .timestamp()
            );
            compared += 1;
        }
    }
    eprintln!(
        "compared {compared} finished sessions of {} transactions",
        truth.len()
    );
    assert!(compared >= 3, "too few finished sessions: {compared}");

    let mut per_session: BTreeMap<i64, BTreeMap<String, usize>> = BTreeMap::new();
    for e in &events {
        if let Some(id) = e.session_vendor_id {
            *per_session
                .entry(id)
                .or_default()
                .entry(e.kind.clone())
                .or_default() += 1;
        }
    }
    for (id, kinds) in &per_session {
        let count = |k: &str| kinds.get(k).copied().unwrap_or(0);
        let endings = count("session_finished")
            + count("session_interrupted")
            + count("session_closed_stale");
        assert!(endings <= 1, "session {id} ended twice: {kinds:?}");
        assert_eq!(
            count("session_recorded") + count("session_started"),
            1,
            "session {id}: {kinds:?}"
        );
    }
    drop(a);
}
