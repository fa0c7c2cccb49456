//! A resident's notification preferences: which resident messages they get (every one by
//! default) and quiet hours (off by default; when set, their messages wait for the end of the
//! window — alerts to managers and operators never do).
//!
//! Shown on the resident's page (the section loads this form with htmx, and links to
//! `/sites/{slug}/residents/{id}/notifications` without JavaScript); saved with its audit row
//! in one transaction. API twin: `GET`/`PUT /api/v1/sites/{slug}/residents/{id}/notification-prefs`.

use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit};
use crate::input::JsonObject;
use crate::residents::FieldErrors;
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveTime;
use serde_json::{Value, json};
use vetric_domain::notify::{Audience, NotificationPolicy, Rule};
use vetric_store::{ResidentId, ResidentRow, StoreError};

/// The rules a resident may opt out of.
fn resident_rules() -> impl Iterator<Item = Rule> {
    NotificationPolicy::rules_for(Audience::Resident)
}

/// The resident `id` of `site`, or `None` (another site's resident is as absent as a missing
/// one).
async fn resident_of(
    state: &AppState,
    site: &SiteSettings,
    id: &str,
) -> Result<Option<ResidentRow>, StoreError> {
    let Some(id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return Ok(None);
    };
    Ok(state
        .store()
        .residents(site.id)
        .await?
        .into_iter()
        .find(|r| r.id.0 == id))
}

/// What a resident chose, as the form and the API read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefs {
    opted_out: Vec<Rule>,
    quiet: Option<(NaiveTime, NaiveTime)>,
}

async fn load(state: &AppState, id: ResidentId) -> Result<(Prefs, Option<String>), StoreError> {
    Ok(match state.store().resident_prefs(id).await? {
        None => (
            Prefs {
                opted_out: Vec::new(),
                quiet: None,
            },
            None,
        ),
        Some(row) => (
            Prefs {
                opted_out: row
                    .opted_out
                    .iter()
                    .filter_map(|r| Rule::parse(r))
                    .collect(),
                quiet: row.quiet,
            },
            Some(row.updated_at.to_rfc3339()),
        ),
    })
}

fn parse_time(v: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(v.trim(), "%H:%M").ok()
}

/// Checks quiet hours given as text (`HH:MM`); `None` when off.
fn check_quiet(
    start: &str,
    end: &str,
    start_field: &str,
    end_field: &str,
    errors: &mut FieldErrors,
) -> Option<(NaiveTime, NaiveTime)> {
    let s = parse_time(start);
    let e = parse_time(end);
    if s.is_none() {
        errors.push((
            start_field.to_owned(),
            "informe o início no formato HH:MM (ex.: 22:00)".to_owned(),
        ));
    }
    if e.is_none() {
        errors.push((
            end_field.to_owned(),
            "informe o fim no formato HH:MM (ex.: 07:00)".to_owned(),
        ));
    }
    let (s, e) = (s?, e?);
    if s == e {
        errors.push((
            end_field.to_owned(),
            "início e fim iguais não formam um horário de silêncio; desligue-o ou mude o fim"
                .to_owned(),
        ));
        return None;
    }
    Some((s, e))
}

async fn save(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    site: &SiteSettings,
    r: &ResidentRow,
    p: &Prefs,
) -> Result<(), StoreError> {
    let names: Vec<String> = p.opted_out.iter().map(|r| r.as_str().to_owned()).collect();
    let fmt = |t: NaiveTime| t.format("%H:%M").to_string();
    let entry = audit(
        user,
        ip,
        "resident_notification_prefs",
        format!("resident:{}", r.id.0),
    )
    .with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "opted_out": names,
        "quiet_hours": p.quiet.map(|(s, e)| json!({ "start": fmt(s), "end": fmt(e) })),
    }));
    state
        .store()
        .set_resident_prefs(r.id, &names, p.quiet, &entry)
        .await
}

// ------------------------------------------------------------------------ page

