//! The exactly-once crash test: a generator → filter + window → csv pipeline is killed
//! with SIGKILL at random moments and restarted each time; the final CSV files must be
//! byte-identical to those of an uninterrupted run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rand::Rng;

const PIPELINE: &str = r#"
name: crash
checkpoint:
  interval: 100ms
sources:
  metrics:
    type: iot
    seed: 7
    rate: 0
    count: 200000
    start: 2024-01-01T00:00:00Z
    step: 1ms
    jitter: 2s
    late_ratio: 0.01
    late_by: 30s
transforms:
  hot:
    type: filter
    inputs: [metrics]
    where: usage > 90 and cpu != "cpu1"
  per_host:
    type: window
    inputs: [metrics]
    kind: tumbling
    size: 5s
    time: occurred_at
    max_out_of_orderness: 3s
    grace: 500ms
    group_by: [hostname, cpu]
    aggregates:
      n: count()
      avg_usage: avg(usage)
      max_usage: max(usage)
      last_usage: last(usage)
  sessions:
    type: window
    inputs: [hot]
    kind: session
    gap: 40ms
    time: occurred_at
    max_out_of_orderness: 3s
    group_by: [hostname]
    aggregates:
      n: count()
      distinct_cpus: count_distinct(cpu)
sinks:
  alerts_csv:
    type: csv
    inputs: [hot]
    path: out/alerts.csv
    columns: [hostname, cpu, usage, occurred_at]
  windows_csv:
    type: csv
    inputs: [per_host]
    path: out/windows.csv
    columns: [window_start, window_end, hostname, cpu, n, avg_usage, max_usage, last_usage]
  sessions_jsonl:
    type: jsonl
    inputs: [sessions]
    path: out/sessions.jsonl
"#;

const OUTPUTS: [&str; 3] = ["out/alerts.csv", "out/windows.csv", "out/sessions.jsonl"];

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", PIPELINE);
    let out = run_to_end(reference.path(), &cfg);
    assert!(
        out.status.success(),
        "uninterrupted run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = OUTPUTS
        .iter()
        .map(|f| read(reference.path().join(f)))
        .collect();
    assert!(
        expected[0].lines().count() > 1000,
        "the alert stream should be large"
    );
    assert!(
        expected[1].lines().count() > 500,
        "the window stream should be large"
    );

    let crashed = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(crashed.path(), "p.yaml", PIPELINE);
    let kills = run_with_sigkills(crashed.path(), &cfg);
    for (file, want) in OUTPUTS.iter().zip(&expected) {
        let got = read(crashed.path().join(file));
        assert!(
            got == *want,
            "{file} differs after {kills} kills: {} vs {} bytes",
            got.len(),
            want.len()
        );
    }
}

/// Runs the pipeline to its end, SIGKILLed 12 times at random moments on the way.
/// Returns the number of kills.
fn run_with_sigkills(dir: &std::path::Path, cfg: &std::path::Path) -> usize {
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut restarts = 0;
    while kills < 12 {
        restarts += 1;
        assert!(restarts < 200, "too many restarts without finishing");
        let mut child = spawn(dir, cfg, &[]);
        let delay = Duration::from_millis(rng.random_range(30..400));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            // Finished before the kill: start over to get enough kills mid-run.
            std::fs::remove_dir_all(dir.join("out")).unwrap();
            std::fs::remove_dir_all(dir.join(".connectd")).unwrap();
            continue;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
    }
    let mut child = spawn(dir, cfg, &[]);
    let status = wait_with_deadline(&mut child, Duration::from_secs(300));
    assert!(status.success(), "the final run failed");
    kills
}

/// Dedup and a windowed join hold state across checkpoints, and the `avro` file sink
/// truncates to its last committed block: 12 SIGKILLs change nothing in their output. (The join's two inputs interleave differently from run to run, so
/// its rows are compared as a set; generous grace keeps every pair in.)
const STATEFUL_PIPELINE: &str = r#"
name: stateful
checkpoint:
  interval: 100ms
sources:
  metrics:
    type: iot
    seed: 11
    rate: 0
    count: 100000
    start: 2024-01-01T00:00:00Z
    step: 1ms
    jitter: 500ms
transforms:
  firsts:
    type: dedup
    inputs: [metrics]
    key: [hostname]
    keep: first
    retention: 2s
    time: occurred_at
  hot:
    type: filter
    inputs: [metrics]
    where: usage > 97
  paired:
    type: join
    inputs: [hot, firsts]
    on: [hostname]
    within: 300ms
    time: occurred_at
    grace: 60s
    kind: left
    right_prefix: first_
