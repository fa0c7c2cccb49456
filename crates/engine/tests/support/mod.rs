//! Shared rig of the engine's integration tests: a CVE-Pro simulator in process, a migrated
//! store (SQLite or PostgreSQL, from `vetric_store::testing`), the simulator's residents and
//! tags registered in the store, and a client tuned for fast tests.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;
use vetric_cvepro::{BreakerPolicy, CveProClient, CveProConfig, RetryPolicy};
use vetric_domain::{EventKind, Tag};
use vetric_engine::{CycleOutcome, IngestSettings, SiteIngest};
use vetric_sim::cvepro::{CveProSim, Fleet, SimConfig, SimHandle};
use vetric_store::testing::TestDb;
use vetric_store::{EventRow, NewResident, SiteId, Store};

pub const SLUG: &str = "jardim-teste";

/// The kinds that end a session; exactly one of them per session.
pub const ENDING_KINDS: [&str; 3] = [
    "session_finished",
    "session_interrupted",
    "session_closed_stale",
];

/// A simulator, a store with the simulator's residents, and the site they belong to.
pub struct Rig {
    pub sim: SimHandle,
    pub store: Store,
    pub site: SiteId,
    pub fleet: Fleet,
}

impl Rig {
    pub async fn start(db: &TestDb, config: SimConfig) -> Self {
        let sim = CveProSim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start the CVE-Pro simulator");
        let store = db.store.clone();
        let site = store
            .upsert_site(SLUG, "Jardim Teste", "America/Sao_Paulo")
            .await
            .expect("create the site");
        let fleet = sim.fleet();
        seed_residents(&store, site, &fleet).await;
        Self {
            sim,
            store,
            site,
            fleet,
        }
    }

    /// A client for this simulator with short timings: small backoff, 1 s timeouts, two
    /// attempts per call and a breaker that does not open (tests of the breaker set their own).
    pub fn fast_client(&self) -> CveProClient {
        self.client_with(|c| {
            c.connect_timeout = Duration::from_secs(1);
            c.request_timeout = Duration::from_secs(1);
            c.retry = fast_retry();
            c.breaker = BreakerPolicy {
                failure_threshold: 1_000,
                probe_interval: Duration::from_millis(100),
            };
        })
    }

    pub fn client_with(&self, tweak: impl FnOnce(&mut CveProConfig)) -> CveProClient {
        let sim = self.sim.config();
        let mut cfg = CveProConfig::new(
            Url::parse(self.sim.base_url()).expect("simulator URL"),
            sim.api_key.as_str().into(),
            sim.email.clone(),
            sim.password.as_str().into(),
        );
        tweak(&mut cfg);
        CveProClient::new(cfg).expect("build the CVE-Pro client")
    }

    /// A site ingest resumed from what the store holds (a fresh one on an empty store).
    pub async fn ingest(&self, client: CveProClient) -> SiteIngest {
        SiteIngest::resume(
            self.site,
            SLUG,
            client,
            self.store.clone(),
            settings(Duration::from_millis(200)),
        )
        .await
        .expect("resume the site ingest")
    }

    /// Every stored event of the site, in id order.
    pub async fn events(&self) -> Vec<EventRow> {
        self.store
            .events(self.site, 0, 1_000_000)
            .await
            .expect("read events")
    }

    pub async fn count_events(&self, kind: &str) -> usize {
        self.events()
            .await
            .iter()
            .filter(|e| e.kind == kind)
            .count()
    }

    /// `tags[0]` of resident `i` as the vendor spells it.
    pub fn tag(&self, resident: usize) -> String {
        self.fleet.residents[resident].tags[0].id_tag.clone()
    }

    pub fn resident_name(&self, resident: usize) -> String {
        self.fleet.residents[resident].name.clone()
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        budget_floor_per_minute: 10_000,
        ..RetryPolicy::default()
    }
}

pub fn settings(poll_interval: Duration) -> IngestSettings {
    IngestSettings {
        poll_interval,
        ..IngestSettings::default()
    }
}

/// Registers the simulator's residents and their tags (as `vetric demo` does), valid from
/// 2025-01-01 so every simulated session is covered.
pub async fn seed_residents(store: &Store, site: SiteId, fleet: &Fleet) {
    let since = Utc
        .with_ymd_and_hms(2025, 1, 1, 3, 0, 0)
        .single()
        .expect("a valid instant");
    for r in &fleet.residents {
        let id = store
            .add_resident(
                site,
                &NewResident {
                    name: r.name.clone(),
                    phone: r.phone.clone(),
                    email: Some(r.email.clone()),
                    block: r.apartment.block.clone(),
                    unit: r.apartment.unit.clone(),
                },
            )
            .await
            .expect("add a resident");
        for t in &r.tags {
            let tag = Tag::parse(&t.id_tag).expect("simulator tags parse");
            store
                .add_tag(site, id, &tag, since, None)
                .await
                .expect("add a tag");
        }
    }
}

/// One cycle that must be stored and accepted; returns its events' kinds.
pub async fn accepted(ingest: &mut SiteIngest) -> Vec<&'static str> {
    match ingest.cycle(Utc::now()).await.expect("cycle stored") {
        CycleOutcome::Accepted { events } => events.iter().map(|e| e.kind.kind_str()).collect(),
        other => panic!("expected an accepted cycle, got {other:?}"),
    }
}

/// The instant truncated to whole seconds (the vendor's transaction timestamps have no
/// fraction).
pub fn to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("in range")
}

/// Session event kinds per session id, in stored order.
pub fn session_kinds(events: &[EventRow]) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in events {
        if let Some(id) = e.session_vendor_id {
            out.entry(id).or_default().push(e.kind.clone());
        }
    }
    out
}

pub fn count(kinds: &[String], wanted: &[&str]) -> usize {
    kinds
        .iter()
        .filter(|k| wanted.contains(&k.as_str()))
        .count()
}

/// The domain event stored in a row.
pub fn decode(row: &EventRow) -> EventKind {
    serde_json::from_value(row.payload.clone()).expect("stored payload is a domain event")
}
