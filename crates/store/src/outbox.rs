//! The notification outbox: every message vetric will send, as a row, from the moment the fact
//! that causes it is stored until the gateway has it (DESIGN rule 4, RELIABILITY R2).
//!
//! Life of a row: `pending` → (claimed with a lease, committed BEFORE any network call)
//! `sending` → `sent` | `pending` again (retry later, or deferred) | `failed` (permanent, with
//! the reason) | `in_doubt` (the send may have reached the gateway) | `cancelled` (with the
//! reason). A claim whose lease runs out — the process died mid-send — becomes `in_doubt`;
//! such a row is reconciled with the gateway before anything is resent, never resent blindly.
//!
//! Every completion is conditional on `status = 'sending' AND lease_owner = <owner>`, so a
//! dispatcher that lost its lease can never overwrite what another one recorded. On
//! PostgreSQL claims use `FOR UPDATE SKIP LOCKED` (any number of dispatchers); on SQLite one
//! dispatcher runs per store (the instance lock), and a claim is one atomic statement.
//!
//! Also here: the attempts log, the backlog figures the health watch reads, and the
//! notification settings that belong to the store — a resident's preferences and a site's
//! policy (both opaque-ish: the rules in `vetric-domain` interpret them).

use crate::accounts::{AuditEntry, audit_in};
use crate::error::{Ctx, StoreError};
use crate::model::{BadValue, CancelPending, NewNotification, ResidentId, SiteId};
use crate::store::{Store, in_tx, with_pool};
use chrono::{DateTime, NaiveTime, Utc};
use serde::Serialize;
use std::fmt;

/// Where a row is in its life (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Sending,
    InDoubt,
    Sent,
    Failed,
    Cancelled,
}

impl OutboxStatus {
    pub const ALL: [OutboxStatus; 6] = [
        Self::Pending,
        Self::Sending,
        Self::InDoubt,
        Self::Sent,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::InDoubt => "in_doubt",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// `None` for anything else (e.g. a bad `?status=` filter).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for OutboxStatus {
    type Error = BadValue;
    fn try_from(s: String) -> Result<Self, BadValue> {
        Self::parse(&s).ok_or(BadValue(s))
    }
}

/// One outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub site_id: Option<SiteId>,
    pub dedup_key: String,
    pub rule: String,
    pub audience: String,
    pub channel: String,
    pub resident_id: Option<ResidentId>,
    /// Phone (as the resident record has it), e-mail address or webhook URL.
    pub recipient: Option<String>,
    pub scope: String,
    pub session_vendor_id: Option<i64>,
    pub subject: Option<String>,
    pub body: String,
    pub ref_code: String,
    #[sqlx(try_from = "String")]
    pub status: OutboxStatus,
    pub not_before: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// Send attempts so far (a claim counts one; a deferral gives it back).
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub gateway_message_id: Option<String>,
    pub last_error: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One try at sending a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub outbox_id: i64,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `sent`, `retry`, `failed`, `in_doubt`, `operator` (needs an operator; retried later),
    /// or after a reconciliation `confirmed` / `not_found`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A row with its attempts, for the notification log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    #[serde(flatten)]
    pub row: OutboxRow,
    pub attempts: Vec<AttemptRow>,
}

/// Which rows [`Store::outbox_log`] returns: newest first, those with an id below `before_id`
/// (paging), at most `limit` (default 50, at most 500).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    pub site: Option<SiteId>,
    pub status: Option<OutboxStatus>,
    pub resident: Option<ResidentId>,
    pub rule: Option<String>,
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

/// How a claimed row ended this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The gateway accepted it (WhatsApp: HTTP 201 with `key.id`).
    Sent { gateway_message_id: Option<String> },
    /// A transient failure: try again at `at`.
    RetryLater { at: DateTime<Utc>, error: String },
    /// The channel needs an operator (bad key, unknown instance): try again at `at`, after
    /// an operator has been alerted.
    NeedsOperator { at: DateTime<Utc>, error: String },
    /// Permanent: never retried (resend is an admin action).
    Failed { reason: String },
    /// The send may have reached the gateway: reconcile before anything else.
    InDoubt { error: String },
    /// Not yet (quiet hours): back to pending until `not_before`; no attempt is counted.
    Defer { not_before: DateTime<Utc> },
    /// Not at all (opted out, too old, session over): no attempt is counted.
    Cancel { reason: String },
}

/// What reconciliation (or an operator) concluded about an in-doubt row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The gateway has it: sent, never again.
    Sent { gateway_message_id: Option<String> },
    /// The gateway surely does not have it: back to pending, due now.
    Resend,
}

