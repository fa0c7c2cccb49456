//! The deployment files under `deploy/` stay true to the code (issue "Operations"):
//!
//! * every `vetric_*` metric that `deploy/prometheus/alerts.yml` or `deploy/grafana/vetric.json`
//!   uses is one the code really produces: its name appears as a string literal in the
//!   non-test source of a crate (`crates/*/src`, comments skipped); histogram series
//!   (`_bucket`, `_sum`, `_count`) count as their histogram;
//! * `promtool check rules` accepts the alerts (Debian's `prometheus` package, which `.ci/run`
//!   installs); the test fails, naming the package, when `promtool` is missing;
//! * the systemd unit and the nginx configuration keep the settings docs/operations.md relies
//!   on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `vetric_…` metric name in a PromQL expression (or any text). Recording-rule names
/// (`vetric:…`) and label values such as `job="vetric"` are not metrics and do not match.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("vetric_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            out.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The PromQL of every rule (`groups[].rules[].expr`) in a Prometheus rules file.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let docs = YamlLoader::load_from_str(yaml).expect("alerts.yml is valid YAML");
    let doc = docs.first().expect("alerts.yml has a document");
    let groups = doc["groups"].as_vec().expect("alerts.yml has `groups`");
    let mut exprs = Vec::new();
    for g in groups {
        let rules = g["rules"].as_vec().expect("every group has `rules`");
        for r in rules {
            let expr = match &r["expr"] {
                Yaml::String(s) => s.clone(),
                other => panic!("a rule without a string `expr`: {other:?}"),
            };
            assert!(
                r["alert"].as_str().is_some() || r["record"].as_str().is_some(),
                "a rule is neither an alert nor a recording rule: {expr}"
            );
            exprs.push(expr);
        }
    }
    exprs
}

/// The PromQL of every target of every panel (rows' nested panels too) and of every
/// templating query of a Grafana dashboard.
fn dashboard_exprs(json: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(json, &mut out);
    out
}

/// Every quoted `"vetric_…"` literal in the non-test Rust source of the workspace's crates.
fn produced_metrics() -> BTreeSet<String> {
    fn visit(dir: &Path, out: &mut BTreeSet<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                visit(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                // Unit tests sit at the end of a file behind `#[cfg(test)]`.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for line in code.lines() {
                    let line = line.trim_start();
                    if line.starts_with("//") {
                        continue;
                    }
                    for name in metric_names(line) {
                        if line.contains(&format!("\"{name}\"")) {
                            out.insert(name);
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    let crates = root().join("crates");
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let src = entry.expect("dir entry").path().join("src");
        if src.is_dir() {
            visit(&src, &mut out);
        }
    }
    out
}

/// The metric a series name belongs to: histograms expose `_bucket`, `_sum` and `_count`.
fn base_metric<'a>(series: &'a str, produced: &BTreeSet<String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && produced.contains(base)
        {
            return base;
        }
    }
    series
}

fn missing(used: &BTreeSet<String>, produced: &BTreeSet<String>) -> Vec<String> {
    used.iter()
        .filter(|m| !produced.contains(base_metric(m, produced)))
        .cloned()
        .collect()
}

#[test]
fn the_extraction_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"sum(rate(vetric_http_requests_total{status=~"5..",job="vetric"}[5m])) / vetric:http_5xx_ratio:rate5m and my_vetric_x"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["vetric_http_requests_total"]
    );
    let produced = produced_metrics();
    assert!(
        produced.contains("vetric_http_requests_total"),
        "{produced:?}"
    );
    assert!(
        produced.contains("vetric_ingest_cycles_total"),
        "{produced:?}"
    );
    assert!(
        produced.contains("vetric_cvepro_breaker_state"),
        "{produced:?}"
    );
    // A name nobody emits is reported; a histogram's series are not.
    let used = BTreeSet::from([
        "vetric_made_up_total".to_owned(),
        "vetric_http_request_duration_seconds_bucket".to_owned(),
    ]);
    assert_eq!(missing(&used, &produced), ["vetric_made_up_total"]);
}

#[test]
fn alerts_use_only_metrics_the_code_produces() {
    let exprs = rule_exprs(&read("deploy/prometheus/alerts.yml"));
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for wanted in [
        "vetric_vendor_up",
        "vetric_data_age_seconds",
        "vetric_store_up",
        "vetric_http_requests_total",
        "vetric_ingest_cycles_total",
        "vetric_cvepro_breaker_state",
    ] {
        assert!(used.contains(wanted), "alerts.yml should alert on {wanted}");
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("up{") || e.starts_with("up ")),
        "alerts.yml should have an instance-down alert on `up`"
    );
    let missing = missing(&used, &produced_metrics());
    assert!(
        missing.is_empty(),
        "deploy/prometheus/alerts.yml uses metrics no code produces: {missing:?}"
    );
}

#[test]
fn dashboard_uses_only_metrics_the_code_produces() {
    let json: serde_json::Value = serde_json::from_str(&read("deploy/grafana/vetric.json"))
        .expect("deploy/grafana/vetric.json is JSON");
    assert_eq!(json["uid"], "vetric");
    let panels = json["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate panel id"
        );
    }
    let exprs = dashboard_exprs(&json);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 10, "the dashboard shows little: {used:?}");
    let missing = missing(&used, &produced_metrics());
    assert!(
        missing.is_empty(),
        "deploy/grafana/vetric.json uses metrics no code produces: {missing:?}"
    );
}

#[test]
fn promtool_accepts_the_alerts() {
    let out = match Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/alerts.yml"))
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `promtool` ({e}): install Debian's `prometheus` package \
             (`apt-get install --no-install-recommends prometheus`; .ci/run does this)"
        ),
    };
    assert!(
        out.status.success(),
        "promtool check rules deploy/prometheus/alerts.yml failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_and_nginx_keep_what_the_docs_rely_on() {
    let unit = read("deploy/systemd/vetric.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=always",
        "RestartSec=2",
        "User=vetric",
        "EnvironmentFile=-/etc/vetric/env",
        "ExecStart=/usr/local/bin/vetric serve --config /etc/vetric/vetric.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/vetric",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "vetric.service lacks `{line}`"
        );
    }
    // The stop timeout must outlast the 30 s drain.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec= in seconds");
    assert!(
        stop > 30,
        "TimeoutStopSec={stop} does not outlast the drain"
    );

    let nginx = read("deploy/nginx/vetric.conf");
    for needle in [
        "upstream vetric",
        "max_fails=",
        "fail_timeout=",
        "location ~ ^/sites/[^/]+/events$",
        "proxy_buffering off;",
        "proxy_read_timeout 1h;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "X-Forwarded-Proto $scheme",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "/etc/letsencrypt/live/",
        "return 301 https://",
        "location = /metrics",
        "deny all;",
    ] {
        assert!(nginx.contains(needle), "vetric.conf lacks `{needle}`");
    }
}
