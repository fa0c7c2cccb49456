//! The notification pages and their API twins (issue #5 part 6):
//!
//! * `/sites/{slug}/notifications` (this module): the notification log, newest first and
//!   paged, filtered by status, rule, resident and period; each row with its recipient masked
//!   (DESIGN.md: phones in full only on the resident's own page), status and reason in pt-BR,
//!   attempts and last error, and the attempts list in a details view. "Reenviar" puts a
//!   `failed` row back in the queue through [`vetric_store::Store::resend`] (audited in the
//!   same transaction). A row left `in_doubt` (the process died between handing it to the
//!   gateway and recording the answer) that reconciliation could not settle waits for the
//!   operator's decision: "Foi entregue" (sent), "Reenviar mesmo assim" (pending again, a
//!   duplicate possible) or "Descartar" (cancelled, reason `operator`), through
//!   [`vetric_store::Store::decide_in_doubt`] (conditional on the row still being in doubt,
//!   audited in the same transaction). API: `GET /api/v1/sites/{slug}/notifications`,
//!   `POST /api/v1/sites/{slug}/notifications/{id}/resend`,
//!   `POST /api/v1/sites/{slug}/notifications/{id}/resolve` `{"decision"}`.
//! * [`settings`]: the site's WhatsApp gateway (read-only, from the config file), its live
//!   connection state on an explicit click, a test message through the outbox, and the
//!   notification policy (rules, templates with preview, timings).
//! * [`prefs`]: a resident's notification preferences (opt-outs, quiet hours).
//!
//! Who may do what: admins and the site's managers read everything here and edit the policy and
//! residents' preferences; only admins make vetric call the gateway (DESIGN.md rule 1: the only
//! request-path calls to outside services are explicit operator buttons). Anyone else gets the
//! usual 404.

pub mod prefs;
pub mod settings;

use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit, local_datetime, parse_date};
use crate::pages::error_page;
use crate::residents::{FieldErrors, masked_phone};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use vetric_domain::notify::{CancelReason, Rule};
use vetric_evolution::error::redact_digits;
use vetric_store::{
    Decided, OperatorDecision, OutboxEntry, OutboxFilter, OutboxRow, OutboxStatus, ResidentId,
    StoreError,
};

pub use settings::{NotifyState, SiteGateway};

/// Rows per page of the log (the API takes `limit` up to [`MAX_LIMIT`]).
const PAGE_SIZE: i64 = 50;
const MAX_LIMIT: i64 = 500;

// ------------------------------------------------------------------------ words

/// pt-BR label of a status, and the badge tone.
pub fn status_words(s: OutboxStatus) -> (&'static str, &'static str) {
    match s {
        OutboxStatus::Pending => ("Na fila", "waiting"),
        OutboxStatus::Sending => ("Enviando", "waiting"),
        OutboxStatus::InDoubt => ("Em dúvida", "idle"),
        OutboxStatus::Sent => ("Enviada", "free"),
        OutboxStatus::Failed => ("Falhou", "fault"),
        OutboxStatus::Cancelled => ("Cancelada", "offline"),
    }
}

fn rule_label(rule: &str) -> String {
    Rule::parse(rule).map_or_else(|| rule.to_owned(), |r| r.label_pt_br().to_owned())
}

fn channel_label(channel: &str) -> &'static str {
    match channel {
        "whatsapp" => "WhatsApp",
        "email" => "E-mail",
        "webhook" => "Webhook",
        _ => "outro canal",
    }
}

/// `m***@example.com`: enough to tell addresses apart, not to write to one.
pub fn masked_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// A webhook URL shown as its origin only (the path may carry a secret token).
fn masked_url(raw: &str) -> String {
    url::Url::parse(raw)
        .map(|u| format!("{}/…", u.origin().ascii_serialization()))
        .unwrap_or_else(|_| "(endereço inválido)".to_owned())
}

