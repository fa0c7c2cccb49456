use super::*;
use crate::money::format_money;
use crate::tariff::{Tariff, TariffSpec};
use chrono::NaiveDateTime;
use chrono_tz::America::Sao_Paulo;
use proptest::prelude::*;
use std::str::FromStr;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The tariff of BILLING.md's worked examples.
fn spec() -> TariffSpec {
    TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        peak_start: Some("17:30".into()),
        peak_end: Some("20:30".into()),
        idle_grace_min: Some(15.into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
}

fn tariff() -> Tariff {
    spec().validate().unwrap()
}

fn history(tariffs: Vec<Tariff>) -> TariffHistory {
    TariffHistory::new(tariffs).unwrap()
}

/// A São Paulo local time "YYYY-MM-DD HH:MM[:SS]" as UTC.
fn sp(local: &str) -> DateTime<Utc> {
    let fmt = if local.len() > 16 {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M"
    };
    let naive = NaiveDateTime::parse_from_str(local, fmt).unwrap();
    Sao_Paulo
        .from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn resident(id: i64, apartment: &str) -> ResidentRef {
    ResidentRef {
        resident_id: id,
        name: format!("Morador {id}"),
        apartment: apartment.to_owned(),
    }
}

fn session(id: i64, tag_: Option<&str>, start: &str, stop: &str, wh: i64) -> SessionRecord {
    SessionRecord {
        vendor_id: id,
        charger: "Palmeiras 1".into(),
        tag: tag_.map(tag),
        start: sp(start),
        stop: sp(stop),
        energy_wh: wh,
        idle_seconds: 0,
        source: SessionSource::Own,
        precision: TimePrecision::Second,
        import_line: None,
        user_name: None,
    }
}

/// Tag "AA" → apartment 101 (resident 1) and "BB" → 202 (resident 2), all of 2026.
fn directory() -> TagDirectory {
    directory_from_dates(
        Sao_Paulo,
        &[
            DatedOwnership {
                tag: tag("aa"),
                resident: resident(1, "101"),
                valid_from: date("2026-01-01"),
                valid_to: None,
            },
            DatedOwnership {
                tag: tag("BB"),
                resident: resident(2, "202"),
                valid_from: date("2026-01-01"),
                valid_to: None,
            },
        ],
    )
}

fn input(month: &str, sessions: Vec<SessionRecord>) -> StatementInput {
    StatementInput {
        site_name: "Condomínio Jardim".into(),
        tz: Sao_Paulo,
        month: LocalMonth::parse(month).unwrap(),
        sessions,
        ownership: directory(),
        tariffs: history(vec![tariff()]),
    }
}

fn only_session(st: &Statement) -> &SessionLine {
    assert_eq!(st.totals.sessions, 1, "{st:#?}");
    &st.lines[0].session_details[0]
}

/// Every line adds up to its sessions and the lines to the totals.
fn assert_adds_up(st: &Statement) {
    let sum = |f: fn(&ApartmentLine) -> Decimal| st.lines.iter().map(f).sum::<Decimal>();
    assert_eq!(sum(|l| l.total), st.totals.total);
    assert_eq!(sum(|l| l.energy_cost), st.totals.energy_cost);
    assert_eq!(sum(|l| l.idle_fee), st.totals.idle_fee);
    assert_eq!(sum(|l| l.kwh), st.totals.kwh);
    assert_eq!(sum(|l| l.peak_kwh), st.totals.peak_kwh);
    assert_eq!(sum(|l| l.offpeak_kwh), st.totals.offpeak_kwh);
    assert_eq!(
        st.lines.iter().map(|l| l.sessions).sum::<u64>(),
        st.totals.sessions
    );
    assert_eq!(st.totals.total, st.totals.energy_cost + st.totals.idle_fee);
    assert_eq!(st.totals.kwh, st.totals.peak_kwh + st.totals.offpeak_kwh);
    for l in &st.lines {
        let s = &l.session_details;
        assert_eq!(l.sessions, s.len() as u64);
        assert_eq!(
            l.energy_cost,
            s.iter().map(|s| s.energy_cost).sum::<Decimal>()
        );
        assert_eq!(l.idle_fee, s.iter().map(|s| s.idle_fee).sum::<Decimal>());
        assert_eq!(l.total, l.energy_cost + l.idle_fee);
        assert_eq!(l.kwh, l.peak_kwh + l.offpeak_kwh);
        assert_eq!(l.kwh, s.iter().map(|s| s.energy_kwh).sum::<Decimal>());
        for x in s {
            assert_eq!(x.total, x.energy_cost + x.idle_fee);
            assert_eq!(x.energy_kwh, x.peak_kwh + x.offpeak_kwh);
        }
    }
}

// --- BILLING.md worked examples ---------------------------------------------------------------

#[test]
fn example_thursday_16_30_to_18_30_10_kwh_is_18_05() {
    // 2026-03-05 is a Thursday.
    let st = compute(&input(
        "2026-03",
        vec![session(
            1,
            Some("AA"),
            "2026-03-05 16:30",
            "2026-03-05 18:30",
            10_000,
        )],
    ));
    let s = only_session(&st);
    assert_eq!((s.peak_seconds, s.offpeak_seconds), (3600, 3600));
    assert_eq!((s.peak_kwh, s.offpeak_kwh), (dec("5.000"), dec("5.000")));
    assert_eq!(format_money(s.energy_cost), "18.05");
    assert_eq!(st.lines[0].apartment.as_deref(), Some("101"));
    assert_eq!(st.totals.total, dec("18.05"));
    assert_adds_up(&st);
}

#[test]
fn example_thursday_23_00_to_friday_19_00_20_kwh_is_14_43() {
    let st = compute(&input(
        "2026-03",
        vec![session(
            2,
            Some("AA"),
            "2026-03-05 23:00",
            "2026-03-06 19:00",
            20_000,
        )],
    ));
    let s = only_session(&st);
    assert_eq!(s.seconds, 20 * 3600);
    assert_eq!(s.peak_seconds, 5400);
    assert_eq!(s.peak_pieces.len(), 1);
    assert_eq!(s.peak_pieces[0].date, date("2026-03-06"));
    assert_eq!((s.peak_kwh, s.offpeak_kwh), (dec("1.500"), dec("18.500")));
    // 4.62 + 9.805 = 14.425 → 14.43 (half-up).
    assert_eq!(format_money(s.energy_cost), "14.43");
    assert_eq!(format_money(st.totals.total), "14.43");
}

#[test]
fn example_tuesday_holiday_18_00_to_20_00_8_kwh_is_4_24() {
    // Tiradentes 2026 is a Tuesday.
    let st = compute(&input(
        "2026-04",
        vec![session(
            3,
            Some("AA"),
            "2026-04-21 18:00",
            "2026-04-21 20:00",
            8_000,
        )],
    ));
    let s = only_session(&st);
    assert_eq!(s.peak_seconds, 0);
    assert!(s.peak_pieces.is_empty());
    assert_eq!(format_money(s.energy_cost), "4.24");
}

#[test]
fn example_idle_15_40_and_600_minutes() {
    let mut sessions = Vec::new();
    for (id, minutes) in [(10, 15), (11, 40), (12, 600)] {
        // Saturday 10:00–11:00, 1 kWh off-peak (R$ 0.53 each).
        let mut s = session(
            id,
            Some("AA"),
            "2026-03-07 10:00",
            "2026-03-07 11:00",
            1_000,
        );
        s.idle_seconds = minutes * 60;
        sessions.push(s);
    }
    let st = compute(&input("2026-03", sessions));
    let fees: Vec<String> = st.lines[0]
        .session_details
        .iter()
        .map(|s| format_money(s.idle_fee))
        .collect();
    assert_eq!(fees, ["0.00", "2.50", "30.00"]);
    assert!(st.lines[0].session_details[2].idle_fee_capped);
    let line = &st.lines[0];
    assert_eq!(line.idle_fee, dec("32.50"));
    assert_eq!(line.energy_cost, dec("1.59"));
    assert_eq!(line.total, dec("34.09"));
    assert_eq!(line.idle_seconds, 655 * 60);
    assert_eq!(line.idle_minutes, dec("655.00"));
    assert_adds_up(&st);
}

// --- rules ------------------------------------------------------------------------------------

#[test]
fn a_tag_changing_owner_mid_month_splits_by_the_session_start() {
    let mut inp = input(
        "2026-03",
        vec![
            session(1, Some("cc"), "2026-03-14 23:30", "2026-03-15 01:00", 3_000),
            session(2, Some("CC"), "2026-03-15 00:00", "2026-03-15 01:00", 2_000),
            session(
                3,
                Some(" Cc "),
                "2026-03-20 10:00",
                "2026-03-20 11:00",
                1_000,
            ),
        ],
    );
    inp.ownership = directory_from_dates(
        Sao_Paulo,
        &[
            DatedOwnership {
                tag: tag("CC"),
                resident: resident(7, "Bloco B 12"),
                valid_from: date("2026-02-01"),
                valid_to: Some(date("2026-03-15")),
            },
            DatedOwnership {
                tag: tag("CC"),
                resident: resident(8, "Bloco B 3"),
                valid_from: date("2026-03-15"),
                valid_to: None,
            },
        ],
    );
    let st = compute(&inp);
    let ids = |apt: &str| -> Vec<i64> {
        st.line(Some(apt))
            .unwrap()
            .session_details
            .iter()
            .map(|s| s.vendor_id)
            .collect()
    };
    // Session 1 started the night before the hand-over: the old owner pays all of it.
    assert_eq!(ids("Bloco B 12"), [1]);
    // Local midnight of valid_from belongs to the new owner.
    assert_eq!(ids("Bloco B 3"), [2, 3]);
    // Natural order: "Bloco B 3" before "Bloco B 12".
    let order: Vec<&str> = st.lines.iter().map(|l| l.label()).collect();
    assert_eq!(order, ["Bloco B 3", "Bloco B 12"]);
    assert_eq!(st.lines[0].residents[0].resident_id, 8);
    assert_adds_up(&st);
}

#[test]
fn unknown_empty_and_unowned_tags_go_to_sem_morador() {
    let mut inp = input(
        "2026-03",
        vec![
            session(
                1,
                Some("FFFF"),
                "2026-03-02 10:00",
                "2026-03-02 11:00",
                1_000,
            ),
            session(2, None, "2026-03-02 12:00", "2026-03-02 13:00", 1_000),
            session(3, Some("DD"), "2026-03-02 14:00", "2026-03-02 15:00", 1_000),
            session(4, Some("AA"), "2026-03-02 16:00", "2026-03-02 17:00", 1_000),
        ],
    );
    inp.sessions[1].user_name = Some("joao silva ".into());
    // DD's owner left in February.
    let mut dir = directory();
    dir.insert(
        tag("DD"),
        resident(9, "303"),
        sp("2026-01-01 00:00"),
        Some(sp("2026-02-01 00:00")),
    );
    inp.ownership = dir;
    let st = compute(&inp);
    assert_eq!(st.lines.len(), 2);
    assert_eq!(st.lines[0].label(), "101");
    let unassigned = st.unassigned().unwrap();
    assert_eq!(unassigned.label(), "sem morador");
    assert!(
        std::ptr::eq(unassigned, &st.lines[1]),
        "sem morador is last"
    );
    let ids: Vec<i64> = unassigned
        .session_details
        .iter()
        .map(|s| s.vendor_id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert!(unassigned.residents.is_empty());
    assert_eq!(
        unassigned.session_details[1].user_name.as_deref(),
        Some("joao silva ")
    );
    // Priced like any other.
    assert_eq!(unassigned.total, dec("1.59"));
    assert_eq!(st.per_apartment().count(), 1);
    assert_eq!(st.totals.total, dec("2.12"));
    assert_adds_up(&st);
}

#[test]
fn a_session_starting_on_the_last_evening_of_the_month_belongs_to_that_month() {
    // 31 March 2026 is a Tuesday; 23:30 local is already 1 April in UTC.
    let sessions = vec![
        session(
            1,
            Some("AA"),
            "2026-03-31 23:30",
            "2026-04-01 18:30",
            10_000,
        ),
        session(2, Some("AA"), "2026-04-01 00:00", "2026-04-01 01:00", 1_000),
        session(3, Some("AA"), "2026-02-28 23:00", "2026-03-01 01:00", 1_000),
    ];
    let march = compute(&input("2026-03", sessions.clone()));
    let s = only_session(&march);
    assert_eq!(s.vendor_id, 1);
    // April 1st's peak counts: 1 h of 19 h.
    assert_eq!(s.peak_seconds, 3600);
    let april = compute(&input("2026-04", sessions));
    assert_eq!(only_session(&april).vendor_id, 2);
}

#[test]
fn a_tariff_change_mid_month_prices_each_session_by_its_start() {
    let new = TariffSpec {
        effective_from: Some("2026-03-16".into()),
        offpeak_price: Some("0.60".into()),
        ..spec()
    }
    .validate()
    .unwrap();
    let mut inp = input(
        "2026-03",
        vec![
            // Starts the day before the change, ends after: the old tariff.
            session(1, Some("AA"), "2026-03-15 22:00", "2026-03-16 02:00", 4_000),
            session(2, Some("AA"), "2026-03-16 00:00", "2026-03-16 04:00", 4_000),
        ],
    );
    inp.tariffs = history(vec![tariff(), new]);
    let st = compute(&inp);
    let s = &st.lines[0].session_details;
    assert_eq!(s[0].tariff_effective_from, None);
    assert_eq!(s[0].energy_cost, dec("2.12"));
    assert_eq!(s[1].tariff_effective_from, Some(date("2026-03-16")));
    assert_eq!(s[1].offpeak_price, dec("0.60"));
    assert_eq!(s[1].energy_cost, dec("2.40"));
    assert_adds_up(&st);
}

#[test]
fn no_tariff_in_force_rejects_the_session() {
    let dated = TariffSpec {
        effective_from: Some("2026-03-10".into()),
        ..spec()
    }
    .validate()
    .unwrap();
    let mut inp = input(
        "2026-03",
        vec![
            session(1, Some("AA"), "2026-03-09 10:00", "2026-03-09 11:00", 1_000),
            session(2, Some("AA"), "2026-03-10 10:00", "2026-03-10 11:00", 1_000),
        ],
    );
    inp.tariffs = history(vec![dated]);
    let st = compute(&inp);
    assert_eq!(only_session(&st).vendor_id, 2);
    assert_eq!(st.rejected.len(), 1);
    assert_eq!(st.rejected[0].reason, RejectReason::NoTariff);
    assert_eq!(
        st.rejected[0].reason_pt_br,
        "nenhuma tarifa em vigor em 09/03/2026 (data de início da recarga)"
    );
}

#[test]
fn rejected_sessions_are_listed_with_their_reason_and_excluded() {
    let mut backwards = session(4, Some("AA"), "2026-03-02 11:00", "2026-03-02 10:00", 1_000);
    backwards.source = SessionSource::Imported;
    backwards.import_line = Some(7);
    let st = compute(&input(
        "2026-03",
        vec![
            session(1, Some("AA"), "2026-03-02 10:00", "2026-03-02 11:00", 0),
            session(
                2,
                Some("AA"),
                "2026-03-03 10:00",
                "2026-03-03 11:00",
                150_001,
            ),
            // Exactly the maximum is accepted.
            session(
                3,
                Some("AA"),
                "2026-03-04 10:00",
                "2026-03-04 11:00",
                150_000,
            ),
            backwards,
            // Every check fails: energy ≤ 0 is the reason given (rule 8's order).
            session(5, Some("AA"), "2026-03-05 11:00", "2026-03-05 10:00", -5),
            // Another month's bad session is not this month's business.
            session(6, Some("AA"), "2026-04-01 10:00", "2026-04-01 11:00", 0),
        ],
    ));
    assert_eq!(only_session(&st).vendor_id, 3);
    let reasons: Vec<(i64, RejectReason)> = st
        .rejected
        .iter()
        .map(|r| (r.vendor_id, r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, RejectReason::EnergyNotPositive),
            (4, RejectReason::EndNotAfterStart),
            (2, RejectReason::EnergyAboveMaximum),
            (5, RejectReason::EnergyNotPositive),
        ]
    );
    let r4 = &st.rejected[1];
    assert_eq!(r4.line, Some(7));
    assert_eq!(r4.reason_pt_br, "fim da recarga não é posterior ao início");
    assert_eq!(
        st.rejected[2].reason_pt_br,
        "energia de 150,001 kWh acima do máximo do condomínio (150,000 kWh)"
    );
    assert_eq!(st.totals.kwh, dec("150.000"));
}

#[test]
fn the_same_vendor_id_is_counted_once_and_own_wins() {
    let own = session(
        1,
        Some("AA"),
        "2026-03-02 10:00:42",
        "2026-03-02 11:00:10",
        7_000,
    );
    // The export without seconds, same figures: a match, not a disagreement.
    let mut same = session(1, Some("aa"), "2026-03-02 10:00", "2026-03-02 11:00", 7_000);
    same.source = SessionSource::Imported;
    same.precision = TimePrecision::Minute;
    same.import_line = Some(2);
    let st = compute(&input("2026-03", vec![same.clone(), own.clone()]));
    let s = only_session(&st);
    assert_eq!(s.source, SessionSource::Own);
    assert!(st.disagreements.is_empty());

    // Different energy and stop: the own record is kept and the disagreement shown.
    let mut other = same.clone();
    other.energy_wh = 7_500;
    other.stop = sp("2026-03-02 11:05");
    let st = compute(&input("2026-03", vec![other, own.clone()]));
    assert_eq!(only_session(&st).energy_kwh, dec("7.000"));
    assert_eq!(st.disagreements.len(), 1);
    let d = &st.disagreements[0];
    assert_eq!(d.vendor_id, 1);
    assert_eq!(d.kept.source, SessionSource::Own);
    assert_eq!(d.dropped.line, Some(2));
    assert_eq!(
        d.fields,
        [DisagreementField::Energy, DisagreementField::Stop]
    );
    assert_eq!(
        d.message_pt_br,
        "a recarga 1 aparece no registro do vetric e na planilha importada com energia, fim \
         diferente(s); vale o registro do vetric (energia: 7,000 kWh contra 7,500 kWh)"
    );

    // A vendor that rounded 11:00:10 to 11:01 still agrees (less than a minute apart).
    let mut rounded = same.clone();
    rounded.stop = sp("2026-03-02 11:01");
    let st = compute(&input("2026-03", vec![own.clone(), rounded.clone()]));
    assert!(st.disagreements.is_empty());
    rounded.stop = sp("2026-03-02 11:02");
    let st = compute(&input("2026-03", vec![own.clone(), rounded]));
    assert_eq!(st.disagreements[0].fields, [DisagreementField::Stop]);

    // Seconds on both sides are compared at the second.
    let mut precise = own.clone();
    precise.source = SessionSource::Imported;
    precise.start = sp("2026-03-02 10:00:41");
    let st = compute(&input("2026-03", vec![precise, own]));
    assert_eq!(st.disagreements[0].fields, [DisagreementField::Start]);
    assert_eq!(st.totals.sessions, 1);
}

#[test]
fn a_one_second_and_a_thirty_hour_session() {
    let st = compute(&input(
        "2026-03",
        vec![
            session(
                1,
                Some("AA"),
                "2026-03-05 18:00:00",
                "2026-03-05 18:00:01",
                1,
            ),
            // Thursday 12:00 → Friday 18:00: 3.5 h of peak.
            session(
                2,
                Some("BB"),
                "2026-03-05 12:00",
                "2026-03-06 18:00",
                30_000,
            ),
        ],
    ));
    let one = &st.line(Some("101")).unwrap().session_details[0];
    assert_eq!((one.seconds, one.peak_seconds), (1, 1));
    assert_eq!(one.energy_cost, dec("0.00"));
    let long = &st.line(Some("202")).unwrap().session_details[0];
    assert_eq!(long.seconds, 30 * 3600);
    assert_eq!(long.peak_pieces.len(), 2);
    assert_eq!(long.energy_cost, dec("24.83"));
    assert_adds_up(&st);
}

#[test]
fn line_kwh_are_summed_exactly_then_rounded() {
    // Three sessions of 1 kWh, each a third peak (1 h of 3 h): 0.333… peak each. Rounded per
    // session they would give 0.999; summed exactly the line has 1.000.
    let sessions = (1..=3)
        .map(|i| {
            session(
                i,
                Some("AA"),
                &format!("2026-03-0{} 15:30", i + 1),
                &format!("2026-03-0{} 18:30", i + 1),
                1_000,
            )
        })
        .collect();
    let st = compute(&input("2026-03", sessions));
    let line = &st.lines[0];
    assert_eq!(line.session_details[0].peak_kwh, dec("0.333"));
    assert_eq!(line.peak_kwh, dec("1.000"));
    assert_eq!(line.offpeak_kwh, dec("2.000"));
    assert_eq!(st.totals.peak_kwh, dec("1.000"));
}

#[test]
fn the_edges_named_in_issue_8_add_up_in_one_statement() {
    let mut sessions = vec![
        // Straddling 20:30: 30 min peak, 30 min off-peak, 6 kWh → 9.24 + 1.59.
        session(1, Some("AA"), "2026-03-05 20:00", "2026-03-05 21:00", 6_000),
        // Covering the whole window: 3 h of 10 → 9.24 + 3.71.
        session(
            2,
            Some("AA"),
            "2026-03-05 12:00",
            "2026-03-05 22:00",
            10_000,
        ),
        // Spanning a weekend, Friday 19:00 → Monday 19:00: 3 h of 72 → 9.24 + 36.57.
        session(
            3,
            Some("BB"),
            "2026-03-06 19:00",
            "2026-03-09 19:00",
            72_000,
        ),
        // Exactly half a centavo: 1.5 kWh off-peak = 0.795 → 0.80.
        session(4, Some("BB"), "2026-03-07 10:00", "2026-03-07 11:00", 1_500),
        // Good Friday 2026 (03 April) is next month; Carnival Tuesday 2026-02-17 was last.
    ];
    for (id, minutes) in [(5, 10), (6, 15), (7, 16), (8, 315), (9, 316)] {
        // Idle below, at and just above the grace, at the cap (300 min over → 30.00) and above.
        let mut s = session(
            id,
            Some("AA"),
            "2026-03-08 10:00",
            "2026-03-08 11:00",
            1_000,
        );
        s.idle_seconds = minutes * 60;
        sessions.push(s);
    }
    let st = compute(&input("2026-03", sessions));
    let by_id = |id: i64| {
        st.lines
            .iter()
            .flat_map(|l| &l.session_details)
            .find(|s| s.vendor_id == id)
            .unwrap()
    };
    assert_eq!(by_id(1).energy_cost, dec("10.83"));
    assert_eq!(by_id(2).energy_cost, dec("12.95"));
    assert_eq!(by_id(3).energy_cost, dec("45.81"));
    assert_eq!(by_id(3).peak_pieces.len(), 2);
    assert_eq!(by_id(4).energy_cost, dec("0.80"));
    let fees: Vec<Decimal> = (5..=9).map(|id| by_id(id).idle_fee).collect();
    assert_eq!(
        fees,
        [
            dec("0.00"),
            dec("0.00"),
            dec("0.10"),
            dec("30.00"),
            dec("30.00")
        ]
    );
    assert!(!by_id(8).idle_fee_capped && by_id(9).idle_fee_capped);
    let aa = st.line(Some("101")).unwrap();
    assert_eq!(aa.energy_cost, dec("26.43")); // 10.83 + 12.95 + 5 × 0.53
    assert_eq!(aa.idle_fee, dec("60.10"));
    assert_eq!(aa.total, dec("86.53"));
    assert_eq!(st.line(Some("202")).unwrap().total, dec("46.61"));
    assert_eq!(st.totals.total, dec("133.14"));
    assert_adds_up(&st);
}

#[test]
fn json_has_lines_totals_and_rejected_with_fixed_places() {
    let st = compute(&input(
        "2026-03",
        vec![
            session(
                1,
                Some("AA"),
                "2026-03-05 16:30",
                "2026-03-05 18:30",
                10_000,
            ),
            session(2, Some("AA"), "2026-03-05 19:00", "2026-03-05 18:00", 1_000),
        ],
    ));
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["month"], "2026-03");
    assert_eq!(json["tz"], "America/Sao_Paulo");
    assert_eq!(json["totals"]["total"], "18.05");
    assert_eq!(json["totals"]["kwh"], "10.000");
    assert_eq!(json["totals"]["peak_kwh"], "5.000");
    assert_eq!(json["totals"]["idle_fee"], "0.00");
    assert_eq!(json["totals"]["sessions"], 1);
    assert_eq!(json["lines"][0]["apartment"], "101");
    assert_eq!(json["lines"][0]["energy_cost"], "18.05");
    assert_eq!(
        json["lines"][0]["session_details"][0]["offpeak_kwh"],
        "5.000"
    );
    assert_eq!(json["rejected"][0]["vendor_id"], 2);
    assert_eq!(json["rejected"][0]["reason"], "end_not_after_start");
    // Round trip, for the frozen snapshot.
    let back: Statement = serde_json::from_value(json).unwrap();
    assert_eq!(back, st);
    // An empty month still has fixed places.
    let empty = compute(&input("2026-05", vec![]));
    let json = serde_json::to_value(&empty).unwrap();
    assert_eq!(json["totals"]["total"], "0.00");
    assert_eq!(json["totals"]["kwh"], "0.000");
    assert!(empty.lines.is_empty());
}

#[test]
fn inputs_round_trip_through_json() {
    let inp = input(
        "2026-03",
        vec![session(
            1,
            Some("AA"),
            "2026-03-05 16:30",
            "2026-03-05 18:30",
            10_000,
        )],
    );
    let json = serde_json::to_string(&inp).unwrap();
    let back: StatementInput = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inp);
    assert_eq!(compute(&back), compute(&inp));
    assert!(
        serde_json::from_str::<StatementInput>(&json.replace("America/Sao_Paulo", "Mars/Base"))
            .is_err()
    );
}

