//! The dispatcher against the in-process Evolution simulator, on both backends: sends, retries,
//! permanent failures, crashes mid-send (in doubt → reconciled, never resent blindly),
//! configuration errors and gateway outages (operator alerts by e-mail only), quiet hours and
//! opt-out, and two dispatchers sharing one PostgreSQL store.

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;
use vetric_domain::Secret;
use vetric_engine::dispatch::{
    Channel, DispatchSettings, Dispatcher, OperatorContacts, SendFuture, SiteDispatch,
    WhatsAppGateway,
};
use vetric_evolution::{EvolutionClient, EvolutionConfig};
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, EvolutionSimHandle,
    Faults, InstanceState,
};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, NewNotification, NewResident, OutboxFilter, OutboxRow, OutboxStatus, ResidentId,
    SiteId, Store, test_both_backends,
};

const PHONE: &str = "+5582990000101";
const OPS: &str = "ops@example.com";

/// A stand-in e-mail channel that records what it was given.
#[derive(Default)]
struct Outbox(Mutex<Vec<OutboxRow>>);

impl Channel for Outbox {
    fn send<'a>(&'a self, row: &'a OutboxRow) -> SendFuture<'a> {
        Box::pin(async move {
            self.0.lock().unwrap().push(row.clone());
            Ok(None)
        })
    }
}

struct Fixture {
    store: Store,
    site: SiteId,
    maria: ResidentId,
    sim: EvolutionSimHandle,
    email: Arc<Outbox>,
}

