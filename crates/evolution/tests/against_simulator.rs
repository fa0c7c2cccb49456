//! The real client against the real Evolution simulator (`vetric-sim`), in process on
//! 127.0.0.1:0: happy paths, every error class, faults, and the reconciliation lookup (B5b).
//!
//! These tests run on the real clock with small timeouts; assertions are on behaviour and on
//! the simulator's record and counters, never on a wall-clock duration.

use std::future::Future;
use std::time::Duration;
use url::Url;
use vetric_evolution::{
    ConnectionState, ErrorKind, EvolutionClient, EvolutionConfig, EvolutionError, PhoneNumber,
};
use vetric_sim::evolution::{
    DEFAULT_API_KEY, DEFAULT_INSTANCE, EvolutionSim, EvolutionSimConfig, EvolutionSimHandle,
    Faults, InstanceState,
};

const TEST_GUARD: Duration = Duration::from_secs(60);

async fn guarded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_GUARD, test)
        .await
        .expect("the test did not finish within its guard: something hangs")
}

async fn start(config: EvolutionSimConfig) -> EvolutionSimHandle {
    EvolutionSim::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

fn config(sim: &EvolutionSimHandle) -> EvolutionConfig {
    let mut c = EvolutionConfig::new(
        Url::parse(sim.base_url()).expect("base url"),
        DEFAULT_API_KEY.into(),
        DEFAULT_INSTANCE,
    );
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    c
}

fn client(config: EvolutionConfig) -> EvolutionClient {
    EvolutionClient::new(config).expect("client builds")
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).expect("valid number")
}

fn no_secrets(e: &EvolutionError) {
    let text = format!("{e} {e:?} {}", e.hint());
    assert!(!text.contains(DEFAULT_API_KEY), "{text}");
    assert!(!text.contains("wrong-key"), "{text}");
    assert!(!text.contains("90000101"), "{text}");
    assert!(!text.contains("90000999"), "{text}");
}

#[tokio::test]
async fn send_text_is_accepted_and_recorded() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        let c = client(config(&sim));
        let to = phone("+55 (82) 99000-0101");
        let text = "🔋 *Carregamento iniciado*\n\nOlá! _Mensagem automática_";
        let sent = c.send_text(&to, text).await.expect("sent");
        assert_eq!(sent.id.len(), 22);
        assert!(sent.id.starts_with("3EB0"));
        assert_eq!(sent.remote_jid, to.gateway_jid());
        assert_eq!(sent.remote_jid, "558290000101@s.whatsapp.net");
        assert!((sent.timestamp - chrono::Utc::now()).num_seconds().abs() < 60);

        let msgs = sim.messages();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].number, "5582990000101", "digits only on the wire");
        assert_eq!(msgs[0].text, text);
        assert_eq!(msgs[0].id, sent.id);
        assert_eq!(
            msgs[0].instance, DEFAULT_INSTANCE,
            "name with a space, encoded"
        );
        assert_eq!(sim.calls().send_text, 1);
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn blank_text_is_refused_without_a_call() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        let c = client(config(&sim));
        let e = c
            .send_text(&phone("5582990000101"), " \n ")
            .await
            .expect_err("blank");
        assert_eq!(e.kind(), ErrorKind::Validation);
        assert!(e.kind().is_permanent());
        assert_eq!(sim.calls().total, 0);
    })
    .await;
}

#[tokio::test]
async fn not_on_whatsapp_is_permanent_and_masked() {
    guarded(async {
        let mut cfg = EvolutionSimConfig::default();
        cfg.not_on_whatsapp.insert("5582990000999".into());
        let sim = start(cfg).await;
        let c = client(config(&sim));
        let e = c
            .send_text(&phone("5582990000999"), "x")
            .await
            .expect_err("not on whatsapp");
        assert_eq!(
            e,
            EvolutionError::NotOnWhatsApp {
                endpoint: "sendText",
                number: "+55 82 9****-0999".into()
            }
        );
        assert!(e.kind().is_permanent());
        assert!(!e.may_have_been_sent());
        no_secrets(&e);
        assert!(sim.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn closed_instance_is_retryable_and_not_in_doubt() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        let c = client(config(&sim));
        for state in [InstanceState::Close, InstanceState::Connecting] {
            sim.set_state(DEFAULT_INSTANCE, state).expect("known");
            let e = c
                .send_text(&phone("5582990000101"), "x")
                .await
                .expect_err("closed");
            assert_eq!(
                e,
                EvolutionError::InstanceClosed {
                    endpoint: "sendText"
                }
            );
            assert!(e.kind().is_retryable());
            assert!(!e.may_have_been_sent());
        }
        sim.set_state(DEFAULT_INSTANCE, InstanceState::Open)
            .expect("known");
        c.send_text(&phone("5582990000101"), "x")
            .await
            .expect("open again");
    })
    .await;
}

#[tokio::test]
async fn configuration_errors_need_the_operator() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        // Wrong key.
        let mut cfg = config(&sim);
        cfg.api_key = "wrong-key".into();
        let e = client(cfg)
            .send_text(&phone("5582990000101"), "x")
            .await
            .expect_err("401");
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.kind().needs_operator() && !e.kind().is_retryable());
        no_secrets(&e);
        // Unknown instance (even with a wrong key: the instance check comes first).
        let mut cfg = config(&sim);
        cfg.instance = "Condominio Bot 2".into();
        cfg.api_key = "wrong-key".into();
        let e = client(cfg)
            .connection_state()
            .await
            .expect_err("404 instance");
        assert_eq!(
            e,
            EvolutionError::UnknownInstance {
                endpoint: "connectionState",
                instance: "Condominio Bot 2".into()
            }
        );
        assert!(e.kind().needs_operator());
        // A wrong base path: unknown route.
        let mut cfg = config(&sim);
        cfg.base_url = Url::parse(&format!("{}/api/", sim.base_url())).expect("url");
        let e = client(cfg)
            .send_text(&phone("5582990000101"), "x")
            .await
            .expect_err("404 route");
        assert_eq!(e.kind(), ErrorKind::UnknownRoute);
        assert!(e.kind().needs_operator());
        // Forced 401 on every route.
        sim.set_faults(Faults {
            force_unauthorized: true,
            ..Faults::default()
        });
        let e = client(config(&sim))
            .connection_state()
            .await
            .expect_err("forced 401");
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(sim.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn connection_state_for_every_state() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        let c = client(config(&sim));
        for (state, expected) in [
            (InstanceState::Open, ConnectionState::Open),
            (InstanceState::Connecting, ConnectionState::Connecting),
            (InstanceState::Close, ConnectionState::Close),
            (InstanceState::NotLoaded, ConnectionState::Unknown),
        ] {
            sim.set_state(DEFAULT_INSTANCE, state).expect("known");
            let got = c.connection_state().await.expect("state");
            assert_eq!(got, expected, "{state:?}");
            assert_eq!(got.is_open(), state == InstanceState::Open);
        }
        assert_eq!(sim.calls().connection_state, 4);
    })
    .await;
}

