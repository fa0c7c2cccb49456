//! `vetric statement`: a site's monthly statement for scripts and cron (issue #8 item 7,
//! BILLING.md "Output").
//!
//! It opens the store as an ordinary client (it works while `serve` runs on SQLite), computes
//! the month's draft from the store — plus, with `--import`, the rows of a vendor export — and
//! writes it as JSON (default, on stdout), CSV or XLSX. `--import` alone only previews: it
//! prints the per-row import report on stderr and stores nothing, as the import page does
//! before the user confirms; `--commit` is that confirmation. `--issue` freezes the draft as
//! the month's next version, printing first how it differs per apartment from the last one, and
//! enqueues its announcements exactly as the web's "Emitir" button does
//! ([`vetric_engine::statements::issue`]: the managers' e-mail, the residents' summaries when
//! the site opted in).
//! `--issued` shows the latest issued version instead of a draft.
//!
//! Messages for the person at the terminal go to stderr; stdout carries only the document.

use crate::config::SiteConfig;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vetric_domain::statement::{ApartmentDiff, compute, diff};
use vetric_domain::{ImportReport, LocalMonth, Statement, format_money_pt_br};
use vetric_store::{AuditEntry, ImportOutcome, NewImportBatch, SiteId, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Csv,
    Xlsx,
    Pdf,
}

#[derive(clap::Args)]
pub struct StatementArgs {
    #[arg(long, env = "VETRIC_CONFIG")]
    pub config: PathBuf,
    /// The site's slug, as in the config file.
    #[arg(long)]
    pub site: String,
    /// The local month, `YYYY-MM`.
    #[arg(long)]
    pub month: String,
    /// A vendor export (XLSX) whose rows join the draft; stored only with --commit.
    #[arg(long, value_name = "EXPORT.xlsx")]
    pub import: Option<PathBuf>,
    /// Store the good rows of --import (one transaction; vendor ids already known are matched,
    /// not doubled).
    #[arg(long, requires = "import")]
    pub commit: bool,
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
    /// Write to FILE instead of stdout (required for xlsx and pdf).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With --format csv: one line per session (with its peak/off-peak split) instead of one
    /// per apartment.
    #[arg(long)]
    pub detail: bool,
    /// With --format pdf: that apartment's statement instead of the site's ("sem morador" for
    /// the sessions nobody owned).
    #[arg(long, value_name = "APT")]
    pub apartment: Option<String>,
    /// Freeze the draft as the month's next version (the differences from the last version
    /// are printed first).
    #[arg(long, conflicts_with = "issued")]
    pub issue: bool,
    /// Show the latest issued version instead of the draft.
    #[arg(long, conflicts_with = "import")]
    pub issued: bool,
}

/// The JSON document: the statement (BILLING.md "Output": `lines`, `totals`, `rejected`…)
/// with where it stands.
#[derive(Serialize)]
struct Document<'a> {
    site: &'a str,
    /// `draft` or `issued`.
    status: &'static str,
    version: Option<i64>,
    issued_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    statement: &'a Statement,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<ImportSummary<'a>>,
}

#[derive(Serialize)]
struct ImportSummary<'a> {
    file: String,
    committed: bool,
    rows_read: u32,
    sessions: usize,
    rows_refused: usize,
    rejected_rows: &'a [vetric_domain::RowProblem],
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a ImportOutcome>,
}

/// Checks the flags that do not need the store, so a typo fails before anything is opened.
fn check_flags(args: &StatementArgs) -> anyhow::Result<LocalMonth> {
    let month = LocalMonth::parse(&args.month).map_err(|e| anyhow::anyhow!("--month: {e}"))?;
    match args.format {
        OutputFormat::Xlsx | OutputFormat::Pdf if args.out.is_none() => {
            bail!("--format xlsx and pdf write a binary file: give --out FILE")
        }
        _ => {}
    }
    if args.detail && args.format != OutputFormat::Csv {
        bail!("--detail only applies to --format csv");
    }
    if args.apartment.is_some() && args.format != OutputFormat::Pdf {
        bail!("--apartment only applies to --format pdf");
    }
    if args.issue && args.import.is_some() && !args.commit {
        bail!("--issue with --import needs --commit: an issued statement only holds stored rows");
    }
    Ok(month)
}

fn print_import_report(path: &Path, report: &ImportReport) {
    eprintln!(
        "{}: {} linha(s) lida(s), {} recarga(s) válida(s), {} linha(s) recusada(s)",
        path.display(),
        report.rows_read,
        report.sessions.len(),
        report.rows_refused()
    );
    for p in &report.rejected_rows {
        eprintln!(
            "  linha {}, coluna {} ({:?}): {}",
            p.row, p.column, p.value, p.message_pt_br
        );
    }
}

