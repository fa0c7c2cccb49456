//! The session engine: the true state of every connector and transaction, advanced in time.
//!
//! A plain struct with no I/O and no clock reads: every operation takes the instant it happens
//! at, and [`Engine::advance_to`] moves the world forward (energy, idle time, scheduled steps,
//! lagged status notifications). The server calls it with `Utc::now()`; tests can call it with
//! explicit instants.
//!
//! Sessions follow contract A9.2: `Available → Preparing → Charging → SuspendedEV → Finishing →
//! Available`. The transaction is created at the `Charging` start and stopped at the stop. A
//! connector's reported `lastStatus` follows its true status `status_lag` later (A5.5 #5).
//! An offline charger keeps its transaction open; a stop that happens while it is offline is
//! delivered when it comes back (A5.5 #4).
//!
//! Speed: every simulated duration (session lengths, status lag, finishing time) is divided by
//! `speed` on the real clock and power is multiplied by it, so a session delivers the same
//! energy in less time. Timestamps are always real instants.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::SimConfig;
use super::error::SimError;
use super::fleet::{Fleet, uuid_v4};

/// OCPP 1.6 connector status (A9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectorStatus {
    /// Free.
    Available,
    /// Plugged in or authorised, no energy yet.
    Preparing,
    /// Energy flowing.
    Charging,
    /// The vehicle paused (battery full): idle.
    SuspendedEV,
    /// The station paused.
    SuspendedEVSE,
    /// Stopped, cable still plugged in.
    Finishing,
    /// Error.
    Faulted,
    /// Offline or disabled.
    Unavailable,
}

impl ConnectorStatus {
    /// The OCPP spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus::Available => "Available",
            ConnectorStatus::Preparing => "Preparing",
            ConnectorStatus::Charging => "Charging",
            ConnectorStatus::SuspendedEV => "SuspendedEV",
            ConnectorStatus::SuspendedEVSE => "SuspendedEVSE",
            ConnectorStatus::Finishing => "Finishing",
            ConnectorStatus::Faulted => "Faulted",
            ConnectorStatus::Unavailable => "Unavailable",
        }
    }
}

/// OCPP 1.6 stop reason (A9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopReason {
    /// Cable unplugged.
    EVDisconnected,
    /// Remote stop from the central system.
    Remote,
    /// Stopped at the station.
    Local,
    /// Power failure.
    PowerLoss,
    /// Emergency stop.
    EmergencyStop,
    /// Hard reset.
    HardReset,
    /// Soft reset.
    SoftReset,
    /// Reboot.
    Reboot,
    /// Unlock command.
    UnlockCommand,
    /// Authorisation withdrawn.
    DeAuthorized,
    /// Anything else (used when a connector faults mid-session).
    Other,
}

impl StopReason {
    /// The OCPP spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EVDisconnected => "EVDisconnected",
            StopReason::Remote => "Remote",
            StopReason::Local => "Local",
            StopReason::PowerLoss => "PowerLoss",
            StopReason::EmergencyStop => "EmergencyStop",
            StopReason::HardReset => "HardReset",
            StopReason::SoftReset => "SoftReset",
            StopReason::Reboot => "Reboot",
            StopReason::UnlockCommand => "UnlockCommand",
            StopReason::DeAuthorized => "DeAuthorized",
            StopReason::Other => "Other",
        }
    }
}

/// A status notification as the central system stores it (`lastStatus`).
#[derive(Debug, Clone)]
pub(crate) struct Reported {
    pub status: ConnectorStatus,
    pub error_code: String,
    pub at: DateTime<Utc>,
}

/// A scheduled connector step (automatic fleet, or a scripted stop's `Finishing → Available`).
#[derive(Debug, Clone)]
enum Step {
    PlugIn { tag_pk: i64 },
    Start { power_w: f64, empty_tag: bool },
    SuspendEv,
    Stop { reason: StopReason },
    Unplug,
    Fault { code: &'static str },
    Unfault,
    ChargerOffline { for_real: TimeDelta },
}

#[derive(Debug, Clone)]
enum ChargerStep {
    Online,
}

#[derive(Debug)]
pub(crate) struct ConnectorState {
    pub connector_id: u32,
    pub connector_pk: i64,
    pub status: ConnectorStatus,
    pub error_code: String,
    pub tag_pk: Option<i64>,
    pub tx: Option<usize>,
    pub power_w: f64,
    pub meter_wh: f64,
    pub reported: Reported,
    pending: VecDeque<Reported>,
    plan: VecDeque<(DateTime<Utc>, Step)>,
    manual: bool,
    pub ghost: bool,
    available_since: DateTime<Utc>,
    auto_sessions: u32,
}

#[derive(Debug)]
pub(crate) struct ChargerState {
    pub online: bool,
    hb_anchor: DateTime<Utc>,
    frozen_hb: DateTime<Utc>,
    pub lowercase_tags: bool,
    pub usage: i64,
    pub month_wh: f64,
    pub connectors: Vec<ConnectorState>,
    plan: VecDeque<(DateTime<Utc>, ChargerStep)>,
}

/// A transaction as the central system holds it.
#[derive(Debug, Clone)]
pub(crate) struct Transaction {
    pub id: i64,
    pub uuid: String,
    pub charger: usize,
    pub connector: usize,
    pub tag_pk: i64,
    pub id_tag: String,
    pub reported_tag: String,
    pub resident: Option<usize>,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub stop_delivered_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<StopReason>,
    pub start_value_wh: f64,
    pub energy_wh: f64,
    pub idle_s: f64,
    pub visible_energy_wh: f64,
    pub visible_idle_s: f64,
    pub tag_empty: bool,
    auto_empty_tag: bool,
    pub power_w: f64,
}

/// Ground truth of one session, for comparing with what vetric tracked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    /// Transaction `id`.
    pub transaction_id: i64,
    /// Transaction `uuid`.
    pub transaction_uuid: String,
    /// Charger index in the fleet.
    pub charger: usize,
    /// Charger `uuid` (`chargeBoxUuid`).
    pub charger_uuid: String,
    /// `chargeBoxId`.
    pub charge_box_id: String,
    /// OCPP connector id.
    pub connector_id: u32,
    /// The tag, upper case.
    pub tag: String,
    /// `ocppTagPk`.
    pub tag_pk: i64,
    /// `userPk` of the resident owning the tag.
    pub resident_user_pk: Option<i64>,
    /// Clean name of the resident.
    pub resident_name: Option<String>,
    /// Apartment text of the resident.
    pub apartment: Option<String>,
    /// When charging started (the transaction's start).
    pub start: DateTime<Utc>,
    /// When it really stopped (may be earlier than the API shows it, for a late stop).
    pub stop: Option<DateTime<Utc>>,
    /// When the API started showing the stop (later than `stop` for a late stop).
    pub stop_delivered_at: Option<DateTime<Utc>>,
    /// Energy delivered, Wh (exact; the API rounds it).
    pub energy_wh: f64,
    /// Seconds spent `SuspendedEV` (idle).
    pub idle_seconds: f64,
    /// Why it stopped.
    pub stop_reason: Option<StopReason>,
    /// Charging power in W on the simulated clock (the energy rate on the real clock is
    /// `power_w * speed`).
    pub power_w: f64,
}

