//! People management: the users page and its API twin, one-time invitations, deactivation,
//! and each user's personal API tokens.
//!
//! Who may do what (RELIABILITY.md R6; every rule is checked here, and the list itself comes
//! from a scoped store query):
//!
//! * An **admin** sees every user and may invite admins and managers, deactivate and
//!   reactivate anyone but themselves, and never the last active admin.
//! * A **manager** sees only the managers who share one of their sites (admins are not
//!   listed to them), and only the sites they share. They may invite managers to their own
//!   sites only, and deactivate, reactivate or re-invite a manager only when every site of
//!   that manager is one of theirs — so a manager can remove a colleague of their own
//!   condomínio (e.g. the previous síndico) but never cut someone off a site they do not run.
//!   Any other user is a 404, exactly like one that does not exist.
//! * Nobody deactivates themselves.
//!
//! An invite creates the user without a usable password and a link `{origin}/invite/{token}`
//! (32 random bytes, stored as SHA-256 only, valid [`INVITE_TTL`], single use) shown once to
//! the inviter. A new invite for the same user ends the previous link. Any link that is not
//! live gets the same 404 and the same words, [`INVALID_INVITE`].
//!
//! Personal API tokens (`/account/tokens`, `/api/v1/account/tokens`) are the tokens `vetric
//! token create` makes (no expiry; the store's `create_token`), shown once at creation.

use crate::account::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, NavUser};
use crate::audit::when_pt_br;
use crate::auth::{self, AuthUser, SESSION_TTL, cookie_token};
use crate::error::{ApiError, PageError};
use crate::forms::{FormPairs, audit};
use crate::input::{Fields, JsonObject};
use crate::pages::error_page;
use crate::security::is_tls;
use crate::{AppState, ClientAddr};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use vetric_store::{
    ActiveChange, AuditEntry, NewInvite, NewToken, Role, SiteId, StoreError, TokenId, TokenKind,
    UserId, UserScope, UserSummary,
};

/// How long an invite link works.
pub const INVITE_TTL: TimeDelta = TimeDelta::hours(72);
/// The one answer to an invite link that is unknown, used, revoked or expired.
pub const INVALID_INVITE: &str = "convite inválido ou expirado";
/// The longest personal token name.
pub const MAX_TOKEN_NAME_CHARS: usize = 100;

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "Administrador",
        Role::Manager => "Gerente",
    }
}

fn scope_of(user: &AuthUser) -> UserScope {
    match user.role {
        Role::Admin => UserScope::All,
        Role::Manager => UserScope::SharingSitesWith(user.id),
    }
}

/// True when `viewer` may deactivate, reactivate or re-invite `target` (already in scope).
fn may_manage(viewer: &AuthUser, target: &UserSummary) -> bool {
    viewer.id != target.id
        && match viewer.role {
            Role::Admin => true,
            Role::Manager => {
                target.role == Role::Manager
                    && !target.sites.is_empty()
                    && target.sites.iter().all(|s| viewer.sites.contains(s))
            }
        }
}

/// The state of an account, as (code for the API, pt-BR label, CSS tone).
fn status_of(u: &UserSummary, now: DateTime<Utc>) -> (&'static str, &'static str, &'static str) {
    match (u.active, u.password_set, u.invite_expires_at) {
        (false, _, _) => ("inactive", "Desativado", "offline"),
        (true, true, _) => ("active", "Ativo", "free"),
        (true, false, Some(t)) if t > now => ("invited", "Convite pendente", "waiting"),
        (true, false, _) => ("invite_expired", "Convite expirado", "fault"),
    }
}

/// The users `viewer` may see; `only` narrows to one (`None` in the result: out of scope).
async fn visible_users(
    state: &AppState,
    viewer: &AuthUser,
    only: Option<UserId>,
) -> Result<Vec<UserSummary>, StoreError> {
    let mut users = state.store().user_summaries(scope_of(viewer), only).await?;
    // A manager learns nothing about sites that are not theirs.
    for u in &mut users {
        u.sites.retain(|s| viewer.can_see(*s));
    }
    Ok(users)
}

/// The slugs of `sites` that are configured, in configuration order.
fn site_slugs(state: &AppState, sites: &[SiteId]) -> Vec<String> {
    state
        .sites()
        .iter()
        .filter(|s| sites.contains(&s.id))
        .map(|s| s.slug.clone())
        .collect()
}

fn user_json(state: &AppState, u: &UserSummary, now: DateTime<Utc>) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "role": u.role.as_str(),
        "active": u.active,
        "status": status_of(u, now).0,
        "sites": site_slugs(state, &u.sites),
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
        "invite_expires_at": if u.password_set { None } else { u.invite_expires_at },
    })
}

