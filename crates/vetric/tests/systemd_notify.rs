//! Process-level: `vetric serve` under a (fake) systemd speaks the sd_notify protocol
//! (deploy/systemd/vetric.service, STACK.md §27): READY=1 once it serves HTTP, WATCHDOG=1
//! keep-alives while the store answers and the ingest loop records cycles, STOPPING=1 when
//! SIGTERM starts the drain. The "service manager" is a Unix datagram socket passed as
//! NOTIFY_SOCKET, with WATCHDOG_USEC asking for a 2 s watchdog.

use std::time::Duration;
use tokio::net::UnixDatagram;
use vetric_sim::cvepro::{CveProSim, SimConfig};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_vetric");

async fn next_message(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    let mut buf = vec![0_u8; 4096];
    match tokio::time::timeout(limit, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => panic!("notify socket: {e}"),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_stopping_are_sent() {
    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let cfg = sim.config();
    let listen = free_local_addr();
    let config = dir.path().join("vetric.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"sqlite://vetric.db\"\n\
             [[sites]]\n\
             slug = \"notify\"\n\
             name = \"Notify\"\n\
             [sites.cvepro]\n\
             base_url = \"{}\"\n\
             api_key = \"{}\"\n\
             email = \"{}\"\n\
             password = \"{}\"\n\
             poll_interval_s = 1\n",
            sim.base_url(),
            cfg.api_key,
            cfg.email,
            cfg.password
        ),
    )
    .expect("write config");
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let socket = socket_path.to_str().expect("utf-8 path").to_owned();

    let mut vetric = VetricProcess::spawn(
        std::path::Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[
            ("VETRIC_LOG", "info"),
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );

    let ready = next_message(&sock, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no READY=1 within 30 s\n{}", vetric.transcript()));
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "first message is not READY=1: {ready:?}"
    );
    // READY means serving: the readiness endpoint answers at once.
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{listen}/health/ready"))
        .send()
        .await
        .expect("GET /health/ready after READY=1");
    assert_eq!(res.status(), 200);

    // Keep-alives every second while the loop records cycles (poll 1 s).
    let mut keepalives = 0;
    while keepalives < 3 {
        let msg = next_message(&sock, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "only {keepalives} WATCHDOG=1 before silence\n{}",
                    vetric.transcript()
                )
            });
        if msg.lines().any(|l| l == "WATCHDOG=1") {
            keepalives += 1;
        }
    }

    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(status.success(), "{status:?}\n{}", vetric.transcript());
    let mut stopping = false;
    while let Some(msg) = next_message(&sock, Duration::from_millis(200)).await {
        stopping |= msg.lines().any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1 on SIGTERM");
}
