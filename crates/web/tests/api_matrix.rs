//! The API matrix (issue #4 "Done when", RELIABILITY.md R7): one table, [`routes`], lists
//! every `/api/v1` route with who may call it, a valid body, its required fields and values it
//! must refuse; the tests below walk the table, so a new route is one more row:
//!
//! * the right role gets a 2xx in the envelope DESIGN.md names (`{"data": …}`, with
//!   `freshness` where the row says so);
//! * no credentials is a 401 in JSON; a manager of another site gets the same 404 as a site
//!   that does not exist (no existence oracle), also when guessing another site's ids; a
//!   manager on an admin-only route gets the current policy (404);
//! * every required field missing, every field of a wrong JSON type and every listed invalid
//!   value is a 4xx whose JSON error names the field, with the store unchanged (row counts of
//!   every table, plus the rows a PATCH could touch); invalid UTF-8, malformed JSON, a JSON
//!   non-object and a non-JSON content type are 4xx too; the residents import (a file body)
//!   gets unreadable files instead, each a 4xx naming `file`;
//! * a path parameter that is not UTF-8 is a JSON 400 naming the parameter;
//! * a body over the route's limit is a 413 and the next request is served (routes that read
//!   no body never buffer one: they must just not fail);
//! * bad query parameters are a 400 naming the parameter;
//! * the table, the router (read from `src/lib.rs`) and the OpenAPI document list the same
//!   routes, and every row reaches its handler.
//!
//! Every response seen here, errors included, is checked for the security headers (CSP with
//! `frame-ancestors 'none'`, `nosniff`, `Referrer-Policy`). The store-level tests run on both
//! backends.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use common::{PASSWORD, add_site, add_users, cycle, login, send, site_settings, text};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vetric_domain::{ConnectorStatus, Secret, Tag};
use vetric_store::testing::TestDb;
use vetric_store::{
    NewResident, ResidentId, Role, SiteId, Store, UnknownTagSighting, test_both_backends,
};
use vetric_web::input::BODY_LIMIT;
use vetric_web::settings::{SiteConfigured, VendorAccount};
use vetric_web::{AppState, router};

// ------------------------------------------------------------------------------ the table

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No login (login itself, the OpenAPI document).
    Public,
    /// Any logged-in user, on their own account.
    User,
    /// Admins and the managers of the site in the path.
    Site,
    /// Whoever the object in the path (a user, a personal token) belongs to or is managed by;
    /// anyone else gets the 404 of an id that does not exist.
    Owner,
    /// Admins only.
    Admin,
    /// Admins only, on a site in the path (the vendor connection test).
    SiteAdmin,
}

/// What a 2xx answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// `{"data": …}`.
    Data,
    /// `{"data": [...], "freshness": {"state", "as_of"}}`.
    DataFresh,
    /// `{"token": …}` (and a session cookie).
    Token,
    /// 204 and no body.
    Empty,
    /// The OpenAPI document itself.
    OpenApi,
    /// A bare object with these keys, no `{"data": …}` envelope (see the report: the user
    /// management routes answer this way).
    Bare(&'static [&'static str]),
}

/// The values a test fills a path template with.
struct Ctx {
    slug: &'static str,
    /// A resident of `slug`.
    id: i64,
    /// A tag in `slug`'s unknown-tag inbox.
    tag: &'static str,
    /// A resident of another site.
    foreign: i64,
    /// A user the manager of `slug` may manage (invited, no password yet).
    user: i64,
    /// A personal API token of the manager of `slug`.
    token: i64,
}

type BodyFn = fn(&Ctx) -> Value;
/// `(what, content type, bytes, status, field the error must name)`.
type BadFile = (
    &'static str,
    &'static str,
    Vec<u8>,
    StatusCode,
    Option<String>,
);

/// A body that is a file, not JSON (the residents import).
struct FileBody {
    content_type: &'static str,
    valid: fn() -> Vec<u8>,
    /// Files refused as a whole.
    bad: fn() -> Vec<BadFile>,
    /// The route's own body limit.
    limit: usize,
}
/// `(key set in the valid body, value, field the error must name)`.
type Invalid = (&'static str, Value, &'static str);

/// One `/api/v1` route.
struct Route {
    method: Method,
    /// As the router and the OpenAPI document spell it (`{slug}`, `{id}`, `{tag}`).
    path: &'static str,
    access: Access,
    ok: StatusCode,
    reply: Reply,
    /// A valid body; `None` when the route reads no body.
    body: Option<BodyFn>,
    /// Fields whose absence is refused.
    required: &'static [&'static str],
    /// Values refused (besides wrong JSON types, tried for every key of the valid body).
    invalid: fn(&Ctx) -> Vec<Invalid>,
    /// Fields that take a number or a string holding one (a number is no wrong type there).
    numeric: &'static [&'static str],
    /// Query strings refused, and the parameter the error must name.
    bad_query: &'static [(&'static str, &'static str)],
    /// A file body instead of JSON.
    file: Option<FileBody>,
    /// A query string sent with every request of the row.
    query: &'static str,
    /// Its happy path changes what other rows rely on (the manager's password, the invited
    /// user): it runs on a store of its own.
    isolated: bool,
    /// Why the happy path is not run here (it needs something the fixture lacks).
    no_happy_path: Option<&'static str>,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    ok: StatusCode,
    reply: Reply,
) -> Route {
    Route {
        method,
        path,
        access,
        ok,
        reply,
        body: None,
        required: &[],
        invalid: no_invalid,
        numeric: &[],
        bad_query: &[],
        file: None,
        query: "",
        isolated: false,
        no_happy_path: None,
    }
}

fn no_invalid(_: &Ctx) -> Vec<Invalid> {
    Vec::new()
}

impl Route {
    fn body(mut self, body: BodyFn, required: &'static [&'static str]) -> Self {
        self.body = Some(body);
        self.required = required;
        self
    }

    fn invalid(mut self, invalid: fn(&Ctx) -> Vec<Invalid>) -> Self {
        self.invalid = invalid;
        self
    }

    fn no_happy_path(mut self, why: &'static str) -> Self {
        self.no_happy_path = Some(why);
        self
    }

    fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    fn numeric(mut self, fields: &'static [&'static str]) -> Self {
        self.numeric = fields;
        self
    }

    fn bad_query(mut self, q: &'static [(&'static str, &'static str)]) -> Self {
        self.bad_query = q;
        self
    }

    fn file(mut self, file: FileBody, query: &'static str) -> Self {
        self.file = Some(file);
        self.query = query;
        self
    }

    /// The valid body: `(content type, bytes)`.
    fn valid_body(&self, c: &Ctx) -> Option<(&'static str, Vec<u8>)> {
        match (&self.body, &self.file) {
            (Some(b), _) => json_body(&b(c)),
            (None, Some(f)) => Some((f.content_type, (f.valid)())),
            (None, None) => None,
        }
    }

    /// The path filled from `c`, with the row's query.
    fn path(&self, c: &Ctx) -> String {
        let path = fill(self.path, c);
        if self.query.is_empty() {
            path
        } else {
            format!("{path}?{}", self.query)
        }
    }

    fn changes_state(&self) -> bool {
        self.method != Method::GET
    }

    /// `POST /api/v1/…` as the failure messages name it.
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

