//! Who is asking: passwords, tokens, the login rate limit and the [`AuthUser`] extractor.
//!
//! * Passwords are hashed with argon2id at the crate's defaults (m = 19 MiB, t = 2, p = 1, the
//!   OWASP minimum) and stored as PHC strings.
//! * A token is 32 random bytes shown once as 64 hex characters; the store keeps only its
//!   SHA-256, so a stolen database yields no usable token, and revoking a row ends the token
//!   at the next request.
//! * A login issues a fresh `session` token for the cookie (rotation: the one presented, if
//!   any, is revoked) and an `api` token returned as `{"token": …}` for `Authorization:
//!   Bearer`. Logout revokes the token presented.
//! * Failed logins are limited per account and per client address ([`LoginLimiter`]); the
//!   answer to a wrong e-mail and to a wrong password is the same, in words and in work done
//!   (an unknown e-mail is checked against a dummy hash).

use crate::AppState;
use crate::error::ApiError;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use vetric_store::{
    AuditEntry, NewToken, Role, SiteId, Store, StoreError, TokenKind, UserId, UserRow,
};

/// The session cookie's name (public: tests and reverse proxies may refer to it).
pub const SESSION_COOKIE: &str = "vetric_session";
/// How long a browser session lasts.
pub const SESSION_TTL: TimeDelta = TimeDelta::days(7);
/// How long the API token returned by a login lasts (`vetric token create` makes tokens that
/// do not expire).
pub const LOGIN_API_TOKEN_TTL: TimeDelta = TimeDelta::days(30);
/// The one answer to a failed login, whatever failed.
pub const LOGIN_FAILED: &str = "e-mail ou senha inválidos";

/// Hashing or token generation failed (the OS random source, or argon2 refusing its input).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// True when `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash nobody's password matches, so that an unknown e-mail costs one verification too.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: String = generate_password();
        hash_password(&random).unwrap_or_default()
    })
}

/// A new raw token: 32 random bytes from the OS-seeded CSPRNG, as 64 hex characters.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a token: lower-case hex SHA-256.
pub fn token_hash(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// A generated password: 20 letters and digits (≈ 119 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Creates a token for `user` and returns the raw value (shown once, never stored).
pub async fn issue_token(
    store: &Store,
    user: UserId,
    kind: TokenKind,
    label: &str,
    now: DateTime<Utc>,
    ttl: Option<TimeDelta>,
    audit: Option<&AuditEntry>,
) -> Result<String, AuthError> {
    let raw = new_token();
    store
        .create_token(
            &NewToken {
                user_id: user,
                kind,
                token_hash: token_hash(&raw),
                label: label.to_owned(),
                created_at: now,
                expires_at: ttl.and_then(|t| now.checked_add_signed(t)),
            },
            audit,
        )
        .await?;
    Ok(raw)
}

/// In-memory sliding windows of failed logins, per account and per client address.
///
/// Per process, which is enough against brute force on one instance; with several instances
/// behind a balancer each one limits on its own (a shared, DB-backed lockout is a later step).
pub struct LoginLimiter {
    window: Duration,
    per_account: usize,
    per_ip: usize,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    accounts: HashMap<String, VecDeque<Instant>>,
    ips: HashMap<String, VecDeque<Instant>>,
}

impl Default for LoginLimiter {
    /// 5 failures per account and 20 per address within 15 minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(15 * 60), 5, 20)
    }
}

