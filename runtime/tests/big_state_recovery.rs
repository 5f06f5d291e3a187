//! Exactly-once with big state in the state store: dedup, windows (tumbling, session,
//! sliding) and a windowed join each holding 100 000 keys or more, crashed at a store
//! step and killed at seeded random moments; every output computed here from the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rand::Rng;

/// The kill pattern of the big-state tests: a crash at the store step `hook` (for
/// example right after a checkpoint's state write, `logged:3`), then up to 6 SIGKILLs
/// at seeded random moments (at least 3 must land before the input ends), then a run
/// to the end; every run with the environment `env`. Returns the number of kills. On a
/// machine fast enough to finish the input before 3 kills land, the whole pattern
/// starts over from nothing (`out/` and the state removed) with the waits halved.
fn crash_kill_and_finish(
    dir: &std::path::Path,
    cfg: &std::path::Path,
    (hook, env): (&str, &[(&str, &str)]),
    seed: u64,
    rng: &mut rand::rngs::StdRng,
) -> usize {
    let spawn = || {
        spawn_captured(
            connectd()
                .current_dir(dir)
                .envs(env.iter().copied())
                .args(["--admin-addr", "off", "--config"])
                .arg(cfg),
        )
    };
    let mut longest_wait = 1500;
    let kills = loop {
        let mut first = env.to_vec();
        first.push(("CONNECTD_CRASH_AT", hook));
        let crashed = run_with_env(dir, cfg, &first);
        assert!(
            String::from_utf8_lossy(&crashed.stderr).contains("aborting at"),
            "the hook {hook} did not fire"
        );
        let mut kills = 0;
        for _ in 0..40 {
            if kills >= 6 {
                break;
            }
            let mut child = spawn();
            std::thread::sleep(Duration::from_millis(rng.random_range(200..longest_wait)));
            if child.try_wait().unwrap().is_some() {
                break;
            }
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
            kills += 1;
        }
        if kills >= 3 {
            break kills;
        }
        assert!(
            longest_wait > 400,
            "seed {seed}: only {kills} kills landed before the end, with waits of up to {longest_wait} ms"
        );
        println!(
            "{kills} kills landed before the end: again from nothing, with waits of up to {} ms",
            longest_wait / 2
        );
        longest_wait /= 2;
        for made in ["out", ".connectd"] {
            let _ = std::fs::remove_dir_all(dir.join(made));
        }
    };
    let mut child = spawn();
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    kills
}

/// Deltas of 1 000 changes or more go into the store as table files (logged before
/// the manifest, ingested after it), so that the kills land in that path too.
const INGEST_SMALL: &[(&str, &str)] = &[("CONNECTD_TEST_INGEST_MIN", "1000")];

/// The file (lane) of record `i` of an input split over two: the second starts with
/// the first `ahead` records, older than any of the first's (as a partition with a
/// backlog does), then they take turns.
fn lane_with_backlog(i: i64, ahead: i64) -> usize {
    if i < ahead {
        1
    } else {
        (i % 2) as usize
    }
}

/// The CSV's rows (its header skipped) equal `expected` (sorted) as a set: lanes read
/// at their own pace interleave differently from run to run.
fn assert_rows_as_set(csv: &std::path::Path, expected: &[String], seed: u64, kills: usize) {
    let got = read(csv);
    let mut rows: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(rows.len(), expected.len(), "seed {seed}: {kills} kills");
    rows.sort_unstable();
    assert!(
        rows == expected,
        "seed {seed}: {} differs from what the input gives",
        csv.display()
    );
}

/// Dedup with big state in the state store: 300 000 records over 150 000 distinct ids
/// (keep first), checkpoints every 100 ms, deltas of 1 000 changes or more ingested as
/// table files, a crash after a checkpoint's manifest before its deltas are ingested
/// (`CONNECTD_CRASH_AT=ingesting`), then SIGKILLs at seeded random moments. The CSV
/// must hold each id's first record, once, in input order: computed here from the
/// input, not taken from a run.
/// A window over the two lanes `input` (files `a.jsonl`, `b.jsonl`), `window` its
/// kind and size as YAML lines, `group_by: [id]` with `count()` and `sum(v)`; run
/// through a crash while ingesting and the SIGKILLs of the big-state tests, with a
/// small `state.cache_size` and checkpoints every 100 ms. Its rows are compared with
/// `expected` as a set (the lanes interleave differently from run to run).
fn two_lane_window_is_exact_across_sigkills(
    input: &[String; 2],
    window: &str,
    expected: &[String],
    (seed, rng): (u64, &mut rand::rngs::StdRng),
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), &input[0]).unwrap();
    std::fs::write(dir.path().join("b.jsonl"), &input[1]).unwrap();
    let yaml = format!(
        r#"
name: twolanes
checkpoint: {{interval: 100ms}}
state: {{cache_size: 4MiB}}
sources:
  a: {{type: file, path: a.jsonl}}
  b: {{type: file, path: b.jsonl}}
transforms:
  w:
    type: window
    inputs: [a, b]
{window}
    time: ts
    group_by: [id]
    aggregates: {{n: count(), total: sum(v)}}
sinks:
  out: {{type: csv, inputs: [w], path: out/rows.csv, columns: [window_start, window_end, id, n, total]}}
"#
    );
    let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
    let hook = ("ingesting:*", INGEST_SMALL);
    let kills = crash_kill_and_finish(dir.path(), &cfg, hook, seed, rng);
    assert_rows_as_set(&dir.path().join("out/rows.csv"), expected, seed, kills);
}

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
    let mut input = [String::new(), String::new()];
    let mut by_id = std::collections::BTreeMap::<i64, Vec<(i64, i64)>>::new();
    for i in 0..RECORDS {
        let lane = lane_with_backlog(i, AHEAD);
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
    let window = "    kind: session\n    gap: 120s";
    two_lane_window_is_exact_across_sigkills(&input, window, &expected, (seed, &mut rng));
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
    let mut input = [String::new(), String::new()];
    let mut by_id = std::collections::BTreeMap::<i64, Vec<(i64, i64)>>::new();
    for i in 0..RECORDS + AHEAD {
        let lane = lane_with_backlog(i, AHEAD);
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
    let window = "    kind: sliding\n    size: 120s";
    two_lane_window_is_exact_across_sigkills(&input, window, &expected, (seed, &mut rng));
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
    assert_rows_as_set(&dir.path().join("out/pairs.csv"), &expected, seed, kills);
}
