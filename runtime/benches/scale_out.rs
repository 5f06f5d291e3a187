//! Benchmark (issue 17): the IoT pipeline (dedup by host and id, then 5 s windows of
//! count, avg and max per host and cpu, `state.per_partition`, kafka sink carrying the
//! changelogs) on a pre-filled 4-partition topic keyed by host, run by two workers of
//! one consumer group against one worker alone; and the time a worker takes to restore
//! a partition's state from its changelog, against a plain rdkafka read of the same
//! changelog partitions.
//!
//! Throughput: each run has its own pipeline name, group and output topic. The clock
//! starts when any worker's source first passes a record on (its `/metrics`) and stops
//! when the group's committed offsets — committed in the sinks' transactions — cover
//! the input. Both outputs must hold exactly the windows computed here from the input,
//! each once. On two cores with the broker on the same machine, two workers share the
//! CPU with it: the ratio says what splitting costs or gains here, not on a cluster.
//!
//! Restore: after the last one-worker run, that worker leaves (SIGTERM) and a new one
//! with an empty state directory joins the group; one record per partition makes it
//! restore each partition's state (the dedup holds one key per input record) before
//! processing. Its log gives keys and seconds per partition
//! ("state rebuilt from its changelog"). Then the restored state is checked at that
//! size: every input event sent again is dropped by the dedup, and the windows held
//! open come out with their values.
//!
//! Needs a broker: `scripts/kafka.sh start` (or `KAFKA_BOOTSTRAP`). Run:
//! `cargo bench -p connectd-runtime --bench scale_out` (env `RECORDS`, `RUNS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

mod common;

use common::kafka::{self, bootstrap, config, unique, Worker};

const PARTITIONS: i32 = 4;
const HOSTS: u64 = 8;
const T0: u64 = 1_700_000_000_000;
/// The dedup and the windows of the scale-out test (`runtime/tests/scale_out.rs`).
const TRANSFORMS: &str = include_str!("../tests/pipelines/iot-scale-out-transforms.yaml");

/// Event `k` of host `h`: (partition, key, value); 100 ms of event time apart per host.
fn event(h: u64, k: u64) -> (i32, String, String) {
    event_at(h, k, k)
}

/// Event `k` of host `h` at time step `at` (`T0 + at × 100 ms`).
fn event_at(h: u64, k: u64, at: u64) -> (i32, String, String) {
    let value = format!(
        r#"{{"host":"h{h}","cpu":"cpu{}","id":{k},"t":{},"v":{}}}"#,
        k % 2,
        T0 + at * 100,
        (k * 7 + h * 13) % 100
    );
    ((h % PARTITIONS as u64) as i32, format!("h{h}"), value)
}

/// The input: `records` events over the hosts, every tenth sent twice (the dedup drops
/// the repeat), then per host one event an hour later, which closes every window.
fn input(records: u64) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    for i in 0..records {
        let e = event(i % HOSTS, i / HOSTS);
        if i % 10 == 0 {
            out.push(e.clone());
        }
        out.push(e);
    }
    let last = records.div_ceil(HOSTS) + 36_000;
    out.extend((0..HOSTS).map(|h| event(h, last)));
    out
}

fn fill(topic: &str, messages: &[(i32, String, String)]) {
    kafka::fill(
        topic,
        messages
            .iter()
            .map(|(p, k, v)| (Some(*p), k.clone(), v.clone())),
    );
}

/// A window: (host, cpu, start) → (count, avg, max).
type Windows = BTreeMap<(String, String, u64), (u64, f64, f64)>;

/// The windows of the first `records` events (each once), computed from the input.
fn expected(records: u64) -> Windows {
    let mut sums: BTreeMap<(String, String, u64), (u64, u64, u64)> = BTreeMap::new();
    for i in 0..records {
        let (h, k) = (i % HOSTS, i / HOSTS);
        let t = T0 + k * 100;
        let v = (k * 7 + h * 13) % 100;
        let key = (format!("h{h}"), format!("cpu{}", k % 2), t - t % 5000);
        let e = sums.entry(key).or_insert((0, 0, 0));
        *e = (e.0 + 1, e.1 + v, e.2.max(v));
    }
    sums.into_iter()
        .map(|(k, (n, sum, max))| (k, (n, sum as f64 / n as f64, max as f64)))
        .collect()
}

