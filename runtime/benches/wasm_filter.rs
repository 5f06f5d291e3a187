//! Benchmark: the cost of a WASM transform on the record path. The same pipeline —
//! `iot` generator (1 000 000 records, rate 0, batch 1 024) → transform → csv — with the
//! native `filter` (passing everything) and with a WASM pass-through plugin (the
//! sandbox probe in `identity` mode: each batch crosses into the guest and back).
//!
//! Needs the guests built: `scripts/build-plugins.sh`. Run:
//! `cargo bench -p connectd-runtime --bench wasm_filter` (env `RECORDS`, `RUNS`).
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::path::Path;

mod common;

fn cpu_seconds_of(dir: &Path, yaml: &str) -> f64 {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("out"));
    common::run_connectd(dir, "p.yaml").cpu_seconds
}

fn main() {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let probe = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../transforms/tests/guests/target/wasm32-wasip2/release/probe.wasm");
    assert!(
        probe.exists(),
        "build the guests first: scripts/build-plugins.sh"
    );
    let pipeline = |transform: &str| {
        format!(
            "name: bench\nbatch_size: 1024\ncheckpoint: {{interval: 1s}}\nsources:\n  g: {{type: iot, seed: 1, rate: 0, count: {n}, start: 0}}\ntransforms:\n  t:\n    inputs: [g]\n{transform}\nsinks:\n  out: {{type: csv, inputs: [t], path: out/o.csv, columns: [hostname, usage]}}\n"
        )
    };
    let native = pipeline("    type: filter\n    where: usage >= 0");
    let wasm = pipeline(&format!(
        "    type: wasm\n    module: {}\n    config: {{mode: identity}}",
        probe.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    // Interleaved, so that drift in the machine's speed hits both alike.
    let (mut native_s, mut wasm_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let a = cpu_seconds_of(dir.path(), &native);
        let b = cpu_seconds_of(dir.path(), &wasm);
        native_s.push(a);
        wasm_s.push(b);
        ratios.push(b / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (a, b, r) = (
        median(&mut native_s),
        median(&mut wasm_s),
        median(&mut ratios),
    );
    println!(
        "wasm_filter: {n} records, batch 1024, {runs} interleaved runs (CPU time of the process)"
    );
    println!("| transform | CPU s, median | ns per record |");
    println!("|---|---|---|");
    println!("| native filter | {a:.3} | {:.0} |", a / n as f64 * 1e9);
    println!("| wasm pass-through | {b:.3} | {:.0} |", b / n as f64 * 1e9);
    println!("wasm / native: {r:.2}× (median of the paired runs)");
}
