//! The logged-in user's own account: the password change (page `GET/POST /account/password`
//! and `POST /api/v1/auth/password`), and [`NavUser`], what the top bar shows.
//!
//! A change needs the current password (wrong guesses count against the login limiter, per
//! account and per address, and are audited), a new one of at least [`MIN_PASSWORD_CHARS`]
//! characters that differs from the current one. On success the new argon2id hash is stored,
//! every token of the user is revoked in the same transaction as the audit row (the store does
//! both), and this browser gets a fresh session cookie so the person stays logged in while
//! every other session and token of theirs ends at once.

use crate::auth::{self, AuthError, AuthUser, SESSION_TTL};
use crate::error::{ApiError, PageError};
use crate::forms::FormPairs;
use crate::input::{Fields, JsonObject};
use crate::security::is_tls;
use crate::{AppState, ClientAddr};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;
use std::fmt;
use std::time::Instant;
use vetric_store::{AuditEntry, Role, TokenKind};

/// The shortest new password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password read (argon2 input stays bounded).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The user as the top bar shows them: the e-mail (`{{ user_email }}`) and whether the admin
/// links appear.
#[derive(Debug, Clone)]
pub struct NavUser {
    email: String,
    admin: bool,
}

impl NavUser {
    pub fn of(user: &AuthUser) -> Self {
        Self {
            email: user.email.clone(),
            admin: user.role == Role::Admin,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

impl fmt::Display for NavUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.email)
    }
}

