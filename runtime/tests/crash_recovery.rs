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

fn avro_records(dir: &std::path::Path) -> String {
    avro_as_jsonl(dir, "out/firsts.avro")
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

/// A crash at each step of the two-phase commit, made deterministic with the
/// `CONNECTD_CRASH_AT` hook: after one sink prepared (nothing complete), after the
/// pipeline log recorded the checkpoint (no sink committed it), after one sink
/// committed (the others had not). The run after it must end with exactly the files of
/// an uninterrupted run: the checkpoint is given up everywhere in the first case and
/// finished everywhere in the other two, from what each file sink kept prepared.
#[test]
fn a_crash_at_each_step_of_the_commit_loses_and_duplicates_nothing() {
    // Slowed down to last about 4 s: checkpoint 4 comes before the end, even on a
    // loaded machine where a checkpoint takes longer than the 100 ms interval.
    let yaml = PIPELINE.replace("rate: 0", "rate: 50000");
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &yaml);
    assert!(run_to_end(reference.path(), &cfg).status.success());
    let expected: Vec<String> = OUTPUTS
        .iter()
        .map(|f| read(reference.path().join(f)))
        .collect();

    // The pipeline log is written by whichever sink prepares last: `logged` names none.
    for hook in [
        "prepared:3:windows_csv",
        "logged:3",
        "committed:3:alerts_csv",
        "committed:4:windows_csv",
        "committed:4:sessions_jsonl",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
        let crashed = run_with_env(dir.path(), &cfg, &[("CONNECTD_CRASH_AT", hook)]);
        let log = String::from_utf8_lossy(&crashed.stderr);
        assert!(
            !crashed.status.success() && log.contains("aborting at"),
            "{hook}: the hook did not fire: {log}"
        );
        let out = run_with_env(dir.path(), &cfg, &[("RUST_LOG", "info")]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{hook}: {log}");
        // Complete, committed nowhere: finished from the prepared epochs. (After one
        // sink's commit the others may have committed too: a race, not asserted.)
        if hook.starts_with("logged") {
            assert!(
                log.contains("finishing the commit of checkpoint 3, prepared in the sink"),
                "{hook}: {log}"
            );
            assert!(
                !dir.path().join(".connectd/crash/wal").exists(),
                "{hook}: a file sink keeps no write-ahead log"
            );
        }
        // Prepared and never complete: given up (cut back), not committed.
        if hook.starts_with("prepared") {
            assert!(
                log.contains("giving up checkpoint 3: prepared in the sink")
                    && !log.contains("finishing the commit"),
                "{hook}: {log}"
            );
        }
        for (file, want) in OUTPUTS.iter().zip(&expected) {
            let got = read(dir.path().join(file));
            assert!(
                got == *want,
                "{hook}: {file} differs: {} vs {} bytes",
                got.len(),
                want.len()
            );
        }
    }
}

/// The kill pattern of the big-state tests: a crash at the store step `hook` (for
/// example right after a checkpoint's state write, `logged:3`), then up to 6 SIGKILLs
/// at seeded random moments (at least 3 must land before the input ends), then a run
/// to the end; every run with the environment `env`. Returns the number of kills.
fn crash_kill_and_finish(
    dir: &std::path::Path,
    cfg: &std::path::Path,
    (hook, env): (&str, &[(&str, &str)]),
    seed: u64,
    rng: &mut rand::rngs::StdRng,
) -> usize {
    let mut first = env.to_vec();
    first.push(("CONNECTD_CRASH_AT", hook));
    let crashed = run_with_env(dir, cfg, &first);
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("aborting at"),
        "the hook {hook} did not fire"
    );
    let spawn = || {
        spawn_captured(
            connectd()
                .current_dir(dir)
                .envs(env.iter().copied())
                .args(["--admin-addr", "off", "--config"])
                .arg(cfg),
        )
    };
    let mut kills = 0;
    for _ in 0..40 {
        if kills >= 6 {
            break;
        }
        let mut child = spawn();
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
    }
    assert!(
        kills >= 3,
        "seed {seed}: only {kills} kills landed before the end"
    );
    let mut child = spawn();
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    kills
}

