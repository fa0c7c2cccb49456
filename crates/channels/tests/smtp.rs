//! The SMTP channel against the simulator's SMTP sink: what arrives, AUTH, and how each
//! refusal or silence of the server is classified.

use std::net::SocketAddr;
use std::time::Duration;

use vetric_channels::{
    ChannelError, ErrorKind, Secret, SmtpChannel, SmtpConfig, SmtpStage, SmtpTls,
};
use vetric_sim::smtp::{HangAt, SmtpFaults, SmtpReply, SmtpSink, SmtpSinkConfig};

const USER: &str = "alertas@vetric.example";
const PASSWORD: &str = "s3nha-do-relay";
const TO: &str = "sindico@exemplo.com.br";
const SUBJECT: &str = "Carregador offline — Bloco A";
const BODY: &str = "O carregador CP-01 (Bloco A) está offline há 15 minutos.\nVerifique a alimentação e a rede.\n\nAção sugerida: reiniciar o disjuntor.";

fn config(addr: SocketAddr) -> SmtpConfig {
    SmtpConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        username: None,
        password: None,
        from: "Vetric <alertas@vetric.example>".to_owned(),
        tls: SmtpTls::None,
        // Generous for a loaded CI machine; the hang tests use `short_timeout`.
        timeout: Duration::from_secs(10),
    }
}

/// Small so that the hang tests finish quickly; nothing asserts on elapsed time.
fn short_timeout(cfg: SmtpConfig) -> SmtpConfig {
    SmtpConfig {
        timeout: Duration::from_millis(300),
        ..cfg
    }
}

fn with_auth(addr: SocketAddr, password: &str) -> SmtpConfig {
    SmtpConfig {
        username: Some(USER.to_owned()),
        password: Some(Secret::new(password)),
        ..config(addr)
    }
}

async fn auth_sink() -> (SocketAddr, vetric_sim::smtp::SmtpSinkHandle) {
    SmtpSink::start_with(SmtpSinkConfig {
        credentials: Some((USER.to_owned(), PASSWORD.to_owned())),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn mail_arrives_with_subject_body_and_message_id_intact() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    let channel = SmtpChannel::new(config(addr)).unwrap();

    channel.send(TO, SUBJECT, BODY, "ntf-42").await.unwrap();

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.subject.as_deref(), Some(SUBJECT));
    assert_eq!(mail.body.trim_end(), BODY);
    assert_eq!(mail.header("Message-ID"), Some("<ntf-42@vetric.example>"));
    assert_eq!(mail.mail_from, "alertas@vetric.example");
    assert_eq!(mail.rcpt_to, vec![TO.to_owned()]);
    let content_type = mail.header("Content-Type").unwrap().to_ascii_lowercase();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(content_type.contains("charset=utf-8"), "{content_type}");
    assert!(mail.header("Date").is_some());
    assert!(
        mail.raw.is_ascii(),
        "the wire form stays ASCII (no 8BITMIME needed)"
    );
    assert_eq!(mail.authenticated_as, None);
}

#[tokio::test]
async fn a_resend_carries_the_same_message_id() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    let channel = SmtpChannel::new(config(addr)).unwrap();
    channel
        .send(TO, SUBJECT, BODY, "ntf-7@vetric.example")
        .await
        .unwrap();
    channel
        .send(TO, SUBJECT, BODY, "ntf-7@vetric.example")
        .await
        .unwrap();
    let ids: Vec<_> = sink
        .mails()
        .iter()
        .map(|m| m.header("Message-ID").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, vec!["<ntf-7@vetric.example>"; 2]);
}

#[tokio::test]
async fn auth_is_used_when_configured() {
    let (addr, sink) = auth_sink().await;
    let channel = SmtpChannel::new(with_auth(addr, PASSWORD)).unwrap();

    channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap();

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].authenticated_as.as_deref(), Some(USER));
    let attempts = sink.auth_attempts();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].accepted);
    assert_eq!(attempts[0].mechanism, "PLAIN");
}

