//! The notification dispatcher: the one place where outbox rows become messages.
//!
//! One [`Dispatcher`] runs per process (on SQLite one per store, which the instance lock
//! guarantees; on PostgreSQL any number, coordinated by `FOR UPDATE SKIP LOCKED`). Every tick:
//!
//! 1. **expire leases**: rows claimed by a process that died mid-send become `in_doubt`;
//! 2. **reconcile** due in-doubt rows with the gateway (contract B5b): found → `sent`; not
//!    found on a gateway that stores messages → `pending` (safe to resend); otherwise the row
//!    stays in doubt and an operator is alerted once — never a blind resend. E-mail and
//!    webhook rows are sent again under the same delivery id (`Message-ID`,
//!    `X-Vetric-Delivery`), which their receivers dedupe on;
//! 3. **claim** due pending rows (the claim is committed BEFORE any network call), ask the
//!    domain whether to send now ([`decide`]: quiet hours, opt-out, rule disabled), send,
//!    and record the outcome with a conditional completion (only while this process still
//!    holds the claim);
//! 4. **watch** the gateways (connection state) and the backlog (oldest unsent message), and
//!    raise operator alerts — by e-mail or webhook only, never through the WhatsApp gateway
//!    they may be about.
//!
//! A tick's claimed rows are sent up to `concurrency` at a time (each row still checked,
//! sent and completed on its own); the claim is at least two rows per send slot, and a full
//! claim starts the next tick at once, so throughput is not capped at one batch per tick.
//!
//! Stopping: the cancellation token is checked before each row starts; sends in flight
//! finish (bounded by the channel's own request timeout) and are recorded, and rows claimed
//! but not yet attempted are handed back, so no row is left claimed by a clean stop.

mod channel;

pub use channel::{
    Channel, EmailChannel, RECONCILE_MAX_PAGES, Reconciled, SendError, SendFuture, SendResult,
    WebhookSender, WhatsAppGateway, delivery_id, text_with_ref,
};

use crate::gateway_status::GatewayStatus;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use vetric_domain::notify::{
    Audience, Decision, NotificationPolicy, QuietHours, ResidentPrefs, Rule, decide,
    plan_operator_alert, ref_code,
};
use vetric_store::{
    Completion, NewNotification, OutboxRow, ResidentId, Resolution, SiteId, Store, StoreError,
};

/// Timings and limits of the dispatcher (config `[dispatcher]`).
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Who claims: unique per process (shows in `lease_owner`).
    pub owner: String,
    pub tick: Duration,
    /// How long a claim holds. Longer than a send can take (the channels' request timeouts);
    /// a row whose lease runs out is presumed in doubt.
    pub lease: Duration,
    /// Rows claimed per tick (raised to twice `concurrency` when lower, so no send slot
    /// idles). A full claim makes the loop go again at once, without waiting for the tick.
    pub batch: i64,
    /// Claimed rows sent at the same time (config `concurrency`, 1–64). Sends are bound by
    /// gateway latency, not by us: one at a time caps a 200 ms gateway at ~5 messages/s.
    pub concurrency: usize,
    /// Attempts before a retryable failure becomes `failed`.
    pub max_attempts: u32,
    /// Full-jitter backoff: a retry waits a random time in `[0, min(cap, base·2^(n-1))]`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// When a channel needs an operator (key refused, unknown instance): retry after this.
    pub operator_retry: Duration,
    /// How often an unresolved in-doubt row is asked about again.
    pub in_doubt_recheck: Duration,
    /// How often each gateway's connection state is checked.
    pub gateway_check: Duration,
    /// Consecutive not-open checks before a "gateway down" alert.
    pub gateway_down_checks: u32,
    /// Oldest unsent message age that raises a "backlog stale" alert when the site's policy
    /// does not say (its `backlog_alert_min`).
    pub backlog_alert: Duration,
    /// How often the backlog is measured.
    pub backlog_check: Duration,
    /// Kept free at the end of a lease for one send: a claimed row whose lease has less left
    /// than this is handed back instead of sent (it could expire mid-send).
    pub send_budget: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            owner: default_owner(),
            tick: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            batch: 10,
            concurrency: 8,
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(600),
            operator_retry: Duration::from_secs(900),
            in_doubt_recheck: Duration::from_secs(300),
            gateway_check: Duration::from_secs(30),
            gateway_down_checks: 3,
            backlog_alert: Duration::from_secs(15 * 60),
            backlog_check: Duration::from_secs(15),
            send_budget: Duration::from_secs(30),
        }
    }
}

