//! Scenario and property tests of the planner (templates, policy and `decide` test themselves).

use super::*;
use crate::Tag;
use crate::directory::ResidentRef;
use crate::event::{
    ChargerRef, Event, EventKind, FailureClass, InterruptCause, SessionEnd, SessionInfo,
};
use crate::tariff::{TariffHistory, TariffSpec};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use std::collections::BTreeMap;

const SP: Tz = chrono_tz::America::Sao_Paulo;

/// São Paulo local time (UTC−3 in 2026) as UTC.
fn sp(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    SP.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn charger() -> ChargerRef {
    ChargerRef {
        uuid: "u-1".into(),
        name: "Palmeiras 1".into(),
    }
}

fn session(id: i64, resident: bool) -> SessionInfo {
    SessionInfo {
        session_id: id,
        charger: charger(),
        connector_id: 1,
        tag: Some(Tag::parse("5be07d1a").unwrap()),
        tag_pk: Some(5120418),
        resident: resident.then(|| ResidentRef {
            resident_id: 7,
            name: "Maria".into(),
            apartment: "A-302".into(),
        }),
        // Thursday 2026-03-05 16:30 local.
        start: sp(2026, 3, 5, 16, 30),
    }
}

fn end(stop: DateTime<Utc>, wh: Option<i64>, idle_s: i64) -> SessionEnd {
    SessionEnd {
        stop,
        energy_wh: wh,
        duration_s: 0,
        idle_s,
        stop_reason: Some("Remote".into()),
    }
}

fn tariffs() -> TariffHistory {
    let t = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_grace_min: Some(15.into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    TariffHistory::new([t]).unwrap()
}

fn ctx<'a>(policy: &'a NotificationPolicy, tariffs: Option<&'a TariffHistory>) -> PlanContext<'a> {
    PlanContext {
        site_name: "Residencial Palmeiras",
        tz: SP,
        policy,
        tariffs,
    }
}

fn ev(at: DateTime<Utc>, kind: EventKind) -> Event {
    Event::new(at, kind)
}

#[test]
fn session_started_is_one_message_for_a_known_resident() {
    let policy = NotificationPolicy::default();
    let c = ctx(&policy, None);
    let s = session(432998, true);
    let p = plan(
        &ev(s.start, EventKind::SessionStarted { session: s.clone() }),
        &c,
    );
    assert!(p.cancel.is_empty());
    let [m] = p.messages.as_slice() else {
        panic!("{p:?}")
    };
    assert_eq!(m.rule, Rule::SessionStarted);
    assert_eq!(m.audience, Audience::Resident);
    assert_eq!(m.resident_id, Some(7));
    assert_eq!(m.session_id, Some(432998));
    assert_eq!(m.scope, "session:432998");
    assert_eq!(m.dedup_key, "session:432998:session_started:resident");
    assert_eq!(m.not_before, s.start);
    assert_eq!(
        m.text,
        format!(
            "Olá, Maria! A recarga do seu veículo começou no carregador *Palmeiras 1* \
             (Residencial Palmeiras) em 05/03 às 16:30.\n\nref. {}",
            m.ref_code
        )
    );
    assert_eq!(m.subject, "Recarga iniciada · Residencial Palmeiras");

    // No resident: nobody to tell.
    let anon = session(1, false);
    assert!(
        plan(
            &ev(anon.start, EventKind::SessionStarted { session: anon }),
            &c
        )
        .is_empty()
    );

    // A delay moves it; a disabled rule plans nothing.
    let mut delayed = NotificationPolicy::default();
    delayed
        .rules
        .get_mut(&Rule::SessionStarted)
        .unwrap()
        .delay_min = 5;
    let p = plan(
        &ev(s.start, EventKind::SessionStarted { session: s.clone() }),
        &ctx(&delayed, None),
    );
    assert_eq!(p.messages[0].not_before, s.start + TimeDelta::minutes(5));
    delayed
        .rules
        .get_mut(&Rule::SessionStarted)
        .unwrap()
        .enabled = false;
    assert!(
        plan(
            &ev(s.start, EventKind::SessionStarted { session: s }),
            &ctx(&delayed, None)
        )
        .is_empty()
    );
}

#[test]
fn a_session_first_seen_already_over_announces_no_start_and_recorded_ones_nothing() {
    let policy = NotificationPolicy::default();
    let tariffs = tariffs();
    let c = ctx(&policy, Some(&tariffs));
    let s = session(5, true);
    let stop = sp(2026, 3, 5, 18, 30);
    let batch = [
        ev(stop, EventKind::SessionStarted { session: s.clone() }),
        ev(
            stop,
            EventKind::SessionFinished {
                session: s.clone(),
                end: end(stop, Some(10_000), 0),
            },
        ),
    ];
    let p = plan_batch(&batch, &c);
    let rules: Vec<_> = p.messages.iter().map(|m| m.rule).collect();
    assert_eq!(rules, [Rule::SessionFinished]);
    assert_eq!(
        p.cancel,
        [Cancellation {
            scope: "session:5".into(),
            rules: vec![Rule::SessionStarted, Rule::IdleStarted, Rule::IdleReminder],
            reason: CancelReason::SessionOver,
        }]
    );
    let recorded = ev(
        stop,
        EventKind::SessionRecorded {
            session: s,
            end: end(stop, Some(10_000), 0),
        },
    );
    assert!(plan(&recorded, &c).is_empty());
}

#[test]
fn finished_message_carries_the_figures_and_the_billing_cost() {
    let policy = NotificationPolicy::default();
    let tariffs = tariffs();
    let s = session(9, true);
    let stop = sp(2026, 3, 5, 18, 30);
    // BILLING.md: Thursday 16:30 → 18:30, 10 kWh → R$ 18,05; idle 40 min → R$ 2,50.
    let e = ev(
        stop,
        EventKind::SessionFinished {
            session: s.clone(),
            end: end(stop, Some(10_000), 40 * 60),
        },
    );
    let m = &plan(&e, &ctx(&policy, Some(&tariffs))).messages[0];
    assert_eq!(m.not_before, stop);
    assert!(m.text.contains("terminou em 05/03 às 18:30"), "{}", m.text);
    assert!(m.text.contains("Energia: 10,000 kWh"), "{}", m.text);
    assert!(m.text.contains("Duração: 2 h 00 min"), "{}", m.text);
    assert!(m.text.contains("Tempo parado: 40 min"), "{}", m.text);
    assert!(m.text.contains("Custo: *R$ 20,55*"), "{}", m.text);
    assert!(m.text.ends_with(&format!("ref. {}", m.ref_code)));

    // No tariff: said so.
    let m = &plan(&e, &ctx(&policy, None)).messages[0];
    assert!(
        m.text.contains("Custo: *tarifa não configurada*"),
        "{}",
        m.text
    );

    // Unpriceable (energy 0, no energy): said why, no panic.
    let zero = ev(
        stop,
        EventKind::SessionFinished {
            session: s.clone(),
            end: end(stop, Some(0), 0),
        },
    );
    let m = &plan(&zero, &ctx(&policy, Some(&tariffs))).messages[0];
    assert!(
        m.text
            .contains("não calculado (energia menor ou igual a zero"),
        "{}",
        m.text
    );
    let none = ev(
        stop,
        EventKind::SessionFinished {
            session: s,
            end: end(stop, None, 0),
        },
    );
    let m = &plan(&none, &ctx(&policy, Some(&tariffs))).messages[0];
    assert!(m.text.contains("Energia: não informada kWh"), "{}", m.text);
    assert!(m.text.contains("energia não informada"), "{}", m.text);
}

#[test]
fn interrupted_and_stale_endings() {
    let policy = NotificationPolicy::default();
    let c = ctx(&policy, None);
    let s = session(11, true);
    let stop = sp(2026, 3, 5, 17, 35);
    let p = plan(
        &ev(
            stop,
            EventKind::SessionInterrupted {
                session: s.clone(),
                end: end(stop, Some(1_234), 0),
                reason: InterruptCause::ConnectorFaulted,
            },
        ),
        &c,
    );
    assert_eq!(p.messages[0].rule, Rule::SessionInterrupted);
    assert!(p.messages[0].text.contains("o carregador entrou em falha"));
    assert!(
        p.messages[0].text.contains("1,234 kWh em 1 h 05 min"),
        "{}",
        p.messages[0].text
    );
    assert_eq!(p.cancel[0].reason, CancelReason::SessionOver);

    let p = plan(
        &ev(
            stop,
            EventKind::SessionClosedStale {
                session: s,
                energy_wh: None,
                idle_s: 0,
                reason: "no stop".into(),
            },
        ),
        &c,
    );
    assert!(p.messages.is_empty());
    assert_eq!(p.cancel.len(), 1);
}

#[test]
fn idle_warning_after_the_grace_then_reminders_and_resume_cancels_them() {
    let policy = NotificationPolicy::default();
    let c = ctx(&policy, None);
    let s = session(21, true);
    let since = sp(2026, 3, 5, 18, 0);
    let p = plan(
        &ev(
            since,
            EventKind::IdleStarted {
                session: s.clone(),
                since,
            },
        ),
        &c,
    );
    let got: Vec<_> = p
        .messages
        .iter()
        .map(|m| (m.rule, m.not_before, m.dedup_key.as_str()))
        .collect();
    let t = since.timestamp();
    let k1 = format!("session:21:idle_reminder:{t}:1");
    let k2 = format!("session:21:idle_reminder:{t}:2");
    let k3 = format!("session:21:idle_reminder:{t}:3");
    let started = format!("session:21:idle_started:{t}:resident");
    assert_eq!(
        got,
        [
            (
                Rule::IdleStarted,
                since + TimeDelta::minutes(10),
                started.as_str()
            ),
            (
                Rule::IdleReminder,
                since + TimeDelta::minutes(40),
                k1.as_str()
            ),
            (
                Rule::IdleReminder,
                since + TimeDelta::minutes(70),
                k2.as_str()
            ),
            (
                Rule::IdleReminder,
                since + TimeDelta::minutes(100),
                k3.as_str()
            ),
        ]
    );
    assert!(
        p.messages[2].text.starts_with("Lembrete 2 de 3: Maria"),
        "{}",
        p.messages[2].text
    );
    assert!(
        p.messages[2].text.contains("há 70 min"),
        "{}",
        p.messages[2].text
    );

    let p = plan(
        &ev(
            since,
            EventKind::ChargingResumed {
                session: s.clone(),
                since,
                idle_s: 60,
            },
        ),
        &c,
    );
    assert_eq!(
        p.cancel,
        [Cancellation {
            scope: "session:21".into(),
            rules: vec![Rule::IdleStarted, Rule::IdleReminder],
            reason: CancelReason::ChargingResumed,
        }]
    );

    // A second idle period gets keys of its own.
    let later = since + TimeDelta::minutes(50);
    let p2 = plan(
        &ev(
            later,
            EventKind::IdleStarted {
                session: s,
                since: later,
            },
        ),
        &c,
    );
    for m in &p2.messages {
        assert!(m.dedup_key.contains(&later.timestamp().to_string()));
    }
}

#[test]
fn the_idle_warning_never_comes_after_the_tariffs_grace() {
    let tariffs = tariffs(); // grace 15
    let policy = NotificationPolicy {
        idle_grace_min: 30, // saved before the tariff changed
        ..NotificationPolicy::default()
    };
    let s = session(22, true);
    let since = sp(2026, 3, 5, 18, 0);
    let p = plan(
        &ev(since, EventKind::IdleStarted { session: s, since }),
        &ctx(&policy, Some(&tariffs)),
    );
    assert_eq!(p.messages[0].not_before, since + TimeDelta::minutes(15));
}

#[test]
fn manager_alerts() {
    let policy = NotificationPolicy::default();
    let c = ctx(&policy, None);
    let at = sp(2026, 3, 5, 10, 0);
    let p = plan(
        &ev(
            at,
            EventKind::ChargerFaulted {
                charger: charger(),
                connector_id: 2,
                error_code: "GroundFailure".into(),
                since: at,
            },
        ),
        &c,
    );
    let m = &p.messages[0];
    assert_eq!(
        (m.audience, m.scope.as_str()),
        (Audience::Manager, "charger:u-1")
    );
    assert_eq!(
        m.dedup_key,
        format!("charger:u-1:2:charger_faulted:{}", at.timestamp())
    );
    assert!(m.text.contains("Erro informado: GroundFailure"));

    let p = plan(
        &ev(
            at,
            EventKind::ChargerOffline {
                charger: charger(),
                since: None,
            },
        ),
        &c,
    );
    assert_eq!(p.messages[0].not_before, at + TimeDelta::minutes(30));
    assert!(p.messages[0].text.contains("nenhum sinal recebido"));
    let p = plan(
        &ev(
            at,
            EventKind::ChargerOnline {
                charger: charger(),
                last_heartbeat: Some(at),
            },
        ),
        &c,
    );
    assert_eq!(
        p.cancel,
        [Cancellation {
            scope: "charger:u-1".into(),
            rules: vec![Rule::ChargerOffline],
            reason: CancelReason::ChargerBack,
        }]
    );

    let tag = |at| {
        plan(
            &ev(
                at,
                EventKind::UnknownTag {
                    tag: Tag::parse("ab12").unwrap(),
                    charger: charger(),
                    connector_id: 1,
                    session_id: 77,
                },
            ),
            &c,
        )
        .messages
        .remove(0)
    };
    let (a, b) = (tag(at), tag(at + TimeDelta::days(3)));
    assert_eq!(a.dedup_key, "unknown_tag:AB12");
    assert_eq!(a.dedup_key, b.dedup_key);
    assert_eq!(a.session_id, Some(77));
}

#[test]
fn operator_alerts_once_per_episode() {
    let policy = NotificationPolicy::default();
    let c = ctx(&policy, None);
    let since = sp(2026, 3, 5, 10, 0);
    let down = |at| {
        plan(
            &ev(
                at,
                EventKind::VendorDown {
                    since,
                    failed_cycles: 3,
                    last_failure: FailureClass::Unavailable,
                },
            ),
            &c,
        )
        .messages
        .remove(0)
    };
    let (a, b) = (
        down(since + TimeDelta::seconds(30)),
        down(since + TimeDelta::hours(1)),
    );
    assert_eq!(a.dedup_key, b.dedup_key);
    assert_eq!(a.audience, Audience::Operator);
    assert!(a.text.contains("3 ciclos seguidos"), "{}", a.text);
    let rec = plan(
        &ev(
            since,
            EventKind::VendorRecovered {
                down_since: since,
                failed_cycles: 4,
            },
        ),
        &c,
    );
    assert_eq!(rec.messages[0].rule, Rule::VendorRecovered);
    let zero = plan(
        &ev(since, EventKind::ChargerCountDroppedToZero { previous: 5 }),
        &c,
    );
    assert_eq!(zero.messages[0].rule, Rule::ChargersZero);
    assert!(zero.messages[0].text.contains("antes: 5"));
    let shape = plan(
        &ev(
            since,
            EventKind::VendorShapeChanged {
                path: "chargePointList".into(),
            },
        ),
        &c,
    );
    assert!(shape.messages[0].text.contains("campo chargePointList"));

    let mut values = BTreeMap::new();
    values.insert("local", "Residencial Palmeiras".to_owned());
    values.insert("estado", "close".to_owned());
    let g = plan_operator_alert(Rule::GatewayDown, &values, since, "2026-03-05T13:00:00Z");
    assert_eq!(g.dedup_key, "gateway_down:2026-03-05T13:00:00Z");
    assert!(g.text.contains("(estado: close) desde —"), "{}", g.text);
    assert!(g.text.ends_with(&format!("ref. {}", g.ref_code)));
    let mut off = NotificationPolicy::default();
    off.rules.get_mut(&Rule::BacklogStale).unwrap().enabled = false;
    assert!(
        plan_operator_alert_for_site(&ctx(&off, None), Rule::BacklogStale, &values, since, "x")
            .is_none()
    );
}

#[test]
fn a_broken_stored_template_falls_back_to_the_default() {
    let mut policy = NotificationPolicy::default();
    policy
        .rules
        .get_mut(&Rule::SessionStarted)
        .unwrap()
        .template = "Oi {{sumiu}}".into();
    let s = session(3, true);
    let p = plan(
        &ev(s.start, EventKind::SessionStarted { session: s }),
        &ctx(&policy, None),
    );
    assert!(p.messages[0].text.starts_with("Olá, Maria!"));
}

#[test]
fn ref_codes_are_short_unambiguous_and_stable() {
    let a = ref_code("session:1:session_started:resident");
    assert_eq!(a.len(), 8);
    assert!(
        a.chars()
            .all(|c| "23456789ABCDEFGHJKLMNPQRSTUVWXYZ".contains(c)),
        "{a}"
    );
    assert_eq!(a, ref_code("session:1:session_started:resident"));
    assert_ne!(a, ref_code("session:2:session_started:resident"));
    let codes: std::collections::BTreeSet<_> = (0..10_000)
        .map(|i| ref_code(&format!("session:{i}:session_started:resident")))
        .collect();
    assert_eq!(codes.len(), 10_000);
}

#[test]
fn duration_format() {
    assert_eq!(format_duration(0), "0 min");
    assert_eq!(format_duration(45 * 60 + 59), "45 min");
    assert_eq!(format_duration(65 * 60), "1 h 05 min");
    assert_eq!(format_duration(26 * 3600), "26 h 00 min");
    assert_eq!(format_duration(-5), "0 min");
}

proptest! {
    #[test]
    fn one_started_per_session_however_often_it_repeats(
        id in 1i64..1_000_000, repeats in 1usize..6, offsets in proptest::collection::vec(0i64..86_400, 6),
    ) {
        let policy = NotificationPolicy::default();
        let c = ctx(&policy, None);
        let s = session(id, true);
        let keys: std::collections::BTreeSet<_> = (0..repeats)
            .flat_map(|i| {
                let at = s.start + TimeDelta::seconds(offsets[i]);
                plan(&ev(at, EventKind::SessionStarted { session: s.clone() }), &c).messages
            })
            .map(|m| (m.dedup_key, m.ref_code, m.not_before))
            .collect();
        prop_assert_eq!(keys.len(), 1);
    }

    #[test]
    fn reminders_are_never_closer_than_the_interval_nor_more_than_the_maximum(
        grace in 0u32..1440, interval in 0u32..1440, max in 0u32..25, since_s in 0i64..4_000_000_000,
    ) {
        let policy = NotificationPolicy {
            idle_grace_min: grace,
            reminder_interval_min: interval,
            reminder_max: max,
            ..NotificationPolicy::default()
        };
        let c = ctx(&policy, None);
        let since = DateTime::from_timestamp(since_s, 0).unwrap();
        let p = plan(&ev(since, EventKind::IdleStarted { session: session(1, true), since }), &c);
        let mut times: Vec<_> = p.messages.iter().map(|m| m.not_before).collect();
        times.sort();
        let reminders = p.messages.iter().filter(|m| m.rule == Rule::IdleReminder).count();
        prop_assert!(reminders as u32 <= max);
        let gap = TimeDelta::minutes(i64::from(interval.max(1)));
        for w in times.windows(2) {
            prop_assert!(w[1] - w[0] >= gap);
        }
        let keys: std::collections::BTreeSet<_> = p.messages.iter().map(|m| &m.dedup_key).collect();
        prop_assert_eq!(keys.len(), p.messages.len());
    }

    #[test]
    fn every_text_ends_with_its_reference_code(
        name in ".{0,40}", tmpl in ".{0,80}", id in 1i64..1000,
    ) {
        let mut policy = NotificationPolicy::default();
        policy.rules.get_mut(&Rule::SessionStarted).unwrap().template = tmpl;
        let mut s = session(id, true);
        if let Some(r) = s.resident.as_mut() { r.name = name; }
        let p = plan(&ev(s.start, EventKind::SessionStarted { session: s }), &ctx(&policy, None));
        let m = &p.messages[0];
        prop_assert!(m.text.ends_with(&m.ref_code));
    }
}
