//! Process-level: SIGTERM drains (issue 6 item 5; RELIABILITY.md R5). With a live SSE stream
//! open and API requests in flight, `vetric serve` gets SIGTERM: the in-flight requests complete
//! with 200, the stream ends cleanly with a `retry:` hint, and the process exits 0 well within
//! the 30 s drain timeout.
//!
//! "In flight" is made certain rather than hoped for: each request sends its headers and half
//! its body before SIGTERM and the rest after, so the server is inside the handler (reading the
//! body) when the signal arrives.

mod ops_common;

use ops_common::{SLUG, api_login, http, start_serve, user_add, write_config};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vetric_sim::cvepro::{CveProSim, SimConfig};
use vetric_testkit::{free_local_addr, scratch_dir};

const EMAIL: &str = "drain.admin@example.com";
const PASSWORD: &str = "drain-test-password-4821";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_completes_in_flight_requests_and_ends_live_streams() {
    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let listen = free_local_addr();
    let base = format!("http://{listen}");
    let config = write_config(dir.path(), listen, &sim, "");
    let added = user_add(&config, EMAIL, PASSWORD);
    assert!(added.ok, "user add: {}{}", added.stdout, added.stderr);
    let mut vetric = start_serve(&config, listen).await;
    let token = api_login(&base, EMAIL, PASSWORD).await;

    // A live stream, read until it ends.
    let mut sse = http()
        .get(format!("{base}/sites/{SLUG}/events"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("open the live stream");
    assert_eq!(sse.status(), 200);
    let first = sse
        .chunk()
        .await
        .expect("first live chunk")
        .expect("the stream sends at once");
    assert!(
        String::from_utf8_lossy(&first).contains("event: cards"),
        "{first:?}"
    );
    let stream = tokio::spawn(async move {
        let mut text = String::new();
        loop {
            match sse.chunk().await {
                Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => return Ok(text),
                Err(e) => return Err(format!("{e} after {text:?}")),
            }
        }
    });

    // Requests in flight: headers and half a body now, the rest after SIGTERM.
    let body = serde_json::json!({ "email": EMAIL, "password": PASSWORD }).to_string();
    let (head_part, tail_part) = body.split_at(body.len() / 2);
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        let request = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: {listen}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{head_part}",
            body.len()
        );
        conn.write_all(request.as_bytes())
            .await
            .expect("send the first half");
        in_flight.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut finishing = Vec::new();
    for mut conn in in_flight {
        let tail = tail_part.to_owned();
        finishing.push(tokio::spawn(async move {
            // After SIGTERM has been sent (below).
            tokio::time::sleep(Duration::from_millis(800)).await;
            conn.write_all(tail.as_bytes())
                .await
                .map_err(|e| format!("send the second half: {e}"))?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer))
                .await
                .map_err(|_| "no complete answer within 20 s".to_owned())?
                .map_err(|e| format!("read the answer: {e}"))?;
            Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
        }));
    }

    let started = Instant::now();
    let status = vetric.terminate(Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        vetric.transcript()
    );
    assert!(
        took < Duration::from_secs(15),
        "draining took {took:?}\n{}",
        vetric.transcript()
    );

    for f in finishing {
        let answer = f
            .await
            .expect("request task")
            .unwrap_or_else(|e| panic!("in-flight request failed: {e}\n{}", vetric.transcript()));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "in-flight request did not complete with 200:\n{answer}"
        );
        assert!(answer.contains("\"token\""), "{answer}");
    }

    let text = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the live stream ended")
        .expect("stream task")
        .unwrap_or_else(|e| panic!("the live stream was cut instead of ended: {e}"));
    assert!(
        text.contains("retry: 2000"),
        "the live stream ended without a retry hint: {text:?}"
    );
    sim.shutdown().await;
}

/// How one load request ended (see [`load_worker`]).
#[derive(Debug, Default, Clone, Copy)]
struct LoadTally {
    /// A complete answer.
    ok: u64,
    /// The connection was refused: the listener had closed (after SIGTERM).
    refused: u64,
    /// Connected, but closed before a single byte of answer: the request was never read by
    /// the server (a connection still in the kernel's accept queue when the listener closed,
    /// or one the server had not started reading). Safe for any client to retry.
    unanswered: u64,
    /// Part of an answer, then the connection was cut: an in-flight request broken by the
    /// shutdown. Must stay 0.
    cut: u64,
    /// Complete answers received after SIGTERM was sent.
    ok_after_sigterm: u64,
}