use Access::{Admin, Owner, Public, Site, SiteAdmin, User};
use Reply::{Bare, Data, DataFresh, Empty, OpenApi, Token};
const GET: Method = Method::GET;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;
const NO_CONTENT: StatusCode = StatusCode::NO_CONTENT;

/// Every `/api/v1` route, one row each (`route(method, path, who, 2xx, reply)` and what its
/// body takes). Adding a route to the router means adding a row here: the coverage test names
/// the missing one.
#[rustfmt::skip]
fn routes() -> Vec<Route> {
    vec![
        route(POST, "/api/v1/auth/login", Public, OK, Token).body(login_body, &["email", "password"]).invalid(login_invalid),
        route(POST, "/api/v1/auth/logout", User, NO_CONTENT, Empty),
        route(POST, "/api/v1/auth/password", User, OK, Token).body(password_body, &["current_password", "new_password"]).invalid(password_invalid).isolated(),
        route(GET, "/api/v1/audit", Admin, OK, Data).bad_query(&[("limit=0", "limit"), ("before=abc", "before"), ("x=1", "x")]),
        route(GET, "/api/v1/users", User, OK, Data),
        route(POST, "/api/v1/users/invite", User, CREATED, Bare(&["user_id", "invite_url"])).body(invite_body, &["email", "role", "sites"]).invalid(invite_invalid),
        route(POST, "/api/v1/users/{id}/reinvite", Owner, OK, Bare(&["user_id", "invite_url"])),
        route(POST, "/api/v1/users/{id}/deactivate", Owner, OK, Bare(&["user"])).isolated(),
        route(POST, "/api/v1/users/{id}/reactivate", Owner, OK, Bare(&["user"])),
        route(GET, "/api/v1/account/tokens", User, OK, Data),
        route(POST, "/api/v1/account/tokens", User, CREATED, Bare(&["id", "token"])).body(token_body, &["name"]).invalid(token_invalid),
        route(DELETE, "/api/v1/account/tokens/{id}", Owner, NO_CONTENT, Empty),
        route(GET, "/api/v1/sites", User, OK, Data),
        route(GET, "/api/v1/sites/{slug}/chargers", Site, OK, DataFresh),
        route(GET, "/api/v1/sites/{slug}/sessions", Site, OK, DataFresh).bad_query(&[("from=ontem", "from"), ("limit=0", "limit"), ("limt=5", "limt")]),
        route(GET, "/api/v1/sites/{slug}/residents", Site, OK, Data).bad_query(&[("q=", "q"), ("nome=Maria", "nome")]),
        route(POST, "/api/v1/sites/{slug}/residents", Site, CREATED, Data).body(resident_body, &["name", "block", "unit", "phone"]).invalid(resident_invalid),
        route(GET, "/api/v1/sites/{slug}/residents/{id}", Site, OK, Data),
        route(PATCH, "/api/v1/sites/{slug}/residents/{id}", Site, OK, Data).body(patch_body, &[]).invalid(patch_invalid),
        route(POST, "/api/v1/sites/{slug}/residents/{id}/tags", Site, CREATED, Data).body(tag_body, &["tag"]).invalid(tag_invalid),
        route(POST, "/api/v1/sites/{slug}/residents/import", Site, OK, Data).file(import_file(), "commit=true").bad_query(&[("commit=talvez", "commit"), ("x=1", "x")]),
        route(GET, "/api/v1/sites/{slug}/tariffs", Site, OK, Data),
        route(POST, "/api/v1/sites/{slug}/tariffs", Site, CREATED, Data).body(tariff_body, &["effective_from", "peak_price", "offpeak_price"]).invalid(tariff_invalid)
            .numeric(&["peak_price", "offpeak_price", "idle_grace_min", "idle_fee_per_min", "idle_fee_cap", "max_kwh"]),
        route(POST, "/api/v1/sites/{slug}/vendor/test", SiteAdmin, OK, Data),
        route(GET, "/api/v1/sites/{slug}/notifications", Site, OK, Data),
        route(POST, "/api/v1/sites/{slug}/notifications/{id}/resend", Site, OK, Data).no_happy_path("needs a failed outbox row (tests/notifications.rs)"),
        route(POST, "/api/v1/sites/{slug}/notifications/{id}/resolve", Site, OK, Data).body(resolve_body, &["decision"]).invalid(resolve_invalid)
            .no_happy_path("needs an outbox row in doubt (tests/notifications_in_doubt.rs)"),
        route(POST, "/api/v1/sites/{slug}/notifications/test", SiteAdmin, CREATED, Data).body(notify_test_body, &["phone"]).invalid(notify_test_invalid)
            .no_happy_path("needs a WhatsApp gateway; without one it is a 409 no_gateway"),
        route(POST, "/api/v1/sites/{slug}/notifications/gateway-check", SiteAdmin, OK, Data).no_happy_path("needs a WhatsApp gateway; without one it is a 409 no_gateway"),
        route(GET, "/api/v1/sites/{slug}/notification-policy", Site, OK, Data),
        route(PUT, "/api/v1/sites/{slug}/notification-policy", Site, OK, Data).body(policy_body, &[]).invalid(policy_invalid),
        route(GET, "/api/v1/sites/{slug}/residents/{id}/notification-prefs", Site, OK, Data),
        route(PUT, "/api/v1/sites/{slug}/residents/{id}/notification-prefs", Site, OK, Data).body(prefs_body, &[]).invalid(prefs_invalid),
        route(GET, "/api/v1/sites/{slug}/unknown-tags", Site, OK, Data).bad_query(&[("tag=FEED01", "tag")]),
        route(POST, "/api/v1/sites/{slug}/unknown-tags/{tag}/assign", Site, CREATED, Data).body(assign_body, &["resident_id"]).invalid(assign_invalid),
        route(GET, "/api/v1/sites/{slug}/statements/{month}", Site, OK, Data).bad_query(&[("version=0", "version"), ("versao=1", "versao")]),
        route(POST, "/api/v1/sites/{slug}/statements/{month}/issue", Site, CREATED, Data).bad_query(&[("expected_version=abc", "expected_version"), ("x=1", "x")]),
        route(POST, "/api/v1/sites/{slug}/statements/import", Site, OK, Data).file(export_file(), "commit=true").bad_query(&[("commit=talvez", "commit"), ("x=1", "x")]),
        route(GET, "/api/v1/sites/{slug}/reports", Site, OK, Data).bad_query(&[("month=2026-13", "month"), ("x=1", "x")]),
        route(POST, "/api/v1/sites/{slug}/reports", Site, CREATED, Data).file(pdf_file(), "month=2026-03&title=Ata").bad_query(&[("month=marco", "month"), ("x=1", "x")]),
        route(GET, "/api/v1/sites/{slug}/reports/{id}", Site, OK, Data).no_happy_path("answers the PDF itself and needs an uploaded file (tests/statement_import.rs)"),
        route(DELETE, "/api/v1/sites/{slug}/reports/{id}", Site, NO_CONTENT, Empty).no_happy_path("needs an uploaded file (tests/statement_import.rs)"),
        route(GET, "/api/v1/openapi.json", Public, OK, OpenApi),
    ]
}

