//! A site's notification policy: which rules are on, their templates, and the timings.
//!
//! Stored per site as JSON. Deserialisation is lenient on purpose (every field defaults, a
//! rule missing from `rules` uses its default settings) so that a policy saved by an older
//! vetric keeps working when rules or fields are added; [`NotificationPolicy::validate`] is
//! what the settings page runs before saving.

use super::rule::{Audience, Rule};
use super::template::{default_template, validate_template};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How one rule behaves at a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSettings {
    pub enabled: bool,
    /// Minutes to wait after the triggering instant before sending. Used by the rules whose
    /// timing has no dedicated policy field; must be 0 for `idle_started`, `idle_reminder` and
    /// `charger_offline` (timed by `idle_grace_min`, `reminder_interval_min`,
    /// `charger_offline_min`).
    #[serde(default)]
    pub delay_min: u32,
    pub template: String,
}

impl RuleSettings {
    /// Every rule starts on except the residents' statement summary, which a site turns on
    /// deliberately (opt-in: residents get a monthly bill on WhatsApp only if the condominium
    /// decided so).
    pub fn default_for(rule: Rule) -> Self {
        Self {
            enabled: rule != Rule::StatementApartmentSummary,
            delay_min: 0,
            template: default_template(rule).to_owned(),
        }
    }
}

/// One problem of a policy, for the settings page: the field and what to do, in pt-BR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    /// `idle_grace_min`, or `rules.session_started.template` for a rule's field.
    pub field: String,
    pub message: String,
}

pub const DEFAULT_IDLE_GRACE_MIN: u32 = 10;
pub const DEFAULT_REMINDER_INTERVAL_MIN: u32 = 30;
pub const DEFAULT_REMINDER_MAX: u32 = 3;
pub const DEFAULT_CHARGER_OFFLINE_MIN: u32 = 30;
pub const DEFAULT_VENDOR_DOWN_CYCLES: u32 = 3;
pub const DEFAULT_BACKLOG_ALERT_MIN: u32 = 15;
pub const DEFAULT_MAX_AGE_AFTER_QUIET_MIN: u32 = 12 * 60;
/// Upper bound of every minute setting except `max_age_after_quiet_min` (a day).
const MAX_MINUTES: u32 = 1440;
const MAX_REMINDERS: u32 = 20;

fn d_grace() -> u32 {
    DEFAULT_IDLE_GRACE_MIN
}
fn d_interval() -> u32 {
    DEFAULT_REMINDER_INTERVAL_MIN
}
fn d_rem_max() -> u32 {
    DEFAULT_REMINDER_MAX
}
fn d_offline() -> u32 {
    DEFAULT_CHARGER_OFFLINE_MIN
}
fn d_down() -> u32 {
    DEFAULT_VENDOR_DOWN_CYCLES
}
fn d_backlog() -> u32 {
    DEFAULT_BACKLOG_ALERT_MIN
}
fn d_max_age() -> u32 {
    DEFAULT_MAX_AGE_AFTER_QUIET_MIN
}

/// A site's notification policy. See the module docs of [`crate::notify`] for the semantics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPolicy {
    /// Per-rule settings; a rule missing here uses [`RuleSettings::default_for`].
    #[serde(default)]
    pub rules: BTreeMap<Rule, RuleSettings>,
    /// Minutes a car may sit idle before the resident is told. Never more than the tariff's
    /// idle grace, so the warning comes before any fee.
    #[serde(default = "d_grace")]
    pub idle_grace_min: u32,
    #[serde(default = "d_interval")]
    pub reminder_interval_min: u32,
    #[serde(default = "d_rem_max")]
    pub reminder_max: u32,
    /// Minutes a charger must stay offline before the managers are told.
    #[serde(default = "d_offline")]
    pub charger_offline_min: u32,
    /// Failed poll cycles before "vendor down" (the ingest feeds this to the vendor link).
    #[serde(default = "d_down")]
    pub vendor_down_cycles: u32,
    /// The oldest unsent message may wait this long before the operators are alerted.
    #[serde(default = "d_backlog")]
    pub backlog_alert_min: u32,
    /// A resident message held by quiet hours and older than this when they end is cancelled
    /// (nobody wants "your car started charging" from last night at 7 a.m.).
    #[serde(default = "d_max_age")]
    pub max_age_after_quiet_min: u32,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        Self {
            rules: Rule::ALL
                .into_iter()
                .map(|r| (r, RuleSettings::default_for(r)))
                .collect(),
            idle_grace_min: DEFAULT_IDLE_GRACE_MIN,
            reminder_interval_min: DEFAULT_REMINDER_INTERVAL_MIN,
            reminder_max: DEFAULT_REMINDER_MAX,
            charger_offline_min: DEFAULT_CHARGER_OFFLINE_MIN,
            vendor_down_cycles: DEFAULT_VENDOR_DOWN_CYCLES,
            backlog_alert_min: DEFAULT_BACKLOG_ALERT_MIN,
            max_age_after_quiet_min: DEFAULT_MAX_AGE_AFTER_QUIET_MIN,
        }
    }
}

impl NotificationPolicy {
    /// The settings of `rule` (its defaults when the stored policy does not mention it).
    pub fn settings(&self, rule: Rule) -> RuleSettings {
        self.rules
            .get(&rule)
            .cloned()
            .unwrap_or_else(|| RuleSettings::default_for(rule))
    }

    /// Whether `rule` is on; a rule the stored policy does not mention (saved before the rule
    /// existed) has its default, so an opt-in rule stays off until a site turns it on.
    pub fn enabled(&self, rule: Rule) -> bool {
        self.rules
            .get(&rule)
            .map_or_else(|| RuleSettings::default_for(rule).enabled, |s| s.enabled)
    }

