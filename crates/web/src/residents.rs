//! Residents: the list (`/sites/{slug}/residents`, phones masked), creation with tags (one
//! transaction: a tag already owned in an overlapping period stores nothing and names the
//! owner at that tag's field), a resident's own page (full phone; every view writes an audit
//! row), edit, deactivation, and adding/ending tags; and the API twins under
//! `/api/v1/sites/{slug}/residents`.
//!
//! Every change is audited in the same transaction as the change (the store methods take the
//! acting user's audit entry). Bad input: the API answers 422 naming the field (`phone`,
//! `tags[1].tag`, …); the pages re-render the form with the message at the field.
//! The CSV/XLSX import (per-row report, then all valid rows in one transaction) is in
//! [`crate::residents_import`], on top of [`ResidentInput::check`].

use crate::auth::AuthUser;
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit, day_start, input_date, invalid, local_date, parse_instant};
use crate::input::{JsonObject, query_pairs};
use crate::{AppState, ClientAddr, SiteSettings};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use vetric_domain::{PhoneError, PhoneNumber, Tag};
use vetric_store::{
    NewResident, ResidentId, ResidentRow, ResidentUpdate, StoreError, TagGrant, TagOwnershipRow,
};

/// Tag rows offered by the creation form.
const FORM_TAG_ROWS: usize = 3;
/// Most tags accepted in one creation.
const MAX_TAGS: usize = 20;

/// A field and what is wrong with it (pt-BR).
pub type FieldErrors = Vec<(String, String)>;

fn tag_field(i: usize, part: &str) -> String {
    format!("tags[{i}].{part}")
}

/// The pt-BR message of a phone that does not parse (never quotes the number).
pub fn phone_message(e: &PhoneError) -> String {
    match e {
        PhoneError::Empty => "informe o telefone (WhatsApp) com DDD".into(),
        PhoneError::InvalidCharacter(c) => format!(
            "caractere inválido {c:?} no telefone: use só dígitos, +, espaços, parênteses e hífen"
        ),
        PhoneError::MissingCountryCode => {
            "inclua o código do país: +55, DDD e número (ex.: +55 11 91234-5678)".into()
        }
        PhoneError::WrongLength(n) => format!(
            "o telefone tem {n} dígitos; o esperado é 55 + DDD + 8 ou 9 dígitos \
             (ex.: +55 11 91234-5678)"
        ),
        PhoneError::InvalidDdd(d) => format!("DDD {d} inválido"),
        PhoneError::MobileWithoutNine => {
            "celular de 9 dígitos deve começar com 9 depois do DDD".into()
        }
        PhoneError::InvalidSubscriber(c) => format!("o número não pode começar com {c}"),
    }
}

/// A stored phone, masked for lists (stored numbers are valid; anything else is masked whole).
pub fn masked_phone(stored: &str) -> String {
    PhoneNumber::parse(stored).map_or_else(|_| "(telefone inválido)".to_owned(), |p| p.masked())
}

/// How a stored phone is shown in full: `+55 11 91234-5678`.
fn full_phone(stored: &str) -> String {
    match PhoneNumber::parse(stored) {
        Ok(p) => {
            let sub = p.subscriber();
            let (a, b) = sub.split_at(sub.len() - 4);
            format!("+55 {} {a}-{b}", p.ddd())
        }
        Err(_) => stored.to_owned(),
    }
}

/// What the resident forms and the API give: raw text, validated by [`ResidentInput::check`].
#[derive(Default, Clone)]
pub struct ResidentInput {
    pub name: String,
    pub block: String,
    pub unit: String,
    pub phone: String,
    pub email: String,
    pub active: bool,
    pub tags: Vec<TagInput>,
}

#[derive(Default, Clone)]
pub struct TagInput {
    pub tag: String,
    pub valid_from: String,
    pub valid_to: String,
}

/// A validated resident.
pub struct CheckedResident {
    pub name: String,
    pub block: String,
    pub unit: String,
    pub phone: PhoneNumber,
    pub email: Option<String>,
    pub active: bool,
    pub tags: Vec<TagGrant>,
}

fn check_text(errors: &mut FieldErrors, field: &str, label: &str, v: &str, max: usize) {
    if v.trim().is_empty() {
        errors.push((field.into(), format!("informe {label}")));
    } else if v.chars().count() > max {
        errors.push((field.into(), format!("{label}: no máximo {max} caracteres")));
    } else if v.chars().any(char::is_control) {
        errors.push((field.into(), format!("{label} contém caracteres inválidos")));
    }
}

