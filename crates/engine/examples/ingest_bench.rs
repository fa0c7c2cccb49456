//! Ingest cost per cycle: CPU time, wall time, peak memory and store size of vetric's per-site
//! ingest ([`SiteIngest::cycle`]) for many sites polling CVE-Pro simulators, on SQLite or
//! PostgreSQL. Results go to `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p vetric-engine --example ingest_bench -- --backend sqlite
//! cargo run --release -p vetric-engine --example ingest_bench -- --backend postgres
//!     [--sites 100] [--chargers-per-site 100] [--cycles 10] [--interval-ms 10000]
//!     [--speed 10] [--settle-s 60] [--residents-per-charger 1] [--no-directory]
//!     [--pg-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! What it does:
//!
//! 1. Re-executes itself with `--serve-sims N` as a child process that starts N simulators
//!    (one site each: `--chargers-per-site` one-connector chargers, automatic fleet with
//!    sessions, seed = site number) and prints their base URLs. The simulators' CPU is
//!    therefore not counted in the measuring process.
//! 2. Opens the store: SQLite in a temporary directory, or a fresh PostgreSQL database
//!    `vetric_bench` (dropped and recreated at start, dropped at the end), migrates it and
//!    upserts the sites. Unless `--no-directory`, registers every simulated resident and tag
//!    in vetric's directory (so sessions resolve to residents, as in a real deployment).
//! 3. Builds one client and one [`SiteIngest`] per site and runs one warm-up round (every
//!    site's first cycle inserts all its chargers and connectors), then `--cycles` rounds in
//!    which every site does one cycle. Sites are polled one after the other within a round;
//!    rounds start `--interval-ms` apart (vetric's default poll interval is 10 s). The insert
//!    round waits until the simulators have run `--settle-s`, so sessions are going.
//! 4. Per round: wall time, CPU time of this process (user + system, `getrusage`), on
//!    PostgreSQL also the CPU time of the server backends connected to `vetric_bench`
//!    (`/proc/PID/stat`; the shared WAL writer and checkpointer are not included), events
//!    stored and open sessions. At the end: peak RSS (`VmHWM`) and the store size (SQLite
//!    file and WAL; `pg_database_size`).

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use url::Url;
use vetric_cvepro::{CveProClient, CveProConfig};
use vetric_domain::{Secret, Tag};
use vetric_engine::{CycleOutcome, IngestSettings, SiteIngest};
use vetric_sim::cvepro::{CveProSim, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, SimConfig};
use vetric_store::{NewResident, SiteId, Store};

const BENCH_DB: &str = "vetric_bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

/// Ingest cost per cycle for many sites (see the module documentation).
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    #[arg(long, default_value_t = 100)]
    sites: usize,
    #[arg(long, default_value_t = 100)]
    chargers_per_site: usize,
    /// Measured rounds after the warm-up (insert) round.
    #[arg(long, default_value_t = 10)]
    cycles: usize,
    /// Rounds start this far apart (a round that takes longer starts the next at once).
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// Simulator speed: sessions X times shorter, so a short run sees starts and stops.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// The insert round starts no earlier than this after the simulators started, so the
    /// automatic fleet has sessions going (at speed 10 most connectors are then in one).
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Residents per charger in each simulated fleet (1 keeps the directory at 10,000 tags for
    /// 10,000 connectors).
    #[arg(long, default_value_t = 1)]
    residents_per_charger: usize,
    /// Do not register the simulated residents and tags in vetric's directory.
    #[arg(long)]
    no_directory: bool,
    /// PostgreSQL maintenance database; `vetric_bench` is created on the same server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
    /// Internal: serve N simulators, print their base URLs, run until stdin closes.
    #[arg(long, hide = true)]
    serve_sims: Option<usize>,
}