/// The true state of the simulated fleet.
#[derive(Debug)]
pub struct Engine {
    pub(crate) fleet: Fleet,
    speed: f64,
    status_lag: TimeDelta,
    finishing_delay: TimeDelta,
    hb_interval: TimeDelta,
    auto: bool,
    pub(crate) chargers: Vec<ChargerState>,
    pub(crate) txs: Vec<Transaction>,
    next_tx_id: i64,
    rng: StdRng,
    now: DateTime<Utc>,
}

const FAULT_CODES: &[&str] = &[
    "GroundFailure",
    "OverCurrentFailure",
    "EVCommunicationError",
    "HighTemperature",
    "InternalError",
];

fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn delta_secs(s: f64) -> TimeDelta {
    TimeDelta::milliseconds((s * 1000.0).round() as i64)
}

impl Engine {
    /// Creates the engine with every connector `Available` at `start`.
    pub fn new(fleet: Fleet, cfg: &SimConfig, start: DateTime<Utc>) -> Engine {
        let speed = cfg.effective_speed();
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5E55_1045_0000_0002);
        let to_delta = |d: std::time::Duration| delta_secs(d.as_secs_f64() / speed);
        let chargers = fleet
            .chargers
            .iter()
            .map(|spec| {
                let anchor = start - TimeDelta::seconds(rng.random_range(0..60));
                ChargerState {
                    online: true,
                    hb_anchor: anchor,
                    frozen_hb: anchor,
                    lowercase_tags: spec.lowercase_tags,
                    usage: spec.usage_base,
                    month_wh: spec.month_consumption_base as f64,
                    connectors: spec
                        .connectors
                        .iter()
                        .map(|c| ConnectorState {
                            connector_id: c.connector_id,
                            connector_pk: c.connector_pk,
                            status: ConnectorStatus::Available,
                            error_code: "NoError".to_string(),
                            tag_pk: None,
                            tx: None,
                            power_w: 0.0,
                            meter_wh: c.meter_start_wh as f64,
                            reported: Reported {
                                status: ConnectorStatus::Available,
                                error_code: "NoError".to_string(),
                                at: start
                                    - TimeDelta::seconds(rng.random_range(600..72_000))
                                    - TimeDelta::milliseconds(rng.random_range(0..1000)),
                            },
                            pending: VecDeque::new(),
                            plan: VecDeque::new(),
                            manual: false,
                            ghost: false,
                            available_since: start,
                            auto_sessions: 0,
                        })
                        .collect(),
                    plan: VecDeque::new(),
                }
            })
            .collect();
        Engine {
            fleet,
            speed,
            status_lag: to_delta(cfg.status_lag),
            finishing_delay: to_delta(cfg.finishing_delay),
            hb_interval: delta_secs((60.0 / speed).max(1.0)),
            auto: cfg.auto_fleet,
            chargers,
            txs: Vec::new(),
            next_tx_id: 451_900 + rng.random_range(0..100),
            rng,
            now: start,
        }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The instant the engine has been advanced to.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Whether the automatic fleet is on.
    pub fn auto(&self) -> bool {
        self.auto
    }

    /// Real duration of a simulated number of seconds.
    fn real(&self, sim_secs: f64) -> TimeDelta {
        delta_secs(sim_secs / self.speed)
    }

    /// Moves the world to `now`: fires scheduled steps in order, integrates energy and idle
    /// time, and makes lagged status notifications visible. Going backwards is a no-op.
    pub fn advance_to(&mut self, now: DateTime<Utc>) {
        if now <= self.now {
            // Still make notifications due by now visible (a lag of zero after an operation).
            self.integrate_to(self.now);
            return;
        }
        loop {
            self.plan_auto();
            match self.next_event() {
                Some(t) if t <= now => {
                    self.integrate_to(t);
                    self.fire_due(t);
                }
                _ => break,
            }
        }
        self.integrate_to(now);
    }

