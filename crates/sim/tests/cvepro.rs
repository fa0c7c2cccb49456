//! Black-box tests of the CVE-Pro simulator: the real server on 127.0.0.1:0, spoken to over
//! HTTP with reqwest, compared with the recorded fixtures of `crates/cvepro/tests/fixtures`.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeZone, Utc};
use reqwest::{Client, StatusCode};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use vetric_sim::cvepro::{
    BearerPolicy, CveProSim, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, Fault, FaultKind,
    GATEWAY_502_HTML, Route, SimConfig, SimHandle, StopReason, TimeMode,
};

// ----- helpers ----------------------------------------------------------------------------

/// A JSON value that remembers key order (serde_json's `Value` does not without a feature).
#[derive(Debug, Clone)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    // Held for `Debug` output when a comparison fails.
    Scalar(#[allow(dead_code)] Value),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("json")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(json!(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(json!(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(json!(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(json!(v)))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Ordered::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Ordered>()? {
                    v.push((k, x));
                }
                Ok(Ordered::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    fn keys(&self) -> Vec<&str> {
        match self {
            Ordered::Object(v) => v.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not an object: {self:?}"),
        }
    }
    fn get(&self, key: &str) -> &Ordered {
        match self {
            Ordered::Object(v) => v
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, x)| x)
                .unwrap_or_else(|| panic!("no key {key}")),
            _ => panic!("not an object"),
        }
    }
    fn items(&self) -> &[Ordered] {
        match self {
            Ordered::Array(v) => v,
            _ => panic!("not an array"),
        }
    }
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../cvepro/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