/// An error at a form field (the API answers the first one).
#[derive(Debug)]
pub struct FieldError {
    pub status: StatusCode,
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field,
            message: message.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        let code = match e.status {
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::CONFLICT => "conflict",
            _ => "invalid_field",
        };
        ApiError::new(e.status, code, e.message).field(e.field)
    }
}

fn first_error(errors: Vec<FieldError>) -> ApiError {
    errors
        .into_iter()
        .next()
        .map(ApiError::from)
        .unwrap_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "pedido inválido",
            )
        })
}

/// An invite as asked for, before it is checked.
#[derive(Debug, Default, Clone)]
pub struct InviteRequest {
    pub email: String,
    pub role: String,
    pub sites: Vec<String>,
}

/// A checked invite.
struct Invite {
    email: String,
    role: Role,
    sites: Vec<SiteId>,
}

fn email_ok(e: &str) -> bool {
    e.chars().count() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, host)| {
            !local.is_empty() && !host.contains('@') && host.contains('.') && !host.ends_with('.')
        })
}

/// Checks an invite against `inviter`'s rights; every error names its field.
fn check_invite(
    state: &AppState,
    inviter: &AuthUser,
    req: &InviteRequest,
) -> Result<Invite, Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = req.email.trim().to_owned();
    if email.is_empty() {
        errors.push(FieldError::new("email", "informe o e-mail da pessoa"));
    } else if !email_ok(&email) {
        errors.push(FieldError::new(
            "email",
            "e-mail inválido (esperado nome@dominio.com.br)",
        ));
    }
    let role = match Role::parse(req.role.trim()) {
        Some(Role::Admin) if inviter.role != Role::Admin => {
            errors.push(FieldError {
                status: StatusCode::FORBIDDEN,
                field: "role",
                message: "gerentes só podem convidar outros gerentes".into(),
            });
            None
        }
        Some(r) => Some(r),
        None => {
            errors.push(FieldError::new("role", "papel deve ser admin ou manager"));
            None
        }
    };
    let mut sites = Vec::new();
    for slug in &req.sites {
        let slug = slug.trim();
        // A site the inviter cannot see is answered exactly like one that does not exist.
        match state.site_for(inviter, slug) {
            Some(s) if !sites.contains(&s.id) => sites.push(s.id),
            Some(_) => {}
            None => errors.push(FieldError::new(
                "sites",
                format!("condomínio desconhecido: {slug}"),
            )),
        }
    }
    if role == Some(Role::Manager) && sites.is_empty() && !errors.iter().any(|e| e.field == "sites")
    {
        errors.push(FieldError::new(
            "sites",
            "escolha pelo menos um condomínio para o gerente",
        ));
    }
    match role {
        Some(role) if errors.is_empty() => Ok(Invite {
            email,
            // An admin sees every site: grants would only mislead.
            sites: if role == Role::Admin {
                Vec::new()
            } else {
                sites
            },
            role,
        }),
        _ => Err(errors),
    }
}

/// `scheme://host[:port]` people open the link on: `public_url`, or the request's own.
fn link_origin(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(o) = state.public_origin() {
        return o;
    }
    let scheme = if is_tls(state, headers) {
        "https"
    } else {
        "http"
    };
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| url::Url::parse(&format!("{scheme}://{h}")).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_else(|| format!("{scheme}://localhost"))
}

/// A link made for an invite, shown once.
pub struct InviteLink {
    pub user_id: UserId,
    pub email: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Creates the invited user and their link.
async fn create_invite(
    state: &AppState,
    inviter: &AuthUser,
    ip: &str,
    origin: &str,
    req: &InviteRequest,
) -> Result<InviteLink, Vec<FieldError>> {
    let invite = check_invite(state, inviter, req)?;
    let raw = auth::new_token();
    let now = Utc::now();
    let expires_at = now + INVITE_TTL;
    let mut entry = audit(inviter, ip, "user_invite", &invite.email);
    entry.detail = json!({
        "via": inviter.via.as_str(), "role": invite.role.as_str(),
        "sites": site_slugs(state, &invite.sites), "expires_at": expires_at,
    });
    // E-mail hook: once the outbox has an e-mail channel, queue the invitation message here,
    // in the invite's own transaction (the store call would take the message), instead of
    // relying on the inviter to pass the link on.
    let created = state
        .store()
        .invite_user(
            &NewInvite {
                email: invite.email.clone(),
                role: invite.role,
                sites: invite.sites,
                token_hash: auth::token_hash(&raw),
                created_by: Some(inviter.id),
                created_at: now,
                expires_at,
            },
            &entry,
        )
        .await;
    match created {
        Ok(user_id) => Ok(InviteLink {
            user_id,
            email: invite.email,
            url: format!("{origin}/invite/{raw}"),
            expires_at,
        }),
        Err(StoreError::Conflict { .. }) => Err(vec![FieldError {
            status: StatusCode::CONFLICT,
            field: "email",
            message: "já existe um usuário com este e-mail".into(),
        }]),
        Err(StoreError::NotFound { .. }) => {
            Err(vec![FieldError::new("sites", "condomínio desconhecido")])
        }
        Err(e) => Err(vec![internal_field(&e)]),
    }
}

fn internal_field(e: &dyn std::error::Error) -> FieldError {
    tracing::error!(error = %e, "user management failed");
    FieldError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        field: "",
        message: "erro interno; tente novamente em instantes".into(),
    }
}

