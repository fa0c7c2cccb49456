//! Managing people, as the users page does it: one-time invitations (a user created without a
//! usable password plus a link to set one), the users list with what an admin needs to see
//! (sites, last login, pending invite), deactivation, and the personal API tokens a user
//! manages on their own page.
//!
//! As in [`crate::accounts`], the store never sees a raw token or a password: the caller hashes
//! them. Every change writes its [`AuditEntry`] in the same transaction, and a refused change
//! writes nothing.

use crate::accounts::{
    AuditEntry, Role, TokenId, UserId, audit_in, insert_user_in, revoke_user_tokens_in, user_email,
};
use crate::error::{Ctx, StoreError};
use crate::model::SiteId;
use crate::store::{Backend, Store, in_tx, with_pool};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The `password_hash` of a user who has not set a password yet. It is not a PHC string, so
/// verifying any password against it fails (the login treats it as a wrong password).
pub const PENDING_PASSWORD_HASH: &str = "!invite-pending";

/// A user as the users page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    /// False while an invited user has not chosen a password.
    pub password_set: bool,
    /// The last successful login (or accepted invite), from the audit log.
    pub last_login_at: Option<DateTime<Utc>>,
    /// The expiry of the user's unused, unrevoked invite, if any (it may already be past).
    pub invite_expires_at: Option<DateTime<Utc>>,
    /// `user_sites`, by id.
    pub sites: Vec<SiteId>,
}

/// Whose users a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserScope {
    /// Everyone (an admin's view).
    All,
    /// The managers who share at least one site with this user (a manager's view; admins are
    /// never listed to a manager).
    SharingSitesWith(UserId),
}

/// An invitation to record: the user it creates and the hash of the link's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    pub email: String,
    pub role: Role,
    pub sites: Vec<SiteId>,
    /// Lower-case hex SHA-256 of the raw link token.
    pub token_hash: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A live invitation: who it is for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InviteTarget {
    pub user_id: UserId,
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

/// What [`Store::set_user_active`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveChange {
    Changed,
    /// The user already was in that state: nothing written.
    Unchanged,
    /// Refused: it would leave no active admin. Nothing written.
    LastAdmin,
    NotFound,
}

/// A personal API token as its owner sees it (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PersonalToken {
    pub id: TokenId,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct SummaryRaw {
    id: UserId,
    email: String,
    #[sqlx(try_from = "String")]
    role: Role,
    active: bool,
    created_at: DateTime<Utc>,
    password_set: bool,
    last_login_at: Option<DateTime<Utc>>,
    invite_expires_at: Option<DateTime<Utc>>,
}

/// `$1` is [`PENDING_PASSWORD_HASH`]; the caller appends the `WHERE`.
const SUMMARY_SELECT: &str = "SELECT u.id, u.email, u.role, u.active, u.created_at, \
     (u.password_hash <> $1) AS password_set, \
     (SELECT max(a.at) FROM audit_log a WHERE a.user_id = u.id \
      AND a.action IN ('login', 'invite_accept')) AS last_login_at, \
     (SELECT max(i.expires_at) FROM user_invites i WHERE i.user_id = u.id \
      AND i.used_at IS NULL AND i.revoked_at IS NULL) AS invite_expires_at \
     FROM users u";

/// Personal tokens are the API tokens without an expiry (`vetric token create` and the
/// account page make those); the ones a login hands out expire and are not listed.
const PERSONAL: &str = "kind = 'api' AND expires_at IS NULL AND revoked_at IS NULL";

