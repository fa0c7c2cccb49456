//! Process-level: the heartbeat to an outside monitor (issue 6 item 8; RELIABILITY.md R4).
//! While `vetric serve` runs and is healthy, a local receiver gets a ping about every
//! `heartbeat_interval_s`; once the process is killed (SIGKILL, no goodbye) the pings stop, which
//! is what lets an outside monitor notice. The URL's token never reaches the logs.

mod ops_common;

use axum::Router;
use axum::routing::get;
use ops_common::{start_serve, write_config};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vetric_sim::cvepro::{CveProSim, SimConfig};
use vetric_testkit::{free_local_addr, scratch_dir};

const MONITOR_TOKEN: &str = "HeartbeatCanary-c1Xv08Rz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_arrive_while_running_and_stop_when_killed() {
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = pings.clone();
    let monitor = Router::new().route(
        "/ping/{id}",
        get(move || {
            let counter = counter.clone();
            async move {
                // The first ping fails, so a delivery failure gets logged (without the URL).
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let monitor_addr = receiver.local_addr().expect("receiver address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(receiver, monitor).await;
    });

    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let listen = free_local_addr();
    let config = write_config(
        dir.path(),
        listen,
        &sim,
        &format!(
            "heartbeat_url = \"http://{monitor_addr}/ping/{MONITOR_TOKEN}?key={MONITOR_TOKEN}\"\n\
             heartbeat_interval_s = 1"
        ),
    );
    let mut vetric = start_serve(&config, listen).await;

    // Pings arrive while it runs (one a second; allow for start-up and a slow CI).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let while_running = pings.load(Ordering::SeqCst);
    assert!(
        while_running >= 3,
        "only {while_running} heartbeat(s) in 5 s\n{}",
        vetric.transcript()
    );

    // SIGKILL: no more pings, over several intervals.
    vetric.kill9().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_kill = pings.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        pings.load(Ordering::SeqCst),
        after_kill,
        "heartbeats continued after the process was killed"
    );

    let printed = vetric.transcript();
    assert!(
        !printed.contains(MONITOR_TOKEN),
        "the heartbeat URL's token reached the logs:\n{printed}"
    );
    assert!(
        printed.contains("heartbeat not delivered"),
        "the failed first ping was not logged:\n{printed}"
    );
    server.abort();
    sim.shutdown().await;
}
