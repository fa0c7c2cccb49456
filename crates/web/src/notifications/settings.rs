//! `/sites/{slug}/notifications/settings`: what the site's notifications go through and say.
//!
//! * The WhatsApp gateway as the config file declares it (`[sites.whatsapp]`): shown read-only,
//!   API key masked. "Verificar conexão" (admins) asks the gateway its connection state once,
//!   with short timeouts; "Enviar mensagem de teste" (admins) enqueues one outbox row of rule
//!   `test` — it is sent by the dispatcher like any other message, so it is logged, retried and
//!   never doubled (the form carries a one-time key: a double click enqueues one row).
//! * The policy (admins and the site's managers): each rule on or off, its delay and its
//!   template (checked at the field, an unknown placeholder named; live preview with sample
//!   data; "Restaurar texto padrão"), and the timings, validated by
//!   [`NotificationPolicy::validate`] against the idle grace of the tariff in force today, and
//!   stored with its audit row in one transaction. API twins:
//!   `GET`/`PUT /api/v1/sites/{slug}/notification-policy`, `POST …/notifications/test`.

use super::api_invalid;
use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit, local_datetime};
use crate::input::JsonObject;
use crate::pages::error_page;
use crate::residents::{FieldErrors, phone_message};
use crate::settings::{FROM_CONFIG, masked_key};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use vetric_domain::notify::{
    Audience, NotificationPolicy, PlanContext, Rule, RuleSettings, default_template,
    plan_operator_alert_for_site, preview,
};
use vetric_domain::{PhoneNumber, Secret};
use vetric_evolution::{ConnectionState, EvolutionClient, EvolutionConfig, EvolutionError};
use vetric_store::{NewNotification, Role, SiteId, StoreError};

/// A site's WhatsApp gateway as configured (`[sites.whatsapp]`).
#[derive(Debug, Clone)]
pub struct SiteGateway {
    pub site: SiteId,
    pub base_url: url::Url,
    pub instance: String,
    pub api_key: Secret,
}

/// The notification side of [`AppState`]: the configured gateways.
#[derive(Default)]
pub struct NotifyState {
    gateways: Vec<SiteGateway>,
    check_timeout: Option<Duration>,
}

/// Total time of one "Verificar conexão" unless overridden.
const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

impl AppState {
    /// Sets each site's WhatsApp gateway (from the config file). Call it on a fresh state,
    /// before it is cloned into the router.
    pub fn with_gateways(self, gateways: Vec<SiteGateway>) -> Self {
        self.configure("with_gateways", |inner| inner.notify.gateways = gateways)
    }

    /// Overrides the time limit of "Verificar conexão" (tests use a short one).
    pub fn with_gateway_check_timeout(self, total: Duration) -> Self {
        self.configure("with_gateway_check_timeout", |inner| {
            inner.notify.check_timeout = Some(total)
        })
    }

    pub(crate) fn gateway(&self, site: SiteId) -> Option<&SiteGateway> {
        self.0.notify.gateways.iter().find(|g| g.site == site)
    }
}

// ------------------------------------------------------------------------ the policy

/// The site's policy as stored, or the defaults. An unreadable stored policy (written by a
/// newer vetric, say) also falls back to the defaults, as the dispatcher does.
pub(crate) async fn load_policy(
    state: &AppState,
    site: SiteId,
) -> Result<(NotificationPolicy, Option<vetric_store::SitePolicyRow>), StoreError> {
    let row = state.store().site_policy(site).await?;
    let policy = row
        .as_ref()
        .and_then(|r| serde_json::from_value(r.policy.clone()).ok())
        .unwrap_or_default();
    Ok((policy, row))
}

/// The idle grace of the site's tariff in force today (site's zone), if it has one.
async fn tariff_grace(state: &AppState, site: &SiteSettings) -> Result<Option<u32>, StoreError> {
    let history = state.store().tariff_history(site.id).await?;
    let today = Utc::now().with_timezone(&site.timezone).date_naive();
    Ok(history.in_force_at(today).map(|t| t.idle_grace_min()))
}

/// The timing fields, their labels and help (form order).
const TIMINGS: [(&str, &str, &str); 7] = [
    (
        "idle_grace_min",
        "Tolerância antes do aviso de veículo parado (min)",
        "nunca maior que a tolerância da tarifa: o morador é avisado antes de qualquer cobrança",
    ),
    (
        "reminder_interval_min",
        "Intervalo entre lembretes (min)",
        "",
    ),
    (
        "reminder_max",
        "Número máximo de lembretes",
        "0 desliga os lembretes",
    ),
    (
        "charger_offline_min",
        "Carregador sem comunicação por (min) antes de avisar",
        "",
    ),
    (
        "vendor_down_cycles",
        "Leituras falhas seguidas antes de avisar que o fornecedor caiu",
        "",
    ),
    (
        "backlog_alert_min",
        "Avisar a operação quando uma mensagem esperar mais de (min)",
        "",
    ),
    (
        "max_age_after_quiet_min",
        "Descartar avisos ao morador retidos pelo horário de silêncio há mais de (min)",
        "",
    ),
];

