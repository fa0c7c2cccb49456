//! Monthly statements (issue #8, BILLING.md): pages, downloads and their API twins.
//!
//! * `GET /sites/{slug}/statements?month=YYYY-MM[&version=N]` (default: the previous local
//!   month): where the month stands (draft, or version N issued when and by whom, every
//!   version with a link), the per-apartment lines with the "sem morador" line, the totals, the
//!   tariffs that priced the sessions, charts (inline SVG from [`vetric_reports::charts`]) and
//!   the downloads. Without `version` the page shows the latest issued version while the draft
//!   still equals it, and the draft otherwise — with the per-apartment differences from the
//!   latest version ([`vetric_domain::statement::diff`]) next to the "Emitir" button.
//! * `POST /sites/{slug}/statements/{month}/issue` (admins and the site's managers): freezes the
//!   draft through [`vetric_engine::statements::issue`] (the one issuing function: it also
//!   enqueues the announcements in the same transaction). The form carries the latest version
//!   and a digest of the draft the person saw: when either moved since, or when a version
//!   already exists (re-issuing), a confirmation page shows what would be issued first. Issuing
//!   a draft identical to the latest version is refused ("nada mudou").
//! * `GET /sites/{slug}/statements/{YYYY-MM}.{csv|xlsx|pdf}[?version=N]`: the files of the draft
//!   (no `version`) or of an issued version, named `extrato-<slug>-<month>-rascunho.pdf` /
//!   `…-v<N>.pdf`. `?detalhe=sessoes` on the CSV gives one line per session.
//! * `GET /sites/{slug}/statements/{month}/apartments/{apartment}` (`sem-morador` for the
//!   unassigned line): every session with its peak pieces and the tariff used; `/pdf` under it
//!   is the apartment's PDF.
//! * `GET /sites/{slug}/statements/{month}/rejeitadas`: the month's sessions kept out of the
//!   statement with their reasons, and the copies of one vendor id that disagree. Rows of a
//!   vendor export that could not be read at all are refused at import time and never stored
//!   (only their count is kept with the import batch), so they are not listed here.
//! * API: `GET /api/v1/sites/{slug}/statements/{month}[?version=N]` and
//!   `POST /api/v1/sites/{slug}/statements/{month}/issue[?expected_version=N]`.
//!
//! Drafts are computed the way `vetric statement` computes them: [`Store::statement_input`]
//! then [`compute`]. Handlers only choose, format and answer.

use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit, local_datetime};
use crate::input::query_pairs;
use crate::pages::error_page;
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use vetric_domain::statement::{ApartmentDiff, SessionLine, UNASSIGNED_LABEL, compute, diff};
use vetric_domain::{LocalMonth, Statement, StatementInput, format_money_pt_br};
use vetric_reports::pdf::PdfMeta;
use vetric_store::{IssuedStatement, IssuedVersion, Store, StoreError, UserId};

/// The path segment of the "sem morador" line.
pub const UNASSIGNED_SEGMENT: &str = "sem-morador";

/// Apartments in the ranking chart.
const RANKING_LIMIT: usize = 10;

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

// ------------------------------------------------------------------------ shared rules

/// The local month before the one `now` falls in, in the site's zone (the month a manager
/// closes).
pub fn previous_month(site: &SiteSettings, now: DateTime<Utc>) -> LocalMonth {
    let today = now.with_timezone(&site.timezone).date_naive();
    let first = today.with_day(1).unwrap_or(today);
    LocalMonth::of_date(first.pred_opt().unwrap_or(first))
}

fn shift_month(month: LocalMonth, delta: i32) -> Option<LocalMonth> {
    let index = month.year() * 12 + month.month() as i32 - 1 + delta;
    LocalMonth::new(index.div_euclid(12), (index.rem_euclid(12) + 1) as u32)
}

/// `outubro de 2026`.
pub fn month_label(month: LocalMonth) -> String {
    let name = vetric_reports::charts::month_name_pt_br(month.month());
    format!("{name} de {}", month.year())
}

/// A month as given in a path or a query (`YYYY-MM`): a 400 naming `field` otherwise.
pub fn parse_month(raw: &str, field: &str) -> Result<LocalMonth, ApiError> {
    LocalMonth::parse(raw.trim()).map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            field,
            format!("{field} deve ser um mês no formato AAAA-MM (ex.: 2026-10)"),
        )
    })
}

fn parse_version(raw: &str, field: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                field,
                format!("{field} deve ser o número de uma versão emitida (1, 2, …)"),
            )
        })
}

/// Everything about one site and month: the draft computed now, and what was issued.
pub struct MonthState {
    pub input: StatementInput,
    pub draft: Statement,
    /// Newest first.
    pub versions: Vec<IssuedVersion>,
    pub latest: Option<IssuedStatement>,
}

impl MonthState {
    /// Reads the month: the draft exactly as `vetric statement` computes it.
    pub async fn load(
        store: &Store,
        site: &SiteSettings,
        month: LocalMonth,
    ) -> Result<Self, StoreError> {
        let input = store.statement_input(site.id, month).await?;
        let draft = compute(&input);
        let latest = store.issued_statement(site.id, month).await?;
        let versions = store.statement_versions(site.id, month).await?;
        Ok(Self {
            input,
            draft,
            versions,
            latest,
        })
    }

    pub fn latest_version(&self) -> i64 {
        self.latest.as_ref().map_or(0, |l| l.version)
    }

    /// How the draft differs from the latest version, per apartment (`None`: nothing issued).
    pub fn changes(&self) -> Option<Vec<ApartmentDiff>> {
        self.latest
            .as_ref()
            .map(|l| diff(&l.statement, &self.draft))
    }

