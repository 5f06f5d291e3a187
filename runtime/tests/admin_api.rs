//! The admin REST API against a running worker: listing, status, pause / resume /
//! restart (exactly once across them), plugins, errors, and the bearer token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const TICKS: &str = r#"
name: ticks
checkpoint: {interval: 200ms}
sources:
  trades: {type: trades, seed: 5, rate: 400, count: 1000000, start: 2024-01-01T00:00:00Z, step: 1ms}
sinks:
  out:
    inputs: [trades]
    type: csv
    path: out/ticks.csv
    columns: [id, volume]
"#;

/// Fails at start: its csv sink cannot create a file under a plain file. The folder
/// comes from the environment, so it is a secret: no answer may show it.
const BROKEN: &str = r#"
name: broken
errors: {retry_timeout: 1s}
sources:
  trades: {type: trades, seed: 1, rate: 0, count: 10}
sinks:
  out:
    inputs: [trades]
    type: csv
    path: ${env:CONNECTD_TEST_HIDDEN}/cannot.csv
    columns: [id]
"#;

/// Ends quickly: its offsets are reset and it runs again from the beginning.
const ONCE: &str = r#"
name: once
sources:
  trades: {type: trades, seed: 9, rate: 0, count: 300}
sinks:
  out: {type: csv, inputs: [trades], path: out/once.csv, columns: [id]}
"#;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn state(port: u16, name: &str) -> String {
    let (code, body) = http("GET", port, &format!("/connectors/{name}/status"), None);
    assert_eq!(code, 200, "{body}");
    json(&body)["state"].as_str().unwrap().to_string()
}

