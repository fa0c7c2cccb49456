//! The recorded shapes (`tests/fixtures/evolution-*.json`, copied from
//! `shared/contracts/fixtures`) through the pure decoding and classification functions.

use chrono::DateTime;
use serde_json::Value;
use vetric_evolution::wire::{
    classify_error, decode_connection_state, decode_find_messages, decode_send_text,
};
use vetric_evolution::{ConnectionState, ErrorKind, EvolutionError};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn error_body(key: &str) -> (u16, Vec<u8>) {
    let all: Value = serde_json::from_str(&fixture("evolution-errors.json")).expect("json");
    let body = all.get(key).unwrap_or_else(|| panic!("no {key}"));
    let status = body["status"].as_u64().map(|s| s as u16).unwrap_or(200);
    (status, serde_json::to_vec(body).expect("ser"))
}

fn classify(key: &str) -> EvolutionError {
    let (status, body) = error_body(key);
    classify_error("sendText", status, &body)
}

#[test]
fn sendtext_response_decodes() {
    let body = fixture("evolution-sendtext-response.json");
    let sent = decode_send_text(201, body.as_bytes()).expect("decodes");
    assert_eq!(sent.id, "3EB0C4A1F27D9B05E6A3D1");
    assert_eq!(sent.id.len(), 22);
    assert_eq!(sent.remote_jid, "558290000101@s.whatsapp.net");
    assert_eq!(
        sent.timestamp,
        DateTime::from_timestamp(1_770_770_400, 0).expect("ts")
    );
    // Debug masks the JID.
    let dbg = format!("{sent:?}");
    assert!(!dbg.contains("558290000101"), "{dbg}");
    assert!(dbg.contains("0101@s.whatsapp.net"));
}

#[test]
fn sendtext_without_key_id_is_unexpected_and_in_doubt() {
    let mut v: Value =
        serde_json::from_str(&fixture("evolution-sendtext-response.json")).expect("json");
    v["key"].as_object_mut().expect("key").remove("id");
    let e = decode_send_text(201, &serde_json::to_vec(&v).expect("ser")).expect_err("no id");
    assert_eq!(e.kind(), ErrorKind::UnexpectedResponse);
    assert!(e.kind().needs_operator());
    assert!(e.may_have_been_sent());
    let e = decode_send_text(201, b"<html>ok</html>").expect_err("html");
    assert_eq!(e.kind(), ErrorKind::UnexpectedResponse);
}