/// The windows on `topic` (read_committed), once `want` of them have come and no more
/// came for two seconds; fails on a window written twice.
fn windows_on(topic: &str, want: usize) -> Windows {
    let consumer: BaseConsumer = config()
        .set("group.id", unique("scale-out-reader"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    // Offset 0, not Beginning: Tansu's "earliest" can skip a partition's first batch
    // (see the tests' `kafka::assign_from_zero`).
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Windows::new();
    let mut quiet_since = Instant::now();
    while got.len() < want || quiet_since.elapsed() < Duration::from_secs(2) {
        assert!(
            quiet_since.elapsed() < Duration::from_secs(60),
            "{topic}: {} of {want} windows, then nothing for 60 s",
            got.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let w: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let key = (
            w["host"].as_str().unwrap().to_string(),
            w["cpu"].as_str().unwrap().to_string(),
            w["window_start"].as_u64().unwrap(),
        );
        let value = (
            w["n"].as_u64().unwrap(),
            w["avg_v"].as_f64().unwrap(),
            w["max_v"].as_f64().unwrap(),
        );
        assert!(
            got.insert(key.clone(), value).is_none(),
            "{topic}: window {key:?} written twice"
        );
        quiet_since = Instant::now();
    }
    got
}

/// Asserts the windows on `output` of the first `records` events (not those the
/// closing events opened) are the computed ones.
fn check(output: &str, records: u64, want: &Windows) {
    let mut got = windows_on(output, want.len());
    let last_event = T0 + records.div_ceil(HOSTS) * 100;
    got.retain(|k, _| k.2 <= last_event);
    assert_eq!(got.len(), want.len(), "{output}: windows missing or extra");
    for (k, (n, avg, max)) in want {
        let (gn, gavg, gmax) = got[k];
        assert!(
            gn == *n && (gavg - avg).abs() < 1e-9 && gmax == *max,
            "{output}: window {k:?}: got n={gn} avg={gavg} max={gmax}, computed n={n} avg={avg} max={max}"
        );
    }
}

struct Run {
    pipeline: String,
    group: String,
    output: String,
}

impl Run {
    fn new() -> Self {
        let run = Run {
            pipeline: unique("scale-bench"),
            group: unique("scale-group"),
            output: unique("scale-out"),
        };
        kafka::create_topic(&run.output, 1);
        run
    }

    fn yaml(&self, input: &str) -> String {
        format!(
            r#"name: {pipeline}
checkpoint: {{interval: 1s}}
state: {{per_partition: true}}
sources:
  iot:
    type: kafka
    bootstrap_servers: {b}
    topics: [{input}]
    group: {group}
    start: earliest
    key_field: host
    properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
{transforms}sinks:
  out: {{type: kafka, inputs: [per_cpu], bootstrap_servers: {b}, topic: {output}, key: [host, cpu]}}
"#,
            pipeline = self.pipeline,
            group = self.group,
            output = self.output,
            transforms = TRANSFORMS,
            b = bootstrap(),
        )
    }

    /// A worker of this run in `dir` (emptied first), named `name`, INFO logs to
    /// `dir/worker.log`; with its admin port.
    fn spawn(&self, dir: &Path, input: &str, name: &str) -> (Worker, u16) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("pipeline.yaml"), self.yaml(input)).unwrap();
        std::fs::write(dir.join("worker.yaml"), format!("name: {name}\n")).unwrap();
        let port = kafka::free_port();
        let log = std::fs::File::create(dir.join("worker.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_connectd"))
            .current_dir(dir)
            .env("RUST_LOG", "warn,connectd_runtime=info")
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--worker", "worker.yaml", "--config", "pipeline.yaml"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        (Worker(child), port)
    }
}

/// Runs the pipeline with `n` workers started together over the whole input: records
/// per second, CPU seconds of the workers, and the workers (still running).
fn throughput(
    dir: &Path,
    input: &str,
    messages: usize,
    records: u64,
    n: usize,
) -> (f64, f64, Run, Vec<Worker>) {
    let run = Run::new();
    let (workers, ports): (Vec<Worker>, Vec<u16>) = (0..n)
        .map(|i| run.spawn(&dir.join(format!("w{i}")), input, &format!("w{i}")))
        .unzip();
    let deadline = Instant::now() + Duration::from_secs(900);
    while !ports
        .iter()
        .any(|p| kafka::records_out(*p, "iot").unwrap_or(0.0) > 0.0)
    {
        assert!(Instant::now() < deadline, "no worker read anything");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    while kafka::committed(&run.group, input, PARTITIONS) < messages as i64 {
        assert!(Instant::now() < deadline, "the workers did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    let cpu = workers
        .iter()
        .map(|w| common::child_cpu_seconds(w.0.id()).unwrap_or(f64::NAN))
        .sum();
    (rate, cpu, run, workers)
}

/// The figures a worker logged for `transform`'s restores: (partitions, keys, seconds).
fn restores_logged(log: &str, transform: &str) -> (usize, u64, f64) {
    let field = |line: &str, name: &str| -> Option<String> {
        let rest = line.split(&format!(" {name}=")).nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    };
    log.lines()
        .filter(|l| l.contains("state rebuilt from its changelog"))
        .filter(|l| field(l, "transform").as_deref() == Some(transform))
        .fold((0, 0, 0.0), |(n, keys, secs), l| {
            (
                n + 1,
                keys + field(l, "keys").and_then(|k| k.parse().ok()).unwrap_or(0),
                secs + field(l, "seconds")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
}

/// The yardstick of a restore: a plain read_committed read of every partition of
/// `topic` to its end, keeping each key and value. Records and seconds.
fn plain_read(topic: &str) -> (u64, f64) {
    let started = Instant::now();
    let consumer: BaseConsumer = config()
        .set("group.id", unique("plain-changelog-reader"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        ends.push((p.id(), high));
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut kept = Vec::new();
    loop {
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(m) = &polled {
            let m = m.as_ref().unwrap();
            kept.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
        }
        if polled.is_none() || kept.len() % 1024 == 0 {
            let at = consumer.position().unwrap();
            if ends.iter().all(|(p, high)| {
                at.find_partition(topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|o| o >= *high)
            }) {
                return (kept.len() as u64, started.elapsed().as_secs_f64());
            }
        }
    }
}

/// The last one-worker run's worker leaves; a new one joins with an empty state
/// directory and restores every partition. (keys, seconds) of the dedup's restores,
/// and the plain read of its changelog: (records, seconds).
fn restore(
    dir: &Path,
    input: &str,
    run: &Run,
    leaving: Worker,
    records: u64,
) -> (u64, f64, (u64, f64)) {
    assert!(leaving.terminate().success(), "the leaving worker failed");
    let joining = dir.join("joining");
    let (worker, _) = run.spawn(&joining, input, "joining");
    // One new event per partition: the joining worker restores each partition's state
    // before it processes the partition's first record.
    let next = records.div_ceil(HOSTS) + 72_000;
    fill(
        input,
        &(0..PARTITIONS as u64)
            .map(|h| event(h, next))
            .collect::<Vec<_>>(),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    let (partitions, keys, seconds) = loop {
        let log = std::fs::read_to_string(joining.join("worker.log")).unwrap_or_default();
        let logged = restores_logged(&log, "once");
        if logged.0 >= PARTITIONS as usize {
            for line in log.lines().filter(|l| l.contains("state rebuilt")) {
                eprintln!("{}", line.split("state rebuilt").nth(1).unwrap_or(line));
            }
            break logged;
        }
        assert!(
            Instant::now() < deadline,
            "the joining worker restored {} of {PARTITIONS} partitions in 300 s: {log}",
            logged.0
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(partitions, PARTITIONS as usize);
    assert!(
        keys >= records,
        "restored {keys} keys of the dedup, which holds one per input record ({records})"
    );
    restored_state_is_exact(input, &run.output, records, next);
    assert!(worker.terminate().success(), "the joining worker failed");
    let plain = plain_read(&format!("connectd-{}-once-changelog", run.pipeline));
    (keys, seconds, plain)
}

/// The state the joining worker restored is exact, at its size: every input event
/// sent again (same host and id, a later time) is dropped by the restored dedup, and
/// the windows the leaving worker held open come out with their values. Then one
/// marker per host later still, and closers after them: once the markers' windows are
/// out, a repeat the dedup let through would be out too, in a window of its own.
fn restored_state_is_exact(input: &str, output: &str, records: u64, trigger: u64) {
    // 10 s after the trigger: apart from its window.
    let again_from = trigger + 100;
    let steps = records.div_ceil(HOSTS);
    fill(
        input,
        &(0..records)
            .map(|i| event_at(i % HOSTS, i / HOSTS, again_from + i / HOSTS))
            .collect::<Vec<_>>(),
    );
    let marker = again_from + steps + 100;
    let closer = marker + 36_000;
    let after: Vec<_> = (0..HOSTS)
        .map(|h| event(h, marker))
        .chain((0..HOSTS).map(|h| event(h, closer)))
        .collect();
    fill(input, &after);
    // Computed: the first run's windows, the windows its closers opened (one event
    // each, closed by the restore's trigger events), those of the trigger events and
    // of the markers; nothing in between.
    let mut want = expected(records);
    let one = |h: u64, k: u64| {
        let t = T0 + k * 100;
        let v = ((k * 7 + h * 13) % 100) as f64;
        (
            (format!("h{h}"), format!("cpu{}", k % 2), t - t % 5000),
            (1, v, v),
        )
    };
    let first_closers = steps + 36_000;
    want.extend((0..HOSTS).map(|h| one(h, first_closers)));
    want.extend((0..PARTITIONS as u64).map(|h| one(h, trigger)));
    want.extend((0..HOSTS).map(|h| one(h, marker)));
    let got = windows_on(output, want.len());
    let repeats: Vec<_> = got
        .keys()
        .filter(|k| k.2 + 5000 > T0 + again_from * 100 && k.2 < T0 + marker * 100 - 4999)
        .take(3)
        .collect();
    assert!(
        repeats.is_empty(),
        "{output}: the restored dedup let repeats through: windows {repeats:?}"
    );
    for (k, (n, avg, max)) in &want {
        let Some(&(gn, gavg, gmax)) = got.get(k) else {
            panic!("{output}: window {k:?} missing after the restore");
        };
        assert!(
            gn == *n && (gavg - avg).abs() < 1e-9 && gmax == *max,
            "{output}: window {k:?}: got n={gn} avg={gavg} max={gmax}, computed n={n} avg={avg} max={max}"
        );
    }
    assert_eq!(got.len(), want.len(), "{output}: windows not computed");
}

fn main() {
    let records: u64 = common::env_or("RECORDS", 200_000, 4_000);
    let runs: usize = common::env_or("RUNS", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("scale-in");
    kafka::create_topic(&topic, PARTITIONS);
    let messages = input(records);
    let filling = Instant::now();
    fill(&topic, &messages);
    eprintln!(
        "filled {topic} with {} messages ({records} events, repeats, closers) in {:.1} s",
        messages.len(),
        filling.elapsed().as_secs_f64()
    );
    let want = expected(records);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let mut last_single = None;
    for r in 0..runs {
        let (rate2, cpu2, run2, workers2) =
            throughput(dir.path(), &topic, messages.len(), records, 2);
        // SIGTERM: on Tansu, a killed worker's open transaction is never aborted, and
        // the broker then stops taking transactional offset commits (seen here).
        for w in workers2 {
            assert!(w.terminate().success(), "a worker failed");
        }
        check(&run2.output, records, &want);
        // One worker second: the last one stays up for the restore.
        let (rate1, cpu1, run1, workers1) =
            throughput(dir.path(), &topic, messages.len(), records, 1);
        check(&run1.output, records, &want);
        eprintln!(
            "run {r}: one worker {rate1:.0} events/s ({cpu1:.2} CPU-s), two workers {rate2:.0} events/s ({cpu2:.2} CPU-s)"
        );
        one.push(rate1);
        two.push(rate2);
        last_single = Some((run1, workers1));
    }
    let (run, mut workers) = last_single.unwrap();
    let (keys, seconds, (plain_records, plain_seconds)) =
        restore(dir.path(), &topic, &run, workers.remove(0), records);
    let per_100k = |s: f64, n: u64| s * 100_000.0 / n as f64;
    let (one, two) = (common::median(one), common::median(two));
    println!("scale_out: {records} events (+ repeats) on 4 partitions, {runs} runs");
    println!("| one worker events/s | two workers events/s | ratio (of the medians) | restore: keys | restore: s | plain read of the changelog: records, s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {one:.0} | {two:.0} | {:.2} | {keys} | {seconds:.3} | {plain_records}, {plain_seconds:.3} |",
        two / one
    );
    common::report(&common::Row {
        path: "kafka → dedup → 5 s window → kafka, two workers of one group (4 partitions)",
        connectd: two,
        unit: "events/s",
        yardstick: "one worker alone",
        yardstick_figure: one,
        target: common::Target::Reported,
        checked: "every window computed from the input, once, in both outputs",
    });
    common::report(&common::Row {
        path: "state restore of a joining worker from the changelog, per 100 k keys",
        connectd: per_100k(seconds, keys),
        unit: "s",
        yardstick: "plain rdkafka read of the same changelog",
        yardstick_figure: per_100k(plain_seconds, plain_records),
        target: common::Target::Reported,
        checked: "every partition restored, keys ≥ input records; every event sent again dropped, the held windows out with their values",
    });
}
