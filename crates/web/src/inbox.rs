//! The unknown-tag inbox: `GET /sites/{slug}/inbox` lists the tags seen on chargers with no
//! owner; "atribuir a morador" gives the tag to an existing resident from a date (the store's
//! grant clears the inbox entry in the same transaction, audited). API twins:
//! `GET /api/v1/sites/{slug}/unknown-tags`, `POST …/unknown-tags/{tag}/assign`.

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, input_date, invalid, local_datetime};
use crate::input::{JsonObject, query_pairs};
use crate::residents::{FieldErrors, TagInput, grant};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use vetric_domain::Tag;
use vetric_store::{ResidentId, StoreError, UnknownTagRow};

struct Item {
    tag: String,
    key: String,
    first_seen: String,
    last_seen: String,
    charger: String,
    count: i64,
    from: String,
    chosen: String,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
struct InboxPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    notice: Option<String>,
    items: Vec<Item>,
    residents: Vec<(String, String)>,
}

fn path_key(tag: &str) -> String {
    url::form_urlencoded::byte_serialize(tag.as_bytes()).collect()
}

async fn charger_names(
    state: &AppState,
    site: &SiteSettings,
) -> Result<HashMap<String, String>, StoreError> {
    Ok(state
        .store()
        .connectors(site.id)
        .await?
        .into_iter()
        .map(|c| (c.charger_uuid, c.charger_name))
        .collect())
}

/// The inbox page; `failed` = (tag, chosen resident, date, message) re-shows one form's error.
async fn render(
    state: &AppState,
    user: &AuthUser,
    site: &SiteSettings,
    notice: Option<String>,
    failed: Option<(String, String, String, String)>,
) -> Result<InboxPage, PageError> {
    let names = charger_names(state, site).await?;
    let residents = state
        .store()
        .residents(site.id)
        .await?
        .into_iter()
        .filter(|r| r.active)
        .map(|r| {
            let label = format!("{} ({})", r.name, r.apartment_label());
            (r.id.to_string(), label)
        })
        .collect();
    let items = state
        .store()
        .unknown_tags(site.id)
        .await?
        .into_iter()
        .map(|u| {
            let tag = u.tag.as_str().to_owned();
            let mine = failed.as_ref().filter(|f| f.0 == tag);
            Item {
                key: path_key(&tag),
                first_seen: local_datetime(site, u.first_seen),
                last_seen: local_datetime(site, u.last_seen),
                charger: u
                    .charger_uuid
                    .as_ref()
                    .map(|c| names.get(c).cloned().unwrap_or_else(|| c.clone()))
                    .unwrap_or_default(),
                count: u.seen_count,
                from: mine
                    .map(|f| f.2.clone())
                    .unwrap_or_else(|| input_date(site, u.first_seen)),
                chosen: mine.map(|f| f.1.clone()).unwrap_or_default(),
                error: mine.map(|f| f.3.clone()),
                tag,
            }
        })
        .collect();
    Ok(InboxPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "inbox",
        notice,
        items,
        residents,
    })
}

/// `GET /sites/{slug}/inbox`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let notice = raw
        .as_deref()
        .and_then(|q| q.strip_prefix("atribuida="))
        .map(|t| {
            let t: String = url::form_urlencoded::parse(format!("t={t}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            format!("Tag {} atribuída.", t.chars().take(64).collect::<String>())
        });
    Ok(render(&state, &user, site, notice, None)
        .await?
        .into_response())
}

fn resident_id(raw: &str) -> Option<ResidentId> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(ResidentId)
}

/// The tag of the path if it is in the site's inbox now.
async fn pending(
    state: &AppState,
    site: &SiteSettings,
    raw: &str,
) -> Result<Option<UnknownTagRow>, StoreError> {
    let Ok(tag) = Tag::parse(raw) else {
        return Ok(None);
    };
    Ok(state
        .store()
        .unknown_tags(site.id)
        .await?
        .into_iter()
        .find(|u| u.tag == tag))
}