// ------------------------------------------------------------------- bodies of the table

const NEW_PASSWORD: &str = "outra senha comprida 456";

fn login_body(_: &Ctx) -> Value {
    json!({ "email": MANAGER, "password": PASSWORD })
}

fn login_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("email", json!(""), "email"),
        ("email", json!("a".repeat(300)), "email"),
        ("password", json!("x".repeat(2000)), "password"),
    ]
}

fn password_body(_: &Ctx) -> Value {
    json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })
}

fn password_invalid(_: &Ctx) -> Vec<Invalid> {
    // A wrong current password is left out: it is audited on purpose (a stored row).
    vec![
        ("current_password", json!(""), "current_password"),
        ("new_password", json!("curta"), "new_password"),
        ("new_password", json!(PASSWORD), "new_password"),
        ("new_password", json!("x".repeat(1100)), "new_password"),
    ]
}

fn resident_body(_: &Ctx) -> Value {
    json!({
        "name": "João Pereira", "block": "B", "unit": "101", "phone": "+55 21 98765-4321",
        "email": "joao@example.com",
        "tags": [{ "tag": "CAFE01", "valid_from": "2026-01-01", "valid_to": "2030-01-01" }],
    })
}

fn resident_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("name", json!("   "), "name"),
        ("name", json!("n".repeat(201)), "name"),
        ("block", json!(""), "block"),
        ("unit", json!("u\u{7}"), "unit"),
        ("phone", json!("12345"), "phone"),
        ("phone", json!("+55 00 91234-5678"), "phone"),
        ("email", json!("sem-arroba"), "email"),
        ("tags", json!([1]), "tags[0]"),
        ("tags", json!([{ "tag": "não pode!" }]), "tags[0].tag"),
        ("tags", json!([{ "tag": 7 }]), "tags[0].tag"),
        (
            "tags",
            json!([{ "tag": "CAFE01", "valid_from": "ontem" }]),
            "tags[0].valid_from",
        ),
        (
            "tags",
            json!([{ "tag": "CAFE01", "valid_from": "2026-02-01", "valid_to": "2026-01-01" }]),
            "tags[0].valid_to",
        ),
        (
            "tags",
            json!([{ "tag": "CAFE01" }, { "tag": "cafe01" }]),
            "tags[1].tag",
        ),
        // Maria owns AAA1 since 2025: a conflict, named at the tag.
        (
            "tags",
            json!([{ "tag": "CAFE01" }, { "tag": "AAA1" }]),
            "tags[1].tag",
        ),
        ("tags", json!(vec![json!({ "tag": "T1" }); 21]), "tags"),
    ]
}

fn patch_body(_: &Ctx) -> Value {
    json!({
        "name": "Maria S. Silva", "block": "A", "unit": "303", "phone": "+55 11 91234-0000",
        "email": "maria@example.com", "active": true,
    })
}

fn patch_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("name", Value::Null, "name"),
        ("name", json!(""), "name"),
        ("unit", json!("u".repeat(41)), "unit"),
        ("phone", json!("9999"), "phone"),
        ("email", json!("a@b"), "email"),
        ("apelido", json!("Mari"), "apelido"),
    ]
}

fn tag_body(_: &Ctx) -> Value {
    json!({ "tag": "BEEF02", "valid_from": "2026-01-01", "valid_to": "2027-01-01" })
}

fn tag_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("tag", json!(""), "tag"),
        ("tag", json!("T".repeat(65)), "tag"),
        ("tag", json!("com espaço"), "tag"),
        ("valid_from", json!("ontem"), "valid_from"),
        ("valid_to", json!("2025-12-31"), "valid_to"),
        // Maria already owns AAA1: a conflict, named at the tag.
        ("tag", json!("AAA1"), "tag"),
    ]
}

fn invite_body(_: &Ctx) -> Value {
    json!({ "email": "novo@example.com", "role": "manager", "sites": ["palmeiras"] })
}

fn invite_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("email", json!(""), "email"),
        ("email", json!("sem-arroba"), "email"),
        // Taken: a conflict, named at the e-mail.
        ("email", json!(STRANGER), "email"),
        ("role", json!("dono"), "role"),
        // A manager may not invite an admin (403, named at the role).
        ("role", json!("admin"), "role"),
        ("sites", json!([]), "sites"),
        ("sites", json!([1]), "sites"),
        // Not the inviter's site: the same answer as a site that does not exist.
        ("sites", json!(["outro"]), "sites"),
        ("sites", json!(["nao-existe"]), "sites"),
    ]
}

fn token_body(_: &Ctx) -> Value {
    json!({ "name": "integração do portal" })
}

fn token_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("name", json!("  "), "name"),
        ("name", json!("n".repeat(101)), "name"),
        ("name", json!("linha\nquebrada"), "name"),
    ]
}

fn tariff_body(_: &Ctx) -> Value {
    json!({
        "effective_from": "2026-01-01", "peak_price": "3.08", "offpeak_price": "1.20",
        "peak_start": "18:00", "peak_end": "21:00",
        "peak_weekdays": ["mon", "tue", "wed", "thu", "fri"], "holidays": ["2026-12-25"],
        "idle_grace_min": "15", "idle_fee_per_min": "0.50", "idle_fee_cap": "30.00",
        "max_kwh": "100",
    })
}

fn tariff_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("effective_from", json!("ontem"), "effective_from"),
        ("peak_price", json!("abc"), "peak_price"),
        ("peak_price", json!(3.08), "peak_price"),
        ("peak_price", json!("-1"), "peak_price"),
        ("offpeak_price", json!(""), "offpeak_price"),
        ("peak_start", json!("25:00"), "peak_start"),
        ("peak_end", json!("17:00"), "peak_end"),
        ("peak_weekdays", json!(["segunda"]), "peak_weekdays"),
        ("peak_weekdays", json!([1]), "peak_weekdays[0]"),
        ("holidays", json!(["2026-13-01"]), "holidays"),
        ("idle_grace_min", json!("-5"), "idle_grace_min"),
        ("max_kwh", json!("0"), "max_kwh"),
        ("tarifa", json!("x"), "tarifa"),
    ]
}

fn notify_test_body(_: &Ctx) -> Value {
    json!({ "phone": "+55 11 91234-5678", "key": "teste-1" })
}

fn notify_test_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("phone", json!("123"), "phone"),
        ("key", json!("com espaço"), "key"),
    ]
}

