//! The last word before a message leaves: the dispatcher asks [`decide`] just before sending,
//! because a resident's preferences and the clock may have changed since the message was
//! planned.
//!
//! - A disabled rule is cancelled ([`CancelReason::RuleDisabled`]), whoever the audience.
//! - Not due yet: wait until `not_before`.
//! - Managers and operators: send. Resident preferences never delay an alert.
//! - Residents: opted out of the rule → cancelled ([`CancelReason::OptedOut`]). Inside quiet
//!   hours → wait until they end (the first instant the local clock reads the end time, so a
//!   DST gap or overlap cannot make the wait end early or never). After quiet hours that ended
//!   after `not_before` (the message was held by them), a message older than the policy's
//!   `max_age_after_quiet_min` is cancelled ([`CancelReason::TooOldAfterQuietHours`]).

use super::policy::NotificationPolicy;
use super::rule::{Audience, CancelReason, Rule};
use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A resident's quiet hours, local time of the site: `[start, end)`. May wrap midnight
/// (22:00–07:00). `start == end` means no quiet hours at all (an empty window, not a full day:
/// a resident who wants nothing opts out instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// True when the local wall-clock time `t` is inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start == self.end {
            false
        } else if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// What a resident chose. Default: every rule on, no quiet hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentPrefs {
    pub opted_out: BTreeSet<Rule>,
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Not now: ask again at this instant (always after `now`).
    WaitUntil(DateTime<Utc>),
    Cancel(CancelReason),
}

/// See the module docs.
pub fn decide(
    rule: Rule,
    audience: Audience,
    not_before: DateTime<Utc>,
    prefs: &ResidentPrefs,
    policy: &NotificationPolicy,
    tz: Tz,
    now: DateTime<Utc>,
) -> Decision {
    if !policy.enabled(rule) {
        return Decision::Cancel(CancelReason::RuleDisabled);
    }
    if audience != Audience::Resident {
        return if now < not_before {
            Decision::WaitUntil(not_before)
        } else {
            Decision::Send
        };
    }
    if prefs.opted_out.contains(&rule) {
        return Decision::Cancel(CancelReason::OptedOut);
    }
    if now < not_before {
        return Decision::WaitUntil(not_before);
    }
    let Some(quiet) = prefs.quiet_hours.filter(|q| q.start != q.end) else {
        return Decision::Send;
    };
    let local = now.with_timezone(&tz);
    let today = local.date_naive();
    if quiet.contains(local.time()) {
        // The window that holds `now` ends today, or tomorrow when it wraps and `now` is in
        // its evening part.
        let end_date = if quiet.start > quiet.end && local.time() >= quiet.start {
            today.checked_add_days(Days::new(1))
        } else {
            Some(today)
        };
        let end = end_date.and_then(|d| first_instant_at_or_after(tz, d, quiet.end));
        let minimum = now + TimeDelta::minutes(1);
        return Decision::WaitUntil(end.filter(|e| *e > now).unwrap_or(minimum));
    }
    // Outside the window: was the message held by the window that ended most recently?
    let last_end = [0u64, 1, 2]
        .into_iter()
        .filter_map(|back| today.checked_sub_days(Days::new(back)))
        .filter_map(|d| first_instant_at_or_after(tz, d, quiet.end))
        .filter(|e| *e <= now)
        .max();
    let max_age = TimeDelta::minutes(i64::from(policy.max_age_after_quiet_min));
    match last_end {
        Some(end) if end > not_before && now - not_before > max_age => {
            Decision::Cancel(CancelReason::TooOldAfterQuietHours)
        }
        _ => Decision::Send,
    }
}