    /// The draft may be issued: nothing issued yet, or it differs from the latest version.
    pub fn issuable(&self) -> bool {
        self.changes().is_none_or(|c| !c.is_empty())
    }

    /// What is shown without an explicit version: the latest version while the draft still
    /// equals it, the draft otherwise.
    fn current(&self) -> Shown<'_> {
        match &self.latest {
            Some(l) if !self.issuable() => Shown::Issued(l),
            _ => Shown::Draft(&self.draft),
        }
    }
}

/// The statement on screen (or in a file).
enum Shown<'a> {
    Draft(&'a Statement),
    Issued(&'a IssuedStatement),
}

impl Shown<'_> {
    fn statement(&self) -> &Statement {
        match self {
            Shown::Draft(s) => s,
            Shown::Issued(i) => &i.statement,
        }
    }

    fn version(&self) -> Option<i64> {
        match self {
            Shown::Draft(_) => None,
            Shown::Issued(i) => Some(i.version),
        }
    }
}

/// A digest of a statement's content: the issue form carries the one the person saw, so a
/// draft that changed in between is confirmed again rather than issued unseen.
pub fn digest(statement: &Statement) -> String {
    let json = serde_json::to_vec(statement).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// What an issue request ended in.
pub enum IssueOutcome {
    Issued(Box<IssuedStatement>),
    /// The draft equals the latest version.
    NothingChanged {
        version: i64,
    },
    /// Another version was issued since the caller looked.
    Stale {
        latest: i64,
    },
}

/// Issues the month's draft (read now) as its next version, unless it equals the latest
/// version or `expected_version` (the latest version the caller saw; 0: none) is out of date.
pub async fn issue_month(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    month: LocalMonth,
    ms: &MonthState,
    expected_version: Option<i64>,
) -> Result<IssueOutcome, StoreError> {
    let latest = ms.latest_version();
    if expected_version.is_some_and(|v| v != latest) {
        return Ok(IssueOutcome::Stale { latest });
    }
    if !ms.issuable() {
        return Ok(IssueOutcome::NothingChanged { version: latest });
    }
    let entry =
        audit(user, ip, "statement_issue", format!("site:{}", site.slug)).with_detail(json!({
            "via": user.via.as_str(),
            "site": site.slug,
            "month": month.to_string(),
            "previous_version": latest,
        }));
    // The managers' e-mail links to the page of the issued version.
    let ctx = vetric_engine::statements::IssueContext::new(state.0.public_url.as_ref())
        .expecting_latest(latest);
    match vetric_engine::statements::issue(state.store(), site.id, &ms.input, &entry, &ctx).await {
        Ok(issued) => Ok(IssueOutcome::Issued(Box::new(issued))),
        // Someone issued between our read and our transaction.
        Err(StoreError::Conflict { .. }) => {
            let latest = state
                .store()
                .issued_statement(site.id, month)
                .await?
                .map_or(0, |l| l.version);
            Ok(IssueOutcome::Stale { latest })
        }
        Err(e) => Err(e),
    }
}

async fn emails(store: &Store) -> Result<HashMap<UserId, String>, StoreError> {
    Ok(store
        .users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect())
}

fn by_whom(emails: &HashMap<UserId, String>, by: Option<UserId>) -> String {
    match by {
        None => "linha de comando".to_owned(),
        Some(id) => emails
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "usuário removido".to_owned()),
    }
}

// ------------------------------------------------------------------------ formatting

fn money(d: Decimal) -> String {
    format_money_pt_br(d)
}

fn kwh(d: Decimal) -> String {
    vetric_reports::pt_br_decimal(d, 3)
}

fn minutes(d: Decimal) -> String {
    vetric_reports::pt_br_decimal(d, 2)
}

fn br_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

fn apartment_segment(apartment: Option<&str>) -> String {
    match apartment {
        None => UNASSIGNED_SEGMENT.to_owned(),
        Some(a) => url::form_urlencoded::byte_serialize(a.as_bytes())
            .collect::<String>()
            .replace('+', "%20"),
    }
}

/// The tariff that priced a session, as shown.
fn tariff_label(s: &SessionLine) -> String {
    let from = s.tariff_effective_from.map_or_else(
        || "tarifa única (sem data de início)".to_owned(),
        |d| format!("tarifa de {}", br_date(d)),
    );
    format!(
        "{from} (ponta {}/kWh · fora de ponta {}/kWh)",
        crate::settings::brl(s.peak_price),
        crate::settings::brl(s.offpeak_price)
    )
}

/// The query string that shows `version` (`None`: the default view) of `month`.
fn view_query(month: LocalMonth, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("month={month}&version={v}"),
        None => format!("month={month}"),
    }
}

fn file_query(version: Option<i64>) -> String {
    version.map_or_else(String::new, |v| format!("?version={v}"))
}

// ------------------------------------------------------------------------ the month page

struct LineRow {
    label: String,
    href: String,
    residents: String,
    unassigned: bool,
    sessions: u64,
    kwh: String,
    peak: String,
    offpeak: String,
    energy: String,
    idle_min: String,
    idle_fee: String,
    total: String,
}

struct TotalsRow {
    sessions: u64,
    kwh: String,
    peak: String,
    offpeak: String,
    energy: String,
    idle_min: String,
    idle_fee: String,
    total: String,
}

struct VersionRow {
    version: i64,
    issued_at: String,
    issued_by: String,
    total: String,
    href: String,
    shown: bool,
}

struct DiffRow {
    label: String,
    old_total: String,
    new_total: String,
    change: String,
    detail: String,
}

struct TariffUse {
    label: String,
    sessions: usize,
    period: String,
}

struct Link {
    label: String,
    href: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "statements.html")]
