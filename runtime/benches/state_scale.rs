//! Benchmark: state that scales (issue 14). 1 000 000 JSON records through a `dedup`
//! (keep first, retention 1 d), and through a 1-hour tumbling window `group_by: [id]`
//! with count and sum, into a CSV; each once with 1 000 distinct ids and once with
//! 1 000 000. The CPU of the second must be at most 3x the first's, with peak RSS under
//! 256 MB. All run the real `connectd` binary with checkpoints every second, so the
//! 1 M-key runs checkpoint their state incrementally as it grows. The output is checked
//! against values computed here.
//!
//! Also session windows (no target in the issue; reported): the same inputs through
//! a session window `group_by: [id]` with a 1-hour gap, count and sum, so each id's
//! records make one session: 1 000 sessions, or a million held open in the state store
//! until the input ends. Checked: each id's count and sum.
//!
//! And sliding windows (reported): the same inputs through a sliding window
//! `group_by: [id]` of 10 s, count and sum: a row per record, over the id's records in
//! the 10 s before it (about 10 with 1 000 ids, each once with a million). Checked:
//! a row per record, each against the count and sum computed here.
//!
//! And a windowed join (no target in the issue; reported): 1 000 000 records, left and
//! right in turn, each pair sharing a key and 1 ms apart (`within: 50ms`, `grace:
//! 60s`, so about 60 000 records are held), once over 1 000 keys (a key comes back
//! every 2 s: a lookup reads that key's 60 held records) and once over 500 000 (each
//! key once). Checked: exactly the 500 000 pairs.
//!
//! The dedup and window runs are repeated (`RUNS`, default 3), the few-keys and the
//! many-keys runs in turn, and the ratio is of the medians: one run of each varied by a
//! fifth on this machine, enough to move the ratio across its target.
//!
//! Run: `cargo bench -p connectd-runtime --bench state_scale` (`RECORDS` to change the
//! count, `RUNS` the repetitions). Exits non-zero when a target is missed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;

mod common;

