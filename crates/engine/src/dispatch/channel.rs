//! The channels the dispatcher sends through, behind one small trait, and the WhatsApp one.
//!
//! A channel answers one question per outbox row: did the far end accept it? Its error says
//! what happens next, in the dispatcher's terms ([`SendError`]); the dispatcher owns retries,
//! the outbox states and the operator alerts. E-mail and webhook channels (crate
//! `vetric-channels`) plug in through [`Channel`] as well.

use std::future::Future;
use std::pin::Pin;
use vetric_channels::{ChannelError, ErrorKind as ChannelErrorKind, SmtpChannel, WebhookChannel};
use vetric_domain::PhoneNumber;
use vetric_evolution::wire::FIND_MESSAGES_PAGE_SIZE;
use vetric_evolution::{EvolutionClient, EvolutionError};
use vetric_store::OutboxRow;

/// Why a send did not end in "accepted", sorted by what the dispatcher does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Likely to pass later (gateway 5xx, instance not connected, connection refused): retry
    /// with backoff.
    #[error("{0}")]
    Retryable(String),
    /// This message will never pass as it is (number not on WhatsApp, refused as invalid).
    #[error("{0}")]
    Permanent(String),
    /// A configuration problem (key refused, unknown instance): keep the message, retry much
    /// later, alert an operator.
    #[error("{0}")]
    NeedsOperator(String),
    /// The request may have reached the far end (timeout after connecting, lost answer): the
    /// row goes in doubt and is reconciled, never resent blindly.
    #[error("{0}")]
    MaybeSent(String),
}

/// What a successful send returns: the far end's id of the message, when it gives one.
pub type SendResult = Result<Option<String>, SendError>;

/// A boxed future, so the trait stays object-safe without an extra crate.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendResult> + Send + 'a>>;

/// One way of delivering an outbox row (`recipient`, `subject`, `body`).
pub trait Channel: Send + Sync {
    fn send<'a>(&'a self, row: &'a OutboxRow) -> SendFuture<'a>;
}

/// A site's WhatsApp gateway (Evolution API).
#[derive(Clone)]
pub struct WhatsAppGateway {
    pub client: EvolutionClient,
    /// Whether this gateway persists sent messages (its database), so that `findMessages`
    /// not finding one proves it was never sent (contract B5b). Default false: an in-doubt
    /// message then waits for an operator instead of being resent blindly.
    pub stores_messages: bool,
}

/// What a gateway said about an in-doubt message (contract B5b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The gateway has it (its `key.id`).
    Found(String),
    /// Not under any JID variant of the number. Proof of absence only when the gateway
    /// stores messages.
    NotFound,
    /// The question could not be answered (call failed, recipient unreadable).
    Unknown(String),
}

/// The text sent for a row: its body, with the reference code appended when the body does not
/// already carry it (reconciliation searches the gateway for it).
pub fn text_with_ref(row: &OutboxRow) -> String {
    if row.ref_code.is_empty() || row.body.contains(&row.ref_code) {
        row.body.clone()
    } else {
        format!("{}\n\nref. {}", row.body, row.ref_code)
    }
}

fn classify(e: &EvolutionError) -> SendError {
    let kind = e.kind();
    let text = e.to_string();
    if e.may_have_been_sent() {
        SendError::MaybeSent(text)
    } else if kind.is_permanent() {
        SendError::Permanent(text)
    } else if kind.needs_operator() {
        SendError::NeedsOperator(format!("{text}. {}", e.hint()))
    } else {
        SendError::Retryable(text)
    }
}

impl WhatsAppGateway {
    /// Sends `row` as a text message. Only an answer of the gateway (201 with `key.id`) is a
    /// success.
    pub async fn send_row(&self, row: &OutboxRow) -> SendResult {
        let raw = row.recipient.as_deref().unwrap_or_default();
        let number = PhoneNumber::parse(raw)
            .map_err(|e| SendError::Permanent(format!("invalid phone number: {e}")))?;
        match self.client.send_text(&number, &text_with_ref(row)).await {
            Ok(sent) => Ok(Some(sent.id)),
            Err(e) => Err(classify(&e)),
        }
    }