/// Deltas of 1 000 changes or more go into the store as table files (logged before
/// the manifest, ingested after it), so that the kills land in that path too.
const INGEST_SMALL: &[(&str, &str)] = &[("CONNECTD_TEST_INGEST_MIN", "1000")];

/// Dedup with big state in the state store: 300 000 records over 150 000 distinct ids
/// (keep first), checkpoints every 100 ms, deltas of 1 000 changes or more ingested as
/// table files, a crash after a checkpoint's manifest before its deltas are ingested
/// (`CONNECTD_CRASH_AT=ingesting`), then SIGKILLs at seeded random moments. The CSV
/// must hold each id's first record, once, in input order: computed here from the
/// input, not taken from a run.
#[test]
fn dedup_with_big_state_is_exact_across_sigkills() {
    const RECORDS: u64 = 300_000;
    const IDS: u64 = 150_000;
    let (seed, mut rng) = common::seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut expected = String::from("id,v\n");
    let mut seen = std::collections::HashSet::new();
    for i in 0..RECORDS {
        let id = i.wrapping_mul(2_654_435_761) % IDS;
        input.push_str(&format!(
            "{{\"id\":{id},\"v\":{i},\"ts\":{}}}\n",
            1_700_000_000_000u64 + i
        ));
        if seen.insert(id) {
            expected.push_str(&format!("{id},{i}\n"));
        }
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: bigdedup
checkpoint: {interval: 100ms}
sources:
  lines: {type: file, path: in.jsonl}
transforms:
  firsts: {type: dedup, inputs: [lines], key: [id], keep: first, retention: 1d, time: ts}
sinks:
  out: {type: csv, inputs: [firsts], path: out/firsts.csv, columns: [id, v]}
"#,
    );
    let kills = crash_kill_and_finish(
        dir.path(),
        &cfg,
        ("ingesting:*", INGEST_SMALL),
        seed,
        &mut rng,
    );
    let got = read(dir.path().join("out/firsts.csv"));
    assert_eq!(
        got.lines().count(),
        IDS as usize + 1,
        "seed {seed}, {kills} kills"
    );
    assert!(
        got == expected,
        "seed {seed}: the CSV differs from each id's first record"
    );
}

/// A 60 s tumbling window over 120 000 ids (about 46 000 groups per window, five
/// windows), with `state.cache_size: 4MiB` so the groups spill to the state store again
/// and again, checkpoints every 100 ms, deltas of 1 000 changes or more ingested as
/// table files, a crash after such a delta is logged before its manifest commits
/// (`CONNECTD_CRASH_AT=delta-logged`), then SIGKILLs at seeded random moments, also while windows close. Every window's
/// count and sum per id are computed here from the input.
#[test]
fn window_with_big_state_is_exact_across_sigkills() {
    const RECORDS: i64 = 300_000;
    const IDS: i64 = 120_000;
    const SIZE: i64 = 60_000;
    let (seed, mut rng) = common::seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    // (window start, id) → (count, sum), in output order.
    let mut windows = std::collections::BTreeMap::<(i64, i64), (i64, i64)>::new();
    for i in 0..RECORDS {
        let id = (i * 7_919) % IDS;
        let ts = 1_700_000_000_000 + i;
        input.push_str(&format!("{{\"id\":{id},\"v\":{},\"ts\":{ts}}}\n", i % 101));
        let slot = windows.entry((ts.div_euclid(SIZE) * SIZE, id)).or_default();
        slot.0 += 1;
        slot.1 += i % 101;
    }
    let mut expected = String::from("window_start,id,n,total\n");
    for ((start, id), (n, total)) in &windows {
        expected.push_str(&format!("{start},{id},{n},{total}\n"));
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: bigwindow
checkpoint: {interval: 100ms}
state: {cache_size: 4MiB}
sources:
  lines: {type: file, path: in.jsonl}
transforms:
  per_id:
    type: window
    inputs: [lines]
    kind: tumbling
    size: 60s
    time: ts
    group_by: [id]
    aggregates: {n: count(), total: sum(v)}
sinks:
  out: {type: csv, inputs: [per_id], path: out/windows.csv, columns: [window_start, id, n, total]}
"#,
    );
    let kills = crash_kill_and_finish(
        dir.path(),
        &cfg,
        ("delta-logged:*", INGEST_SMALL),
        seed,
        &mut rng,
    );
    let got = read(dir.path().join("out/windows.csv"));
    assert_eq!(
        got.lines().count(),
        windows.len() + 1,
        "seed {seed}: {kills} kills"
    );
    assert!(
        got == expected,
        "seed {seed}: the windows differ from those computed from the input"
    );
}

