//! The gateway's JSON, read leniently where the gateway varies between versions and strictly
//! where vetric depends on a field, and the mapping of error answers to [`EvolutionError`].
//!
//! Pure functions over `(status, body)`, so every recorded fixture is tested without a server.

use crate::error::{EvolutionError, excerpt, mask_number, redact_digits};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;

/// A message the gateway accepted (`sendText` 201). `status` is always `PENDING` at this
/// point: acceptance, not delivery.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    /// `key.id` (`3EB0…`): what `findMessages` filters on.
    pub id: String,
    /// `key.remoteJid`: the JID WhatsApp knows the number by (may lack the ninth digit).
    pub remote_jid: String,
    /// `messageTimestamp` (epoch seconds), or the local receive time when absent.
    pub timestamp: DateTime<Utc>,
}

impl fmt::Debug for SentMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentMessage")
            .field("id", &self.id)
            .field("remote_jid", &redact_digits(&self.remote_jid))
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// An instance's connection to WhatsApp (`connectionState`, B4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Connected: sends go out.
    Open,
    /// Reconnecting.
    Connecting,
    /// Disconnected (possibly logged out: needs a QR scan).
    Close,
    /// `state` absent (the instance exists but is not loaded) or a value vetric does not
    /// know. Not open.
    Unknown,
}

impl ConnectionState {
    pub fn is_open(self) -> bool {
        self == Self::Open
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Connecting => "connecting",
            Self::Close => "close",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message found by `findMessages` (B5b).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct FoundMessage {
    /// `key.id`.
    pub id: String,
    /// `key.remoteJid`.
    pub remote_jid: String,
    /// `message.conversation` (or `extendedTextMessage.text`); `None` for other message types.
    pub text: Option<String>,
    /// `messageTimestamp`, when present and readable.
    pub timestamp: Option<DateTime<Utc>>,
    /// `key.fromMe`: sent by this instance.
    pub from_me: bool,
}

impl fmt::Debug for FoundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundMessage")
            .field("id", &self.id)
            .field("remote_jid", &redact_digits(&self.remote_jid))
            .field("text_chars", &self.text.as_ref().map(|t| t.chars().count()))
            .field("timestamp", &self.timestamp)
            .field("from_me", &self.from_me)
            .finish()
    }
}

/// The body of `sendText`: `{"number": …, "text": …}` (v2).
pub fn send_text_body(number: &str, text: &str) -> Value {
    json!({ "number": number, "text": text })
}

/// Records per `findMessages` page (the body's `offset`, which Evolution takes as page size).
pub const FIND_MESSAGES_PAGE_SIZE: u32 = 50;

/// The body of `findMessages`: `{"where":{"key":{"remoteJid":…,"id"?:…}},"page":1,"offset":50}`.
pub fn find_messages_body(remote_jid: &str, key_id: Option<&str>) -> Value {
    find_messages_page_body(remote_jid, key_id, 1)
}

/// The body of `findMessages` for page `page` (1-based) of [`FIND_MESSAGES_PAGE_SIZE`].
pub fn find_messages_page_body(remote_jid: &str, key_id: Option<&str>, page: u32) -> Value {
    let mut key = json!({ "remoteJid": remote_jid });
    if let Some(id) = key_id {
        key["id"] = json!(id);
    }
    json!({ "where": { "key": key }, "page": page.max(1), "offset": FIND_MESSAGES_PAGE_SIZE })
}

/// Epoch seconds as a number, a numeric string, or a protobuf Long `{low, high}`; values
/// that large are taken as milliseconds.
fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Object(o) => {
            let low = o.get("low")?.as_i64()?;
            let high = o.get("high").and_then(Value::as_i64).unwrap_or(0);
            (high << 32) | (low & 0xFFFF_FFFF)
        }
        _ => return None,
    };
    let secs = if n > 100_000_000_000 { n / 1000 } else { n };
    DateTime::from_timestamp(secs, 0)
}

