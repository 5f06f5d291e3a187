//! Kafka source → filter → Kafka sink, exactly once, against a real Kafka-protocol broker
//! (Tansu from `scripts/kafka.sh`, or `KAFKA_BOOTSTRAP`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::kafka;
use rand::Rng;

const N: u64 = 100_000;

fn input(topic: &str) {
    kafka::create_topic(topic, 4);
    kafka::produce(
        topic,
        (0..N).map(|i| {
            (
                format!("k{}", i % 16),
                format!(r#"{{"id":{i},"v":{},"name":"n{i}"}}"#, i % 100),
            )
        }),
    );
}

fn pipeline(dir: &Path, input: &str, output: &str, group: &str) -> std::path::PathBuf {
    common::write_pipeline(
        dir,
        "ctp.yaml",
        &format!(
            r#"name: ctp
checkpoint: {{interval: 500ms}}
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{input}]
    group: {group}
    properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "1000"}}
transforms:
  keep:
    type: filter
    inputs: [in]
    where: v < 50
sinks:
  out:
    type: kafka
    inputs: [keep]
    bootstrap_servers: {bootstrap}
    topic: {output}
    key: [id]
"#,
            bootstrap = kafka::bootstrap()
        ),
    )
}

fn expected() -> usize {
    (0..N).filter(|i| i % 100 < 50).count()
}

/// SIGKILLs the worker at a moment when its sink has no transaction open (the broker
/// under test may not hide aborted transactions: see the ignored test below). The
/// process is stopped first, so the check and the kill see the same state.
fn kill_between_transactions(child: &mut Child, marker: &Path) {
    loop {
        common::signal(child, libc::SIGSTOP);
        if !marker.exists() {
            common::signal(child, libc::SIGKILL);
            let _ = child.wait();
            return;
        }
        common::signal(child, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(3));
    }
}

fn check_exactly_once(output: &str) {
    let want = expected();
    let values = kafka::consume_committed(
        output,
        Duration::from_secs(240),
        Duration::from_secs(3),
        |v| v.len() >= want,
    );
    let ids = kafka::ids(&values);
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        dups.is_empty(),
        "duplicates in the output (id, count): {dups:?}"
    );
    let missing: Vec<u64> = (0..N)
        .filter(|i| i % 100 < 50 && !ids.contains_key(i))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing ids, e.g. {missing:?}");
    assert_eq!(values.len(), want);
}

#[test]
fn consume_transform_produce_is_exactly_once_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let (input_topic, output) = (kafka::unique("ctp-in"), kafka::unique("ctp-out"));
    input(&input_topic);
    kafka::create_topic(&output, 4);
    let config = pipeline(
        dir.path(),
        &input_topic,
        &output,
        &kafka::unique("ctp-group"),
    );
    let marker = dir.path().join(".connectd/ctp/sinks/out.in-transaction");
    let mut rng = rand::rng();
    for _ in 0..10 {
        let mut child = common::spawn(dir.path(), &config, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4000)));
        assert!(child.try_wait().unwrap().is_none(), "connectd exited early");
        kill_between_transactions(&mut child, &marker);
    }
    // The kills landed mid-stream: some output was committed, not all of it.
    let so_far =
        kafka::consume_committed(&output, Duration::from_secs(8), Duration::ZERO, |_| false).len();
    assert!(
        so_far > 0 && so_far < expected(),
        "{so_far} records before the last restart"
    );
    let mut child = common::spawn(dir.path(), &config, &[]);
    check_exactly_once(&output);
    common::signal(&child, libc::SIGTERM);
    common::wait_with_deadline(&mut child, Duration::from_secs(60));
}

/// Kills land anywhere, including inside a transaction: exactly-once then relies on the
/// broker hiding aborted transactions from read_committed consumers.
#[test]
#[ignore = "needs a broker that hides aborted transactions from read_committed consumers, which Tansu does not: KAFKA_BOOTSTRAP=host:port cargo test --test kafka -- --ignored"]
fn exactly_once_with_kills_inside_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (input_topic, output) = (kafka::unique("ctpa-in"), kafka::unique("ctpa-out"));
    input(&input_topic);
    kafka::create_topic(&output, 4);
    let config = pipeline(
        dir.path(),
        &input_topic,
        &output,
        &kafka::unique("ctpa-group"),
    );
    let mut rng = rand::rng();
    let started = Instant::now();
    for _ in 0..10 {
        let mut child = common::spawn(dir.path(), &config, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4000)));
        common::signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }
    let mut child = common::spawn(dir.path(), &config, &[]);
    check_exactly_once(&output);
    common::signal(&child, libc::SIGTERM);
    common::wait_with_deadline(&mut child, Duration::from_secs(60));
    eprintln!("took {:?}", started.elapsed());
}
