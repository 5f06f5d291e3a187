//! `start: beginning` on sinks added to a pipeline that has run: they are backfilled with
//! everything the pipeline produced before its checkpoint, then go on with the others.
//! The first run tails a file and is stopped with windows still open (so the backfill
//! must stop where the checkpoint stood, not at the end of the input, and must not
//! flush); more input arrives; the second run adds a window sink and a raw sink with
//! `start: beginning` and is crashed during the backfill. Every sink must end with what
//! is computed here from the input: each record once, each window once with its values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

const RECORDS: i64 = 300_000;
const FIRST_RUN: i64 = 200_000;
const HOSTS: i64 = 7;
const WINDOW_MS: i64 = 10_000;
const T0: i64 = 1_700_000_000_000;

fn line(i: i64) -> String {
    format!(
        "{{\"id\":{i},\"host\":\"h{}\",\"v\":{},\"ts\":{}}}\n",
        i % HOSTS,
        i % 13,
        T0 + i * 50
    )
}

/// Every window's row, computed from the input, sorted.
fn expected_windows() -> Vec<String> {
    let mut windows = BTreeMap::<(i64, String), (i64, i64)>::new();
    for i in 0..RECORDS {
        let start = (T0 + i * 50).div_euclid(WINDOW_MS) * WINDOW_MS;
        let slot = windows
            .entry((start, format!("h{}", i % HOSTS)))
            .or_default();
        slot.0 += 1;
        slot.1 += i % 13;
    }
    let mut rows: Vec<String> = windows
        .iter()
        .map(|((start, host), (n, total))| format!("{start},{host},{n},{total}"))
        .collect();
    rows.sort();
    rows
}

fn pipeline(follow: bool, added: &str) -> String {
    format!(
        r#"
name: backfilled
checkpoint: {{interval: 100ms}}
sources:
  lines: {{type: file, path: in.jsonl, follow: {follow}}}
transforms:
  per_host:
    type: window
    inputs: [lines]
    kind: tumbling
    size: 10s
    time: ts
    group_by: [host]
    aggregates: {{n: count(), total: sum(v)}}
sinks:
  windows: {{type: csv, inputs: [per_host], path: out/windows.csv, columns: [window_start, host, n, total]}}
  raw: {{type: jsonl, inputs: [lines], path: out/raw.jsonl}}
{added}"#
    )
}

const ADDED: &str = r#"  windows_new: {type: csv, inputs: [per_host], path: out/windows_new.csv, columns: [window_start, host, n, total], start: beginning}
  raw_new: {type: jsonl, inputs: [lines], path: out/raw_new.jsonl, start: beginning}
"#;

fn append(path: &Path, range: std::ops::Range<i64>) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = range.map(line).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// The first run: the first part of the input, tailed, stopped with SIGTERM once all of
/// it is through (its last windows are still open).
fn first_run(dir: &Path) {
    append(&dir.join("in.jsonl"), 0..FIRST_RUN);
    let cfg = write_pipeline(dir, "p.yaml", &pipeline(true, ""));
    let mut child = spawn(dir, &cfg, &[]);
    let started = Instant::now();
    let raw = dir.join("out/raw.jsonl");
    while std::fs::read_to_string(&raw).map_or(0, |t| t.lines().count()) < FIRST_RUN as usize {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first run did not get through its input: {}",
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Past the last record's checkpoint, so the stop's checkpoint holds all of them.
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    let windows = read(dir.join("out/windows.csv"));
    assert!(
        windows.lines().count() > 1 && windows.lines().count() < expected_windows().len(),
        "the first run should close some windows and leave others open"
    );
    append(&dir.join("in.jsonl"), FIRST_RUN..RECORDS);
}

fn sorted_rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    rows.sort();
    rows
}

/// Each sink's output against what the input says.
fn check_outputs(dir: &Path, context: &str) {
    let want = expected_windows();
    for sink in ["windows", "windows_new"] {
        let got = sorted_rows(&read(dir.join(format!("out/{sink}.csv"))));
        assert_eq!(got.len(), want.len(), "{context}: `{sink}` rows");
        assert!(
            got == want,
            "{context}: `{sink}` differs from the windows computed from the input"
        );
    }
    for sink in ["raw", "raw_new"] {
        let mut seen = vec![0u32; RECORDS as usize];
        for l in read(dir.join(format!("out/{sink}.jsonl"))).lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = v["id"].as_i64().unwrap();
            assert_eq!(l.to_string() + "\n", line(id), "{context}: `{sink}` record");
            seen[id as usize] += 1;
        }
        let missing = seen.iter().filter(|n| **n == 0).count();
        let twice = seen.iter().filter(|n| **n > 1).count();
        assert_eq!(
            (missing, twice),
            (0, 0),
            "{context}: `{sink}`: (missing, duplicated) ids"
        );
    }
}

