//! A month of charging history for the demo (issue #8: "a new user sees a real statement
//! without importing anything").
//!
//! The demo's simulator only produces sessions from the moment it starts, so a fresh demo
//! would show an empty statement for the previous month. This fills the previous local month
//! and the current one up to now with finished sessions of the demo's residents, written as
//! an import of the vendor's export labelled [`BATCH_NAME`] — the store's normal write path
//! for finished sessions (vetric's own records only come from the ingest cycle, which also
//! writes charger state and the vendor link, so it cannot take a past session by itself).
//! The statement reads imported rows exactly as it reads any other import.
//!
//! Deterministic: the sessions of a month depend only on the demo's seed, the fleet and the
//! month, so the statement is reproducible. Idempotent: vendor ids are fixed per month and
//! index, and only the ids not stored yet are imported — a restart adds only the sessions that
//! have ended since the last start (none when nothing new), never a copy.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use std::collections::BTreeSet;
use vetric_domain::{LocalMonth, SessionRecord, SessionSource, Tag, TimePrecision, local_midnight};
use vetric_sim::cvepro::Fleet;
use vetric_store::{AuditEntry, NewImportBatch, SiteId, Store, StoreError};

/// The import batch's "file name": what the import list shows for the seeded rows.
pub const BATCH_NAME: &str = "histórico de demonstração (gerado pelo vetric demo)";

/// A tag no demo resident owns: its sessions land on the "sem morador" line.
pub const UNKNOWN_TAG: &str = "D3M0CAFE";

/// Seeded vendor ids stay below the simulator's first live transaction id (≈451 900), so a
/// demo session never shares an id with a seeded one.
const VENDOR_ID_BASE: i64 = 300_000;
const IDS_PER_MONTH: i64 = 2_000;

/// What [`seed`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seeded {
    pub months: usize,
    pub imported: usize,
}

/// splitmix64: small, fast, and the same on every platform (the history must not change with
/// a dependency's version).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, month: LocalMonth) -> Self {
        let m = u64::try_from(month.year()).unwrap_or(0) * 12 + u64::from(month.month());
        Self(seed ^ m.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// One planned session before it becomes a [`SessionRecord`].
struct Plan {
    /// Index into the fleet's residents; `None`: the unknown tag.
    resident: Option<usize>,
    day: NaiveDate,
    start: NaiveTime,
    minutes: i64,
    idle_minutes: i64,
}

fn hm(h: u32, m: u32) -> NaiveTime {
    // Constant hours and minutes below 24 and 60: always a valid time.
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN)
}

fn first_weekday_on_or_after(date: NaiveDate) -> NaiveDate {
    let mut d = date;
    while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        d = d.succ_opt().unwrap_or(d);
    }
    d
}