/// Session windows over 100 000 ids, each id's sessions in the state store: every id
/// comes three times, 100 s apart, then 150 s (a jump in time before the last third),
/// so with a 120 s gap its first two records make one session, which closes while the
/// input still flows, and the third its own, closing at the end (100 000 sessions in
/// bounded parts). Read from two files, so two lanes at their own pace (the second
/// starts with 10 000 records older than any of the first's, as a partition with a
/// backlog does). `state.cache_size` small, checkpoints every 100 ms, deltas of 1 000
/// changes or more ingested as table files, a crash after a checkpoint's manifest
/// before its deltas are ingested, then SIGKILLs at seeded random moments. Every
/// session is computed here from the input.
#[test]
fn session_windows_over_two_lanes_with_big_state_are_exact_across_sigkills() {
    const RECORDS: i64 = 300_000;
    const IDS: i64 = 100_000;
    const GAP: i64 = 120_000;
    const AHEAD: i64 = 10_000;
    let (seed, mut rng) = common::seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut input = [String::new(), String::new()];
    let mut by_id = std::collections::BTreeMap::<i64, Vec<(i64, i64)>>::new();
    for i in 0..RECORDS {
        let lane = if i < AHEAD { 1 } else { (i % 2) as usize };
        let id = (i * 7_919) % IDS;
        let jump = if i >= 2 * IDS { 50_000 } else { 0 };
        let ts = 1_700_000_000_000 + i + jump;
        input[lane].push_str(&format!("{{\"id\":{id},\"v\":{},\"ts\":{ts}}}\n", i % 101));
        by_id.entry(id).or_default().push((ts, i % 101));
    }
    // Sessions by brute force: each id's times in order, cut where two are a gap apart.
    let mut expected = Vec::new();
    for (id, mut times) in by_id {
        times.sort_unstable();
        let mut start = 0;
        for at in 1..=times.len() {
            if at == times.len() || times[at].0 - times[at - 1].0 >= GAP {
                let part = &times[start..at];
                let total: i64 = part.iter().map(|p| p.1).sum();
                expected.push(format!(
                    "{},{},{id},{},{total}",
                    part[0].0,
                    part[part.len() - 1].0 + GAP,
                    part.len()
                ));
                start = at;
            }
        }
    }
    expected.sort_unstable();
    assert_eq!(expected.len(), 2 * IDS as usize);
    std::fs::write(dir.path().join("a.jsonl"), &input[0]).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), &input[1]).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: bigsessions
checkpoint: {interval: 100ms}
state: {cache_size: 4MiB}
sources:
  a: {type: file, path: a.jsonl}
  b: {type: file, path: b.jsonl}
transforms:
  visits:
    type: window
    inputs: [a, b]
    kind: session
    gap: 120s
    time: ts
    group_by: [id]
    aggregates: {n: count(), total: sum(v)}
sinks:
  out: {type: csv, inputs: [visits], path: out/sessions.csv, columns: [window_start, window_end, id, n, total]}
"#,
    );
    let kills = crash_kill_and_finish(
        dir.path(),
        &cfg,
        ("ingesting:*", INGEST_SMALL),
        seed,
        &mut rng,
    );
    let got = read(dir.path().join("out/sessions.csv"));
    let mut lines: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(lines.len(), expected.len(), "seed {seed}: {kills} kills");
    lines.sort_unstable();
    assert!(
        lines == expected,
        "seed {seed}: the sessions differ from those computed from the input"
    );
}