fn wait_for_state(port: u16, name: &str, want: &str) {
    let started = Instant::now();
    loop {
        let s = state(port, name);
        if s == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} is {s}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("out/ticks.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn pipelines_are_listed_paused_resumed_and_restarted_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    write_pipeline(dir.path(), "broken.yaml", BROKEN);
    write_pipeline(dir.path(), "once.yaml", ONCE);
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .env("CONNECTD_TEST_HIDDEN", "ticks.yaml/hidden-x9")
            .args(["--config", "ticks.yaml", "broken.yaml", "once.yaml"]),
    );
    wait_for_admin(port);

    let (code, body) = http("GET", port, "/connectors", None);
    assert_eq!(
        (code, json(&body)),
        (200, serde_json::json!(["broken", "once", "ticks"]))
    );
    let (code, body) = http("GET", port, "/connectors/ticks", None);
    assert_eq!(code, 200);
    let info = json(&body);
    assert_eq!(info["components"][0]["type"], "trades", "{info}");
    assert_eq!(info["components"][1]["kind"], "sink", "{info}");
    assert_eq!(
        info["components"][1]["inputs"],
        serde_json::json!(["trades"])
    );
    assert_eq!(state(port, "ticks"), "RUNNING");
    wait_for_state(port, "broken", "FAILED");
    let (_, body) = http("GET", port, "/connectors/broken/status", None);
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("`out`"),
        "the failing component is named: {error}"
    );

    let (code, body) = http("GET", port, "/connectors/nope/status", None);
    assert_eq!(code, 404);
    assert_eq!(json(&body)["error_code"], 404);
    // An unknown path or method gets Kafka Connect's error body as well.
    for (method, path, code) in [
        ("GET", "/connectors/ticks/no-such-part", 404u16),
        ("GET", "/no/such/path", 404),
        ("POST", "/connectors/ticks/status", 405),
    ] {
        let (got, body) = http(method, port, path, None);
        assert_eq!(
            (got, json(&body)["error_code"].as_u64()),
            (code, Some(u64::from(code))),
            "{method} {path}: {body}"
        );
    }
    let (code, _) = http("PUT", port, "/connectors/broken/pause", None);
    assert_eq!(code, 409, "a failed pipeline cannot be paused");

    // Pause: it stops at a checkpoint and writes nothing more.
    std::thread::sleep(Duration::from_millis(800));
    let (code, _) = http("PUT", port, "/connectors/ticks/pause", None);
    assert_eq!(code, 202);
    wait_for_state(port, "ticks", "PAUSED");
    let paused = rows(dir.path()).len();
    // The offsets of the checkpoint it stopped at.
    let (code, body) = http("GET", port, "/connectors/ticks/offsets", None);
    assert_eq!(code, 200);
    let offsets = json(&body);
    assert!(offsets["checkpoint"].as_u64().unwrap() > 0, "{offsets}");
    assert!(!offsets["sources"]["trades"].is_null(), "{offsets}");
    assert_eq!(http("GET", port, "/connectors/nope/offsets", None).0, 404);
    assert!(paused > 0, "rows before the pause");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(rows(dir.path()).len(), paused, "rows written while paused");

    // Resume: from the checkpoint, going on.
    let (code, _) = http("PUT", port, "/connectors/ticks/resume", None);
    assert_eq!(code, 202);
    wait_for_state(port, "ticks", "RUNNING");
    let started = Instant::now();
    while rows(dir.path()).len() <= paused {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no rows after resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Restart while running: stops at a checkpoint and starts again from it.
    let (_, before) = http("GET", port, "/connectors/ticks/status", None);
    let (code, _) = http("POST", port, "/connectors/ticks/restart", None);
    assert_eq!(code, 204, "Kafka Connect's answer to a plain restart");
    let started = Instant::now();
    loop {
        let (_, now) = http("GET", port, "/connectors/ticks/status", None);
        if json(&now)["since"] != json(&before)["since"] && json(&now)["state"] == "RUNNING" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not restarted: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Restarting the failed one fails the same way again, and says so.
    let (code, _) = http("POST", port, "/connectors/broken/restart", None);
    assert_eq!(code, 204);
    wait_for_state(port, "broken", "FAILED");

    let (code, body) = http("GET", port, "/connector-plugins", None);
    assert_eq!(code, 200);
    let plugins = json(&body);
    for (class, kind) in [
        ("trades", "source"),
        ("filter", "transform"),
        ("csv", "sink"),
    ] {
        assert!(
            plugins
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["class"] == class && p["type"] == kind),
            "{class} ({kind}) missing from {plugins}"
        );
    }
    // A type's options, as Kafka Connect's ConfigKeyInfo, from the typed options.
    let (code, body) = http("GET", port, "/connector-plugins/csv/config", None);
    assert_eq!(code, 200, "{body}");
    let options = json(&body);
    let option = |name: &str| {
        options
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {options}"))
    };
    assert_eq!(option("path")["required"], true);
    assert_eq!(option("path")["type"], "STRING");
    assert_eq!(option("columns")["type"], "LIST");
    assert_eq!(option("delimiter")["default_value"], ",");
    assert_eq!(option("header")["default_value"], "true");
    assert!(option("header")["documentation"]
        .as_str()
        .unwrap()
        .contains("header row"));
    let (code, body) = http("GET", port, "/connector-plugins/kafka/config", None);
    assert_eq!(code, 400, "a source and a sink: {body}");
    let (code, body) = http(
        "GET",
        port,
        "/connector-plugins/kafka/config?kind=sink",
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"topic\""), "{body}");
    let (code, _) = http("GET", port, "/connector-plugins/nope/config", None);
    assert_eq!(code, 404);

    // Offsets reset: only while stopped; the next run starts from the beginning.
    wait_for_state(port, "once", "FINISHED");
    let once_rows = || read(dir.path().join("out/once.csv")).lines().count() - 1;
    assert_eq!(once_rows(), 300);
    assert_eq!(
        http("DELETE", port, "/connectors/ticks/offsets", None).0,
        409
    );
    assert_eq!(
        http("DELETE", port, "/connectors/nope/offsets", None).0,
        404
    );
    let (code, body) = http("DELETE", port, "/connectors/once/offsets", None);
    assert_eq!(code, 200, "{body}");
    assert!(json(&http("GET", port, "/connectors/once/offsets", None).1)["checkpoint"].is_null());
    let (_, before) = http("GET", port, "/connectors/once/status", None);
    assert_eq!(http("POST", port, "/connectors/once/restart", None).0, 204);
    let started = Instant::now();
    loop {
        let (_, now) = http("GET", port, "/connectors/once/status", None);
        if json(&now)["since"] != json(&before)["since"] && json(&now)["state"] == "FINISHED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not run again: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        once_rows(),
        600,
        "the whole input again, after what was written"
    );

    // The CLI's table, from the same API.
    let out = connectd()
        .args(["status", "--admin-addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("PIPELINE"), "{table}");
    assert!(line("ticks").contains("RUNNING"), "{table}");
    assert!(
        line("broken").contains("FAILED") && line("broken").contains("`out`"),
        "{table}"
    );

    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert!(
        !status.success(),
        "a failed pipeline makes the exit status non-zero"
    );
    // Across pause, resume and restart: every row once, in the generator's order.
    let all = rows(dir.path());
    let mut seen = std::collections::HashSet::new();
    for r in &all {
        assert!(seen.insert(r.clone()), "duplicate row {r}");
    }
    assert!(all.len() > paused);
}

/// Restart, resume and an offset reset build the pipeline from the spec it was loaded
/// from: its file is read once. Here the file is broken after the start (and not
/// watched), yet every later run is the pipeline as loaded.
#[test]
fn runs_after_the_first_are_built_from_the_loaded_spec_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--no-watch"])
            .args(["--config", "ticks.yaml"]),
    );
    wait_for_admin(port);
    wait_for_state(port, "ticks", "RUNNING");
    std::fs::write(&file, "name: [this is no longer a pipeline\n").unwrap();

    let since =
        |port| json(&http("GET", port, "/connectors/ticks/status", None).1)["since"].clone();
    let before = since(port);
    let (code, _) = http("POST", port, "/connectors/ticks/restart", None);
    assert_eq!(code, 204);
    let started = Instant::now();
    while since(port) == before || state(port, "ticks") != "RUNNING" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not restarted: {}",
            http("GET", port, "/connectors/ticks/status", None).1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped, its offsets reset (the sinks and sources are built for that too), resumed.
    assert_eq!(http("PUT", port, "/connectors/ticks/stop", None).0, 202);
    wait_for_state(port, "ticks", "STOPPED");
    let (code, body) = http("DELETE", port, "/connectors/ticks/offsets", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(http("PUT", port, "/connectors/ticks/resume", None).0, 202);
    wait_for_state(port, "ticks", "RUNNING");
    let started = Instant::now();
    while rows(dir.path()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no rows after the resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{}", stderr_of(&child));
    assert!(
        !stderr_of(&child).contains("no longer a pipeline"),
        "the broken file was read: {}",
        stderr_of(&child)
    );
}

#[test]
fn a_token_guards_the_api_and_is_required_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .env("CONNECTD_ADMIN_TOKEN", "s3cret")
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "ticks.yaml"]),
    );
    wait_for_admin(port);
    assert_eq!(http("GET", port, "/connectors", None).0, 401);
    assert_eq!(http("GET", port, "/connectors", Some("wrong")).0, 401);
    assert_eq!(http("PUT", port, "/connectors/ticks/pause", None).0, 401);
    assert_eq!(http("GET", port, "/connectors", Some("s3cret")).0, 200);
    assert_eq!(http("GET", port, "/healthz", None).0, 200);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());

    // Without a token, an address others can reach is refused at startup.
    let out = connectd()
        .current_dir(dir.path())
        .env_remove("CONNECTD_ADMIN_TOKEN")
        .args(["--admin-addr", "0.0.0.0:0", "--config", "ticks.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without a token") && err.contains("CONNECTD_ADMIN_TOKEN"),
        "{err}"
    );
}