/// Requests `GET {path}` on fresh connections (`Connection: close`, so no keep-alive race)
/// until `stop`, and classifies every outcome.
async fn load_worker(
    listen: std::net::SocketAddr,
    path: &'static str,
    sigterm_sent: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: stop_flag::Stop,
) -> LoadTally {
    use std::sync::atomic::Ordering;
    let mut t = LoadTally::default();
    while !stop.is_set() {
        let after = sigterm_sent.load(Ordering::SeqCst);
        let Ok(mut conn) = tokio::net::TcpStream::connect(listen).await else {
            t.refused += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n");
        let mut answer = Vec::new();
        let read = async {
            conn.write_all(request.as_bytes()).await?;
            conn.read_to_end(&mut answer).await
        };
        let result = tokio::time::timeout(Duration::from_secs(20), read).await;
        let text = String::from_utf8_lossy(&answer);
        let complete = text.starts_with("HTTP/1.1 ") && text.contains("\r\n\r\n");
        match result {
            Ok(Ok(_)) if complete => {
                t.ok += 1;
                if after {
                    t.ok_after_sigterm += 1;
                }
            }
            _ if answer.is_empty() => t.unanswered += 1,
            _ => t.cut += 1,
        }
    }
    t
}

/// A stop flag shared by the load workers.
mod stop_flag {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Stop(Arc<AtomicBool>);

    impl Stop {
        pub fn set(&self) {
            self.0.store(true, Ordering::SeqCst);
        }

        pub fn is_set(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
}

/// RELIABILITY.md R5 ("SIGTERM with in-flight requests and sends"; issue #7), PostgreSQL
/// mode: `vetric serve` with a load client hammering it, login requests certainly in flight
/// (half a body sent before the signal), and WhatsApp sends in flight (the Evolution simulator
/// answers after 1.5 s, a burst of outbox rows is due). SIGTERM: the in-flight requests
/// complete, no answer is cut half-way, the process exits 0 within its 30 s drain timeout,
/// no row is left claimed and every row is `sent` (and at the gateway), `pending` or
/// `in_doubt` — never lost; a restart then sends the rest, each message exactly once.
/// `VETRIC_SOAK=1` uses a larger burst; one line (`FAULT_SUMMARY {"scenario":"r5-sigterm",...}`) is
/// printed for `bench/soak.sh`.
///
/// The other R5 promises are elsewhere: double start on SQLite (the second instance exits
/// before binding, naming the holder, and the vendor sees one poller) is
/// `crash_restart.rs::a_second_instance_on_the_same_store_refuses_before_binding`; SIGKILL of
/// the ingest leader with two instances is `leader_handover.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_on_postgres_completes_requests_and_loses_no_send() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use vetric_sim::evolution::{EvolutionSim, EvolutionSimConfig, Faults};
    use vetric_store::NewNotification;
    use vetric_store::testing::TestDb;

    /// `serve`'s drain timeout (crates/vetric/src/serve.rs, `DRAIN_TIMEOUT`).
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    const SEND_LATENCY_MS: u64 = 1_500;
    let soak = std::env::var("VETRIC_SOAK").is_ok_and(|v| v == "1");
    let burst: usize = if soak { 200 } else { 30 };
    let workers = if soak { 8 } else { 4 };

    let db = TestDb::postgres().await;
    let pool = sqlx::PgPool::connect(&db.url)
        .await
        .expect("connect to the test database");
    let status_counts = || async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                .fetch_all(&pool)
                .await
                .expect("count outbox rows");
        rows.into_iter().collect::<BTreeMap<String, i64>>()
    };
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("CVE-Pro simulator");
    let evo = EvolutionSim::start(
        EvolutionSimConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("Evolution simulator");
    evo.set_faults(Faults {
        latency_ms: SEND_LATENCY_MS,
        ..Faults::default()
    });

    let dir = scratch_dir();
    let listen = free_local_addr();
    let cfg = sim.config();
    let evo_cfg = evo.config();
    let config = dir.path().join("vetric.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"{db_url}\"\n\
             [dispatcher]\n\
             tick_ms = 200\n\
             concurrency = 4\n\
             [[sites]]\n\
             slug = \"{SLUG}\"\n\
             name = \"Drain test\"\n\
             [sites.cvepro]\n\
             base_url = \"{cve_url}\"\n\
             api_key = \"{cve_key}\"\n\
             email = \"{cve_email}\"\n\
             password = \"{cve_password}\"\n\
             poll_interval_s = 1\n\
             [sites.whatsapp]\n\
             base_url = \"{evo_url}\"\n\
             api_key = \"{evo_key}\"\n\
             instance = \"{evo_instance}\"\n",
            db_url = db.url,
            cve_url = sim.base_url(),
            cve_key = cfg.api_key,
            cve_email = cfg.email,
            cve_password = cfg.password,
            evo_url = evo.base_url(),
            evo_key = evo_cfg.api_key,
            evo_instance = evo_cfg.instances[0],
        ),
    )
    .expect("write config");
    let added = user_add(&config, EMAIL, PASSWORD);
    assert!(added.ok, "user add: {}{}", added.stdout, added.stderr);
    let mut vetric = start_serve(&config, listen).await;

    // The load: fresh connections, one request each, from now until after the exit.
    let sigterm_sent = Arc::new(AtomicBool::new(false));
    let stop = stop_flag::Stop::default();
    let mut load = Vec::new();
    for i in 0..workers {
        let path = if i % 2 == 0 {
            "/health"
        } else {
            "/health/live"
        };
        load.push(tokio::spawn(load_worker(
            listen,
            path,
            sigterm_sent.clone(),
            stop.clone(),
        )));
    }

    // The burst of sends: rows of a rule this version does not know are sent as they are.
    let site = db
        .store
        .site_by_slug(SLUG)
        .await
        .expect("query")
        .expect("serve created the site");
    let now = chrono::Utc::now();
    for i in 0..burst {
        let n = NewNotification {
            dedup_key: format!("r5-burst:{i}"),
            rule: "r5_burst".to_owned(),
            audience: "operator".to_owned(),
            channel: "whatsapp".to_owned(),
            resident_id: None,
            recipient: Some(format!("+55829900{:05}", 10_000 + i)),
            scope: "site".to_owned(),
            session_vendor_id: None,
            subject: None,
            body: format!("Mensagem de carga {i}"),
            ref_code: format!("RFIVE{i:03}"),
            not_before: now,
        };
        db.store
            .enqueue(Some(site.id), &n)
            .await
            .expect("enqueue")
            .expect("a new row");
    }
    // Wait until sends are under way: some done, some in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = status_counts().await;
        if c.get("sent").copied().unwrap_or(0) >= 4 && c.get("sending").copied().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sends never got under way: {c:?}\n{}",
            vetric.transcript()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Requests certainly in flight: headers and half a body now, the rest after SIGTERM.
    let body = serde_json::json!({ "email": EMAIL, "password": PASSWORD }).to_string();
    let (head_part, tail_part) = body.split_at(body.len() / 2);
    let mut finishing = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        let request = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: {listen}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{head_part}",
            body.len()
        );
        conn.write_all(request.as_bytes())
            .await
            .expect("send the first half");
        let tail = tail_part.to_owned();
        finishing.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            conn.write_all(tail.as_bytes())
                .await
                .map_err(|e| format!("send the second half: {e}"))?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
                .await
                .map_err(|_| "no complete answer within 30 s".to_owned())?
                .map_err(|e| format!("read the answer: {e}"))?;
            Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let at_stop = status_counts().await;
    sigterm_sent.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let status = vetric
        .terminate(DRAIN_TIMEOUT + Duration::from_secs(15))
        .await;
    let drain = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        vetric.transcript()
    );
    assert!(
        drain < DRAIN_TIMEOUT,
        "the exit took {drain:?}, beyond the drain timeout\n{}",
        vetric.transcript()
    );
    // A little more load against the closed port, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.set();
    let mut tally = LoadTally::default();
    for w in load {
        let t = w.await.expect("load worker");
        tally.ok += t.ok;
        tally.refused += t.refused;
        tally.unanswered += t.unanswered;
        tally.cut += t.cut;
        tally.ok_after_sigterm += t.ok_after_sigterm;
    }
    for f in finishing {
        let answer = f
            .await
            .expect("request task")
            .unwrap_or_else(|e| panic!("in-flight request failed: {e}\n{}", vetric.transcript()));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "in-flight request did not complete with 200:\n{answer}"
        );
    }
    assert_eq!(
        tally.cut, 0,
        "answers cut half-way by the shutdown: {tally:?}"
    );
    assert!(
        tally.ok > 0,
        "the load client got no answer at all: {tally:?}"
    );

    // After the stop: nothing claimed; what the gateway has is recorded sent, and nothing
    // recorded sent is missing at the gateway.
    let after_stop = status_counts().await;
    assert_eq!(
        after_stop.get("sending"),
        None,
        "rows left claimed by a clean stop: {after_stop:?}"
    );
    let unexpected: Vec<_> = after_stop
        .keys()
        .filter(|s| !["sent", "pending", "in_doubt"].contains(&s.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{after_stop:?}");
    let refs_at_gateway = || {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for msg in evo.messages() {
            let code = msg
                .text
                .rsplit("ref. ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            *m.entry(code).or_default() += 1;
        }
        m
    };
    let sent_refs = || async {
        sqlx::query_scalar::<_, String>("SELECT ref_code FROM outbox WHERE status = 'sent'")
            .fetch_all(&pool)
            .await
            .expect("sent rows")
    };
    let at_gateway = refs_at_gateway();
    let recorded = sent_refs().await;
    for code in &recorded {
        assert!(
            at_gateway.contains_key(code),
            "{code} recorded sent but not at the gateway"
        );
    }
    let in_doubt = after_stop.get("in_doubt").copied().unwrap_or(0);
    assert!(
        at_gateway.len() as i64 <= recorded.len() as i64 + in_doubt,
        "the gateway has messages recorded neither sent nor in doubt: {} at the gateway, {} \
         sent, {in_doubt} in doubt",
        at_gateway.len(),
        recorded.len()
    );

    // A restart sends the rest, each exactly once.
    let mut again = start_serve(&config, listen).await;
    let deadline = Instant::now() + Duration::from_secs(120 + burst as u64);
    loop {
        let c = status_counts().await;
        if c.get("sent").copied().unwrap_or(0) == burst as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restart did not send the rest: {c:?}\n{}",
            again.transcript()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = again
        .terminate(DRAIN_TIMEOUT + Duration::from_secs(15))
        .await;
    assert!(status.success(), "{}", again.transcript());
    let at_gateway = refs_at_gateway();
    let doubled: Vec<_> = at_gateway.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    assert_eq!(
        at_gateway.len(),
        burst,
        "every row of the burst reached the gateway"
    );

    let get = |s: &str| at_stop.get(s).copied().unwrap_or(0);
    println!(
        "R5 SIGTERM summary: burst {burst} sends at {SEND_LATENCY_MS} ms; at SIGTERM sent {}, \
         in flight or claimed {}, pending {}; exit after {:.2} s (drain timeout {} s); after the \
         stop {after_stop:?}; load {tally:?}; after the restart {} distinct at the gateway, \
         0 duplicates",
        get("sent"),
        get("sending"),
        get("pending"),
        drain.as_secs_f64(),
        DRAIN_TIMEOUT.as_secs(),
        at_gateway.len()
    );
    println!(
        "FAULT_SUMMARY {}",
        serde_json::json!({
            "scenario": "r5-sigterm",
            "soak": soak,
            "burst": burst,
            "send_latency_ms": SEND_LATENCY_MS,
            "sent_at_sigterm": get("sent"),
            "claimed_at_sigterm": get("sending"),
            "exit_s": (drain.as_secs_f64() * 100.0).round() / 100.0,
            "drain_timeout_s": DRAIN_TIMEOUT.as_secs(),
            "in_doubt_after_stop": in_doubt,
            "lost": 0,
            "duplicates": doubled.len(),
            "load_ok": tally.ok,
            "load_ok_after_sigterm": tally.ok_after_sigterm,
            "load_refused": tally.refused,
            "load_unanswered": tally.unanswered,
            "load_cut": tally.cut,
        })
    );
    pool.close().await;
    sim.shutdown().await;
    evo.shutdown().await;
}
