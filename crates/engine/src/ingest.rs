//! Per-site ingest: poll the vendor, fold what it says into the site state, store the result.
//!
//! One [`SiteIngest`] per site runs [`SiteIngest::run`]: a loop that polls at the site's
//! interval (first tick jittered so many sites do not poll in lockstep; cycles never overlap),
//! and for each cycle
//!
//! 1. asks the client for a snapshot (chargers + transaction window);
//! 2. lets the vendor link judge it ([`VendorLink`]: a drop to zero chargers waits for
//!    confirmation, failures count towards "vendor down");
//! 3. folds an accepted snapshot into the tracker ([`observe`]);
//! 4. writes chargers, sessions, events, unknown tags, the tracker and link state and the
//!    vendor link row in ONE store transaction; an accepted snapshot's charger list also
//!    retires the chargers it no longer has (they leave the dashboard; their history stays).
//!
//! With [`IngestSettings::notify`] set, the same transaction also enqueues the notifications
//! the cycle's events call for and cancels those they made pointless ([`crate::notify`]).
//!
//! The in-memory state advances only after that transaction commits. A crash or a failed write
//! therefore loses nothing and duplicates nothing: the next cycle starts again from the last
//! committed state and derives the same events. On any vendor error the last-good state stays
//! as it is, which is what the dashboard keeps showing (marked stale by its age).

use crate::notify::{SiteNotify, expand};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use vetric_cvepro::{BreakerState as ClientBreaker, CveProClient, CveProError};
use vetric_domain::notify::{NotificationPolicy, PlanContext, plan_batch};
use vetric_domain::{
    Event, EventKind, FailureClass, LinkConfig, ResidentRef, SiteState, SnapshotDecision, Tag,
    TagDirectory, TrackerConfig, VendorLink, VendorSnapshot, observe,
};
use vetric_store::{
    BreakerState, ChargerWrite, ConnectorWrite, CycleWrite, EndKind, NewEvent, ResidentId,
    SessionStatus, SessionWrite, SiteId, Store, StoreError, UnknownTagSighting, VendorLinkRow,
    WriteFence,
};

/// How one site is ingested.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub poll_interval: Duration,
    pub tracker: TrackerConfig,
    pub link: LinkConfig,
    /// `None`: this site sends no notifications. When set, its policy's `vendor_down_cycles`
    /// replaces `link.down_after_failed_cycles` (the site's setting wins over the default).
    pub notify: Option<SiteNotify>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            tracker: TrackerConfig::default(),
            link: LinkConfig::default(),
            notify: None,
        }
    }
}

/// What the store keeps between cycles for a site (the `tracker_state` JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub tracker: SiteState,
    pub link: VendorLink,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the stored tracker state of site {site} cannot be read ({source}); fix or delete its tracker_state row"
    )]
    CorruptState {
        site: SiteId,
        source: serde_json::Error,
    },
    #[error("cannot serialise the tracker state: {0}")]
    Serialise(#[from] serde_json::Error),
}

impl IngestError {
    /// Another instance took the site's leadership: this ingest must stop and be dropped
    /// (its state is no longer the site's), not retried.
    pub fn is_lost_leadership(&self) -> bool {
        matches!(self, Self::Store(StoreError::LostLeadership { .. }))
    }
}

/// What one cycle did, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum CycleOutcome {
    /// The snapshot was accepted; `events` were stored.
    Accepted { events: Vec<Event> },
    /// The snapshot decoded but is not believed yet (zero chargers awaiting confirmation).
    KeptLastGood { events: Vec<Event> },
    /// The vendor call failed; the last-good state stays.
    VendorFailed {
        kind: &'static str,
        events: Vec<Event>,
    },
}

impl CycleOutcome {
    pub fn events(&self) -> &[Event] {
        match self {
            Self::Accepted { events }
            | Self::KeptLastGood { events }
            | Self::VendorFailed { events, .. } => events,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::KeptLastGood { .. } => "kept_last_good",
            Self::VendorFailed { .. } => "vendor_failed",
        }
    }
}