/// Why an action on a user was refused.
enum Refusal {
    NotFound,
    Forbidden(&'static str),
    Conflict(&'static str),
    Internal(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Internal(e)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound => ApiError::not_found(),
            Refusal::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            Refusal::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Refusal::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<Refusal> for PageError {
    fn from(r: Refusal) -> Self {
        let e = ApiError::from(r);
        PageError {
            status: e.status,
            message: match e.status {
                StatusCode::NOT_FOUND => "Página não encontrada.".into(),
                _ => capitalised(&e.message),
            },
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// The user `id` if `viewer` may act on them.
async fn manageable(
    state: &AppState,
    viewer: &AuthUser,
    id: UserId,
) -> Result<UserSummary, Refusal> {
    let target = visible_users(state, viewer, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(Refusal::NotFound)?;
    // For the rule, the manager's view of the target's sites is not enough: use them all.
    let full = state
        .store()
        .user_summaries(UserScope::All, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(Refusal::NotFound)?;
    if viewer.id == id {
        return Err(Refusal::Conflict(
            "você não pode desativar nem reativar a sua própria conta",
        ));
    }
    if !may_manage(viewer, &full) {
        return Err(Refusal::Forbidden(
            "você só pode gerenciar gerentes cujos condomínios são todos seus",
        ));
    }
    Ok(target)
}

/// Deactivates (`active = false`) or reactivates a user, audited.
async fn change_active(
    state: &AppState,
    viewer: &AuthUser,
    ip: &str,
    id: UserId,
    active: bool,
) -> Result<UserSummary, Refusal> {
    let target = manageable(state, viewer, id).await?;
    let action = if active {
        "user_reactivate"
    } else {
        "user_deactivate"
    };
    let mut entry = audit(viewer, ip, action, &target.email);
    entry.detail = json!({
        "via": viewer.via.as_str(), "user_id": id,
        "tokens_revoked": if active { "none" } else { "all" },
    });
    match state.store().set_user_active(id, active, &entry).await? {
        ActiveChange::Changed | ActiveChange::Unchanged => {}
        ActiveChange::LastAdmin => {
            return Err(Refusal::Conflict(
                "não é possível desativar o último administrador ativo; ative outro \
                 administrador antes",
            ));
        }
        ActiveChange::NotFound => return Err(Refusal::NotFound),
    }
    visible_users(state, viewer, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(Refusal::NotFound)
}

/// A new link for a user who has not set a password yet (the old link stops working).
async fn reinvite(
    state: &AppState,
    viewer: &AuthUser,
    ip: &str,
    origin: &str,
    id: UserId,
) -> Result<InviteLink, Refusal> {
    let target = manageable(state, viewer, id).await?;
    if target.password_set || !target.active {
        return Err(Refusal::Conflict(
            "só é possível reenviar o convite de quem está ativo e ainda não definiu a senha",
        ));
    }
    let raw = auth::new_token();
    let now = Utc::now();
    let expires_at = now + INVITE_TTL;
    let mut entry = audit(viewer, ip, "user_reinvite", &target.email);
    entry.detail = json!({
        "via": viewer.via.as_str(), "user_id": id, "expires_at": expires_at,
    });
    // E-mail hook: see `create_invite`.
    let done = state
        .store()
        .reinvite_user(
            id,
            &auth::token_hash(&raw),
            Some(viewer.id),
            expires_at,
            &entry,
        )
        .await?;
    if !done {
        return Err(Refusal::Conflict(
            "só é possível reenviar o convite de quem está ativo e ainda não definiu a senha",
        ));
    }
    Ok(InviteLink {
        user_id: id,
        email: target.email,
        url: format!("{origin}/invite/{raw}"),
        expires_at,
    })
}

fn parse_user_id(raw: &str) -> Option<UserId> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).map(UserId)
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

struct UserItem {
    id: i64,
    email: String,
    role: &'static str,
    sites: String,
    status: &'static str,
    tone: &'static str,
    last_login: String,
    is_self: bool,
    can_deactivate: bool,
    can_reactivate: bool,
    can_reinvite: bool,
}

struct SiteChoice {
    slug: String,
    name: String,
    checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
struct UsersPage {
    user_email: NavUser,
    rows: Vec<UserItem>,
    notice: Option<&'static str>,
    may_invite_admin: bool,
    sites: Vec<SiteChoice>,
    email: String,
    role: String,
    errors: Vec<FieldError>,
}

impl UsersPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "invite_created.html")]
struct InviteCreatedPage {
    user_email: NavUser,
    email: String,
    url: String,
    expires: String,
    again: bool,
}

async fn users_page_for(
    state: &AppState,
    user: &AuthUser,
    notice: Option<&'static str>,
    form: &InviteRequest,
    errors: Vec<FieldError>,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let users = visible_users(state, user, None).await?;
    let all = state.store().user_summaries(UserScope::All, None).await?;
    let rows = users
        .into_iter()
        .map(|u| {
            let full = all.iter().find(|f| f.id == u.id).unwrap_or(&u);
            let manage = may_manage(user, full);
            let (_, status, tone) = status_of(&u, now);
            UserItem {
                id: u.id.0,
                sites: if u.role == Role::Admin {
                    "todos".into()
                } else {
                    state
                        .sites()
                        .iter()
                        .filter(|s| u.sites.contains(&s.id))
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                role: role_label(u.role),
                status,
                tone,
                last_login: u
                    .last_login_at
                    .map(when_pt_br)
                    .unwrap_or_else(|| "—".into()),
                is_self: u.id == user.id,
                can_deactivate: manage && u.active,
                can_reactivate: manage && !u.active,
                can_reinvite: manage && u.active && !u.password_set,
                email: u.email,
            }
        })
        .collect();
    let sites = state
        .visible_sites(user)
        .map(|s| SiteChoice {
            checked: form.sites.iter().any(|x| x == &s.slug),
            slug: s.slug.clone(),
            name: s.name.clone(),
        })
        .collect();
    let status = errors
        .iter()
        .map(|e| e.status)
        .max()
        .unwrap_or(StatusCode::OK);
    let mut res = UsersPage {
        user_email: NavUser::of(user),
        rows,
        notice,
        may_invite_admin: user.role == Role::Admin,
        sites,
        email: form.email.clone(),
        role: if form.role.is_empty() {
            "manager".into()
        } else {
            form.role.clone()
        },
        errors,
    }
    .into_response();
    *res.status_mut() = status;
    Ok(res)
}

/// `GET /users?ok=…`.
pub async fn page(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let ok = url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "ok")
        .map(|(_, v)| v.into_owned());
    let notice = match ok.as_deref() {
        Some("desativado") => {
            Some("Usuário desativado. As sessões e os tokens dele foram encerrados.")
        }
        Some("reativado") => Some("Usuário reativado. Ele precisa entrar de novo."),
        _ => None,
    };
    users_page_for(&state, &user, notice, &InviteRequest::default(), Vec::new()).await
}

/// `POST /users/invite` (form: `email`, `role`, `sites` repeated): shows the link once.
pub async fn invite_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    form: FormPairs,
) -> Result<Response, PageError> {
    let req = InviteRequest {
        email: form.get("email"),
        role: form.get("role"),
        sites: form
            .0
            .iter()
            .filter(|(k, _)| k == "sites")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    match create_invite(&state, &user, &peer.0, &link_origin(&state, &headers), &req).await {
        Ok(link) => Ok(invite_created(&user, link, false)),
        Err(errors) if errors.iter().any(|e| e.status.is_server_error()) => {
            Err(PageError::internal(&std::io::Error::other("invite failed")))
        }
        Err(errors) => users_page_for(&state, &user, None, &req, errors).await,
    }
}

fn invite_created(user: &AuthUser, link: InviteLink, again: bool) -> Response {
    let mut res = InviteCreatedPage {
        user_email: NavUser::of(user),
        email: link.email,
        url: link.url,
        expires: when_pt_br(link.expires_at),
        again,
    }
    .into_response();
    no_store(&mut res);
    res
}

/// `POST /users/{id}/deactivate`.
pub async fn deactivate_submit(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_user_id(&id).ok_or_else(PageError::not_found)?;
    change_active(&state, &user, &peer.0, id, false).await?;
    Ok(Redirect::to("/users?ok=desativado").into_response())
}

/// `POST /users/{id}/reactivate`.
pub async fn reactivate_submit(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_user_id(&id).ok_or_else(PageError::not_found)?;
    change_active(&state, &user, &peer.0, id, true).await?;
    Ok(Redirect::to("/users?ok=reativado").into_response())
}

/// `POST /users/{id}/reinvite`: a new link (the previous one stops working), shown once.
pub async fn reinvite_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_user_id(&id).ok_or_else(PageError::not_found)?;
    let link = reinvite(&state, &user, &peer.0, &link_origin(&state, &headers), id).await?;
    Ok(invite_created(&user, link, true))
}

#[derive(Template, WebTemplate)]
#[template(path = "invite.html")]
struct InvitePage {
    token: String,
    email: String,
    min_chars: usize,
    errors: Vec<FieldError>,
}

impl InvitePage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

fn invalid_invite() -> Response {
    let mut res = error_page(StatusCode::NOT_FOUND, INVALID_INVITE);
    no_store(&mut res);
    res
}

/// A token as the link carries it: 64 lower-case hex digits (anything else is unknown).
fn link_token(raw: &str) -> Option<&str> {
    (raw.len() == 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(raw)
}

/// `GET /invite/{token}`: the form to choose a first password.
pub async fn invite_form(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let Some(token) = link_token(&token) else {
        return Ok(invalid_invite());
    };
    let Some(target) = state
        .store()
        .live_invite(&auth::token_hash(token), Utc::now())
        .await?
    else {
        return Ok(invalid_invite());
    };
    let mut res = InvitePage {
        token: token.to_owned(),
        email: target.email,
        min_chars: MIN_PASSWORD_CHARS,
        errors: Vec::new(),
    }
    .into_response();
    no_store(&mut res);
    Ok(res)
}

/// `POST /invite/{token}` (form: `new_password`, `new_password_confirm`): sets the first
/// password, uses the link up, and logs the person in (a fresh session; a cookie this browser
/// had is revoked, as at login).
pub async fn invite_submit_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    Path(token): Path<String>,
    form: FormPairs,
) -> Result<Response, PageError> {
    let Some(token) = link_token(&token) else {
        return Ok(invalid_invite());
    };
    let hash_of_link = auth::token_hash(token);
    let store = state.store();
    let Some(target) = store.live_invite(&hash_of_link, Utc::now()).await? else {
        return Ok(invalid_invite());
    };
    let raw = |name: &str| -> String {
        form.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.chars().take(MAX_PASSWORD_CHARS + 1).collect())
            .unwrap_or_default()
    };
    let (new, confirm) = (raw("new_password"), raw("new_password_confirm"));
    let mut errors = Vec::new();
    let n = new.chars().count();
    if n < MIN_PASSWORD_CHARS {
        errors.push(FieldError::new(
            "new_password",
            format!("a senha precisa ter pelo menos {MIN_PASSWORD_CHARS} caracteres"),
        ));
    } else if n > MAX_PASSWORD_CHARS {
        errors.push(FieldError::new(
            "new_password",
            format!("a senha aceita no máximo {MAX_PASSWORD_CHARS} caracteres"),
        ));
    }
    if confirm != new {
        errors.push(FieldError::new(
            "new_password_confirm",
            "a confirmação não confere com a senha",
        ));
    }
    if !errors.is_empty() {
        let mut res = InvitePage {
            token: token.to_owned(),
            email: target.email,
            min_chars: MIN_PASSWORD_CHARS,
            errors,
        }
        .into_response();
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        no_store(&mut res);
        return Ok(res);
    }
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&new))
        .await
        .map_err(|e| PageError::internal(&e))?
        .map_err(|e| PageError::internal(&e))?;
    let now = Utc::now();
    let entry = AuditEntry::new(now, Some(target.user_id), "invite_accept", &target.email)
        .with_ip(Some(peer.0.clone()))
        .with_detail(json!({ "via": "invite_link" }));
    let Some(user_id) = store
        .accept_invite(&hash_of_link, &hash, now, &entry)
        .await?
    else {
        return Ok(invalid_invite());
    };
    if let Some(prev) = cookie_token(&headers) {
        store
            .revoke_token(&auth::token_hash(&prev), now, None)
            .await?;
    }
    let session = auth::issue_token(
        store,
        user_id,
        TokenKind::Session,
        "invite",
        now,
        Some(SESSION_TTL),
        None,
    )
    .await
    .map_err(|e| PageError::internal(&e))?;
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&session, is_tls(&state, &headers)))
    {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(&mut res);
    Ok(res)
}

// ---------------------------------------------------------------------------------------
// Personal API tokens
// ---------------------------------------------------------------------------------------

fn check_token_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(
            "name",
            "dê um nome ao token (ex.: integração do portal)",
        ));
    }
    if name.chars().count() > MAX_TOKEN_NAME_CHARS {
        return Err(FieldError::new(
            "name",
            format!("o nome aceita no máximo {MAX_TOKEN_NAME_CHARS} caracteres"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "o nome não pode ter quebras de linha nem caracteres de controle",
        ));
    }
    Ok(name.to_owned())
}

/// A token just made: its value is shown this once.
struct CreatedToken {
    id: TokenId,
    name: String,
    value: String,
    created_at: DateTime<Utc>,
}

/// Makes a personal token for `user`, exactly as `vetric token create` does (no expiry, the
/// store's `create_token`, audited `token_create`).
async fn create_token(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    name: &str,
) -> Result<CreatedToken, FieldError> {
    let name = check_token_name(name)?;
    let now = Utc::now();
    let value = auth::new_token();
    let mut entry = audit(user, ip, "token_create", &user.email);
    entry.detail = json!({ "label": name, "via": user.via.as_str() });
    let id = state
        .store()
        .create_token(
            &NewToken {
                user_id: user.id,
                kind: TokenKind::Api,
                token_hash: auth::token_hash(&value),
                label: name.clone(),
                created_at: now,
                expires_at: None,
            },
            Some(&entry),
        )
        .await
        .map_err(|e| internal_field(&e))?;
    Ok(CreatedToken {
        id,
        name,
        value,
        created_at: now,
    })
}

async fn revoke_token(
    state: &AppState,
    user: &AuthUser,
    ip: &str,
    id: TokenId,
) -> Result<bool, StoreError> {
    let mut entry = audit(user, ip, "token_revoke", &user.email);
    entry.detail = json!({ "token_id": id, "via": user.via.as_str() });
    state
        .store()
        .revoke_personal_token(user.id, id, &entry)
        .await
}

struct TokenItem {
    id: i64,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "tokens.html")]
