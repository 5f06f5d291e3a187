//! Benchmark: kafka source → kafka sink with exactly-once (transactions, offsets in the
//! transaction, checkpoint every second) against a plain rdkafka consume + produce loop
//! (no transactions, no offsets), both on the same broker, same input, same run.
//!
//! Each run reads a pre-filled 4-partition input topic of ~100-byte records. The clock
//! starts at the first record consumed on both sides (group joins and startup are
//! left out): for the plain loop at its first polled message; for connectd when its
//! source's `connectd_records_out_total` first moves (read every 5 ms). It stops when
//! the last record is done: for the plain loop when the producer has flushed; for
//! connectd when the group's committed offsets — committed in the sink's transaction —
//! cover the whole input. Both output topics are then read back (read_committed) and
//! must hold the same records: count and an order-free digest of keys and values.
//!
//! Needs a broker: `scripts/kafka.sh start` (or `KAFKA_BOOTSTRAP`). Run:
//! `cargo bench -p connectd-runtime --bench kafka_eos` (env `RECORDS`, `RUNS`,
//! `CHECKPOINT`: connectd's checkpoint interval, default 1s; `FORMAT`: the value format
//! of connectd's source and sink, default `json` — parsed and written again — or
//! `raw`, text passed as it is, which is what a copy between topics needs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

mod common;

use common::kafka::{self, bootstrap, config, unique, Worker};

const PARTITIONS: i32 = 4;

/// connectd's value format (`FORMAT`): `json` (default) or `raw`.
fn value_format() -> String {
    std::env::var("FORMAT").unwrap_or_else(|_| "json".into())
}

fn create_topic(name: &str) {
    kafka::create_topic(name, PARTITIONS);
}

/// ~100-byte JSON values.
fn fill(topic: &str, records: u64) {
    kafka::fill(
        topic,
        (0..records).map(|i| {
            let value = format!(
                r#"{{"id":{i},"symbol":"SYM{:03}","price":{}.25,"size":{},"venue":"bench-venue-x"}}"#,
                i % 500,
                1000 + i % 9000,
                i % 977
            );
            (None, format!("k{}", i % 64), value)
        }),
    );
}