/// The ingest of one site.
pub struct SiteIngest {
    site: SiteId,
    slug: String,
    client: CveProClient,
    store: Store,
    settings: IngestSettings,
    state: PersistedState,
    /// The last failure that was not the breaker refusing a call: what the operator needs to
    /// see while the breaker is open ("connection refused", "HTTP 502"), not "breaker open".
    last_cause: Option<(String, String, DateTime<Utc>)>,
    /// What the store holds for each charger and open session, as last committed by this
    /// process. Rows that have not changed since are not written again (fewer statements per
    /// cycle, fewer dead tuples for PostgreSQL's vacuum). Empty after a restart, so the first
    /// cycle writes everything.
    written_chargers: HashMap<String, ChargerWrite>,
    written_sessions: HashMap<i64, SessionWrite>,
    /// The site's name and time zone, for message texts (loaded when notifications are on).
    site_meta: Option<(String, Tz)>,
    /// Set when run under leadership ([`SiteIngest::with_fence`]): every write is fenced.
    fence: Option<WriteFence>,
}

impl SiteIngest {
    /// Resumes from what the store holds for `site` (nothing yet: a fresh state).
    pub async fn resume(
        site: SiteId,
        slug: impl Into<String>,
        client: CveProClient,
        store: Store,
        mut settings: IngestSettings,
    ) -> Result<Self, IngestError> {
        let slug = slug.into();
        let site_meta = match &settings.notify {
            Some(n) => {
                settings.link.down_after_failed_cycles = n.policy.vendor_down_cycles.max(1);
                Some(site_meta(&store, site, &slug).await?)
            }
            None => None,
        };
        let state = match store.tracker_state(site).await? {
            Some(json) => serde_json::from_value(json)
                .map_err(|source| IngestError::CorruptState { site, source })?,
            None => PersistedState::default(),
        };
        Ok(Self {
            site,
            slug,
            client,
            store,
            settings,
            state,
            last_cause: None,
            written_chargers: HashMap::new(),
            written_sessions: HashMap::new(),
            site_meta,
            fence: None,
        })
    }

    /// Writes only while `fence` is the site's current leadership
    /// ([`Store::write_cycle_fenced`]); once another instance takes the site, [`Self::cycle`]
    /// fails with an error whose [`IngestError::is_lost_leadership`] is true and writes
    /// nothing. Take the fence BEFORE [`Self::resume`] reads the state.
    pub fn with_fence(mut self, fence: WriteFence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The state as of the last committed cycle.
    pub fn state(&self) -> &PersistedState {
        &self.state
    }

    /// Polls until `cancel` fires. Never returns early: a vendor that is down (even at start)
    /// is retried every cycle, and store errors are logged and retried the same way.
    pub async fn run(mut self, cancel: CancellationToken) {
        let span = info_span!("ingest", site = %self.slug);
        async move {
            let interval = self.settings.poll_interval;
            // Spread sites over the interval so they do not poll in lockstep.
            let jitter = interval.mul_f64(rand::random::<f64>());
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(jitter) => {}
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                // Cycles never overlap: the next tick is awaited only after this one ends.
                if let Err(e) = self.cycle(Utc::now()).await {
                    warn!(error = %e, "ingest cycle not stored; the next cycle retries from the last stored state");
                    metrics::counter!("vetric_ingest_cycles_total", "site" => self.slug.clone(), "outcome" => "store_failed").increment(1);
                }
            }
            info!("ingest stopped");
        }
        .instrument(span)
        .await
    }

