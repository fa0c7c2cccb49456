//! Black-box tests of the Evolution simulator: the real server on 127.0.0.1:0, spoken to over
//! HTTP with reqwest, compared with the fixtures of `crates/evolution/tests/fixtures`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, EvolutionSimHandle,
    Faults, InstanceState, create_jid,
};

// ----- helpers ----------------------------------------------------------------------------

/// Keys of a JSON object, in document order (serde_json's `Value` sorts them).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or an array of one object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = a.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Keys, A::Error> {
                let first: Option<Keys> = a.next_element()?;
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(first.unwrap_or(Keys(Vec::new())))
            }
        }
        d.deserialize_any(V)
    }
}

fn keys(text: &str) -> Vec<String> {
    serde_json::from_str::<Keys>(text).expect("keys").0
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../evolution/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn error_fixture(key: &str) -> Value {
    let all: Value = serde_json::from_str(&fixture("evolution-errors.json")).expect("json");
    all[key].clone()
}

async fn start(config: EvolutionSimConfig) -> EvolutionSimHandle {
    EvolutionSim::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

const INSTANCE_PATH: &str = "Condominio%20Bot";

async fn send(
    sim: &EvolutionSimHandle,
    key: &str,
    instance_path: &str,
    body: Value,
) -> (StatusCode, String) {
    let r = http()
        .post(format!(
            "{}/message/sendText/{instance_path}",
            sim.base_url()
        ))
        .header("apikey", key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn send_ok(sim: &EvolutionSimHandle, number: &str, text: &str) -> (StatusCode, Value) {
    let (s, b) = send(
        sim,
        DEFAULT_API_KEY,
        INSTANCE_PATH,
        json!({"number": number, "text": text}),
    )
    .await;
    (s, serde_json::from_str(&b).expect("json"))
}

async fn get(sim: &EvolutionSimHandle, path: &str, key: &str) -> (StatusCode, String) {
    let r = http()
        .get(format!("{}{path}", sim.base_url()))
        .header("apikey", key)
        .send()
        .await
        .expect("get");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn find(sim: &EvolutionSimHandle, body: Value) -> Value {
    let r = http()
        .post(format!(
            "{}/chat/findMessages/{INSTANCE_PATH}",
            sim.base_url()
        ))
        .header("apikey", DEFAULT_API_KEY)
        .json(&body)
        .send()
        .await
        .expect("find");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn is_message_id(id: &str) -> bool {
    id.len() == 22
        && id.starts_with("3EB0")
        && id[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

// ----- sendText ---------------------------------------------------------------------------

#[tokio::test]
async fn send_text_answers_201_with_the_recorded_shape() {
    let sim = start(EvolutionSimConfig::default()).await;
    let (status, body) = send(
        &sim,
        DEFAULT_API_KEY,
        INSTANCE_PATH,
        json!({"number": "5582990000101", "text": "🔋 *Carregamento iniciado*\n_ok_"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let recorded = fixture("evolution-sendtext-response.json");
    assert_eq!(keys(&body), keys(&recorded), "top-level keys and order");
    let v: Value = serde_json::from_str(&body).expect("json");
    let r: Value = serde_json::from_str(&recorded).expect("json");
    for nested in ["key", "contextInfo"] {
        assert_eq!(
            keys(&v[nested].to_string())
                .into_iter()
                .collect::<BTreeSet<_>>(),
            keys(&r[nested].to_string())
                .into_iter()
                .collect::<BTreeSet<_>>(),
            "{nested}"
        );
    }
    assert_eq!(v["key"]["remoteJid"], "558290000101@s.whatsapp.net");
    assert_eq!(v["key"]["fromMe"], true);
    assert!(is_message_id(v["key"]["id"].as_str().expect("id")), "{v}");
    assert_eq!(v["pushName"], "Você");
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["messageType"], "conversation");
    assert_eq!(v["source"], "web");
    assert_eq!(
        v["message"]["conversation"],
        "🔋 *Carregamento iniciado*\n_ok_"
    );
    let ts = v["messageTimestamp"].as_i64().expect("seconds");
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);

    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].number, "5582990000101");
    assert_eq!(msgs[0].jid, "558290000101@s.whatsapp.net");
    assert_eq!(msgs[0].id, v["key"]["id"].as_str().expect("id"));
    assert_eq!(msgs[0].instance, DEFAULT_INSTANCE);
    assert_eq!(sim.calls().send_text, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn remote_jid_follows_create_jid() {
    let sim = start(EvolutionSimConfig::default()).await;
    for (number, jid) in [
        ("5582990000101", "558290000101@s.whatsapp.net"),
        ("+55 (11) 99000-0101", "5511990000101@s.whatsapp.net"),
        ("5531960000101", "5531960000101@s.whatsapp.net"),
        ("558290000101", "558290000101@s.whatsapp.net"),
    ] {
        let (s, v) = send_ok(&sim, number, "x").await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(v["key"]["remoteJid"], jid, "{number}");
        assert_eq!(create_jid(number), jid);
    }
    let ids: BTreeSet<String> = sim.messages().into_iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 4, "ids are unique");
}

#[tokio::test]
async fn guards_check_the_instance_before_the_key() {
    let sim = start(EvolutionSimConfig::default()).await;
    let body = json!({"number": "5582990000101", "text": "x"});
    // Unknown instance, bad key: 404 with the exact body.
    let (s, b) = send(&sim, "wrong", "Condominio%20Bot%202", body.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("http_404_unknown_instance")
    );
    // Known instance, bad key: 401.
    let (s, b) = send(&sim, "wrong", INSTANCE_PATH, body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("http_401_bad_or_missing_apikey")
    );
    // No key at all: 401.
    let r = http()
        .post(format!(
            "{}/message/sendText/{INSTANCE_PATH}",
            sim.base_url()
        ))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The instance's own token works like the global key.
    let token = sim.instance_token(DEFAULT_INSTANCE).expect("token");
    let (s, _) = send(&sim, &token, INSTANCE_PATH, body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn validation_errors_have_the_recorded_bodies() {
    let sim = start(EvolutionSimConfig::default()).await;
    let (s, b) = send(
        &sim,
        DEFAULT_API_KEY,
        INSTANCE_PATH,
        json!({"number": "5582990000101"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("http_400_schema_validation")
    );
    let (s, b) = send(&sim, DEFAULT_API_KEY, INSTANCE_PATH, json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json")["response"]["message"],
        json!([[
            "instance requires property \"number\"",
            "instance requires property \"text\""
        ]])
    );
    let (s, b) = send(
        &sim,
        DEFAULT_API_KEY,
        INSTANCE_PATH,
        json!({"number": "5582990000101", "text": "  \n "}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("http_400_empty_text")
    );
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn numbers_not_on_whatsapp_get_exists_false() {
    let mut config = EvolutionSimConfig::default();
    config.not_on_whatsapp.insert("+55 82 99000-0999".into());
    let sim = start(config).await;
    let (s, v) = send_ok(&sim, "5582990000999", "x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v, error_fixture("http_400_number_not_on_whatsapp"));
    // The other ninth-digit form is the same account.
    let (s, _) = send_ok(&sim, "558290000999", "x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Toggled at runtime.
    sim.set_not_on_whatsapp("5582990000999", false);
    let (s, _) = send_ok(&sim, "5582990000999", "x").await;
    assert_eq!(s, StatusCode::CREATED);
    sim.set_not_on_whatsapp("5582990000888", true);
    let (s, _) = send_ok(&sim, "5582990000888", "x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(sim.messages().len(), 1);
}

#[tokio::test]
async fn sending_while_not_open_is_connection_closed() {
    let sim = start(EvolutionSimConfig::default()).await;
    for state in [
        InstanceState::Close,
        InstanceState::Connecting,
        InstanceState::NotLoaded,
    ] {
        sim.set_state(DEFAULT_INSTANCE, state).expect("known");
        let (s, v) = send_ok(&sim, "5582990000101", "x").await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{state:?}");
        assert_eq!(v, error_fixture("http_500_instance_disconnected"));
    }
    sim.set_state(DEFAULT_INSTANCE, InstanceState::Open)
        .expect("known");
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(sim.set_state("nope", InstanceState::Open).is_err());
}

#[tokio::test]
async fn unknown_routes_answer_express_404() {
    let sim = start(EvolutionSimConfig::default()).await;
    let (s, b) = send(
        &sim,
        DEFAULT_API_KEY,
        "",
        json!({"number": "1", "text": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("http_404_unknown_route")
    );
    let (s, b) = get(&sim, "/message/sendText/Condominio%20Bot", DEFAULT_API_KEY).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json")["response"]["message"],
        json!(["Cannot GET /message/sendText/Condominio%20Bot"])
    );
    assert_eq!(sim.calls().other, 2);
}

// ----- connectionState, fetchInstances ------------------------------------------------------

#[tokio::test]
async fn connection_state_follows_the_state_machine() {
    let sim = start(EvolutionSimConfig::default()).await;
    let path = format!("/instance/connectionState/{INSTANCE_PATH}");
    let (s, b) = get(&sim, &path, DEFAULT_API_KEY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        serde_json::from_str::<Value>(&fixture("evolution-connection-state.json")).expect("json")
    );
    for (state, wire) in [
        (InstanceState::Connecting, json!("connecting")),
        (InstanceState::Close, json!("close")),
    ] {
        sim.set_state(DEFAULT_INSTANCE, state).expect("known");
        let (_, b) = get(&sim, &path, DEFAULT_API_KEY).await;
        assert_eq!(
            serde_json::from_str::<Value>(&b).expect("json")["instance"]["state"],
            wire
        );
    }
    sim.set_state(DEFAULT_INSTANCE, InstanceState::NotLoaded)
        .expect("known");
    let (_, b) = get(&sim, &path, DEFAULT_API_KEY).await;
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        error_fixture("connection_state_not_loaded")
    );
    let (s, _) = get(&sim, &path, "wrong").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.calls().connection_state, 5);
}

#[tokio::test]
async fn fetch_instances_has_the_v2_shape() {
    let config = EvolutionSimConfig {
        instances: vec![DEFAULT_INSTANCE.into(), "Portaria".into()],
        ..EvolutionSimConfig::default()
    };
    let sim = start(config).await;
    sim.set_state("Portaria", InstanceState::Close)
        .expect("known");
    let (s, b) = get(&sim, "/instance/fetchInstances", DEFAULT_API_KEY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(keys(&b), keys(&fixture("evolution-fetch-instances.json")));
    let v: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[0]["name"], DEFAULT_INSTANCE);
    assert_eq!(v[0]["connectionStatus"], "open");
    assert_eq!(v[0]["integration"], "WHATSAPP-BAILEYS");
    assert_eq!(v[1]["connectionStatus"], "close");
    assert_eq!(v[1]["disconnectionReasonCode"], 401);
    // With an instance token: only that instance.
    let token = sim.instance_token("Portaria").expect("token");
    let (_, b) = get(&sim, "/instance/fetchInstances", &token).await;
    let v: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["name"], "Portaria");
    let (s, _) = get(&sim, "/instance/fetchInstances", "wrong").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

// ----- findMessages -----------------------------------------------------------------------

#[tokio::test]
async fn find_messages_filters_by_jid_and_id() {
    let sim = start(EvolutionSimConfig::default()).await;
    let (_, a) = send_ok(&sim, "5582990000101", "first VT-1").await;
    let (_, _) = send_ok(&sim, "5582990000101", "second VT-2").await;
    let (_, _) = send_ok(&sim, "5511990000202", "other chat").await;
    let jid = "558290000101@s.whatsapp.net";
    let v = find(
        &sim,
        json!({"where": {"key": {"remoteJid": jid}}, "page": 1, "offset": 50}),
    )
    .await;
    let page = &v["messages"];
    assert_eq!(page["total"], 2);
    assert_eq!(page["pages"], 1);
    assert_eq!(page["currentPage"], 1);
    let records = page["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["message"]["conversation"], "second VT-2",
        "newest first"
    );
    assert_eq!(records[1]["key"]["id"], a["key"]["id"]);
    assert_eq!(records[1]["key"]["fromMe"], true);
    let id = a["key"]["id"].clone();
    let v = find(
        &sim,
        json!({"where": {"key": {"remoteJid": jid, "id": id}}, "page": 1, "offset": 50}),
    )
    .await;
    assert_eq!(v["messages"]["total"], 1);
    assert_eq!(
        v["messages"]["records"][0]["message"]["conversation"],
        "first VT-1"
    );
    // The 13-digit JID was never used by the gateway for this number.
    let v = find(
        &sim,
        json!({"where": {"key": {"remoteJid": "5582990000101@s.whatsapp.net"}}}),
    )
    .await;
    assert_eq!(v["messages"]["total"], 0);
    // Paging.
    let v = find(&sim, json!({"page": 2, "offset": 2})).await;
    assert_eq!(v["messages"]["total"], 3);
    assert_eq!(v["messages"]["pages"], 2);
    assert_eq!(v["messages"]["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(sim.calls().find_messages, 4);
}

#[tokio::test]
async fn find_messages_is_empty_when_the_gateway_stores_nothing() {
    let config = EvolutionSimConfig {
        stores_messages: false,
        ..EvolutionSimConfig::default()
    };
    let sim = start(config).await;
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::CREATED);
    let v = find(&sim, json!({})).await;
    assert_eq!(v["messages"]["total"], 0);
    assert_eq!(v["messages"]["records"], json!([]));
    // Ground truth still has it.
    assert_eq!(sim.messages().len(), 1);
    sim.set_stores_messages(true);
    let v = find(&sim, json!({})).await;
    assert_eq!(v["messages"]["total"], 1);
}

// ----- faults -----------------------------------------------------------------------------

#[tokio::test]
async fn failing_sends_are_seeded_and_not_recorded() {
    async fn run() -> Vec<bool> {
        let sim = start(EvolutionSimConfig::default()).await;
        sim.set_faults(Faults {
            fail_send_percent: 50,
            ..Faults::default()
        });
        let mut out = Vec::new();
        for _ in 0..40 {
            let (s, v) = send_ok(&sim, "5582990000101", "x").await;
            if s == StatusCode::INTERNAL_SERVER_ERROR {
                assert_eq!(v["status"], 500);
                assert_ne!(v["response"]["message"], "Connection Closed");
            } else {
                assert_eq!(s, StatusCode::CREATED);
            }
            out.push(s == StatusCode::CREATED);
        }
        let ok = out.iter().filter(|b| **b).count();
        assert_eq!(sim.messages().len(), ok);
        out
    }
    let a = run().await;
    let ok = a.iter().filter(|b| **b).count();
    assert!((5..=35).contains(&ok), "{ok} of 40 succeeded");
    assert_eq!(a, run().await, "same seed, same sequence");
}

#[tokio::test]
async fn force_unauthorized_and_latency() {
    let sim = start(EvolutionSimConfig::default()).await;
    sim.set_faults(Faults {
        force_unauthorized: true,
        ..Faults::default()
    });
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The instance check still comes first.
    let (s, _) = send(&sim, DEFAULT_API_KEY, "Nope", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_holds_requests_until_cleared() {
    let sim = start(EvolutionSimConfig::default()).await;
    sim.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let quick = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = quick
        .get(format!(
            "{}/instance/connectionState/{INSTANCE_PATH}",
            sim.base_url()
        ))
        .header("apikey", DEFAULT_API_KEY)
        .send()
        .await
        .expect_err("hangs");
    assert!(err.is_timeout());
    // A request in flight is released when the fault is cleared.
    let base = sim.base_url().to_owned();
    let pending = tokio::spawn(async move {
        http()
            .get(format!("{base}/instance/connectionState/{INSTANCE_PATH}"))
            .header("apikey", DEFAULT_API_KEY)
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished());
    sim.clear_faults();
    let status = pending.await.expect("join").expect("answered");
    assert_eq!(status, StatusCode::OK);
    sim.shutdown().await;
}

// ----- control API ------------------------------------------------------------------------

#[tokio::test]
async fn control_api_over_http() {
    let sim = start(EvolutionSimConfig::default()).await;
    let c = http();
    let base = sim.base_url().to_owned();
    // State.
    let r = c
        .post(format!("{base}/__sim/state"))
        .json(&json!({"state": "close"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.state(DEFAULT_INSTANCE), Some(InstanceState::Close));
    let v: Value = c
        .get(format!("{base}/__sim/state"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v, json!([{"instance": DEFAULT_INSTANCE, "state": "close"}]));
    let r = c
        .post(format!("{base}/__sim/state"))
        .json(&json!({"state": "open", "instance": "Nope"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .post(format!("{base}/__sim/state"))
        .json(&json!({"state": "sleeping"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    c.post(format!("{base}/__sim/state"))
        .json(&json!({"state": "open", "instance": DEFAULT_INSTANCE}))
        .send()
        .await
        .expect("post");
    // Faults: a patch.
    let v: Value = c
        .post(format!("{base}/__sim/faults"))
        .json(&json!({"fail_send_percent": 100}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(v["fail_send_percent"], 100);
    assert_eq!(v["hang"], false);
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    c.delete(format!("{base}/__sim/faults"))
        .send()
        .await
        .expect("delete");
    assert_eq!(sim.faults(), Faults::default());
    // Messages.
    let (s, _) = send_ok(&sim, "5582990000101", "hello").await;
    assert_eq!(s, StatusCode::CREATED);
    let v: Value = c
        .get(format!("{base}/__sim/messages"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v[0]["text"], "hello");
    assert_eq!(v[0]["number"], "5582990000101");
    assert_eq!(v[0]["jid"], "558290000101@s.whatsapp.net");
    // Calls are not counted for /__sim.
    let v: Value = c
        .get(format!("{base}/__sim/calls"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["send_text"], 2);
    assert_eq!(v["total"], 2);
    c.post(format!("{base}/__sim/calls/reset"))
        .send()
        .await
        .expect("post");
    assert_eq!(sim.calls().total, 0);
    // Stores messages and not-on-WhatsApp toggles.
    c.post(format!("{base}/__sim/stores_messages"))
        .json(&json!({"on": false}))
        .send()
        .await
        .expect("post");
    assert_eq!(find(&sim, json!({})).await["messages"]["total"], 0);
    c.post(format!("{base}/__sim/not_on_whatsapp"))
        .json(&json!({"number": "5582990000101"}))
        .send()
        .await
        .expect("post");
    let (s, _) = send_ok(&sim, "5582990000101", "x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    c.delete(format!("{base}/__sim/messages"))
        .send()
        .await
        .expect("delete");
    assert!(sim.messages().is_empty());
}