fn timing_value(p: &NotificationPolicy, field: &str) -> u32 {
    match field {
        "idle_grace_min" => p.idle_grace_min,
        "reminder_interval_min" => p.reminder_interval_min,
        "reminder_max" => p.reminder_max,
        "charger_offline_min" => p.charger_offline_min,
        "vendor_down_cycles" => p.vendor_down_cycles,
        "backlog_alert_min" => p.backlog_alert_min,
        _ => p.max_age_after_quiet_min,
    }
}

fn set_timing(p: &mut NotificationPolicy, field: &str, v: u32) {
    match field {
        "idle_grace_min" => p.idle_grace_min = v,
        "reminder_interval_min" => p.reminder_interval_min = v,
        "reminder_max" => p.reminder_max = v,
        "charger_offline_min" => p.charger_offline_min = v,
        "vendor_down_cycles" => p.vendor_down_cycles = v,
        "backlog_alert_min" => p.backlog_alert_min = v,
        _ => p.max_age_after_quiet_min = v,
    }
}

/// Rules timed by a policy field of their own (their delay must stay 0).
fn timed_elsewhere(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::IdleStarted | Rule::IdleReminder | Rule::ChargerOffline
    )
}

fn field(rule: Rule, name: &str) -> String {
    format!("rules.{}.{name}", rule.as_str())
}

fn minutes(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok()
}

/// Reads the policy form: every rule's `rules.{rule}.enabled|delay_min|template` and the
/// timings. Numbers that are not numbers are errors here; the rest is the domain's.
fn policy_from_form(form: &FormPairs) -> (NotificationPolicy, FieldErrors) {
    let mut p = NotificationPolicy::default();
    let mut errors = FieldErrors::new();
    for (name, _, _) in TIMINGS {
        let raw = form.get(name);
        match minutes(&raw) {
            Some(v) => set_timing(&mut p, name, v),
            None => errors.push((
                name.to_owned(),
                "informe um número inteiro (sem vírgula)".to_owned(),
            )),
        }
    }
    for rule in Rule::ALL {
        let delay = if timed_elsewhere(rule) {
            0
        } else {
            let raw = form.get(&field(rule, "delay_min"));
            if raw.is_empty() {
                0
            } else {
                match minutes(&raw) {
                    Some(v) => v,
                    None => {
                        errors.push((
                            field(rule, "delay_min"),
                            "informe os minutos como um número inteiro".to_owned(),
                        ));
                        0
                    }
                }
            }
        };
        // Templates keep their text as typed (trailing spaces included): the form value, not
        // the trimmed one.
        let template = form
            .0
            .iter()
            .find(|(k, _)| *k == field(rule, "template"))
            .map(|(_, v)| v.replace("\r\n", "\n"))
            .unwrap_or_default();
        p.rules.insert(
            rule,
            RuleSettings {
                enabled: rule == Rule::Test || form.has(&field(rule, "enabled")),
                delay_min: delay,
                template,
            },
        );
    }
    (p, errors)
}

/// Domain problems merged into `errors` (one message per field).
fn add_problems(errors: &mut FieldErrors, policy: &NotificationPolicy, grace: Option<u32>) {
    if let Err(problems) = policy.validate(grace) {
        for p in problems {
            match errors.iter_mut().find(|(f, _)| *f == p.field) {
                Some((_, m)) => {
                    m.push_str("; ");
                    m.push_str(&p.message);
                }
                None => errors.push((p.field, p.message)),
            }
        }
    }
}

/// What changed between two policies (audit detail): field names.
fn changed_fields(old: &NotificationPolicy, new: &NotificationPolicy) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _, _) in TIMINGS {
        if timing_value(old, name) != timing_value(new, name) {
            out.push(name.to_owned());
        }
    }
    for rule in Rule::ALL {
        let (a, b) = (old.settings(rule), new.settings(rule));
        for (name, differs) in [
            ("enabled", a.enabled != b.enabled),
            ("delay_min", a.delay_min != b.delay_min),
            ("template", a.template != b.template),
        ] {
            if differs {
                out.push(field(rule, name));
            }
        }
    }
    out
}