/// An operator's decision on a row left in doubt that reconciliation could not settle (the
/// notification log's buttons, [`Store::decide_in_doubt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorDecision {
    /// The operator saw the message arrive (the resident's phone, the WhatsApp app): `sent`,
    /// never again.
    Sent,
    /// Send again, accepting a possible duplicate: back to `pending`, due now, attempts kept,
    /// same reference code.
    Resend,
    /// Give up: `cancelled` with reason `operator`.
    Discard,
}

impl OperatorDecision {
    pub const ALL: [OperatorDecision; 3] = [Self::Sent, Self::Resend, Self::Discard];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Resend => "resend",
            Self::Discard => "discard",
        }
    }

    /// `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// What [`Store::decide_in_doubt`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Applied; the row's new status.
    Done(OutboxStatus),
    /// The row is no longer in doubt (reconciliation or another operator settled it); its
    /// status now. Nothing written.
    NotInDoubt(OutboxStatus),
    /// No such row on that site. Nothing written.
    NotFound,
}

/// Outbox figures for the health watch and metrics: rows still owed to someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BacklogStats {
    pub pending: i64,
    pub in_doubt: i64,
    pub sending: i64,
    pub failed: i64,
    /// The oldest `not_before` among pending (already due) and in-doubt rows.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// A resident's notification choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidentPrefsRow {
    pub resident_id: ResidentId,
    /// Rule names the resident does not want.
    pub opted_out: Vec<String>,
    /// Local (site time) start and end of quiet hours; both or neither.
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    pub updated_at: DateTime<Utc>,
}

/// A site's notification policy, as JSON (the domain's `NotificationPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SitePolicyRow {
    pub site_id: SiteId,
    pub policy: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, site_id, dedup_key, rule, audience, channel, \
     resident_id, recipient, scope, session_vendor_id, subject, body, ref_code, status, \
     not_before, next_attempt_at, attempts, lease_owner, lease_until, gateway_message_id, \
     last_error, reason, created_at, updated_at, sent_at";

/// With no recipient given, the resident's phone (or e-mail for the e-mail channel) at insert;
/// none (or an inactive resident) cancels the row at once with `$15` as the reason, so the
/// log still says why nobody was told. `WHERE true` keeps SQLite's parser from reading
/// `ON CONFLICT` as a join constraint.
const ENQUEUE: &str = "INSERT INTO outbox (site_id, dedup_key, rule, audience, channel, \
     resident_id, recipient, scope, session_vendor_id, subject, body, ref_code, status, \
     not_before, next_attempt_at, attempts, reason, created_at, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, r.recipient, $8, $9, $10, $11, $12, \
       CASE WHEN r.recipient IS NULL THEN 'cancelled' ELSE 'pending' END, \
       $13, $13, 0, CASE WHEN r.recipient IS NULL THEN $15 END, $14, $14 \
     FROM (SELECT COALESCE($7, (SELECT NULLIF(TRIM(CASE WHEN $5 = 'email' THEN x.email \
       ELSE x.phone END), '') FROM residents x WHERE x.id = $6 AND x.active \
       AND ($1 IS NULL OR x.site_id = $1))) AS recipient) r \
     WHERE true \
     ON CONFLICT (dedup_key) DO NOTHING RETURNING id";

const CANCEL_PENDING: &str = "UPDATE outbox SET status = 'cancelled', reason = $4, \
     updated_at = $5 WHERE site_id = $1 AND scope = $2 AND rule = $3 AND status = 'pending'";

/// Inserts `$n` (`&NewNotification`) for `$site` (`Option<SiteId>`) on `$exec`; evaluates to
/// the new row's id, `None` when the dedup key was already there.
macro_rules! enqueue_in {
    ($exec:expr, $site:expr, $n:expr, $now:expr) => {{
        let n: &NewNotification = $n;
        let site: Option<SiteId> = $site;
        let missing = if n.channel == "email" {
            "no_email"
        } else {
            "no_phone"
        };
        sqlx::query_scalar::<_, i64>(crate::outbox::ENQUEUE_SQL)
            .bind(site)
            .bind(&n.dedup_key)
            .bind(&n.rule)
            .bind(&n.audience)
            .bind(&n.channel)
            .bind(n.resident_id)
            .bind(n.recipient.as_deref())
            .bind(&n.scope)
            .bind(n.session_vendor_id)
            .bind(n.subject.as_deref())
            .bind(&n.body)
            .bind(&n.ref_code)
            .bind(n.not_before)
            .bind($now)
            .bind(missing)
            .fetch_optional($exec)
            .await
            .ctx("enqueuing a notification")?
    }};
}

