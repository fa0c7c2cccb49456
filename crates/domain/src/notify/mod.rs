//! Notification rules: which event notifies whom, when, with what text (issue #5 "Rules").
//!
//! Pure like the rest of the crate: the engine calls [`plan_batch`] with a cycle's events and
//! writes the result to the outbox in the same transaction as the events; the dispatcher calls
//! [`decide`] just before sending each message. Nothing here knows about channels or
//! recipients beyond the [`Audience`]: the engine expands a manager or operator message into
//! one row per recipient and channel.
//!
//! # Who hears about what
//!
//! Residents (WhatsApp, only when the session has a known resident — a session with an unknown
//! or missing tag notifies no resident):
//! - **session_started**: once per session at `start + delay_min` (default 0). Dedup key
//!   `session:{id}:session_started:resident`, so a vendor repeating the start enqueues nothing
//!   new (the store ignores a repeated key). A session first seen already over
//!   (`SessionStarted` immediately followed by its ending in the same batch) announces no start:
//!   [`plan_batch`] drops it; an ending event in a later cycle cancels it if still pending.
//!   `SessionRecorded` (ended before vetric watched) notifies nobody.
//! - **idle_started**: at `since + idle_grace_min`, where the grace is the policy's but never
//!   more than the tariff's in force for the session (warned before any fee). **idle_reminder**
//!   `k = 1..=reminder_max` at `since + grace + k × reminder_interval_min`. Both keys carry the
//!   idle period's start (`session:{id}:idle_started:{since}:resident`,
//!   `session:{id}:idle_reminder:{since}:{k}`), so a second idle period of the same session gets
//!   its own warning and reminders. `ChargingResumed` cancels the session's pending idle
//!   messages (reason `charging_resumed`); reminders of one period are exactly one interval
//!   apart, and a later period starts a full grace + interval after its own start, so no two
//!   reminders of a session are closer than the interval.
//! - **session_finished**: kWh, duration, idle minutes and cost (tariff in force on the local
//!   date of the start, BILLING.md via [`crate::cost::session_cost`]); without a tariff the cost
//!   reads "tarifa não configurada", and a session the tariff cannot price says why ("não
//!   calculado (…)"), never panics. **session_interrupted**: the same without the cost, with
//!   the reason. Both, and `SessionClosedStale`, cancel the session's pending started/idle
//!   messages (reason `session_over`).
//! - `SessionClosedStale` sends nothing: vetric gave up waiting for the vendor, so it does not
//!   know when or how the session ended, and a guess would mislead. `SessionAmended` (the late
//!   real figures of such a session) is for billing only.
//!
//! Managers:
//! - **charger_faulted** once per charger, connector and fault start
//!   (`charger:{uuid}:{connector}:charger_faulted:{since}`).
//! - **charger_offline** at `event.at + charger_offline_min`, cancelled by `ChargerOnline`
//!   (reason `charger_back`) if still pending. Key by the last heartbeat (or the event instant).
//! - **unknown_tag** once per tag per site, ever (`unknown_tag:{tag}`).
//!
//! Operators: **vendor_down** (key: the outage's start), **vendor_recovered** (key: the start of
//! the outage it ends), **vendor_shape_changed** (key: field and instant), **chargers_zero**
//! (`ChargerCountDroppedToZero`; key: instant) — each outage alerts once. **gateway_down**,
//! **backlog_stale** and **test** come from the dispatcher, not from events:
//! [`plan_operator_alert`]. [`Rule::whatsapp_allowed`] is false for the first two: an alert about
//! the gateway never travels through it.
//!
//! Statements: **statement_issued_manager** (e-mail to the site's managers, on by default) and
//! **statement_apartment_summary** (each resident's apartment summary on WhatsApp, opt-in: off
//! by default) when a month's statement is issued — [`plan_statement_issued`]; keys
//! `statement:{YYYY-MM}:v{N}:{rule}[:{resident_id}]`, scope `statement:{YYYY-MM}`.
//!
//! Every rule: off in the policy → nothing planned (and [`decide`] cancels what is pending).
//! `delay_min` delays the rules that have no timing field of their own.
//!
//! # Keys, scopes and codes
//!
//! Dedup keys are unique *within a site*; the engine prefixes the site (the outbox key is
//! global) and, per recipient, the channel and address. The scope (`session:{id}`,
//! `charger:{uuid}`, `site`) is what cancellations match. Every text ends with
//! `ref. {code}`, [`ref_code`] of the dedup key: what reconciliation looks for at the gateway
//! after a crash (evolution.md B5b), and what a resident can quote to the manager.
//!
//! # Templates
//!
//! pt-BR with `{{placeholders}}` ([`Rule::placeholders`]); [`validate_template`] at save time,
//! [`preview`] with sample data, [`default_template`] to reset. Dates are `dd/mm às HH:MM` in the
//! site's zone, durations `1 h 05 min`, energy `12,345`, money `R$ 12,34`.

mod decide;
mod plan;
mod policy;
mod rule;
mod statement;
mod template;
#[cfg(test)]
mod tests;

pub use decide::{Decision, QuietHours, ResidentPrefs, decide};
pub use plan::{
    Cancellation, Plan, PlanContext, Planned, format_duration, format_local, plan, plan_batch,
    plan_operator_alert, plan_operator_alert_for_site, ref_code,
};
pub use policy::{NotificationPolicy, PolicyProblem, RuleSettings};
pub use rule::{Audience, CancelReason, Rule};
pub use statement::{
    StatementResident, month_pt_br, plan_statement_issued, statement_subject, statement_table,
};
pub use template::{
    MAX_TEMPLATE_CHARS, TemplateError, default_template, preview, render, sample_values,
    validate_template,
};
