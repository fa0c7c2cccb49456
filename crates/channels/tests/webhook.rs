//! The webhook channel against the simulator's receiver: signature, dedupe header, and how
//! each answer or silence is classified.

use std::time::Duration;

use serde_json::json;
use url::Url;
use vetric_channels::webhook::sign;
use vetric_channels::{ChannelError, ErrorKind, Secret, WebhookChannel, WebhookConfig};
use vetric_sim::webhook::{WebhookFault, WebhookReceiver};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn channel(url: &str, secret: &str) -> WebhookChannel {
    // Generous for a loaded CI machine; the hang test uses `channel_with_timeout`.
    channel_with_timeout(url, secret, Duration::from_secs(10))
}

fn channel_with_timeout(url: &str, secret: &str, timeout: Duration) -> WebhookChannel {
    WebhookChannel::new(WebhookConfig {
        url: Url::parse(url).unwrap(),
        secret: Secret::new(secret),
        timeout,
    })
    .unwrap()
}

fn payload() -> serde_json::Value {
    json!({
        "event": "gateway_disconnected",
        "site": "residencial-aurora",
        "text": "Gateway do WhatsApp desconectado — Bloco A",
    })
}

#[tokio::test]
async fn a_delivery_is_signed_and_verifies() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    let channel = channel(&receiver.url(), SECRET);

    channel.send("ntf-42", &payload()).await.unwrap();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook");
    assert!(r.signature_valid, "{r:?}");
    assert_eq!(r.delivery_id.as_deref(), Some("ntf-42"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.json.as_ref(), Some(&payload()));
    let ts: u64 = r.timestamp.as_deref().unwrap().parse().unwrap();
    assert_eq!(
        r.signature.as_deref(),
        Some(sign(SECRET.as_bytes(), ts, &r.body).as_str())
    );
}

#[tokio::test]
async fn retries_carry_the_same_delivery_id() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    let channel = channel(&receiver.url(), SECRET);
    receiver.set_fault(WebhookFault::Status(503));
    assert!(channel.send("ntf-5", &payload()).await.is_err());
    receiver.clear_fault();
    channel.send("ntf-5", &payload()).await.unwrap();
    let ids: Vec<_> = receiver
        .requests()
        .into_iter()
        .map(|r| r.delivery_id.unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["ntf-5", "ntf-5"]);
}

#[tokio::test]
async fn a_500_is_retried() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    receiver.set_fault(WebhookFault::Status(500));
    let e = channel(&receiver.url(), SECRET)
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(!e.may_have_been_sent());
    assert!(
        matches!(e, ChannelError::WebhookStatus { status: 500, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_429_is_retried() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    receiver.set_fault(WebhookFault::Status(429));
    let e = channel(&receiver.url(), SECRET)
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
}

#[tokio::test]
async fn a_400_is_permanent() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    receiver.set_fault(WebhookFault::Status(400));
    let e = channel(&receiver.url(), SECRET)
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(!e.may_have_been_sent());
}

#[tokio::test]
async fn a_wrong_secret_is_a_configuration_error() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    let e = channel(&receiver.url(), "another-secret-of-32-characters!")
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChannelError::WebhookStatus { status: 401, .. }),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(!receiver.requests()[0].signature_valid);
}

#[tokio::test]
async fn a_timeout_is_retried_and_may_have_been_delivered() {
    let receiver = WebhookReceiver::start(SECRET).await.unwrap();
    receiver.set_fault(WebhookFault::Hang);
    // Small so that the test finishes quickly; nothing asserts on elapsed time.
    let e = channel_with_timeout(&receiver.url(), SECRET, Duration::from_millis(300))
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(matches!(e, ChannelError::WebhookTimeout { .. }), "{e:?}");
    assert!(e.may_have_been_sent());
    assert_eq!(receiver.requests().len(), 1, "the receiver did get it");
}

#[tokio::test]
async fn a_closed_port_is_retried_and_certainly_not_delivered() {
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let e = channel(&format!("http://{addr}/hook"), SECRET)
        .send("ntf-1", &payload())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(!e.may_have_been_sent(), "{e:?}");
}