async fn start(cfg: SimConfig) -> SimHandle {
    CveProSim::start(cfg, any_addr()).await.expect("sim starts")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn login(c: &Client, h: &SimHandle) -> String {
    let r = c
        .post(format!("{}/api/v1/login", h.base_url()))
        .header("Api-Key", DEFAULT_API_KEY)
        .json(&json!({"email": DEFAULT_EMAIL, "password": DEFAULT_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_string()
}

async fn get_cp(c: &Client, h: &SimHandle, token: &str) -> reqwest::Response {
    c.get(format!("{}/api/v1/chargepoints", h.base_url()))
        .header("Authorization", token)
        .send()
        .await
        .expect("chargepoints")
}

async fn cp_json(c: &Client, h: &SimHandle, token: &str) -> Value {
    let r = get_cp(c, h, token).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn window() -> (String, String) {
    let now = Utc::now();
    let from = (now - chrono::TimeDelta::days(1)).format("%Y-%m-%d 00:00:00");
    let to = (now + chrono::TimeDelta::days(2)).format("%Y-%m-%d 00:00:00");
    (from.to_string(), to.to_string())
}

async fn get_tx_with(
    c: &Client,
    h: &SimHandle,
    auth: &str,
    query: &[(&str, &str)],
) -> reqwest::Response {
    c.get(format!("{}/api/v1/transaction", h.base_url()))
        .header("Authorization", auth)
        .query(query)
        .send()
        .await
        .expect("transaction")
}

async fn tx_json(c: &Client, h: &SimHandle, token: &str) -> Value {
    let (from, to) = window();
    let r = get_tx_with(c, h, token, &[("fromDate", &from), ("toDate", &to)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn status_of(cp: &Value, charger: usize, connector: usize) -> String {
    cp["chargePointList"][charger]["connectors"][connector]["lastStatus"]["status"]
        .as_str()
        .unwrap_or("<missing>")
        .to_string()
}

fn tag_of(h: &SimHandle, resident: usize) -> String {
    h.fleet().residents[resident].tags[0].id_tag.clone()
}

fn parse_tx_time(s: &str) -> chrono::DateTime<Utc> {
    let n = NaiveDateTime::parse_from_str(s, "%d/%m/%Y %H:%M:%S").expect("DD/MM/YYYY HH:mm:ss");
    Utc.from_utc_datetime(&n)
}

// ----- wire shapes ------------------------------------------------------------------------

#[tokio::test]
async fn chargepoints_have_the_recorded_keys_in_the_recorded_order() {
    let h = start(SimConfig {
        dual_connector_chargers: 1,
        ..SimConfig::scripted()
    })
    .await;
    // One charger busy so every variant of the objects shows.
    h.start_session(1, 1, &tag_of(&h, 0), 11_000.0)
        .expect("session");
    let c = client();
    let token = login(&c, &h).await;
    let body = get_cp(&c, &h, &token).await.text().await.expect("body");
    let ours: Ordered = serde_json::from_str(&body).expect("json");
    let rec: Ordered = serde_json::from_str(&fixture("cvepro-chargepoints.json")).expect("fixture");

    assert_eq!(ours.keys(), rec.keys());
    let rec_cp = &rec.get("chargePointList").items()[0];
    let rec_conn = &rec_cp.get("connectors").items()[0];
    let list = ours.get("chargePointList").items();
    assert_eq!(list.len(), 5);
    for cp in list {
        assert_eq!(cp.keys(), rec_cp.keys());
        assert_eq!(cp.keys().len(), 57);
        assert_eq!(cp.get("address").keys(), rec_cp.get("address").keys());
        assert_eq!(cp.get("speedCount").keys(), rec_cp.get("speedCount").keys());
        for conn in cp.get("connectors").items() {
            assert_eq!(conn.keys(), rec_conn.keys());
            assert_eq!(
                conn.get("lastStatus").keys(),
                rec_conn.get("lastStatus").keys()
            );
        }
    }

    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["count"], 5);
    let cps = v["chargePointList"].as_array().expect("list");
    let power: Vec<Value> = cps
        .iter()
        .map(|c| c["connectors"][0]["powerMax"].clone())
        .collect();
    assert!(power.contains(&json!(22000)), "{power:?}");
    assert!(power.contains(&json!(22)), "kW unit mix: {power:?}");
    assert!(power.contains(&json!(7400)), "{power:?}");
    assert!(power.contains(&Value::Null), "{power:?}");
    let ids: Vec<&str> = cps
        .iter()
        .map(|c| c["chargeBoxId"].as_str().expect("id"))
        .collect();
    assert!(ids.iter().any(|i| i.chars().all(|c| c.is_ascii_digit())));
    assert!(
        ids.iter()
            .any(|i| i.chars().any(|c| c.is_ascii_alphabetic()))
    );
    assert_eq!(cps[4]["connectors"].as_array().map(Vec::len), Some(2));
    let hb_now = Utc::now().with_timezone(&chrono_tz::America::Sao_Paulo);
    for cp in cps {
        assert_eq!(cp["chargeBoxGroupName"], "Residencial Jardim das Palmeiras");
        assert!(
            cp["description"]
                .as_str()
                .expect("d")
                .starts_with("Palmeiras ")
        );
        let hb = cp["lastHeartbeatTimestamp"].as_str().expect("hb");
        let hb = NaiveDateTime::parse_from_str(hb, "%Y-%m-%d %H:%M:%S").expect("hb format");
        let diff = (hb_now.naive_local() - hb).num_seconds();
        assert!(
            (0..120).contains(&diff),
            "heartbeat is São Paulo local: {diff}"
        );
        let ls = &cp["connectors"][0]["lastStatus"];
        let ts = ls["timeStamp"].as_str().expect("ts");
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
        chrono::DateTime::parse_from_rfc3339(ts).expect("iso");
        assert_eq!(ls["erroInfo"], "NoError");
        assert_eq!(ls["moneyPerDurationIncomeHumanReadable"], "null por minuto");
        assert_eq!(ls["moneyPerKilowattIncomeHumanReadable"], "null por kWh");
        assert_eq!(cp["isOpen_24Hours"], true);
        assert_eq!(ls["usage"], cp["usage"]);
    }
    assert_eq!(status_of(&v, 1, 0), "Charging");
    assert_eq!(v["chargePointList"][1]["speedCount"]["nrSlowAvailable"], 0);
    assert_eq!(v["chargePointList"][0]["speedCount"]["nrSlowAvailable"], 1);
    let name = &v["chargePointList"][1]["connectors"][0]["lastStatus"]["currentChargingUserName"];
    assert_eq!(name, &json!(h.fleet().residents[0].name));

    // chargeBoxId filter.
    let id = ids[2].to_string();
    let r: Value = c
        .get(format!("{}/api/v1/chargepoints", h.base_url()))
        .header("Authorization", &token)
        .query(&[("chargeBoxId", id.as_str())])
        .send()
        .await
        .expect("filtered")
        .json()
        .await
        .expect("json");
    assert_eq!(r["count"], 1);
    assert_eq!(r["chargePointList"][0]["chargeBoxId"], json!(id));
}

#[tokio::test]
async fn transactions_have_the_recorded_keys_in_the_recorded_order() {
    let h = start(SimConfig::scripted()).await;
    h.start_session(0, 1, &tag_of(&h, 0), 7_400.0).expect("a");
    h.start_session(1, 1, &tag_of(&h, 1), 7_400.0).expect("b");
    h.stop(1, 1, StopReason::Remote).expect("stop b");
    let c = client();
    let token = login(&c, &h).await;
    let (from, to) = window();
    let body = get_tx_with(&c, &h, &token, &[("fromDate", &from), ("toDate", &to)])
        .await
        .text()
        .await
        .expect("body");
    let ours: Ordered = serde_json::from_str(&body).expect("json");
    let rec: Ordered = serde_json::from_str(&fixture("cvepro-transactions.json")).expect("fixture");
    assert_eq!(ours.keys(), rec.keys());
    let rec_tx = &rec.get("list").items()[0];
    let list = ours.get("list").items();
    assert_eq!(list.len(), 2);
    for tx in list {
        assert_eq!(tx.keys(), rec_tx.keys());
    }
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["count"], 2);
    // Newest first, like the recording.
    assert!(v["list"][0]["id"].as_i64() > v["list"][1]["id"].as_i64());
}

// ----- authentication ---------------------------------------------------------------------

#[tokio::test]
async fn login_rules() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let url = format!("{}/api/v1/login", h.base_url());
    let creds = json!({"email": DEFAULT_EMAIL, "password": DEFAULT_PASSWORD});

    let r = c.post(&url).json(&creds).send().await.expect("no key");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        json!({"error":"E000 - Tenant Not Found","user":null,"token":null})
    );

    let r = c
        .post(&url)
        .header("Api-Key", "wrong")
        .json(&creds)
        .send()
        .await
        .expect("wrong key");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = c
        .post(&url)
        .header("Api-Key", DEFAULT_API_KEY)
        .json(&json!({"email": DEFAULT_EMAIL, "password": "nope"}))
        .send()
        .await
        .expect("bad password");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        json!({"error":"E000 - Senha incorreta ou usuário não encontrado","user":null,"token":null})
    );

    let r = c
        .post(&url)
        .header("Api-Key", DEFAULT_API_KEY)
        .json(&creds)
        .send()
        .await
        .expect("ok");
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.expect("body");
    let ours: Ordered = serde_json::from_str(&body).expect("json");
    let rec: Ordered = serde_json::from_str(&fixture("cvepro-login.json")).expect("fixture");
    assert_eq!(ours.keys(), rec.keys());
    assert_eq!(ours.get("user").keys(), rec.get("user").keys());
    let v: Value = serde_json::from_str(&body).expect("json");
    let t1 = v["token"].as_str().expect("token").to_string();
    assert_eq!(t1.len(), 160);
    assert!(
        t1.chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    );
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["user"]["email"], DEFAULT_EMAIL);

    let t2 = login(&c, &h).await;
    assert_ne!(t1, t2, "each login a new token");
    assert_eq!(get_cp(&c, &h, &t1).await.status(), StatusCode::OK);
    assert_eq!(get_cp(&c, &h, &t2).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn authorization_rules() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    let (from, to) = window();
    let q = [("fromDate", from.as_str()), ("toDate", to.as_str())];
    let cp = format!("{}/api/v1/chargepoints", h.base_url());
    let invalid = json!({"error":"Invalid AUTHORIZATION set in Header!"});

    let r = c.get(&cp).send().await.expect("no auth");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.expect("json"), invalid);
    assert_eq!(
        get_cp(&c, &h, "DEADBEEF").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Bearer: accepted on /chargepoints, refused on /transaction.
    let bearer = format!("Bearer {token}");
    assert_eq!(get_cp(&c, &h, &bearer).await.status(), StatusCode::OK);
    let r = get_tx_with(&c, &h, &bearer, &q).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.expect("json"), invalid);
    assert_eq!(
        get_tx_with(&c, &h, &token, &q).await.status(),
        StatusCode::OK
    );

    // Any Platform header.
    for value in ["DASHBOARD", "API"] {
        let r = c
            .get(&cp)
            .header("Authorization", &token)
            .header("Platform", value)
            .send()
            .await
            .expect("platform");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    // timeZone is tolerated by default.
    let mut tz = q.to_vec();
    tz.push(("timeZone", "-3"));
    assert_eq!(
        get_tx_with(&c, &h, &token, &tz).await.status(),
        StatusCode::OK
    );

    // Revoked tokens.
    h.revoke_tokens();
    assert_eq!(
        get_cp(&c, &h, &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = login(&c, &h).await;
    assert_eq!(get_cp(&c, &h, &fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn auth_toggles_expiry_timezone_and_bearer_policy() {
    let h = start(SimConfig {
        token_ttl: Duration::ZERO,
        reject_timezone_param: true,
        bearer_policy: BearerPolicy::AcceptAll,
        ..SimConfig::scripted()
    })
    .await;
    let c = client();
    let token = login(&c, &h).await;
    assert_eq!(
        get_cp(&c, &h, &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "expired at once"
    );

    let h = start(SimConfig {
        reject_timezone_param: true,
        bearer_policy: BearerPolicy::AcceptAll,
        ..SimConfig::scripted()
    })
    .await;
    let token = login(&c, &h).await;
    let (from, to) = window();
    let q = [("fromDate", from.as_str()), ("toDate", to.as_str())];
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get_tx_with(&c, &h, &bearer, &q).await.status(),
        StatusCode::OK
    );
    let mut tz = q.to_vec();
    tz.push(("timeZone", "-3"));
    assert_eq!(
        get_tx_with(&c, &h, &token, &tz).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn transaction_dates_must_be_vendor_formatted() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    let bad: &[&[(&str, &str)]] = &[
        &[],
        &[("fromDate", "2026-01-11 00:00:00")],
        &[("toDate", "2026-01-13 23:59:59")],
        &[
            ("fromDate", "2026-01-11T00:00:00Z"),
            ("toDate", "2026-01-13T23:59:59Z"),
        ],
        &[("fromDate", "2026-01-11"), ("toDate", "2026-01-13")],
        &[
            ("fromDate", "2026-01-11T00:00:00"),
            ("toDate", "2026-01-13 23:59:59"),
        ],
    ];
    for q in bad {
        let r = get_tx_with(&c, &h, &token, q).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q:?}");
        let v: Value = r.json().await.expect("json");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = get_tx_with(
        &c,
        &h,
        &token,
        &[
            ("fromDate", "2026-01-11 00:00:00"),
            ("toDate", "2026-01-13 23:59:59"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"error": null, "list": [], "count": 0})
    );
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    for path in [
        "/api/v1/transactions",
        "/api/v1/id-tag",
        "/api/v1/stats/all_stats",
    ] {
        let r = c
            .get(format!("{}{path}", h.base_url()))
            .header("Authorization", &token)
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let calls = h.calls();
    assert_eq!(calls.other, 3);
    assert_eq!(calls.login, 1);
}

// ----- sessions ---------------------------------------------------------------------------

#[tokio::test]
async fn a_scripted_session_shows_consistently_in_chargepoints_and_transaction() {
    let h = start(SimConfig {
        speed: 100.0,
        ..SimConfig::scripted()
    })
    .await;
    let fleet = h.fleet();
    let resident = &fleet.residents[3];
    let tag = resident.tags[0].id_tag.clone();
    let c = client();
    let token = login(&c, &h).await;

    h.plug_in(0, 1, &tag).expect("plug in");
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 0, 0), "Preparing");
    assert_eq!(tx_json(&c, &h, &token).await["count"], 0);

    let before = Utc::now();
    let id = h.start_charging(0, 1, 11_000.0).expect("start");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 0, 0), "Charging");
    let v = tx_json(&c, &h, &token).await;
    assert_eq!(v["count"], 1);
    let tx = &v["list"][0];
    assert_eq!(tx["id"], id);
    assert_eq!(tx["stopTimestamp"], Value::Null);
    assert_eq!(tx["stopReason"], Value::Null);
    assert_eq!(tx["chargeBoxUuid"], json!(fleet.chargers[0].uuid));
    assert_eq!(tx["chargeBoxUuid"], cp["chargePointList"][0]["uuid"]);
    assert_eq!(tx["chargeBoxId"], json!(fleet.chargers[0].charge_box_id));
    assert_eq!(tx["chargeBoxDescription"], "Palmeiras 1");
    assert_eq!(tx["connectorId"], 1);
    assert_eq!(
        tx["connectorPk"],
        cp["chargePointList"][0]["connectors"][0]["connectorPk"]
    );
    assert_eq!(tx["ocppIdTag"], json!(tag));
    assert_eq!(tx["ocppTagPk"], json!(resident.tags[0].tag_pk));
    assert_eq!(tx["userName"], json!(resident.wire_name));
    assert_eq!(tx["userPhone"], json!(resident.phone));
    assert_eq!(tx["userEmail"], json!(resident.email));
    assert_eq!(tx["userAddressComplement"], json!(resident.apartment.text));
    assert_eq!(tx["userPk"], json!(resident.user_pk));
    let start = parse_tx_time(tx["startTimestamp"].as_str().expect("start"));
    assert!(start >= before - chrono::TimeDelta::seconds(1) && start <= Utc::now());
    // 11 kW × speed 100 for ~1.2 s ≈ 370 Wh.
    let energy = tx["energy"].as_i64().expect("energy");
    assert!((200..1500).contains(&energy), "{energy}");
    let ehr = tx["energyHumanReadable"].as_str().expect("ehr");
    assert!(ehr.ends_with(" kWh") && ehr.contains(','), "{ehr}");
    assert!(tx["duration"].as_i64().expect("duration") >= 1);
    assert_eq!(tx["durationHumanReadable"].as_str().map(str::len), Some(8));

    h.suspend_ev(0, 1).expect("idle");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 0, 0), "SuspendedEV");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    assert!(tx["idleDuration"].as_i64().expect("idle") >= 1);

    h.stop(0, 1, StopReason::Remote).expect("stop");
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 0, 0), "Available");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    let stop = parse_tx_time(tx["stopTimestamp"].as_str().expect("stopped"));
    assert!(stop >= start && stop <= Utc::now());
    assert_eq!(tx["stopReason"], "Remote");
    assert_eq!(tx["stopEventActor"], "station");
    let start_value: i64 = tx["startValue"].as_str().expect("sv").parse().expect("int");
    let stop_value: i64 = tx["stopValue"].as_str().expect("sv").parse().expect("int");
    assert_eq!(stop_value - start_value, tx["energy"].as_i64().expect("e"));

    let rec = h.record();
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r.transaction_id, id);
    assert_eq!(r.tag, tag);
    assert_eq!(r.tag_pk, resident.tags[0].tag_pk);
    assert_eq!(r.resident_user_pk, Some(resident.user_pk));
    assert_eq!(r.stop_reason, Some(StopReason::Remote));
    assert_eq!(
        r.energy_wh.round() as i64,
        tx["energy"].as_i64().expect("e")
    );
    assert!(r.idle_seconds >= 1.0);
    assert_eq!(r.charger_uuid, fleet.chargers[0].uuid);
}

#[tokio::test]
async fn quirks_ghost_offline_late_stop_lowercase_and_empty_tag() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    let tag = tag_of(&h, 5);

    // Ghost Charging: status says Charging, no transaction exists.
    h.set_ghost(2, 1, true).expect("ghost");
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 2, 0), "Charging");
    assert_eq!(tx_json(&c, &h, &token).await["count"], 0);
    h.set_ghost(2, 1, false).expect("ghost off");
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 2, 0), "Available");

    // Lowercase tags and an empty tag.
    h.set_lowercase_tags(1, true).expect("lowercase");
    let id = h.start_session(1, 1, &tag, 7_400.0).expect("session");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    assert_eq!(tx["ocppIdTag"], json!(tag.to_lowercase()));
    h.set_tag_empty(id, true).expect("empty");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    assert_eq!(tx["ocppIdTag"], "");
    assert_eq!(tx["userName"], Value::Null);
    assert_eq!(tx["userAddressComplement"], Value::Null);
    assert!(tx["ocppTagPk"].as_i64().is_some());

    // Offline: heartbeat stops, Unavailable, transaction stays open; stop delivered late.
    let hb = cp_json(&c, &h, &token).await["chargePointList"][1]["lastHeartbeatTimestamp"].clone();
    h.set_offline(1).expect("offline");
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 1, 0), "Unavailable");
    h.stop(1, 1, StopReason::EVDisconnected)
        .expect("stop while offline");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    assert_eq!(tx["stopTimestamp"], Value::Null, "still open while offline");
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(cp["chargePointList"][1]["lastHeartbeatTimestamp"], hb);
    h.set_online(1).expect("online");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    assert_eq!(tx["stopReason"], "EVDisconnected");
    let r = &h.record()[0];
    let stop = r.stop.expect("stopped");
    assert!(r.stop_delivered_at.expect("delivered") > stop);
    assert_eq!(
        tx["stopTimestamp"],
        json!(stop.format("%d/%m/%Y %H:%M:%S").to_string())
    );
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 1, 0), "Available");

    // Fault and back.
    h.fault_connector(3, 1, "GroundFailure").expect("fault");
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 3, 0), "Faulted");
    assert_eq!(
        cp["chargePointList"][3]["connectors"][0]["lastStatus"]["errorCode"],
        "GroundFailure"
    );
    h.unfault_connector(3, 1).expect("unfault");
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 3, 0), "Available");
}