/// Checks one tag row (`i` names its fields); `None` when it has errors (pushed).
pub fn check_tag(
    site: &SiteSettings,
    t: &TagInput,
    i: usize,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<TagGrant> {
    let before = errors.len();
    let tag = match Tag::parse(&t.tag) {
        Ok(tag) => Some(tag),
        Err(e) => {
            let msg = match e {
                vetric_domain::TagError::Empty => "informe o código da tag".to_owned(),
                vetric_domain::TagError::TooLong { max } => {
                    format!("a tag tem no máximo {max} caracteres")
                }
                vetric_domain::TagError::BadCharacter(c) => {
                    format!("caractere inválido {c:?} na tag (use letras e dígitos)")
                }
            };
            errors.push((tag_field(i, "tag"), msg));
            None
        }
    };
    let from = if t.valid_from.trim().is_empty() {
        day_start(site, now.with_timezone(&site.timezone).date_naive())
    } else {
        parse_instant(site, &t.valid_from)
    };
    if from.is_none() {
        errors.push((
            tag_field(i, "valid_from"),
            "data inválida: use dd/mm/aaaa ou AAAA-MM-DD".into(),
        ));
    }
    let to = if t.valid_to.trim().is_empty() {
        None
    } else {
        match parse_instant(site, &t.valid_to) {
            Some(to) => Some(to),
            None => {
                errors.push((
                    tag_field(i, "valid_to"),
                    "data inválida: use dd/mm/aaaa ou AAAA-MM-DD".into(),
                ));
                None
            }
        }
    };
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        errors.push((
            tag_field(i, "valid_to"),
            "o fim da validade deve ser depois do início".into(),
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(TagGrant {
        tag: tag?,
        valid_from: from?,
        valid_to: to,
    })
}

impl ResidentInput {
    /// Validates everything at once, so a form shows every problem in one round.
    pub fn check(&self, site: &SiteSettings) -> Result<CheckedResident, FieldErrors> {
        let mut errors = FieldErrors::new();
        check_text(&mut errors, "name", "o nome", &self.name, 200);
        check_text(&mut errors, "block", "o bloco ou torre", &self.block, 40);
        check_text(&mut errors, "unit", "a unidade", &self.unit, 40);
        let phone = PhoneNumber::parse(&self.phone)
            .map_err(|e| errors.push(("phone".into(), phone_message(&e))))
            .ok();
        let email = self.email.trim();
        if !email.is_empty()
            && (email.chars().count() > 254
                || email.chars().any(|c| c.is_whitespace() || c.is_control())
                || !email.split_once('@').is_some_and(|(a, b)| {
                    !a.is_empty() && b.contains('.') && !b.starts_with('.') && !b.ends_with('.')
                }))
        {
            errors.push((
                "email".into(),
                "e-mail inválido (ex.: nome@exemplo.com)".into(),
            ));
        }
        if self.tags.len() > MAX_TAGS {
            errors.push(("tags".into(), format!("no máximo {MAX_TAGS} tags por vez")));
        }
        let now = Utc::now();
        let mut tags = Vec::new();
        for (i, t) in self.tags.iter().enumerate() {
            if let Some(g) = check_tag(site, t, i, now, &mut errors) {
                if let Some(j) = tags.iter().position(|x: &TagGrant| x.tag == g.tag) {
                    errors.push((
                        tag_field(i, "tag"),
                        format!("tag repetida (igual à {})", j + 1),
                    ));
                }
                tags.push(g);
            }
        }
        match phone {
            Some(phone) if errors.is_empty() => Ok(CheckedResident {
                name: self.name.trim().to_owned(),
                block: self.block.trim().to_owned(),
                unit: self.unit.trim().to_owned(),
                phone,
                email: (!email.is_empty()).then(|| email.to_owned()),
                active: self.active,
                tags,
            }),
            _ => Err(errors),
        }
    }
}

/// The pt-BR message of a tag already owned, and its field.
pub fn tag_taken(site: &SiteSettings, e: &StoreError, field: String) -> Option<(String, String)> {
    if let StoreError::TagTaken {
        tag,
        owner,
        apartment,
        valid_from,
        valid_to,
        ..
    } = e
    {
        let until = valid_to
            .map(|t| format!(" até {}", local_date(site, t)))
            .unwrap_or_default();
        Some((
            field,
            format!(
                "a tag {tag} já pertence a {owner} ({apartment}) desde {}{until}; encerre essa \
                 posse antes de atribuí-la de novo",
                local_date(site, *valid_from)
            ),
        ))
    } else {
        None
    }
}

fn api_errors(mut errors: FieldErrors) -> ApiError {
    let (field, message) = errors.remove(0);
    invalid(&field, message)
}

// ---------------------------------------------------------------------------------- pages

struct ListItem {
    id: i64,
    name: String,
    apartment: String,
    phone: String,
    active: bool,
    tags: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "residents.html")]
struct ResidentsPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    q: String,
    notice: Option<String>,
    items: Vec<ListItem>,
}

struct TagRow {
    idx: usize,
    tag: String,
    valid_from: String,
    valid_to: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "resident_new.html")]
