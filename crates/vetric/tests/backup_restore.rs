//! Process-level (issue 6 item 7): the real binary backs up a SQLite store while `vetric serve`
//! ingests from the simulator, `vetric restore` refuses while that server holds the store
//! (naming it), and after the server stops, `restore --yes` brings back exactly the data of
//! the backup, as `vetric status --json` shows it.

mod ops_common;

use ops_common::{BIN, start_serve, write_site_config};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use vetric_sim::cvepro::{CveProSim, SimConfig};
use vetric_testkit::{free_local_addr, scratch_dir};

/// Runs a one-shot command of the binary to completion.
async fn vetric(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .env("VETRIC_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run vetric")
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `vetric status --json`, with the one field that depends on the reader's clock (fresh or
/// stale, computed from `as_of` and now) removed; `as_of` itself stays.
async fn status(config: &Path) -> serde_json::Value {
    let out = vetric(&["status", "--json", "--config", path_str(config)]).await;
    assert!(out.status.success(), "status failed: {}", text(&out));
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    for site in v["sites"].as_array_mut().expect("sites") {
        site["freshness"]
            .as_object_mut()
            .expect("freshness")
            .remove("state");
    }
    v
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_then_restore_brings_back_the_same_data() {
    let dir = scratch_dir();
    let sim = CveProSim::start(
        SimConfig {
            chargers: 4,
            seed: 11,
            speed: 3000.0,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let listen = free_local_addr();
    let config = write_site_config(dir.path(), listen, &sim, "backup-test", "Backup test", "");
    let cfg = path_str(&config);

    let mut serve = start_serve(&config, listen).await;
    let pid = serve.pid().expect("running");
    // Wait until the store has connectors from a few polls.
    let mut polled = false;
    for _ in 0..100 {
        let s = status(&config).await;
        if s["sites"][0]["connectors"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            polled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(polled, "serve never stored a poll\n{}", serve.transcript());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Backup while serve runs and writes.
    let backup = dir.path().join("out").join("b.db");
    let out = vetric(&["backup", "--config", cfg, "--out", path_str(&backup)]).await;
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        line.contains(path_str(&backup)) && line.ends_with("bytes)") && !line.contains('\n'),
        "one line with path and size: {line:?}"
    );
    // An existing file is not overwritten without --force.
    let again = vetric(&["backup", "--config", cfg, "--out", path_str(&backup)]).await;
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        text(&again)
    );

    // Restore while serve holds the store: refused, naming the holder; nothing changes.
    let refused = vetric(&["restore", "--config", cfg, "--yes", path_str(&backup)]).await;
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("vetric serve"),
        "the refusal names the holder: {err}"
    );

    // More polls land after the backup, then serve stops.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stopped = serve.terminate(Duration::from_secs(35)).await;
    assert!(stopped.success(), "{stopped}\n{}", serve.transcript());
    sim.shutdown().await;
    let at_stop = status(&config).await;

    // What the backup holds, read by `status` from a copy of it under another config.
    let copy_dir = scratch_dir();
    std::fs::copy(&backup, copy_dir.path().join("vetric.db")).expect("copy backup");
    let copy_config = copy_dir.path().join("vetric.toml");
    std::fs::write(
        &copy_config,
        std::fs::read_to_string(&config).expect("read config"),
    )
    .expect("write copy config");
    let expected = status(&copy_config).await;
    assert_ne!(
        expected, at_stop,
        "the store must have moved on since the backup for the restore to show anything"
    );

    // Without --yes: explains, exits non-zero, changes nothing.
    let dry = vetric(&["restore", "--config", cfg, path_str(&backup)]).await;
    assert!(!dry.status.success(), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("--yes"),
        "{}",
        text(&dry)
    );
    assert_eq!(status(&config).await, at_stop);

    let restored = vetric(&["restore", "--config", cfg, "--yes", path_str(&backup)]).await;
    assert!(restored.status.success(), "{}", text(&restored));
    assert_eq!(
        String::from_utf8_lossy(&restored.stdout).lines().count(),
        1,
        "{}",
        text(&restored)
    );
    assert_eq!(status(&config).await, expected);
}
