//! R2 (RELIABILITY.md; issues #5 and #7): no notification lost, none sent twice, while the
//! real `vetric serve` binary on PostgreSQL is killed with SIGKILL at random moments and
//! restarted through the testkit harness — and for the first half of the kills a second
//! instance runs against the same database (both dispatch; per-site ingest leadership lets
//! only one of them poll), the kills hitting either instance.
//!
//! The CVE-Pro simulator plays a fast automatic fleet whose residents (with phones) are seeded
//! in the store before the first start, so sessions produce resident messages; the Evolution
//! simulator answers slowly (latency drawn again every few hundred ms), fails 5 % of sends and
//! stores messages, so reconciliation may resend what it does not find; operator alerts go to a
//! local webhook receiver. Ground truth is the simulators' record (every message the gateway
//! accepted) and the events the ingest stored; the outbox is what is checked against them, by
//! [`check`], which returns the violations it finds instead of panicking: the normal run
//! asserts there are none, and the planted-bug runs (below) assert that there are some.
//!
//! **Planted bugs** (issue #7: the suite must be able to turn red). The test build of the
//! binary has the `planted-bugs` feature (crates/vetric's dev-dependencies); the same scenario,
//! shortened, runs with `VETRIC_PLANTED_BUG` set in the child's environment:
//! `mark-sent-before-send` (the dispatcher records a row sent before calling the gateway: a
//! failed send or a kill in between loses the message) must show lost > 0, and
//! `no-skip-locked` (the PostgreSQL claim without its row lock, see `PICK_PG_NO_LOCK` in
//! crates/store/src/outbox.rs for why that variant) with two instances must show duplicates > 0.
//!
//! Sizes: CI runs compressed (a few hundred messages, kills every 2–5 s); `VETRIC_SOAK=1` runs
//! RELIABILITY.md's full length (1,000 messages, 40 kills every 5–15 s). `VETRIC_R2_MESSAGES`,
//! `VETRIC_R2_KILLS` and `VETRIC_R2_SEED` override either. Each scenario prints one JSON line
//! (`FAULT_SUMMARY {"scenario":"r2",...}`) that `bench/soak.sh` collects. Bounds are counted
//! in poll cycles (the vendor simulator's `chargepoints` calls), never in wall-clock time; the
//! only clocks are generous guards that turn a hang into a failure with a transcript.

mod ops_common;

use ops_common::BIN;
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
/// Pause between kills, drawn from the seeded generator (milliseconds): compressed in CI,
/// RELIABILITY.md's 5–15 s in the soak.
const KILL_PAUSE_MS: (u64, u64) = (2_000, 5_000);
const SOAK_KILL_PAUSE_MS: (u64, u64) = (5_000, 15_000);
/// After a restart, the backlog the downtime left (the rows due when the new process answers)
/// has left `pending` within this many poll cycles. Sends are serial at the gateway's latency,
/// so this grows with the backlog: the 1,000-message soak saw 57 rows drain in 17 cycles.
const RESTART_DRAIN_CYCLES: u64 = 30;
/// After the fleet went quiet, everything is settled (nothing claimed, nothing due, every
/// in-doubt row reconciled or alerted) within the lease plus this many poll cycles.
const SETTLE_MARGIN_CYCLES: u64 = 40;
/// Runs of a planted-bug scenario (each with another seed) before concluding the suite
/// cannot see the bug: the violations depend on where kills and overlapping claims land.
const PLANTED_ATTEMPTS: u64 = 3;

fn soak() -> bool {
    std::env::var("VETRIC_SOAK").is_ok_and(|v| v == "1")
}

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
    tick_ms: u64,
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
             tick_ms = {tick_ms}\n\
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

/// `vetric serve` with this test's environment (`VETRIC_PLANTED_BUG` when a bug is planted;
/// the harness strips every inherited `VETRIC_*` variable), once it answers `/health/live`.
async fn start(config: &Path, listen: SocketAddr, planted: Option<&str>) -> VetricProcess {
    let mut env = vec![("VETRIC_LOG", "info")];
    if let Some(bug) = planted {
        env.push(("VETRIC_PLANTED_BUG", bug));
    }
    let mut p = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &env,
    );
    p.wait_live(&format!("http://{listen}"), Duration::from_secs(60))
        .await;
    p
}

/// One `vetric serve` slot: its own port and config file, the shared database.
struct Instance {
    listen: SocketAddr,
    config: PathBuf,
    _dir: tempfile::TempDir,
    process: Option<VetricProcess>,
}