fn resolve_body(_: &Ctx) -> Value {
    json!({ "decision": "resend" })
}

fn resolve_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("decision", json!(""), "decision"),
        ("decision", json!("reenviar"), "decision"),
        ("decision", json!("SENT"), "decision"),
        ("nota", json!("conferi no celular"), "nota"),
    ]
}

fn policy_body(_: &Ctx) -> Value {
    json!({ "reminder_interval_min": 30, "reminder_max": 3, "charger_offline_min": 30 })
}

fn policy_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("reminder_max", json!(-1), "reminder_max"),
        ("reminder_interval_min", json!(1.5), "reminder_interval_min"),
        ("lembrete", json!(1), "lembrete"),
    ]
}

fn prefs_body(_: &Ctx) -> Value {
    json!({ "opted_out": [], "quiet_hours": { "start": "22:00", "end": "07:00" } })
}

fn prefs_invalid(_: &Ctx) -> Vec<Invalid> {
    vec![
        ("opted_out", json!(["nada"]), "opted_out[0]"),
        ("opted_out", json!([1]), "opted_out[0]"),
        ("silencio", json!(true), "silencio"),
    ]
}

const CSV: &str = "text/csv";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn import_file() -> FileBody {
    FileBody {
        content_type: CSV,
        valid: || {
            b"nome;bloco;unidade;telefone;email;tags\n\
              Ana Lima;C;12;+55 31 99876-5432;ana@example.com;ABCD12\n"
                .to_vec()
        },
        bad: || {
            let mut utf8 = b"nome;bloco;unidade;telefone\nAna ".to_vec();
            utf8.extend_from_slice(&[0xc3, 0x28]);
            utf8.extend_from_slice(b";C;12;+55 31 99876-5432\n");
            let file = || Some("file".to_owned());
            vec![
                (
                    "invalid UTF-8",
                    CSV,
                    utf8,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    file(),
                ),
                (
                    "empty file",
                    CSV,
                    Vec::new(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    file(),
                ),
                (
                    "no telefone column",
                    CSV,
                    b"nome;bloco;unidade\nAna;C;12\n".to_vec(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    file(),
                ),
                (
                    "header only",
                    CSV,
                    b"nome;bloco;unidade;telefone\n".to_vec(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    file(),
                ),
                (
                    "not an XLSX",
                    XLSX,
                    b"PK\x03\x04 not a zip".to_vec(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    file(),
                ),
                (
                    "JSON content type",
                    "application/json",
                    b"{}".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    None,
                ),
                (
                    "no content type",
                    "",
                    b"a;b\n".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    None,
                ),
            ]
        },
        limit: vetric_web::residents_import::FILE_LIMIT,
    }
}

/// The vendor's export (statement import): one good row.
fn export_file() -> FileBody {
    FileBody {
        content_type: XLSX,
        valid: || {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            let rows = [
                [
                    "Recarga(ID)",
                    "Estação",
                    "Usuário(Tag)",
                    "Início - Fim",
                    "Energia(kWh)",
                    "Tempo de ociosidade",
                ],
                [
                    "9001",
                    "Vaga 1",
                    "AAA1",
                    "05/03/2026 16:30 - 05/03/2026 18:30",
                    "10,000",
                    "00:40:00",
                ],
            ];
            for (r, row) in rows.iter().enumerate() {
                for (c, v) in row.iter().enumerate() {
                    ws.write_string(r as u32, c as u16, *v).unwrap();
                }
            }
            wb.save_to_buffer().unwrap()
        },
        bad: || {
            let mut wb = rust_xlsxwriter::Workbook::new();
            wb.add_worksheet().write_string(0, 0, "Nome").unwrap();
            let not_export = wb.save_to_buffer().unwrap();
            let file = || Some("file".to_owned());
            let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
            vec![
                (
                    "not an XLSX",
                    XLSX,
                    b"PK\x03\x04 not a zip".to_vec(),
                    unprocessable,
                    file(),
                ),
                ("empty file", XLSX, Vec::new(), unprocessable, file()),
                ("no export columns", XLSX, not_export, unprocessable, file()),
                (
                    "CSV content type",
                    CSV,
                    b"Recarga(ID);Estacao\n".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    None,
                ),
                (
                    "no content type",
                    "",
                    b"a".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    None,
                ),
            ]
        },
        limit: vetric_web::statement_import::FILE_LIMIT,
    }
}

/// A PDF for the report library.
fn pdf_file() -> FileBody {
    FileBody {
        content_type: "application/pdf",
        valid: || b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n".to_vec(),
        bad: || {
            let file = || Some("file".to_owned());
            let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
            vec![
                (
                    "PNG renamed",
                    "application/pdf",
                    b"\x89PNG\r\n\x1a\n".to_vec(),
                    unprocessable,
                    file(),
                ),
                (
                    "empty file",
                    "application/pdf",
                    Vec::new(),
                    unprocessable,
                    file(),
                ),
                (
                    "truncated PDF",
                    "application/pdf",
                    b"%PDF-1.4\n1 0 obj\n".to_vec(),
                    unprocessable,
                    file(),
                ),
                (
                    "JSON content type",
                    "application/json",
                    b"{}".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    None,
                ),
            ]
        },
        limit: vetric_web::report_library::FILE_LIMIT,
    }
}

fn assign_body(c: &Ctx) -> Value {
    json!({ "resident_id": c.id, "valid_from": "2026-03-01" })
}

fn assign_invalid(c: &Ctx) -> Vec<Invalid> {
    vec![
        // A resident of another site is no resident here.
        ("resident_id", json!(c.foreign), "resident_id"),
        ("resident_id", json!(0), "resident_id"),
        ("resident_id", json!(-3), "resident_id"),
        ("resident_id", json!(999_999), "resident_id"),
        ("resident_id", json!("abc"), "resident_id"),
        ("valid_from", json!("ontem"), "valid_from"),
        ("valid_from", json!("x".repeat(100)), "valid_from"),
    ]
}

/// Values of another JSON type than `v`'s.
fn wrong_types(v: &Value) -> Vec<Value> {
    match v {
        Value::String(_) => vec![json!(42), json!(true), json!([]), json!({})],
        Value::Number(_) => vec![json!(true), json!([1]), json!({})],
        Value::Bool(_) => vec![json!("sim"), json!(1), json!([])],
        Value::Array(_) => vec![json!("x"), json!(1), json!({})],
        Value::Object(_) | Value::Null => vec![json!(1), json!("x")],
    }
}

// ---------------------------------------------------------------------------- fixture

const ADMIN: &str = "admin@example.com";
/// Manages `palmeiras` only.
const MANAGER: &str = "sindico@example.com";
/// Manages `outro` only.
const STRANGER: &str = "alheio@example.com";

struct Fixture {
    app: Router,
    store: Store,
    home: SiteId,
    other: SiteId,
    /// Maria, a resident of `palmeiras` (owns tag AAA1).
    maria: ResidentId,
    /// Zé, a resident of `outro`.
    foreign: ResidentId,
    /// A manager of `palmeiras` invited by the admin (no password yet).
    invited: i64,
    /// A personal token of the manager.
    personal_token: i64,
    admin: String,
    manager: String,
    stranger: String,
}

impl Fixture {
    fn ctx(&self) -> Ctx {
        Ctx {
            slug: "palmeiras",
            id: self.maria.0,
            tag: "FEED01",
            foreign: self.foreign.0,
            user: self.invited,
            token: self.personal_token,
        }
    }

    /// The bearer token of the role a route wants.
    fn token_for(&self, access: Access) -> Option<&str> {
        match access {
            Public => None,
            Admin | SiteAdmin => Some(&self.admin),
            User | Site | Owner => Some(&self.manager),
        }
    }
}

async fn resident(store: &Store, site: SiteId, name: &str, phone: &str) -> ResidentId {
    store
        .add_resident(
            site,
            &NewResident {
                name: name.into(),
                phone: phone.into(),
                email: None,
                block: "A".into(),
                unit: "302".into(),
            },
        )
        .await
        .unwrap()
}

/// Two sites with a charger each; an admin, a manager of `palmeiras` and one of `outro`;
/// Maria (AAA1) in `palmeiras` with FEED01 in its inbox, Zé in `outro` with D00D02 in its.
async fn fixture(db: &TestDb) -> Fixture {
    let store = db.store.clone();
    let home = add_site(&store, "palmeiras", "Jardim Palmeiras").await;
    let other = add_site(&store, "outro", "Outro Condomínio").await;
    let now = Utc::now();
    for (site, tag) in [(home, "FEED01"), (other, "D00D02")] {
        let mut c = cycle(now, ConnectorStatus::Available);
        c.unknown_tags = vec![UnknownTagSighting {
            tag: Tag::parse(tag).unwrap(),
            at: now,
            charger_uuid: Some("c1".into()),
            session_vendor_id: None,
        }];
        store.write_cycle(site, &c).await.unwrap();
    }
    add_users(
        &store,
        vec![
            (ADMIN, Role::Admin, vec![]),
            (MANAGER, Role::Manager, vec![home]),
            (STRANGER, Role::Manager, vec![other]),
        ],
    )
    .await;
    let maria = resident(&store, home, "Maria Silva", "5511912345678").await;
    let since: DateTime<Utc> = "2025-01-01T03:00:00Z".parse().unwrap();
    store
        .add_tag(home, maria, &Tag::parse("AAA1").unwrap(), since, None)
        .await
        .unwrap();
    let foreign = resident(&store, other, "Zé Souza", "5521987654321").await;
    let state = AppState::new(
        store.clone(),
        vec![
            site_settings(home, "palmeiras", "Jardim Palmeiras"),
            site_settings(other, "outro", "Outro Condomínio"),
        ],
        Some(common::ORIGIN.parse().unwrap()),
        CancellationToken::new(),
    )
    // A vendor that refuses connections: "Testar conexão" runs and reports the failure.
    .with_site_config(vec![SiteConfigured {
        site: home,
        heartbeat_offline_after: Duration::from_secs(900),
        vendor: Some(VendorAccount {
            base_url: "http://127.0.0.1:9/".parse().unwrap(),
            email: "api@example.com".into(),
            api_key: Secret::new("chave"),
            password: Secret::new("senha"),
        }),
        tariff_in_config: false,
    }])
    .with_probe_timeout(Duration::from_secs(3));
    let app = router(state);
    let (_, admin) = login(&app, ADMIN).await;
    let (_, manager) = login(&app, MANAGER).await;
    let (_, stranger) = login(&app, STRANGER).await;
    let created = |path: &str, token: &str, body: Value| {
        let req = request(&POST, path, Some(token), json_body(&body));
        let app = app.clone();
        async move {
            let (s, _, b) = send(&app, req).await;
            assert_eq!(s, StatusCode::CREATED, "fixture: {}", text(&b));
            serde_json::from_slice::<Value>(&b).unwrap()
        }
    };
    let invite =
        json!({ "email": "convidado@example.com", "role": "manager", "sites": ["palmeiras"] });
    let invited = created("/api/v1/users/invite", &admin, invite).await["user_id"]
        .as_i64()
        .unwrap();
    let personal_token = created("/api/v1/account/tokens", &manager, json!({ "name": "cli" }))
        .await["id"]
        .as_i64()
        .unwrap();
    Fixture {
        app,
        store,
        home,
        other,
        maria,
        foreign,
        invited,
        personal_token,
        admin,
        manager,
        stranger,
    }
}

/// What a refused request must leave as it was: the row count of every table, and the rows
/// an update could change in place (residents, tags, the inbox, the manager's password).
async fn snapshot(db: &TestDb, f: &Fixture) -> String {
    let s = &f.store;
    let mut out = format!("{:?}\n", db.row_counts().await);
    for site in [f.home, f.other] {
        out += &format!("{:?}\n", s.residents(site).await.unwrap());
        out += &format!("{:?}\n", s.tag_directory(site).await.unwrap());
        out += &format!("{:?}\n", s.unknown_tags(site).await.unwrap());
    }
    let creds = s.user_credentials(MANAGER).await.unwrap().unwrap();
    out + &creds.password_hash
}

/// Fails naming `case` and only the lines of the snapshot that changed.
fn assert_unchanged(before: &str, after: &str, case: &str) {
    if before == after {
        return;
    }
    let changed: Vec<String> = before
        .lines()
        .zip(after.lines())
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("\n  before: {b}\n  after:  {a}"))
        .collect();
    panic!("{case}: the store changed:{}", changed.concat());
}

// ---------------------------------------------------------------------------- requests

/// `template` with `{slug}`, `{id}` (a user, a token or a resident, by the path) and `{tag}`
/// filled from `c`.
fn fill(template: &str, c: &Ctx) -> String {
    let id = if template.contains("/users/{id}") {
        c.user
    } else if template.contains("/tokens/{id}") {
        c.token
    } else {
        c.id
    };
    template
        .replace("{slug}", c.slug)
        .replace("{id}", &id.to_string())
        .replace("{tag}", c.tag)
        // Statements: a month with nothing in it (an empty statement may still be issued).
        .replace("{month}", "2026-03")
}

fn request(
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Request<Body> {
    let mut b = Request::builder().method(method.clone()).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(("", bytes)) => b.body(Body::from(bytes)).unwrap(),
        Some((content_type, bytes)) => b
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

fn json_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

/// Sends `req`; every answer, errors included, must carry the security headers.
async fn call(app: &Router, req: Request<Body>, case: &str) -> (StatusCode, HeaderMap, Bytes) {
    let (s, h, b) = send(app, req).await;
    assert_security_headers(&h, case);
    (s, h, b)
}

fn assert_security_headers(h: &HeaderMap, case: &str) {
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{case}: no Content-Security-Policy"));
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{case}: CSP without frame-ancestors 'none': {csp}"
    );
    assert_eq!(
        h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{case}: X-Content-Type-Options"
    );
    assert!(
        h.contains_key(header::REFERRER_POLICY),
        "{case}: no Referrer-Policy"
    );
}

/// The JSON error of a 4xx/5xx answer; fails naming `case` when it is not one.
fn error_of(case: &str, h: &HeaderMap, b: &Bytes) -> Value {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{case}: error is not JSON ({ct}): {}",
        text(b)
    );
    let v: Value = serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("{case}: error body is not JSON ({e}): {}", text(b)));
    let e = v["error"].clone();
    assert!(
        e["code"].is_string() && e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: not an {{\"error\": {{code, message}}}} body: {v}"
    );
    e
}

/// A 4xx whose error names `field`.
fn assert_names_field(case: &str, s: StatusCode, h: &HeaderMap, b: &Bytes, field: &str) {
    assert!(
        s.is_client_error(),
        "{case}: expected a 4xx naming {field}, got {s}: {}",
        text(b)
    );
    let e = error_of(case, h, b);
    assert_eq!(
        e["field"], field,
        "{case}: error names the wrong field: {e}"
    );
}

/// `body` with `key` set to `value` (or removed when `value` is `None`).
fn with(body: &Value, key: &str, value: Option<&Value>) -> Value {
    let mut b = body.clone();
    let map = b.as_object_mut().unwrap();
    match value {
        Some(v) => {
            map.insert(key.to_owned(), v.clone());
        }
        None => {
            map.remove(key);
        }
    }
    b
}

// ------------------------------------------------------------------------------- tests

/// (1) The right role gets a 2xx in the promised envelope. Each row logs in afresh (a logout
/// ends only its own token); isolated rows run on a store of their own.
async fn right_role_gets_the_envelope(db: &TestDb) {
    let shared = fixture(db).await;
    for r in routes().iter() {
        if let Some(why) = r.no_happy_path {
            eprintln!("{}: happy path not run here: {why}", r.name());
            continue;
        }
        let own_db = match r.isolated {
            true => Some(TestDb::new(db.backend()).await),
            false => None,
        };
        let own = match &own_db {
            Some(own_db) => Some(fixture(own_db).await),
            None => None,
        };
        let f = own.as_ref().unwrap_or(&shared);
        let c = f.ctx();
        let path = r.path(&c);
        let case = format!("{} [happy path]", r.name());
        let token = match r.access {
            Public => None,
            Admin | SiteAdmin => Some(login(&f.app, ADMIN).await.1),
            User | Site | Owner => Some(login(&f.app, MANAGER).await.1),
        };
        let req = request(&r.method, &path, token.as_deref(), r.valid_body(&c));
        let (s, h, b) = call(&f.app, req, &case).await;
        assert_eq!(s, r.ok, "{case}: {}", text(&b));
        assert_reply(&case, r.reply, &h, &b);
        // Admins see every site: the reads of a site answer them too.
        if r.access == Site && !r.changes_state() {
            let case = format!("{} [admin reads]", r.name());
            let req = request(&r.method, &path, Some(&f.admin), None);
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_eq!(s, r.ok, "{case}: {}", text(&b));
            assert_reply(&case, r.reply, &h, &b);
        }
    }
}

fn assert_reply(case: &str, reply: Reply, h: &HeaderMap, b: &Bytes) {
    if reply == Empty {
        assert!(b.is_empty(), "{case}: a 204 with a body: {}", text(b));
        return;
    }
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{case}: content type {ct}"
    );
    let v: Value = serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("{case}: body is not JSON ({e}): {}", text(b)));
    match reply {
        Data => assert!(
            v["data"].is_object() || v["data"].is_array(),
            "{case}: no \"data\": {v}"
        ),
        DataFresh => {
            assert!(v["data"].is_array(), "{case}: no \"data\" list: {v}");
            let state = v["freshness"]["state"].as_str().unwrap_or("");
            assert!(
                ["fresh", "stale", "offline"].contains(&state),
                "{case}: freshness.state {state:?}: {v}"
            );
            assert!(
                v["freshness"].get("as_of").is_some(),
                "{case}: no freshness.as_of: {v}"
            );
        }
        Token => {
            assert!(
                v["token"].as_str().is_some_and(|t| t.len() >= 32),
                "{case}: no token: {v}"
            );
            assert!(
                h.get(header::SET_COOKIE).is_some(),
                "{case}: no session cookie"
            );
        }
        OpenApi => assert!(
            v["openapi"].as_str().is_some_and(|s| s.starts_with("3.")),
            "{case}: not an OpenAPI document"
        ),
        Bare(keys) => {
            for k in keys {
                assert!(v.get(k).is_some(), "{case}: no {k:?} in {v}");
            }
        }
        Empty => unreachable!(),
    }
}

/// (2) No credentials, a bad token, a manager of another site, a manager guessing another
/// site's ids, someone else's user or token, a manager on an admin route: refused exactly
/// like something that does not exist, and nothing stored.
async fn wrong_callers_are_refused(db: &TestDb) {
    let f = fixture(db).await;
    let c = f.ctx();
    let before = snapshot(db, &f).await;
    let bogus = "0".repeat(64);
    // Nothing of the sort exists: what "not found" looks like, to compare with.
    let missing = Ctx {
        slug: "nao-existe",
        id: 999_999,
        tag: "NAOHA1",
        foreign: 999_999,
        user: 999_999,
        token: 999_999,
    };
    for r in routes().iter().filter(|r| r.access != Public) {
        let path = r.path(&c);
        let body = || r.valid_body(&c);
        for token in [None, Some(bogus.as_str())] {
            let who = if token.is_some() {
                "unknown token"
            } else {
                "no credentials"
            };
            let case = format!("{} [{who}]", r.name());
            let (s, h, b) = call(&f.app, request(&r.method, &path, token, body()), &case).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{case}: {}", text(&b));
            assert_eq!(error_of(&case, &h, &b)["code"], "unauthorized", "{case}");
        }
        match r.access {
            Site | Owner | SiteAdmin => {
                let case = format!("{} [does not exist]", r.name());
                let req = request(&r.method, &r.path(&missing), Some(&f.admin), body());
                let (s, h, nothing) = call(&f.app, req, &case).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "{case}: {}", text(&nothing));
                error_of(&case, &h, &nothing);

                let case = format!("{} [manager of another site]", r.name());
                let req = request(&r.method, &path, Some(&f.stranger), body());
                let (s, _, b) = call(&f.app, req, &case).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "{case}: {}", text(&b));
                assert_eq!(b, nothing, "{case}: differs from a missing one (an oracle)");

                if r.access == Site && (r.path.contains("{id}") || r.path.contains("{tag}")) {
                    let guess = Ctx {
                        id: f.foreign.0,
                        tag: "D00D02",
                        ..f.ctx()
                    };
                    let case = format!("{} [another site's id on my site]", r.name());
                    let req = request(&r.method, &r.path(&guess), Some(&f.manager), body());
                    let (s, _, b) = call(&f.app, req, &case).await;
                    assert_eq!(s, StatusCode::NOT_FOUND, "{case}: {}", text(&b));
                    assert_eq!(b, nothing, "{case}: differs from a missing one");
                }
            }
            Admin | User | Public => {}
        }
        if matches!(r.access, Admin | SiteAdmin) {
            // Current policy: an admin-only route is a 404 to anyone else, like a route that
            // does not exist (never 403), even to the manager of the site in the path.
            let case = format!("{} [manager on an admin route]", r.name());
            let req = request(&r.method, &path, Some(&f.manager), body());
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{case}: {}", text(&b));
            assert_eq!(error_of(&case, &h, &b)["code"], "not_found", "{case}");
        }
    }
    assert_unchanged(
        &before,
        &snapshot(db, &f).await,
        "a refused caller stored something",
    );
}