/// Records an invite of `$user` (the hash of its link token) inside the transaction `$tx`.
macro_rules! record_invite_in {
    ($tx:ident, $user:expr, $token_hash:expr, $created_by:expr, $created_at:expr, $expires_at:expr) => {{
        let (created_by, token_hash): (Option<UserId>, &str) = ($created_by, $token_hash);
        sqlx::query(
            "INSERT INTO user_invites (user_id, token_hash, created_by, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($user)
        .bind(token_hash)
        .bind(created_by)
        .bind($created_at)
        .bind($expires_at)
        .execute(&mut *$tx)
        .await
        .ctx("recording an invite")?;
    }};
}

/// Revokes every unused invite of `$user` at `$at` inside the transaction `$tx`; `$context`
/// names the step in a query error.
macro_rules! revoke_invites_in {
    ($tx:ident, $user:expr, $at:expr, $context:expr) => {{
        sqlx::query(
            "UPDATE user_invites SET revoked_at = $1 WHERE user_id = $2 \
             AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind($at)
        .bind($user)
        .execute(&mut *$tx)
        .await
        .ctx($context)?;
    }};
}

impl Store {
    /// The users in `scope` (all of them, or `only` when given), by e-mail.
    pub async fn user_summaries(
        &self,
        scope: UserScope,
        only: Option<UserId>,
    ) -> Result<Vec<UserSummary>, StoreError> {
        // Ids start at 1, so 0 stands for "no filter" and one statement serves every case.
        let only = only.unwrap_or(UserId(0));
        let viewer = match scope {
            UserScope::All => UserId(0),
            UserScope::SharingSitesWith(v) => v,
        };
        let raws = with_pool!(self, |pool| sqlx::query_as::<_, SummaryRaw>(
            sqlx::AssertSqlSafe(format!(
                "{SUMMARY_SELECT} WHERE ($2 = 0 OR u.id = $2) AND ($3 = 0 OR \
                 (u.role = 'manager' AND EXISTS (SELECT 1 FROM user_sites a \
                 JOIN user_sites b ON b.site_id = a.site_id \
                 WHERE a.user_id = u.id AND b.user_id = $3))) ORDER BY lower(u.email)"
            ))
        )
        .bind(PENDING_PASSWORD_HASH)
        .bind(only)
        .bind(viewer)
        .fetch_all(pool)
        .await
        .ctx("listing users"))?;
        let grants = with_pool!(self, |pool| sqlx::query_as::<_, (UserId, SiteId)>(
            "SELECT user_id, site_id FROM user_sites ORDER BY user_id, site_id"
        )
        .fetch_all(pool)
        .await
        .ctx("reading site grants"))?;
        let mut by_user: BTreeMap<UserId, Vec<SiteId>> = BTreeMap::new();
        for (u, s) in grants {
            by_user.entry(u).or_default().push(s);
        }
        Ok(raws
            .into_iter()
            .map(|r| UserSummary {
                sites: by_user.remove(&r.id).unwrap_or_default(),
                id: r.id,
                email: r.email,
                role: r.role,
                active: r.active,
                created_at: r.created_at,
                password_set: r.password_set,
                last_login_at: r.last_login_at,
                invite_expires_at: r.invite_expires_at,
            })
            .collect())
    }

    /// Creates a user without a usable password, their site grants and a one-time invite, with
    /// `audit`, in one transaction. [`StoreError::Conflict`] naming the e-mail when it is taken
    /// (case-insensitively); [`StoreError::NotFound`] when a site does not exist.
    pub async fn invite_user(
        &self,
        new: &NewInvite,
        audit: &AuditEntry,
    ) -> Result<UserId, StoreError> {
        let email = user_email(&new.email)?;
        Ok(in_tx!(self, |tx, _backend| {
            let id = insert_user_in!(
                tx,
                email,
                PENDING_PASSWORD_HASH,
                new.role,
                new.created_at,
                &new.sites,
                "adding an invited user"
            );
            record_invite_in!(
                tx,
                id,
                &new.token_hash,
                new.created_by,
                new.created_at,
                new.expires_at
            );
            let mut entry = audit.clone();
            if let serde_json::Value::Object(m) = &mut entry.detail {
                m.insert("user_id".into(), serde_json::json!(id));
            }
            audit_in!(tx, &entry);
            id
        }))
    }

    /// A new invite for a user who is active and has not set a password yet; their earlier
    /// invites stop working. False (nothing written) for any other user.
    pub async fn reinvite_user(
        &self,
        user: UserId,
        token_hash: &str,
        created_by: Option<UserId>,
        expires_at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let now = audit.at;
        Ok(in_tx!(self, |tx, _backend| {
            let pending = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM users WHERE id = $1 AND active AND password_hash = $2",
            )
            .bind(user)
            .bind(PENDING_PASSWORD_HASH)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading an invited user")?;
            if pending == 0 {
                return Ok(false);
            }
            revoke_invites_in!(tx, user, now, "revoking earlier invites");
            record_invite_in!(tx, user, token_hash, created_by, now, expires_at);
            audit_in!(tx, audit);
            true
        }))
    }

    /// The active user a live invite (unused, unrevoked, not expired at `now`) is for.
    pub async fn live_invite(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<InviteTarget>, StoreError> {
        let found = with_pool!(self, |pool| sqlx::query_as::<_, InviteTarget>(
            "SELECT i.user_id, u.email, i.expires_at FROM user_invites i \
             JOIN users u ON u.id = i.user_id \
             WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.revoked_at IS NULL AND u.active"
        )
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .ctx("reading an invite"))?;
        Ok(found.filter(|i| i.expires_at > now))
    }

    /// Uses a live invite: marks it used, sets the user's first password and revokes any
    /// other invite of theirs, with `audit` (its `user_id` filled in when empty), in one
    /// transaction. `None`, with nothing written, when the invite is not live at `now`
    /// (unknown, used — also by a concurrent request —, revoked, expired, user inactive).
    pub async fn accept_invite(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(in_tx!(self, |tx, _backend| {
            // The conditional UPDATE is the single-use guard: of two concurrent requests only
            // one sees the row still unused.
            let used = sqlx::query_as::<_, (UserId, DateTime<Utc>)>(
                "UPDATE user_invites SET used_at = $1 WHERE token_hash = $2 \
                 AND used_at IS NULL AND revoked_at IS NULL RETURNING user_id, expires_at",
            )
            .bind(now)
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await
            .ctx("using an invite")?;
            let Some((user, expires_at)) = used else {
                return Ok(None);
            };
            if expires_at <= now {
                // Returning drops the transaction: the invite stays unused (and useless).
                return Ok(None);
            }
            let set = sqlx::query(
                "UPDATE users SET password_hash = $1, password_changed_at = $2 \
                 WHERE id = $3 AND active",
            )
            .bind(password_hash)
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await
            .ctx("setting a first password")?
            .rows_affected();
            if set == 0 {
                return Ok(None);
            }
            revoke_invites_in!(tx, user, now, "revoking other invites");
            let mut entry = audit.clone();
            entry.user_id = entry.user_id.or(Some(user));
            audit_in!(tx, &entry);
            Some(user)
        }))
    }

    /// Activates or deactivates a user, with `audit`, in one transaction. Deactivating
    /// revokes every token and invite of the user in the same transaction, so their open
    /// sessions and API tokens stop at the next request and stay dead if they are reactivated.
    /// Refuses ([`ActiveChange::LastAdmin`]) to deactivate the last active admin.
    pub async fn set_user_active(
        &self,
        user: UserId,
        active: bool,
        audit: &AuditEntry,
    ) -> Result<ActiveChange, StoreError> {
        let now = audit.at;
        Ok(in_tx!(self, |tx, backend| {
            if backend == Backend::Postgres {
                // Two admins deactivating each other at once must not both succeed: lock the
                // active admins (SQLite's BEGIN IMMEDIATE already serialises writers).
                sqlx::query("SELECT id FROM users WHERE role = 'admin' AND active FOR UPDATE")
                    .execute(&mut *tx)
                    .await
                    .ctx("locking the admins")?;
            }
            let row =
                sqlx::query_as::<_, (String, bool)>("SELECT role, active FROM users WHERE id = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("reading a user")?;
            let Some((role, was_active)) = row else {
                return Ok(ActiveChange::NotFound);
            };
            if was_active == active {
                return Ok(ActiveChange::Unchanged);
            }
            if !active && role == Role::Admin.as_str() {
                let others = sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND active AND id <> $1",
                )
                .bind(user)
                .fetch_one(&mut *tx)
                .await
                .ctx("counting the active admins")?;
                if others == 0 {
                    return Ok(ActiveChange::LastAdmin);
                }
            }
            sqlx::query("UPDATE users SET active = $1 WHERE id = $2")
                .bind(active)
                .bind(user)
                .execute(&mut *tx)
                .await
                .ctx("changing whether a user is active")?;
            if !active {
                revoke_user_tokens_in!(tx, user, now);
                revoke_invites_in!(tx, user, now, "revoking a user's invites");
            }
            audit_in!(tx, audit);
            ActiveChange::Changed
        }))
    }

    /// A user's live personal API tokens, newest first.
    pub async fn personal_tokens(&self, user: UserId) -> Result<Vec<PersonalToken>, StoreError> {
        with_pool!(self, |pool| sqlx::query_as::<_, PersonalToken>(
            sqlx::AssertSqlSafe(format!(
                "SELECT id, label, created_at, last_used_at FROM auth_tokens \
                 WHERE user_id = $1 AND {PERSONAL} ORDER BY id DESC"
            ))
        )
        .bind(user)
        .fetch_all(pool)
        .await
        .ctx("listing personal tokens"))
    }

    /// Revokes one live personal token of `user`, with `audit`, in one transaction. False
    /// (nothing written) when `user` has no such token.
    pub async fn revoke_personal_token(
        &self,
        user: UserId,
        token: TokenId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        Ok(in_tx!(self, |tx, _backend| {
            let n = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE auth_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
                 AND {PERSONAL}"
            )))
            .bind(audit.at)
            .bind(token)
            .bind(user)
            .execute(&mut *tx)
            .await
            .ctx("revoking a personal token")?
            .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            audit_in!(tx, audit);
            true
        }))
    }
}
