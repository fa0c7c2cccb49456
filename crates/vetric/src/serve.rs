//! `vetric serve` (and the serving half of `demo`): take the instance lock, bind the port, open
//! the store, start one ingest loop per site and the HTTP server, and stop cleanly on SIGTERM.
//!
//! The order matters (RELIABILITY.md R5). The legacy system migrated its database, logged in to
//! the vendor and started polling before it died on EADDRINUSE; here the lock and the port are
//! taken first, so a second instance or a foreign process on the port makes vetric exit before
//! any side effect.

use crate::config::{Config, DatabaseUrl, SiteConfig};
use anyhow::Context;
use chrono::TimeDelta;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use vetric_cvepro::{CveProClient, CveProConfig};
use vetric_engine::{IngestSettings, SiteIngest};
use vetric_store::{InstanceLock, LockError, LockHolder, SiteId, Store};

mod systemd;

/// How long in-flight work gets after SIGTERM before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A start-up refusal with its own exit code, so supervisors and scripts can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    StoreLocked(LockError),
    #[error(
        "{addr} is already in use: is another vetric running? Stop it, or set `listen` (VETRIC_LISTEN) to a free address"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartupError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::PortInUse { .. } | Self::Bind { .. } => ExitCode::from(2),
            Self::StoreLocked(_) => ExitCode::from(3),
        }
    }
}

/// What `serve` holds while it runs. Dropping it releases the instance lock.
pub struct Claimed {
    pub listener: TcpListener,
    _lock: Option<InstanceLock>,
}

/// Takes the SQLite instance lock (if SQLite) and binds the port, touching nothing else.
pub async fn claim(
    database: &DatabaseUrl,
    listen: SocketAddr,
    command: &str,
) -> Result<Claimed, StartupError> {
    let lock = match database {
        DatabaseUrl::Sqlite(path) => {
            let holder = LockHolder::current(command, Some(listen.to_string()));
            Some(InstanceLock::acquire(path, holder).map_err(StartupError::StoreLocked)?)
        }
        DatabaseUrl::Postgres(_) => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => StartupError::PortInUse { addr: listen },
            _ => StartupError::Bind {
                addr: listen,
                source,
            },
        })?;
    Ok(Claimed {
        listener,
        _lock: lock,
    })
}

/// Connects, migrates, and upserts the configured sites: what every store-touching command
/// does first (DESIGN.md public surface). Returns the store and each site's id.
pub async fn open_store(config: &Config) -> anyhow::Result<(Store, Vec<(SiteId, SiteConfig)>)> {
    let store = Store::connect(&config.database.connect_string())
        .await
        .with_context(|| format!("opening the store {}", config.database))?;
    store.migrate().await.context("migrating the store")?;
    let mut sites = Vec::new();
    for site in &config.sites {
        let id = store
            .upsert_site(site.slug.as_str(), &site.name, site.timezone.name())
            .await
            .with_context(|| format!("recording site {}", site.slug))?;
        if let Some(tariff) = &site.tariff {
            store
                .upsert_config_tariff(id, tariff)
                .await
                .with_context(|| format!("recording the tariff of site {}", site.slug))?;
        }
        sites.push((id, site.clone()));
    }
    Ok((store, sites))
}

