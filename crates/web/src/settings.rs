//! A site's settings and tariff (issue #4 "Site settings", issue #5 part 0, issue #8 part 1):
//!
//! * `/sites/{slug}/settings`: name, time zone, vendor account (base URL, e-mail, API key
//!   masked to its last 4 characters at most, never the password), poll interval, offline and
//!   heartbeat limits. Every site today comes from the config file, which is authoritative
//!   (DESIGN.md), so all of it is read-only and marked "definido no arquivo de configuração".
//!   Sites created in the UI (DESIGN.md allows them later) are not built yet.
//!   Admins and the site's managers may view it; anyone else gets the usual 404.
//! * "Testar conexão" (admins only): the one request path that calls the vendor (DESIGN.md
//!   rule 1), on the operator's explicit click. It runs [`vetric_cvepro::probe`] — the same code
//!   as `vetric cvepro check` — with a fresh client, short timeouts and a total limit
//!   ([`vetric_cvepro::probe::INTERACTIVE_TOTAL`]), one probe at a time per site (a second
//!   click while one runs is told so), and writes an audit row. The result is shown inline
//!   (htmx swaps the fragment; without JavaScript the whole page comes back).
//! * `/sites/{slug}/tariff`: the tariff in force today, the history of versions with their
//!   effective dates, source and author, and — when the config file does not declare the
//!   site's tariff — a form adding a version (effective date required), validated by the
//!   domain with each problem shown at its field, stored with its audit row in one
//!   transaction. Admins and the site's managers may add versions (managers run the site's
//!   billing day to day). A tariff declared in the config is read-only here.
//! * API twins: `GET`/`POST /api/v1/sites/{slug}/tariffs`, `POST /api/v1/sites/{slug}/vendor/test`.

use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit, local_datetime, parse_date};
use crate::input::JsonObject;
use crate::pages::error_page;
use crate::residents::FieldErrors;
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc, Weekday};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vetric_cvepro::CveProConfig;
use vetric_cvepro::probe::{self, ProbeReport};
use vetric_domain::{RawNumber, Secret, Tariff, TariffProblem, TariffSpec};
use vetric_store::{Role, SiteId, StoreError, TariffSource, TariffVersionRow};

/// The marker DESIGN.md asks for on settings the config file owns.
pub const FROM_CONFIG: &str = "definido no arquivo de configuração";

/// A site's vendor account as configured (secrets stay in [`Secret`]).
#[derive(Debug, Clone)]
pub struct VendorAccount {
    pub base_url: url::Url,
    pub email: String,
    pub api_key: Secret,
    pub password: Secret,
}

/// What the config file says about a site beyond [`SiteSettings`]: shown on the settings page
/// and used by "Testar conexão".
#[derive(Debug, Clone)]
pub struct SiteConfigured {
    pub site: SiteId,
    /// A charger whose heartbeat is older than this is shown offline.
    pub heartbeat_offline_after: Duration,
    pub vendor: Option<VendorAccount>,
    /// `[sites.tariff]` is declared: the tariff page is read-only.
    pub tariff_in_config: bool,
}

/// The settings side of [`AppState`]: the configured extras and the probes running now.
#[derive(Default)]
pub struct SettingsState {
    sites: Vec<SiteConfigured>,
    probe_total: Option<Duration>,
    running: Arc<Mutex<HashSet<SiteId>>>,
}

impl AppState {
    /// Sets what the config file says about each site (vendor account, limits, whether the
    /// tariff is declared). Call it on a fresh state, before it is cloned into the router.
    pub fn with_site_config(self, sites: Vec<SiteConfigured>) -> Self {
        self.configure("with_site_config", |inner| inner.settings.sites = sites)
    }

    /// Overrides the total time of one "Testar conexão" (tests use a short one).
    pub fn with_probe_timeout(self, total: Duration) -> Self {
        self.configure("with_probe_timeout", |inner| {
            inner.settings.probe_total = Some(total)
        })
    }

    fn configured(&self, site: SiteId) -> Option<&SiteConfigured> {
        self.0.settings.sites.iter().find(|c| c.site == site)
    }

    fn probe_total(&self) -> Duration {
        self.0
            .settings
            .probe_total
            .unwrap_or(probe::INTERACTIVE_TOTAL)
    }
}

/// The right to run the one probe of a site; released on drop (also when the request is
/// abandoned mid-probe, so a closed tab never blocks the button).
pub struct ProbeSlot {
    running: Arc<Mutex<HashSet<SiteId>>>,
    site: SiteId,
}