/// The recipient as lists may show it.
pub fn masked_recipient(row: &OutboxRow) -> String {
    match (row.channel.as_str(), row.recipient.as_deref()) {
        (_, None) => "—".to_owned(),
        ("whatsapp", Some(p)) => masked_phone(p),
        ("email", Some(a)) => masked_email(a),
        ("webhook", Some(u)) => masked_url(u),
        (_, Some(_)) => "***".to_owned(),
    }
}

/// Why a row is cancelled or failed, in pt-BR where vetric knows the words; gateway texts
/// (English) are kept, with phone numbers redacted.
fn reason_text(row: &OutboxRow) -> Option<String> {
    let reason = row.reason.as_deref()?;
    Some(match CancelReason::parse(reason) {
        Some(c) => c.label_pt_br().to_owned(),
        None if reason == "no_email" => "o destinatário não tem e-mail cadastrado".to_owned(),
        None if reason == "operator" => "descartada por um operador (estava em dúvida)".to_owned(),
        None if reason == "operator_confirmed" => {
            "entrega confirmada manualmente por um operador".to_owned()
        }
        None => redact_digits(reason),
    })
}

fn attempt_outcome(outcome: &str) -> &'static str {
    match outcome {
        "sent" => "enviada",
        "retry" => "falha passageira (nova tentativa)",
        "failed" => "falha definitiva",
        "in_doubt" => "sem resposta (em dúvida)",
        "operator" => "precisa de um operador",
        "confirmed" => "confirmada no gateway",
        "not_found" => "não encontrada no gateway",
        "operator_sent" => "entrega confirmada por um operador",
        "operator_resend" => "operador mandou reenviar",
        "operator_discard" => "descartada por um operador",
        _ => "outro",
    }
}

// ------------------------------------------------------------------------ the query

/// The log's filters as typed (page) or given (API query string).
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    pub status: String,
    pub rule: String,
    pub resident: String,
    pub from: String,
    pub to: String,
    pub before: String,
    pub limit: String,
}

/// What the query means, or the first field at fault.
struct ParsedLog {
    filter: OutboxFilter,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl LogQuery {
    fn from_raw(raw: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let v = v.trim().to_owned();
            match k.as_ref() {
                "status" => q.status = v,
                "rule" => q.rule = v,
                "resident" => q.resident = v,
                "from" => q.from = v,
                "to" => q.to = v,
                "before" => q.before = v,
                "limit" => q.limit = v,
                _ => {}
            }
        }
        q
    }

    fn parse(&self, site: &SiteSettings) -> Result<ParsedLog, (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        let mut filter = OutboxFilter {
            site: Some(site.id),
            limit: Some(PAGE_SIZE),
            ..OutboxFilter::default()
        };
        if !self.status.is_empty() {
            match OutboxStatus::parse(&self.status) {
                Some(s) => filter.status = Some(s),
                None => {
                    return bad(
                        "status",
                        format!(
                            "situação desconhecida; use uma destas: {}",
                            OutboxStatus::ALL.map(|s| s.as_str()).join(", ")
                        ),
                    );
                }
            }
        }
        if !self.rule.is_empty() {
            match Rule::parse(&self.rule) {
                Some(r) => filter.rule = Some(r.as_str().to_owned()),
                None => {
                    return bad(
                        "rule",
                        format!(
                            "aviso desconhecido; use um destes: {}",
                            Rule::ALL.map(|r| r.as_str()).join(", ")
                        ),
                    );
                }
            }
        }
        if !self.resident.is_empty() {
            match self.resident.parse::<i64>() {
                Ok(n) if n > 0 => filter.resident = Some(ResidentId(n)),
                _ => return bad("resident", "use o número do morador".to_owned()),
            }
        }
        if !self.before.is_empty() {
            match self.before.parse::<i64>() {
                Ok(n) if n > 0 => filter.before_id = Some(n),
                _ => return bad("before", "use o número de uma notificação".to_owned()),
            }
        }
        if !self.limit.is_empty() {
            match self.limit.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => filter.limit = Some(n),
                _ => return bad("limit", format!("use de 1 a {MAX_LIMIT}")),
            }
        }
        let day =
            |f: &str, v: &str, next: bool| -> Result<Option<DateTime<Utc>>, (String, String)> {
                if v.is_empty() {
                    return Ok(None);
                }
                let d = parse_date(v).ok_or_else(|| {
                    (
                        f.to_owned(),
                        "data inválida: use AAAA-MM-DD ou dd/mm/aaaa".to_owned(),
                    )
                })?;
                // "até" is inclusive: the period ends at the start of the next day.
                let d = if next {
                    d.checked_add_days(Days::new(1)).unwrap_or(d)
                } else {
                    d
                };
                Ok(crate::forms::day_start(site, d))
            };
        let from = day("from", &self.from, false)?;
        let to = day("to", &self.to, true)?;
        if let (Some(a), Some(b)) = (from, to)
            && b <= a
        {
            return bad(
                "to",
                "o fim do período deve ser depois do início".to_owned(),
            );
        }
        Ok(ParsedLog { filter, from, to })
    }

    /// The query string of these filters (paging links keep them).
    fn href(&self, slug: &str, before: Option<i64>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("rule", &self.rule),
            ("resident", &self.resident),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(b) = before {
            s.append_pair("before", &b.to_string());
        }
        format!("/sites/{slug}/notifications?{}", s.finish())
    }
}

