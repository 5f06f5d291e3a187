//! A Kafka Connect client that users already use (`kafka-connect-py` from PyPI,
//! installed by `scripts/test.sh`) drives a running worker (issue 19).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn kafka_connect_py_lists_reads_status_pauses_resumes_and_restarts_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: ticks\ncheckpoint: {interval: 200ms}\nsources:\n  gen: {type: trades, seed: 5, rate: 200, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/ticks.csv, columns: [id]}\n",
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/kafka_connect_py.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("ticks")
        .output()
        .expect("python3");
    signal(&worker, libc::SIGTERM);
    let _ = wait_with_deadline(&mut worker, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "kafka-connect-py (pip install kafka-connect-py) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