struct StatementsPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    month: String,
    month_label: String,
    prev_href: String,
    next_href: String,
    /// `None`: the draft is shown.
    version: Option<i64>,
    status: String,
    /// The shown version is not the latest one.
    superseded: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    lines: Vec<LineRow>,
    totals: TotalsRow,
    tariffs: Vec<TariffUse>,
    versions: Vec<VersionRow>,
    changes: Vec<DiffRow>,
    changed_since: Option<i64>,
    can_issue: bool,
    issue_label: String,
    expected_version: i64,
    draft_digest: String,
    draft_href: Option<String>,
    downloads: Vec<Link>,
    rejected_href: String,
    rejected: usize,
    disagreements: usize,
    chart_daily: String,
    chart_hourly: String,
    chart_ranking: String,
}

fn line_rows(site: &SiteSettings, month: LocalMonth, shown: &Shown<'_>) -> Vec<LineRow> {
    let q = file_query(shown.version());
    shown
        .statement()
        .lines
        .iter()
        .map(|l| LineRow {
            label: l.label().to_owned(),
            href: format!(
                "/sites/{}/statements/{month}/apartments/{}{q}",
                site.slug,
                apartment_segment(l.apartment.as_deref())
            ),
            residents: l
                .residents
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            unassigned: l.is_unassigned(),
            sessions: l.sessions,
            kwh: kwh(l.kwh),
            peak: kwh(l.peak_kwh),
            offpeak: kwh(l.offpeak_kwh),
            energy: money(l.energy_cost),
            idle_min: minutes(l.idle_minutes),
            idle_fee: money(l.idle_fee),
            total: money(l.total),
        })
        .collect()
}

fn totals_row(s: &Statement) -> TotalsRow {
    let t = &s.totals;
    TotalsRow {
        sessions: t.sessions,
        kwh: kwh(t.kwh),
        peak: kwh(t.peak_kwh),
        offpeak: kwh(t.offpeak_kwh),
        energy: money(t.energy_cost),
        idle_min: minutes(t.idle_minutes),
        idle_fee: money(t.idle_fee),
        total: money(t.total),
    }
}

/// Which tariff priced which sessions: one entry per tariff version used, in date order.
fn tariff_uses(site: &SiteSettings, s: &Statement) -> Vec<TariffUse> {
    let mut groups: BTreeMap<(Option<NaiveDate>, Decimal, Decimal), Vec<&SessionLine>> =
        BTreeMap::new();
    for l in &s.lines {
        for x in &l.session_details {
            groups
                .entry((x.tariff_effective_from, x.peak_price, x.offpeak_price))
                .or_default()
                .push(x);
        }
    }
    groups
        .into_values()
        .filter_map(|sessions| {
            let first = sessions.iter().map(|x| x.start).min()?;
            let last = sessions.iter().map(|x| x.start).max()?;
            Some(TariffUse {
                label: tariff_label(sessions[0]),
                sessions: sessions.len(),
                period: format!(
                    "recargas iniciadas de {} a {}",
                    local_datetime(site, first),
                    local_datetime(site, last)
                ),
            })
        })
        .collect()
}

fn diff_rows(changes: &[ApartmentDiff]) -> Vec<DiffRow> {
    let total = |s: &Option<vetric_domain::LineSummary>| {
        s.as_ref()
            .map_or_else(|| "—".to_owned(), |s| money(s.total))
    };
    let ids = |v: &[i64]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    changes
        .iter()
        .map(|d| {
            let mut what = Vec::new();
            if !d.added_sessions.is_empty() {
                what.push(format!("recargas novas: {}", ids(&d.added_sessions)));
            }
            if !d.removed_sessions.is_empty() {
                what.push(format!("recargas retiradas: {}", ids(&d.removed_sessions)));
            }
            if !d.changed_sessions.is_empty() {
                what.push(format!("recargas alteradas: {}", ids(&d.changed_sessions)));
            }
            let sign = if d.total_change > Decimal::ZERO {
                "+"
            } else {
                ""
            };
            DiffRow {
                label: d.label().to_owned(),
                old_total: total(&d.old),
                new_total: total(&d.new),
                change: format!("{sign}{}", money(d.total_change)),
                detail: what.join("; "),
            }
        })
        .collect()
}

fn downloads(site: &SiteSettings, month: LocalMonth, version: Option<i64>) -> Vec<Link> {
    let q = file_query(version);
    let base = format!("/sites/{}/statements/{month}", site.slug);
    let detail = match version {
        Some(v) => format!("{base}.csv?version={v}&detalhe=sessoes"),
        None => format!("{base}.csv?detalhe=sessoes"),
    };
    vec![
        Link {
            label: "PDF".into(),
            href: format!("{base}.pdf{q}"),
        },
        Link {
            label: "XLSX".into(),
            href: format!("{base}.xlsx{q}"),
        },
        Link {
            label: "CSV (por apartamento)".into(),
            href: format!("{base}.csv{q}"),
        },
        Link {
            label: "CSV (por recarga)".into(),
            href: detail,
        },
    ]
}

struct PageQuery {
    month: LocalMonth,
    version: Option<i64>,
    issued: bool,
}

fn page_query(site: &SiteSettings, raw: Option<&str>) -> Result<PageQuery, ApiError> {
    let mut q = PageQuery {
        month: previous_month(site, Utc::now()),
        version: None,
        issued: false,
    };
    for (k, v) in query_pairs(raw, &["month", "version", "emitido"])? {
        match k.as_str() {
            "month" if !v.trim().is_empty() => q.month = parse_month(&v, "month")?,
            "version" if !v.trim().is_empty() => q.version = Some(parse_version(&v, "version")?),
            "emitido" => q.issued = true,
            _ => {}
        }
    }
    Ok(q)
}

