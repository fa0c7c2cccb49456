//! Notification dispatcher latency and throughput against the in-process Evolution simulator,
//! on SQLite or PostgreSQL. Results go to `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p vetric-engine --example dispatch_bench -- --backend sqlite
//! cargo run --release -p vetric-engine --example dispatch_bench -- --backend postgres
//!     [--rate 100] [--seconds 20] [--latency-ms 150] [--concurrency 8] [--tick-ms 1000]
//!     [--saturation 1,8,32] [--pg-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! 1. **Latency**: outbox rows are enqueued through the store's `enqueue` (as an event's
//!    notification would be) at a steady `--rate` rows/s for `--seconds`, while a
//!    [`Dispatcher`] (`--concurrency`, `--tick-ms`) sends them to the simulator answering
//!    after `--latency-ms`. Per row: the time the simulator received the request (its
//!    recorded accept time minus the configured latency, which it sleeps before handling)
//!    minus the row's `created_at`. Reported: p50, p99, max.
//! 2. **Throughput at saturation**: for each concurrency in `--saturation`, a backlog is
//!    enqueued first, then a dispatcher drains it; messages per second from its start to the
//!    last row sent.
//!
//! The simulator runs in this process (its CPU is shared with the dispatcher). The store is a
//! temporary SQLite file or a fresh database `vetric_dispatch_bench` (dropped at the end).

use anyhow::{Context, ensure};
use chrono::{TimeDelta, Utc};
use clap::{Parser, ValueEnum};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use url::Url;
use vetric_domain::Secret;
use vetric_engine::dispatch::{DispatchSettings, Dispatcher, SiteDispatch, WhatsAppGateway};
use vetric_evolution::{EvolutionClient, EvolutionConfig};
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, EvolutionSimHandle, Faults,
};
use vetric_store::{NewNotification, SiteId, Store};

const BENCH_DB: &str = "vetric_dispatch_bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
}

