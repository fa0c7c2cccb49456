//! The configuration file: typed, checked at start, every problem listed at once.
//!
//! DESIGN.md rule 7: bad config means the process refuses to start and names every problem, so
//! an operator fixes the file in one pass instead of one error per restart. That is why this
//! module reads the TOML document key by key into typed values while collecting problems,
//! instead of letting serde stop at the first one. Unknown keys are problems too: a typo must
//! not silently fall back to a default (the legacy system's CORS broke exactly that way).
//!
//! Sources, later wins: the file, then `VETRIC_<KEY>` for top-level keys and
//! `VETRIC_<SECTION>__<KEY>` for keys of a top-level table. Every secret may instead be given as
//! `<key>_file`, naming a file that only its owner can read.

use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;
use vetric_domain::{Secret, Slug};

/// Environment variables that start with `VETRIC_` but are not configuration keys.
/// `VETRIC_PLANTED_BUG` switches on a deliberate bug in test builds only (the `planted`
/// modules of the store, the engine and the CVE-Pro client); release builds ignore it.
const NON_CONFIG_ENV: &[&str] = &[
    "VETRIC_LOG",
    "VETRIC_LOG_FORMAT",
    "VETRIC_CONFIG",
    "VETRIC_PLANTED_BUG",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// The URL people use to reach vetric (links in messages); `None` until set.
    pub public_url: Option<Url>,
    pub database: DatabaseUrl,
    pub sites: Vec<SiteConfig>,
    /// An outside monitor's URL (healthchecks.io and the like), fetched every
    /// `heartbeat_interval` while vetric is healthy. It may carry a token: never logged whole.
    pub heartbeat_url: Option<Url>,
    pub heartbeat_interval: Duration,
    /// The scheduled daily backup of `serve` (SQLite only).
    pub backup: BackupConfig,
    /// Origins (`scheme://host[:port]`) whose pages may call `/api/v1` with credentials.
    /// Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// `[alerts]`: where operator alerts go.
    pub alerts: AlertsConfig,
    /// `[smtp]`: the relay for e-mail notifications; `None` when not configured.
    pub smtp: Option<SmtpSettings>,
    /// `[dispatcher]`: timings of the notification dispatcher.
    pub dispatcher: DispatcherConfig,
}

/// `[alerts]`: operators' contacts. Alerts about the WhatsApp gateway itself (and the
/// dispatcher's own alerts) go by e-mail or webhook only.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub whatsapp: Vec<vetric_domain::PhoneNumber>,
    pub email: Vec<String>,
    pub webhook_url: Option<Url>,
    /// HMAC-SHA256 key of the webhook (required with `webhook_url`).
    pub webhook_secret: Option<Secret>,
}

/// `[smtp]`: the relay e-mail goes through.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    /// STARTTLS on connect (default); false only for a relay on the same host.
    pub starttls: bool,
}

/// `[dispatcher]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    pub tick: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub gateway_check: Duration,
    /// Claimed messages sent at the same time (1–64).
    pub concurrency: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(1000),
            lease: Duration::from_secs(120),
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(600),
            gateway_check: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// `[backup]`: a daily copy of a SQLite store while `serve` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// Default: on for SQLite; PostgreSQL is backed up with its own tools.
    pub enabled: bool,
    /// Where the copies go. Default: `backups` next to the database file.
    pub dir: PathBuf,
    /// Scheduled copies older than this many days are deleted.
    pub keep_days: u32,
    /// Local hour of day (0–23) of the backup, in the first site's time zone.
    pub hour: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// The embedded default: one SQLite file, one serving instance.
    Sqlite(PathBuf),
    /// Production and multi-instance. Kept whole (it may carry a password), never logged.
    Postgres(Secret),
}

impl DatabaseUrl {
    pub fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }

    /// The URL as the store wants it.
    pub fn connect_string(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => url.expose().to_owned(),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    /// Safe to log: the PostgreSQL password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => match Url::parse(url.expose()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://[unparseable]"),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub slug: Slug,
    pub name: String,
    pub timezone: Tz,
    /// Data is `offline` (not merely `stale`) when the last good read is older than this.
    pub offline_after: Duration,
    /// A charger whose heartbeat is older than this is shown offline.
    pub heartbeat_offline_after: Duration,
    /// An open session whose connector has been free this long is closed as stale.
    pub stale_session_after: Duration,
    pub cvepro: Option<CveProSiteConfig>,
    /// `[sites.tariff]` (BILLING.md), already validated. When present it is authoritative: it
    /// is recorded at start and the tariff page shows it read-only.
    pub tariff: Option<vetric_domain::Tariff>,
    /// `[sites.whatsapp]`: the site's Evolution gateway; `None`: no WhatsApp messages.
    pub whatsapp: Option<WhatsAppSiteConfig>,
    /// `[sites.notifications]`: the site's managers.
    pub notifications: SiteNotificationsConfig,
}

/// `[sites.whatsapp]`: one Evolution API instance (contract B1–B2).
#[derive(Debug, Clone)]
pub struct WhatsAppSiteConfig {
    pub base_url: Url,
    pub api_key: Secret,
    pub instance: String,
    /// Whether the gateway persists sent messages, so that reconciliation may resend a
    /// message it does not find (B5b). Default false: never resend blindly.
    pub stores_messages: bool,
}

/// `[sites.notifications]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteNotificationsConfig {
    pub manager_whatsapp: Vec<vetric_domain::PhoneNumber>,
    pub manager_email: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CveProSiteConfig {
    pub base_url: Url,
    pub api_key: Secret,
    pub email: String,
    pub password: Secret,
    pub poll_interval: Duration,
    /// `request_timeout_s` (default 30, the contract's A7): one HTTP attempt, connect to last
    /// byte. A vendor that accepts and never answers costs at most this per attempt.
    pub request_timeout: Duration,
}

/// One thing wrong with the configuration, at a key path such as `sites[0].cvepro.base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} has {} problem(s):",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Reads and checks the file at `path`, applying the `VETRIC_*` variables in `env`.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: source_name.clone(),
        problems: vec![ConfigProblem {
            key: "(file)".into(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &source_name, &base_dir, env)
}

/// The process environment's `VETRIC_*` variables.
pub fn vetric_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("VETRIC_") && !NON_CONFIG_ENV.contains(&k.as_str()))
        .collect()
}