fn bad_page(e: ApiError) -> Response {
    error_page(StatusCode::BAD_REQUEST, &e.message)
}

/// Builds the month page showing `version` (`None`: the default view).
async fn month_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    month: LocalMonth,
    version: Option<i64>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<Result<StatementsPage, PageError>, StoreError> {
    let ms = MonthState::load(state.store(), site, month).await?;
    let requested;
    let shown = match version {
        None => ms.current(),
        Some(v) => {
            requested = match state
                .store()
                .issued_statement_version(site.id, month, v)
                .await?
            {
                Some(i) => i,
                None => {
                    return Ok(Err(PageError {
                        status: StatusCode::NOT_FOUND,
                        message: format!("O extrato de {} não tem versão {v}.", month_label(month)),
                    }));
                }
            };
            Shown::Issued(&requested)
        }
    };
    let emails = emails(state.store()).await?;
    let status = match &shown {
        Shown::Draft(_) => {
            "Rascunho (não emitido): os valores podem mudar até a emissão.".to_owned()
        }
        Shown::Issued(i) => format!(
            "Versão {} emitida em {} por {}.",
            i.version,
            local_datetime(site, i.issued_at),
            by_whom(&emails, i.issued_by)
        ),
    };
    let latest = ms.latest_version();
    let superseded = shown
        .version()
        .filter(|v| *v < latest)
        .map(|_| format!("Esta versão foi substituída pela versão {latest}."));
    let changes = ms.changes().unwrap_or_default();
    let viewing_current = version.is_none() || version == Some(latest);
    let can_issue = viewing_current && ms.issuable();
    let statement = shown.statement();
    let page = StatementsPage {
        user_email: NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        month: month.to_string(),
        month_label: month_label(month),
        prev_href: shift_month(month, -1).map_or_else(String::new, |m| {
            format!("/sites/{}/statements?month={m}", site.slug)
        }),
        next_href: shift_month(month, 1).map_or_else(String::new, |m| {
            format!("/sites/{}/statements?month={m}", site.slug)
        }),
        version: shown.version(),
        status,
        superseded,
        notice,
        error,
        lines: line_rows(site, month, &shown),
        totals: totals_row(statement),
        tariffs: tariff_uses(site, statement),
        versions: ms
            .versions
            .iter()
            .map(|v| VersionRow {
                version: v.version,
                issued_at: local_datetime(site, v.issued_at),
                issued_by: by_whom(&emails, v.issued_by),
                total: v
                    .total
                    .parse::<Decimal>()
                    .map_or_else(|_| v.total.clone(), money),
                href: format!(
                    "/sites/{}/statements?{}",
                    site.slug,
                    view_query(month, Some(v.version))
                ),
                shown: shown.version() == Some(v.version),
            })
            .collect(),
        changed_since: (viewing_current && !changes.is_empty()).then_some(latest),
        changes: if viewing_current {
            diff_rows(&changes)
        } else {
            Vec::new()
        },
        can_issue,
        issue_label: if latest == 0 {
            "Emitir extrato".to_owned()
        } else {
            format!("Emitir extrato (versão {})", latest + 1)
        },
        expected_version: latest,
        draft_digest: digest(&ms.draft),
        draft_href: (!viewing_current || (version.is_some() && ms.issuable()))
            .then(|| format!("/sites/{}/statements?month={month}", site.slug)),
        downloads: downloads(site, month, shown.version()),
        rejected_href: format!(
            "/sites/{}/statements/{month}/rejeitadas{}",
            site.slug,
            file_query(shown.version())
        ),
        rejected: statement.rejected.len(),
        disagreements: statement.disagreements.len(),
        chart_daily: vetric_reports::charts::daily_consumption(statement),
        chart_hourly: vetric_reports::charts::hourly_consumption(statement),
        chart_ranking: vetric_reports::charts::apartment_ranking(statement, RANKING_LIMIT),
    };
    Ok(Ok(page))
}

/// `GET /sites/{slug}/statements`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let q = match page_query(site, raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return Ok(bad_page(e)),
    };
    let notice = match (q.issued, q.version) {
        (true, Some(v)) => Some(format!("Versão {v} do extrato emitida.")),
        _ => None,
    };
    Ok(
        month_page(&state, &user, site, q.month, q.version, notice, None)
            .await??
            .into_response(),
    )
}

// ------------------------------------------------------------------------ issuing (page)

#[derive(Template, WebTemplate)]
#[template(path = "statement_confirm.html")]
struct ConfirmPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    month: String,
    month_label: String,
    next_version: i64,
    reason: String,
    totals: TotalsRow,
    changes: Vec<DiffRow>,
    latest: i64,
    expected_version: i64,
    draft_digest: String,
}

/// The month page with `error` on top, as a 409.
async fn conflict_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    month: LocalMonth,
    error: String,
) -> Result<Response, PageError> {
    let page = month_page(state, user, site, month, None, None, Some(error)).await??;
    let mut res = page.into_response();
    *res.status_mut() = StatusCode::CONFLICT;
    Ok(res)
}