/// (3) Every required field missing, every field of a wrong JSON type, every listed invalid
/// value: a 4xx naming the field, and nothing stored.
async fn bad_fields_are_named_and_store_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let c = f.ctx();
    let before = snapshot(db, &f).await;
    for r in routes().iter() {
        let Some(valid) = r.body.map(|b| b(&c)) else {
            continue;
        };
        let path = r.path(&c);
        let token = f.token_for(r.access);
        let mut cases: Vec<(String, Value, &str)> = Vec::new();
        for field in r.required {
            assert!(
                valid.get(field).is_some(),
                "{}: required field {field} is not in the valid body",
                r.name()
            );
            cases.push((format!("missing {field}"), with(&valid, field, None), field));
            let null = with(&valid, field, Some(&Value::Null));
            cases.push((format!("null {field}"), null, field));
        }
        for (key, v) in valid.as_object().unwrap() {
            let numeric = r.numeric.contains(&key.as_str());
            for wrong in wrong_types(v)
                .into_iter()
                .filter(|w| !(numeric && w.is_number()))
            {
                let body = with(&valid, key, Some(&wrong));
                cases.push((format!("{key} = {wrong}"), body, key));
            }
        }
        for (key, v, field) in (r.invalid)(&c) {
            let shown: String = v.to_string().chars().take(40).collect();
            cases.push((
                format!("{key} = {shown}"),
                with(&valid, key, Some(&v)),
                field,
            ));
        }
        for (what, body, field) in cases {
            let case = format!("{} [{what}]", r.name());
            let req = request(&r.method, &path, token, json_body(&body));
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_names_field(&case, s, &h, &b, field);
            assert_unchanged(&before, &snapshot(db, &f).await, &case);
        }
    }
}