/// Why a password change did not happen.
#[derive(Debug)]
pub enum ChangeFailure {
    /// Bad input, each error at its field (`current_password`, `new_password`,
    /// `new_password_confirm`), in form order.
    Fields(Vec<(&'static str, String)>),
    RateLimited {
        retry_after_s: u64,
    },
    Internal(AuthError),
}

impl From<ChangeFailure> for ApiError {
    fn from(f: ChangeFailure) -> Self {
        match f {
            ChangeFailure::Fields(errors) => match errors.into_iter().next() {
                Some((field, message)) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                        .field(field)
                }
                None => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    "pedido inválido",
                ),
            },
            ChangeFailure::RateLimited { retry_after_s } => {
                auth::LoginFailure::RateLimited { retry_after_s }.into()
            }
            ChangeFailure::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// Checks and applies a password change for `user`; returns the raw token of a fresh
/// session for this browser (every other token of the user is revoked).
pub async fn change_password(
    state: &AppState,
    user: &AuthUser,
    current: &str,
    new: &str,
    confirm: Option<&str>,
    ip: &str,
) -> Result<String, ChangeFailure> {
    let account = user.email.trim().to_lowercase();
    let limiter = state.limiter();
    if let Some(retry_after_s) = limiter.blocked(&account, ip, Instant::now()) {
        tracing::warn!(
            ip,
            "password change refused: too many wrong current passwords"
        );
        return Err(ChangeFailure::RateLimited { retry_after_s });
    }
    let store = state.store();
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let creds = store
        .user_credentials(&user.email)
        .await
        .map_err(|e| ChangeFailure::Internal(e.into()))?;
    let Some(creds) = creds.filter(|c| c.user.id == user.id && c.user.active) else {
        return Err(ChangeFailure::Fields(vec![(
            "current_password",
            "conta não encontrada ou desativada".into(),
        )]));
    };
    if current.is_empty() {
        errors.push(("current_password", "informe a senha atual".into()));
    } else {
        let (pw, hash) = (current.to_owned(), creds.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        if !ok {
            limiter.record_failure(&account, ip, Instant::now());
            let audit = AuditEntry::new(
                Utc::now(),
                Some(user.id),
                "password_change_failed",
                &user.email,
            )
            .with_ip(Some(ip.to_owned()))
            .with_detail(json!({ "via": user.via.as_str(), "reason": "wrong_current_password" }));
            if let Err(e) = store.append_audit(&audit).await {
                tracing::error!(error = %e, "cannot write the audit row of a failed password change");
            }
            errors.push(("current_password", "senha atual incorreta".into()));
        }
    }
    let new_chars = new.chars().count();
    if new_chars < MIN_PASSWORD_CHARS {
        errors.push((
            "new_password",
            format!("a nova senha precisa ter pelo menos {MIN_PASSWORD_CHARS} caracteres"),
        ));
    } else if new_chars > MAX_PASSWORD_CHARS {
        errors.push((
            "new_password",
            format!("a nova senha aceita no máximo {MAX_PASSWORD_CHARS} caracteres"),
        ));
    } else if new == current {
        errors.push((
            "new_password",
            "a nova senha precisa ser diferente da atual".into(),
        ));
    }
    if let Some(c) = confirm
        && c != new
    {
        errors.push((
            "new_password_confirm",
            "a confirmação não confere com a nova senha".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(ChangeFailure::Fields(errors));
    }
    let pw = new.to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(|e| ChangeFailure::Internal(AuthError::Hash(e.to_string())))?
        .map_err(ChangeFailure::Internal)?;
    let now = Utc::now();
    let audit = AuditEntry::new(now, Some(user.id), "password_change", &user.email)
        .with_ip(Some(ip.to_owned()))
        .with_detail(json!({ "via": user.via.as_str(), "tokens_revoked": "all" }));
    store
        .set_password(user.id, &hash, &audit)
        .await
        .map_err(|e| ChangeFailure::Internal(e.into()))?;
    limiter.record_success(&account);
    auth::issue_token(
        store,
        user.id,
        TokenKind::Session,
        "password_change",
        now,
        Some(SESSION_TTL),
        None,
    )
    .await
    .map_err(ChangeFailure::Internal)
}

fn set_session_cookie(res: &mut Response, state: &AppState, headers: &HeaderMap, token: &str) {
    let cookie = auth::session_cookie(token, is_tls(state, headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `POST /api/v1/auth/password` `{"current_password", "new_password"}` → a fresh session
/// cookie and `{"token"}` (a new bearer token): every earlier token of the user is revoked.
pub async fn api_change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let current = body.required_str("current_password", MAX_PASSWORD_CHARS)?;
    let new = body.required_str("new_password", MAX_PASSWORD_CHARS)?;
    let session = change_password(&state, &user, &current, &new, None, &peer.0).await?;
    let api_token = auth::issue_token(
        state.store(),
        user.id,
        TokenKind::Api,
        "password_change",
        Utc::now(),
        Some(auth::LOGIN_API_TOKEN_TTL),
        None,
    )
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let mut res = Json(json!({ "token": api_token })).into_response();
    set_session_cookie(&mut res, &state, &headers, &session);
    Ok(res)
}

#[derive(Template, WebTemplate)]
#[template(path = "account_password.html")]
struct PasswordPage {
    user_email: NavUser,
    min_chars: usize,
    errors: Vec<(&'static str, String)>,
    done: bool,
}

impl PasswordPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }
}

/// `GET /account/password`.
pub async fn password_form(user: AuthUser) -> Response {
    PasswordPage {
        user_email: NavUser::of(&user),
        min_chars: MIN_PASSWORD_CHARS,
        errors: Vec::new(),
        done: false,
    }
    .into_response()
}

/// `POST /account/password` (an HTML form): the page again, with errors at their fields or a
/// confirmation and a fresh session cookie.
pub async fn password_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: ClientAddr,
    user: AuthUser,
    form: FormPairs,
) -> Response {
    // Passwords are taken as typed (no trimming), bounded.
    let raw = |name: &str| -> String {
        form.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.chars().take(MAX_PASSWORD_CHARS + 1).collect())
            .unwrap_or_default()
    };
    let (current, new, confirm) = (
        raw("current_password"),
        raw("new_password"),
        raw("new_password_confirm"),
    );
    let page = |errors, done| PasswordPage {
        user_email: NavUser::of(&user),
        min_chars: MIN_PASSWORD_CHARS,
        errors,
        done,
    };
    match change_password(&state, &user, &current, &new, Some(&confirm), &peer.0).await {
        Ok(session) => {
            let mut res = page(Vec::new(), true).into_response();
            set_session_cookie(&mut res, &state, &headers, &session);
            res
        }
        Err(ChangeFailure::Fields(errors)) => {
            let mut res = page(errors, false).into_response();
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            res
        }
        Err(ChangeFailure::RateLimited { retry_after_s }) => {
            let msg = format!(
                "muitas tentativas com a senha atual errada; tente de novo em {} min",
                retry_after_s.div_ceil(60)
            );
            let mut res = page(vec![("current_password", msg)], false).into_response();
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            res
        }
        Err(ChangeFailure::Internal(e)) => PageError::internal(&e).into_response(),
    }
}

/// Adds `POST /api/v1/auth/password` to the OpenAPI document.
pub fn extend_openapi(doc: &mut serde_json::Value) {
    let err = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema":
            { "$ref": "#/components/schemas/Error" } } } })
    };
    doc["paths"]["/api/v1/auth/password"] = json!({ "post": {
        "summary": "Change the caller's password: revokes every token of the user (audited), \
                    sets a fresh session cookie and returns a new bearer token",
        "security": [{ "bearer": [] }, { "cookie": [] }],
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["current_password", "new_password"],
            "properties": {
                "current_password": { "type": "string", "maxLength": MAX_PASSWORD_CHARS },
                "new_password": { "type": "string", "minLength": MIN_PASSWORD_CHARS,
                                  "maxLength": MAX_PASSWORD_CHARS,
                                  "description": "different from the current one" } } } } } },
        "responses": {
            "200": { "description": "Changed", "content": { "application/json": { "schema": {
                "type": "object", "required": ["token"],
                "properties": { "token": { "type": "string" } } } } } },
            "400": err("Malformed JSON or invalid UTF-8"),
            "401": err("Not logged in"),
            "403": err("Cross-site request refused (CSRF)"),
            "413": err("Body over 64 KiB"),
            "415": err("Not JSON"),
            "422": err("Wrong current password, or a new one too short or equal to it (`field` names it)"),
            "429": err("Too many wrong current passwords; see Retry-After")
        } } });
}
