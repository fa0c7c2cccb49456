//! Accounts, tokens, the audit log and the change marker, on both backends.

use chrono::{DateTime, TimeZone, Utc};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, NewToken, NewUser, Role, SiteId, StoreError, TokenKind, UserId, test_both_backends,
};

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, minute, 0).unwrap()
}

fn hash_of(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

async fn manager(db: &TestDb, email: &str, sites: Vec<SiteId>) -> UserId {
    db.store
        .create_user(
            &NewUser {
                email: email.into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                role: Role::Manager,
                sites,
            },
            &AuditEntry::new(t(0), None, "user_add", email),
        )
        .await
        .unwrap()
}

async fn users_are_unique_by_email_case_insensitively(db: &TestDb) {
    let site = db
        .store
        .upsert_site("palmeiras", "Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let id = manager(db, "Sindico@Example.com", vec![site]).await;
    let err = db
        .store
        .create_user(
            &NewUser {
                email: "sindico@example.COM".into(),
                password_hash: "x".into(),
                role: Role::Admin,
                sites: vec![],
            },
            &AuditEntry::new(t(1), None, "user_add", "sindico@example.COM"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { what } if what.contains("sindico@example.COM")),
        "{err}"
    );
    let creds = db
        .store
        .user_credentials("SINDICO@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.user.id, id);
    assert_eq!(creds.user.email, "Sindico@Example.com");
    assert_eq!(creds.user.role, Role::Manager);
    assert!(creds.password_hash.starts_with("$argon2id$"));
    assert_eq!(db.store.user_sites(id).await.unwrap(), vec![site]);
    assert_eq!(db.store.users().await.unwrap().len(), 1);
    // The refused user left no audit row; the created one did, naming its user.
    let audit = db.store.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].action.as_str(), audit[0].user_id),
        ("user_add", Some(id))
    );
    // A grant to a site that does not exist is refused and nothing is kept.
    let err = db
        .store
        .create_user(
            &NewUser {
                email: "other@example.com".into(),
                password_hash: "x".into(),
                role: Role::Manager,
                sites: vec![SiteId(9999)],
            },
            &AuditEntry::new(t(1), None, "user_add", "other@example.com"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(
        db.store
            .user_credentials("other@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn tokens_expire_and_revoke_at_once(db: &TestDb) {
    let site = db
        .store
        .upsert_site("palmeiras", "Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let id = manager(db, "m@example.com", vec![site]).await;
    let new = |c: char, kind, expires_at| NewToken {
        user_id: id,
        kind,
        token_hash: hash_of(c),
        label: "login".into(),
        created_at: t(0),
        expires_at,
    };
    db.store
        .create_token(&new('a', TokenKind::Session, Some(t(30))), None)
        .await
        .unwrap();
    db.store
        .create_token(&new('b', TokenKind::Api, None), None)
        .await
        .unwrap();
    let found = db.store.token_user(&hash_of('a'), t(10)).await.unwrap();
    let found = found.unwrap();
    assert_eq!(
        (found.kind, found.user.id, found.sites),
        (TokenKind::Session, id, vec![site])
    );
    assert!(
        db.store
            .token_user(&hash_of('a'), t(30))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        db.store
            .token_user(&hash_of('c'), t(1))
            .await
            .unwrap()
            .is_none()
    );
    let audit = AuditEntry::new(t(2), Some(id), "logout", "m@example.com");
    assert!(
        db.store
            .revoke_token(&hash_of('b'), t(2), Some(&audit))
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .revoke_token(&hash_of('b'), t(3), None)
            .await
            .unwrap()
    );
    assert!(
        db.store
            .token_user(&hash_of('b'), t(3))
            .await
            .unwrap()
            .is_none()
    );
    // A password change revokes every token of the user.
    db.store
        .create_token(&new('d', TokenKind::Api, None), None)
        .await
        .unwrap();
    db.store
        .set_password(
            id,
            "new-hash",
            &AuditEntry::new(t(4), Some(id), "password_reset", "m@example.com"),
        )
        .await
        .unwrap();
    assert!(
        db.store
            .token_user(&hash_of('d'), t(5))
            .await
            .unwrap()
            .is_none()
    );
    let creds = db.store.user_credentials("m@example.com").await.unwrap();
    assert_eq!(creds.unwrap().password_hash, "new-hash");
    let actions: Vec<String> = db
        .store
        .audit_log(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["password_reset", "logout", "user_add"]);
    let err = db
        .store
        .set_password(
            UserId(4242),
            "h",
            &AuditEntry::new(t(4), None, "password_reset", "x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
}

async fn change_marker_moves_with_the_site(db: &TestDb) {
    let site = db
        .store
        .upsert_site("palmeiras", "Palmeiras", "America/Sao_Paulo")
        .await
        .unwrap();
    let empty = db.store.site_change_marker(site).await.unwrap();
    assert_eq!((empty.connectors, empty.open_sessions), (0, 0));
    assert_eq!(empty.link_updated, None);
    let write = vetric_store::CycleWrite {
        observed_at: t(1),
        listed_chargers: None,
        chargers: vec![],
        sessions: vec![],
        events: vec![],
        unknown_tags: vec![],
        tracker_state: None,
        vendor_link: vetric_store::VendorLinkRow {
            last_success: Some(t(1)),
            last_error_kind: None,
            last_error_message: None,
            last_error_at: None,
            consecutive_failures: 0,
            breaker: vetric_store::BreakerState::Closed,
            charger_count_last_good: Some(0),
            updated_at: t(1),
        },
        notifications: Vec::new(),
        cancellations: Vec::new(),
    };
    db.store.write_cycle(site, &write).await.unwrap();
    let after = db.store.site_change_marker(site).await.unwrap();
    assert_eq!(after.link_updated, Some(t(1)));
    assert_ne!(after, empty);
}

async fn audit_pages_go_newest_first_with_the_users_email(db: &TestDb) {
    let id = manager(db, "m@example.com", vec![]).await;
    for minute in 1..=4 {
        db.store
            .append_audit(
                &AuditEntry::new(t(minute), Some(id), "login", "m@example.com")
                    .with_ip(Some(format!("10.0.0.{minute}"))),
            )
            .await
            .unwrap();
    }
    db.store
        .append_audit(&AuditEntry::new(
            t(5),
            None,
            "login_failed",
            "x@example.com",
        ))
        .await
        .unwrap();
    let first = db.store.audit_page(2, None).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].action, "login_failed");
    assert_eq!(first[0].user_email, None);
    assert_eq!(first[1].user_email.as_deref(), Some("m@example.com"));
    assert_eq!(first[1].ip.as_deref(), Some("10.0.0.4"));
    assert_eq!(first[1].at, t(4));
    let next = db.store.audit_page(10, Some(first[1].id)).await.unwrap();
    // Three logins left, then the user_add row of `manager`.
    let ips: Vec<_> = next.iter().map(|r| r.ip.clone()).collect();
    assert_eq!(
        ips,
        vec![
            Some("10.0.0.3".to_owned()),
            Some("10.0.0.2".to_owned()),
            Some("10.0.0.1".to_owned()),
            None
        ]
    );
    assert!(next.windows(2).all(|w| w[0].id > w[1].id));
    assert!(
        db.store
            .audit_page(10, Some(next[3].id))
            .await
            .unwrap()
            .is_empty()
    );
}

test_both_backends!(
    audit_pages_go_newest_first_with_the_users_email,
    users_are_unique_by_email_case_insensitively,
    tokens_expire_and_revoke_at_once,
    change_marker_moves_with_the_site,
);
