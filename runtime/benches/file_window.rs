//! Benchmark: `file` (1 000 000 IoT JSON lines) → 5 s tumbling avg/max per
//! (hostname, cpu) with 10 s out-of-orderness → csv, run by the real `connectd`
//! binary. Reports events per CPU-second (user + system time of the process) and peak
//! RSS, next to a hand-written serde_json + HashMap loop doing the same work.
//!
//! Run: `cargo bench -p connectd-runtime --bench file_window` (env `EVENTS` to change
//! the count, `RUNS` for repetitions). `BASELINE_BIN=<an earlier connectd>` runs that
//! binary alternately with this one on the same input and fails if this one needs more
//! than 10 % more CPU (median against median).
//!
//! The cost of checkpointing: the same pipeline also runs with `checkpoint.interval:
//! 1h` (no checkpoint before the end of the input) and `100ms`, alternately with the
//! 1 s runs; the bench fails if 1 s needs more than 10 % more CPU than 1 h (medians).
//!
//! Checks its output: connectd's window rows equal the hand-written loop's in number,
//! at every interval.
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

const DWARFS: [&str; 7] = [
    "doc", "grumpy", "happy", "sleepy", "bashful", "sneezy", "dopey",
];

mod common;

use common::Usage;

fn generate(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 42;
    let start = 1_700_000_000_000i64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let host = DWARFS[(x % 7) as usize];
        let cpu = (x >> 8) % 5 + 1;
        let usage = ((x >> 16) % 10_001) as f64 / 100.0;
        let t = start + i as i64 - ((x >> 32) % 2000) as i64;
        writeln!(
            f,
            r#"{{"hostname":"{host}","cpu":"cpu{cpu}","usage":{usage},"occurred_at":{t}}}"#
        )
        .unwrap();
    }
    f.flush().unwrap();
}

fn run_pipeline(dir: &Path, binary: Option<&Path>, interval: &str) -> Usage {
    let cfg = dir.join("bench.yaml");
    std::fs::write(
        &cfg,
        r#"name: bench
checkpoint: {interval: INTERVAL}
sources:
  lines: {type: file, path: events.jsonl}
transforms:
  w:
    type: window
    inputs: [lines]
    kind: tumbling
    size: 5s
    time: occurred_at
    max_out_of_orderness: 10s
    group_by: [hostname, cpu]
    aggregates:
      avg_usage: avg(usage)
      max_usage: max(usage)
sinks:
  out:
    type: csv
    inputs: [w]
    path: out.csv
    columns: [window_start, window_end, hostname, cpu, avg_usage, max_usage]
"#
        .replace("INTERVAL", interval),
    )
    .unwrap();
    // A fresh start each time: no checkpoint of an earlier run to resume from.
    let _ = std::fs::remove_dir_all(dir.join(".connectd"));
    let _ = std::fs::remove_file(dir.join("out.csv"));
    match binary {
        Some(b) => common::run_binary(b, dir, "bench.yaml"),
        None => common::run_connectd(dir, "bench.yaml"),
    }
}

fn rows(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("out.csv"))
        .unwrap()
        .lines()
        .count()
        - 1
}

fn median(mut runs: Vec<Usage>) -> (Usage, Usage) {
    runs.sort_by(|a, b| a.cpu_seconds.total_cmp(&b.cpu_seconds));
    (runs[runs.len() / 2], runs[0])
}

fn self_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

#[derive(serde::Deserialize)]
struct Event<'a> {
    hostname: &'a str,
    cpu: &'a str,
    usage: f64,
    occurred_at: i64,
}

/// Window start → (host, cpu) → (sum, count, max).
type Windows = std::collections::BTreeMap<i64, HashMap<(String, String), (f64, u64, f64)>>;

/// The hand-written reference: typed serde_json parse + HashMap windows, one thread.
fn baseline(path: &Path) -> (f64, usize) {
    let before = self_cpu_seconds();
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut windows: Windows = Default::default();
    let mut watermark = i64::MIN;
    let mut rows = 0;
    let mut out = Vec::new();
    for line in f.lines() {
        let line = line.unwrap();
        let e: Event = serde_json::from_str(&line).unwrap();
        let start = e.occurred_at.div_euclid(5000) * 5000;
        if start + 5000 <= watermark {
            continue;
        }
        let acc = windows
            .entry(start)
            .or_default()
            .entry((e.hostname.to_string(), e.cpu.to_string()))
            .or_insert((0.0, 0, f64::MIN));
        acc.0 += e.usage;
        acc.1 += 1;
        acc.2 = acc.2.max(e.usage);
        watermark = watermark.max(e.occurred_at - 10_000);
        while let Some(entry) = windows.first_entry() {
            if *entry.key() + 5000 > watermark {
                break;
            }
            let start = *entry.key();
            rows += write_rows(&mut out, start, entry.remove());
        }
    }
    // The end of the input closes every window, as in connectd.
    for (start, groups) in windows {
        rows += write_rows(&mut out, start, groups);
    }
    (self_cpu_seconds() - before, rows)
}

