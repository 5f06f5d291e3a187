//! Event time per partition (issue 16): windows over a 4-partition Kafka backlog and
//! over two sources of very different event-time speed lose nothing that was on time
//! in its own partition. Expected windows are computed here, from the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka;
use rand::Rng;

const HOSTS: u64 = 16;
const PER_HOST: u64 = 12_500;
/// Divisible by the window size, so windows start at multiples of 5 s from here.
const T0: i64 = 1_700_000_000_000;
const SIZE: i64 = 5_000;

/// (host, window start) → (count, sum, max) of `v`.
type Windows = BTreeMap<(String, i64), (u64, i64, i64)>;

/// Host `h`'s `i`-th event: every 100 ms, up to 5 s late (under the allowed 10 s).
fn event(h: u64, i: u64) -> (String, i64, i64) {
    let jitter = ((h * 7_919 + i * 104_729) % 5_000) as i64;
    let t = T0 + i as i64 * 100 + jitter;
    let v = ((h * 7 + i * 13) % 1_000) as i64;
    (format!("host-{h:02}"), t, v)
}

/// All events, in the order they are produced (round robin over hosts), then one far
/// later event per host that moves every partition's watermark past the real windows.
fn input() -> Vec<(String, i64, i64)> {
    let mut all: Vec<_> = (0..PER_HOST)
        .flat_map(|i| (0..HOSTS).map(move |h| event(h, i)))
        .collect();
    let end = T0 + PER_HOST as i64 * 100 + 3_600_000;
    all.extend((0..HOSTS).map(|h| (format!("host-{h:02}"), end, 0)));
    all
}

/// The windows, recomputed from the input: no event is late within its partition
/// (each is at most 5 s behind its host's newest, under the 10 s allowed), so every
/// event is in its window. The closing events' windows never close.
fn expected(events: &[(String, i64, i64)]) -> Windows {
    let mut w = Windows::new();
    for (host, t, v) in &events[..events.len() - HOSTS as usize] {
        let e = w
            .entry((host.clone(), t.div_euclid(SIZE) * SIZE))
            .or_insert((0, 0, i64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.max(*v);
    }
    w
}

/// The window rows in a JSONL file, each counted (a row twice is a failure).
fn rows(path: &Path) -> (Windows, usize) {
    let mut w = Windows::new();
    let mut lines = 0;
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a killed run's torn last line: truncated on restart
            };
            lines += 1;
            w.insert(
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["window_start"].as_i64().unwrap(),
                ),
                (
                    r["n"].as_u64().unwrap(),
                    r["total"].as_i64().unwrap(),
                    r["top"].as_i64().unwrap(),
                ),
            );
        }
    }
    (w, lines)
}

fn kafka_pipeline(topic: &str) -> String {
    kafka_pipeline_in(topic, &kafka::unique("backlog-group"))
}

fn kafka_pipeline_in(topic: &str, group: &str) -> String {
    kafka_pipeline_with(topic, group, false)
}

/// `per_partition`: the window runs per partition (`state.per_partition`).
fn kafka_pipeline_with(topic: &str, group: &str, per_partition: bool) -> String {
    format!(
        r#"name: backlog
checkpoint: {{interval: 300ms}}
state: {{per_partition: {per_partition}}}
sources:
{source}transforms:
  per_host:
    type: window
    inputs: [iot]
    kind: tumbling
    size: 5s
    time: t
    max_out_of_orderness: 10s
    group_by: [host]
    aggregates: {{n: count(), total: sum(v), top: max(v)}}
sinks:
  out: {{type: jsonl, inputs: [per_host], path: out/windows.jsonl}}
"#,
        source = if per_partition {
            kafka::iot_source_keyed_by_host(topic, group)
        } else {
            kafka::iot_source_yaml(topic, group)
        },
    )
}

