//! The management pages and their API twins, in-process against a real store: sessions
//! history and CSV, residents (creation with tags in one transaction, masked phones, audited
//! views), the unknown-tag inbox, and the site rule (a manager of another site gets 404).
//! SQLite for most; the atomic resident + tags creation also runs on PostgreSQL.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::{
    ORIGIN, add_site, add_users, get_bearer, get_cookie, json_of, login, site_settings, text,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vetric_domain::{ConnectorStatus, Tag};
use vetric_store::testing::TestDb;
use vetric_store::{
    CycleWrite, EndKind, NewResident, Role, SessionStatus, SessionWrite, SiteId,
    UnknownTagSighting, test_both_backends,
};
use vetric_web::{AppState, router};

const MARIA_PHONE: &str = "5511912345678";

struct Fixture {
    app: Router,
    home: SiteId,
    db_store: vetric_store::Store,
}

fn session(id: i64, tag: &str, start: DateTime<Utc>, wh: i64) -> SessionWrite {
    SessionWrite {
        vendor_id: id,
        charger_uuid: "c1".into(),
        connector_id: 1,
        tag: Some(Tag::parse(tag).unwrap()),
        tag_pk: None,
        resident_id: None,
        start,
        stop: Some(start + TimeDelta::minutes(95)),
        energy_wh: Some(wh),
        idle_seconds: 600,
        stop_reason: Some("EVDisconnected".into()),
        end_kind: Some(EndKind::Finished),
        status: SessionStatus::Ended,
    }
}

fn cycle(at: DateTime<Utc>, sessions: Vec<SessionWrite>, unknown: Vec<&str>) -> CycleWrite {
    CycleWrite {
        sessions,
        unknown_tags: unknown
            .into_iter()
            .map(|t| UnknownTagSighting {
                tag: Tag::parse(t).unwrap(),
                at,
                charger_uuid: Some("c1".into()),
                session_vendor_id: None,
            })
            .collect(),
        ..common::cycle(at, ConnectorStatus::Available)
    }
}

async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            ("sindico@example.com", Role::Manager, vec![home]),
            ("outro@example.com", Role::Manager, vec![other]),
        ],
    )
    .await;
    let state = AppState::new(
        store.clone(),
        vec![
            site_settings(home, "palmeiras", "Jardim Palmeiras"),
            site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    );
    Fixture {
        app: router(state),
        home,
        db_store: store,
    }
}