impl ProbeSlot {
    /// `None` while another probe of `site` runs.
    pub fn try_acquire(running: &Arc<Mutex<HashSet<SiteId>>>, site: SiteId) -> Option<Self> {
        // A poisoned set only means a panic elsewhere while holding it; its content is intact.
        let mut set = running.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(site).then(|| Self {
            running: running.clone(),
            site,
        })
    }
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        let mut set = self.running.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.site);
    }
}

// ------------------------------------------------------------------------ formatting

/// A decimal (as its `Display`, `-?digits[.digits]`) in pt-BR: `1.234,5` with at least
/// `min_dp` decimals.
pub fn pt_decimal(d: impl Display, min_dp: usize) -> String {
    let s = d.to_string();
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => ("-", b.to_owned()),
        None => ("", s),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i.to_owned(), f.to_owned()),
        None => (body, String::new()),
    };
    let mut frac = frac;
    while frac.len() < min_dp {
        frac.push('0');
    }
    let digits: Vec<char> = int_part.chars().collect();
    let mut grouped = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(*c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

/// `R$ 3,08` (at least 2 decimals; unit prices keep their up to 4).
pub fn brl(d: impl Display) -> String {
    format!("R$ {}", pt_decimal(d, 2))
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// The API key as it may be shown: its last 4 characters, and only when the key is long
/// enough that 4 characters give nothing useful away.
pub fn masked_key(key: &Secret) -> String {
    let chars: Vec<char> = key.expose().chars().collect();
    if chars.len() >= 12 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("••••••••{tail}")
    } else {
        "••••••••".to_owned()
    }
}

const WEEKDAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Mon, "mon", "seg"),
    (Weekday::Tue, "tue", "ter"),
    (Weekday::Wed, "wed", "qua"),
    (Weekday::Thu, "thu", "qui"),
    (Weekday::Fri, "fri", "sex"),
    (Weekday::Sat, "sat", "sáb"),
    (Weekday::Sun, "sun", "dom"),
];

fn weekday_label(w: Weekday) -> &'static str {
    WEEKDAYS
        .iter()
        .find(|(d, _, _)| *d == w)
        .map_or("?", |(_, _, l)| l)
}

fn br_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

// ------------------------------------------------------------------------ settings page

struct VendorView {
    base_url: String,
    email: String,
    api_key: String,
}

/// The outcome of "Testar conexão", as shown (pt-BR).
pub struct ProbeView {
    ok: bool,
    title: String,
    details: Vec<String>,
    hint: String,
    quirks: Vec<String>,
    technical: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    from_config: &'static str,
    timezone: String,
    poll_interval: String,
    offline_after: String,
    heartbeat_after: String,
    vendor: Option<VendorView>,
    admin: bool,
    result: Option<ProbeView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/vendor_test.html")]
struct ProbeFragment {
    result: Option<ProbeView>,
}

fn settings_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    result: Option<ProbeView>,
) -> SettingsPage {
    let configured = state.configured(site.id);
    SettingsPage {
        user_email: NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "settings",
        from_config: FROM_CONFIG,
        timezone: site.timezone.name().to_owned(),
        poll_interval: human_duration(site.poll_interval),
        offline_after: human_duration(site.offline_after),
        heartbeat_after: configured
            .map(|c| human_duration(c.heartbeat_offline_after))
            .unwrap_or_else(|| "—".to_owned()),
        vendor: configured
            .and_then(|c| c.vendor.as_ref())
            .map(|v| VendorView {
                base_url: v.base_url.to_string(),
                email: v.email.clone(),
                api_key: masked_key(&v.api_key),
            }),
        admin: user.role == Role::Admin,
        result,
    }
}

/// `GET /sites/{slug}/settings`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    Ok(settings_page(&state, &user, site, None).into_response())
}

