//! Process-level log canary (issue 6 item 3; RELIABILITY.md R6): run `vetric serve` through a
//! scenario full of distinctive secret values, then grep everything vetric printed (stdout and
//! stderr of `serve` and of the one-shot commands) for each of them. Nothing may leak: no
//! vendor API key or password, no vendor token, no admin password (right or wrong), no API or
//! session token, no resident's phone number in any form.
//!
//! It also checks the shape `serve` logs in: JSON lines on stdout, HTTP lines with a request
//! id and the matched route (not the raw path or query string), ingest lines with the site.
//!
//! `SHOW_CANARY_LOGS=1 cargo test -p vetric --test log_canary -- --nocapture` prints what was grepped.

mod ops_common;

use ops_common::{SLUG, api_login, http, start_serve_logging, user_add, write_config};
use std::time::Duration;
use vetric_sim::cvepro::{CveProSim, Fault, SimConfig};
use vetric_testkit::{free_local_addr, scratch_dir};

const VENDOR_API_KEY: &str = "CanaryVendorKey-q7Zx41Lp";
const VENDOR_PASSWORD: &str = "CanaryVendorPw-m3Rt88Kd";
const ADMIN_EMAIL: &str = "canary.admin@example.com";
const ADMIN_PASSWORD: &str = "CanaryAdminPw-w9Hs27Qe";
const WRONG_PASSWORD: &str = "CanaryWrongPw-t5Jn63Vb";
const PHONE: &str = "+55 11 97319-4862";
/// Every way the phone could be written out.
const PHONE_FORMS: &[&str] = &[
    "+55 11 97319-4862",
    "+5511973194862",
    "5511973194862",
    "11973194862",
    "973194862",
    "97319-4862",
    "(11) 97319-4862",
];

/// Runs of at least this many hex digits look like a vendor token (the simulator's are 160).
const VENDOR_TOKEN_HEX: usize = 160;

