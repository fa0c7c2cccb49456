//! `vetric demo`: everything in one process on the embedded default. A SQLite store in the data
//! directory, the CVE-Pro simulator on a free local port, and a demo condominium whose residents
//! and tags are the simulator's, so sessions are attributed to people from the first poll.
//!
//! The Evolution (WhatsApp) simulator runs in process too, configured as a gateway that stores
//! messages, so notifications flow to it and show in the notification log as sent.
//!
//! Operator alerts go to an in-process webhook receiver and e-mail (the managers' statement
//! e-mails, say) to an in-process SMTP sink: each one received is logged as one line —
//! `demo alert sink: …` or `demo mail sink: …` — so the alerts a real deployment sends to its
//! operators are visible in the demo's log (issue #6).
//!
//! It writes `DIR/vetric.toml` so that other commands (`vetric status --config DIR/vetric.toml`)
//! look at the same store while the demo runs, then serves exactly as `vetric serve` does.

use crate::config::{self, DatabaseUrl};
use crate::serve;
use anyhow::Context;
use chrono::{NaiveDate, TimeZone};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;
use vetric_domain::Tag;
use vetric_sim::cvepro::{CveProSim, Fleet, SimConfig};
use vetric_sim::evolution::{
    DEFAULT_API_KEY as EVOLUTION_API_KEY, DEFAULT_INSTANCE as EVOLUTION_INSTANCE, EvolutionSim,
    EvolutionSimConfig,
};
use vetric_sim::smtp::{SmtpSink, SmtpSinkHandle};
use vetric_sim::webhook::{WebhookReceiver, WebhookReceiverHandle};
use vetric_store::{NewResident, SiteId, Store};

mod history;

pub const DEMO_SITE_SLUG: &str = "jardim-palmeiras";

