//! Hot reload: files added, changed, broken and removed while the worker runs (watched),
//! and SIGHUP with watching off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Without a header, as a header would refuse rows of other columns after a change.
fn ticks(name: &str, columns: &str) -> String {
    format!(
        "name: {name}\ncheckpoint: {{interval: 200ms}}\nsources:\n  gen: {{type: trades, seed: 2, rate: 300, count: 1000000, start: 2024-01-01T00:00:00Z, step: 1ms}}\nsinks:\n  out: {{type: csv, inputs: [gen], path: out/{name}.csv, header: false, columns: [{columns}]}}\n"
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn get(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = http("GET", port, path, None);
    assert_eq!(code, 200, "{path}: {body}");
    json(&body)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(dir: &Path, extra: &[&str]) -> (std::process::Child, u16) {
    let mut args = extra.to_vec();
    args.extend(["--config", "pipelines/*.yaml"]);
    start_worker(dir, &args)
}

#[test]
fn added_changed_broken_and_removed_files_are_applied_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::write(pipelines.join("a.yaml"), ticks("a", "id")).unwrap();
    let (mut child, port) = start(dir.path(), &[]);
    assert_eq!(get(port, "/connectors"), serde_json::json!(["a"]));

    // Added: starts.
    std::fs::write(pipelines.join("b.yaml"), ticks("b", "id")).unwrap();
    wait_until("b never started", || {
        get(port, "/connectors") == serde_json::json!(["a", "b"])
            && get(port, "/connectors/b/status")["state"] == "RUNNING"
    });

    // Changed: only `a` restarts, from its checkpoint, with the new columns.
    let a_since = get(port, "/connectors/a/status")["since"].clone();
    let b_since = get(port, "/connectors/b/status")["since"].clone();
    std::fs::write(pipelines.join("a.yaml"), ticks("a", "id, volume")).unwrap();
    wait_until("a never restarted", || {
        let s = get(port, "/connectors/a/status");
        s["since"] != a_since && s["state"] == "RUNNING"
    });
    assert_eq!(
        get(port, "/connectors/b/status")["since"],
        b_since,
        "b was restarted"
    );
    let a_csv = dir.path().join("out/a.csv");
    wait_until("no row with the new columns", || {
        std::fs::read_to_string(&a_csv)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(','))
    });

    // Broken: `a` keeps running as it was, and the status and a metric say why.
    std::fs::write(
        pipelines.join("a.yaml"),
        "name: a\nsources: {gen: {type: nope}}\n",
    )
    .unwrap();
    wait_until("the invalid change was not reported", || {
        get(port, "/connectors/a/status")["config_error"].is_string()
    });
    let status = get(port, "/connectors/a/status");
    assert_eq!(status["state"], "RUNNING");
    let why = status["config_error"].as_str().unwrap();
    assert!(why.contains("a.yaml") && why.contains("nope"), "{why}");
    let metrics = http("GET", port, "/metrics", None).1;
    assert!(
        metrics.contains("connectd_config_reloads_total{result=\"failed\"}"),
        "{metrics}"
    );
    let rows = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = rows(&a_csv);
    wait_until("a stopped writing after the invalid change", || {
        rows(&a_csv) > before
    });

    // Removed: stops after a final checkpoint and is gone.
    std::fs::remove_file(pipelines.join("b.yaml")).unwrap();
    wait_until("b was not removed", || {
        get(port, "/connectors") == serde_json::json!(["a"])
    });

    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    // Across the restart: every row once.
    let text = std::fs::read_to_string(&a_csv).unwrap();
    let mut ids = std::collections::HashSet::new();
    for line in text.lines().skip(1) {
        let id = line.split(',').next().unwrap();
        assert!(ids.insert(id.to_string()), "row {id} written twice");
    }
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::write(pipelines.join("a.yaml"), ticks("a", "id")).unwrap();
    let (mut child, port) = start(dir.path(), &["--no-watch"]);
    std::fs::write(pipelines.join("b.yaml"), ticks("b", "id")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(port, "/connectors"),
        serde_json::json!(["a"]),
        "not watching"
    );
    signal(&child, libc::SIGHUP);
    wait_until("SIGHUP did not reload", || {
        get(port, "/connectors") == serde_json::json!(["a", "b"])
    });
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}