impl Args {
    /// The simulator of site `index` (0-based); the same in the child and the parent.
    fn sim_config(&self, index: usize) -> SimConfig {
        SimConfig {
            chargers: self.chargers_per_site,
            residents_per_charger: self.residents_per_charger,
            seed: index as u64 + 1,
            speed: self.speed,
            ..SimConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.serve_sims {
        Some(n) => serve_sims(&args, n).await,
        None => bench(&args).await,
    }
}

/// Child mode: N simulators on 127.0.0.1, one base URL per line on stdout, then "ready".
async fn serve_sims(args: &Args, n: usize) -> anyhow::Result<()> {
    let mut sims = Vec::with_capacity(n);
    for i in 0..n {
        let sim = CveProSim::start(args.sim_config(i), "127.0.0.1:0".parse()?).await?;
        sims.push(sim);
    }
    let mut out = std::io::stdout().lock();
    for sim in &sims {
        writeln!(out, "{}", sim.base_url())?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    // Serve until the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
    })
    .await?;
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    ensure!(
        args.sites > 0 && args.chargers_per_site > 0,
        "nothing to ingest"
    );
    let connectors = args.sites * args.chargers_per_site;
    println!(
        "ingest bench: backend {:?}, {} sites x {} chargers = {connectors} connectors, \
         {} rounds {} ms apart, simulator speed {}",
        args.backend, args.sites, args.chargers_per_site, args.cycles, args.interval_ms, args.speed
    );

    // 1. Simulators in a child process.
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--serve-sims")
        .arg(args.sites.to_string())
        .arg("--chargers-per-site")
        .arg(args.chargers_per_site.to_string())
        .arg("--residents-per-charger")
        .arg(args.residents_per_charger.to_string())
        .arg("--speed")
        .arg(args.speed.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulator process")?;
    let mut lines = BufReader::new(child.stdout.take().context("simulator stdout")?).lines();
    let mut base_urls = Vec::with_capacity(args.sites);
    loop {
        match lines.next_line().await? {
            Some(line) if line == "ready" => break,
            Some(line) => base_urls.push(Url::parse(&line).context("a simulator base URL")?),
            None => bail!("the simulator process exited before it was ready"),
        }
    }
    ensure!(
        base_urls.len() == args.sites,
        "expected {} simulators",
        args.sites
    );
    let sims_started = Instant::now();
    println!(
        "simulators: {} in child process {:?}",
        base_urls.len(),
        child.id()
    );

    // 2. Store.
    let (store, target) = open_store(args).await?;
    let rss_before = read_status_kb("VmRSS")?;
    let setup = Instant::now();
    let mut sites = Vec::with_capacity(args.sites);
    let mut residents = 0usize;
    for i in 0..args.sites {
        let slug = format!("bench-{:03}", i + 1);
        let id = store
            .upsert_site(&slug, &format!("Bench site {}", i + 1), "America/Sao_Paulo")
            .await?;
        if !args.no_directory {
            residents += register_residents(&store, id, &args.sim_config(i)).await?;
        }
        sites.push((id, slug));
    }
    println!(
        "setup: {} sites, {residents} residents registered in {:.1} s",
        sites.len(),
        setup.elapsed().as_secs_f64()
    );

    // 3. One client and one ingest per site.
    let mut ingests = Vec::with_capacity(args.sites);
    for ((id, slug), base_url) in sites.into_iter().zip(base_urls) {
        let client = CveProClient::new(CveProConfig::new(
            base_url,
            Secret::new(DEFAULT_API_KEY),
            DEFAULT_EMAIL,
            Secret::new(DEFAULT_PASSWORD),
        ))?;
        let ingest =
            SiteIngest::resume(id, slug, client, store.clone(), IngestSettings::default()).await?;
        ingests.push(ingest);
    }

    let settle = Duration::from_secs(args.settle_s);
    tokio::time::sleep_until((sims_started + settle).into()).await;
    let pg = PgCpu::new(&store);
    let interval = Duration::from_millis(args.interval_ms);
    let mut next_start = Instant::now();
    println!();
    println!(
        "| round | wall ms | vetric cpu ms | cpu ms/site cycle | pg backends cpu ms | cycle p50 ms | cycle max ms | events | open sessions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let first = round(&mut ingests, &pg).await?;
    first.print("insert");
    let size_after_first = store_size(&store, &target).await?;
    let mut steady = Vec::with_capacity(args.cycles);
    for r in 1..=args.cycles {
        next_start += interval;
        tokio::time::sleep_until(next_start.into()).await;
        let sample = round(&mut ingests, &pg).await?;
        sample.print(&r.to_string());
        steady.push(sample);
    }
    let size_end = store_size(&store, &target).await?;
    let hwm = read_status_kb("VmHWM")?;
    let rss = read_status_kb("VmRSS")?;

    // 4. Summary.
    println!();
    println!("summary ({connectors} connectors, {} sites):", args.sites);
    first.summary("first (insert) round", args.sites, connectors);
    if !steady.is_empty() {
        Sample::mean(&steady).summary(
            &format!("steady rounds (mean of {})", steady.len()),
            args.sites,
            connectors,
        );
        let per_round: Vec<f64> = steady.iter().map(|s| ms(s.cpu)).collect();
        println!(
            "  steady cpu ms/round: min {:.0}, median {:.0}, max {:.0}",
            min(&per_round),
            median(&per_round),
            max(&per_round)
        );
        let growth = size_end.saturating_sub(size_after_first) / steady.len() as u64;
        println!(
            "  store growth per steady round: {:.1} KiB",
            growth as f64 / 1024.0
        );
    }
    println!(
        "  memory: RSS before ingests {:.1} MiB, peak RSS (VmHWM) {:.1} MiB, RSS at end {:.1} MiB",
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!(
        "  store size: {:.1} MiB after the insert round, {:.1} MiB at end ({})",
        size_after_first as f64 / 1048576.0,
        size_end as f64 / 1048576.0,
        target.describe()
    );
    let failed: usize = steady.iter().map(|s| s.failed).sum::<usize>() + first.failed;
    if failed > 0 {
        println!("  WARNING: {failed} cycles failed at the vendor; the numbers are not valid");
    }

    // Cleanup: close the store, drop the database, stop the simulators.
    drop(ingests);
    store.close().await;
    target.cleanup(&args.pg_url).await?;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok(())
}

/// Where the store lives, to measure and remove it.
enum Target {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres,
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("SQLite file + WAL, {}", path.display()),
            Self::Postgres => format!("pg_database_size('{BENCH_DB}')"),
        }
    }

    async fn cleanup(self, admin_url: &str) -> anyhow::Result<()> {
        if let Self::Postgres = self {
            let mut admin = PgConnection::connect(admin_url).await?;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"
                )))
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

async fn open_store(args: &Args) -> anyhow::Result<(Store, Target)> {
    let (url, target) = match args.backend {
        BackendArg::Sqlite => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("vetric.db");
            (
                format!("sqlite://{}", path.display()),
                Target::Sqlite { _dir: dir, path },
            )
        }
        BackendArg::Postgres => {
            let mut admin = PgConnection::connect(&args.pg_url)
                .await
                .with_context(|| format!("connecting to {}", args.pg_url))?;
            for sql in [
                format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"),
                format!("CREATE DATABASE {BENCH_DB}"),
            ] {
                admin.execute(sqlx::AssertSqlSafe(sql)).await?;
            }
            admin.close().await?;
            let mut url = Url::parse(&args.pg_url)?;
            url.set_path(BENCH_DB);
            (url.to_string(), Target::Postgres)
        }
    };
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    Ok((store, target))
}

/// Registers the residents and tags the simulator of this site generates. Returns how many.
async fn register_residents(store: &Store, site: SiteId, sim: &SimConfig) -> anyhow::Result<usize> {
    let fleet = CveProSim::fleet_for(sim);
    let since: DateTime<Utc> = "2020-01-01T00:00:00Z".parse()?;
    for r in &fleet.residents {
        let id = store
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
            .await?;
        for t in &r.tags {
            store
                .add_tag(site, id, &Tag::parse(&t.id_tag)?, since, None)
                .await?;
        }
    }
    Ok(fleet.residents.len())
}

async fn store_size(store: &Store, target: &Target) -> anyhow::Result<u64> {
    match target {
        Target::Sqlite { path, .. } => Ok(file_len(path) + file_len(&wal_path(path))),
        Target::Postgres => {
            let pool = store.pg_pool().context("a PostgreSQL store")?;
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(size)?)
        }
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// One round: every site does one cycle.
#[derive(Debug, Clone, Default)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    pg_cpu: Option<Duration>,
    cycles: usize,
    failed: usize,
    events: usize,
    open_sessions: usize,
    p50: Duration,
    max: Duration,
}

async fn round(ingests: &mut [SiteIngest], pg: &PgCpu) -> anyhow::Result<Sample> {
    let pg_before = pg.snapshot().await?;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(ingests.len());
    let mut sample = Sample::default();
    for ingest in ingests.iter_mut() {
        let t = Instant::now();
        let outcome = ingest.cycle(Utc::now()).await?;
        latencies.push(t.elapsed());
        sample.cycles += 1;
        sample.events += outcome.events().len();
        if !matches!(outcome, CycleOutcome::Accepted { .. }) {
            sample.failed += 1;
        }
        sample.open_sessions += ingest.state().tracker.open_sessions.len();
    }
    sample.wall = started.elapsed();
    sample.cpu = process_cpu().saturating_sub(cpu_before);
    sample.pg_cpu = pg.since(&pg_before).await?;
    latencies.sort();
    sample.p50 = latencies[latencies.len() / 2];
    sample.max = latencies[latencies.len() - 1];
    Ok(sample)
}

impl Sample {
    fn mean(samples: &[Sample]) -> Sample {
        let n = samples.len() as u32;
        let sum = |f: fn(&Sample) -> Duration| samples.iter().map(f).sum::<Duration>() / n;
        let count = |f: fn(&Sample) -> usize| samples.iter().map(f).sum::<usize>() / n as usize;
        Sample {
            wall: sum(|s| s.wall),
            cpu: sum(|s| s.cpu),
            pg_cpu: samples
                .iter()
                .map(|s| s.pg_cpu)
                .sum::<Option<Duration>>()
                .map(|d| d / n),
            cycles: count(|s| s.cycles),
            failed: count(|s| s.failed),
            events: count(|s| s.events),
            open_sessions: count(|s| s.open_sessions),
            p50: sum(|s| s.p50),
            max: samples.iter().map(|s| s.max).max().unwrap_or_default(),
        }
    }

