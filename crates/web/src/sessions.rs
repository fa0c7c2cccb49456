//! Sessions history: `GET /sites/{slug}/sessions` (filters, table, totals), its CSV export
//! `GET /sites/{slug}/sessions.csv`, and the filter rules shared with
//! `GET /api/v1/sites/{slug}/sessions`.
//!
//! Filters: `from`/`to` (dates in the site's zone or RFC 3339 instants; on the page `to` is the
//! last day shown, in the API it is exclusive), `charger` (the charger's uuid), `resident`
//! and `apartment` (ids). A bad value is a 400 naming the parameter (on the page: the message
//! next to the field). The CSV is what the filter shows: `;`-separated, UTF-8 with a BOM,
//! pt-BR decimals, and never a phone number.

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{csv_cell, kwh_decimal, local_datetime, parse_date, parse_instant};
use crate::input::query_pairs;
use crate::view::{duration_pt_br, kwh_pt_br};
use crate::{AppState, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use vetric_store::{
    ApartmentId, EndKind, ResidentId, SessionFilter, SessionStatus, SessionView, apartment_label,
};

/// Largest `limit` of the sessions list (API).
pub const MAX_SESSIONS_LIMIT: i64 = 1000;
/// Rows shown on the page (the totals count every matching session).
pub const PAGE_ROWS: i64 = 500;
/// Rows in one CSV export.
pub const CSV_ROWS: i64 = 100_000;

/// A parsed filter and the values to show back in the form.
#[derive(Default)]
pub struct SessionQuery {
    pub filter: SessionFilter,
    pub from: String,
    pub to: String,
    pub charger: String,
    pub resident: String,
    pub apartment: String,
}

impl SessionQuery {
    /// The query string that reproduces this filter (for the CSV link).
    pub fn query_string(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("from", &self.from),
            ("to", &self.to),
            ("charger", &self.charger),
            ("resident", &self.resident),
            ("apartment", &self.apartment),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

fn bad(name: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_parameter", name, message)
}

/// Parses the sessions filter. `page`: empty values mean "any", `limit` is not accepted and
/// a `to` date includes that whole day. Otherwise (the API) `to` is exclusive.
pub fn parse_session_query(
    site: &SiteSettings,
    raw: Option<&str>,
    page: bool,
) -> Result<SessionQuery, ApiError> {
    let allowed: &[&str] = if page {
        &["from", "to", "charger", "resident", "apartment"]
    } else {
        &["from", "to", "limit", "charger", "resident", "apartment"]
    };
    let mut q = SessionQuery {
        filter: SessionFilter {
            limit: Some(if page { PAGE_ROWS } else { 100 }),
            ..SessionFilter::default()
        },
        ..SessionQuery::default()
    };
    for (k, v) in query_pairs(raw, allowed)? {
        let v = v.trim().to_owned();
        if page && v.is_empty() {
            continue;
        }
        match k.as_str() {
            "from" | "to" => {
                let mut t = parse_instant(site, &v).ok_or_else(|| {
                    bad(
                        &k,
                        format!(
                            "{k} deve ser uma data (AAAA-MM-DD ou dd/mm/aaaa) ou um instante \
                             RFC 3339 (ex.: 2026-03-01T12:00:00Z)"
                        ),
                    )
                })?;
                if k == "from" {
                    q.filter.from = Some(t);
                    q.from = v;
                } else {
                    if page && let Some(d) = parse_date(&v) {
                        t = d
                            .succ_opt()
                            .and_then(|next| crate::forms::day_start(site, next))
                            .unwrap_or(t + TimeDelta::days(1));
                    }
                    q.filter.to = Some(t);
                    q.to = v;
                }
            }
            "limit" => {
                let n = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_SESSIONS_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("limit deve ser um número inteiro de 1 a {MAX_SESSIONS_LIMIT}"),
                        )
                    })?;
                q.filter.limit = Some(n);
            }
            "charger" => {
                if v.is_empty() || v.chars().count() > 200 {
                    return Err(bad(
                        "charger",
                        "charger deve ser o identificador (uuid) de um carregador".into(),
                    ));
                }
                q.filter.charger_uuid = Some(v.clone());
                q.charger = v;
            }
            "resident" | "apartment" => {
                let id = v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(
                        &k,
                        format!("{k} deve ser o número (id) de um cadastro deste condomínio"),
                    )
                })?;
                if k == "resident" {
                    q.filter.resident = Some(ResidentId(id));
                    q.resident = v;
                } else {
                    q.filter.apartment = Some(ApartmentId(id));
                    q.apartment = v;
                }
            }
            _ => {}
        }
    }
    if let (Some(f), Some(t)) = (q.filter.from, q.filter.to)
        && f >= t
    {
        return Err(bad("to", "to deve ser posterior a from".into()));
    }
    Ok(q)
}

/// How a session ended, in pt-BR.
pub fn ended_label(s: &SessionView) -> String {
    let kind = match (s.status, s.end_kind) {
        (SessionStatus::Open, _) => return "em andamento".into(),
        (_, Some(EndKind::Finished)) | (_, None) => "finalizada",
        (_, Some(EndKind::Interrupted)) => "interrompida",
        (_, Some(EndKind::Stale)) => "encerrada sem notícias do carregador",
        (_, Some(EndKind::Recorded)) => "registrada depois",
    };
    match s.stop_reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => format!("{kind} ({r})"),
        None => kind.to_owned(),
    }
}