/// The shape of one run.
#[derive(Debug, Clone)]
struct Scenario {
    /// Name in the JSON summary line.
    name: &'static str,
    /// Resident messages to get sent before the fleet stops.
    messages: u64,
    kills: u64,
    seed: u64,
    kill_pause_ms: (u64, u64),
    /// A second instance runs from the start until this many kills have happened and half the
    /// messages have been sent, then stops with SIGTERM (0: never started; `u64::MAX`: runs
    /// throughout).
    second_until_kill: u64,
    /// `[dispatcher] tick_ms` of every instance.
    tick_ms: u64,
    /// `VETRIC_PLANTED_BUG` for the children.
    planted: Option<&'static str>,
    /// Wait for the fleet to go quiet, the leases of killed claims to run out and every row
    /// to settle before checking (the real test). Planted runs skip it: the violations they
    /// look for (a row recorded sent that the gateway never got, a reference accepted twice)
    /// are final once they happen, and rows still on their way are not counted against them.
    settle: bool,
}

impl Scenario {
    /// The R2 test as CI runs it, or at RELIABILITY.md's full length with `VETRIC_SOAK=1`.
    fn r2() -> Self {
        let soak = soak();
        let kills = env_u64("VETRIC_R2_KILLS", if soak { 40 } else { 8 });
        Self {
            name: "r2",
            messages: env_u64("VETRIC_R2_MESSAGES", if soak { 1000 } else { 250 }),
            kills,
            seed: env_u64("VETRIC_R2_SEED", 2026),
            kill_pause_ms: if soak {
                SOAK_KILL_PAUSE_MS
            } else {
                KILL_PAUSE_MS
            },
            // "For half the run a second instance runs against the same PostgreSQL."
            second_until_kill: kills / 2,
            tick_ms: 200,
            planted: None,
            settle: true,
        }
    }
}

/// What [`check`] found wrong. Empty in a correct build; the planted-bug tests expect
/// particular fields to be non-empty.
#[derive(Debug, Default)]
struct Violations {
    /// Reference codes the gateway accepted more than once (code, times).
    duplicates: Vec<(String, usize)>,
    /// Events without their resident notification row (key, event id).
    missing: Vec<(String, i64)>,
    /// Resident rows neither sent, called off, nor waiting (id, status, reason, last error).
    unsent: Vec<(i64, OutboxStatus, Option<String>, Option<String>)>,
    /// Rows recorded sent that the gateway never accepted: lost for good, nobody resends them.
    sent_not_at_gateway: Vec<i64>,
    /// Rows recorded cancelled that the gateway has.
    cancelled_but_sent: Vec<i64>,
    /// Rows called off that the rules do not call off (rule, reason).
    wrongly_cancelled: Vec<(String, String)>,
    /// Messages at the gateway that belong to no outbox row.
    phantom: Vec<String>,
    /// Messages that went to another number than their row's (reference code).
    wrong_number: Vec<String>,
    /// Rows left `sending`.
    claimed: Vec<i64>,
    /// In-doubt rows without an operator alert at the webhook (id, alert row status).
    unalerted: Vec<(i64, Option<OutboxStatus>)>,
}

impl Violations {
    /// Messages lost: never enqueued, given up, recorded sent without reaching the gateway,
    /// or called off wrongly.
    fn lost(&self) -> usize {
        self.missing.len()
            + self.unsent.len()
            + self.sent_not_at_gateway.len()
            + self.wrongly_cancelled.len()
    }

    fn is_empty(&self) -> bool {
        self.lost() == 0
            && self.duplicates.is_empty()
            && self.cancelled_but_sent.is_empty()
            && self.phantom.is_empty()
            && self.wrong_number.is_empty()
            && self.claimed.is_empty()
            && self.unalerted.is_empty()
    }