#[tokio::test]
async fn status_lag_shows_the_transaction_before_the_status() {
    let h = start(SimConfig {
        status_lag: Duration::from_secs(2),
        ..SimConfig::scripted()
    })
    .await;
    let c = client();
    let token = login(&c, &h).await;
    h.start_session(0, 1, &tag_of(&h, 0), 7_400.0)
        .expect("session");
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 0, 0), "Available");
    assert_eq!(tx_json(&c, &h, &token).await["count"], 1);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 0, 0), "Charging");
}

#[tokio::test]
async fn time_modes_filter_and_format() {
    // Local: timestamps in São Paulo (UTC−3).
    let h = start(SimConfig {
        time_mode: TimeMode::Local,
        ..SimConfig::scripted()
    })
    .await;
    let c = client();
    let token = login(&c, &h).await;
    h.start_session(0, 1, &tag_of(&h, 0), 7_400.0)
        .expect("session");
    let tx = tx_json(&c, &h, &token).await["list"][0].clone();
    let shown = parse_tx_time(tx["startTimestamp"].as_str().expect("start"));
    let real = h.record()[0].start;
    let offset = (real - shown).num_minutes();
    assert_eq!(offset, 180, "local = UTC−3");

    // TruncateToDate: the time of toDate is ignored, so today's session needs toDate tomorrow.
    let h = start(SimConfig {
        time_mode: TimeMode::TruncateToDate,
        ..SimConfig::scripted()
    })
    .await;
    let token = login(&c, &h).await;
    h.start_session(0, 1, &tag_of(&h, 0), 7_400.0)
        .expect("session");
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let q = [
        ("fromDate", format!("{today} 00:00:00")),
        ("toDate", format!("{today} 23:59:59")),
    ];
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let v: Value = get_tx_with(&c, &h, &token, &q)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["count"], 0);
    assert_eq!(tx_json(&c, &h, &token).await["count"], 1);

    // Utc (default): a window that ends before the start excludes it.
    let h = start(SimConfig::scripted()).await;
    let token = login(&c, &h).await;
    h.start_session(0, 1, &tag_of(&h, 0), 7_400.0)
        .expect("session");
    let start = h.record()[0].start;
    let from = (start - chrono::TimeDelta::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let to_before = (start - chrono::TimeDelta::seconds(5))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let to_after = (start + chrono::TimeDelta::seconds(5))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let count = |v: Value| v["count"].as_i64();
    let r = get_tx_with(
        &c,
        &h,
        &token,
        &[("fromDate", &from), ("toDate", &to_before)],
    )
    .await;
    assert_eq!(count(r.json().await.expect("json")), Some(0));
    let r = get_tx_with(
        &c,
        &h,
        &token,
        &[("fromDate", &from), ("toDate", &to_after)],
    )
    .await;
    assert_eq!(count(r.json().await.expect("json")), Some(1));
}

