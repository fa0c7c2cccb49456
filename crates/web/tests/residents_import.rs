//! The residents import (CSV/XLSX) in-process against a real store, on both backends: the
//! upload → preview → confirm pages and the API twin; a malformed file imports nothing; a file
//! with bad rows reports each (row number and column) and imports only the good ones after
//! the confirmation; the confirm payload is checked against its SHA-256; site rule, CSRF and
//! body limits.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use chrono::{DateTime, Utc};
use common::{ORIGIN, add_site, add_users, json_of, login, site_settings, text};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vetric_domain::Tag;
use vetric_store::testing::TestDb;
use vetric_store::{NewResident, Role, SiteId, Store, test_both_backends};
use vetric_web::{AppState, router};

const CSV_TYPE: &str = "text/csv";
const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const BOUNDARY: &str = "----vetric-import-test";

struct Fixture {
    app: Router,
    home: SiteId,
    store: Store,
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
        store,
    }
}

/// Maria (A-302, +55 11 91234-5678) owns tag AAA1 since 2025.
async fn with_maria(f: &Fixture) {
    let since: DateTime<Utc> = "2025-01-01T03:00:00Z".parse().unwrap();
    let maria = f
        .store
        .add_resident(
            f.home,
            &NewResident {
                name: "Maria Silva".into(),
                phone: "5511912345678".into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap();
    f.store
        .add_tag(f.home, maria, &Tag::parse("AAA1").unwrap(), since, None)
        .await
        .unwrap();
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    common::send_limited(app, req, 1 << 24).await
}

/// A multipart form body with `fields` (name, file name for a file, content).
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
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

fn upload(cookie: &str, name: &str, file: &[u8]) -> Request<Body> {
    post_multipart(
        "/sites/palmeiras/residents/import",
        cookie,
        multipart(&[("file", Some(name), file)]),
    )
}

fn api_import(token: &str, content_type: &str, commit: bool, body: Vec<u8>) -> Request<Body> {
    let q = if commit { "?commit=true" } else { "" };
    Request::post(format!("/api/v1/sites/palmeiras/residents/import{q}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// The value of the hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

/// The confirm form of a preview page, as the browser would post it.
fn confirm_of(page: &str) -> Vec<(&'static str, String)> {
    ["payload", "sha256", "rows", "file_name"]
        .into_iter()
        .map(|n| (n, hidden(page, n)))
        .collect()
}

fn post_confirm(cookie: &str, form: &[(&'static str, String)]) -> Request<Body> {
    let fields: Vec<(&str, Option<&str>, &[u8])> =
        form.iter().map(|(n, v)| (*n, None, v.as_bytes())).collect();
    post_multipart(
        "/sites/palmeiras/residents/import/confirm",
        cookie,
        multipart(&fields),
    )
}

async fn import_audits(store: &Store) -> Vec<vetric_store::AuditRow> {
    store
        .audit_log(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "residents_import")
        .collect()
}

fn row(report: &Value, n: u64) -> &Value {
    report["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["row"] == n)
        .unwrap_or_else(|| panic!("no row {n} in {report}"))
}

/// A pt-BR Excel CSV: BOM, `;`, CRLF, accents in the header, two tags in one cell.
const GOOD_CSV: &str = "\u{FEFF}Nome;Bloco;Unidade;Telefone;E-mail;Tags;Tag válida desde\r\n\
    João Souza;B;101;+55 (21) 98765-4321;joao@exemplo.com;TAGB1|TAGB2;01/03/2026\r\n\
    Ana Lima;C;12;+55 11 97777-1234;;TAGC1;\r\n";

/// A good CSV with `;` and a BOM goes through upload → preview → confirm; every resident and
/// tag is stored, with one audit row for the whole import.
async fn good_csv_imports_every_row_with_tags(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(
        &f.app,
        upload(&cookie, "moradores.csv", GOOD_CSV.as_bytes()),
    )
    .await;
    let page = text(&b);
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("Importar 2 linhas válidas"), "{page}");
    assert!(page.contains("moradores.csv"));
    assert!(
        f.store.residents(f.home).await.unwrap().is_empty(),
        "a preview stores nothing"
    );
    let (s, _, b) = send(&f.app, post_confirm(&cookie, &confirm_of(&page))).await;
    let done = text(&b);
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("2 moradores importados"), "{done}");
    let residents = f.store.residents(f.home).await.unwrap();
    let names: Vec<&str> = residents.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["João Souza", "Ana Lima"]);
    assert_eq!(residents[0].phone, "5521987654321");
    assert_eq!(residents[0].email.as_deref(), Some("joao@exemplo.com"));
    let dir = f.store.tag_directory(f.home).await.unwrap();
    let mut tags: Vec<(&str, &str)> = dir
        .iter()
        .map(|t| (t.tag.as_str(), t.resident_name.as_str()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("TAGB1", "João Souza"),
            ("TAGB2", "João Souza"),
            ("TAGC1", "Ana Lima")
        ]
    );
    let since = dir
        .iter()
        .find(|t| t.tag.as_str() == "TAGB1")
        .unwrap()
        .valid_from;
    assert_eq!(
        since,
        "2026-03-01T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let audits = import_audits(&f.store).await;
    assert_eq!(audits.len(), 1, "one audit row for the whole import");
    assert_eq!(audits[0].target, "site:palmeiras");
    // Posting the same confirmation again: every row is now a duplicate of what is stored.
    let (s, _, b) = send(&f.app, post_confirm(&cookie, &confirm_of(&page))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", text(&b));
    assert!(text(&b).contains("telefone já cadastrado"), "{}", text(&b));
    assert_eq!(f.store.residents(f.home).await.unwrap().len(), 2);
}

test_both_backends!(good_csv_imports_every_row_with_tags);

/// One bad row (a phone without DDD) and one row clashing with the store: the dry run names
/// each row and column and stores nothing; the commit imports only the good rows.
async fn bad_rows_are_reported_and_only_good_ones_imported(db: &TestDb) {
    let f = fixture(db).await;
    with_maria(&f).await;
    let (_, token) = login(&f.app, "sindico@example.com").await;
    let csv = "nome,apartamento,telefone,tags\n\
        Pedro Alves,A-101,+55 11 96666-0001,P1\n\
        Carla Dias,A-102,1234,P2\n\
        Rui Melo,A-103,+55 11 96666-0003,aaa1\n\
        Bia Reis,A-104,+55 11 96666-0001,\n\
        Davi Luz,A-105,+55 11 96666-0005,\"P5,P6\"\n";
    let (s, _, b) = send(&f.app, api_import(&token, CSV_TYPE, false, csv.into())).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let report = json_of(&b);
    assert_eq!(report["data"]["valid"], 2, "{report}");
    assert_eq!(report["data"]["invalid"], 3);
    assert_eq!(report["data"]["imported"], 0);
    assert_eq!(row(&report, 2)["ok"], true);
    let bad = row(&report, 3);
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["problems"][0]["column"], "telefone", "{bad}");
    let taken = row(&report, 4);
    assert_eq!(taken["problems"][0]["column"], "tags");
    let m = taken["problems"][0]["message"].as_str().unwrap();
    assert!(m.contains("Maria Silva") && m.contains("A-302"), "{m}");
    let twice = row(&report, 5);
    assert_eq!(twice["problems"][0]["column"], "telefone");
    assert!(
        twice["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("linha 2")
    );
    assert_eq!(row(&report, 6)["ok"], true);
    assert_eq!(
        f.store.residents(f.home).await.unwrap().len(),
        1,
        "a dry run stores nothing"
    );
    assert!(import_audits(&f.store).await.is_empty());

    let (s, _, b) = send(&f.app, api_import(&token, CSV_TYPE, true, csv.into())).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(json_of(&b)["data"]["imported"], 2);
    let names: Vec<String> = f
        .store
        .residents(f.home)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["Pedro Alves", "Davi Luz", "Maria Silva"]);
    let audits = import_audits(&f.store).await;
    assert_eq!(audits.len(), 1);
    let detail = audits[0].detail.to_string();
    assert!(detail.contains("\"imported\":2"), "{detail}");

    // The page shows the same report: the bad row's number and column.
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (s, _, b) = send(&f.app, upload(&cookie, "m.csv", csv.as_bytes())).await;
    assert_eq!(s, StatusCode::OK);
    let page = text(&b);
    assert!(page.contains("id=\"linha-3\""), "{page}");
    assert!(page.contains("<strong>telefone</strong>"), "{page}");
}

test_both_backends!(bad_rows_are_reported_and_only_good_ones_imported);

/// Files that cannot be read import nothing and say what to fix.
async fn malformed_files_import_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            CSV_TYPE,
            b"nome;bloco;unidade\nMaria;A;1\n".to_vec(),
            "telefone",
        ),
        (
            CSV_TYPE,
            b"nome;bloco;unidade;telefone\nJos\xe9;A;1;11912345678\n".to_vec(),
            "UTF-8",
        ),
        (
            CSV_TYPE,
            b"nome;bloco;unidade;telefone\n".to_vec(),
            "nenhuma linha",
        ),
        (CSV_TYPE, Vec::new(), "vazio"),
        (XLSX_TYPE, b"PK\x03\x04 not a zip at all".to_vec(), "XLSX"),
        (XLSX_TYPE, b"nome;telefone\n".to_vec(), "XLSX"),
        (CSV_TYPE, b"%PDF-1.7\n\0\0\0binary".to_vec(), "nem XLSX"),
    ];
    for (ct, body, says) in &cases {
        for commit in [false, true] {
            let (s, _, b) = send(&f.app, api_import(&token, ct, commit, body.clone())).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{}", text(&b));
            let e = &json_of(&b)["error"];
            assert_eq!(e["code"], "invalid_file");
            assert_eq!(e["field"], "file");
            let m = e["message"].as_str().unwrap();
            assert!(
                m.contains(says) && m.contains("nada foi importado"),
                "{says}: {m}"
            );
        }
        let (s, _, b) = send(&f.app, upload(&cookie, "x", body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text(&b).contains("Nada foi importado"), "{}", text(&b));
    }
    let (s, _, b) = send(
        &f.app,
        api_import(&token, "application/json", false, b"{}".to_vec()),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", text(&b));
    assert!(f.store.residents(f.home).await.unwrap().is_empty());
    assert!(f.store.apartments(f.home).await.unwrap().is_empty());
    assert!(import_audits(&f.store).await.is_empty());
}

test_both_backends!(malformed_files_import_nothing);

/// An XLSX written by a spreadsheet program: phone typed as a number, a date cell, header not
/// on the first row, an extra column.
fn xlsx() -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Lista de moradores").unwrap();
    for (c, h) in [
        "Nome",
        "Apartamento",
        "Telefone",
        "Tags",
        "tag_valida_desde",
        "Obs",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(2, c as u16, *h).unwrap();
    }
    let date = ExcelDateTime::from_ymd(2026, 2, 1).unwrap();
    let fmt = Format::new().set_num_format("dd/mm/yyyy");
    ws.write_string(3, 0, "Lia Prado").unwrap();
    ws.write_string(3, 1, "T1-501").unwrap();
    ws.write_number(3, 2, 5511955554444.0).unwrap();
    ws.write_string(3, 3, "X1 | X2").unwrap();
    ws.write_datetime_with_format(3, 4, &date, &fmt).unwrap();
    ws.write_string(3, 5, "vaga 12").unwrap();
    ws.write_string(4, 0, "Caio Reis").unwrap();
    ws.write_string(4, 1, "T1-502").unwrap();
    ws.write_string(4, 2, "+55 (11) 95555-3333").unwrap();
    wb.save_to_buffer().unwrap()
}

async fn xlsx_imports(db: &TestDb) {
    let f = fixture(db).await;
    let (_, token) = login(&f.app, "admin@example.com").await;
    let (s, _, b) = send(&f.app, api_import(&token, XLSX_TYPE, true, xlsx())).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let report = json_of(&b);
    assert_eq!(report["data"]["imported"], 2, "{report}");
    assert_eq!(
        row(&report, 4)["ok"],
        true,
        "spreadsheet row numbers: {report}"
    );
    assert_eq!(report["data"]["ignored_columns"][0], "Obs");
    let residents = f.store.residents(f.home).await.unwrap();
    assert_eq!(residents[0].name, "Lia Prado");
    assert_eq!(residents[0].phone, "5511955554444");
    assert_eq!(residents[0].apartment_label(), "T1-501");
    let dir = f.store.tag_directory(f.home).await.unwrap();
    assert_eq!(dir.len(), 2);
    assert_eq!(
        dir[0].valid_from,
        "2026-02-01T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    // The same file on the page: preview, then confirm.
    let (cookie, _) = login(&f.app, "admin@example.com").await;
    let (s, _, b) = send(&f.app, upload(&cookie, "lista.xlsx", &xlsx())).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text(&b).contains("telefone já cadastrado"),
        "now duplicates: {}",
        text(&b)
    );
}

test_both_backends!(xlsx_imports);

/// Another site's manager gets 404 (pages and API), an anonymous caller 401, a cross-site
/// post 403; nothing is stored.
#[tokio::test]
async fn other_site_anonymous_and_cross_site_are_refused() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (cookie, token) = login(&f.app, "outro@example.com").await;
    for path in [
        "/sites/palmeiras/residents/import",
        "/sites/palmeiras/residents/import/modelo.csv",
    ] {
        let (s, _, _) = send(&f.app, common::get_cookie(path, &cookie)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _, _) = send(&f.app, upload(&cookie, "m.csv", GOOD_CSV.as_bytes())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(&f.app, api_import(&token, CSV_TYPE, true, GOOD_CSV.into())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let anon = Request::post("/api/v1/sites/palmeiras/residents/import?commit=true")
        .header(header::CONTENT_TYPE, CSV_TYPE)
        .body(Body::from(GOOD_CSV))
        .unwrap();
    assert_eq!(send(&f.app, anon).await.0, StatusCode::UNAUTHORIZED);
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let mut cross = upload(&cookie, "m.csv", GOOD_CSV.as_bytes());
    cross
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(send(&f.app, cross).await.0, StatusCode::FORBIDDEN);
    // The manager of the site gets the form and the template.
    let (s, _, b) = send(
        &f.app,
        common::get_cookie("/sites/palmeiras/residents/import", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(text(&b).contains("tag_valida_desde"));
    let (s, h, b) = send(
        &f.app,
        common::get_cookie("/sites/palmeiras/residents/import/modelo.csv", &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(text(&b).contains("nome;bloco;unidade;telefone"));
    assert!(f.store.residents(f.home).await.unwrap().is_empty());
}

/// Over 2 MiB: 413 with a clear message on the API and the page; nothing stored.
#[tokio::test]
async fn oversized_files_are_413() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (cookie, token) = login(&f.app, "sindico@example.com").await;
    let mut big = GOOD_CSV.as_bytes().to_vec();
    big.resize(2 * 1024 * 1024 + 1, b' ');
    let (s, _, b) = send(&f.app, api_import(&token, CSV_TYPE, true, big.clone())).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let e = &json_of(&b)["error"];
    assert!(e["message"].as_str().unwrap().contains("2 MiB"), "{e}");
    // Within the page's body limit but over the file limit.
    let (s, _, b) = send(&f.app, upload(&cookie, "big.csv", &big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text(&b).contains("2 MiB"), "{}", text(&b));
    // Over the page's body limit.
    big.resize(5 * 1024 * 1024, b' ');
    let (s, _, b) = send(&f.app, upload(&cookie, "big.csv", &big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text(&b).contains("2 MiB"), "{}", text(&b));
    assert!(f.store.residents(f.home).await.unwrap().is_empty());
}

/// A confirmation whose payload does not match its SHA-256 is refused; one whose rows
/// changed since the preview (a tag taken meanwhile) imports nothing and shows the report.
async fn tampered_or_stale_confirmations_import_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let (cookie, _) = login(&f.app, "sindico@example.com").await;
    let (_, _, b) = send(&f.app, upload(&cookie, "m.csv", GOOD_CSV.as_bytes())).await;
    let page = text(&b);
    let mut form = confirm_of(&page);
    let evil = GOOD_CSV.replace("Ana Lima", "Ana Hacker");
    form[0].1 = base64::engine::general_purpose::STANDARD.encode(evil.as_bytes());
    let (s, _, b) = send(&f.app, post_confirm(&cookie, &form)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(text(&b).contains("SHA-256"), "{}", text(&b));
    form[0].1 = "%%% not base64".into();
    let (s, _, _) = send(&f.app, post_confirm(&cookie, &form)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(f.store.residents(f.home).await.unwrap().is_empty());

    // Someone gives TAGC1 to Maria between the preview and the confirmation.
    with_maria(&f).await;
    let maria = f.store.residents(f.home).await.unwrap()[0].id;
    f.store
        .add_tag(
            f.home,
            maria,
            &Tag::parse("TAGC1").unwrap(),
            "2025-01-01T03:00:00Z".parse().unwrap(),
            None,
        )
        .await
        .unwrap();
    let (s, _, b) = send(&f.app, post_confirm(&cookie, &confirm_of(&page))).await;
    let again = text(&b);
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert!(
        again.contains("linha 3") && again.contains("Nada foi importado"),
        "{again}"
    );
    assert_eq!(
        f.store.residents(f.home).await.unwrap().len(),
        1,
        "only Maria"
    );
    assert!(import_audits(&f.store).await.is_empty());
    // The new preview offers the one row still valid.
    assert!(again.contains("Importar 1 linha válida"), "{again}");
}

test_both_backends!(tampered_or_stale_confirmations_import_nothing);

/// The import route is in the OpenAPI document.
#[tokio::test]
async fn openapi_lists_the_import() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let (s, _, b) = send(
        &f.app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let doc = json_of(&b);
    assert!(doc["paths"]["/api/v1/sites/{slug}/residents/import"]["post"].is_object());
}

/// The store's import is all or nothing: a grant clashing with an earlier one of the same
/// import fails naming its position over all rows' tags, and nothing is kept.
async fn the_store_import_is_all_or_nothing(db: &TestDb) {
    use vetric_store::{AuditEntry, ImportResident, StoreError, TagGrant};
    let f = fixture(db).await;
    let from: DateTime<Utc> = "2026-01-01T03:00:00Z".parse().unwrap();
    let grant = |t: &str| TagGrant {
        tag: Tag::parse(t).unwrap(),
        valid_from: from,
        valid_to: None,
    };
    let resident = |name: &str, phone: &str, unit: &str, tags: Vec<TagGrant>| ImportResident {
        resident: NewResident {
            name: name.into(),
            phone: phone.into(),
            email: None,
            block: "Z".into(),
            unit: unit.into(),
        },
        tags,
    };
    let rows = vec![
        resident("Um", "5511911110001", "1", vec![grant("T1")]),
        resident("Dois", "5511911110002", "2", vec![grant("T2"), grant("T1")]),
    ];
    let entry = AuditEntry::new(Utc::now(), None, "residents_import", "site:palmeiras");
    match f.store.import_residents(f.home, &rows, &entry).await {
        Err(StoreError::TagTaken { index, owner, .. }) => {
            assert_eq!((index, owner.as_str()), (2, "Um"));
        }
        other => panic!("expected TagTaken, got {other:?}"),
    }
    assert!(f.store.residents(f.home).await.unwrap().is_empty());
    assert!(f.store.apartments(f.home).await.unwrap().is_empty());
    assert!(f.store.tag_directory(f.home).await.unwrap().is_empty());
    assert!(import_audits(&f.store).await.is_empty());
    let ids = f
        .store
        .import_residents(f.home, &rows[..1], &entry)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(import_audits(&f.store).await.len(), 1);
}

test_both_backends!(the_store_import_is_all_or_nothing);