fn print_diff(version: i64, changes: &[ApartmentDiff]) {
    if changes.is_empty() {
        eprintln!("sem diferenças em relação à versão {version}");
        return;
    }
    eprintln!("diferenças em relação à versão {version}:");
    for d in changes {
        let money = |s: &Option<vetric_domain::LineSummary>| {
            s.as_ref()
                .map_or_else(|| "—".to_owned(), |s| format_money_pt_br(s.total))
        };
        let ids = |v: &[i64]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut what = Vec::new();
        if !d.added_sessions.is_empty() {
            what.push(format!("recargas novas {}", ids(&d.added_sessions)));
        }
        if !d.removed_sessions.is_empty() {
            what.push(format!("recargas removidas {}", ids(&d.removed_sessions)));
        }
        if !d.changed_sessions.is_empty() {
            what.push(format!("recargas alteradas {}", ids(&d.changed_sessions)));
        }
        eprintln!(
            "  {}: {} → {} ({}){}",
            d.label(),
            money(&d.old),
            money(&d.new),
            format_money_pt_br(d.total_change),
            if what.is_empty() {
                String::new()
            } else {
                format!("; {}", what.join("; "))
            }
        );
    }
}

/// Writes `bytes` to `out` through a temporary file renamed into place, so a reader never
/// sees half a file; or to stdout.
fn write_output(out: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes).context("writing to stdout")?;
            stdout.flush().context("writing to stdout")?;
            Ok(())
        }
    }
}