async fn resident_names(
    state: &AppState,
    site: &SiteSettings,
) -> Result<HashMap<i64, (String, String)>, StoreError> {
    Ok(state
        .store()
        .residents(site.id)
        .await?
        .into_iter()
        .map(|r| (r.id.0, (r.name.clone(), r.apartment_label())))
        .collect())
}

// ------------------------------------------------------------------------ the page

struct AttemptLine {
    number: i64,
    started: String,
    finished: String,
    outcome: &'static str,
    error: String,
}

struct LogLine {
    id: i64,
    when: String,
    rule: String,
    audience: &'static str,
    channel: &'static str,
    recipient: String,
    resident: String,
    status: &'static str,
    status_label: &'static str,
    tone: &'static str,
    reason: String,
    attempts: i64,
    last_error: String,
    not_before: String,
    sent_at: String,
    ref_code: String,
    body: String,
    attempt_lines: Vec<AttemptLine>,
    can_resend: bool,
    /// In doubt: the operator's three buttons.
    in_doubt: bool,
}

fn log_line(
    site: &SiteSettings,
    e: &OutboxEntry,
    names: &HashMap<i64, (String, String)>,
) -> LogLine {
    let r = &e.row;
    let (status_label, tone) = status_words(r.status);
    LogLine {
        id: r.id,
        when: local_datetime(site, r.created_at),
        rule: rule_label(&r.rule),
        audience: vetric_domain::notify::Audience::parse(&r.audience)
            .map_or("—", |a| a.label_pt_br()),
        channel: channel_label(&r.channel),
        recipient: masked_recipient(r),
        resident: r
            .resident_id
            .and_then(|id| names.get(&id.0))
            .map(|(n, apt)| format!("{n} ({apt})"))
            .unwrap_or_default(),
        status: r.status.as_str(),
        status_label,
        tone,
        reason: reason_text(r).unwrap_or_default(),
        attempts: r.attempts,
        last_error: r
            .last_error
            .as_deref()
            .map(redact_digits)
            .unwrap_or_default(),
        not_before: local_datetime(site, r.not_before),
        sent_at: r
            .sent_at
            .map(|t| local_datetime(site, t))
            .unwrap_or_default(),
        ref_code: r.ref_code.clone(),
        body: r.body.clone(),
        attempt_lines: e
            .attempts
            .iter()
            .map(|a| AttemptLine {
                number: a.attempt,
                started: local_datetime(site, a.started_at),
                finished: a
                    .finished_at
                    .map(|t| local_datetime(site, t))
                    .unwrap_or_default(),
                outcome: attempt_outcome(&a.outcome),
                error: a.error.as_deref().map(redact_digits).unwrap_or_default(),
            })
            .collect(),
        can_resend: r.status == OutboxStatus::Failed,
        in_doubt: r.status == OutboxStatus::InDoubt,
    }
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications.html")]
struct LogPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    q: LogQuery,
    statuses: Vec<Choice>,
    rules: Vec<Choice>,
    residents: Vec<Choice>,
    rows: Vec<LogLine>,
    older_href: Option<String>,
    error: Option<(String, String)>,
    notice: Option<String>,
    /// Rows of the site in doubt right now (all of them, not only this page's).
    in_doubt_count: i64,
}

