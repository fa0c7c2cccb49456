//! The cost of one charging session under a [`Tariff`] (BILLING.md rules 1, 3, 4, 5, 6 and the
//! order of rule 8's checks).
//!
//! This room turns (tariff, site time zone, start, end, energy, idle time) into the figures a
//! statement line is built from, and nothing else: statements (rule 7) sum what this returns.
//!
//! - Rule 1: windows are local times in the site's zone; a session covers `[start, end)` in real
//!   elapsed seconds.
//! - Rule 4: every local date the session touches is judged on its own (weekday, national or
//!   site holiday); its peak window `[peak_start, peak_end)` counts only on a peak day.
//! - Rule 5: power is constant, so the energy of a class is energy × seconds in class / session
//!   seconds.
//! - Rule 6: energy cost from the unrounded split, rounded once to the centavo half-up; idle
//!   fee = max(0, idle seconds / 60 − grace) × fee per minute, rounded half-up, then capped.
//! - Rule 3: [`local_month`] is the month of the local start.
//! - Rule 8 order: energy ≤ 0, then energy above the maximum (exactly the maximum is accepted),
//!   then end not after start ([`check_session`]).
//!
//! Exactness. Everything is computed in integers (Wh, seconds, ten-thousandths of a real,
//! centavos) in `i128`, and each result is rounded exactly once, half away from zero. The
//! energy cost is computed from the exact fraction
//! `Wh × (peak s × peak price + off-peak s × off-peak price) / (session s × 1000)`, which is
//! rule 6's "from the unrounded kWh" with no intermediate rounding at all. The kWh of each class
//! are reported at [`KWH_SPLIT_SCALE`] (18) decimals — a third of a kWh has no exact decimal —
//! with the peak figure rounded half-up and the off-peak figure the exact remainder, so that
//! peak + off-peak is exactly the session's energy.
//!
//! Overflow. The tariff bounds prices to R$ 1000 (10⁷ ten-thousandths) and accepted energy to
//! 10 000 kWh (10⁷ Wh); chrono bounds a session to under 2⁴⁴ seconds. The largest product,
//! Wh × seconds × price units, stays below 10⁷ · 2⁴⁴ · 10⁷ ≈ 1.8 · 10²⁷, far inside `i128`.
//! The arithmetic is checked anyway and answers [`CostError::OutOfRange`] rather than panic.
//!
//! Time zones and DST. Each local day's peak boundaries are turned into UTC instants with one
//! rule: a boundary is the *first instant at which the local wall clock reads that time or
//! later*. For an ordinary time that is the one instant; in a fall-back overlap it is the
//! earlier of the two; in a spring-forward gap (Brazil's old DST skipped midnight) it is the
//! instant the gap ends. The rule is monotone, so windows of consecutive days never overlap.
//! Instants are truncated to the whole second first (vendor timestamps have at most that
//! meaning; BILLING.md counts seconds).

use crate::money::format_kwh_pt_br;
use crate::tariff::Tariff;
use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, SubsecRound, TimeDelta, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Decimal places of the unrounded kWh of each class in [`SessionCost`].
pub const KWH_SPLIT_SCALE: u32 = 18;

/// What one session costs, with the figures that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCost {
    /// The session's energy, kWh (exactly Wh / 1000).
    pub energy_kwh: Decimal,
    /// Energy at peak, unrounded (see [`KWH_SPLIT_SCALE`]); `peak_kwh + offpeak_kwh ==
    /// energy_kwh` exactly.
    pub peak_kwh: Decimal,
    pub offpeak_kwh: Decimal,
    /// Real elapsed seconds in the peak windows; `peak_seconds + offpeak_seconds` is the
    /// session's duration.
    pub peak_seconds: i64,
    pub offpeak_seconds: i64,
    /// Peak kWh × peak price + off-peak kWh × off-peak price, rounded to the centavo half-up.
    pub energy_cost: Decimal,
    pub idle_seconds: i64,
    /// Idle seconds / 60 (exact where it terminates, else rounded half-up at 18 decimals).
    pub idle_minutes: Decimal,
    /// The idle fee after rounding and the cap, 2 decimals.
    pub idle_fee: Decimal,
    /// The cap lowered the idle fee.
    pub idle_fee_capped: bool,
}

impl SessionCost {
    /// Energy cost + idle fee.
    pub fn total(&self) -> Decimal {
        self.energy_cost + self.idle_fee
    }

    /// The session's duration in seconds.
    pub fn session_seconds(&self) -> i64 {
        self.peak_seconds + self.offpeak_seconds
    }
}

/// Why a session cannot be priced (and is a rejected row, BILLING.md rule 8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("energy must be above 0 kWh (got {} kWh)", Decimal::new(*energy_wh, 3))]
    EnergyNotPositive { energy_wh: i64 },
    #[error("energy of {} kWh is above the site's maximum of {max_kwh} kWh", Decimal::new(*energy_wh, 3))]
    EnergyAboveMaximum { energy_wh: i64, max_kwh: Decimal },
    #[error("end {end} is not after start {start}")]
    EndNotAfterStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("idle time cannot be negative (got {idle_seconds} s)")]
    NegativeIdle { idle_seconds: i64 },
    #[error("the session's figures are outside the range vetric can compute")]
    OutOfRange,
}