struct NewResidentPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    f: ResidentInput,
    rows: Vec<TagRow>,
    errors: FieldErrors,
}

struct TagLine {
    tag: String,
    from: String,
    to: String,
    current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "resident.html")]
struct ResidentPage {
    user_email: crate::account::NavUser,
    slug: String,
    name: String,
    nav: &'static str,
    id: i64,
    resident_name: String,
    apartment: String,
    phone_full: String,
    email: String,
    active: bool,
    f: ResidentInput,
    tags: Vec<TagLine>,
    new_tag: TagInput,
    today: String,
    notice: Option<String>,
    errors: FieldErrors,
}

/// The message of `field` in `errors`, if any (templates).
fn error_of<'a>(errors: &'a FieldErrors, field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|(f, _)| f == field)
        .map(|(_, m)| m.as_str())
}

impl NewResidentPage {
    fn err(&self, field: &str) -> Option<&str> {
        error_of(&self.errors, field)
    }
    fn tag_err(&self, i: &usize, part: &str) -> Option<&str> {
        error_of(&self.errors, &tag_field(*i, part))
    }
}

impl ResidentPage {
    fn err(&self, field: &str) -> Option<&str> {
        error_of(&self.errors, field)
    }
}

fn search_matches(r: &ResidentRow, tags: &[&TagOwnershipRow], q: &str) -> bool {
    if q.is_empty() {
        return true;
    }
    let q = q.to_lowercase();
    r.name.to_lowercase().contains(&q)
        || r.apartment_label().to_lowercase().contains(&q)
        || format!("{} {}", r.block, r.unit)
            .to_lowercase()
            .contains(&q)
        || tags
            .iter()
            .any(|t| t.tag.as_str().to_lowercase().contains(&q))
}

fn current(t: &TagOwnershipRow, now: DateTime<Utc>) -> bool {
    t.valid_from <= now && t.valid_to.is_none_or(|to| to > now)
}

/// The residents of `site` matching `q`, each with their tags in force (or future).
async fn listed(
    state: &AppState,
    site: &SiteSettings,
    q: &str,
) -> Result<Vec<(ResidentRow, Vec<TagOwnershipRow>)>, StoreError> {
    let residents = state.store().residents(site.id).await?;
    let directory = state.store().tag_directory(site.id).await?;
    let now = Utc::now();
    Ok(residents
        .into_iter()
        .filter_map(|r| {
            let all: Vec<&TagOwnershipRow> =
                directory.iter().filter(|t| t.resident_id == r.id).collect();
            if !search_matches(&r, &all, q) {
                return None;
            }
            let live = all
                .into_iter()
                .filter(|t| t.valid_to.is_none_or(|to| to > now))
                .cloned()
                .collect();
            Some((r, live))
        })
        .collect())
}