/// The malformed bodies of a JSON row: invalid UTF-8 inside its first string field (which
/// the error names), malformed JSON, a JSON array, an empty body, other content types.
fn malformed_json(valid: &Value) -> Vec<BadFile> {
    // UTF-8 is checked before anything else is read, so with no string field a new one does.
    let key = valid
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v.is_string())
        .map_or_else(|| "nota".to_owned(), |(k, _)| k.clone());
    let marker = b"@@SPOIL@@";
    let mut utf8 = with(valid, &key, Some(&json!("@@SPOIL@@")))
        .to_string()
        .into_bytes();
    let at = utf8
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    utf8.splice(at..at + marker.len(), [b'a', 0xc3, 0x28, b'b']);
    let json = "application/json";
    let bad = StatusCode::BAD_REQUEST;
    let media = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    vec![
        ("invalid UTF-8", json, utf8, bad, Some(key)),
        ("malformed JSON", json, b"{\"a\":".to_vec(), bad, None),
        ("JSON array", json, b"[1,2]".to_vec(), bad, None),
        ("empty body", json, Vec::new(), bad, None),
        (
            "text/plain",
            "text/plain",
            valid.to_string().into_bytes(),
            media,
            None,
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            b"name=x".to_vec(),
            media,
            None,
        ),
        (
            "no content type",
            "",
            valid.to_string().into_bytes(),
            media,
            None,
        ),
    ]
}

