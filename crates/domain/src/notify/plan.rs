//! From events to planned messages: [`plan`] (one event) and [`plan_batch`] (a cycle's events).
//!
//! See the module docs of [`crate::notify`] for the rules; this file is their implementation.

use super::policy::NotificationPolicy;
use super::rule::{Audience, CancelReason, Rule};
use super::template::{default_template, render};
use crate::cost::session_cost;
use crate::event::{Event, EventKind, FailureClass, InterruptCause, SessionInfo};
use crate::money::{format_kwh_pt_br, format_money_pt_br};
use crate::tariff::TariffHistory;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// What planning needs to know about the site.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub site_name: &'a str,
    pub tz: Tz,
    pub policy: &'a NotificationPolicy,
    /// `None`: the site has no tariff (the "finished" message says so instead of a cost).
    pub tariffs: Option<&'a TariffHistory>,
}

/// One message to enqueue (before recipients are expanded by the engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub rule: Rule,
    pub audience: Audience,
    /// Set for resident messages: the store takes the phone at insert.
    pub resident_id: Option<i64>,
    /// The vendor session id, for session rules.
    pub session_id: Option<i64>,
    /// `session:{id}`, `charger:{uuid}` or `site`: what [`Cancellation`]s match on.
    pub scope: String,
    /// Unique within the site: a second plan with the same key enqueues nothing.
    pub dedup_key: String,
    /// [`ref_code`] of `dedup_key`, printed at the end of `text`.
    pub ref_code: String,
    pub not_before: DateTime<Utc>,
    /// For e-mail, pt-BR, without a product prefix (channels add their own, e.g. `[vetric]`).
    pub subject: String,
    /// Rendered, pt-BR; ends with `ref. {ref_code}`.
    pub text: String,
}

/// Cancel the still-pending messages of `scope` whose rule is one of `rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub scope: String,
    pub rules: Vec<Rule>,
    pub reason: CancelReason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub messages: Vec<Planned>,
    pub cancel: Vec<Cancellation>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.cancel.is_empty()
    }
}

/// The rules a session's end (or a resumed charge) makes pointless.
const PENDING_SESSION_RULES: [Rule; 3] =
    [Rule::SessionStarted, Rule::IdleStarted, Rule::IdleReminder];
const IDLE_RULES: [Rule; 2] = [Rule::IdleStarted, Rule::IdleReminder];

/// Unambiguous alphabet: digits and capitals without 0/O and 1/I (32 symbols, 5 bits each).
const REF_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// A short code derived from the dedup key: 8 characters of [`REF_ALPHABET`] (40 bits).
///
/// Deterministic so that a replanned message (a replayed cycle) carries the same code, which is
/// what reconciliation after a crash searches the gateway for (evolution.md B5b). FNV-1a with a
/// splitmix64 finaliser: no dependency, and keys differing in one character spread over all
/// 40 bits.
pub fn ref_code(dedup_key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dedup_key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (0..8)
        .map(|i| char::from(REF_ALPHABET[((h >> (i * 5)) & 31) as usize]))
        .collect()
}

/// `10/02 às 21:40` in the site's zone.
pub fn format_local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%d/%m às %H:%M").to_string()
}

/// `45 min`, `1 h 05 min`, `26 h 00 min` (negative durations read as 0).
pub fn format_duration(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    if h == 0 {
        format!("{m} min")
    } else {
        format!("{h} h {m:02} min")
    }
}

/// `12,345` (no unit: templates write `{{energia_kwh}} kWh`).
fn format_energy(wh: Option<i64>) -> String {
    match wh {
        Some(wh) => format_kwh_pt_br(Decimal::new(wh, 3))
            .trim_end_matches(" kWh")
            .to_owned(),
        None => "não informada".to_owned(),
    }
}

