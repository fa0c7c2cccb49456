//! R2 (RELIABILITY.md; issue #5): no notification lost, none sent twice, while the real
//! `vetric serve` binary on PostgreSQL is killed with SIGKILL at random moments and restarted
//! through the testkit harness.
//!
//! The CVE-Pro simulator plays a fast automatic fleet whose residents (with phones) are seeded
//! in the store before the first start, so sessions produce resident messages; the Evolution
//! simulator answers slowly (latency drawn again every few hundred ms), fails 5 % of sends and
//! stores messages, so reconciliation may resend what it does not find; operator alerts go to a
//! local webhook receiver. Ground truth is the simulators' record (every message the gateway
//! accepted) and the events the ingest stored; the outbox is what is checked against them.
//!
//! Sizes come from the environment so the same test is the soak (`BENCHMARKS.md`, "R2 soak"):
//! `VETRIC_R2_MESSAGES` (resident messages to send, default 250), `VETRIC_R2_KILLS` (SIGKILLs,
//! default 8), `VETRIC_R2_SEED`. Bounds are counted in poll cycles (the vendor simulator's
//! `chargepoints` calls), never in wall-clock time; the only clocks are generous guards that
//! turn a hang into a failure with a transcript.

mod ops_common;

use ops_common::start_serve;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vetric_domain::EventKind;
use vetric_sim::cvepro::{CveProSim, SimConfig, SimHandle};
use vetric_sim::evolution::{EvolutionSim, EvolutionSimConfig, EvolutionSimHandle, Faults};
use vetric_sim::webhook::{WebhookReceiver, WebhookReceiverHandle};
use vetric_store::testing::TestDb;
use vetric_store::{EventRow, NewResident, OutboxEntry, OutboxFilter, OutboxStatus, SiteId};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const SLUG: &str = "r2-notify";
const SITE_NAME: &str = "Residencial R2";
const WEBHOOK_SECRET: &str = "r2-test-webhook-secret-0123456789abcdef";
/// `[dispatcher] lease_s`: the smallest the config accepts. A claim left by a killed process
/// turns in doubt only after it, so the final settling bound is counted from it.
const LEASE_S: u64 = 60;
/// Poll interval of the site (seconds): one poll cycle.
const POLL_S: u64 = 1;
/// Send latency of the gateway, drawn again every [`JITTER_EVERY`].
const LATENCY_MS: (u64, u64) = (80, 250);
const JITTER_EVERY: Duration = Duration::from_millis(300);
const FAIL_SEND_PERCENT: u8 = 5;
/// Pause between kills, drawn from the seeded generator (milliseconds).
const KILL_PAUSE_MS: (u64, u64) = (2_000, 5_000);
/// After a restart, the backlog the downtime left (the rows due when the new process answers)
/// has left `pending` within this many poll cycles. Sends are serial at the gateway's latency,
/// so this grows with the backlog: the 1,000-message soak saw 57 rows drain in 17 cycles.
const RESTART_DRAIN_CYCLES: u64 = 30;
/// After the fleet went quiet, everything is settled (nothing claimed, nothing due, every
/// in-doubt row reconciled or alerted) within the lease plus this many poll cycles.
const SETTLE_MARGIN_CYCLES: u64 = 40;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A small seeded generator (splitmix64): reproducible kill and latency schedules without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn write_config(
    dir: &Path,
    listen: SocketAddr,
    database_url: &str,
    cve: &SimHandle,
    evo: &EvolutionSimHandle,
    hook: &WebhookReceiverHandle,
) -> PathBuf {
    let cfg = cve.config();
    let evo_cfg = evo.config();
    let path = dir.join("vetric.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"{database_url}\"\n\
             [alerts]\n\
             webhook_url = \"{hook_url}\"\n\
             webhook_secret = \"{WEBHOOK_SECRET}\"\n\
             [dispatcher]\n\
             tick_ms = 200\n\
             lease_s = {LEASE_S}\n\
             max_attempts = 12\n\
             retry_base_s = 1\n\
             retry_cap_s = 3\n\
             gateway_check_s = 5\n\
             [[sites]]\n\
             slug = \"{SLUG}\"\n\
             name = \"{SITE_NAME}\"\n\
             timezone = \"America/Sao_Paulo\"\n\
             [sites.cvepro]\n\
             base_url = \"{cve_url}\"\n\
             api_key = \"{cve_key}\"\n\
             email = \"{cve_email}\"\n\
             password = \"{cve_password}\"\n\
             poll_interval_s = {POLL_S}\n\
             [sites.whatsapp]\n\
             base_url = \"{evo_url}\"\n\
             api_key = \"{evo_key}\"\n\
             instance = \"{evo_instance}\"\n\
             stores_messages = true\n",
            hook_url = hook.url(),
            cve_url = cve.base_url(),
            cve_key = cfg.api_key,
            cve_email = cfg.email,
            cve_password = cfg.password,
            evo_url = evo.base_url(),
            evo_key = evo_cfg.api_key,
            evo_instance = evo_cfg.instances[0],
        ),
    )
    .expect("write config");
    path
}