/// `GET /sites/{slug}/residents?q=`.
pub async fn list_page(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let mut q = String::new();
    let mut notice = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "q" => q = v.trim().chars().take(100).collect(),
            "criado" => notice = Some("Morador cadastrado.".to_owned()),
            _ => {}
        }
    }
    let items = listed(&state, site, &q)
        .await?
        .into_iter()
        .map(|(r, tags)| ListItem {
            id: r.id.0,
            phone: masked_phone(&r.phone),
            apartment: r.apartment_label(),
            active: r.active,
            tags: tags
                .iter()
                .map(|t| t.tag.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            name: r.name,
        })
        .collect();
    Ok(ResidentsPage {
        user_email: crate::account::NavUser::of(&user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "residents",
        q,
        notice,
        items,
    }
    .into_response())
}

fn new_page(
    user: &AuthUser,
    site: &SiteSettings,
    f: ResidentInput,
    errors: FieldErrors,
) -> NewResidentPage {
    let mut rows: Vec<TagRow> = f
        .tags
        .iter()
        .enumerate()
        .map(|(idx, t)| TagRow {
            idx,
            tag: t.tag.clone(),
            valid_from: t.valid_from.clone(),
            valid_to: t.valid_to.clone(),
        })
        .collect();
    let today = input_date(site, Utc::now());
    while rows.len() < FORM_TAG_ROWS {
        rows.push(TagRow {
            idx: rows.len(),
            tag: String::new(),
            valid_from: today.clone(),
            valid_to: String::new(),
        });
    }
    NewResidentPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "residents",
        f,
        rows,
        errors,
    }
}

/// `GET /sites/{slug}/residents/new`.
pub async fn new_form(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let f = ResidentInput {
        active: true,
        ..ResidentInput::default()
    };
    Ok(new_page(&user, site, f, FieldErrors::new()).into_response())
}

fn unprocessable(page: impl IntoResponse) -> Response {
    let mut res = page.into_response();
    *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    res
}

/// The tag rows of a creation form (`tag_N`, `valid_from_N`, `valid_to_N`), without the
/// rows left empty. Returns the rows and, for each, its index in the form.
fn form_tags(form: &FormPairs) -> (Vec<TagInput>, Vec<usize>) {
    let mut tags = Vec::new();
    let mut idx = Vec::new();
    for i in 0..MAX_TAGS + 5 {
        let t = TagInput {
            tag: form.get(&format!("tag_{i}")),
            valid_from: form.get(&format!("valid_from_{i}")),
            valid_to: form.get(&format!("valid_to_{i}")),
        };
        if !t.tag.is_empty() || !t.valid_to.is_empty() {
            tags.push(t);
            idx.push(i);
        }
    }
    (tags, idx)
}

/// `POST /sites/{slug}/residents`.
pub async fn create_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let (tags, _) = form_tags(&form);
    let input = ResidentInput {
        name: form.get("name"),
        block: form.get("block"),
        unit: form.get("unit"),
        phone: form.get("phone"),
        email: form.get("email"),
        active: true,
        tags,
    };
    let checked = match input.check(site) {
        Ok(c) => c,
        Err(errors) => return Ok(unprocessable(new_page(&user, site, input, errors))),
    };
    match create(&state, site, &user, &peer.0, &checked).await {
        Ok(_) => {
            Ok(Redirect::to(&format!("/sites/{}/residents?criado=1", site.slug)).into_response())
        }
        Err(e) => {
            let field = match &e {
                StoreError::TagTaken { index, .. } => tag_field(*index, "tag"),
                _ => String::new(),
            };
            match tag_taken(site, &e, field) {
                Some(err) => Ok(unprocessable(new_page(&user, site, input, vec![err]))),
                None => Err(PageError::from(e)),
            }
        }
    }
}

async fn create(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    c: &CheckedResident,
) -> Result<ResidentId, StoreError> {
    let entry = audit(user, ip, "resident_create", "").with_detail(json!({
        "via": user.via.as_str(),
        "site": site.slug,
        "tags": c.tags.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
    }));
    state
        .store()
        .create_resident(
            site.id,
            &NewResident {
                name: c.name.clone(),
                phone: c.phone.digits().to_owned(),
                email: c.email.clone(),
                block: c.block.clone(),
                unit: c.unit.clone(),
            },
            &c.tags,
            &entry,
        )
        .await
}

fn parse_id(raw: &str) -> Option<ResidentId> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).map(ResidentId)
}

/// Reads the resident and writes the audit row of seeing their full phone.
async fn viewed(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: ResidentId,
) -> Result<Option<(ResidentRow, Vec<TagOwnershipRow>)>, StoreError> {
    let Some(r) = state.store().resident(site.id, id).await? else {
        return Ok(None);
    };
    let tags = state.store().resident_tags(site.id, id).await?;
    state
        .store()
        .append_audit(
            &audit(user, ip, "resident_view", format!("resident:{id}")).with_detail(
                json!({ "via": user.via.as_str(), "site": site.slug, "resident": id.0 }),
            ),
        )
        .await?;
    Ok(Some((r, tags)))
}