/// Parses a configuration document. Relative paths are resolved against `base_dir`.
pub fn parse(
    text: &str,
    source_name: &str,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let mut doc: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            return Err(ConfigErrors {
                source_name: source_name.to_owned(),
                problems: vec![ConfigProblem {
                    key: "(syntax)".into(),
                    message: e.to_string().trim().replace('\n', " "),
                }],
            });
        }
    };
    apply_env(&mut doc, env, &mut problems);

    let mut root = Section::new("", &doc, base_dir);
    let listen = root
        .parse_str("listen", &mut problems, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected an address and port such as \"127.0.0.1:8080\"".into())
        })
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let public_url = root.parse_str("public_url", &mut problems, parse_http_url);
    let database = root
        .parse_str("database_url", &mut problems, |s| {
            parse_database_url(s, base_dir)
        })
        .unwrap_or_else(|| DatabaseUrl::Sqlite(base_dir.join("vetric.db")));
    let heartbeat_url = root.parse_str("heartbeat_url", &mut problems, parse_http_url);
    let cors_origins = parse_cors_origins(root.take("cors_origins"), &mut problems);
    let heartbeat_interval = root.seconds("heartbeat_interval_s", 60, &mut problems);
    if heartbeat_interval < Duration::from_secs(1) {
        problems.push("heartbeat_interval_s", "must be at least 1 second");
    }

    let backup = root
        .table("backup", "[backup]", &mut problems)
        .unwrap_or_default();
    let backup = parse_backup(&backup, &database, base_dir, &mut problems);

    let alerts = root
        .table("alerts", "[alerts]", &mut problems)
        .map(|t| parse_alerts(&t, base_dir, &mut problems))
        .unwrap_or_default();
    let smtp = root
        .table("smtp", "[smtp]", &mut problems)
        .and_then(|t| parse_smtp(&t, base_dir, &mut problems));
    let dispatcher = root
        .table("dispatcher", "[dispatcher]", &mut problems)
        .map(|t| parse_dispatcher(&t, base_dir, &mut problems))
        .unwrap_or_default();

    let mut sites = Vec::new();
    if let Some(value) = root.take("sites") {
        match value {
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let key = format!("sites[{i}]");
                    match item {
                        toml::Value::Table(t) => {
                            if let Some(site) = parse_site(&key, t, base_dir, &mut problems) {
                                sites.push(site);
                            }
                        }
                        _ => problems.push(&key, "expected a table ([[sites]])"),
                    }
                }
            }
            _ => problems.push("sites", "expected an array of tables ([[sites]])"),
        }
    }
    let mut seen = BTreeSet::new();
    for (i, s) in sites.iter().enumerate() {
        if !seen.insert(s.slug.clone()) {
            problems.push(
                &format!("sites[{i}].slug"),
                &format!("slug \"{}\" is used by more than one site", s.slug),
            );
        }
    }
    if smtp.is_none() {
        if !alerts.email.is_empty() {
            problems.push(
                "alerts.email",
                "e-mail recipients need an SMTP relay: add [smtp] (host, from)",
            );
        }
        for (i, s) in sites.iter().enumerate() {
            if !s.notifications.manager_email.is_empty() {
                problems.push(
                    &format!("sites[{i}].notifications.manager_email"),
                    "e-mail recipients need an SMTP relay: add [smtp] (host, from)",
                );
            }
        }
    }
    root.finish(&mut problems);

    if problems.0.is_empty() {
        Ok(Config {
            listen,
            public_url,
            database,
            sites,
            heartbeat_url,
            heartbeat_interval,
            backup,
            cors_origins,
            alerts,
            smtp,
            dispatcher,
        })
    } else {
        Err(ConfigErrors {
            source_name: source_name.to_owned(),
            problems: problems.0,
        })
    }
}

