//! The session tracker: vendor observations in, site state and events out.
//!
//! [`observe`] is a pure function of (previous [`SiteState`], the latest [`VendorSnapshot`], the
//! [`TagDirectory`], the [`TrackerConfig`], `now`). The ingest loop calls it once per accepted
//! snapshot; the store writes the returned state (one JSON blob per site) and the events in one
//! transaction, so a restart resumes exactly where the last committed cycle left off, and
//! replaying a recorded incident runs exactly this code.
//!
//! # The rules, and why
//!
//! * **Transactions drive the session lifecycle; connector status drives idle and flags.** The
//!   vendor's status lags its transactions by seconds to minutes in both directions (contract
//!   A5.5 #5): a connector can read `Available` while the transaction is still open, or
//!   `Charging` before the transaction is listed. The legacy system ended sessions on
//!   `Available` and on "left the active set", and so ended sessions at midnight and twice.
//!   Here a session starts when its transaction first appears (its start is the vendor's) and
//!   ends only when the vendor reports its stop — or, as a last resort, when it is closed stale.
//! * **Exactly one ending event per session**: `SessionFinished`, `SessionInterrupted` or
//!   `SessionClosedStale`. Ended ids are remembered for a month
//!   ([`ENDED_RETENTION`]) so that a stopped transaction that stays in the vendor's window is
//!   not ended again; stale-closed sessions are remembered so that a late stop *amends* them.
//! * **Nothing is invented.** `Charging` with no transaction is a flag on the connector (contract
//!   A5.5 #3, "ghost" sessions), not a session.
//! * **Absence is not evidence.** A charger missing from a snapshot keeps its state; a
//!   transaction missing from the window stays open. Deciding that the vendor really removed
//!   chargers is the vendor link's job ([`crate::link`]).
//! * **Idempotent.** Feeding the same snapshot twice at the same `now` yields no events the
//!   second time and the same state: every event is emitted on a transition of stored state.

use crate::directory::{ResidentRef, TagDirectory};
use crate::event::{ChargerRef, Event, EventKind, InterruptCause, SessionEnd, SessionInfo};
use crate::{ChargerSnapshot, ConnectorStatus, Tag, TransactionRecord, VendorSnapshot};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How long ended session ids are remembered, counted from the session's start. The vendor's
/// live window is about 2 days; a month covers that with room for history lookups.
pub const ENDED_RETENTION: TimeDelta = TimeDelta::days(31);

/// What the dashboard shows for a connector flagged with charging but no known transaction.
pub const UNIDENTIFIED_CHARGING_LABEL_PT_BR: &str = "Carregando, sessão não identificada";

/// Timing rules of the tracker (defaults from DESIGN.md and the issue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerConfig {
    /// A charger whose last heartbeat is older than this (or missing) is offline.
    pub heartbeat_offline_after: TimeDelta,
    /// An open session whose connector has read Available/Unavailable/Faulted (or whose charger
    /// has been offline) for longer than this, with no stop, is closed stale.
    pub stale_session_after: TimeDelta,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            heartbeat_offline_after: TimeDelta::minutes(15),
            stale_session_after: TimeDelta::hours(12),
        }
    }
}