/// pt-BR words for a probe failure kind: what happened and what to check.
fn failure_words(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "tenant_not_found" => (
            "o fornecedor não reconhece esta chave de API neste endereço",
            "Confira api_key e base_url em [sites.cvepro] (produção: \
             https://cs.intelbras-cve-pro.com.br).",
        ),
        "bad_credentials" => (
            "e-mail ou senha da conta recusados pelo fornecedor",
            "Confira email e password em [sites.cvepro]; experimente entrar com eles no painel \
             CVE-Pro.",
        ),
        "unauthorized" => (
            "o fornecedor recusou o acesso mesmo após um novo login",
            "A conta pode não ter permissão de API: peça ao suporte Intelbras para liberá-la.",
        ),
        "vendor_unavailable" => (
            "o fornecedor está fora do ar (erro HTTP 5xx)",
            "A falha é do lado do fornecedor; o vetric continua tentando sozinho e mostra os \
             últimos dados com a idade. Tente o teste de novo em alguns minutos.",
        ),
        "timeout" => (
            "o fornecedor não respondeu a tempo",
            "Pode ser lentidão passageira: tente de novo. Se persistir, verifique a rede e o \
             firewall entre o servidor do vetric e o fornecedor.",
        ),
        "network" => (
            "não foi possível conectar ao fornecedor",
            "Verifique base_url, o DNS, o firewall e o proxy do servidor do vetric.",
        ),
        "rate_limited" => (
            "o fornecedor limitou as requisições (HTTP 429)",
            "Aguarde um minuto e tente de novo.",
        ),
        "client_error" => (
            "o fornecedor recusou a requisição",
            "Confira base_url (o endereço e o caminho da API).",
        ),
        "shape_changed" => (
            "a resposta do fornecedor mudou de formato",
            "O vetric precisa ser atualizado para o novo formato: envie a mensagem técnica \
             abaixo ao suporte do vetric.",
        ),
        "malformed_body" => (
            "o fornecedor respondeu algo que não é JSON",
            "Pode ser a página de erro de um proxy: confira base_url.",
        ),
        _ => (
            "a conexão com o fornecedor falhou",
            "Tente de novo em alguns minutos; se persistir, veja a mensagem técnica abaixo.",
        ),
    }
}

fn probe_view(report: &ProbeReport) -> ProbeView {
    match &report.error {
        None => {
            let connectors: usize = report.chargers.iter().map(|c| c.connectors.len()).sum();
            let n = report.chargers.len();
            ProbeView {
                ok: true,
                title: format!(
                    "Conexão OK: {n} {} ({connectors} {}).",
                    if n == 1 { "carregador" } else { "carregadores" },
                    if connectors == 1 {
                        "conector"
                    } else {
                        "conectores"
                    }
                ),
                details: vec![
                    format!(
                        "Sessões em andamento: {} (de {} transações na janela lida).",
                        report.active_sessions.len(),
                        report.transactions_in_window
                    ),
                    format!(
                        "Diferença de fuso das transações: {:+} h (0 = horários em UTC).",
                        report.transaction_offset_hours
                    ),
                ],
                hint: String::new(),
                quirks: report.quirks.clone(),
                technical: String::new(),
            }
        }
        Some(e) => {
            let (what, hint) = failure_words(e.kind);
            ProbeView {
                ok: false,
                title: format!("Falha na conexão: {what}."),
                details: vec![format!("Tipo da falha: {}.", e.kind)],
                hint: hint.to_owned(),
                quirks: Vec::new(),
                technical: e.message.clone(),
            }
        }
    }
}

fn notice_view(ok: bool, title: &str) -> ProbeView {
    ProbeView {
        ok,
        title: title.to_owned(),
        details: Vec::new(),
        hint: String::new(),
        quirks: Vec::new(),
        technical: String::new(),
    }
}

const BUSY: &str =
    "Um teste de conexão deste condomínio já está em andamento; aguarde o resultado.";
const NO_ACCOUNT: &str =
    "Este condomínio não tem conta do fornecedor configurada ([sites.cvepro]); nada a testar.";

/// What a "Testar conexão" ended in.
enum ProbeOutcome {
    Done(Box<ProbeReport>),
    Busy,
    NoAccount,
}

/// Runs the probe of `site` for `user` (an admin), one at a time per site, and audits it.
async fn run_probe(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
) -> Result<ProbeOutcome, ApiError> {
    let Some(vendor) = state.configured(site.id).and_then(|c| c.vendor.clone()) else {
        return Ok(ProbeOutcome::NoAccount);
    };
    let Some(_slot) = ProbeSlot::try_acquire(&state.0.settings.running, site.id) else {
        return Ok(ProbeOutcome::Busy);
    };
    let config = probe::interactive(CveProConfig::new(
        vendor.base_url,
        vendor.api_key,
        vendor.email,
        vendor.password,
    ));
    let report = probe::probe(config, Utc::now(), Some(state.probe_total()))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let entry = audit(user, ip, "vendor_test", format!("site:{}", site.slug)).with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "ok": report.ok,
        "kind": report.error.as_ref().map(|e| e.kind),
        "chargers": report.chargers.len(),
    }));
    state.store().append_audit(&entry).await?;
    Ok(ProbeOutcome::Done(Box::new(report)))
}