#[tokio::test]
async fn two_connector_charger_runs_two_sessions() {
    let h = start(SimConfig {
        chargers: 2,
        dual_connector_chargers: 1,
        ..SimConfig::scripted()
    })
    .await;
    let c = client();
    let token = login(&c, &h).await;
    h.start_session(1, 1, &tag_of(&h, 0), 7_400.0).expect("c1");
    h.start_session(1, 2, &tag_of(&h, 1), 7_400.0).expect("c2");
    let cp = cp_json(&c, &h, &token).await;
    assert_eq!(status_of(&cp, 1, 0), "Charging");
    assert_eq!(status_of(&cp, 1, 1), "Charging");
    let v = tx_json(&c, &h, &token).await;
    let mut conns: Vec<i64> = v["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["connectorId"].as_i64().expect("id"))
        .collect();
    conns.sort();
    assert_eq!(conns, vec![1, 2]);
}

// ----- fleet ------------------------------------------------------------------------------

#[test]
fn same_seed_same_fleet() {
    let cfg = SimConfig::default();
    let a = serde_json::to_value(CveProSim::fleet_for(&cfg)).expect("json");
    let b = serde_json::to_value(CveProSim::fleet_for(&cfg)).expect("json");
    assert_eq!(a, b);
    let other = serde_json::to_value(CveProSim::fleet_for(&SimConfig {
        seed: 2,
        ..SimConfig::default()
    }))
    .expect("json");
    assert_ne!(a, other);

    let fleet = CveProSim::fleet_for(&cfg);
    assert_eq!(fleet.chargers.len(), 5);
    assert!(fleet.residents.len() >= 40);
    let mut tags = std::collections::HashSet::new();
    let mut pks = std::collections::HashSet::new();
    let mut virtual_tags = 0;
    for r in &fleet.residents {
        assert!(r.email.ends_with("@example.com"));
        assert!(
            r.phone.starts_with("+55829") && r.phone.len() == 14,
            "{}",
            r.phone
        );
        assert!(!r.apartment.block.is_empty() && !r.apartment.unit.is_empty());
        assert!(r.apartment.text.contains(&r.apartment.unit));
        assert!((1..=2).contains(&r.tags.len()));
        for t in &r.tags {
            assert!(tags.insert(t.id_tag.clone()), "unique tags");
            assert!(pks.insert(t.tag_pk), "unique tag pks");
            assert!((1_000_000..10_000_000).contains(&t.tag_pk));
            assert!(t.id_tag.len() == 8 || t.id_tag.len() == 19);
            if t.id_tag.len() == 19 {
                virtual_tags += 1;
            }
        }
    }
    assert!(virtual_tags > 0);
}

// ----- speed ------------------------------------------------------------------------------

#[tokio::test]
async fn speed_keeps_every_timestamp_in_the_past() {
    let h = start(SimConfig {
        speed: 2_000.0,
        auto_fleet: true,
        tick: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let token = login(&c, &h).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = tx_json(&c, &h, &token).await;
    let now = Utc::now();
    let list = v["list"].as_array().expect("list");
    assert!(!list.is_empty(), "the automatic fleet produced sessions");
    for tx in list {
        let start = parse_tx_time(tx["startTimestamp"].as_str().expect("start"));
        assert!(start <= now, "start {start} after {now}");
        if let Some(stop) = tx["stopTimestamp"].as_str() {
            let stop = parse_tx_time(stop);
            assert!(stop >= start && stop <= now);
            let d = tx["duration"].as_i64().expect("duration");
            assert!((d - (stop - start).num_seconds()).abs() <= 1);
        }
    }
    let cp = cp_json(&c, &h, &token).await;
    for c in cp["chargePointList"].as_array().expect("list") {
        let ts = c["connectors"][0]["lastStatus"]["timeStamp"]
            .as_str()
            .expect("ts");
        let ts = chrono::DateTime::parse_from_rfc3339(ts).expect("iso");
        assert!(ts <= now + chrono::TimeDelta::milliseconds(1));
    }
    // The automatic fleet can be switched off over HTTP.
    let r = c
        .post(format!("{}/__sim/auto", h.base_url()))
        .json(&json!({"on": false}))
        .send()
        .await
        .expect("auto off");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!h.with_engine(|e| e.auto()));
}

// ----- faults -----------------------------------------------------------------------------

#[tokio::test]
async fn outage_serves_nginx_html_then_recovers() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    h.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    let r = get_cp(&c, &h, &token).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let body = r.text().await.expect("body");
    let errors: Value = serde_json::from_str(&fixture("cvepro-errors.json")).expect("fixture");
    assert_eq!(body, errors["gateway_502_html"].as_str().expect("html"));
    assert_eq!(body, GATEWAY_502_HTML);
    // Login is behind the same gateway.
    let r = c
        .post(format!("{}/api/v1/login", h.base_url()))
        .header("Api-Key", DEFAULT_API_KEY)
        .json(&json!({"email": DEFAULT_EMAIL, "password": DEFAULT_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    h.clear_fault(FaultKind::Outage);
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);

    // 503, for a duration.
    h.set_fault(Fault::Outage {
        status: 503,
        duration_s: Some(0.5),
    });
    let r = get_cp(&c, &h, &token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.expect("body").contains("503"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);
    assert!(h.faults().is_empty());
}

#[tokio::test]
async fn latency_hang_and_rate_limit_toggle() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;

    h.set_fault(Fault::Latency { ms: 300 });
    let t = Instant::now();
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(300));
    h.clear_fault(FaultKind::Latency);
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);
    assert!(h.faults().is_empty());

    h.set_fault(Fault::Hang);
    let r = c
        .get(format!("{}/api/v1/chargepoints", h.base_url()))
        .header("Authorization", &token)
        .timeout(Duration::from_millis(400))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()), "hung");
    // A hung request answers once the hang is cleared.
    let pending = {
        let c = c.clone();
        let url = format!("{}/api/v1/chargepoints", h.base_url());
        let token = token.clone();
        tokio::spawn(async move {
            c.get(url)
                .header("Authorization", token)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished());
    h.clear_fault(FaultKind::Hang);
    let status = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answers after clear")
        .expect("task")
        .expect("response");
    assert_eq!(status, StatusCode::OK);

    h.set_fault(Fault::RateLimit {
        retry_after_s: 7,
        duration_s: None,
    });
    let r = get_cp(&c, &h, &token).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    h.clear_fault(FaultKind::RateLimit);
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn in_flight_counts_hanging_requests_until_their_client_gives_up() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;
    assert_eq!(h.in_flight().now, 0);
    assert_eq!(h.in_flight().peak, 1, "the login was in flight");
    h.reset_in_flight_peak();
    assert_eq!(h.in_flight().peak, 0);

    h.set_fault(Fault::Hang);
    let hung = |c: reqwest::Client| {
        let url = format!("{}/api/v1/chargepoints", h.base_url());
        let token = token.clone();
        tokio::spawn(async move {
            c.get(url)
                .header("Authorization", token)
                .timeout(Duration::from_millis(600))
                .send()
                .await
                .is_err_and(|e| e.is_timeout())
        })
    };
    let (a, b) = (hung(c.clone()), hung(client()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.in_flight().now, 2, "both wait at the hanging vendor");
    assert!(
        a.await.expect("task") && b.await.expect("task"),
        "both time out"
    );
    // The clients hung up: the server drops their requests (no leak while the hang lasts).
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.in_flight().now != 0 {
        assert!(Instant::now() < deadline, "{:?}", h.in_flight());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.in_flight().peak, 2);
    h.clear_fault(FaultKind::Hang);
    // The control API is not a vendor call.
    let f: serde_json::Value = c
        .get(format!("{}/__sim/in_flight", h.base_url()))
        .send()
        .await
        .expect("in_flight")
        .json()
        .await
        .expect("json");
    assert_eq!(f, serde_json::json!({ "now": 0, "peak": 2 }));
}

#[tokio::test]
async fn shape_faults_toggle() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let token = login(&c, &h).await;

    h.set_fault(Fault::RenameChargePointList);
    let v = cp_json(&c, &h, &token).await;
    assert!(v.get("chargePointList").is_none());
    assert_eq!(v["chargeBoxes"].as_array().map(Vec::len), Some(5));
    h.clear_fault(FaultKind::RenameChargePointList);
    let v = cp_json(&c, &h, &token).await;
    assert!(v.get("chargeBoxes").is_none());
    assert_eq!(v["chargePointList"].as_array().map(Vec::len), Some(5));

    h.set_fault(Fault::DropConnectorStatus);
    let v = cp_json(&c, &h, &token).await;
    let ls = &v["chargePointList"][0]["connectors"][0]["lastStatus"];
    assert!(ls.get("status").is_none());
    assert!(ls.get("timeStamp").is_some());
    h.clear_fault(FaultKind::DropConnectorStatus);
    assert_eq!(status_of(&cp_json(&c, &h, &token).await, 0, 0), "Available");

    h.set_fault(Fault::MalformedJson {
        route: Route::Chargepoints,
    });
    let r = get_cp(&c, &h, &token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&body).is_err());
    h.clear_fault(FaultKind::MalformedJson);
    assert!(cp_json(&c, &h, &token).await["chargePointList"].is_array());

    h.set_fault(Fault::EmptyChargerList);
    let v = cp_json(&c, &h, &token).await;
    assert_eq!(v, json!({"error": null, "chargePointList": [], "count": 0}));
    h.clear_fault(FaultKind::EmptyChargerList);
    assert_eq!(cp_json(&c, &h, &token).await["count"], 5);

    h.set_fault(Fault::ServerError {
        route: Route::Transaction,
    });
    let (from, to) = window();
    let q = [("fromDate", from.as_str()), ("toDate", to.as_str())];
    assert_eq!(
        get_tx_with(&c, &h, &token, &q).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get_cp(&c, &h, &token).await.status(), StatusCode::OK);
    h.clear_faults();
    assert_eq!(
        get_tx_with(&c, &h, &token, &q).await.status(),
        StatusCode::OK
    );
}