/// `POST /sites/{slug}/statements/{month}/issue` (form: `expected_version`, `digest`,
/// `confirm`).
pub async fn issue_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let month = match parse_month(&month, "month") {
        Ok(m) => m,
        Err(e) => return Ok(bad_page(e)),
    };
    let expected = match form.get("expected_version").parse::<i64>() {
        Ok(v) if v >= 0 => v,
        _ => {
            return Ok(error_page(
                StatusCode::BAD_REQUEST,
                "Formulário de emissão incompleto (expected_version); recarregue a página do \
                 extrato e tente de novo.",
            ));
        }
    };
    let confirmed = form.get("confirm") == "sim";
    let seen_digest = form.get("digest");
    let ms = MonthState::load(state.store(), site, month).await?;
    let latest = ms.latest_version();
    if expected != latest {
        let msg = format!(
            "A versão {latest} foi emitida enquanto você revisava o extrato. Confira os valores \
             abaixo antes de emitir de novo."
        );
        return conflict_page(&state, &user, site, month, msg).await;
    }
    if !ms.issuable() {
        let msg = format!(
            "Nada mudou desde a versão {latest}: não há nova versão a emitir (a versão {latest} \
             continua valendo)."
        );
        return conflict_page(&state, &user, site, month, msg).await;
    }
    let current_digest = digest(&ms.draft);
    let moved = seen_digest != current_digest;
    if (latest > 0 && !confirmed) || moved {
        let reason = if moved {
            "Os dados do mês mudaram desde que a página foi aberta. Confira o que será emitido."
                .to_owned()
        } else {
            format!(
                "Dados mudaram desde a versão {latest}. A versão {latest} continua registrada \
                 sem alteração; confira as diferenças por apartamento."
            )
        };
        return Ok(ConfirmPage {
            user_email: NavUser::of(&user),
            slug: site.slug.clone(),
            name: site.name.clone(),
            nav: "statements",
            month: month.to_string(),
            month_label: month_label(month),
            next_version: latest + 1,
            reason,
            totals: totals_row(&ms.draft),
            changes: diff_rows(&ms.changes().unwrap_or_default()),
            latest,
            expected_version: latest,
            draft_digest: current_digest,
        }
        .into_response());
    }
    match issue_month(&state, &user, &peer.0, site, month, &ms, Some(expected)).await? {
        IssueOutcome::Issued(issued) => Ok(Redirect::to(&format!(
            "/sites/{}/statements?month={month}&version={}&emitido=1",
            site.slug, issued.version
        ))
        .into_response()),
        // Both were checked above on the same reading; kept for completeness.
        IssueOutcome::NothingChanged { version } | IssueOutcome::Stale { latest: version } => {
            let msg = format!("Nada foi emitido: a versão {version} continua valendo.");
            conflict_page(&state, &user, site, month, msg).await
        }
    }
}

// ------------------------------------------------------------------------ files

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Xlsx,
    Pdf,
}

fn parse_file(file: &str) -> Option<(LocalMonth, Format)> {
    let (month, ext) = file.rsplit_once('.')?;
    let format = match ext {
        "csv" => Format::Csv,
        "xlsx" => Format::Xlsx,
        "pdf" => Format::Pdf,
        _ => return None,
    };
    Some((LocalMonth::parse(month).ok()?, format))
}

fn file_response(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `-rascunho` or `-v2`.
fn file_suffix(version: Option<i64>) -> String {
    version.map_or_else(|| "-rascunho".to_owned(), |v| format!("-v{v}"))
}

/// The draft (`None`) or an issued version; `Err` is the page to answer.
async fn chosen(
    state: &AppState,
    site: &SiteSettings,
    month: LocalMonth,
    version: Option<i64>,
) -> Result<Result<(Statement, Option<i64>), Response>, StoreError> {
    match version {
        None => {
            let input = state.store().statement_input(site.id, month).await?;
            Ok(Ok((compute(&input), None)))
        }
        Some(v) => match state
            .store()
            .issued_statement_version(site.id, month, v)
            .await?
        {
            Some(i) => Ok(Ok((i.statement, Some(v)))),
            None => Ok(Err(error_page(
                StatusCode::NOT_FOUND,
                &format!("O extrato de {} não tem versão {v}.", month_label(month)),
            ))),
        },
    }
}

fn pdf_meta(version: Option<i64>) -> PdfMeta {
    PdfMeta {
        generated_at: Utc::now(),
        version,
        logo_svg: None,
    }
}

fn report_failed(e: &vetric_reports::ReportError) -> PageError {
    PageError::internal(e)
}

/// `GET /sites/{slug}/statements/{YYYY-MM}.{csv|xlsx|pdf}` (`?version=N`, `?detalhe=sessoes`).
pub async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, file)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let Some((month, format)) = parse_file(&file) else {
        return Err(PageError::not_found());
    };
    let mut version = None;
    let mut detail = false;
    let pairs = match query_pairs(raw.as_deref(), &["version", "detalhe"]) {
        Ok(p) => p,
        Err(e) => return Ok(bad_page(e)),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "version" => match parse_version(&v, "version") {
                Ok(n) => version = Some(n),
                Err(e) => return Ok(bad_page(e)),
            },
            "detalhe" if v == "sessoes" => detail = true,
            "detalhe" => {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "detalhe aceita apenas o valor sessoes",
                ));
            }
            _ => {}
        }
    }
    let (statement, version) = match chosen(&state, site, month, version).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let stem = format!("extrato-{}-{month}{}", site.slug, file_suffix(version));
    Ok(match format {
        Format::Csv if detail => file_response(
            vetric_reports::csv::sessions(&statement).map_err(|e| report_failed(&e))?,
            "text/csv; charset=utf-8",
            &format!("{stem}-recargas.csv"),
        ),
        Format::Csv => file_response(
            vetric_reports::csv::summary(&statement),
            "text/csv; charset=utf-8",
            &format!("{stem}.csv"),
        ),
        Format::Xlsx => file_response(
            vetric_reports::xlsx::statement(&statement).map_err(|e| report_failed(&e))?,
            XLSX_TYPE,
            &format!("{stem}.xlsx"),
        ),
        Format::Pdf => file_response(
            vetric_reports::pdf::site_statement(&statement, &pdf_meta(version))
                .map_err(|e| report_failed(&e))?,
            "application/pdf",
            &format!("{stem}.pdf"),
        ),
    })
}