async fn save_policy(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    old: &NotificationPolicy,
    policy: &NotificationPolicy,
) -> Result<(), ApiError> {
    let value = serde_json::to_value(policy).map_err(|e| ApiError::internal(&e))?;
    let entry = audit(
        user,
        ip,
        "notification_policy_set",
        format!("site:{}", site.slug),
    )
    .with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "changed": changed_fields(old, policy),
    }));
    state
        .store()
        .set_site_policy(site.id, &value, Some(&user.email), &entry)
        .await?;
    Ok(())
}

// ------------------------------------------------------------------------ the page

struct GatewayView {
    base_url: String,
    instance: String,
    api_key: String,
}

/// The outcome of a gateway action, as shown (pt-BR).
pub struct ActionView {
    ok: bool,
    title: String,
    hint: String,
    technical: String,
}

struct RuleView {
    rule: &'static str,
    label: &'static str,
    enabled: bool,
    /// The Test message cannot be turned off.
    fixed_on: bool,
    delay: String,
    has_delay: bool,
    template: String,
    placeholders: String,
    preview: String,
    preview_error: String,
}

struct GroupView {
    title: &'static str,
    hint: &'static str,
    rules: Vec<RuleView>,
}

struct TimingView {
    name: &'static str,
    label: &'static str,
    help: String,
    value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "notify_settings.html")]
struct SettingsPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    from_config: &'static str,
    gateway: Option<GatewayView>,
    admin: bool,
    check: Option<ActionView>,
    test: Option<ActionView>,
    test_phone: String,
    nonce: String,
    groups: Vec<GroupView>,
    timings: Vec<TimingView>,
    updated: String,
    notice: Option<String>,
    errors: FieldErrors,
}

impl SettingsPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/notify_action.html")]
struct ActionFragment {
    result: Option<ActionView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/notify_preview.html")]
struct PreviewFragment {
    preview: String,
    preview_error: String,
}

fn nonce() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.random_range(0..32)]))
        .collect()
}

/// Everything the page shows; `form` is the policy as typed (after an error or a reset).
struct PageInput {
    form_policy: Option<NotificationPolicy>,
    raw_timings: Option<BTreeMap<String, String>>,
    errors: FieldErrors,
    notice: Option<String>,
    check: Option<ActionView>,
    test: Option<ActionView>,
    test_phone: String,
}

impl PageInput {
    fn plain() -> Self {
        Self {
            form_policy: None,
            raw_timings: None,
            errors: FieldErrors::new(),
            notice: None,
            check: None,
            test: None,
            test_phone: String::new(),
        }
    }
}

