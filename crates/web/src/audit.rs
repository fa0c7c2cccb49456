//! The audit log, for admins only (page `GET /audit`, API `GET /api/v1/audit`): who (e-mail),
//! did what, to what, when (America/Sao_Paulo on the page), from where, and the detail;
//! newest first, a page at a time (`before` = the smallest id already shown). Anyone else
//! gets a 404, exactly like a page that does not exist.

use crate::account::NavUser;
use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::input::query_pairs;
use crate::{AppState, pages};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vetric_store::{AuditView, Role};

/// Rows per page when `limit` is not given, and the most one page may hold.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// The zone the page shows instants in.
pub const DISPLAY_TZ: chrono_tz::Tz = chrono_tz::America::Sao_Paulo;

/// `limit` and `before` from a query string, with errors naming the parameter.
fn page_query(raw: Option<&str>) -> Result<(i64, Option<i64>), ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut before = None;
    for (k, v) in query_pairs(raw, &["limit", "before"])? {
        let n = v.trim().parse::<i64>().ok();
        match (k.as_str(), n) {
            ("limit", Some(n)) if (1..=MAX_LIMIT).contains(&n) => limit = n,
            ("limit", _) => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "limit",
                    format!("limit deve ser um número inteiro de 1 a {MAX_LIMIT}"),
                ));
            }
            (_, Some(n)) if n > 0 => before = Some(n),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "before",
                    "before deve ser o id (inteiro positivo) de uma linha do registro",
                ));
            }
        }
    }
    Ok((limit, before))
}

/// `GET /api/v1/audit?limit&before`: `{"data": [...], "next_before": id|null}`.
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    if user.role != Role::Admin {
        return Err(ApiError::not_found());
    }
    let (limit, before) = page_query(q.as_deref())?;
    let rows = state.store().audit_page(limit + 1, before).await?;
    let (rows, next_before) = split_page(rows, limit);
    let data: Vec<_> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "at": r.at, "user_email": r.user_email, "action": r.action,
                "target": r.target, "ip": r.ip, "detail": r.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data, "next_before": next_before })).into_response())
}

/// Keeps `limit` rows; the id to continue from when there are more.
fn split_page(mut rows: Vec<AuditView>, limit: i64) -> (Vec<AuditView>, Option<i64>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| r.id);
        (rows, next)
    } else {
        (rows, None)
    }
}

struct AuditItem {
    who: String,
    action: String,
    target: String,
    when: String,
    ip: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    user_email: NavUser,
    rows: Vec<AuditItem>,
    next_href: Option<String>,
    first_page: bool,
}

/// `dd/mm/aaaa HH:MM:SS` in [`DISPLAY_TZ`].
pub fn when_pt_br(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&DISPLAY_TZ)
        .format("%d/%m/%Y %H:%M:%S")
        .to_string()
}

/// `GET /audit?limit&before`: the page (admins only; a 404 for anyone else).
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    if user.role != Role::Admin {
        return Err(PageError::not_found());
    }
    let (limit, before) = match page_query(q.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            return Ok(pages::error_page(e.status, &e.message));
        }
    };
    let rows = state.store().audit_page(limit + 1, before).await?;
    let (rows, next) = split_page(rows, limit);
    let rows = rows
        .into_iter()
        .map(|r| AuditItem {
            who: r
                .user_email
                .or_else(|| r.user_id.map(|id| format!("usuário {id}")))
                .unwrap_or_else(|| "—".to_owned()),
            action: r.action,
            target: r.target,
            when: when_pt_br(r.at),
            ip: r.ip.unwrap_or_else(|| "—".to_owned()),
            detail: match &r.detail {
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                d => d.to_string(),
            },
        })
        .collect();
    Ok(AuditPage {
        user_email: NavUser::of(&user),
        rows,
        next_href: next.map(|id| format!("/audit?before={id}&limit={limit}")),
        first_page: before.is_none(),
    }
    .into_response())
}

/// Adds `GET /api/v1/audit` to the OpenAPI document.
pub fn extend_openapi(doc: &mut serde_json::Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let row = json!({ "type": "object", "properties": {
        "id": { "type": "integer" },
        "at": { "type": "string", "format": "date-time" },
        "user_email": { "type": ["string", "null"] },
        "action": { "type": "string" }, "target": { "type": "string" },
        "ip": { "type": ["string", "null"] }, "detail": { "type": "object" } } });
    doc["paths"]["/api/v1/audit"] = json!({ "get": {
        "summary": "The audit log, newest first (admins only; 404 for anyone else)",
        "security": [{ "bearer": [] }, { "cookie": [] }],
        "parameters": [
            { "name": "limit", "in": "query",
              "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT } },
            { "name": "before", "in": "query", "schema": { "type": "integer", "minimum": 1 },
              "description": "only rows with a smaller id (the previous page's next_before)" }],
        "responses": {
            "200": { "description": "Audit rows", "content": { "application/json": { "schema": {
                "type": "object", "properties": {
                    "data": { "type": "array", "items": row },
                    "next_before": { "type": ["integer", "null"] } } } } } },
            "400": err("A bad query parameter (`field` names it)"),
            "401": err("Not logged in"),
            "404": err("Not an admin")
        } } });
}
