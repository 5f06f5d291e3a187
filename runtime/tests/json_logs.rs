//! `--log-format json`: one JSON object per line, with the pipeline and component as
//! fields that log collectors can index.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn json_logs_are_one_object_per_line_with_pipeline_and_component_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: logged\nsources:\n  gen: {type: trades, seed: 1, rate: 0, count: 100}\nsinks:\n  out: {type: csv, inputs: [gen], path: out.csv, columns: [id]}\n",
    );
    let out = connectd()
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .args(["--admin-addr", "off", "--log-format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    let has = |message: &str, field: &str, value: &str| {
        lines
            .iter()
            .any(|l| l["fields"]["message"] == message && l["fields"][field] == value)
    };
    assert!(has("starting pipeline", "pipeline", "logged"), "{lines:?}");
    assert!(has("source exhausted", "component", "gen"), "{lines:?}");
    // Lines from inside a pipeline carry its name too (from the pipeline's span).
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "source exhausted"
                && l["span"]["pipeline"] == "logged"),
        "{lines:?}"
    );
}

/// Without `RUST_LOG` the worker logs its own lines at info, and not the state store's
/// libraries' (fjall and lsm-tree log every database opened, tree recovered and table
/// file ingested at info): a restart with state to recover and a checkpoint large
/// enough to be ingested as a table file would otherwise fill the log with them.
#[test]
fn the_default_log_filter_keeps_the_state_stores_info_lines_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: quiet\nsources:\n  gen: {type: trades, seed: 1, rate: 0, count: 40000}\ntransforms:\n  d: {type: dedup, inputs: [gen], key: [id], keep: first, retention: 1d}\nsinks:\n  out: {type: csv, inputs: [d], path: out.csv, columns: [id]}\n",
    );
    for run in ["first run", "second run (recovers the store)"] {
        let out = connectd()
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .args(["--admin-addr", "off", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{run}: {log}");
        assert!(log.contains("starting pipeline"), "{run}: {log}");
        for noisy in ["fjall", "lsm_tree"] {
            assert!(
                !log.contains(noisy),
                "{run}: a {noisy} line at the default level: {log}"
            );
        }
    }
}