#[test]
fn diff_shows_what_changed_per_apartment() {
    let sessions = vec![
        session(
            1,
            Some("AA"),
            "2026-03-05 16:30",
            "2026-03-05 18:30",
            10_000,
        ),
        session(2, Some("EE"), "2026-03-06 10:00", "2026-03-06 11:00", 1_000),
        session(3, Some("BB"), "2026-03-06 12:00", "2026-03-06 13:00", 2_000),
    ];
    let old = compute(&input("2026-03", sessions.clone()));
    // Late data: EE is assigned to 202 and a late imported row adds to 101.
    let mut late = sessions;
    let mut row = session(4, Some("AA"), "2026-03-07 10:00", "2026-03-07 11:00", 1_000);
    row.source = SessionSource::Imported;
    late.push(row);
    let mut inp = input("2026-03", late);
    inp.ownership
        .insert(tag("EE"), resident(3, "202"), sp("2026-01-01 00:00"), None);
    let new = compute(&inp);
    let d = diff(&old, &new);
    let labels: Vec<&str> = d.iter().map(|x| x.label()).collect();
    assert_eq!(labels, ["101", "202", "sem morador"]);
    assert_eq!(d[0].added_sessions, [4]);
    assert_eq!(d[0].total_change, dec("0.53"));
    assert_eq!(d[1].added_sessions, [2]);
    assert_eq!(d[1].old.as_ref().unwrap().sessions, 1);
    assert_eq!(d[1].new.as_ref().unwrap().sessions, 2);
    assert_eq!(d[2].removed_sessions, [2]);
    assert!(d[2].new.is_none());
    assert_eq!(d[2].total_change, dec("-0.53"));
    assert!(diff(&new, &new).is_empty());
}

