//! R4 (RELIABILITY.md; issue #7): time to detect. The real `vetric serve` (SQLite) polls the
//! CVE-Pro simulator every second; operators are configured with an e-mail (a local SMTP
//! sink), a webhook (a local receiver) and a WhatsApp number (the Evolution simulator that is
//! also the site's gateway).
//!
//! 1. The vendor goes down for good (every route 502 with nginx's HTML): the "vendor down"
//!    alert reaches the webhook and the mailbox after the configured number of failed poll
//!    cycles (`vendor_down_cycles`, default 3) — never before the 3rd failed cycle, counted
//!    from the process's own `vetric_ingest_cycles_total{outcome="vendor_failed"}` and from
//!    the stored `vendor_down` event.
//! 2. The vendor comes back: a recovery alert arrives.
//! 3. The WhatsApp gateway goes down (instance state `close`): the alert about it goes by
//!    e-mail and webhook and NEVER through the gateway — no `sendText` while it is down, no
//!    message about it at the gateway after it is back, no WhatsApp outbox row for it.
//!
//! The fourth R4 promise — the heartbeat to an external URL stops when the process is killed
//! — is `tests/heartbeat.rs` (`heartbeats_arrive_while_running_and_stop_when_killed`), not
//! repeated here.
//!
//! Bounds are counted in poll cycles with a wide margin; seconds are printed (one JSON line,
//! `FAULT_SUMMARY {"scenario":"r4",...}`, for `bench/soak.sh`), never asserted. `VETRIC_SOAK=1` runs at the
//! production poll interval (10 s, so the alert is due after 30 s).

mod ops_common;

use ops_common::{BIN, SLUG, http};
use std::path::Path;
use std::time::{Duration, Instant};
use vetric_sim::cvepro::{CveProSim, Fault, FaultKind, SimConfig};
use vetric_sim::evolution::{EvolutionSim, EvolutionSimConfig, InstanceState};
use vetric_sim::smtp::SmtpSink;
use vetric_sim::webhook::{ReceivedWebhook, WebhookReceiver};
use vetric_store::{OutboxFilter, Store};
use vetric_testkit::{VetricProcess, free_local_addr, scratch_dir};

const WEBHOOK_SECRET: &str = "r4-test-webhook-secret-0123456789abcdef";
const OPS_EMAIL: &str = "plantao@example.com";
const OPS_PHONE: &str = "+5582990000202";
/// `vendor_down_cycles`: the default of the site policy (nothing is configured, on purpose).
const DOWN_CYCLES: u64 = 3;
/// Cycles the alert may take beyond the configured number (dispatcher tick, retries inside a
/// cycle, a slow CI): a margin against flakiness, not a target.
const MARGIN_CYCLES: u64 = 10;

fn soak() -> bool {
    std::env::var("VETRIC_SOAK").is_ok_and(|v| v == "1")
}