fn input_of(r: &ResidentRow) -> ResidentInput {
    ResidentInput {
        name: r.name.clone(),
        block: r.block.clone(),
        unit: r.unit.clone(),
        phone: full_phone(&r.phone),
        email: r.email.clone().unwrap_or_default(),
        active: r.active,
        tags: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn detail_page(
    user: &AuthUser,
    site: &SiteSettings,
    r: &ResidentRow,
    tags: Vec<TagOwnershipRow>,
    f: Option<ResidentInput>,
    new_tag: Option<TagInput>,
    notice: Option<String>,
    errors: FieldErrors,
) -> ResidentPage {
    let now = Utc::now();
    let today = input_date(site, now);
    ResidentPage {
        user_email: crate::account::NavUser::of(user),
        slug: site.slug.clone(),
        name: site.name.clone(),
        nav: "residents",
        id: r.id.0,
        resident_name: r.name.clone(),
        apartment: r.apartment_label(),
        phone_full: full_phone(&r.phone),
        email: r.email.clone().unwrap_or_default(),
        active: r.active,
        f: f.unwrap_or_else(|| input_of(r)),
        tags: tags
            .iter()
            .map(|t| TagLine {
                tag: t.tag.as_str().to_owned(),
                from: local_date(site, t.valid_from),
                to: t.valid_to.map(|x| local_date(site, x)).unwrap_or_default(),
                current: current(t, now) || t.valid_from > now,
            })
            .collect(),
        new_tag: new_tag.unwrap_or(TagInput {
            valid_from: today.clone(),
            ..TagInput::default()
        }),
        today,
        notice,
        errors,
    }
}

/// `GET /sites/{slug}/residents/{id}`: the full phone, audited.
pub async fn detail(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let (r, tags) = viewed(&state, site, &user, &peer.0, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let notice = match raw.as_deref() {
        Some("ok=salvo") => Some("Alterações salvas.".to_owned()),
        Some("ok=tag") => Some("Tag atribuída.".to_owned()),
        Some("ok=fim") => Some("Tag encerrada.".to_owned()),
        Some("ok=desativado") => Some("Morador desativado.".to_owned()),
        _ => None,
    };
    Ok(detail_page(
        &user,
        site,
        &r,
        tags,
        None,
        None,
        notice,
        FieldErrors::new(),
    )
    .into_response())
}

#[allow(clippy::too_many_arguments)]
async fn rerender(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: ResidentId,
    f: Option<ResidentInput>,
    new_tag: Option<TagInput>,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    let (r, tags) = viewed(state, site, user, ip, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    Ok(unprocessable(detail_page(
        user, site, &r, tags, f, new_tag, None, errors,
    )))
}

fn back(site: &SiteSettings, id: ResidentId, ok: &str) -> Response {
    Redirect::to(&format!("/sites/{}/residents/{}?ok={ok}", site.slug, id.0)).into_response()
}

async fn update(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: ResidentId,
    c: &CheckedResident,
    action: &str,
) -> Result<(), StoreError> {
    let entry = audit(user, ip, action, format!("resident:{id}")).with_detail(json!({
        "via": user.via.as_str(), "site": site.slug, "active": c.active,
    }));
    state
        .store()
        .update_resident(
            site.id,
            id,
            &ResidentUpdate {
                name: c.name.clone(),
                phone: c.phone.digits().to_owned(),
                email: c.email.clone(),
                block: c.block.clone(),
                unit: c.unit.clone(),
                active: c.active,
            },
            &entry,
        )
        .await
}

fn not_found_as_page(e: StoreError) -> PageError {
    match e {
        StoreError::NotFound { .. } => PageError::not_found(),
        e => PageError::from(e),
    }
}

/// `POST /sites/{slug}/residents/{id}`: edit (name, apartment, phone, e-mail, active).
pub async fn edit_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let input = ResidentInput {
        name: form.get("name"),
        block: form.get("block"),
        unit: form.get("unit"),
        phone: form.get("phone"),
        email: form.get("email"),
        active: form.has("active"),
        tags: Vec::new(),
    };
    match input.check(site) {
        Ok(c) => {
            update(&state, site, &user, &peer.0, id, &c, "resident_update")
                .await
                .map_err(not_found_as_page)?;
            Ok(back(site, id, "salvo"))
        }
        Err(errors) => rerender(&state, site, &user, &peer.0, id, Some(input), None, errors).await,
    }
}

/// `POST /sites/{slug}/residents/{id}/deactivate`.
pub async fn deactivate_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let r = state
        .store()
        .resident(site.id, id)
        .await?
        .ok_or_else(PageError::not_found)?;
    let entry = audit(
        &user,
        &peer.0,
        "resident_deactivate",
        format!("resident:{id}"),
    );
    state
        .store()
        .update_resident(
            site.id,
            id,
            &ResidentUpdate {
                name: r.name,
                phone: r.phone,
                email: r.email,
                block: r.block,
                unit: r.unit,
                active: false,
            },
            &entry,
        )
        .await
        .map_err(not_found_as_page)?;
    Ok(back(site, id, "desativado"))
}

/// Gives a tag to a resident, audited. `Err(Ok(errors))` for bad input or a taken tag.
pub async fn grant(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: ResidentId,
    t: &TagInput,
    action: &str,
) -> Result<(), Result<FieldErrors, StoreError>> {
    let mut errors = FieldErrors::new();
    let Some(g) = check_tag(site, t, 0, Utc::now(), &mut errors) else {
        return Err(Ok(errors
            .into_iter()
            .map(|(f, m)| (f.trim_start_matches("tags[0].").to_owned(), m))
            .collect()));
    };
    let entry = audit(user, ip, action, format!("resident:{id}")).with_detail(json!({
        "via": user.via.as_str(), "site": site.slug, "tag": g.tag.as_str(),
        "valid_from": g.valid_from, "valid_to": g.valid_to,
    }));
    match state.store().grant_tag(site.id, id, &g, &entry).await {
        Ok(()) => Ok(()),
        Err(e) => match tag_taken(site, &e, "tag".into()) {
            Some(err) => Err(Ok(vec![err])),
            None => Err(Err(e)),
        },
    }
}

/// `POST /sites/{slug}/residents/{id}/tags`: add a tag (`tag`, `valid_from`, `valid_to`).
pub async fn add_tag_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let t = TagInput {
        tag: form.get("tag"),
        valid_from: form.get("valid_from"),
        valid_to: form.get("valid_to"),
    };
    match grant(&state, site, &user, &peer.0, id, &t, "tag_grant").await {
        Ok(()) => Ok(back(site, id, "tag")),
        Err(Ok(errors)) => {
            let errors = errors
                .into_iter()
                .map(|(f, m)| (format!("new_{f}"), m))
                .collect();
            rerender(&state, site, &user, &peer.0, id, None, Some(t), errors).await
        }
        Err(Err(e)) => Err(not_found_as_page(e)),
    }
}

/// `POST /sites/{slug}/residents/{id}/tags/end`: ends `tag` at the date `at` (today when
/// empty).
pub async fn end_tag_submit(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    form: FormPairs,
) -> Result<Response, PageError> {
    let site = state.site_page(&user, &slug)?;
    let id = parse_id(&id).ok_or_else(PageError::not_found)?;
    let tag = Tag::parse(&form.get("tag"));
    let at_raw = form.get("at");
    let at = if at_raw.is_empty() {
        Some(Utc::now())
    } else {
        parse_instant(site, &at_raw)
    };
    let (Ok(tag), Some(at)) = (tag, at) else {
        let errors = vec![(
            "end".to_owned(),
            "informe a tag e uma data válida (dd/mm/aaaa)".to_owned(),
        )];
        return rerender(&state, site, &user, &peer.0, id, None, None, errors).await;
    };
    let entry = audit(&user, &peer.0, "tag_end", format!("resident:{id}")).with_detail(json!({
        "via": user.via.as_str(), "site": site.slug, "tag": tag.as_str(), "at": at,
    }));
    match state
        .store()
        .end_resident_tag(site.id, id, &tag, at, &entry)
        .await
    {
        Ok(()) => Ok(back(site, id, "fim")),
        Err(StoreError::NotFound { .. }) => {
            let errors = vec![(
                "end".to_owned(),
                format!(
                    "a tag {tag} não está com este morador em {} (ou começa depois dessa data)",
                    local_date(site, at)
                ),
            )];
            rerender(&state, site, &user, &peer.0, id, None, None, errors).await
        }
        Err(e) => Err(PageError::from(e)),
    }
}

// ------------------------------------------------------------------------------------ API

#[derive(Serialize)]
struct TagItem {
    tag: String,
    valid_from: DateTime<Utc>,
    valid_to: Option<DateTime<Utc>>,
}

impl From<&TagOwnershipRow> for TagItem {
    fn from(t: &TagOwnershipRow) -> Self {
        Self {
            tag: t.tag.as_str().to_owned(),
            valid_from: t.valid_from,
            valid_to: t.valid_to,
        }
    }
}

#[derive(Serialize)]
struct ResidentItem {
    id: i64,
    name: String,
    block: String,
    unit: String,
    apartment: String,
    /// Masked in lists; in full only from `GET …/residents/{id}` (audited).
    phone: String,
    email: Option<String>,
    active: bool,
    tags: Vec<TagItem>,
}

fn item(r: &ResidentRow, tags: &[TagOwnershipRow], full: bool) -> ResidentItem {
    ResidentItem {
        id: r.id.0,
        name: r.name.clone(),
        block: r.block.clone(),
        unit: r.unit.clone(),
        apartment: r.apartment_label(),
        phone: if full {
            PhoneNumber::parse(&r.phone)
                .map_or_else(|_| r.phone.clone(), |p| format!("+{}", p.digits()))
        } else {
            masked_phone(&r.phone)
        },
        email: r.email.clone(),
        active: r.active,
        tags: tags.iter().map(TagItem::from).collect(),
    }
}

/// `GET /api/v1/sites/{slug}/residents?q=`: phones masked, tags in force or future.
pub async fn api_list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let mut q = String::new();
    for (_, v) in query_pairs(raw.as_deref(), &["q"])? {
        if v.chars().count() > 100 {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "q",
                "q aceita no máximo 100 caracteres",
            ));
        }
        q = v.trim().to_owned();
    }
    let data: Vec<ResidentItem> = listed(&state, site, &q)
        .await?
        .iter()
        .map(|(r, t)| item(r, t, false))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