impl LogPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// `GET /sites/{slug}/notifications`.
pub async fn log_page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let q = LogQuery::from_raw(raw.as_deref());
    let notice = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "ok")
        .and_then(|(_, v)| match v.as_ref() {
            "reenviada" => {
                Some("Notificação de volta à fila: será enviada em instantes.".to_owned())
            }
            "entregue" => {
                Some("Mensagem marcada como enviada (entrega confirmada por você).".to_owned())
            }
            "reenviar" => Some(
                "Mensagem de volta à fila: será enviada de novo em instantes, com o mesmo \
                 código de referência."
                    .to_owned(),
            ),
            "descartada" => Some("Mensagem descartada: não será enviada.".to_owned()),
            _ => None,
        });
    let names = resident_names(&state, site).await?;
    let in_doubt_count = state
        .store()
        .outbox_backlog(Some(site.id), Utc::now())
        .await?
        .in_doubt;
    let (rows, older_href, error, status) = match q.parse(site) {
        Ok(p) => {
            let entries = state
                .store()
                .outbox_log_between(&p.filter, p.from, p.to)
                .await?;
            let older = (entries.len() as i64 == p.filter.limit.unwrap_or(PAGE_SIZE))
                .then(|| entries.last().map(|e| q.href(&site.slug, Some(e.row.id))))
                .flatten();
            let rows = entries.iter().map(|e| log_line(site, e, &names)).collect();
            (rows, older, None, StatusCode::OK)
        }
        Err(e) => (Vec::new(), None, Some(e), StatusCode::BAD_REQUEST),
    };
    let mut residents: Vec<Choice> = names
        .iter()
        .map(|(id, (n, apt))| Choice {
            value: id.to_string(),
            label: format!("{n} ({apt})"),
            selected: q.resident == id.to_string(),
        })
        .collect();
    residents.sort_by(|a, b| a.label.cmp(&b.label));
    let page = LogPage {
        user_email: NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "notifications",
        statuses: OutboxStatus::ALL
            .into_iter()
            .map(|s| Choice {
                value: s.as_str().to_owned(),
                label: status_words(s).0.to_owned(),
                selected: q.status == s.as_str(),
            })
            .collect(),
        rules: Rule::ALL
            .into_iter()
            .map(|r| Choice {
                value: r.as_str().to_owned(),
                label: r.label_pt_br().to_owned(),
                selected: q.rule == r.as_str(),
            })
            .collect(),
        residents,
        rows,
        older_href,
        error,
        notice,
        in_doubt_count,
        q,
    };
    let mut res = page.into_response();
    *res.status_mut() = status;
    Ok(res)
}

/// What a resend ended in.
enum ResendOutcome {
    Done,
    NotFailed,
    NotFound,
}

async fn resend(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    id: i64,
) -> Result<ResendOutcome, StoreError> {
    let Some(entry) = state.store().outbox_entry(id).await? else {
        return Ok(ResendOutcome::NotFound);
    };
    // Another site's row is as absent as a missing one.
    if entry.row.site_id != Some(site.id) {
        return Ok(ResendOutcome::NotFound);
    }
    if entry.row.status != OutboxStatus::Failed {
        return Ok(ResendOutcome::NotFailed);
    }
    let a = audit(
        user,
        ip,
        "notification_resend",
        format!("notification:{id}"),
    )
    .with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "rule": entry.row.rule,
        "channel": entry.row.channel,
        "reason": entry.row.reason.as_deref().map(redact_digits),
    }));
    Ok(if state.store().resend(id, &a).await? {
        ResendOutcome::Done
    } else {
        ResendOutcome::NotFailed
    })
}

