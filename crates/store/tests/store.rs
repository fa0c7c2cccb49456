//! The store's behaviour, run against both backends: each `async fn x(db: &TestDb)` becomes
//! the tests `x::sqlite` and `x::postgres` (PostgreSQL at `VETRIC_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the tests fail, never skip, without it).

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use vetric_domain::{ConnectorStatus, Tag};
use vetric_store::testing::TestDb;
use vetric_store::{
    Backend, BreakerState, ChargerWrite, ConnectorWrite, CycleWrite, EndKind, NewEvent,
    NewResident, SessionFilter, SessionStatus, SessionWrite, SiteId, Store, StoreError,
    UnknownTagSighting, VendorLinkRow, test_both_backends,
};

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn resident(name: &str, block: &str, unit: &str) -> NewResident {
    NewResident {
        name: name.into(),
        phone: "+5511999990000".into(),
        email: None,
        block: block.into(),
        unit: unit.into(),
    }
}

fn link(at: DateTime<Utc>) -> VendorLinkRow {
    VendorLinkRow {
        last_success: Some(at),
        last_error_kind: None,
        last_error_message: None,
        last_error_at: None,
        consecutive_failures: 0,
        breaker: BreakerState::Closed,
        charger_count_last_good: Some(1),
        updated_at: at,
    }
}

fn connector(id: u32, status: ConnectorStatus, since: DateTime<Utc>) -> ConnectorWrite {
    ConnectorWrite {
        connector_id: id,
        status,
        status_since: since,
        error_code: "NoError".into(),
        power_max_w: Some(7400),
        unidentified_charging: false,
    }
}

fn charger(uuid: &str, name: &str, connectors: Vec<ConnectorWrite>) -> ChargerWrite {
    ChargerWrite {
        uuid: uuid.into(),
        charge_box_id: format!("BOX-{uuid}"),
        name: name.into(),
        vendor: "Intelbras".into(),
        model: "CVE 7,4 kW".into(),
        firmware: "1.2.3".into(),
        last_heartbeat: None,
        online: true,
        connectors,
    }
}

fn open_session(
    vendor_id: i64,
    uuid: &str,
    tag_text: Option<&str>,
    start: DateTime<Utc>,
) -> SessionWrite {
    SessionWrite {
        vendor_id,
        charger_uuid: uuid.into(),
        connector_id: 1,
        tag: tag_text.map(tag),
        tag_pk: Some(vendor_id * 10),
        resident_id: None,
        start,
        stop: None,
        energy_wh: Some(1200),
        idle_seconds: 0,
        stop_reason: None,
        end_kind: None,
        status: SessionStatus::Open,
    }
}

fn event(at: DateTime<Utc>, kind: &str, n: i64) -> NewEvent {
    NewEvent {
        at,
        kind: kind.into(),
        session_vendor_id: Some(n),
        charger_uuid: Some("c1".into()),
        payload: json!({ "n": n, "text": "ação" }),
    }
}

fn cycle(at: DateTime<Utc>) -> CycleWrite {
    CycleWrite {
        observed_at: at,
        listed_chargers: None,
        chargers: vec![],
        sessions: vec![],
        events: vec![],
        unknown_tags: vec![],
        tracker_state: None,
        vendor_link: link(at),
        notifications: Vec::new(),
        cancellations: Vec::new(),
    }
}

