//! Issuing a statement announces it (issue #8 item 8), on both backends: the managers' e-mail
//! and the opt-in residents' summaries are enqueued in the issue's own transaction (a failed
//! enqueue rolls the issue back), keys make the same version a no-op and a new version new
//! messages, and the e-mail reaches an SMTP server through the real dispatcher.

use chrono::{TimeDelta, TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vetric_channels::{SmtpChannel, SmtpConfig, SmtpTls};
use vetric_domain::notify::{NotificationPolicy, Rule, RuleSettings};
use vetric_domain::{LocalMonth, SessionRecord, SessionSource, Tag, TariffSpec, TimePrecision};
use vetric_engine::dispatch::{DispatchSettings, Dispatcher, EmailChannel, SiteDispatch};
use vetric_engine::statements::{IssueContext, issue};
use vetric_sim::smtp::SmtpSink;
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, NewImportBatch, NewNotification, NewResident, NewUser, OutboxFilter, OutboxRow,
    OutboxStatus, ResidentId, Role, SiteId, Store, test_both_backends,
};

const TZ: chrono_tz::Tz = chrono_tz::America::Sao_Paulo;
const SITE_NAME: &str = "Residencial Palmeiras";

struct Fixture {
    store: Store,
    site: SiteId,
    ana: ResidentId,
    carla: ResidentId,
}

fn month() -> LocalMonth {
    LocalMonth::new(2026, 2).unwrap()
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(Utc::now(), None, action, "site:test")
}

async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store.clone();
    let site = store
        .upsert_site("palmeiras", SITE_NAME, "America/Sao_Paulo")
        .await
        .unwrap();
    let other = store
        .upsert_site("outro", "Outro", "America/Sao_Paulo")
        .await
        .unwrap();
    let tariff = TariffSpec {
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
    .validate()
    .unwrap();
    store.upsert_config_tariff(site, &tariff).await.unwrap();
    let resident = |name: &str, phone: &str, unit: &str| NewResident {
        name: name.into(),
        phone: phone.into(),
        email: None,
        block: "A".into(),
        unit: unit.into(),
    };
    // Ana and Bruno (Bruno opts out), A-102: Carla without a phone, A-103: nobody
    // charged this month.
    let ana = store
        .add_resident(site, &resident("Ana", "+5582990000101", "101"))
        .await
        .unwrap();
    let bruno = store
        .add_resident(site, &resident("Bruno", "+5582990000102", "101"))
        .await
        .unwrap();
    let carla = store
        .add_resident(site, &resident("Carla", "", "102"))
        .await
        .unwrap();
    store
        .add_resident(site, &resident("Davi", "+5582990000104", "103"))
        .await
        .unwrap();
    store
        .set_resident_prefs(
            bruno,
            &[Rule::StatementApartmentSummary.as_str().to_owned()],
            None,
            &audit("prefs"),
        )
        .await
        .unwrap();
    let since = Utc.with_ymd_and_hms(2025, 1, 1, 3, 0, 0).unwrap();
    for (id, tag) in [(ana, "AA01"), (carla, "CC03")] {
        store
            .add_tag(site, id, &Tag::parse(tag).unwrap(), since, None)
            .await
            .unwrap();
    }
    // Two managers of the site, one of another site, an admin: only the first two are mailed.
    for (email, role, sites) in [
        ("sindico@example.com", Role::Manager, vec![site]),
        ("Adm@Example.com", Role::Manager, vec![site]),
        ("outro@example.com", Role::Manager, vec![other]),
        ("root@example.com", Role::Admin, vec![]),
    ] {
        store
            .create_user(
                &NewUser {
                    email: email.into(),
                    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                    role,
                    sites,
                },
                &audit("user_create"),
            )
            .await
            .unwrap();
    }
    let at = |d: u32, h: u32, m: u32| TZ.with_ymd_and_hms(2026, 2, d, h, m, 0).unwrap().to_utc();
    let session = |id: i64, tag: &str, start, stop, wh: i64| SessionRecord {
        vendor_id: id,
        charger: "Palmeiras 1".into(),
        tag: Tag::parse(tag).ok(),
        start,
        stop,
        energy_wh: wh,
        idle_seconds: 0,
        source: SessionSource::Imported,
        precision: TimePrecision::Minute,
        import_line: None,
        user_name: None,
    };
    store
        .import_sessions(
            site,
            &NewImportBatch {
                file_name: "fev.xlsx".into(),
                rows_read: 3,
                rows_refused: 0,
            },
            &[
                session(1, "AA01", at(5, 16, 30), at(5, 18, 30), 10_000),
                session(2, "CC03", at(6, 10, 0), at(6, 11, 0), 2_000),
                session(3, "FFFF", at(7, 10, 0), at(7, 11, 0), 1_000),
            ],
            &audit("statement_import"),
        )
        .await
        .unwrap();
    Fixture {
        store,
        site,
        ana,
        carla,
    }
}

