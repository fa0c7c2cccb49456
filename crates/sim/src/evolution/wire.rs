//! The JSON shapes the gateway answers with (contract B2–B5b), fields in the recorded order.

use serde::Serialize;
use serde_json::{Value, json};

/// `{"status":…,"error":…,"response":{"message":…}}`, the gateway's error envelope (B2).
pub fn error_envelope(status: u16, message: Value) -> Value {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    json!({ "status": status, "error": reason, "response": { "message": message } })
}

/// `key` of a message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageKey {
    pub remote_jid: String,
    pub from_me: bool,
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub conversation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LowHigh {
    pub low: i64,
    pub high: i64,
    pub unsigned: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DisappearingMode {
    pub initiator: u8,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextInfo {
    pub mentioned_jid: Vec<String>,
    pub group_mentions: Vec<String>,
    pub ephemeral_setting_timestamp: LowHigh,
    pub disappearing_mode: DisappearingMode,
}

/// The 201 body of `sendText` (B3, `evolution-sendtext-response.json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendTextResponse {
    pub key: MessageKey,
    pub push_name: &'static str,
    pub status: &'static str,
    pub message: Conversation,
    pub context_info: ContextInfo,
    pub message_type: &'static str,
    pub message_timestamp: i64,
    pub instance_id: String,
    pub source: &'static str,
}

/// One record of `findMessages` (B5b).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundRecord {
    pub id: String,
    pub key: MessageKey,
    pub push_name: &'static str,
    pub message_type: &'static str,
    pub message: Conversation,
    pub message_timestamp: i64,
    pub instance_id: String,
    pub source: &'static str,
    pub status: &'static str,
}

/// `messages` of `findMessages`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundPage {
    pub total: usize,
    pub pages: usize,
    pub current_page: usize,
    pub records: Vec<FoundRecord>,
}

/// The `findMessages` body.
#[derive(Debug, Clone, Serialize)]
pub struct FindMessagesResponse {
    pub messages: FoundPage,
}