// ------------------------------------------------------------------------ one apartment

struct SessionRow {
    vendor_id: i64,
    start: String,
    stop: String,
    charger: String,
    tag: String,
    resident: String,
    kwh: String,
    peak: String,
    offpeak: String,
    peak_pieces: String,
    idle: String,
    tariff: String,
    energy: String,
    idle_fee: String,
    total: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "statement_apartment.html")]
struct ApartmentPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    month_label: String,
    label: String,
    status: String,
    back_href: String,
    pdf_href: String,
    residents: String,
    sessions: Vec<SessionRow>,
    totals: TotalsRow,
    chart_daily: String,
}

fn apartment_from_segment(segment: &str) -> Option<String> {
    (segment != UNASSIGNED_SEGMENT).then(|| segment.to_owned())
}

fn session_row(site: &SiteSettings, s: &SessionLine) -> SessionRow {
    let time = |t: DateTime<Utc>| t.with_timezone(&site.timezone).format("%H:%M").to_string();
    SessionRow {
        vendor_id: s.vendor_id,
        start: local_datetime(site, s.start),
        stop: local_datetime(site, s.stop),
        charger: s.charger.clone(),
        tag: s
            .tag
            .as_ref()
            .map_or_else(|| "—".to_owned(), |t| t.as_str().to_owned()),
        resident: s
            .resident
            .as_ref()
            .map(|r| r.name.clone())
            .or_else(|| {
                s.user_name
                    .clone()
                    .map(|n| format!("{n} (nome no fornecedor)"))
            })
            .unwrap_or_else(|| "—".to_owned()),
        kwh: kwh(s.energy_kwh),
        peak: kwh(s.peak_kwh),
        offpeak: kwh(s.offpeak_kwh),
        peak_pieces: if s.peak_pieces.is_empty() {
            "sem ponta".to_owned()
        } else {
            s.peak_pieces
                .iter()
                .map(|p| {
                    format!(
                        "{} {}–{}",
                        p.date.format("%d/%m"),
                        time(p.start),
                        time(p.end)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        idle: crate::view::duration_pt_br(s.idle_seconds),
        tariff: tariff_label(s),
        energy: money(s.energy_cost),
        idle_fee: if s.idle_fee_capped {
            format!("{} (teto)", money(s.idle_fee))
        } else {
            money(s.idle_fee)
        },
        total: money(s.total),
    }
}

struct ApartmentQuery {
    version: Option<i64>,
}

fn apartment_query(raw: Option<&str>) -> Result<ApartmentQuery, ApiError> {
    let mut q = ApartmentQuery { version: None };
    for (k, v) in query_pairs(raw, &["version"])? {
        if k == "version" && !v.trim().is_empty() {
            q.version = Some(parse_version(&v, "version")?);
        }
    }
    Ok(q)
}

/// `GET /sites/{slug}/statements/{month}/apartments/{apartment}`.
pub async fn apartment_page(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month, segment)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (month, q) = match parse_month(&month, "month")
        .and_then(|m| apartment_query(raw.as_deref()).map(|q| (m, q)))
    {
        Ok(x) => x,
        Err(e) => return Ok(bad_page(e)),
    };
    let (statement, version) = match q.version {
        Some(_) => match chosen(&state, site, month, q.version).await? {
            Ok(s) => s,
            Err(page) => return Ok(page),
        },
        None => {
            let ms = MonthState::load(state.store(), site, month).await?;
            match ms.current() {
                Shown::Draft(d) => (d.clone(), None),
                Shown::Issued(i) => (i.statement.clone(), Some(i.version)),
            }
        }
    };
    let apartment = apartment_from_segment(&segment);
    let Some(line) = statement.line(apartment.as_deref()) else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            &format!(
                "{} não tem recargas no extrato de {}.",
                apartment.as_deref().unwrap_or(UNASSIGNED_LABEL),
                month_label(month)
            ),
        ));
    };
    let one = vetric_reports::charts::for_apartment(&statement, apartment.as_deref());
    let q = file_query(version);
    let page = ApartmentPage {
        user_email: NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        month_label: month_label(month),
        label: line.label().to_owned(),
        status: version.map_or_else(
            || "Rascunho (não emitido)".to_owned(),
            |v| format!("Versão {v}"),
        ),
        back_href: format!(
            "/sites/{}/statements?{}",
            site.slug,
            view_query(month, version)
        ),
        pdf_href: format!(
            "/sites/{}/statements/{month}/apartments/{}/pdf{q}",
            site.slug,
            apartment_segment(apartment.as_deref())
        ),
        residents: line
            .residents
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        sessions: line
            .session_details
            .iter()
            .map(|s| session_row(site, s))
            .collect(),
        totals: TotalsRow {
            sessions: line.sessions,
            kwh: kwh(line.kwh),
            peak: kwh(line.peak_kwh),
            offpeak: kwh(line.offpeak_kwh),
            energy: money(line.energy_cost),
            idle_min: minutes(line.idle_minutes),
            idle_fee: money(line.idle_fee),
            total: money(line.total),
        },
        chart_daily: vetric_reports::charts::daily_consumption(&one),
    };
    Ok(page.into_response())
}