    /// Every problem of this policy, pt-BR. `tariff_idle_grace_min` is the idle grace of the
    /// site's tariff in force, when it has one.
    pub fn validate(&self, tariff_idle_grace_min: Option<u32>) -> Result<(), Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(PolicyProblem {
                field: field.to_owned(),
                message,
            })
        };
        let range = |v: u32, lo: u32, hi: u32| v >= lo && v <= hi;
        if self.idle_grace_min > MAX_MINUTES {
            problem(
                "idle_grace_min",
                format!("use no máximo {MAX_MINUTES} minutos"),
            );
        }
        if let Some(tariff) = tariff_idle_grace_min
            && self.idle_grace_min > tariff
        {
            problem(
                "idle_grace_min",
                format!(
                    "o aviso de veículo parado deve sair antes da cobrança por ociosidade: use \
                     no máximo {tariff} minutos (a tolerância da tarifa)"
                ),
            );
        }
        if !range(self.reminder_interval_min, 1, MAX_MINUTES) {
            problem(
                "reminder_interval_min",
                format!("use de 1 a {MAX_MINUTES} minutos entre lembretes"),
            );
        }
        if self.reminder_max > MAX_REMINDERS {
            problem(
                "reminder_max",
                format!("use no máximo {MAX_REMINDERS} lembretes (0 desliga os lembretes)"),
            );
        }
        if !range(self.charger_offline_min, 1, MAX_MINUTES) {
            problem(
                "charger_offline_min",
                format!("use de 1 a {MAX_MINUTES} minutos"),
            );
        }
        if !range(self.vendor_down_cycles, 1, 1000) {
            problem("vendor_down_cycles", "use de 1 a 1000 ciclos".to_owned());
        }
        if !range(self.backlog_alert_min, 1, MAX_MINUTES) {
            problem(
                "backlog_alert_min",
                format!("use de 1 a {MAX_MINUTES} minutos"),
            );
        }
        if !range(self.max_age_after_quiet_min, 1, 7 * MAX_MINUTES) {
            problem(
                "max_age_after_quiet_min",
                format!("use de 1 a {} minutos (uma semana)", 7 * MAX_MINUTES),
            );
        }
        for (rule, s) in &self.rules {
            let field = |name: &str| format!("rules.{}.{name}", rule.as_str());
            if let Err(e) = validate_template(*rule, &s.template) {
                problem(&field("template"), e.to_string());
            }
            let timed_elsewhere = matches!(
                rule,
                Rule::IdleStarted | Rule::IdleReminder | Rule::ChargerOffline
            );
            if timed_elsewhere && s.delay_min != 0 {
                problem(
                    &field("delay_min"),
                    "este aviso tem o seu próprio prazo (tolerância, intervalo ou tempo sem \
                     comunicação); deixe o atraso em 0"
                        .to_owned(),
                );
            } else if s.delay_min > MAX_MINUTES {
                problem(
                    &field("delay_min"),
                    format!("use no máximo {MAX_MINUTES} minutos"),
                );
            }
            if *rule == Rule::Test && !s.enabled {
                problem(
                    &field("enabled"),
                    "a mensagem de teste não pode ser desativada".to_owned(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The rules of one audience, in display order (for the settings page).
    pub fn rules_for(audience: Audience) -> impl Iterator<Item = Rule> {
        Rule::ALL
            .into_iter()
            .filter(move |r| r.audience() == audience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_json() {
        let p = NotificationPolicy::default();
        p.validate(None).unwrap();
        p.validate(Some(15)).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"session_started\""), "{json}");
        let back: NotificationPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn an_old_or_partial_policy_reads_with_defaults() {
        let p: NotificationPolicy = serde_json::from_str(
            r#"{"idle_grace_min": 5, "rules": {"session_started":
                {"enabled": false, "template": "Oi {{nome}}"}}}"#,
        )
        .unwrap();
        assert_eq!(p.idle_grace_min, 5);
        assert_eq!(p.reminder_interval_min, DEFAULT_REMINDER_INTERVAL_MIN);
        assert!(!p.enabled(Rule::SessionStarted));
        assert!(p.enabled(Rule::SessionFinished));
        assert_eq!(
            p.settings(Rule::SessionFinished).template,
            default_template(Rule::SessionFinished)
        );
        p.validate(None).unwrap();
    }

    #[test]
    fn problems_name_the_field() {
        let mut p = NotificationPolicy {
            idle_grace_min: 20,
            reminder_interval_min: 0,
            ..NotificationPolicy::default()
        };
        p.rules.insert(
            Rule::SessionStarted,
            RuleSettings {
                enabled: true,
                delay_min: 5,
                template: "Oi {{nome}} {{custo}}".into(),
            },
        );
        p.rules.get_mut(&Rule::IdleStarted).unwrap().delay_min = 3;
        let problems = p.validate(Some(15)).unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "idle_grace_min",
                "reminder_interval_min",
                "rules.session_started.template",
                "rules.idle_started.delay_min",
            ]
        );
        assert!(problems[0].message.contains("15 minutos"), "{problems:?}");
        assert!(problems[2].message.contains("{{custo}}"), "{problems:?}");
        // Without a tariff the grace only has to be sane.
        let mut q = NotificationPolicy {
            idle_grace_min: 20,
            ..NotificationPolicy::default()
        };
        q.validate(None).unwrap();
        q.idle_grace_min = 1441;
        assert!(q.validate(None).is_err());
    }
}