/// A topic of 4 partitions keyed by host, holding the whole input (the backlog).
fn backlog_topic(events: &[(String, i64, i64)]) -> String {
    let topic = kafka::unique("iot");
    kafka::create_topic(&topic, 4);
    kafka::produce(
        &topic,
        events
            .iter()
            .map(|(h, t, v)| (h.clone(), format!(r#"{{"host":"{h}","t":{t},"v":{v}}}"#))),
    );
    topic
}

/// Runs until every expected window is out (or two minutes), then stops gracefully.
fn run_until_complete(dir: &Path, cfg: &Path, want: usize) -> String {
    let out = dir.join("out/windows.jsonl");
    let mut child = common::spawn(dir, cfg, &[]);
    let started = Instant::now();
    while rows(&out).0.len() < want && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    common::signal(&child, libc::SIGTERM);
    assert!(common::wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    common::stderr_tail(&child, 3000)
}

fn assert_windows(dir: &Path, want: &Windows, context: &str) {
    let (got, lines) = rows(&dir.join("out/windows.jsonl"));
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{context}: {} of {} windows missing (first: {missing:?}), wrong: {wrong:?}",
        want.keys().filter(|k| !got.contains_key(*k)).count(),
        want.len(),
    );
    assert_eq!(lines, got.len(), "{context}: a window was written twice");
    assert_eq!(got.len(), want.len(), "{context}: windows nobody asked for");
}

/// The issue's case: 200 000 IoT events in a 4-partition topic keyed by host, read from
/// the start by one worker into a 5 s tumbling window with 10 s out-of-orderness.
/// A watermark over all partitions together dropped 87 % of this as late.
#[test]
fn a_window_over_a_four_partition_backlog_keeps_every_event_on_time_in_its_partition() {
    let events = input();
    let want = expected(&events);
    let topic = backlog_topic(&events);
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(dir.path(), "backlog.yaml", &kafka_pipeline(&topic));
    let log = run_until_complete(dir.path(), &cfg, want.len());
    assert_windows(dir.path(), &want, &format!("one run; {log}"));
}

/// The same through SIGKILLs at seeded random moments, each restart joining while the
/// killed member still holds the group: the same windows, each once.
#[test]
fn the_backlog_window_is_identical_across_sigkills() {
    backlog_across_sigkills(false);
}

/// The same with the window run per partition (`state.per_partition`): each partition's
/// groups in a table of their own, restored per partition after each kill.
#[test]
fn the_backlog_window_per_partition_is_identical_across_sigkills() {
    backlog_across_sigkills(true);
}

fn backlog_across_sigkills(per_partition: bool) {
    let (seed, mut rng) = common::seeded_rng();
    let events = input();
    let want = expected(&events);
    let topic = backlog_topic(&events);
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline_with(&topic, &kafka::unique("backlog-group"), per_partition);
    let cfg = common::write_pipeline(dir.path(), "backlog.yaml", &yaml);
    let out = dir.path().join("out/windows.jsonl");
    for kill in 0..4 {
        let mut child = common::spawn(dir.path(), &cfg, &[]);
        // Until it writes windows, then a random while more.
        let before = rows(&out).1;
        let started = Instant::now();
        while rows(&out).1 == before && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: run {kill} ended by itself: {}",
            common::stderr_tail(&child, 3000)
        );
        common::signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }
    // A graceful run may stop before it read anything (the killed member's session
    // lingers); the next goes on. A lost window stays lost whatever the number of runs.
    let mut log = String::new();
    for _ in 0..3 {
        log = run_until_complete(dir.path(), &cfg, want.len());
        if rows(&out).0.len() >= want.len() {
            break;
        }
    }
    assert_windows(
        dir.path(),
        &want,
        &format!("seed {seed}, per_partition {per_partition}; {log}"),
    );
}

/// A worker that joins while another member holds some partitions (a killed member
/// until its session times out, or one giving them up) first gets only the rest. Its
/// watermark must wait for the others rather than pass them: the same windows as one
/// worker alone. The other member here is the test's own consumer, which holds its
/// share for 4 s (under the two session timeouts a source waits), reads without
/// committing, and leaves.
#[test]
fn a_worker_waits_for_partitions_another_member_holds_for_a_while() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let events = input();
    let want = expected(&events);
    let topic = backlog_topic(&events);
    let group = kafka::unique("backlog-group");
    let member: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    member.subscribe(&[&topic]).unwrap();
    let held = |c: &BaseConsumer| c.assignment().map_or(0, |a| a.count());
    let started = Instant::now();
    while held(&member) == 0 && started.elapsed() < Duration::from_secs(60) {
        let _ = member.poll(Duration::from_millis(100));
    }
    assert_eq!(
        held(&member),
        4,
        "the test's member never got the partitions"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "backlog.yaml",
        &kafka_pipeline_in(&topic, &group),
    );
    let out = dir.path().join("out/windows.jsonl");
    let mut child = common::spawn(dir.path(), &cfg, &[]);
    // Takes part in the rebalance the worker's arrival starts, keeps its share a while.
    let (mut shared_at, mut shared_with_worker) = (None, false);
    while shared_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(4))
        && started.elapsed() < Duration::from_secs(90)
    {
        let _ = member.poll(Duration::from_millis(100));
        if shared_at.is_none() && (1..4).contains(&held(&member)) {
            shared_at = Some(Instant::now());
            shared_with_worker = true;
        }
    }
    drop(member);
    assert!(
        shared_with_worker,
        "the worker never got a share of the partitions"
    );
    while rows(&out).0.len() < want.len() && started.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    common::signal(&child, libc::SIGTERM);
    assert!(common::wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    let log = common::stderr_tail(&child, 3000);
    assert_windows(dir.path(), &want, &format!("with another member; {log}"));
}

/// Issue 17's guard until state moves with partitions: a second worker (its own state
/// directory) joins the group of a running stateful pipeline mid-stream. Both hold their
/// shares unread; the newcomer gives up after two session timeouts and stops its
/// pipeline with the reason, having written nothing; the first worker gets every
/// partition back and its windows are exactly those computed from the input. Without
/// the guard the newcomer wrote windows of its share and the first lost them.
#[test]
fn a_second_worker_cannot_split_a_stateful_pipeline_and_the_first_goes_on() {
    let events = input();
    let want = expected(&events);
    let topic = kafka::unique("iot");
    kafka::create_topic(&topic, 4);
    let as_messages = |part: &[(String, i64, i64)]| {
        part.iter()
            .map(|(h, t, v)| (h.clone(), format!(r#"{{"host":"{h}","t":{t},"v":{v}}}"#)))
            .collect::<Vec<_>>()
    };
    let half = events.len() / 2;
    kafka::produce(&topic, as_messages(&events[..half]));
    let yaml = kafka_pipeline_in(&topic, &kafka::unique("backlog-group"));
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first_cfg = common::write_pipeline(first_dir.path(), "backlog.yaml", &yaml);
    let second_cfg = common::write_pipeline(second_dir.path(), "backlog.yaml", &yaml);
    let first_out = first_dir.path().join("out/windows.jsonl");
    let mut first = common::spawn(first_dir.path(), &first_cfg, &[]);
    let started = Instant::now();
    while rows(&first_out).1 == 0 && started.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        rows(&first_out).1 > 0,
        "the first worker wrote no window: {}",
        common::stderr_tail(&first, 3000)
    );
    let mut second = common::spawn(second_dir.path(), &second_cfg, &[]);
    kafka::produce(&topic, as_messages(&events[half..]));
    let status = common::wait_with_deadline(&mut second, Duration::from_secs(150));
    let said = common::stderr_of(&second);
    assert!(!status.success(), "the second worker ran on: {said}");
    for part in [
        "cannot be split across workers",
        "keyed state in `per_host` (window)",
        "another member of consumer group",
        "Run this pipeline on one worker",
    ] {
        assert!(
            said.contains(part),
            "`{part}` not in the second worker's error: {said}"
        );
    }
    assert_eq!(
        rows(&second_dir.path().join("out/windows.jsonl")).1,
        0,
        "the second worker wrote windows"
    );
    while rows(&first_out).0.len() < want.len() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first worker stopped: {}",
        common::stderr_tail(&first, 3000)
    );
    common::signal(&first, libc::SIGTERM);
    assert!(common::wait_with_deadline(&mut first, Duration::from_secs(60)).success());
    let log = common::stderr_tail(&first, 3000);
    assert_windows(first_dir.path(), &want, &format!("the first worker; {log}"));
}

/// Two file sources into one window: `fast` covers 50 000 s of event time, `slow` the
/// first 500 s, read at the same pace. With one watermark over both, `fast` moved it
/// past `slow`'s records; per source, nothing on time for its own source is dropped.
#[test]
fn two_sources_of_very_different_event_time_speed_window_together_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Windows::new();
    for (name, step) in [("fast", 1_000i64), ("slow", 10)] {
        let mut text = String::new();
        for i in 0..50_000i64 {
            let t = T0 + i * step;
            let v = i % 97;
            text.push_str(&format!(r#"{{"host":"{name}","t":{t},"v":{v}}}"#));
            text.push('\n');
            let e = want
                .entry((name.to_string(), t.div_euclid(SIZE) * SIZE))
                .or_insert((0, 0, i64::MIN));
            e.0 += 1;
            e.1 += v;
            e.2 = e.2.max(v);
        }
        std::fs::write(dir.path().join(format!("{name}.jsonl")), text).unwrap();
    }
    let cfg = common::write_pipeline(
        dir.path(),
        "two.yaml",
        r#"name: two
sources:
  fast: {type: file, path: fast.jsonl}
  slow: {type: file, path: slow.jsonl}
transforms:
  both:
    type: window
    inputs: [fast, slow]
    kind: tumbling
    size: 5s
    time: t
    group_by: [host]
    aggregates: {n: count(), total: sum(v), top: max(v)}
sinks:
  out: {type: jsonl, inputs: [both], path: out/windows.jsonl}
"#,
    );
    let run = common::run_to_end(dir.path(), &cfg);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_windows(dir.path(), &want, "two sources");
}