const NOT_FAILED: &str =
    "Só notificações que falharam podem ser reenviadas; esta já mudou de situação.";

/// `POST /sites/{slug}/notifications/{id}/resend`.
pub async fn resend_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    _form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = id.parse::<i64>().map_err(|_| PageError::not_found())?;
    match resend(&state, &user, &peer.0, site, id).await? {
        ResendOutcome::Done => Ok(Redirect::to(&format!(
            "/sites/{}/notifications?ok=reenviada",
            site.slug
        ))
        .into_response()),
        ResendOutcome::NotFailed => Ok(error_page(StatusCode::CONFLICT, NOT_FAILED)),
        ResendOutcome::NotFound => Err(PageError::not_found()),
    }
}

const DECISIONS: &str = "use sent (foi entregue), resend (reenviar mesmo assim) ou discard \
     (descartar)";

async fn decide(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    id: i64,
    decision: OperatorDecision,
) -> Result<Decided, StoreError> {
    let a = audit(
        user,
        ip,
        "notification_in_doubt_resolve",
        format!("notification:{id}"),
    )
    .with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "decision": decision.as_str(),
    }));
    state
        .store()
        .decide_in_doubt(site.id, id, decision, &a)
        .await
}

/// "a mensagem já foi resolvida: <status>" (the 409 of a row no longer in doubt).
fn already_resolved(status: OutboxStatus) -> String {
    format!(
        "a mensagem já foi resolvida: {} ({})",
        status.as_str(),
        status_words(status).0
    )
}

