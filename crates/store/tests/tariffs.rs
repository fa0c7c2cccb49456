//! Site tariffs over time (`site_tariffs`), on both backends: the config tariff upserted at
//! start is idempotent, a changed one is a new version, page edits are audited with their
//! author, and the history keeps one tariff per effective date (the newest).

use chrono::{NaiveDate, Utc};
use vetric_domain::{Tariff, TariffSpec};
use vetric_store::testing::TestDb;
use vetric_store::{AuditEntry, NewUser, Role, TariffSource, test_both_backends};

fn tariff(from: Option<&str>, peak: &str) -> Tariff {
    TariffSpec {
        effective_from: from.map(str::to_owned),
        peak_price: Some(peak.into()),
        offpeak_price: Some("0.53".into()),
        idle_fee_per_min: Some("0.10".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn config_tariff_upsert_is_idempotent(db: &TestDb) {
    let s = &db.store;
    let site = s.upsert_site("a", "A", "America/Sao_Paulo").await.unwrap();
    assert!(s.tariff_history(site).await.unwrap().tariffs().is_empty());
    let t = tariff(None, "3.08");
    assert!(s.upsert_config_tariff(site, &t).await.unwrap().is_some());
    // Same tariff, spelled differently in the file: still the same version.
    let same = tariff(None, "3.0800");
    assert_eq!(s.upsert_config_tariff(site, &same).await.unwrap(), None);
    assert_eq!(s.tariff_versions(site).await.unwrap().len(), 1);
    // A changed config is a new version that replaces the old one.
    let changed = tariff(None, "3.50");
    assert!(
        s.upsert_config_tariff(site, &changed)
            .await
            .unwrap()
            .is_some()
    );
    let versions = s.tariff_versions(site).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(!versions[0].replaced && versions[1].replaced);
    assert_eq!(versions[0].source, TariffSource::Config);
    assert_eq!(versions[0].created_by, None);
    let h = s.tariff_history(site).await.unwrap();
    assert_eq!(h.tariffs(), std::slice::from_ref(&changed));
    assert_eq!(s.upsert_config_tariff(site, &changed).await.unwrap(), None);
    let audits = s.audit_log(50).await.unwrap();
    assert_eq!(
        audits
            .iter()
            .filter(|a| a.action == "tariff_config")
            .count(),
        2
    );
}

async fn page_tariffs_are_audited_and_dated(db: &TestDb) {
    let s = &db.store;
    let site = s.upsert_site("a", "A", "America/Sao_Paulo").await.unwrap();
    let other = s.upsert_site("b", "B", "America/Sao_Paulo").await.unwrap();
    let user = s
        .create_user(
            &NewUser {
                email: "m@example.com".into(),
                password_hash: "x".into(),
                role: Role::Manager,
                sites: vec![site],
            },
            &AuditEntry::new(Utc::now(), None, "user_add", "m@example.com"),
        )
        .await
        .unwrap();
    s.upsert_config_tariff(site, &tariff(None, "3.08"))
        .await
        .unwrap();
    let entry = AuditEntry::new(Utc::now(), Some(user), "tariff_add", "site:a");
    let id = s
        .add_tariff(site, &tariff(Some("2026-03-01"), "4.00"), &entry)
        .await
        .unwrap();
    let versions = s.tariff_versions(site).await.unwrap();
    assert_eq!(versions[0].id, id);
    assert_eq!(versions[0].source, TariffSource::Ui);
    assert_eq!(versions[0].created_by, Some(user));
    assert_eq!(
        versions[0].created_by_email.as_deref(),
        Some("m@example.com")
    );
    assert_eq!(versions[0].effective_from(), Some(date("2026-03-01")));
    let h = s.tariff_history(site).await.unwrap();
    assert_eq!(
        h.in_force_at(date("2026-02-28"))
            .unwrap()
            .peak_price()
            .to_string(),
        "3.08"
    );
    assert_eq!(
        h.in_force_at(date("2026-03-01"))
            .unwrap()
            .peak_price()
            .to_string(),
        "4"
    );
    // A correction for the same date replaces it from then on; both rows stay listed.
    s.add_tariff(site, &tariff(Some("2026-03-01"), "4.10"), &entry)
        .await
        .unwrap();
    let h = s.tariff_history(site).await.unwrap();
    assert_eq!(h.tariffs().len(), 2);
    assert_eq!(
        h.in_force_at(date("2026-03-02"))
            .unwrap()
            .peak_price()
            .to_string(),
        "4.1"
    );
    assert_eq!(s.tariff_versions(site).await.unwrap().len(), 3);
    let audit = s.audit_log(50).await.unwrap();
    let added: Vec<_> = audit.iter().filter(|a| a.action == "tariff_add").collect();
    assert_eq!(added.len(), 2);
    assert!(added[0].detail["tariff_version"].is_i64(), "{:?}", added[0]);
    // Another site's history is its own; a site that does not exist stores nothing.
    assert!(s.tariff_history(other).await.unwrap().tariffs().is_empty());
    let missing = vetric_store::SiteId(other.0 + 100);
    assert!(
        s.add_tariff(missing, &tariff(None, "1"), &entry)
            .await
            .is_err()
    );
    assert_eq!(
        s.audit_log(50)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.action == "tariff_add")
            .count(),
        2
    );
}

test_both_backends!(
    config_tariff_upsert_is_idempotent,
    page_tariffs_are_audited_and_dated,
);