/// The simulator's residents and their tags, through the store API (as `vetric demo` does),
/// so sessions are attributed to people from the first poll.
async fn seed_residents(db: &TestDb, site: SiteId, cve: &SimHandle) -> usize {
    let since = chrono::DateTime::parse_from_rfc3339("2025-01-01T03:00:00Z")
        .expect("a constant date")
        .with_timezone(&chrono::Utc);
    let fleet = cve.fleet();
    for r in &fleet.residents {
        let id = db
            .store
            .add_resident(
                site,
                &NewResident {
                    name: r.name.clone(),
                    phone: r.phone.clone(),
                    email: Some(r.email.clone()),
                    block: r.apartment.block.clone(),
                    unit: r.apartment.unit.clone(),
                },
            )
            .await
            .expect("add a resident");
        for t in &r.tags {
            let tag = vetric_domain::Tag::parse(&t.id_tag).expect("a simulator tag parses");
            db.store
                .add_tag(site, id, &tag, since, None)
                .await
                .expect("add a tag");
        }
    }
    fleet.residents.len()
}

/// Figures read from the database while the service runs (plain SQL: cheap, and independent
/// of the code under test).
struct Probe {
    pool: sqlx::PgPool,
}

impl Probe {
    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Resident messages recorded sent.
    async fn resident_messages(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE audience = 'resident' AND status = 'sent'")
            .await
    }

    /// Rows that should have gone out by now, including those waiting for a retry after a
    /// gateway failure: settling means none is left, not merely none due this instant.
    async fn unsent(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND not_before <= now()")
            .await
    }

    /// The rows due right now: the backlog a downtime left.
    async fn due_ids(&self) -> Vec<i64> {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM outbox WHERE status = 'pending' AND not_before <= now() \
             AND next_attempt_at <= now()",
        )
        .fetch_all(&self.pool)
        .await
        .expect("list due rows")
    }

    /// How many of `ids` are still waiting to be sent.
    async fn still_pending(&self, ids: &[i64]) -> i64 {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE id = ANY($1) AND status = 'pending'",
        )
        .bind(ids)
        .fetch_one(&self.pool)
        .await
        .expect("count pending rows")
    }

    async fn sending(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE status = 'sending'")
            .await
    }

    /// In-doubt rows without an operator alert row yet.
    async fn in_doubt_unalerted(&self) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM outbox o WHERE o.status = 'in_doubt' AND NOT EXISTS \
             (SELECT 1 FROM outbox a WHERE a.dedup_key LIKE 'alert:in\\_doubt:' || o.id || ':%')",
        )
        .await
    }
}

/// Poll cycles so far: the ingest reads the charger list once per cycle.
fn cycles(cve: &SimHandle) -> u64 {
    cve.calls().chargepoints
}

/// Every outbox row, with its attempts (the notification log, paged).
async fn all_rows(db: &TestDb) -> Vec<OutboxEntry> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = db
            .store
            .outbox_log(&OutboxFilter {
                before_id: before,
                limit: Some(500),
                ..OutboxFilter::default()
            })
            .await
            .expect("read the outbox");
        let Some(last) = page.last() else { break };
        before = Some(last.row.id);
        out.extend(page);
    }
    out.sort_by_key(|e| e.row.id);
    out
}

