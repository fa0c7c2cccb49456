//! The `vetric` binary: command line, configuration and wiring. Errors become one line on
//! stderr and a non-zero exit code here, at the edge, and nowhere else.

mod accounts;
mod backup;
mod config;
mod demo;
mod dispatch;
mod heartbeat;
mod liveness;
mod probe;
mod serve;
mod statement;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "vetric",
    version,
    about = "Watches the EV chargers of condominiums, keeps residents and managers informed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: SQLite, the simulators and a demo condominium.
    Demo(demo::DemoArgs),
    /// Run a simulator of a vendor service (for trying vetric and for tests).
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Run vetric in production: ingest every configured site and serve HTTP.
    Serve {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
    },
    /// Print what the store knows now: freshness, vendor link, connectors, open sessions.
    Status {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
        /// Print JSON (the shape is stable; see DESIGN.md).
        #[arg(long)]
        json: bool,
    },
    /// A site's monthly statement (draft, or --issue to freeze it) as JSON, CSV or XLSX;
    /// --import previews a vendor export, --commit stores its good rows.
    Statement(statement::StatementArgs),
    /// Create or upgrade the store's schema, then exit.
    Migrate {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
    },
    /// Write a consistent copy of the store to FILE (works while `serve` runs; PostgreSQL
    /// through `pg_dump --format=custom`).
    Backup {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the store with a backup (refused while `serve` or `demo` holds it).
    Restore {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
        /// A file written by `vetric backup`.
        file: PathBuf,
        /// Really replace the store; without it, only check and say what would happen.
        #[arg(long)]
        yes: bool,
    },
    /// Check a configuration file and list every problem at once.
    CheckConfig {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
    },
    /// Manage the people who log in.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Talk to the CVE-Pro vendor cloud directly.
    Cvepro {
        #[command(subcommand)]
        command: CveproCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// The Intelbras CVE-Pro cloud: the recorded wire format, a scripted fleet, faults.
    Cvepro {
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 5)]
        chargers: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Sessions run this many times faster; timestamps stay on the real clock.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// The Evolution API (WhatsApp gateway): records every message, answers findMessages,
    /// instance states and faults.
    Evolution {
        #[arg(long, default_value = "127.0.0.1:7071")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. The password is read from stdin when piped; otherwise one is generated
    /// and printed once (`ROLE: EMAIL PASSWORD`).
    Add {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        email: String,
        /// `admin` (every site) or `manager` (only the --site ones).
        #[arg(long)]
        role: String,
        /// A site the manager may see (repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user (for `Authorization: Bearer`); prints the token alone.
    Create {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
        /// The user's e-mail.
        #[arg(long)]
        user: String,
        /// What the token is for (shown in audits).
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

#[derive(Subcommand)]
enum CveproCommand {
    /// Probe a vendor account once: log in, read chargers and sessions, report.
    Check(probe::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(match &cli.command {
        Command::Serve { .. } => LogStyle::Serve,
        _ => LogStyle::Console,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Sim {
            command:
                SimCommand::Cvepro {
                    listen,
                    chargers,
                    seed,
                    speed,
                },
        } => {
            let config = vetric_sim::cvepro::SimConfig::for_cli(chargers, seed, speed);
            vetric_sim::cvepro::run_until_ctrl_c(config, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            command: SimCommand::Evolution { listen },
        } => {
            let config = vetric_sim::evolution::EvolutionSimConfig::default();
            vetric_sim::evolution::run_until_ctrl_c(config, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            let claimed = match serve::claim(&cfg.database, cfg.listen, "vetric serve").await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(e.exit_code());
                }
            };
            let (store, sites) = serve::open_store(&cfg).await?;
            serve::run(cfg, claimed, store, sites, CancellationToken::new()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            let (store, sites) = serve::open_store(&cfg).await?;
            let status = status::collect(&store, &sites, chrono::Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status::render_text(&status, &sites));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Statement(args) => {
            let cfg = config::load(&args.config, &config::vetric_env())?;
            let (store, sites) = serve::open_store(&cfg).await?;
            statement::run(args, &store, &sites, cfg.public_url.as_ref()).await
        }
        Command::Migrate { config } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            if let config::DatabaseUrl::Sqlite(path) = &cfg.database
                && let Some(holder) = vetric_store::InstanceLock::is_held(path)?
            {
                anyhow::bail!(
                    "the store {} is in use by {holder}; stop it before migrating",
                    path.display()
                );
            }
            serve::open_store(&cfg).await?;
            println!("{}: migrated", cfg.database);
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { config, out, force } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            backup::backup_command(&cfg, &out, force).await
        }
        Command::Restore { config, file, yes } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            backup::restore_command(&cfg, &file, yes).await
        }
        Command::CheckConfig { config } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            println!(
                "{}: ok ({} site(s), store {})",
                config.display(),
                cfg.sites.len(),
                cfg.database
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User {
            command:
                UserCommand::Add {
                    config,
                    email,
                    role,
                    sites: site_slugs,
                },
        } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            let (store, sites) = serve::open_store(&cfg).await?;
            accounts::user_add(&store, &sites, &email, &role, &site_slugs).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    config,
                    user,
                    label,
                },
        } => {
            let cfg = config::load(&config, &config::vetric_env())?;
            let (store, _) = serve::open_store(&cfg).await?;
            accounts::token_create(&store, &user, &label).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cvepro {
            command: CveproCommand::Check(args),
        } => Ok(if probe::run(args).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

/// Where logs go and how they look.
#[derive(Clone, Copy)]
enum LogStyle {
    /// `serve`: JSON lines on stdout (for journald and log shippers), each with its spans
    /// (request id, site).
    Serve,
    /// `demo` and one-shot commands: human-readable text on stderr, so stdout keeps the
    /// result (or the demo's URL and login lines).
    Console,
}

/// `VETRIC_LOG` filters (default `info`); `VETRIC_LOG_FORMAT=text|json` overrides the format
/// (not the destination).
fn init_logging(style: LogStyle) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = EnvFilter::try_from_env("VETRIC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, is_terminal, default_json) = match style {
        LogStyle::Serve => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            true,
        ),
        LogStyle::Console => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            false,
        ),
    };
    let json = match std::env::var("VETRIC_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => default_json,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.with_ansi(is_terminal).init();
    }
}