/// `GET /sites/{slug}/statements/{month}/apartments/{apartment}/pdf` (`?version=N`; without
/// it, the draft).
pub async fn apartment_pdf(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month, segment)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (month, q) = match parse_month(&month, "month")
        .and_then(|m| apartment_query(raw.as_deref()).map(|q| (m, q)))
    {
        Ok(x) => x,
        Err(e) => return Ok(bad_page(e)),
    };
    let (statement, version) = match chosen(&state, site, month, q.version).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let apartment = apartment_from_segment(&segment);
    if statement.line(apartment.as_deref()).is_none() {
        return Err(PageError::not_found());
    }
    let bytes = vetric_reports::pdf::apartment_statement(
        &statement,
        apartment.as_deref(),
        &pdf_meta(version),
    )
    .map_err(|e| report_failed(&e))?;
    let name: String = apartment
        .as_deref()
        .unwrap_or(UNASSIGNED_SEGMENT)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(file_response(
        bytes,
        "application/pdf",
        &format!(
            "extrato-{}-{month}-{name}{}.pdf",
            site.slug,
            file_suffix(version)
        ),
    ))
}

// ------------------------------------------------------------------------ rejected rows

struct RejectedRow {
    vendor_id: i64,
    source: &'static str,
    line: String,
    charger: String,
    tag: String,
    start: String,
    stop: String,
    kwh: String,
    reason: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "statement_rejected.html")]
struct RejectedPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    month_label: String,
    status: String,
    back_href: String,
    rows: Vec<RejectedRow>,
    disagreements: Vec<String>,
}

fn source_label(s: vetric_domain::SessionSource) -> &'static str {
    match s {
        vetric_domain::SessionSource::Own => "registro do vetric",
        vetric_domain::SessionSource::Imported => "planilha importada",
    }
}

/// `GET /sites/{slug}/statements/{month}/rejeitadas` (`?version=N`).
pub async fn rejected_page(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (month, q) = match parse_month(&month, "month")
        .and_then(|m| apartment_query(raw.as_deref()).map(|q| (m, q)))
    {
        Ok(x) => x,
        Err(e) => return Ok(bad_page(e)),
    };
    let (statement, version) = match chosen(&state, site, month, q.version).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let rows = statement
        .rejected
        .iter()
        .map(|r| RejectedRow {
            vendor_id: r.vendor_id,
            source: source_label(r.source),
            line: r.line.map_or_else(|| "—".to_owned(), |l| l.to_string()),
            charger: r.charger.clone(),
            tag: r
                .tag
                .as_ref()
                .map_or_else(|| "—".to_owned(), |t| t.as_str().to_owned()),
            start: local_datetime(site, r.start),
            stop: local_datetime(site, r.stop),
            kwh: kwh(r.energy_kwh),
            reason: r.reason_pt_br.clone(),
        })
        .collect();
    let page = RejectedPage {
        user_email: NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "statements",
        month_label: month_label(month),
        status: version.map_or_else(|| "Rascunho".to_owned(), |v| format!("Versão {v}")),
        back_href: format!(
            "/sites/{}/statements?{}",
            site.slug,
            view_query(month, version)
        ),
        rows,
        disagreements: statement
            .disagreements
            .iter()
            .map(|d| d.message_pt_br.clone())
            .collect(),
    };
    Ok(page.into_response())
}

// ------------------------------------------------------------------------ API

fn version_item(emails: &HashMap<UserId, String>, v: &IssuedVersion) -> Value {
    json!({
        "version": v.version,
        "issued_at": v.issued_at,
        "issued_by": v.issued_by.map(|_| by_whom(emails, v.issued_by)),
        "total": v.total,
    })
}

fn statement_document(
    site: &SiteSettings,
    statement: &Statement,
    issued: Option<&IssuedStatement>,
    emails: &HashMap<UserId, String>,
) -> Result<Value, ApiError> {
    let mut doc = serde_json::to_value(statement).map_err(|e| ApiError::internal(&e))?;
    doc["site"] = json!(site.slug);
    doc["status"] = json!(if issued.is_some() { "issued" } else { "draft" });
    doc["version"] = json!(issued.map(|i| i.version));
    doc["issued_at"] = json!(issued.map(|i| i.issued_at));
    doc["issued_by"] =
        json!(issued.and_then(|i| i.issued_by.map(|_| by_whom(emails, i.issued_by))));
    Ok(doc)
}

/// `GET /api/v1/sites/{slug}/statements/{month}` (`?version=N`): the draft computed now, or
/// the issued version as frozen; `versions` lists every issued version and, for the draft,
/// `changes` how it differs per apartment from the latest one (`issuable` says whether
/// issuing would make a new version).
pub async fn api_get(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let month = parse_month(&month, "month")?;
    let mut version = None;
    for (k, v) in query_pairs(raw.as_deref(), &["version"])? {
        if k == "version" {
            version = Some(parse_version(&v, "version")?);
        }
    }
    let ms = MonthState::load(state.store(), site, month).await?;
    let emails = emails(state.store()).await?;
    let mut doc = match version {
        None => {
            let mut doc = statement_document(site, &ms.draft, None, &emails)?;
            doc["changes"] = json!(ms.changes());
            doc
        }
        Some(v) => {
            let Some(issued) = state
                .store()
                .issued_statement_version(site.id, month, v)
                .await?
            else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("o extrato de {month} não tem versão {v}"),
                )
                .field("version"));
            };
            statement_document(site, &issued.statement, Some(&issued), &emails)?
        }
    };
    doc["issuable"] = json!(ms.issuable());
    doc["versions"] = json!(
        ms.versions
            .iter()
            .map(|v| version_item(&emails, v))
            .collect::<Vec<_>>()
    );
    Ok(Json(json!({ "data": doc })).into_response())
}