/// The resident messages the stored events call for, keyed by outbox dedup key: what the
/// ingest must have enqueued in the same transaction as the events. A message planned and
/// called off within one cycle (a session first seen already over) is not expected.
fn expected_resident_keys(site: SiteId, events: &[EventRow]) -> BTreeMap<String, i64> {
    let mut cycles: BTreeMap<(chrono::DateTime<chrono::Utc>, i64), Vec<&EventRow>> =
        BTreeMap::new();
    // One cycle = one transaction = one `created_at`; keyed by (created_at, first id) so
    // cycles keep their order.
    let mut first_id: BTreeMap<chrono::DateTime<chrono::Utc>, i64> = BTreeMap::new();
    for e in events {
        first_id.entry(e.created_at).or_insert(e.id);
    }
    for e in events {
        cycles
            .entry((e.created_at, first_id[&e.created_at]))
            .or_default()
            .push(e);
    }
    let mut expected = BTreeMap::new();
    for batch in cycles.values() {
        // (scope, rule) -> (key, event id), in event order.
        let mut planned: Vec<(String, &str, String, i64)> = Vec::new();
        for e in batch {
            let kind: EventKind = serde_json::from_value(e.payload.clone()).unwrap_or_else(|err| {
                panic!("event {} ({}) payload does not parse: {err}", e.id, e.kind)
            });
            let cancel =
                |planned: &mut Vec<(String, &str, String, i64)>, scope: &str, rules: &[&str]| {
                    planned.retain(|(s, r, _, _)| !(s == scope && rules.contains(r)));
                };
            match kind {
                EventKind::SessionStarted { session } if session.resident.is_some() => {
                    planned.push((
                        format!("session:{}", session.session_id),
                        "session_started",
                        format!("session:{}:session_started:resident", session.session_id),
                        e.id,
                    ));
                }
                EventKind::IdleStarted { session, since } if session.resident.is_some() => {
                    planned.push((
                        format!("session:{}", session.session_id),
                        "idle_started",
                        format!(
                            "session:{}:idle_started:{}:resident",
                            session.session_id,
                            since.timestamp()
                        ),
                        e.id,
                    ));
                }
                EventKind::ChargingResumed { session, .. } => cancel(
                    &mut planned,
                    &format!("session:{}", session.session_id),
                    &["idle_started", "idle_reminder"],
                ),
                EventKind::SessionFinished { session, .. }
                | EventKind::SessionInterrupted { session, .. } => {
                    let scope = format!("session:{}", session.session_id);
                    cancel(
                        &mut planned,
                        &scope,
                        &["session_started", "idle_started", "idle_reminder"],
                    );
                    if session.resident.is_some() {
                        let rule = if e.kind == "session_finished" {
                            "session_finished"
                        } else {
                            "session_interrupted"
                        };
                        planned.push((
                            scope,
                            rule,
                            format!("session:{}:{rule}:resident", session.session_id),
                            e.id,
                        ));
                    }
                }
                EventKind::SessionClosedStale { session, .. } => cancel(
                    &mut planned,
                    &format!("session:{}", session.session_id),
                    &["session_started", "idle_started", "idle_reminder"],
                ),
                _ => {}
            }
        }
        for (_, _, key, id) in planned {
            expected.insert(format!("site:{site}:{key}"), id);
        }
    }
    expected
}

/// The reference code a message carries (`ref. XXXXXXXX` at its end).
fn ref_of(text: &str) -> Option<String> {
    let at = text.rfind("ref. ")?;
    let code: String = text[at + 5..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!code.is_empty()).then_some(code)
}