/// Writes one window's rows as CSV; returns how many.
fn write_rows(
    out: &mut Vec<u8>,
    start: i64,
    groups: HashMap<(String, String), (f64, u64, f64)>,
) -> usize {
    let n = groups.len();
    for ((h, c), (sum, count, max)) in groups {
        writeln!(
            out,
            "{start},{},{h},{c},{},{max}",
            start + 5000,
            sum / count as f64
        )
        .unwrap();
    }
    n
}

fn main() {
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    generate(&input, n);
    let (base_cpu, base_rows) = baseline(&input);
    let earlier = std::env::var_os("BASELINE_BIN").map(std::path::PathBuf::from);
    let (mut results, mut earlier_results) = (Vec::new(), Vec::new());
    let (mut rare, mut often) = (Vec::new(), Vec::new());
    let checked = |dir: &Path, interval: &str| {
        let rows = rows(dir);
        assert_eq!(
            rows, base_rows,
            "connectd ({interval} checkpoints) wrote {rows} window rows, the hand-written loop {base_rows}"
        );
    };
    for _ in 0..runs {
        results.push(run_pipeline(dir.path(), None, "1s"));
        checked(dir.path(), "1s");
        rare.push(run_pipeline(dir.path(), None, "1h"));
        checked(dir.path(), "1h");
        often.push(run_pipeline(dir.path(), None, "100ms"));
        checked(dir.path(), "100ms");
        if let Some(bin) = &earlier {
            earlier_results.push(run_pipeline(dir.path(), Some(bin), "1s"));
        }
    }
    let rows = base_rows;
    let max_rss = results.iter().map(|r| r.max_rss_mb).fold(0.0, f64::max);
    let (median, best) = median(results);
    let (median, best) = (&median, &best);
    println!("file_window: {n} events, {rows} window rows, {runs} runs");
    println!("| what | CPU s | wall s | M events per CPU-second | peak RSS MB |");
    println!("|---|---|---|---|---|");
    for (label, r) in [("median", median), ("best", best)] {
        println!(
            "| connectd file → window → csv ({label}) | {:.3} | {:.3} | {:.2} | {:.1} |",
            r.cpu_seconds,
            r.wall_seconds,
            n as f64 / r.cpu_seconds / 1e6,
            max_rss
        );
    }
    println!(
        "| hand-written serde_json + HashMap loop | {:.3} | – | {:.2} | – |",
        base_cpu,
        n as f64 / base_cpu / 1e6
    );
    println!(
        "connectd / hand-written throughput (median): {:.0}%",
        100.0 * base_cpu / median.cpu_seconds
    );
    let (rare, _) = self::median(rare);
    let (often, _) = self::median(often);
    let cost = median.cpu_seconds / rare.cpu_seconds;
    println!(
        "checkpoint cost (CPU medians): 1 s {:.3} s, 100 ms {:.3} s, 1 h (none before the end) {:.3} s; 1 s / 1 h = {cost:.3}, 100 ms / 1 h = {:.3}",
        median.cpu_seconds,
        often.cpu_seconds,
        rare.cpu_seconds,
        often.cpu_seconds / rare.cpu_seconds
    );
    if median.wall_seconds < 2.0 {
        println!("(the 1 s runs took {:.1} s: too short for more than one checkpoint; EVENTS=5000000 measures the cost)", median.wall_seconds);
    }
    assert!(
        cost <= 1.10,
        "checkpoints every second cost {:.0} % of the CPU (more than 10 %)",
        (cost - 1.0) * 100.0
    );
    if let Some(bin) = earlier {
        let (then, _) = self::median(earlier_results);
        let ratio = median.cpu_seconds / then.cpu_seconds;
        println!(
            "| {} (median) | {:.3} | {:.3} | {:.2} | {:.1} |",
            bin.display(),
            then.cpu_seconds,
            then.wall_seconds,
            n as f64 / then.cpu_seconds / 1e6,
            then.max_rss_mb
        );
        println!("this build / earlier build CPU (medians): {ratio:.3}");
        assert!(
            ratio <= 1.10,
            "this build needs {:.0} % more CPU than {}",
            (ratio - 1.0) * 100.0,
            bin.display()
        );
    }
}
