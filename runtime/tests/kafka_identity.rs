//! The Kafka sink's identity does not depend on the worker's name (issue 15, point 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka;

const COUNT: u64 = 3_000;

/// Two workers started from the shipped `configs/worker.yaml` (so with the same worker
/// name), each with its own state directory, run a pipeline of the same name into the
/// same topic at the same time. With transactional ids made from the worker name they
/// fenced each other until one failed; now each id is its state directory's, and both
/// deliver every record exactly once.
#[test]
fn two_workers_from_the_shipped_worker_file_do_not_fence_each_other() {
    let topic = kafka::unique("twins");
    kafka::create_topic(&topic, 1);
    let worker_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/worker.yaml");
    let pipeline = format!(
        "name: twins\ncheckpoint: {{interval: 100ms}}\nsources:\n  gen: {{type: trades, seed: 3, rate: 1500, count: {COUNT}}}\nsinks:\n  out: {{type: kafka, inputs: [gen], topic: {topic}}}\n"
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut children: Vec<_> = dirs
        .iter()
        .map(|d| {
            let cfg = common::write_pipeline(d.path(), "twins.yaml", &pipeline);
            common::spawn_captured(
                common::connectd()
                    .current_dir(d.path())
                    .env("KAFKA_BOOTSTRAP", kafka::bootstrap())
                    .arg("--admin-addr")
                    .arg("off")
                    .arg("--worker")
                    .arg(&worker_file)
                    .arg("--config")
                    .arg(cfg),
            )
        })
        .collect();
    for child in &mut children {
        let status = common::wait_with_deadline(child, Duration::from_secs(120));
        assert!(status.success(), "{}", common::stderr_tail(child, 4000));
    }
    // Different instance ids, kept in each state directory.
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| common::read(d.path().join(".connectd/instance-id")))
        .collect();
    assert_ne!(ids[0], ids[1]);
    let values = kafka::consume_committed(
        &topic,
        Duration::from_secs(60),
        Duration::from_secs(2),
        |v| v.len() >= 2 * COUNT as usize,
    );
    // Both generators have the same seed: every trade id comes once from each.
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for v in &values {
        let id = serde_json::from_str::<serde_json::Value>(v).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), COUNT as usize, "ids missing");
    let mut times: BTreeMap<usize, usize> = BTreeMap::new();
    for n in per_id.values() {
        *times.entry(*n).or_default() += 1;
    }
    assert!(
        per_id.values().all(|n| *n == 2),
        "each worker's records once; {} values read; ids by times seen: {times:?}\nworker 1:\n{}\nworker 2:\n{}",
        values.len(),
        common::stderr_tail(&children[0], 3000),
        common::stderr_tail(&children[1], 3000),
    );
}