fn longest_hex_run(line: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in line.chars() {
        if c.is_ascii_hexdigit() {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_phone_number_reaches_the_logs() {
    let dir = scratch_dir();
    let sim = CveProSim::start(
        SimConfig {
            api_key: VENDOR_API_KEY.into(),
            password: VENDOR_PASSWORD.into(),
            chargers: 3,
            speed: 600.0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let listen = free_local_addr();
    let base = format!("http://{listen}");
    let config = write_config(dir.path(), listen, &sim, "");

    // The admin, with the password on stdin.
    let added = user_add(&config, ADMIN_EMAIL, ADMIN_PASSWORD);
    assert!(
        added.ok,
        "user add failed: {}{}",
        added.stdout, added.stderr
    );
    let mut logs: Vec<String> = Vec::new();
    logs.extend(added.stdout.lines().map(str::to_owned));
    logs.extend(added.stderr.lines().map(str::to_owned));

    // At debug, so that what an operator turns on to investigate is covered too.
    let mut vetric = start_serve_logging(&config, listen, "debug").await;
    for _ in 0..100 {
        if sim.calls().chargepoints > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The vendor's own token, as the simulator issues them.
    let vendor_login: serde_json::Value = http()
        .post(format!("{}/api/v1/login", sim.base_url()))
        .header("Api-Key", VENDOR_API_KEY)
        .json(&serde_json::json!({ "email": sim.config().email, "password": VENDOR_PASSWORD }))
        .send()
        .await
        .expect("vendor login")
        .json()
        .await
        .expect("vendor login JSON");
    let vendor_token = vendor_login["token"]
        .as_str()
        .expect("a vendor token")
        .to_owned();
    assert_eq!(vendor_token.len(), VENDOR_TOKEN_HEX, "{vendor_token}");

    // Log in over HTTP and use the token.
    let token = api_login(&base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let client = http();
    let res = client
        .get(format!("{base}/api/v1/sites/{SLUG}/chargers"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("chargers");
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("{base}/api/v1/sites/{SLUG}/residents"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "Canary Resident",
            "block": "A",
            "unit": "101",
            "phone": PHONE,
        }))
        .send()
        .await
        .expect("create resident");
    assert!(
        res.status().is_success(),
        "create resident: {} {}",
        res.status(),
        res.text().await.unwrap_or_default()
    );
    // A phone in the query string: request lines log the route, not the query.
    let res = client
        .get(format!(
            "{base}/api/v1/sites/{SLUG}/residents?q=5511973194862"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("search residents");
    assert_eq!(res.status(), 200);
    // The same number with a wrong format somewhere it is rejected (errors get logged).
    let _ = client
        .post(format!("{base}/api/v1/sites/{SLUG}/residents"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "", "phone": "97319-4862x" }))
        .send()
        .await
        .expect("bad resident");

    // A failed login with a wrong password.
    let res = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": ADMIN_EMAIL, "password": WRONG_PASSWORD }))
        .send()
        .await
        .expect("failed login");
    assert_eq!(res.status(), 401);

    // The vendor says 401 (tokens revoked) and then 502 for a while.
    sim.revoke_tokens();
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.revoke_tokens();
    sim.set_fault(Fault::Outage {
        status: 502,
        duration_s: Some(3.0),
    });
    tokio::time::sleep(Duration::from_secs(5)).await;

    // A revoked API token used again.
    let res = client
        .post(format!("{base}/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "logout: {}", res.status());
    let res = client
        .get(format!("{base}/api/v1/sites"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("revoked token");
    assert_eq!(res.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let status = vetric.terminate(Duration::from_secs(35)).await;
    assert!(status.success(), "{status}\n{}", vetric.transcript());
    sim.shutdown().await;
    let stdout = vetric.stdout_lines();
    logs.extend(stdout.iter().cloned());
    logs.extend(vetric.stderr_lines());

    if std::env::var_os("SHOW_CANARY_LOGS").is_some() {
        eprintln!("{}", logs.join("\n"));
    }
    let mut canaries: Vec<(&str, String)> = vec![
        ("vendor API key", VENDOR_API_KEY.to_owned()),
        ("vendor password", VENDOR_PASSWORD.to_owned()),
        ("vendor token", vendor_token.clone()),
        ("admin password", ADMIN_PASSWORD.to_owned()),
        ("wrong admin password", WRONG_PASSWORD.to_owned()),
        ("API token", token.clone()),
    ];
    for form in PHONE_FORMS {
        canaries.push(("phone", (*form).to_owned()));
    }
    let mut leaks = Vec::new();
    for line in &logs {
        for (what, value) in &canaries {
            if line.contains(value.as_str()) {
                leaks.push(format!("{what} ({value}) in: {line}"));
            }
        }
        if longest_hex_run(line) >= VENDOR_TOKEN_HEX {
            leaks.push(format!("a vendor-token-like hex run in: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s) in vetric's output:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // The shape: JSON lines on stdout, requests with an id and their route, ingest with its site.
    let parsed: Vec<serde_json::Value> = stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_span = |v: &serde_json::Value, key: &str| -> Option<String> {
        v["spans"].as_array().and_then(|spans| {
            spans
                .iter()
                .find_map(|s| s[key].as_str().map(str::to_owned))
        })
    };
    let http_lines: Vec<&serde_json::Value> = parsed
        .iter()
        .filter(|v| in_span(v, "request_id").is_some())
        .collect();
    assert!(
        http_lines.iter().any(|v| {
            in_span(v, "route").as_deref() == Some("/api/v1/sites/{slug}/residents")
                && v["status"].as_u64() == Some(200)
                && !in_span(v, "request_id").unwrap_or_default().is_empty()
        }),
        "no INFO response line with request id, route and status:\n{}",
        stdout.join("\n")
    );
    assert!(
        parsed
            .iter()
            .any(|v| in_span(v, "site").as_deref() == Some(SLUG)),
        "no ingest line names the site:\n{}",
        stdout.join("\n")
    );
}