/// Cancels the pending rows `$c` (`&CancelPending`) names, for `$site`, on `$exec`.
macro_rules! cancel_in {
    ($exec:expr, $site:expr, $c:expr, $now:expr) => {{
        let c: &CancelPending = $c;
        for rule in &c.rules {
            sqlx::query(crate::outbox::CANCEL_PENDING_SQL)
                .bind($site)
                .bind(&c.scope)
                .bind(rule)
                .bind(&c.reason)
                .bind($now)
                .execute(&mut *$exec)
                .await
                .ctx("cancelling pending notifications")?;
        }
    }};
}

pub(crate) const ENQUEUE_SQL: &str = ENQUEUE;
pub(crate) const CANCEL_PENDING_SQL: &str = CANCEL_PENDING;
pub(crate) use {cancel_in, enqueue_in};

/// The pick is a materialised CTE: as a plain `IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`
/// PostgreSQL may run the subquery more than once, and with SKIP LOCKED each run returns other
/// rows, so the LIMIT would not hold.
const CLAIM_PG: &str = "WITH picked AS MATERIALIZED (SELECT id FROM outbox \
       WHERE status = 'pending' AND not_before <= $3 AND next_attempt_at <= $3 \
       ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     UPDATE outbox o SET status = 'sending', lease_owner = $1, \
     lease_until = $2, attempts = o.attempts + 1, updated_at = $3 \
     FROM picked WHERE o.id = picked.id AND o.status = 'pending' \
     RETURNING o.id, o.site_id, o.dedup_key, o.rule, o.audience, o.channel, \
     o.resident_id, o.recipient, o.scope, o.session_vendor_id, o.subject, o.body, o.ref_code, \
     o.status, o.not_before, o.next_attempt_at, o.attempts, o.lease_owner, o.lease_until, \
     o.gateway_message_id, o.last_error, o.reason, o.created_at, o.updated_at, o.sent_at";

/// Planted bug `no-skip-locked` (test builds only, [`crate::planted`]): the claim with its row
/// lock dropped, as two statements — "read the due rows" ([`PICK_PG_NO_LOCK`], no `FOR UPDATE
/// SKIP LOCKED`), then "mark them" ([`MARK_PG_NO_LOCK`], no `status = 'pending'` re-check).
/// Two dispatchers whose claims overlap both get the same rows and both send them.
///
/// Why this variant: dropping only `SKIP LOCKED` keeps `FOR UPDATE`, so a second claimer waits
/// for the first to commit and then skips the rows it re-reads as `sending` — slower, never
/// doubled. Dropping the lock but keeping the re-check is still safe under READ COMMITTED:
/// the update waits on the first claimer's row locks and re-evaluates `o.status = 'pending'`
/// on the new row version (checked by hand with two psql sessions). Neither is a bug the
/// suite should catch; the lock-free read-then-mark is. As one statement its race window was
/// a few milliseconds and the suite caught it only on some seeds; as two statements with a
/// round trip between them ([`PLANTED_CLAIM_GAP`]) two dispatchers overlap on every busy tick.
const PICK_PG_NO_LOCK: &str = "SELECT id FROM outbox \
     WHERE status = 'pending' AND not_before <= $1 AND next_attempt_at <= $1 \
     ORDER BY id LIMIT $2";

const MARK_PG_NO_LOCK: &str = "UPDATE outbox o SET status = 'sending', lease_owner = $1, \
     lease_until = $2, attempts = o.attempts + 1, updated_at = $3 \
     WHERE o.id = ANY($4) \
     RETURNING o.id, o.site_id, o.dedup_key, o.rule, o.audience, o.channel, \
     o.resident_id, o.recipient, o.scope, o.session_vendor_id, o.subject, o.body, o.ref_code, \
     o.status, o.not_before, o.next_attempt_at, o.attempts, o.lease_owner, o.lease_until, \
     o.gateway_message_id, o.last_error, o.reason, o.created_at, o.updated_at, o.sent_at";

/// The planted claim's pause between reading and marking: a slow round trip to the database.
const PLANTED_CLAIM_GAP: std::time::Duration = std::time::Duration::from_millis(250);

/// One statement, so atomic; SQLite has one writer and one dispatcher per store.
const CLAIM_SQLITE: &str = "UPDATE outbox SET status = 'sending', lease_owner = $1, \
     lease_until = $2, attempts = attempts + 1, updated_at = $3 \
     WHERE status = 'pending' AND id IN (SELECT id FROM outbox WHERE status = 'pending' \
       AND not_before <= $3 AND next_attempt_at <= $3 ORDER BY id LIMIT $4) \
     RETURNING id, site_id, dedup_key, rule, audience, channel, \
     resident_id, recipient, scope, session_vendor_id, subject, body, ref_code, status, \
     not_before, next_attempt_at, attempts, lease_owner, lease_until, gateway_message_id, \
     last_error, reason, created_at, updated_at, sent_at";