struct RuleChoice {
    rule: &'static str,
    label: &'static str,
    on: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/resident_prefs.html")]
struct PrefsFragment {
    slug: String,
    id: i64,
    rules: Vec<RuleChoice>,
    quiet_on: bool,
    quiet_start: String,
    quiet_end: String,
    notice: Option<String>,
    errors: FieldErrors,
}

impl PrefsFragment {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications_prefs.html")]
struct PrefsPage {
    user_email: NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    resident_name: String,
    id: i64,
    form_html: String,
}

#[allow(clippy::too_many_arguments)]
fn fragment(
    site: &SiteSettings,
    r: &ResidentRow,
    opted_out: &[Rule],
    quiet_on: bool,
    start: String,
    end: String,
    notice: Option<String>,
    errors: FieldErrors,
) -> PrefsFragment {
    PrefsFragment {
        slug: site.slug.clone(),
        id: r.id.0,
        rules: resident_rules()
            .map(|rule| RuleChoice {
                rule: rule.as_str(),
                label: rule.label_pt_br(),
                on: !opted_out.contains(&rule),
            })
            .collect(),
        quiet_on,
        quiet_start: start,
        quiet_end: end,
        notice,
        errors,
    }
}

fn respond(
    user: &AuthUser,
    site: &SiteSettings,
    r: &ResidentRow,
    form: PrefsFragment,
    htmx: bool,
    status: StatusCode,
) -> Response {
    let mut res = if htmx {
        form.into_response()
    } else {
        match form.render() {
            Ok(form_html) => PrefsPage {
                user_email: NavUser::of(user),
                slug: site.slug.clone(),
                name: site.name.clone(),
                nav: "residents",
                resident_name: r.name.clone(),
                id: r.id.0,
                form_html,
            }
            .into_response(),
            Err(e) => return PageError::from(e).into_response(),
        }
    };
    *res.status_mut() = status;
    res
}

/// `GET /sites/{slug}/residents/{id}/notifications`: the form (a fragment for htmx, the
/// resident page loads it; a page of its own otherwise).
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let r = resident_of(&state, site, &id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let (p, _) = load(&state, r.id).await?;
    let fmt = |t: NaiveTime| t.format("%H:%M").to_string();
    let notice = (raw.as_deref() == Some("ok=salvo")).then(|| "Preferências salvas.".to_owned());
    let form = fragment(
        site,
        &r,
        &p.opted_out,
        p.quiet.is_some(),
        p.quiet.map_or_else(|| "22:00".to_owned(), |q| fmt(q.0)),
        p.quiet.map_or_else(|| "07:00".to_owned(), |q| fmt(q.1)),
        notice,
        FieldErrors::new(),
    );
    Ok(respond(
        &user,
        site,
        &r,
        form,
        headers.contains_key("hx-request"),
        StatusCode::OK,
    ))
}

/// `POST /sites/{slug}/residents/{id}/notifications`: `rule` (each checked rule the resident
/// receives), `quiet` (on), `quiet_start`, `quiet_end`.
pub async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    headers: HeaderMap,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let r = resident_of(&state, site, &id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let htmx = headers.contains_key("hx-request");
    let on: Vec<String> = form
        .0
        .iter()
        .filter(|(k, _)| k == "rule")
        .map(|(_, v)| v.trim().to_owned())
        .collect();
    let opted_out: Vec<Rule> = resident_rules()
        .filter(|r| !on.iter().any(|v| v == r.as_str()))
        .collect();
    let quiet_on = form.has("quiet");
    let (start, end) = (form.get("quiet_start"), form.get("quiet_end"));
    let mut errors = FieldErrors::new();
    let quiet = if quiet_on {
        check_quiet(&start, &end, "quiet_start", "quiet_end", &mut errors)
    } else {
        None
    };
    if !errors.is_empty() {
        let f = fragment(site, &r, &opted_out, quiet_on, start, end, None, errors);
        return Ok(respond(
            &user,
            site,
            &r,
            f,
            htmx,
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let p = Prefs { opted_out, quiet };
    save(&state, &user, &peer.0, site, &r, &p).await?;
    if htmx {
        let fmt = |t: NaiveTime| t.format("%H:%M").to_string();
        let f = fragment(
            site,
            &r,
            &p.opted_out,
            p.quiet.is_some(),
            p.quiet.map_or(start, |q| fmt(q.0)),
            p.quiet.map_or(end, |q| fmt(q.1)),
            Some("Preferências salvas.".to_owned()),
            FieldErrors::new(),
        );
        return Ok(respond(&user, site, &r, f, true, StatusCode::OK));
    }
    Ok(Redirect::to(&format!(
        "/sites/{}/residents/{}/notifications?ok=salvo",
        site.slug, r.id.0
    ))
    .into_response())
}

// ------------------------------------------------------------------------ API

fn prefs_json(p: &Prefs, updated_at: Option<String>) -> Value {
    let fmt = |t: NaiveTime| t.format("%H:%M").to_string();
    json!({
        "opted_out": p.opted_out.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "quiet_hours": p.quiet.map(|(s, e)| json!({ "start": fmt(s), "end": fmt(e) })),
        "rules": resident_rules().map(|r| json!({
            "rule": r.as_str(), "label": r.label_pt_br(), "enabled": !p.opted_out.contains(&r),
        })).collect::<Vec<_>>(),
        "updated_at": updated_at,
    })
}

/// `GET /api/v1/sites/{slug}/residents/{id}/notification-prefs`.
pub async fn api_get(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let r = resident_of(&state, site, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (p, updated) = load(&state, r.id).await?;
    Ok(Json(json!({ "data": prefs_json(&p, updated) })).into_response())
}

/// `PUT /api/v1/sites/{slug}/residents/{id}/notification-prefs` `{"opted_out": [rule…],
/// "quiet_hours": {"start": "22:00", "end": "07:00"} | null}`: replaces them; audited.
pub async fn api_put(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let r = resident_of(&state, site, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if let Some(k) = body
        .keys()
        .find(|k| !["opted_out", "quiet_hours"].contains(&k.as_str()))
    {
        return Err(crate::forms::invalid(
            k,
            format!("campo desconhecido {k}; aceitos: opted_out, quiet_hours"),
        ));
    }
    let mut opted_out = Vec::new();
    match body.get("opted_out") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let f = format!("opted_out[{i}]");
                let rule = v.as_str().and_then(Rule::parse).ok_or_else(|| {
                    crate::forms::invalid(
                        &f,
                        format!(
                            "aviso desconhecido; use um destes: {}",
                            resident_rules()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                if rule.audience() != Audience::Resident {
                    return Err(crate::forms::invalid(
                        &f,
                        format!("{rule} não é um aviso ao morador"),
                    ));
                }
                if !opted_out.contains(&rule) {
                    opted_out.push(rule);
                }
            }
        }
        Some(_) => {
            return Err(crate::forms::invalid(
                "opted_out",
                "opted_out deve ser uma lista de nomes de avisos",
            ));
        }
    }
    let quiet = match body.get("quiet_hours") {
        None | Some(Value::Null) => None,
        Some(Value::Object(q)) => {
            let text = |k: &str| q.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let mut errors = FieldErrors::new();
            let quiet = check_quiet(
                &text("start"),
                &text("end"),
                "quiet_hours.start",
                "quiet_hours.end",
                &mut errors,
            );
            if !errors.is_empty() {
                return Err(super::api_invalid(&errors));
            }
            quiet
        }
        Some(_) => {
            return Err(crate::forms::invalid(
                "quiet_hours",
                "quiet_hours deve ser {\"start\": \"HH:MM\", \"end\": \"HH:MM\"} ou null",
            ));
        }
    };
    let p = Prefs { opted_out, quiet };
    save(&state, &user, &peer.0, site, &r, &p).await?;
    let (p, updated) = load(&state, r.id).await?;
    Ok(Json(json!({ "data": prefs_json(&p, updated) })).into_response())
}

pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let slug =
        json!({ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } });
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let quiet = json!({ "type": ["object", "null"], "properties": {
        "start": { "type": "string", "description": "HH:MM, site's zone" },
        "end": { "type": "string", "description": "HH:MM, site's zone (may wrap midnight)" } } });
    let prefs = json!({ "type": "object", "properties": {
        "opted_out": { "type": "array", "items": { "type": "string" },
            "description": "resident rules the resident does not receive" },
        "quiet_hours": quiet,
        "rules": { "type": "array", "items": { "type": "object" } },
        "updated_at": { "type": ["string", "null"] } } });
    let data = json!({ "description": "Preferences", "content": { "application/json": { "schema": {
        "type": "object", "properties": { "data": prefs } } } } });
    doc["paths"]["/api/v1/sites/{slug}/residents/{id}/notification-prefs"] = json!({
        "get": {
            "summary": "A resident's notification preferences (defaults when never set)",
            "security": auth, "parameters": [slug, id],
            "responses": { "200": data,
                "401": err("Not logged in"), "404": err("No such site or resident, or not yours") } },
        "put": {
            "summary": "Replaces a resident's notification preferences (audited)",
            "security": auth, "parameters": [slug, id],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "properties": {
                    "opted_out": { "type": "array", "items": { "type": "string" } },
                    "quiet_hours": quiet } } } } },
            "responses": { "200": data,
                "401": err("Not logged in"), "404": err("No such site or resident, or not yours"),
                "422": err("A bad field (`field` names it, e.g. opted_out[0], quiet_hours.start)") } } });
}
