//! A store with a year of sessions, for timing `vetric backup` (BENCHMARKS.md, "Operations").
//!
//! ```text
//! cargo run --release -p vetric-store --example year_of_sessions -- DATABASE_URL
//!     [--site SLUG] [--days 365] [--chargers 5] [--residents 40] [--per-charger-day 5]
//! ```
//!
//! Writes, through the store API and into an existing (or new, for SQLite) store: one site
//! (`--site`, default `year-condo`; its slug should match the `[[sites]]` of the vetric.toml
//! that backs it up), `--residents` residents with one tag each, and for every day of the last
//! `--days` days one [`Store::write_cycle`] holding that day's ended sessions
//! (`--chargers` × `--per-charger-day`, each attributed to a resident through its tag) and
//! their events: `session_started`, `idle_started`, in 30 % of the sessions
//! `charging_resumed`, and `session_finished` (≈ 3.3 events per session), with the payloads
//! the ingest writes (the domain's [`EventKind`] as JSON). Deterministic: the same arguments
//! write the same rows. Prints the row counts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
use vetric_domain::{
    ChargerRef, ConnectorStatus, EventKind, ResidentRef, SessionEnd, SessionInfo, Tag,
};
use vetric_store::{
    BreakerState, ChargerWrite, ConnectorWrite, CycleWrite, EndKind, NewEvent, NewResident,
    ResidentId, SessionStatus, SessionWrite, Store, VendorLinkRow,
};

struct Args {
    url: String,
    site: String,
    days: u32,
    chargers: u32,
    residents: u32,
    per_charger_day: u32,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        url: String::new(),
        site: "year-condo".into(),
        days: 365,
        chargers: 5,
        residents: 40,
        per_charger_day: 5,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--site" => args.site = value()?,
            "--days" => args.days = value()?.parse()?,
            "--chargers" => args.chargers = value()?.parse()?,
            "--residents" => args.residents = value()?.parse()?,
            "--per-charger-day" => args.per_charger_day = value()?.parse()?,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}").into()),
            _ => args.url = a,
        }
    }
    if args.url.is_empty() {
        return Err(
            "usage: year_of_sessions DATABASE_URL [--site SLUG] [--days N] [--chargers N] \
             [--residents N] [--per-charger-day N]"
                .into(),
        );
    }
    if args.chargers == 0 || args.residents == 0 {
        return Err("--chargers and --residents must be at least 1".into());
    }
    Ok(args)
}