    fn assert_none(&self) {
        let v = self;
        assert!(
            v.duplicates.is_empty(),
            "duplicates: reference codes accepted more than once: {:?}",
            v.duplicates
        );
        assert!(
            v.missing.is_empty(),
            "lost: events without their resident notification row (key, event id): {:?}",
            v.missing
        );
        assert!(
            v.unsent.is_empty(),
            "lost: resident rows neither sent, called off, nor waiting (id, status, reason, \
             last error): {:?}",
            v.unsent
        );
        assert!(
            v.sent_not_at_gateway.is_empty(),
            "lost: rows recorded sent that the gateway never accepted: {:?}",
            v.sent_not_at_gateway
        );
        assert!(
            v.cancelled_but_sent.is_empty(),
            "rows recorded cancelled that the gateway has: {:?}",
            v.cancelled_but_sent
        );
        assert!(
            v.wrongly_cancelled.is_empty(),
            "lost: rows called off that the rules do not call off: {:?}",
            v.wrongly_cancelled
        );
        assert!(
            v.phantom.is_empty(),
            "messages at the gateway that belong to no outbox row: {:?}",
            v.phantom
        );
        assert!(
            v.wrong_number.is_empty(),
            "messages that went to another number than their row's: {:?}",
            v.wrong_number
        );
        assert!(v.claimed.is_empty(), "rows left claimed: {:?}", v.claimed);
        assert!(
            v.unalerted.is_empty(),
            "in-doubt rows without an operator alert at the webhook (id, alert status): {:?}",
            v.unalerted
        );
        assert!(self.is_empty());
    }
}

/// Every message the gateway accepted, by reference code.
fn by_reference(
    accepted: &[vetric_sim::evolution::SentMessage],
) -> BTreeMap<String, Vec<&vetric_sim::evolution::SentMessage>> {
    let mut at_gateway: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for m in accepted {
        let code = ref_of(&m.text)
            .unwrap_or_else(|| panic!("a message without a reference code: {:?}", m.text));
        at_gateway.entry(code).or_default().push(m);
    }
    at_gateway
}

/// The R2 checker: the outbox against the gateway's record, the stored events and the
/// webhook's deliveries. `settled`: the run waited until nothing was left to send, so a row
/// still pending, claimed or unalerted in doubt is a violation; otherwise such rows are on
/// their way and not judged.
fn check(
    site: SiteId,
    rows: &[OutboxEntry],
    events: &[EventRow],
    accepted: &[vetric_sim::evolution::SentMessage],
    hooks: &[vetric_sim::webhook::ReceivedWebhook],
    settled: bool,
) -> Violations {
    let now = chrono::Utc::now();
    let at_gateway = by_reference(accepted);
    let mut v = Violations {
        // (2) Duplicates = 0: no reference code accepted twice.
        duplicates: at_gateway
            .iter()
            .filter(|(_, m)| m.len() > 1)
            .map(|(k, m)| (k.clone(), m.len()))
            .collect(),
        ..Violations::default()
    };

    // (1) Lost = 0, row side: every expected resident message has its row, and every
    // resident row ended sent (at the gateway), called off, or is not due yet.
    let by_key: BTreeMap<&str, &OutboxEntry> =
        rows.iter().map(|e| (e.row.dedup_key.as_str(), e)).collect();
    let by_ref: BTreeMap<&str, &OutboxEntry> =
        rows.iter().map(|e| (e.row.ref_code.as_str(), e)).collect();
    v.missing = expected_resident_keys(site, events)
        .into_iter()
        .filter(|(k, _)| !by_key.contains_key(k.as_str()))
        .collect();
    for e in rows.iter().filter(|e| e.row.audience == "resident") {
        let r = &e.row;
        let at = at_gateway.get(&r.ref_code).map_or(0, Vec::len);
        match r.status {
            OutboxStatus::Sent if at == 0 => v.sent_not_at_gateway.push(r.id),
            OutboxStatus::Sent => {}
            OutboxStatus::Cancelled if at > 0 => v.cancelled_but_sent.push(r.id),
            OutboxStatus::Cancelled => {}
            OutboxStatus::Pending if r.not_before > now => {}
            // In doubt is checked below (it must have alerted someone).
            OutboxStatus::InDoubt => {}
            // Still on its way in a run that did not wait for the end.
            OutboxStatus::Pending | OutboxStatus::Sending if !settled => {}
            _ => v
                .unsent
                .push((r.id, r.status, r.reason.clone(), r.last_error.clone())),
        }
    }
    // Called off: only what the rules call off (a start or idle message of a session that
    // ended before it went out), never the end of a session.
    let mut cancelled_by: BTreeSet<(String, String)> = BTreeSet::new();
    for e in rows
        .iter()
        .filter(|e| e.row.audience == "resident" && e.row.status == OutboxStatus::Cancelled)
    {
        cancelled_by.insert((e.row.rule.clone(), e.row.reason.clone().unwrap_or_default()));
    }
    v.wrongly_cancelled = cancelled_by
        .into_iter()
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
    for (code, msgs) in &at_gateway {
        match by_ref.get(code.as_str()) {
            None => v.phantom.push(code.clone()),
            Some(e) => {
                let to = e.row.recipient.as_deref().unwrap_or_default();
                let digits: String = to.chars().filter(char::is_ascii_digit).collect();
                if msgs.iter().any(|m| m.number != digits) {
                    v.wrong_number.push(code.clone());
                }
            }
        }
    }

    if settled {
        // (3) Nothing left claimed.
        v.claimed = rows
            .iter()
            .filter(|e| e.row.status == OutboxStatus::Sending)
            .map(|e| e.row.id)
            .collect();
        // (4) Every row still in doubt raised an operator alert that reached the webhook.
        for e in rows
            .iter()
            .filter(|e| e.row.status == OutboxStatus::InDoubt)
        {
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
                v.unalerted.push((e.row.id, alert.map(|a| a.row.status)));
            }
        }
    }
    v
}

