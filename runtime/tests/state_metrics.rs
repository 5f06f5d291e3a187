//! The state store's metrics on `/metrics` (issue 14): keys, disk and memory bytes per
//! stateful transform, bytes written by checkpoints per pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The value of the sample of `name` whose labels contain every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn stateful_transforms_report_their_state_and_checkpoints_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        r#"name: kept
checkpoint: {interval: 200ms}
sources:
  gen: {type: trades, seed: 4, rate: 2000, count: 1000000}
transforms:
  big: {type: filter, inputs: [gen], where: "volume > 0"}
  firsts: {type: dedup, inputs: [big], key: [id], keep: first, retention: 1d}
  per_id: {type: window, inputs: [gen], kind: tumbling, size: 1h, group_by: [id], aggregates: {n: count()}}
sinks:
  out: {type: csv, inputs: [firsts], path: out.csv, columns: [id]}
  counts: {type: csv, inputs: [per_id], path: counts.csv, columns: [id, n]}
"#,
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let started = Instant::now();
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        metrics = http_get(port, "/metrics");
        let keys = sample(&metrics, "connectd_state_keys", &[r#"component="firsts""#]);
        if keys.is_some_and(|k| k >= 1000.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
    let keys = sample(
        &metrics,
        "connectd_state_keys",
        &[r#"pipeline="kept""#, r#"component="firsts""#],
    );
    assert!(
        keys.is_some_and(|k| k >= 1000.0),
        "no state keys: {metrics}"
    );
    let disk = sample(
        &metrics,
        "connectd_state_bytes",
        &[r#"component="firsts""#, r#"where="disk""#],
    );
    assert!(disk.is_some(), "no state bytes: {metrics}");
    // The dedup's table answers "absent" for new ids from its Bloom filter.
    let filter = sample(
        &metrics,
        "connectd_state_bytes",
        &[r#"component="firsts""#, r#"where="filter""#],
    );
    assert!(
        filter.is_some_and(|b| b >= 1000.0 * 10.0 / 8.0),
        "key filter bytes: {filter:?}"
    );
    // The window's groups, decoded in memory in front of the store.
    let memory = sample(
        &metrics,
        "connectd_state_bytes",
        &[r#"component="per_id""#, r#"where="memory""#],
    );
    assert!(
        memory.is_some_and(|b| b >= 1000.0 * 100.0),
        "window state in memory: {memory:?}"
    );
    let written = sample(
        &metrics,
        "connectd_checkpoint_bytes_total",
        &[r#"pipeline="kept""#],
    );
    // Each kept id is at least its 36-byte key in the state written.
    assert!(
        written.is_some_and(|b| b >= 36.0 * 1000.0),
        "checkpoint bytes: {written:?}"
    );
    // A stateless transform keeps no state, so it has no state metrics.
    assert_eq!(
        sample(&metrics, "connectd_state_keys", &[r#"component="big""#]),
        None
    );
}
