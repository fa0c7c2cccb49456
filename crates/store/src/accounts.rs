//! Accounts: the people who log in (`admin`, `manager`), the sites a manager may see, the
//! opaque login and API tokens (stored as SHA-256 hashes only, so revoking one takes effect at
//! the next request), and the audit log.
//!
//! Hashing passwords and tokens is the caller's job (the web crate): the store only keeps the
//! argon2id PHC string and the token's hex digest, and never sees a password or a raw token.
//! Every account change takes an [`AuditEntry`] and writes it in the same transaction
//! (RELIABILITY.md R6).

use crate::error::{Ctx, StoreError};
use crate::model::{BadValue, SiteId};
use crate::store::{Store, in_tx, with_pool};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A user account.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A login or API token (its row, never its value).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct TokenId(pub i64);

/// What a user may do (DESIGN.md "People").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The operator: every site, users, settings.
    Admin,
    /// The síndico or administradora: only the sites granted in `user_sites`.
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
        }
    }

    /// `admin` or `manager` (exactly; this is a public CLI value).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "manager" => Some(Self::Manager),
            _ => None,
        }
    }
}

impl TryFrom<String> for Role {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        Self::parse(&s).ok_or(BadValue(s))
    }
}

/// Where a token lives: the browser's session cookie, or an `Authorization: Bearer` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Session,
    Api,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Api => "api",
        }
    }
}

impl TryFrom<String> for TokenKind {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        match s.as_str() {
            "session" => Ok(Self::Session),
            "api" => Ok(Self::Api),
            _ => Err(BadValue(s)),
        }
    }
}

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
}

/// A user with the stored password hash, for checking a login.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: UserRow,
    /// argon2id, PHC string format.
    pub password_hash: String,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    /// argon2id, PHC string format (hashed by the caller).
    pub password_hash: String,
    pub role: Role,
    /// The sites a manager may see (ignored for the rights of an admin, but stored).
    pub sites: Vec<SiteId>,
}

/// A token to record. `token_hash` is the lower-case hex SHA-256 of the raw token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub user_id: UserId,
    pub kind: TokenKind,
    pub token_hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The user behind a valid token, with the sites they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub token_id: TokenId,
    pub kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
    pub user: UserRow,
    /// `user_sites` of the user (admins see every site whatever this says).
    pub sites: Vec<SiteId>,
}

/// One audit row to write: who (`user_id`, `None` when unknown, e.g. a failed login), what
/// (`action`, e.g. `login`), on what (`target`, e.g. an e-mail), details as JSON (never a
/// password or a token), and the client's address.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub ip: Option<String>,
}

impl AuditEntry {
    /// An entry at `at` with an empty detail object and no address.
    pub fn new(
        at: DateTime<Utc>,
        user_id: Option<UserId>,
        action: &str,
        target: impl Into<String>,
    ) -> Self {
        Self {
            at,
            user_id,
            action: action.to_owned(),
            target: target.into(),
            detail: serde_json::json!({}),
            ip: None,
        }
    }

    pub fn with_ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub ip: Option<String>,
}

/// An audit row as people read it: with the e-mail of the user who acted, when known.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub user_email: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub ip: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TokenUserRaw {
    token_id: TokenId,
    #[sqlx(try_from = "String")]
    kind: TokenKind,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    #[sqlx(flatten)]
    user: UserRow,
}

const USER_COLUMNS: &str = "u.id, u.email, u.role, u.active, u.created_at, u.password_changed_at";

/// `last_used_at` is refreshed at most this often (a read-mostly dashboard must not write on
/// every request).
const TOUCH_EVERY: TimeDelta = TimeDelta::seconds(60);

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `email` trimmed; [`StoreError::Conflict`] when nothing is left.
pub(crate) fn user_email(email: &str) -> Result<&str, StoreError> {
    let email = email.trim();
    if email.is_empty() {
        return Err(StoreError::Conflict {
            what: "a user needs an e-mail".into(),
        });
    }
    Ok(email)
}

/// A site grant that failed: [`StoreError::NotFound`] when the site does not exist.
pub(crate) fn site_grant_error(site: SiteId, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound {
            what: format!("site {site}"),
        },
        _ => StoreError::Query {
            context: "granting a site",
            source: e,
        },
    }
}