fn opt_str(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > 1000 => {
            Err(invalid(name, format!("o campo {name} é longo demais")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, format!("o campo {name} deve ser um texto"))),
    }
}

fn tag_inputs(body: &Map<String, Value>) -> Result<Vec<TagInput>, ApiError> {
    let items = match body.get("tags") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(invalid(
                "tags",
                "tags deve ser uma lista de {tag, valid_from, valid_to}",
            ));
        }
    };
    if items.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!("no máximo {MAX_TAGS} tags por vez"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let Value::Object(o) = v else {
                return Err(invalid(
                    &format!("tags[{i}]"),
                    "cada tag deve ser um objeto {tag, valid_from, valid_to}",
                ));
            };
            let field = |n: &str| -> Result<String, ApiError> {
                opt_str(o, n)
                    .map(Option::unwrap_or_default)
                    .map_err(|e| e.field(tag_field(i, n)))
            };
            Ok(TagInput {
                tag: field("tag")?,
                valid_from: field("valid_from")?,
                valid_to: field("valid_to")?,
            })
        })
        .collect()
}

/// `POST /api/v1/sites/{slug}/residents`: `{name, block, unit, phone, email?, tags?: [{tag,
/// valid_from?, valid_to?}]}` → 201 with the resident (phone masked).
pub async fn api_create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(slug): Path<String>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let input = ResidentInput {
        name: opt_str(&body, "name")?.unwrap_or_default(),
        block: opt_str(&body, "block")?.unwrap_or_default(),
        unit: opt_str(&body, "unit")?.unwrap_or_default(),
        phone: opt_str(&body, "phone")?.unwrap_or_default(),
        email: opt_str(&body, "email")?.unwrap_or_default(),
        active: true,
        tags: tag_inputs(&body)?,
    };
    let checked = input.check(site).map_err(api_errors)?;
    let id = match create(&state, site, &user, &peer.0, &checked).await {
        Ok(id) => id,
        Err(e) => {
            let field = match &e {
                StoreError::TagTaken { index, .. } => tag_field(*index, "tag"),
                _ => String::new(),
            };
            return Err(match tag_taken(site, &e, field) {
                Some((f, m)) => ApiError::new(StatusCode::CONFLICT, "tag_taken", m).field(f),
                None => ApiError::from(e),
            });
        }
    };
    let r = state
        .store()
        .resident(site.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let tags = state.store().resident_tags(site.id, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "data": item(&r, &tags, false) })),
    )
        .into_response())
}