/// A sliding window holding about 120 000 records over 20 000 ids (each id every
/// 20 s, windows of 120 s), read from two files, so two lanes at their own pace (the
/// second starts with 10 000 records older than any of the first's, as a partition
/// with a backlog does; the watermark waits for the slower lane). `state.cache_size`
/// small, checkpoints every 100 ms, the crash and SIGKILLs of the big-state tests.
/// Every row is computed here from the input, by brute force per id; the output is
/// compared as a set (the lanes interleave differently from run to run).
#[test]
fn sliding_windows_over_two_lanes_with_big_state_are_exact_across_sigkills() {
    const RECORDS: i64 = 200_000;
    const IDS: i64 = 20_000;
    const SIZE: i64 = 120_000;
    const AHEAD: i64 = 10_000;
    let (seed, mut rng) = common::seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut input = [String::new(), String::new()];
    let mut by_id = std::collections::BTreeMap::<i64, Vec<(i64, i64)>>::new();
    for i in 0..RECORDS + AHEAD {
        // The first AHEAD records all go to the second file.
        let lane = if i < AHEAD { 1 } else { (i % 2) as usize };
        let id = (i * 7_919) % IDS;
        let ts = 1_700_000_000_000 + i;
        let v = i % 101;
        input[lane].push_str(&format!("{{\"id\":{id},\"v\":{v},\"ts\":{ts}}}\n"));
        by_id.entry(id).or_default().push((ts, v));
    }
    // Each record's row: the records of its id in (ts - size, ts].
    let mut expected = Vec::new();
    for (id, times) in &by_id {
        for (at, &(t, _)) in times.iter().enumerate() {
            let within: Vec<i64> = times[..=at]
                .iter()
                .filter(|p| p.0 > t - SIZE)
                .map(|p| p.1)
                .collect();
            let total: i64 = within.iter().sum();
            expected.push(format!("{},{t},{id},{},{total}", t - SIZE, within.len()));
        }
    }
    expected.sort_unstable();
    std::fs::write(dir.path().join("a.jsonl"), &input[0]).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), &input[1]).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: bigsliding
checkpoint: {interval: 100ms}
state: {cache_size: 4MiB}
sources:
  a: {type: file, path: a.jsonl}
  b: {type: file, path: b.jsonl}
transforms:
  recent:
    type: window
    inputs: [a, b]
    kind: sliding
    size: 120s
    time: ts
    group_by: [id]
    aggregates: {n: count(), total: sum(v)}
sinks:
  out: {type: csv, inputs: [recent], path: out/recent.csv, columns: [window_start, window_end, id, n, total]}
"#,
    );
    let kills = crash_kill_and_finish(
        dir.path(),
        &cfg,
        ("ingesting:*", INGEST_SMALL),
        seed,
        &mut rng,
    );
    let got = read(dir.path().join("out/recent.csv"));
    let mut lines: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(lines.len(), expected.len(), "seed {seed}: {kills} kills");
    lines.sort_unstable();
    assert!(
        lines == expected,
        "seed {seed}: the rows differ from those computed from the input"
    );
}