fn parse_site(
    key: &str,
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<SiteConfig> {
    let mut s = Section::new(key, table, base_dir);
    let slug = s.required(
        "slug",
        "missing (a short name such as \"jardim-palmeiras\")",
        problems,
        |v| Slug::parse(v).map_err(|e| e.to_string()),
    );
    let name = s.required_str("name", problems);
    let timezone = s
        .parse_str("timezone", problems, |v| {
            v.parse::<Tz>().map_err(|_| {
                "unknown time zone; use an IANA name such as \"America/Sao_Paulo\"".into()
            })
        })
        .unwrap_or(chrono_tz::America::Sao_Paulo);
    let offline_after = s.seconds("offline_after_s", 600, problems);
    let heartbeat_offline_after = s.seconds("heartbeat_offline_after_s", 900, problems);
    let stale_session_after = s.seconds("stale_session_after_s", 12 * 3600, problems);
    let cvepro = s
        .table("cvepro", "[sites.cvepro]", problems)
        .and_then(|t| parse_cvepro(&s.path("cvepro"), &t, base_dir, problems));
    let tariff = s
        .table("tariff", "[sites.tariff]", problems)
        .and_then(|t| parse_tariff(&s.path("tariff"), &t, base_dir, problems));
    let whatsapp = s
        .table("whatsapp", "[sites.whatsapp]", problems)
        .and_then(|t| parse_whatsapp(&s.path("whatsapp"), &t, base_dir, problems));
    let notifications = s
        .table("notifications", "[sites.notifications]", problems)
        .map(|t| parse_site_notifications(&s.path("notifications"), &t, base_dir, problems))
        .unwrap_or_default();
    s.finish(problems);
    Some(SiteConfig {
        slug: slug?,
        name: name?,
        timezone,
        offline_after,
        heartbeat_offline_after,
        stale_session_after,
        cvepro,
        tariff,
        whatsapp,
        notifications,
    })
}

/// `[sites.whatsapp]`: the Evolution gateway of a site.
fn parse_whatsapp(
    key: &str,
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<WhatsAppSiteConfig> {
    let mut s = Section::new(key, table, base_dir);
    let base_url = s.required(
        "base_url",
        "missing (the gateway root, e.g. \"https://evo.example.com\", no /api suffix)",
        problems,
        parse_http_url,
    );
    let api_key = s.secret("api_key", problems);
    let instance = s.required_str("instance", problems);
    let stores_messages = s.boolean("stores_messages", false, problems);
    s.finish(problems);
    Some(WhatsAppSiteConfig {
        base_url: base_url?,
        api_key: api_key?,
        instance: instance?,
        stores_messages,
    })
}

/// `[sites.notifications]`: the managers of a site.
fn parse_site_notifications(
    key: &str,
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> SiteNotificationsConfig {
    let mut s = Section::new(key, table, base_dir);
    let manager_whatsapp = s.phone_list("manager_whatsapp", problems);
    let manager_email = s.email_list("manager_email", problems);
    s.finish(problems);
    SiteNotificationsConfig {
        manager_whatsapp,
        manager_email,
    }
}

/// `[alerts]`: where operator alerts go.
fn parse_alerts(table: &toml::Table, base_dir: &Path, problems: &mut Problems) -> AlertsConfig {
    let mut s = Section::new("alerts", table, base_dir);
    let whatsapp = s.phone_list("whatsapp", problems);
    let email = s.email_list("email", problems);
    let webhook_url = s.parse_str("webhook_url", problems, parse_http_url);
    let webhook_secret = s.optional_secret("webhook_secret", problems);
    if table.contains_key("webhook_url") && webhook_secret.is_none() {
        if !table.contains_key("webhook_secret") && !table.contains_key("webhook_secret_file") {
            problems.push(
                "alerts.webhook_secret",
                "missing: a webhook is signed with HMAC-SHA256; set webhook_secret (or \
                 webhook_secret_file), e.g. `openssl rand -hex 32`",
            );
        }
    } else if let Some(secret) = &webhook_secret {
        if !table.contains_key("webhook_url") {
            problems.push("alerts.webhook_secret", "given without webhook_url");
        } else if secret.expose().len() < vetric_channels::webhook::MIN_SECRET_LEN {
            problems.push(
                "alerts.webhook_secret",
                "too short: use at least 16 characters, better 32 random ones (e.g. `openssl \
                 rand -hex 32`)",
            );
        }
    }
    s.finish(problems);
    AlertsConfig {
        whatsapp,
        email,
        webhook_url,
        webhook_secret,
    }
}

/// `[smtp]`: the relay e-mail goes through.
fn parse_smtp(
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<SmtpSettings> {
    let mut s = Section::new("smtp", table, base_dir);
    let host = s.required_str("host", problems);
    let port = s.integer("port", 587, 1..=65_535, problems);
    let username = s
        .string("username", problems)
        .filter(|u| !u.trim().is_empty());
    let password = s.optional_secret("password", problems);
    if username.is_some() != password.is_some() {
        problems.push(
            "smtp.username",
            "username and password go together: set both (or neither, for a relay without \
             authentication)",
        );
    }
    let from = s.required(
        "from",
        "missing (the sender, e.g. \"alertas@example.com\")",
        problems,
        |v| {
            let address = v
                .rsplit_once('<')
                .map_or(v, |(_, a)| a.trim_end_matches('>'));
            parse_email(address.trim()).map(|_| v.to_owned())
        },
    );
    let starttls = s.boolean("starttls", true, problems);
    s.finish(problems);
    Some(SmtpSettings {
        host: host?,
        port: u16::try_from(port).unwrap_or(587),
        username,
        password,
        from: from?,
        starttls,
    })
}

/// `[dispatcher]`: timings of the notification dispatcher.
fn parse_dispatcher(
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> DispatcherConfig {
    let d = DispatcherConfig::default();
    let mut s = Section::new("dispatcher", table, base_dir);
    let tick_ms = s.integer("tick_ms", 1000, 50..=60_000, problems);
    let lease = s.seconds("lease_s", d.lease.as_secs(), problems);
    if lease < Duration::from_secs(60) {
        problems.push(
            "dispatcher.lease_s",
            "must be at least 60 seconds (longer than one send, or sends in progress would be \
             taken for crashed ones)",
        );
    }
    let max_attempts = s.integer("max_attempts", d.max_attempts, 1..=100, problems);
    let retry_base = s.seconds("retry_base_s", d.retry_base.as_secs(), problems);
    let retry_cap = s.seconds("retry_cap_s", d.retry_cap.as_secs(), problems);
    if retry_base.is_zero() {
        problems.push("dispatcher.retry_base_s", "must be at least 1 second");
    }
    if retry_cap < retry_base {
        problems.push(
            "dispatcher.retry_cap_s",
            "must not be less than retry_base_s",
        );
    }
    let gateway_check = s.seconds("gateway_check_s", d.gateway_check.as_secs(), problems);
    if gateway_check < Duration::from_secs(1) {
        problems.push("dispatcher.gateway_check_s", "must be at least 1 second");
    }
    let concurrency = s.integer("concurrency", 8u32, 1..=64, problems);
    s.finish(problems);
    DispatcherConfig {
        tick: Duration::from_millis(u64::from(tick_ms)),
        lease,
        max_attempts,
        retry_base,
        retry_cap,
        gateway_check,
        concurrency: concurrency as usize,
    }
}

/// A plain address check: one `@`, something on both sides, a dot in the domain, no spaces.
fn parse_email(s: &str) -> Result<String, String> {
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not an e-mail address"))
    }
}

/// `[sites.tariff]`: the keys and value formats of BILLING.md, read into a
/// [`vetric_domain::TariffSpec`] and checked by the domain, whose every problem is reported at
/// its key path (`sites[0].tariff.peak_price: …`) with the domain's own message.
fn parse_tariff(
    key: &str,
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<vetric_domain::Tariff> {
    use vetric_domain::TariffSpec;
    let mut s = Section::new(key, table, base_dir);
    let before = problems.0.len();
    let spec = TariffSpec {
        effective_from: s.string("effective_from", problems),
        peak_price: s.raw_number("peak_price", problems),
        offpeak_price: s.raw_number("offpeak_price", problems),
        peak_start: s.string("peak_start", problems),
        peak_end: s.string("peak_end", problems),
        peak_weekdays: s.string_list("peak_weekdays", problems),
        holidays: s.string_list("holidays", problems),
        idle_grace_min: s.raw_number("idle_grace_min", problems),
        idle_fee_per_min: s.raw_number("idle_fee_per_min", problems),
        idle_fee_cap: s.raw_number("idle_fee_cap", problems),
        max_kwh: s.raw_number("max_kwh", problems),
    };
    s.finish(problems);
    let type_problems = problems.0.len() > before;
    match spec.validate() {
        // A key of the wrong type was left out of the spec; a default must not stand in for it.
        Ok(_) if type_problems => None,
        Ok(t) => Some(t),
        Err(found) => {
            for p in found {
                // A key already reported for its type is not reported again as missing.
                let path = format!("{key}.{}", p.field);
                if !problems.0.iter().skip(before).any(|q| q.key == path) {
                    problems.push(&path, &p.message);
                }
            }
            None
        }
    }
}

fn parse_cvepro(
    key: &str,
    table: &toml::Table,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<CveProSiteConfig> {
    let mut s = Section::new(key, table, base_dir);
    let base_url = s.required(
        "base_url",
        "missing (production is \"https://cs.intelbras-cve-pro.com.br\")",
        problems,
        parse_http_url,
    );
    let api_key = s.secret("api_key", problems);
    let email = s.required_str("email", problems);
    let password = s.secret("password", problems);
    let poll_interval = s.seconds("poll_interval_s", 10, problems);
    if poll_interval < Duration::from_secs(1) {
        problems.push(&s.path("poll_interval_s"), "must be at least 1 second");
    }
    let request_timeout = s.seconds("request_timeout_s", 30, problems);
    if !(1..=300).contains(&request_timeout.as_secs()) {
        problems.push(
            &s.path("request_timeout_s"),
            "must be between 1 and 300 seconds",
        );
    }
    s.finish(problems);
    Some(CveProSiteConfig {
        base_url: base_url?,
        api_key: api_key?,
        email: email?,
        password: password?,
        poll_interval,
        request_timeout,
    })
}

fn parse_backup(
    table: &toml::Table,
    database: &DatabaseUrl,
    base_dir: &Path,
    problems: &mut Problems,
) -> BackupConfig {
    let mut s = Section::new("backup", table, base_dir);
    let sqlite_dir = match database {
        DatabaseUrl::Sqlite(path) => path.parent().map(Path::to_path_buf),
        DatabaseUrl::Postgres(_) => None,
    };
    let enabled = s.boolean("enabled", sqlite_dir.is_some(), problems);
    if enabled && sqlite_dir.is_none() {
        problems.push(
            "backup.enabled",
            "scheduled backups are for SQLite stores; back up PostgreSQL with `vetric backup` \
             (pg_dump) from a timer, or your database's own tooling",
        );
    }
    let dir = s
        .string("dir", problems)
        .map(|d| base_dir.join(d.trim()))
        .unwrap_or_else(|| {
            sqlite_dir
                .unwrap_or_else(|| base_dir.to_path_buf())
                .join("backups")
        });
    let keep_days = s.integer("keep_days", 14, 1..=36_500, problems);
    let hour = s.integer("hour", 3, 0..=23, problems);
    s.finish(problems);
    BackupConfig {
        enabled,
        dir,
        keep_days,
        hour,
    }
}

/// `cors_origins`: an array of origins, or (from `VETRIC_CORS_ORIGINS`) one string of
/// comma-separated origins. Each must be exactly `scheme://host[:port]`; `*` is refused.
fn parse_cors_origins(value: Option<toml::Value>, problems: &mut Problems) -> Vec<String> {
    let items: Vec<(String, toml::Value)> = match value {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("cors_origins[{i}]"), v))
            .collect(),
        Some(toml::Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .enumerate()
            .map(|(i, x)| {
                (
                    format!("cors_origins[{i}]"),
                    toml::Value::String(x.to_owned()),
                )
            })
            .collect(),
        Some(other) => {
            problems.push(
                "cors_origins",
                &format!(
                    "expected an array of origins such as [\"https://painel.example.com\"], \
                     found {}",
                    other.type_str()
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (key, v) in items {
        let toml::Value::String(raw) = v else {
            problems.push(&key, &format!("expected a string, found {}", v.type_str()));
            continue;
        };
        match parse_origin(raw.trim()) {
            Ok(o) if !out.contains(&o) => out.push(o),
            Ok(_) => {}
            Err(msg) => problems.push(&key, &msg),
        }
    }
    out
}

/// One CORS origin, normalised (`https://Painel.Example.com:443` → `https://painel.example.com`).
fn parse_origin(s: &str) -> Result<String, String> {
    if s == "*" || s.contains('*') {
        return Err(
            "\"*\" is refused: the API is called with credentials (session cookie), and \
                    allowing every origin would let any web site act as the logged-in user; \
                    list each origin explicitly, e.g. \"https://painel.example.com\""
                .into(),
        );
    }
    let u = Url::parse(s).map_err(|e| {
        format!("not an origin ({e}); expected scheme://host[:port], e.g. \"https://painel.example.com\"")
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(
            "expected an http:// or https:// origin such as \"https://painel.example.com\"".into(),
        );
    }
    let rest = s.split_once("://").map_or("", |(_, r)| r);
    if !u.username().is_empty()
        || u.password().is_some()
        || rest.contains('/')
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(format!(
            "an origin is scheme://host[:port] only, with no path, query or user; use \"{}\"",
            u.origin().ascii_serialization()
        ));
    }
    Ok(u.origin().ascii_serialization())
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        Ok(_) => Err("expected an http:// or https:// URL".into()),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

fn parse_database_url(s: &str, base_dir: &Path) -> Result<DatabaseUrl, String> {
    if let Some(path) = s.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(
                "sqlite:// needs a file path, e.g. \"sqlite:///var/lib/vetric/vetric.db\"".into(),
            );
        }
        let p = PathBuf::from(path);
        Ok(DatabaseUrl::Sqlite(if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }))
    } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Url::parse(s).map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
        Ok(DatabaseUrl::Postgres(Secret::new(s)))
    } else {
        Err("expected \"sqlite://PATH\" or \"postgres://USER@HOST/DB\"".into())
    }
}

/// Applies `VETRIC_KEY` and `VETRIC_SECTION__KEY` overrides to the document.
fn apply_env(doc: &mut toml::Table, env: &BTreeMap<String, String>, problems: &mut Problems) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("VETRIC_") else {
            continue;
        };
        if NON_CONFIG_ENV.contains(&name.as_str()) {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        match parts.as_slice() {
            [key] if !key.is_empty() => {
                doc.insert(key.clone(), toml::Value::String(value.clone()));
            }
            [section, key] if !section.is_empty() && !key.is_empty() => {
                let entry = doc
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => {
                        t.insert(key.clone(), toml::Value::String(value.clone()));
                    }
                    _ => problems.push(
                        name,
                        &format!("\"{section}\" is not a table, so {name} cannot set a key in it"),
                    ),
                }
            }
            _ => problems.push(
                name,
                "not a configuration variable: use VETRIC_<KEY> or VETRIC_<SECTION>__<KEY>",
            ),
        }
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, key: &str, message: &str) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }
}

/// A table being read: remembers which keys were consumed so the rest can be reported unknown.
struct Section<'a> {
    prefix: String,
    table: &'a toml::Table,
    used: BTreeSet<String>,
    base_dir: &'a Path,
}

impl<'a> Section<'a> {
    fn new(prefix: &str, table: &'a toml::Table, base_dir: &'a Path) -> Self {
        Self {
            prefix: prefix.to_owned(),
            table,
            used: BTreeSet::new(),
            base_dir,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn take(&mut self, key: &str) -> Option<toml::Value> {
        self.used.insert(key.to_owned());
        self.table.get(key).cloned()
    }

    fn string(&mut self, key: &str, problems: &mut Problems) -> Option<String> {
        match self.take(key)? {
            toml::Value::String(s) => Some(s),
            other => {
                problems.push(
                    &self.path(key),
                    &format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn required_str(&mut self, key: &str, problems: &mut Problems) -> Option<String> {
        let present = self.table.contains_key(key);
        let value = self.string(key, problems);
        match value {
            Some(v) if v.trim().is_empty() => {
                problems.push(&self.path(key), "must not be empty");
                None
            }
            None if !present => {
                problems.push(&self.path(key), "missing");
                None
            }
            v => v,
        }
    }

    fn parse_str<T>(
        &mut self,
        key: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.string(key, problems)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(msg) => {
                problems.push(&self.path(key), &msg);
                None
            }
        }
    }

    /// [`Section::parse_str`] for a key that must be there: its absence is the problem
    /// `missing` (which says what to write) at the key.
    fn required<T>(
        &mut self,
        key: &str,
        missing: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.parse_str(key, problems, parse);
        if value.is_none() && !self.table.contains_key(key) {
            problems.push(&self.path(key), missing);
        }
        value
    }

    /// A sub-table such as `[smtp]`; another type is the problem "expected a table
    /// (`hint`)" and counts as absent.
    fn table(&mut self, key: &str, hint: &str, problems: &mut Problems) -> Option<toml::Table> {
        match self.take(key)? {
            toml::Value::Table(t) => Some(t),
            _ => {
                problems.push(&self.path(key), &format!("expected a table ({hint})"));
                None
            }
        }
    }

    /// The value at `key` (`None` when absent) with it read as a whole `T`, from a TOML
    /// integer or (as environment overrides arrive) a string; `None` inside when it is not one.
    fn whole<T: TryFrom<i64> + std::str::FromStr>(
        &mut self,
        key: &str,
    ) -> Option<(Option<T>, toml::Value)> {
        let value = self.take(key)?;
        let parsed = match &value {
            toml::Value::Integer(i) => T::try_from(*i).ok(),
            toml::Value::String(s) => s.trim().parse::<T>().ok(),
            _ => None,
        };
        Some((parsed, value))
    }

    /// A whole number of seconds; environment overrides arrive as strings.
    fn seconds(&mut self, key: &str, default: u64, problems: &mut Problems) -> Duration {
        let Some((parsed, value)) = self.whole::<u64>(key) else {
            return Duration::from_secs(default);
        };
        match parsed {
            Some(s) => Duration::from_secs(s),
            None => {
                problems.push(
                    &self.path(key),
                    &format!("expected a whole number of seconds, found {value}"),
                );
                Duration::from_secs(default)
            }
        }
    }

    /// A whole number in `range`; environment overrides arrive as strings.
    fn integer(
        &mut self,
        key: &str,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
        problems: &mut Problems,
    ) -> u32 {
        let Some((parsed, value)) = self.whole::<u32>(key) else {
            return default;
        };
        match parsed.filter(|v| range.contains(v)) {
            Some(v) => v,
            None => {
                problems.push(
                    &self.path(key),
                    &format!(
                        "expected a whole number from {} to {}, found {value}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    /// `true` or `false`; environment overrides arrive as strings.
    fn boolean(&mut self, key: &str, default: bool, problems: &mut Problems) -> bool {
        let Some(value) = self.take(key) else {
            return default;
        };
        match &value {
            toml::Value::Boolean(b) => *b,
            toml::Value::String(s) if s.trim() == "true" => true,
            toml::Value::String(s) if s.trim() == "false" => false,
            _ => {
                problems.push(
                    &self.path(key),
                    &format!("expected true or false, found {value}"),
                );
                default
            }
        }
    }

    /// A secret given inline as `key` or in a file as `key_file` (never both).
    fn secret(&mut self, key: &str, problems: &mut Problems) -> Option<Secret> {
        let file_key = format!("{key}_file");
        let inline = self.table.contains_key(key);
        let from_file = self.table.contains_key(&file_key);
        match (inline, from_file) {
            (true, true) => {
                self.used.insert(key.to_owned());
                self.used.insert(file_key.clone());
                problems.push(
                    &self.path(key),
                    &format!("given both as {key} and {file_key}; keep one"),
                );
                None
            }
            (false, false) => {
                problems.push(
                    &self.path(key),
                    &format!("missing (set {key}, or {file_key} naming a file readable only by its owner)"),
                );
                None
            }
            (true, false) => self.required_str(key, problems).map(Secret::new),
            (false, true) => {
                let file = self.string(&file_key, problems)?;
                let path = self.base_dir.join(file.trim());
                match read_secret_file(&path) {
                    Ok(s) => Some(s),
                    Err(msg) => {
                        problems.push(&self.path(&file_key), &msg);
                        None
                    }
                }
            }
        }
    }

    /// A number as BILLING.md writes it (a string, or a TOML integer; a float is kept so the
    /// tariff check can refuse it with its own advice).
    fn raw_number(
        &mut self,
        key: &str,
        problems: &mut Problems,
    ) -> Option<vetric_domain::RawNumber> {
        use vetric_domain::RawNumber;
        match self.take(key)? {
            toml::Value::String(v) => Some(RawNumber::Text(v)),
            toml::Value::Integer(i) => Some(RawNumber::Integer(i)),
            toml::Value::Float(x) => Some(RawNumber::Float(x)),
            other => {
                problems.push(
                    &self.path(key),
                    &format!("expected a number as a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An array of strings; each element of another type is a problem at `key[i]`.
    fn string_list(&mut self, key: &str, problems: &mut Problems) -> Option<Vec<String>> {
        match self.take(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.into_iter().enumerate() {
                    match v {
                        toml::Value::String(x) => out.push(x),
                        other => problems.push(
                            &format!("{}[{i}]", self.path(key)),
                            &format!("expected a string, found {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                problems.push(
                    &self.path(key),
                    &format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A secret that may be absent: `key`, `key_file` or neither (never both).
    fn optional_secret(&mut self, key: &str, problems: &mut Problems) -> Option<Secret> {
        let file_key = format!("{key}_file");
        if !self.table.contains_key(key) && !self.table.contains_key(&file_key) {
            return None;
        }
        self.secret(key, problems)
    }

    /// An array of phone numbers, each checked (`key[i]: …` with the domain's advice).
    fn phone_list(
        &mut self,
        key: &str,
        problems: &mut Problems,
    ) -> Vec<vetric_domain::PhoneNumber> {
        self.checked_list(key, problems, |raw| {
            vetric_domain::PhoneNumber::parse(raw).map_err(|e| e.to_string())
        })
    }

    /// An array of e-mail addresses, each checked.
    fn email_list(&mut self, key: &str, problems: &mut Problems) -> Vec<String> {
        self.checked_list(key, problems, |raw| parse_email(raw.trim()))
    }

    /// An array of strings, each read by `parse`; a bad element is a problem at `key[i]` and
    /// is left out.
    fn checked_list<T>(
        &mut self,
        key: &str,
        problems: &mut Problems,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (i, raw) in self
            .string_list(key, problems)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match parse(raw) {
                Ok(v) => out.push(v),
                Err(e) => problems.push(&format!("{}[{i}]", self.path(key)), &e),
            }
        }
        out
    }

    fn finish(self, problems: &mut Problems) {
        for key in self.table.keys() {
            if !self.used.contains(key) {
                problems.push(
                    &self.path(key),
                    "unknown key (check the spelling against the README's configuration reference)",
                );
            }
        }
    }
}

/// Reads a secret from a file that must not be readable by group or others.
fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by others (mode {mode:o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(
            text,
            "test.toml",
            Path::new("/etc/vetric"),
            &BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(text, "test.toml", Path::new("/etc/vetric"), &env) {
            Ok(_) => vec![],
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect(),
        }
    }

    const GOOD: &str = r#"
        listen = "0.0.0.0:9000"
        database_url = "sqlite://data/vetric.db"

        [[sites]]
        slug = "jardim-palmeiras"
        name = "Residencial Jardim das Palmeiras"

        [sites.cvepro]
        base_url = "https://cs.intelbras-cve-pro.com.br"
        api_key = "k"
        email = "ops@example.com"
        password = "p"
    "#;

    #[test]
    fn a_good_file_gets_its_defaults() {
        let c = parse_ok(GOOD);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite(PathBuf::from("/etc/vetric/data/vetric.db"))
        );
        let site = &c.sites[0];
        assert_eq!(site.timezone, chrono_tz::America::Sao_Paulo);
        assert_eq!(site.offline_after, Duration::from_secs(600));
        let cve = site.cvepro.as_ref().unwrap();
        assert_eq!(cve.poll_interval, Duration::from_secs(10));
        assert_eq!(cve.request_timeout, Duration::from_secs(30));
        assert_eq!(cve.password.expose(), "p");
    }

    #[test]
    fn the_vendor_request_timeout_is_bounded() {
        let with = |v: &str| {
            GOOD.replace(
                "password = \"p\"",
                &format!("password = \"p\"\n        request_timeout_s = {v}"),
            )
        };
        let c = parse_ok(&with("2"));
        let cve = c.sites[0].cvepro.as_ref().unwrap();
        assert_eq!(cve.request_timeout, Duration::from_secs(2));
        for bad in ["0", "301"] {
            assert_eq!(
                problems(&with(bad), &[]),
                ["sites[0].cvepro.request_timeout_s: must be between 1 and 300 seconds"],
                "{bad}"
            );
        }
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let found = problems(
            r#"
            listen = "nowhere"
            databse_url = "sqlite://x.db"
            [[sites]]
            slug = "Bad Slug"
            timezone = "Mars/Olympus"
            [sites.cvepro]
            base_url = "ftp://x"
            email = ""
            poll_interval_s = "often"
            "#,
            &[],
        );
        let joined = found.join("\n");
        for expected in [
            "listen: expected an address",
            "databse_url: unknown key",
            "sites[0].slug:",
            "sites[0].name: missing",
            "sites[0].timezone: unknown time zone",
            "sites[0].cvepro.base_url: expected an http",
            "sites[0].cvepro.api_key: missing",
            "sites[0].cvepro.email: must not be empty",
            "sites[0].cvepro.password: missing",
            "sites[0].cvepro.poll_interval_s: expected a whole number",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
        assert_eq!(found.len(), 10, "{joined}");
    }

    #[test]
    fn environment_overrides_the_file_and_typos_there_are_reported() {
        let env: BTreeMap<String, String> = [("VETRIC_LISTEN", "127.0.0.1:7000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = parse(GOOD, "t", Path::new("/"), &env).unwrap();
        assert_eq!(c.listen.port(), 7000);
        let found = problems(GOOD, &[("VETRIC_LISTNE", "x")]);
        assert_eq!(
            found,
            vec![
                "listne: unknown key (check the spelling against the README's configuration reference)"
            ]
        );
    }

    #[test]
    fn secrets_from_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text = GOOD.replace(
            "password = \"p\"",
            &format!("password_file = {:?}", secret.display().to_string()),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = parse(&text, "t", dir.path(), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&text, "t", dir.path(), &BTreeMap::new()).unwrap();
        assert_eq!(
            c.sites[0].cvepro.as_ref().unwrap().password.expose(),
            "s3cret"
        );
    }

    #[test]
    fn heartbeat_keys_are_checked() {
        let c = parse_ok(GOOD);
        assert!(c.heartbeat_url.is_none());
        assert_eq!(c.heartbeat_interval, Duration::from_secs(60));
        let c = parse_ok(&format!(
            "heartbeat_url = \"https://hc-ping.com/abc?token=x\"\nheartbeat_interval_s = 5\n{GOOD}"
        ));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(
            c.heartbeat_url.map(|u| u.to_string()),
            Some("https://hc-ping.com/abc?token=x".to_owned())
        );
        let found = problems(
            &format!("heartbeat_url = \"ftp://x\"\nheartbeat_interval_s = 0\n{GOOD}"),
            &[],
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn backup_keys_have_defaults_and_are_checked() {
        let c = parse_ok(GOOD);
        assert_eq!(
            c.backup,
            BackupConfig {
                enabled: true,
                dir: PathBuf::from("/etc/vetric/data/backups"),
                keep_days: 14,
                hour: 3,
            }
        );
        let c = parse_ok(&format!(
            "{GOOD}\n[backup]\ndir = \"/srv/bk\"\nkeep_days = 7\nhour = 23\nenabled = false\n"
        ));
        assert_eq!(c.backup.dir, PathBuf::from("/srv/bk"));
        assert_eq!((c.backup.keep_days, c.backup.hour), (7, 23));
        assert!(!c.backup.enabled);
        let found = problems(
            &format!("{GOOD}\n[backup]\nhour = 24\nkeep_days = 0\nenabled = \"yes\"\nkeep = 1\n"),
            &[("VETRIC_BACKUP__HOUR", "x")],
        );
        let joined = found.join("\n");
        for expected in [
            "backup.hour: expected a whole number from 0 to 23",
            "backup.keep_days: expected a whole number from 1 to 36500",
            "backup.enabled: expected true or false",
            "backup.keep: unknown key",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
        assert_eq!(found.len(), 4, "{joined}");
        let pg = GOOD.replace("sqlite://data/vetric.db", "postgres://u@h/db");
        assert!(!parse_ok(&pg).backup.enabled);
        let found = problems(&format!("{pg}\n[backup]\nenabled = true\n"), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("backup.enabled: scheduled backups are for SQLite"));
    }

    #[test]
    fn postgres_passwords_never_show_in_display() {
        let c = parse_ok(&GOOD.replace(
            "sqlite://data/vetric.db",
            "postgres://vetric:hunter2@db.internal/vetric",
        ));
        let shown = c.database.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(format!("{c:?}").find("hunter2").is_none());
    }

    #[test]
    fn cors_origins_are_an_explicit_allow_list() {
        assert!(parse_ok(GOOD).cors_origins.is_empty());
        let c = parse_ok(&format!(
            "cors_origins = [\"https://Painel.Example.com\", \"http://localhost:5173\", \
             \"https://painel.example.com:443\"]\n{GOOD}"
        ));
        assert_eq!(
            c.cors_origins,
            vec!["https://painel.example.com", "http://localhost:5173"]
        );
        let found = problems(
            &format!(
                "cors_origins = [\"*\", \"https://x.example.com/app\", \"ftp://x\", 3, \
                 \"https://ok.example.com\"]\n{GOOD}"
            ),
            &[],
        );
        let joined = found.join("\n");
        assert_eq!(found.len(), 4, "{joined}");
        assert!(
            joined.contains("cors_origins[0]: \"*\" is refused"),
            "{joined}"
        );
        assert!(joined.contains("credentials"), "{joined}");
        assert!(joined.contains("cors_origins[1]: an origin is scheme://host[:port] only"));
        assert!(
            joined.contains("cors_origins[2]: expected an http"),
            "{joined}"
        );
        assert!(
            joined.contains("cors_origins[3]: expected a string"),
            "{joined}"
        );
        let found = problems(GOOD, &[("VETRIC_CORS_ORIGINS", "https://a.example.com, *")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("cors_origins[1]: \"*\" is refused"));
        let env = [(
            "VETRIC_CORS_ORIGINS".to_owned(),
            "https://a.example.com,https://b.example.com".to_owned(),
        )]
        .into_iter()
        .collect();
        let c = parse(GOOD, "t", Path::new("/etc/vetric"), &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cors_origins.len(), 2);
    }

    const TARIFF: &str = r#"
        [sites.tariff]
        effective_from = "2026-01-01"
        peak_price = "3.08"
        offpeak_price = "0.53"
        peak_start = "17:30"
        peak_end = "20:30"
        peak_weekdays = ["mon", "tue", "wed", "thu", "fri"]
        holidays = ["2026-04-03", "2026-04-21"]
        idle_grace_min = 15
        idle_fee_per_min = "0.10"
        idle_fee_cap = "30.00"
        max_kwh = "150"
    "#;

    #[test]
    fn the_billing_md_tariff_reads() {
        assert!(parse_ok(GOOD).sites[0].tariff.is_none());
        let c = parse_ok(&format!("{GOOD}{TARIFF}"));
        let t = c.sites[0].tariff.as_ref().unwrap();
        assert_eq!(
            t.effective_from(),
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        );
        assert_eq!(t.peak_price().to_string(), "3.08");
        assert_eq!(t.idle_fee_cap().map(|d| d.to_string()), Some("30".into()));
        assert_eq!(t.site_holidays().len(), 2);
        // effective_from is optional; the defaults of BILLING.md fill the rest.
        let c = parse_ok(&format!(
            "{GOOD}\n[sites.tariff]\npeak_price = \"3.08\"\noffpeak_price = \"0.53\"\n\
             idle_fee_per_min = \"0.10\"\nmax_kwh = 150\n"
        ));
        let t = c.sites[0].tariff.as_ref().unwrap();
        assert_eq!(t.effective_from(), None);
        assert_eq!(
            (t.peak_start(), t.peak_end()),
            ("17:30".into(), "20:30".into())
        );
    }

    #[test]
    fn every_tariff_problem_is_at_its_key_path() {
        let bad = TARIFF
            .replace("\"3.08\"", "3.08")
            .replace("\"0.53\"", "\"0,53\"")
            .replace("\"20:30\"", "\"25:00\"")
            .replace("\"fri\"", "\"sex\"")
            .replace("\"2026-04-21\"", "21")
            .replace("idle_grace_min = 15", "idle_grace_min = true")
            .replace("max_kwh = \"150\"", "max_kwh = \"150\"\nmax_kw = 1");
        let found = problems(&format!("{GOOD}{bad}"), &[]);
        let joined = found.join("\n");
        for expected in [
            "sites[0].tariff.peak_price: write it as a string, e.g. \"3.08\"",
            "sites[0].tariff.offpeak_price: use a dot for decimals",
            "sites[0].tariff.peak_end:",
            "sites[0].tariff.peak_weekdays:",
            "sites[0].tariff.holidays[1]: expected a string, found integer",
            "sites[0].tariff.idle_grace_min: expected a number as a string, found boolean",
            "sites[0].tariff.max_kw: unknown key",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
        assert_eq!(found.len(), 7, "{joined}");
        // Missing required keys are named; a non-table is refused.
        let found = problems(
            &format!("{GOOD}\n[sites.tariff]\npeak_price = \"1\"\n"),
            &[],
        );
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(": missing").next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            vec![
                "sites[0].tariff.offpeak_price",
                "sites[0].tariff.idle_fee_per_min",
                "sites[0].tariff.max_kwh"
            ],
            "{found:?}"
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found.iter().all(|p| p.starts_with("sites[0].tariff.")),
            "{found:?}"
        );
        let found = problems(
            &GOOD.replace("[sites.cvepro]", "tariff = 3\n[sites.cvepro]"),
            &[],
        );
        assert_eq!(
            found,
            vec!["sites[0].tariff: expected a table ([sites.tariff])"]
        );
    }

    const NOTIFY: &str = r#"
        [[sites]]
        slug = "palmeiras"
        name = "Palmeiras"

        [sites.whatsapp]
        base_url = "https://evo.example.com"
        api_key = "k"
        instance = "Condo Bot"

        [sites.notifications]
        manager_whatsapp = ["+55 82 99000-0101"]
        manager_email = ["sindico@example.com"]

        [alerts]
        email = ["ops@example.com"]
        webhook_url = "https://hooks.example.com/vetric"
        webhook_secret = "0123456789abcdef0123456789abcdef"

        [smtp]
        host = "smtp.example.com"
        from = "Vetric <alertas@example.com>"
        username = "alertas@example.com"
        password = "p"

        [dispatcher]
        tick_ms = 500
        max_attempts = 5
        concurrency = 16
    "#;

    #[test]
    fn notification_settings_and_their_defaults() {
        let c = parse_ok(NOTIFY);
        let w = c.sites[0].whatsapp.as_ref().unwrap();
        assert_eq!(w.instance, "Condo Bot");
        assert!(!w.stores_messages, "never resend blindly unless told");
        assert_eq!(
            c.sites[0].notifications.manager_whatsapp[0].digits(),
            "5582990000101"
        );
        assert_eq!(c.alerts.email, ["ops@example.com"]);
        let smtp = c.smtp.unwrap();
        assert_eq!((smtp.port, smtp.starttls), (587, true));
        assert_eq!(c.dispatcher.tick, Duration::from_millis(500));
        assert_eq!(c.dispatcher.max_attempts, 5);
        assert_eq!(c.dispatcher.concurrency, 16);
        assert_eq!(DispatcherConfig::default().concurrency, 8);
        assert_eq!(c.dispatcher.lease, Duration::from_secs(120));
        let plain = parse_ok(GOOD);
        assert!(plain.sites[0].whatsapp.is_none() && plain.smtp.is_none());
        assert_eq!(plain.dispatcher, DispatcherConfig::default());
    }

    #[test]
    fn every_notification_problem_is_listed() {
        let found = problems(
            r#"
            [[sites]]
            slug = "palmeiras"
            name = "Palmeiras"
            [sites.whatsapp]
            base_url = "ftp://evo"
            stores_messages = "sometimes"
            [sites.notifications]
            manager_whatsapp = ["82990000101"]
            manager_email = ["not-an-address"]
            [alerts]
            email = ["ops@example.com"]
            webhook_url = "https://hooks.example.com"
            [dispatcher]
            lease_s = 5
            retry_base_s = 60
            retry_cap_s = 10
            tick = 3
            concurrency = 65
            "#,
            &[],
        );
        let has = |key: &str| found.iter().any(|p| p.starts_with(key));
        for key in [
            "sites[0].whatsapp.base_url",
            "sites[0].whatsapp.api_key",
            "sites[0].whatsapp.instance",
            "sites[0].whatsapp.stores_messages",
            "sites[0].notifications.manager_whatsapp[0]",
            "sites[0].notifications.manager_email[0]",
            "alerts.webhook_secret",
            "alerts.email",
            "dispatcher.lease_s",
            "dispatcher.retry_cap_s",
            "dispatcher.tick",
            "dispatcher.concurrency",
        ] {
            assert!(has(key), "no problem at {key}: {found:#?}");
        }
    }
}