fn ts(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

fn minutes(m: u32) -> TimeDelta {
    TimeDelta::minutes(i64::from(m))
}

/// Builds a [`Planned`]: fills every placeholder the rule offers (missing ones read "—"),
/// renders the site's template, falling back to the default text if it does not render (a
/// template saved before a placeholder was withdrawn must not stop the message), and appends
/// the reference code.
#[allow(clippy::too_many_arguments)]
fn build(
    ctx: &PlanContext,
    rule: Rule,
    mut values: BTreeMap<&'static str, String>,
    scope: String,
    dedup_key: String,
    not_before: DateTime<Utc>,
    resident_id: Option<i64>,
    session_id: Option<i64>,
) -> Planned {
    let settings = ctx.policy.settings(rule);
    build_with(
        rule,
        &settings.template,
        ctx.site_name,
        &mut values,
        scope,
        dedup_key,
        not_before,
        resident_id,
        session_id,
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_with(
    rule: Rule,
    template: &str,
    site_name: &str,
    values: &mut BTreeMap<&'static str, String>,
    scope: String,
    dedup_key: String,
    not_before: DateTime<Utc>,
    resident_id: Option<i64>,
    session_id: Option<i64>,
) -> Planned {
    let code = ref_code(&dedup_key);
    values
        .entry("local")
        .or_insert_with(|| site_name.to_owned());
    values.insert("ref", code.clone());
    let filled: BTreeMap<&str, String> = rule
        .placeholders()
        .iter()
        .map(|p| (*p, values.get(p).cloned().unwrap_or_else(|| "—".to_owned())))
        .collect();
    let body = render(template, &filled)
        .or_else(|_| render(default_template(rule), &filled))
        .unwrap_or_else(|_| rule.label_pt_br().to_owned());
    let body = body.trim_end();
    let text = if body.ends_with(&code) {
        body.to_owned()
    } else {
        format!("{body}\n\nref. {code}")
    };
    Planned {
        rule,
        audience: rule.audience(),
        resident_id,
        session_id,
        scope,
        ref_code: code,
        dedup_key,
        not_before,
        subject: format!("{} · {}", rule.label_pt_br(), site_name),
        text,
    }
}

fn session_values(s: &SessionInfo, tz: Tz) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    if let Some(r) = &s.resident {
        v.insert("nome", r.name.clone());
        v.insert("apartamento", r.apartment.clone());
    }
    v.insert("carregador", s.charger.name.clone());
    v.insert("conector", s.connector_id.to_string());
    v.insert("inicio", format_local(s.start, tz));
    v.insert(
        "tag",
        s.tag
            .as_ref()
            .map_or_else(|| "não informada".to_owned(), |t| t.as_str().to_owned()),
    );
    v
}

fn session_scope(s: &SessionInfo) -> String {
    format!("session:{}", s.session_id)
}

fn cancel_session(s: &SessionInfo, rules: &[Rule], reason: CancelReason) -> Cancellation {
    Cancellation {
        scope: session_scope(s),
        rules: rules.to_vec(),
        reason,
    }
}

fn interrupt_reason_pt_br(cause: InterruptCause) -> &'static str {
    match cause {
        InterruptCause::StoppedWhileCharging => {
            "a recarga parou enquanto o veículo ainda carregava"
        }
        InterruptCause::ConnectorFaulted => "o carregador entrou em falha",
    }
}

fn failure_pt_br(f: &FailureClass) -> String {
    match f {
        FailureClass::Unavailable => "sem resposta (rede, tempo esgotado ou erro 5xx)".to_owned(),
        FailureClass::ShapeChanged { path } => format!("resposta em formato inesperado ({path})"),
        FailureClass::Auth => "credenciais recusadas".to_owned(),
        FailureClass::Other => "erro inesperado".to_owned(),
    }
}

/// The cost placeholders of a finished session: `custo`, `custo_energia`, `taxa_ociosidade`.
fn cost_values(
    ctx: &PlanContext,
    s: &SessionInfo,
    stop: DateTime<Utc>,
    energy_wh: Option<i64>,
    idle_s: i64,
    v: &mut BTreeMap<&'static str, String>,
) {
    let fixed = |v: &mut BTreeMap<&'static str, String>, text: String| {
        v.insert("custo", text.clone());
        v.insert("custo_energia", text.clone());
        v.insert("taxa_ociosidade", text);
    };
    let Some(tariff) = ctx
        .tariffs
        .and_then(|h| h.in_force_for_session(s.start, ctx.tz))
    else {
        return fixed(v, "tarifa não configurada".to_owned());
    };
    let Some(wh) = energy_wh else {
        return fixed(v, "não calculado (energia não informada)".to_owned());
    };
    match session_cost(tariff, ctx.tz, s.start, stop, wh, idle_s) {
        Ok(c) => {
            v.insert("custo", format_money_pt_br(c.total()));
            v.insert("custo_energia", format_money_pt_br(c.energy_cost));
            v.insert("taxa_ociosidade", format_money_pt_br(c.idle_fee));
        }
        Err(e) => fixed(v, format!("não calculado ({})", e.reason_pt_br())),
    }
}

/// The idle grace used for planning: the policy's, but never more than the grace of the tariff
/// in force for the session (a tariff changed after the policy was saved must not let a fee
/// start before the warning).
fn effective_idle_grace(ctx: &PlanContext, s: &SessionInfo) -> u32 {
    let tariff_grace = ctx
        .tariffs
        .and_then(|h| h.in_force_for_session(s.start, ctx.tz))
        .map(|t| t.idle_grace_min());
    match tariff_grace {
        Some(g) => ctx.policy.idle_grace_min.min(g),
        None => ctx.policy.idle_grace_min,
    }
}

