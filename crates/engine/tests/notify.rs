//! Notifications enqueued by the ingest, end to end: the CVE-Pro simulator → `SiteIngest::cycle`
//! → outbox rows in the same transaction as the events, on SQLite and on PostgreSQL.

mod support;

use chrono::Utc;
use std::time::Duration;
use support::{Rig, accepted, settings};
use vetric_engine::{CycleOutcome, Recipients, SiteIngest, SiteNotify};
use vetric_sim::cvepro::{Fault, SimConfig, StopReason};
use vetric_store::testing::TestDb;
use vetric_store::{OutboxFilter, OutboxStatus};

fn notify() -> SiteNotify {
    SiteNotify {
        recipients: Recipients {
            operator_email: vec!["ops@example.com".into()],
            ..Recipients::default()
        },
        ..SiteNotify::default()
    }
}

async fn notifying_ingest(rig: &Rig) -> SiteIngest {
    let mut s = settings(Duration::from_millis(200));
    s.notify = Some(notify());
    SiteIngest::resume(
        rig.site,
        support::SLUG,
        rig.fast_client(),
        rig.store.clone(),
        s,
    )
    .await
    .expect("resume the site ingest")
}

async fn rows_of(rig: &Rig, rule: &str) -> Vec<vetric_store::OutboxRow> {
    rig.store
        .outbox_log(&OutboxFilter {
            site: Some(rig.site),
            rule: Some(rule.to_owned()),
            limit: Some(500),
            ..OutboxFilter::default()
        })
        .await
        .expect("outbox log")
        .into_iter()
        .map(|e| e.row)
        .collect()
}

/// A session start is a pending WhatsApp row for its resident, once however often the vendor
/// repeats it; its end cancels the start if still pending and enqueues the "finished" message;
/// a vendor outage alerts the operators through the failed cycle's write.
async fn session_start_enqueues_one_pending_message(db: &TestDb) {
    let rig = Rig::start(
        db,
        SimConfig {
            chargers: 1,
            ..SimConfig::scripted()
        },
    )
    .await;
    let tx = rig
        .sim
        .start_session(0, 1, &rig.tag(0), 7_400.0)
        .expect("start");
    let mut ingest = notifying_ingest(&rig).await;
    assert!(accepted(&mut ingest).await.contains(&"session_started"));
    accepted(&mut ingest).await;
    accepted(&mut ingest).await;

    let started = rows_of(&rig, "session_started").await;
    let [row] = started.as_slice() else {
        panic!("one started row expected: {started:?}")
    };
    assert_eq!(
        row.dedup_key,
        format!("site:{}:session:{tx}:session_started:resident", rig.site)
    );
    assert_eq!(row.status, OutboxStatus::Pending);
    assert_eq!(row.channel, "whatsapp");
    assert_eq!(row.audience, "resident");
    assert_eq!(row.session_vendor_id, Some(tx));
    assert_eq!(row.scope, format!("session:{tx}"));
    let phone = rig.fleet.residents[0].phone.trim().to_owned();
    assert_eq!(row.recipient.as_deref(), Some(phone.as_str()));
    let first_name = rig.resident_name(0);
    assert!(row.body.contains(&first_name), "{}", row.body);
    assert!(row.body.contains("Jardim Teste"), "{}", row.body);
    assert!(
        row.body.ends_with(&format!("ref. {}", row.ref_code)),
        "{}",
        row.body
    );

    rig.sim.stop(0, 1, StopReason::Local).expect("stop");
    assert!(accepted(&mut ingest).await.contains(&"session_finished"));
    let started = rows_of(&rig, "session_started").await;
    assert_eq!(started[0].status, OutboxStatus::Cancelled);
    assert_eq!(started[0].reason.as_deref(), Some("session_over"));
    let finished = rows_of(&rig, "session_finished").await;
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].status, OutboxStatus::Pending);
    assert!(
        finished[0].body.contains("tarifa não configurada"),
        "{}",
        finished[0].body
    );

    rig.sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    for _ in 0..4 {
        let out = ingest.cycle(Utc::now()).await.expect("cycle stored");
        assert!(matches!(out, CycleOutcome::VendorFailed { .. }), "{out:?}");
    }
    let down = rows_of(&rig, "vendor_down").await;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].channel, "email");
    assert_eq!(down[0].recipient.as_deref(), Some("ops@example.com"));
    assert_eq!(down[0].status, OutboxStatus::Pending);
}

vetric_store::test_both_backends!(session_start_enqueues_one_pending_message);