/// `POST /sites/{slug}/inbox/{tag}/assign` (`resident_id`, `valid_from`).
pub async fn assign_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, tag)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let u = pending(&state, site, &tag)
        .await?
        .ok_or_else(PageError::not_found)?;
    let chosen = form.get("resident_id");
    let from = form.get("valid_from");
    let fail = |msg: String| Some((u.tag.as_str().to_owned(), chosen.clone(), from.clone(), msg));
    let failed = match resident_id(&chosen) {
        None => fail("escolha o morador".into()),
        Some(id) => {
            let t = TagInput {
                tag: u.tag.as_str().to_owned(),
                valid_from: from.clone(),
                valid_to: String::new(),
            };
            match grant(&state, site, &user, &peer.0, id, &t, "unknown_tag_assign").await {
                Ok(()) => {
                    return Ok(Redirect::to(&format!(
                        "/sites/{}/inbox?atribuida={}",
                        site.slug,
                        path_key(u.tag.as_str())
                    ))
                    .into_response());
                }
                Err(Ok(errors)) => fail(first_message(errors)),
                Err(Err(StoreError::NotFound { .. })) => {
                    fail("morador não encontrado neste condomínio".into())
                }
                Err(Err(e)) => return Err(PageError::from(e)),
            }
        }
    };
    let mut res = render(&state, &user, site, None, failed)
        .await?
        .into_response();
    *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(res)
}

fn first_message(errors: FieldErrors) -> String {
    errors
        .into_iter()
        .next()
        .map(|(_, m)| m)
        .unwrap_or_else(|| "não foi possível atribuir".into())
}

#[derive(Serialize)]
struct UnknownTagItem {
    tag: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    charger_uuid: Option<String>,
    charger: Option<String>,
    session_id: Option<i64>,
    seen_count: i64,
}

/// `GET /api/v1/sites/{slug}/unknown-tags`: unresolved tags, most recently seen first.
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    query_pairs(raw.as_deref(), &[])?;
    let names = charger_names(&state, site).await?;
    let data: Vec<UnknownTagItem> = state
        .store()
        .unknown_tags(site.id)
        .await?
        .into_iter()
        .map(|u| UnknownTagItem {
            tag: u.tag.as_str().to_owned(),
            first_seen: u.first_seen,
            last_seen: u.last_seen,
            charger: u.charger_uuid.as_ref().and_then(|c| names.get(c).cloned()),
            charger_uuid: u.charger_uuid,
            session_id: u.session_vendor_id,
            seen_count: u.seen_count,
        })
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

/// `POST /api/v1/sites/{slug}/unknown-tags/{tag}/assign` `{resident_id, valid_from?}` →
/// 201 with the ownership created. 404 when the tag is not in the inbox.
pub async fn api_assign(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, tag)): Path<(String, String)>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let u = pending(&state, site, &tag)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let id = match body.get("resident_id") {
        Some(Value::Number(n)) => n.as_i64().filter(|n| *n > 0).map(ResidentId),
        Some(Value::String(s)) => resident_id(s),
        None | Some(Value::Null) => {
            return Err(invalid("resident_id", "o campo resident_id é obrigatório"));
        }
        Some(_) => None,
    }
    .ok_or_else(|| invalid("resident_id", "resident_id deve ser o id de um morador"))?;
    let valid_from = match body.get("valid_from") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 64 => s.clone(),
        Some(_) => {
            return Err(invalid(
                "valid_from",
                "valid_from deve ser uma data (AAAA-MM-DD) ou um instante RFC 3339",
            ));
        }
    };
    let t = TagInput {
        tag: u.tag.as_str().to_owned(),
        valid_from,
        valid_to: String::new(),
    };
    crate::residents::api_grant(&state, site, &user, &peer.0, id, &t, "unknown_tag_assign").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": { "tag": u.tag.as_str(), "resident_id": id.0 } })),
    )
        .into_response())
}