    /// One poll cycle at `now`. The state advances only if the store write commits.
    pub async fn cycle(&mut self, now: DateTime<Utc>) -> Result<CycleOutcome, IngestError> {
        let started = std::time::Instant::now();
        let oldest_open = self
            .state
            .tracker
            .open_sessions
            .values()
            .map(|s| s.start)
            .min();
        let result = self.client.snapshot(now, oldest_open).await;
        let mut next = self.state.clone();
        let (write, outcome) = match result {
            Ok(report) => {
                let mut snapshot = report.snapshot;
                let (decision, mut events) =
                    next.link
                        .on_success(&self.settings.link, now, snapshot.chargers.len());
                match decision {
                    SnapshotDecision::Accept => {
                        self.resolve_tags_from_store(&mut snapshot).await?;
                        let directory = self.directory().await?;
                        let (tracker, tracker_events) = observe(
                            &next.tracker,
                            &snapshot,
                            &directory,
                            &self.settings.tracker,
                            now,
                        );
                        next.tracker = tracker;
                        events.extend(tracker_events);
                        let write = self.cycle_write(now, &next, Some(&snapshot), &events, None)?;
                        (write, CycleOutcome::Accepted { events })
                    }
                    SnapshotDecision::KeepLastGood { zero_reads, needed } => {
                        warn!(
                            zero_reads,
                            needed,
                            "vendor listed no chargers; keeping the last good list until confirmed"
                        );
                        let write = self.cycle_write(now, &next, None, &events, None)?;
                        (write, CycleOutcome::KeptLastGood { events })
                    }
                }
            }
            Err(error) => {
                let class = error.failure_class();
                let events = next.link.on_failure(&self.settings.link, now, class);
                // Loud on the first failure of an episode and then every 30 cycles; the
                // vendor-down event and /health carry the rest.
                if next.link.consecutive_failures % 30 == 1 {
                    warn!(error = %error, failed_cycles = next.link.consecutive_failures, "vendor poll failed; keeping the last good state");
                } else {
                    tracing::debug!(error = %error, failed_cycles = next.link.consecutive_failures, "vendor poll failed");
                }
                if error.kind() != vetric_cvepro::ErrorKind::BreakerOpen {
                    self.last_cause =
                        Some((error.kind().as_str().to_owned(), error.to_string(), now));
                }
                let write = self.cycle_write(now, &next, None, &events, Some(&error))?;
                let kind = error.kind().as_str();
                (write, CycleOutcome::VendorFailed { kind, events })
            }
        };
        let mut write = write;
        if let Some(notify) = &self.settings.notify
            && !outcome.events().is_empty()
        {
            self.add_notifications(notify, outcome.events(), &mut write)
                .await?;
        }
        write
            .chargers
            .retain(|c| self.written_chargers.get(&c.uuid) != Some(c));
        write
            .sessions
            .retain(|s| self.written_sessions.get(&s.vendor_id) != Some(s));
        match &self.fence {
            Some(fence) => self.store.write_cycle_fenced(fence, &write).await?,
            None => self.store.write_cycle(self.site, &write).await?,
        };
        self.state = next;
        if let Some(listed) = &write.listed_chargers {
            // The store retired every charger missing from the list: forget what was written
            // for them, so one that comes back is written again (which shows it again) even
            // if it comes back exactly as it left.
            self.written_chargers
                .retain(|uuid, _| listed.iter().any(|l| l == uuid));
        }
        for c in write.chargers {
            self.written_chargers.insert(c.uuid.clone(), c);
        }
        for s in write.sessions {
            if s.status == SessionStatus::Open {
                self.written_sessions.insert(s.vendor_id, s);
            } else {
                self.written_sessions.remove(&s.vendor_id);
            }
        }
        self.record_metrics(&outcome, started.elapsed());
        Ok(outcome)
    }