#[test]
fn local_midnight_handles_the_old_brazilian_dst_gap() {
    // 2018-11-04 00:00 did not exist in São Paulo: the day began at 01:00 (-02), 03:00 UTC.
    let t = local_midnight(Sao_Paulo, date("2018-11-04")).unwrap();
    assert_eq!(t.to_rfc3339(), "2018-11-04T03:00:00+00:00");
    let t = local_midnight(Sao_Paulo, date("2026-03-15")).unwrap();
    assert_eq!(t.to_rfc3339(), "2026-03-15T03:00:00+00:00");
}

#[test]
fn natural_order_of_apartments() {
    let mut v = vec!["10", "2", "Bloco B 101", "Bloco A 20", "bloco a 3", "1"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        v,
        ["1", "2", "10", "bloco a 3", "Bloco A 20", "Bloco B 101"]
    );
}

#[test]
fn each_sessions_half_centavo_is_rounded_before_the_line_sums_it() {
    // Rule 6 rounds every session half-up, rule 7 sums the rounded amounts. Two Saturday
    // sessions of 1.500 kWh, all off-peak: 1.5 × 0.53 = 0.795 exactly → 0.80 each, line
    // 0.80 + 0.80 = 1.60 (rounding the exact sum 1.590 would give 1.59).
    // Idle 15 min 45 s each: (945 s / 60 − 15) × 0.10 = 0.75 × 0.10 = 0.075 → 0.08 each,
    // line 0.16 (the exact sum 0.150 would give 0.15).
    let mut sessions = vec![
        session(1, Some("AA"), "2026-03-07 10:00", "2026-03-07 11:00", 1_500),
        session(2, Some("AA"), "2026-03-07 12:00", "2026-03-07 13:00", 1_500),
    ];
    for s in &mut sessions {
        s.idle_seconds = 15 * 60 + 45;
    }
    let st = compute(&input("2026-03", sessions));
    let line = st.line(Some("101")).unwrap();
    for s in &line.session_details {
        assert_eq!((s.energy_cost, s.idle_fee), (dec("0.80"), dec("0.08")));
        assert_eq!(s.total, dec("0.88"));
    }
    assert_eq!(line.energy_cost, dec("1.60"));
    assert_eq!(line.idle_fee, dec("0.16"));
    assert_eq!(line.total, dec("1.76"));
    assert_eq!(
        (line.kwh, line.peak_kwh, line.offpeak_kwh),
        (dec("3.000"), dec("0.000"), dec("3.000"))
    );
    // 2 × 945 s = 1890 s = 31.5 min.
    assert_eq!(line.idle_minutes, dec("31.50"));
    assert_eq!(st.totals.energy_cost, dec("1.60"));
    assert_eq!(st.totals.total, dec("1.76"));
    assert_adds_up(&st);
}