fn generate(path: &Path, n: u64, distinct: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let start = 1_700_000_000_000u64;
    for i in 0..n {
        // Ids spread over the run: a multiplicative permutation of 0..distinct.
        let id = (i.wrapping_mul(2_654_435_761)) % distinct;
        writeln!(f, r#"{{"id":{id},"v":{},"ts":{}}}"#, i % 97, start + i).unwrap();
    }
    f.flush().unwrap();
}

/// The join's input: record `2j` (left) and `2j + 1` (right) share key `perm(j) %
/// distinct` and are 1 ms apart; a key comes back `distinct` pairs later.
fn generate_pairs(path: &Path, n: u64, distinct: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let start = 1_700_000_000_000u64;
    for i in 0..n {
        let k = ((i / 2).wrapping_mul(2_654_435_761)) % distinct;
        let side = if i % 2 == 0 { "l" } else { "r" };
        writeln!(
            f,
            r#"{{"k":{k},"id":{i},"side":"{side}","ts":{}}}"#,
            start + i
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// The transform under test, applied to records `{id, v, ts}` (the join: `{k, id,
/// side, ts}`).
#[derive(Clone, Copy)]
enum Case {
    /// `dedup` keyed by id: keep first, retention 1 d.
    Dedup,
    /// A 1-hour tumbling window `group_by: [id]` with count and sum.
    Window,
    /// A session window `group_by: [id]`, gap 1 h, with count and sum.
    Session,
    /// A sliding window `group_by: [id]` of 10 s, with count and sum.
    Sliding,
    /// A windowed join of the left and right records by key.
    Join,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Dedup => "dedup",
            Case::Window => "window",
            Case::Session => "session",
            Case::Sliding => "sliding",
            Case::Join => "join",
        }
    }

    /// The pipeline's `transforms:` entries; the sink reads `t`.
    fn transforms(self) -> &'static str {
        match self {
            Case::Dedup => {
                "  t: {type: dedup, inputs: [lines], key: [id], keep: first, retention: 1d, time: ts}"
            }
            Case::Window => {
                "  t: {type: window, inputs: [lines], kind: tumbling, size: 1h, time: ts, group_by: [id], aggregates: {n: count(), total: sum(v)}}"
            }
            Case::Session => {
                "  t: {type: window, inputs: [lines], kind: session, gap: 1h, time: ts, group_by: [id], aggregates: {n: count(), total: sum(v)}}"
            }
            Case::Sliding => {
                "  t: {type: window, inputs: [lines], kind: sliding, size: 10s, time: ts, group_by: [id], aggregates: {n: count(), total: sum(v)}}"
            }
            Case::Join => {
                "  lefts: {type: filter, inputs: [lines], where: side == \"l\"}
  rights: {type: filter, inputs: [lines], where: side == \"r\"}
  t: {type: join, inputs: [lefts, rights], on: [k], within: 50ms, time: ts, grace: 60s, right_prefix: r_}"
            }
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Case::Dedup => "[id, v]",
            Case::Window | Case::Session => "[id, n, total]",
            Case::Sliding => "[window_end, id, n, total]",
            Case::Join => "[id, r_id]",
        }
    }

    /// The inputs of the few-keys and the many-keys runs: (file stem, distinct keys).
    fn inputs(self, n: u64) -> [(&'static str, u64); 2] {
        match self {
            Case::Dedup | Case::Window | Case::Session | Case::Sliding => {
                [("few", 1_000), ("many", n)]
            }
            Case::Join => [("pairs-few", 1_000), ("pairs-many", (n / 2).max(1))],
        }
    }
}

fn pipeline(dir: &Path, case: Case, input: &str) -> String {
    let name = format!("{}-{input}", case.name());
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!(
            r#"name: {name}
checkpoint: {{interval: 1s}}
sources:
  lines: {{type: file, path: {input}.jsonl}}
transforms:
{}
sinks:
  out: {{type: csv, inputs: [t], path: out-{name}.csv, columns: {}}}
"#,
            case.transforms(),
            case.columns()
        ),
    )
    .unwrap();
    format!("{name}.yaml")
}

/// Checks the output against values computed here from the input: one row per
/// distinct id; for the windows, each id's count and sum; for the join, exactly the
/// pairs `(2j, 2j + 1)` (a key's next records are 2 s later, outside `within`).
fn check(dir: &Path, case: Case, input: &str, n: u64, distinct: u64) {
    let text =
        std::fs::read_to_string(dir.join(format!("out-{}-{input}.csv", case.name()))).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    if let Case::Join = case {
        let mut lefts: Vec<u64> = rows
            .iter()
            .map(|row| {
                let f: Vec<u64> = row.split(',').map(|x| x.parse().unwrap()).collect();
                assert!(f[0].is_multiple_of(2) && f[1] == f[0] + 1, "join row {row}");
                f[0]
            })
            .collect();
        lefts.sort_unstable();
        let want: Vec<u64> = (0..n / 2).map(|j| 2 * j).collect();
        assert!(
            lefts == want,
            "{input}: the join's pairs differ from (2j, 2j + 1)"
        );
        return;
    }
    if let Case::Sliding = case {
        // An id comes back every `distinct` records (the permutation's multiplier is
        // prime to it), 1 ms apart: record i's row holds records i, i - distinct, ...
        // within the 10 s up to it. Computed per row, holding nothing: the bench's own
        // memory would count in the peak RSS of the runs after it (a child starts
        // from its parent's pages until it runs connectd).
        let mut seen = vec![false; n as usize];
        for row in &rows {
            let f: Vec<u64> = row.split(',').map(|x| x.parse().unwrap()).collect();
            let i = f[0] - 1_700_000_000_000;
            assert!(
                i < n && !seen[i as usize],
                "sliding row {row}: not one per record"
            );
            seen[i as usize] = true;
            let held = (0..=i / distinct).take_while(|k| k * distinct < 10_000);
            let (count, total) =
                held.fold((0, 0), |(c, t), k| (c + 1, t + (i - k * distinct) % 97));
            let want = [i.wrapping_mul(2_654_435_761) % distinct, count, total];
            assert_eq!(f[1..], want, "sliding row {row}");
        }
        assert!(seen.iter().all(|s| *s), "{input}: a record without its row");
        return;
    }
    assert_eq!(
        rows.len() as u64,
        distinct.min(n),
        "{input}: wrong number of rows"
    );
    if let Case::Window | Case::Session = case {
        let mut want = vec![(0u64, 0u64); distinct as usize];
        for i in 0..n {
            let slot = &mut want[(i.wrapping_mul(2_654_435_761) % distinct) as usize];
            slot.0 += 1;
            slot.1 += i % 97;
        }
        for row in rows {
            let f: Vec<u64> = row.split(',').map(|x| x.parse().unwrap()).collect();
            assert_eq!((f[1], f[2]), want[f[0] as usize], "window row {row}");
        }
    }
}

fn main() {
    let n: u64 = common::env_or("RECORDS", 1_000_000, 5_000);
    let dir = tempfile::tempdir().unwrap();
    for (input, distinct) in Case::Dedup.inputs(n) {
        generate(&dir.path().join(format!("{input}.jsonl")), n, distinct);
    }
    for (input, distinct) in Case::Join.inputs(n) {
        generate_pairs(&dir.path().join(format!("{input}.jsonl")), n, distinct);
    }
    let runs: usize = common::env_or("RUNS", 3, 1);
    let mut failed = false;
    for case in [
        Case::Dedup,
        Case::Window,
        Case::Session,
        Case::Sliding,
        Case::Join,
    ] {
        // The reported cases: once each.
        let repeats = if let Case::Session | Case::Sliding | Case::Join = case {
            1
        } else {
            runs.max(1)
        };
        let mut usages: [Vec<common::Usage>; 2] = Default::default();
        for _ in 0..repeats {
            for ((input, distinct), usages) in case.inputs(n).into_iter().zip(&mut usages) {
                let cfg = pipeline(dir.path(), case, input);
                // A fresh output: the sink would append to the last run's.
                let out = dir.path().join(format!("out-{}-{input}.csv", case.name()));
                let _ = std::fs::remove_file(out);
                let usage = common::run_connectd(dir.path(), &cfg);
                check(dir.path(), case, input, n, distinct);
                println!(
                    "{} of {n} records, {distinct} distinct ids: {:.2} CPU-s, {:.2} s wall, peak RSS {:.0} MB",
                    case.name(),
                    usage.cpu_seconds,
                    usage.wall_seconds,
                    usage.max_rss_mb
                );
                usages.push(usage);
            }
        }
        // Per input: the median CPU, the highest peak RSS.
        let results = usages.map(|u| common::Usage {
            cpu_seconds: common::median(u.iter().map(|u| u.cpu_seconds).collect()),
            wall_seconds: common::median(u.iter().map(|u| u.wall_seconds).collect()),
            max_rss_mb: u.iter().map(|u| u.max_rss_mb).fold(0.0, f64::max),
        });
        let ratio = results[1].cpu_seconds / results[0].cpu_seconds;
        let (path, target, checked) = match case {
            Case::Dedup => ("dedup", common::Target::AtMost(3.0), "one row per id"),
            Case::Window => (
                "1 h window",
                common::Target::AtMost(3.0),
                "one row per id, its count and sum",
            ),
            Case::Session => (
                "session window",
                common::Target::Reported,
                "one row per id, its count and sum",
            ),
            Case::Sliding => (
                "10 s sliding window",
                common::Target::Reported,
                "a row per record, its id's count and sum over 10 s",
            ),
            Case::Join => (
                "windowed join",
                common::Target::Reported,
                "every pair (2j, 2j + 1) once, no other",
            ),
        };
        println!(
            "{}: CPU ratio many keys / 1 000 keys (medians of {repeats}): {ratio:.2}x{}; peak RSS of the many-key runs: {:.0} MB (target < 256 MB)",
            case.name(),
            if let common::Target::AtMost(t) = target { format!(" (target <= {t}x)") } else { String::new() },
            results[1].max_rss_mb
        );
        common::report(&common::Row {
            path: &format!("{path}: {} keys against 1 000 keys", case.inputs(n)[1].1),
            connectd: results[1].cpu_seconds,
            unit: "CPU-s",
            yardstick: "the same with 1 000 keys",
            yardstick_figure: results[0].cpu_seconds,
            target,
            checked,
        });
        if common::quick() {
            continue;
        }
        if matches!(case, Case::Dedup | Case::Window) && ratio > 3.0 {
            println!("FAILED: {}: the CPU ratio is over 3x", case.name());
            failed = true;
        }
        if results[1].max_rss_mb >= 256.0 {
            println!("FAILED: {}: peak RSS is 256 MB or more", case.name());
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
