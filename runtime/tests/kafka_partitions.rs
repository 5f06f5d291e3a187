//! A 4-partition Kafka topic into two file sinks, with quick restarts while the killed
//! member still holds the group: every id once in each file (issue 15).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka;
use rand::Rng;

/// The ids in a file sink's output, counted.
fn file_ids(path: &Path, id_of: impl Fn(&str) -> u64) -> std::collections::BTreeMap<u64, usize> {
    let mut ids = std::collections::BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().filter(|l| !l.is_empty() && *l != "id") {
            *ids.entry(id_of(line)).or_insert(0) += 1;
        }
    }
    ids
}

/// A 4-partition topic into a `csv` and a `jsonl` sink, SIGKILLed at seeded random
/// moments and restarted at once: the new member joins while the killed one still
/// holds its partitions (until its session times out), so it first gets only some of
/// them. Checkpoints must keep every partition's position all the same: afterwards
/// every id is in both files exactly once.
#[test]
fn four_partitions_into_two_file_sinks_stay_exactly_once_across_quick_restarts() {
    const IDS: u64 = 60_000;
    let (seed, mut rng) = common::seeded_rng();
    let topic = kafka::unique("four");
    kafka::create_topic(&topic, 4);
    kafka::produce(
        &topic,
        (0..IDS).map(|i| (format!("k{}", i % 64), format!(r#"{{"id":{i}}}"#))),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "four.yaml",
        &format!(
            r#"name: four
checkpoint: {{interval: 200ms}}
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{topic}]
    group: {group}
    start: earliest
    properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500", max.partition.fetch.bytes: "20000"}}
sinks:
  ids_csv: {{type: csv, inputs: [in], path: out/ids.csv, columns: [id]}}
  ids_jsonl: {{type: jsonl, inputs: [in], path: out/ids.jsonl}}
"#,
            bootstrap = kafka::bootstrap(),
            group = kafka::unique("four-group"),
        ),
    );
    let csv = dir.path().join("out/ids.csv");
    let jsonl = dir.path().join("out/ids.jsonl");
    let mut kills = 0;
    let mut workers = Vec::new();
    while kills < 6 {
        let mut child = common::spawn(dir.path(), &cfg, &[]);
        // Until it writes, then a random while more.
        let started = Instant::now();
        let before = file_ids(&csv, |l| l.parse().unwrap()).len();
        while file_ids(&csv, |l| l.parse().unwrap()).len() == before
            && started.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: {}",
            common::stderr_tail(&child, 4000)
        );
        common::signal(&child, libc::SIGKILL);
        let _ = child.wait();
        workers.push(child);
        kills += 1;
    }
    // The last runs: each until every id is in the CSV, then stopped gracefully. A run
    // may see the killed run's uncommitted tail (which it truncates when it opens) and
    // be stopped before it reads anything: then the next one goes on. Lost records stay
    // lost whatever the number of runs, so this does not hide a loss.
    let mut child = common::spawn(dir.path(), &cfg, &[]);
    for run in 1..=3 {
        let started = Instant::now();
        while file_ids(&csv, |l| l.parse().unwrap()).len() < IDS as usize
            && started.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(1000));
        common::signal(&child, libc::SIGTERM);
        assert!(common::wait_with_deadline(&mut child, Duration::from_secs(60)).success());
        if file_ids(&csv, |l| l.parse().unwrap()).len() == IDS as usize || run == 3 {
            break;
        }
        println!("graceful run {run} stopped before the end; once more");
        child = common::spawn(dir.path(), &cfg, &[]);
    }
    for (name, ids) in [
        ("csv", file_ids(&csv, |l| l.parse().unwrap())),
        (
            "jsonl",
            file_ids(&jsonl, |l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            }),
        ),
    ] {
        let twice = ids.values().filter(|n| **n > 1).count();
        assert_eq!(
            twice,
            0,
            "seed {seed}: {twice} ids twice in the {name} file; {}",
            common::stderr_tail(&child, 3000)
        );
        assert_eq!(
            ids.len(),
            IDS as usize,
            "seed {seed}: ids missing from the {name} file; {}",
            common::stderr_tail(&child, 6000)
        );
    }
}