/// A small deterministic generator (xorshift64*): no dependency, same rows every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Resident {
    id: ResidentId,
    tag: Tag,
    reference: ResidentRef,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let store = Store::connect(&args.url).await?;
    store.migrate().await?;
    let site = store
        .upsert_site(&args.site, "Condomínio Um Ano", "America/Sao_Paulo")
        .await?;
    let end_day = Utc
        .with_ymd_and_hms(2026, 11, 29, 3, 0, 0)
        .single()
        .ok_or("a valid constant instant")?;
    let first_day = end_day - Duration::days(i64::from(args.days));

    let mut residents = Vec::new();
    for i in 0..args.residents {
        let block = ["A", "B"][(i % 2) as usize];
        let unit = format!("{}{:02}", 1 + i / 8, 1 + i % 8);
        let name = format!("Morador {:02}", i + 1);
        let id = store
            .add_resident(
                site,
                &NewResident {
                    name: name.clone(),
                    phone: format!("+55119{:08}", 10_000_000 + i),
                    email: Some(format!("morador{:02}@example.com", i + 1)),
                    block: block.into(),
                    unit: unit.clone(),
                },
            )
            .await?;
        let tag = Tag::parse(&format!("TAG{:05}", i + 1))?;
        store
            .add_tag(site, id, &tag, first_day - Duration::days(1), None)
            .await?;
        residents.push(Resident {
            id,
            tag,
            reference: ResidentRef {
                resident_id: id.0,
                name,
                apartment: vetric_store::apartment_label(block, &unit),
            },
        });
    }

    let chargers: Vec<ChargerRef> = (0..args.chargers)
        .map(|i| ChargerRef {
            uuid: format!("00000000-0000-4000-8000-{:012}", i + 1),
            name: format!("Garagem {}", i + 1),
        })
        .collect();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut vendor_id = 1_000_000i64;
    let (mut sessions_total, mut events_total) = (0usize, 0usize);
    for day in 0..args.days {
        let midnight = first_day + Duration::days(i64::from(day));
        let mut cycle_sessions = Vec::new();
        let mut events = Vec::new();
        for charger in &chargers {
            // Sessions of one charger, one after the other through the day.
            let mut t = midnight + Duration::minutes(rng.below(120) as i64);
            for _ in 0..args.per_charger_day {
                vendor_id += 1;
                let r = &residents[rng.below(residents.len() as u64) as usize];
                let start = t;
                let charging = Duration::minutes(40 + rng.below(200) as i64);
                let idle = Duration::minutes(rng.below(90) as i64);
                let stop = start + charging + idle;
                let energy_wh = 2_000 + rng.below(30_000) as i64;
                t = stop + Duration::minutes(10 + rng.below(60) as i64);
                let info = SessionInfo {
                    session_id: vendor_id,
                    charger: charger.clone(),
                    connector_id: 1,
                    tag: Some(r.tag.clone()),
                    tag_pk: Some(i64::from(r.id.0 as i32) + 500),
                    resident: Some(r.reference.clone()),
                    start,
                };
                let end = SessionEnd {
                    stop,
                    energy_wh: Some(energy_wh),
                    duration_s: (stop - start).num_seconds(),
                    idle_s: idle.num_seconds(),
                    stop_reason: Some("Local".into()),
                };
                let idle_at = start + charging;
                let mut kinds = vec![
                    (
                        start,
                        EventKind::SessionStarted {
                            session: info.clone(),
                        },
                    ),
                    (
                        idle_at,
                        EventKind::IdleStarted {
                            session: info.clone(),
                            since: idle_at,
                        },
                    ),
                ];
                if rng.below(10) < 3 {
                    let resumed = idle_at + idle / 2;
                    kinds.push((
                        resumed,
                        EventKind::ChargingResumed {
                            session: info.clone(),
                            since: resumed,
                            idle_s: (idle / 2).num_seconds(),
                        },
                    ));
                }
                kinds.push((stop, EventKind::SessionFinished { session: info, end }));
                for (at, kind) in kinds {
                    events.push(NewEvent {
                        at,
                        kind: kind.kind_str().to_owned(),
                        session_vendor_id: Some(vendor_id),
                        charger_uuid: Some(charger.uuid.clone()),
                        payload: serde_json::to_value(&kind)?,
                    });
                }
                cycle_sessions.push(SessionWrite {
                    vendor_id,
                    charger_uuid: charger.uuid.clone(),
                    connector_id: 1,
                    tag: Some(r.tag.clone()),
                    tag_pk: None,
                    resident_id: None,
                    start,
                    stop: Some(stop),
                    energy_wh: Some(energy_wh),
                    idle_seconds: idle.num_seconds(),
                    stop_reason: Some("Local".into()),
                    end_kind: Some(EndKind::Finished),
                    status: SessionStatus::Ended,
                });
            }
        }
        let observed_at = midnight + Duration::hours(23);
        sessions_total += cycle_sessions.len();
        events_total += events.len();
        store
            .write_cycle(
                site,
                &day_cycle(&chargers, observed_at, cycle_sessions, events),
            )
            .await?;
    }
    store.close().await;
    println!(
        "{}: site {}, {} residents, {} chargers, {} days: {sessions_total} sessions, \
         {events_total} events written in {:.1} s",
        vetric_store::redact_url(&args.url),
        args.site,
        residents.len(),
        chargers.len(),
        args.days,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn day_cycle(
    chargers: &[ChargerRef],
    observed_at: DateTime<Utc>,
    sessions: Vec<SessionWrite>,
    events: Vec<NewEvent>,
) -> CycleWrite {
    CycleWrite {
        observed_at,
        listed_chargers: None,
        chargers: chargers
            .iter()
            .map(|c| ChargerWrite {
                uuid: c.uuid.clone(),
                charge_box_id: c.name.replace(' ', "-").to_uppercase(),
                name: c.name.clone(),
                vendor: "Intelbras".into(),
                model: "CVE-Pro 7.4".into(),
                firmware: "1.0.0".into(),
                last_heartbeat: Some(observed_at),
                online: true,
                connectors: vec![ConnectorWrite {
                    connector_id: 1,
                    status: ConnectorStatus::Available,
                    status_since: observed_at,
                    error_code: "NoError".into(),
                    power_max_w: Some(7_400),
                    unidentified_charging: false,
                }],
            })
            .collect(),
        sessions,
        events,
        unknown_tags: Vec::new(),
        tracker_state: None,
        vendor_link: VendorLinkRow {
            last_success: Some(observed_at),
            last_error_kind: None,
            last_error_message: None,
            last_error_at: None,
            consecutive_failures: 0,
            breaker: BreakerState::Closed,
            charger_count_last_good: Some(chargers.len() as i64),
            updated_at: observed_at,
        },
        notifications: Vec::new(),
        cancellations: Vec::new(),
    }
}
