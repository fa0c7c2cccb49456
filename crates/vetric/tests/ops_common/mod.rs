//! Helpers shared by the process-level operations tests (log canary, heartbeat, graceful
//! shutdown, health, crash/restart, backup/restore): a config file, `vetric serve`,
//! `vetric user add` and an API login.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use vetric_sim::cvepro::SimHandle;
use vetric_testkit::VetricProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_vetric");
pub const SLUG: &str = "ops-test";

/// Writes `vetric.toml` in `dir` for one site ([`SLUG`]) polled from `sim` every second;
/// `extra` is added at the top level (before the sites).
pub fn write_config(dir: &Path, listen: SocketAddr, sim: &SimHandle, extra: &str) -> PathBuf {
    write_site_config(dir, listen, sim, SLUG, "Ops test", extra)
}

/// As [`write_config`] for the site `slug` named `name`.
pub fn write_site_config(
    dir: &Path,
    listen: SocketAddr,
    sim: &SimHandle,
    slug: &str,
    name: &str,
    extra: &str,
) -> PathBuf {
    let cfg = sim.config();
    let path = dir.join("vetric.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"{listen}\"\n\
             database_url = \"sqlite://vetric.db\"\n\
             {extra}\n\
             [[sites]]\n\
             slug = \"{slug}\"\n\
             name = \"{name}\"\n\
             [sites.cvepro]\n\
             base_url = \"{}\"\n\
             api_key = \"{}\"\n\
             email = \"{}\"\n\
             password = \"{}\"\n\
             poll_interval_s = 1\n",
            sim.base_url(),
            cfg.api_key,
            cfg.email,
            cfg.password
        ),
    )
    .expect("write config");
    path
}

/// `vetric serve` with default logging (JSON on stdout), once it answers `/health/live`.
pub async fn start_serve(config: &Path, listen: SocketAddr) -> VetricProcess {
    start_serve_logging(config, listen, "info").await
}

/// As [`start_serve`] with the `VETRIC_LOG` filter `log`.
pub async fn start_serve_logging(config: &Path, listen: SocketAddr, log: &str) -> VetricProcess {
    let mut p = VetricProcess::spawn(
        Path::new(BIN),
        &["serve", "--config", config.to_str().expect("utf-8 path")],
        &[("VETRIC_LOG", log)],
    );
    p.wait_live(&format!("http://{listen}"), Duration::from_secs(30))
        .await;
    p
}

/// What a one-shot command printed.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `vetric user add --role admin` with the password on stdin.
pub fn user_add(config: &Path, email: &str, password: &str) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    // As the testkit harness does: a test's own `VETRIC_*` knobs (`VETRIC_SOAK`, …) are not
    // configuration, and `vetric` refuses unknown ones.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("VETRIC_")) {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd
        .args([
            "user",
            "add",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--email",
            email,
            "--role",
            "admin",
        ])
        .env("VETRIC_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vetric user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("vetric user add");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// `POST /api/v1/auth/login`; the API token.
pub async fn api_login(base: &str, email: &str, password: &str) -> String {
    let res = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login request");
    assert_eq!(res.status(), 200, "login failed");
    let body: serde_json::Value = res.json().await.expect("login JSON");
    body["token"]
        .as_str()
        .expect("a token in the login answer")
        .to_owned()
}