async fn fixture(db: &TestDb, stores_messages: bool) -> Fixture {
    let store = db.store.clone();
    let site = store
        .upsert_site("palmeiras", "Condomínio Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let maria = store
        .add_resident(
            site,
            &NewResident {
                name: "Maria Silva".into(),
                phone: PHONE.into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap();
    let sim = EvolutionSim::start(
        EvolutionSimConfig {
            stores_messages,
            ..EvolutionSimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    Fixture {
        store,
        site,
        maria,
        sim,
        email: Arc::new(Outbox::default()),
    }
}

impl Fixture {
    fn gateway(&self, stores_messages: bool) -> WhatsAppGateway {
        let mut cfg = EvolutionConfig::new(
            Url::parse(self.sim.base_url()).unwrap(),
            Secret::new(DEFAULT_API_KEY),
            DEFAULT_INSTANCE,
        );
        cfg.request_timeout = Duration::from_secs(5);
        WhatsAppGateway {
            client: EvolutionClient::new(cfg).unwrap(),
            stores_messages,
        }
    }

    fn dispatcher(&self, owner: &str, stores_messages: bool) -> Dispatcher {
        self.dispatcher_tuned(owner, stores_messages, |_| {})
    }

    fn dispatcher_tuned(
        &self,
        owner: &str,
        stores_messages: bool,
        tune: impl FnOnce(&mut DispatchSettings),
    ) -> Dispatcher {
        let mut settings = DispatchSettings {
            owner: owner.into(),
            tick: Duration::from_millis(20),
            lease: Duration::from_secs(120),
            retry_base: Duration::from_millis(10),
            retry_cap: Duration::from_millis(50),
            // Checked on every tick in these tests.
            gateway_check: Duration::ZERO,
            ..DispatchSettings::default()
        };
        tune(&mut settings);
        Dispatcher::new(
            self.store.clone(),
            settings,
            vec![SiteDispatch {
                site: self.site,
                slug: "palmeiras".into(),
                name: "Condomínio Palmeiras".into(),
                tz: chrono_tz::America::Sao_Paulo,
                whatsapp: Some(self.gateway(stores_messages)),
            }],
        )
        .with_email(self.email.clone())
        .with_operators(OperatorContacts {
            email: vec![OPS.into()],
            webhook_url: None,
        })
    }

    async fn enqueue(&self, key: &str, rule: &str) -> i64 {
        let n = NewNotification {
            dedup_key: format!("site:{}:{key}", self.site),
            rule: rule.into(),
            audience: "resident".into(),
            channel: "whatsapp".into(),
            resident_id: Some(self.maria.0),
            recipient: None,
            scope: "session:1".into(),
            session_vendor_id: Some(1),
            subject: None,
            body: format!("🔋 *Recarga concluída* ({key})"),
            ref_code: vetric_domain::ref_code(key),
            not_before: Utc::now() - TimeDelta::seconds(5),
        };
        self.store
            .enqueue(Some(self.site), &n)
            .await
            .unwrap()
            .unwrap()
    }

    async fn row(&self, id: i64) -> OutboxRow {
        self.store.outbox_entry(id).await.unwrap().unwrap().row
    }

    async fn whatsapp_rows(&self) -> Vec<OutboxRow> {
        self.store
            .outbox_log(&OutboxFilter {
                limit: Some(500),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.row)
            .filter(|r| r.channel == "whatsapp")
            .collect()
    }

    async fn alerts(&self) -> Vec<OutboxRow> {
        self.store
            .outbox_log(&OutboxFilter {
                limit: Some(500),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.row)
            .filter(|r| r.audience == "operator")
            .collect()
    }
}

/// Ticks at a clock that moves a minute per tick (so every retry is due) until nothing is
/// pending, at most `max` ticks.
async fn drain(d: &mut Dispatcher, store: &Store, start: DateTime<Utc>, max: u32) {
    let cancel = CancellationToken::new();
    for i in 0..max {
        let now = start + TimeDelta::minutes(i64::from(i));
        d.tick(now, &cancel).await.unwrap();
        let b = store
            .outbox_backlog(None, now + TimeDelta::days(1))
            .await
            .unwrap();
        if b.pending == 0 && b.sending == 0 {
            return;
        }
    }
}

async fn happy_path_records_the_gateway_id(db: &TestDb) {
    let f = fixture(db, true).await;
    let ids = [
        f.enqueue("a", "session_finished").await,
        f.enqueue("b", "session_finished").await,
    ];
    let mut d = f.dispatcher("A", true);
    let report = d.tick(Utc::now(), &CancellationToken::new()).await.unwrap();
    assert_eq!((report.claimed, report.sent), (2, 2));
    let sent = f.sim.messages();
    assert_eq!(sent.len(), 2);
    for id in ids {
        let row = f.row(id).await;
        // Sent concurrently: the gateway's order is not the rows' order.
        let msg = sent
            .iter()
            .find(|m| m.text.contains(&row.ref_code))
            .unwrap();
        assert_eq!(row.status, OutboxStatus::Sent);
        assert_eq!(row.gateway_message_id.as_deref(), Some(msg.id.as_str()));
        assert!(msg.text.contains(&row.ref_code), "the ref code travels");
        assert_eq!(msg.number, "5582990000101");
    }
    let entry = f.store.outbox_entry(ids[0]).await.unwrap().unwrap();
    assert_eq!(entry.attempts.len(), 1);
    assert_eq!(entry.attempts[0].outcome, "sent");
}

async fn flaky_gateway_retries_and_sends_each_exactly_once(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_faults(Faults {
        fail_send_percent: 20,
        ..Faults::default()
    });
    let n = 40;
    for i in 0..n {
        f.enqueue(&format!("m{i}"), "session_finished").await;
    }
    let mut d = f.dispatcher("A", true);
    drain(&mut d, &f.store, Utc::now(), 60).await;
    let rows = f.whatsapp_rows().await;
    assert!(
        rows.iter().all(|r| r.status == OutboxStatus::Sent),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.attempts > 1),
        "some sends were retried"
    );
    let sent = f.sim.messages();
    assert_eq!(sent.len(), n);
    for r in &rows {
        assert_eq!(
            sent.iter().filter(|m| m.text.contains(&r.ref_code)).count(),
            1,
            "row {} sent exactly once",
            r.id
        );
    }
}

async fn not_on_whatsapp_fails_with_the_reason(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_not_on_whatsapp(PHONE, true);
    let id = f.enqueue("a", "session_finished").await;
    let mut d = f.dispatcher("A", true);
    d.tick(Utc::now(), &CancellationToken::new()).await.unwrap();
    let row = f.row(id).await;
    assert_eq!(row.status, OutboxStatus::Failed);
    assert!(row.reason.unwrap().contains("not on WhatsApp"));
    assert!(f.sim.messages().is_empty());
    // An admin fixes the number and resends: it goes out.
    f.sim.set_not_on_whatsapp(PHONE, false);
    let audit = AuditEntry::new(Utc::now(), None, "notification.resend", id.to_string());
    assert!(f.store.resend(id, &audit).await.unwrap());
    d.tick(
        Utc::now() + TimeDelta::seconds(1),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(f.row(id).await.status, OutboxStatus::Sent);
    assert_eq!(f.sim.messages().len(), 1);
}

/// Claims `id` as a process that then dies: optionally after the gateway accepted the message.
async fn crash_mid_send(f: &Fixture, id: i64, reached_gateway: bool) -> DateTime<Utc> {
    let now = Utc::now();
    let claimed = f
        .store
        .claim_due("dead", now, TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    if reached_gateway {
        f.gateway(true).send_row(&claimed[0]).await.unwrap();
    }
    now + TimeDelta::seconds(61)
}

async fn crash_after_the_gateway_got_it_is_reconciled_as_sent(db: &TestDb) {
    let f = fixture(db, true).await;
    let id = f.enqueue("a", "session_finished").await;
    let after_lease = crash_mid_send(&f, id, true).await;
    // Looked up by ref code only (the id never reached the store); stores_messages is off, which
    // does not matter when the message is found.
    let mut d = f.dispatcher("B", false);
    let report = d
        .tick(after_lease, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.expired, report.reconciled_sent), (1, 1));
    let row = f.row(id).await;
    assert_eq!(row.status, OutboxStatus::Sent);
    let sent = f.sim.messages();
    assert_eq!(sent.len(), 1, "no second send");
    assert_eq!(row.gateway_message_id.as_deref(), Some(sent[0].id.as_str()));
    assert!(f.alerts().await.is_empty());
}

async fn crash_before_the_gateway_got_it_is_resent_once(db: &TestDb) {
    let f = fixture(db, true).await;
    let id = f.enqueue("a", "session_finished").await;
    let after_lease = crash_mid_send(&f, id, false).await;
    let mut d = f.dispatcher("B", true);
    let report = d
        .tick(after_lease, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.reconciled_resend, report.sent), (1, 1));
    assert_eq!(f.row(id).await.status, OutboxStatus::Sent);
    assert_eq!(f.sim.messages().len(), 1);
}

async fn in_doubt_without_stored_messages_waits_for_an_operator(db: &TestDb) {
    let f = fixture(db, false).await;
    let id = f.enqueue("a", "session_finished").await;
    let after_lease = crash_mid_send(&f, id, false).await;
    let mut d = f.dispatcher("B", false);
    let cancel = CancellationToken::new();
    let report = d.tick(after_lease, &cancel).await.unwrap();
    // One alert enqueued (and sent by e-mail in the same tick); nothing to WhatsApp.
    assert_eq!((report.still_in_doubt, report.alerts), (1, 1));
    assert_eq!(f.row(id).await.status, OutboxStatus::InDoubt);
    assert!(f.sim.messages().is_empty(), "never a blind resend");
    // Asked again later: still in doubt, and still one alert.
    d.tick(after_lease + TimeDelta::minutes(10), &cancel)
        .await
        .unwrap();
    assert_eq!(f.row(id).await.status, OutboxStatus::InDoubt);
    assert!(f.sim.messages().is_empty());
    let alerts = f.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].channel, "email");
    assert_eq!(alerts[0].recipient.as_deref(), Some(OPS));
    assert!(alerts[0].body.contains(&format!("#{id}")));
    // The alert itself went out by e-mail.
    assert_eq!(f.email.0.lock().unwrap().len(), 1);
}

async fn refused_key_keeps_the_message_and_alerts_by_email(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_faults(Faults {
        force_unauthorized: true,
        ..Faults::default()
    });
    let id = f.enqueue("a", "session_finished").await;
    let mut d = f.dispatcher("A", true);
    let now = Utc::now();
    d.tick(now, &CancellationToken::new()).await.unwrap();
    let row = f.row(id).await;
    assert_eq!(row.status, OutboxStatus::Pending);
    assert!(row.next_attempt_at > now + TimeDelta::minutes(10));
    let alerts = f.alerts().await;
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.channel == "email"));
    // Fixed: the message goes out at its next attempt.
    f.sim.clear_faults();
    d.tick(row.next_attempt_at, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(f.row(id).await.status, OutboxStatus::Sent);
    assert_eq!(f.sim.messages().len(), 1);
}

async fn gateway_down_alerts_once_and_recovery_too(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_all_states(InstanceState::Close);
    let mut d = f.dispatcher("A", true);
    let cancel = CancellationToken::new();
    let t0 = Utc::now();
    for i in 0..5 {
        d.tick(t0 + TimeDelta::seconds(i), &cancel).await.unwrap();
    }
    let down: Vec<_> = f
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.rule == "gateway_down")
        .collect();
    assert_eq!(down.len(), 1);
    f.sim.set_all_states(InstanceState::Open);
    d.tick(t0 + TimeDelta::seconds(10), &cancel).await.unwrap();
    d.tick(t0 + TimeDelta::seconds(11), &cancel).await.unwrap();
    let rules: Vec<String> = f.alerts().await.into_iter().map(|a| a.rule).collect();
    assert_eq!(
        rules.iter().filter(|r| *r == "gateway_recovered").count(),
        1,
        "{rules:?}"
    );
}

async fn quiet_hours_defer_and_opt_out_cancels(db: &TestDb) {
    let f = fixture(db, true).await;
    let now = Utc::now();
    let local = now.with_timezone(&chrono_tz::America::Sao_Paulo).time();
    let start = local.with_second(0).unwrap() - TimeDelta::hours(1);
    let end = local.with_second(0).unwrap() + TimeDelta::hours(1);
    let audit = AuditEntry::new(now, None, "resident.prefs", "maria");
    f.store
        .set_resident_prefs(
            f.maria,
            &["idle_reminder".into()],
            Some((start, end)),
            &audit,
        )
        .await
        .unwrap();
    let quiet = f.enqueue("a", "session_finished").await;
    let opted = f.enqueue("b", "idle_reminder").await;
    let mut d = f.dispatcher("A", true);
    let report = d.tick(now, &CancellationToken::new()).await.unwrap();
    assert_eq!((report.deferred, report.cancelled), (1, 1));
    let row = f.row(quiet).await;
    assert_eq!(row.status, OutboxStatus::Pending);
    assert!(row.not_before > now);
    assert_eq!(row.attempts, 0);
    let row = f.row(opted).await;
    assert_eq!(row.status, OutboxStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("opted_out"));
    assert!(f.sim.messages().is_empty());
}

async fn a_stopped_dispatcher_leaves_nothing_claimed(db: &TestDb) {
    let f = fixture(db, true).await;
    for i in 0..3 {
        f.enqueue(&format!("m{i}"), "session_finished").await;
    }
    let mut d = f.dispatcher("A", true);
    let cancel = CancellationToken::new();
    cancel.cancel();
    d.tick(Utc::now(), &cancel).await.unwrap();
    let b = f.store.outbox_backlog(None, Utc::now()).await.unwrap();
    assert_eq!((b.sending, b.pending), (0, 3));
    // And the loop itself stops on cancel.
    let cancel = CancellationToken::new();
    let task = tokio::spawn(f.dispatcher("A", true).run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let b = f.store.outbox_backlog(None, Utc::now()).await.unwrap();
    assert_eq!((b.sending, b.pending), (0, 0));
    assert_eq!(f.sim.messages().len(), 3);
}

/// Each row's ref code appears at most once at the gateway; returns how many did.
fn sent_once(sent: &[vetric_sim::evolution::SentMessage], rows: &[OutboxRow]) -> usize {
    let mut found = 0;
    for r in rows {
        let n = sent.iter().filter(|m| m.text.contains(&r.ref_code)).count();
        assert!(n <= 1, "row {} sent {n} times", r.id);
        found += n;
    }
    found
}

async fn concurrent_sends_send_each_row_exactly_once(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let n = 40;
    for i in 0..n {
        f.enqueue(&format!("m{i}"), "session_finished").await;
    }
    let mut d = f.dispatcher_tuned("A", true, |s| s.concurrency = 8);
    let report = d.tick(Utc::now(), &CancellationToken::new()).await.unwrap();
    // The claim grows to two rows per send slot (the batch setting is 10).
    assert_eq!((report.claimed, report.sent), (16, 16));
    drain(&mut d, &f.store, Utc::now(), 20).await;
    let rows = f.whatsapp_rows().await;
    assert_eq!(rows.len(), n);
    assert!(
        rows.iter()
            .all(|r| r.status == OutboxStatus::Sent && r.attempts == 1),
        "{rows:#?}"
    );
    let sent = f.sim.messages();
    assert_eq!(sent.len(), n, "the gateway got each row once");
    assert_eq!(sent_once(&sent, &rows), n);
}

async fn a_stop_mid_batch_hands_back_the_rows_not_started(db: &TestDb) {
    let f = fixture(db, true).await;
    f.sim.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let n = 40;
    for i in 0..n {
        f.enqueue(&format!("m{i}"), "session_finished").await;
    }
    let tuned = |s: &mut DispatchSettings| {
        s.concurrency = 8;
        s.batch = 40;
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(f.dispatcher_tuned("A", true, tuned).run(cancel.clone()));
    // Stop once the first sends are in flight.
    for _ in 0..500 {
        if f.sim.calls().send_text > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let b = f.store.outbox_backlog(None, Utc::now()).await.unwrap();
    assert_eq!(b.sending, 0, "a clean stop leaves nothing claimed");
    let rows = f.whatsapp_rows().await;
    let sent_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.status == OutboxStatus::Sent)
        .cloned()
        .collect();
    assert!(
        !sent_rows.is_empty() && sent_rows.len() < n,
        "stopped mid-batch: {} sent",
        sent_rows.len()
    );
    assert!(
        rows.iter()
            .all(|r| r.status == OutboxStatus::Sent || r.status == OutboxStatus::Pending)
    );
    // Handed back as they were: no attempt counted.
    assert!(
        rows.iter()
            .filter(|r| r.status == OutboxStatus::Pending)
            .all(|r| r.attempts == 0)
    );
    assert_eq!(sent_once(&f.sim.messages(), &rows), sent_rows.len());
    // The next run sends the rest, each once.
    let mut d = f.dispatcher_tuned("B", true, tuned);
    drain(&mut d, &f.store, Utc::now(), 10).await;
    let rows = f.whatsapp_rows().await;
    assert!(rows.iter().all(|r| r.status == OutboxStatus::Sent));
    assert_eq!(f.sim.messages().len(), n);
    assert_eq!(sent_once(&f.sim.messages(), &rows), n);
}

async fn reconciliation_pages_past_newer_messages(db: &TestDb) {
    let f = fixture(db, true).await;
    let id = f.enqueue("a", "session_finished").await;
    let after_lease = crash_mid_send(&f, id, true).await;
    // 60 newer messages to the same resident push it off the first page (50).
    let gw = f.gateway(true);
    let number = vetric_domain::PhoneNumber::parse(PHONE).unwrap();
    for i in 0..60 {
        gw.client
            .send_text(&number, &format!("outra mensagem {i}"))
            .await
            .unwrap();
    }
    let mut d = f.dispatcher("B", true);
    let report = d
        .tick(after_lease, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.reconciled_sent, report.reconciled_resend), (1, 0));
    assert_eq!(f.row(id).await.status, OutboxStatus::Sent);
    assert_eq!(f.sim.messages().len(), 61, "never resent");
}

async fn a_stale_backlog_alerts_once(db: &TestDb) {
    let f = fixture(db, true).await;
    // The gateway is disconnected: sends fail and are retried, the queue ages.
    f.sim.set_all_states(InstanceState::Close);
    let id = f.enqueue("a", "session_finished").await;
    let mut d = f.dispatcher("A", true);
    let cancel = CancellationToken::new();
    let t0 = Utc::now();
    d.tick(t0, &cancel).await.unwrap();
    assert!(f.alerts().await.iter().all(|a| a.rule != "backlog_stale"));
    let late = t0 + TimeDelta::hours(2);
    d.tick(late, &cancel).await.unwrap();
    d.tick(late + TimeDelta::minutes(1), &cancel).await.unwrap();
    let stale: Vec<_> = f
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.rule == "backlog_stale")
        .collect();
    assert_eq!(stale.len(), 1, "{stale:#?}");
    assert_eq!(stale[0].channel, "email");
    assert_ne!(f.row(id).await.status, OutboxStatus::Sent);
}

test_both_backends!(
    a_stale_backlog_alerts_once,
    happy_path_records_the_gateway_id,
    flaky_gateway_retries_and_sends_each_exactly_once,
    not_on_whatsapp_fails_with_the_reason,
    crash_after_the_gateway_got_it_is_reconciled_as_sent,
    crash_before_the_gateway_got_it_is_resent_once,
    in_doubt_without_stored_messages_waits_for_an_operator,
    refused_key_keeps_the_message_and_alerts_by_email,
    gateway_down_alerts_once_and_recovery_too,
    quiet_hours_defer_and_opt_out_cancels,
    a_stopped_dispatcher_leaves_nothing_claimed,
    concurrent_sends_send_each_row_exactly_once,
    a_stop_mid_batch_hands_back_the_rows_not_started,
    reconciliation_pages_past_newer_messages,
);

/// Two dispatchers on one PostgreSQL store, running for real: SKIP LOCKED claims mean no row is
/// sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_dispatchers_on_postgres_never_send_a_row_twice() {
    let db = TestDb::postgres().await;
    let f = fixture(&db, true).await;
    f.sim.set_faults(Faults {
        latency_ms: 5,
        ..Faults::default()
    });
    let n = 60;
    for i in 0..n {
        f.enqueue(&format!("m{i}"), "session_finished").await;
    }
    let cancel = CancellationToken::new();
    let a = tokio::spawn(f.dispatcher("A", true).run(cancel.clone()));
    let b = tokio::spawn(f.dispatcher("B", true).run(cancel.clone()));
    for _ in 0..300 {
        let backlog = f.store.outbox_backlog(None, Utc::now()).await.unwrap();
        if backlog.pending == 0 && backlog.sending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    a.await.unwrap();
    b.await.unwrap();
    let rows = f.whatsapp_rows().await;
    assert!(rows.iter().all(|r| r.status == OutboxStatus::Sent));
    let owners: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.lease_owner.clone().unwrap_or_default())
            .or_default() += 1;
        m
    });
    assert_eq!(owners.len(), 2, "both dispatchers worked: {owners:?}");
    let sent = f.sim.messages();
    assert_eq!(sent.len(), n, "each row sent exactly once");
    for r in &rows {
        assert_eq!(
            sent.iter().filter(|m| m.text.contains(&r.ref_code)).count(),
            1
        );
    }
}