/// Writes `$entry` (an `&AuditEntry`) inside the transaction `$tx`.
macro_rules! audit_in {
    ($tx:ident, $entry:expr) => {{
        let e: &AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (at, user_id, action, target, detail, ip) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.at)
        .bind(e.user_id)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.ip)
        .execute(&mut *$tx)
        .await
        .ctx("writing an audit row")?;
    }};
}

/// Inserts an active user (`$email` already trimmed, `$password_hash` a PHC string or
/// [`crate::invites::PENDING_PASSWORD_HASH`]) and grants them `$sites` inside the transaction
/// `$tx`; evaluates to the new [`UserId`]. Returns [`StoreError::Conflict`] naming the e-mail
/// when it is taken, [`StoreError::NotFound`] for a missing site, and a query error with
/// `$context` otherwise.
macro_rules! insert_user_in {
    ($tx:ident, $email:expr, $password_hash:expr, $role:expr, $created_at:expr, $sites:expr, $context:expr) => {{
        let email: &str = $email;
        let inserted = sqlx::query_scalar::<_, $crate::accounts::UserId>(
            "INSERT INTO users (email, password_hash, role, active, created_at, \
             password_changed_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(email)
        .bind($password_hash)
        .bind($crate::accounts::Role::as_str($role))
        .bind(true)
        .bind($created_at)
        .fetch_one(&mut *$tx)
        .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) if $crate::accounts::is_unique_violation(&e) => {
                return Err($crate::error::StoreError::Conflict {
                    what: format!("a user with the e-mail {email} already exists"),
                });
            }
            Err(e) => {
                return Err($crate::error::StoreError::Query {
                    context: $context,
                    source: e,
                });
            }
        };
        let sites: &[$crate::model::SiteId] = $sites;
        for site in sites {
            sqlx::query(
                "INSERT INTO user_sites (user_id, site_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(site)
            .execute(&mut *$tx)
            .await
            .map_err(|e| $crate::accounts::site_grant_error(*site, e))?;
        }
        id
    }};
}