/// `POST /sites/{slug}/notifications/{id}/resolve` with `decision` = sent | resend | discard.
pub async fn resolve_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = id.parse::<i64>().map_err(|_| PageError::not_found())?;
    let Some(decision) = OperatorDecision::parse(&form.get("decision")) else {
        return Ok(error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Decisão inválida: {DECISIONS}."),
        ));
    };
    match decide(&state, &user, &peer.0, site, id, decision).await? {
        Decided::Done(_) => {
            let ok = match decision {
                OperatorDecision::Sent => "entregue",
                OperatorDecision::Resend => "reenviar",
                OperatorDecision::Discard => "descartada",
            };
            Ok(
                Redirect::to(&format!("/sites/{}/notifications?ok={ok}", site.slug))
                    .into_response(),
            )
        }
        Decided::NotInDoubt(now) => Ok(error_page(
            StatusCode::CONFLICT,
            &format!(
                "{}. Nada foi alterado; veja a situação atual no registro de notificações.",
                capitalized(&already_resolved(now))
            ),
        )),
        Decided::NotFound => Err(PageError::not_found()),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------ the API

fn api_item(site: &SiteSettings, e: &OutboxEntry, names: &HashMap<i64, (String, String)>) -> Value {
    let r = &e.row;
    let _ = site;
    json!({
        "id": r.id,
        "created_at": r.created_at,
        "rule": r.rule,
        "rule_label": rule_label(&r.rule),
        "audience": r.audience,
        "channel": r.channel,
        "recipient": masked_recipient(r),
        "resident_id": r.resident_id.map(|i| i.0),
        "resident": r.resident_id.and_then(|i| names.get(&i.0)).map(|(n, _)| n),
        "status": r.status.as_str(),
        "status_label": status_words(r.status).0,
        "reason": r.reason.as_deref().map(redact_digits),
        "reason_label": reason_text(r),
        "attempts": r.attempts,
        "last_error": r.last_error.as_deref().map(redact_digits),
        "not_before": r.not_before,
        "sent_at": r.sent_at,
        "ref_code": r.ref_code,
        "body": r.body,
        "attempt_log": e.attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "started_at": a.started_at,
            "finished_at": a.finished_at,
            "outcome": a.outcome,
            "error": a.error.as_deref().map(redact_digits),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/sites/{slug}/notifications?status&rule&resident&from&to&before&limit`: newest
/// first; `next_before` pages on (`null` at the end).
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let q = LogQuery::from_raw(raw.as_deref());
    let p = q
        .parse(site)
        .map_err(|(f, m)| ApiError::bad_request("invalid_query", &f, m))?;
    let entries = state
        .store()
        .outbox_log_between(&p.filter, p.from, p.to)
        .await?;
    let names = resident_names(&state, site).await?;
    let next = (entries.len() as i64 == p.filter.limit.unwrap_or(PAGE_SIZE))
        .then(|| entries.last().map(|e| e.row.id))
        .flatten();
    Ok(Json(json!({
        "data": entries.iter().map(|e| api_item(site, e, &names)).collect::<Vec<_>>(),
        "next_before": next,
    }))
    .into_response())
}

/// `POST /api/v1/sites/{slug}/notifications/{id}/resend`: 200 with the row back in the
/// queue; 409 when it is not `failed`.
pub async fn api_resend(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = id.parse::<i64>().map_err(|_| ApiError::not_found())?;
    match resend(&state, &user, &peer.0, site, id).await? {
        ResendOutcome::Done => {
            let entry = state
                .store()
                .outbox_entry(id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            let names = resident_names(&state, site).await?;
            Ok(Json(json!({ "data": api_item(site, &entry, &names) })).into_response())
        }
        ResendOutcome::NotFailed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            NOT_FAILED,
        )),
        ResendOutcome::NotFound => Err(ApiError::not_found()),
    }
}

/// `POST /api/v1/sites/{slug}/notifications/{id}/resolve` `{"decision": "sent" | "resend" |
/// "discard"}`: the operator's decision on a row in doubt. 200 with the row; 409
/// `already_resolved` when it is no longer in doubt (nothing changed); 422 naming `decision`
/// (or an unknown field).
pub async fn api_resolve(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    crate::input::JsonObject(body): crate::input::JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = id.parse::<i64>().map_err(|_| ApiError::not_found())?;
    if let Some(extra) = body.keys().find(|k| k.as_str() != "decision") {
        return Err(crate::forms::invalid(
            extra,
            format!("campo desconhecido: {extra} (só decision é aceito)"),
        ));
    }
    let decision = match body.get("decision") {
        None | Some(Value::Null) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                format!("o campo decision é obrigatório: {DECISIONS}"),
            )
            .field("decision"));
        }
        Some(Value::String(s)) => OperatorDecision::parse(s.trim()).ok_or_else(|| {
            crate::forms::invalid("decision", format!("decisão desconhecida: {DECISIONS}"))
        })?,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_type",
                format!("o campo decision deve ser um texto: {DECISIONS}"),
            )
            .field("decision"));
        }
    };
    match decide(&state, &user, &peer.0, site, id, decision).await? {
        Decided::Done(_) => {
            let entry = state
                .store()
                .outbox_entry(id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            let names = resident_names(&state, site).await?;
            Ok(Json(json!({ "data": api_item(site, &entry, &names) })).into_response())
        }
        Decided::NotInDoubt(now) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_resolved",
            already_resolved(now),
        )),
        Decided::NotFound => Err(ApiError::not_found()),
    }
}

/// The errors of a form as a 422 naming the first field and listing every problem.
pub(crate) fn api_invalid(errors: &FieldErrors) -> ApiError {
    let message = errors
        .iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let field = errors.first().map_or("body", |(f, _)| f.as_str());
    crate::forms::invalid(field, message)
}