    fn next_event(&self) -> Option<DateTime<Utc>> {
        let mut best: Option<DateTime<Utc>> = None;
        let mut consider = |t: DateTime<Utc>| {
            if best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        for ch in &self.chargers {
            if let Some((t, _)) = ch.plan.front() {
                consider(*t);
            }
            for co in &ch.connectors {
                if let Some((t, _)) = co.plan.front() {
                    consider(*t);
                }
            }
        }
        best
    }

    fn integrate_to(&mut self, t: DateTime<Utc>) {
        let dt = secs(t - self.now).max(0.0);
        for ch in &mut self.chargers {
            for co in &mut ch.connectors {
                if dt > 0.0
                    && let Some(ti) = co.tx
                {
                    let tx = &mut self.txs[ti];
                    match co.status {
                        ConnectorStatus::Charging => {
                            let e = co.power_w * self.speed * dt / 3600.0;
                            co.meter_wh += e;
                            tx.energy_wh += e;
                            ch.month_wh += e;
                        }
                        ConnectorStatus::SuspendedEV => tx.idle_s += dt,
                        _ => {}
                    }
                    if ch.online {
                        tx.visible_energy_wh = tx.energy_wh;
                        tx.visible_idle_s = tx.idle_s;
                    }
                }
                while co.pending.front().is_some_and(|p| p.at <= t) {
                    if let Some(p) = co.pending.pop_front() {
                        co.reported = p;
                    }
                }
            }
        }
        if t > self.now {
            self.now = t;
        }
    }

    fn fire_due(&mut self, t: DateTime<Utc>) {
        for c in 0..self.chargers.len() {
            while self.chargers[c]
                .plan
                .front()
                .is_some_and(|(at, _)| *at <= t)
            {
                if let Some((at, ChargerStep::Online)) = self.chargers[c].plan.pop_front() {
                    self.do_online(at, c);
                }
            }
            for k in 0..self.chargers[c].connectors.len() {
                while self.chargers[c].connectors[k]
                    .plan
                    .front()
                    .is_some_and(|(at, _)| *at <= t)
                {
                    let Some((at, step)) = self.chargers[c].connectors[k].plan.pop_front() else {
                        break;
                    };
                    if let Err(e) = self.run_step(at, c, k, step) {
                        tracing::debug!(charger = c, connector = k + 1, error = %e, "sim step dropped");
                        self.chargers[c].connectors[k].plan.clear();
                    }
                }
            }
        }
    }

    fn run_step(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        step: Step,
    ) -> Result<(), SimError> {
        match step {
            Step::PlugIn { tag_pk } => self.do_plug_in(t, c, k, tag_pk),
            Step::Start { power_w, empty_tag } => {
                let ti = self.do_start(t, c, k, power_w)?;
                if empty_tag {
                    self.txs[ti].tag_empty = true;
                    self.txs[ti].auto_empty_tag = true;
                }
                Ok(())
            }
            Step::SuspendEv => self.do_suspend(t, c, k, ConnectorStatus::SuspendedEV),
            Step::Stop { reason } => self.do_stop(t, c, k, reason).map(|_| ()),
            Step::Unplug => self.do_unplug(t, c, k),
            Step::Fault { code } => self.do_fault(t, c, k, code),
            Step::Unfault => self.do_unfault(t, c, k),
            Step::ChargerOffline { for_real } => {
                if self.chargers[c].online {
                    self.do_offline(t, c);
                    self.chargers[c]
                        .plan
                        .push_back((t + for_real, ChargerStep::Online));
                }
                Ok(())
            }
        }
    }

    // ----- automatic fleet -------------------------------------------------------------

    fn plan_auto(&mut self) {
        if !self.auto {
            return;
        }
        for c in 0..self.chargers.len() {
            if !self.chargers[c].online {
                continue;
            }
            for k in 0..self.chargers[c].connectors.len() {
                let co = &self.chargers[c].connectors[k];
                if co.manual
                    || co.ghost
                    || !co.plan.is_empty()
                    || co.status != ConnectorStatus::Available
                {
                    continue;
                }
                let first = co.auto_sessions == 0;
                let since = co.available_since;
                let gap_sim = if first {
                    self.rng.random_range(30.0..600.0)
                } else {
                    self.rng.random_range(1200.0..10_800.0)
                };
                let t0 = (since + self.real(gap_sim)).max(self.now);
                let plan = self.build_session(c, t0);
                let co = &mut self.chargers[c].connectors[k];
                co.auto_sessions += 1;
                co.plan = plan;
            }
        }
    }

    fn build_session(&mut self, c: usize, t0: DateTime<Utc>) -> VecDeque<(DateTime<Utc>, Step)> {
        let mut plan = VecDeque::new();
        let speed = self.speed;
        let real = |sim_secs: f64| delta_secs(sim_secs / speed);
        let tags = self.fleet.all_tags();
        let tag_pk = tags
            .choose(&mut self.rng)
            .map(|(_, t)| t.tag_pk)
            .unwrap_or_default();
        let max_w = f64::from(self.fleet.chargers[c].power_max_w);
        let powers: Vec<f64> = [3_700.0, 6_600.0, 7_400.0, 11_000.0, 22_000.0]
            .into_iter()
            .filter(|p| *p <= max_w)
            .collect();
        let nominal = powers.choose(&mut self.rng).copied().unwrap_or(3_700.0);
        let power_w = (nominal * self.rng.random_range(0.85..1.0)).max(3_700.0);
        let energy_wh: f64 = self.rng.random_range(4_000.0..40_000.0);
        let charge_sim = energy_wh / power_w * 3600.0;
        let prep_sim = self.rng.random_range(15.0..90.0);
        let fin_sim = self.rng.random_range(3.0..90.0);
        let roll: f64 = self.rng.random();
        let mut at = t0;
        let push = |plan: &mut VecDeque<_>, at: &mut DateTime<Utc>, after: TimeDelta, s: Step| {
            *at += after;
            plan.push_back((*at, s));
        };
        if roll < 0.10 {
            // Plugged in, never starts.
            let wait = real(self.rng.random_range(60.0..360.0));
            push(
                &mut plan,
                &mut at,
                TimeDelta::zero(),
                Step::PlugIn { tag_pk },
            );
            push(&mut plan, &mut at, wait, Step::Unplug);
            return plan;
        }
        if roll < 0.14 {
            let code = FAULT_CODES
                .choose(&mut self.rng)
                .copied()
                .unwrap_or("OtherError");
            let wait = real(self.rng.random_range(300.0..2400.0));
            push(&mut plan, &mut at, TimeDelta::zero(), Step::Fault { code });
            push(&mut plan, &mut at, wait, Step::Unfault);
            return plan;
        }
        let empty_tag = (0.14..0.19).contains(&roll);
        push(
            &mut plan,
            &mut at,
            TimeDelta::zero(),
            Step::PlugIn { tag_pk },
        );
        push(
            &mut plan,
            &mut at,
            real(prep_sim),
            Step::Start { power_w, empty_tag },
        );
        if roll < 0.29 {
            // Interrupted mid-charge.
            let part = real(charge_sim * self.rng.random_range(0.2..0.7));
            let reason = if self.rng.random_bool(0.6) {
                StopReason::EVDisconnected
            } else {
                StopReason::PowerLoss
            };
            push(&mut plan, &mut at, part, Step::Stop { reason });
            push(&mut plan, &mut at, real(fin_sim), Step::Unplug);
            return plan;
        }
        let charge = real(charge_sim);
        if roll < 0.37 {
            // The charger drops offline a while into the session.
            let before = real(charge_sim * self.rng.random_range(0.2..0.9));
            let off = real(self.rng.random_range(300.0..2400.0));
            push(
                &mut plan,
                &mut at,
                before,
                Step::ChargerOffline { for_real: off },
            );
            at -= before;
        }
        let idle_sim = if self.rng.random_bool(0.35) {
            0.0
        } else {
            self.rng.random_range(60.0..10_800.0)
        };
        let reason_roll: f64 = self.rng.random();
        let reason = if reason_roll < 0.7 {
            StopReason::EVDisconnected
        } else if reason_roll < 0.9 {
            StopReason::Remote
        } else {
            StopReason::Local
        };
        if idle_sim > 0.0 {
            push(&mut plan, &mut at, charge, Step::SuspendEv);
            push(&mut plan, &mut at, real(idle_sim), Step::Stop { reason });
        } else {
            push(&mut plan, &mut at, charge, Step::Stop { reason });
        }
        push(&mut plan, &mut at, real(fin_sim), Step::Unplug);
        plan
    }

    // ----- primitive transitions (at an instant, no scheduling) ------------------------

    fn conn(&self, c: usize, k: usize) -> &ConnectorState {
        &self.chargers[c].connectors[k]
    }

    fn bad_state(&self, c: usize, k: usize, expected: &'static str) -> SimError {
        let co = self.conn(c, k);
        SimError::InvalidState {
            charger: c,
            connector: co.connector_id,
            expected,
            actual: if co.ghost && co.status == ConnectorStatus::Available {
                "Available (ghost Charging)"
            } else {
                co.status.as_str()
            },
        }
    }

    /// Records a true status change and schedules its notification `status_lag` later (not
    /// while the charger is offline or the connector plays a ghost).
    fn set_status(&mut self, t: DateTime<Utc>, c: usize, k: usize, status: ConnectorStatus) {
        let lag = self.status_lag;
        let online = self.chargers[c].online;
        let co = &mut self.chargers[c].connectors[k];
        co.status = status;
        if status == ConnectorStatus::Available {
            co.available_since = t;
        }
        if online && !co.ghost {
            let error_code = co.error_code.clone();
            co.pending.push_back(Reported {
                status,
                error_code,
                at: t + lag,
            });
        }
    }

    fn do_plug_in(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        tag_pk: i64,
    ) -> Result<(), SimError> {
        if self.conn(c, k).status != ConnectorStatus::Available {
            return Err(self.bad_state(c, k, "Available"));
        }
        self.chargers[c].connectors[k].tag_pk = Some(tag_pk);
        self.set_status(t, c, k, ConnectorStatus::Preparing);
        Ok(())
    }

    fn do_start(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        power_w: f64,
    ) -> Result<usize, SimError> {
        let co = self.conn(c, k);
        let (ConnectorStatus::Preparing, Some(tag_pk)) = (co.status, co.tag_pk) else {
            return Err(self.bad_state(c, k, "Preparing"));
        };
        let (resident, id_tag) = match self.fleet.find_tag_pk(tag_pk) {
            Some((r, tag)) => (
                self.fleet
                    .residents
                    .iter()
                    .position(|x| x.user_pk == r.user_pk),
                tag.id_tag.clone(),
            ),
            None => return Err(SimError::UnknownTag(tag_pk.to_string())),
        };
        let reported_tag = if self.chargers[c].lowercase_tags {
            id_tag.to_lowercase()
        } else {
            id_tag.clone()
        };
        let id = self.next_tx_id;
        self.next_tx_id += self.rng.random_range(1..4);
        let uuid = uuid_v4(&mut self.rng);
        let meter = self.conn(c, k).meter_wh;
        self.txs.push(Transaction {
            id,
            uuid,
            charger: c,
            connector: k,
            tag_pk,
            id_tag,
            reported_tag,
            resident,
            start: t,
            stop: None,
            stop_delivered_at: None,
            stop_reason: None,
            start_value_wh: meter,
            energy_wh: 0.0,
            idle_s: 0.0,
            visible_energy_wh: 0.0,
            visible_idle_s: 0.0,
            tag_empty: false,
            auto_empty_tag: false,
            power_w: power_w.max(0.0),
        });
        let ti = self.txs.len() - 1;
        self.chargers[c].usage += 1;
        let co = &mut self.chargers[c].connectors[k];
        co.tx = Some(ti);
        co.power_w = power_w.max(0.0);
        self.set_status(t, c, k, ConnectorStatus::Charging);
        Ok(ti)
    }

    fn do_suspend(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        to: ConnectorStatus,
    ) -> Result<(), SimError> {
        let st = self.conn(c, k).status;
        let ok = matches!(
            st,
            ConnectorStatus::Charging
                | ConnectorStatus::SuspendedEV
                | ConnectorStatus::SuspendedEVSE
        ) && st != to;
        if !ok {
            return Err(self.bad_state(c, k, "Charging or the other Suspended state"));
        }
        self.set_status(t, c, k, to);
        Ok(())
    }

    fn do_resume(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        power_w: Option<f64>,
    ) -> Result<(), SimError> {
        let st = self.conn(c, k).status;
        if !matches!(
            st,
            ConnectorStatus::SuspendedEV | ConnectorStatus::SuspendedEVSE
        ) {
            return Err(self.bad_state(c, k, "SuspendedEV or SuspendedEVSE"));
        }
        if let Some(p) = power_w {
            self.chargers[c].connectors[k].power_w = p.max(0.0);
        }
        self.set_status(t, c, k, ConnectorStatus::Charging);
        Ok(())
    }

    fn do_stop(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        reason: StopReason,
    ) -> Result<i64, SimError> {
        let Some(ti) = self.conn(c, k).tx else {
            return Err(self.bad_state(c, k, "a session in progress"));
        };
        let online = self.chargers[c].online;
        let tx = &mut self.txs[ti];
        tx.stop = Some(t);
        tx.stop_reason = Some(reason);
        if tx.auto_empty_tag {
            tx.tag_empty = false;
        }
        if online {
            tx.stop_delivered_at = Some(t);
            tx.visible_energy_wh = tx.energy_wh;
            tx.visible_idle_s = tx.idle_s;
        }
        let id = tx.id;
        let co = &mut self.chargers[c].connectors[k];
        co.tx = None;
        co.power_w = 0.0;
        self.set_status(t, c, k, ConnectorStatus::Finishing);
        Ok(id)
    }

    fn do_unplug(&mut self, t: DateTime<Utc>, c: usize, k: usize) -> Result<(), SimError> {
        if self.conn(c, k).tx.is_some() {
            self.do_stop(t, c, k, StopReason::EVDisconnected)?;
        }
        let st = self.conn(c, k).status;
        if !matches!(st, ConnectorStatus::Preparing | ConnectorStatus::Finishing) {
            return Err(self.bad_state(c, k, "Preparing, Finishing or a session in progress"));
        }
        self.chargers[c].connectors[k].tag_pk = None;
        self.set_status(t, c, k, ConnectorStatus::Available);
        Ok(())
    }

    fn do_fault(
        &mut self,
        t: DateTime<Utc>,
        c: usize,
        k: usize,
        code: &str,
    ) -> Result<(), SimError> {
        if self.conn(c, k).tx.is_some() {
            self.do_stop(t, c, k, StopReason::Other)?;
        }
        let co = &mut self.chargers[c].connectors[k];
        co.tag_pk = None;
        co.error_code = code.to_string();
        self.set_status(t, c, k, ConnectorStatus::Faulted);
        Ok(())
    }

    fn do_unfault(&mut self, t: DateTime<Utc>, c: usize, k: usize) -> Result<(), SimError> {
        if self.conn(c, k).status != ConnectorStatus::Faulted {
            return Err(self.bad_state(c, k, "Faulted"));
        }
        self.chargers[c].connectors[k].error_code = "NoError".to_string();
        self.set_status(t, c, k, ConnectorStatus::Available);
        Ok(())
    }

    fn do_offline(&mut self, t: DateTime<Utc>, c: usize) {
        let hb = self.heartbeat_at(c, t);
        let lag = self.status_lag;
        let ch = &mut self.chargers[c];
        if !ch.online {
            return;
        }
        ch.online = false;
        ch.frozen_hb = hb;
        for co in &mut ch.connectors {
            co.pending.push_back(Reported {
                status: ConnectorStatus::Unavailable,
                error_code: "NoError".to_string(),
                at: t + lag,
            });
        }
    }

    fn do_online(&mut self, t: DateTime<Utc>, c: usize) {
        let lag = self.status_lag;
        let ch = &mut self.chargers[c];
        if ch.online {
            return;
        }
        ch.online = true;
        ch.hb_anchor = t;
        for co in &mut ch.connectors {
            let status = if co.ghost {
                ConnectorStatus::Charging
            } else {
                co.status
            };
            co.pending.push_back(Reported {
                status,
                error_code: co.error_code.clone(),
                at: t + lag,
            });
        }
        // Late StopTransactions and the meter values held back while offline.
        for tx in self.txs.iter_mut().filter(|x| x.charger == c) {
            tx.visible_energy_wh = tx.energy_wh;
            tx.visible_idle_s = tx.idle_s;
            if tx.stop.is_some() && tx.stop_delivered_at.is_none() {
                tx.stop_delivered_at = Some(t);
            }
        }
    }

    /// The last heartbeat of charger `c` as of `t`.
    pub(crate) fn heartbeat_at(&self, c: usize, t: DateTime<Utc>) -> DateTime<Utc> {
        let ch = &self.chargers[c];
        if !ch.online {
            return ch.frozen_hb;
        }
        let interval = self.hb_interval.num_milliseconds().max(1);
        let since = (t - ch.hb_anchor).num_milliseconds().max(0);
        ch.hb_anchor + TimeDelta::milliseconds(since - since % interval)
    }

    // ----- scripting API ---------------------------------------------------------------

    fn locate(&self, charger: usize, connector: u32) -> Result<(usize, usize), SimError> {
        let ch = self
            .chargers
            .get(charger)
            .ok_or_else(|| SimError::UnknownCharger(charger.to_string()))?;
        let k = ch
            .connectors
            .iter()
            .position(|co| co.connector_id == connector)
            .ok_or(SimError::UnknownConnector { charger, connector })?;
        Ok((charger, k))
    }

    /// Index of a charger by `chargeBoxId` (exact) or by its index written as a number.
    pub fn charger_index(&self, key: &str) -> Result<usize, SimError> {
        if let Some(i) = self
            .fleet
            .chargers
            .iter()
            .position(|c| c.charge_box_id == key || c.uuid == key)
        {
            return Ok(i);
        }
        key.parse::<usize>()
            .ok()
            .filter(|i| *i < self.chargers.len())
            .ok_or_else(|| SimError::UnknownCharger(key.to_string()))
    }

    /// Takes a connector out of the automatic fleet and advances to `now`.
    fn script(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
    ) -> Result<(usize, usize), SimError> {
        self.advance_to(now);
        let (c, k) = self.locate(charger, connector)?;
        let co = &mut self.chargers[c].connectors[k];
        co.manual = true;
        co.plan.clear();
        Ok((c, k))
    }

    fn at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.max(self.now)
    }