/// Revokes every live token of `$user` at `$at` inside the transaction `$tx` (their sessions
/// and API tokens stop at the next request).
macro_rules! revoke_user_tokens_in {
    ($tx:ident, $user:expr, $at:expr) => {{
        sqlx::query(
            "UPDATE auth_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind($at)
        .bind($user)
        .execute(&mut *$tx)
        .await
        .ctx("revoking a user's tokens")?;
    }};
}

pub(crate) use {audit_in, insert_user_in, revoke_user_tokens_in};

impl Store {
    /// Creates a user and their site grants, with `audit`, in one transaction.
    /// [`StoreError::Conflict`] naming the e-mail when it is taken (compared
    /// case-insensitively); [`StoreError::NotFound`] when a site does not exist.
    pub async fn create_user(
        &self,
        new: &NewUser,
        audit: &AuditEntry,
    ) -> Result<UserId, StoreError> {
        let email = user_email(&new.email)?;
        let now = audit.at;
        Ok(in_tx!(self, |tx, _backend| {
            let id = insert_user_in!(
                tx,
                email,
                &new.password_hash,
                new.role,
                now,
                &new.sites,
                "adding a user"
            );
            let mut entry = audit.clone();
            entry.user_id = entry.user_id.or(Some(id));
            audit_in!(tx, &entry);
            id
        }))
    }

    /// The user with this e-mail (case-insensitive) and their password hash.
    pub async fn user_credentials(
        &self,
        email: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, UserCredentials>(
            sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
                 WHERE lower(u.email) = lower($1)"
            ))
        )
        .bind(email.trim())
        .fetch_optional(pool)
        .await
        .ctx("reading a user"))
    }

    /// Every user, by e-mail.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, UserRow>(
            sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users u ORDER BY lower(u.email)"
            ))
        )
        .fetch_all(pool)
        .await
        .ctx("listing users"))
    }

    /// The sites granted to a user, by id.
    pub async fn user_sites(&self, user: UserId) -> Result<Vec<SiteId>, StoreError> {
        with_pool!(self, |pool| sqlx::query_scalar::<_, SiteId>(
            "SELECT site_id FROM user_sites WHERE user_id = $1 ORDER BY site_id"
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .ctx("reading a user's sites"))
    }

    /// Lets a user see a site (idempotent), with `audit`, in one transaction.
    pub async fn grant_site(
        &self,
        user: UserId,
        site: SiteId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx, _backend| {
            sqlx::query(
                "INSERT INTO user_sites (user_id, site_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(site)
            .execute(&mut *tx)
            .await
            .ctx("granting a site")?;
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// Replaces a user's password hash and revokes every token they hold (whoever had access
    /// with the old password loses it at once), with `audit`, in one transaction.
    pub async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        in_tx!(self, |tx, _backend| {
            let changed = sqlx::query(
                "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
            )
            .bind(password_hash)
            .bind(audit.at)
            .bind(user)
            .execute(&mut *tx)
            .await
            .ctx("changing a password")?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("user {user}"),
                });
            }
            revoke_user_tokens_in!(tx, user, audit.at);
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// Records a token (its hash), with `audit` when given, in one transaction.
    pub async fn create_token(
        &self,
        token: &NewToken,
        audit: Option<&AuditEntry>,
    ) -> Result<TokenId, StoreError> {
        Ok(in_tx!(self, |tx, _backend| {
            let id = sqlx::query_scalar::<_, TokenId>(
                "INSERT INTO auth_tokens (user_id, kind, token_hash, label, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(token.user_id)
            .bind(token.kind.as_str())
            .bind(&token.token_hash)
            .bind(&token.label)
            .bind(token.created_at)
            .bind(token.expires_at)
            .fetch_one(&mut *tx)
            .await
            .ctx("recording a token")?;
            if let Some(a) = audit {
                audit_in!(tx, a);
            }
            id
        }))
    }

    /// The active user behind a token hash, if the token is known, not revoked and not
    /// expired at `now`. Refreshes the token's `last_used_at` (at most once a minute).
    pub async fn token_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenUser>, StoreError> {
        let raw = with_pool!(self, |pool| sqlx::query_as::<_, TokenUserRaw>(
            sqlx::AssertSqlSafe(format!(
                "SELECT t.id AS token_id, t.kind, t.expires_at, t.last_used_at, {USER_COLUMNS} \
                 FROM auth_tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.active"
            ))
        )
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .ctx("reading a token"))?;
        let Some(raw) = raw else { return Ok(None) };
        if raw.expires_at.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        if raw.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
            with_pool!(self, |pool| sqlx::query(
                "UPDATE auth_tokens SET last_used_at = $1 WHERE id = $2"
            )
            .bind(now)
            .bind(raw.token_id)
            .execute(pool)
            .await
            .map(|_| ())
            .ctx("touching a token"))?;
        }
        let sites = self.user_sites(raw.user.id).await?;
        Ok(Some(TokenUser {
            token_id: raw.token_id,
            kind: raw.kind,
            expires_at: raw.expires_at,
            user: raw.user,
            sites,
        }))
    }

    /// Revokes the token with this hash (effective at the next request), with `audit` when
    /// given, in one transaction. False when no live token had that hash.
    pub async fn revoke_token(
        &self,
        token_hash: &str,
        at: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(in_tx!(self, |tx, _backend| {
            let n = sqlx::query(
                "UPDATE auth_tokens SET revoked_at = $1 WHERE token_hash = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .ctx("revoking a token")?
            .rows_affected();
            if let Some(a) = audit {
                audit_in!(tx, a);
            }
            n > 0
        }))
    }

    /// Appends one audit row on its own (e.g. a failed login, which changes nothing else).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        in_tx!(self, |tx, _backend| {
            audit_in!(tx, entry);
        });
        Ok(())
    }

    /// The most recent audit rows, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, user_id, action, target, detail, ip FROM audit_log \
             ORDER BY id DESC LIMIT $1"
        )
        .bind(limit.max(0))
        .fetch_all(pool)
        .await
        .ctx("reading the audit log"))
    }

    /// One page of the audit log for people: newest first, at most `limit` rows (clamped to
    /// 1..=500) with an id below `before` when given, each with the e-mail of its user.
    pub async fn audit_page(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditView>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, AuditView>(
            "SELECT a.id, a.at, a.user_id, u.email AS user_email, a.action, a.target, \
             a.detail, a.ip FROM audit_log a LEFT JOIN users u ON u.id = a.user_id \
             WHERE a.id < $1 ORDER BY a.id DESC LIMIT $2"
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 500))
        .fetch_all(pool)
        .await
        .ctx("reading a page of the audit log"))
    }
}