fn parse_json(endpoint: &'static str, status: u16, body: &[u8]) -> Result<Value, EvolutionError> {
    serde_json::from_slice(body).map_err(|e| EvolutionError::UnexpectedResponse {
        endpoint,
        status,
        detail: format!(
            "not JSON ({e}); body starts {:?}",
            excerpt(&String::from_utf8_lossy(body))
        ),
    })
}

fn missing(endpoint: &'static str, status: u16, path: &str) -> EvolutionError {
    EvolutionError::UnexpectedResponse {
        endpoint,
        status,
        detail: format!("`{path}` missing or not a string"),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

/// Reads a 2xx `sendText` answer. `key.id` and `key.remoteJid` are required.
pub fn decode_send_text(status: u16, body: &[u8]) -> Result<SentMessage, EvolutionError> {
    let ep = crate::client::SEND_TEXT;
    let v = parse_json(ep, status, body)?;
    let id = str_at(&v, &["key", "id"]).ok_or_else(|| missing(ep, status, "key.id"))?;
    let jid =
        str_at(&v, &["key", "remoteJid"]).ok_or_else(|| missing(ep, status, "key.remoteJid"))?;
    let ts = v.get("messageTimestamp").and_then(timestamp);
    if ts.is_none() {
        tracing::warn!(
            endpoint = ep,
            "sendText answer without a readable messageTimestamp; using the local clock"
        );
    }
    Ok(SentMessage {
        id: id.to_owned(),
        remote_jid: jid.to_owned(),
        timestamp: ts.unwrap_or_else(Utc::now),
    })
}

/// Reads a 2xx `connectionState` answer: `instance.state`, or a top-level `state`; absent
/// means [`ConnectionState::Unknown`].
pub fn decode_connection_state(
    status: u16,
    body: &[u8],
) -> Result<ConnectionState, EvolutionError> {
    let ep = crate::client::CONNECTION_STATE;
    let v = parse_json(ep, status, body)?;
    if !v.is_object() {
        return Err(EvolutionError::UnexpectedResponse {
            endpoint: ep,
            status,
            detail: "not a JSON object".to_owned(),
        });
    }
    let state = str_at(&v, &["instance", "state"]).or_else(|| str_at(&v, &["state"]));
    Ok(match state {
        Some("open") => ConnectionState::Open,
        Some("connecting") => ConnectionState::Connecting,
        Some("close") => ConnectionState::Close,
        Some(other) => {
            tracing::warn!(state = other, "unknown Evolution connection state");
            ConnectionState::Unknown
        }
        None => ConnectionState::Unknown,
    })
}

/// Reads a 2xx `findMessages` answer: `messages.records[]` (or `messages` / the body as a
/// plain array, as some versions answer). Records without `key.id` are skipped.
pub fn decode_find_messages(status: u16, body: &[u8]) -> Result<Vec<FoundMessage>, EvolutionError> {
    let ep = crate::client::FIND_MESSAGES;
    let v = parse_json(ep, status, body)?;
    let records = v
        .get("messages")
        .and_then(|m| m.get("records").or(Some(m)))
        .or(Some(&v))
        .and_then(Value::as_array)
        .ok_or_else(|| EvolutionError::UnexpectedResponse {
            endpoint: ep,
            status,
            detail: "`messages.records` missing or not an array".to_owned(),
        })?;
    Ok(records
        .iter()
        .filter_map(|r| {
            let id = str_at(r, &["key", "id"])?;
            let text = str_at(r, &["message", "conversation"])
                .or_else(|| str_at(r, &["message", "extendedTextMessage", "text"]))
                .map(str::to_owned);
            Some(FoundMessage {
                id: id.to_owned(),
                remote_jid: str_at(r, &["key", "remoteJid"])
                    .unwrap_or_default()
                    .to_owned(),
                text,
                timestamp: r.get("messageTimestamp").and_then(timestamp),
                from_me: r
                    .get("key")
                    .and_then(|k| k.get("fromMe"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect())
}

/// `response.message` as text: strings as they are, arrays (nested ones too) flattened and
/// joined with `; `, objects as compact JSON. Digits redacted.
pub fn flatten_message(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Null => {}
            other => out.push(other.to_string()),
        }
    }
    let mut parts = Vec::new();
    walk(v, &mut parts);
    excerpt(&parts.join("; "))
}

/// The first `{"exists": false, "number": …}` in a 400's message (nested arrays searched).
fn not_on_whatsapp(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.iter().find_map(not_on_whatsapp),
        Value::Object(o) if o.get("exists") == Some(&Value::Bool(false)) => Some(
            o.get("number")
                .and_then(Value::as_str)
                .or_else(|| o.get("jid").and_then(Value::as_str))
                .map(|n| mask_number(n.split('@').next().unwrap_or(n)))
                .unwrap_or_else(|| "the number".to_owned()),
        ),
        _ => None,
    }
}

/// Maps a non-2xx answer to the error that decides what happens next.
pub fn classify_error(endpoint: &'static str, status: u16, body: &[u8]) -> EvolutionError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message_value = parsed
        .as_ref()
        .and_then(|v| v.get("response"))
        .and_then(|r| r.get("message"));
    let message = match message_value {
        Some(m) => flatten_message(m),
        None => excerpt(&String::from_utf8_lossy(body)),
    };
    match status {
        400 => match message_value.and_then(not_on_whatsapp) {
            Some(number) => EvolutionError::NotOnWhatsApp { endpoint, number },
            None => EvolutionError::Validation { endpoint, message },
        },
        401 | 403 => EvolutionError::Unauthorized { endpoint, status },
        404 => {
            if let Some(instance) = unknown_instance(&message) {
                EvolutionError::UnknownInstance { endpoint, instance }
            } else {
                EvolutionError::UnknownRoute { endpoint, message }
            }
        }
        429 => EvolutionError::RateLimited { endpoint },
        500..=599 if message.contains("Connection Closed") => {
            EvolutionError::InstanceClosed { endpoint }
        }
        500..=599 => EvolutionError::ServerError {
            endpoint,
            status,
            message,
        },
        _ => EvolutionError::ClientError {
            endpoint,
            status,
            message,
        },
    }
}

/// `The "<name>" instance does not exist` → `<name>`.
fn unknown_instance(message: &str) -> Option<String> {
    if !message.contains("instance does not exist") {
        return None;
    }
    let start = message.find('"')? + 1;
    let end = start + message[start..].find('"')?;
    Some(message[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form() {
        let t = DateTime::from_timestamp(1_770_770_400, 0);
        assert_eq!(timestamp(&json!(1_770_770_400)), t);
        assert_eq!(timestamp(&json!("1770770400")), t);
        assert_eq!(timestamp(&json!(1_770_770_400_000_i64)), t);
        assert_eq!(
            timestamp(&json!({"low": 1_770_770_400, "high": 0, "unsigned": false})),
            t
        );
        assert_eq!(timestamp(&json!(null)), None);
    }

    #[test]
    fn find_messages_body_shape() {
        assert_eq!(
            find_messages_body("558290000101@s.whatsapp.net", Some("3EB0AA")),
            json!({"where":{"key":{"remoteJid":"558290000101@s.whatsapp.net","id":"3EB0AA"}},"page":1,"offset":50})
        );
        assert_eq!(
            find_messages_body("x@s.whatsapp.net", None)["where"]["key"],
            json!({"remoteJid":"x@s.whatsapp.net"})
        );
    }

    #[test]
    fn html_error_pages_are_excerpted() {
        let e = classify_error("sendText", 502, b"<html>Bad Gateway</html>");
        assert_eq!(
            e,
            EvolutionError::ServerError {
                endpoint: "sendText",
                status: 502,
                message: "<html>Bad Gateway</html>".into()
            }
        );
    }
}
