//! Backup and restore round trips (issue 6 item 7): write data, back up, change the data,
//! restore, and find the data as it was at the backup. SQLite through `VACUUM INTO` and the
//! atomic file replacement; PostgreSQL through `pg_dump`/`pg_restore`, which must be installed
//! (the test fails with a hint otherwise: it never skips).

use std::path::Path;
use vetric_store::testing::TestDb;
use vetric_store::{
    BackupError, InstanceLock, LockHolder, NewResident, Store, find_pg_tool, pg_dump, pg_restore,
    restore_sqlite, verify_sqlite_backup,
};

fn resident(name: &str) -> NewResident {
    NewResident {
        name: name.into(),
        phone: "+5511999990000".into(),
        email: None,
        block: "A".into(),
        unit: "101".into(),
    }
}

/// Site slugs and resident names, sorted: what the round trips compare.
async fn snapshot(store: &Store) -> (Vec<String>, Vec<String>) {
    let sites = store.sites().await.expect("sites");
    let mut residents = Vec::new();
    for s in &sites {
        for r in store.residents(s.id).await.expect("residents") {
            residents.push(format!("{}:{}", s.slug, r.name));
        }
    }
    residents.sort();
    let mut slugs: Vec<String> = sites.into_iter().map(|s| s.slug).collect();
    slugs.sort();
    (slugs, residents)
}

async fn seed(store: &Store) {
    let site = store
        .upsert_site("jardim", "Jardim", "America/Sao_Paulo")
        .await
        .expect("site");
    store
        .add_resident(site, &resident("Ana"))
        .await
        .expect("resident");
}

async fn change(store: &Store) {
    let site = store
        .upsert_site("outro", "Outro", "America/Sao_Paulo")
        .await
        .expect("site");
    store
        .add_resident(site, &resident("Bruno"))
        .await
        .expect("resident");
}

#[tokio::test]
async fn sqlite_backup_then_restore_brings_back_the_data_of_the_backup() {
    let db = TestDb::sqlite().await;
    let db_path = vetric_store::sqlite_path_from_url(&db.url).expect("a file store");
    seed(&db.store).await;
    let before = snapshot(&db.store).await;

    let out_dir = tempfile::tempdir().expect("tempdir");
    let backup = out_dir.path().join("nested").join("b.db");
    let info = db.store.backup_to(&backup, false).await.expect("backup");
    assert_eq!(info.path, backup);
    assert!(info.bytes > 0);
    assert_eq!(std::fs::metadata(&backup).expect("file").len(), info.bytes);
    // Only the final file: no temporary or journal left beside it.
    let names: Vec<_> = std::fs::read_dir(backup.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("b.db")]);
    let verified = verify_sqlite_backup(&backup).await.expect("verified");
    assert!(verified.schema_version >= 1);

    // Never overwritten unless asked.
    let again = db.store.backup_to(&backup, false).await.unwrap_err();
    assert!(matches!(again, BackupError::Exists { .. }), "{again}");
    assert!(again.to_string().contains("--force"), "{again}");

    change(&db.store).await;
    assert_ne!(snapshot(&db.store).await, before);

    // While a server holds the store, restore refuses and names it.
    let holder = LockHolder::current("vetric serve", Some("127.0.0.1:8080".into()));
    let lock = InstanceLock::acquire(&db_path, holder).expect("lock");
    let refused = restore_sqlite(&db_path, &backup).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{refused}"
    );
    drop(lock);

    db.store.close().await;
    restore_sqlite(&db_path, &backup).await.expect("restore");
    let reopened = Store::connect(&db.url).await.expect("reopen");
    reopened.migrate().await.expect("migrate");
    assert_eq!(snapshot(&reopened).await, before);
    // The restored store is fully usable.
    change(&reopened).await;
    reopened.close().await;
}

#[tokio::test]
async fn restore_refuses_files_that_are_not_vetric_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("vetric.db");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").expect("write");
    let e = restore_sqlite(&target, &text).await.unwrap_err();
    assert!(e.to_string().contains("not a SQLite database"), "{e}");

    // A SQLite database, but not vetric's.
    let other = dir.path().join("other.db");
    let store = Store::connect(&format!("sqlite://{}", other.display()))
        .await
        .expect("open");
    // Opened but never migrated: a SQLite file with none of vetric's tables.
    store.ping().await.expect("ping");
    store.close().await;
    let e = restore_sqlite(&target, &other).await.unwrap_err();
    assert!(e.to_string().contains("lacks the table(s)"), "{e}");
    assert!(!target.exists(), "nothing may be put in place");

    let e = restore_sqlite(&target, &dir.path().join("missing.db"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.db"), "{e}");
}

#[tokio::test]
async fn postgres_backup_and_restore_round_trip_through_pg_dump() {
    for tool in ["pg_dump", "pg_restore"] {
        if let Err(e) = find_pg_tool(tool) {
            panic!("{e}; this test never skips");
        }
    }
    let db = TestDb::postgres().await;
    seed(&db.store).await;
    let before = snapshot(&db.store).await;
    assert!(matches!(
        db.store.backup_to(Path::new("/tmp/x.db"), false).await,
        Err(BackupError::UsePgDump)
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("vetric.dump");
    let url = db.url.clone();
    let d = dump.clone();
    let info = tokio::task::spawn_blocking(move || pg_dump(&url, &d, false))
        .await
        .expect("join")
        .expect("pg_dump");
    assert!(info.bytes > 0);
    let mut head = [0u8; 5];
    std::io::Read::read_exact(
        &mut std::fs::File::open(&dump).expect("open dump"),
        &mut head,
    )
    .expect("read");
    assert_eq!(&head, b"PGDMP", "custom format");
    let url = db.url.clone();
    let d = dump.clone();
    let again = tokio::task::spawn_blocking(move || pg_dump(&url, &d, false))
        .await
        .expect("join")
        .unwrap_err();
    assert!(matches!(again, BackupError::Exists { .. }), "{again}");

    change(&db.store).await;
    assert_ne!(snapshot(&db.store).await, before);

    db.store.close().await;
    let url = db.url.clone();
    let d = dump.clone();
    tokio::task::spawn_blocking(move || pg_restore(&url, &d))
        .await
        .expect("join")
        .expect("pg_restore");
    let reopened = Store::connect(&db.url).await.expect("reopen");
    reopened.migrate().await.expect("migrate after restore");
    assert_eq!(snapshot(&reopened).await, before);
    change(&reopened).await;
    reopened.close().await;
}