#[test]
fn movable_and_site_holidays_have_no_peak_on_the_statement() {
    // April 2026 with the site's own holiday on Thursday 23 April (on top of the national
    // list). 2026-04-02, -16 and -23 are Thursdays; 2026-04-03 is Good Friday (movable).
    let mut inp = input(
        "2026-04",
        vec![
            // Thursday 18:00 → Good Friday 19:00: 25 h, 25.000 kWh (1 kWh per hour). Thursday's
            // window gives 18:00–20:30 = 2.5 h; Friday's 17:30–19:00 would give 1.5 h but Good
            // Friday has no peak. Peak 2.500 kWh, off-peak 22.500 kWh:
            // 2.5 × 3.08 + 22.5 × 0.53 = 7.70 + 11.925 = 19.625 → 19.63 (half-up).
            session(
                1,
                Some("AA"),
                "2026-04-02 18:00",
                "2026-04-03 19:00",
                25_000,
            ),
            // The site's holiday, 18:00–20:00, 8.000 kWh: all off-peak, 8 × 0.53 = 4.24.
            session(2, Some("AA"), "2026-04-23 18:00", "2026-04-23 20:00", 8_000),
            // The same hours on an ordinary Thursday: all peak, 8 × 3.08 = 24.64.
            session(3, Some("AA"), "2026-04-16 18:00", "2026-04-16 20:00", 8_000),
        ],
    );
    inp.tariffs = history(vec![
        TariffSpec {
            holidays: Some(vec!["2026-04-23".into()]),
            ..spec()
        }
        .validate()
        .unwrap(),
    ]);
    let st = compute(&inp);
    let line = st.line(Some("101")).unwrap();
    let by_id = |id: i64| {
        line.session_details
            .iter()
            .find(|s| s.vendor_id == id)
            .unwrap()
    };
    let good_friday = by_id(1);
    assert_eq!(good_friday.seconds, 25 * 3600);
    assert_eq!(good_friday.peak_seconds, 2 * 3600 + 1800);
    let piece_dates: Vec<NaiveDate> = good_friday.peak_pieces.iter().map(|p| p.date).collect();
    assert_eq!(piece_dates, [date("2026-04-02")]);
    assert_eq!(
        (good_friday.peak_kwh, good_friday.offpeak_kwh),
        (dec("2.500"), dec("22.500"))
    );
    assert_eq!(good_friday.energy_cost, dec("19.63"));
    let site_holiday = by_id(2);
    assert_eq!(site_holiday.peak_seconds, 0);
    assert_eq!(site_holiday.energy_cost, dec("4.24"));
    let ordinary = by_id(3);
    assert_eq!(ordinary.peak_seconds, 2 * 3600);
    assert_eq!(ordinary.energy_cost, dec("24.64"));
    // 19.63 + 4.24 + 24.64 = 48.51
    assert_eq!(line.energy_cost, dec("48.51"));
    assert_eq!(st.totals.total, dec("48.51"));
    // Peak 2.5 + 0 + 8 = 10.500 kWh of 41.000.
    assert_eq!(
        (st.totals.kwh, st.totals.peak_kwh, st.totals.offpeak_kwh),
        (dec("41.000"), dec("10.500"), dec("30.500"))
    );
    assert_adds_up(&st);
}

