//! Fairness while catching up (issue 16, point 5): a backlog of two partitions whose
//! message timestamps cover the same hours. librdkafka hands a backlog over partition
//! by partition; read that way, a window holds every window of the partition read
//! first until the other catches up. With `max_partition_skew` the source hands
//! messages over in timestamp order across partitions, so the window's state stays
//! bounded. The same pipeline with it off is the control: it must hold far more, or
//! this test could not tell.
//!
//! State is measured as the window's memory gauge (`connectd_state_bytes`, memory): the
//! keys gauge is the store's estimate, which counts deleted keys until compaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const PER_PARTITION: i64 = 20_000;
const T0: i64 = 1_700_000_000_000;

/// The most memory (bytes) the window's groups took at any checkpoint while the
/// pipeline read the topic, and the window rows written.
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
        if let Some(bytes) = metrics
            .lines()
            .find(|l| {
                l.starts_with("connectd_state_bytes{")
                    && l.contains("component=\"per_host\"")
                    && l.contains("where=\"memory\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(bytes);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = rows();
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    (peak, done)
}

#[test]
fn partitions_are_read_in_time_order_and_window_state_stays_bounded() {
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
    println!("peak window memory: {fair} bytes with max_partition_skew 60s, {unfair} with it off");
    let want = 2 * (PER_PARTITION as usize * 1000 / 5000 - 1);
    assert_eq!(
        (fair_rows, unfair_rows),
        (want, want),
        "every window, both ways"
    );
    // The control read partition 0 to its end before partition 1: at its peak it held
    // every window of partition 0, one group each. That gives the bytes of a group.
    let control_groups = PER_PARTITION as u64 * 1000 / 5000;
    let fair_groups = fair * control_groups / unfair.max(1);
    println!("= about {fair_groups} window groups at once in time order, {control_groups} in the control");
    // 60 s of skew is 12 windows of 5 s per host, plus the open one; twice that for
    // the checkpoint's view of a moving state.
    assert!(
        fair_groups <= 2 * 2 * 13,
        "in time order, about {fair_groups} window groups at once"
    );
}
