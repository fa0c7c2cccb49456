//! Monthly statements in the web app (issue #8), in-process against a real store on both
//! backends: the draft page shows the domain's totals line by line (with "sem morador"); a
//! manager of another site gets the usual 404 everywhere; issuing freezes version 1; a late
//! imported session makes the page show the per-apartment difference, re-issuing goes through
//! a confirmation and makes version 2 while version 1 stays as it was; issuing an unchanged
//! draft is refused; the CSV, XLSX and PDF downloads have their content type, file name and the
//! page's total (the PDF read back with poppler's `pdftotext`, the XLSX with calamine).

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use common::{ORIGIN, add_site, add_users, get_bearer, get_cookie, json_of, login, send, text};
use tokio_util::sync::CancellationToken;
use vetric_domain::statement::compute;
use vetric_domain::{
    LocalMonth, SessionRecord, SessionSource, Tag, TariffSpec, TimePrecision, format_money,
    format_money_pt_br,
};
use vetric_store::testing::TestDb;
use vetric_store::{
    AuditEntry, NewImportBatch, NewResident, Role, SiteId, Store, test_both_backends,
};
use vetric_web::{AppState, router};

const MANAGER: &str = "sindico@example.com";
const STRANGER: &str = "outro@example.com";
const MONTH: &str = "2026-03";