/// The attempt row of a completion; `started_at` is when the row was claimed (its
/// `updated_at` then). Written again by reconciliation (same attempt number).
const UPSERT_ATTEMPT: &str = "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, \
     finished_at, outcome, error) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (outbox_id, attempt) DO UPDATE SET finished_at = excluded.finished_at, \
     outcome = excluded.outcome, error = excluded.error";

/// Every completion in one statement, guarded by the claim. `$10` gives the attempt back
/// (a deferral or cancellation is not a send attempt).
const COMPLETE: &str = "UPDATE outbox SET status = $3, \
     next_attempt_at = COALESCE($4, next_attempt_at), not_before = COALESCE($5, not_before), \
     last_error = CASE WHEN $3 = 'sent' THEN NULL ELSE COALESCE($6, last_error) END, \
     reason = COALESCE($7, reason), \
     gateway_message_id = COALESCE($8, gateway_message_id), \
     sent_at = CASE WHEN $3 = 'sent' THEN $9 ELSE sent_at END, \
     attempts = attempts - $10, updated_at = $9, lease_until = NULL \
     WHERE id = $1 AND status = 'sending' AND lease_owner = $2";

/// The values [`COMPLETE`] and the attempt row take for one [`Completion`].
struct CompletionParams<'a> {
    status: &'static str,
    next_attempt_at: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
    error: Option<&'a str>,
    reason: Option<&'a str>,
    gateway_message_id: Option<&'a str>,
    give_back: i64,
    /// `None`: no attempt row (nothing was sent).
    outcome: Option<&'static str>,
}

impl<'a> CompletionParams<'a> {
    fn of(how: &'a Completion) -> Self {
        let base = Self {
            status: "pending",
            next_attempt_at: None,
            not_before: None,
            error: None,
            reason: None,
            gateway_message_id: None,
            give_back: 0,
            outcome: None,
        };
        match how {
            Completion::Sent { gateway_message_id } => Self {
                status: "sent",
                gateway_message_id: gateway_message_id.as_deref(),
                outcome: Some("sent"),
                ..base
            },
            Completion::RetryLater { at, error } => Self {
                next_attempt_at: Some(*at),
                error: Some(error),
                outcome: Some("retry"),
                ..base
            },
            Completion::NeedsOperator { at, error } => Self {
                next_attempt_at: Some(*at),
                error: Some(error),
                outcome: Some("operator"),
                ..base
            },
            Completion::Failed { reason } => Self {
                status: "failed",
                error: Some(reason),
                reason: Some(reason),
                outcome: Some("failed"),
                ..base
            },
            Completion::InDoubt { error } => Self {
                status: "in_doubt",
                error: Some(error),
                outcome: Some("in_doubt"),
                ..base
            },
            Completion::Defer { not_before } => Self {
                not_before: Some(*not_before),
                next_attempt_at: Some(*not_before),
                give_back: 1,
                ..base
            },
            Completion::Cancel { reason } => Self {
                status: "cancelled",
                reason: Some(reason),
                give_back: 1,
                ..base
            },
        }
    }
}

#[derive(sqlx::FromRow)]
struct Claimed {
    attempts: i64,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PrefsRaw {
    resident_id: ResidentId,
    opted_out: String,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PolicyRaw {
    site_id: SiteId,
    policy: String,
    updated_at: DateTime<Utc>,
    updated_by: Option<String>,
}

fn parse_time(what: &str, s: &str) -> Result<NaiveTime, StoreError> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|e| StoreError::Corrupt {
        what: format!("{what} {s:?}: {e}"),
    })
}

impl Store {
    /// Enqueues one notification outside an ingest cycle (alerts the dispatcher itself
    /// raises, test messages). Same rules as in [`Store::write_cycle`]: a dedup key already
    /// present enqueues nothing (`None`).
    pub async fn enqueue(
        &self,
        site: Option<SiteId>,
        n: &NewNotification,
    ) -> Result<Option<i64>, StoreError> {
        let now = Utc::now();
        let id = with_pool!(self, |pool| enqueue_in!(pool, site, n, now));
        Ok(id)
    }

