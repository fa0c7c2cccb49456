//! Issue #8: the vendor export import pages and API twin, and the report library, in-process
//! against a real store on both backends.
//!
//! * An export as the vendor writes it (columns in another order, an extra column, pt-BR
//!   numbers with thousands separators, times with and without seconds) with rows matching
//!   sessions vetric recorded itself (one agreeing, one with a different energy) and two bad
//!   rows: the preview counts and lists each; the confirm stores everything in one go, keeps
//!   the rejected rows (the one with a readable start under its month), audits; a second
//!   import of the same file doubles nothing.
//! * A malformed file and a tampered confirm store nothing; another site's manager gets 404.
//! * The report library: a real PDF is stored, listed, searched and downloaded as an
//!   attachment under its generated name; a path in the name, a PNG renamed .pdf, an empty
//!   and an oversized file are refused with nothing stored; deleting is audited.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::{ORIGIN, add_site, add_users, json_of, login, site_settings, text};
use rust_xlsxwriter::Workbook;
use tokio_util::sync::CancellationToken;
use vetric_domain::{ConnectorStatus, LocalMonth, Tag};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, EndKind, Role, SessionStatus, SessionWrite, SiteId, Store, test_both_backends,
};
use vetric_web::{AppState, router};

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const BOUNDARY: &str = "----vetric-statement-import-test";
const MANAGER: &str = "sindico@example.com";
const STRANGER: &str = "outro@example.com";

struct Fixture {
    app: Router,
    home: SiteId,
    store: Store,
    manager: String,
    manager_token: String,
    stranger: String,
}

fn own_session(id: i64, start: &str, minutes: i64, wh: i64) -> SessionWrite {
    let start: DateTime<Utc> = start.parse().unwrap();
    SessionWrite {
        vendor_id: id,
        charger_uuid: "c1".into(),
        connector_id: 1,
        tag: Some(Tag::parse("AAA1").unwrap()),
        tag_pk: None,
        resident_id: None,
        start,
        stop: Some(start + TimeDelta::minutes(minutes)),
        energy_wh: Some(wh),
        idle_seconds: 600,
        stop_reason: Some("EVDisconnected".into()),
        end_kind: Some(EndKind::Finished),
        status: SessionStatus::Ended,
    }
}

/// Two sites; the manager of `palmeiras` and one of `outro`; two sessions vetric recorded
/// itself in `palmeiras` (7001: 10:00–11:35 local, 8 kWh; 7002: 9 kWh).
async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    add_users(
        &store,
        vec![
            ("admin@example.com", Role::Admin, vec![]),
            (MANAGER, Role::Manager, vec![home]),
            (STRANGER, Role::Manager, vec![other]),
        ],
    )
    .await;
    let mut cycle = common::cycle(Utc::now(), ConnectorStatus::Available);
    cycle.sessions = vec![
        own_session(7001, "2026-03-07T13:00:00Z", 95, 8_000),
        own_session(7002, "2026-03-08T13:00:00Z", 60, 9_000),
    ];
    store.write_cycle(home, &cycle).await.unwrap();
    let state = AppState::new(
        store.clone(),
        vec![
            site_settings(home, "palmeiras", "Jardim Palmeiras"),
            site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    );
    let app = router(state);
    let (manager, manager_token) = login(&app, MANAGER).await;
    let (stranger, _) = login(&app, STRANGER).await;
    Fixture {
        app,
        home,
        store,
        manager,
        manager_token,
        stranger,
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    common::send_limited(app, req, 1 << 26).await
}

fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn post_multipart(path: &str, cookie: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header(header::ORIGIN, ORIGIN)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap()
}

fn post_form(path: &str, cookie: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, format!("vetric_session={cookie}"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap()
}

fn api(method: &str, path: &str, token: &str, ct: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body))
        .unwrap()
}