struct TokensPage {
    user_email: NavUser,
    tokens: Vec<TokenItem>,
    created: Option<(String, String)>,
    notice: Option<&'static str>,
    name: String,
    error: Option<String>,
}

async fn tokens_page_for(
    state: &AppState,
    user: &AuthUser,
    created: Option<CreatedToken>,
    notice: Option<&'static str>,
    name: String,
    error: Option<FieldError>,
) -> Result<Response, PageError> {
    let tokens = state
        .store()
        .personal_tokens(user.id)
        .await?
        .into_iter()
        .map(|t| TokenItem {
            id: t.id.0,
            name: t.label,
            created: when_pt_br(t.created_at),
            last_used: t
                .last_used_at
                .map(when_pt_br)
                .unwrap_or_else(|| "nunca".into()),
        })
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let mut res = TokensPage {
        user_email: NavUser::of(user),
        tokens,
        created: created.map(|c| (c.name, c.value)),
        notice,
        name,
        error: error.map(|e| e.message),
    }
    .into_response();
    *res.status_mut() = status;
    no_store(&mut res);
    Ok(res)
}

/// `GET /account/tokens`.
pub async fn tokens_page(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    let revoked = url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "ok" && v == "revogado");
    let notice = revoked.then_some("Token revogado: ele deixou de funcionar.");
    tokens_page_for(&state, &user, None, notice, String::new(), None).await
}

