//! Process-level health (issue "Operations", Done when): the real `vetric serve` binary on
//! PostgreSQL, polling the CVE-Pro simulator every second, says `pass` when all is well, `warn`
//! (200) with the vendor down or its answers changing shape, and `fail` (503) with the store
//! gone — and comes back by itself each time.
//!
//! The store is taken away for real: the test's database refuses new connections
//! (`ALLOW_CONNECTIONS false`) and the server's connections are terminated, so the pool cannot
//! reconnect until it is allowed again.
//!
//! Every wait polls with a deadline counted in poll cycles (the server polls every [`POLL`]);
//! nothing asserts on a fixed sleep. Needs PostgreSQL at `VETRIC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`): when it is unreachable the test fails, saying
//! how to start it; it never skips.

mod ops_common;

use ops_common::{SLUG, start_serve};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vetric_sim::cvepro::{CveProSim, Fault, FaultKind, SimConfig, SimHandle};
use vetric_store::testing::{TestDb, pg_admin_url};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

/// The server's `poll_interval_s`.
const POLL: Duration = Duration::from_secs(1);

/// `n` poll cycles.
fn cycles(n: u32) -> Duration {
    POLL * n
}

fn write_pg_config(dir: &Path, listen: SocketAddr, sim: &SimHandle, database_url: &str) -> PathBuf {
    let cfg = sim.config();
    let path = dir.join("vetric.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"{database_url}\"\n\
             [[sites]]\n\
             slug = \"{SLUG}\"\n\
             name = \"Health test\"\n\
             [sites.cvepro]\n\
             base_url = \"{}\"\n\
             api_key = \"{}\"\n\
             email = \"{}\"\n\
             password = \"{}\"\n\
             poll_interval_s = {}\n",
            sim.base_url(),
            cfg.api_key,
            cfg.email,
            cfg.password,
            POLL.as_secs()
        ),
    )
    .expect("write config");
    path
}

/// One answer of a health endpoint.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Answer {
    fn status_field(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    fn check(&self, name: &str) -> &Value {
        &self.body["checks"][name][0]
    }

    fn vendor(&self) -> &Value {
        self.check(&format!("vendor:{SLUG}"))
    }

    fn store(&self) -> &Value {
        self.check("store:responseTime")
    }
}

struct Probe {
    client: reqwest::Client,
    base: String,
}

impl Probe {
    async fn get(&self, path: &str) -> Result<Answer, String> {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = res.text().await.map_err(|e| format!("GET {path}: {e}"))?;
        let body = if path == "/health/live" {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}: {text}"))?
        };
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// Polls `path` until `pred` holds, for at most `limit`; panics with the last answer and
    /// what the server printed.
    async fn wait_for(
        &self,
        vetric: &VetricProcess,
        path: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let started = tokio::time::Instant::now();
        let deadline = started + limit;
        loop {
            let last = match self.get(path).await {
                Ok(a) if pred(&a) => {
                    eprintln!("{what}: after {:.1} s", started.elapsed().as_secs_f64());
                    return a;
                }
                Ok(a) => format!("{} {}", a.status, a.body),
                Err(e) => e,
            };
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: not seen on {path} within {limit:?}; last answer: {last}\n{}",
                    vetric.transcript()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An admin connection to the PostgreSQL server of the test database.
async fn admin() -> PgConnection {
    let url = pg_admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL tests need a server at {} but it is unreachable: {e}\n\
             Start it with `pg_ctlcluster 15 main start` (Debian; or `systemctl start \
             postgresql`), or point VETRIC_TEST_PG_URL at another server. This test never \
             skips.",
            vetric_store::redact_url(&url)
        )
    })
}