sinks:
  firsts_csv:
    type: csv
    inputs: [firsts]
    path: out/firsts.csv
    columns: [hostname, cpu, usage, occurred_at]
  paired_csv:
    type: csv
    inputs: [paired]
    path: out/paired.csv
    columns: [hostname, cpu, usage, occurred_at, first_cpu, first_usage, first_occurred_at]
  firsts_avro:
    type: avro
    inputs: [firsts]
    path: out/firsts.avro
    block_records: 200
    schema: '{"type":"record","name":"Metric","fields":[{"name":"hostname","type":"string"},{"name":"cpu","type":"string"},{"name":"usage","type":"double"},{"name":"occurred_at","type":"long"}]}'
"#;

/// The records of an Avro container file, as JSON lines (read by connectd itself).
fn avro_records(dir: &std::path::Path) -> String {
    let cfg = write_pipeline(
        dir,
        "read-avro.yaml",
        "name: read-avro\nsources:\n  f: {type: file, path: out/firsts.avro, format: avro}\nsinks:\n  j: {type: jsonl, inputs: [f], path: out/firsts-avro.jsonl}\n",
    );
    let out = run_to_end(dir, &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read(dir.join("out/firsts-avro.jsonl"))
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn dedup_and_join_are_exact_across_sigkills() {
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", STATEFUL_PIPELINE);
    let out = run_to_end(reference.path(), &cfg);
    assert!(
        out.status.success(),
        "uninterrupted run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let firsts = read(reference.path().join("out/firsts.csv"));
    let paired = read(reference.path().join("out/paired.csv"));
    assert!(firsts.lines().count() > 100, "{firsts}");
    let with_partner = paired.lines().filter(|l| !l.ends_with(",,")).count();
    let alone = paired.lines().filter(|l| l.ends_with(",,")).count();
    assert!(
        with_partner > 20 && alone > 100,
        "{with_partner} paired, {alone} alone"
    );

    let crashed = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(crashed.path(), "p.yaml", STATEFUL_PIPELINE);
    let kills = run_with_sigkills(crashed.path(), &cfg);
    let got = read(crashed.path().join("out/firsts.csv"));
    assert!(
        got == firsts,
        "firsts.csv differs after {kills} kills: {} vs {} bytes",
        got.len(),
        firsts.len()
    );
    let from_avro = avro_records(crashed.path());
    assert_eq!(from_avro.lines().count(), firsts.lines().count() - 1);
    assert!(
        from_avro == avro_records(reference.path()),
        "firsts.avro differs after {kills} kills"
    );
    let got = read(crashed.path().join("out/paired.csv"));
    assert_eq!(
        sorted_lines(&got),
        sorted_lines(&paired),
        "paired.csv differs after {kills} kills"
    );
}

/// A crash between two sinks' commits leaves one sink a checkpoint ahead of the other.
/// Made deterministic here: run, stop, keep a copy of one sink's committed state; run
/// and stop again; put the old copy back. The final run must replay for the sink that
/// is behind and drop, for the sink ahead, exactly what it already has.
#[test]
fn a_sink_ahead_of_the_others_drops_what_it_already_committed() {
    let yaml = PIPELINE.replace("rate: 0", "rate: 40000");
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &yaml);
    let mut child = spawn(reference.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(120)).success());
    let expected: Vec<String> = OUTPUTS
        .iter()
        .map(|f| read(reference.path().join(f)))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
    let stop_after = |ms: u64| {
        let mut child = spawn(dir.path(), &cfg, &[]);
        std::thread::sleep(Duration::from_millis(ms));
        signal(&child, libc::SIGTERM);
        let status = wait_with_deadline(&mut child, Duration::from_secs(60));
        assert!(status.success(), "a stopped run must exit 0");
    };
    stop_after(1500);
    let commit = dir.path().join(".connectd/crash/sinks/windows_csv.json");
    let saved_commit = std::fs::read(&commit).unwrap();
    let saved_data = std::fs::read(dir.path().join("out/windows.csv")).unwrap();
    stop_after(1500);
    assert_ne!(
        std::fs::read(&commit).unwrap(),
        saved_commit,
        "the second run must have committed more"
    );
    // windows_csv goes back one step; the other sinks stay ahead of it.
    std::fs::write(&commit, &saved_commit).unwrap();
    std::fs::write(dir.path().join("out/windows.csv"), &saved_data).unwrap();

    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(120)).success());
    for (file, want) in OUTPUTS.iter().zip(&expected) {
        let got = read(dir.path().join(file));
        assert!(
            got == *want,
            "{file} differs: {} vs {} bytes",
            got.len(),
            want.len()
        );
    }
}