/// Dispatcher latency and throughput (see the module documentation).
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = BackendArg::Sqlite)]
    backend: BackendArg,
    /// Rows enqueued per second in the latency run.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Length of the latency run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Simulated gateway latency (every request).
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    /// Concurrency of the latency run.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Dispatcher tick (vetric's default is 1000 ms).
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Concurrencies measured at saturation.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    saturation: Vec<usize>,
    /// PostgreSQL maintenance database; the bench database is created on the same server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.rate > 0, "--rate must be at least 1");
    let sim = EvolutionSim::start(
        EvolutionSimConfig::default(),
        "127.0.0.1:0".parse().context("listen address")?,
    )
    .await?;
    sim.set_faults(Faults {
        latency_ms: args.latency_ms,
        ..Faults::default()
    });
    println!(
        "backend {:?}, gateway latency {} ms, tick {} ms",
        args.backend, args.latency_ms, args.tick_ms
    );

    // 1. Latency at a steady rate.
    let (store, _dir) = open_store(&args).await?;
    let site = store
        .upsert_site("bench", "Bench", "America/Sao_Paulo")
        .await?;
    let cancel = CancellationToken::new();
    let d = dispatcher(&store, site, &sim, &args, args.concurrency)?;
    let task = tokio::spawn(d.run(cancel.clone()));
    let total = args.rate as usize * args.seconds as usize;
    let mut ids = Vec::with_capacity(total);
    let mut every = tokio::time::interval(Duration::from_secs(1) / args.rate);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for i in 0..total {
        every.tick().await;
        ids.push(enqueue(&store, site, "lat", i).await?);
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    drain(&store, Duration::from_secs(120)).await?;
    cancel.cancel();
    task.await?;
    let sent = sim.messages();
    ensure!(
        sent.len() == total,
        "{} messages at the gateway for {total} rows",
        sent.len()
    );
    let received_at: HashMap<String, chrono::DateTime<Utc>> = sent
        .iter()
        .filter_map(|m| {
            let code = m.text.rsplit("ref. ").next()?.trim().to_owned();
            Some((
                code,
                m.timestamp - TimeDelta::milliseconds(args.latency_ms as i64),
            ))
        })
        .collect();
    let mut gateway_ms = Vec::with_capacity(total);
    let mut sent_at_ms = Vec::with_capacity(total);
    for id in &ids {
        let row = store.outbox_entry(*id).await?.context("row vanished")?.row;
        let at = received_at
            .get(&row.ref_code)
            .with_context(|| format!("row {id} not found at the gateway"))?;
        gateway_ms.push((*at - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        if let Some(s) = row.sent_at {
            sent_at_ms.push((s - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    println!(
        "latency run: {total} rows enqueued in {enqueue_s:.1} s ({:.1}/s), concurrency {}",
        total as f64 / enqueue_s,
        args.concurrency
    );
    println!(
        "  created_at -> gateway request received: {}",
        percentiles(&mut gateway_ms)
    );
    println!(
        "  created_at -> sent_at recorded:          {}",
        percentiles(&mut sent_at_ms)
    );
    drop(store);

    // 2. Throughput at saturation.
    for &c in &args.saturation {
        sim.clear_messages();
        let (store, _dir) = open_store(&args).await?;
        let site = store
            .upsert_site("bench", "Bench", "America/Sao_Paulo")
            .await?;
        // About six seconds of sends at the ideal rate, at least 50 rows.
        let rows = (c * 6_000 / args.latency_ms.max(1) as usize).max(50);
        for i in 0..rows {
            enqueue(&store, site, &format!("sat{c}"), i).await?;
        }
        let cancel = CancellationToken::new();
        let d = dispatcher(&store, site, &sim, &args, c)?;
        let t0 = Instant::now();
        let task = tokio::spawn(d.run(cancel.clone()));
        drain(&store, Duration::from_secs(600)).await?;
        let elapsed = t0.elapsed().as_secs_f64();
        cancel.cancel();
        task.await?;
        ensure!(sim.messages().len() == rows, "not every row sent once");
        println!(
            "saturation: concurrency {c:>2}: {rows} rows in {elapsed:.2} s = {:.1} messages/s \
             (ideal {:.1})",
            rows as f64 / elapsed,
            c as f64 * 1000.0 / args.latency_ms.max(1) as f64
        );
    }
    if args.backend == BackendArg::Postgres {
        let mut admin = PgConnection::connect(&args.pg_url).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"
            )))
            .await?;
        admin.close().await?;
    }
    Ok(())
}

fn dispatcher(
    store: &Store,
    site: SiteId,
    sim: &EvolutionSimHandle,
    args: &Args,
    concurrency: usize,
) -> anyhow::Result<Dispatcher> {
    let mut cfg = EvolutionConfig::new(
        Url::parse(sim.base_url())?,
        Secret::new(DEFAULT_API_KEY),
        DEFAULT_INSTANCE,
    );
    cfg.request_timeout = Duration::from_secs(10);
    let settings = DispatchSettings {
        owner: format!("bench-{concurrency}"),
        tick: Duration::from_millis(args.tick_ms),
        concurrency,
        ..DispatchSettings::default()
    };
    Ok(Dispatcher::new(
        store.clone(),
        settings,
        vec![SiteDispatch {
            site,
            slug: "bench".into(),
            name: "Bench".into(),
            tz: chrono_tz::America::Sao_Paulo,
            whatsapp: Some(WhatsAppGateway {
                client: EvolutionClient::new(cfg)?,
                stores_messages: true,
            }),
        }],
    ))
}

/// One resident notification, as an event's would be (500 distinct recipients).
async fn enqueue(store: &Store, site: SiteId, run: &str, i: usize) -> anyhow::Result<i64> {
    let key = format!("{run}:{i}");
    let n = NewNotification {
        dedup_key: format!("bench:{key}"),
        rule: "session_started".into(),
        audience: "resident".into(),
        channel: "whatsapp".into(),
        resident_id: None,
        recipient: Some(format!("+558299{:07}", 1_000_000 + i % 500)),
        scope: format!("session:{i}"),
        session_vendor_id: None,
        subject: None,
        body: format!("⚡ *Recarga iniciada* ({key})"),
        ref_code: vetric_domain::ref_code(&key),
        not_before: Utc::now(),
    };
    store
        .enqueue(Some(site), &n)
        .await?
        .context("duplicate dedup key")
}

async fn drain(store: &Store, max: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let b = store.outbox_backlog(None, Utc::now()).await?;
        if b.pending == 0 && b.sending == 0 && b.in_doubt == 0 {
            return Ok(());
        }
        ensure!(t0.elapsed() < max, "backlog not drained in {max:?}: {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentiles(ms: &mut [f64]) -> String {
    if ms.is_empty() {
        return "no samples".into();
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n = {})",
        at(0.5),
        at(0.99),
        ms[ms.len() - 1],
        ms.len()
    )
}

async fn open_store(args: &Args) -> anyhow::Result<(Store, Option<tempfile::TempDir>)> {
    let (url, dir) = match args.backend {
        BackendArg::Sqlite => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("vetric.db");
            (format!("sqlite://{}", path.display()), Some(dir))
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
            (url.to_string(), None)
        }
    };
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    Ok((store, dir))
}