impl CostError {
    /// The reason as listed in a statement's rejected rows (pt-BR, BILLING.md rule 8).
    pub fn reason_pt_br(&self) -> String {
        match self {
            Self::EnergyNotPositive { energy_wh } => format!(
                "energia menor ou igual a zero ({})",
                format_kwh_pt_br(Decimal::new(*energy_wh, 3))
            ),
            Self::EnergyAboveMaximum { energy_wh, max_kwh } => format!(
                "energia de {} acima do máximo do condomínio ({})",
                format_kwh_pt_br(Decimal::new(*energy_wh, 3)),
                format_kwh_pt_br(*max_kwh)
            ),
            Self::EndNotAfterStart { .. } => "fim da recarga não é posterior ao início".to_owned(),
            Self::NegativeIdle { .. } => "tempo de ociosidade negativo".to_owned(),
            Self::OutOfRange => {
                "valores fora do intervalo que o vetric consegue calcular".to_owned()
            }
        }
    }
}

/// A year and month in the site's time zone (`"2026-03"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalMonth {
    year: i32,
    month: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a month; write YYYY-MM, e.g. \"2026-03\"")]
pub struct LocalMonthError(pub String);

impl LocalMonth {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| Self { year, month })
    }
    /// `"YYYY-MM"`.
    pub fn parse(raw: &str) -> Result<Self, LocalMonthError> {
        let err = || LocalMonthError(raw.to_owned());
        let (y, m) = raw.split_once('-').ok_or_else(err)?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) {
            return Err(err());
        }
        let year = y.parse().map_err(|_| err())?;
        let month = m.parse().map_err(|_| err())?;
        Self::new(year, month).ok_or_else(err)
    }
    pub fn year(&self) -> i32 {
        self.year
    }
    pub fn month(&self) -> u32 {
        self.month
    }
    /// The month of a local date.
    pub fn of_date(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }
    /// Whether a local date falls in this month.
    pub fn contains(&self, date: NaiveDate) -> bool {
        date.year() == self.year && date.month() == self.month
    }
}

impl fmt::Display for LocalMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl TryFrom<String> for LocalMonth {
    type Error = LocalMonthError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LocalMonth> for String {
    fn from(m: LocalMonth) -> Self {
        m.to_string()
    }
}

/// The month a session belongs to: the month of its local start (BILLING.md rule 3).
pub fn local_month(start: DateTime<Utc>, tz: Tz) -> LocalMonth {
    LocalMonth::of_date(start.with_timezone(&tz).date_naive())
}

/// The part of a session inside one local day's peak window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakPiece {
    /// The local date whose window this is.
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl PeakPiece {
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }
}

/// The first instant at which the wall clock of `tz` reads `local` or later (module docs).
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // A gap: binary-search the instant the wall clock jumps past `local`. UTC offsets
            // are well within ±30 h, so the answer lies in this bracket.
            let naive_utc = local.and_utc().timestamp();
            let mut lo = naive_utc.checked_sub(30 * 3600)?; // clock < local here
            let mut hi = naive_utc.checked_add(30 * 3600)?; // clock ≥ local here
            let reads_at_least = |secs: i64| {
                DateTime::from_timestamp(secs, 0)
                    .map(|u| u.with_timezone(&tz).naive_local() >= local)
            };
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if reads_at_least(mid)? {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            DateTime::from_timestamp(hi, 0)
        }
    }
}