/// The validate endpoint never expands `${file:}` or `${env:}` from a request body: no
/// caller can read the worker's files or environment through it.
#[test]
fn validate_reads_no_file_and_no_environment_for_a_caller() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET-4711\n").unwrap();
    let (mut child, port) = start_worker(dir.path(), &["--config", "ticks.yaml"]);

    let body = serde_json::json!({
        "inputs": ["x"], "path": "/tmp/o.csv", "columns": ["a"],
        "delimiter": format!("${{file:{}}}", secret.display()),
    });
    let (code, answer) = http_with_body(
        "PUT",
        port,
        "/connector-plugins/csv/config/validate",
        None,
        &body.to_string(),
    );
    assert_eq!(code, 200, "{answer}");
    assert!(!answer.contains("TOPSECRET"), "{answer}");
    let v = json(&answer);
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["field"] == "delimiter"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("not expanded in a request")),
        "{answer}"
    );

    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let body = serde_json::json!({"inputs": ["x"], "where": "name == \"${env:HOME}\" and"});
    let (code, answer) = http_with_body(
        "PUT",
        port,
        "/connector-plugins/filter/config/validate",
        None,
        &body.to_string(),
    );
    assert_eq!(code, 200, "{answer}");
    assert!(!answer.contains(&home), "{answer}");
    assert!(answer.contains("not expanded in a request"), "{answer}");

    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

/// In a pipeline file `${file:}` is expanded, and still no error message shows what it
/// stood for, whichever component wrote the message.
#[test]
fn config_errors_never_show_an_interpolated_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOPSECRET-4711\n").unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: leaky
sources:
  trades: {{type: trades, seed: 1, rate: 0, count: 10}}
sinks:
  out: {{type: csv, inputs: [trades], path: o.csv, columns: [id], delimiter: "${{file:{}}}"}}
"#,
            dir.path().join("secret.txt").display()
        ),
    );
    let out = connectd()
        .current_dir(dir.path())
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("delimiter"), "{text}");
    assert!(!text.contains("TOPSECRET"), "{text}");
}