/// `GET /api/v1/sites/{slug}/residents/{id}`: the full phone and every tag interval; audited.
pub async fn api_get(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = parse_id(&id).ok_or_else(ApiError::not_found)?;
    let (r, tags) = viewed(&state, site, &user, &peer.0, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({ "data": item(&r, &tags, true) })).into_response())
}

/// `PATCH /api/v1/sites/{slug}/residents/{id}`: any of `name`, `block`, `unit`, `phone`,
/// `email` (null clears it), `active`.
pub async fn api_patch(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = parse_id(&id).ok_or_else(ApiError::not_found)?;
    const KNOWN: &[&str] = &["name", "block", "unit", "phone", "email", "active"];
    if let Some(k) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(
            k,
            format!("campo desconhecido {k}; aceitos: {}", KNOWN.join(", ")),
        ));
    }
    let r = state
        .store()
        .resident(site.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut input = input_of(&r);
    input.phone = r.phone.clone();
    for (name, slot) in [
        ("name", &mut input.name),
        ("block", &mut input.block),
        ("unit", &mut input.unit),
        ("phone", &mut input.phone),
    ] {
        if body.contains_key(name) {
            *slot = opt_str(&body, name)?
                .ok_or_else(|| invalid(name, format!("o campo {name} não pode ser nulo")))?;
        }
    }
    if body.contains_key("email") {
        input.email = opt_str(&body, "email")?.unwrap_or_default();
    }
    match body.get("active") {
        None => {}
        Some(Value::Bool(b)) => input.active = *b,
        Some(_) => return Err(invalid("active", "o campo active deve ser true ou false")),
    }
    let checked = input.check(site).map_err(api_errors)?;
    update(
        &state,
        site,
        &user,
        &peer.0,
        id,
        &checked,
        "resident_update",
    )
    .await
    .map_err(|e| match e {
        StoreError::NotFound { .. } => ApiError::not_found(),
        e => ApiError::from(e),
    })?;
    let r = state
        .store()
        .resident(site.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let tags = state.store().resident_tags(site.id, id).await?;
    Ok(Json(json!({ "data": item(&r, &tags, false) })).into_response())
}

/// `POST /api/v1/sites/{slug}/residents/{id}/tags`: `{tag, valid_from?, valid_to?}` → 201.
pub async fn api_add_tag(
    State(state): State<AppState>,
    user: AuthUser,
    Path((slug, id)): Path<(String, String)>,
    peer: ClientAddr,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let site = crate::api::site(&state, &user, &slug)?;
    let id = parse_id(&id).ok_or_else(ApiError::not_found)?;
    if state.store().resident(site.id, id).await?.is_none() {
        return Err(ApiError::not_found());
    }
    let t = TagInput {
        tag: opt_str(&body, "tag")?.unwrap_or_default(),
        valid_from: opt_str(&body, "valid_from")?.unwrap_or_default(),
        valid_to: opt_str(&body, "valid_to")?.unwrap_or_default(),
    };
    api_grant(&state, site, &user, &peer.0, id, &t, "tag_grant").await?;
    let tags = state.store().resident_tags(site.id, id).await?;
    let data: Vec<TagItem> = tags.iter().map(TagItem::from).collect();
    Ok((StatusCode::CREATED, Json(json!({ "data": data }))).into_response())
}

/// [`grant`] with API errors: 422 for bad input, 409 naming the owner, 404 for a resident
/// that is not the site's.
pub async fn api_grant(
    state: &AppState,
    site: &SiteSettings,
    user: &AuthUser,
    ip: &str,
    id: ResidentId,
    t: &TagInput,
    action: &str,
) -> Result<(), ApiError> {
    match grant(state, site, user, ip, id, t, action).await {
        Ok(()) => Ok(()),
        Err(Ok(mut errors)) => {
            let (f, m) = errors.remove(0);
            if m.contains("já pertence") {
                Err(ApiError::new(StatusCode::CONFLICT, "tag_taken", m).field(f))
            } else {
                Err(invalid(&f, m))
            }
        }
        Err(Err(StoreError::NotFound { .. })) => Err(invalid(
            "resident_id",
            "morador não encontrado neste condomínio",
        )),
        Err(Err(e)) => Err(ApiError::from(e)),
    }
}