/// A crash right after the backfilled epochs moved into the new sinks' logs, before
/// their commit: the next run commits them (recovery's redo) and goes on.
#[test]
fn sinks_added_with_start_beginning_get_the_history_across_a_crash_after_the_backfill() {
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline(false, ADDED));
    let crashed = run_with_env(
        dir.path(),
        &cfg,
        &[("CONNECTD_CRASH_AT", "backfilled:*:raw_new")],
    );
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        stderr.contains("aborting at backfilled"),
        "the hook did not fire: {stderr}"
    );
    // Nothing of the backfill reached the new sinks before their commit.
    for f in ["out/raw_new.jsonl", "out/windows_new.csv"] {
        let n = std::fs::read_to_string(dir.path().join(f)).map_or(0, |t| t.lines().count());
        assert!(n <= 1, "{f} holds {n} lines before its commit");
    }
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_outputs(dir.path(), "crash after the backfill");
}

/// SIGKILLs at seeded random moments of the second run; some must land during the
/// backfill itself (the first five come within 600 ms of a start: the backfill takes
/// longer, and starts over after each), later ones anywhere.
#[test]
fn sinks_added_with_start_beginning_get_the_history_across_sigkills() {
    let (seed, mut rng) = seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path());
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline(false, ADDED));
    let (mut kills, mut in_backfill) = (0, 0);
    for k in 0..10 {
        let mut child = spawn_captured(
            connectd()
                .env("RUST_LOG", "info")
                .current_dir(dir.path())
                .args(["--admin-addr", "off", "--config"])
                .arg(&cfg),
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(if k < 5 {
            50..600
        } else {
            50..3000
        })));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
        let log = stderr_of(&child);
        if log.contains("backfilling") && !log.contains("finishing the commit") {
            in_backfill += 1;
        }
    }
    println!("seed {seed}: {kills} kills, {in_backfill} during the backfill");
    assert!(
        in_backfill >= 1,
        "seed {seed}: no kill landed during the backfill"
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    check_outputs(dir.path(), &format!("seed {seed}, {kills} kills"));
}

/// Host `h`'s `i`-th event on the Kafka topic: every 100 ms of event time.
fn kafka_event(h: u64, i: u64) -> (String, String) {
    let host = format!("host-{h:02}");
    let value = format!(
        "{{\"id\":{},\"host\":\"{host}\",\"v\":{},\"t\":{}}}",
        h * 100_000 + i,
        (h * 7 + i * 13) % 1_000,
        T0 + i as i64 * 100
    );
    (host, value)
}