/// The messages and cancellations one event calls for. See the module docs of
/// [`crate::notify`].
pub fn plan(event: &Event, ctx: &PlanContext) -> Plan {
    let mut out = Plan::default();
    let policy = ctx.policy;
    let on = |r: Rule| policy.enabled(r);
    let delay = |r: Rule| minutes(policy.settings(r).delay_min);
    match &event.kind {
        EventKind::SessionStarted { session: s } => {
            if let Some(r) = &s.resident
                && on(Rule::SessionStarted)
            {
                out.messages.push(build(
                    ctx,
                    Rule::SessionStarted,
                    session_values(s, ctx.tz),
                    session_scope(s),
                    format!("session:{}:session_started:resident", s.session_id),
                    s.start + delay(Rule::SessionStarted),
                    Some(r.resident_id),
                    Some(s.session_id),
                ));
            }
        }
        EventKind::IdleStarted { session: s, since } => {
            let Some(r) = &s.resident else { return out };
            let grace = effective_idle_grace(ctx, s);
            let first = *since + minutes(grace);
            let mut values = session_values(s, ctx.tz);
            values.insert("desde", format_local(*since, ctx.tz));
            if on(Rule::IdleStarted) {
                let mut v = values.clone();
                v.insert("ocioso_min", grace.to_string());
                out.messages.push(build(
                    ctx,
                    Rule::IdleStarted,
                    v,
                    session_scope(s),
                    format!(
                        "session:{}:idle_started:{}:resident",
                        s.session_id,
                        ts(*since)
                    ),
                    first,
                    Some(r.resident_id),
                    Some(s.session_id),
                ));
            }
            if on(Rule::IdleReminder) {
                // A validated policy has an interval ≥ 1; guard anyway so reminders can never
                // collapse onto one instant.
                let interval = policy.reminder_interval_min.max(1);
                for k in 1..=policy.reminder_max {
                    let mut v = values.clone();
                    let idle = u64::from(grace) + u64::from(k) * u64::from(interval);
                    v.insert("ocioso_min", idle.to_string());
                    v.insert("lembrete", k.to_string());
                    v.insert("lembretes_max", policy.reminder_max.to_string());
                    out.messages.push(build(
                        ctx,
                        Rule::IdleReminder,
                        v,
                        session_scope(s),
                        format!("session:{}:idle_reminder:{}:{k}", s.session_id, ts(*since)),
                        first + TimeDelta::minutes(i64::from(k) * i64::from(interval)),
                        Some(r.resident_id),
                        Some(s.session_id),
                    ));
                }
            }
        }
        EventKind::ChargingResumed { session: s, .. } => {
            out.cancel.push(cancel_session(
                s,
                &IDLE_RULES,
                CancelReason::ChargingResumed,
            ));
        }
        EventKind::SessionFinished { session: s, end } => {
            out.cancel.push(cancel_session(
                s,
                &PENDING_SESSION_RULES,
                CancelReason::SessionOver,
            ));
            if let Some(r) = &s.resident
                && on(Rule::SessionFinished)
            {
                let mut v = session_values(s, ctx.tz);
                v.insert("fim", format_local(end.stop, ctx.tz));
                v.insert(
                    "duracao",
                    format_duration((end.stop - s.start).num_seconds()),
                );
                v.insert("energia_kwh", format_energy(end.energy_wh));
                v.insert("ocioso_min", (end.idle_s.max(0) / 60).to_string());
                cost_values(ctx, s, end.stop, end.energy_wh, end.idle_s, &mut v);
                out.messages.push(build(
                    ctx,
                    Rule::SessionFinished,
                    v,
                    session_scope(s),
                    format!("session:{}:session_finished:resident", s.session_id),
                    end.stop + delay(Rule::SessionFinished),
                    Some(r.resident_id),
                    Some(s.session_id),
                ));
            }
        }
        EventKind::SessionInterrupted {
            session: s,
            end,
            reason,
        } => {
            out.cancel.push(cancel_session(
                s,
                &PENDING_SESSION_RULES,
                CancelReason::SessionOver,
            ));
            if let Some(r) = &s.resident
                && on(Rule::SessionInterrupted)
            {
                let mut v = session_values(s, ctx.tz);
                v.insert("fim", format_local(end.stop, ctx.tz));
                v.insert(
                    "duracao",
                    format_duration((end.stop - s.start).num_seconds()),
                );
                v.insert("energia_kwh", format_energy(end.energy_wh));
                v.insert("ocioso_min", (end.idle_s.max(0) / 60).to_string());
                v.insert("motivo", interrupt_reason_pt_br(*reason).to_owned());
                out.messages.push(build(
                    ctx,
                    Rule::SessionInterrupted,
                    v,
                    session_scope(s),
                    format!("session:{}:session_interrupted:resident", s.session_id),
                    end.stop + delay(Rule::SessionInterrupted),
                    Some(r.resident_id),
                    Some(s.session_id),
                ));
            }
        }
        EventKind::SessionClosedStale { session: s, .. } => {
            // No message: vetric does not know when or how the session ended, and telling a
            // resident "interrupted" on a guess would be wrong more often than right.
            out.cancel.push(cancel_session(
                s,
                &PENDING_SESSION_RULES,
                CancelReason::SessionOver,
            ));
        }
        // Billing facts, not news: a session amended after a stale close or recorded after the
        // fact has already been (or never was) announced.
        EventKind::SessionAmended { .. } | EventKind::SessionRecorded { .. } => {}
        EventKind::ChargerFaulted {
            charger,
            connector_id,
            error_code,
            since,
        } => {
            if on(Rule::ChargerFaulted) {
                let mut v = BTreeMap::new();
                v.insert("carregador", charger.name.clone());
                v.insert("conector", connector_id.to_string());
                v.insert(
                    "erro",
                    if error_code.is_empty() || error_code == "NoError" {
                        "não informado".to_owned()
                    } else {
                        error_code.clone()
                    },
                );
                v.insert("desde", format_local(*since, ctx.tz));
                out.messages.push(build(
                    ctx,
                    Rule::ChargerFaulted,
                    v,
                    format!("charger:{}", charger.uuid),
                    format!(
                        "charger:{}:{connector_id}:charger_faulted:{}",
                        charger.uuid,
                        ts(*since)
                    ),
                    event.at + delay(Rule::ChargerFaulted),
                    None,
                    None,
                ));
            }
        }
        EventKind::ChargerOffline { charger, since } => {
            if on(Rule::ChargerOffline) {
                let mut v = BTreeMap::new();
                v.insert("carregador", charger.name.clone());
                v.insert(
                    "desde",
                    since.map_or_else(
                        || "nenhum sinal recebido".to_owned(),
                        |t| format_local(t, ctx.tz),
                    ),
                );
                out.messages.push(build(
                    ctx,
                    Rule::ChargerOffline,
                    v,
                    format!("charger:{}", charger.uuid),
                    format!(
                        "charger:{}:charger_offline:{}",
                        charger.uuid,
                        ts(since.unwrap_or(event.at))
                    ),
                    event.at + minutes(policy.charger_offline_min),
                    None,
                    None,
                ));
            }
        }
        EventKind::ChargerOnline { charger, .. } => {
            out.cancel.push(Cancellation {
                scope: format!("charger:{}", charger.uuid),
                rules: vec![Rule::ChargerOffline],
                reason: CancelReason::ChargerBack,
            });
        }
        EventKind::UnknownTag {
            tag,
            charger,
            connector_id,
            session_id,
        } => {
            if on(Rule::UnknownTag) {
                let mut v = BTreeMap::new();
                v.insert("tag", tag.as_str().to_owned());
                v.insert("carregador", charger.name.clone());
                v.insert("conector", connector_id.to_string());
                v.insert("quando", format_local(event.at, ctx.tz));
                out.messages.push(build(
                    ctx,
                    Rule::UnknownTag,
                    v,
                    "site".to_owned(),
                    format!("unknown_tag:{}", tag.as_str()),
                    event.at + delay(Rule::UnknownTag),
                    None,
                    Some(*session_id),
                ));
            }
        }
        EventKind::VendorDown {
            since,
            failed_cycles,
            last_failure,
        } => {
            let mut v = BTreeMap::new();
            v.insert("desde", format_local(*since, ctx.tz));
            v.insert("ciclos", failed_cycles.to_string());
            v.insert("erro", failure_pt_br(last_failure));
            push_operator(
                &mut out,
                ctx,
                Rule::VendorDown,
                v,
                event.at,
                format!("vendor_down:{}", ts(*since)),
            );
        }
        EventKind::VendorRecovered {
            down_since,
            failed_cycles,
        } => {
            let mut v = BTreeMap::new();
            v.insert("desde", format_local(*down_since, ctx.tz));
            v.insert("ciclos", failed_cycles.to_string());
            push_operator(
                &mut out,
                ctx,
                Rule::VendorRecovered,
                v,
                event.at,
                format!("vendor_recovered:{}", ts(*down_since)),
            );
        }
        EventKind::VendorShapeChanged { path } => {
            let mut v = BTreeMap::new();
            v.insert("campo", path.clone());
            v.insert("quando", format_local(event.at, ctx.tz));
            push_operator(
                &mut out,
                ctx,
                Rule::VendorShapeChanged,
                v,
                event.at,
                format!("vendor_shape_changed:{path}:{}", ts(event.at)),
            );
        }
        EventKind::ChargerCountDroppedToZero { previous } => {
            let mut v = BTreeMap::new();
            v.insert("anterior", previous.to_string());
            v.insert("quando", format_local(event.at, ctx.tz));
            push_operator(
                &mut out,
                ctx,
                Rule::ChargersZero,
                v,
                event.at,
                format!("chargers_zero:{}", ts(event.at)),
            );
        }
        EventKind::ChargerRecovered { .. } | EventKind::UnidentifiedCharging { .. } => {}
    }
    out
}