struct Fixture {
    app: Router,
    store: Store,
    home: SiteId,
    manager: String,
    stranger: String,
    token: String,
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn session(
    vendor_id: i64,
    tag: &str,
    start: &str,
    hours: i64,
    wh: i64,
    idle_min: i64,
) -> SessionRecord {
    let start = at(start);
    SessionRecord {
        vendor_id,
        charger: "Vaga 1".into(),
        tag: Some(Tag::parse(tag).unwrap()),
        start,
        stop: start + TimeDelta::hours(hours),
        energy_wh: wh,
        idle_seconds: idle_min * 60,
        source: SessionSource::Imported,
        precision: TimePrecision::Second,
        import_line: Some(vendor_id as u32 % 1000),
        user_name: None,
    }
}

async fn import(store: &Store, site: SiteId, sessions: &[SessionRecord]) {
    store
        .import_sessions(
            site,
            &NewImportBatch {
                file_name: "recargas.xlsx".into(),
                rows_read: sessions.len() as u32,
                rows_refused: 0,
            },
            sessions,
            &AuditEntry::new(Utc::now(), None, "statement_import", format!("site:{site}")),
        )
        .await
        .unwrap();
}

/// `palmeiras` with BILLING.md's worked-example tariff, Maria (tag AB12CD, apartment A-302)
/// with the two worked examples (R$ 18,05 + R$ 2,50 idle, and R$ 14,43) and an unknown tag's
/// session (2 kWh off-peak, R$ 1,06) in March 2026: R$ 36,04 in all.
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
    let tariff = TariffSpec {
        peak_price: Some("3.08".into()),
        offpeak_price: Some("0.53".into()),
        idle_grace_min: Some("15".into()),
        idle_fee_per_min: Some("0.10".into()),
        idle_fee_cap: Some("30.00".into()),
        max_kwh: Some("150".into()),
        ..TariffSpec::default()
    }
    .validate()
    .unwrap();
    store.upsert_config_tariff(home, &tariff).await.unwrap();
    let maria = store
        .add_resident(
            home,
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
    store
        .add_tag(
            home,
            maria,
            &Tag::parse("AB12CD").unwrap(),
            at("2025-01-01T03:00:00Z"),
            None,
        )
        .await
        .unwrap();
    import(
        &store,
        home,
        &[
            session(48213, "AB12CD", "2026-03-05T16:30:00-03:00", 2, 10_000, 40),
            session(48214, "AB12CD", "2026-03-05T23:00:00-03:00", 20, 20_000, 10),
            session(48300, "ZZ99", "2026-03-09T10:00:00-03:00", 1, 2_000, 0),
        ],
    )
    .await;
    let state = AppState::new(
        store.clone(),
        vec![
            common::site_settings(home, "palmeiras", "Jardim Palmeiras"),
            common::site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    );
    let app = router(state);
    let (manager, token) = login(&app, MANAGER).await;
    let (stranger, _) = login(&app, STRANGER).await;
    Fixture {
        app,
        store,
        home,
        manager,
        stranger,
        token,
    }
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

async fn get(f: &Fixture, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    send(&f.app, get_cookie(path, &f.manager)).await
}

async fn page(f: &Fixture, path: &str) -> String {
    let (s, _, b) = get(f, path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {}", text(&b));
    text(&b)
}

/// The text of the element with `id` (its first text run).
fn by_id(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].trim().to_owned()
}

/// The statement's digest hidden field (what the issue form sends back).
fn digest_of(html: &str) -> String {
    let at = html
        .find("name=\"digest\" value=\"")
        .expect("a digest field")
        + 21;
    html[at..at + 64].to_owned()
}

async fn draft_total(f: &Fixture) -> vetric_domain::Statement {
    let input = f
        .store
        .statement_input(f.home, LocalMonth::parse(MONTH).unwrap())
        .await
        .unwrap();
    compute(&input)
}

/// Issues through the page's form as the manager; returns the version the redirect names.
async fn issue_via_form(f: &Fixture) -> i64 {
    let html = page(f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    let expected = html
        .split("name=\"expected_version\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the issue form")
        .to_owned();
    let mut pairs = vec![("expected_version", expected.as_str()), ("digest", "")];
    let digest = digest_of(&html);
    pairs[1].1 = &digest;
    let path = format!("/sites/palmeiras/statements/{MONTH}/issue");
    let (s, h, b) = send(&f.app, post_form(&path, &f.manager, &pairs)).await;
    let location = if s == StatusCode::OK {
        // A version exists: the confirmation page, then its button.
        let html = text(&b);
        assert!(html.contains("Confirmar emissão da versão"), "{html}");
        let digest = digest_of(&html);
        let confirm = [
            ("expected_version", expected.as_str()),
            ("digest", digest.as_str()),
            ("confirm", "sim"),
        ];
        let (s, h, b) = send(&f.app, post_form(&path, &f.manager, &confirm)).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
        h[header::LOCATION].to_str().unwrap().to_owned()
    } else {
        assert_eq!(s, StatusCode::SEE_OTHER, "{}", text(&b));
        h[header::LOCATION].to_str().unwrap().to_owned()
    };
    location
        .split("version=")
        .nth(1)
        .and_then(|v| v.split('&').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {location}"))
}

async fn the_draft_page_shows_the_domain_totals(db: &TestDb) {
    let f = fixture(db).await;
    let expected = draft_total(&f).await;
    assert_eq!(format_money(expected.totals.total), "36.04");
    let html = page(&f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    assert!(html.contains("Extrato de março de 2026"), "{html}");
    assert!(html.contains("Rascunho"), "{html}");
    assert_eq!(
        by_id(&html, "statement-total"),
        format_money_pt_br(expected.totals.total)
    );
    // Every line is on the page, "sem morador" included, and they add up to the total.
    assert_eq!(expected.lines.len(), 2);
    for l in &expected.lines {
        assert!(html.contains(l.label()), "no line {}", l.label());
        assert!(
            html.contains(&format_money_pt_br(l.total)),
            "no total of {}",
            l.label()
        );
    }
    assert!(html.contains("sem morador"));
    assert!(html.contains("R$ 34,98"), "Maria's line");
    // The tariff that priced the sessions, and the charts inline.
    assert!(html.contains("tarifa única (sem data de início)"), "{html}");
    assert!(html.contains("3 recarga(s)"), "{html}");
    assert!(html.contains("<svg"), "charts inline");
    assert!(html.contains("Emitir extrato"));

    // The apartment's page: each session with its split, pieces and tariff.
    let apt = page(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}/apartments/A-302"),
    )
    .await;
    assert_eq!(by_id(&apt, "apartment-total"), "R$ 34,98");
    assert!(apt.contains("48213") && apt.contains("48214"), "{apt}");
    assert!(
        apt.contains("05/03 17:30–18:30"),
        "peak piece of 48213: {apt}"
    );
    assert!(
        apt.contains("06/03 17:30–19:00"),
        "peak piece of 48214: {apt}"
    );
    assert!(apt.contains("5,000"), "48213's 5 kWh at peak");
    assert!(apt.contains("05/03/2026 16:30"), "local start");
    let unassigned = page(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}/apartments/sem-morador"),
    )
    .await;
    assert_eq!(by_id(&unassigned, "apartment-total"), "R$ 1,06");
    assert!(unassigned.contains("ZZ99"));
    let (s, _, _) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}/apartments/B-999"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The rejected rows page lists a bad row with its reason.
    import(
        &f.store,
        f.home,
        &[session(
            48400,
            "AB12CD",
            "2026-03-12T10:00:00-03:00",
            1,
            0,
            0,
        )],
    )
    .await;
    let rejected = page(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}/rejeitadas"),
    )
    .await;
    assert!(rejected.contains("48400"), "{rejected}");
    let reason = draft_total(&f).await.rejected[0].reason_pt_br.clone();
    assert!(rejected.contains(&reason), "{reason} not in {rejected}");

    // The API twin: the same figures.
    let (s, _, b) = send(
        &f.app,
        get_bearer(
            &format!("/api/v1/sites/palmeiras/statements/{MONTH}"),
            &f.token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v = json_of(&b)["data"].clone();
    assert_eq!(v["status"], "draft");
    assert_eq!(v["totals"]["total"], "36.04");
    assert_eq!(v["issuable"], true);
    assert_eq!(v["rejected"].as_array().unwrap().len(), 1);
    // A bad month names the field.
    let (s, _, b) = send(
        &f.app,
        get_bearer("/api/v1/sites/palmeiras/statements/2026-13", &f.token),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&b)["error"]["field"], "month");
}

async fn a_manager_of_another_site_gets_404(db: &TestDb) {
    let f = fixture(db).await;
    for path in [
        format!("/sites/palmeiras/statements?month={MONTH}"),
        format!("/sites/palmeiras/statements/{MONTH}.pdf"),
        format!("/sites/palmeiras/statements/{MONTH}.csv"),
        format!("/sites/palmeiras/statements/{MONTH}/apartments/A-302"),
        format!("/sites/palmeiras/statements/{MONTH}/apartments/A-302/pdf"),
        format!("/sites/palmeiras/statements/{MONTH}/rejeitadas"),
    ] {
        let (s, _, b) = send(&f.app, get_cookie(&path, &f.stranger)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {}", text(&b));
        assert!(!text(&b).contains("Maria"), "{path} leaked data");
    }
    let path = format!("/sites/palmeiras/statements/{MONTH}/issue");
    let (s, _, _) = send(
        &f.app,
        post_form(
            &path,
            &f.stranger,
            &[("expected_version", "0"), ("digest", "x")],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        f.store
            .statement_versions(f.home, LocalMonth::parse(MONTH).unwrap())
            .await
            .unwrap()
            .is_empty(),
        "nothing issued by a stranger"
    );
}

async fn late_data_makes_a_new_version_and_leaves_the_first(db: &TestDb) {
    let f = fixture(db).await;
    let month = LocalMonth::parse(MONTH).unwrap();
    assert_eq!(issue_via_form(&f).await, 1);
    let html = page(&f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    assert!(html.contains("Versão 1 emitida em"), "{html}");
    assert!(html.contains("por sindico@example.com"), "{html}");
    assert_eq!(by_id(&html, "statement-total"), "R$ 36,04");
    assert!(
        !html.contains("id=\"issue-button\""),
        "nothing to issue: {html}"
    );
    let v1 = f
        .store
        .issued_statement_version(f.home, month, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(format_money(v1.statement.totals.total), "36.04");
    // Audited with its author, in the issue's transaction.
    let audit = f.store.audit_log(50).await.unwrap();
    let issued: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "statement_issue")
        .collect();
    assert_eq!(issued.len(), 1, "{audit:?}");
    assert_eq!(issued[0].user_id, v1.issued_by);
    assert!(v1.issued_by.is_some());
    assert_eq!(issued[0].detail["version"], 1);

    // Issuing again with nothing changed is refused, and stores nothing.
    let path = format!("/sites/palmeiras/statements/{MONTH}/issue");
    let (s, _, b) = send(
        &f.app,
        post_form(
            &path,
            &f.manager,
            &[
                ("expected_version", "1"),
                ("digest", "x"),
                ("confirm", "sim"),
            ],
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        text(&b).contains("Nada mudou desde a versão 1"),
        "{}",
        text(&b)
    );
    let (s, _, b) = send(
        &f.app,
        Request::post(format!("/api/v1/sites/palmeiras/statements/{MONTH}/issue"))
            .header(header::AUTHORIZATION, format!("Bearer {}", f.token))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(json_of(&b)["error"]["code"], "nothing_changed");
    assert_eq!(
        f.store
            .statement_versions(f.home, month)
            .await
            .unwrap()
            .len(),
        1
    );

    // A late row of the vendor's export: Tuesday 10:00–11:00, 3 kWh off-peak = R$ 1,59.
    import(
        &f.store,
        f.home,
        &[session(
            48500,
            "AB12CD",
            "2026-03-10T10:00:00-03:00",
            1,
            3_000,
            0,
        )],
    )
    .await;
    let html = page(&f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    assert!(html.contains("Dados mudaram desde a versão 1"), "{html}");
    assert!(html.contains("Rascunho"), "{html}");
    assert_eq!(by_id(&html, "statement-total"), "R$ 37,63");
    let changes = &html[html.find("id=\"statement-changes\"").unwrap()..];
    assert!(changes.contains("A-302"), "{changes}");
    assert!(changes.contains("R$ 34,98") && changes.contains("R$ 36,57"));
    assert!(changes.contains("+R$ 1,59"), "{changes}");
    assert!(changes.contains("recargas novas: 48500"), "{changes}");
    assert!(html.contains("Emitir extrato (versão 2)"));

    // The API says so too, and refuses a stale expected_version.
    let (s, _, b) = send(
        &f.app,
        get_bearer(
            &format!("/api/v1/sites/palmeiras/statements/{MONTH}"),
            &f.token,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b)["data"].clone();
    assert_eq!(v["changes"][0]["apartment"], "A-302");
    assert_eq!(v["changes"][0]["added_sessions"][0], 48500);
    let (s, _, b) = send(
        &f.app,
        Request::post(format!(
            "/api/v1/sites/palmeiras/statements/{MONTH}/issue?expected_version=0"
        ))
        .header(header::AUTHORIZATION, format!("Bearer {}", f.token))
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(json_of(&b)["error"]["field"], "expected_version");

    // Re-issuing goes through the confirmation and makes version 2.
    assert_eq!(issue_via_form(&f).await, 2);
    let html = page(&f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    assert!(html.contains("Versão 2 emitida em"), "{html}");
    assert_eq!(by_id(&html, "statement-total"), "R$ 37,63");
    // Version 1 is exactly as it was issued.
    let again = f
        .store
        .issued_statement_version(f.home, month, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, v1);
    let old = page(
        &f,
        &format!("/sites/palmeiras/statements?month={MONTH}&version=1"),
    )
    .await;
    assert_eq!(by_id(&old, "statement-total"), "R$ 36,04");
    assert!(old.contains("substituída pela versão 2"), "{old}");
    let versions = f.store.statement_versions(f.home, month).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.total.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "37.63"), (1, "36.04")]
    );
    let (s, _, _) = get(
        &f,
        &format!("/sites/palmeiras/statements?month={MONTH}&version=3"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Runs poppler's `pdftotext` on `pdf`.
fn pdftotext(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!(
        "vetric-web-statement-{}-{}.pdf",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils) must be installed; .ci/run installs it");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The "Total" row's last number on the XLSX's "Resumo" sheet, in centavos.
fn xlsx_total_cents(bytes: &[u8]) -> i64 {
    use calamine::{Data, Reader, Xlsx};
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range("Resumo").unwrap();
    let row = range
        .rows()
        .find(|r| matches!(r.first(), Some(Data::String(s)) if s == "Total"))
        .expect("a Total row");
    let last = row
        .iter()
        .rev()
        .find_map(|c| match c {
            Data::Float(f) => Some(*f),
            Data::Int(i) => Some(*i as f64),
            _ => None,
        })
        .expect("a number in the Total row");
    (last * 100.0).round() as i64
}

async fn downloads_carry_the_pages_total(db: &TestDb) {
    let f = fixture(db).await;
    assert_eq!(issue_via_form(&f).await, 1);
    let html = page(&f, &format!("/sites/palmeiras/statements?month={MONTH}")).await;
    let total = by_id(&html, "statement-total");
    assert_eq!(total, "R$ 36,04");
    let number = total.trim_start_matches("R$ ");

    let (s, h, b) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}.csv?version=1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
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
            .contains("extrato-palmeiras-2026-03-v1.csv")
    );
    let csv = text(&b);
    let last = csv.lines().last().unwrap();
    assert!(last.starts_with("Total") || last.contains("Total"), "{csv}");
    assert!(last.ends_with(number), "{last} does not end with {number}");

    let (s, h, b) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}.xlsx?version=1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h[header::CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("extrato-palmeiras-2026-03-v1.xlsx")
    );
    assert_eq!(xlsx_total_cents(&b), 3604);

    let (s, h, b) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}.pdf?version=1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("extrato-palmeiras-2026-03-v1.pdf")
    );
    let pdf = pdftotext(&b);
    assert!(pdf.contains(number), "{number} not in the PDF:\n{pdf}");

    // The draft's files are named as drafts; the apartment's PDF carries its line's total.
    let (s, h, _) = get(&f, &format!("/sites/palmeiras/statements/{MONTH}.pdf")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("extrato-palmeiras-2026-03-rascunho.pdf")
    );
    let (s, h, b) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}/apartments/A-302/pdf?version=1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    assert!(pdftotext(&b).contains("34,98"));
    // A version that does not exist, and a format that is not offered.
    let (s, _, _) = get(
        &f,
        &format!("/sites/palmeiras/statements/{MONTH}.pdf?version=9"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(&f, &format!("/sites/palmeiras/statements/{MONTH}.doc")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

test_both_backends!(
    the_draft_page_shows_the_domain_totals,
    a_manager_of_another_site_gets_404,
    late_data_makes_a_new_version_and_leaves_the_first,
    downloads_carry_the_pages_total,
);