/// Adds the notification routes to the OpenAPI document.
pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let ok = |d: &str, schema: Value| json!({ "description": d, "content": { "application/json": { "schema": schema } } });
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let q = |name: &str, d: &str| json!({ "name": name, "in": "query", "schema": { "type": "string" }, "description": d });
    let item = json!({ "type": "object", "properties": {
        "id": { "type": "integer" }, "created_at": { "type": "string", "format": "date-time" },
        "rule": { "type": "string" }, "rule_label": { "type": "string" },
        "audience": { "type": "string", "enum": ["resident", "manager", "operator"] },
        "channel": { "type": "string", "enum": ["whatsapp", "email", "webhook"] },
        "recipient": { "type": "string", "description": "masked" },
        "resident_id": { "type": ["integer", "null"] }, "resident": { "type": ["string", "null"] },
        "status": { "type": "string", "enum": ["pending", "sending", "in_doubt", "sent", "failed", "cancelled"] },
        "status_label": { "type": "string" },
        "reason": { "type": ["string", "null"] }, "reason_label": { "type": ["string", "null"] },
        "attempts": { "type": "integer" }, "last_error": { "type": ["string", "null"] },
        "not_before": { "type": "string", "format": "date-time" },
        "sent_at": { "type": ["string", "null"], "format": "date-time" },
        "ref_code": { "type": "string" }, "body": { "type": "string" },
        "attempt_log": { "type": "array", "items": { "type": "object" } } } });
    let data = |schema: Value| json!({ "type": "object", "properties": { "data": schema } });
    let paths = &mut doc["paths"];
    paths["/api/v1/sites/{slug}/notifications"] = json!({ "get": {
        "summary": "The notification log, newest first (phones and e-mails masked)",
        "security": auth,
        "parameters": [slug,
            q("status", "pending, sending, in_doubt, sent, failed or cancelled"),
            q("rule", "a rule name, e.g. session_started"),
            q("resident", "resident id"),
            q("from", "YYYY-MM-DD (site's zone), created on or after"),
            q("to", "YYYY-MM-DD (site's zone), created on or before (inclusive)"),
            q("before", "page on: rows with an id below this (next_before of the last page)"),
            q("limit", "1–500, default 50")],
        "responses": {
            "200": ok("Rows", json!({ "type": "object", "properties": {
                "data": { "type": "array", "items": item },
                "next_before": { "type": ["integer", "null"] } } })),
            "400": err("A bad query parameter (`field` names it)"),
            "401": err("Not logged in"), "404": err("No such site, or not yours") } } });
    paths["/api/v1/sites/{slug}/notifications/{id}/resend"] = json!({ "post": {
        "summary": "Puts a failed notification back in the queue (audited)",
        "security": auth, "parameters": [slug, id],
        "responses": {
            "200": ok("Back in the queue", data(item.clone())),
            "401": err("Not logged in"), "404": err("No such site or notification, or not yours"),
            "409": err("The notification is not failed") } } });
    paths["/api/v1/sites/{slug}/notifications/{id}/resolve"] = json!({ "post": {
        "summary": "An operator's decision on a notification in doubt (audited)",
        "description": "Only for rows in `in_doubt` (the process stopped between handing the \
            message to the gateway and recording its answer, and reconciliation could not \
            settle it). `sent`: the operator confirmed delivery by hand (status `sent`); \
            `resend`: back to `pending`, due now, attempts kept, same reference code — the \
            resident may get it twice; `discard`: `cancelled` with reason `operator`.",
        "security": auth, "parameters": [slug, id],
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["decision"], "additionalProperties": false,
            "properties": { "decision": { "type": "string",
                "enum": ["sent", "resend", "discard"] } } } } } },
        "responses": {
            "200": ok("Decided: the row as it is now", data(item)),
            "400": err("Unreadable body"),
            "401": err("Not logged in"), "404": err("No such site or notification, or not yours"),
            "409": err("The notification is no longer in doubt: \"a mensagem já foi resolvida: <status>\""),
            "422": err("`decision` missing, of the wrong type or unknown; or an unknown field (`field` names it)") } } });
    settings::extend_openapi(doc);
    prefs::extend_openapi(doc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_masked() {
        assert_eq!(masked_email("sindico@example.com"), "s***@example.com");
        assert_eq!(
            masked_url("https://hooks.example.com/abc/secret"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact_digits("to 5582990000101 failed"),
            "to *********0101 failed"
        );
    }
}