#[test]
fn connection_state_open_and_absent() {
    let open = fixture("evolution-connection-state.json");
    assert_eq!(
        decode_connection_state(200, open.as_bytes()).expect("decodes"),
        ConnectionState::Open
    );
    let (_, absent) = error_body("connection_state_not_loaded");
    let state = decode_connection_state(200, &absent).expect("decodes");
    assert_eq!(state, ConnectionState::Unknown);
    assert!(!state.is_open());
    for (wire, expected) in [
        ("connecting", ConnectionState::Connecting),
        ("close", ConnectionState::Close),
        ("refused", ConnectionState::Unknown),
    ] {
        let body = format!(r#"{{"instance":{{"instanceName":"X","state":"{wire}"}}}}"#);
        assert_eq!(
            decode_connection_state(200, body.as_bytes()).expect("decodes"),
            expected
        );
    }
    // The legacy test script also accepted a top-level `state`.
    assert_eq!(
        decode_connection_state(200, br#"{"state":"open"}"#).expect("decodes"),
        ConnectionState::Open
    );
}

#[test]
fn unauthorized_needs_the_operator() {
    let e = classify("http_401_bad_or_missing_apikey");
    assert_eq!(
        e,
        EvolutionError::Unauthorized {
            endpoint: "sendText",
            status: 401
        }
    );
    assert!(e.kind().needs_operator());
    assert!(!e.kind().is_retryable());
}

#[test]
fn unknown_instance_needs_the_operator_and_names_it() {
    let e = classify("http_404_unknown_instance");
    assert_eq!(
        e,
        EvolutionError::UnknownInstance {
            endpoint: "sendText",
            instance: "Condominio Bot 2".into()
        }
    );
    assert!(e.kind().needs_operator());
    assert!(e.hint().contains("Condominio Bot 2"));
}

#[test]
fn unknown_route_needs_the_operator() {
    let e = classify("http_404_unknown_route");
    assert_eq!(
        e,
        EvolutionError::UnknownRoute {
            endpoint: "sendText",
            message: "Cannot POST /message/sendText/".into()
        }
    );
    assert!(e.kind().needs_operator());
}

#[test]
fn not_on_whatsapp_is_permanent_and_masked() {
    let e = classify("http_400_number_not_on_whatsapp");
    assert_eq!(
        e,
        EvolutionError::NotOnWhatsApp {
            endpoint: "sendText",
            number: "+55 82 9****-0999".into()
        }
    );
    assert!(e.kind().is_permanent());
    let text = format!("{e} {e:?}");
    assert!(!text.contains("90000999"), "{text}");
    assert!(!text.contains("5582"), "{text}");
}

#[test]
fn schema_violation_keeps_the_nested_message() {
    let e = classify("http_400_schema_validation");
    assert_eq!(
        e,
        EvolutionError::Validation {
            endpoint: "sendText",
            message: "instance requires property \"text\"".into()
        }
    );
    assert!(e.kind().is_permanent());
    // Several schema errors are all kept.
    let body = br#"{"status":400,"error":"Bad Request","response":{"message":[["instance requires property \"number\"","instance requires property \"text\""]]}}"#;
    assert_eq!(
        classify_error("sendText", 400, body),
        EvolutionError::Validation {
            endpoint: "sendText",
            message: "instance requires property \"number\"; instance requires property \"text\""
                .into()
        }
    );
}

#[test]
fn blank_text_is_validation() {
    let e = classify("http_400_empty_text");
    assert_eq!(
        e,
        EvolutionError::Validation {
            endpoint: "sendText",
            message: "Text is required".into()
        }
    );
    assert!(e.kind().is_permanent());
}

#[test]
fn connection_closed_is_retryable_and_not_in_doubt() {
    let e = classify("http_500_instance_disconnected");
    assert_eq!(
        e,
        EvolutionError::InstanceClosed {
            endpoint: "sendText"
        }
    );
    assert!(e.kind().is_retryable());
    assert!(!e.may_have_been_sent());
}

#[test]
fn other_statuses() {
    let other500 = classify_error(
        "sendText",
        500,
        br#"{"status":500,"error":"Internal Server Error","response":{"message":"Timed Out"}}"#,
    );
    assert_eq!(other500.kind(), ErrorKind::ServerError);
    assert!(other500.kind().is_retryable());
    assert!(!other500.may_have_been_sent());
    let gateway_timeout = classify_error("sendText", 504, b"<html>504</html>");
    assert!(gateway_timeout.kind().is_retryable());
    assert!(gateway_timeout.may_have_been_sent());
    assert_eq!(
        classify_error("sendText", 429, b"").kind(),
        ErrorKind::RateLimited
    );
    assert_eq!(
        classify_error("sendText", 403, b"{}").kind(),
        ErrorKind::Unauthorized
    );
    let too_large = classify_error("sendText", 413, b"too large");
    assert_eq!(too_large.kind(), ErrorKind::ClientError);
    assert!(too_large.kind().is_permanent());
}

#[test]
fn find_messages_records_decode() {
    let body = br#"{"messages":{"total":2,"pages":1,"currentPage":1,"records":[
        {"id":"x","key":{"id":"3EB0AAAAAAAAAAAAAAAAAA","remoteJid":"558290000101@s.whatsapp.net","fromMe":true},
         "message":{"conversation":"ref VT-42"},"messageTimestamp":1770770400},
        {"key":{"id":"3EB0BBBBBBBBBBBBBBBBBB","remoteJid":"558290000101@s.whatsapp.net","fromMe":false},
         "message":{"extendedTextMessage":{"text":"hi"}},"messageTimestamp":"1770770401"},
        {"key":{"remoteJid":"no id, skipped"}}]}}"#;
    let found = decode_find_messages(200, body).expect("decodes");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, "3EB0AAAAAAAAAAAAAAAAAA");
    assert_eq!(found[0].text.as_deref(), Some("ref VT-42"));
    assert!(found[0].from_me);
    assert_eq!(
        found[0].timestamp,
        DateTime::from_timestamp(1_770_770_400, 0)
    );
    assert_eq!(found[1].text.as_deref(), Some("hi"));
    assert!(!found[1].from_me);
    let empty = br#"{"messages":{"total":0,"pages":0,"currentPage":1,"records":[]}}"#;
    assert!(
        decode_find_messages(200, empty)
            .expect("decodes")
            .is_empty()
    );
    let bad = decode_find_messages(200, br#"{"messages":{"total":0}}"#).expect_err("shape");
    assert_eq!(bad.kind(), ErrorKind::UnexpectedResponse);
}
