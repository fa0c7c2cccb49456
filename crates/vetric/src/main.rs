//! The `vetric` binary: command line, configuration and wiring. Errors become one line on
//! stderr and a non-zero exit code here, at the edge, and nowhere else.

mod config;
mod probe;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Check a configuration file and list every problem at once.
    CheckConfig {
        #[arg(long, env = "VETRIC_CONFIG")]
        config: PathBuf,
    },
    /// Talk to the CVE-Pro vendor cloud directly.
    Cvepro {
        #[command(subcommand)]
        command: CveproCommand,
    },
}

#[derive(Subcommand)]
enum CveproCommand {
    /// Probe a vendor account once: log in, read chargers and sessions, report.
    Check(probe::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
        Command::Cvepro {
            command: CveproCommand::Check(args),
        } => Ok(if probe::run(args).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

/// Logs go to stderr so that one-shot commands keep stdout for their result.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VETRIC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("VETRIC_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