impl Fixture {
    async fn issue(&self, ctx: &IssueContext) -> vetric_store::IssuedStatement {
        let input = self
            .store
            .statement_input(self.site, month())
            .await
            .unwrap();
        issue(
            &self.store,
            self.site,
            &input,
            &audit("statement_issue"),
            ctx,
        )
        .await
        .unwrap()
    }

    async fn rows(&self, rule: Rule) -> Vec<OutboxRow> {
        let mut rows: Vec<OutboxRow> = self
            .store
            .outbox_log(&OutboxFilter {
                site: Some(self.site),
                rule: Some(rule.as_str().to_owned()),
                limit: Some(500),
                ..OutboxFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.row)
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    async fn opt_in(&self) {
        let mut policy = NotificationPolicy::default();
        policy.rules.insert(
            Rule::StatementApartmentSummary,
            RuleSettings {
                enabled: true,
                ..RuleSettings::default_for(Rule::StatementApartmentSummary)
            },
        );
        self.store
            .set_site_policy(
                self.site,
                &serde_json::to_value(&policy).unwrap(),
                None,
                &audit("notification_policy_set"),
            )
            .await
            .unwrap();
    }
}

async fn issuing_enqueues_the_announcements_in_its_transaction(db: &TestDb) {
    let f = fixture(db).await;
    let ctx = IssueContext::new(Some("https://vetric.example.com/"));
    let v1 = f.issue(&ctx).await;
    assert_eq!(v1.version, 1);

    // Opt-in off (the default): the managers' e-mails only, one per manager of the site.
    let mails = f.rows(Rule::StatementIssuedManager).await;
    let mut to: Vec<_> = mails.iter().filter_map(|r| r.recipient.clone()).collect();
    to.sort();
    assert_eq!(to, ["Adm@Example.com", "sindico@example.com"]);
    for m in &mails {
        assert_eq!(
            (m.channel.as_str(), m.status),
            ("email", OutboxStatus::Pending)
        );
        assert_eq!(
            m.subject.as_deref(),
            Some("Extrato de recarga 02/2026 — Residencial Palmeiras (versão 1)")
        );
        assert!(
            m.body.contains("A-101") && m.body.contains("sem morador"),
            "{}",
            m.body
        );
        assert!(m.body.contains("Total do mês: R$ 19,64"), "{}", m.body);
        assert!(
            m.body.contains(
                "https://vetric.example.com/sites/palmeiras/statements?month=2026-02&version=1"
            ),
            "{}",
            m.body
        );
        assert!(m.dedup_key.starts_with(&format!(
            "site:{}:statement:2026-02:v1:statement_issued_manager:email:",
            f.site
        )));
    }
    assert!(f.rows(Rule::StatementApartmentSummary).await.is_empty());

    // The same version again enqueues nothing (a replayed issue is a no-op in the outbox).
    let again = NewNotification {
        dedup_key: mails[0].dedup_key.clone(),
        rule: mails[0].rule.clone(),
        audience: mails[0].audience.clone(),
        channel: "email".into(),
        resident_id: None,
        recipient: mails[0].recipient.clone(),
        scope: mails[0].scope.clone(),
        session_vendor_id: None,
        subject: mails[0].subject.clone(),
        body: mails[0].body.clone(),
        ref_code: mails[0].ref_code.clone(),
        not_before: mails[0].not_before,
    };
    assert_eq!(f.store.enqueue(Some(f.site), &again).await.unwrap(), None);

    // Opt-in on: a new version, new e-mails, and one WhatsApp message per resident of an
    // apartment with a line — not Bruno (opted out), not Davi (A-103 charged nothing); Carla
    // has no phone, so her row is cancelled at once with the reason.
    f.opt_in().await;
    let v2 = f.issue(&IssueContext::default()).await;
    assert_eq!(v2.version, 2);
    let mails = f.rows(Rule::StatementIssuedManager).await;
    assert_eq!(mails.len(), 4);
    assert!(
        !mails[3].body.contains("https://"),
        "no public_url, no link"
    );
    let summaries = f.rows(Rule::StatementApartmentSummary).await;
    let who: Vec<_> = summaries
        .iter()
        .map(|r| (r.resident_id, r.channel.as_str(), r.status))
        .collect();
    assert_eq!(
        who,
        [
            (Some(f.ana), "whatsapp", OutboxStatus::Pending),
            (Some(f.carla), "whatsapp", OutboxStatus::Cancelled),
        ]
    );
    assert_eq!(summaries[0].recipient.as_deref(), Some("+5582990000101"));
    assert!(
        summaries[0]
            .body
            .starts_with("Ana, o extrato de recarga de 02/2026"),
        "{}",
        summaries[0].body
    );
    assert!(
        summaries[0].body.contains("*Total: R$ 18,05*"),
        "{}",
        summaries[0].body
    );
    assert_eq!(summaries[1].reason.as_deref(), Some("no_phone"));
    assert_eq!(
        summaries[0].dedup_key,
        format!(
            "site:{}:statement:2026-02:v2:statement_apartment_summary:{}",
            f.site, f.ana
        )
    );

    // A failure to enqueue rolls the issue back: no version 3, no rows.
    let input = f.store.statement_input(f.site, month()).await.unwrap();
    let bad = |_version: i64| {
        vec![NewNotification {
            channel: "carrier-pigeon".into(),
            dedup_key: "site:x:bad".into(),
            ..again.clone()
        }]
    };
    let err = f
        .store
        .issue_statement_with_messages(f.site, &input, &audit("statement_issue"), None, bad)
        .await;
    assert!(err.is_err());
    let versions = f.store.statement_versions(f.site, month()).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(f.store.outbox_by_key("site:x:bad").await.unwrap().is_none());
}

async fn the_managers_email_reaches_the_smtp_server(db: &TestDb) {
    let f = fixture(db).await;
    f.issue(&IssueContext::default()).await;
    let (addr, sink) = SmtpSink::start().await.unwrap();
    let channel = SmtpChannel::new(SmtpConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        username: None,
        password: None,
        from: "vetric@example.com".into(),
        tls: SmtpTls::None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let mut dispatcher = Dispatcher::new(
        f.store.clone(),
        DispatchSettings {
            owner: "test".into(),
            tick: Duration::from_millis(20),
            ..DispatchSettings::default()
        },
        vec![SiteDispatch {
            site: f.site,
            slug: "palmeiras".into(),
            name: SITE_NAME.into(),
            tz: TZ,
            whatsapp: None,
        }],
    )
    .with_email(Arc::new(EmailChannel(channel)));
    let cancel = CancellationToken::new();
    let start = Utc::now();
    for i in 0..20 {
        dispatcher
            .tick(start + TimeDelta::seconds(i), &cancel)
            .await
            .unwrap();
        if sink.mails().len() >= 2 {
            break;
        }
    }
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "one per manager");
    let mail = mails
        .iter()
        .find(|m| m.rcpt_to == ["sindico@example.com"])
        .expect("the síndico's e-mail");
    assert_eq!(
        mail.subject.as_deref(),
        Some("Extrato de recarga 02/2026 — Residencial Palmeiras (versão 1)")
    );
    assert!(mail.body.contains("Apartamento"), "{}", mail.body);
    assert!(mail.body.contains("A-102"), "{}", mail.body);
    let rows = f.rows(Rule::StatementIssuedManager).await;
    assert!(
        rows.iter().all(|r| r.status == OutboxStatus::Sent),
        "{rows:?}"
    );
}

test_both_backends!(
    issuing_enqueues_the_announcements_in_its_transaction,
    the_managers_email_reaches_the_smtp_server,
);