async fn settings_page(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    input: PageInput,
) -> Result<SettingsPage, PageError> {
    let (stored, row) = load_policy(state, site.id).await?;
    let grace = tariff_grace(state, site).await?;
    let policy = input.form_policy.unwrap_or(stored);
    let groups = [
        (
            Audience::Resident,
            "Avisos aos moradores (WhatsApp)",
            "Respeitam as preferências e o horário de silêncio de cada morador.",
        ),
        (
            Audience::Manager,
            "Avisos aos síndicos e gestores",
            "Vão aos contatos de [sites.notifications] do arquivo de configuração; o extrato \
             emitido vai por e-mail aos gestores do condomínio cadastrados no vetric.",
        ),
        (
            Audience::Operator,
            "Alertas à operação",
            "Vão aos contatos de [alerts]; alertas sobre o próprio gateway do WhatsApp vão só \
             por e-mail ou webhook.",
        ),
    ]
    .into_iter()
    .map(|(audience, title, hint)| GroupView {
        title,
        hint,
        rules: NotificationPolicy::rules_for(audience)
            .map(|rule| {
                let s = policy.settings(rule);
                let (preview, preview_error) = match preview(rule, &s.template) {
                    Ok(p) => (p, String::new()),
                    Err(e) => (String::new(), e.to_string()),
                };
                RuleView {
                    rule: rule.as_str(),
                    label: rule.label_pt_br(),
                    enabled: s.enabled,
                    fixed_on: rule == Rule::Test,
                    delay: s.delay_min.to_string(),
                    has_delay: !timed_elsewhere(rule),
                    template: s.template,
                    placeholders: rule
                        .placeholders()
                        .iter()
                        .map(|p| format!("{{{{{p}}}}}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    preview,
                    preview_error,
                }
            })
            .collect(),
    })
    .collect();
    let timings = TIMINGS
        .into_iter()
        .map(|(name, label, help)| {
            let help = match (name, grace) {
                ("idle_grace_min", Some(g)) => {
                    format!("{help} (tarifa em vigor: {g} min)")
                }
                _ => help.to_owned(),
            };
            TimingView {
                name,
                label,
                help,
                value: input
                    .raw_timings
                    .as_ref()
                    .and_then(|m| m.get(name).cloned())
                    .unwrap_or_else(|| timing_value(&policy, name).to_string()),
            }
        })
        .collect();
    Ok(SettingsPage {
        user_email: NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "notifications",
        from_config: FROM_CONFIG,
        gateway: state.gateway(site.id).map(|g| GatewayView {
            base_url: g.base_url.to_string(),
            instance: g.instance.clone(),
            api_key: masked_key(&g.api_key),
        }),
        admin: user.role == Role::Admin,
        check: input.check,
        test: input.test,
        test_phone: input.test_phone,
        nonce: nonce(),
        groups,
        timings,
        updated: row
            .map(|r| {
                format!(
                    "Última alteração em {}{}.",
                    local_datetime(site, r.updated_at),
                    r.updated_by
                        .map(|b| format!(" por {b}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "Valores padrão (nunca alterados).".to_owned()),
        notice: input.notice,
        errors: input.errors,
    })
}

/// `GET /sites/{slug}/notifications/settings`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let mut input = PageInput::plain();
    if raw.as_deref() == Some("ok=salvo") {
        input.notice = Some("Configurações de notificação salvas.".to_owned());
    }
    Ok(settings_page(&state, &user, site, input)
        .await?
        .into_response())
}

/// `POST /sites/{slug}/notifications/settings`: saves the policy, or (with `reset=<rule>`)
/// shows the form again with that rule's default text, not yet saved.
pub async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (mut policy, mut errors) = policy_from_form(&form);
    let raw_timings: BTreeMap<String, String> = TIMINGS
        .iter()
        .map(|(n, _, _)| ((*n).to_owned(), form.get(n)))
        .collect();
    if let Some(rule) = Rule::parse(&form.get("reset")) {
        if let Some(s) = policy.rules.get_mut(&rule) {
            s.template = default_template(rule).to_owned();
        }
        let input = PageInput {
            form_policy: Some(policy),
            raw_timings: Some(raw_timings),
            errors: FieldErrors::new(),
            notice: Some(format!(
                "Texto padrão de \"{}\" restaurado no formulário; clique em Salvar para aplicar.",
                rule.label_pt_br()
            )),
            ..PageInput::plain()
        };
        return Ok(settings_page(&state, &user, site, input)
            .await?
            .into_response());
    }
    let grace = tariff_grace(&state, site).await?;
    add_problems(&mut errors, &policy, grace);
    if !errors.is_empty() {
        let input = PageInput {
            form_policy: Some(policy),
            raw_timings: Some(raw_timings),
            errors,
            ..PageInput::plain()
        };
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            settings_page(&state, &user, site, input).await?,
        )
            .into_response());
    }
    let (old, _) = load_policy(&state, site.id).await?;
    // Rules the form does not know (none today) keep what they had.
    for (rule, s) in &old.rules {
        policy.rules.entry(*rule).or_insert_with(|| s.clone());
    }
    save_policy(&state, &user, &peer.0, site, &old, &policy)
        .await
        .map_err(|e| PageError {
            status: e.status,
            message: e.message,
        })?;
    Ok(Redirect::to(&format!(
        "/sites/{}/notifications/settings?ok=salvo",
        site.slug
    ))
    .into_response())
}

/// `POST /sites/{slug}/notifications/settings/preview` (`rule`, `rules.{rule}.template`):
/// the rendered preview with sample data, or the problem of the template (htmx fragment).
pub async fn preview_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    form: FormPairs,
) -> Result<Response, PageError> {
    let _site = state.site_page(&user, &slug)?;
    let rule = Rule::parse(&form.get("rule")).ok_or_else(PageError::not_found)?;
    let template = form
        .0
        .iter()
        .find(|(k, _)| *k == field(rule, "template"))
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default();
    let (preview, preview_error) = match preview(rule, &template) {
        Ok(p) => (p, String::new()),
        Err(e) => (String::new(), e.to_string()),
    };
    Ok(PreviewFragment {
        preview,
        preview_error,
    }
    .into_response())
}

// ------------------------------------------------------------------------ gateway actions

const NO_GATEWAY: &str = "Este condomínio não tem gateway do WhatsApp configurado \
     ([sites.whatsapp] no arquivo de configuração).";

fn state_words(s: ConnectionState) -> (bool, &'static str, &'static str) {
    match s {
        ConnectionState::Open => (true, "Conectado: o WhatsApp está pronto para enviar.", ""),
        ConnectionState::Connecting => (
            false,
            "Reconectando ao WhatsApp.",
            "Aguarde um minuto e verifique de novo; as mensagens ficam na fila enquanto isso.",
        ),
        ConnectionState::Close => (
            false,
            "Desconectado do WhatsApp.",
            "Abra o gerenciador do Evolution (/manager) e leia o QR code de novo com o celular \
             da conta; as mensagens ficam na fila até a reconexão.",
        ),
        ConnectionState::Unknown => (
            false,
            "Estado desconhecido: o gateway não informou a conexão.",
            "A instância pode não estar carregada: confira-a no gerenciador do Evolution.",
        ),
    }
}

fn error_view(e: &EvolutionError) -> ActionView {
    ActionView {
        ok: false,
        title: format!("Falha ao consultar o gateway ({}).", e.kind().as_str()),
        hint: e.hint(),
        technical: vetric_evolution::error::redact_digits(&e.to_string()),
    }
}

async fn check_gateway(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
) -> Result<Option<ActionView>, ApiError> {
    let Some(g) = state.gateway(site.id) else {
        return Ok(None);
    };
    let total = state.0.notify.check_timeout.unwrap_or(CHECK_TIMEOUT);
    let mut cfg = EvolutionConfig::new(g.base_url.clone(), g.api_key.clone(), g.instance.clone());
    cfg.connect_timeout = total.min(Duration::from_secs(3));
    cfg.request_timeout = total;
    let view = match EvolutionClient::new(cfg) {
        Err(e) => ActionView {
            ok: false,
            title: "Não foi possível preparar a consulta ao gateway.".to_owned(),
            hint: "Confira base_url em [sites.whatsapp].".to_owned(),
            technical: e.to_string(),
        },
        Ok(client) => match client.connection_state().await {
            Ok(s) => {
                let (ok, title, hint) = state_words(s);
                ActionView {
                    ok,
                    title: title.to_owned(),
                    hint: hint.to_owned(),
                    technical: format!("connectionState: {}", s.as_str()),
                }
            }
            Err(e) => error_view(&e),
        },
    };
    let entry = audit(user, ip, "gateway_check", format!("site:{}", site.slug)).with_detail(
        json!({ "via": user.via.as_str(), "site": site.slug, "ok": view.ok, "result": view.technical }),
    );
    state.store().append_audit(&entry).await?;
    Ok(Some(view))
}

/// `POST /sites/{slug}/notifications/settings/gateway-check` (admins).
pub async fn check_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    if user.role != Role::Admin {
        return Err(PageError::not_found());
    }
    let view = check_gateway(&state, &user, &peer.0, site)
        .await
        .map_err(|e| PageError {
            status: e.status,
            message: e.message,
        })?
        .unwrap_or_else(|| ActionView {
            ok: false,
            title: NO_GATEWAY.to_owned(),
            hint: String::new(),
            technical: String::new(),
        });
    if headers.contains_key("hx-request") {
        return Ok(ActionFragment { result: Some(view) }.into_response());
    }
    let input = PageInput {
        check: Some(view),
        ..PageInput::plain()
    };
    Ok(settings_page(&state, &user, site, input)
        .await?
        .into_response())
}

/// What a test message ended in.
enum TestOutcome {
    Queued(i64),
    Already,
    NoGateway,
}

/// Enqueues the test message of `site` to `phone`; `key` makes a repeated submission of the
/// same form enqueue nothing.
async fn enqueue_test(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    phone: &PhoneNumber,
    key: &str,
) -> Result<TestOutcome, ApiError> {
    if state.gateway(site.id).is_none() {
        return Ok(TestOutcome::NoGateway);
    }
    let (policy, _) = load_policy(state, site.id).await?;
    let ctx = PlanContext {
        site_name: &site.name,
        tz: site.timezone,
        policy: &policy,
        tariffs: None,
    };
    let now = Utc::now();
    let values = BTreeMap::from([("local", site.name.clone())]);
    let Some(m) = plan_operator_alert_for_site(&ctx, Rule::Test, &values, now, key) else {
        // validate() refuses a policy with the test rule off; nothing else turns it off.
        return Ok(TestOutcome::NoGateway);
    };
    let n = NewNotification {
        dedup_key: format!(
            "site:{}:{}:whatsapp:{}",
            site.id.0,
            m.dedup_key,
            phone.digits()
        ),
        rule: Rule::Test.as_str().to_owned(),
        audience: Audience::Operator.as_str().to_owned(),
        channel: "whatsapp".to_owned(),
        resident_id: None,
        recipient: Some(phone.digits().to_owned()),
        scope: m.scope,
        session_vendor_id: None,
        subject: None,
        body: m.text,
        ref_code: m.ref_code,
        not_before: m.not_before,
    };
    let Some(id) = state.store().enqueue(Some(site.id), &n).await? else {
        return Ok(TestOutcome::Already);
    };
    let entry = audit(user, ip, "notification_test", format!("site:{}", site.slug)).with_detail(
        json!({ "via": user.via.as_str(), "site": site.slug, "notification": id,
                "to": phone.masked() }),
    );
    state.store().append_audit(&entry).await?;
    Ok(TestOutcome::Queued(id))
}

fn queued_view(slug: &str, outcome: &TestOutcome) -> ActionView {
    match outcome {
        TestOutcome::Queued(id) => ActionView {
            ok: true,
            title: format!(
                "Mensagem de teste na fila (nº {id}): acompanhe no registro de notificações."
            ),
            hint: format!("/sites/{slug}/notifications?rule=test"),
            technical: String::new(),
        },
        TestOutcome::Already => ActionView {
            ok: true,
            title: "Esta mensagem de teste já estava na fila (formulário enviado duas vezes)."
                .to_owned(),
            hint: format!("/sites/{slug}/notifications?rule=test"),
            technical: String::new(),
        },
        TestOutcome::NoGateway => ActionView {
            ok: false,
            title: NO_GATEWAY.to_owned(),
            hint: String::new(),
            technical: String::new(),
        },
    }
}

/// Reads a nonce from the form: short, plain (it becomes part of a dedup key).
fn clean_key(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| raw.to_owned())
}