/// The demo's webhook secret: the receiver runs in the same process and the config file that
/// holds it is the demo's own, so it protects nothing and need not be random.
const DEMO_WEBHOOK_SECRET: &str = "vetric-demo-webhook-secret-not-for-production";
/// The operators' address of the demo (alerts go to the webhook; this only names the sender).
const DEMO_MAIL_FROM: &str = "vetric-demo@example.com";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the dashboard listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite store and the generated vetric.toml.
    #[arg(long, default_value = ".vetric-demo")]
    data_dir: PathBuf,
    /// How many simulated chargers.
    #[arg(long, default_value_t = 5)]
    chargers: usize,
    /// How much faster than life simulated sessions run (timestamps stay on the real clock).
    #[arg(long, default_value_t = 30.0)]
    speed: f64,
    /// Seed of the simulated fleet (same seed, same residents and sessions).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds between polls of the (simulated) vendor.
    #[arg(long, default_value_t = 5)]
    poll_interval_s: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number, e.g. 30");
    }
    if args.chargers == 0 || args.chargers > 1000 {
        anyhow::bail!("--chargers must be between 1 and 1000");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let db_path = data_dir.join("vetric.db");

    // The lock and the port first: a second demo on the same directory, or a taken port,
    // exits here before the simulator starts or anything is written.
    let claimed = match serve::claim(
        &DatabaseUrl::Sqlite(db_path.clone()),
        args.listen,
        "vetric demo",
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(e.exit_code());
        }
    };

    let sim_config = SimConfig::for_cli(args.chargers, args.seed, args.speed);
    let sim = CveProSim::start(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the CVE-Pro simulator")?;
    let whatsapp = EvolutionSim::start(
        EvolutionSimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .context("starting the Evolution (WhatsApp) simulator")?;
    let alert_sink = Arc::new(
        WebhookReceiver::start(DEMO_WEBHOOK_SECRET)
            .await
            .context("starting the demo's alert receiver")?,
    );
    let (mail_addr, mail_sink) = SmtpSink::start()
        .await
        .context("starting the demo's mail sink")?;
    let mail_sink = Arc::new(mail_sink);
    let sinks = Sinks {
        alert_url: alert_sink.url(),
        smtp: mail_addr,
    };
    let config_path = data_dir.join("vetric.toml");
    write_config(
        &config_path,
        &db_path,
        &args,
        sim.base_url(),
        whatsapp.base_url(),
        &sim.fleet(),
        Some(&sinks),
    )?;
    let stop_watch = CancellationToken::new();
    let watcher = tokio::spawn(watch_sinks(
        alert_sink.clone(),
        mail_sink.clone(),
        stop_watch.clone(),
    ));
    let cfg = config::load(&config_path, &std::collections::BTreeMap::new())?;

    let (store, sites) = serve::open_store(&cfg).await?;
    let mut logins = Vec::new();
    if let Some((site_id, _)) = sites.first() {
        seed_residents(&store, *site_id, &sim.fleet()).await?;
        let seeded = history::seed(
            &store,
            *site_id,
            &sim.fleet(),
            chrono_tz::America::Sao_Paulo,
            args.seed,
            chrono::Utc::now(),
        )
        .await
        .context("seeding the demo's charging history")?;
        if seeded.imported > 0 {
            info!(
                sessions = seeded.imported,
                months = seeded.months,
                "demo charging history imported ({})",
                history::BATCH_NAME
            );
        }
        logins = crate::accounts::ensure_demo_accounts(&store, *site_id).await?;
    }

    println!("vetric demo is running");
    println!("  url:       http://{}/", args.listen);
    println!("  health:    http://{}/health/live", args.listen);
    println!(
        "  status:    vetric status --config {}",
        config_path.display()
    );
    println!(
        "  simulator: {} (control API under /__sim/)",
        sim.base_url()
    );
    println!(
        "  whatsapp:  {} (simulated gateway; control API under /__sim/)",
        whatsapp.base_url()
    );
    println!(
        "  alerts:    {} (operator alerts; each is logged as \"demo alert sink: …\")",
        sinks.alert_url
    );
    println!(
        "  e-mail:    smtp://{} (mail sink; each mail is logged as \"demo mail sink: …\")",
        sinks.smtp
    );
    println!("  store:     {}", db_path.display());
    // DESIGN.md: this is the only place a password is ever printed. Accounts survive a
    // restart; their passwords are reset at every start so these lines always work.
    for (role, email, password) in &logins {
        println!("{role}: {email} {password}");
    }
    info!(
        chargers = args.chargers,
        speed = args.speed,
        "demo condominium ready"
    );

    serve::run(cfg, claimed, store, sites, CancellationToken::new()).await?;
    stop_watch.cancel();
    let _ = watcher.await;
    sim.shutdown().await;
    whatsapp.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Where the demo's in-process receivers listen.
struct Sinks {
    alert_url: String,
    smtp: SocketAddr,
}

/// Logs one line per alert the webhook receiver got and per mail the SMTP sink accepted,
/// checking every second, until `stop`.
async fn watch_sinks(
    alerts: Arc<WebhookReceiverHandle>,
    mails: Arc<SmtpSinkHandle>,
    stop: CancellationToken,
) {
    let (mut seen_alerts, mut seen_mails) = (0, 0);
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let requests = alerts.requests();
        for r in requests.iter().skip(seen_alerts) {
            let field = |k: &str| {
                r.json
                    .as_ref()
                    .and_then(|j| j.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            info!(
                "demo alert sink: [{}] {}",
                field("rule"),
                one_line(&field("text"))
            );
        }
        seen_alerts = requests.len();
        let received = mails.mails();
        for m in received.iter().skip(seen_mails) {
            info!(
                "demo mail sink: to {} — {}",
                m.rcpt_to.join(", "),
                one_line(m.subject.as_deref().unwrap_or("(sem assunto)"))
            );
        }
        seen_mails = received.len();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

fn write_config(
    path: &Path,
    db_path: &Path,
    args: &DemoArgs,
    sim_url: &str,
    whatsapp_url: &str,
    fleet: &Fleet,
    sinks: Option<&Sinks>,
) -> anyhow::Result<()> {
    let sim = SimConfig::for_cli(args.chargers, args.seed, args.speed);
    // Top-level sections come before `[[sites]]` (TOML: keys after a table header belong to
    // that table).
    let sink_sections = sinks.map_or_else(String::new, |s| {
        format!(
            "# Operator alerts (vendor down, gateway down…) go to the demo's own webhook\n\
             # receiver and e-mail to its SMTP sink; both log what they get.\n\
             [alerts]\n\
             webhook_url = {url:?}\n\
             webhook_secret = {secret:?}\n\n\
             [smtp]\n\
             host = \"127.0.0.1\"\n\
             port = {port}\n\
             from = {from:?}\n\
             starttls = false\n\n",
            url = s.alert_url,
            secret = DEMO_WEBHOOK_SECRET,
            port = s.smtp.port(),
            from = DEMO_MAIL_FROM,
        )
    });
    let text = format!(
        "# Written by `vetric demo`; rewritten at every start (the simulator's port changes).\n\
         listen = {listen:?}\n\
         database_url = {db:?}\n\n\
         {sink_sections}\
         [[sites]]\n\
         slug = {slug:?}\n\
         name = {name:?}\n\
         timezone = \"America/Sao_Paulo\"\n\n\
         [sites.cvepro]\n\
         base_url = {sim_url:?}\n\
         api_key = {api_key:?}\n\
         email = {email:?}\n\
         password = {password:?}\n\
         poll_interval_s = {poll}\n\n\
         # The in-process gateway simulator keeps what it sent, so a message left in doubt\n\
         # by a crash may be looked up and resent safely.\n\
         [sites.whatsapp]\n\
         base_url = {whatsapp_url:?}\n\
         api_key = {wa_key:?}\n\
         instance = {wa_instance:?}\n\
         stores_messages = true\n\n\
         # A time-of-use tariff like the worked examples of BILLING.md, so the \"finished\"\n\
         # messages and the statements carry a cost.\n\
         [sites.tariff]\n\
         peak_price = \"3.08\"\n\
         offpeak_price = \"0.53\"\n\
         peak_start = \"17:30\"\n\
         peak_end = \"20:30\"\n\
         idle_grace_min = 15\n\
         idle_fee_per_min = \"0.10\"\n\
         idle_fee_cap = \"30.00\"\n\
         max_kwh = \"150\"\n",
        listen = args.listen.to_string(),
        db = format!("sqlite://{}", db_path.display()),
        slug = DEMO_SITE_SLUG,
        name = fleet.site_name,
        api_key = sim.api_key,
        email = sim.email,
        password = sim.password,
        poll = args.poll_interval_s,
        wa_key = EVOLUTION_API_KEY,
        wa_instance = EVOLUTION_INSTANCE,
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Registers the simulator's residents and their tags, once: a demo restarted on the same
/// directory keeps what it has (and what a manager changed).
async fn seed_residents(store: &Store, site: SiteId, fleet: &Fleet) -> anyhow::Result<()> {
    if !store.residents(site).await?.is_empty() {
        return Ok(());
    }
    // Tags valid from the start of 2025, local midnight, so every simulated session is covered.
    let since = chrono_tz::America::Sao_Paulo
        .from_local_datetime(
            &NaiveDate::from_ymd_opt(2025, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .context("a valid constant date")?,
        )
        .single()
        .context("2025-01-01 00:00 is unambiguous in São Paulo")?
        .with_timezone(&chrono::Utc);
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
            let tag =
                Tag::parse(&t.id_tag).with_context(|| format!("simulator tag {:?}", t.id_tag))?;
            store.add_tag(site, id, &tag, since, None).await?;
        }
    }
    info!(
        residents = fleet.residents.len(),
        "demo residents and tags registered"
    );
    Ok(())
}