// --- properties -------------------------------------------------------------------------------

fn any_session() -> impl Strategy<Value = SessionRecord> {
    (
        1i64..40,            // vendor id: small, so copies happen
        0usize..5,           // tag
        0i64..40 * 86_400,   // start offset from 2026-02-25 local
        -600i64..=40 * 3600, // duration (some backwards)
        -100i64..=160_000,   // Wh (some out of range)
        0i64..=20_000,       // idle seconds
        any::<bool>(),       // imported
    )
        .prop_map(|(id, t, off, dur, wh, idle, imported)| {
            let start = sp("2026-02-25 00:00") + TimeDelta::seconds(off);
            SessionRecord {
                vendor_id: id,
                charger: format!("C{}", id % 3),
                tag: ["AA", "BB", "CC", "ZZ"].get(t).map(|s| tag(s)),
                start,
                stop: start + TimeDelta::seconds(dur),
                energy_wh: wh,
                idle_seconds: idle,
                source: if imported {
                    SessionSource::Imported
                } else {
                    SessionSource::Own
                },
                precision: TimePrecision::Second,
                import_line: imported.then_some((id as u32) + 1),
                user_name: None,
            }
        })
}

fn prop_input(sessions: Vec<SessionRecord>) -> StatementInput {
    let mut inp = input("2026-03", sessions);
    // CC changes hands mid-month.
    inp.ownership.insert(
        tag("CC"),
        resident(3, "303"),
        sp("2026-01-01 00:00"),
        Some(sp("2026-03-16 00:00")),
    );
    inp.ownership
        .insert(tag("CC"), resident(4, "404"), sp("2026-03-16 00:00"), None);
    let change = TariffSpec {
        effective_from: Some("2026-03-10".into()),
        peak_price: Some("2.9876".into()),
        ..spec()
    }
    .validate()
    .unwrap();
    inp.tariffs = history(vec![tariff(), change]);
    inp
}