fn push_operator(
    out: &mut Plan,
    ctx: &PlanContext,
    rule: Rule,
    values: BTreeMap<&'static str, String>,
    at: DateTime<Utc>,
    dedup_key: String,
) {
    if ctx.policy.enabled(rule) {
        let not_before = at + minutes(ctx.policy.settings(rule).delay_min);
        out.messages.push(build(
            ctx,
            rule,
            values,
            "site".to_owned(),
            dedup_key,
            not_before,
            None,
            None,
        ));
    }
}

/// Plans a cycle's events in order. A message planned by an earlier event of the batch and
/// cancelled by a later one (a session first seen already over: `SessionStarted` then
/// `SessionFinished`) is dropped here rather than enqueued and cancelled; the cancellations
/// are still returned, for messages enqueued by earlier cycles.
///
/// Order with the store: the store applies a cycle's cancellations after inserting its
/// messages, which is right as long as no cancellation of a batch targets a message planned
/// *later* in the same batch. The tracker guarantees that: it emits at most one transition per
/// connector per snapshot, so "charging resumed" and a new "idle started" (or "charger online"
/// and "charger offline") of one session or charger never share a cycle.
pub fn plan_batch(events: &[Event], ctx: &PlanContext) -> Plan {
    let mut out = Plan::default();
    for e in events {
        let p = plan(e, ctx);
        for c in &p.cancel {
            out.messages
                .retain(|m| !(m.scope == c.scope && c.rules.contains(&m.rule)));
        }
        out.messages.extend(p.messages);
        out.cancel.extend(p.cancel);
    }
    out
}