/// `POST /account/tokens` (form: `name`): shows the new token once.
pub async fn token_create_submit(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    form: FormPairs,
) -> Result<Response, PageError> {
    let name = form.get("name");
    match create_token(&state, &user, &peer.0, &name).await {
        Ok(t) => tokens_page_for(&state, &user, Some(t), None, String::new(), None).await,
        Err(e) if e.status.is_server_error() => {
            Err(PageError::internal(&std::io::Error::other(e.message)))
        }
        Err(e) => tokens_page_for(&state, &user, None, None, name, Some(e)).await,
    }
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn token_revoke_submit(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_user_id(&id)
        .map(|u| TokenId(u.0))
        .ok_or_else(PageError::not_found)?;
    if !revoke_token(&state, &user, &peer.0, id).await? {
        return Err(PageError::not_found());
    }
    Ok(Redirect::to("/account/tokens?ok=revogado").into_response())
}

// ---------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------

/// `GET /api/v1/users`: `{"data": [user…]}`, the users the caller may see.
pub async fn api_list(State(state): State<AppState>, user: AuthUser) -> Result<Response, ApiError> {
    let now = Utc::now();
    let data: Vec<Value> = visible_users(&state, &user, None)
        .await?
        .iter()
        .map(|u| user_json(&state, u, now))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

fn invite_json(link: &InviteLink) -> Value {
    json!({
        "user_id": link.user_id, "email": link.email,
        "invite_url": link.url, "expires_at": link.expires_at,
    })
}

/// `POST /api/v1/users/invite` `{"email", "role", "sites": [slug]}` → 201 with the link
/// (`invite_url`), returned this once.
pub async fn api_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let email = body.required_str("email", 254)?;
    let role = body.required_str("role", 20)?;
    let sites = match body.get("sites") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= 1000 => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::from(FieldError::new(
                    "sites",
                    "sites deve ser uma lista de identificadores (slugs) de condomínios",
                ))
            })?,
        Some(_) => {
            return Err(FieldError::new(
                "sites",
                "sites deve ser uma lista de identificadores (slugs) de condomínios",
            )
            .into());
        }
    };
    let req = InviteRequest { email, role, sites };
    let link = create_invite(&state, &user, &peer.0, &link_origin(&state, &headers), &req)
        .await
        .map_err(first_error)?;
    let mut res = (StatusCode::CREATED, Json(invite_json(&link))).into_response();
    no_store(&mut res);
    Ok(res)
}