/// The sessions of `month` (all of them, past or not): a few a day for a handful of regular
/// chargers among the residents, and the cases a statement must show on fixed days.
fn plan_month(fleet: &Fleet, month: LocalMonth, seed: u64) -> Vec<Plan> {
    let residents = fleet
        .residents
        .iter()
        .filter(|r| !r.tags.is_empty())
        .count();
    let mut rng = Rng::new(seed, month);
    let mut plans = Vec::new();
    let Some(first) = NaiveDate::from_ymd_opt(month.year(), month.month(), 1) else {
        return plans;
    };
    if residents == 0 {
        return plans;
    }
    // Not everyone owns an electric car: about a third of the residents charge regularly.
    let regulars: Vec<usize> = (0..residents).filter(|i| i % 3 == 0).collect();
    let pick = |rng: &mut Rng| regulars[rng.range(0, regulars.len() as u64) as usize];

    // The cases every month shows, on its first weekdays (so they are in the month's first
    // days and the current month has them early too).
    let d1 = first_weekday_on_or_after(first + Days::new(1));
    let d2 = first_weekday_on_or_after(d1 + Days::new(1));
    let r = |k: usize| regulars[k % regulars.len()];
    // Crosses 17:30: part off-peak, part peak.
    plans.push(Plan {
        resident: Some(r(0)),
        day: d1,
        start: hm(16, 40),
        minutes: 150,
        idle_minutes: 5,
    });
    // Crosses 20:30, then sits idle well past the grace.
    plans.push(Plan {
        resident: Some(r(1)),
        day: d1,
        start: hm(19, 5),
        minutes: 140,
        idle_minutes: 42,
    });
    // Crosses midnight.
    plans.push(Plan {
        resident: Some(r(2)),
        day: d2,
        start: hm(22, 50),
        minutes: 320,
        idle_minutes: 0,
    });
    // A tag nobody owns: the "sem morador" line.
    plans.push(Plan {
        resident: None,
        day: d2,
        start: hm(18, 10),
        minutes: 95,
        idle_minutes: 20,
    });

    let mut day = first;
    while LocalMonth::of_date(day) == month {
        for _ in 0..rng.range(1, 4) {
            let start = match rng.range(0, 10) {
                // After work: around and inside the peak window.
                0..=4 => hm(17 + rng.range(0, 4) as u32, rng.range(0, 60) as u32),
                // Overnight, often past midnight.
                5..=7 => hm(21 + rng.range(0, 3) as u32, rng.range(0, 60) as u32),
                // Daytime.
                _ => hm(8 + rng.range(0, 8) as u32, rng.range(0, 60) as u32),
            };
            let idle_minutes = if rng.chance(12) {
                rng.range(20, 95) as i64
            } else {
                rng.range(0, 12) as i64
            };
            plans.push(Plan {
                resident: Some(pick(&mut rng)),
                day,
                start,
                minutes: rng.range(45, 420) as i64,
                idle_minutes,
            });
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    plans
}

/// The month's seeded sessions that have ended before `now`, with their fixed vendor ids.
pub fn month_sessions(
    fleet: &Fleet,
    tz: Tz,
    month: LocalMonth,
    seed: u64,
    now: DateTime<Utc>,
) -> Vec<SessionRecord> {
    let with_tags: Vec<_> = fleet
        .residents
        .iter()
        .filter(|r| !r.tags.is_empty())
        .collect();
    let chargers: Vec<&str> = fleet
        .chargers
        .iter()
        .map(|c| c.description.as_str())
        .collect();
    let month_key = i64::from(month.year()) * 12 + i64::from(month.month());
    let base = VENDOR_ID_BASE + (month_key % 50) * IDS_PER_MONTH;
    let mut rng = Rng::new(seed.rotate_left(17), month);
    let mut out = Vec::new();
    for (i, p) in plan_month(fleet, month, seed)
        .into_iter()
        .take(IDS_PER_MONTH as usize)
        .enumerate()
    {
        let Some(midnight) = local_midnight(tz, p.day) else {
            continue;
        };
        // Local wall time as an offset from local midnight: on a DST day this is off by the
        // shift, which only moves a demo session by an hour.
        let start = midnight + TimeDelta::seconds(i64::from(p.start.num_seconds_from_midnight()));
        let stop = start + TimeDelta::minutes(p.minutes);
        let idle = TimeDelta::minutes(p.idle_minutes);
        if stop + idle > now {
            continue;
        }
        // 7.4 kW wallboxes, the car taking 55–95 % of it on average; never above the demo
        // tariff's plausible maximum.
        let charging_minutes = p.minutes.max(1);
        let watts = 7_400 * rng.range(55, 96) as i64 / 100;
        let energy_wh = (watts * charging_minutes / 60).clamp(500, 80_000);
        let (tag, user_name) = match p.resident.and_then(|r| with_tags.get(r)) {
            Some(r) => (
                r.tags.first().and_then(|t| Tag::parse(&t.id_tag).ok()),
                Some(r.name.clone()),
            ),
            None => (Tag::parse(UNKNOWN_TAG).ok(), None),
        };
        out.push(SessionRecord {
            vendor_id: base + i as i64,
            charger: chargers
                .get(rng.range(0, chargers.len() as u64) as usize)
                .map_or_else(|| "Carregador 1".to_owned(), |c| (*c).to_owned()),
            tag,
            start,
            stop: stop + idle,
            energy_wh,
            idle_seconds: idle.num_seconds(),
            source: SessionSource::Imported,
            precision: TimePrecision::Minute,
            import_line: None,
            user_name,
        });
    }
    out
}

/// The previous local month and the current one, at `now` in `tz`.
pub fn months(tz: Tz, now: DateTime<Utc>) -> [LocalMonth; 2] {
    let today = now.with_timezone(&tz).date_naive();
    let current = LocalMonth::of_date(today);
    let previous = today
        .with_day(1)
        .and_then(|d| d.pred_opt())
        .map_or(current, LocalMonth::of_date);
    [previous, current]
}

/// Stores the seeded sessions of the previous and the current month (up to `now`) that are
/// not stored yet, as one import batch per start that has any.
pub async fn seed(
    store: &Store,
    site: SiteId,
    fleet: &Fleet,
    tz: Tz,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<Seeded, StoreError> {
    let mut stored = BTreeSet::new();
    let mut wanted = Vec::new();
    for month in months(tz, now) {
        let input = store.statement_input(site, month).await?;
        stored.extend(
            input
                .sessions
                .iter()
                .filter(|s| s.source == SessionSource::Imported)
                .map(|s| s.vendor_id),
        );
        wanted.extend(month_sessions(fleet, tz, month, seed, now));
    }
    wanted.retain(|s| !stored.contains(&s.vendor_id));
    if wanted.is_empty() {
        return Ok(Seeded::default());
    }
    let months: BTreeSet<_> = wanted
        .iter()
        .map(|s| vetric_domain::local_month(s.start, tz))
        .collect();
    let batch = NewImportBatch {
        file_name: BATCH_NAME.to_owned(),
        rows_read: u32::try_from(wanted.len()).unwrap_or(u32::MAX),
        rows_refused: 0,
    };
    let audit = AuditEntry::new(now, None, "statement_import", format!("site:{site}"))
        .with_detail(serde_json::json!({ "via": "demo" }));
    let outcome = store.import_sessions(site, &batch, &wanted, &audit).await?;
    Ok(Seeded {
        months: months.len(),
        imported: outcome.imported.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::demo::{DemoArgs, seed_residents, write_config};
    use chrono::TimeZone;
    use vetric_sim::cvepro::{CveProSim, SimConfig};

    const TZ: Tz = chrono_tz::America::Sao_Paulo;

    #[tokio::test]
    async fn the_seeded_month_is_a_real_statement_and_a_restart_adds_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let args = DemoArgs {
            listen: "127.0.0.1:1".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            chargers: 5,
            speed: 30.0,
            seed: 1,
            poll_interval_s: 5,
        };
        let fleet = CveProSim::fleet_for(&SimConfig::for_cli(5, 1, 30.0));
        let path = dir.path().join("vetric.toml");
        let db = dir.path().join("vetric.db");
        write_config(
            &path,
            &db,
            &args,
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
            &fleet,
            None,
        )
        .unwrap();
        let cfg = config::load(&path, &std::collections::BTreeMap::new()).unwrap();
        let (store, sites) = crate::serve::open_store(&cfg).await.unwrap();
        let site = sites[0].0;
        seed_residents(&store, site, &fleet).await.unwrap();

        let now = Utc.with_ymd_and_hms(2026, 3, 10, 15, 0, 0).unwrap();
        assert_eq!(
            months(TZ, now).map(|m| m.to_string()),
            ["2026-02".to_owned(), "2026-03".to_owned()]
        );
        let first = seed(&store, site, &fleet, TZ, 1, now).await.unwrap();
        assert_eq!(first.months, 2);
        assert!(first.imported > 40, "{first:?}");

        let feb = LocalMonth::new(2026, 2).unwrap();
        let input = store.statement_input(site, feb).await.unwrap();
        let statement = vetric_domain::statement::compute(&input);
        assert!(statement.rejected.is_empty(), "{:?}", statement.rejected);
        assert!(
            statement.per_apartment().count() >= 3,
            "several apartments: {:?}",
            statement
                .lines
                .iter()
                .map(|l| l.label())
                .collect::<Vec<_>>()
        );
        let t = &statement.totals;
        // Decimal, compared without a dependency on its crate.
        assert!(!t.peak_kwh.is_zero() && !t.offpeak_kwh.is_zero(), "{t:?}");
        assert!(
            !t.idle_fee.is_zero() && t.idle_fee.is_sign_positive(),
            "{t:?}"
        );
        assert!(!t.total.is_zero() && t.total.is_sign_positive(), "{t:?}");
        let unassigned = statement.unassigned().expect("the sem morador line");
        assert!(!unassigned.total.is_zero());
        let crosses_midnight = statement
            .lines
            .iter()
            .flat_map(|l| &l.session_details)
            .any(|s| {
                s.start.with_timezone(&TZ).date_naive() != s.stop.with_timezone(&TZ).date_naive()
            });
        assert!(crosses_midnight);
        // The current month only up to now.
        let march = store
            .statement_input(site, LocalMonth::new(2026, 3).unwrap())
            .await
            .unwrap();
        assert!(
            march
                .sessions
                .iter()
                .filter(|s| s.start >= Utc.with_ymd_and_hms(2026, 3, 1, 3, 0, 0).unwrap())
                .all(|s| s.stop <= now)
        );

        // Reproducible, and a restart stores nothing twice: the same instant adds nothing, a
        // later one only what ended since.
        assert_eq!(
            month_sessions(&fleet, TZ, feb, 1, now),
            month_sessions(&fleet, TZ, feb, 1, now)
        );
        assert_eq!(
            seed(&store, site, &fleet, TZ, 1, now).await.unwrap(),
            Seeded::default()
        );
        let later = seed(&store, site, &fleet, TZ, 1, now + TimeDelta::days(5))
            .await
            .unwrap();
        assert!(later.imported > 0 && later.months == 1, "{later:?}");
        let again = store.statement_input(site, feb).await.unwrap();
        assert_eq!(again.sessions.len(), input.sessions.len());
        assert_eq!(vetric_domain::statement::compute(&again), statement);
    }
}