/// The first instant at which the local clock of `tz` on `date` reads `time` or later: the
/// instant itself, the earlier one in a fall-back overlap, the end of a spring-forward gap.
fn first_instant_at_or_after(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let mut local = date.and_time(time);
    // Gaps are at most a few hours (historic zones have odd ones); step by minutes.
    for _ in 0..(26 * 60) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => return Some(a.min(b).with_timezone(&Utc)),
            LocalResult::None => {
                // Seconds of `time` are kept on the first step only; a gap ends on a minute.
                local = local.checked_add_signed(TimeDelta::minutes(1))?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const SP: Tz = chrono_tz::America::Sao_Paulo;

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// 2026-02-10 local São Paulo (UTC−3) at h:m.
    fn sp(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        SP.with_ymd_and_hms(2026, 2, d, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn quiet(s: (u32, u32), e: (u32, u32)) -> ResidentPrefs {
        ResidentPrefs {
            opted_out: BTreeSet::new(),
            quiet_hours: Some(QuietHours {
                start: hm(s.0, s.1),
                end: hm(e.0, e.1),
            }),
        }
    }

    fn d(rule: Rule, nb: DateTime<Utc>, prefs: &ResidentPrefs, now: DateTime<Utc>) -> Decision {
        decide(
            rule,
            rule.audience(),
            nb,
            prefs,
            &NotificationPolicy::default(),
            SP,
            now,
        )
    }

    #[test]
    fn quiet_hours_wrapping_midnight_hold_resident_messages_until_they_end() {
        let p = quiet((22, 0), (7, 0));
        let r = Rule::SessionStarted;
        assert_eq!(d(r, sp(10, 21, 0), &p, sp(10, 21, 59)), Decision::Send);
        assert_eq!(
            d(r, sp(10, 22, 0), &p, sp(10, 22, 0)),
            Decision::WaitUntil(sp(11, 7, 0))
        );
        assert_eq!(
            d(r, sp(10, 23, 0), &p, sp(11, 3, 0)),
            Decision::WaitUntil(sp(11, 7, 0))
        );
        // Held 8 h 40 min: still under the 12 h default → sent when the window ends.
        assert_eq!(d(r, sp(10, 22, 20), &p, sp(11, 7, 0)), Decision::Send);
        // Managers and operators ignore quiet hours.
        assert_eq!(
            d(Rule::ChargerFaulted, sp(10, 23, 0), &p, sp(10, 23, 0)),
            Decision::Send
        );
    }

    #[test]
    fn a_message_held_too_long_by_quiet_hours_is_cancelled() {
        let p = quiet((22, 0), (7, 0));
        let policy = NotificationPolicy {
            max_age_after_quiet_min: 60,
            ..NotificationPolicy::default()
        };
        let dec = |nb, now| {
            decide(
                Rule::IdleStarted,
                Audience::Resident,
                nb,
                &p,
                &policy,
                SP,
                now,
            )
        };
        assert_eq!(
            dec(sp(10, 23, 0), sp(11, 7, 1)),
            Decision::Cancel(CancelReason::TooOldAfterQuietHours)
        );
        // Planned after the window ended and merely late: not a quiet-hours matter.
        assert_eq!(dec(sp(11, 7, 30), sp(11, 9, 0)), Decision::Send);
    }

    #[test]
    fn opt_out_disabled_rule_and_not_yet_due() {
        let mut p = ResidentPrefs::default();
        p.opted_out.insert(Rule::IdleReminder);
        assert_eq!(
            d(Rule::IdleReminder, sp(10, 12, 0), &p, sp(10, 12, 0)),
            Decision::Cancel(CancelReason::OptedOut)
        );
        assert_eq!(
            d(Rule::IdleStarted, sp(10, 12, 5), &p, sp(10, 12, 0)),
            Decision::WaitUntil(sp(10, 12, 5))
        );
        let mut policy = NotificationPolicy::default();
        policy.rules.get_mut(&Rule::ChargerOffline).unwrap().enabled = false;
        assert_eq!(
            decide(
                Rule::ChargerOffline,
                Audience::Manager,
                sp(10, 12, 0),
                &p,
                &policy,
                SP,
                sp(10, 12, 0)
            ),
            Decision::Cancel(CancelReason::RuleDisabled)
        );
    }

    #[test]
    fn quiet_hours_end_in_a_dst_gap_waits_for_the_gap_end() {
        // Brazil's old DST: 2018-11-04 00:00 jumped to 01:00 in São Paulo.
        let p = quiet((22, 0), (0, 30));
        let now = Utc.with_ymd_and_hms(2018, 11, 4, 2, 0, 0).unwrap(); // 23:00 local on the 3rd
        let expected = Utc.with_ymd_and_hms(2018, 11, 4, 3, 0, 0).unwrap(); // 01:00 local (−02)
        assert_eq!(
            d(Rule::SessionStarted, now, &p, now),
            Decision::WaitUntil(expected)
        );
    }

    fn any_tz() -> impl Strategy<Value = Tz> {
        (0..chrono_tz::TZ_VARIANTS.len()).prop_map(|i| chrono_tz::TZ_VARIANTS[i])
    }

    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 1900..2200: far beyond any real use, inside chrono's range.
        (-2_208_988_800_i64..7_258_118_400_i64)
            .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        (0..Rule::ALL.len()).prop_map(|i| Rule::ALL[i])
    }

    proptest! {
        #[test]
        fn decide_never_panics_and_waits_are_in_the_future(
            tz in any_tz(), now in any_instant(), nb_off in -200_000i64..200_000,
            rule in any_rule(), sh in 0u32..24, sm in 0u32..60, eh in 0u32..24, em in 0u32..60,
        ) {
            let prefs = quiet((sh, sm), (eh, em));
            let nb = now + TimeDelta::seconds(nb_off);
            let policy = NotificationPolicy::default();
            for audience in [Audience::Resident, Audience::Manager, Audience::Operator] {
                if let Decision::WaitUntil(t) = decide(rule, audience, nb, &prefs, &policy, tz, now) {
                    prop_assert!(t > now);
                }
            }
        }

        #[test]
        fn never_send_inside_quiet_hours(
            tz in any_tz(), now in any_instant(), nb_back in 0i64..100_000,
            sh in 0u32..24, sm in 0u32..60, eh in 0u32..24, em in 0u32..60,
        ) {
            let prefs = quiet((sh, sm), (eh, em));
            let q = prefs.quiet_hours.unwrap();
            let nb = now - TimeDelta::seconds(nb_back);
            let dec = decide(Rule::SessionFinished, Audience::Resident, nb, &prefs,
                &NotificationPolicy::default(), tz, now);
            if q.contains(now.with_timezone(&tz).time()) {
                prop_assert_ne!(dec, Decision::Send);
            }
        }

        #[test]
        fn an_opted_out_rule_is_never_sent(
            tz in any_tz(), now in any_instant(), nb_off in -100_000i64..100_000, rule in any_rule(),
        ) {
            let mut prefs = ResidentPrefs::default();
            prefs.opted_out.insert(rule);
            // Every rule on (an opt-in rule is off by default, which would cancel it first).
            let mut policy = NotificationPolicy::default();
            policy.rules.values_mut().for_each(|s| s.enabled = true);
            let dec = decide(rule, Audience::Resident, now + TimeDelta::seconds(nb_off), &prefs,
                &policy, tz, now);
            prop_assert_eq!(dec, Decision::Cancel(CancelReason::OptedOut));
        }
    }
}