/// The plain loop: consume (assigned partitions, no group) and produce, then flush.
/// Records per second, and the CPU seconds the bench process spent meanwhile.
fn plain(input: &str, output: &str, records: u64) -> (f64, f64) {
    let cpu_before = common::own_cpu_seconds();
    let consumer: BaseConsumer = config()
        .set("group.id", unique("plain"))
        .set("enable.auto.commit", "false")
        // As connectd's source sets it: librdkafka's default (1 s) stalls both.
        .set("fetch.queue.backoff.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        // Offset 0, not Beginning: Tansu's "earliest" can skip a partition's first batch
        // (see the tests' `kafka::assign_from_zero`).
        tpl.add_partition_offset(input, p, Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = config().create().unwrap();
    let mut seen = 0;
    let mut started = None;
    while seen < records {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        started.get_or_insert_with(Instant::now);
        use rdkafka::Message;
        let mut rec = BaseRecord::to(output)
            .payload(m.payload().unwrap_or_default())
            .key(m.key().unwrap_or_default());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        seen += 1;
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let rate = records as f64 / started.unwrap().elapsed().as_secs_f64();
    (rate, common::own_cpu_seconds() - cpu_before)
}

fn committed(group: &str, input: &str) -> i64 {
    kafka::committed(group, input, PARTITIONS)
}

/// What a topic holds, committed: (records, an order-free digest of keys and values).
fn digest(topic: &str, records: u64) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let consumer: BaseConsumer = config()
        .set("group.id", unique("digest"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut n, mut sum) = (0u64, 0u64);
    let mut quiet_since = Instant::now();
    while n < records || quiet_since.elapsed() < Duration::from_secs(2) {
        if quiet_since.elapsed() > Duration::from_secs(30) {
            break;
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        use rdkafka::Message;
        let m = m.unwrap();
        let mut h = rustc_hash::FxHasher::default();
        // Values compared as JSON (connectd writes the value it parsed).
        let value = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .map(|v| v.to_string());
        (m.key(), value).hash(&mut h);
        sum = sum.wrapping_add(h.finish());
        n += 1;
        quiet_since = Instant::now();
    }
    (n, sum)
}

/// Records per second, and the CPU seconds connectd's process used (startup included).
fn connectd(dir: &std::path::Path, input: &str, output: &str, records: u64) -> (f64, f64) {
    // A new pipeline name and group each run: checkpoints kept in the broker (keyed by
    // pipeline, sink and worker) would otherwise resume a run where the last one ended.
    let (pipeline, group) = (unique("eos-bench"), unique("eos"));
    let port = kafka::free_port();
    std::fs::write(
        dir.join("eos.yaml"),
        format!(
            r#"name: {pipeline}
checkpoint: {{interval: {interval}}}
sources:
  in:
    type: kafka
    bootstrap_servers: {b}
    topics: [{input}]
    group: {group}
    format: {format}
    properties: {{session.timeout.ms: "6000"}}
sinks:
  out:
    type: kafka
    inputs: [in]
    bootstrap_servers: {b}
    topic: {output}
    format: {format}
"#,
            b = bootstrap(),
            format = value_format(),
            interval = std::env::var("CHECKPOINT").unwrap_or_else(|_| "1s".into()),
        ),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir.join(".connectd"));
    let worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_connectd"))
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .args([
                "--admin-addr",
                &format!("127.0.0.1:{port}"),
                "--config",
                "eos.yaml",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    while kafka::records_out(port, "in").unwrap_or(0.0) == 0.0 {
        assert!(Instant::now() < deadline, "connectd read nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    while committed(&group, input) < records as i64 {
        assert!(Instant::now() < deadline, "connectd did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    let cpu = common::child_cpu_seconds(worker.0.id()).unwrap_or(f64::NAN);
    drop(worker);
    (rate, cpu)
}

fn main() {
    let records: u64 = common::env_or("RECORDS", 1_000_000, 5_000);
    let runs: usize = common::env_or("RUNS", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let input = unique("bench-in");
    create_topic(&input);
    let filling = Instant::now();
    fill(&input, records);
    eprintln!(
        "filled {input} with {records} records in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let (mut plain_rates, mut eos_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_cpus, mut eos_cpus) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let plain_out = unique("bench-plain-out");
        create_topic(&plain_out);
        let (p, plain_cpu) = plain(&input, &plain_out, records);
        let eos_out = unique("bench-eos-out");
        create_topic(&eos_out);
        let (e, eos_cpu) = connectd(dir.path(), &input, &eos_out, records);
        eprintln!(
            "run {run}: plain {p:.0} records/s ({plain_cpu:.2} CPU-s), connectd exactly-once {e:.0} records/s ({eos_cpu:.2} CPU-s)"
        );
        let (want, got) = (digest(&plain_out, records), digest(&eos_out, records));
        assert_eq!(want.0, records, "the plain loop's output");
        assert_eq!(
            got, want,
            "connectd's output (records, digest) differs from the plain loop's"
        );
        plain_rates.push(p);
        eos_rates.push(e);
        plain_cpus.push(plain_cpu);
        eos_cpus.push(eos_cpu);
        ratios.push(e / p);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (plain, eos) = (median(&mut plain_rates), median(&mut eos_rates));
    println!(
        "kafka_eos: {records} records of ~100 bytes, 4 partitions, format {}, {runs} interleaved runs",
        value_format()
    );
    println!(
        "| plain loop records/s | connectd exactly-once records/s | ratio (median of runs) | plain loop CPU-s | connectd CPU-s |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {plain:.0} | {eos:.0} | {:.2} | {:.2} | {:.2} |",
        median(&mut ratios),
        median(&mut plain_cpus),
        median(&mut eos_cpus)
    );
    common::report(&common::Row {
        path: "kafka → kafka, exactly once (4 partitions)",
        connectd: eos,
        unit: "records/s",
        yardstick: "plain rdkafka consume + produce loop",
        yardstick_figure: plain,
        target: common::Target::AtLeast(0.8),
        checked: "same records in both outputs (count, digest)",
    });
}