/// `POST /api/v1/sites/{slug}/statements/{month}/issue` (`?expected_version=N`, the latest
/// version the caller saw, 0 for none): 201 with the issued version; 409 `nothing_changed`
/// when the draft equals the latest version, 409 `version_conflict` when `expected_version`
/// is out of date.
pub async fn api_issue(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, month)): Path<(String, String)>,
    peer: ClientAddr,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let month = parse_month(&month, "month")?;
    let mut expected = None;
    for (k, v) in query_pairs(raw.as_deref(), &["expected_version"])? {
        if k == "expected_version" {
            expected = Some(v.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(
                || {
                    ApiError::bad_request(
                        "invalid_parameter",
                        "expected_version",
                        "expected_version deve ser o número da última versão vista (0: nenhuma)",
                    )
                },
            )?);
        }
    }
    let ms = MonthState::load(state.store(), site, month).await?;
    match issue_month(&state, &user, &peer.0, site, month, &ms, expected).await? {
        IssueOutcome::Issued(issued) => {
            let emails = emails(state.store()).await?;
            let doc = statement_document(site, &issued.statement, Some(&issued), &emails)?;
            Ok((StatusCode::CREATED, Json(json!({ "data": doc }))).into_response())
        }
        IssueOutcome::NothingChanged { version } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_changed",
            format!("nada mudou desde a versão {version}; nenhuma versão nova foi emitida"),
        )),
        IssueOutcome::Stale { latest } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "version_conflict",
            format!("a última versão emitida é a {latest}; confira as diferenças e tente de novo"),
        )
        .field("expected_version")),
    }
}

/// Adds the statement routes to the OpenAPI document.
pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let month = json!({ "name": "month", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" }, "description": "YYYY-MM, the site's local month" });
    let statement = json!({ "type": "object", "description": "BILLING.md \"Output\": lines (one per apartment, plus \"sem morador\" with apartment null), totals, rejected, disagreements; amounts as strings with two decimals, energies with three",
        "properties": {
            "site": { "type": "string" },
            "month": { "type": "string" },
            "status": { "type": "string", "enum": ["draft", "issued"] },
            "version": { "type": ["integer", "null"] },
            "issued_at": { "type": ["string", "null"], "format": "date-time" },
            "issued_by": { "type": ["string", "null"] },
            "lines": { "type": "array", "items": { "type": "object" } },
            "totals": { "type": "object" },
            "rejected": { "type": "array", "items": { "type": "object" } },
            "disagreements": { "type": "array", "items": { "type": "object" } } } });
    let paths = &mut doc["paths"];
    paths["/api/v1/sites/{slug}/statements/{month}"] = json!({ "get": {
        "summary": "The month's statement: the draft computed now, or an issued version as frozen (?version=N)",
        "security": auth, "parameters": [slug, month,
            { "name": "version", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1 } }],
        "responses": {
            "200": { "description": "The statement, with `versions` (every issued version, newest first), `issuable` and, for the draft, `changes` (per-apartment differences from the latest version, null when none was issued)",
                "content": { "application/json": { "schema": { "type": "object", "properties": { "data": statement } } } } },
            "400": err("Bad month or version (`field` names it)"),
            "401": err("Not logged in"), "404": err("No such site, not yours, or no such version") } } });
    paths["/api/v1/sites/{slug}/statements/{month}/issue"] = json!({ "post": {
        "summary": "Issues the month's draft as its next version (admins and the site's managers); the announcements are enqueued with it",
        "security": auth, "parameters": [slug, month,
            { "name": "expected_version", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0 },
              "description": "The latest version the caller saw (0: none); refused with 409 when another was issued since" }],
        "responses": {
            "201": { "description": "Issued and audited", "content": { "application/json": { "schema": {
                "type": "object", "properties": { "data": statement } } } } },
            "400": err("Bad month or expected_version"),
            "401": err("Not logged in"), "404": err("No such site, or not yours"),
            "409": err("nothing_changed (the draft equals the latest version) or version_conflict") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteSettings {
        SiteSettings {
            id: vetric_store::SiteId(1),
            slug: "s".into(),
            name: "S".into(),
            timezone: chrono_tz::America::Sao_Paulo,
            poll_interval: std::time::Duration::from_secs(10),
            offline_after: std::time::Duration::from_secs(600),
        }
    }

    #[test]
    fn the_default_month_is_the_previous_local_one() {
        // 02:00 UTC on 1 November is still 31 October in São Paulo: the previous month is
        // September.
        let t: DateTime<Utc> = "2026-11-01T02:00:00Z".parse().unwrap();
        assert_eq!(previous_month(&site(), t).to_string(), "2026-09");
        let t: DateTime<Utc> = "2026-01-15T12:00:00Z".parse().unwrap();
        assert_eq!(previous_month(&site(), t).to_string(), "2025-12");
    }

    #[test]
    fn months_shift_across_years_and_read_in_portuguese() {
        let m = LocalMonth::new(2026, 1).unwrap();
        assert_eq!(shift_month(m, -1).unwrap().to_string(), "2025-12");
        assert_eq!(shift_month(m, 12).unwrap().to_string(), "2027-01");
        assert_eq!(month_label(m), "janeiro de 2026");
    }

    #[test]
    fn file_names_carry_the_month_and_format() {
        assert!(matches!(parse_file("2026-10.pdf"), Some((_, Format::Pdf))));
        assert!(matches!(
            parse_file("2026-10.xlsx"),
            Some((_, Format::Xlsx))
        ));
        assert!(parse_file("2026-13.csv").is_none());
        assert!(parse_file("2026-10.doc").is_none());
        assert!(parse_file("2026-10").is_none());
    }

    #[test]
    fn apartments_travel_in_one_path_segment() {
        assert_eq!(apartment_segment(Some("A-302")), "A-302");
        assert_eq!(apartment_segment(Some("Bloco A/12")), "Bloco%20A%2F12");
        assert_eq!(apartment_segment(None), UNASSIGNED_SEGMENT);
        assert_eq!(apartment_from_segment(UNASSIGNED_SEGMENT), None);
    }
}