/// `POST /sites/{slug}/settings/vendor-test` (admins): the result inline — the fragment for
/// htmx, the whole page otherwise.
pub async fn vendor_test_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    if user.role != Role::Admin {
        return Ok(error_page(StatusCode::NOT_FOUND, "Página não encontrada."));
    }
    let view = match run_probe(&state, &user, &peer.0, site).await {
        Ok(ProbeOutcome::Done(report)) => probe_view(&report),
        Ok(ProbeOutcome::Busy) => notice_view(false, BUSY),
        Ok(ProbeOutcome::NoAccount) => notice_view(false, NO_ACCOUNT),
        Err(e) => {
            return Err(PageError {
                status: e.status,
                message: e.message,
            });
        }
    };
    if headers.contains_key("hx-request") {
        Ok(ProbeFragment { result: Some(view) }.into_response())
    } else {
        Ok(settings_page(&state, &user, site, Some(view)).into_response())
    }
}

/// `POST /api/v1/sites/{slug}/vendor/test` (admins; 404 for anyone else): the probe report as
/// `vetric cvepro check --json` prints it, plus `message` and `hint` in pt-BR. 409 while
/// another probe of the site runs, or when the site has no vendor account.
pub async fn api_vendor_test(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    if user.role != Role::Admin {
        return Err(ApiError::not_found());
    }
    match run_probe(&state, &user, &peer.0, site).await? {
        ProbeOutcome::Done(report) => {
            let view = probe_view(&report);
            let mut data = serde_json::to_value(&*report).map_err(|e| ApiError::internal(&e))?;
            data["message"] = json!(view.title);
            data["hint"] = json!(view.hint);
            Ok(Json(json!({ "data": data })).into_response())
        }
        ProbeOutcome::Busy => Err(ApiError::new(StatusCode::CONFLICT, "probe_running", BUSY)),
        ProbeOutcome::NoAccount => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_vendor_account",
            NO_ACCOUNT,
        )),
    }
}

// ------------------------------------------------------------------------ tariff page

struct TariffView {
    effective_from: String,
    peak_price: String,
    offpeak_price: String,
    window: String,
    weekdays: String,
    holidays: String,
    idle_grace: String,
    idle_fee: String,
    idle_cap: String,
    max_kwh: String,
}

fn tariff_view(t: &Tariff) -> TariffView {
    let weekdays = t.peak_weekdays();
    let holidays: Vec<String> = t.site_holidays().iter().map(|d| br_date(*d)).collect();
    TariffView {
        effective_from: t.effective_from().map_or_else(
            || "sem data (vale para todas as sessões)".to_owned(),
            br_date,
        ),
        peak_price: format!("{}/kWh", brl(t.peak_price())),
        offpeak_price: format!("{}/kWh", brl(t.offpeak_price())),
        window: format!("{} às {}", t.peak_start(), t.peak_end()),
        weekdays: if weekdays.is_empty() {
            "nenhum (tarifa única, sem ponta)".to_owned()
        } else {
            weekdays
                .iter()
                .map(|w| weekday_label(*w))
                .collect::<Vec<_>>()
                .join(", ")
        },
        holidays: if holidays.is_empty() {
            "feriados nacionais".to_owned()
        } else {
            format!("feriados nacionais e {}", holidays.join(", "))
        },
        idle_grace: format!("{} min", t.idle_grace_min()),
        idle_fee: format!("{}/min", brl(t.idle_fee_per_min())),
        idle_cap: t.idle_fee_cap().map_or_else(|| "sem teto".to_owned(), brl),
        max_kwh: format!("{} kWh", pt_decimal(t.max_kwh(), 0)),
    }
}

struct VersionLine {
    effective_from: String,
    prices: String,
    source: &'static str,
    created_at: String,
    created_by: String,
    replaced: bool,
}

/// What the tariff form holds (raw text, as typed).
#[derive(Default, Clone)]
pub struct TariffForm {
    pub effective_from: String,
    pub peak_price: String,
    pub offpeak_price: String,
    pub peak_start: String,
    pub peak_end: String,
    /// `mon`…`sun` checked.
    pub weekdays: Vec<String>,
    pub holidays: String,
    pub idle_grace_min: String,
    pub idle_fee_per_min: String,
    pub idle_fee_cap: String,
    pub max_kwh: String,
}