    /// Plans `events` and puts the outbox rows and cancellations into `write` (same
    /// transaction). The stored policy (settings page) wins over the configured one; a stored
    /// policy that no longer reads is logged and the configured one used, so a bad row cannot
    /// stop the ingest.
    async fn add_notifications(
        &self,
        notify: &SiteNotify,
        events: &[Event],
        write: &mut CycleWrite,
    ) -> Result<(), IngestError> {
        let stored: Option<NotificationPolicy> = match self.store.site_policy(self.site).await {
            Ok(row) => row.and_then(|r| match serde_json::from_value(r.policy) {
                Ok(p) => Some(p),
                Err(e) => {
                    warn!(error = %e, "stored notification policy unreadable; using the configured one");
                    None
                }
            }),
            Err(StoreError::Corrupt { what }) => {
                warn!(%what, "stored notification policy unreadable; using the configured one");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let policy = stored.as_ref().unwrap_or(&notify.policy);
        // Like the policy: an unreadable tariff must not stop the ingest (the message then
        // says the tariff is not configured, and the log says why).
        let tariffs = match self.store.tariff_history(self.site).await {
            Ok(t) => Some(t),
            Err(StoreError::Corrupt { what }) => {
                warn!(%what, "stored tariffs unreadable; session costs left out of messages");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let (name, tz) = match &self.site_meta {
            Some((name, tz)) => (name.as_str(), *tz),
            None => (self.slug.as_str(), chrono_tz::America::Sao_Paulo),
        };
        let ctx = PlanContext {
            site_name: name,
            tz,
            policy,
            tariffs: tariffs.as_ref(),
        };
        let plan = plan_batch(events, &ctx);
        let (rows, cancellations) = expand(self.site, &plan, &notify.recipients);
        write.notifications.extend(rows);
        write.cancellations.extend(cancellations);
        Ok(())
    }

    /// Fills empty tags from the store's `ocppTagPk → tag` map (learned or set by a manager),
    /// and learns mappings the client resolved from the vendor's history.
    async fn resolve_tags_from_store(
        &self,
        snapshot: &mut VendorSnapshot,
    ) -> Result<(), IngestError> {
        let known = self.store.tag_pk_map(self.site).await?;
        let mut learned: BTreeMap<i64, Tag> = BTreeMap::new();
        for t in &mut snapshot.transactions {
            match (&t.tag, t.tag_pk) {
                (None, Some(pk)) => {
                    if let Some(tag) = known.get(&pk) {
                        t.tag = Some(tag.clone());
                    }
                }
                (Some(tag), Some(pk)) if !known.contains_key(&pk) => {
                    learned.insert(pk, tag.clone());
                }
                _ => {}
            }
        }
        for (pk, tag) in learned {
            self.store.learn_tag_pk(self.site, pk, &tag).await?;
        }
        Ok(())
    }

    async fn directory(&self) -> Result<TagDirectory, IngestError> {
        let mut dir = TagDirectory::new();
        for row in self.store.tag_directory(self.site).await? {
            dir.insert(
                row.tag,
                ResidentRef {
                    resident_id: row.resident_id.0,
                    name: row.resident_name,
                    apartment: row.apartment_label,
                },
                row.valid_from,
                row.valid_to,
            );
        }
        Ok(dir)
    }

    fn cycle_write(
        &self,
        now: DateTime<Utc>,
        next: &PersistedState,
        snapshot: Option<&VendorSnapshot>,
        events: &[Event],
        error: Option<&CveProError>,
    ) -> Result<CycleWrite, IngestError> {
        let chargers = snapshot
            .map(|s| charger_writes(s, &next.tracker))
            .unwrap_or_default();
        let sessions = if snapshot.is_some() {
            session_writes(&next.tracker, events, now)
        } else {
            Vec::new()
        };
        let unknown_tags = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::UnknownTag {
                    tag,
                    charger,
                    session_id,
                    ..
                } => Some(UnknownTagSighting {
                    tag: tag.clone(),
                    at: e.at,
                    charger_uuid: Some(charger.uuid.clone()),
                    session_vendor_id: Some(*session_id),
                }),
                _ => None,
            })
            .collect();
        Ok(CycleWrite {
            observed_at: now,
            chargers,
            // Only an accepted snapshot gets here with `Some` (a failed read, a shape error
            // and an empty list awaiting confirmation pass `None`): its list is the vendor's
            // whole list, so chargers missing from it are retired.
            listed_chargers: snapshot.map(|s| s.chargers.iter().map(|c| c.uuid.clone()).collect()),
            sessions,
            events: events.iter().map(new_event).collect::<Result<_, _>>()?,
            unknown_tags,
            tracker_state: Some(serde_json::to_value(next)?),
            vendor_link: self.link_row(now, &next.link, error),
            notifications: Vec::new(),
            cancellations: Vec::new(),
        })
    }

    fn link_row(
        &self,
        now: DateTime<Utc>,
        link: &VendorLink,
        error: Option<&CveProError>,
    ) -> VendorLinkRow {
        let status = self.client.link_status();
        // While the breaker refuses calls, show what opened it ("HTTP 502"), not "breaker open".
        let shown = error.map(|e| match &self.last_cause {
            Some((kind, message, _)) if e.kind() == vetric_cvepro::ErrorKind::BreakerOpen => {
                (kind.clone(), format!("{message} (circuit breaker open)"))
            }
            _ => (e.kind().as_str().to_owned(), e.to_string()),
        });
        let (kind, message, at) = match (shown, &status.last_error, &link.last_failure) {
            (Some((kind, message)), _, _) => (Some(kind), Some(message), Some(now)),
            (None, _, Some(FailureClass::ShapeChanged { path }))
                if link.consecutive_failures > 0 =>
            {
                (
                    Some("shape_changed".to_owned()),
                    Some(format!("shape changed at {path}")),
                    link.last_failure_at,
                )
            }
            (None, Some(last), _) => (
                Some(last.kind.as_str().to_owned()),
                Some(last.message.clone()),
                Some(last.at),
            ),
            (None, None, _) => (None, None, None),
        };
        VendorLinkRow {
            last_success: link.last_success,
            last_error_kind: kind,
            last_error_message: message,
            last_error_at: at,
            consecutive_failures: i64::from(link.consecutive_failures),
            breaker: match status.breaker {
                ClientBreaker::Closed => BreakerState::Closed,
                ClientBreaker::HalfOpen => BreakerState::HalfOpen,
                ClientBreaker::Open => BreakerState::Open,
            },
            charger_count_last_good: link
                .last_good_charger_count
                .and_then(|n| i64::try_from(n).ok()),
            updated_at: now,
        }
    }

    fn record_metrics(&self, outcome: &CycleOutcome, elapsed: Duration) {
        let site = self.slug.clone();
        metrics::counter!("vetric_ingest_cycles_total", "site" => site.clone(), "outcome" => outcome.label()).increment(1);
        metrics::histogram!("vetric_ingest_cycle_seconds", "site" => site.clone())
            .record(elapsed.as_secs_f64());
        metrics::gauge!("vetric_open_sessions", "site" => site.clone())
            .set(self.state.tracker.open_sessions.len() as f64);
        for e in outcome.events() {
            metrics::counter!("vetric_events_total", "site" => site.clone(), "kind" => e.kind.kind_str()).increment(1);
        }
    }
}

/// The site's display name and time zone; an unknown zone falls back to São Paulo (logged),
/// the zone of every site vetric serves today.
async fn site_meta(store: &Store, site: SiteId, slug: &str) -> Result<(String, Tz), IngestError> {
    let row = store.sites().await?.into_iter().find(|s| s.id == site);
    Ok(match row {
        Some(row) => {
            let tz = row.timezone.parse::<Tz>().unwrap_or_else(|_| {
                warn!(timezone = %row.timezone, "unknown site time zone; messages use America/Sao_Paulo");
                chrono_tz::America::Sao_Paulo
            });
            (row.name, tz)
        }
        None => (slug.to_owned(), chrono_tz::America::Sao_Paulo),
    })
}

fn charger_writes(snapshot: &VendorSnapshot, state: &SiteState) -> Vec<ChargerWrite> {
    snapshot
        .chargers
        .iter()
        .map(|c| {
            let tracked = state.chargers.get(&c.uuid);
            let mut write = ChargerWrite::from_snapshot(c, tracked.is_some_and(|t| t.online));
            write.connectors = c
                .connectors
                .iter()
                .map(|k| {
                    let mut w = ConnectorWrite::from(k);
                    w.unidentified_charging = tracked
                        .and_then(|t| t.connectors.get(&k.connector_id))
                        .is_some_and(|s| s.unidentified_charging);
                    w
                })
                .collect();
            write
        })
        .collect()
}

/// Every open session (energy and idle time move every cycle) plus every session an event of
/// this cycle ended, amended or recorded.
fn session_writes(state: &SiteState, events: &[Event], now: DateTime<Utc>) -> Vec<SessionWrite> {
    let mut out: BTreeMap<i64, SessionWrite> = BTreeMap::new();
    for s in state.open_sessions.values() {
        let ongoing_idle = s
            .idle_since
            .map(|since| (now - since).max(TimeDelta::zero()).num_seconds())
            .unwrap_or(0);
        out.insert(
            s.id,
            SessionWrite {
                vendor_id: s.id,
                charger_uuid: s.charger_uuid.clone(),
                connector_id: s.connector_id,
                tag: s.tag.clone(),
                tag_pk: s.tag_pk,
                resident_id: s.resident.as_ref().map(|r| ResidentId(r.resident_id)),
                start: s.start,
                stop: None,
                energy_wh: s.energy_wh,
                idle_seconds: s.idle_seconds + ongoing_idle,
                stop_reason: None,
                end_kind: None,
                status: SessionStatus::Open,
            },
        );
    }
    for e in events {
        let (info, end, kind, energy_stale, idle_stale) = match &e.kind {
            EventKind::SessionFinished { session, end } => {
                (session, Some(end), EndKind::Finished, None, 0)
            }
            EventKind::SessionInterrupted { session, end, .. } => {
                (session, Some(end), EndKind::Interrupted, None, 0)
            }
            EventKind::SessionAmended {
                session,
                end,
                interrupted,
            } => (
                session,
                Some(end),
                if interrupted.is_some() {
                    EndKind::Interrupted
                } else {
                    EndKind::Finished
                },
                None,
                0,
            ),
            EventKind::SessionRecorded { session, end } => {
                (session, Some(end), EndKind::Recorded, None, 0)
            }
            EventKind::SessionClosedStale {
                session,
                energy_wh,
                idle_s,
                ..
            } => (session, None, EndKind::Stale, *energy_wh, *idle_s),
            _ => continue,
        };
        out.insert(
            info.session_id,
            SessionWrite {
                vendor_id: info.session_id,
                charger_uuid: info.charger.uuid.clone(),
                connector_id: info.connector_id,
                tag: info.tag.clone(),
                tag_pk: info.tag_pk,
                resident_id: info.resident.as_ref().map(|r| ResidentId(r.resident_id)),
                start: info.start,
                stop: end.map(|e| e.stop),
                energy_wh: end.map_or(energy_stale, |e| e.energy_wh),
                idle_seconds: end.map_or(idle_stale, |e| e.idle_s),
                stop_reason: end.and_then(|e| e.stop_reason.clone()),
                end_kind: Some(kind),
                status: SessionStatus::Ended,
            },
        );
    }
    out.into_values().collect()
}

fn new_event(e: &Event) -> Result<NewEvent, serde_json::Error> {
    let charger_uuid = match &e.kind {
        EventKind::ChargerFaulted { charger, .. }
        | EventKind::ChargerRecovered { charger, .. }
        | EventKind::ChargerOffline { charger, .. }
        | EventKind::ChargerOnline { charger, .. }
        | EventKind::UnknownTag { charger, .. }
        | EventKind::UnidentifiedCharging { charger, .. } => Some(charger.uuid.clone()),
        other => other.session().map(|s| s.charger.uuid.clone()),
    };
    Ok(NewEvent {
        at: e.at,
        kind: e.kind.kind_str().to_owned(),
        session_vendor_id: e.kind.session_id(),
        charger_uuid,
        payload: serde_json::to_value(&e.kind)?,
    })
}