    /// Cancels still-pending rows of `site` (see [`CancelPending`]); returns how many.
    pub async fn cancel_pending(&self, site: SiteId, c: &CancelPending) -> Result<u64, StoreError> {
        let now = Utc::now();
        let n = in_tx!(self, |tx, _backend| {
            let mut n = 0;
            for rule in &c.rules {
                n += sqlx::query(CANCEL_PENDING)
                    .bind(site)
                    .bind(&c.scope)
                    .bind(rule)
                    .bind(&c.reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("cancelling pending notifications")?
                    .rows_affected();
            }
            n
        });
        Ok(n)
    }

    /// Claims up to `limit` due pending rows for `owner` until `now + lease`: they become
    /// `sending` and count one more attempt. The claim is committed when this returns, BEFORE
    /// the caller touches the network. Oldest first.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let until = now + lease;
        let mut rows: Vec<OutboxRow> = match &self.db {
            crate::store::Db::Postgres(pool) if crate::planted::planted("no-skip-locked") => {
                let ids: Vec<i64> = sqlx::query_scalar(PICK_PG_NO_LOCK)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
                    .ctx("claiming due notifications")?;
                tokio::time::sleep(PLANTED_CLAIM_GAP).await;
                sqlx::query_as(MARK_PG_NO_LOCK)
                    .bind(owner)
                    .bind(until)
                    .bind(now)
                    .bind(&ids)
                    .fetch_all(pool)
                    .await
                    .ctx("claiming due notifications")?
            }
            crate::store::Db::Postgres(pool) => sqlx::query_as(CLAIM_PG)
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("claiming due notifications")?,
            crate::store::Db::Sqlite(pool) => sqlx::query_as(CLAIM_SQLITE)
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .ctx("claiming due notifications")?,
        };
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Records how the claimed row `id` ended, with its attempt row, in one transaction —
    /// only while `owner` still holds it (`status = 'sending'`). `false`: the claim was lost
    /// (the lease expired and the row went in doubt, or an operator acted); nothing written.
    pub async fn complete(
        &self,
        id: i64,
        owner: &str,
        how: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let applied = in_tx!(self, |tx, _backend| {
            let claimed: Option<Claimed> = sqlx::query_as(
                "SELECT attempts, updated_at FROM outbox \
                 WHERE id = $1 AND status = 'sending' AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a claimed notification")?;
            match claimed {
                None => false,
                Some(c) => {
                    let p = CompletionParams::of(how);
                    let done = sqlx::query(COMPLETE)
                        .bind(id)
                        .bind(owner)
                        .bind(p.status)
                        .bind(p.next_attempt_at)
                        .bind(p.not_before)
                        .bind(p.error)
                        .bind(p.reason)
                        .bind(p.gateway_message_id)
                        .bind(now)
                        .bind(p.give_back)
                        .execute(&mut *tx)
                        .await
                        .ctx("recording a notification outcome")?
                        .rows_affected()
                        == 1;
                    if done && let Some(outcome) = p.outcome {
                        sqlx::query(UPSERT_ATTEMPT)
                            .bind(id)
                            .bind(c.attempts)
                            .bind(c.updated_at)
                            .bind(now)
                            .bind(outcome)
                            .bind(p.error)
                            .execute(&mut *tx)
                            .await
                            .ctx("recording a notification attempt")?;
                    }
                    done
                }
            }
        });
        Ok(applied)
    }

    /// `sending` rows whose lease ran out become `in_doubt`: the process that claimed them
    /// died (or hung) mid-send, and nobody can know whether the gateway got the message.
    /// Returns the ids, oldest first.
    pub async fn expire_leases(&self, now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let ids = in_tx!(self, |tx, _backend| {
            let rows: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
                "UPDATE outbox SET status = 'in_doubt', \
                 last_error = 'the claim expired before an outcome was recorded (process \
                 stopped mid-send?)', next_attempt_at = $1, updated_at = $1 \
                 WHERE status = 'sending' AND lease_until < $1 \
                 RETURNING id, attempts, updated_at",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .ctx("expiring notification leases")?;
            let mut ids = Vec::with_capacity(rows.len());
            for (id, attempt, _) in rows {
                sqlx::query(UPSERT_ATTEMPT)
                    .bind(id)
                    .bind(attempt)
                    // The claim instant is gone (updated_at was just overwritten); the
                    // expiry is the best we know.
                    .bind(now)
                    .bind(now)
                    .bind("in_doubt")
                    .bind("the claim expired before an outcome was recorded")
                    .execute(&mut *tx)
                    .await
                    .ctx("recording a notification attempt")?;
                ids.push(id);
            }
            ids.sort_unstable();
            ids
        });
        Ok(ids)
    }

    /// In-doubt rows whose next reconciliation is due, oldest first.
    pub async fn in_doubt_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.in_doubt_rows(Some(now), limit).await
    }

    /// Every in-doubt row, oldest first (for the log page and `vetric status`).
    pub async fn in_doubt(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.in_doubt_rows(None, limit).await
    }

