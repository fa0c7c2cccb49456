//! Monthly statements in the store, on both backends: the month's input is assembled from
//! vetric's own ended sessions, imported rows, dated tag ownership and the tariff history;
//! issuing freezes a version; late data never changes an issued version, it makes the next.

use chrono::{DateTime, TimeZone, Utc};
use vetric_domain::statement::{compute, diff};
use vetric_domain::{LocalMonth, SessionRecord, SessionSource, Tag, TariffSpec, TimePrecision};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, BreakerState, ChargerWrite, CycleWrite, EndKind, NewImportBatch, NewResident,
    SessionStatus, SessionWrite, SiteId, Store, StoreError, VendorLinkRow, test_both_backends,
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn march() -> LocalMonth {
    LocalMonth::parse("2026-03").unwrap()
}

fn ended(vendor_id: i64, start: &str, hours: i64, wh: i64) -> SessionWrite {
    let start = at(start);
    SessionWrite {
        vendor_id,
        charger_uuid: "c1".into(),
        connector_id: 1,
        tag: Some(tag("5BE07D1A")),
        tag_pk: None,
        resident_id: None,
        start,
        stop: Some(start + chrono::TimeDelta::hours(hours)),
        energy_wh: Some(wh),
        idle_seconds: 0,
        stop_reason: Some("EVDisconnected".into()),
        end_kind: Some(EndKind::Finished),
        status: SessionStatus::Ended,
    }
}

