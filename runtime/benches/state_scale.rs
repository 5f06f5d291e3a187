//! Benchmark: state that scales (issue 14). 1 000 000 JSON records through a `dedup`
//! (keep first, retention 1 d) into a CSV, once with 1 000 distinct ids and once with
//! 1 000 000; the CPU of the second must be at most 3x the first's, with peak RSS under
//! 256 MB. Both run the real `connectd` binary with checkpoints every second, so the
//! 1 M-key run checkpoints its state incrementally as it grows.
//!
//! Run: `cargo bench -p connectd-runtime --bench state_scale` (`RECORDS` to change the
//! count). Exits non-zero when a target is missed.
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

fn pipeline(dir: &Path, input: &str) -> String {
    let name = format!("dedup-{input}");
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!(
            r#"name: d{}
checkpoint: {{interval: 1s}}
sources:
  lines: {{type: file, path: {input}.jsonl}}
transforms:
  firsts:
    type: dedup
    inputs: [lines]
    key: [id]
    keep: first
    retention: 1d
    time: ts
sinks:
  out: {{type: csv, inputs: [firsts], path: out-{input}.csv, columns: [id, v]}}
"#,
            input.len()
        ),
    )
    .unwrap();
    format!("{name}.yaml")
}

fn main() {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (input, distinct) in [("few", 1_000u64), ("many", n)] {
        generate(&dir.path().join(format!("{input}.jsonl")), n, distinct);
        let cfg = pipeline(dir.path(), input);
        let usage = common::run_connectd(dir.path(), &cfg);
        // Checked: one row per distinct id (plus the header).
        let rows = std::fs::read_to_string(dir.path().join(format!("out-{input}.csv")))
            .unwrap()
            .lines()
            .count() as u64;
        assert_eq!(rows, distinct.min(n) + 1, "{input}: wrong number of rows");
        println!(
            "dedup of {n} records, {distinct} distinct ids: {:.2} CPU-s, {:.2} s wall, peak RSS {:.0} MB",
            usage.cpu_seconds, usage.wall_seconds, usage.max_rss_mb
        );
        results.push(usage);
    }
    let ratio = results[1].cpu_seconds / results[0].cpu_seconds;
    println!(
        "CPU ratio 1 M keys / 1 000 keys: {ratio:.2}x (target <= 3x); peak RSS of the 1 M-key run: {:.0} MB (target < 256 MB)",
        results[1].max_rss_mb
    );
    let mut failed = false;
    if ratio > 3.0 {
        println!("FAILED: the CPU ratio is over 3x");
        failed = true;
    }
    if results[1].max_rss_mb >= 256.0 {
        println!("FAILED: peak RSS is 256 MB or more");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