/// A request with the given raw header lines; returns the status code (the body is
/// not read: an event stream never ends).
fn status_with_headers(port: u16, method: &str, path: &str, headers: &[&str]) -> u16 {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// DNS rebinding and cross-site requests: a Host that is not ours is refused on every
/// route; a change requested with another site's Origin is refused; `?token=` opens
/// nothing but the dashboard's event stream.
#[test]
fn the_api_refuses_foreign_hosts_and_origins_and_query_tokens() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .env("CONNECTD_ADMIN_TOKEN", "s3cret")
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "ticks.yaml"]),
    );
    wait_for_admin(port);
    let auth = "Authorization: Bearer s3cret";
    let here = format!("Host: 127.0.0.1:{port}");
    assert_eq!(
        status_with_headers(port, "GET", "/connectors", &[&here, auth]),
        200
    );
    for path in ["/connectors", "/healthz", "/metrics", "/"] {
        assert_eq!(
            status_with_headers(port, "GET", path, &["Host: evil.example", auth]),
            403,
            "{path} answered a foreign Host"
        );
    }
    assert_eq!(
        status_with_headers(port, "GET", "/connectors", &["Host: localhost:1", auth]),
        200
    );
    // A browser's cross-site change carries its Origin.
    assert_eq!(
        status_with_headers(
            port,
            "PUT",
            "/connectors/ticks/pause",
            &[&here, auth, "Origin: http://evil.example"]
        ),
        403
    );
    assert_eq!(
        status_with_headers(
            port,
            "PUT",
            "/connectors/nope/pause",
            &[&here, auth, &format!("Origin: http://localhost:{port}")]
        ),
        404,
        "a same-site change goes through to the handler"
    );
    // ?token= only on the event stream.
    assert_eq!(
        status_with_headers(port, "GET", "/connectors?token=s3cret", &[&here]),
        401
    );
    assert_eq!(
        status_with_headers(port, "GET", "/api/windows?token=s3cret", &[&here]),
        200
    );
    assert_eq!(
        status_with_headers(port, "GET", "/api/windows?token=wrong", &[&here]),
        401
    );
    // The dashboard page holds no data: it loads without the token, and asks the API
    // with the one the user gives it.
    assert_eq!(status_with_headers(port, "GET", "/", &[&here]), 200);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

/// Kafka Connect's `/admin/loggers`: a log level changed at runtime takes effect at
/// once (the worker starts at `warn`; `connectd_runtime::worker` set to INFO makes the
/// next pause log its info line), is listed, and a bad level or body is a 400.
#[test]
fn a_log_level_changes_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let (mut child, port) = start_worker(dir.path(), &["--config", "ticks.yaml"]);
    wait_for_state(port, "ticks", "RUNNING");
    let pause_and_resume = || {
        assert_eq!(http("PUT", port, "/connectors/ticks/pause", None).0, 202);
        wait_for_state(port, "ticks", "PAUSED");
        assert_eq!(http("PUT", port, "/connectors/ticks/resume", None).0, 202);
        wait_for_state(port, "ticks", "RUNNING");
    };
    pause_and_resume();
    assert!(
        !stderr_tail(&child, 1 << 20).contains("pipeline paused"),
        "an info line at warn"
    );
    let (code, body) = http_with_body(
        "PUT",
        port,
        "/admin/loggers/connectd_runtime::worker",
        None,
        r#"{"level": "INFO"}"#,
    );
    assert_eq!(
        (code, json(&body)),
        (200, serde_json::json!(["connectd_runtime::worker"]))
    );
    pause_and_resume();
    let started = Instant::now();
    while !stderr_tail(&child, 1 << 20).contains("pipeline paused") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no info line after the change"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body) = http("GET", port, "/admin/loggers", None);
    assert_eq!(code, 200);
    let all = json(&body);
    assert_eq!(all["connectd_runtime::worker"]["level"], "INFO", "{all}");
    assert_eq!(all["root"]["level"], "WARN", "{all}");
    let (code, body) = http("GET", port, "/admin/loggers/connectd_runtime::worker", None);
    assert_eq!((code, json(&body)["level"].as_str()), (200, Some("INFO")));
    for bad in [r#"{"level": "LOUD"}"#, r#"{"lvl": "INFO"}"#, "not json"] {
        let (code, body) = http_with_body("PUT", port, "/admin/loggers/x", None, bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

/// A sink's `start` (read by the runtime, not by the sink) is accepted by the validate
/// endpoint, and a wrong value is reported on its field.
#[test]
fn validate_accepts_a_sinks_start_and_reports_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let (mut child, port) = start_worker(dir.path(), &["--config", "ticks.yaml"]);
    let check = |start: &str| {
        let body = serde_json::json!({
            "inputs": ["x"], "path": "out/o.csv", "columns": ["a"], "start": start,
        });
        let (code, answer) = http_with_body(
            "PUT",
            port,
            "/connector-plugins/csv/config/validate",
            None,
            &body.to_string(),
        );
        assert_eq!(code, 200, "{answer}");
        json(&answer)["errors"].as_array().unwrap().clone()
    };
    let errors = check("beginning");
    assert!(errors.is_empty(), "{errors:?}");
    let errors = check("yesterday");
    assert!(
        errors.iter().any(|e| e["field"] == "start"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("checkpoint | beginning")),
        "{errors:?}"
    );
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}