    /// Plugs a vehicle in with a resident's tag: `Available → Preparing`.
    pub fn plug_in(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        tag: &str,
    ) -> Result<(), SimError> {
        let tag_pk = self
            .fleet
            .find_tag(tag)
            .map(|(_, t)| t.tag_pk)
            .ok_or_else(|| SimError::UnknownTag(tag.to_string()))?;
        let (c, k) = self.script(now, charger, connector)?;
        self.do_plug_in(self.at(now), c, k, tag_pk)
    }

    /// Starts charging at `power_w` (simulated W): `Preparing → Charging`, creating the
    /// transaction (its start is this instant). Returns the transaction id.
    pub fn start_charging(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        power_w: f64,
    ) -> Result<i64, SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        let ti = self.do_start(self.at(now), c, k, power_w)?;
        Ok(self.txs[ti].id)
    }

    /// The vehicle pauses (battery full): `→ SuspendedEV`, idle time starts counting.
    pub fn suspend_ev(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_suspend(self.at(now), c, k, ConnectorStatus::SuspendedEV)
    }

    /// The station pauses: `→ SuspendedEVSE`.
    pub fn suspend_evse(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_suspend(self.at(now), c, k, ConnectorStatus::SuspendedEVSE)
    }

    /// Back to `Charging`, optionally at a new power.
    pub fn resume(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        power_w: Option<f64>,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_resume(self.at(now), c, k, power_w)
    }

    /// Stops the session: the transaction gets its stop now, the connector goes `Finishing`
    /// and, `finishing_delay` later, `Available`. Returns the transaction id. On an offline
    /// charger the stop is delivered when it comes back.
    pub fn stop(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        reason: StopReason,
    ) -> Result<i64, SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        let t = self.at(now);
        let id = self.do_stop(t, c, k, reason)?;
        if self.finishing_delay <= TimeDelta::zero() {
            self.do_unplug(t, c, k)?;
        } else {
            let at = t + self.finishing_delay;
            self.chargers[c].connectors[k]
                .plan
                .push_back((at, Step::Unplug));
        }
        Ok(id)
    }

    /// Unplugs at once: `Preparing`/`Finishing → Available` (a session in progress is stopped
    /// with `EVDisconnected` first).
    pub fn unplug(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_unplug(self.at(now), c, k)
    }

    /// Faults the connector with an OCPP error code (a session in progress stops with `Other`).
    pub fn fault(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        error_code: &str,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_fault(self.at(now), c, k, error_code)
    }

    /// Clears a fault: `Faulted → Available`.
    pub fn unfault(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        self.do_unfault(self.at(now), c, k)
    }

    /// Takes a charger offline: its heartbeat stops, its connectors show `Unavailable`, its
    /// transactions stay open.
    pub fn set_offline(&mut self, now: DateTime<Utc>, charger: usize) -> Result<(), SimError> {
        self.advance_to(now);
        if charger >= self.chargers.len() {
            return Err(SimError::UnknownCharger(charger.to_string()));
        }
        self.chargers[charger].plan.clear();
        self.do_offline(self.at(now), charger);
        Ok(())
    }

    /// Brings a charger back: heartbeat resumes, real statuses are reported, stops that
    /// happened while offline are delivered.
    pub fn set_online(&mut self, now: DateTime<Utc>, charger: usize) -> Result<(), SimError> {
        self.advance_to(now);
        if charger >= self.chargers.len() {
            return Err(SimError::UnknownCharger(charger.to_string()));
        }
        self.chargers[charger].plan.clear();
        self.do_online(self.at(now), charger);
        Ok(())
    }

    /// Makes a transaction report `ocppIdTag: ""` and null user fields (A5.5 #1), or undoes it.
    pub fn set_tag_empty(
        &mut self,
        now: DateTime<Utc>,
        transaction_id: i64,
        empty: bool,
    ) -> Result<(), SimError> {
        self.advance_to(now);
        let tx = self
            .txs
            .iter_mut()
            .find(|t| t.id == transaction_id)
            .ok_or(SimError::UnknownTransaction(transaction_id))?;
        tx.tag_empty = empty;
        tx.auto_empty_tag = false;
        Ok(())
    }

    /// Makes a charger report tags in lower case from its next transaction on (A5.5 #2).
    pub fn set_lowercase_tags(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        lowercase: bool,
    ) -> Result<(), SimError> {
        self.advance_to(now);
        let ch = self
            .chargers
            .get_mut(charger)
            .ok_or_else(|| SimError::UnknownCharger(charger.to_string()))?;
        ch.lowercase_tags = lowercase;
        Ok(())
    }

    /// Makes a connector report `Charging` with no transaction (A5.5 #3), or ends that.
    pub fn set_ghost(
        &mut self,
        now: DateTime<Utc>,
        charger: usize,
        connector: u32,
        on: bool,
    ) -> Result<(), SimError> {
        let (c, k) = self.script(now, charger, connector)?;
        let t = self.at(now);
        let lag = self.status_lag;
        let online = self.chargers[c].online;
        let co = &mut self.chargers[c].connectors[k];
        if co.ghost == on {
            return Ok(());
        }
        co.ghost = on;
        if online {
            let status = if on {
                ConnectorStatus::Charging
            } else {
                co.status
            };
            co.pending.push_back(Reported {
                status,
                error_code: co.error_code.clone(),
                at: t + lag,
            });
        }
        Ok(())
    }

    /// Turns the automatic fleet on or off. Off: no new automatic sessions start; sessions
    /// already under way play to their end.
    pub fn set_auto(&mut self, now: DateTime<Utc>, on: bool) {
        self.advance_to(now);
        self.auto = on;
    }

    /// Ground truth of every session so far, oldest first.
    pub fn record(&self) -> Vec<SessionRecord> {
        self.txs
            .iter()
            .map(|tx| {
                let spec = &self.fleet.chargers[tx.charger];
                let resident = tx.resident.and_then(|r| self.fleet.residents.get(r));
                SessionRecord {
                    transaction_id: tx.id,
                    transaction_uuid: tx.uuid.clone(),
                    charger: tx.charger,
                    charger_uuid: spec.uuid.clone(),
                    charge_box_id: spec.charge_box_id.clone(),
                    connector_id: self.chargers[tx.charger].connectors[tx.connector].connector_id,
                    tag: tx.id_tag.clone(),
                    tag_pk: tx.tag_pk,
                    resident_user_pk: resident.map(|r| r.user_pk),
                    resident_name: resident.map(|r| r.name.clone()),
                    apartment: resident.map(|r| r.apartment.text.clone()),
                    start: tx.start,
                    stop: tx.stop,
                    stop_delivered_at: tx.stop_delivered_at,
                    energy_wh: tx.energy_wh,
                    idle_seconds: tx.idle_s,
                    stop_reason: tx.stop_reason,
                    power_w: tx.power_w,
                }
            })
            .collect()
    }

    /// True status of a connector (not the lagged `lastStatus`).
    pub fn connector_status(
        &self,
        charger: usize,
        connector: u32,
    ) -> Result<ConnectorStatus, SimError> {
        let (c, k) = self.locate(charger, connector)?;
        Ok(self.chargers[c].connectors[k].status)
    }

    /// The status `/chargepoints` reports for a connector now (`lastStatus.status`).
    pub fn reported_status(
        &self,
        charger: usize,
        connector: u32,
    ) -> Result<ConnectorStatus, SimError> {
        let (c, k) = self.locate(charger, connector)?;
        Ok(self.chargers[c].connectors[k].reported.status)
    }

    /// Whether a charger is online.
    pub fn is_online(&self, charger: usize) -> Result<bool, SimError> {
        self.chargers
            .get(charger)
            .map(|c| c.online)
            .ok_or_else(|| SimError::UnknownCharger(charger.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvepro::fleet::FleetSpec;
    use std::time::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-02-10T20:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid instant")
    }

    fn engine(cfg: &SimConfig) -> Engine {
        let fleet = Fleet::generate(&FleetSpec {
            chargers: cfg.chargers,
            seed: cfg.seed,
            site_name: cfg.site_name.clone(),
            residents_per_charger: cfg.residents_per_charger,
            dual_connector_chargers: cfg.dual_connector_chargers,
        });
        Engine::new(fleet, cfg, t0())
    }

    fn s(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    #[test]
    fn status_lags_the_transaction() {
        let cfg = SimConfig {
            status_lag: Duration::from_secs(5),
            ..SimConfig::scripted()
        };
        let mut e = engine(&cfg);
        let tag = e.fleet().residents[0].tags[0].id_tag.clone();
        e.plug_in(t0(), 0, 1, &tag).expect("plug in");
        let id = e.start_charging(t0() + s(1), 0, 1, 7400.0).expect("start");
        e.advance_to(t0() + s(3));
        assert_eq!(
            e.connector_status(0, 1).ok(),
            Some(ConnectorStatus::Charging)
        );
        assert_eq!(
            e.reported_status(0, 1).ok(),
            Some(ConnectorStatus::Available)
        );
        assert!(e.txs.iter().any(|t| t.id == id && t.stop.is_none()));
        e.advance_to(t0() + s(7));
        assert_eq!(
            e.reported_status(0, 1).ok(),
            Some(ConnectorStatus::Charging)
        );
    }

    #[test]
    fn energy_and_idle_accumulate_and_speed_scales_power() {
        let cfg = SimConfig {
            speed: 10.0,
            ..SimConfig::scripted()
        };
        let mut e = engine(&cfg);
        let tag = e.fleet().residents[1].tags[0].id_tag.clone();
        e.plug_in(t0(), 1, 1, &tag).expect("plug in");
        e.start_charging(t0(), 1, 1, 3600.0).expect("start");
        // 36 real seconds at 3600 W × speed 10 = 360 Wh.
        e.suspend_ev(t0() + s(36), 1, 1).expect("suspend");
        e.stop(t0() + s(46), 1, 1, StopReason::Remote)
            .expect("stop");
        let r = &e.record()[0];
        assert!((r.energy_wh - 360.0).abs() < 0.01, "{}", r.energy_wh);
        assert!((r.idle_seconds - 10.0).abs() < 0.01);
        assert_eq!(r.stop, Some(t0() + s(46)));
        assert_eq!(r.stop_reason, Some(StopReason::Remote));
        assert_eq!(
            e.connector_status(1, 1).ok(),
            Some(ConnectorStatus::Available)
        );
    }

    #[test]
    fn offline_charger_delivers_its_stop_late() {
        let mut e = engine(&SimConfig::scripted());
        let tag = e.fleet().residents[2].tags[0].id_tag.clone();
        e.plug_in(t0(), 2, 1, &tag).expect("plug in");
        e.start_charging(t0(), 2, 1, 7400.0).expect("start");
        let hb_before = e.heartbeat_at(2, t0() + s(100));
        e.set_offline(t0() + s(100), 2).expect("offline");
        e.advance_to(t0() + s(101));
        assert_eq!(
            e.reported_status(2, 1).ok(),
            Some(ConnectorStatus::Unavailable)
        );
        e.stop(t0() + s(200), 2, 1, StopReason::EVDisconnected)
            .expect("stop while offline");
        e.advance_to(t0() + s(1000));
        assert_eq!(e.heartbeat_at(2, t0() + s(1000)), hb_before);
        let tx = &e.txs[0];
        assert_eq!(tx.stop, Some(t0() + s(200)));
        assert!(
            tx.stop_delivered_at.is_none(),
            "not delivered while offline"
        );
        let visible = tx.visible_energy_wh;
        assert!(
            visible < tx.energy_wh,
            "meter values held back while offline"
        );
        e.set_online(t0() + s(1700), 2).expect("online");
        e.advance_to(t0() + s(1700));
        let tx = &e.txs[0];
        assert_eq!(tx.stop_delivered_at, Some(t0() + s(1700)));
        assert!((tx.visible_energy_wh - tx.energy_wh).abs() < f64::EPSILON);
        assert_eq!(
            e.reported_status(2, 1).ok(),
            Some(ConnectorStatus::Available)
        );
        assert!(e.heartbeat_at(2, t0() + s(1701)) >= t0() + s(1700));
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let mut e = engine(&SimConfig::scripted());
        assert!(matches!(
            e.start_charging(t0(), 0, 1, 7400.0),
            Err(SimError::InvalidState { .. })
        ));
        assert!(matches!(
            e.plug_in(t0(), 0, 1, "NOPE"),
            Err(SimError::UnknownTag(_))
        ));
        assert!(matches!(
            e.plug_in(t0(), 0, 9, "NOPE"),
            Err(SimError::UnknownTag(_)) | Err(SimError::UnknownConnector { .. })
        ));
        assert!(matches!(
            e.suspend_ev(t0(), 99, 1),
            Err(SimError::UnknownCharger(_))
        ));
    }

    /// Runs the automatic fleet for two simulated days at speed 60 and checks the sessions
    /// are plausible, on the real clock, and the same for the same seed.
    #[test]
    fn automatic_fleet_is_plausible_and_deterministic() {
        let cfg = SimConfig {
            speed: 60.0,
            ..SimConfig::default()
        };
        let run = || {
            let mut e = engine(&cfg);
            let end = t0() + TimeDelta::hours(48) / 60;
            let mut t = t0();
            while t < end {
                t += s(7);
                e.advance_to(t);
            }
            (e.record(), e.now())
        };
        let (a, now) = run();
        let (b, _) = run();
        assert_eq!(a, b, "same seed, same sessions");
        assert!(a.len() >= 10, "only {} sessions", a.len());
        let mut reasons = std::collections::HashSet::new();
        for r in &a {
            assert!(r.start <= now);
            if let Some(stop) = r.stop {
                assert!(stop >= r.start && stop <= now);
                reasons.insert(r.stop_reason);
                let secs = (stop - r.start).num_milliseconds() as f64 / 1000.0;
                assert!(r.idle_seconds <= secs + 0.01);
            }
            assert!(r.energy_wh <= 40_000.0 + 1.0, "{}", r.energy_wh);
            assert!(r.power_w >= 3_700.0 * 0.85 && r.power_w <= 22_000.0);
            assert!(r.resident_user_pk.is_some());
        }
        assert!(reasons.len() >= 2, "{reasons:?}");
    }
}
