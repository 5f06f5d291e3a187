//! The dashboard in a real headless browser (Debian's chromium driven through
//! chromedriver's WebDriver API): the page loads, lists the running pipeline with its
//! components, and the chart receives window output. Saves a screenshot
//! (`$CARGO_TARGET_TMPDIR/dashboard.png`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const PIPELINE: &str = r#"
name: cpu
checkpoint: {interval: 500ms}
sources:
  metrics: {type: iot, seed: 7, rate: 300, count: 0}
transforms:
  per_host:
    type: window
    inputs: [metrics]
    kind: tumbling
    size: 1s
    group_by: [hostname]
    aggregates:
      avg_usage: avg(usage)
sinks:
  out: {type: csv, inputs: [per_host], path: out/cpu.csv, columns: [window_start, hostname, avg_usage]}
"#;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn webdriver(method: &str, port: u16, path: &str, body: &Value) -> Value {
    let (code, text) = http_with_body(method, port, path, None, &body.to_string());
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {code}, not JSON ({e}): {text}"));
    assert_eq!(code, 200, "{method} {path}: {v}");
    v["value"].clone()
}

#[test]
fn the_dashboard_shows_pipelines_and_charts_window_output_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "cpu.yaml", PIPELINE);
    let port = free_port();
    let worker = Killed(spawn_captured(
        connectd()
            .current_dir(dir.path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "cpu.yaml"]),
    ));
    let driver_port = free_port();
    let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let _driver = Killed(spawn_captured(
        std::process::Command::new(&driver_bin).arg(format!("--port={driver_port}")),
    ));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", driver_port)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{driver_bin} or connectd did not start (scripts/browser.sh installs the browser)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let session = webdriver(
        "POST",
        driver_port,
        "/session",
        &json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"]
        }}}}),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    webdriver(
        "POST",
        driver_port,
        &format!("/session/{id}/url"),
        &json!({"url": format!("http://127.0.0.1:{port}/")}),
    );
    let probe = json!({"script": "return {rows: document.querySelectorAll('#pipelines tbody tr').length, table: document.querySelector('#pipelines tbody').textContent, points: Number(document.getElementById('points').dataset.count), series: document.getElementById('series-name').textContent};", "args": []});
    // More points make a better picture for the README (DASHBOARD_POINTS=60).
    let want: u64 = std::env::var("DASHBOARD_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let page = loop {
        let page = webdriver(
            "POST",
            driver_port,
            &format!("/session/{id}/execute/sync"),
            &probe,
        );
        if page["rows"].as_u64().unwrap_or(0) >= 3 && page["points"].as_u64().unwrap_or(0) >= want {
            break page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60 + want),
            "the page never filled: {page}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let table = page["table"].as_str().unwrap();
    for part in ["cpu", "RUNNING", "metrics", "per_host", "out", "window"] {
        assert!(table.contains(part), "`{part}` not on the page: {table}");
    }
    assert!(
        page["series"].as_str().unwrap().contains("avg_usage"),
        "{page}"
    );
    let png = webdriver(
        "GET",
        driver_port,
        &format!("/session/{id}/screenshot"),
        &json!({}),
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot, bytes).unwrap();
    eprintln!("screenshot: {}", shot.display());
    let _ = http_with_body("DELETE", driver_port, &format!("/session/{id}"), None, "");
    drop(worker);
}
