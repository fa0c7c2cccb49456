//! The notification outbox, on both backends: enqueue with the event (idempotent), claims with a
//! lease, conditional completion, expiry into doubt, settling, resend, the log, the backlog and
//! the notification settings.

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, BreakerState, CancelPending, Completion, CycleWrite, NewEvent, NewNotification,
    NewResident, OutboxFilter, OutboxStatus, ResidentId, Resolution, SiteId, Store, VendorLinkRow,
    test_both_backends,
};

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 12, minute, 0).unwrap()
}

async fn site(store: &Store) -> SiteId {
    store
        .upsert_site("palmeiras", "Condomínio Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap()
}

async fn resident(store: &Store, site: SiteId, phone: &str) -> ResidentId {
    store
        .add_resident(
            site,
            &NewResident {
                name: "Maria Silva".into(),
                phone: phone.into(),
                email: Some("maria@example.com".into()),
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap()
}

fn note(key: &str, resident: Option<ResidentId>, scope: &str, rule: &str) -> NewNotification {
    NewNotification {
        dedup_key: key.into(),
        rule: rule.into(),
        audience: "resident".into(),
        channel: "whatsapp".into(),
        resident_id: resident.map(|r| r.0),
        recipient: None,
        scope: scope.into(),
        session_vendor_id: Some(5001),
        subject: None,
        body: format!("Olá ref. {key}"),
        ref_code: key.into(),
        not_before: t(0),
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
        charger_count_last_good: Some(0),
        updated_at: at,
    }
}

fn cycle(notifications: Vec<NewNotification>, cancellations: Vec<CancelPending>) -> CycleWrite {
    CycleWrite {
        observed_at: t(0),
        listed_chargers: None,
        chargers: vec![],
        sessions: vec![],
        events: vec![NewEvent {
            at: t(0),
            kind: "session_started".into(),
            session_vendor_id: Some(5001),
            charger_uuid: None,
            payload: json!({}),
        }],
        unknown_tags: vec![],
        tracker_state: None,
        vendor_link: link(t(0)),
        notifications,
        cancellations,
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(t(30), None, action, "test")
}

async fn status_of(store: &Store, key: &str) -> OutboxStatus {
    store.outbox_by_key(key).await.unwrap().unwrap().status
}

async fn enqueue_takes_the_phone_and_is_idempotent(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+55 82 99000-0101").await;
    let id = store
        .enqueue(
            Some(s),
            &note("k1", Some(maria), "session:5001", "session_started"),
        )
        .await
        .unwrap();
    assert!(id.is_some());
    let row = store.outbox_by_key("k1").await.unwrap().unwrap();
    assert_eq!(row.recipient.as_deref(), Some("+55 82 99000-0101"));
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.site_id, Some(s));
    assert_eq!(row.attempts, 0);
    // The same key again: nothing new.
    let again = store
        .enqueue(
            Some(s),
            &note("k1", Some(maria), "session:5001", "session_started"),
        )
        .await
        .unwrap();
    assert_eq!(again, None);
    // An explicit recipient wins; the e-mail channel takes the e-mail.
    let mut mail = note("k2", Some(maria), "site", "charger_faulted");
    mail.channel = "email".into();
    store.enqueue(Some(s), &mail).await.unwrap();
    let row = store.outbox_by_key("k2").await.unwrap().unwrap();
    assert_eq!(row.recipient.as_deref(), Some("maria@example.com"));
    // A global alert without a site.
    let mut global = note("k3", None, "site", "backlog_stale");
    global.recipient = Some("ops@example.com".into());
    global.channel = "email".into();
    store.enqueue(None, &global).await.unwrap();
    assert_eq!(
        store.outbox_by_key("k3").await.unwrap().unwrap().site_id,
        None
    );
}

async fn no_phone_or_inactive_cancels_at_insert(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let mute = resident(store, s, "  ").await;
    store
        .enqueue(
            Some(s),
            &note("k1", Some(mute), "session:1", "session_started"),
        )
        .await
        .unwrap();
    let row = store.outbox_by_key("k1").await.unwrap().unwrap();
    assert_eq!(row.status, OutboxStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("no_phone"));
    assert_eq!(row.recipient, None);
    let gone = resident(store, s, "+5582990000102").await;
    store
        .update_resident(
            s,
            gone,
            &vetric_store::ResidentUpdate {
                name: "Maria Silva".into(),
                phone: "+5582990000102".into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
                active: false,
            },
            &audit("resident.update"),
        )
        .await
        .unwrap();
    store
        .enqueue(
            Some(s),
            &note("k2", Some(gone), "session:1", "session_started"),
        )
        .await
        .unwrap();
    assert_eq!(status_of(store, "k2").await, OutboxStatus::Cancelled);
}

async fn write_cycle_enqueues_with_the_events_and_cancels_only_pending(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    let write = cycle(
        vec![
            note("started", Some(maria), "session:5001", "session_started"),
            note("idle", Some(maria), "session:5001", "idle_started"),
            note("idle2", Some(maria), "session:5001", "idle_reminder"),
            note("other", Some(maria), "session:5002", "idle_started"),
        ],
        vec![],
    );
    store.write_cycle(s, &write).await.unwrap();
    // A replayed cycle enqueues nothing new.
    store.write_cycle(s, &write).await.unwrap();
    let all = store
        .outbox_log(&OutboxFilter {
            site: Some(s),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    // One of them is being sent: a cancellation must not touch it.
    let claimed = store
        .claim_due("w1", t(1), TimeDelta::seconds(60), 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].dedup_key, "started");
    let finished = cycle(
        vec![],
        vec![CancelPending {
            scope: "session:5001".into(),
            rules: vec![
                "session_started".into(),
                "idle_started".into(),
                "idle_reminder".into(),
            ],
            reason: "session_over".into(),
        }],
    );
    store.write_cycle(s, &finished).await.unwrap();
    assert_eq!(status_of(store, "started").await, OutboxStatus::Sending);
    assert_eq!(status_of(store, "idle").await, OutboxStatus::Cancelled);
    assert_eq!(status_of(store, "idle2").await, OutboxStatus::Cancelled);
    assert_eq!(status_of(store, "other").await, OutboxStatus::Pending);
    let idle = store.outbox_by_key("idle").await.unwrap().unwrap();
    assert_eq!(idle.reason.as_deref(), Some("session_over"));
    // The failed-cycle write takes notifications too.
    store
        .write_link_only(
            s,
            &link(t(2)),
            &[note("down", None, "site", "vendor_down")].map(|mut n| {
                n.recipient = Some("+5582990000999".into());
                n.audience = "operator".into();
                n
            }),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status_of(store, "down").await, OutboxStatus::Pending);
}

async fn a_failed_cycle_enqueues_nothing(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let mut bad = cycle(vec![note("k1", None, "site", "vendor_down")], vec![]);
    bad.notifications[0].recipient = Some("x".into());
    // Breaks a CHECK constraint after the notification was inserted: all rolls back.
    bad.vendor_link.consecutive_failures = -1;
    assert!(store.write_cycle(s, &bad).await.is_err());
    assert!(store.outbox_by_key("k1").await.unwrap().is_none());
}

async fn claims_and_conditional_completion(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    for k in ["a", "b", "c"] {
        store
            .enqueue(
                Some(s),
                &note(k, Some(maria), "session:1", "session_started"),
            )
            .await
            .unwrap();
    }
    // Not yet due.
    let mut later = note("later", Some(maria), "session:1", "session_started");
    later.not_before = t(50);
    store.enqueue(Some(s), &later).await.unwrap();
    let lease = TimeDelta::seconds(60);
    let mine = store.claim_due("A", t(1), lease, 2).await.unwrap();
    assert_eq!(
        mine.iter()
            .map(|r| r.dedup_key.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(mine.iter().all(|r| r.status == OutboxStatus::Sending
        && r.attempts == 1
        && r.lease_owner.as_deref() == Some("A")
        && r.lease_until == Some(t(1) + lease)));
    let theirs = store.claim_due("B", t(1), lease, 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].dedup_key, "c");
    // B cannot complete A's rows.
    let sent = Completion::Sent {
        gateway_message_id: Some("3EB0AAAA".into()),
    };
    assert!(!store.complete(mine[0].id, "B", &sent, t(2)).await.unwrap());
    assert!(store.complete(mine[0].id, "A", &sent, t(2)).await.unwrap());
    // Once settled, nobody can complete it again.
    assert!(!store.complete(mine[0].id, "A", &sent, t(3)).await.unwrap());
    let entry = store.outbox_entry(mine[0].id).await.unwrap().unwrap();
    assert_eq!(entry.row.status, OutboxStatus::Sent);
    assert_eq!(entry.row.gateway_message_id.as_deref(), Some("3EB0AAAA"));
    assert_eq!(entry.row.sent_at, Some(t(2)));
    assert_eq!(entry.attempts.len(), 1);
    assert_eq!(entry.attempts[0].outcome, "sent");
    assert_eq!(entry.attempts[0].started_at, t(1));
    // Retry later: pending again, not due before the given time.
    let retry = Completion::RetryLater {
        at: t(10),
        error: "HTTP 500 Connection Closed".into(),
    };
    assert!(store.complete(mine[1].id, "A", &retry, t(2)).await.unwrap());
    assert!(
        store
            .claim_due("A", t(5), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_due("A", t(10), lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    // A deferral gives the attempt back and moves not_before.
    let defer = Completion::Defer { not_before: t(40) };
    assert!(
        store
            .complete(again[0].id, "A", &defer, t(10))
            .await
            .unwrap()
    );
    let row = store.outbox_by_key("b").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.not_before),
        (OutboxStatus::Pending, 1, t(40))
    );
    // Failed and cancelled keep their reason.
    let failed = Completion::Failed {
        reason: "not on WhatsApp".into(),
    };
    assert!(
        store
            .complete(theirs[0].id, "B", &failed, t(2))
            .await
            .unwrap()
    );
    let row = store.outbox_by_key("c").await.unwrap().unwrap();
    assert_eq!(row.status, OutboxStatus::Failed);
    assert_eq!(row.reason.as_deref(), Some("not on WhatsApp"));
}

async fn expired_leases_go_in_doubt_and_are_settled(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    for k in ["a", "b", "c"] {
        store
            .enqueue(
                Some(s),
                &note(k, Some(maria), "session:1", "session_started"),
            )
            .await
            .unwrap();
    }
    let rows = store
        .claim_due("dead", t(1), TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    // Before the lease ends nothing moves.
    assert!(store.expire_leases(t(1)).await.unwrap().is_empty());
    let expired = store.expire_leases(t(3)).await.unwrap();
    assert_eq!(expired, rows.iter().map(|r| r.id).collect::<Vec<_>>());
    assert_eq!(status_of(store, "a").await, OutboxStatus::InDoubt);
    // The dead owner's late completion is refused.
    let sent = Completion::Sent {
        gateway_message_id: None,
    };
    assert!(
        !store
            .complete(rows[0].id, "dead", &sent, t(3))
            .await
            .unwrap()
    );
    assert_eq!(store.in_doubt(10).await.unwrap().len(), 3);
    assert_eq!(store.in_doubt_due(t(3), 10).await.unwrap().len(), 3);
    // Found at the gateway → sent.
    let found = Resolution::Sent {
        gateway_message_id: Some("3EB0BBBB".into()),
    };
    assert!(
        store
            .resolve_in_doubt(rows[0].id, &found, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .resolve_in_doubt(rows[0].id, &found, None)
            .await
            .unwrap()
    );
    let entry = store.outbox_entry(rows[0].id).await.unwrap().unwrap();
    assert_eq!(entry.row.status, OutboxStatus::Sent);
    assert_eq!(entry.attempts.len(), 1);
    assert_eq!(entry.attempts[0].outcome, "confirmed");
    // Not there on a gateway that stores messages → pending again.
    assert!(
        store
            .resolve_in_doubt(rows[1].id, &Resolution::Resend, None)
            .await
            .unwrap()
    );
    assert_eq!(status_of(store, "b").await, OutboxStatus::Pending);
    // Unknown: postponed, still in doubt, not due until then.
    assert!(
        store
            .postpone_in_doubt(rows[2].id, t(20), "gateway does not store messages")
            .await
            .unwrap()
    );
    assert!(store.in_doubt_due(t(10), 10).await.unwrap().is_empty());
    assert_eq!(store.in_doubt_due(t(20), 10).await.unwrap().len(), 1);
    // An operator settles it, audited.
    let by_hand = audit("notification.resolve");
    assert!(
        store
            .resolve_in_doubt(rows[2].id, &Resolution::Resend, Some(&by_hand))
            .await
            .unwrap()
    );
    let audits = store.audit_log(10).await.unwrap();
    assert!(audits.iter().any(|a| a.action == "notification.resolve"));
}

async fn resend_only_failed_rows_and_audits(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    store
        .enqueue(
            Some(s),
            &note("a", Some(maria), "session:1", "session_started"),
        )
        .await
        .unwrap();
    let row = store.outbox_by_key("a").await.unwrap().unwrap();
    assert!(
        !store
            .resend(row.id, &audit("notification.resend"))
            .await
            .unwrap()
    );
    let claimed = store
        .claim_due("A", t(1), TimeDelta::seconds(60), 1)
        .await
        .unwrap();
    let failed = Completion::Failed {
        reason: "not on WhatsApp".into(),
    };
    assert!(
        store
            .complete(claimed[0].id, "A", &failed, t(2))
            .await
            .unwrap()
    );
    assert!(
        store
            .resend(row.id, &audit("notification.resend"))
            .await
            .unwrap()
    );
    let entry = store.outbox_entry(row.id).await.unwrap().unwrap();
    assert_eq!(entry.row.status, OutboxStatus::Pending);
    assert_eq!(entry.row.attempts, 0);
    assert_eq!(entry.row.reason, None);
    // The earlier attempt is kept, numbered below zero.
    assert_eq!(entry.attempts.len(), 1);
    assert_eq!(entry.attempts[0].attempt, -1);
    let next = store
        .claim_due("A", t(40), TimeDelta::seconds(60), 1)
        .await
        .unwrap();
    assert_eq!(next[0].attempts, 1);
    let audits = store.audit_log(10).await.unwrap();
    assert_eq!(
        audits
            .iter()
            .filter(|a| a.action == "notification.resend")
            .count(),
        1
    );
}

async fn log_filters_pages_and_backlog(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    for i in 0..5 {
        let rule = if i % 2 == 0 {
            "session_started"
        } else {
            "idle_started"
        };
        store
            .enqueue(
                Some(s),
                &note(&format!("k{i}"), Some(maria), "session:1", rule),
            )
            .await
            .unwrap();
    }
    let page1 = store
        .outbox_log(&OutboxFilter {
            site: Some(s),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page1
            .iter()
            .map(|e| e.row.dedup_key.as_str())
            .collect::<Vec<_>>(),
        ["k4", "k3"]
    );
    let page2 = store
        .outbox_log(&OutboxFilter {
            site: Some(s),
            limit: Some(2),
            before_id: Some(page1[1].row.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2[0].row.dedup_key, "k2");
    let idle = store
        .outbox_log(&OutboxFilter {
            rule: Some("idle_started".into()),
            resident: Some(maria),
            status: Some(OutboxStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(idle.len(), 2);
    let b = store.outbox_backlog(Some(s), t(10)).await.unwrap();
    assert_eq!((b.pending, b.in_doubt, b.oldest_due), (5, 0, Some(t(0))));
    let other = store
        .upsert_site("outro", "Outro", "America/Sao_Paulo")
        .await
        .unwrap();
    let none = store.outbox_backlog(Some(other), t(10)).await.unwrap();
    assert_eq!((none.pending, none.oldest_due), (0, None));
}

async fn prefs_and_policy_round_trip_with_audit(db: &TestDb) {
    let store = &db.store;
    let s = site(store).await;
    let maria = resident(store, s, "+5582990000101").await;
    assert!(store.resident_prefs(maria).await.unwrap().is_none());
    let quiet = (
        NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        NaiveTime::from_hms_opt(7, 30, 0).unwrap(),
    );
    store
        .set_resident_prefs(
            maria,
            &["idle_reminder".into(), "session_started".into()],
            Some(quiet),
            &audit("resident.prefs"),
        )
        .await
        .unwrap();
    let p = store.resident_prefs(maria).await.unwrap().unwrap();
    assert_eq!(p.opted_out, ["idle_reminder", "session_started"]);
    assert_eq!(p.quiet, Some(quiet));
    store
        .set_resident_prefs(maria, &[], None, &audit("resident.prefs"))
        .await
        .unwrap();
    let p = store.resident_prefs(maria).await.unwrap().unwrap();
    assert!(p.opted_out.is_empty());
    assert_eq!(p.quiet, None);
    assert!(
        store
            .set_resident_prefs(ResidentId(9999), &[], None, &audit("resident.prefs"))
            .await
            .is_err()
    );

    assert!(store.site_policy(s).await.unwrap().is_none());
    let policy = json!({ "backlog_alert_min": 20 });
    store
        .set_site_policy(s, &policy, Some("admin@example.com"), &audit("site.policy"))
        .await
        .unwrap();
    let row = store.site_policy(s).await.unwrap().unwrap();
    assert_eq!(row.policy, policy);
    assert_eq!(row.updated_by.as_deref(), Some("admin@example.com"));
    let audits = store.audit_log(10).await.unwrap();
    assert_eq!(
        audits
            .iter()
            .filter(|a| a.action == "resident.prefs")
            .count(),
        2
    );
    assert_eq!(
        audits.iter().filter(|a| a.action == "site.policy").count(),
        1
    );
}

test_both_backends!(
    enqueue_takes_the_phone_and_is_idempotent,
    no_phone_or_inactive_cancels_at_insert,
    write_cycle_enqueues_with_the_events_and_cancels_only_pending,
    a_failed_cycle_enqueues_nothing,
    claims_and_conditional_completion,
    expired_leases_go_in_doubt_and_are_settled,
    resend_only_failed_rows_and_audits,
    log_filters_pages_and_backlog,
    prefs_and_policy_round_trip_with_audit,
);
