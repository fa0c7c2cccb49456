//! Process-level (issue 7, live updates across instances): two `vetric serve` on one
//! PostgreSQL database; a browser's SSE stream on the FOLLOWER receives the status changes the
//! LEADER stored (LISTEN/NOTIFY, with the follower's poll as the backstop). Changes are driven
//! through the CVE-Pro simulator's `/__sim/` control API. Arrival is asserted; the latency
//! from the simulator change to the SSE event is printed (BENCHMARKS.md), never asserted.

mod ops_common;

use ops_common::{BIN, api_login, http, user_add, write_site_config};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vetric_sim::cvepro::{CveProSim, SimConfig, SimHandle};
use vetric_store::testing::TestDb;
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const SLUG: &str = "live-test";
/// A bound against hangs only.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(30);

fn write_pg_config(dir: &Path, listen: SocketAddr, sim: &SimHandle, url: &str) -> PathBuf {
    let path = write_site_config(dir, listen, sim, SLUG, "Live test", "");
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
    let body: Value = http()
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

async fn wait_role(listen: SocketAddr, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while role(listen).await.as_deref() != Some(wanted) {
        assert!(Instant::now() < deadline, "{listen} never became {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An SSE stream read event by event (`cards` fragments only).
struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(base: &str, token: &str) -> Self {
        let res = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{base}/sites/{SLUG}/events"))
            .bearer_auth(token)
            .send()
            .await
            .expect("SSE request");
        assert_eq!(res.status(), 200);
        Self {
            res,
            buf: String::new(),
        }
    }

    /// The next `cards` fragment, within `limit`.
    async fn next_cards(&mut self, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Events end with a blank line; data may span several `data:` lines.
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = if v.trim() == "cards" {
                            "cards"
                        } else {
                            "other"
                        };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        data.push('\n');
                    }
                }
                if name == "cards" {
                    return data;
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("an SSE event in time (hang guard)")
                .expect("the SSE stream reads")
                .expect("the SSE stream stays open");
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Reads fragments until one satisfies `wanted`; how long that took.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let left = ARRIVAL_LIMIT.saturating_sub(started.elapsed());
            assert!(
                !left.is_zero(),
                "the change never reached the follower's stream"
            );
            if wanted(&self.next_cards(left).await) {
                return started.elapsed();
            }
        }
    }
}

async fn sim_post(sim: &SimHandle, path: &str, body: Value) {
    let res = http()
        .post(format!("{}/__sim/{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("simulator control call");
    assert!(res.status().is_success(), "/__sim/{path}: {}", res.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_streams_the_status_changes_the_leader_stores() {
    let db = TestDb::postgres().await;
    let sim = CveProSim::start(
        SimConfig {
            chargers: 2,
            ..SimConfig::scripted()
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
    wait_role(listen_a, "leader").await;
    let mut b = start(&config_b, listen_b).await;
    wait_role(listen_b, "follower").await;

    let added = user_add(&config_b, "sindico@example.com", "uma senha bem longa 123");
    assert!(added.ok, "{}", added.stderr);
    let base_b = format!("http://{listen_b}");
    let token = api_login(&base_b, "sindico@example.com", "uma senha bem longa 123").await;
    // The follower's stream is the one under test; the leader's (woken in process) is the
    // baseline of the measurement.
    let mut sse = Sse::open(&base_b, &token).await;
    let mut leader_sse = Sse::open(&format!("http://{listen_a}"), &token).await;
    // The leader's first cycles have reached the store: the follower shows the chargers.
    let has_cards = |html: &str| html.contains("class=\"card ");
    sse.until(has_cards).await;
    leader_sse.until(has_cards).await;

    // The follower hears the leader's writes through its PostgreSQL listener (the 1 s poll
    // is only the fallback while the listener is down).
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    loop {
        let metrics = http()
            .get(format!("{base_b}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        if metrics.lines().any(|l| l == "vetric_live_listener_up 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower's change listener never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // More rounds for a measurement run: VETRIC_LIVE_ROUNDS=20.
    let rounds: u64 = std::env::var("VETRIC_LIVE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let (mut took, mut took_leader) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let fault = round % 2 == 0;
        // Spread the changes over the leader's 1 s poll so the samples cover its phase.
        tokio::time::sleep(Duration::from_millis(300 + 237 * (round % 5))).await;
        let (path, wanted): (&str, fn(&str) -> bool) = if fault {
            ("fault_connector", |h| h.contains("tone-fault"))
        } else {
            ("unfault_connector", |h| {
                h.contains("class=\"card ") && !h.contains("tone-fault")
            })
        };
        let changed = Instant::now();
        sim_post(
            &sim,
            path,
            serde_json::json!({ "charger": 0, "connector": 1 }),
        )
        .await;
        let (on_follower, on_leader) = tokio::join!(
            async {
                sse.until(wanted).await;
                changed.elapsed()
            },
            async {
                leader_sse.until(wanted).await;
                changed.elapsed()
            }
        );
        took.push(on_follower);
        took_leader.push(on_leader);
    }
    assert_eq!(
        role(listen_b).await.as_deref(),
        Some("follower"),
        "the stream was served by the follower"
    );
    let ms = |d: &[Duration]| d.iter().map(Duration::as_millis).collect::<Vec<_>>();
    let mean = |d: &[Duration]| d.iter().map(Duration::as_millis).sum::<u128>() / d.len() as u128;
    let extra: Vec<i128> = took
        .iter()
        .zip(&took_leader)
        .map(|(f, l)| f.as_millis() as i128 - l.as_millis() as i128)
        .collect();
    eprintln!(
        "LIVE simulator change → SSE (poll 1 s), {rounds} changes: follower {:?} ms (mean {} ms); \
         leader {:?} ms (mean {} ms); follower minus leader {extra:?} ms (mean {} ms)",
        ms(&took),
        mean(&took),
        ms(&took_leader),
        mean(&took_leader),
        extra.iter().sum::<i128>() / extra.len() as i128,
    );

    drop(sse);
    drop(leader_sse);
    assert!(b.terminate(Duration::from_secs(35)).await.success());
    assert!(a.terminate(Duration::from_secs(35)).await.success());
    sim.shutdown().await;
}