#[tokio::test]
async fn a_refused_password_is_a_configuration_error() {
    let (addr, sink) = auth_sink().await;
    let channel = SmtpChannel::new(with_auth(addr, "wrong")).unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(!e.may_have_been_sent());
    assert!(
        matches!(
            e,
            ChannelError::SmtpRefused {
                stage: SmtpStage::Auth,
                code: 535,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains("wrong"),
        "no password in the error: {e}"
    );
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn without_credentials_a_relay_requiring_auth_refuses_the_sender() {
    let (addr, sink) = auth_sink().await;
    let channel = SmtpChannel::new(config(addr)).unwrap();
    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn recipient_refused_with_550_is_permanent() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        rcpt: Some(SmtpReply::mailbox_unavailable()),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(config(addr)).unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(!e.may_have_been_sent());
    assert!(
        matches!(
            e,
            ChannelError::SmtpRefused {
                stage: SmtpStage::RcptTo,
                code: 550,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn recipient_refused_with_451_is_retried() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        rcpt: Some(SmtpReply::try_again_later()),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(config(addr)).unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(!e.may_have_been_sent());
    assert!(
        matches!(
            e,
            ChannelError::SmtpRefused {
                stage: SmtpStage::RcptTo,
                code: 451,
                ..
            }
        ),
        "{e:?}"
    );

    sink.clear_faults();
    channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap();
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn content_refused_with_554_is_permanent() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        content: Some(SmtpReply::new(554, "5.7.1 Message rejected as spam")),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(config(addr)).unwrap();
    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permanent, "{e}");
    assert!(
        !e.may_have_been_sent(),
        "the server answered: it did not take the mail"
    );
}

#[tokio::test]
async fn a_hanging_server_is_retried_after_the_timeout() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        hang: Some(HangAt::Rcpt),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(short_timeout(config(addr))).unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(
        matches!(
            e,
            ChannelError::SmtpTimeout {
                stage: SmtpStage::RcptTo,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.may_have_been_sent(), "the content was never written");
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn a_server_silent_from_the_start_is_retried() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        hang: Some(HangAt::Greeting),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(short_timeout(config(addr))).unwrap();
    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(
        matches!(
            e,
            ChannelError::SmtpTimeout {
                stage: SmtpStage::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.may_have_been_sent());
}

#[tokio::test]
async fn silence_after_the_content_may_have_sent_the_mail() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    sink.set_faults(SmtpFaults {
        hang: Some(HangAt::AfterContent),
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(short_timeout(config(addr))).unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-9").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(
        matches!(
            e,
            ChannelError::SmtpTimeout {
                stage: SmtpStage::Content,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.may_have_been_sent());
    // The server does have it: a resend must reuse the Message-ID.
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn starttls_required_but_not_offered_refuses_to_send_in_clear() {
    let (addr, sink) = auth_sink().await;
    let channel = SmtpChannel::new(SmtpConfig {
        tls: SmtpTls::StartTls,
        ..with_auth(addr, PASSWORD)
    })
    .unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert_eq!(e, ChannelError::StartTlsUnavailable);
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(sink.auth_attempts().is_empty(), "no password sent in clear");
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_retried_and_certainly_not_sent() {
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let channel = SmtpChannel::new(config(addr)).unwrap();
    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retry, "{e}");
    assert!(!e.may_have_been_sent());
    assert!(
        matches!(
            e,
            ChannelError::SmtpNetwork {
                stage: SmtpStage::Connect,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_malformed_recipient_is_refused_before_connecting() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    let channel = SmtpChannel::new(config(addr)).unwrap();
    let e = channel
        .send("joao.silva at exemplo", SUBJECT, BODY, "ntf-1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(!e.to_string().contains("joao.silva"), "address masked: {e}");
    assert_eq!(sink.connections(), 0);
}

#[tokio::test]
async fn a_failed_starttls_handshake_is_a_configuration_error() {
    let (addr, sink) = auth_sink().await;
    sink.set_faults(SmtpFaults {
        broken_starttls: true,
        ..SmtpFaults::default()
    });
    let channel = SmtpChannel::new(SmtpConfig {
        tls: SmtpTls::StartTls,
        ..with_auth(addr, PASSWORD)
    })
    .unwrap();

    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();

    assert!(
        matches!(
            e,
            ChannelError::SmtpTls {
                stage: SmtpStage::StartTls,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(!e.may_have_been_sent());
    assert!(sink.auth_attempts().is_empty(), "no password sent in clear");
}

#[tokio::test]
async fn implicit_tls_against_a_plain_server_is_a_configuration_error() {
    let (addr, sink) = SmtpSink::start().await.unwrap();
    let channel = SmtpChannel::new(SmtpConfig {
        tls: SmtpTls::Implicit,
        ..config(addr)
    })
    .unwrap();
    let e = channel.send(TO, SUBJECT, BODY, "ntf-1").await.unwrap_err();
    assert!(
        matches!(
            e,
            ChannelError::SmtpTls {
                stage: SmtpStage::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(sink.mails().is_empty());
}