    fn print(&self, label: &str) {
        println!(
            "| {label} | {:.0} | {:.0} | {:.2} | {} | {:.1} | {:.1} | {} | {} |",
            ms(self.wall),
            ms(self.cpu),
            ms(self.cpu) / self.cycles as f64,
            self.pg_cpu
                .map_or("-".to_owned(), |d| format!("{:.0}", ms(d))),
            ms(self.p50),
            ms(self.max),
            self.events,
            self.open_sessions,
        );
    }

    fn summary(&self, label: &str, sites: usize, connectors: usize) {
        let cpu = ms(self.cpu);
        let pg = self
            .pg_cpu
            .map(|d| {
                format!(
                    "; PostgreSQL backends {:.0} ms/round ({:.2} ms/cycle)",
                    ms(d),
                    ms(d) / sites as f64
                )
            })
            .unwrap_or_default();
        println!(
            "  {label}: wall {:.0} ms, vetric CPU {cpu:.0} ms per {connectors}-connector round \
             = {:.2} ms per site cycle = {:.1} us per connector{pg}; {} events, {} open sessions",
            ms(self.wall),
            cpu / sites as f64,
            cpu * 1000.0 / connectors as f64,
            self.events,
            self.open_sessions,
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// User + system CPU time of this process (all threads).
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the `rusage` we pass, which is plain data and zeroed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A `kB` line of `/proc/self/status` (`VmHWM`, `VmRSS`).
fn read_status_kb(key: &str) -> anyhow::Result<u64> {
    let file = std::fs::File::open("/proc/self/status")?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return Ok(kb.parse()?);
        }
    }
    bail!("{key} not in /proc/self/status")
}

/// CPU time of the PostgreSQL backends serving `vetric_bench` (none on SQLite).
struct PgCpu {
    pool: Option<sqlx::PgPool>,
    ticks_per_second: u64,
}

impl PgCpu {
    fn new(store: &Store) -> Self {
        // SAFETY: `sysconf` reads a configuration value; no memory is shared.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            pool: store.pg_pool().cloned(),
            ticks_per_second: u64::try_from(ticks).unwrap_or(100),
        }
    }

    /// Clock ticks (user + system) per backend pid.
    async fn snapshot(&self) -> anyhow::Result<HashMap<i32, u64>> {
        let Some(pool) = &self.pool else {
            return Ok(HashMap::new());
        };
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(pool)
        .await?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| proc_ticks(pid).map(|t| (pid, t)))
            .collect())
    }

    async fn since(&self, before: &HashMap<i32, u64>) -> anyhow::Result<Option<Duration>> {
        if self.pool.is_none() {
            return Ok(None);
        }
        let ticks: u64 = self
            .snapshot()
            .await?
            .into_iter()
            .map(|(pid, t)| t.saturating_sub(before.get(&pid).copied().unwrap_or(0)))
            .sum();
        Ok(Some(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second as f64,
        )))
    }
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn proc_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