/// Everything the tracker remembers about one site between observations.
///
/// Owned by the tracker: other code reads it (dashboard, `vetric status`) but changes it only
/// through [`observe`]. Maps are ordered so the persisted JSON and the event order are
/// deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    /// The instant of the first observation. Transactions that stopped at or before it are
    /// history (`SessionRecorded`), not news.
    pub tracking_since: Option<DateTime<Utc>>,
    /// By charger UUID.
    pub chargers: BTreeMap<String, ChargerState>,
    /// By vendor transaction id.
    pub open_sessions: BTreeMap<i64, OpenSession>,
    /// Ended (or recorded) session id → its start, for de-duplication; pruned by start after
    /// [`ENDED_RETENTION`].
    pub recently_ended: BTreeMap<i64, DateTime<Utc>>,
    /// Sessions closed stale whose vendor stop has not arrived yet, by id.
    pub ended_stale: BTreeMap<i64, OpenSession>,
    /// Tags already sent to the unknown-tag inbox.
    pub unknown_tags_reported: BTreeSet<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargerState {
    pub name: String,
    pub charge_box_id: String,
    /// By heartbeat age at the last observation that listed this charger.
    pub online: bool,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// By OCPP connector id.
    pub connectors: BTreeMap<u32, ConnectorState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorState {
    pub status: ConnectorStatus,
    pub status_since: DateTime<Utc>,
    pub error_code: String,
    pub faulted: bool,
    /// Charging/SuspendedEV with no known transaction ("carregando, sessão não identificada").
    pub unidentified_charging: bool,
    /// The latest vendor stop of a session on this connector. A Charging status older than it
    /// is the tail of that session (status lag), not unidentified charging.
    pub last_session_stop: Option<DateTime<Utc>>,
}

impl ConnectorState {
    /// The pt-BR label for the dashboard, taking the flags into account.
    pub fn label_pt_br(&self, charger_online: bool) -> &'static str {
        if !charger_online {
            ConnectorStatus::Unavailable.label_pt_br()
        } else if self.unidentified_charging {
            UNIDENTIFIED_CHARGING_LABEL_PT_BR
        } else {
            self.status.label_pt_br()
        }
    }
}

/// A session (vendor transaction) the tracker considers open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSession {
    pub id: i64,
    pub charger_uuid: String,
    /// Kept so events can name a charger that was never listed.
    pub charge_box_id: String,
    pub connector_id: u32,
    pub tag: Option<Tag>,
    pub tag_pk: Option<i64>,
    /// The owner of the tag at `start`.
    pub resident: Option<ResidentRef>,
    pub start: DateTime<Utc>,
    /// Energy so far (Wh), as last reported.
    pub energy_wh: Option<i64>,
    /// Set while the car is idle (SuspendedEV after charging).
    pub idle_since: Option<DateTime<Utc>>,
    /// Idle seconds of the closed idle intervals.
    pub idle_seconds: i64,
    pub had_idle: bool,
    /// The connector read Charging at least once while this session was open.
    pub saw_charging: bool,
    pub saw_faulted: bool,
    /// The connector status seen at the last observation while the session was open.
    pub last_status: Option<ConnectorStatus>,
}

impl SiteState {
    /// The open session on a connector, if any (at most one, an invariant of [`observe`]).
    pub fn open_session_on(&self, charger_uuid: &str, connector_id: u32) -> Option<&OpenSession> {
        self.open_sessions
            .values()
            .find(|s| s.charger_uuid == charger_uuid && s.connector_id == connector_id)
    }

    pub fn connector(&self, charger_uuid: &str, connector_id: u32) -> Option<&ConnectorState> {
        self.chargers
            .get(charger_uuid)?
            .connectors
            .get(&connector_id)
    }
}

/// Folds one snapshot into the site state. Pure: see the module docs for the rules.
pub fn observe(
    state: &SiteState,
    snapshot: &VendorSnapshot,
    directory: &TagDirectory,
    config: &TrackerConfig,
    now: DateTime<Utc>,
) -> (SiteState, Vec<Event>) {
    let mut run = Run {
        st: state.clone(),
        events: Vec::new(),
        dir: directory,
        cfg: config,
        now,
    };
    let tracking_since = *run.st.tracking_since.get_or_insert(now);
    run.update_chargers(&snapshot.chargers);
    let txs = dedupe(&snapshot.transactions);
    run.apply_transactions(&txs, tracking_since);
    run.close_superseded();
    run.apply_statuses();
    run.close_stale();
    run.flag_unidentified(&snapshot.chargers, &txs);
    // Last, so that a second call with the same input finds nothing left to forget.
    run.forget_resolved_unknown_tags();
    run.prune();
    (run.st, run.events)
}

/// One id, one record: prefer a stopped record over an open one (the vendor's window may list a
/// transaction twice across a stop), then order by start so events come out in story order.
fn dedupe(records: &[TransactionRecord]) -> Vec<&TransactionRecord> {
    let mut by_id: BTreeMap<i64, &TransactionRecord> = BTreeMap::new();
    for r in records {
        match by_id.get(&r.id) {
            Some(prev) if prev.stop.is_some() || r.stop.is_none() => {}
            _ => {
                by_id.insert(r.id, r);
            }
        }
    }
    let mut out: Vec<_> = by_id.into_values().collect();
    out.sort_by_key(|r| (r.start, r.id));
    out
}