/// (3) Bodies that cannot be read as what the route takes (JSON object or file): 4xx, the
/// field named when one can be, nothing stored.
async fn malformed_bodies_are_4xx_and_store_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let c = f.ctx();
    let before = snapshot(db, &f).await;
    for r in routes().iter() {
        let cases = match (&r.body, &r.file) {
            (Some(b), _) => malformed_json(&b(&c)),
            (None, Some(file)) => (file.bad)(),
            (None, None) => continue,
        };
        let path = r.path(&c);
        let token = f.token_for(r.access);
        for (what, ct, bytes, status, field) in cases {
            let case = format!("{} [{what}]", r.name());
            let req = request(&r.method, &path, token, Some((ct, bytes)));
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_eq!(s, status, "{case}: {}", text(&b));
            let e = error_of(&case, &h, &b);
            if let Some(field) = field {
                assert_eq!(e["field"], field, "{case}: {e}");
            }
            assert_unchanged(&before, &snapshot(db, &f).await, &case);
        }
    }
}

/// (4) A body over the route's limit on every state-changing route: 413, nothing stored, and
/// the next request is served. Routes that read no body never buffer it: they must not fail.
async fn oversized_bodies_are_413_and_serving_goes_on(db: &TestDb) {
    let f = fixture(db).await;
    let c = f.ctx();
    let mut before = snapshot(db, &f).await;
    for r in routes().iter().filter(|r| r.changes_state()) {
        let case = format!("{} [oversized body]", r.name());
        let path = r.path(&c);
        let (content_type, limit) = match &r.file {
            Some(file) => (file.content_type, file.limit),
            None => ("application/json", BODY_LIMIT),
        };
        let huge = json!({ "name": "x".repeat(limit + 1024) })
            .to_string()
            .into_bytes();
        if r.body.is_none() && r.file.is_none() {
            // A throwaway admin login, since the route may end it or change what it owns.
            let (_, token) = login(&f.app, ADMIN).await;
            let req = request(&r.method, &path, Some(&token), Some((content_type, huge)));
            let (s, _, b) = call(&f.app, req, &case).await;
            assert!(
                s != StatusCode::PAYLOAD_TOO_LARGE && !s.is_server_error(),
                "{case}: {s} {}",
                text(&b)
            );
            before = snapshot(db, &f).await;
            continue;
        }
        let req = request(
            &r.method,
            &path,
            f.token_for(r.access),
            Some((content_type, huge)),
        );
        let (s, h, b) = call(&f.app, req, &case).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{case}: {}", text(&b));
        error_of(&case, &h, &b);
        assert_unchanged(&before, &snapshot(db, &f).await, &case);
        let case = format!("{} [a GET after an oversized body]", r.name());
        let req = request(&GET, "/api/v1/sites", Some(&f.admin), None);
        let (s, _, b) = call(&f.app, req, &case).await;
        assert_eq!(s, StatusCode::OK, "{case}: {}", text(&b));
    }
}