proptest! {
    #[test]
    fn lines_add_up_to_the_totals(sessions in proptest::collection::vec(any_session(), 0..60)) {
        let inp = prop_input(sessions);
        let st = compute(&inp);
        assert_adds_up(&st);
        // Nothing is lost: every vendor id of the month is accepted or rejected exactly once.
        let mut month_ids: Vec<i64> = inp.sessions.iter().map(|s| s.vendor_id).collect();
        month_ids.sort_unstable();
        month_ids.dedup();
        let accepted: usize = st.lines.iter().map(|l| l.session_details.len()).sum();
        let mut seen: Vec<i64> = st
            .lines
            .iter()
            .flat_map(|l| l.session_details.iter().map(|s| s.vendor_id))
            .chain(st.rejected.iter().map(|r| r.vendor_id))
            .collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), n, "a vendor id counted twice");
        prop_assert_eq!(accepted as u64, st.totals.sessions);
        prop_assert!(n <= month_ids.len());
        for r in &st.rejected {
            prop_assert_eq!(local_month(r.start, Sao_Paulo), inp.month);
        }
    }

    #[test]
    fn computing_twice_in_any_order_gives_the_same_statement(
        sessions in proptest::collection::vec(any_session(), 0..40),
        seed in any::<u64>(),
    ) {
        let inp = prop_input(sessions);
        let a = compute(&inp);
        let b = compute(&inp);
        prop_assert_eq!(&a, &b);
        // A different input order (a deterministic shuffle) changes nothing either.
        let mut shuffled = inp.clone();
        let len = shuffled.sessions.len();
        let mut x = seed | 1;
        for i in (1..len).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.sessions.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let c = compute(&shuffled);
        prop_assert_eq!(&a, &c);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&c).unwrap());
        prop_assert!(diff(&a, &c).is_empty());
    }

    #[test]
    fn a_sessions_pieces_cover_exactly_its_duration(
        sessions in proptest::collection::vec(any_session(), 1..30),
    ) {
        let inp = prop_input(sessions);
        let st = compute(&inp);
        for s in st.lines.iter().flat_map(|l| &l.session_details) {
            // A tariff change mid-month prices each session by the tariff in force at its start.
            let in_force = inp.tariffs.in_force_for_session(s.start, Sao_Paulo).unwrap();
            prop_assert_eq!(s.tariff_effective_from, in_force.effective_from());
            prop_assert_eq!(s.peak_price, in_force.peak_price());
            prop_assert_eq!(s.seconds, (s.stop - s.start).num_seconds());
            prop_assert_eq!(s.peak_seconds + s.offpeak_seconds, s.seconds);
            prop_assert_eq!(s.peak_pieces.iter().map(PeakPiece::seconds).sum::<i64>(), s.peak_seconds);
            for p in &s.peak_pieces {
                prop_assert!(s.start <= p.start && p.start < p.end && p.end <= s.stop);
            }
            for w in s.peak_pieces.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            prop_assert_eq!(s.peak_kwh + s.offpeak_kwh, s.energy_kwh);
        }
    }
}

