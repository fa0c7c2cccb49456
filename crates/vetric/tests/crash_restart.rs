//! Process-level: the real `vetric serve` binary against the simulator, killed with SIGKILL in
//! the middle of ingest and restarted, must end with every session exactly once and every
//! session event exactly once (issue "Live state"; RELIABILITY.md R5). Also: a second instance
//! on the same SQLite store refuses to start before doing anything, naming the first.

mod ops_common;

use ops_common::{BIN, start_serve, write_site_config};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vetric_sim::cvepro::{CveProSim, SimConfig, SimHandle};
use vetric_store::{SessionFilter, Store};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const SLUG: &str = "crash-test";

fn write_config(dir: &Path, listen: SocketAddr, sim: &SimHandle) -> PathBuf {
    write_site_config(dir, listen, sim, SLUG, "Crash test", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_and_doubles_nothing() {
    let dir = scratch_dir();
    let sim = CveProSim::start(
        SimConfig {
            chargers: 6,
            seed: 7,
            speed: 3000.0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let listen = free_local_addr();
    let config = write_config(dir.path(), listen, &sim);

    let mut vetric = start_serve(&config, listen).await;
    // Kill at uneven moments, so some kills land inside a cycle's vendor call or store write.
    for pause_ms in [2300_u64, 1700, 3100, 900, 2600] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        vetric.kill9().await;
        vetric = start_serve(&config, listen).await;
    }
    // Let the last instance catch up with everything that happened while it was down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(
        status.success(),
        "serve did not exit cleanly on SIGTERM: {status}\n{}",
        vetric.transcript()
    );

    let truth = sim.record();
    sim.shutdown().await;
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("vetric.db").display()
    ))
    .await
    .expect("open the store");
    let site = store
        .site_by_slug(SLUG)
        .await
        .expect("query")
        .expect("site exists");
    let sessions = store
        .sessions(site.id, &SessionFilter::default())
        .await
        .expect("sessions");
    let events = store.events(site.id, 0, 100_000).await.expect("events");

    // Every transaction the vendor showed at least one poll before the end is stored once.
    let settled = chrono::Utc::now() - chrono::TimeDelta::seconds(4);
    let stored: BTreeMap<i64, _> = sessions.iter().map(|s| (s.vendor_id, s)).collect();
    assert_eq!(stored.len(), sessions.len(), "a session is stored twice");
    let mut compared = 0;
    for t in truth.iter().filter(|t| t.start < settled) {
        let s = stored
            .get(&t.transaction_id)
            .unwrap_or_else(|| panic!("transaction {} missing from the store", t.transaction_id));
        assert_eq!(
            s.start.timestamp(),
            t.start.timestamp(),
            "start of {}",
            t.transaction_id
        );
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
            let energy = s.energy_wh.expect("a stopped session has energy");
            assert!(
                (energy as f64 - t.energy_wh).abs() <= 1.0,
                "energy of {}: stored {energy} Wh, vendor {} Wh",
                t.transaction_id,
                t.energy_wh
            );
            compared += 1;
        }
    }
    eprintln!(
        "compared {compared} finished sessions of {} transactions",
        truth.len()
    );
    assert!(
        compared >= 3,
        "the run should have finished a few sessions, compared {compared}"
    );

    // Exactly one start (unless recorded as history) and exactly one ending per session.
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
        assert!(
            count("session_started") <= 1,
            "session {id} started twice: {kinds:?}"
        );
        assert!(endings <= 1, "session {id} ended twice: {kinds:?}");
        assert!(
            count("session_recorded") + count("session_started") == 1,
            "session {id}: {kinds:?}"
        );
        if count("session_recorded") == 1 {
            assert_eq!(
                endings, 0,
                "a recorded session has no ending event: {kinds:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_store_refuses_before_binding() {
    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let listen = free_local_addr();
    let config = write_config(dir.path(), listen, &sim);
    let mut first = start_serve(&config, listen).await;
    let pid = first.pid().expect("running");
    // The first poll is jittered within the poll interval; wait until it has logged in.
    for _ in 0..100 {
        if sim.calls().login > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Same store, another port: it must refuse because of the store, naming the holder.
    let other = free_local_addr();
    let mut second = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LISTEN", &other.to_string())],
    );
    let status = second.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(3), "{}", second.transcript());
    let err = second.stderr_lines().join("\n");
    assert!(
        err.contains(&format!("pid {pid}")),
        "the refusal names the holder: {err}"
    );
    assert!(
        std::net::TcpListener::bind(other).is_ok(),
        "the refused instance must not have bound its port"
    );

    // A foreign process on the port: refused with the port named and its own exit code.
    let dir2 = scratch_dir();
    let config2 = write_config(dir2.path(), listen, &sim);
    let mut third = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config2.to_str().expect("utf-8 path")],
        &[],
    );
    let status = third.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(2), "{}", third.transcript());
    assert!(
        third
            .stderr_lines()
            .join("\n")
            .contains(&listen.to_string())
    );

    let calls_before = sim.calls();
    first.terminate(Duration::from_secs(35)).await;
    // Only the first instance ever talked to the vendor.
    assert_eq!(
        calls_before.login, 1,
        "only the first instance may log in to the vendor"
    );
    sim.shutdown().await;
}