impl LoginLimiter {
    pub fn new(window: Duration, per_account: usize, per_ip: usize) -> Self {
        Self {
            window,
            per_account,
            per_ip,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(seconds to wait)` when the account or the address is over its limit now.
    pub fn blocked(&self, account: &str, ip: &str, now: Instant) -> Option<u64> {
        let mut f = self.lock();
        let window = self.window;
        let wait = |q: Option<&mut VecDeque<Instant>>, limit: usize| -> Option<Duration> {
            let q = q?;
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
            if q.len() >= limit {
                q.front()
                    .map(|t| window.saturating_sub(now.duration_since(*t)))
            } else {
                None
            }
        };
        let a = wait(f.accounts.get_mut(account), self.per_account);
        let i = wait(f.ips.get_mut(ip), self.per_ip);
        a.max(i).map(|d| d.as_secs().max(1))
    }

    pub fn record_failure(&self, account: &str, ip: &str, now: Instant) {
        let mut f = self.lock();
        if f.accounts.len() + f.ips.len() > 100_000 {
            let window = self.window;
            let fresh = |q: &mut VecDeque<Instant>| {
                q.back().is_some_and(|t| now.duration_since(*t) < window)
            };
            f.accounts.retain(|_, q| fresh(q));
            f.ips.retain(|_, q| fresh(q));
        }
        f.accounts
            .entry(account.to_owned())
            .or_default()
            .push_back(now);
        f.ips.entry(ip.to_owned()).or_default().push_back(now);
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn record_success(&self, account: &str) {
        self.lock().accounts.remove(account);
    }
}

/// Why a login did not succeed.
#[derive(Debug)]
pub enum LoginFailure {
    /// Wrong e-mail, wrong password or inactive account: the same answer for all three.
    Invalid,
    RateLimited {
        retry_after_s: u64,
    },
    Internal(AuthError),
}

impl From<LoginFailure> for ApiError {
    fn from(f: LoginFailure) -> Self {
        match f {
            LoginFailure::Invalid => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                LOGIN_FAILED,
            ),
            LoginFailure::RateLimited { retry_after_s } => {
                let mut e = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!(
                        "muitas tentativas de entrar; tente de novo em {} min",
                        retry_after_s.div_ceil(60)
                    ),
                );
                e.retry_after = Some(retry_after_s);
                e
            }
            LoginFailure::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// What a successful login hands out.
pub struct LoginGrant {
    pub user: UserRow,
    pub session_token: String,
    pub api_token: String,
}

/// Checks the credentials under the rate limit, and on success issues a session token and an
/// API token (revoking `previous_session`, the cookie presented, if any). Audited.
pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    ip: &str,
    previous_session: Option<&str>,
) -> Result<LoginGrant, LoginFailure> {
    let account = email.trim().to_lowercase();
    if let Some(retry_after_s) = state.limiter().blocked(&account, ip, Instant::now()) {
        tracing::warn!(ip, "login refused: too many failed attempts");
        return Err(LoginFailure::RateLimited { retry_after_s });
    }
    let store = state.store();
    let creds = store
        .user_credentials(&account)
        .await
        .map_err(|e| LoginFailure::Internal(e.into()))?;
    let (hash, user) = match &creds {
        // An invited user without a password yet costs the same work as an unknown e-mail.
        Some(c) if c.user.active && c.password_hash != vetric_store::PENDING_PASSWORD_HASH => {
            (c.password_hash.clone(), Some(c.user.clone()))
        }
        _ => (dummy_hash().to_owned(), None),
    };
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .unwrap_or(false);
    let now = Utc::now();
    let Some(user) = user.filter(|_| ok) else {
        state.limiter().record_failure(&account, ip, Instant::now());
        let audit = AuditEntry::new(
            now,
            creds.as_ref().map(|c| c.user.id),
            "login_failed",
            &account,
        )
        .with_ip(Some(ip.to_owned()));
        if let Err(e) = store.append_audit(&audit).await {
            tracing::error!(error = %e, "cannot write the audit row of a failed login");
        }
        return Err(LoginFailure::Invalid);
    };
    state.limiter().record_success(&account);
    if let Some(prev) = previous_session {
        store
            .revoke_token(&token_hash(prev), now, None)
            .await
            .map_err(|e| LoginFailure::Internal(e.into()))?;
    }
    let audit =
        AuditEntry::new(now, Some(user.id), "login", &user.email).with_ip(Some(ip.to_owned()));
    let session_token = issue_token(
        store,
        user.id,
        TokenKind::Session,
        "login",
        now,
        Some(SESSION_TTL),
        Some(&audit),
    )
    .await
    .map_err(LoginFailure::Internal)?;
    let api_token = issue_token(
        store,
        user.id,
        TokenKind::Api,
        "login",
        now,
        Some(LOGIN_API_TOKEN_TTL),
        None,
    )
    .await
    .map_err(LoginFailure::Internal)?;
    Ok(LoginGrant {
        user,
        session_token,
        api_token,
    })
}

/// Revokes `raw` now and audits the logout.
pub async fn logout(state: &AppState, user: &AuthUser, ip: &str) -> Result<(), StoreError> {
    let now = Utc::now();
    let audit = AuditEntry::new(now, Some(user.id), "logout", &user.email)
        .with_ip(Some(ip.to_owned()))
        .with_detail(serde_json::json!({ "via": user.via.as_str() }));
    state
        .store()
        .revoke_token(&token_hash(&user.token), now, Some(&audit))
        .await?;
    Ok(())
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The bearer token, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The client's address as seen by this process (the peer; a reverse proxy's own address
/// when behind one — trusting `X-Forwarded-For` needs a configured proxy list, not done yet).
pub fn client_ip(parts_or_extensions: &axum::http::Extensions) -> String {
    parts_or_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
        }
    }
}

/// The logged-in user of a request (session cookie or bearer token), with their rights.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    /// The manager's sites (`user_sites`); admins see every site.
    pub sites: Vec<SiteId>,
    pub via: Via,
    /// The raw token presented (to revoke it at logout). Never logged.
    pub token: String,
}

impl AuthUser {
    pub fn can_see(&self, site: SiteId) -> bool {
        self.role == Role::Admin || self.sites.contains(&site)
    }
}

/// No valid session: 401 JSON for the API and the event stream, a redirect to the login page
/// for pages.
pub struct AuthRejection {
    api: bool,
    error: Option<ApiError>,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match (self.error, self.api) {
            (Some(e), _) => e.into_response(),
            (None, true) => ApiError::unauthorized().into_response(),
            (None, false) => Redirect::to("/login").into_response(),
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, AuthRejection> {
        // Inside the nested API router `uri` lost its `/api/v1` prefix: the router marks
        // API requests with an extension instead.
        let api = parts.extensions.get::<crate::ApiRequest>().is_some()
            || parts.uri.path().ends_with("/events");
        let (token, via) = match (bearer_token(&parts.headers), cookie_token(&parts.headers)) {
            (Some(t), _) => (t, Via::Bearer),
            (None, Some(t)) => (t, Via::Cookie),
            (None, None) => return Err(AuthRejection { api, error: None }),
        };
        let found = state
            .store()
            .token_user(&token_hash(&token), Utc::now())
            .await
            .map_err(|e| AuthRejection {
                api,
                error: Some(ApiError::from(e)),
            })?;
        let Some(found) = found else {
            return Err(AuthRejection { api, error: None });
        };
        Ok(AuthUser {
            id: found.user.id,
            email: found.user.email,
            role: found.user.role,
            sites: found.sites,
            via,
            token,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn generated_secrets_have_the_promised_shape() {
        let p = generate_password();
        assert_eq!(p.len(), 20);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }

    #[test]
    fn limiter_blocks_after_the_limit_and_forgets_after_the_window() {
        let l = LoginLimiter::new(Duration::from_secs(60), 2, 3);
        let t0 = Instant::now();
        assert_eq!(l.blocked("a", "ip", t0), None);
        l.record_failure("a", "ip", t0);
        l.record_failure("a", "ip", t0);
        let wait = l.blocked("a", "ip", t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, 50);
        assert_eq!(l.blocked("b", "other", t0), None);
        // The address limit catches spraying across accounts.
        l.record_failure("b", "ip", t0);
        assert!(l.blocked("c", "ip", t0).is_some());
        assert_eq!(l.blocked("a", "ip2", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn cookies_and_bearer_tokens_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "x=1; vetric_session=abc; y=2".parse().unwrap(),
        );
        h.insert(header::AUTHORIZATION, "Bearer  tok ".parse().unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&h).as_deref(), Some("tok"));
        let c = session_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
    }
}