fn duration_of(s: &SessionView, now: DateTime<Utc>) -> String {
    let end = s.stop.unwrap_or(now);
    duration_pt_br((end - s.start).num_seconds())
}

struct Row {
    start: String,
    end: String,
    charger: String,
    resident: String,
    apartment: String,
    energy: String,
    duration: String,
    idle_min: i64,
    ended: String,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sessions.html")]
struct SessionsPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    error: Option<(String, String)>,
    from: String,
    to: String,
    chargers: Vec<Choice>,
    residents: Vec<Choice>,
    apartments: Vec<Choice>,
    rows: Vec<Row>,
    count: i64,
    total_energy: String,
    truncated: bool,
    csv_href: String,
}

impl SessionsPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

fn choose(value: String, label: String, current: &str) -> Choice {
    Choice {
        selected: value == current,
        value,
        label,
    }
}

/// `GET /sites/{slug}/sessions`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (q, error) = match parse_session_query(site, raw.as_deref(), true) {
        Ok(q) => (q, None),
        Err(e) => (
            SessionQuery::default(),
            Some((e.field.unwrap_or_default(), e.message)),
        ),
    };
    let store = state.store();
    let mut chargers: Vec<Choice> = Vec::new();
    for c in store.connectors(site.id).await? {
        if !chargers.iter().any(|x| x.value == c.charger_uuid) {
            chargers.push(choose(c.charger_uuid, c.charger_name, &q.charger));
        }
    }
    let residents = store
        .residents(site.id)
        .await?
        .into_iter()
        .map(|r| {
            let label = format!("{} ({})", r.name, r.apartment_label());
            choose(r.id.to_string(), label, &q.resident)
        })
        .collect();
    let apartments = store
        .apartments(site.id)
        .await?
        .into_iter()
        .map(|a| {
            choose(
                a.id.to_string(),
                apartment_label(&a.block, &a.unit),
                &q.apartment,
            )
        })
        .collect();
    let (rows, count, energy) = if error.is_some() {
        (Vec::new(), 0, 0)
    } else {
        let rows = store.sessions(site.id, &q.filter).await?;
        let (count, energy) = store.session_totals(site.id, &q.filter).await?;
        (rows, count, energy)
    };
    let now = Utc::now();
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|s| Row {
            start: local_datetime(site, s.start),
            end: s.stop.map(|t| local_datetime(site, t)).unwrap_or_default(),
            charger: format!(
                "{} · {}",
                s.charger_name
                    .clone()
                    .unwrap_or_else(|| s.charger_uuid.clone()),
                s.connector_id
            ),
            resident: s.resident_name.clone().unwrap_or_else(|| match &s.tag {
                Some(t) => format!("tag {} (sem morador)", t.as_str()),
                None => "não identificado".into(),
            }),
            apartment: s.apartment_label.clone().unwrap_or_default(),
            energy: s
                .energy_wh
                .map(|wh| kwh_pt_br(wh).trim_end_matches(" kWh").to_owned())
                .unwrap_or_default(),
            duration: duration_of(&s, now),
            idle_min: s.idle_seconds.max(0) / 60,
            ended: ended_label(&s),
        })
        .collect();
    let qs = q.query_string();
    Ok(SessionsPage {
        user_email: crate::account::NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "sessions",
        truncated: count > rows.len() as i64,
        rows,
        count,
        total_energy: kwh_pt_br(energy),
        csv_href: if qs.is_empty() {
            format!("/sites/{}/sessions.csv", site.slug)
        } else {
            format!("/sites/{}/sessions.csv?{qs}", site.slug)
        },
        error,
        from: q.from,
        to: q.to,
        chargers,
        residents,
        apartments,
    }
    .into_response())
}

/// `GET /sites/{slug}/sessions.csv`: the filtered sessions as CSV (see the module docs).
pub async fn csv(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let mut q = match parse_session_query(site, raw.as_deref(), true) {
        Ok(q) => q,
        Err(e) => {
            return Ok(crate::pages::error_page(
                StatusCode::BAD_REQUEST,
                &e.message,
            ));
        }
    };
    q.filter.limit = Some(CSV_ROWS);
    let rows = state.store().sessions(site.id, &q.filter).await?;
    let now = Utc::now();
    let mut out = String::from("\u{feff}");
    out.push_str(
        "Início;Fim;Carregador;Conector;Morador;Apartamento;Tag;Energia (kWh);Duração;\
         Ocioso (min);Encerramento\r\n",
    );
    for s in &rows {
        let cells = [
            local_datetime(site, s.start),
            s.stop.map(|t| local_datetime(site, t)).unwrap_or_default(),
            s.charger_name
                .clone()
                .unwrap_or_else(|| s.charger_uuid.clone()),
            s.connector_id.to_string(),
            s.resident_name.clone().unwrap_or_default(),
            s.apartment_label.clone().unwrap_or_default(),
            s.tag
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            s.energy_wh.map(kwh_decimal).unwrap_or_default(),
            duration_of(s, now),
            (s.idle_seconds.max(0) / 60).to_string(),
            ended_label(s),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(";"));
        out.push_str("\r\n");
    }
    let file = format!(
        "attachment; filename=\"sessoes-{}-{}.csv\"",
        site.slug,
        now.with_timezone(&site.timezone).format("%Y%m%d-%H%M")
    );
    let mut res = out.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&file) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