/// Refused query parameters are named (400).
async fn bad_queries_are_named(db: &TestDb) {
    let f = fixture(db).await;
    let c = f.ctx();
    let long_q = format!("q={}", "x".repeat(101));
    let before = snapshot(db, &f).await;
    for r in routes().iter() {
        for (query, field) in r.bad_query {
            let query = if *query == "q=" {
                long_q.as_str()
            } else {
                query
            };
            let case = format!("{} [?{}]", r.name(), &query[..query.len().min(30)]);
            let path = format!("{}?{query}", fill(r.path, &c));
            let req = request(&r.method, &path, f.token_for(r.access), r.valid_body(&c));
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{case}: {}", text(&b));
            assert_names_field(&case, s, &h, &b, field);
        }
    }
    assert_unchanged(
        &before,
        &snapshot(db, &f).await,
        "a refused query stored something",
    );
}

test_both_backends!(
    right_role_gets_the_envelope,
    wrong_callers_are_refused,
    bad_fields_are_named_and_store_nothing,
    malformed_bodies_are_4xx_and_store_nothing,
    oversized_bodies_are_413_and_serving_goes_on,
    bad_queries_are_named,
);

// ---------------------------------------------------------------------------- coverage

/// `(METHOD, path)` of every row.
fn table_routes() -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for r in routes().iter() {
        assert!(
            set.insert((r.method.to_string(), r.path.to_owned())),
            "{} is in the table twice",
            r.name()
        );
    }
    set
}

/// `(METHOD, path)` of every route of the API router in `src/lib.rs` (the block between
/// `let api = Router::new()` and its `.fallback(`), read from the source since an axum
/// router cannot list its routes.
fn router_routes() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/lib.rs");
    let start = src
        .find("let api = Router::new()")
        .expect("src/lib.rs: no `let api = Router::new()`; update this scan");
    let len = src[start..]
        .find(".fallback(")
        .expect("src/lib.rs: the API router has no .fallback(; update this scan");
    let block = &src[start..start + len];
    for other in [".merge(", ".nest(", ".nest_service(", ".route_service("] {
        assert!(
            !block.contains(other),
            "the API router now uses {other}…): teach router_routes() to read those routes"
        );
    }
    let mut set = BTreeSet::new();
    for chunk in block.split(".route(").skip(1) {
        let path = chunk
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("cannot read a route path in: {chunk}"));
        let mut methods = 0;
        for m in ["get", "post", "put", "patch", "delete"] {
            let call = format!("{m}(");
            let found = chunk.match_indices(&call).any(|(i, _)| {
                i == 0 || !chunk[..i].ends_with(|ch: char| ch.is_alphanumeric() || ch == '_')
            });
            if found {
                methods += 1;
                set.insert((m.to_uppercase(), format!("/api/v1{path}")));
            }
        }
        assert!(methods > 0, "no method found for route {path}");
    }
    set
}

/// `(METHOD, path)` of every operation in the OpenAPI document.
async fn openapi_routes(app: &Router) -> BTreeSet<(String, String)> {
    let (s, _, b) = send(app, request(&GET, "/api/v1/openapi.json", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&b).unwrap();
    let mut set = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if ops.get(m).is_some() {
                set.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    set
}

fn listed(set: &BTreeSet<&(String, String)>) -> String {
    set.iter()
        .map(|(m, p)| format!("\n  {m} {p}"))
        .collect::<String>()
}

/// (5) The table, the router and the OpenAPI document list the same routes, and every row
/// reaches a handler (not the API's 404 fallback, not a 405).
#[tokio::test]
async fn the_table_covers_every_api_route() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let table = table_routes();
    let router = router_routes();
    let openapi = openapi_routes(&f.app).await;
    let not_in_table: BTreeSet<_> = router.difference(&table).collect();
    assert!(
        not_in_table.is_empty(),
        "routes of the router missing from routes() in tests/api_matrix.rs:{}",
        listed(&not_in_table)
    );
    let not_routed: BTreeSet<_> = table.difference(&router).collect();
    assert!(
        not_routed.is_empty(),
        "rows of routes() that the router does not have:{}",
        listed(&not_routed)
    );
    let undocumented: BTreeSet<_> = table.difference(&openapi).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /api/v1/openapi.json:{}",
        listed(&undocumented)
    );
    let phantom: BTreeSet<_> = openapi.difference(&table).collect();
    assert!(
        phantom.is_empty(),
        "operations in /api/v1/openapi.json that no route serves:{}",
        listed(&phantom)
    );
    // Each row reaches its handler: anonymous callers get a 401 there, and the public
    // routes answer something else than the fallback's 404 or a 405.
    let c = f.ctx();
    for r in routes().iter() {
        let case = format!("{} [routed]", r.name());
        let (s, _, b) = call(
            &f.app,
            request(&r.method, &fill(r.path, &c), None, None),
            &case,
        )
        .await;
        match r.access {
            Public => assert!(
                s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
                "{case}: {s} {}",
                text(&b)
            ),
            _ => assert_eq!(s, StatusCode::UNAUTHORIZED, "{case}: {}", text(&b)),
        }
    }
    // Every API error is JSON with the security headers, even off the table.
    for (method, path, status) in [
        (GET, "/api/v1/nada", StatusCode::NOT_FOUND),
        (POST, "/api/v1/sites", StatusCode::METHOD_NOT_ALLOWED),
        (DELETE, "/api/v1/auth/login", StatusCode::METHOD_NOT_ALLOWED),
        (GET, "/api/v2/sites", StatusCode::NOT_FOUND),
    ] {
        let case = format!("{method} {path} [not a route]");
        let (s, h, b) = call(&f.app, request(&method, path, Some(&f.admin), None), &case).await;
        assert_eq!(s, status, "{case}: {}", text(&b));
        error_of(&case, &h, &b);
    }
}

/// A path parameter that is not UTF-8 once percent-decoded: a JSON 400 naming the parameter
/// (axum's own answer is plain text; `api::json_errors` rewrites it), on every row.
#[tokio::test]
async fn path_parameters_that_are_not_utf8_are_named() {
    let db = TestDb::sqlite().await;
    let f = fixture(&db).await;
    let c = f.ctx();
    for r in routes().iter() {
        for param in ["slug", "id", "tag"] {
            let placeholder = format!("{{{param}}}");
            if !r.path.contains(&placeholder) {
                continue;
            }
            let path = fill(&r.path.replace(&placeholder, "%FF%FE"), &c);
            let case = format!("{} [{param} not UTF-8]", r.name());
            let req = request(&r.method, &path, f.token_for(r.access), r.valid_body(&c));
            let (s, h, b) = call(&f.app, req, &case).await;
            assert_names_field(&case, s, &h, &b, param);
        }
    }
}