#[tokio::test]
async fn find_messages_by_id_and_by_both_jids() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        let c = client(config(&sim));
        let to = phone("5582990000101");
        let first = c
            .send_text(&to, "Sessão VT-0001 iniciada")
            .await
            .expect("sent");
        let _second = c
            .send_text(&to, "Sessão VT-0002 iniciada")
            .await
            .expect("sent");

        // By id.
        let found = c
            .find_messages(&first.remote_jid, Some(&first.id))
            .await
            .expect("found");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, first.id);
        assert_eq!(found[0].text.as_deref(), Some("Sessão VT-0001 iniciada"));
        assert!(found[0].from_me);
        assert!(found[0].timestamp.is_some());

        // Without an id: every JID variant, looking for the reference code.
        let mut hits = Vec::new();
        for jid in to.jid_variants() {
            let found = c.find_messages(&jid, None).await.expect("found");
            hits.extend(
                found
                    .into_iter()
                    .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("VT-0002"))),
            );
        }
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].remote_jid, "558290000101@s.whatsapp.net");

        // The other form alone finds nothing: why both must be searched.
        let other = &to.jid_variants()[1];
        assert!(c.find_messages(other, None).await.expect("ok").is_empty());

        // An unknown id.
        assert!(
            c.find_messages(&first.remote_jid, Some("3EB0000000000000000000"))
                .await
                .expect("ok")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn find_messages_on_a_gateway_that_stores_nothing_is_empty() {
    guarded(async {
        let cfg = EvolutionSimConfig {
            stores_messages: false,
            ..EvolutionSimConfig::default()
        };
        let sim = start(cfg).await;
        let c = client(config(&sim));
        let sent = c
            .send_text(&phone("5582990000101"), "VT-7")
            .await
            .expect("sent");
        let found = c
            .find_messages(&sent.remote_jid, Some(&sent.id))
            .await
            .expect("ok");
        assert!(found.is_empty(), "empty is not proof of not sent");
        assert_eq!(sim.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn injected_500s_are_retryable_server_errors() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        sim.set_faults(Faults {
            fail_send_percent: 100,
            ..Faults::default()
        });
        let c = client(config(&sim));
        let e = c
            .send_text(&phone("5582990000101"), "x")
            .await
            .expect_err("500");
        assert!(matches!(e, EvolutionError::ServerError { status: 500, .. }));
        assert!(e.kind().is_retryable());
        assert!(!e.may_have_been_sent());
        assert!(sim.messages().is_empty());
        sim.clear_faults();
        c.send_text(&phone("5582990000101"), "x")
            .await
            .expect("recovered");
    })
    .await;
}

#[tokio::test]
async fn latency_within_the_timeout_is_fine() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        sim.set_faults(Faults {
            latency_ms: 200,
            ..Faults::default()
        });
        let c = client(config(&sim));
        c.send_text(&phone("5582990000101"), "x")
            .await
            .expect("slow but fine");
    })
    .await;
}

#[tokio::test]
async fn a_hanging_gateway_times_out_and_the_send_is_in_doubt() {
    guarded(async {
        let sim = start(EvolutionSimConfig::default()).await;
        sim.set_faults(Faults {
            hang: true,
            ..Faults::default()
        });
        let mut cfg = config(&sim);
        cfg.request_timeout = Duration::from_millis(300);
        let c = client(cfg);
        let e = c
            .send_text(&phone("5582990000101"), "x")
            .await
            .expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.kind().is_retryable());
        assert!(
            e.may_have_been_sent(),
            "a timed-out send must be reconciled"
        );
        let e = c.connection_state().await.expect_err("timeout");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(!e.may_have_been_sent());
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn connection_refused_is_network_and_certainly_not_sent() {
    guarded(async {
        // Bind a port, then free it: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let cfg = EvolutionConfig::new(
            Url::parse(&format!("http://{addr}")).expect("url"),
            DEFAULT_API_KEY.into(),
            DEFAULT_INSTANCE,
        );
        let e = client(cfg)
            .send_text(&phone("5582990000101"), "x")
            .await
            .expect_err("refused");
        assert!(
            matches!(e, EvolutionError::Network { connect: true, .. }),
            "{e:?}"
        );
        assert!(e.kind().is_retryable());
        assert!(!e.may_have_been_sent());
        no_secrets(&e);
    })
    .await;
}