async fn site(store: &Store) -> SiteId {
    store
        .upsert_site("palmeiras", "Condomínio Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap()
}

async fn migration_count(db: &TestDb) -> i64 {
    let sql = "SELECT COUNT(*) FROM _sqlx_migrations";
    match db.backend() {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        Backend::Postgres => sqlx::query_scalar(sql)
            .fetch_one(db.store.pg_pool().unwrap())
            .await
            .unwrap(),
    }
}

async fn migrate_twice_is_a_no_op(db: &TestDb) {
    let before = migration_count(db).await;
    assert!(before >= 1);
    let s = site(&db.store).await;
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    assert_eq!(migration_count(db).await, before);
    // Data survives, and another connection migrates as a no-op too.
    let other = Store::connect(&db.url).await.unwrap();
    other.migrate().await.unwrap();
    assert_eq!(
        other.site_by_slug("palmeiras").await.unwrap().unwrap().id,
        s
    );
    other.close().await;
}

async fn site_upsert_is_idempotent(db: &TestDb) {
    let store = &db.store;
    let a = store
        .upsert_site("palmeiras", "Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let b = store
        .upsert_site("palmeiras", "Condomínio Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    assert_eq!(a, b);
    let c = store
        .upsert_site("ipes", "Ipês", "America/Manaus")
        .await
        .unwrap();
    assert_ne!(a, c);
    let sites = store.sites().await.unwrap();
    assert_eq!(
        sites.iter().map(|s| s.slug.as_str()).collect::<Vec<_>>(),
        ["ipes", "palmeiras"]
    );
    let p = store.site_by_slug("palmeiras").await.unwrap().unwrap();
    assert_eq!(p.name, "Condomínio Palmeiras");
    assert_eq!(p.timezone, "America/Sao_Paulo");
    assert!(store.site_by_slug("nowhere").await.unwrap().is_none());
    store.ping().await.unwrap();
}

async fn apartments_compare_case_insensitively(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let a = store.upsert_apartment(s, "A", "302").await.unwrap();
    assert_eq!(store.upsert_apartment(s, " a ", "302").await.unwrap(), a);
    assert_ne!(store.upsert_apartment(s, "B", "302").await.unwrap(), a);
    let r = store
        .add_resident(s, &resident("Maria Silva", "a", "302"))
        .await
        .unwrap();
    let residents = store.residents(s).await.unwrap();
    let maria = residents.iter().find(|x| x.id == r).unwrap();
    assert_eq!(maria.apartment_id, a);
    assert_eq!(
        maria.apartment_label(),
        "A-302",
        "the first spelling is kept"
    );
    assert!(matches!(
        store.upsert_apartment(s, "", "302").await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn tag_overlap_is_refused_with_a_clear_error(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = store
        .add_resident(s, &resident("Maria Silva", "A", "302"))
        .await
        .unwrap();
    let joao = store
        .add_resident(s, &resident("João Souza", "B", "101"))
        .await
        .unwrap();
    store
        .add_tag(s, maria, &tag("5be07d1a"), t(1, 0), None)
        .await
        .unwrap();

    // Same card in another case, later start: overlaps the open-ended interval.
    let err = store
        .add_tag(s, joao, &tag("5BE07D1A"), t(10, 0), None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(
        text.contains("5BE07D1A") && text.contains("Maria Silva") && text.contains("A-302"),
        "{text}"
    );

    // A bounded interval that ends inside Maria's also overlaps.
    let err = store
        .add_tag(
            s,
            joao,
            &tag("5BE07D1A"),
            t(1, 0) - Duration::days(3),
            Some(t(2, 0)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");

    // Touching intervals do not overlap ([from, to) is half-open).
    store
        .add_tag(
            s,
            joao,
            &tag("5BE07D1A"),
            t(1, 0) - Duration::days(3),
            Some(t(1, 0)),
        )
        .await
        .unwrap();
    // Empty or inverted intervals are refused.
    assert!(matches!(
        store
            .add_tag(s, joao, &tag("FFFF"), t(2, 0), Some(t(2, 0)))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    // A resident of another site is not found.
    let other = store
        .upsert_site("ipes", "Ipês", "America/Sao_Paulo")
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_tag(other, maria, &tag("ABCD"), t(1, 0), None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.tag_directory(s).await.unwrap().len(), 2);
    assert!(store.tag_directory(other).await.unwrap().is_empty());
}

async fn tag_directory_follows_a_tag_that_changed_hands(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = store
        .add_resident(s, &resident("Maria Silva", "A", "302"))
        .await
        .unwrap();
    let joao = store
        .add_resident(s, &resident("João Souza", "B", "101"))
        .await
        .unwrap();
    let card = tag("5BE07D1A");
    store.add_tag(s, maria, &card, t(1, 0), None).await.unwrap();
    store
        .add_tag(s, maria, &tag("AAAA0001"), t(1, 0), None)
        .await
        .unwrap();
    store.end_tag(s, &card, t(15, 0)).await.unwrap();
    store.add_tag(s, joao, &card, t(15, 0), None).await.unwrap();
    assert!(matches!(
        store.end_tag(s, &tag("NOPE"), t(15, 0)).await,
        Err(StoreError::NotFound { .. })
    ));

    let dir = store.tag_directory(s).await.unwrap();
    let rows: Vec<_> = dir
        .iter()
        .map(|r| {
            (
                r.tag.as_str(),
                r.resident_name.as_str(),
                r.apartment_label.as_str(),
                r.valid_from,
                r.valid_to,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("5BE07D1A", "Maria Silva", "A-302", t(1, 0), Some(t(15, 0))),
            ("5BE07D1A", "João Souza", "B-101", t(15, 0), None),
            ("AAAA0001", "Maria Silva", "A-302", t(1, 0), None),
        ]
    );
    assert_eq!(
        store
            .tag_owner_at(s, &card, t(14, 23))
            .await
            .unwrap()
            .unwrap()
            .resident_id,
        maria
    );
    assert_eq!(
        store
            .tag_owner_at(s, &card, t(15, 0))
            .await
            .unwrap()
            .unwrap()
            .resident_id,
        joao
    );
    assert!(
        store
            .tag_owner_at(s, &card, t(1, 0) - Duration::seconds(1))
            .await
            .unwrap()
            .is_none()
    );

    // Sessions are attributed to whoever owned the tag when they started.
    let mut c = cycle(t(20, 0));
    c.chargers.push(charger(
        "c1",
        "Palmeiras 1",
        vec![connector(1, ConnectorStatus::Charging, t(20, 0))],
    ));
    c.sessions
        .push(open_session(100, "c1", Some("5be07d1a"), t(10, 0)));
    c.sessions
        .push(open_session(101, "c1", Some("5BE07D1A"), t(16, 0)));
    c.sessions.push(open_session(102, "c1", None, t(17, 0)));
    store.write_cycle(s, &c).await.unwrap();
    let by_id: BTreeMap<i64, Option<String>> = store
        .open_sessions(s)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.vendor_id, x.resident_name))
        .collect();
    assert_eq!(by_id[&100].as_deref(), Some("Maria Silva"));
    assert_eq!(by_id[&101].as_deref(), Some("João Souza"));
    assert_eq!(by_id[&102], None);

    // The tag key map.
    store.learn_tag_pk(s, 77, &card).await.unwrap();
    store.learn_tag_pk(s, 78, &tag("aaaa0001")).await.unwrap();
    store.learn_tag_pk(s, 77, &tag("bbbb")).await.unwrap();
    let map = store.tag_pk_map(s).await.unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map[&77].as_str(), "BBBB");
    assert_eq!(map[&78].as_str(), "AAAA0001");
}

fn full_cycle(at: DateTime<Utc>) -> CycleWrite {
    let mut c = cycle(at);
    c.chargers.push(charger(
        "c1",
        "Palmeiras 1",
        vec![
            connector(1, ConnectorStatus::Charging, t(1, 9)),
            connector(2, ConnectorStatus::Available, t(1, 8)),
        ],
    ));
    c.sessions
        .push(open_session(5001, "c1", Some("5BE07D1A"), t(1, 9)));
    c.events.push(event(at, "session_started", 5001));
    c.unknown_tags.push(UnknownTagSighting {
        tag: tag("dead01"),
        at,
        charger_uuid: Some("c1".into()),
        session_vendor_id: Some(5001),
    });
    c.tracker_state = Some(json!({ "version": 1, "open": [5001] }));
    c
}

async fn write_cycle_round_trip(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = store
        .add_resident(s, &resident("Maria Silva", "A", "302"))
        .await
        .unwrap();
    store
        .add_tag(s, maria, &tag("5BE07D1A"), t(1, 0), None)
        .await
        .unwrap();
    assert!(store.tracker_state(s).await.unwrap().is_none());
    assert!(store.vendor_link(s).await.unwrap().is_none());

    let at = t(1, 10);
    let ids = store.write_cycle(s, &full_cycle(at)).await.unwrap();
    assert_eq!(ids.len(), 1);

    let connectors = store.connectors(s).await.unwrap();
    assert_eq!(connectors.len(), 2);
    let k1 = &connectors[0];
    assert_eq!(
        (k1.charger_name.as_str(), k1.connector_id, k1.charger_online),
        ("Palmeiras 1", 1, true)
    );
    assert_eq!(k1.status, ConnectorStatus::Charging);
    assert_eq!(k1.status.as_vendor_str(), "Charging");
    assert_eq!(
        (k1.status_since, k1.observed_at, k1.changed_at),
        (t(1, 9), at, at)
    );
    assert_eq!(k1.power_max_w, Some(7400));
    assert_eq!(connectors[1].status, ConnectorStatus::Available);

    let open = store.open_sessions(s).await.unwrap();
    assert_eq!(open.len(), 1);
    let o = &open[0];
    assert_eq!(o.vendor_id, 5001);
    assert_eq!(o.charger_name.as_deref(), Some("Palmeiras 1"));
    assert_eq!(o.resident_name.as_deref(), Some("Maria Silva"));
    assert_eq!(o.apartment_label.as_deref(), Some("A-302"));
    assert_eq!(o.tag.as_ref().map(Tag::as_str), Some("5BE07D1A"));
    assert_eq!(
        (o.start, o.energy_wh, o.status),
        (t(1, 9), Some(1200), SessionStatus::Open)
    );

    let events = store.events(s, 0, 100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, ids[0]);
    assert_eq!(events[0].kind, "session_started");
    assert_eq!(events[0].payload, json!({ "n": 5001, "text": "ação" }));
    assert_eq!(events[0].at, at);

    assert_eq!(
        store.tracker_state(s).await.unwrap(),
        Some(json!({ "version": 1, "open": [5001] }))
    );
    assert_eq!(store.vendor_link(s).await.unwrap(), Some(link(at)));
    let unknown = store.unknown_tags(s).await.unwrap();
    assert_eq!(unknown.len(), 1);
    assert_eq!(
        (unknown[0].tag.as_str(), unknown[0].seen_count),
        ("DEAD01", 1)
    );

    // The same read again: observed_at moves, changed_at does not.
    let later = t(1, 11);
    let mut same = full_cycle(later);
    same.events.clear();
    same.unknown_tags.clear();
    same.tracker_state = None;
    store.write_cycle(s, &same).await.unwrap();
    let k = &store.connectors(s).await.unwrap()[0];
    assert_eq!((k.observed_at, k.changed_at), (later, at));
    assert_eq!(
        store.tracker_state(s).await.unwrap(),
        Some(json!({ "version": 1, "open": [5001] })),
        "no tracker state in a cycle keeps the stored one"
    );

    // A status change bumps changed_at of that connector only.
    let latest = t(1, 12);
    let mut changed = same.clone();
    changed.observed_at = latest;
    changed.chargers[0].connectors[0].status = ConnectorStatus::SuspendedEV;
    changed.chargers[0].connectors[0].status_since = t(1, 11);
    store.write_cycle(s, &changed).await.unwrap();
    let ks = store.connectors(s).await.unwrap();
    assert_eq!(
        (ks[0].status.as_vendor_str(), ks[0].changed_at),
        ("SuspendedEV", latest)
    );
    assert_eq!((ks[1].observed_at, ks[1].changed_at), (latest, at));

    // A failed cycle records the link alone.
    let failed = VendorLinkRow {
        last_error_kind: Some("http_502".into()),
        last_error_message: Some("vendor answered 502".into()),
        last_error_at: Some(t(1, 13)),
        consecutive_failures: 3,
        breaker: BreakerState::HalfOpen,
        updated_at: t(1, 13),
        ..link(latest)
    };
    store.write_link_only(s, &failed, &[], &[]).await.unwrap();
    assert_eq!(store.vendor_link(s).await.unwrap(), Some(failed));
}

async fn write_cycle_is_all_or_nothing(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let first = full_cycle(t(1, 10));
    store.write_cycle(s, &first).await.unwrap();
    let snapshot = |store: Store| async move {
        (
            store.connectors(s).await.unwrap(),
            store.sessions(s, &SessionFilter::default()).await.unwrap(),
            store.events(s, 0, 1000).await.unwrap(),
            store.unknown_tags(s).await.unwrap(),
            store.tracker_state(s).await.unwrap(),
            store.vendor_link(s).await.unwrap(),
        )
    };
    let before = snapshot(store.clone()).await;

    // Every part of the cycle changes something; the last statement (the vendor link) then
    // violates a CHECK constraint.
    let mut bad = full_cycle(t(1, 11));
    bad.chargers[0].connectors[0].status = ConnectorStatus::Finishing;
    bad.chargers.push(charger(
        "c2",
        "Palmeiras 2",
        vec![connector(1, ConnectorStatus::Charging, t(1, 11))],
    ));
    bad.sessions.push(open_session(5002, "c2", None, t(1, 11)));
    bad.sessions[0].energy_wh = Some(9999);
    bad.events.push(event(t(1, 11), "session_started", 5002));
    bad.unknown_tags.push(UnknownTagSighting {
        tag: tag("BEEF02"),
        at: t(1, 11),
        charger_uuid: None,
        session_vendor_id: None,
    });
    bad.tracker_state = Some(json!({ "version": 2 }));
    bad.vendor_link.consecutive_failures = -1;
    let err = store.write_cycle(s, &bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Query {
                context: "writing the vendor link",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        snapshot(store.clone()).await,
        before,
        "nothing of the failed cycle is visible"
    );

    // The store is still usable, and the corrected cycle goes through whole.
    bad.vendor_link.consecutive_failures = 0;
    let ids = store.write_cycle(s, &bad).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(store.connectors(s).await.unwrap().len(), 3);
    assert_eq!(store.open_sessions(s).await.unwrap().len(), 2);
}

async fn replayed_write_does_not_double_sessions(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let c = full_cycle(t(1, 10));
    store.write_cycle(s, &c).await.unwrap();
    store.write_cycle(s, &c).await.unwrap();
    let all = store.sessions(s, &SessionFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);

    // The vendor reports the stop: the same row is updated.
    let mut done = cycle(t(1, 12));
    let mut stopped = open_session(5001, "c1", None, t(1, 9));
    stopped.stop = Some(t(1, 11));
    stopped.energy_wh = Some(10_500);
    stopped.idle_seconds = 600;
    stopped.stop_reason = Some("EVDisconnected".into());
    stopped.end_kind = Some(EndKind::Finished);
    stopped.status = SessionStatus::Ended;
    done.sessions.push(stopped);
    store.write_cycle(s, &done).await.unwrap();
    store.write_cycle(s, &done).await.unwrap();
    assert!(store.open_sessions(s).await.unwrap().is_empty());
    let all = store.sessions(s, &SessionFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let x = &all[0];
    assert_eq!(
        (x.stop, x.energy_wh, x.idle_seconds),
        (Some(t(1, 11)), Some(10_500), 600)
    );
    assert_eq!(
        (x.end_kind, x.status),
        (Some(EndKind::Finished), SessionStatus::Ended)
    );
    assert_eq!(
        x.tag.as_ref().map(Tag::as_str),
        Some("5BE07D1A"),
        "an update without a tag keeps it"
    );
    assert_eq!(store.session(s, 5001).await.unwrap().as_ref(), Some(x));
    assert!(store.session(s, 1).await.unwrap().is_none());

    // The same vendor id in another site is another session.
    let other = store
        .upsert_site("ipes", "Ipês", "America/Sao_Paulo")
        .await
        .unwrap();
    store.write_cycle(other, &c).await.unwrap();
    assert_eq!(
        store
            .sessions(other, &SessionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .sessions(s, &SessionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn sessions_filter_by_start_newest_first(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let mut c = cycle(t(20, 0));
    for (i, day) in [2, 5, 9, 14].into_iter().enumerate() {
        c.sessions
            .push(open_session(i as i64 + 1, "c1", None, t(day, 12)));
    }
    store.write_cycle(s, &c).await.unwrap();
    let ids =
        |v: Vec<vetric_store::SessionView>| v.into_iter().map(|x| x.vendor_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.sessions(s, &SessionFilter::default()).await.unwrap()),
        [4, 3, 2, 1]
    );
    let window = SessionFilter {
        from: Some(t(5, 12)),
        to: Some(t(14, 12)),
        limit: None,
        ..Default::default()
    };
    assert_eq!(ids(store.sessions(s, &window).await.unwrap()), [3, 2]);
    let limited = SessionFilter {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(ids(store.sessions(s, &limited).await.unwrap()), [4]);
    let from = SessionFilter {
        from: Some(t(9, 0)),
        ..Default::default()
    };
    assert_eq!(ids(store.sessions(s, &from).await.unwrap()), [4, 3]);
}

async fn events_come_back_in_write_order(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let other = store
        .upsert_site("ipes", "Ipês", "America/Sao_Paulo")
        .await
        .unwrap();
    let mut written = Vec::new();
    for round in 0..3 {
        let mut c = cycle(t(2, round));
        // Event instants deliberately out of order: the log order is the write order.
        for n in 0..4 {
            c.events
                .push(event(t(2, 10 - n), &format!("kind_{round}_{n}"), n as i64));
        }
        written.extend(store.write_cycle(s, &c).await.unwrap());
        let mut noise = cycle(t(2, round));
        noise.events.push(event(t(2, 0), "other_site", 0));
        store.write_cycle(other, &noise).await.unwrap();
    }
    assert_eq!(written.len(), 12);
    assert!(written.windows(2).all(|w| w[0] < w[1]), "{written:?}");
    let all = store.events(s, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), written);
    assert_eq!(all[5].kind, "kind_1_1");
    let page = store.events(s, written[4], 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), written[5..8]);
    assert!(store.events(s, written[11], 10).await.unwrap().is_empty());
    assert_eq!(store.events(other, 0, 100).await.unwrap().len(), 3);
}

async fn unknown_tags_count_sightings_and_leave_the_inbox_when_assigned(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let sighting = |at, charger: Option<&str>| UnknownTagSighting {
        tag: tag("dead01"),
        at,
        charger_uuid: charger.map(str::to_owned),
        session_vendor_id: None,
    };
    for (i, at) in [t(3, 8), t(3, 9), t(3, 7)].into_iter().enumerate() {
        let mut c = cycle(at);
        c.unknown_tags
            .push(sighting(at, if i == 1 { Some("c9") } else { None }));
        store.write_cycle(s, &c).await.unwrap();
    }
    let inbox = store.unknown_tags(s).await.unwrap();
    assert_eq!(inbox.len(), 1);
    let u = &inbox[0];
    assert_eq!((u.tag.as_str(), u.seen_count), ("DEAD01", 3));
    assert_eq!((u.first_seen, u.last_seen), (t(3, 8), t(3, 9)));
    assert_eq!(u.charger_uuid.as_deref(), Some("c9"));
    assert_eq!(u.resolved_at, None);

    let r = store
        .add_resident(s, &resident("Ana", "C", "12"))
        .await
        .unwrap();
    store
        .add_tag(s, r, &tag("DEAD01"), t(3, 0), Some(t(4, 0)))
        .await
        .unwrap();
    assert!(
        store.unknown_tags(s).await.unwrap().is_empty(),
        "assigning a tag resolves it"
    );

    // Seen again unowned later: back in the inbox, the count continues.
    let mut c = cycle(t(5, 0));
    c.unknown_tags.push(sighting(t(5, 0), None));
    store.write_cycle(s, &c).await.unwrap();
    let inbox = store.unknown_tags(s).await.unwrap();
    assert_eq!((inbox[0].seen_count, inbox[0].last_seen), (4, t(5, 0)));
}

async fn connect_reports_problems_without_passwords(db: &TestDb) {
    let url = match db.backend() {
        Backend::Postgres => "postgres://vetric:hunter2@127.0.0.1:1/vetric".to_owned(),
        Backend::Sqlite => "sqlite:///proc/vetric-no-such-dir/x.db".to_owned(),
    };
    let err = Store::connect(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(
        !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{text}"
    );
    match db.backend() {
        Backend::Postgres => assert!(text.contains("pg_ctlcluster 15 main start"), "{text}"),
        Backend::Sqlite => assert!(text.contains("/proc/vetric-no-such-dir/x.db"), "{text}"),
    }
    assert!(matches!(
        Store::connect("mysql://x@h/db").await,
        Err(StoreError::BadUrl { .. })
    ));
    assert!(!format!("{:?}", db.store).contains("hunter2"));
}

/// Concurrent writers (several sites' ingest loops, a manager adding tags) do not trip over
/// each other: SQLite serialises them (BEGIN IMMEDIATE + busy timeout), PostgreSQL runs them.
async fn concurrent_writers_all_land(db: &TestDb) {
    let store = &db.store;
    let mut tasks = Vec::new();
    for w in 0..6_i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = store
                .upsert_site(&format!("site{}", w % 3), "S", "America/Sao_Paulo")
                .await
                .unwrap();
            let r = store
                .add_resident(s, &resident(&format!("R{w}"), "A", &w.to_string()))
                .await
                .unwrap();
            store
                .add_tag(s, r, &tag(&format!("TAG{w}")), t(1, 0), None)
                .await
                .unwrap();
            for round in 0..5_i64 {
                let mut c = full_cycle(t(2, round as u32));
                c.sessions[0].vendor_id = w * 100 + round;
                c.events.push(event(t(2, 0), "extra", w));
                store.write_cycle(s, &c).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut events = 0;
    let mut sessions = 0;
    for site in store.sites().await.unwrap() {
        events += store.events(site.id, 0, 1000).await.unwrap().len();
        sessions += store.open_sessions(site.id).await.unwrap().len();
    }
    assert_eq!((events, sessions), (6 * 5 * 2, 6 * 5));
}

/// A cycle that lists `uuids` as the vendor's whole (accepted) list and writes `chargers`.
fn listed_cycle(at: DateTime<Utc>, chargers: Vec<ChargerWrite>, uuids: &[&str]) -> CycleWrite {
    let mut c = cycle(at);
    c.chargers = chargers;
    c.listed_chargers = Some(uuids.iter().map(|u| (*u).to_owned()).collect());
    c
}

fn shown(connectors: &[vetric_store::ConnectorView]) -> Vec<(String, u32)> {
    connectors
        .iter()
        .map(|k| (k.charger_uuid.clone(), k.connector_id))
        .collect()
}

/// Chargers an accepted list no longer has leave the reads (dashboard, API, `vetric status`)
/// while the sessions that name them keep their charger; one that comes back shows again; a
/// confirmed empty list shows none; `None` (no accepted list) retires nothing; another site
/// is untouched.
async fn accepted_list_retires_missing_chargers_and_keeps_history(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let other = store
        .upsert_site("outro", "Outro", "America/Sao_Paulo")
        .await
        .unwrap();
    let c1 = || {
        charger(
            "c1",
            "Vaga 1",
            vec![
                connector(1, ConnectorStatus::Available, t(1, 8)),
                connector(2, ConnectorStatus::Available, t(1, 8)),
            ],
        )
    };
    let c2 = || {
        charger(
            "c2",
            "Vaga 2",
            vec![connector(1, ConnectorStatus::Available, t(1, 8))],
        )
    };
    let mut first = listed_cycle(t(1, 10), vec![c1(), c2()], &["c1", "c2"]);
    let mut ended = open_session(5001, "c2", None, t(1, 8));
    ended.stop = Some(t(1, 9));
    ended.end_kind = Some(EndKind::Finished);
    ended.status = SessionStatus::Ended;
    first.sessions.push(ended);
    store.write_cycle(s, &first).await.unwrap();
    store
        .write_cycle(other, &listed_cycle(t(1, 10), vec![c2()], &["c2"]))
        .await
        .unwrap();
    let both = vec![
        ("c1".to_owned(), 1),
        ("c1".to_owned(), 2),
        ("c2".to_owned(), 1),
    ];
    assert_eq!(shown(&store.connectors(s).await.unwrap()), both);
    let before = store.site_change_marker(s).await.unwrap();

    // c2 is gone from an accepted list; c1 is unchanged, so the ingest does not rewrite it.
    store
        .write_cycle(s, &listed_cycle(t(1, 11), vec![], &["c1"]))
        .await
        .unwrap();
    let now_shown = store.connectors(s).await.unwrap();
    assert_eq!(
        shown(&now_shown),
        [("c1".to_owned(), 1), ("c1".to_owned(), 2)]
    );
    // c1 was not touched (no churn): still as written at 10:00.
    assert!(now_shown.iter().all(|k| k.observed_at == t(1, 10)));
    assert_ne!(store.site_change_marker(s).await.unwrap(), before);
    // History keeps naming the charger.
    let history = store.session(s, 5001).await.unwrap().unwrap();
    assert_eq!(history.charger_name.as_deref(), Some("Vaga 2"));
    let by_charger = SessionFilter {
        charger_uuid: Some("c2".into()),
        ..SessionFilter::default()
    };
    assert_eq!(store.sessions(s, &by_charger).await.unwrap().len(), 1);
    // Another site's charger with the same uuid stays.
    assert_eq!(store.connectors(other).await.unwrap().len(), 1);

    // No accepted list (a failed read, an unconfirmed empty list): nothing retired.
    let mut failed = cycle(t(1, 12));
    failed.tracker_state = None;
    store.write_cycle(s, &failed).await.unwrap();
    assert_eq!(store.connectors(s).await.unwrap().len(), 2);

    // A connector the vendor no longer lists for c1 goes too.
    let mut c1_one = c1();
    c1_one.connectors.truncate(1);
    store
        .write_cycle(s, &listed_cycle(t(1, 13), vec![c1_one], &["c1"]))
        .await
        .unwrap();
    assert_eq!(
        shown(&store.connectors(s).await.unwrap()),
        [("c1".to_owned(), 1)]
    );

    // c2 comes back exactly as it left (and c1 with both connectors): shown again, fresh.
    store
        .write_cycle(s, &listed_cycle(t(1, 14), vec![c1(), c2()], &["c1", "c2"]))
        .await
        .unwrap();
    let back = store.connectors(s).await.unwrap();
    assert_eq!(shown(&back), both);
    let k2 = back.iter().find(|k| k.charger_uuid == "c2").unwrap();
    assert_eq!(
        (k2.observed_at, k2.charger_name.as_str()),
        (t(1, 14), "Vaga 2")
    );

    // A confirmed empty list: 0 chargers shown; the history stays.
    let marker = store.site_change_marker(s).await.unwrap();
    store
        .write_cycle(s, &listed_cycle(t(1, 15), vec![], &[]))
        .await
        .unwrap();
    assert!(store.connectors(s).await.unwrap().is_empty());
    assert_ne!(store.site_change_marker(s).await.unwrap(), marker);
    let history = store.session(s, 5001).await.unwrap().unwrap();
    assert_eq!(
        (history.charger_name.as_deref(), history.energy_wh),
        (Some("Vaga 2"), Some(1200))
    );
    assert_eq!(store.connectors(other).await.unwrap().len(), 1);
}

test_both_backends!(
    concurrent_writers_all_land,
    migrate_twice_is_a_no_op,
    site_upsert_is_idempotent,
    apartments_compare_case_insensitively,
    tag_overlap_is_refused_with_a_clear_error,
    tag_directory_follows_a_tag_that_changed_hands,
    write_cycle_round_trip,
    write_cycle_is_all_or_nothing,
    replayed_write_does_not_double_sessions,
    sessions_filter_by_start_newest_first,
    events_come_back_in_write_order,
    unknown_tags_count_sightings_and_leave_the_inbox_when_assigned,
    connect_reports_problems_without_passwords,
    accepted_list_retires_missing_chargers_and_keeps_history,
);

/// Both migration folders describe the same tables and columns.
#[tokio::test]
async fn schema_is_the_same_on_both_backends() {
    let lite = TestDb::sqlite().await;
    let pg = TestDb::postgres().await;
    let lite_pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
    let lite_cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(&lite_pool)
    .await
    .unwrap();
    let pg_cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pg.store.pg_pool().unwrap())
    .await
    .unwrap();
    let lite_set: BTreeSet<_> = lite_cols.into_iter().collect();
    let pg_set: BTreeSet<_> = pg_cols.into_iter().collect();
    assert!(lite_set.len() > 50, "{lite_set:?}");
    assert_eq!(
        lite_set.difference(&pg_set).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns only on SQLite"
    );
    assert_eq!(
        pg_set.difference(&lite_set).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns only on PostgreSQL"
    );
    lite_pool.close().await;
}

/// `sqlite::memory:` works (one connection that is never recycled).
#[tokio::test]
async fn in_memory_sqlite_store_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let s = site(&store).await;
    store.write_cycle(s, &full_cycle(t(1, 10))).await.unwrap();
    assert_eq!(store.connectors(s).await.unwrap().len(), 2);
    assert_eq!(vetric_store::sqlite_path_from_url("sqlite::memory:"), None);
    assert_eq!(
        vetric_store::sqlite_path_from_url("sqlite:///var/lib/vetric/vetric.db"),
        Some("/var/lib/vetric/vetric.db".into())
    );
}

/// The SQLite instance lock around a real store file.
#[tokio::test]
async fn instance_lock_is_held_refused_and_released() {
    use vetric_store::{InstanceLock, LockError, LockHolder};
    let db = TestDb::sqlite().await;
    let path = vetric_store::sqlite_path_from_url(&db.url).unwrap();
    assert_eq!(InstanceLock::is_held(&path).unwrap(), None);
    let lock = InstanceLock::acquire(
        &path,
        LockHolder::current("vetric serve", Some("127.0.0.1:8080".into())),
    )
    .unwrap();
    let err = InstanceLock::acquire(&path, LockHolder::current("vetric demo", None)).unwrap_err();
    assert!(matches!(err, LockError::LockHeld { .. }));
    let text = StoreError::from(err).to_string();
    assert!(
        text.contains(&format!(
            "is held by pid {} (vetric serve on 127.0.0.1:8080, since ",
            std::process::id()
        )),
        "{text}"
    );
    // Ordinary clients still read and write while it is held (WAL).
    let client = Store::connect(&db.url).await.unwrap();
    site(&client).await;
    assert_eq!(
        InstanceLock::is_held(&path).unwrap().unwrap().command,
        "vetric serve"
    );
    drop(lock);
    assert_eq!(InstanceLock::is_held(&path).unwrap(), None);
}