/// What one run produced.
struct Outcome {
    violations: Violations,
    /// Resident rows recorded sent.
    sent: usize,
    kills: u64,
}

/// Runs `sc` from a fresh database to its check, printing a human summary and one JSON line.
async fn run(sc: &Scenario) -> Outcome {
    let mut rng = Rng(sc.seed);
    let db = TestDb::postgres().await;
    let probe = Probe {
        pool: sqlx::PgPool::connect(&db.url)
            .await
            .expect("connect to the test database"),
    };
    let cve = CveProSim::start(
        SimConfig {
            chargers: 30,
            seed: sc.seed,
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
                seed: sc.seed,
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
        let mut rng = Rng(sc.seed ^ 0x5eed);
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

    let slots = if sc.second_until_kill > 0 { 2 } else { 1 };
    let mut instances = Vec::new();
    for _ in 0..slots {
        let dir = scratch_dir();
        let listen = free_local_addr();
        let config = write_config(dir.path(), listen, &db.url, sc.tick_ms, &cve, &evo, &hook);
        instances.push(Instance {
            listen,
            config,
            _dir: dir,
            process: None,
        });
    }
    let started = tokio::time::Instant::now();
    for i in &mut instances {
        i.process = Some(start(&i.config, i.listen, sc.planted).await);
    }
    let mut last_restart = cycles(&cve);

    // Run: kill at seeded-random moments until both the kills and the messages are done.
    let mut kills_done = 0;
    let mut kills_per_instance = vec![0u64; instances.len()];
    let mut two_instances_s = None;
    // (rows due at the restart, poll cycles until they had all left `pending`)
    let mut restart_drains: Vec<(usize, u64)> = Vec::new();
    let mut fleet_stopped = false;
    let run_guard = tokio::time::Instant::now()
        + Duration::from_secs(60 + sc.messages * 2 + sc.kills * sc.kill_pause_ms.1 / 1000);
    loop {
        let pause = Duration::from_millis(rng.between(sc.kill_pause_ms));
        tokio::time::sleep(pause).await;
        let made = probe.resident_messages().await;
        if made >= i64::try_from(sc.messages).unwrap_or(i64::MAX) && !fleet_stopped {
            // No new sessions from now on; those under way still end (and notify).
            cve.set_auto(false);
            fleet_stopped = true;
        }
        if kills_done < sc.kills {
            // Either running instance may be hit.
            let running: Vec<usize> = (0..instances.len())
                .filter(|&i| instances[i].process.is_some())
                .collect();
            let victim = running[usize::try_from(rng.next() % running.len() as u64)
                .expect("an index below the number of instances")];
            let slot = &mut instances[victim];
            slot.process
                .as_mut()
                .expect("a running instance")
                .kill9()
                .await;
            kills_done += 1;
            kills_per_instance[victim] += 1;
            let restarted = start(&slot.config, slot.listen, sc.planted).await;
            last_restart = cycles(&cve);
            // The rows that came due while it was down are sent within a few cycles (rows
            // claimed by the killed process wait for their lease: checked when settling).
            let backlog = probe.due_ids().await;
            let drained = wait_cycles(
                "backlog after a restart",
                &cve,
                &restarted,
                RESTART_DRAIN_CYCLES,
                || async { probe.still_pending(&backlog).await == 0 },
            )
            .await;
            slot.process = Some(restarted);
            restart_drains.push((backlog.len(), drained));
        } else if fleet_stopped {
            break;
        }
        // Half-time (half the kills and half the messages done): the second instance leaves
        // cleanly and the rest runs on one.
        if kills_done >= sc.second_until_kill
            && made >= i64::try_from(sc.messages / 2).unwrap_or(i64::MAX)
            && let Some(mut second) = instances.get_mut(1).and_then(|i| i.process.take())
        {
            let status = second.terminate(Duration::from_secs(40)).await;
            assert!(
                status.success(),
                "the second instance did not stop cleanly: {status}\n{}",
                tail(&second)
            );
            two_instances_s = Some(started.elapsed().as_secs());
        }
        let any = instances
            .iter()
            .find_map(|i| i.process.as_ref())
            .expect("an instance runs");
        if made == 0 && cycles(&cve) > 30 {
            panic!(
                "no resident notification was enqueued after {} poll cycles: is the outbox \
                 wired into `vetric serve` (ingest notify + dispatcher)?\n{}",
                cycles(&cve),
                tail(any)
            );
        }
        assert!(
            tokio::time::Instant::now() < run_guard,
            "only {made} of {} resident messages after the run's time guard",
            sc.messages
        );
    }

    let run_s = started.elapsed().as_secs();
    let mut settle_cycles = None;
    let mut since_last_restart = None;
    if sc.settle {
        let vetric = instances
            .iter()
            .find_map(|i| i.process.as_ref())
            .expect("an instance runs");
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
        settle_cycles = Some(
            wait_cycles(
                "settling after the last kill",
                &cve,
                vetric,
                LEASE_S / POLL_S + SETTLE_MARGIN_CYCLES,
                || async {
                    probe.sending().await == 0
                        && probe.unsent().await == 0
                        && probe.in_doubt_unalerted().await == 0
                },
            )
            .await,
        );
        since_last_restart = Some(cycles(&cve) - last_restart);
        // Alert rows go out like any other row: wait until none is left to send.
        wait_cycles(
            "operator alerts",
            &cve,
            vetric,
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
    }
    for i in &mut instances {
        if let Some(mut p) = i.process.take() {
            let status = p.terminate(Duration::from_secs(40)).await;
            assert!(
                status.success(),
                "serve did not exit cleanly on SIGTERM: {status}\n{}",
                tail(&p)
            );
        }
    }
    jitter.abort();

    let rows = all_rows(&db).await;
    let events = db.store.events(site, 0, 1_000_000).await.expect("events");
    let accepted = evo.messages();
    let hooks = hook.requests();
    let violations = check(site, &rows, &events, &accepted, &hooks, sc.settle);

    // Figures.
    let at_gateway = by_reference(&accepted);
    let resident: Vec<&OutboxEntry> = rows
        .iter()
        .filter(|e| e.row.audience == "resident")
        .collect();
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
    let mut cancelled_by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in resident
        .iter()
        .filter(|e| e.row.status == OutboxStatus::Cancelled)
    {
        *cancelled_by
            .entry((e.row.rule.clone(), e.row.reason.clone().unwrap_or_default()))
            .or_default() += 1;
    }
    let in_doubt_after_kill = outcome("in_doubt") + outcome("confirmed") + outcome("not_found");
    let in_doubt_left = rows
        .iter()
        .filter(|e| e.row.status == OutboxStatus::InDoubt)
        .count();
    let calls = evo.calls();
    let total_s = started.elapsed().as_secs();
    println!(
        "R2 summary ({name}): seed {seed}; planted bug {planted:?}; {residents} residents; {} \
         sessions notified; resident rows {} (sent {}, cancelled {}, in doubt {in_doubt_left}); \
         accepted at the gateway {} (distinct refs {}); kills {kills_done} per instance \
         {kills_per_instance:?} (second instance until {two_instances_s:?} s); sendText \
         calls {} (retries {}); in doubt after a kill {in_doubt_after_kill} -> found at the \
         gateway {}, resent {}; operator alert rows {alerts}, webhook deliveries {}; backlog \
         after each restart (rows, poll cycles to drain) {restart_drains:?}; settled \
         {settle_cycles:?} cycles after the fleet stopped (lease {LEASE_S} s), \
         {since_last_restart:?} cycles after the last restart; called off (rule, reason): \
         {cancelled_by:?}; lost {}, duplicates {}; run phase {run_s} s, whole run {total_s} s",
        sessions.len(),
        resident.len(),
        count(OutboxStatus::Sent),
        count(OutboxStatus::Cancelled),
        accepted.len(),
        at_gateway.len(),
        calls.send_text,
        outcome("retry"),
        outcome("confirmed"),
        outcome("not_found"),
        hooks.len(),
        violations.lost(),
        violations.duplicates.len(),
        name = sc.name,
        seed = sc.seed,
        planted = sc.planted,
    );
    // One machine-readable line per scenario, collected by bench/soak.sh.
    println!(
        "FAULT_SUMMARY {}",
        serde_json::json!({
            "scenario": sc.name,
            "soak": soak(),
            "planted": sc.planted,
            "seed": sc.seed,
            "messages": at_gateway.len(),
            "kills": kills_done,
            "kills_per_instance": kills_per_instance,
            "second_instance_s": two_instances_s,
            "lost": violations.lost(),
            "duplicates": violations.duplicates.len(),
            "in_doubt": in_doubt_after_kill,
            "in_doubt_left": in_doubt_left,
            "left_claimed": violations.claimed.len(),
            "largest_restart_backlog": restart_drains.iter().map(|d| d.0).max(),
            "settle_cycles": settle_cycles,
            "run_s": run_s,
            "total_s": total_s,
        })
    );

    cve.shutdown().await;
    drop(hook);
    if let Ok(evo) = Arc::try_unwrap(evo) {
        evo.shutdown().await;
    }
    probe.pool.close().await;
    Outcome {
        violations,
        sent: count(OutboxStatus::Sent),
        kills: kills_done,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_notifications_survive_sigkill_without_loss_or_duplicates() {
    let sc = Scenario::r2();
    let out = run(&sc).await;
    out.violations.assert_none();
    assert!(
        out.sent as u64 >= sc.messages,
        "the run sent {} resident messages, fewer than the {} asked for",
        out.sent,
        sc.messages
    );
    assert_eq!(out.kills, sc.kills, "every planned kill happened");
}

/// Runs a planted-bug scenario (another seed each time, at most [`PLANTED_ATTEMPTS`]) until
/// `caught` says the checker saw the bug; fails when it never does.
async fn planted_run(sc: Scenario, caught: impl Fn(&Violations) -> bool) -> Violations {
    for attempt in 0..PLANTED_ATTEMPTS {
        let sc = Scenario {
            seed: sc.seed + attempt,
            ..sc.clone()
        };
        let out = run(&sc).await;
        if caught(&out.violations) {
            eprintln!(
                "planted bug {:?} caught on attempt {} (seed {}): lost {}, duplicates {}",
                sc.planted,
                attempt + 1,
                sc.seed,
                out.violations.lost(),
                out.violations.duplicates.len()
            );
            return out.violations;
        }
        eprintln!(
            "planted bug {:?} not visible with seed {}: {:?}",
            sc.planted, sc.seed, out.violations
        );
    }
    panic!(
        "the R2 checker did not see the planted bug {:?} in {PLANTED_ATTEMPTS} runs",
        sc.planted
    );
}

/// `mark-sent-before-send`: the row is recorded sent before the gateway is called, so a send
/// the gateway refuses (5 % here) or a kill during the send leaves a row `sent` that the
/// gateway never accepted. The checker must count it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_turns_red_when_messages_are_marked_sent_before_sending() {
    let v = planted_run(
        Scenario {
            name: "r2-planted-mark-sent-before-send",
            messages: 80,
            kills: 4,
            seed: 71,
            kill_pause_ms: (1_500, 3_000),
            second_until_kill: 0,
            tick_ms: 200,
            planted: Some("mark-sent-before-send"),
            settle: false,
        },
        |v| !v.sent_not_at_gateway.is_empty(),
    )
    .await;
    assert!(v.lost() > 0);
}

/// `no-skip-locked`: with the claim's row lock dropped, two instances whose claims overlap
/// both take the same rows and both send them. The checker must count duplicates. Both
/// instances run throughout and tick every 50 ms so claims overlap often enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_turns_red_when_claims_take_no_row_lock() {
    let v = planted_run(
        Scenario {
            name: "r2-planted-no-skip-locked",
            messages: 120,
            kills: 2,
            seed: 91,
            kill_pause_ms: (4_000, 8_000),
            second_until_kill: u64::MAX,
            tick_ms: 50,
            planted: Some("no-skip-locked"),
            settle: false,
        },
        |v| !v.duplicates.is_empty(),
    )
    .await;
    assert!(!v.duplicates.is_empty());
}