/// `host:pid:random`: distinct for every process, readable in the log page.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "vetric".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// What the dispatcher knows about one site.
#[derive(Clone)]
pub struct SiteDispatch {
    pub site: SiteId,
    pub slug: String,
    pub name: String,
    pub tz: Tz,
    /// `None`: no `[sites.whatsapp]`; WhatsApp rows of the site fail with that reason.
    pub whatsapp: Option<WhatsAppGateway>,
}

/// Where operator alerts go (config `[alerts]`). The WhatsApp list is not used for the
/// dispatcher's own alerts, which are about the gateway or the queue behind it.
#[derive(Debug, Clone, Default)]
pub struct OperatorContacts {
    pub email: Vec<String>,
    pub webhook_url: Option<String>,
}

impl OperatorContacts {
    pub fn is_empty(&self) -> bool {
        self.email.is_empty() && self.webhook_url.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What one tick did (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub expired: usize,
    pub reconciled_sent: usize,
    pub reconciled_resend: usize,
    pub still_in_doubt: usize,
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub in_doubt: usize,
    pub deferred: usize,
    pub cancelled: usize,
    pub released: usize,
    pub lost_claims: usize,
    pub alerts: usize,
}

impl TickReport {
    /// Adds the counts of one concurrent send's share of the tick.
    fn absorb(&mut self, o: &TickReport) {
        self.expired += o.expired;
        self.reconciled_sent += o.reconciled_sent;
        self.reconciled_resend += o.reconciled_resend;
        self.still_in_doubt += o.still_in_doubt;
        self.claimed += o.claimed;
        self.sent += o.sent;
        self.retried += o.retried;
        self.failed += o.failed;
        self.in_doubt += o.in_doubt;
        self.deferred += o.deferred;
        self.cancelled += o.cancelled;
        self.released += o.released;
        self.lost_claims += o.lost_claims;
        self.alerts += o.alerts;
    }
}

#[derive(Debug, Default)]
struct GatewayWatch {
    bad_checks: u32,
    down_since: Option<DateTime<Utc>>,
    alerted: bool,
    last_check: Option<DateTime<Utc>>,
}

/// The dispatcher of one process. See the module doc.
pub struct Dispatcher {
    store: Store,
    settings: DispatchSettings,
    sites: HashMap<SiteId, SiteDispatch>,
    email: Option<Arc<dyn Channel>>,
    webhook: Option<Arc<dyn Channel>>,
    operators: OperatorContacts,
    gateways: HashMap<SiteId, GatewayWatch>,
    /// Per site: when a channel started needing an operator (one alert per episode).
    /// Behind a lock because a tick's sends run concurrently (never held across an await).
    operator_episodes: Mutex<HashMap<SiteId, DateTime<Utc>>>,
    backlog_since: HashMap<SiteId, DateTime<Utc>>,
    last_backlog_check: Option<DateTime<Utc>>,
    /// Where each gateway check is published (`/health` reads it).
    gateway_status: GatewayStatus,
}

impl Dispatcher {
    pub fn new(store: Store, settings: DispatchSettings, sites: Vec<SiteDispatch>) -> Self {
        Self {
            store,
            settings,
            sites: sites.into_iter().map(|s| (s.site, s)).collect(),
            email: None,
            webhook: None,
            operators: OperatorContacts::default(),
            gateways: HashMap::new(),
            operator_episodes: Mutex::new(HashMap::new()),
            backlog_since: HashMap::new(),
            last_backlog_check: None,
            gateway_status: GatewayStatus::default(),
        }
    }

    /// The channel for `email` rows.
    pub fn with_email(mut self, channel: Arc<dyn Channel>) -> Self {
        self.email = Some(channel);
        self
    }

    /// The channel for `webhook` rows.
    pub fn with_webhook(mut self, channel: Arc<dyn Channel>) -> Self {
        self.webhook = Some(channel);
        self
    }

    /// Publishes every gateway check to `status` (shared with `/health`).
    pub fn with_gateway_status(mut self, status: GatewayStatus) -> Self {
        self.gateway_status = status;
        self
    }

    /// Where the dispatcher's own alerts go.
    pub fn with_operators(mut self, operators: OperatorContacts) -> Self {
        self.operators = operators;
        self
    }

    pub fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// Ticks until `cancel` fires. Never returns early: store errors are logged and the next
    /// tick tries again.
    pub async fn run(mut self, cancel: CancellationToken) {
        let span = info_span!("dispatcher", owner = %self.settings.owner);
        async move {
            if self.operators.is_empty() {
                warn!(
                    "no operator e-mail or webhook is configured ([alerts]): gateway and \
                     backlog alerts have nowhere to go"
                );
            }
            let mut ticker = tokio::time::interval(self.settings.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // After a full claim there is likely more due: go again without waiting for
            // the tick, or throughput would be capped at one batch per tick.
            let mut more_due = false;
            loop {
                if more_due {
                    if cancel.is_cancelled() {
                        break;
                    }
                } else {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                }
                // Never raced against `cancel`: a send in flight is finished and recorded.
                more_due = match self.tick(Utc::now(), &cancel).await {
                    // Not when rows were handed back: they are due again at once, and going
                    // again would spin on them.
                    Ok(report) => {
                        report.released == 0
                            && i64::try_from(report.claimed).unwrap_or(i64::MAX)
                                >= self.claim_size()
                    }
                    Err(e) => {
                        warn!(error = %e, "dispatcher tick failed; the next tick retries");
                        metrics::counter!("vetric_dispatcher_errors_total").increment(1);
                        false
                    }
                };
            }
            info!("dispatcher stopped");
        }
        .instrument(span)
        .await
    }

    /// One tick at `now` (see the module doc). `cancel` stops it between rows.
    pub async fn tick(
        &mut self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<TickReport, DispatchError> {
        let mut report = TickReport::default();
        let expired = self.store.expire_leases(now).await?;
        if !expired.is_empty() {
            warn!(
                rows = ?expired,
                "notifications whose claim expired mid-send are now in doubt; reconciling \
                 with the gateway before any resend"
            );
            for _ in &expired {
                metrics::counter!("vetric_notifications_total", "status" => "in_doubt", "channel" => "unknown").increment(1);
            }
        }
        report.expired = expired.len();
        self.reconcile(now, &mut report).await?;
        if !cancel.is_cancelled() {
            self.dispatch_due(now, cancel, &mut report).await?;
        }
        if !cancel.is_cancelled() {
            self.watch_gateways(now, &mut report).await?;
            self.watch_backlog(now, &mut report).await?;
        }
        Ok(report)
    }

    async fn dispatch_due(
        &mut self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let lease = to_delta(self.settings.lease);
        let concurrency = self.concurrency();
        let batch = self.claim_size();
        // The claim is committed here, before any network call.
        let rows = self
            .store
            .claim_due(&self.settings.owner, now, lease, batch)
            .await?;
        report.claimed = rows.len();
        if rows.is_empty() {
            return Ok(());
        }
        // Policies first, so the concurrent sends below only read them.
        let mut policies: HashMap<SiteId, NotificationPolicy> = HashMap::new();
        let mut sites: Vec<SiteId> = rows.iter().filter_map(|r| r.site_id).collect();
        sites.sort_unstable();
        sites.dedup();
        for site in sites {
            if let Err(e) = self.policy(Some(site), &mut policies).await {
                // Nothing was sent: hand every row back rather than let the leases run out
                // and have them taken for crashes mid-send.
                for row in &rows {
                    let back = Completion::Defer {
                        not_before: row.not_before,
                    };
                    if self.finish(row, &back, now, report).await.is_ok() {
                        report.released += 1;
                    }
                }
                return Err(e);
            }
        }
        let this = &*self;
        let policies = &policies;
        let budget = to_delta(self.settings.send_budget);
        // Set by a store error: rows not started yet are handed back, not sent.
        let halted = AtomicBool::new(false);
        let halted = &halted;
        // `buffer_unordered` creates a row's future only when a slot is free, so the
        // cancellation and lease checks below run right before that row's send.
        let outcomes: Vec<(TickReport, Result<(), DispatchError>)> = stream::iter(rows)
            .map(|row| async move {
                let mut part = TickReport::default();
                let at = Utc::now().max(now);
                let lease_left = row.lease_until.map(|u| u - at).unwrap_or_default();
                let result = if cancel.is_cancelled()
                    || halted.load(Ordering::Relaxed)
                    || lease_left < budget
                {
                    // Not attempted: hand it back as it was (no attempt counted).
                    let back = Completion::Defer {
                        not_before: row.not_before,
                    };
                    let r = this.finish(&row, &back, at, &mut part).await;
                    if r.is_ok() {
                        part.released += 1;
                    }
                    r
                } else {
                    this.process(row, at, policies, &mut part).await
                };
                if result.is_err() {
                    halted.store(true, Ordering::Relaxed);
                }
                (part, result)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut first_error = None;
        for (part, result) in outcomes {
            report.absorb(&part);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn concurrency(&self) -> usize {
        self.settings.concurrency.clamp(1, 64)
    }

    /// Rows claimed per tick: `batch`, but at least two per send slot, so a slot freed
    /// early in the batch finds a next row instead of idling until the slowest send ends.
    fn claim_size(&self) -> i64 {
        let per_slots = i64::try_from(2 * self.concurrency()).unwrap_or(i64::MAX);
        self.settings.batch.max(per_slots)
    }

    async fn policy(
        &self,
        site: Option<SiteId>,
        cache: &mut HashMap<SiteId, NotificationPolicy>,
    ) -> Result<NotificationPolicy, DispatchError> {
        let Some(site) = site else {
            return Ok(NotificationPolicy::default());
        };
        if let Some(p) = cache.get(&site) {
            return Ok(p.clone());
        }
        let policy = match self.store.site_policy(site).await? {
            None => NotificationPolicy::default(),
            Some(row) => serde_json::from_value(row.policy).unwrap_or_else(|e| {
                warn!(%site, error = %e, "stored notification policy unreadable; using the defaults");
                NotificationPolicy::default()
            }),
        };
        cache.insert(site, policy.clone());
        Ok(policy)
    }

    async fn prefs(&self, resident: Option<ResidentId>) -> Result<ResidentPrefs, DispatchError> {
        let Some(resident) = resident else {
            return Ok(ResidentPrefs::default());
        };
        Ok(match self.store.resident_prefs(resident).await? {
            None => ResidentPrefs::default(),
            Some(p) => ResidentPrefs {
                opted_out: p.opted_out.iter().filter_map(|r| Rule::parse(r)).collect(),
                quiet_hours: p.quiet.map(|(start, end)| QuietHours { start, end }),
            },
        })
    }

    /// Decides, sends and records one claimed row.
    async fn process(
        &self,
        row: OutboxRow,
        now: DateTime<Utc>,
        policies: &HashMap<SiteId, NotificationPolicy>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        // Rows of rules this version does not know (or dispatcher alerts without a rule of
        // their own) are sent as they are.
        if let (Some(rule), Some(audience)) =
            (Rule::parse(&row.rule), Audience::parse(&row.audience))
        {
            let policy = row
                .site_id
                .and_then(|s| policies.get(&s))
                .cloned()
                .unwrap_or_default();
            let loaded = self.prefs(row.resident_id).await.map(|p| (policy, p));
            let (policy, prefs) = match loaded {
                Ok(v) => v,
                Err(e) => {
                    // Nothing was sent: hand the row back rather than let its lease run out
                    // and have it taken for a crash mid-send.
                    let back = Completion::Defer {
                        not_before: row.not_before,
                    };
                    let _ = self.finish(&row, &back, now, report).await;
                    return Err(e);
                }
            };
            let tz = self.tz(row.site_id);
            match decide(rule, audience, row.not_before, &prefs, &policy, tz, now) {
                Decision::Send => {}
                Decision::WaitUntil(t) => {
                    return self
                        .finish(&row, &Completion::Defer { not_before: t }, now, report)
                        .await;
                }
                Decision::Cancel(reason) => {
                    let how = Completion::Cancel {
                        reason: reason.as_str().to_owned(),
                    };
                    return self.finish(&row, &how, now, report).await;
                }
            }
        }
        if crate::planted::planted("mark-sent-before-send") {
            // Planted bug (test builds only, see `crate::planted`): the row is recorded sent
            // before the gateway has it, so a kill or a failed send in between loses it.
            let early = Completion::Sent {
                gateway_message_id: None,
            };
            self.finish(&row, &early, now, report).await?;
        }
        let result = self.send(&row).await;
        let done = Utc::now().max(now);
        let how = match result {
            Ok(id) => {
                if let Some(site) = row.site_id {
                    self.episodes().remove(&site);
                }
                Completion::Sent {
                    gateway_message_id: id,
                }
            }
            Err(SendError::MaybeSent(e)) => Completion::InDoubt { error: e },
            Err(SendError::Permanent(e)) => Completion::Failed { reason: e },
            Err(SendError::Retryable(e)) => {
                if row.attempts >= i64::from(self.settings.max_attempts) {
                    Completion::Failed {
                        reason: format!("gave up after {} attempts: {e}", row.attempts),
                    }
                } else {
                    Completion::RetryLater {
                        at: done + self.backoff(row.attempts),
                        error: e,
                    }
                }
            }
            Err(SendError::NeedsOperator(e)) => {
                if row.channel == "whatsapp" {
                    self.alert_needs_operator(&row, &e, done, report).await?;
                }
                Completion::NeedsOperator {
                    at: done + to_delta(self.settings.operator_retry),
                    error: e,
                }
            }
        };
        self.finish(&row, &how, done, report).await
    }

    fn episodes(&self) -> MutexGuard<'_, HashMap<SiteId, DateTime<Utc>>> {
        // A panic while holding it cannot leave the map half-updated (single insert or
        // remove), so a poisoned lock is still good to use.
        self.operator_episodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tz(&self, site: Option<SiteId>) -> Tz {
        site.and_then(|s| self.sites.get(&s))
            .map_or(chrono_tz::America::Sao_Paulo, |s| s.tz)
    }

    async fn send(&self, row: &OutboxRow) -> SendResult {
        match row.channel.as_str() {
            "whatsapp" => {
                let gateway = row
                    .site_id
                    .and_then(|s| self.sites.get(&s))
                    .and_then(|s| s.whatsapp.as_ref());
                match gateway {
                    Some(g) => g.send_row(row).await,
                    None => Err(SendError::Permanent(
                        "no WhatsApp gateway is configured for this site ([sites.whatsapp]); \
                         configure one, then resend"
                            .to_owned(),
                    )),
                }
            }
            "email" => match &self.email {
                Some(c) => c.send(row).await,
                None => Err(SendError::Permanent(
                    "e-mail is not configured ([smtp]); configure it, then resend".to_owned(),
                )),
            },
            "webhook" => match &self.webhook {
                Some(c) => c.send(row).await,
                None => Err(SendError::Permanent(
                    "no webhook is configured ([alerts] webhook_url); configure it, then resend"
                        .to_owned(),
                )),
            },
            other => Err(SendError::Permanent(format!("unknown channel {other:?}"))),
        }
    }

    /// Full jitter: uniformly in `[0, min(cap, base·2^(attempt-1))]`, at least one tick.
    fn backoff(&self, attempt: i64) -> TimeDelta {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let ceiling = self
            .settings
            .retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.settings.retry_cap);
        let wait = ceiling
            .mul_f64(rand::random::<f64>())
            .max(self.settings.tick);
        to_delta(wait)
    }

    /// Records `how` for a claimed row, with metrics. A lost claim (another process or an
    /// operator settled the row meanwhile) is logged and counted, never overwritten.
    async fn finish(
        &self,
        row: &OutboxRow,
        how: &Completion,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let applied = self
            .store
            .complete(row.id, &self.settings.owner, how, now)
            .await?;
        if !applied {
            warn!(
                id = row.id,
                "the claim on this notification was lost before its outcome was recorded \
                 (lease expired?); it is left as another process or reconciliation settled it"
            );
            report.lost_claims += 1;
            return Ok(());
        }
        let status = match how {
            Completion::Sent { .. } => {
                report.sent += 1;
                "sent"
            }
            Completion::RetryLater { error, .. } => {
                report.retried += 1;
                info!(id = row.id, attempt = row.attempts, %error, "notification will be retried");
                "retry"
            }
            Completion::NeedsOperator { .. } => {
                report.retried += 1;
                "needs_operator"
            }
            Completion::Failed { reason } => {
                report.failed += 1;
                warn!(id = row.id, %reason, "notification failed for good");
                "failed"
            }
            Completion::InDoubt { error } => {
                report.in_doubt += 1;
                warn!(id = row.id, %error, "notification in doubt: the gateway may have it");
                "in_doubt"
            }
            Completion::Defer { .. } => {
                report.deferred += 1;
                "deferred"
            }
            Completion::Cancel { .. } => {
                report.cancelled += 1;
                "cancelled"
            }
        };
        metrics::counter!("vetric_notifications_total", "status" => status, "channel" => row.channel.clone()).increment(1);
        Ok(())
    }

    /// Step 2: settle in-doubt rows with the gateway where it can answer.
    async fn reconcile(
        &mut self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let rows = self.store.in_doubt_due(now, self.settings.batch).await?;
        for row in rows {
            let gateway = (row.channel == "whatsapp")
                .then(|| row.site_id.and_then(|s| self.sites.get(&s)))
                .flatten()
                .and_then(|s| s.whatsapp.clone());
            let verdict = match &gateway {
                Some(g) => g.reconcile(&row).await,
                None => Reconciled::Unknown(format!(
                    "the {} channel cannot be asked whether it has a message",
                    row.channel
                )),
            };
            // E-mail and webhook receivers dedupe on the row's stable delivery id
            // (Message-ID, X-Vetric-Delivery): sending again is how those are settled.
            let stores = gateway.as_ref().is_some_and(|g| g.stores_messages)
                || matches!(row.channel.as_str(), "email" | "webhook");
            let verdict = match verdict {
                Reconciled::Unknown(_) if row.channel != "whatsapp" => Reconciled::NotFound,
                v => v,
            };
            match verdict {
                Reconciled::Found(id) => {
                    let how = Resolution::Sent {
                        gateway_message_id: Some(id),
                    };
                    if self.store.resolve_in_doubt(row.id, &how, None).await? {
                        info!(
                            id = row.id,
                            "in-doubt notification found at the gateway: sent"
                        );
                        metrics::counter!("vetric_notifications_total", "status" => "reconciled_sent", "channel" => row.channel.clone()).increment(1);
                        report.reconciled_sent += 1;
                    }
                }
                Reconciled::NotFound if stores => {
                    if self
                        .store
                        .resolve_in_doubt(row.id, &Resolution::Resend, None)
                        .await?
                    {
                        info!(
                            id = row.id,
                            "in-doubt notification not at the gateway (which stores messages): \
                             sending again"
                        );
                        metrics::counter!("vetric_notifications_total", "status" => "reconciled_resend", "channel" => row.channel.clone()).increment(1);
                        report.reconciled_resend += 1;
                    }
                }
                other => {
                    let why = match other {
                        Reconciled::Unknown(e) => format!("the gateway could not answer: {e}"),
                        _ => "not found, but this gateway does not store messages \
                              (stores_messages = false), so absence proves nothing"
                            .to_owned(),
                    };
                    self.alert_in_doubt(&row, &why, now, report).await?;
                    let next = now + to_delta(self.settings.in_doubt_recheck);
                    self.store
                        .postpone_in_doubt(row.id, next, &format!("still in doubt: {why}"))
                        .await?;
                    report.still_in_doubt += 1;
                }
            }
        }
        Ok(())
    }

    /// Step 4a: each gateway's connection state, every `gateway_check`.
    async fn watch_gateways(
        &mut self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let every = to_delta(self.settings.gateway_check);
        let sites: Vec<SiteDispatch> = self
            .sites
            .values()
            .filter(|s| s.whatsapp.is_some())
            .cloned()
            .collect();
        for site in sites {
            let Some(gateway) = &site.whatsapp else {
                continue;
            };
            let due = self
                .gateways
                .get(&site.site)
                .and_then(|w| w.last_check)
                .is_none_or(|t| now - t >= every);
            if !due {
                continue;
            }
            let state = gateway.client.connection_state().await;
            let (open, shown, err) = match &state {
                Ok(s) => (s.is_open(), s.as_str().to_owned(), String::new()),
                Err(e) => (false, "unknown".to_owned(), e.to_string()),
            };
            let kind = state.as_ref().err().map(|e| e.kind().as_str());
            self.gateway_status
                .record(site.site, &shown, open, kind, now);
            metrics::gauge!("vetric_gateway_up", "site" => site.slug.clone()).set(if open {
                1.0
            } else {
                0.0
            });
            let watch = self.gateways.entry(site.site).or_default();
            watch.last_check = Some(now);
            if open {
                let was = watch.down_since.take();
                let alerted = std::mem::take(&mut watch.alerted);
                watch.bad_checks = 0;
                if let (Some(since), true) = (was, alerted) {
                    let text = format!(
                        "✅ *Gateway WhatsApp conectado novamente*\nLocal: {}\nFora do ar desde: {}",
                        site.name,
                        local_time(since, site.tz)
                    );
                    let key = format!("site:{}:gateway_up:{}", site.site, since.timestamp());
                    report.alerts += self
                        .enqueue_alert(
                            &Alert {
                                site: Some(site.site),
                                rule: "gateway_recovered",
                                key: &key,
                                subject: "Gateway WhatsApp conectado novamente",
                                text: &text,
                                code: None,
                            },
                            now,
                        )
                        .await?;
                }
                continue;
            }
            watch.bad_checks += 1;
            let since = *watch.down_since.get_or_insert(now);
            if watch.bad_checks >= self.settings.gateway_down_checks && !watch.alerted {
                watch.alerted = true;
                let mut values = BTreeMap::new();
                values.insert("local", site.name.clone());
                values.insert("estado", shown.clone());
                values.insert(
                    "erro",
                    if err.is_empty() {
                        "—".to_owned()
                    } else {
                        err.clone()
                    },
                );
                values.insert("desde", local_time(since, site.tz));
                let episode = format!("site:{}:{}", site.site, since.timestamp());
                report.alerts += self
                    .enqueue_planned(Some(site.site), Rule::GatewayDown, &values, &episode, now)
                    .await?;
                warn!(site = %site.slug, state = %shown, "WhatsApp gateway down; operator alerted");
            }
        }
        Ok(())
    }

    /// Step 4b: an alert when the oldest unsent message of a site is older than its policy
    /// allows.
    async fn watch_backlog(
        &mut self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let every = to_delta(self.settings.backlog_check);
        if self.last_backlog_check.is_some_and(|t| now - t < every) {
            return Ok(());
        }
        self.last_backlog_check = Some(now);
        // The backlog gauges are set by the `/metrics` scrape itself (crates/web), so they keep
        // moving when this loop is the thing that is stuck.
        let all = self.store.outbox_backlog(None, now).await?;
        if all.oldest_due.is_none() {
            self.backlog_since.clear();
            return Ok(());
        }
        let mut cache = HashMap::new();
        let sites: Vec<SiteDispatch> = self.sites.values().cloned().collect();
        for site in sites {
            let stats = self.store.outbox_backlog(Some(site.site), now).await?;
            let policy = self.policy(Some(site.site), &mut cache).await?;
            let limit = if policy.backlog_alert_min > 0 {
                TimeDelta::minutes(i64::from(policy.backlog_alert_min))
            } else {
                to_delta(self.settings.backlog_alert)
            };
            match stats.oldest_due {
                Some(t) if now - t > limit => {
                    if self.backlog_since.contains_key(&site.site) {
                        continue;
                    }
                    self.backlog_since.insert(site.site, now);
                    let mut values = BTreeMap::new();
                    values.insert("local", site.name.clone());
                    values.insert("pendentes", (stats.pending + stats.in_doubt).to_string());
                    values.insert("minutos", (now - t).num_minutes().to_string());
                    let episode = format!("site:{}:{}", site.site, now.timestamp());
                    report.alerts += self
                        .enqueue_planned(
                            Some(site.site),
                            Rule::BacklogStale,
                            &values,
                            &episode,
                            now,
                        )
                        .await?;
                    warn!(site = %site.slug, oldest = %t, "notification backlog is stale; operator alerted");
                }
                _ => {
                    self.backlog_since.remove(&site.site);
                }
            }
        }
        Ok(())
    }

    async fn alert_in_doubt(
        &self,
        row: &OutboxRow,
        why: &str,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let site = row.site_id.and_then(|s| self.sites.get(&s));
        let place = site.map_or("vetric".to_owned(), |s| s.name.clone());
        let text = format!(
            "⚠️ *Mensagem em dúvida*\nLocal: {place}\nA mensagem #{} ({}) pode ou não ter sido \
             entregue ao gateway: o processo parou durante o envio. Ela NÃO será reenviada \
             automaticamente.\nMotivo: {why}\nVerifique no WhatsApp do destinatário e resolva \
             no registro de notificações: \"Foi entregue\", \"Reenviar mesmo assim\" ou \
             \"Descartar\".",
            row.id, row.rule
        );
        let key = format!("in_doubt:{}", row.id);
        report.alerts += self
            .enqueue_alert(
                &Alert {
                    site: row.site_id,
                    rule: "message_in_doubt",
                    key: &key,
                    subject: "Mensagem em dúvida",
                    text: &text,
                    code: None,
                },
                now,
            )
            .await?;
        Ok(())
    }

    async fn alert_needs_operator(
        &self,
        row: &OutboxRow,
        error: &str,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), DispatchError> {
        let Some(site_id) = row.site_id else {
            return Ok(());
        };
        let since = *self.episodes().entry(site_id).or_insert(now);
        let site = self.sites.get(&site_id);
        let mut values = BTreeMap::new();
        values.insert(
            "local",
            site.map_or("vetric".to_owned(), |s| s.name.clone()),
        );
        values.insert("estado", "configuração recusada".to_owned());
        values.insert("erro", error.to_owned());
        values.insert(
            "desde",
            local_time(since, site.map_or(chrono_tz::America::Sao_Paulo, |s| s.tz)),
        );
        let episode = format!("site:{site_id}:config:{}", since.timestamp());
        report.alerts += self
            .enqueue_planned(Some(site_id), Rule::GatewayDown, &values, &episode, now)
            .await?;
        Ok(())
    }

    /// An operator alert from the domain's default template.
    async fn enqueue_planned(
        &self,
        site: Option<SiteId>,
        rule: Rule,
        values: &BTreeMap<&str, String>,
        episode: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, DispatchError> {
        let planned = plan_operator_alert(rule, values, now, episode);
        self.enqueue_alert(
            &Alert {
                site,
                rule: rule.as_str(),
                key: &planned.dedup_key,
                subject: &planned.subject,
                text: &planned.text,
                code: Some(&planned.ref_code),
            },
            now,
        )
        .await
    }

    /// Enqueues one alert to every operator e-mail and the webhook (never WhatsApp). `key`
    /// makes it once per episode; returns how many rows were new.
    async fn enqueue_alert(
        &self,
        alert: &Alert<'_>,
        now: DateTime<Utc>,
    ) -> Result<usize, DispatchError> {
        let Alert {
            site,
            rule,
            key,
            subject,
            text,
            code,
        } = *alert;
        if self.operators.is_empty() {
            error!(%rule, %key, "operator alert has nowhere to go: configure [alerts] email or webhook_url");
            return Ok(0);
        }
        let mut targets: Vec<(&str, String)> = self
            .operators
            .email
            .iter()
            .map(|a| ("email", a.clone()))
            .collect();
        if let Some(url) = &self.operators.webhook_url {
            targets.push(("webhook", url.clone()));
        }
        let mut new = 0;
        for (channel, to) in targets {
            let dedup_key = format!("alert:{key}:{channel}:{to}");
            let code = code.map_or_else(|| ref_code(key), str::to_owned);
            let body = if text.contains(&code) {
                text.to_owned()
            } else {
                format!("{text}\n\nref. {code}")
            };
            let n = NewNotification {
                ref_code: code,
                dedup_key,
                rule: rule.to_owned(),
                audience: Audience::Operator.as_str().to_owned(),
                channel: channel.to_owned(),
                resident_id: None,
                recipient: Some(to),
                scope: "site".to_owned(),
                session_vendor_id: None,
                subject: Some(format!("[vetric] {subject}")),
                body,
                not_before: now,
            };
            if self.store.enqueue(site, &n).await?.is_some() {
                new += 1;
            }
        }
        Ok(new)
    }
}

/// One operator alert to enqueue ([`Dispatcher::enqueue_alert`]).
#[derive(Clone, Copy)]
struct Alert<'a> {
    site: Option<SiteId>,
    rule: &'a str,
    /// Once per episode: the dedup key's stem.
    key: &'a str,
    subject: &'a str,
    text: &'a str,
    /// The reference code already printed in `text`, if any.
    code: Option<&'a str>,
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%d/%m/%Y %H:%M").to_string()
}
