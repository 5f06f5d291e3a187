//! Broken configs: each file of `broken-configs/` must make `connectd validate` exit 1
//! with a message naming the file, the line marked `# <-`, the field and the cause —
//! and never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;

fn expectation(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn every_broken_config_is_reported_with_file_line_and_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken-configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the corpus must hold at least 30 broken configs"
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = read(file);
        let line = text
            .lines()
            .position(|l| l.contains("# <-"))
            .expect("each case marks its line")
            + 1;
        let field = expectation(&text, "expect-field");
        let message = expectation(&text, "expect-message");
        let out = connectd()
            .env_remove("CONNECTD_TEST_SURELY_UNSET")
            .arg("validate")
            .arg("--config")
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}:{line}:", file.display());
        let problems = [
            (
                out.status.code() != Some(1),
                format!("exit code {:?}, want 1", out.status.code()),
            ),
            (stderr.contains("panicked"), "panicked".to_string()),
            (!stderr.contains(&at), format!("no `{at}`")),
            (
                !field.is_empty() && !stderr.contains(&format!("`{field}`")),
                format!("no field `{field}`"),
            ),
            (!stderr.contains(&message), format!("no `{message}`")),
        ];
        for (bad, why) in problems {
            if bad {
                failures.push(format!("{}: {why}\n{stderr}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "many.yaml",
        "name: p\nsources:\n  m: {type: iot, rate: fast, jitter: soon}\ntransforms:\n  t: {type: filter, inputs: [m], where: 'usage >'}\nsinks:\n  s: {type: csv, inputs: [t], path: x.csv}\n",
    );
    let out = connectd()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for field in [
        "sources.m.rate",
        "sources.m.jitter",
        "transforms.t.where",
        "sinks.s.columns",
    ] {
        assert!(
            stderr.contains(&format!("`{field}`")),
            "missing {field} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problem(s) found"), "{stderr}");
}

#[test]
fn interpolated_values_never_appear_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "s.yaml", "name: p\nsources:\n  m: {type: iot, rate: '${env:CONNECTD_TEST_SECRET_RATE}'}\nsinks:\n  s: {type: stdout, inputs: [m]}\n");
    let out = connectd()
        .env("CONNECTD_TEST_SECRET_RATE", "hunter2-topsecret")
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("<redacted>"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the secret leaked: {stderr}");
}

#[test]
fn quoted_globs_load_every_matching_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        write_pipeline(dir.path(), &format!("{name}.yaml"), &format!("name: {name}\nsources:\n  m: {{type: iot}}\nsinks:\n  s: {{type: stdout, inputs: [m]}}\n"));
    }
    let pattern = format!("{}/*.yaml", dir.path().display());
    let out = connectd()
        .args(["validate", "--config", &pattern])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: a") && stdout.contains("ok: b"),
        "{stdout}"
    );
    let out = connectd()
        .args([
            "validate",
            "--config",
            &format!("{}/*.yml", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file matches"));
}

#[test]
fn the_shipped_examples_validate() {
    let pattern = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipelines/*.yaml");
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/pipeline-reference.yaml"
    );
    let kafka = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/pipelines/kafka/*.yaml"
    );
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker.yaml");
    std::fs::write(&worker, "kafka: {bootstrap_servers: 127.0.0.1:9092}\n").unwrap();
    let out = connectd()
        .env("APCA_API_KEY_ID", "k")
        .env("APCA_API_SECRET_KEY", "s")
        .env("GOAPI_API_KEY", "g")
        .args(["validate", "--worker"])
        .arg(&worker)
        .args(["--config", pattern, kafka, reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in [
        "reference",
        "iot-monitoring",
        "yahoo-btc",
        "alpaca-spy",
        "conn-events-to-csv",
        "goapi-to-avro",
        "goapi-ksql-to-mongodb",
        "alpaca-spy-to-kafka",
        "iot-to-kafka",
    ] {
        assert!(
            stdout.contains(&format!("ok: {name} ")),
            "{name} missing in {stdout}"
        );
    }
}

#[test]
fn a_missing_environment_variable_is_named() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/pipelines/alpaca-spy.yaml"
    );
    let out = connectd()
        .env_remove("APCA_API_KEY_ID")
        .env("APCA_API_SECRET_KEY", "s")
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("`APCA_API_KEY_ID` is not set") && stderr.contains("`sources.quotes.key`"),
        "{stderr}"
    );
}