/// `POST /sites/{slug}/notifications/settings/test-message` (admins): `phone`, `key`.
pub async fn test_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    if user.role != Role::Admin {
        return Err(PageError::not_found());
    }
    let raw_phone = form.get("phone");
    let phone = match PhoneNumber::parse(&raw_phone) {
        Ok(p) => p,
        Err(e) => {
            let input = PageInput {
                errors: vec![("phone".to_owned(), phone_message(&e))],
                test_phone: raw_phone,
                ..PageInput::plain()
            };
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                settings_page(&state, &user, site, input).await?,
            )
                .into_response());
        }
    };
    let key = clean_key(&form.get("key")).unwrap_or_else(nonce);
    let outcome = enqueue_test(&state, &user, &peer.0, site, &phone, &key)
        .await
        .map_err(|e| PageError {
            status: e.status,
            message: e.message,
        })?;
    if matches!(outcome, TestOutcome::NoGateway) {
        return Ok(error_page(StatusCode::CONFLICT, NO_GATEWAY));
    }
    let input = PageInput {
        test: Some(queued_view(&site.slug, &outcome)),
        ..PageInput::plain()
    };
    Ok(settings_page(&state, &user, site, input)
        .await?
        .into_response())
}

// ------------------------------------------------------------------------ the API

fn policy_json(policy: &NotificationPolicy) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(policy).map_err(|e| ApiError::internal(&e))?;
    // Every rule listed, with its defaults, so a client sees the whole picture.
    if let Some(rules) = v["rules"].as_object_mut() {
        for rule in Rule::ALL {
            if !rules.contains_key(rule.as_str()) {
                let s = serde_json::to_value(policy.settings(rule))
                    .map_err(|e| ApiError::internal(&e))?;
                rules.insert(rule.as_str().to_owned(), s);
            }
        }
    }
    Ok(v)
}