/// Runs until SIGTERM/SIGINT or `stop` is cancelled, then drains.
pub async fn run(
    config: Config,
    claimed: Claimed,
    store: Store,
    sites: Vec<(SiteId, SiteConfig)>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = TaskTracker::new();
    // Once per process, before anything records (the ingest loops do); serve and demo both
    // come through here.
    let metrics = match vetric_web::metrics::install() {
        Ok(handle) => {
            tasks.spawn(vetric_web::metrics::upkeep(handle.clone(), stop.clone()));
            Some(handle)
        }
        Err(e) => {
            warn!(error = %e, "serving without /metrics");
            None
        }
    };
    let web_sites = web_sites(&sites);
    let site_config = site_config(&sites);
    let gateways = gateways(&sites);
    // The dispatcher records each gateway check here; `/health` reads it.
    let gateway_status = vetric_engine::GatewayStatus::default();
    let ops = vetric_web::OpsSettings {
        metrics,
        without_vendor: sites
            .iter()
            .filter(|(_, s)| s.cvepro.is_none())
            .map(|(id, _)| *id)
            .collect(),
        gateways: gateway_status.clone(),
        ..vetric_web::OpsSettings::default()
    };
    let polled: Vec<crate::liveness::PolledSite> = sites
        .iter()
        .filter_map(|(id, s)| {
            s.cvepro.as_ref().map(|c| crate::liveness::PolledSite {
                id: *id,
                slug: s.slug.to_string(),
                poll_interval: c.poll_interval,
            })
        })
        .collect();
    // STOPPING=1 on drain and, under a systemd watchdog, keep-alives while alive.
    tasks.spawn(systemd::supervise(
        store.clone(),
        polled.clone(),
        stop.clone(),
    ));
    if let Some(url) = config.heartbeat_url.clone() {
        tasks.spawn(crate::heartbeat::run(
            url,
            config.heartbeat_interval,
            store.clone(),
            polled,
            stop.clone(),
        ));
    }
    if config.backup.enabled && config.database.is_sqlite() {
        // Daily, in the first site's zone (São Paulo without sites).
        let tz = sites
            .first()
            .map_or(chrono_tz::America::Sao_Paulo, |(_, s)| s.timezone);
        tasks.spawn(crate::backup::scheduled(
            store.clone(),
            config.backup.clone(),
            tz,
            stop.clone(),
        ));
    }
    // Notifications: one dispatcher per process (on SQLite the instance lock makes it the
    // only one for the store); it finishes a send in flight when `stop` fires.
    let dispatcher = crate::dispatch::build_dispatcher(&config, &store, &sites)?
        .with_gateway_status(gateway_status);
    tasks.spawn(dispatcher.run(stop.clone()));
    // Per-site ingest leadership (RELIABILITY R5): a site is polled only while this instance
    // holds its lock (PostgreSQL advisory lock; always on SQLite).
    let shortest_poll = sites
        .iter()
        .filter_map(|(_, s)| s.cvepro.as_ref().map(|c| c.poll_interval))
        .min()
        .unwrap_or(Duration::from_secs(10));
    let mut leadership = vetric_engine::Leadership::new(
        store.clone(),
        vetric_engine::LeaderSettings::for_poll_interval(shortest_poll),
    );
    for (site_id, site) in sites {
        let Some(cve) = &site.cvepro else {
            info!(site = %site.slug, "no [sites.cvepro] configured; not polling this site");
            continue;
        };
        let mut cve_config = CveProConfig::new(
            cve.base_url.clone(),
            cve.api_key.clone(),
            cve.email.clone(),
            cve.password.clone(),
        );
        cve_config.request_timeout = cve.request_timeout;
        let client = CveProClient::new(cve_config)
            .with_context(|| format!("building the CVE-Pro client of site {}", site.slug))?;
        let mut settings = ingest_settings(&site, cve.poll_interval);
        settings.notify = crate::dispatch::site_notify(&config, &site);
        // Read once here so a stored state that cannot be read stops the start (the leader
        // reads it again when it takes the site).
        SiteIngest::resume(
            site_id,
            site.slug.as_str(),
            client.clone(),
            store.clone(),
            settings.clone(),
        )
        .await
        .with_context(|| format!("resuming the ingest of site {}", site.slug))?;
        leadership.add_site(site_id, site.slug.as_str(), client, settings);
    }
    let leadership_board = leadership.board();
    tasks.spawn(leadership.run(stop.clone()));
    tasks.close();

    let signals = tokio::spawn(wait_for_signal(stop.clone()));
    let public_url = config
        .public_url
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| format!("http://{}", config.listen));
    info!(listen = %config.listen, %public_url, store = %config.database, "vetric is serving");
    let state = vetric_web::AppState::new(
        store.clone(),
        web_sites,
        config.public_url.clone(),
        stop.clone(),
    )
    .with_ops(vetric_web::OpsSettings {
        leadership: leadership_board,
        ..ops
    })
    .with_cors_origins(config.cors_origins.clone())
    .with_site_config(site_config)
    .with_gateways(gateways);
    let app = vetric_web::router(state);
    // Bound, migrated, and the accept loop starts below (no-op without NOTIFY_SOCKET).
    systemd::ready(&config.listen.to_string());
    let served = vetric_web::serve(claimed.listener, app, stop.clone()).await;
    stop.cancel();
    signals.abort();
    if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        warn!("background tasks did not stop within {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    store.close().await;
    info!("vetric stopped");
    served.context("serving HTTP")
}

/// The configured sites as the web layer needs them (plain data).
pub fn web_sites(sites: &[(SiteId, SiteConfig)]) -> Vec<vetric_web::SiteSettings> {
    sites
        .iter()
        .map(|(id, site)| vetric_web::SiteSettings {
            id: *id,
            slug: site.slug.to_string(),
            name: site.name.clone(),
            timezone: site.timezone,
            poll_interval: site
                .cvepro
                .as_ref()
                .map_or(Duration::from_secs(10), |c| c.poll_interval),
            offline_after: site.offline_after,
        })
        .collect()
}

/// Each site's `[sites.whatsapp]`, for the notification settings page (shown read-only; its
/// "Verificar conexão" asks the gateway).
pub fn gateways(sites: &[(SiteId, SiteConfig)]) -> Vec<vetric_web::notifications::SiteGateway> {
    sites
        .iter()
        .filter_map(|(id, site)| {
            site.whatsapp
                .as_ref()
                .map(|w| vetric_web::notifications::SiteGateway {
                    site: *id,
                    base_url: w.base_url.clone(),
                    instance: w.instance.clone(),
                    api_key: w.api_key.clone(),
                })
        })
        .collect()
}

/// What the settings and tariff pages show of each site's configuration, and the vendor
/// account "Testar conexão" probes.
pub fn site_config(sites: &[(SiteId, SiteConfig)]) -> Vec<vetric_web::settings::SiteConfigured> {
    sites
        .iter()
        .map(|(id, site)| vetric_web::settings::SiteConfigured {
            site: *id,
            heartbeat_offline_after: site.heartbeat_offline_after,
            vendor: site
                .cvepro
                .as_ref()
                .map(|c| vetric_web::settings::VendorAccount {
                    base_url: c.base_url.clone(),
                    email: c.email.clone(),
                    api_key: c.api_key.clone(),
                    password: c.password.clone(),
                }),
            tariff_in_config: site.tariff.is_some(),
        })
        .collect()
}

fn ingest_settings(site: &SiteConfig, poll_interval: Duration) -> IngestSettings {
    let delta = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    let mut settings = IngestSettings {
        poll_interval,
        ..IngestSettings::default()
    };
    settings.tracker.heartbeat_offline_after = delta(site.heartbeat_offline_after);
    settings.tracker.stale_session_after = delta(site.stale_session_after);
    settings
}

async fn wait_for_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => info!("interrupt: draining"),
            () = stop.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupt: draining"),
            () = stop.cancelled() => return,
        }
    }
    stop.cancel();
}