/// Failed poll cycles so far, as the process itself counts them.
async fn failed_cycles(base: &str) -> u64 {
    let Ok(res) = http().get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("vetric_ingest_cycles_total{") && l.contains("outcome=\"vendor_failed\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The first signed webhook delivery of `rule`.
fn webhook_alert(hooks: &[ReceivedWebhook], rule: &str) -> Option<serde_json::Value> {
    hooks
        .iter()
        .filter(|h| h.signature_valid)
        .filter_map(|h| h.json.clone())
        .find(|j| j["rule"] == rule)
}

/// Waits (polling every 100 ms) until `probe` returns something; panics with the transcript
/// after `limit` (a hang guard).
async fn wait_for<T>(
    what: &str,
    limit: Duration,
    vetric: &VetricProcess,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nothing within {limit:?}\n{}",
            vetric.transcript()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_and_gateway_outages_alert_operators_off_the_gateway() {
    let poll_s: u64 = if soak() { 10 } else { 1 };
    let cycle = Duration::from_secs(poll_s);
    let guard = |cycles: u64| cycle * u32::try_from(cycles).expect("few cycles") * 3;

    let cve = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("CVE-Pro simulator");
    let evo = EvolutionSim::start(
        EvolutionSimConfig::default(),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("Evolution simulator");
    let hook = WebhookReceiver::start(WEBHOOK_SECRET)
        .await
        .expect("webhook receiver");
    let (smtp_addr, smtp) = SmtpSink::start().await.expect("SMTP sink");

    let dir = scratch_dir();
    let listen = free_local_addr();
    let base = format!("http://{listen}");
    let cfg = cve.config();
    let evo_cfg = evo.config();
    let config = dir.path().join("vetric.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"sqlite://vetric.db\"\n\
             [alerts]\n\
             email = [\"{OPS_EMAIL}\"]\n\
             whatsapp = [\"{OPS_PHONE}\"]\n\
             webhook_url = \"{hook_url}\"\n\
             webhook_secret = \"{WEBHOOK_SECRET}\"\n\
             [smtp]\n\
             host = \"127.0.0.1\"\n\
             port = {smtp_port}\n\
             from = \"vetric@example.com\"\n\
             starttls = false\n\
             [dispatcher]\n\
             tick_ms = 200\n\
             retry_base_s = 1\n\
             retry_cap_s = 2\n\
             gateway_check_s = {poll_s}\n\
             [[sites]]\n\
             slug = \"{SLUG}\"\n\
             name = \"Residencial R4\"\n\
             [sites.cvepro]\n\
             base_url = \"{cve_url}\"\n\
             api_key = \"{cve_key}\"\n\
             email = \"{cve_email}\"\n\
             password = \"{cve_password}\"\n\
             poll_interval_s = {poll_s}\n\
             [sites.whatsapp]\n\
             base_url = \"{evo_url}\"\n\
             api_key = \"{evo_key}\"\n\
             instance = \"{evo_instance}\"\n",
            hook_url = hook.url(),
            smtp_port = smtp_addr.port(),
            cve_url = cve.base_url(),
            cve_key = cfg.api_key,
            cve_email = cfg.email,
            cve_password = cfg.password,
            evo_url = evo.base_url(),
            evo_key = evo_cfg.api_key,
            evo_instance = evo_cfg.instances[0],
        ),
    )
    .expect("write config");
    let mut vetric = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LOG", "info")],
    );
    vetric.wait_live(&base, Duration::from_secs(60)).await;

    // Healthy first: a few good cycles, no alert.
    wait_for("two healthy poll cycles", guard(10), &vetric, || {
        (cve.calls().chargepoints >= 2).then_some(())
    })
    .await;
    // Counted from here: a stray failure while healthy must not make the alert look early.
    let failed_before = failed_cycles(&base).await;

    // 1. The vendor goes down and stays down.
    cve.set_fault(Fault::Outage {
        status: 502,
        duration_s: None,
    });
    let down_at = Instant::now();
    let down_alert = wait_for(
        "the vendor-down alert at the webhook",
        guard(DOWN_CYCLES + MARGIN_CYCLES),
        &vetric,
        || webhook_alert(&hook.requests(), "vendor_down"),
    )
    .await;
    let detect_s = down_at.elapsed().as_secs_f64();
    // Read right after the delivery was seen (every 100 ms): the cycles it took, at most.
    let cycles_at_alert = failed_cycles(&base).await - failed_before;
    assert!(
        cycles_at_alert >= DOWN_CYCLES,
        "the vendor-down alert came after {cycles_at_alert} failed cycles, before the configured \
         {DOWN_CYCLES}: {down_alert}"
    );
    assert!(
        cycles_at_alert <= DOWN_CYCLES + MARGIN_CYCLES,
        "the vendor-down alert came only after {cycles_at_alert} failed cycles"
    );
    let down_ref = down_alert["ref"].as_str().expect("a ref code").to_owned();
    let down_mail = wait_for(
        "the vendor-down alert by e-mail",
        guard(MARGIN_CYCLES),
        &vetric,
        || {
            smtp.mails()
                .into_iter()
                .find(|m| m.body.contains(&down_ref) && m.rcpt_to.iter().any(|r| r == OPS_EMAIL))
        },
    )
    .await;
    let mail_s = down_at.elapsed().as_secs_f64();

    // 2. The vendor comes back (the breaker's next probe finds it): a recovery alert.
    cve.clear_fault(FaultKind::Outage);
    let back_at = Instant::now();
    let recovered = wait_for(
        "the vendor-recovered alert at the webhook",
        // The breaker lets one probe through every 10 s: that is the longest wait.
        Duration::from_secs(10) + guard(MARGIN_CYCLES),
        &vetric,
        || webhook_alert(&hook.requests(), "vendor_recovered"),
    )
    .await;
    let recovery_s = back_at.elapsed().as_secs_f64();
    let recovered_ref = recovered["ref"].as_str().expect("a ref code").to_owned();
    wait_for(
        "the vendor-recovered alert by e-mail",
        guard(MARGIN_CYCLES),
        &vetric,
        || {
            smtp.mails()
                .into_iter()
                .find(|m| m.body.contains(&recovered_ref))
        },
    )
    .await;
    // Vendor alerts may go to the operators' WhatsApp as well (the gateway is fine): let
    // those go out before it fails, so what the gateway gets below is about the gateway.
    tokio::time::sleep(cycle * 3).await;
    let whatsapp_vendor_alerts = evo
        .messages()
        .iter()
        .filter(|m| m.text.contains(&down_ref) || m.text.contains(&recovered_ref))
        .count();

    // 3. The WhatsApp gateway goes down.
    let sends_before = evo.calls().send_text;
    evo.set_all_states(InstanceState::Close);
    let gw_down_at = Instant::now();
    let gw_alert = wait_for(
        "the gateway-down alert at the webhook",
        guard(3 + MARGIN_CYCLES),
        &vetric,
        || webhook_alert(&hook.requests(), "gateway_down"),
    )
    .await;
    let gateway_s = gw_down_at.elapsed().as_secs_f64();
    let gw_ref = gw_alert["ref"].as_str().expect("a ref code").to_owned();
    wait_for(
        "the gateway-down alert by e-mail",
        guard(MARGIN_CYCLES),
        &vetric,
        || smtp.mails().into_iter().find(|m| m.body.contains(&gw_ref)),
    )
    .await;
    let sends_while_down = evo.calls().send_text - sends_before;
    evo.set_all_states(InstanceState::Open);
    let gw_back = wait_for(
        "the gateway-recovered alert at the webhook",
        guard(3 + MARGIN_CYCLES),
        &vetric,
        || webhook_alert(&hook.requests(), "gateway_recovered"),
    )
    .await;
    let gw_back_ref = gw_back["ref"].as_str().expect("a ref code").to_owned();
    // Anything wrongly queued for the gateway would go out now that it is back.
    tokio::time::sleep(cycle * 3).await;

    let status = vetric.terminate(Duration::from_secs(40)).await;
    assert!(status.success(), "{}", vetric.transcript());

    assert_eq!(
        sends_while_down, 0,
        "vetric tried to send through the WhatsApp gateway while it was down"
    );
    let about_gateway: Vec<_> = evo
        .messages()
        .into_iter()
        .filter(|m| m.text.contains(&gw_ref) || m.text.contains(&gw_back_ref))
        .collect();
    assert!(
        about_gateway.is_empty(),
        "alerts about the gateway went through the gateway: {about_gateway:?}"
    );
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("vetric.db").display()
    ))
    .await
    .expect("open the store");
    let rows = store
        .outbox_log(&OutboxFilter {
            limit: Some(500),
            ..OutboxFilter::default()
        })
        .await
        .expect("read the outbox");
    let gateway_rows: Vec<_> = rows
        .iter()
        .filter(|e| e.row.rule.starts_with("gateway_"))
        .map(|e| (e.row.rule.as_str(), e.row.channel.as_str()))
        .collect();
    assert!(
        gateway_rows.iter().all(|(_, c)| *c != "whatsapp"),
        "a WhatsApp row about the gateway: {gateway_rows:?}"
    );
    assert!(
        gateway_rows.contains(&("gateway_down", "email"))
            && gateway_rows.contains(&("gateway_down", "webhook")),
        "{gateway_rows:?}"
    );
    let site = store
        .site_by_slug(SLUG)
        .await
        .expect("query")
        .expect("the site exists");
    let events = store.events(site.id, 0, 100_000).await.expect("events");
    let down_event = events
        .iter()
        .find(|e| e.kind == "vendor_down")
        .expect("a stored vendor_down event");
    assert_eq!(
        down_event.payload["failed_cycles"].as_u64(),
        Some(DOWN_CYCLES),
        "the vendor_down event: {}",
        down_event.payload
    );
    assert!(
        events.iter().any(|e| e.kind == "vendor_recovered"),
        "no vendor_recovered event"
    );
    store.close().await;

    println!(
        "R4 summary: poll {poll_s} s; vendor-down alert at the webhook {detect_s:.1} s after \
         the outage began ({cycles_at_alert} failed cycles, configured {DOWN_CYCLES}), by \
         e-mail {mail_s:.1} s (subject {:?}); recovery alert {recovery_s:.1} s after the vendor \
         came back; gateway-down alert {gateway_s:.1} s after the gateway closed (webhook and \
         e-mail; sendText while down {sends_while_down}); vendor alerts to the operators' \
         WhatsApp {whatsapp_vendor_alerts}; legacy: 3 h 35 min",
        down_mail.subject
    );
    println!(
        "FAULT_SUMMARY {}",
        serde_json::json!({
            "scenario": "r4",
            "soak": soak(),
            "poll_s": poll_s,
            "vendor_down_cycles": DOWN_CYCLES,
            "failed_cycles_at_alert": cycles_at_alert,
            "vendor_down_alert_s": (detect_s * 10.0).round() / 10.0,
            "vendor_down_mail_s": (mail_s * 10.0).round() / 10.0,
            "recovery_alert_s": (recovery_s * 10.0).round() / 10.0,
            "gateway_down_alert_s": (gateway_s * 10.0).round() / 10.0,
            "sends_through_gateway_while_down": sends_while_down,
        })
    );
    cve.shutdown().await;
    evo.shutdown().await;
    drop(smtp);
}