/// `GET /api/v1/sites/{slug}/notification-policy`.
pub async fn api_get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let (policy, row) = load_policy(&state, site.id).await?;
    let grace = tariff_grace(&state, site).await?;
    Ok(Json(json!({
        "data": policy_json(&policy)?,
        "updated_at": row.as_ref().map(|r| r.updated_at),
        "updated_by": row.and_then(|r| r.updated_by),
        "tariff_idle_grace_min": grace,
    }))
    .into_response())
}

const TOP_FIELDS: [&str; 8] = [
    "rules",
    "idle_grace_min",
    "reminder_interval_min",
    "reminder_max",
    "charger_offline_min",
    "vendor_down_cycles",
    "backlog_alert_min",
    "max_age_after_quiet_min",
];

/// Reads a policy body field by field, naming the first one that is wrong.
fn policy_from_json(body: &Map<String, Value>) -> Result<NotificationPolicy, ApiError> {
    if let Some(k) = body.keys().find(|k| !TOP_FIELDS.contains(&k.as_str())) {
        return Err(crate::forms::invalid(
            k,
            format!("campo desconhecido {k}; aceitos: {}", TOP_FIELDS.join(", ")),
        ));
    }
    for name in &TOP_FIELDS[1..] {
        if let Some(v) = body.get(*name)
            && v.as_u64().is_none_or(|n| n > u64::from(u32::MAX))
        {
            return Err(crate::forms::invalid(
                name,
                format!("{name} deve ser um número inteiro não negativo"),
            ));
        }
    }
    if let Some(rules) = body.get("rules") {
        let Some(rules) = rules.as_object() else {
            return Err(crate::forms::invalid(
                "rules",
                "rules deve ser um objeto { regra: { enabled, delay_min, template } }",
            ));
        };
        for (name, v) in rules {
            let Some(rule) = Rule::parse(name) else {
                return Err(crate::forms::invalid(
                    &format!("rules.{name}"),
                    format!(
                        "regra desconhecida {name}; use uma destas: {}",
                        Rule::ALL.map(|r| r.as_str()).join(", ")
                    ),
                ));
            };
            let Some(obj) = v.as_object() else {
                return Err(crate::forms::invalid(
                    &field(rule, "template"),
                    "cada regra deve ser um objeto { enabled, delay_min, template }",
                ));
            };
            for (k, check) in [
                ("enabled", obj.get("enabled").map(Value::is_boolean)),
                (
                    "delay_min",
                    obj.get("delay_min")
                        .map(|v| v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX))),
                ),
                ("template", obj.get("template").map(Value::is_string)),
            ] {
                let required = k != "delay_min";
                match check {
                    Some(true) => {}
                    None if !required => {}
                    _ => {
                        return Err(crate::forms::invalid(
                            &field(rule, k),
                            format!("rules.{name}.{k} ausente ou do tipo errado"),
                        ));
                    }
                }
            }
            if let Some(k) = obj
                .keys()
                .find(|k| !["enabled", "delay_min", "template"].contains(&k.as_str()))
            {
                return Err(crate::forms::invalid(
                    &format!("rules.{name}.{k}"),
                    format!("campo desconhecido rules.{name}.{k}"),
                ));
            }
        }
    }
    serde_json::from_value(Value::Object(body.clone()))
        .map_err(|e| crate::forms::invalid("rules", format!("política ilegível: {e}")))
}