fn kafka_pipeline(topic: &str, group: &str, added: &str) -> String {
    format!(
        r#"name: kafka_backfilled
checkpoint: {{interval: 200ms}}
sources:
{source}transforms:
  per_host:
    type: window
    inputs: [iot]
    kind: tumbling
    size: 5s
    time: t
    group_by: [host]
    aggregates: {{n: count(), total: sum(v)}}
sinks:
  windows: {{type: jsonl, inputs: [per_host], path: out/windows.jsonl}}
  raw: {{type: jsonl, inputs: [iot], path: out/raw.jsonl}}
{added}"#,
        source = common::kafka::iot_source_yaml(topic, group),
    )
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Runs until `file` holds `want` lines, then stops with SIGTERM.
fn run_until(dir: &Path, cfg: &Path, file: &str, want: usize) {
    let mut child = spawn(dir, cfg, &[]);
    let started = Instant::now();
    while lines_in(&dir.join(file)) < want {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{file}: {} of {want} lines; stderr: {}",
            lines_in(&dir.join(file)),
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
}

/// The same with a 4-partition Kafka topic keyed by host: the backfill reads each
/// partition from its start, by assignment, up to the checkpoint's offset in it, with
/// windows open at the checkpoint. A first run reads half the events; the second adds
/// the sinks, reads the rest and events far later that close every window. The rest
/// is produced before the second run (each partition is through at its first message
/// past the bound) ...
#[test]
fn sinks_added_with_start_beginning_are_backfilled_from_a_four_partition_topic() {
    kafka_backfill(true);
}

/// ... or only once the backfill is done (nothing past the bound: each partition is
/// through when the consumer's position reaches it).
#[test]
fn a_backfill_from_a_topic_that_has_not_grown_stops_at_the_consumer_position() {
    kafka_backfill(false);
}

fn kafka_backfill(rest_first: bool) {
    const HOSTS_K: u64 = 16;
    const PER_HOST: u64 = 1_200;
    let dir = tempfile::tempdir().unwrap();
    let topic = common::kafka::unique("backfill");
    common::kafka::create_topic(&topic, 4);
    let group = common::kafka::unique("backfill-group");
    let producer = common::kafka::Producer::new();
    let half: Vec<_> = (0..PER_HOST / 2)
        .flat_map(|i| (0..HOSTS_K).map(move |h| kafka_event(h, i)))
        .collect();
    producer.send(&topic, half.clone());
    let cfg = write_pipeline(dir.path(), "k.yaml", &kafka_pipeline(&topic, &group, ""));
    run_until(dir.path(), &cfg, "out/raw.jsonl", half.len());
    let (first_windows, _) = (lines_in(&dir.path().join("out/windows.jsonl")), ());
    assert!(first_windows > 0, "the first run closed no window");

    let mut rest: Vec<_> = (PER_HOST / 2..PER_HOST)
        .flat_map(|i| (0..HOSTS_K).map(move |h| kafka_event(h, i)))
        .collect();
    // Far later, one per host: every partition's watermark passes every real window.
    rest.extend((0..HOSTS_K).map(|h| kafka_event(h, PER_HOST + 36_000)));
    if rest_first {
        producer.send(&topic, rest.clone());
    }
    let added = r#"  windows_new: {type: jsonl, inputs: [per_host], path: out/windows_new.jsonl, start: beginning}
  raw_new: {type: jsonl, inputs: [iot], path: out/raw_new.jsonl, start: beginning}
"#;
    let cfg = write_pipeline(dir.path(), "k.yaml", &kafka_pipeline(&topic, &group, added));
    let mut expected = BTreeMap::<(String, i64), (u64, u64)>::new();
    for (_, value) in half.iter().chain(&rest[..rest.len() - HOSTS_K as usize]) {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        let start = v["t"].as_i64().unwrap().div_euclid(5_000) * 5_000;
        let e = expected
            .entry((v["host"].as_str().unwrap().to_string(), start))
            .or_default();
        e.0 += 1;
        e.1 += v["v"].as_u64().unwrap();
    }
    let rest_later = (!rest_first).then(|| {
        let (dir, topic, rest) = (dir.path().to_path_buf(), topic.clone(), rest.clone());
        let bootstrap = common::kafka::bootstrap();
        std::thread::spawn(move || {
            // Once the backfill has committed the first half into the new sink.
            while lines_in(&dir.join("out/raw_new.jsonl"))
                < PER_HOST as usize / 2 * HOSTS_K as usize
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            common::kafka::Producer::connect(&bootstrap).send(&topic, rest);
        })
    });
    run_until(dir.path(), &cfg, "out/windows_new.jsonl", expected.len());
    if let Some(t) = rest_later {
        t.join().unwrap();
    }
    for sink in ["windows", "windows_new"] {
        let text = read(dir.path().join(format!("out/{sink}.jsonl")));
        let mut got = BTreeMap::new();
        for l in text.lines() {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = (
                r["host"].as_str().unwrap().to_string(),
                r["window_start"].as_i64().unwrap(),
            );
            let value = (r["n"].as_u64().unwrap(), r["total"].as_u64().unwrap());
            assert!(
                got.insert(key.clone(), value).is_none(),
                "`{sink}`: {key:?} twice"
            );
        }
        assert!(
            got == expected,
            "`{sink}`: {} windows, {} expected; first difference: {:?}",
            got.len(),
            expected.len(),
            expected.iter().find(|(k, v)| got.get(*k) != Some(*v))
        );
    }
    let all = half.len() + rest.len();
    for sink in ["raw", "raw_new"] {
        let mut ids = BTreeMap::<u64, usize>::new();
        for l in read(dir.path().join(format!("out/{sink}.jsonl"))).lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            *ids.entry(v["id"].as_u64().unwrap()).or_default() += 1;
        }
        assert_eq!(ids.len(), all, "`{sink}`: distinct ids");
        assert!(ids.values().all(|n| *n == 1), "`{sink}`: an id twice");
    }
}