struct WeekdayBox {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "tariff.html")]
struct TariffPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    from_config: &'static str,
    in_config: bool,
    current: Option<TariffView>,
    today: String,
    versions: Vec<VersionLine>,
    f: TariffForm,
    weekday_boxes: Vec<WeekdayBox>,
    notice: Option<String>,
    errors: FieldErrors,
}

impl TariffPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// The form prefilled from `t` (numbers with a decimal comma, as people type them here).
fn form_of(t: Option<&Tariff>) -> TariffForm {
    let comma = |d: &dyn Display| d.to_string().replace('.', ",");
    match t {
        None => TariffForm {
            peak_start: "17:30".into(),
            peak_end: "20:30".into(),
            weekdays: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            idle_grace_min: "15".into(),
            ..TariffForm::default()
        },
        Some(t) => TariffForm {
            effective_from: String::new(),
            peak_price: comma(&t.peak_price()),
            offpeak_price: comma(&t.offpeak_price()),
            peak_start: t.peak_start(),
            peak_end: t.peak_end(),
            weekdays: t
                .peak_weekdays()
                .iter()
                .filter_map(|w| WEEKDAYS.iter().find(|(d, _, _)| d == w))
                .map(|(_, v, _)| (*v).to_owned())
                .collect(),
            holidays: t
                .site_holidays()
                .iter()
                .map(|d| br_date(*d))
                .collect::<Vec<_>>()
                .join("\n"),
            idle_grace_min: t.idle_grace_min().to_string(),
            idle_fee_per_min: comma(&t.idle_fee_per_min()),
            idle_fee_cap: t.idle_fee_cap().map(|c| comma(&c)).unwrap_or_default(),
            max_kwh: comma(&t.max_kwh()),
        },
    }
}

fn version_line(site: &SiteSettings, v: &TariffVersionRow) -> VersionLine {
    VersionLine {
        effective_from: v
            .effective_from()
            .map_or_else(|| "sem data".to_owned(), br_date),
        prices: format!(
            "ponta {} · fora de ponta {}",
            brl(v.tariff.peak_price()),
            brl(v.tariff.offpeak_price())
        ),
        source: match v.source {
            TariffSource::Config => "arquivo de configuração",
            TariffSource::Ui => "página de tarifa",
        },
        created_at: local_datetime(site, v.created_at),
        created_by: v.created_by_email.clone().unwrap_or_else(|| "—".to_owned()),
        replaced: v.replaced,
    }
}

fn in_config(state: &AppState, site: &SiteSettings) -> bool {
    state
        .configured(site.id)
        .is_some_and(|c| c.tariff_in_config)
}

async fn tariff_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    form: Option<TariffForm>,
    notice: Option<String>,
    errors: FieldErrors,
) -> Result<TariffPage, StoreError> {
    let versions = state.store().tariff_versions(site.id).await?;
    let history = state.store().tariff_history(site.id).await?;
    let today = Utc::now().with_timezone(&site.timezone).date_naive();
    let current = history.in_force_at(today);
    let f = form.unwrap_or_else(|| form_of(current));
    let weekday_boxes = WEEKDAYS
        .iter()
        .map(|(_, value, label)| WeekdayBox {
            value,
            label,
            checked: f.weekdays.iter().any(|w| w == value),
        })
        .collect();
    Ok(TariffPage {
        user_email: NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "tariff",
        from_config: FROM_CONFIG,
        in_config: in_config(state, site),
        current: current.map(tariff_view),
        today: br_date(today),
        versions: versions.iter().map(|v| version_line(site, v)).collect(),
        f,
        weekday_boxes,
        notice,
        errors,
    })
}

/// `GET /sites/{slug}/tariff`.
pub async fn tariff(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let saved = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .any(|(k, _)| k == "salvo");
    let notice = saved.then(|| "Nova versão da tarifa registrada.".to_owned());
    Ok(
        tariff_page(&state, &user, site, None, notice, FieldErrors::new())
            .await?
            .into_response(),
    )
}

/// A number as typed on the page: `3,08` is read as `3.08` (a single decimal comma is how
/// people write it here); anything else goes to the domain as is, to be judged there.
fn form_number(v: &str) -> Option<RawNumber> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let v = if v.matches(',').count() == 1 && !v.contains('.') {
        v.replace(',', ".")
    } else {
        v.to_owned()
    };
    Some(RawNumber::Text(v))
}