/// `PUT /api/v1/sites/{slug}/notification-policy`: the whole policy (fields left out take their
/// defaults; rules left out keep their defaults too). 422 naming the field; nothing stored.
pub async fn api_put(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let mut policy = policy_from_json(&body)?;
    let grace = tariff_grace(&state, site).await?;
    let mut errors = FieldErrors::new();
    add_problems(&mut errors, &policy, grace);
    if !errors.is_empty() {
        return Err(api_invalid(&errors));
    }
    for rule in Rule::ALL {
        policy
            .rules
            .entry(rule)
            .or_insert_with(|| RuleSettings::default_for(rule));
    }
    let (old, _) = load_policy(&state, site.id).await?;
    save_policy(&state, &user, &peer.0, site, &old, &policy).await?;
    Ok(Json(json!({ "data": policy_json(&policy)? })).into_response())
}

/// `POST /api/v1/sites/{slug}/notifications/test` (admins) `{"phone", "key"?}`: enqueues one
/// test message (201 with its id; 200 when `key` was already used; 409 without a gateway).
pub async fn api_test(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    if user.role != Role::Admin {
        return Err(ApiError::not_found());
    }
    let raw = body.get("phone").and_then(Value::as_str).unwrap_or("");
    let phone =
        PhoneNumber::parse(raw).map_err(|e| crate::forms::invalid("phone", phone_message(&e)))?;
    let key = match body.get("key") {
        None | Some(Value::Null) => nonce(),
        Some(Value::String(s)) => clean_key(s)
            .ok_or_else(|| crate::forms::invalid("key", "key: até 64 letras, dígitos, - ou _"))?,
        Some(_) => return Err(crate::forms::invalid("key", "key deve ser um texto")),
    };
    match enqueue_test(&state, &user, &peer.0, site, &phone, &key).await? {
        TestOutcome::Queued(id) => Ok((
            StatusCode::CREATED,
            Json(json!({ "data": { "id": id, "queued": true } })),
        )
            .into_response()),
        TestOutcome::Already => {
            Ok(Json(json!({ "data": { "id": null, "queued": false } })).into_response())
        }
        TestOutcome::NoGateway => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_gateway",
            NO_GATEWAY,
        )),
    }
}