/// The UTC instant of `minute` minutes after local midnight of `date` (1440: next midnight).
fn local_boundary(tz: Tz, date: NaiveDate, minute: u32) -> Option<DateTime<Utc>> {
    let local = date
        .and_hms_opt(0, 0, 0)?
        .checked_add_signed(TimeDelta::minutes(i64::from(minute)))?;
    first_instant_at_or_after(tz, local)
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// The parts of `[start, end)` inside peak windows, one per local date with a peak window the
/// session touches (rule 4), in order. Instants are truncated to the whole second.
pub fn peak_pieces(
    tariff: &Tariff,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<PeakPiece>, CostError> {
    let (start, end) = (whole_seconds(start), whole_seconds(end));
    let mut pieces = Vec::new();
    if end <= start {
        return Ok(pieces);
    }
    // One day of margin either side: cheap, and robust to any zone's oddities.
    let first = start.with_timezone(&tz).date_naive();
    let first = first.pred_opt().unwrap_or(first);
    let last = end.with_timezone(&tz).date_naive();
    let last = last.succ_opt().unwrap_or(last);
    let mut date = first;
    loop {
        if tariff.has_peak_on(date) {
            let window_start = local_boundary(tz, date, tariff.peak_start_minute())
                .ok_or(CostError::OutOfRange)?;
            let window_end =
                local_boundary(tz, date, tariff.peak_end_minute()).ok_or(CostError::OutOfRange)?;
            let piece_start = window_start.max(start);
            let piece_end = window_end.min(end);
            if piece_start < piece_end {
                pieces.push(PeakPiece {
                    date,
                    start: piece_start,
                    end: piece_end,
                });
            }
        }
        if date >= last {
            break;
        }
        date = date.succ_opt().ok_or(CostError::OutOfRange)?;
    }
    Ok(pieces)
}

/// BILLING.md rule 8's checks a session must pass before it is priced, in that order:
/// energy ≤ 0, energy above the tariff's maximum (exactly the maximum is accepted), end not
/// after start (compared at whole seconds).
pub fn check_session(
    tariff: &Tariff,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    energy_wh: i64,
) -> Result<(), CostError> {
    if energy_wh <= 0 {
        return Err(CostError::EnergyNotPositive { energy_wh });
    }
    if Decimal::new(energy_wh, 3) > tariff.max_kwh() {
        return Err(CostError::EnergyAboveMaximum {
            energy_wh,
            max_kwh: tariff.max_kwh(),
        });
    }
    if whole_seconds(end) <= whole_seconds(start) {
        return Err(CostError::EndNotAfterStart { start, end });
    }
    Ok(())
}

/// `n / d` rounded half away from zero, for `n ≥ 0`, `d > 0`.
fn div_half_up(n: i128, d: i128) -> Option<i128> {
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    if r.checked_mul(2)? >= d {
        q.checked_add(1)
    } else {
        Some(q)
    }
}

/// A decimal with at most 4 places as an integer count of 10⁻⁴ (exact for a [`Tariff`]'s
/// prices).
fn ten_thousandths(value: Decimal) -> i128 {
    let mut v = value;
    v.rescale(4);
    v.mantissa()
}

fn decimal(units: i128, scale: u32) -> Result<Decimal, CostError> {
    Decimal::try_from_i128_with_scale(units, scale).map_err(|_| CostError::OutOfRange)
}

/// kWh at [`KWH_SPLIT_SCALE`], shown with at least 3 decimals and no trailing zeros beyond.
fn kwh(units: i128) -> Result<Decimal, CostError> {
    let mut d = decimal(units, KWH_SPLIT_SCALE)?.normalize();
    if d.scale() < 3 {
        d.rescale(3);
    }
    Ok(d)
}

/// The cost of one session (module docs; BILLING.md rules 1, 4, 5, 6, checks of rule 8).
///
/// `energy_wh` is the session's energy in Wh (the vendor's kWh with 3 decimals × 1000);
/// `idle_seconds` its idle time.
pub fn session_cost(
    tariff: &Tariff,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    energy_wh: i64,
    idle_seconds: i64,
) -> Result<SessionCost, CostError> {
    check_session(tariff, start, end, energy_wh)?;
    if idle_seconds < 0 {
        return Err(CostError::NegativeIdle { idle_seconds });
    }
    let overflow = || CostError::OutOfRange;

    let total_s = (whole_seconds(end) - whole_seconds(start)).num_seconds();
    let peak_s: i64 = peak_pieces(tariff, tz, start, end)?
        .iter()
        .map(PeakPiece::seconds)
        .sum();
    let offpeak_s = total_s - peak_s;

    let wh = i128::from(energy_wh);
    let total = i128::from(total_s);

    // Peak kWh at 18 decimals = Wh × 10¹⁵ × peak s / session s, half-up; off-peak is the rest.
    let energy_units = wh
        .checked_mul(10_i128.pow(KWH_SPLIT_SCALE - 3))
        .ok_or_else(overflow)?;
    let peak_units = div_half_up(
        energy_units
            .checked_mul(i128::from(peak_s))
            .ok_or_else(overflow)?,
        total,
    )
    .ok_or_else(overflow)?;
    let offpeak_units = energy_units - peak_units;

    // Energy cost in centavos = Wh × (peak s × P + off-peak s × O) / (s × 10⁵), P and O in 10⁻⁴.
    let price_seconds = i128::from(peak_s)
        .checked_mul(ten_thousandths(tariff.peak_price()))
        .and_then(|p| {
            i128::from(offpeak_s)
                .checked_mul(ten_thousandths(tariff.offpeak_price()))
                .and_then(|o| p.checked_add(o))
        })
        .ok_or_else(overflow)?;
    let energy_cost_c = div_half_up(
        wh.checked_mul(price_seconds).ok_or_else(overflow)?,
        total.checked_mul(100_000).ok_or_else(overflow)?,
    )
    .ok_or_else(overflow)?;

    // Idle fee in centavos = max(0, idle s − grace s) × F / 6000, F in 10⁻⁴ per minute.
    let idle = i128::from(idle_seconds);
    let chargeable_s = (idle - i128::from(tariff.idle_grace_min()) * 60).max(0);
    let fee_c = div_half_up(
        chargeable_s
            .checked_mul(ten_thousandths(tariff.idle_fee_per_min()))
            .ok_or_else(overflow)?,
        6000,
    )
    .ok_or_else(overflow)?;
    let cap_c = tariff.idle_fee_cap().map(|cap| ten_thousandths(cap) / 100);
    let capped_fee_c = cap_c.map_or(fee_c, |cap| fee_c.min(cap));
    let idle_minute_units = div_half_up(
        idle.checked_mul(10_i128.pow(KWH_SPLIT_SCALE))
            .ok_or_else(overflow)?,
        60,
    )
    .ok_or_else(overflow)?;

    Ok(SessionCost {
        energy_kwh: Decimal::new(energy_wh, 3),
        peak_kwh: kwh(peak_units)?,
        offpeak_kwh: kwh(offpeak_units)?,
        peak_seconds: peak_s,
        offpeak_seconds: offpeak_s,
        energy_cost: decimal(energy_cost_c, 2)?,
        idle_seconds,
        idle_minutes: decimal(idle_minute_units, KWH_SPLIT_SCALE)?.normalize(),
        idle_fee: decimal(capped_fee_c, 2)?,
        idle_fee_capped: capped_fee_c < fee_c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{format_kwh, format_money};
    use crate::tariff::TariffSpec;
    use chrono_tz::America::{New_York, Sao_Paulo};
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

    /// A São Paulo local time "YYYY-MM-DD HH:MM[:SS]" as UTC.
    fn sp(local: &str) -> DateTime<Utc> {
        at(Sao_Paulo, local)
    }

    fn at(tz: Tz, local: &str) -> DateTime<Utc> {
        let fmt = if local.len() > 16 {
            "%Y-%m-%d %H:%M:%S"
        } else {
            "%Y-%m-%d %H:%M"
        };
        let naive = NaiveDateTime::parse_from_str(local, fmt).unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cost(t: &Tariff, start: &str, end: &str, wh: i64) -> SessionCost {
        session_cost(t, Sao_Paulo, sp(start), sp(end), wh, 0).unwrap()
    }

    // --- BILLING.md worked examples -------------------------------------------------------

    #[test]
    fn example_thursday_across_17_30() {
        // 2026-03-05 is a Thursday.
        let c = cost(&tariff(), "2026-03-05 16:30", "2026-03-05 18:30", 10_000);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (3600, 3600));
        assert_eq!(c.peak_kwh, dec("5.000"));
        assert_eq!(c.offpeak_kwh, dec("5.000"));
        assert_eq!(format_kwh(c.peak_kwh), "5.000");
        assert_eq!(format_money(c.energy_cost), "18.05");
    }

    #[test]
    fn example_thursday_night_to_friday_peak() {
        let c = cost(&tariff(), "2026-03-05 23:00", "2026-03-06 19:00", 20_000);
        assert_eq!(c.session_seconds(), 20 * 3600);
        assert_eq!(c.peak_seconds, 5400);
        assert_eq!(c.peak_kwh, dec("1.5"));
        assert_eq!(c.offpeak_kwh, dec("18.5"));
        // 4.62 + 9.805 = 14.425 → 14.43, half-up.
        assert_eq!(format_money(c.energy_cost), "14.43");
    }

    #[test]
    fn example_tuesday_holiday() {
        // Tiradentes 2026 and Carnival 2026 are both Tuesdays.
        for day in ["2026-04-21", "2026-02-17"] {
            let c = cost(
                &tariff(),
                &format!("{day} 18:00"),
                &format!("{day} 20:00"),
                8_000,
            );
            assert_eq!(c.peak_seconds, 0, "{day}");
            assert_eq!(format_money(c.energy_cost), "4.24", "{day}");
        }
        // The same hours on an ordinary Tuesday are all peak: 8 × 3.08.
        let c = cost(&tariff(), "2026-04-14 18:00", "2026-04-14 20:00", 8_000);
        assert_eq!(format_money(c.energy_cost), "24.64");
    }

    #[test]
    fn example_idle_fees() {
        let t = tariff();
        let idle = |minutes: i64| {
            session_cost(
                &t,
                Sao_Paulo,
                sp("2026-03-07 10:00"),
                sp("2026-03-07 11:00"),
                1_000,
                minutes * 60,
            )
            .unwrap()
        };
        assert_eq!(format_money(idle(15).idle_fee), "0.00");
        assert_eq!(format_money(idle(40).idle_fee), "2.50");
        let capped = idle(600);
        assert_eq!(format_money(capped.idle_fee), "30.00");
        assert!(capped.idle_fee_capped);
        assert!(!idle(40).idle_fee_capped);
        assert_eq!(capped.idle_minutes, dec("600"));
        // Saturday 10–11 h, 1 kWh off-peak: 0.53 + 30.00.
        assert_eq!(format_money(capped.total()), "30.53");
    }

    // --- edges --------------------------------------------------------------------------------

    #[test]
    fn straddling_the_end_of_the_window() {
        let c = cost(&tariff(), "2026-03-05 20:00", "2026-03-05 21:00", 6_000);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (1800, 1800));
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("3.000"), dec("3.000")));
        // 3 × 3.08 + 3 × 0.53 = 9.24 + 1.59
        assert_eq!(format_money(c.energy_cost), "10.83");
    }

    #[test]
    fn the_window_bounds_are_start_inclusive_end_exclusive() {
        let t = tariff();
        let c = cost(&t, "2026-03-05 17:29:59", "2026-03-05 17:30:01", 1_000);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (1, 1));
        let c = cost(&t, "2026-03-05 20:29:59", "2026-03-05 20:30:01", 1_000);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (1, 1));
        let c = cost(&t, "2026-03-05 20:30", "2026-03-05 21:00", 1_000);
        assert_eq!(c.peak_seconds, 0);
        let c = cost(&t, "2026-03-05 17:00", "2026-03-05 17:30", 1_000);
        assert_eq!(c.peak_seconds, 0);
    }

    #[test]
    fn covering_the_whole_window() {
        let c = cost(&tariff(), "2026-03-05 12:00", "2026-03-05 22:00", 10_000);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (3 * 3600, 7 * 3600));
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("3.000"), dec("7.000")));
        // 3 × 3.08 + 7 × 0.53 = 9.24 + 3.71
        assert_eq!(format_money(c.energy_cost), "12.95");
        let pieces = peak_pieces(
            &tariff(),
            Sao_Paulo,
            sp("2026-03-05 12:00"),
            sp("2026-03-05 22:00"),
        )
        .unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            (pieces[0].start, pieces[0].end),
            (sp("2026-03-05 17:30"), sp("2026-03-05 20:30"))
        );
    }

    #[test]
    fn crossing_midnight_into_the_next_days_peak() {
        // Wednesday 20:00 → Thursday 18:30: Wednesday's last 30 min and Thursday's first hour.
        let t = tariff();
        let pieces = peak_pieces(
            &t,
            Sao_Paulo,
            sp("2026-03-04 20:00"),
            sp("2026-03-05 18:30"),
        )
        .unwrap();
        let days: Vec<String> = pieces.iter().map(|p| p.date.to_string()).collect();
        assert_eq!(days, ["2026-03-04", "2026-03-05"]);
        let c = cost(&t, "2026-03-04 20:00", "2026-03-05 18:30", 22_500);
        assert_eq!(c.session_seconds(), 22 * 3600 + 1800);
        assert_eq!(c.peak_seconds, 5400);
        // 22.5 kWh × 1.5 / 22.5 h = 1.5 kWh at peak.
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("1.500"), dec("21.000")));
        assert_eq!(format_money(c.energy_cost), "15.75"); // 4.62 + 11.13
    }

    #[test]
    fn spanning_a_weekend() {
        // Friday 19:00 → Monday 19:00: Friday 1.5 h, Saturday and Sunday none, Monday 1.5 h.
        let c = cost(&tariff(), "2026-03-06 19:00", "2026-03-09 19:00", 72_000);
        assert_eq!(c.session_seconds(), 72 * 3600);
        assert_eq!(c.peak_seconds, 3 * 3600);
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("3.000"), dec("69.000")));
        assert_eq!(format_money(c.energy_cost), "45.81"); // 9.24 + 36.57
    }

    #[test]
    fn a_holiday_inside_a_longer_session_and_a_site_holiday() {
        // Monday 2026-04-20 12:00 → Wednesday 04-22 12:00: Tiradentes (Tuesday) has no peak.
        let t = tariff();
        let pieces = peak_pieces(
            &t,
            Sao_Paulo,
            sp("2026-04-20 12:00"),
            sp("2026-04-22 12:00"),
        )
        .unwrap();
        let days: Vec<String> = pieces.iter().map(|p| p.date.to_string()).collect();
        assert_eq!(days, ["2026-04-20"]);
        // A site holiday (São Paulo's anniversary, a Monday in 2027) removes that day's peak.
        let site = TariffSpec {
            holidays: Some(vec!["2027-01-25".into()]),
            ..spec()
        }
        .validate()
        .unwrap();
        assert_eq!(
            cost(&site, "2027-01-25 18:00", "2027-01-25 19:00", 1_000).peak_seconds,
            0
        );
        assert_eq!(
            cost(&t, "2027-01-25 18:00", "2027-01-25 19:00", 1_000).peak_seconds,
            3600
        );
    }

    #[test]
    fn a_cost_exactly_on_half_a_centavo_rounds_up() {
        // 1.5 kWh off-peak at 0.53 = 0.795 → 0.80; 0.005 exactly → 0.01.
        let c = cost(&tariff(), "2026-03-07 10:00", "2026-03-07 11:00", 1_500);
        assert_eq!(c.energy_cost, dec("0.80"));
        let cheap = TariffSpec {
            offpeak_price: Some("0.005".into()),
            ..spec()
        }
        .validate()
        .unwrap();
        assert_eq!(
            cost(&cheap, "2026-03-07 10:00", "2026-03-07 11:00", 1_000).energy_cost,
            dec("0.01")
        );
        // A half centavo in the idle fee: 1 minute over the grace at R$ 0.0050.
        let fee = TariffSpec {
            idle_fee_per_min: Some("0.005".into()),
            ..spec()
        }
        .validate()
        .unwrap();
        let c = session_cost(
            &fee,
            Sao_Paulo,
            sp("2026-03-07 10:00"),
            sp("2026-03-07 11:00"),
            1_000,
            16 * 60,
        )
        .unwrap();
        assert_eq!(c.idle_fee, dec("0.01"));
    }

    #[test]
    fn idle_minutes_are_seconds_over_60_exactly() {
        let t = tariff();
        let c = |idle_s| {
            session_cost(
                &t,
                Sao_Paulo,
                sp("2026-03-07 10:00"),
                sp("2026-03-07 11:00"),
                1_000,
                idle_s,
            )
            .unwrap()
        };
        // 15 min 30 s: 0.5 min over the grace × 0.10 = 0.05.
        assert_eq!(c(15 * 60 + 30).idle_fee, dec("0.05"));
        assert_eq!(c(15 * 60 + 30).idle_minutes, dec("15.5"));
        // 15 min 20 s: 1/3 min × 0.10 = 0.0333… → 0.03.
        assert_eq!(c(15 * 60 + 20).idle_fee, dec("0.03"));
        // 15 min 45 s: 0.75 × 0.10 = 0.075 → 0.08 (half-up).
        assert_eq!(c(15 * 60 + 45).idle_fee, dec("0.08"));
        assert_eq!(c(0).idle_fee, dec("0.00"));
    }

    #[test]
    fn no_cap_means_no_cap() {
        let t = TariffSpec {
            idle_fee_cap: None,
            ..spec()
        }
        .validate()
        .unwrap();
        let c = session_cost(
            &t,
            Sao_Paulo,
            sp("2026-03-07 10:00"),
            sp("2026-03-07 11:00"),
            1_000,
            600 * 60,
        )
        .unwrap();
        assert_eq!(c.idle_fee, dec("58.50"));
        assert!(!c.idle_fee_capped);
    }

    #[test]
    fn a_one_second_session() {
        let c = cost(&tariff(), "2026-03-05 18:00:00", "2026-03-05 18:00:01", 1);
        assert_eq!((c.peak_seconds, c.offpeak_seconds), (1, 0));
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("0.001"), dec("0.000")));
        assert_eq!(c.energy_cost, dec("0.00")); // 0.00308
    }

    #[test]
    fn a_thirty_hour_session() {
        // Thursday 12:00 → Friday 18:00: Thursday 3 h, Friday 0.5 h of peak, 30 h in all.
        let c = cost(&tariff(), "2026-03-05 12:00", "2026-03-06 18:00", 30_000);
        assert_eq!(c.session_seconds(), 30 * 3600);
        assert_eq!(c.peak_seconds, 3 * 3600 + 1800);
        assert_eq!((c.peak_kwh, c.offpeak_kwh), (dec("3.500"), dec("26.500")));
        assert_eq!(format_money(c.energy_cost), "24.83"); // 10.78 + 14.045 = 24.825
    }

    #[test]
    fn thirds_split_exactly() {
        // 1 h of peak in a 3 h session: a third of 10 kWh has no exact decimal.
        let c = cost(&tariff(), "2026-03-05 15:30", "2026-03-05 18:30", 10_000);
        assert_eq!(c.peak_kwh, dec("3.333333333333333333"));
        assert_eq!(c.offpeak_kwh, dec("6.666666666666666667"));
        assert_eq!(c.peak_kwh + c.offpeak_kwh, dec("10"));
        // Exactly 10/3 × 3.08 + 20/3 × 0.53 = 30.8/3 + 10.6/3 = 41.4/3 = 13.80.
        assert_eq!(c.energy_cost, dec("13.80"));
    }

    #[test]
    fn max_kwh_exactly_is_accepted_and_above_refused() {
        let t = tariff();
        assert!(
            session_cost(
                &t,
                Sao_Paulo,
                sp("2026-03-05 10:00"),
                sp("2026-03-05 11:00"),
                150_000,
                0
            )
            .is_ok()
        );
        let err = session_cost(
            &t,
            Sao_Paulo,
            sp("2026-03-05 10:00"),
            sp("2026-03-05 11:00"),
            150_001,
            0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            CostError::EnergyAboveMaximum {
                energy_wh: 150_001,
                max_kwh: dec("150")
            }
        );
        assert_eq!(
            err.reason_pt_br(),
            "energia de 150,001 kWh acima do máximo do condomínio (150,000 kWh)"
        );
    }

    #[test]
    fn rejections_follow_the_order_of_rule_8() {
        let t = tariff();
        let (s, e) = (sp("2026-03-05 10:00"), sp("2026-03-05 11:00"));
        // Every check fails: energy ≤ 0 comes first.
        assert!(matches!(
            session_cost(&t, Sao_Paulo, e, s, 0, -1),
            Err(CostError::EnergyNotPositive { energy_wh: 0 })
        ));
        assert!(matches!(
            session_cost(&t, Sao_Paulo, e, s, -5, 0),
            Err(CostError::EnergyNotPositive { .. })
        ));
        // Then the maximum, before end-not-after-start.
        assert!(matches!(
            session_cost(&t, Sao_Paulo, e, s, 200_000, 0),
            Err(CostError::EnergyAboveMaximum { .. })
        ));
        let err = session_cost(&t, Sao_Paulo, e, s, 1_000, 0).unwrap_err();
        assert_eq!(err, CostError::EndNotAfterStart { start: e, end: s });
        assert_eq!(
            err.reason_pt_br(),
            "fim da recarga não é posterior ao início"
        );
        assert!(matches!(
            session_cost(&t, Sao_Paulo, s, s, 1_000, 0),
            Err(CostError::EndNotAfterStart { .. })
        ));
        // Idle time is checked last (not a rule-8 reason; the importer cannot produce it).
        assert!(matches!(
            session_cost(&t, Sao_Paulo, s, e, 1_000, -1),
            Err(CostError::NegativeIdle { .. })
        ));
        assert_eq!(
            CostError::EnergyNotPositive { energy_wh: 0 }.reason_pt_br(),
            "energia menor ou igual a zero (0,000 kWh)"
        );
        assert!(!CostError::OutOfRange.reason_pt_br().is_empty());
    }

    #[test]
    fn sub_second_parts_are_truncated() {
        let t = tariff();
        let s = sp("2026-03-05 18:00") + TimeDelta::milliseconds(900);
        let c = session_cost(
            &t,
            Sao_Paulo,
            s,
            s + TimeDelta::milliseconds(1200),
            1_000,
            0,
        )
        .unwrap();
        assert_eq!(c.session_seconds(), 2);
        assert!(matches!(
            session_cost(&t, Sao_Paulo, s, s + TimeDelta::milliseconds(50), 1_000, 0),
            Err(CostError::EndNotAfterStart { .. })
        ));
    }

    #[test]
    fn weekday_config_without_friday() {
        let t = TariffSpec {
            peak_weekdays: Some(["mon", "tue", "wed", "thu"].map(String::from).to_vec()),
            ..spec()
        }
        .validate()
        .unwrap();
        // The Thursday → Friday example: Friday's window no longer counts.
        let c = cost(&t, "2026-03-05 23:00", "2026-03-06 19:00", 20_000);
        assert_eq!(c.peak_seconds, 0);
        assert_eq!(c.energy_cost, dec("10.60"));
        assert_eq!(
            cost(&t, "2026-03-05 18:00", "2026-03-05 19:00", 1_000).peak_seconds,
            3600
        );
        // And a weekend peak where configured.
        let sunday = TariffSpec {
            peak_weekdays: Some(vec!["sun".into()]),
            ..spec()
        }
        .validate()
        .unwrap();
        assert_eq!(
            cost(&sunday, "2026-03-08 18:00", "2026-03-08 19:00", 1_000).peak_seconds,
            3600
        );
    }

    #[test]
    fn the_month_is_the_month_of_the_local_start() {
        // 2026-04-01 01:00 UTC is still 31 March in São Paulo.
        let start = DateTime::parse_from_rfc3339("2026-04-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(local_month(start, Sao_Paulo).to_string(), "2026-03");
        assert_eq!(local_month(start, chrono_tz::UTC).to_string(), "2026-04");
        let m = LocalMonth::parse("2026-03").unwrap();
        assert_eq!((m.year(), m.month()), (2026, 3));
        assert!(m.contains(NaiveDate::from_ymd_opt(2026, 3, 31).unwrap()));
        for bad in ["2026-3", "2026-13", "26-03", "2026/03", "", "2026-03-01"] {
            assert!(LocalMonth::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"2026-03\"");
        assert_eq!(
            serde_json::from_str::<LocalMonth>("\"2026-03\"").unwrap(),
            m
        );
    }

    #[test]
    fn serialises_amounts_as_strings() {
        let c = cost(&tariff(), "2026-03-05 16:30", "2026-03-05 18:30", 10_000);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["energy_cost"], "18.05");
        assert_eq!(json["peak_kwh"], "5.000");
        assert_eq!(json["idle_fee"], "0.00");
    }

    // --- DST ------------------------------------------------------------------------------

    #[test]
    fn sao_paulo_old_dst_gap_at_midnight() {
        // 2018-11-04 00:00 did not exist in São Paulo (clocks went to 01:00). A peak window
        // from midnight that day starts when the gap ends, 03:00 UTC.
        let t = TariffSpec {
            peak_start: Some("00:00".into()),
            peak_end: Some("02:00".into()),
            peak_weekdays: Some(vec!["sun".into()]),
            ..spec()
        }
        .validate()
        .unwrap();
        let day = NaiveDate::from_ymd_opt(2018, 11, 4).unwrap();
        let gap_end = DateTime::parse_from_rfc3339("2018-11-04T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(local_boundary(Sao_Paulo, day, 0), Some(gap_end));
        let start = DateTime::parse_from_rfc3339("2018-11-04T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = DateTime::parse_from_rfc3339("2018-11-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = session_cost(&t, Sao_Paulo, start, end, 12_000, 0).unwrap();
        // Window: 03:00 UTC (gap end) to 02:00 local = 04:00 UTC: one real hour.
        assert_eq!(c.peak_seconds, 3600);
        assert_eq!(c.session_seconds(), 12 * 3600);
    }

    #[test]
    fn sao_paulo_old_dst_overlap_before_midnight() {
        // On 2019-02-16 São Paulo's 23:00–24:00 happened twice (-02 then -03). A window
        // 23:00–24:00 starts at the first 23:00 and ends at the (single) midnight: 2 real hours.
        let t = TariffSpec {
            peak_start: Some("23:00".into()),
            peak_end: Some("24:00".into()),
            peak_weekdays: Some(vec!["sat".into()]),
            ..spec()
        }
        .validate()
        .unwrap();
        let start = DateTime::parse_from_rfc3339("2019-02-16T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = DateTime::parse_from_rfc3339("2019-02-17T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let pieces = peak_pieces(&t, Sao_Paulo, start, end).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].start.to_rfc3339(), "2019-02-17T01:00:00+00:00");
        assert_eq!(pieces[0].end.to_rfc3339(), "2019-02-17T03:00:00+00:00");
        let c = session_cost(&t, Sao_Paulo, start, end, 24_000, 0).unwrap();
        assert_eq!(c.session_seconds(), 24 * 3600);
        assert_eq!(c.peak_kwh, dec("2.000"));
    }

    #[test]
    fn new_york_gap_and_overlap_inside_a_window() {
        let window = |s: &str, e: &str| {
            TariffSpec {
                peak_start: Some(s.into()),
                peak_end: Some(e.into()),
                peak_weekdays: Some(vec!["sun".into()]),
                ..spec()
            }
            .validate()
            .unwrap()
        };
        let secs = |t: &Tariff, day: &str| {
            let start = at(New_York, &format!("{day} 00:00"));
            let end = at(New_York, &format!("{day} 12:00"));
            session_cost(t, New_York, start, end, 1_000, 0)
                .unwrap()
                .peak_seconds
        };
        // Spring forward 2026-03-08 02:00 → 03:00.
        assert_eq!(secs(&window("01:30", "03:30"), "2026-03-08"), 3600);
        assert_eq!(secs(&window("02:30", "03:30"), "2026-03-08"), 1800); // starts at the gap's end
        // Fall back 2026-11-01 02:00 → 01:00: 01:30 is the first one (EDT).
        assert_eq!(secs(&window("01:30", "02:30"), "2026-11-01"), 2 * 3600);
        assert_eq!(secs(&window("00:30", "01:30"), "2026-11-01"), 3600);
    }

    // --- properties ---------------------------------------------------------------------------

    fn any_tariff() -> impl Strategy<Value = Tariff> {
        (
            0u32..1440,
            1u32..=1440,
            proptest::collection::vec(any::<bool>(), 7),
            0u32..100_000,
            0u32..100_000,
        )
            .prop_filter_map("empty window", |(s, e, days, pp, op)| {
                if e <= s {
                    return None;
                }
                let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
                TariffSpec {
                    peak_price: Some(Decimal::new(i64::from(pp), 4).to_string().into()),
                    offpeak_price: Some(Decimal::new(i64::from(op), 4).to_string().into()),
                    peak_start: Some(hhmm(s)),
                    peak_end: Some(hhmm(e)),
                    peak_weekdays: Some(
                        names
                            .iter()
                            .zip(days)
                            .filter(|(_, on)| *on)
                            .map(|(n, _)| n.to_string())
                            .collect(),
                    ),
                    max_kwh: Some("10000".into()),
                    ..spec()
                }
                .validate()
                .ok()
            })
    }

    fn any_zone() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(Sao_Paulo),
            Just(New_York),
            Just(chrono_tz::UTC),
            Just(chrono_tz::Australia::Lord_Howe), // 30-minute DST shift
            Just(chrono_tz::Asia::Kolkata),
        ]
    }

    fn any_session() -> impl Strategy<Value = (DateTime<Utc>, i64)> {
        // Starts between 2015 and 2035 (covers São Paulo's DST years), up to 72 h long.
        (1_420_070_400i64..2_051_222_400, 1i64..=72 * 3600)
            .prop_map(|(s, d)| (DateTime::from_timestamp(s, 0).unwrap_or_default(), d))
    }

    proptest! {
        #[test]
        fn the_split_adds_up_exactly(
            t in any_tariff(),
            tz in any_zone(),
            (start, dur) in any_session(),
            wh in 1i64..=10_000_000,
        ) {
            let end = start + TimeDelta::seconds(dur);
            let c = session_cost(&t, tz, start, end, wh, 0).unwrap();
            prop_assert_eq!(c.peak_kwh + c.offpeak_kwh, Decimal::new(wh, 3));
            prop_assert_eq!(c.peak_seconds + c.offpeak_seconds, dur);
            prop_assert!(c.peak_seconds >= 0 && c.offpeak_seconds >= 0);
            prop_assert!(c.peak_kwh >= Decimal::ZERO && c.offpeak_kwh >= Decimal::ZERO);
            prop_assert_eq!(c.energy_cost.scale(), 2);
            // The cost lies between all-off-peak and all-peak.
            let lo = t.peak_price().min(t.offpeak_price()) * c.energy_kwh;
            let hi = t.peak_price().max(t.offpeak_price()) * c.energy_kwh;
            prop_assert!(c.energy_cost >= crate::money::round_money(lo));
            prop_assert!(c.energy_cost <= crate::money::round_money(hi));
            // Pieces are ordered, disjoint and inside the session.
            let pieces = peak_pieces(&t, tz, start, end).unwrap();
            for w in pieces.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            for p in &pieces {
                prop_assert!(p.start >= start && p.end <= end && p.start < p.end);
            }
        }

        #[test]
        fn cost_is_monotone_in_energy(
            t in any_tariff(),
            tz in any_zone(),
            (start, dur) in any_session(),
            wh in 1i64..10_000_000,
            extra in 1i64..1_000_000,
        ) {
            let end = start + TimeDelta::seconds(dur);
            let more = (wh + extra).min(10_000_000);
            let a = session_cost(&t, tz, start, end, wh, 0).unwrap();
            let b = session_cost(&t, tz, start, end, more, 0).unwrap();
            prop_assert!(a.energy_cost <= b.energy_cost);
            prop_assert!(a.peak_kwh <= b.peak_kwh && a.offpeak_kwh <= b.offpeak_kwh);
        }

        #[test]
        fn idle_fee_is_monotone_and_capped(idle_a in 0i64..200_000, idle_b in 0i64..200_000) {
            let t = tariff();
            let fee = |idle| {
                session_cost(&t, Sao_Paulo, sp("2026-03-07 10:00"), sp("2026-03-07 11:00"), 1_000, idle)
                    .unwrap()
                    .idle_fee
            };
            let (lo, hi) = (idle_a.min(idle_b), idle_a.max(idle_b));
            prop_assert!(fee(lo) <= fee(hi));
            prop_assert!(fee(hi) <= dec("30.00"));
        }
    }
}
