//! A webhook receiver for tests and the demo: records every request, checks vetric's
//! signature (`X-Vetric-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`)
//! with its own implementation of the recipe, and can fail on demand.
//!
//! Answers: a configured fault first (a status, or a hang until the fault is cleared), then
//! 401 for a missing or wrong signature, else 200. Every request is recorded whatever the
//! answer. It does not check the timestamp's age (tests control no clock here).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the receiver does with the next requests, until changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFault {
    /// Verify and answer normally.
    #[default]
    None,
    /// Answer this status (after recording the request).
    Status(u16),
    /// Record the request and never answer (until the fault is cleared).
    Hang,
}

/// A request the receiver got.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWebhook {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub delivery_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// Whether the signature matched the body and timestamp under the receiver's secret.
    pub signature_valid: bool,
    pub body: Vec<u8>,
    /// The body parsed as JSON, if it is JSON.
    pub json: Option<serde_json::Value>,
}

struct Shared {
    secret: Vec<u8>,
    requests: Mutex<Vec<ReceivedWebhook>>,
    fault: Mutex<WebhookFault>,
    /// True while requests must hang; a hanging request waits for it to turn false.
    hang: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a receiver lock is a bug in a test; keep serving anyway.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The webhook receiver.
pub struct WebhookReceiver;

impl WebhookReceiver {
    /// Starts a receiver on `127.0.0.1:0` that verifies signatures with `secret`. Must be
    /// called inside a Tokio runtime; serves until the handle is dropped.
    pub async fn start(secret: impl Into<String>) -> io::Result<WebhookReceiverHandle> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (hang, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            secret: secret.into().into_bytes(),
            requests: Mutex::new(Vec::new()),
            fault: Mutex::new(WebhookFault::None),
            hang,
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "webhook receiver stopped with an error");
            }
        });
        tracing::info!(%addr, "webhook receiver listening");
        Ok(WebhookReceiverHandle { shared, addr, task })
    }
}

/// A running receiver. Dropping it stops the server and releases hanging requests.
pub struct WebhookReceiverHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WebhookReceiverHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/hook`, a URL to configure in vetric (any path is accepted).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ReceivedWebhook> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Sets the fault in force (clearing a hang releases the requests waiting in it, which
    /// then answer 200 or 401).
    pub fn set_fault(&self, fault: WebhookFault) {
        *lock(&self.shared.fault) = fault;
        self.shared.hang.send_replace(fault == WebhookFault::Hang);
    }

    pub fn fault(&self) -> WebhookFault {
        *lock(&self.shared.fault)
    }

    pub fn clear_fault(&self) {
        self.set_fault(WebhookFault::None);
    }
}

impl Drop for WebhookReceiverHandle {
    fn drop(&mut self) {
        self.shared.hang.send_replace(false);
        self.task.abort();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let timestamp = header("x-vetric-timestamp");
    let signature = header("x-vetric-signature");
    let signature_valid = match (&timestamp, &signature) {
        (Some(ts), Some(sig)) => verify(&shared.secret, ts, &body, sig),
        _ => false,
    };
    lock(&shared.requests).push(ReceivedWebhook {
        method: method.to_string(),
        path: uri.path().to_owned(),
        content_type: header("content-type"),
        delivery_id: header("x-vetric-delivery"),
        timestamp,
        signature,
        signature_valid,
        json: serde_json::from_slice(&body).ok(),
        body: body.to_vec(),
    });
    let fault = *lock(&shared.fault);
    match fault {
        WebhookFault::Hang => {
            let mut rx = shared.hang.subscribe();
            // Err means the sender is gone (receiver dropped): stop waiting.
            while *rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        WebhookFault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "simulated failure");
        }
        WebhookFault::None => {}
    }
    if signature_valid {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::UNAUTHORIZED, "invalid signature")
    }
}

/// The receiver side of the recipe: HMAC-SHA256 over `"{timestamp}.{body}"`, compared in
/// constant time.
fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_an_independently_computed_signature() {
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        let sig = "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23";
        assert!(verify(
            b"0123456789abcdef",
            "1700000000",
            br#"{"a":1}"#,
            sig
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "1700000001",
            br#"{"a":1}"#,
            sig
        ));
        assert!(!verify(
            b"wrong-secret-000",
            "1700000000",
            br#"{"a":1}"#,
            sig
        ));
        assert!(!verify(
            b"0123456789abcdef",
            "1700000000",
            br#"{"a":1}"#,
            "sha256=zz"
        ));
    }
}