/// A windowed join holding 200 000 records over 120 000 keys (grace long enough that
/// nothing leaves before the end), checkpoints every 100 ms, the crash and SIGKILLs of
/// the big-state tests. The two sides are two files, so two lanes read at their own
/// pace, and the right one starts with 12 000 records of keys the left never has and
/// earlier times: the left lane runs about 12 000 records ahead (as a partition with
/// a backlog does). `state.cache_size` is small, so the join's memory keeps only its
/// newest few thousand records, and the right side's partners come from the store. Every pair is computed here from the
/// input, by brute force per key; the join's output is compared as a set (its two
/// inputs interleave differently from run to run).
#[test]
fn join_with_big_state_is_exact_across_sigkills() {
    const RECORDS: u64 = 200_000;
    const KEYS: u64 = 120_000;
    const WITHIN: i64 = 50;
    let (seed, mut rng) = common::seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    const AHEAD: u64 = 12_000;
    let mut input = [String::new(), String::new()];
    for f in 0..AHEAD {
        let (k, t) = (KEYS + f, 1_700_000_000_000 - 2 * (AHEAD - f) as i64);
        let id = RECORDS + f;
        input[1].push_str(&format!("{{\"k\":{k},\"t\":{t},\"id\":{id}}}\n"));
    }
    // key → [(side, t, id)]
    let mut by_key = std::collections::HashMap::<u64, Vec<(u8, i64, u64)>>::new();
    for id in 0..RECORDS {
        let side = (id % 2) as u8;
        let k = ((id / 2) * 7_919 + rng.random_range(0..3)) % KEYS;
        let t = 1_700_000_000_000 + id as i64 + rng.random_range(-40..40);
        input[usize::from(side)].push_str(&format!("{{\"k\":{k},\"t\":{t},\"id\":{id}}}\n"));
        by_key.entry(k).or_default().push((side, t, id));
    }
    let mut expected = Vec::new();
    for (k, records) in &by_key {
        for (_, lt, lid) in records.iter().filter(|r| r.0 == 0) {
            for (_, rt, rid) in records.iter().filter(|r| r.0 == 1) {
                if (lt - rt).abs() <= WITHIN {
                    expected.push(format!("{lid},{k},{rid}"));
                }
            }
        }
    }
    expected.sort_unstable();
    assert!(expected.len() > 20_000, "{} pairs", expected.len());
    std::fs::write(dir.path().join("lefts.jsonl"), &input[0]).unwrap();
    std::fs::write(dir.path().join("rights.jsonl"), &input[1]).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: bigjoin
checkpoint: {interval: 100ms}
state: {cache_size: 4MiB}
sources:
  lefts: {type: file, path: lefts.jsonl}
  rights: {type: file, path: rights.jsonl}
transforms:
  pairs:
    type: join
    inputs: [lefts, rights]
    on: [k]
    within: 50ms
    time: t
    grace: 300s
    right_prefix: r_
sinks:
  out: {type: csv, inputs: [pairs], path: out/pairs.csv, columns: [id, k, r_id]}
"#,
    );
    let kills = crash_kill_and_finish(dir.path(), &cfg, ("logged:3", &[]), seed, &mut rng);
    let got = read(dir.path().join("out/pairs.csv"));
    let mut got: Vec<&str> = got.lines().skip(1).collect();
    got.sort_unstable();
    assert_eq!(got.len(), expected.len(), "seed {seed}, {kills} kills");
    assert!(
        got == expected,
        "seed {seed}: the pairs differ from those computed from the input"
    );
}

/// A damaged state store stops the pipeline with an error naming the store and the
/// way to reset it; it never runs on from state it cannot trust.
#[test]
fn a_damaged_state_store_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..20_000u64 {
        input.push_str(&format!("{{\"id\":{},\"v\":{i},\"ts\":{i}}}\n", i % 5000));
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        r#"
name: damaged
sources:
  lines: {type: file, path: in.jsonl}
transforms:
  firsts: {type: dedup, inputs: [lines], key: [id], keep: first, retention: 1d, time: ts}
sinks:
  out: {type: csv, inputs: [firsts], path: out/firsts.csv, columns: [id, v]}
"#,
    );
    assert!(run_to_end(dir.path(), &cfg).status.success());
    let store = dir.path().join(".connectd/damaged/state");
    damage(&store);
    let out = run_to_end(dir.path(), &cfg);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran on a damaged store: {log}");
    assert!(
        log.contains(".connectd/damaged/state") && log.contains("reset"),
        "{log}"
    );
}

/// Flips bytes in the middle of every file under `dir`.
fn damage(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            damage(&path);
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() > 8 {
            let (mid, len) = (bytes.len() / 2, bytes.len());
            for b in &mut bytes[mid.saturating_sub(4)..(mid + 4).min(len)] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
        }
    }
}
