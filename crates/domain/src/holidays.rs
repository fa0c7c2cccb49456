//! Brazilian national holidays as used by time-of-use electricity tariffs (BILLING.md,
//! "Inputs" and rule 4: no peak on holidays).
//!
//! This room answers one question — "is this local date a national holiday without peak?" —
//! for any year, with no table to keep up to date: the fixed dates are constants and the
//! movable ones (Carnival Tuesday, Good Friday, Corpus Christi) follow from Easter Sunday,
//! computed with the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
//!
//! A site's own holidays (municipal, state, or a condominium's choice) are not here; they live
//! on the [`Tariff`](crate::Tariff) and are added to these.
//!
//! Decisions where BILLING.md is silent:
//! - Dia Nacional de Zumbi e da Consciência Negra (11-20) is national from 2024 on
//!   (Lei 14.759/2023); earlier years do not get it, so re-computing an old month does not
//!   change its result.
//! - Only Carnival *Tuesday* is a holiday here (the Monday is not on the tariff list), as
//!   BILLING.md says.
//! - Movable holidays exist from 1583 on (the first full Gregorian year); before that,
//!   [`easter_sunday`] answers `None` and only the fixed dates count.

use chrono::{Datelike, Days, NaiveDate};

/// One national holiday of a given year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NationalHoliday {
    pub date: NaiveDate,
    /// The holiday's name as people in Brazil call it ("Tiradentes").
    pub name_pt_br: &'static str,
}

/// Fixed-date national holidays: (month, day, name, first year it applies).
const FIXED: &[(u32, u32, &str, i32)] = &[
    (1, 1, "Confraternização Universal", i32::MIN),
    (4, 21, "Tiradentes", i32::MIN),
    (5, 1, "Dia do Trabalho", i32::MIN),
    (9, 7, "Independência do Brasil", i32::MIN),
    (10, 12, "Nossa Senhora Aparecida", i32::MIN),
    (11, 2, "Finados", i32::MIN),
    (11, 15, "Proclamação da República", i32::MIN),
    (11, 20, "Dia Nacional de Zumbi e da Consciência Negra", 2024),
    (12, 25, "Natal", i32::MIN),
];

/// Movable holidays: (days relative to Easter Sunday, name).
const MOVABLE: &[(i64, &str)] = &[
    (-47, "Carnaval"),
    (-2, "Sexta-feira Santa"),
    (60, "Corpus Christi"),
];

/// The first year of the Gregorian calendar in full; earlier years have no computed Easter.
const FIRST_GREGORIAN_YEAR: i32 = 1583;

/// Easter Sunday of `year` (Gregorian), by the anonymous Gregorian algorithm.
///
/// `None` before 1583 or outside the range of [`NaiveDate`].
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    if year < FIRST_GREGORIAN_YEAR {
        return None;
    }
    let y = i64::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let n = h + l - 7 * m + 114;
    let month = u32::try_from(n / 31).ok()?;
    let day = u32::try_from(n % 31 + 1).ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn offset(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    let magnitude = Days::new(days.unsigned_abs());
    if days >= 0 {
        date.checked_add_days(magnitude)
    } else {
        date.checked_sub_days(magnitude)
    }
}

/// Every national holiday of `year`, sorted by date.
pub fn national_holidays(year: i32) -> Vec<NationalHoliday> {
    let mut out: Vec<NationalHoliday> = FIXED
        .iter()
        .filter(|(_, _, _, since)| year >= *since)
        .filter_map(|&(month, day, name, _)| {
            NaiveDate::from_ymd_opt(year, month, day).map(|date| NationalHoliday {
                date,
                name_pt_br: name,
            })
        })
        .collect();
    if let Some(easter) = easter_sunday(year) {
        out.extend(MOVABLE.iter().filter_map(|&(days, name)| {
            offset(easter, days).map(|date| NationalHoliday {
                date,
                name_pt_br: name,
            })
        }));
    }
    out.sort();
    out
}

/// The name of the national holiday on `date`, if it is one.
pub fn national_holiday(date: NaiveDate) -> Option<&'static str> {
    let year = date.year();
    let fixed = FIXED
        .iter()
        .find(|&&(month, day, _, since)| {
            year >= since && date.month() == month && date.day() == day
        })
        .map(|&(_, _, name, _)| name);
    if fixed.is_some() {
        return fixed;
    }
    let easter = easter_sunday(year)?;
    let days = date.signed_duration_since(easter).num_days();
    MOVABLE
        .iter()
        .find(|&&(offset_days, _)| offset_days == days)
        .map(|&(_, name)| name)
}

/// Whether `date` is a national holiday (no peak on it).
pub fn is_national_holiday(date: NaiveDate) -> bool {
    national_holiday(date).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn easter_matches_known_years() {
        for (year, easter) in [
            (1943, "1943-04-25"), // latest possible
            (1961, "1961-04-02"),
            (2000, "2000-04-23"),
            (2008, "2008-03-23"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2028, "2028-04-16"),
            (2038, "2038-04-25"),
            (2285, "2285-03-22"), // earliest possible
        ] {
            assert_eq!(easter_sunday(year), Some(d(easter)), "{year}");
        }
        assert_eq!(easter_sunday(1500), None);
    }

    #[test]
    fn movable_holidays_follow_easter() {
        assert_eq!(national_holiday(d("2026-02-17")), Some("Carnaval"));
        assert_eq!(national_holiday(d("2026-04-03")), Some("Sexta-feira Santa"));
        assert_eq!(national_holiday(d("2026-06-04")), Some("Corpus Christi"));
        assert_eq!(national_holiday(d("2025-03-04")), Some("Carnaval"));
        assert_eq!(national_holiday(d("2025-04-18")), Some("Sexta-feira Santa"));
        assert_eq!(national_holiday(d("2025-06-19")), Some("Corpus Christi"));
        assert_eq!(national_holiday(d("2027-02-09")), Some("Carnaval"));
        assert_eq!(national_holiday(d("2027-03-26")), Some("Sexta-feira Santa"));
        assert_eq!(national_holiday(d("2027-05-27")), Some("Corpus Christi"));
        // Carnival Monday and Ash Wednesday are not on the list.
        assert_eq!(national_holiday(d("2026-02-16")), None);
        assert_eq!(national_holiday(d("2026-02-18")), None);
        // Easter Sunday itself is a Sunday, not a listed holiday.
        assert_eq!(national_holiday(d("2026-04-05")), None);
    }

    #[test]
    fn fixed_holidays_every_year_and_consciencia_negra_from_2024() {
        for year in [2023, 2024, 2026, 2030] {
            for md in [
                "01-01", "04-21", "05-01", "09-07", "10-12", "11-02", "11-15", "12-25",
            ] {
                assert!(
                    is_national_holiday(d(&format!("{year}-{md}"))),
                    "{year}-{md}"
                );
            }
        }
        assert!(!is_national_holiday(d("2023-11-20")));
        assert!(is_national_holiday(d("2024-11-20")));
        assert!(is_national_holiday(d("2026-11-20")));
        assert!(!is_national_holiday(d("2026-03-05")));
        assert!(!is_national_holiday(d("2026-12-24")));
    }

    #[test]
    fn the_list_of_a_year_is_sorted_and_complete() {
        let list = national_holidays(2026);
        assert_eq!(list.len(), 12);
        assert!(list.windows(2).all(|w| w[0].date < w[1].date));
        for h in &list {
            assert_eq!(national_holiday(h.date), Some(h.name_pt_br));
        }
        assert_eq!(national_holidays(2023).len(), 11);
    }
}