/// `POST /api/v1/users/{id}/reinvite` → a new link; the previous one stops working.
pub async fn api_reinvite(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_user_id(&id).ok_or_else(ApiError::not_found)?;
    let link = reinvite(&state, &user, &peer.0, &link_origin(&state, &headers), id).await?;
    let mut res = Json(invite_json(&link)).into_response();
    no_store(&mut res);
    Ok(res)
}

async fn api_set_active(
    state: AppState,
    peer: ClientAddr,
    user: AuthUser,
    id: String,
    active: bool,
) -> Result<Response, ApiError> {
    let id = parse_user_id(&id).ok_or_else(ApiError::not_found)?;
    let u = change_active(&state, &user, &peer.0, id, active).await?;
    Ok(Json(json!({ "user": user_json(&state, &u, Utc::now()) })).into_response())
}

/// `POST /api/v1/users/{id}/deactivate` → `{"user"}`; their sessions and tokens end now.
pub async fn api_deactivate(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api_set_active(state, peer, user, id, false).await
}

/// `POST /api/v1/users/{id}/reactivate` → `{"user"}`.
pub async fn api_reactivate(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api_set_active(state, peer, user, id, true).await
}

/// `GET /api/v1/account/tokens`: the caller's personal tokens (never their values).
pub async fn api_tokens(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, ApiError> {
    let data: Vec<Value> = state
        .store()
        .personal_tokens(user.id)
        .await?
        .into_iter()
        .map(|t| {
            json!({ "id": t.id, "name": t.label, "created_at": t.created_at,
                    "last_used_at": t.last_used_at })
        })
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

/// `POST /api/v1/account/tokens` `{"name"}` → 201 `{"id", "name", "token", "created_at"}`;
/// the token is returned this once.
pub async fn api_token_create(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let name = body.required_str("name", MAX_TOKEN_NAME_CHARS)?;
    let t = create_token(&state, &user, &peer.0, &name)
        .await
        .map_err(ApiError::from)?;
    let mut res = (
        StatusCode::CREATED,
        Json(json!({ "id": t.id, "name": t.name, "token": t.value, "created_at": t.created_at })),
    )
        .into_response();
    no_store(&mut res);
    Ok(res)
}

/// `DELETE /api/v1/account/tokens/{id}` → 204; 404 when the caller has no such token.
pub async fn api_token_revoke(
    State(state): State<AppState>,
    peer: ClientAddr,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_user_id(&id)
        .map(|u| TokenId(u.0))
        .ok_or_else(ApiError::not_found)?;
    if !revoke_token(&state, &user, &peer.0, id).await? {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Adds the users and personal-token routes to the OpenAPI document.
pub fn extend_openapi(doc: &mut Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    let ok = |d: &str, schema: Value| json!({ "description": d, "content": { "application/json": { "schema": schema } } });
    let auth = json!([{ "bearer": [] }, { "cookie": [] }]);
    let id =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let user = json!({ "type": "object", "properties": {
        "id": { "type": "integer" }, "email": { "type": "string" },
        "role": { "type": "string", "enum": ["admin", "manager"] },
        "active": { "type": "boolean" },
        "status": { "type": "string", "enum": ["active", "inactive", "invited", "invite_expired"] },
        "sites": { "type": "array", "items": { "type": "string" },
                   "description": "slugs; to a manager, only the sites they share" },
        "created_at": { "type": "string", "format": "date-time" },
        "last_login_at": { "type": ["string", "null"], "format": "date-time" },
        "invite_expires_at": { "type": ["string", "null"], "format": "date-time" } } });
    let invite = json!({ "type": "object", "properties": {
        "user_id": { "type": "integer" }, "email": { "type": "string" },
        "invite_url": { "type": "string", "description": "shown this once; single use" },
        "expires_at": { "type": "string", "format": "date-time" } } });
    let token = json!({ "type": "object", "properties": {
        "id": { "type": "integer" }, "name": { "type": "string" },
        "created_at": { "type": "string", "format": "date-time" },
        "last_used_at": { "type": ["string", "null"], "format": "date-time" } } });
    let rules = "Admins act on anyone but themselves (never the last active admin); a manager \
                 only on managers all of whose sites are theirs. Others: 404.";
    let set_active = |summary: String| {
        json!({ "post": {
            "summary": summary, "security": auth, "parameters": [id],
            "responses": {
                "200": ok("The user now", json!({ "type": "object", "properties": { "user": user } })),
                "401": err("Not logged in"),
                "403": err("A manager acting on a manager of another site, or cross-site request (CSRF)"),
                "404": err("No such user, or not one the caller may see"),
                "409": err("Oneself, or the last active admin")
            } } })
    };
    let paths = &mut doc["paths"];
    paths["/api/v1/users"] = json!({ "get": {
        "summary": "Users the caller may see (admin: all; manager: managers sharing a site)",
        "security": auth,
        "responses": {
            "200": ok("Users", json!({ "type": "object", "properties": {
                "data": { "type": "array", "items": user } } })),
            "401": err("Not logged in") } } });
    paths["/api/v1/users/invite"] = json!({ "post": {
        "summary": "Invite a user: creates them without a password and returns a one-time link \
                    (72 h) to set it. A manager invites managers to their own sites only.",
        "security": auth,
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["email", "role"], "properties": {
                "email": { "type": "string", "maxLength": 254 },
                "role": { "type": "string", "enum": ["admin", "manager"] },
                "sites": { "type": "array", "items": { "type": "string" },
                           "description": "site slugs; at least one for a manager" } } } } } },
        "responses": {
            "201": ok("Invited; the link is shown this once", invite.clone()),
            "401": err("Not logged in"),
            "403": err("A manager inviting an admin (`field`: role), or CSRF"),
            "409": err("The e-mail is taken (`field`: email)"),
            "413": err("Body over 64 KiB"),
            "415": err("Not JSON"),
            "422": err("A bad field (`field` names it); nothing stored") } } });
    paths["/api/v1/users/{id}/reinvite"] = json!({ "post": {
        "summary": "A new invite link for a user who has not set a password (the old one stops working)",
        "security": auth, "parameters": [id],
        "responses": {
            "200": ok("The new link, shown this once", invite),
            "401": err("Not logged in"),
            "403": err("Not allowed for this user, or CSRF"),
            "404": err("No such user, or not one the caller may see"),
            "409": err("The user already set a password or is inactive") } } });
    paths["/api/v1/users/{id}/deactivate"] = set_active(format!(
        "Deactivate a user: every session and token of theirs ends now. {rules}"
    ));
    paths["/api/v1/users/{id}/reactivate"] =
        set_active(format!("Reactivate a user (they log in again). {rules}"));
    paths["/api/v1/account/tokens"] = json!({
        "get": {
            "summary": "The caller's personal API tokens (never their values)",
            "security": auth,
            "responses": {
                "200": ok("Tokens", json!({ "type": "object", "properties": {
                    "data": { "type": "array", "items": token } } })),
                "401": err("Not logged in") } },
        "post": {
            "summary": "Create a personal API token (no expiry), as `vetric token create` does",
            "security": auth,
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string", "maxLength": MAX_TOKEN_NAME_CHARS } } } } } },
            "responses": {
                "201": ok("Created; `token` is shown this once", json!({ "type": "object",
                    "properties": { "id": { "type": "integer" }, "name": { "type": "string" },
                    "token": { "type": "string" },
                    "created_at": { "type": "string", "format": "date-time" } } })),
                "401": err("Not logged in"),
                "403": err("Cross-site request refused (CSRF)"),
                "413": err("Body over 64 KiB"),
                "415": err("Not JSON"),
                "422": err("A bad name (`field`: name); nothing stored") } } });
    paths["/api/v1/account/tokens/{id}"] = json!({ "delete": {
        "summary": "Revoke one of the caller's personal API tokens (effective at once)",
        "security": auth, "parameters": [id],
        "responses": {
            "204": { "description": "Revoked" },
            "401": err("Not logged in"),
            "403": err("Cross-site request refused (CSRF)"),
            "404": err("The caller has no such live token") } } });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_64_lower_hex() {
        let t = auth::new_token();
        assert_eq!(link_token(&t), Some(t.as_str()));
        assert_eq!(link_token(&t.to_uppercase()), None);
        assert_eq!(link_token("abc"), None);
        assert_eq!(link_token(&format!("{}g", &t[..63])), None);
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_host() {
        assert!(email_ok("ana@condominio.com.br"));
        for bad in [
            "ana",
            "@x.com",
            "ana@host",
            "a b@x.com",
            "ana@x.com.",
            "a@b@c.com",
        ] {
            assert!(!email_ok(bad), "{bad}");
        }
    }

    #[test]
    fn token_names_are_checked() {
        assert_eq!(check_token_name("  portal ").unwrap(), "portal");
        assert_eq!(check_token_name(" ").unwrap_err().field, "name");
        assert_eq!(check_token_name("a\nb").unwrap_err().field, "name");
        assert!(check_token_name(&"x".repeat(101)).is_err());
    }
}