/// A date as typed (`AAAA-MM-DD` or `dd/mm/aaaa`) in the spec's form; unreadable text is kept
/// for the domain to report.
fn form_date(v: &str) -> String {
    parse_date(v).map_or_else(|| v.trim().to_owned(), |d| d.format("%Y-%m-%d").to_string())
}

fn opt_text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

impl TariffForm {
    fn spec(&self) -> TariffSpec {
        TariffSpec {
            effective_from: opt_text(&self.effective_from).map(|d| form_date(&d)),
            peak_price: form_number(&self.peak_price),
            offpeak_price: form_number(&self.offpeak_price),
            peak_start: opt_text(&self.peak_start),
            peak_end: opt_text(&self.peak_end),
            peak_weekdays: Some(self.weekdays.clone()),
            holidays: Some(
                self.holidays
                    .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(form_date)
                    .collect(),
            ),
            idle_grace_min: form_number(&self.idle_grace_min),
            idle_fee_per_min: form_number(&self.idle_fee_per_min),
            idle_fee_cap: form_number(&self.idle_fee_cap),
            max_kwh: form_number(&self.max_kwh),
        }
    }
}

fn problems_to_errors(problems: Vec<TariffProblem>) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for p in problems {
        match errors.iter_mut().find(|(f, _)| *f == p.field) {
            Some((_, m)) => {
                m.push_str("; ");
                m.push_str(&p.message_pt_br);
            }
            None => errors.push((p.field, p.message_pt_br)),
        }
    }
    errors
}

/// Validates a version made on the page or the API: the domain's checks, plus a required
/// effective date (a version added here always starts somewhere; only the config file may
/// declare an undated tariff).
fn check_version(spec: &TariffSpec) -> Result<Tariff, FieldErrors> {
    let mut errors = match spec.validate() {
        Ok(t) if spec.effective_from.is_some() => return Ok(t),
        Ok(_) => FieldErrors::new(),
        Err(problems) => problems_to_errors(problems),
    };
    if spec.effective_from.is_none() {
        errors.insert(
            0,
            (
                "effective_from".to_owned(),
                "informe a data a partir da qual a tarifa vale".to_owned(),
            ),
        );
    }
    Err(errors)
}

async fn store_version(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    tariff: &Tariff,
) -> Result<i64, StoreError> {
    let entry = audit(user, ip, "tariff_add", format!("site:{}", site.slug)).with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "effective_from": tariff.effective_from(),
        "tariff": tariff.to_spec(),
    }));
    state.store().add_tariff(site.id, tariff, &entry).await
}

const IN_CONFIG: &str = "A tarifa deste condomínio é definida no arquivo de configuração; altere-a \
     lá (em [sites.tariff]) e reinicie o vetric.";

/// `POST /sites/{slug}/tariff`: adds a version.
pub async fn tariff_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    if in_config(&state, site) {
        return Ok(error_page(StatusCode::CONFLICT, IN_CONFIG));
    }
    let f = TariffForm {
        effective_from: form.get("effective_from"),
        peak_price: form.get("peak_price"),
        offpeak_price: form.get("offpeak_price"),
        peak_start: form.get("peak_start"),
        peak_end: form.get("peak_end"),
        weekdays: form
            .0
            .iter()
            .filter(|(k, _)| k == "peak_weekdays")
            .map(|(_, v)| v.trim().to_owned())
            .collect(),
        holidays: form.get("holidays"),
        idle_grace_min: form.get("idle_grace_min"),
        idle_fee_per_min: form.get("idle_fee_per_min"),
        idle_fee_cap: form.get("idle_fee_cap"),
        max_kwh: form.get("max_kwh"),
    };
    match check_version(&f.spec()) {
        Ok(t) => {
            store_version(&state, &user, &peer.0, site, &t).await?;
            Ok(Redirect::to(&format!("/sites/{}/tariff?salvo=1", site.slug)).into_response())
        }
        Err(errors) => {
            let page = tariff_page(&state, &user, site, Some(f), None, errors).await?;
            let mut res = page.into_response();
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(res)
        }
    }
}

fn version_item(v: &TariffVersionRow) -> Value {
    json!({
        "id": v.id,
        "effective_from": v.effective_from(),
        "source": v.source,
        "created_at": v.created_at,
        "created_by": v.created_by_email,
        "replaced": v.replaced,
        "tariff": v.tariff.to_spec(),
    })
}