    /// Looks for an in-doubt row at the gateway: by `key.id` when it is known, else by the
    /// reference code in the recipient's messages, paging back (newest first) until a message
    /// older than the row is reached, the pages end, or [`RECONCILE_MAX_PAGES`] were read
    /// (then the answer is `Unknown`: a message beyond the pages read may be this one); under
    /// every JID variant of the number (the gateway may drop the Brazilian ninth digit).
    pub async fn reconcile(&self, row: &OutboxRow) -> Reconciled {
        let raw = row.recipient.as_deref().unwrap_or_default();
        let number = match PhoneNumber::parse(raw) {
            Ok(n) => n,
            Err(e) => return Reconciled::Unknown(format!("invalid phone number: {e}")),
        };
        let key_id = row.gateway_message_id.as_deref();
        if key_id.is_none() && row.ref_code.is_empty() {
            return Reconciled::Unknown(
                "the message has neither a gateway id nor a reference code".into(),
            );
        }
        // The gateway keeps whole seconds; a second of slack keeps a message sent in the
        // row's first second from being taken for an older one.
        let older_than = row.created_at - chrono::TimeDelta::seconds(1);
        for jid in number.jid_variants() {
            let mut page = 1;
            loop {
                if page > RECONCILE_MAX_PAGES {
                    return Reconciled::Unknown(format!(
                        "the recipient has more than {} messages newer than this one at the                          gateway; it was not found in them",
                        RECONCILE_MAX_PAGES * FIND_MESSAGES_PAGE_SIZE
                    ));
                }
                let found = match self.client.find_messages_page(&jid, key_id, page).await {
                    Err(e) => return Reconciled::Unknown(e.to_string()),
                    Ok(found) => found,
                };
                let hit = found.iter().find(|m| {
                    m.from_me
                        && match key_id {
                            Some(id) => m.id == id,
                            None => m.text.as_deref().is_some_and(|t| t.contains(&row.ref_code)),
                        }
                });
                if let Some(m) = hit {
                    return Reconciled::Found(m.id.clone());
                }
                // Filtered by `key.id`, the first page says it all. Otherwise stop at the
                // end of the pages, or once a page reaches back before the row existed.
                let reached_older = found
                    .iter()
                    .any(|m| m.timestamp.is_some_and(|t| t < older_than));
                if key_id.is_some() || found.is_empty() || reached_older {
                    break;
                }
                page += 1;
            }
        }
        Reconciled::NotFound
    }
}

/// How many `findMessages` pages (of [`FIND_MESSAGES_PAGE_SIZE`]) reconciliation reads per
/// JID before it gives up and leaves the row in doubt (never resent without an answer).
pub const RECONCILE_MAX_PAGES: u32 = 20;

impl Channel for WhatsAppGateway {
    fn send<'a>(&'a self, row: &'a OutboxRow) -> SendFuture<'a> {
        Box::pin(self.send_row(row))
    }
}

/// The id the far end dedupes on (`Message-ID` of a mail, `X-Vetric-Delivery` of a webhook):
/// stable per outbox row, so a resend after a doubtful attempt is recognised as the same one.
pub fn delivery_id(row: &OutboxRow) -> String {
    format!("vetric-outbox-{}", row.id)
}

fn classify_channel(e: &ChannelError) -> SendError {
    let text = e.to_string();
    if e.may_have_been_sent() {
        return SendError::MaybeSent(text);
    }
    match e.kind() {
        ChannelErrorKind::Retry => SendError::Retryable(text),
        ChannelErrorKind::Permanent => SendError::Permanent(text),
        ChannelErrorKind::Configuration => SendError::NeedsOperator(text),
    }
}

/// E-mail rows through an SMTP relay (`recipient` is the address).
pub struct EmailChannel(pub SmtpChannel);

impl Channel for EmailChannel {
    fn send<'a>(&'a self, row: &'a OutboxRow) -> SendFuture<'a> {
        Box::pin(async move {
            let to = row.recipient.as_deref().unwrap_or_default();
            let subject = row.subject.as_deref().unwrap_or("vetric");
            self.0
                .send(to, subject, &text_with_ref(row), &delivery_id(row))
                .await
                .map(|()| None)
                .map_err(|e| classify_channel(&e))
        })
    }
}

/// Webhook rows: a signed JSON POST to the configured receiver.
pub struct WebhookSender(pub WebhookChannel);

impl Channel for WebhookSender {
    fn send<'a>(&'a self, row: &'a OutboxRow) -> SendFuture<'a> {
        Box::pin(async move {
            let payload = serde_json::json!({
                "id": row.id,
                "site_id": row.site_id,
                "rule": row.rule,
                "audience": row.audience,
                "scope": row.scope,
                "subject": row.subject,
                "text": text_with_ref(row),
                "ref": row.ref_code,
                "created_at": row.created_at,
            });
            self.0
                .send(&delivery_id(row), &payload)
                .await
                .map(|()| None)
                .map_err(|e| classify_channel(&e))
        })
    }
}
