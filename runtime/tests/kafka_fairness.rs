//! Fairness while catching up (issue 16, point 5): a backlog of two partitions whose
//! message timestamps cover the same hours. Read partition by partition, a window over
//! it holds every window of the partition read ahead until the other catches up; with
//! `max_partition_skew` the source pauses the partition running ahead, so the window's
//! state stays bounded. The same pipeline with the pause off is the control: it must
//! hold far more, or this test could not tell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const PER_PARTITION: i64 = 20_000;
const T0: i64 = 1_700_000_000_000;

/// The most window groups the pipeline held at any checkpoint while it read the topic.
fn peak_state(topic: &str, skew: &str) -> (u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"name: fair
checkpoint: {{interval: 100ms}}
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{topic}]
    group: {group}
    start: earliest
    max_partition_skew: {skew}
transforms:
  per_host:
    type: window
    inputs: [in]
    kind: tumbling
    size: 5s
    time: t
    group_by: [host]
    aggregates: {{n: count()}}
sinks:
  out: {{type: jsonl, inputs: [per_host], path: out/w.jsonl}}
"#,
            bootstrap = kafka::bootstrap(),
            group = kafka::unique("fair-group"),
        ),
    );
    let (mut child, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    // Every window but the last open one per host, once both partitions are read.
    let want = 2 * (PER_PARTITION as usize * 1000 / 5000 - 1);
    let rows = || {
        std::fs::read_to_string(dir.path().join("out/w.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let (started, mut peak) = (Instant::now(), 0u64);
    while rows() < want && started.elapsed() < Duration::from_secs(120) {
        let metrics = http("GET", port, "/metrics", None).1;
        if let Some(keys) = metrics
            .lines()
            .find(|l| l.starts_with("connectd_state_keys{") && l.contains("component=\"per_host\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(keys);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = rows();
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    (peak, done)
}

#[test]
#[ignore = "known gap (issue 16, point 5): the pause does not bound the window's state in the binary. Measured 2026-11-30: 4 006 window groups at once with max_partition_skew 60s, 4 004 with it off. The decision only counts partitions that have delivered a message, so the one not read yet never holds the other back; with that fixed (tried), librdkafka's prefetched messages of the paused partition still arrive (3 308-3 681). Needs per-partition queues (split_partition_queue) ordered by timestamp, as Kafka Streams does. Run with --ignored"]
fn a_partition_running_ahead_is_paused_and_window_state_stays_bounded() {
    let topic = kafka::unique("fair");
    kafka::create_topic(&topic, 2);
    let producer = kafka::Producer::new();
    // Partition 0 first, then 1: one event per second each, message timestamp = event time.
    for (partition, host) in [(0, "a"), (1, "b")] {
        producer.send_at(
            &topic,
            partition,
            (0..PER_PARTITION).map(|i| {
                let t = T0 + i * 1000;
                (format!(r#"{{"host":"{host}","t":{t}}}"#), t)
            }),
        );
    }
    let (fair, fair_rows) = peak_state(&topic, "60s");
    let (unfair, unfair_rows) = peak_state(&topic, "0s");
    println!("peak window groups: {fair} with max_partition_skew 60s, {unfair} with it off");
    let want = 2 * (PER_PARTITION as usize * 1000 / 5000 - 1);
    assert_eq!(
        (fair_rows, unfair_rows),
        (want, want),
        "every window, both ways"
    );
    // 60 s of skew is 12 windows of 5 s; a checkpoint may see up to twice the skew
    // before a pause takes effect.
    assert!(fair <= 60, "with the pause, {fair} window groups at once");
    assert!(
        unfair >= 4 * fair.max(1),
        "the control held only {unfair}: the test cannot tell"
    );
}