/// `GET /api/v1/sites/{slug}/tariffs`: every version, newest first; `in_config` says whether
/// the config file declares the tariff (then POST is refused); `current` is the one in force
/// today in the site's zone.
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let versions = state.store().tariff_versions(site.id).await?;
    let history = state.store().tariff_history(site.id).await?;
    let today = Utc::now().with_timezone(&site.timezone).date_naive();
    let current = history.in_force_at(today).map(Tariff::to_spec);
    Ok(Json(json!({
        "data": versions.iter().map(version_item).collect::<Vec<_>>(),
        "in_config": in_config(&state, site),
        "current": current,
    }))
    .into_response())
}

fn api_text(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(crate::forms::invalid(
            name,
            format!("{name} deve ser um texto"),
        )),
    }
}

fn api_number(body: &Map<String, Value>, name: &str) -> Result<Option<RawNumber>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(RawNumber::Text(s.clone()))),
        Some(Value::Number(n)) => Ok(Some(match n.as_i64() {
            Some(i) => RawNumber::Integer(i),
            None => RawNumber::Float(n.as_f64().unwrap_or(f64::NAN)),
        })),
        Some(_) => Err(crate::forms::invalid(
            name,
            format!("{name} deve ser um número escrito como texto, por exemplo \"3.08\""),
        )),
    }
}

fn api_list_of(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(crate::forms::invalid(
                    &format!("{name}[{i}]"),
                    format!("{name}[{i}] deve ser um texto"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(crate::forms::invalid(
            name,
            format!("{name} deve ser uma lista de textos"),
        )),
    }
}

/// `POST /api/v1/sites/{slug}/tariffs`: the keys of `[sites.tariff]` (BILLING.md), with
/// `effective_from` required → 201 with the stored version. 422 naming the field at fault
/// (every problem in `message`), 409 when the config file declares the tariff.
pub async fn api_add(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    if in_config(&state, site) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tariff_in_config",
            IN_CONFIG,
        ));
    }
    if let Some(k) = body
        .keys()
        .find(|k| !TariffSpec::FIELDS.contains(&k.as_str()))
    {
        return Err(crate::forms::invalid(
            k,
            format!(
                "campo desconhecido {k}; aceitos: {}",
                TariffSpec::FIELDS.join(", ")
            ),
        ));
    }
    let spec = TariffSpec {
        effective_from: api_text(&body, "effective_from")?,
        peak_price: api_number(&body, "peak_price")?,
        offpeak_price: api_number(&body, "offpeak_price")?,
        peak_start: api_text(&body, "peak_start")?,
        peak_end: api_text(&body, "peak_end")?,
        peak_weekdays: api_list_of(&body, "peak_weekdays")?,
        holidays: api_list_of(&body, "holidays")?,
        idle_grace_min: api_number(&body, "idle_grace_min")?,
        idle_fee_per_min: api_number(&body, "idle_fee_per_min")?,
        idle_fee_cap: api_number(&body, "idle_fee_cap")?,
        max_kwh: api_number(&body, "max_kwh")?,
    };
    let tariff = match check_version(&spec) {
        Ok(t) => t,
        Err(errors) => {
            let message = errors
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(crate::forms::invalid(&errors[0].0, message));
        }
    };
    let id = store_version(&state, &user, &peer.0, site, &tariff).await?;
    let versions = state.store().tariff_versions(site.id).await?;
    let item = versions
        .iter()
        .find(|v| v.id == id)
        .map(version_item)
        .ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, Json(json!({ "data": item }))).into_response())
}