/// `POST /api/v1/sites/{slug}/notifications/gateway-check` (admins): the connection state.
pub async fn api_check(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    if user.role != Role::Admin {
        return Err(ApiError::not_found());
    }
    match check_gateway(&state, &user, &peer.0, site).await? {
        Some(v) => Ok(Json(json!({ "data": {
            "ok": v.ok, "message": v.title, "hint": v.hint, "technical": v.technical } }))
        .into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_gateway",
            NO_GATEWAY,
        )),
    }
}

pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let ok = |d: &str, schema: Value| json!({ "description": d, "content": { "application/json": { "schema": schema } } });
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let int = json!({ "type": "integer", "minimum": 0 });
    let policy = json!({ "type": "object", "properties": {
        "rules": { "type": "object", "description": "by rule name (session_started, idle_started, …)",
            "additionalProperties": { "type": "object", "required": ["enabled", "template"], "properties": {
                "enabled": { "type": "boolean" }, "delay_min": int,
                "template": { "type": "string", "description": "pt-BR with {{placeholders}}" } } } },
        "idle_grace_min": int, "reminder_interval_min": int, "reminder_max": int,
        "charger_offline_min": int, "vendor_down_cycles": int, "backlog_alert_min": int,
        "max_age_after_quiet_min": int } });
    let obj = json!({ "type": "object" });
    let paths = &mut doc["paths"];
    paths["/api/v1/sites/{slug}/notification-policy"] = json!({
        "get": {
            "summary": "The site's notification policy (defaults when never set)",
            "security": auth, "parameters": [slug],
            "responses": {
                "200": ok("Policy", json!({ "type": "object", "properties": {
                    "data": policy, "updated_at": { "type": ["string", "null"] },
                    "updated_by": { "type": ["string", "null"] },
                    "tariff_idle_grace_min": { "type": ["integer", "null"] } } })),
                "401": err("Not logged in"), "404": err("No such site, or not yours") } },
        "put": {
            "summary": "Replaces the policy (fields left out take their defaults); audited",
            "security": auth, "parameters": [slug],
            "requestBody": { "required": true, "content": { "application/json": { "schema": policy } } },
            "responses": {
                "200": ok("Stored", json!({ "type": "object", "properties": { "data": policy } })),
                "401": err("Not logged in"), "404": err("No such site, or not yours"),
                "422": err("A bad field, e.g. rules.session_started.template (`field` names the first; nothing stored)") } } });
    paths["/api/v1/sites/{slug}/notifications/test"] = json!({ "post": {
        "summary": "Queues one WhatsApp test message through the outbox (admins only)",
        "security": auth, "parameters": [slug],
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["phone"], "properties": {
                "phone": { "type": "string" },
                "key": { "type": "string", "description": "idempotency key: the same key queues once" } } } } } },
        "responses": {
            "201": ok("Queued", obj.clone()), "200": ok("Already queued with this key", obj.clone()),
            "401": err("Not logged in"), "404": err("No such site, or not an admin"),
            "409": err("The site has no WhatsApp gateway"), "422": err("Bad phone number") } } });
    paths["/api/v1/sites/{slug}/notifications/gateway-check"] = json!({ "post": {
        "summary": "Asks the site's WhatsApp gateway its connection state once (admins only)",
        "security": auth, "parameters": [slug],
        "responses": {
            "200": ok("The state (ok, message, hint, technical)", obj),
            "401": err("Not logged in"), "404": err("No such site, or not an admin"),
            "409": err("The site has no WhatsApp gateway") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_reads_back_from_its_own_form() {
        let p = NotificationPolicy::default();
        let mut pairs = Vec::new();
        for (name, _, _) in TIMINGS {
            pairs.push((name.to_owned(), timing_value(&p, name).to_string()));
        }
        for rule in Rule::ALL {
            let s = p.settings(rule);
            if s.enabled {
                pairs.push((field(rule, "enabled"), "1".to_owned()));
            }
            pairs.push((field(rule, "delay_min"), s.delay_min.to_string()));
            pairs.push((field(rule, "template"), s.template.clone()));
        }
        let (back, errors) = policy_from_form(&FormPairs(pairs));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back, p);
    }

    #[test]
    fn json_errors_name_the_field() {
        let body = json!({ "rules": { "session_started": { "enabled": true, "template": 3 } } });
        let e = policy_from_json(body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rules.session_started.template"));
        let body = json!({ "reminder_max": -1 });
        let e = policy_from_json(body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("reminder_max"));
        let body = json!({ "nope": 1 });
        let e = policy_from_json(body.as_object().unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nope"));
    }
}
