//! The worker file (`--worker`): Kafka settings reach the connectors, and mistakes are
//! reported with their place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

const PIPELINE: &str = r#"name: w
sources:
  in: {type: kafka, topics: [a], group: g}
sinks:
  out: {type: kafka, inputs: [in], topic: b}
"#;

fn validate(dir: &std::path::Path, worker: Option<&str>) -> std::process::Output {
    let config = common::write_pipeline(dir, "p.yaml", PIPELINE);
    let mut c = common::connectd();
    c.current_dir(dir)
        .arg("validate")
        .arg("--config")
        .arg(&config);
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.yaml"), w).unwrap();
        c.args(["--worker", "worker.yaml"]);
    }
    c.output().unwrap()
}

#[test]
fn kafka_connectors_take_the_bootstrap_servers_from_the_worker_file() {
    let dir = tempfile::tempdir().unwrap();
    let without = validate(dir.path(), None);
    assert!(!without.status.success());
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(
        err.contains("sources.in.bootstrap_servers") && err.contains("--worker"),
        "{err}"
    );
    assert!(err.contains("sinks.out.bootstrap_servers"), "{err}");

    let with = validate(
        dir.path(),
        Some("name: w1\nkafka:\n  bootstrap_servers: 127.0.0.1:1\n  properties: {client.id: x}\n"),
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
}

#[test]
fn a_broken_worker_file_is_reported_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let out = validate(
        dir.path(),
        Some("name: w1\nkafka:\n  bootstrap_server: 127.0.0.1:1\n  properties: {acks: [1]}\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker.yaml:3"), "{err}");
    assert!(err.contains("bootstrap_servers"), "{err}");
    assert!(err.contains("properties.acks"), "{err}");
}

#[test]
fn the_shipped_worker_file_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = common::connectd()
        .current_dir(&root)
        .args([
            "validate",
            "--worker",
            "configs/worker.yaml",
            "--config",
            "examples/pipelines/iot-monitoring.yaml",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