/// Sessions around [`prop_input`]'s tariff change (effective 2026-03-10, local), many of them
/// starting before it and ending after it.
fn session_near_the_tariff_change() -> impl Strategy<Value = SessionRecord> {
    (
        1i64..1_000,
        0usize..5,
        0i64..4 * 86_400, // start from 2026-03-08 00:00 local
        1i64..=40 * 3600,
        1i64..=150_000,
    )
        .prop_map(|(id, t, off, dur, wh)| {
            let start = sp("2026-03-08 00:00") + TimeDelta::seconds(off);
            SessionRecord {
                vendor_id: id,
                charger: "C1".into(),
                tag: ["AA", "BB", "CC", "ZZ"].get(t).map(|s| tag(s)),
                start,
                stop: start + TimeDelta::seconds(dur),
                energy_wh: wh,
                idle_seconds: 0,
                source: SessionSource::Own,
                precision: TimePrecision::Second,
                import_line: None,
                user_name: None,
            }
        })
}

proptest! {
    /// Issuing freezes the input and the statement as JSON (store::statements); computing the
    /// frozen input again, after its JSON round trip, gives the same statement, byte for byte,
    /// and the frozen statement reads back as it was.
    #[test]
    fn a_frozen_snapshot_computes_again_to_the_same_bytes(
        sessions in proptest::collection::vec(any_session(), 0..40),
    ) {
        let inp = prop_input(sessions);
        let frozen_input = serde_json::to_string(&inp).unwrap();
        let frozen_result = serde_json::to_string(&compute(&inp)).unwrap();
        let thawed: StatementInput = serde_json::from_str(&frozen_input).unwrap();
        prop_assert_eq!(&thawed, &inp);
        let again = compute(&thawed);
        prop_assert_eq!(serde_json::to_string(&again).unwrap(), frozen_result.clone());
        let read_back: Statement = serde_json::from_str(&frozen_result).unwrap();
        prop_assert_eq!(read_back, again);
    }

    /// A tariff change mid-month prices each session by the tariff in force on the local date
    /// of its start, whatever its end. The oracle is independent of `TariffHistory`: the local
    /// start date read with chrono, the prices written here, and rule 6's formula
    /// energy × (peak s × peak price + off-peak s × off-peak price) / s, half-up to the centavo.
    #[test]
    fn a_tariff_change_mid_month_prices_by_the_local_start_date(
        sessions in proptest::collection::vec(session_near_the_tariff_change(), 1..20),
    ) {
        let inp = prop_input(sessions);
        let st = compute(&inp);
        prop_assert!(st.rejected.is_empty(), "{:?}", st.rejected);
        for s in st.lines.iter().flat_map(|l| &l.session_details) {
            let local_start = s.start.with_timezone(&Sao_Paulo).date_naive();
            let (from, peak, offpeak) = if local_start >= date("2026-03-10") {
                (Some(date("2026-03-10")), dec("2.9876"), dec("0.53"))
            } else {
                (None, dec("3.08"), dec("0.53"))
            };
            prop_assert_eq!(s.tariff_effective_from, from);
            prop_assert_eq!((s.peak_price, s.offpeak_price), (peak, offpeak));
            let expected = (s.energy_kwh
                * (Decimal::from(s.peak_seconds) * peak + Decimal::from(s.offpeak_seconds) * offpeak)
                / Decimal::from(s.seconds))
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            prop_assert_eq!(s.energy_cost, expected, "session {}", s.vendor_id);
        }
        assert_adds_up(&st);
    }
}