/// `t` limited to `[lo, hi]`, tolerating `lo > hi` (then `lo` wins): vendor timestamps can be
/// skewed, and an interval must never come out negative.
fn clamp(t: DateTime<Utc>, lo: DateTime<Utc>, hi: DateTime<Utc>) -> DateTime<Utc> {
    t.min(hi).max(lo)
}

fn seconds(d: TimeDelta) -> i64 {
    d.num_seconds().max(0)
}

fn human(d: TimeDelta) -> String {
    let m = d.num_minutes().max(0);
    format!("{} h {:02} min", m / 60, m % 60)
}

struct Run<'a> {
    st: SiteState,
    events: Vec<Event>,
    dir: &'a TagDirectory,
    cfg: &'a TrackerConfig,
    now: DateTime<Utc>,
}

impl Run<'_> {
    /// Sessions that started before this are forgotten once ended. Checked arithmetic: the
    /// tracker must not panic whatever instant it is handed.
    fn horizon(&self) -> DateTime<Utc> {
        self.now
            .checked_sub_signed(ENDED_RETENTION)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn emit(&mut self, kind: EventKind) {
        self.events.push(Event::new(self.now, kind));
    }

    fn charger_ref(&self, uuid: &str, fallback_name: &str) -> ChargerRef {
        let name = match self.st.chargers.get(uuid) {
            Some(c) => c.name.clone(),
            None if !fallback_name.is_empty() => fallback_name.to_owned(),
            None => uuid.to_owned(),
        };
        ChargerRef {
            uuid: uuid.to_owned(),
            name,
        }
    }

    fn info(&self, s: &OpenSession) -> SessionInfo {
        SessionInfo {
            session_id: s.id,
            charger: self.charger_ref(&s.charger_uuid, &s.charge_box_id),
            connector_id: s.connector_id,
            tag: s.tag.clone(),
            tag_pk: s.tag_pk,
            resident: s.resident.clone(),
            start: s.start,
        }
    }

    /// A tag assigned since it was reported may be reported again if it becomes unowned later.
    fn forget_resolved_unknown_tags(&mut self) {
        let (dir, now) = (self.dir, self.now);
        self.st
            .unknown_tags_reported
            .retain(|t| dir.owner_at(t, now).is_none());
    }

    fn update_chargers(&mut self, chargers: &[ChargerSnapshot]) {
        for c in chargers {
            let online = c
                .last_heartbeat
                .is_some_and(|hb| self.now - hb <= self.cfg.heartbeat_offline_after);
            let was_online = self.st.chargers.get(&c.uuid).map(|p| p.online);
            let entry = self
                .st
                .chargers
                .entry(c.uuid.clone())
                .or_insert_with(|| ChargerState {
                    name: c.name.clone(),
                    charge_box_id: c.charge_box_id.clone(),
                    online,
                    last_heartbeat: c.last_heartbeat,
                    connectors: BTreeMap::new(),
                });
            entry.name.clone_from(&c.name);
            entry.charge_box_id.clone_from(&c.charge_box_id);
            entry.online = online;
            entry.last_heartbeat = c.last_heartbeat;
            let charger = ChargerRef {
                uuid: c.uuid.clone(),
                name: c.name.clone(),
            };
            // A charger first seen offline is reported too: an operator must hear about it even
            // if it died before vetric started watching.
            match (was_online, online) {
                (Some(true) | None, false) => self.emit(EventKind::ChargerOffline {
                    charger: charger.clone(),
                    since: c.last_heartbeat,
                }),
                (Some(false), true) => self.emit(EventKind::ChargerOnline {
                    charger: charger.clone(),
                    last_heartbeat: c.last_heartbeat,
                }),
                _ => {}
            }

            for conn in &c.connectors {
                let faulted = conn.status == ConnectorStatus::Faulted;
                let was_faulted = self
                    .st
                    .connector(&c.uuid, conn.connector_id)
                    .is_some_and(|p| p.faulted);
                if faulted && !was_faulted {
                    self.emit(EventKind::ChargerFaulted {
                        charger: charger.clone(),
                        connector_id: conn.connector_id,
                        error_code: conn.error_code.clone(),
                        since: conn.status_since,
                    });
                } else if was_faulted && !faulted {
                    self.emit(EventKind::ChargerRecovered {
                        charger: charger.clone(),
                        connector_id: conn.connector_id,
                        status: conn.status.clone(),
                    });
                }
                let Some(entry) = self.st.chargers.get_mut(&c.uuid) else {
                    continue;
                };
                let slot = entry
                    .connectors
                    .entry(conn.connector_id)
                    .or_insert_with(|| ConnectorState {
                        status: conn.status.clone(),
                        status_since: conn.status_since,
                        error_code: conn.error_code.clone(),
                        faulted,
                        unidentified_charging: false,
                        last_session_stop: None,
                    });
                slot.status = conn.status.clone();
                slot.status_since = conn.status_since;
                slot.error_code.clone_from(&conn.error_code);
                slot.faulted = faulted;
            }
        }
    }

    fn apply_transactions(&mut self, txs: &[&TransactionRecord], tracking_since: DateTime<Utc>) {
        let horizon = self.horizon();
        for &tx in txs {
            if self.st.recently_ended.contains_key(&tx.id) {
                continue;
            }
            if let Some(mut s) = self.st.ended_stale.remove(&tx.id) {
                match tx.stop {
                    Some(stop) => {
                        self.fill_from_record(&mut s, tx);
                        let (end, cause) = self.conclude(&mut s, tx, stop);
                        let session = self.info(&s);
                        self.emit(EventKind::SessionAmended {
                            session,
                            end,
                            interrupted: cause,
                        });
                        self.remember_ended(&s, stop);
                    }
                    None => {
                        self.st.ended_stale.insert(tx.id, s);
                    }
                }
                continue;
            }
            if let Some(mut s) = self.st.open_sessions.remove(&tx.id) {
                self.fill_from_record(&mut s, tx);
                match tx.stop {
                    Some(stop) => self.end_session(s, tx, stop),
                    None => {
                        self.st.open_sessions.insert(tx.id, s);
                    }
                }
                continue;
            }

            // A transaction seen for the first time.
            if tx.stop.is_some() && tx.start < horizon {
                // Older than what we remember: recording it would be followed by forgetting it
                // and recording it again on the next poll.
                continue;
            }
            let mut s = self.new_session(tx);
            match tx.stop {
                Some(stop) if stop <= tracking_since => {
                    // History from before vetric watched: billed, never notified.
                    self.check_unknown_tag(&s);
                    let (end, _) = self.conclude(&mut s, tx, stop);
                    let session = self.info(&s);
                    self.emit(EventKind::SessionRecorded { session, end });
                    self.remember_ended(&s, stop);
                }
                Some(stop) => {
                    // A short session that fell between two polls.
                    let session = self.info(&s);
                    self.emit(EventKind::SessionStarted { session });
                    self.check_unknown_tag(&s);
                    self.end_session(s, tx, stop);
                }
                None => {
                    let session = self.info(&s);
                    self.emit(EventKind::SessionStarted { session });
                    self.check_unknown_tag(&s);
                    self.st.open_sessions.insert(tx.id, s);
                }
            }
        }
    }

    fn new_session(&self, tx: &TransactionRecord) -> OpenSession {
        OpenSession {
            id: tx.id,
            charger_uuid: tx.charger_uuid.clone(),
            charge_box_id: tx.charge_box_id.clone(),
            connector_id: tx.connector_id,
            tag: tx.tag.clone(),
            tag_pk: tx.tag_pk,
            resident: tx
                .tag
                .as_ref()
                .and_then(|t| self.dir.owner_at(t, tx.start))
                .cloned(),
            start: tx.start,
            energy_wh: tx.energy_wh,
            idle_since: None,
            idle_seconds: 0,
            had_idle: false,
            saw_charging: false,
            saw_faulted: false,
            last_status: None,
        }
    }

    /// Takes what a newer record of the same transaction knows better: energy so far and, when
    /// the vendor first sent the tag empty (contract A5.5 #1), the tag and so the resident.
    fn fill_from_record(&mut self, s: &mut OpenSession, tx: &TransactionRecord) {
        if tx.energy_wh.is_some() {
            s.energy_wh = tx.energy_wh;
        }
        if s.tag_pk.is_none() {
            s.tag_pk = tx.tag_pk;
        }
        if s.tag.is_none()
            && let Some(tag) = &tx.tag
        {
            s.tag = Some(tag.clone());
            if s.resident.is_none() {
                s.resident = self.dir.owner_at(tag, s.start).cloned();
            }
            self.check_unknown_tag(s);
        }
    }

    /// Sends a tag nobody owned at the session's start to the inbox, once per tag.
    fn check_unknown_tag(&mut self, s: &OpenSession) {
        let Some(tag) = &s.tag else { return };
        if self.dir.owner_at(tag, s.start).is_some() || self.st.unknown_tags_reported.contains(tag)
        {
            return;
        }
        self.st.unknown_tags_reported.insert(tag.clone());
        let charger = self.charger_ref(&s.charger_uuid, &s.charge_box_id);
        self.emit(EventKind::UnknownTag {
            tag: tag.clone(),
            charger,
            connector_id: s.connector_id,
            session_id: s.id,
        });
    }

    /// Closes the idle accounting at `stop` and works out the session's figures and whether it
    /// was interrupted.
    fn conclude(
        &self,
        s: &mut OpenSession,
        tx: &TransactionRecord,
        stop: DateTime<Utc>,
    ) -> (SessionEnd, Option<InterruptCause>) {
        if let Some(idle_since) = s.idle_since.take() {
            s.idle_seconds = s
                .idle_seconds
                .saturating_add(seconds(clamp(stop, idle_since, self.now) - idle_since));
        }
        // The snapshot that brings the stop shows the connector *after* it, so its status does
        // not count as "seen while open" — except a fault that the vendor dates inside the
        // session: a charger that faults usually stops the transaction in the same breath.
        if let Some(conn) = self.st.connector(&s.charger_uuid, s.connector_id)
            && conn.faulted
            && s.start <= conn.status_since
            && conn.status_since <= stop
        {
            s.saw_faulted = true;
        }
        let end = SessionEnd {
            stop,
            energy_wh: tx.energy_wh.or(s.energy_wh),
            duration_s: seconds(stop - s.start),
            // The vendor counts idle from meter values we never see; ours is from polled status.
            idle_s: tx.idle_seconds.map_or(s.idle_seconds, |v| v.max(0)),
            stop_reason: tx.stop_reason.clone(),
        };
        (end, interruption(s, tx.stop_reason.as_deref()))
    }

    fn end_session(&mut self, mut s: OpenSession, tx: &TransactionRecord, stop: DateTime<Utc>) {
        let (end, cause) = self.conclude(&mut s, tx, stop);
        let session = self.info(&s);
        self.emit(match cause {
            Some(reason) => EventKind::SessionInterrupted {
                session,
                end,
                reason,
            },
            None => EventKind::SessionFinished { session, end },
        });
        self.remember_ended(&s, stop);
    }

    fn remember_ended(&mut self, s: &OpenSession, stop: DateTime<Utc>) {
        self.st.recently_ended.insert(s.id, s.start);
        if let Some(conn) = self
            .st
            .chargers
            .get_mut(&s.charger_uuid)
            .and_then(|c| c.connectors.get_mut(&s.connector_id))
        {
            conn.last_session_stop = Some(conn.last_session_stop.map_or(stop, |p| p.max(stop)));
        }
    }

    /// At most one open session per connector: when the vendor lists a newer open transaction on
    /// a connector, an older one whose stop we never saw (it left the window, or the vendor
    /// lost it) cannot still be running. It is closed stale and amended if its stop turns up.
    fn close_superseded(&mut self) {
        let mut newest: BTreeMap<(&str, u32), (DateTime<Utc>, i64)> = BTreeMap::new();
        for s in self.st.open_sessions.values() {
            let key = (s.charger_uuid.as_str(), s.connector_id);
            let cand = (s.start, s.id);
            newest
                .entry(key)
                .and_modify(|best| *best = (*best).max(cand))
                .or_insert(cand);
        }
        let superseded: Vec<(i64, i64)> = self
            .st
            .open_sessions
            .values()
            .filter_map(|s| {
                let (_, winner) = newest.get(&(s.charger_uuid.as_str(), s.connector_id))?;
                (*winner != s.id).then_some((s.id, *winner))
            })
            .collect();
        for (id, winner) in superseded {
            self.close_as_stale(
                id,
                format!("superseded by transaction {winner} on the same connector"),
            );
        }
    }

    /// Status drives idle accounting and what the session "last saw".
    fn apply_statuses(&mut self) {
        let now = self.now;
        let ids: Vec<i64> = self.st.open_sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.st.open_sessions.get(&id) else {
                continue;
            };
            let Some(conn) = self.st.connector(&s.charger_uuid, s.connector_id) else {
                continue;
            };
            let (status, since) = (conn.status.clone(), conn.status_since);
            let Some(s) = self.st.open_sessions.get_mut(&id) else {
                continue;
            };
            s.last_status = Some(status.clone());
            match status {
                ConnectorStatus::Charging => s.saw_charging = true,
                // A Faulted status older than the session is lag from before it started.
                ConnectorStatus::Faulted if since >= s.start => s.saw_faulted = true,
                _ => {}
            }
            // "After charging": a car in SuspendedEV that never drew energy (a charging schedule
            // that has not begun) is waiting, not idle. Energy > 0 also covers sessions that were
            // already charging when vetric first saw them.
            let charged = s.saw_charging || s.energy_wh.is_some_and(|e| e > 0);
            let mut event = None;
            if status == ConnectorStatus::SuspendedEV && charged {
                if s.idle_since.is_none() {
                    let idle_since = clamp(since, s.start, now);
                    s.idle_since = Some(idle_since);
                    s.had_idle = true;
                    event = Some((true, idle_since));
                }
            } else if let Some(idle_since) = s.idle_since.take() {
                // Any other status ends the idle interval; SuspendedEVSE in particular is the
                // station pausing and never counts as the resident's idle time.
                let ended = clamp(since, idle_since, now);
                s.idle_seconds = s.idle_seconds.saturating_add(seconds(ended - idle_since));
                if status == ConnectorStatus::Charging {
                    event = Some((false, ended));
                }
            }
            let idle_s = s.idle_seconds;
            let Some((idle, at)) = event else { continue };
            let Some(s) = self.st.open_sessions.get(&id) else {
                continue;
            };
            let session = self.info(s);
            self.emit(if idle {
                EventKind::IdleStarted { session, since: at }
            } else {
                EventKind::ChargingResumed {
                    session,
                    since: at,
                    idle_s,
                }
            });
        }
    }

    /// The last resort for a stop that never comes (charger dead, vendor lost it).
    fn close_stale(&mut self) {
        let mut stale = Vec::new();
        for s in self.st.open_sessions.values() {
            let Some(charger) = self.st.chargers.get(&s.charger_uuid) else {
                continue;
            };
            let mut quiet: Option<(DateTime<Utc>, String)> = None;
            if let Some(conn) = charger.connectors.get(&s.connector_id)
                && matches!(
                    conn.status,
                    ConnectorStatus::Available
                        | ConnectorStatus::Unavailable
                        | ConnectorStatus::Faulted
                )
            {
                quiet = Some((
                    conn.status_since.max(s.start),
                    format!("connector {}", conn.status),
                ));
            }
            if !charger.online {
                let since = charger.last_heartbeat.unwrap_or(s.start).max(s.start);
                if quiet.as_ref().is_none_or(|(q, _)| since < *q) {
                    quiet = Some((since, "charger offline".to_owned()));
                }
            }
            if let Some((since, what)) = quiet {
                let quiet_for = self.now - since;
                if quiet_for > self.cfg.stale_session_after {
                    stale.push((
                        s.id,
                        format!(
                            "{what} for {} with no stop from the vendor",
                            human(quiet_for)
                        ),
                    ));
                }
            }
        }
        for (id, reason) in stale {
            self.close_as_stale(id, reason);
        }
    }

    fn close_as_stale(&mut self, id: i64, reason: String) {
        let Some(mut s) = self.st.open_sessions.remove(&id) else {
            return;
        };
        if let Some(idle_since) = s.idle_since.take() {
            s.idle_seconds = s
                .idle_seconds
                .saturating_add(seconds(self.now - idle_since));
        }
        let session = self.info(&s);
        self.emit(EventKind::SessionClosedStale {
            session,
            energy_wh: s.energy_wh,
            idle_s: s.idle_seconds,
            reason,
        });
        self.st.ended_stale.insert(id, s);
    }

    /// Raises or clears the "charging, no known transaction" flag of each listed connector.
    fn flag_unidentified(&mut self, chargers: &[ChargerSnapshot], txs: &[&TransactionRecord]) {
        // Known: a transaction the vendor lists as open (even one we closed stale) or a session
        // we hold open (even if it left the vendor's window).
        let known: BTreeSet<(&str, u32)> = txs
            .iter()
            .filter(|t| t.is_open())
            .map(|t| (t.charger_uuid.as_str(), t.connector_id))
            .chain(
                self.st
                    .open_sessions
                    .values()
                    .map(|s| (s.charger_uuid.as_str(), s.connector_id)),
            )
            .collect();
        let mut raised = Vec::new();
        let mut cleared = Vec::new();
        for c in chargers {
            let Some(state) = self.st.chargers.get(&c.uuid) else {
                continue;
            };
            for (&cid, conn) in &state.connectors {
                let drawing = matches!(
                    conn.status,
                    ConnectorStatus::Charging | ConnectorStatus::SuspendedEV
                );
                let tail_of_ended = conn
                    .last_session_stop
                    .is_some_and(|stop| conn.status_since <= stop);
                let flag = drawing && !tail_of_ended && !known.contains(&(c.uuid.as_str(), cid));
                if flag && !conn.unidentified_charging {
                    raised.push((c.uuid.clone(), cid, conn.status.clone(), conn.status_since));
                } else if !flag && conn.unidentified_charging {
                    cleared.push((c.uuid.clone(), cid));
                }
            }
        }
        for (uuid, cid) in cleared {
            if let Some(conn) = self.connector_mut(&uuid, cid) {
                conn.unidentified_charging = false;
            }
        }
        for (uuid, cid, status, since) in raised {
            if let Some(conn) = self.connector_mut(&uuid, cid) {
                conn.unidentified_charging = true;
            }
            let charger = self.charger_ref(&uuid, "");
            self.emit(EventKind::UnidentifiedCharging {
                charger,
                connector_id: cid,
                status,
                since,
            });
        }
    }

    fn connector_mut(&mut self, uuid: &str, cid: u32) -> Option<&mut ConnectorState> {
        self.st.chargers.get_mut(uuid)?.connectors.get_mut(&cid)
    }

    fn prune(&mut self) {
        let horizon = self.horizon();
        self.st.recently_ended.retain(|_, start| *start >= horizon);
        self.st.ended_stale.retain(|_, s| s.start >= horizon);
    }
}

/// Interrupted = ended abnormally: the connector faulted while the session was open, or the
/// session stopped while still charging (never idle, last seen Charging) for a reason other than
/// a user's own `Local`/`Remote` stop. An unknown stop reason is not evidence of an interruption.
fn interruption(s: &OpenSession, stop_reason: Option<&str>) -> Option<InterruptCause> {
    if s.saw_faulted {
        return Some(InterruptCause::ConnectorFaulted);
    }
    let user_stop = |r: &str| r.eq_ignore_ascii_case("Local") || r.eq_ignore_ascii_case("Remote");
    let still_charging = !s.had_idle && s.last_status == Some(ConnectorStatus::Charging);
    match stop_reason {
        Some(r) if still_charging && !user_stop(r.trim()) => {
            Some(InterruptCause::StoppedWhileCharging)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