async fn admin_exec(sql: String) {
    let mut conn = admin().await;
    conn.execute(sqlx::AssertSqlSafe(sql.clone()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Makes the database refuse connections and ends the ones it has.
async fn take_store_away(name: &str) {
    admin_exec(format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    admin_exec(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await;
}

async fn give_store_back(name: &str) {
    admin_exec(format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .await;
}

fn is_health_json(a: &Answer) -> bool {
    a.content_type.starts_with("application/health+json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_pass_warn_fail_through_the_real_process() {
    // The admin connection first: an unreachable server fails here with the instructions.
    drop(admin().await);
    let db = TestDb::postgres().await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("a database name in the test URL")
        .to_owned();
    // The server under test uses its own pool; this one is not needed.
    db.store.close().await;

    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let listen = free_local_addr();
    let config = write_pg_config(dir.path(), listen, &sim, &db.url);
    let mut vetric = start_serve(&config, listen).await;
    let probe = Probe {
        // Longer than the server's store timeout (2 s): a health answer that takes longer is
        // a hang, and shows up as the last answer of a failed wait.
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(8))
            .build()
            .expect("http client"),
        base: format!("http://{listen}"),
    };
    let vendor_key = format!("vendor:{SLUG}");

    // 1. All is well: pass, with a store check and a vendor check, as health+json. The first
    // poll is jittered within a cycle; a few cycles cover it.
    let a = probe
        .wait_for(&vetric, "/health", "pass at start", cycles(10), |a| {
            a.status == 200 && a.status_field() == "pass"
        })
        .await;
    assert!(is_health_json(&a), "content type: {}", a.content_type);
    assert_eq!(a.vendor()["status"], "pass", "{}", a.body);
    assert_eq!(a.store()["status"], "pass", "{}", a.body);
    assert!(
        a.store()["observedValue"].is_number(),
        "the store check observes a response time: {}",
        a.body
    );
    assert!(
        a.body["checks"].get(&vendor_key).is_some(),
        "{vendor_key} check: {}",
        a.body
    );
    let ready = probe.get("/health/ready").await.expect("ready");
    assert_eq!(ready.status, 200, "{}", ready.body);

    // 2. The vendor answers 502 everywhere: warn (200), never fail. A failing cycle runs its
    // retries (backoff up to a few seconds) before it is recorded, so allow several cycles.
    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    let a = probe
        .wait_for(
            &vetric,
            "/health",
            "warn with the vendor down",
            cycles(25),
            |a| a.status_field() == "warn" && a.vendor()["status"] == "warn",
        )
        .await;
    assert_eq!(
        a.status, 200,
        "a vendor outage is not a failure: {}",
        a.body
    );
    assert!(is_health_json(&a));
    assert_eq!(a.store()["status"], "pass", "{}", a.body);
    sim.clear_fault(FaultKind::Outage);
    // Recovery waits for the breaker's next probe (every 10 s while open) and a good cycle.
    probe
        .wait_for(
            &vetric,
            "/health",
            "pass after the outage",
            cycles(25),
            |a| a.status == 200 && a.status_field() == "pass",
        )
        .await;

    // 3. The answers change shape: warn (200) naming what changed.
    sim.set_fault(Fault::RenameChargePointList);
    let a = probe
        .wait_for(
            &vetric,
            "/health",
            "warn with the shape changed",
            cycles(10),
            |a| a.status_field() == "warn" && a.vendor()["status"] == "warn",
        )
        .await;
    assert_eq!(a.status, 200, "a shape change is not a failure: {}", a.body);
    let output = a.vendor()["output"].as_str().unwrap_or("");
    assert!(
        output.contains("chargePointList"),
        "the vendor check names the changed field: {}",
        a.body
    );
    sim.clear_fault(FaultKind::RenameChargePointList);
    probe
        .wait_for(
            &vetric,
            "/health",
            "pass after the shape change",
            cycles(10),
            |a| a.status == 200 && a.status_field() == "pass",
        )
        .await;

    // 4. The store is gone: fail (503) on /health and /health/ready, within the store timeout;
    // the process itself stays live.
    take_store_away(&name).await;
    let a = probe
        .wait_for(
            &vetric,
            "/health",
            "fail with the store gone",
            cycles(10),
            |a| a.status == 503,
        )
        .await;
    assert_eq!(a.status_field(), "fail", "{}", a.body);
    assert_eq!(a.store()["status"], "fail", "{}", a.body);
    assert!(is_health_json(&a));
    probe
        .wait_for(
            &vetric,
            "/health/ready",
            "ready fails with the store gone",
            cycles(10),
            |a| a.status == 503 && a.status_field() == "fail",
        )
        .await;
    let live = probe.get("/health/live").await.expect("live");
    assert_eq!(live.status, 200, "liveness touches nothing but the process");
    // Still failing a little later (the pool cannot sneak back in), still live.
    tokio::time::sleep(cycles(2)).await;
    let a = probe.get("/health").await.expect("health");
    assert_eq!(a.status, 503, "{}", a.body);
    let live = probe.get("/health/live").await.expect("live");
    assert_eq!(live.status, 200);

    // The store comes back: the pool reconnects by itself.
    give_store_back(&name).await;
    probe
        .wait_for(
            &vetric,
            "/health/ready",
            "ready after the store is back",
            cycles(10),
            |a| a.status == 200,
        )
        .await;
    let a = probe
        .wait_for(
            &vetric,
            "/health",
            "200 after the store is back",
            cycles(10),
            |a| a.status == 200 && a.store()["status"] == "pass",
        )
        .await;
    assert_ne!(a.status_field(), "fail", "{}", a.body);
    probe
        .wait_for(
            &vetric,
            "/health",
            "pass after the store is back",
            cycles(15),
            |a| a.status == 200 && a.status_field() == "pass",
        )
        .await;

    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(
        status.success(),
        "serve did not exit cleanly on SIGTERM: {status}\n{}",
        vetric.transcript()
    );
    sim.shutdown().await;
    // `db` drops here: DROP DATABASE … WITH (FORCE).
    drop(db);
}