/// Adds the settings and tariff routes to the OpenAPI document.
pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let text = json!({ "type": "string" });
    let spec = json!({ "type": "object", "description": "The keys of [sites.tariff] (BILLING.md); numbers as strings with a dot",
        "properties": {
            "effective_from": { "type": "string", "format": "date", "description": "YYYY-MM-DD, site's zone; required in POST" },
            "peak_price": text, "offpeak_price": text,
            "peak_start": { "type": "string", "description": "HH:MM, default 17:30" },
            "peak_end": { "type": "string", "description": "HH:MM (exclusive), default 20:30" },
            "peak_weekdays": { "type": "array", "items": { "type": "string", "enum": ["mon","tue","wed","thu","fri","sat","sun"] } },
            "holidays": { "type": "array", "items": { "type": "string", "format": "date" } },
            "idle_grace_min": { "type": ["integer", "string"] },
            "idle_fee_per_min": text, "idle_fee_cap": { "type": ["string", "null"] }, "max_kwh": text } });
    let version = json!({ "type": "object", "properties": {
        "id": { "type": "integer" },
        "effective_from": { "type": ["string", "null"], "format": "date" },
        "source": { "type": "string", "enum": ["config", "ui"] },
        "created_at": { "type": "string", "format": "date-time" },
        "created_by": { "type": ["string", "null"] },
        "replaced": { "type": "boolean", "description": "a newer version has the same effective date" },
        "tariff": spec } });
    let paths = &mut doc["paths"];
    paths["/api/v1/sites/{slug}/tariffs"] = json!({
        "get": {
            "summary": "The site's tariff versions, newest first, and the one in force today",
            "security": auth, "parameters": [slug],
            "responses": {
                "200": { "description": "Versions", "content": { "application/json": { "schema": {
                    "type": "object", "properties": {
                        "data": { "type": "array", "items": version },
                        "in_config": { "type": "boolean" },
                        "current": spec } } } } },
                "401": err("Not logged in"), "404": err("No such site, or not yours") } },
        "post": {
            "summary": "Adds a tariff version (admins and the site's managers; refused when the config file declares the tariff)",
            "security": auth, "parameters": [slug],
            "requestBody": { "required": true, "content": { "application/json": { "schema": spec } } },
            "responses": {
                "201": { "description": "Stored and audited", "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "data": version } } } } },
                "401": err("Not logged in"), "404": err("No such site, or not yours"),
                "409": err("The tariff is declared in the config file"),
                "413": err("Body too large"),
                "422": err("A bad field (`field` names the first; `message` lists every problem)") } } });
    paths["/api/v1/sites/{slug}/vendor/test"] = json!({ "post": {
        "summary": "Probes the site's vendor account once (the same probe as `vetric cvepro check`; admins only, 404 for anyone else; 10 s at most)",
        "security": auth, "parameters": [slug],
        "responses": {
            "200": { "description": "The probe report (`ok`, `error` {kind, message, hint}, chargers, quirks…) with pt-BR `message` and `hint`",
                "content": { "application/json": { "schema": { "type": "object" } } } },
            "401": err("Not logged in"), "404": err("No such site, or not an admin"),
            "409": err("A probe of this site is already running, or the site has no vendor account") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_pt_br() {
        assert_eq!(brl("3.08"), "R$ 3,08");
        assert_eq!(brl("0.1"), "R$ 0,10");
        assert_eq!(brl("0.1234"), "R$ 0,1234");
        assert_eq!(brl("1000000"), "R$ 1.000.000,00");
        assert_eq!(pt_decimal("150", 0), "150");
        assert_eq!(pt_decimal("1234.5", 0), "1.234,5");
        assert_eq!(pt_decimal("-12", 2), "-12,00");
    }

    #[test]
    fn api_keys_show_four_characters_at_most() {
        assert_eq!(masked_key(&Secret::new("abcdefgh12345678")), "••••••••5678");
        assert_eq!(masked_key(&Secret::new("short")), "••••••••");
    }

    #[test]
    fn one_probe_per_site_at_a_time() {
        let running = Arc::new(Mutex::new(HashSet::new()));
        let first = ProbeSlot::try_acquire(&running, SiteId(1));
        assert!(first.is_some());
        assert!(ProbeSlot::try_acquire(&running, SiteId(1)).is_none());
        assert!(ProbeSlot::try_acquire(&running, SiteId(2)).is_some());
        drop(first);
        assert!(ProbeSlot::try_acquire(&running, SiteId(1)).is_some());
    }

    #[test]
    fn the_form_reads_decimal_commas_and_both_date_spellings() {
        let f = TariffForm {
            effective_from: "01/03/2026".into(),
            peak_price: "3,08".into(),
            offpeak_price: "0.53".into(),
            weekdays: vec!["mon".into()],
            holidays: "03/04/2026, 2026-04-21".into(),
            idle_fee_per_min: "0,10".into(),
            max_kwh: "150".into(),
            ..TariffForm::default()
        };
        let t = check_version(&f.spec()).unwrap();
        assert_eq!(t.peak_price().to_string(), "3.08");
        assert_eq!(t.site_holidays().len(), 2);
        assert_eq!(t.effective_from(), NaiveDate::from_ymd_opt(2026, 3, 1));
        let errors = check_version(&TariffForm::default().spec()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "effective_from",
                "peak_price",
                "offpeak_price",
                "idle_fee_per_min",
                "max_kwh"
            ]
        );
    }
}