fn find_site<'a>(
    sites: &'a [(SiteId, SiteConfig)],
    slug: &str,
) -> anyhow::Result<&'a (SiteId, SiteConfig)> {
    sites
        .iter()
        .find(|(_, s)| s.slug.as_str() == slug)
        .ok_or_else(|| {
            let known: Vec<&str> = sites.iter().map(|(_, s)| s.slug.as_str()).collect();
            anyhow::anyhow!(
                "--site {slug}: no such site in the config file (its sites: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
}

pub async fn run(
    args: StatementArgs,
    store: &Store,
    sites: &[(SiteId, SiteConfig)],
    public_url: Option<&url::Url>,
) -> anyhow::Result<ExitCode> {
    let month = check_flags(&args)?;
    let (site_id, site) = find_site(sites, &args.site)?;
    let site_id = *site_id;
    let now = Utc::now();

    let mut import: Option<(PathBuf, ImportReport, Option<ImportOutcome>)> = None;
    if let Some(path) = &args.import {
        let report = vetric_reports::read_export_file(path, site.timezone)
            .map_err(|e| anyhow::anyhow!("--import {}: {e}", path.display()))?;
        print_import_report(path, &report);
        let outcome = if args.commit {
            let batch = NewImportBatch {
                file_name: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                rows_read: report.rows_read,
                rows_refused: u32::try_from(report.rows_refused()).unwrap_or(u32::MAX),
            };
            let audit = AuditEntry::new(now, None, "statement_import", format!("site:{site_id}"))
                .with_detail(serde_json::json!({ "via": "cli" }));
            let outcome = store
                .import_sessions(site_id, &batch, &report.sessions, &audit)
                .await
                .context("storing the imported rows")?;
            eprintln!(
                "importadas {} recarga(s); {} já importada(s) antes; {} também registrada(s) \
                 pelo vetric",
                outcome.imported.len(),
                outcome.already_imported.len(),
                outcome.also_recorded.len()
            );
            Some(outcome)
        } else {
            eprintln!("nada foi importado (use --commit para importar as linhas válidas)");
            None
        };
        import = Some((path.clone(), report, outcome));
    }

    let (statement, status, version, issued_at) = if args.issued {
        let Some(issued) = store.issued_statement(site_id, month).await? else {
            bail!(
                "no statement of {month} has been issued for site {}",
                args.site
            );
        };
        (
            issued.statement,
            "issued",
            Some(issued.version),
            Some(issued.issued_at),
        )
    } else {
        let mut input = store
            .statement_input(site_id, month)
            .await
            .context("reading the month from the store")?;
        if let Some((_, report, None)) = &import {
            // A preview: the export's rows join the draft without being stored. The domain
            // keeps one copy per vendor id (vetric's own record first).
            input.sessions.extend(report.sessions.iter().cloned());
        }
        if args.issue {
            let last = store.issued_statement(site_id, month).await?;
            let draft = compute(&input);
            match last {
                Some(last) if diff(&last.statement, &draft).is_empty() => {
                    print_diff(last.version, &[]);
                    eprintln!("nada a emitir: a versão {} continua valendo", last.version);
                    (
                        last.statement,
                        "issued",
                        Some(last.version),
                        Some(last.issued_at),
                    )
                }
                last => {
                    if let Some(last) = &last {
                        print_diff(last.version, &diff(&last.statement, &draft));
                    }
                    let audit =
                        AuditEntry::new(now, None, "statement_issue", format!("site:{site_id}"))
                            .with_detail(serde_json::json!({ "via": "cli" }));
                    // The one issuing path (as the web's button): the managers' e-mail and,
                    // if the site opted in, the residents' summaries are enqueued with it.
                    let ctx = vetric_engine::statements::IssueContext::new(public_url);
                    let issued =
                        vetric_engine::statements::issue(store, site_id, &input, &audit, &ctx)
                            .await
                            .context("issuing the statement")?;
                    eprintln!(
                        "emitida a versão {} do extrato de {month} ({})",
                        issued.version,
                        format_money_pt_br(issued.statement.totals.total)
                    );
                    (
                        issued.statement,
                        "issued",
                        Some(issued.version),
                        Some(issued.issued_at),
                    )
                }
            }
        } else {
            (compute(&input), "draft", None, None)
        }
    };

    let bytes = match args.format {
        OutputFormat::Json => {
            let doc = Document {
                site: &args.site,
                status,
                version,
                issued_at,
                statement: &statement,
                import: import
                    .as_ref()
                    .map(|(path, report, outcome)| ImportSummary {
                        file: path.display().to_string(),
                        committed: outcome.is_some(),
                        rows_read: report.rows_read,
                        sessions: report.sessions.len(),
                        rows_refused: report.rows_refused(),
                        rejected_rows: &report.rejected_rows,
                        outcome: outcome.as_ref(),
                    }),
            };
            let mut json = serde_json::to_vec_pretty(&doc)?;
            json.push(b'\n');
            json
        }
        OutputFormat::Csv if args.detail => vetric_reports::csv::sessions(&statement)?,
        OutputFormat::Csv => vetric_reports::csv::summary(&statement),
        OutputFormat::Xlsx => vetric_reports::xlsx::statement(&statement)?,
        OutputFormat::Pdf => {
            let meta = vetric_reports::pdf::PdfMeta {
                generated_at: issued_at.unwrap_or(now),
                version,
                logo_svg: None,
            };
            match args.apartment.as_deref() {
                None => vetric_reports::pdf::site_statement(&statement, &meta)?,
                Some(apt) => {
                    // "sem morador" names the unassigned line unless an apartment is so called.
                    let apt = Some(apt).filter(|a| {
                        *a != vetric_domain::UNASSIGNED_LABEL || statement.line(Some(a)).is_some()
                    });
                    vetric_reports::pdf::apartment_statement(&statement, apt, &meta)
                        .map_err(|e| anyhow::anyhow!("--apartment: {e}"))?
                }
            }
        }
    };
    write_output(args.out.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: StatementArgs,
    }

    fn args(extra: &[&str]) -> Result<StatementArgs, clap::Error> {
        let mut v = vec![
            "x", "--config", "c.toml", "--site", "s", "--month", "2026-03",
        ];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).map(|c| c.args)
    }

    #[test]
    fn flags_are_checked_before_the_store_is_opened() {
        let pdf = check_flags(&args(&["--format", "pdf"]).unwrap()).unwrap_err();
        assert!(pdf.to_string().contains("--out"), "{pdf}");
        assert!(check_flags(&args(&["--format", "pdf", "--out", "f.pdf"]).unwrap()).is_ok());
        let apt = check_flags(&args(&["--apartment", "101"]).unwrap()).unwrap_err();
        assert!(apt.to_string().contains("--format pdf"), "{apt}");
        let xlsx = check_flags(&args(&["--format", "xlsx"]).unwrap()).unwrap_err();
        assert!(xlsx.to_string().contains("--out"), "{xlsx}");
        let issue = check_flags(&args(&["--import", "e.xlsx", "--issue"]).unwrap()).unwrap_err();
        assert!(issue.to_string().contains("--commit"), "{issue}");
        assert!(check_flags(&args(&["--format", "xlsx", "--out", "f.xlsx"]).unwrap()).is_ok());
        let mut bad = args(&[]).unwrap();
        bad.month = "03/2026".into();
        assert!(
            check_flags(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("--month")
        );
        assert!(args(&["--commit"]).is_err(), "--commit needs --import");
        assert!(args(&["--issued", "--import", "e.xlsx"]).is_err());
    }
}