/// An operator alert that no event carries (gateway down, stale backlog, test message), for
/// the dispatcher. Uses the default template; `values` fill its placeholders (`local` at
/// least; missing ones read "—"). `episode_key` makes the dedup key: one alert per episode
/// (e.g. the instant the gateway was first seen down).
pub fn plan_operator_alert(
    rule: Rule,
    values: &BTreeMap<&str, String>,
    at: DateTime<Utc>,
    episode_key: &str,
) -> Planned {
    let mut owned: BTreeMap<&'static str, String> = rule
        .placeholders()
        .iter()
        .filter_map(|p| values.get(p).map(|v| (*p, v.clone())))
        .collect();
    let site = values
        .get("local")
        .cloned()
        .unwrap_or_else(|| "vetric".to_owned());
    build_with(
        rule,
        default_template(rule),
        &site,
        &mut owned,
        "site".to_owned(),
        format!("{}:{episode_key}", rule.as_str()),
        at,
        None,
        None,
    )
}

/// [`plan_operator_alert`] honouring the site's policy: `None` when the rule is off; the site's
/// template and delay otherwise.
pub fn plan_operator_alert_for_site(
    ctx: &PlanContext,
    rule: Rule,
    values: &BTreeMap<&str, String>,
    at: DateTime<Utc>,
    episode_key: &str,
) -> Option<Planned> {
    if !ctx.policy.enabled(rule) {
        return None;
    }
    let settings = ctx.policy.settings(rule);
    let mut owned: BTreeMap<&'static str, String> = rule
        .placeholders()
        .iter()
        .filter_map(|p| values.get(p).map(|v| (*p, v.clone())))
        .collect();
    Some(build_with(
        rule,
        &settings.template,
        ctx.site_name,
        &mut owned,
        "site".to_owned(),
        format!("{}:{episode_key}", rule.as_str()),
        at + minutes(settings.delay_min),
        None,
        None,
    ))
}