/// The value of the hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The number in `<strong id="{id}">N</strong>`.
fn count(html: &str, id: &str) -> u32 {
    let marker = format!("id=\"{id}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('<').unwrap()].parse().unwrap()
}

/// The export: columns in another order with an extra one; pt-BR numbers with thousands
/// separators; times with and without seconds; 7001 and 7002 as vetric recorded them (7002
/// with another energy); line 6 a date that does not exist, line 7 a dot as decimal point.
fn export() -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let rows: [[&str; 8]; 7] = [
        [
            "Observação",
            "Energia(kWh)",
            "Início - Fim",
            "Recarga(ID)",
            "Usuário(Nome)",
            "Estação",
            "Usuário(Tag)",
            "Tempo de ociosidade",
        ],
        [
            "",
            "1.234,567",
            "05/03/2026 16:30:00 - 05/03/2026 18:30:00",
            "5001",
            "Maria",
            "Vaga 1",
            "AAA1",
            "00:40:00",
        ],
        [
            "frota",
            "10,000",
            "06/03/2026 08:00 - 06/03/2026 09:00",
            "5002",
            "",
            "Vaga 2",
            "",
            "",
        ],
        [
            "",
            "8,000",
            "07/03/2026 10:00 - 07/03/2026 11:35",
            "7001",
            "Maria",
            "Garagem 1",
            "AAA1",
            "00:10:00",
        ],
        [
            "",
            "9,500",
            "08/03/2026 10:00:00 - 08/03/2026 11:00:00",
            "7002",
            "Maria",
            "Garagem 1",
            "AAA1",
            "00:10:00",
        ],
        [
            "",
            "1,000",
            "31/02/2026 10:00 - 31/02/2026 11:00",
            "5003",
            "",
            "Vaga 1",
            "AAA1",
            "",
        ],
        [
            "",
            "12.5",
            "10/03/2026 10:00 - 10/03/2026 11:00",
            "5004",
            "",
            "Vaga 1",
            "AAA1",
            "",
        ],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

const IMPORT: &str = "/sites/palmeiras/statements/import";

async fn counts(db: &TestDb) -> std::collections::BTreeMap<String, i64> {
    db.row_counts().await
}

/// Upload → preview → confirm, then the same file again through the API: nothing doubled.
async fn export_is_previewed_then_imported_once(db: &TestDb) {
    let f = fixture(db).await;
    let before = counts(db).await;
    let body = multipart(&[("file", Some("recargas março.xlsx"), &export())]);
    let (s, _, b) = send(&f.app, post_multipart(IMPORT, &f.manager, body)).await;
    let html = text(&b);
    assert_eq!(s, StatusCode::OK, "{html}");
    assert_eq!(count(&html, "count-read"), 6);
    assert_eq!(count(&html, "count-new"), 2);
    assert_eq!(count(&html, "count-matched"), 2);
    assert_eq!(count(&html, "count-disagree"), 1);
    assert_eq!(count(&html, "count-refused"), 2);
    assert!(
        html.contains("data-row=\"6\""),
        "the unreadable date is listed"
    );
    assert!(
        html.contains("data-row=\"7\""),
        "the dot as decimal point is listed"
    );
    assert!(html.contains("o ponto separa milhares"), "{html}");
    assert!(html.contains("id=\"recarga-7001\" data-agrees=\"true\""));
    assert!(html.contains("id=\"recarga-7002\" data-agrees=\"false\""));
    assert!(
        html.contains("9,000 kWh") && html.contains("9,500 kWh"),
        "both energies shown"
    );
    assert_eq!(counts(db).await, before, "a preview stores nothing");

    // A tampered confirmation stores nothing.
    let payload = hidden(&html, "payload");
    let sha = hidden(&html, "sha256");
    let plan = hidden(&html, "plan");
    let bad = multipart(&[
        ("payload", None, payload.as_bytes()),
        ("sha256", None, "00".repeat(32).as_bytes()),
        ("plan", None, plan.as_bytes()),
        ("file_name", None, b"recargas.xlsx"),
    ]);
    let (s, _, _) = send(
        &f.app,
        post_multipart(&format!("{IMPORT}/confirm"), &f.manager, bad),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(counts(db).await, before);

    let ok = multipart(&[
        ("payload", None, payload.as_bytes()),
        ("sha256", None, sha.as_bytes()),
        ("plan", None, plan.as_bytes()),
        ("file_name", None, "recargas março.xlsx".as_bytes()),
    ]);
    let (s, _, b) = send(
        &f.app,
        post_multipart(&format!("{IMPORT}/confirm"), &f.manager, ok),
    )
    .await;
    let html = text(&b);
    assert_eq!(s, StatusCode::OK, "{html}");
    assert_eq!(count(&html, "done-imported"), 4);
    assert_eq!(count(&html, "done-also"), 2);
    assert_eq!(count(&html, "done-refused"), 2);
    assert!(html.contains("/sites/palmeiras/statements?month=2026-03"));
    let after = counts(db).await;
    assert_eq!(after["imported_sessions"], before["imported_sessions"] + 4);
    assert_eq!(after["import_batches"], before["import_batches"] + 1);
    assert_eq!(
        after["import_rejected_rows"],
        before["import_rejected_rows"] + 2
    );
    assert_eq!(after["audit_log"], before["audit_log"] + 1);
    let audit = f.store.audit_log(1).await.unwrap();
    assert_eq!(audit[0].action, "statement_import");
    assert_eq!(audit[0].detail["disagreements"], 1);

    // Only the rejected row with a readable start belongs to March.
    let march = LocalMonth::parse("2026-03").unwrap();
    let rejected = f.store.rejected_import_rows(f.home, march).await.unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].line, 7);
    assert_eq!(rejected[0].vendor_id, Some(5004));
    assert!(rejected[0].reason.contains("Energia(kWh)"));
    assert!(
        rejected[0]
            .raw
            .contains(&("Energia(kWh)".to_owned(), "12.5".to_owned()))
    );

    // The same file again through the API: a dry run sees every row as known, the commit
    // stores no session twice.
    let path = "/api/v1/sites/palmeiras/statements/import";
    let (s, _, b) = send(
        &f.app,
        api("POST", path, &f.manager_token, XLSX_TYPE, export()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v = json_of(&b);
    assert_eq!(v["data"]["new"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["data"]["matched"].as_array().unwrap().len(), 4);
    assert_eq!(v["data"]["committed"], false);
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("{path}?commit=true"),
            &f.manager_token,
            XLSX_TYPE,
            export(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v = json_of(&b);
    assert_eq!(v["data"]["imported"], 0, "{v}");
    assert_eq!(v["data"]["already_imported"], 4);
    assert_eq!(
        counts(db).await["imported_sessions"],
        after["imported_sessions"]
    );
}

test_both_backends!(export_is_previewed_then_imported_once);

/// The plan changed between preview and confirm (the same file imported through the API in
/// between): the confirm stores nothing and shows the new preview.
async fn a_stale_confirmation_stores_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let body = multipart(&[("file", Some("recargas.xlsx"), &export())]);
    let (s, _, b) = send(&f.app, post_multipart(IMPORT, &f.manager, body)).await;
    assert_eq!(s, StatusCode::OK);
    let html = text(&b);
    let (s, _, _) = send(
        &f.app,
        api(
            "POST",
            "/api/v1/sites/palmeiras/statements/import?commit=true",
            &f.manager_token,
            XLSX_TYPE,
            export(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let before = counts(db).await;
    let confirm = multipart(&[
        ("payload", None, hidden(&html, "payload").as_bytes()),
        ("sha256", None, hidden(&html, "sha256").as_bytes()),
        ("plan", None, hidden(&html, "plan").as_bytes()),
        ("file_name", None, b"recargas.xlsx"),
    ]);
    let (s, _, b) = send(
        &f.app,
        post_multipart(&format!("{IMPORT}/confirm"), &f.manager, confirm),
    )
    .await;
    let html = text(&b);
    assert_eq!(s, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("mudaram desde a prévia"), "{html}");
    assert_eq!(count(&html, "count-new"), 0);
    assert_eq!(counts(db).await, before);
}

test_both_backends!(a_stale_confirmation_stores_nothing);

/// A file that is not the export, an XLSX without the columns, and another site's manager:
/// refused, nothing stored.
async fn malformed_exports_and_strangers_store_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let before = counts(db).await;
    let mut wb = Workbook::new();
    wb.add_worksheet().write_string(0, 0, "Nome").unwrap();
    let no_columns = wb.save_to_buffer().unwrap();
    for (what, bytes) in [
        ("garbage zip", b"PK\x03\x04garbage".to_vec()),
        ("csv", b"Recarga(ID);Estacao\n1;2\n".to_vec()),
        ("no columns", no_columns),
    ] {
        let body = multipart(&[("file", Some("x.xlsx"), &bytes)]);
        let (s, _, b) = send(&f.app, post_multipart(IMPORT, &f.manager, body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {}", text(&b));
        assert!(text(&b).contains("Nada foi importado"), "{what}");
    }
    let body = multipart(&[("file", Some("x.xlsx"), &export())]);
    let (s, _, _) = send(&f.app, post_multipart(IMPORT, &f.stranger, body)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(&f.app, common::get_cookie(IMPORT, &f.stranger)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = send(&f.app, common::get_cookie(IMPORT, &f.manager)).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(counts(db).await, before);
}

test_both_backends!(malformed_exports_and_strangers_store_nothing);

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n".to_vec()
}

const LIBRARY: &str = "/sites/palmeiras/reports";

/// Upload, list, search, download, delete; bad uploads refused with nothing stored.
async fn report_library_keeps_real_pdfs_only(db: &TestDb) {
    let f = fixture(db).await;
    // An issued statement shows in its month.
    let march = LocalMonth::parse("2026-03").unwrap();
    let input = f.store.statement_input(f.home, march).await.unwrap();
    let audit = AuditEntry::new(Utc::now(), None, "statement_issue", "site:palmeiras");
    f.store
        .issue_statement(f.home, &input, &audit)
        .await
        .unwrap();

    let before = counts(db).await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let mut big = pdf();
    big.resize(vetric_web::report_library::FILE_LIMIT + 1, b' ');
    for (what, name, bytes, status) in [
        (
            "path traversal",
            "../../etc/passwd.pdf",
            pdf(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PNG renamed",
            "foto.pdf",
            png,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty",
            "vazio.pdf",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "oversized",
            "grande.pdf",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let body = multipart(&[
            ("title", None, b"Ata"),
            ("month", None, b"2026-03"),
            ("file", Some(name), &bytes),
        ]);
        let (s, _, b) = send(&f.app, post_multipart(LIBRARY, &f.manager, body)).await;
        assert_eq!(s, status, "{what}: {}", text(&b));
        assert!(text(&b).contains("Nada foi enviado"), "{what}");
        assert_eq!(counts(db).await, before, "{what}: nothing stored");
    }
    let (_, _, b) = send(
        &f.app,
        post_multipart(
            LIBRARY,
            &f.manager,
            multipart(&[
                ("title", None, b"Ata"),
                ("month", None, b"2026-03"),
                ("file", Some("foto.pdf"), b"\x89PNG\r\n\x1a\n"),
            ]),
        ),
    )
    .await;
    assert!(text(&b).contains("imagem PNG"), "the problem is named");

    let body = multipart(&[
        ("title", None, "Ata da assembleia <março>".as_bytes()),
        ("month", None, b"2026-03"),
        ("file", Some("ata <1>.pdf"), &pdf()),
    ]);
    let (s, h, b) = send(&f.app, post_multipart(LIBRARY, &f.manager, body)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
    assert!(
        h[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("month=2026-03")
    );
    let after = counts(db).await;
    assert_eq!(after["report_files"], before["report_files"] + 1);
    assert_eq!(after["audit_log"], before["audit_log"] + 1);

    let (s, _, b) = send(
        &f.app,
        common::get_cookie(&format!("{LIBRARY}?month=2026-03&q=ASSEMBLEIA"), &f.manager),
    )
    .await;
    let html = text(&b);
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Ata da assembleia &#60;março&#62;"), "{html}");
    assert!(!html.contains("<março>"), "names are escaped");
    assert!(html.contains("versão 1"), "the issued statement is listed");
    assert!(html.contains("/sites/palmeiras/statements?month=2026-03"));
    let (_, _, b) = send(
        &f.app,
        common::get_cookie(&format!("{LIBRARY}?q=inexistente"), &f.manager),
    )
    .await;
    assert!(!text(&b).contains("assembleia"));
    let (_, _, b) = send(
        &f.app,
        common::get_cookie(&format!("{LIBRARY}?month=2026-04"), &f.manager),
    )
    .await;
    assert!(!text(&b).contains("assembleia"));

    let files = f.store.report_files(f.home).await.unwrap();
    let file = &files[0];
    assert!(vetric_web::report_library::is_safe_stored_name(
        &file.stored_name
    ));
    assert_eq!(file.original_name, "ata <1>.pdf");
    let dl = format!("{LIBRARY}/{}", file.id);
    let (s, h, b) = send(&f.app, common::get_cookie(&dl, &f.manager)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(
        h[header::CONTENT_DISPOSITION].to_str().unwrap(),
        format!("attachment; filename=\"{}\"", file.stored_name)
    );
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(b.to_vec(), pdf());
    let (s, _, _) = send(&f.app, common::get_cookie(&dl, &f.stranger)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(&f.app, post_form(&format!("{dl}/delete"), &f.stranger)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(counts(db).await, after);

    let (s, _, _) = send(&f.app, post_form(&format!("{dl}/delete"), &f.manager)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let audit = f.store.audit_log(1).await.unwrap();
    assert_eq!(audit[0].action, "report_delete");
    assert_eq!(audit[0].detail["original_name"], "ata <1>.pdf");
    assert_eq!(counts(db).await["report_files"], before["report_files"]);

    // The API twins.
    let base = "/api/v1/sites/palmeiras/reports";
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("{base}?month=2026-03&title=Boleto&name=boleto.pdf"),
            &f.manager_token,
            "application/pdf",
            pdf(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", text(&b));
    let id = json_of(&b)["data"]["id"].as_i64().unwrap();
    let (s, _, b) = send(
        &f.app,
        common::get_bearer(&format!("{base}?q=boleto"), &f.manager_token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b);
    assert_eq!(v["data"]["files"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"]["statements"].as_array().unwrap().len(), 1, "{v}");
    let (s, h, _) = send(
        &f.app,
        common::get_bearer(&format!("{base}/{id}"), &f.manager_token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    let (s, _, b) = send(
        &f.app,
        api(
            "POST",
            &format!("{base}?month=2026-03&name=..%2Fx.pdf"),
            &f.manager_token,
            "application/pdf",
            pdf(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", text(&b));
    assert_eq!(json_of(&b)["error"]["field"], "name");
    let (s, _, _) = send(
        &f.app,
        api(
            "DELETE",
            &format!("{base}/{id}"),
            &f.manager_token,
            "",
            Vec::new(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(counts(db).await["report_files"], before["report_files"]);
}

test_both_backends!(report_library_keeps_real_pdfs_only);