    /// In-doubt rows, oldest first; with `due_at`, only those due for reconciliation then.
    async fn in_doubt_rows(
        &self,
        due_at: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'in_doubt' \
             AND ($1 IS NULL OR next_attempt_at <= $1) ORDER BY id LIMIT $2"
        );
        let rows = with_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(due_at)
            .bind(limit)
            .fetch_all(pool)
            .await
            .ctx("listing notifications in doubt"))?;
        Ok(rows)
    }

    /// Leaves an in-doubt row in doubt and asks again no sooner than `at` (the gateway could
    /// not answer, or cannot know).
    pub async fn postpone_in_doubt(
        &self,
        id: i64,
        at: DateTime<Utc>,
        note: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let done = with_pool!(self, |pool| sqlx::query(
            "UPDATE outbox SET next_attempt_at = $2, last_error = $3, updated_at = $4 \
             WHERE id = $1 AND status = 'in_doubt'"
        )
        .bind(id)
        .bind(at)
        .bind(note)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .ctx("postponing a notification in doubt"))?
            == 1;
        Ok(done)
    }

    /// Settles an in-doubt row: sent (the gateway has it) or back to pending (it surely does
    /// not). Only while the row is still in doubt (`false` otherwise). Done by the dispatcher
    /// after reconciliation (`audit` `None`) or by an operator (audited, same transaction).
    pub async fn resolve_in_doubt(
        &self,
        id: i64,
        how: &Resolution,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let now = audit.map_or_else(Utc::now, |a| a.at);
        let by = if audit.is_some() {
            "an operator"
        } else {
            "reconciliation with the gateway"
        };
        let done = in_tx!(self, |tx, _backend| {
            let (q, outcome, note) = match how {
                Resolution::Sent { gateway_message_id } => (
                    sqlx::query(
                        "UPDATE outbox SET status = 'sent', \
                         gateway_message_id = COALESCE($2, gateway_message_id), \
                         sent_at = $3, updated_at = $3, last_error = NULL \
                         WHERE id = $1 AND status = 'in_doubt'",
                    )
                    .bind(id)
                    .bind(gateway_message_id.as_deref())
                    .bind(now),
                    "confirmed",
                    format!("found at the gateway by {by}"),
                ),
                Resolution::Resend => (
                    sqlx::query(
                        "UPDATE outbox SET status = 'pending', next_attempt_at = $3, \
                         updated_at = $3, last_error = $2 \
                         WHERE id = $1 AND status = 'in_doubt'",
                    )
                    .bind(id)
                    .bind("not found at the gateway; sending again")
                    .bind(now),
                    "not_found",
                    format!("not at the gateway according to {by}; will send again"),
                ),
            };
            let done = q
                .execute(&mut *tx)
                .await
                .ctx("settling a notification in doubt")?
                .rows_affected()
                == 1;
            if done {
                sqlx::query(
                    "UPDATE outbox_attempts SET outcome = $3, error = $4, \
                     finished_at = COALESCE(finished_at, $5) \
                     WHERE outbox_id = $1 AND attempt = $2",
                )
                .bind(id)
                .bind(
                    sqlx::query_scalar::<_, i64>("SELECT attempts FROM outbox WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("reading a notification")?,
                )
                .bind(outcome)
                .bind(&note)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("recording a reconciliation")?;
                if let Some(a) = audit {
                    audit_in!(tx, a);
                }
            }
            done
        });
        Ok(done)
    }

    /// Sends a failed row again (an admin action from the log page): back to pending with
    /// its attempts reset, audited in the same transaction. `false` when the row is not
    /// `failed` (nothing written).
    pub async fn resend(&self, id: i64, audit: &AuditEntry) -> Result<bool, StoreError> {
        let done = in_tx!(self, |tx, _backend| {
            let done = sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, \
                 not_before = CASE WHEN not_before > $2 THEN not_before ELSE $2 END, \
                 reason = NULL, updated_at = $2 WHERE id = $1 AND status = 'failed'",
            )
            .bind(id)
            .bind(audit.at)
            .execute(&mut *tx)
            .await
            .ctx("resending a notification")?
            .rows_affected()
                == 1;
            if done {
                // Attempts restart at 1: keep the old ones readable under negative numbers.
                sqlx::query(
                    "UPDATE outbox_attempts SET attempt = -attempt \
                     WHERE outbox_id = $1 AND attempt > 0",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("keeping earlier attempts")?;
                audit_in!(tx, audit);
            }
            done
        });
        Ok(done)
    }

    /// An operator's decision on the in-doubt row `id` of `site`, audited in the same
    /// transaction. Conditional on `status = 'in_doubt'`: a row that reconciliation (or another
    /// operator) settled meanwhile is left alone and reported as [`Decided::NotInDoubt`].
    /// The attempt that went in doubt records the decision (its outcome `operator_sent`,
    /// `operator_resend` or `operator_discard`). A resend keeps the attempts count: the
    /// dispatcher's next claim is one more attempt under the same reference code.
    pub async fn decide_in_doubt(
        &self,
        site: SiteId,
        id: i64,
        decision: OperatorDecision,
        audit: &AuditEntry,
    ) -> Result<Decided, StoreError> {
        let now = audit.at;
        let (sql, status, outcome, note) = match decision {
            OperatorDecision::Sent => (
                "UPDATE outbox SET status = 'sent', sent_at = $3, updated_at = $3, \
                 last_error = NULL, reason = 'operator_confirmed', lease_until = NULL \
                 WHERE id = $1 AND site_id = $2 AND status = 'in_doubt'",
                OutboxStatus::Sent,
                "operator_sent",
                "confirmed delivered by hand by an operator",
            ),
            OperatorDecision::Resend => (
                "UPDATE outbox SET status = 'pending', next_attempt_at = $3, updated_at = $3, \
                 last_error = 'an operator chose to send again (a duplicate is possible)', \
                 lease_until = NULL \
                 WHERE id = $1 AND site_id = $2 AND status = 'in_doubt'",
                OutboxStatus::Pending,
                "operator_resend",
                "an operator chose to send again, accepting a possible duplicate",
            ),
            OperatorDecision::Discard => (
                "UPDATE outbox SET status = 'cancelled', reason = 'operator', updated_at = $3, \
                 lease_until = NULL \
                 WHERE id = $1 AND site_id = $2 AND status = 'in_doubt'",
                OutboxStatus::Cancelled,
                "operator_discard",
                "an operator gave up on this message",
            ),
        };
        let decided = in_tx!(self, |tx, _backend| {
            let done = sqlx::query(sql)
                .bind(id)
                .bind(site)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("recording an operator's decision on a notification in doubt")?
                .rows_affected()
                == 1;
            if done {
                sqlx::query(
                    "UPDATE outbox_attempts SET outcome = $2, error = $3, \
                     finished_at = COALESCE(finished_at, $4) \
                     WHERE outbox_id = $1 AND attempt = (SELECT attempts FROM outbox WHERE id = $1)",
                )
                .bind(id)
                .bind(outcome)
                .bind(note)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("recording an operator's decision on an attempt")?;
                audit_in!(tx, audit);
                Decided::Done(status)
            } else {
                let current: Option<String> =
                    sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1 AND site_id = $2")
                        .bind(id)
                        .bind(site)
                        .fetch_optional(&mut *tx)
                        .await
                        .ctx("reading a notification")?;
                match current {
                    None => Decided::NotFound,
                    Some(s) => Decided::NotInDoubt(OutboxStatus::try_from(s).map_err(|e| {
                        StoreError::Corrupt {
                            what: format!("outbox status {:?}", e.0),
                        }
                    })?),
                }
            }
        });
        Ok(decided)
    }

    /// One row, with its attempts.
    pub async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        let row: Option<OutboxRow> =
            with_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await
                .ctx("reading a notification"))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let attempts = self.attempts_of(&[row.id]).await?;
                Ok(Some(OutboxEntry { attempts, row }))
            }
        }
    }

    /// The row with this dedup key, if any.
    pub async fn outbox_by_key(&self, dedup_key: &str) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dedup_key = $1");
        let row = with_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(dedup_key)
            .fetch_optional(pool)
            .await
            .ctx("reading a notification"))?;
        Ok(row)
    }

    /// The notification log: rows matching `filter`, newest first, each with its attempts.
    pub async fn outbox_log(&self, filter: &OutboxFilter) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_log_between(filter, None, None).await
    }

    /// The attempts of the rows `ids`, by row then attempt.
    pub(crate) async fn attempts_of(&self, ids: &[i64]) -> Result<Vec<AttemptRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Integers only: nothing from outside reaches this text.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT outbox_id, attempt, started_at, finished_at, outcome, error \
             FROM outbox_attempts WHERE outbox_id IN ({list}) ORDER BY outbox_id, attempt"
        );
        let rows = with_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .ctx("reading notification attempts"))?;
        Ok(rows)
    }

    /// What is still owed: counts by status and the oldest due row, for all sites or one.
    pub async fn outbox_backlog(
        &self,
        site: Option<SiteId>,
        now: DateTime<Utc>,
    ) -> Result<BacklogStats, StoreError> {
        let counts: Vec<(String, i64)> = with_pool!(self, |pool| sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbox WHERE ($1 IS NULL OR site_id = $1) \
             AND status IN ('pending', 'sending', 'in_doubt', 'failed') GROUP BY status"
        )
        .bind(site)
        .fetch_all(pool)
        .await
        .ctx("counting the outbox backlog"))?;
        let oldest: Option<DateTime<Utc>> = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT not_before FROM outbox WHERE ($1 IS NULL OR site_id = $1) \
             AND ((status = 'pending' AND not_before <= $2) OR status = 'in_doubt') \
             ORDER BY not_before LIMIT 1"
        )
        .bind(site)
        .bind(now)
        .fetch_optional(pool)
        .await
        .ctx("finding the oldest unsent notification"))?;
        let get = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        Ok(BacklogStats {
            pending: get("pending"),
            in_doubt: get("in_doubt"),
            sending: get("sending"),
            failed: get("failed"),
            oldest_due: oldest,
        })
    }

    /// A resident's notification choices (`None`: never set — the defaults apply).
    pub async fn resident_prefs(
        &self,
        resident: ResidentId,
    ) -> Result<Option<ResidentPrefsRow>, StoreError> {
        let raw: Option<PrefsRaw> = with_pool!(self, |pool| sqlx::query_as(
            "SELECT resident_id, opted_out, quiet_start, quiet_end, updated_at \
             FROM resident_notification_prefs WHERE resident_id = $1"
        )
        .bind(resident)
        .fetch_optional(pool)
        .await
        .ctx("reading a resident's notification preferences"))?;
        raw.map(|r| {
            let quiet = match (r.quiet_start, r.quiet_end) {
                (Some(s), Some(e)) => {
                    Some((parse_time("quiet_start", &s)?, parse_time("quiet_end", &e)?))
                }
                _ => None,
            };
            Ok(ResidentPrefsRow {
                resident_id: r.resident_id,
                opted_out: r
                    .opted_out
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                quiet,
                updated_at: r.updated_at,
            })
        })
        .transpose()
    }

    /// Sets a resident's notification choices (replacing them), audited in the same
    /// transaction. Rule names must not contain commas.
    pub async fn set_resident_prefs(
        &self,
        resident: ResidentId,
        opted_out: &[String],
        quiet: Option<(NaiveTime, NaiveTime)>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        if let Some(bad) = opted_out
            .iter()
            .find(|r| r.contains(',') || r.trim().is_empty())
        {
            return Err(StoreError::Conflict {
                what: format!("rule name {bad:?} is not valid in opted_out"),
            });
        }
        let fmt_t = |t: NaiveTime| t.format("%H:%M").to_string();
        in_tx!(self, |tx, _backend| {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM residents WHERE id = $1")
                .bind(resident)
                .fetch_optional(&mut *tx)
                .await
                .ctx("finding the resident")?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    what: format!("resident {resident}"),
                });
            }
            sqlx::query(
                "INSERT INTO resident_notification_prefs (resident_id, opted_out, quiet_start, \
                 quiet_end, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (resident_id) DO UPDATE SET opted_out = excluded.opted_out, \
                 quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, \
                 updated_at = excluded.updated_at",
            )
            .bind(resident)
            .bind(opted_out.join(","))
            .bind(quiet.map(|q| fmt_t(q.0)))
            .bind(quiet.map(|q| fmt_t(q.1)))
            .bind(audit.at)
            .execute(&mut *tx)
            .await
            .ctx("writing a resident's notification preferences")?;
            audit_in!(tx, audit);
        });
        Ok(())
    }

    /// A site's notification policy (`None`: never set — the defaults apply).
    pub async fn site_policy(&self, site: SiteId) -> Result<Option<SitePolicyRow>, StoreError> {
        let raw: Option<PolicyRaw> = with_pool!(self, |pool| sqlx::query_as(
            "SELECT site_id, policy, updated_at, updated_by FROM site_notification_policy \
             WHERE site_id = $1"
        )
        .bind(site)
        .fetch_optional(pool)
        .await
        .ctx("reading a site's notification policy"))?;
        raw.map(|r| {
            let policy = serde_json::from_str(&r.policy).map_err(|e| StoreError::Corrupt {
                what: format!("notification policy of site {}: {e}", r.site_id),
            })?;
            Ok(SitePolicyRow {
                site_id: r.site_id,
                policy,
                updated_at: r.updated_at,
                updated_by: r.updated_by,
            })
        })
        .transpose()
    }

    /// Sets a site's notification policy (replacing it), audited in the same transaction.
    /// `updated_by` is what the page shows (e.g. the user's e-mail).
    pub async fn set_site_policy(
        &self,
        site: SiteId,
        policy: &serde_json::Value,
        updated_by: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let text = policy.to_string();
        in_tx!(self, |tx, _backend| {
            sqlx::query(
                "INSERT INTO site_notification_policy (site_id, policy, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (site_id) DO UPDATE SET \
                 policy = excluded.policy, updated_at = excluded.updated_at, \
                 updated_by = excluded.updated_by",
            )
            .bind(site)
            .bind(&text)
            .bind(audit.at)
            .bind(updated_by)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound {
                    what: format!("site {site}"),
                },
                _ => StoreError::Query {
                    context: "writing a site's notification policy",
                    source: e,
                },
            })?;
            audit_in!(tx, audit);
        });
        Ok(())
    }
}