// ----- control API over HTTP --------------------------------------------------------------

#[tokio::test]
async fn control_api_scripts_sessions_faults_and_reports() {
    let h = start(SimConfig::scripted()).await;
    let c = client();
    let base = h.base_url().to_string();
    let post = |path: &str, body: Value| {
        let c = c.clone();
        let url = format!("{base}/__sim/{path}");
        async move {
            let r = c.post(url).json(&body).send().await.expect("control");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let fleet: Value = c
        .get(format!("{base}/__sim/fleet"))
        .send()
        .await
        .expect("fleet")
        .json()
        .await
        .expect("json");
    let tag = fleet["residents"][0]["tags"][0]["id_tag"]
        .as_str()
        .expect("tag")
        .to_string();
    let box_id = fleet["chargers"][2]["charge_box_id"]
        .as_str()
        .expect("id")
        .to_string();

    let (s, _) = post("plug_in", json!({"charger": box_id, "tag": tag})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post("start_charging", json!({"charger": 2, "power_w": 7400})).await;
    assert_eq!(s, StatusCode::OK);
    let id = v["transaction_id"].as_i64().expect("id");
    assert_eq!(
        post("suspend_ev", json!({"charger": 2})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post("resume", json!({"charger": 2})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        post("suspend_evse", json!({"charger": 2})).await.0,
        StatusCode::OK
    );
    let (s, v) = post("stop", json!({"charger": 2, "reason": "Local"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["transaction_id"], id);
    // Wrong state → 409, unknown charger → 404, bad body → 400.
    assert_eq!(
        post("start_charging", json!({"charger": 2})).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        post("unplug", json!({"charger": 99})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post("plug_in", json!({"nope": true})).await.0,
        StatusCode::BAD_REQUEST
    );
    for (path, body) in [
        ("ghost", json!({"charger": 0, "on": true})),
        ("ghost", json!({"charger": 0, "on": false})),
        ("offline", json!({"charger": 1})),
        ("online", json!({"charger": 1})),
        ("lowercase_tags", json!({"charger": 1, "lowercase": true})),
        ("tag_empty", json!({"transaction_id": id, "empty": true})),
        (
            "fault_connector",
            json!({"charger": 3, "error_code": "HighTemperature"}),
        ),
        ("unfault_connector", json!({"charger": 3})),
        (
            "faults",
            json!({"kind": "outage", "status": 503, "duration_s": 30}),
        ),
        (
            "faults",
            json!({"kind": "server_error", "route": "chargepoints"}),
        ),
        ("faults/clear", json!({"kind": "outage"})),
        ("revoke_tokens", json!({})),
        ("calls/reset", json!({})),
    ] {
        assert_eq!(
            post(path, body.clone()).await.0,
            StatusCode::OK,
            "{path} {body}"
        );
    }
    let faults: Value = c
        .get(format!("{base}/__sim/faults"))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("json");
    assert_eq!(
        faults,
        json!([{"fault": {"kind": "server_error", "route": "chargepoints"}, "until": null}])
    );
    let r = c
        .delete(format!("{base}/__sim/faults"))
        .send()
        .await
        .expect("clear");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(h.faults().is_empty());

    let record: Value = c
        .get(format!("{base}/__sim/record"))
        .send()
        .await
        .expect("record")
        .json()
        .await
        .expect("json");
    assert_eq!(record[0]["transaction_id"], id);
    assert_eq!(record[0]["stop_reason"], "Local");
    assert_eq!(record[0]["tag"], json!(tag));
    assert_eq!(record[0]["charge_box_id"], json!(box_id));

    let state: Value = c
        .get(format!("{base}/__sim/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state[2]["connectors"][0]["status"], "Available");

    // Calls: vendor calls counted per endpoint, control calls never.
    let token = login(&c, &h).await;
    get_cp(&c, &h, &token).await;
    get_cp(&c, &h, &token).await;
    tx_json(&c, &h, &token).await;
    let calls: Value = c
        .get(format!("{base}/__sim/calls"))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    assert_eq!(
        calls,
        json!({"login": 1, "chargepoints": 2, "transaction": 1, "other": 0, "total": 4})
    );
    assert_eq!(h.calls().chargepoints, 2);
}