/// Maria owns tag AAA1 since 2025; two sessions on her tag, one unknown tag in the
/// inbox.
async fn with_data(f: &Fixture) -> vetric_store::ResidentId {
    let since: DateTime<Utc> = "2025-01-01T03:00:00Z".parse().unwrap();
    let maria = f
        .db_store
        .add_resident(
            f.home,
            &NewResident {
                name: "Maria Silva".into(),
                phone: MARIA_PHONE.into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap();
    f.db_store
        .add_tag(f.home, maria, &Tag::parse("AAA1").unwrap(), since, None)
        .await
        .unwrap();
    let t1: DateTime<Utc> = "2026-03-02T13:00:00Z".parse().unwrap();
    let t2: DateTime<Utc> = "2026-03-05T22:30:00Z".parse().unwrap();
    f.db_store
        .write_cycle(
            f.home,
            &cycle(
                Utc::now(),
                vec![
                    session(101, "AAA1", t1, 12_345),
                    session(102, "aaa1", t2, 1_234_567),
                ],
                vec!["FEED01"],
            ),
        )
        .await
        .unwrap();
    maria
}

/// As [`common::send`], reading bodies up to 16 MiB (the CSV exports).
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    common::send_limited(app, req, 1 << 24).await
}

fn post_form(path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Request::post(path)
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

fn json_req(method: &str, path: &str, token: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_resident_with_two_tags_created_by_form_is_listed_with_a_masked_phone() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/residents/new", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("name=\"tag_1\""), "{}", text(&b));
    let (s, h, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/residents",
            &cookie,
            &[
                ("name", "João Souza"),
                ("block", "B"),
                ("unit", "101"),
                ("phone", "+55 (21) 98765-4321"),
                ("email", ""),
                ("tag_0", "5be07d1a"),
                ("valid_from_0", "2026-01-01"),
                ("valid_to_0", ""),
                ("tag_1", "CAFE02"),
                ("valid_from_1", "01/02/2026"),
                ("valid_to_1", "2027-01-01"),
                ("tag_2", ""),
                ("valid_from_2", "2026-01-01"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    let to = h[header::LOCATION].to_str().unwrap().to_owned();
    let (s, _, b) = send(&f.app, get_cookie(&to, &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&b);
    assert!(page.contains("Morador cadastrado"), "{page}");
    assert!(
        page.contains("João Souza") && page.contains("B-101"),
        "{page}"
    );
    assert!(page.contains("+55 21 9****-4321"), "{page}");
    assert!(
        !page.contains("98765") && !page.contains("987654321"),
        "{page}"
    );
    assert!(
        page.contains("5BE07D1A") && page.contains("CAFE02"),
        "{page}"
    );
    // Search by tag, by apartment, and nothing.
    for (q, found) in [("cafe", true), ("b-101", true), ("ninguém", false)] {
        let path = format!(
            "/sites/palmeiras/residents?q={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let (_, _, b) = send(&f.app, get_cookie(&path, &cookie)).await;
        assert_eq!(text(&b).contains("João Souza"), found, "{q}");
    }
    let dir = f.db_store.tag_directory(f.home).await.unwrap();
    assert_eq!(dir.len(), 2);
    assert!(dir.iter().all(|t| t.resident_name == "João Souza"));
    let audit = f.db_store.audit_log(10).await.unwrap();
    let row = audit
        .iter()
        .find(|a| a.action == "resident_create")
        .unwrap();
    assert!(
        !row.detail.to_string().contains("98765"),
        "{:?}",
        row.detail
    );
    // The API lists the same resident, masked too.
    let (_, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/residents?q=joão", &token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b);
    assert_eq!(v["data"][0]["phone"], "+55 21 9****-4321");
    assert_eq!(v["data"][0]["tags"].as_array().unwrap().len(), 2);
}

/// A taken tag (second of two) refuses the whole creation and names the owner at that tag.
async fn overlapping_tag_stores_nothing_and_names_the_owner(db: &TestDb) {
    let f = fixture(db).await;
    with_data(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let residents_before = f.db_store.residents(f.home).await.unwrap().len();
    let apartments_before = f.db_store.apartments(f.home).await.unwrap().len();
    let audit_before = f.db_store.audit_log(1000).await.unwrap().len();
    let (s, _, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/residents",
            &cookie,
            &[
                ("name", "Pedro Lima"),
                ("block", "C"),
                ("unit", "9"),
                ("phone", "+55 11 97777-1234"),
                ("tag_0", "NEW001"),
                ("valid_from_0", "2026-01-01"),
                ("tag_1", "aaa1"),
                ("valid_from_1", "2026-01-01"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let page = text(&b);
    assert!(
        page.contains("Maria Silva") && page.contains("A-302"),
        "{page}"
    );
    assert!(
        page.contains("id=\"e-tag_1\""),
        "the error sits at tag 2: {page}"
    );
    assert!(
        page.contains("value=\"Pedro Lima\""),
        "the form keeps its values"
    );
    // The API says the same, naming the field.
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/residents",
            &token,
            json!({ "name": "Pedro Lima", "block": "C", "unit": "9",
                    "phone": "+55 11 97777-1234",
                    "tags": [{ "tag": "NEW001", "valid_from": "2026-01-01" },
                             { "tag": "AAA1", "valid_from": "2026-01-01" }] }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", text(&b));
    let e = &json_of(&b)["error"];
    assert_eq!(e["field"], "tags[1].tag");
    assert!(e["message"].as_str().unwrap().contains("Maria Silva"));
    // Nothing stored: no resident, no apartment, no first tag, no audit row.
    assert_eq!(
        f.db_store.residents(f.home).await.unwrap().len(),
        residents_before
    );
    assert_eq!(
        f.db_store.apartments(f.home).await.unwrap().len(),
        apartments_before
    );
    let dir = f.db_store.tag_directory(f.home).await.unwrap();
    assert!(dir.iter().all(|t| t.tag.as_str() != "NEW001"), "{dir:?}");
    let audit = f.db_store.audit_log(1000).await.unwrap();
    assert!(audit.iter().all(|a| a.action != "resident_create"));
    assert_eq!(audit.len(), audit_before);
}

test_both_backends!(overlapping_tag_stores_nothing_and_names_the_owner);

#[tokio::test]
async fn an_invalid_phone_is_a_422_naming_phone_and_stores_nothing() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/residents",
            &token,
            json!({ "name": "Ana", "block": "A", "unit": "1", "phone": "11 9123" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "phone");
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/residents",
            &token,
            json!({ "name": "Ana", "block": "A", "unit": "1", "phone": 5511 }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "phone");
    let (s, _, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/residents",
            &cookie,
            &[
                ("name", "Ana"),
                ("block", "A"),
                ("unit", "1"),
                ("phone", "abc"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let page = text(&b);
    assert!(page.contains("id=\"e-phone\""), "{page}");
    assert!(page.contains("caractere inválido"), "{page}");
    assert!(f.db_store.residents(f.home).await.unwrap().is_empty());
    // A bad tag date in the API names its field too.
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/residents",
            &token,
            json!({ "name": "Ana", "block": "A", "unit": "1", "phone": "+55 11 91234-0000",
                    "tags": [{ "tag": "X1", "valid_from": "ontem" }] }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "tags[0].valid_from");
}

#[tokio::test]
async fn a_manager_of_another_site_gets_404_on_pages_and_api() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (cookie, token) = login(&f.app, "outro@example.com").await;
    for path in [
        "/sites/palmeiras/sessions".to_owned(),
        "/sites/palmeiras/sessions.csv".to_owned(),
        "/sites/palmeiras/residents".to_owned(),
        "/sites/palmeiras/residents/new".to_owned(),
        format!("/sites/palmeiras/residents/{maria}"),
        "/sites/palmeiras/inbox".to_owned(),
    ] {
        let (s, _, _) = send(&f.app, get_cookie(&path, &cookie)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/sites/palmeiras/residents".to_owned(),
        format!("/sites/palmeiras/residents/{maria}"),
        format!("/sites/palmeiras/residents/{maria}/deactivate"),
        "/sites/palmeiras/inbox/FEED01/assign".to_owned(),
    ] {
        let (s, _, _) = send(
            &f.app,
            post_form(&path, &cookie, &[("name", "x"), ("resident_id", "1")]),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "POST {path}");
    }
    for path in [
        "/api/v1/sites/palmeiras/sessions".to_owned(),
        "/api/v1/sites/palmeiras/residents".to_owned(),
        format!("/api/v1/sites/palmeiras/residents/{maria}"),
        "/api/v1/sites/palmeiras/unknown-tags".to_owned(),
    ] {
        let (s, _, b) = send(&f.app, get_bearer(&path, &token)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json_of(&b)["error"]["code"], "not_found");
    }
    let (s, _, _) = send(
        &f.app,
        json_req(
            "PATCH",
            &format!("/api/v1/sites/palmeiras/residents/{maria}"),
            &token,
            json!({ "active": false }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/unknown-tags/FEED01/assign",
            &token,
            json!({ "resident_id": maria.0 }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Nothing changed, nothing about the other site leaked into the audit log.
    assert!(
        f.db_store
            .resident(f.home, maria)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(f.db_store.unknown_tags(f.home).await.unwrap().len(), 1);
    let audit = f.db_store.audit_log(100).await.unwrap();
    assert!(audit.iter().all(|a| a.action != "resident_view"));
}

#[tokio::test]
async fn sessions_page_filters_and_csv_export_is_pt_br_without_phones() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(&f.app, get_cookie("/sites/palmeiras/sessions", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&b);
    // 13:00Z is 10:00 in São Paulo; 12,345 kWh; 1 h 35 min; 10 idle minutes.
    assert!(page.contains("02/03/2026 10:00"), "{page}");
    assert!(
        page.contains("12,345") && page.contains("1.234,567"),
        "{page}"
    );
    assert!(
        page.contains("1 h 35 min") && page.contains("Maria Silva"),
        "{page}"
    );
    assert!(page.contains("<strong>2</strong> sessões"), "{page}");
    assert!(page.contains("1.246,912 kWh"), "totals: {page}");
    assert!(page.contains("aria-current=\"page\">Sessões"), "{page}");
    // Period filter: only 2 March (the 'to' day is included on the page).
    let (_, _, b) = send(
        &f.app,
        get_cookie(
            "/sites/palmeiras/sessions?from=2026-03-01&to=2026-03-02&charger=&resident=",
            &cookie,
        ),
    )
    .await;
    let page = text(&b);
    assert!(page.contains("<strong>1</strong> sessão"), "{page}");
    assert!(
        page.contains("12,345") && !page.contains("1.234,567"),
        "{page}"
    );
    // A bad filter is shown at its field.
    let (s, _, b) = send(
        &f.app,
        get_cookie("/sites/palmeiras/sessions?resident=abc", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("class=\"field-error\""));
    // CSV of everything, then of one resident.
    let (s, h, b) = send(&f.app, get_cookie("/sites/palmeiras/sessions.csv", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert!(b.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
    let csv = text(&b);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].contains("Início;Fim;Carregador"), "{csv}");
    assert!(lines.iter().all(|l| l.split(';').count() == 11), "{csv}");
    assert!(
        csv.contains(";12,345;") && csv.contains(";1234,567;"),
        "{csv}"
    );
    assert!(csv.contains("05/03/2026 19:30"), "{csv}");
    assert!(!csv.contains(MARIA_PHONE) && !csv.contains("912345678") && !csv.contains("5678"));
    let path = format!("/sites/palmeiras/sessions.csv?resident={maria}&from=2026-03-03");
    let (_, _, b) = send(&f.app, get_cookie(&path, &cookie)).await;
    assert_eq!(text(&b).lines().count(), 2);
    // The API filters the same way and names bad parameters.
    let path = format!("/api/v1/sites/palmeiras/sessions?resident={maria}&charger=c1");
    let (s, _, b) = send(&f.app, get_bearer(&path, &token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["data"].as_array().unwrap().len(), 2);
    let (_, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/sessions?charger=nope", &token),
    )
    .await;
    assert_eq!(json_of(&b)["data"].as_array().unwrap().len(), 0);
    for (q, field) in [
        ("resident=abc", "resident"),
        ("apartment=-1", "apartment"),
        ("charger=", "charger"),
    ] {
        let path = format!("/api/v1/sites/palmeiras/sessions?{q}");
        let (s, _, b) = send(&f.app, get_bearer(&path, &token)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(json_of(&b)["error"]["field"], field, "{q}");
    }
}

#[tokio::test]
async fn viewing_a_resident_shows_the_full_phone_and_writes_an_audit_row() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        get_cookie(&format!("/sites/palmeiras/residents/{maria}"), &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("+55 11 91234-5678"), "{}", text(&b));
    let audit = f.db_store.audit_log(10).await.unwrap();
    let row = &audit[0];
    assert_eq!(row.action, "resident_view");
    assert_eq!(row.target, format!("resident:{maria}"));
    assert!(row.user_id.is_some());
    // The API twin is audited too.
    let (s, _, b) = send(
        &f.app,
        get_bearer(
            &format!("/api/v1/sites/palmeiras/residents/{maria}"),
            &token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b)["data"]["phone"], "+5511912345678");
    let views = f
        .db_store
        .audit_log(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "resident_view")
        .count();
    assert_eq!(views, 2);
    // Unknown resident ids are 404.
    let (s, _, _) = send(
        &f.app,
        get_cookie("/sites/palmeiras/residents/99999", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn edit_deactivate_and_end_a_tag_are_audited() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let base = format!("/sites/palmeiras/residents/{maria}");
    let (s, _, b) = send(
        &f.app,
        post_form(
            &base,
            &cookie,
            &[
                ("name", "Maria S. Silva"),
                ("block", "A"),
                ("unit", "303"),
                ("phone", "+55 11 91234-5678"),
                ("active", "1"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    let r = f.db_store.resident(f.home, maria).await.unwrap().unwrap();
    assert_eq!(
        (r.name.as_str(), r.unit.as_str()),
        ("Maria S. Silva", "303")
    );
    // Bad phone on edit: 422 at the field, nothing changed.
    let (s, _, b) = send(
        &f.app,
        post_form(
            &base,
            &cookie,
            &[
                ("name", "X"),
                ("block", "A"),
                ("unit", "1"),
                ("phone", "123"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&b).contains("id=\"e-phone\""));
    assert_eq!(
        f.db_store
            .resident(f.home, maria)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Maria S. Silva"
    );
    // Add a tag, then end it.
    let (s, _, b) = send(
        &f.app,
        post_form(
            &format!("{base}/tags"),
            &cookie,
            &[("tag", "beef03"), ("valid_from", "2026-01-01")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    let (s, _, b) = send(
        &f.app,
        post_form(
            &format!("{base}/tags/end"),
            &cookie,
            &[("tag", "BEEF03"), ("at", "")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    let tags = f.db_store.resident_tags(f.home, maria).await.unwrap();
    let beef = tags.iter().find(|t| t.tag.as_str() == "BEEF03").unwrap();
    assert!(beef.valid_to.is_some());
    // API PATCH with a bad type names the field; deactivation through the page.
    let (s, _, b) = send(
        &f.app,
        json_req(
            "PATCH",
            &format!("/api/v1/sites/palmeiras/residents/{maria}"),
            &token,
            json!({ "active": "no" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "active");
    let (s, _, _) = send(
        &f.app,
        post_form(&format!("{base}/deactivate"), &cookie, &[]),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        !f.db_store
            .resident(f.home, maria)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    let actions: Vec<String> = f
        .db_store
        .audit_log(20)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for a in [
        "resident_update",
        "tag_grant",
        "tag_end",
        "resident_deactivate",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn assigning_an_unknown_tag_resolves_it() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(&f.app, get_cookie("/sites/palmeiras/inbox", &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&b);
    assert!(
        page.contains("FEED01") && page.contains("Garagem 1"),
        "{page}"
    );
    assert!(page.contains("Atribuir a morador"), "{page}");
    let (_, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/unknown-tags", &token),
    )
    .await;
    assert_eq!(json_of(&b)["data"][0]["tag"], "FEED01");
    // No resident chosen: 422 with the message at the form.
    let (s, _, b) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/inbox/FEED01/assign",
            &cookie,
            &[("resident_id", ""), ("valid_from", "2026-03-01")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&b).contains("escolha o morador"));
    let (s, _, _) = send(
        &f.app,
        post_form(
            "/sites/palmeiras/inbox/feed01/assign",
            &cookie,
            &[
                ("resident_id", &maria.to_string()),
                ("valid_from", "2026-03-01"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(f.db_store.unknown_tags(f.home).await.unwrap().is_empty());
    let owner = f
        .db_store
        .tag_owner_at(f.home, &Tag::parse("FEED01").unwrap(), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.resident_id, maria);
    let audit = f.db_store.audit_log(5).await.unwrap();
    assert_eq!(audit[0].action, "unknown_tag_assign");
    // Resolved tags are gone from the inbox: assigning again is a 404.
    let (s, _, _) = send(
        &f.app,
        json_req(
            "POST",
            "/api/v1/sites/palmeiras/unknown-tags/FEED01/assign",
            &token,
            json!({ "resident_id": maria.0 }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_api_assigns_an_unknown_tag_and_validates_the_resident() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let maria = with_data(&f).await;
    let (_, token) = login(&f.app, "admin@example.com").await;
    let path = "/api/v1/sites/palmeiras/unknown-tags/FEED01/assign";
    let (s, _, b) = send(&f.app, json_req("POST", path, &token, json!({}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "resident_id");
    let (s, _, b) = send(
        &f.app,
        json_req("POST", path, &token, json!({ "resident_id": 99999 })),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&b)["error"]["field"], "resident_id");
    assert_eq!(f.db_store.unknown_tags(f.home).await.unwrap().len(), 1);
    let (s, _, b) = send(
        &f.app,
        json_req(
            "POST",
            path,
            &token,
            json!({ "resident_id": maria.0, "valid_from": "2026-03-01" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    assert!(f.db_store.unknown_tags(f.home).await.unwrap().is_empty());
}

#[tokio::test]
async fn openapi_lists_the_management_routes() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (_, _, b) = send(
        &f.app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let doc = json_of(&b);
    for (path, method) in [
        ("/api/v1/sites/{slug}/residents", "get"),
        ("/api/v1/sites/{slug}/residents", "post"),
        ("/api/v1/sites/{slug}/residents/{id}", "get"),
        ("/api/v1/sites/{slug}/residents/{id}", "patch"),
        ("/api/v1/sites/{slug}/residents/{id}/tags", "post"),
        ("/api/v1/sites/{slug}/unknown-tags", "get"),
        ("/api/v1/sites/{slug}/unknown-tags/{tag}/assign", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let params = doc["paths"]["/api/v1/sites/{slug}/sessions"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for p in ["charger", "resident", "apartment"] {
        assert!(params.iter().any(|x| x["name"] == p), "{p}");
    }
}