/// A site in São Paulo with the worked examples' tariff, Maria owning tag 5BE07D1A
/// since February, and vetric's own sessions around the edges of March (local time):
/// 5001 on Feb 28 23:59:59, 5002 on Mar 1 00:00:00, 5003 on Mar 31 23:59, 5004 on Apr 1
/// 00:00 (all ended), and 5005 still open in March.
async fn setup(store: &Store) -> SiteId {
    let site = store
        .upsert_site("palmeiras", "Condomínio Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    store.upsert_config_tariff(site, &tariff).await.unwrap();
    let maria = store
        .add_resident(
            site,
            &NewResident {
                name: "Maria Silva".into(),
                phone: "+5511999990000".into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap();
    store
        .add_tag(
            site,
            maria,
            &tag("5BE07D1A"),
            at("2026-02-01T03:00:00Z"),
            None,
        )
        .await
        .unwrap();
    let now = at("2026-04-02T12:00:00Z");
    let mut open = ended(5005, "2026-03-20T12:00:00Z", 1, 1000);
    open.stop = None;
    open.end_kind = None;
    open.stop_reason = None;
    open.status = SessionStatus::Open;
    let cycle = CycleWrite {
        observed_at: now,
        listed_chargers: None,
        chargers: vec![ChargerWrite {
            uuid: "c1".into(),
            charge_box_id: "BOX-c1".into(),
            name: "Palmeiras 1".into(),
            vendor: "Intelbras".into(),
            model: "CVE 7,4 kW".into(),
            firmware: "1.2.3".into(),
            last_heartbeat: None,
            online: true,
            connectors: vec![],
        }],
        sessions: vec![
            ended(5001, "2026-03-01T02:59:59Z", 1, 2000),
            ended(5002, "2026-03-01T03:00:00Z", 1, 3000),
            ended(5003, "2026-04-01T02:59:00Z", 1, 4000),
            ended(5004, "2026-04-01T03:00:00Z", 1, 5000),
            open,
        ],
        events: vec![],
        unknown_tags: vec![],
        tracker_state: None,
        vendor_link: VendorLinkRow {
            last_success: Some(now),
            last_error_kind: None,
            last_error_message: None,
            last_error_at: None,
            consecutive_failures: 0,
            breaker: BreakerState::Closed,
            charger_count_last_good: Some(1),
            updated_at: now,
        },
        notifications: vec![],
        cancellations: vec![],
    };
    store.write_cycle(site, &cycle).await.unwrap();
    site
}

fn imported(vendor_id: i64, start: &str, wh: i64, line: u32) -> SessionRecord {
    let start = at(start);
    SessionRecord {
        vendor_id,
        charger: "Palmeiras 1 (planilha)".into(),
        tag: Some(tag("5be07d1a")),
        start,
        stop: start + chrono::TimeDelta::hours(1),
        energy_wh: wh,
        idle_seconds: 0,
        source: SessionSource::Imported,
        precision: TimePrecision::Minute,
        import_line: Some(line),
        user_name: Some("Maria".into()),
    }
}

fn audit(action: &str, site: SiteId) -> AuditEntry {
    AuditEntry::new(
        Utc.with_ymd_and_hms(2026, 4, 2, 15, 0, 0).unwrap(),
        None,
        action,
        format!("site:{site}"),
    )
}

async fn statement_input_takes_the_local_month_of_ended_sessions(db: &TestDb) {
    let store = &db.store;
    let site = setup(store).await;
    let input = store.statement_input(site, march()).await.unwrap();
    assert_eq!(input.site_name, "Condomínio Palmeiras");
    assert_eq!(input.tz.name(), "America/Sao_Paulo");
    assert!(
        input.sessions.iter().all(|s| s.vendor_id != 5005),
        "an open session has no price yet"
    );
    let st = compute(&input);
    assert_eq!(st.lines.len(), 1, "{:?}", st.lines);
    let line = &st.lines[0];
    assert_eq!(line.apartment.as_deref(), Some("A-302"));
    assert_eq!(line.residents[0].name, "Maria Silva");
    let ids: Vec<i64> = line.session_details.iter().map(|s| s.vendor_id).collect();
    assert_eq!(ids, vec![5002, 5003], "local midnight edges of March");
    assert_eq!(line.session_details[0].charger, "Palmeiras 1");
    assert_eq!(st.totals.kwh.to_string(), "7.000");
    // Off-peak only (Sunday, then a Tuesday night): 7 kWh × 0.53.
    assert_eq!(st.totals.total.to_string(), "3.71");
    // February and April see the other two.
    let feb = compute(
        &store
            .statement_input(site, LocalMonth::parse("2026-02").unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(feb.lines[0].session_details[0].vendor_id, 5001);
    let apr = compute(
        &store
            .statement_input(site, LocalMonth::parse("2026-04").unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(apr.lines[0].session_details[0].vendor_id, 5004);
    // An unknown site is not found.
    assert!(matches!(
        store.statement_input(SiteId(999_999), march()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn issuing_freezes_and_late_data_makes_a_new_version(db: &TestDb) {
    let store = &db.store;
    let site = setup(store).await;
    assert!(
        store
            .issued_statement(site, march())
            .await
            .unwrap()
            .is_none()
    );
    let input = store.statement_input(site, march()).await.unwrap();
    let v1 = store
        .issue_statement(site, &input, &audit("statement_issue", site))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.statement, compute(&input));
    let read = store
        .issued_statement(site, march())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, v1, "reads back exactly as issued");

    // Late data: an imported session of March and a copy of vetric's own 5002.
    let rows = vec![
        imported(9001, "2026-03-10T13:00:00Z", 10_000, 2),
        imported(5002, "2026-03-01T03:00:00Z", 3000, 3),
    ];
    let batch = NewImportBatch {
        file_name: "recargas-marco.xlsx".into(),
        rows_read: 3,
        rows_refused: 1,
    };
    let out = store
        .import_sessions(site, &batch, &rows, &audit("statement_import", site))
        .await
        .unwrap();
    assert_eq!(out.imported, vec![9001, 5002]);
    assert_eq!(out.also_recorded, vec![5002]);
    assert!(out.already_imported.is_empty());
    // The same file again stores nothing new.
    let again = store
        .import_sessions(site, &batch, &rows, &audit("statement_import", site))
        .await
        .unwrap();
    assert_eq!(again.already_imported, vec![9001, 5002]);
    assert!(again.imported.is_empty());

    // The issued version did not move.
    let still = store
        .issued_statement(site, march())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still, v1);

    // The draft has the new session, once (5002 matched, not doubled), and the difference
    // shows per apartment.
    let input2 = store.statement_input(site, march()).await.unwrap();
    let draft = compute(&input2);
    assert_eq!(draft.totals.sessions, 3);
    assert!(draft.disagreements.is_empty(), "{:?}", draft.disagreements);
    let changes = diff(&v1.statement, &draft);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].apartment.as_deref(), Some("A-302"));
    assert_eq!(changes[0].added_sessions, vec![9001]);
    assert_eq!(changes[0].total_change.to_string(), "5.30");

    let v2 = store
        .issue_statement(site, &input2, &audit("statement_issue", site))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store
            .issued_statement(site, march())
            .await
            .unwrap()
            .unwrap(),
        v2
    );
    assert_eq!(
        store
            .issued_statement_version(site, march(), 1)
            .await
            .unwrap()
            .unwrap(),
        v1
    );
    let versions = store.statement_versions(site, march()).await.unwrap();
    let listed: Vec<(i64, &str)> = versions
        .iter()
        .map(|v| (v.version, v.total.as_str()))
        .collect();
    assert_eq!(listed, vec![(2, "9.01"), (1, "3.71")]);
    // Another month is untouched.
    assert!(
        store
            .issued_statement(site, LocalMonth::parse("2026-04").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let actions: Vec<String> = store
        .audit_log(20)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .filter(|a| a.starts_with("statement_"))
        .collect();
    assert_eq!(
        actions,
        vec![
            "statement_issue",
            "statement_import",
            "statement_import",
            "statement_issue"
        ]
    );
    let last = &store.audit_log(1).await.unwrap()[0];
    assert_eq!(last.detail["version"], 2);
    assert_eq!(last.detail["month"], "2026-03");
}

async fn an_import_of_own_records_is_refused_and_stores_nothing(db: &TestDb) {
    let store = &db.store;
    let site = setup(store).await;
    let before = db.row_counts().await;
    let mut bad = imported(9002, "2026-03-10T13:00:00Z", 1000, 2);
    bad.source = SessionSource::Own;
    let rows = vec![imported(9001, "2026-03-10T13:00:00Z", 1000, 2), bad];
    let batch = NewImportBatch {
        file_name: "x.xlsx".into(),
        rows_read: 2,
        rows_refused: 0,
    };
    let err = store
        .import_sessions(site, &batch, &rows, &audit("statement_import", site))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(db.row_counts().await, before);
}

async fn issuing_from_a_stale_read_is_refused_and_stores_nothing(db: &TestDb) {
    let store = &db.store;
    let site = setup(store).await;
    let input = store.statement_input(site, march()).await.unwrap();
    // Two people read the month with no version issued; the first one issues.
    let first = store
        .issue_statement_with_messages(
            site,
            &input,
            &audit("statement_issue", site),
            Some(0),
            |_| Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    // The second, still expecting no version, is refused instead of issuing a copy as v2.
    let before = db.row_counts().await;
    let err = store
        .issue_statement_with_messages(
            site,
            &input,
            &audit("statement_issue", site),
            Some(0),
            |_| Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(db.row_counts().await, before);
    assert_eq!(
        store.statement_versions(site, march()).await.unwrap().len(),
        1
    );
}

test_both_backends!(
    issuing_from_a_stale_read_is_refused_and_stores_nothing,
    statement_input_takes_the_local_month_of_ended_sessions,
    issuing_freezes_and_late_data_makes_a_new_version,
    an_import_of_own_records_is_refused_and_stores_nothing,
);