/// Waits, polling the store, until `done` holds; panics with the transcript after `limit`
/// poll cycles (or a generous wall-clock guard, so a stuck service cannot hang CI).
async fn wait_cycles<F, Fut>(
    what: &str,
    cve: &SimHandle,
    vetric: &VetricProcess,
    limit: u64,
    mut done: F,
) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = cycles(cve);
    let guard = tokio::time::Instant::now() + Duration::from_secs(limit * POLL_S * 4 + 60);
    loop {
        if done().await {
            return cycles(cve) - start;
        }
        let spent = cycles(cve) - start;
        if spent > limit || tokio::time::Instant::now() > guard {
            panic!(
                "{what}: not done after {spent} poll cycles (bound {limit})\n{}",
                tail(vetric)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last lines the service printed, for failure messages (the whole transcript of a
/// two-minute run is too long to read).
fn tail(vetric: &VetricProcess) -> String {
    let out = vetric.stdout_lines();
    let err = vetric.stderr_lines();
    let last = |v: &[String]| v[v.len().saturating_sub(40)..].join("\n");
    format!(
        "--- stdout (last 40) ---\n{}\n--- stderr (last 40) ---\n{}",
        last(&out),
        last(&err)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_notifications_survive_sigkill_without_loss_or_duplicates() {
    let target = env_u64("VETRIC_R2_MESSAGES", 250);
    let kills = env_u64("VETRIC_R2_KILLS", 8);
    let seed = env_u64("VETRIC_R2_SEED", 2026);
    let mut rng = Rng(seed);

    let db = TestDb::postgres().await;
    let probe = Probe {
        pool: sqlx::PgPool::connect(&db.url)
            .await
            .expect("connect to the test database"),
    };
    let cve = CveProSim::start(
        SimConfig {
            chargers: 30,
            seed,
            speed: 1500.0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("CVE-Pro simulator");
    let evo = Arc::new(
        EvolutionSim::start(
            EvolutionSimConfig {
                stores_messages: true,
                seed,
                ..EvolutionSimConfig::default()
            },
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("Evolution simulator"),
    );
    let hook = WebhookReceiver::start(WEBHOOK_SECRET)
        .await
        .expect("webhook receiver");

    // A slow gateway whose latency keeps changing, so kills land at every point of a send.
    let jitter = {
        let evo = evo.clone();
        let mut rng = Rng(seed ^ 0x5eed);
        tokio::spawn(async move {
            loop {
                evo.set_faults(Faults {
                    fail_send_percent: FAIL_SEND_PERCENT,
                    latency_ms: rng.between(LATENCY_MS),
                    ..Faults::default()
                });
                tokio::time::sleep(JITTER_EVERY).await;
            }
        })
    };

    let site = db
        .store
        .upsert_site(SLUG, SITE_NAME, "America/Sao_Paulo")
        .await
        .expect("create the site");
    let residents = seed_residents(&db, site, &cve).await;

    let dir = scratch_dir();
    let listen = free_local_addr();
    let config = write_config(dir.path(), listen, &db.url, &cve, &evo, &hook);
    let started = tokio::time::Instant::now();
    let mut vetric = start_serve(&config, listen).await;
    let mut last_restart = cycles(&cve);

    // Run: kill at seeded-random moments until both the kills and the messages are done.
    let mut kills_done = 0;
    // (rows due at the restart, poll cycles until they had all left `pending`)
    let mut restart_drains: Vec<(usize, u64)> = Vec::new();
    let mut fleet_stopped = false;
    let run_guard = tokio::time::Instant::now() + Duration::from_secs(60 + target * 2);
    loop {
        let pause = Duration::from_millis(rng.between(KILL_PAUSE_MS));
        tokio::time::sleep(pause).await;
        let made = probe.resident_messages().await;
        if made >= i64::try_from(target).unwrap_or(i64::MAX) && !fleet_stopped {
            // No new sessions from now on; those under way still end (and notify).
            cve.set_auto(false);
            fleet_stopped = true;
        }
        if kills_done < kills {
            vetric.kill9().await;
            kills_done += 1;
            vetric = start_serve(&config, listen).await;
            last_restart = cycles(&cve);
            // The rows that came due while it was down are sent within a few cycles (rows
            // claimed by the killed process wait for their lease: checked when settling).
            let backlog = probe.due_ids().await;
            let drained = wait_cycles(
                "backlog after a restart",
                &cve,
                &vetric,
                RESTART_DRAIN_CYCLES,
                || async { probe.still_pending(&backlog).await == 0 },
            )
            .await;
            restart_drains.push((backlog.len(), drained));
        } else if fleet_stopped {
            break;
        }
        if made == 0 && cycles(&cve) > 30 {
            panic!(
                "no resident notification was enqueued after {} poll cycles: is the outbox \
                 wired into `vetric serve` (ingest notify + dispatcher)?\n{}",
                cycles(&cve),
                tail(&vetric)
            );
        }
        assert!(
            tokio::time::Instant::now() < run_guard,
            "only {made} of {target} resident messages after the run's time guard"
        );
    }

    let run_s = started.elapsed().as_secs();
    // Quiet: every session of the simulator has ended and been seen ended.
    let quiet_guard = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let settled = chrono::Utc::now() - chrono::TimeDelta::seconds(3 * POLL_S as i64);
        if cve
            .record()
            .iter()
            .all(|t| t.stop_delivered_at.is_some_and(|d| d < settled))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < quiet_guard,
            "the simulated fleet did not wind down"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Settled: nothing claimed (leases of killed processes expired and were reconciled),
    // nothing left to send (retries included), every row still in doubt alerted.
    let settle_cycles = wait_cycles(
        "settling after the last kill",
        &cve,
        &vetric,
        LEASE_S / POLL_S + SETTLE_MARGIN_CYCLES,
        || async {
            probe.sending().await == 0
                && probe.unsent().await == 0
                && probe.in_doubt_unalerted().await == 0
        },
    )
    .await;
    let since_last_restart = cycles(&cve) - last_restart;
    // Alert rows go out like any other row: wait until none is left to send.
    wait_cycles(
        "operator alerts",
        &cve,
        &vetric,
        SETTLE_MARGIN_CYCLES,
        || async {
            probe
                .count(
                    "SELECT COUNT(*) FROM outbox WHERE audience = 'operator' \
                 AND status IN ('pending', 'sending')",
                )
                .await
                == 0
        },
    )
    .await;
    let status = vetric.terminate(Duration::from_secs(40)).await;
    assert!(
        status.success(),
        "serve did not exit cleanly on SIGTERM: {status}\n{}",
        tail(&vetric)
    );
    jitter.abort();

    let rows = all_rows(&db).await;
    let events = db.store.events(site, 0, 1_000_000).await.expect("events");
    let accepted = evo.messages();
    let hooks = hook.requests();
    let now = chrono::Utc::now();

    // Ground truth at the gateway: every accepted message by reference code.
    let mut at_gateway: BTreeMap<String, Vec<&vetric_sim::evolution::SentMessage>> =
        BTreeMap::new();
    for m in &accepted {
        let code = ref_of(&m.text)
            .unwrap_or_else(|| panic!("a message without a reference code: {:?}", m.text));
        at_gateway.entry(code).or_default().push(m);
    }

    // (2) Duplicates = 0: no reference code accepted twice.
    let doubled: Vec<_> = at_gateway
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();

    // (1) Lost = 0, row side: every expected resident message has its row, and every
    // resident row ended sent (at the gateway), called off, or is not due yet.
    let by_key: BTreeMap<&str, &OutboxEntry> =
        rows.iter().map(|e| (e.row.dedup_key.as_str(), e)).collect();
    let by_ref: BTreeMap<&str, &OutboxEntry> =
        rows.iter().map(|e| (e.row.ref_code.as_str(), e)).collect();
    let expected = expected_resident_keys(site, &events);
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, _)| !by_key.contains_key(k.as_str()))
        .collect();
    let resident: Vec<&OutboxEntry> = rows
        .iter()
        .filter(|e| e.row.audience == "resident")
        .collect();
    let mut lost = Vec::new();
    let mut sent_not_at_gateway = Vec::new();
    let mut cancelled_but_sent = Vec::new();
    let mut not_due = 0;
    for e in &resident {
        let r = &e.row;
        let at = at_gateway.get(&r.ref_code).map_or(0, Vec::len);
        match r.status {
            OutboxStatus::Sent if at == 0 => sent_not_at_gateway.push(r.id),
            OutboxStatus::Sent => {}
            OutboxStatus::Cancelled if at > 0 => cancelled_but_sent.push(r.id),
            OutboxStatus::Cancelled => {}
            OutboxStatus::Pending if r.not_before > now => not_due += 1,
            // In doubt is checked below (it must have alerted someone).
            OutboxStatus::InDoubt => {}
            _ => lost.push((r.id, r.status, r.reason.clone(), r.last_error.clone())),
        }
    }
    // Called off: only what the rules call off (a start or idle message of a session that
    // ended before it went out), never the end of a session.
    let mut cancelled_by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in resident
        .iter()
        .filter(|e| e.row.status == OutboxStatus::Cancelled)
    {
        *cancelled_by
            .entry((e.row.rule.clone(), e.row.reason.clone().unwrap_or_default()))
            .or_default() += 1;
    }
    let wrongly_cancelled: Vec<_> = cancelled_by
        .keys()
        .filter(|(rule, reason)| {
            !matches!(
                (rule.as_str(), reason.as_str()),
                (
                    "session_started" | "idle_started" | "idle_reminder",
                    "session_over"
                ) | ("idle_started" | "idle_reminder", "charging_resumed")
            )
        })
        .collect();

    // Gateway side: every accepted message belongs to a row, to the row's recipient.
    let mut phantom = Vec::new();
    for (code, msgs) in &at_gateway {
        match by_ref.get(code.as_str()) {
            None => phantom.push(code.clone()),
            Some(e) => {
                let to = e.row.recipient.as_deref().unwrap_or_default();
                let digits: String = to.chars().filter(char::is_ascii_digit).collect();
                for m in msgs {
                    assert_eq!(
                        m.number, digits,
                        "message {code} went to another number than its row's"
                    );
                }
            }
        }
    }

    // (3) Nothing left claimed.
    let claimed: Vec<_> = rows
        .iter()
        .filter(|e| e.row.status == OutboxStatus::Sending)
        .map(|e| e.row.id)
        .collect();

    // (4) Every row still in doubt raised an operator alert that reached the webhook.
    let mut unalerted = Vec::new();
    let in_doubt: Vec<&OutboxEntry> = rows
        .iter()
        .filter(|e| e.row.status == OutboxStatus::InDoubt)
        .collect();
    for e in &in_doubt {
        let prefix = format!("alert:in_doubt:{}:", e.row.id);
        let alert = rows.iter().find(|a| a.row.dedup_key.starts_with(&prefix));
        let delivered = alert.is_some_and(|a| {
            hooks.iter().any(|h| {
                h.signature_valid
                    && h.json
                        .as_ref()
                        .is_some_and(|j| j["id"].as_i64() == Some(a.row.id))
            })
        });
        if !delivered {
            unalerted.push((e.row.id, alert.map(|a| a.row.status)));
        }
    }

    // Figures.
    let attempts: Vec<&str> = resident
        .iter()
        .flat_map(|e| e.attempts.iter().map(|a| a.outcome.as_str()))
        .collect();
    let outcome = |o: &str| attempts.iter().filter(|a| **a == o).count();
    let count = |s: OutboxStatus| resident.iter().filter(|e| e.row.status == s).count();
    let alerts = rows.iter().filter(|e| e.row.audience == "operator").count();
    let sessions: BTreeSet<i64> = resident
        .iter()
        .filter_map(|e| e.row.session_vendor_id)
        .collect();
    let calls = evo.calls();
    println!(
        "R2 summary: seed {seed}; {residents} residents; {} sessions notified; resident rows {} \
         (sent {}, cancelled {}, not due {not_due}, in doubt {}); expected from events {}; \
         accepted at the gateway {} (distinct refs {}); kills {kills_done}; \
         sendText calls {} (retries {}); in doubt after a kill {} -> found at the gateway {}, \
         resent {}; operator alert rows {alerts}, webhook deliveries {}; backlog after each \
         restart (rows, poll cycles to drain) {:?}; settled {settle_cycles} cycles after the fleet stopped \
         (lease {LEASE_S} s), {since_last_restart} cycles after the last restart; called off \
         (rule, reason): {cancelled_by:?}; run phase {run_s} s, whole test {} s",
        sessions.len(),
        resident.len(),
        count(OutboxStatus::Sent),
        count(OutboxStatus::Cancelled),
        in_doubt.len(),
        expected.len(),
        accepted.len(),
        at_gateway.len(),
        calls.send_text,
        outcome("retry"),
        outcome("in_doubt") + outcome("confirmed") + outcome("not_found"),
        outcome("confirmed"),
        outcome("not_found"),
        hooks.len(),
        restart_drains,
        started.elapsed().as_secs(),
    );

    assert!(
        doubled.is_empty(),
        "duplicates: reference codes accepted more than once: {doubled:?}"
    );
    assert!(
        missing.is_empty(),
        "lost: events without their resident notification row (key, event id): {missing:?}"
    );
    assert!(
        lost.is_empty(),
        "lost: resident rows neither sent, called off, nor waiting (id, status, reason, \
         last error): {lost:?}"
    );
    assert!(
        sent_not_at_gateway.is_empty(),
        "lost: rows recorded sent that the gateway never accepted: {sent_not_at_gateway:?}"
    );
    assert!(
        cancelled_but_sent.is_empty(),
        "rows recorded cancelled that the gateway has: {cancelled_but_sent:?}"
    );
    assert!(
        wrongly_cancelled.is_empty(),
        "lost: rows called off that the rules do not call off: {wrongly_cancelled:?}"
    );
    assert!(
        phantom.is_empty(),
        "messages at the gateway that belong to no outbox row: {phantom:?}"
    );
    assert!(claimed.is_empty(), "rows left claimed: {claimed:?}");
    assert!(
        unalerted.is_empty(),
        "in-doubt rows without an operator alert at the webhook (id, alert status): \
         {unalerted:?}"
    );
    assert!(
        count(OutboxStatus::Sent) as u64 >= target,
        "the run sent {} resident messages, fewer than the {target} asked for",
        count(OutboxStatus::Sent)
    );
    assert_eq!(kills_done, kills, "every planned kill happened");

    cve.shutdown().await;
    drop(hook);
    if let Ok(evo) = Arc::try_unwrap(evo) {
        evo.shutdown().await;
    }
    probe.pool.close().await;
}
