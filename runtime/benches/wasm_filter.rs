//! Benchmark: the cost of WASM transforms on the record path. The same pipeline —
//! `iot` generator (rate 0, batch 1 024) → transform → csv — with:
//! 1. pass-through: the native `filter` passing everything against a WASM plugin that
//!    keeps every record (the sandbox probe in `identity` mode);
//! 2. parse and modify: the native `map` setting `hostname` to `***` against the
//!    `mask_fields` plugin doing the same in Rust, Python and JavaScript (the Python
//!    and JavaScript ones on `PLUGIN_RECORDS`, as they are much slower).
//!
//! Pairs run interleaved, so drift in the machine's speed hits both alike. Every run's
//! output is checked: the same CSV as the native run's, every row masked where it
//! should be. Fails when the pass-through costs more than 1.3× the native filter.
//!
//! Needs the plugins built: `scripts/build-plugins.sh`. Run:
//! `cargo bench -p connectd-runtime --bench wasm_filter` (env `RECORDS`, `RUNS`,
//! `PLUGIN_RECORDS`, `PLUGIN_RUNS`).
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::path::{Path, PathBuf};

mod common;

fn module(dir: &str, name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: scripts/build-plugins.sh",
        p.display()
    );
    p
}

fn pipeline(n: u64, transform: &str) -> String {
    format!(
        "name: bench\nbatch_size: 1024\ncheckpoint: {{interval: 1s}}\nsources:\n  g: {{type: iot, seed: 1, rate: 0, count: {n}, start: 0}}\ntransforms:\n  t:\n    inputs: [g]\n{transform}\nsinks:\n  out: {{type: csv, inputs: [t], path: out/o.csv, columns: [hostname, usage]}}\n"
    )
}

fn wasm(module: &Path, config: &str) -> String {
    format!(
        "    type: wasm\n    module: {}\n    config: {config}\n    limits: {{memory: 256MiB, timeout: 10s}}",
        module.display()
    )
}

/// Runs the pipeline; returns its CPU seconds and its output.
fn run(dir: &Path, yaml: &str) -> (f64, String) {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let cpu = common::run_connectd(dir, "p.yaml").cpu_seconds;
    (cpu, std::fs::read_to_string(dir.join("out/o.csv")).unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A pair measured interleaved: each output checked against the native one's.
struct Pair {
    native: Vec<f64>,
    plugin: Vec<f64>,
}

impl Pair {
    fn measure(dir: &Path, native: &str, plugin: &str, runs: usize, check: &dyn Fn(&str)) -> Pair {
        // Not measured: the first run of a plugin compiles it into the on-disk cache.
        run(dir, plugin);
        let mut pair = Pair {
            native: Vec::new(),
            plugin: Vec::new(),
        };
        for _ in 0..runs {
            let (a, want) = run(dir, native);
            let (b, got) = run(dir, plugin);
            check(&want);
            assert!(
                got == want,
                "the plugin's output differs from the native transform's"
            );
            pair.native.push(a);
            pair.plugin.push(b);
        }
        pair
    }

    fn ratio(&self) -> f64 {
        median(
            self.native
                .iter()
                .zip(&self.plugin)
                .map(|(a, b)| b / a)
                .collect(),
        )
    }

    fn row(&self, native: &str, plugin: &str, n: u64) -> String {
        let (a, b) = (median(self.native.clone()), median(self.plugin.clone()));
        let ns = |s: f64| s / n as f64 * 1e9;
        format!(
            "| {native} | {a:.3} | {:.0} |\n| {plugin} | {b:.3} | {:.0} |\n| = {plugin} / {native} | {:.2}× | |",
            ns(a),
            ns(b),
            self.ratio()
        )
    }
}

fn main() {
    use common::env_or;
    let n: u64 = env_or("RECORDS", 1_000_000, 2_000);
    let runs: usize = env_or("RUNS", 11, 1);
    let slow_n: u64 = env_or("PLUGIN_RECORDS", 100_000, 300);
    let slow_runs: usize = env_or("PLUGIN_RUNS", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let rows = |want: u64| {
        move |csv: &str| {
            assert_eq!(
                csv.lines().count() as u64,
                want + 1,
                "every record, and a header"
            );
        }
    };
    let masked = |want: u64| {
        move |csv: &str| {
            rows(want)(csv);
            assert!(
                csv.lines().skip(1).all(|l| l.starts_with("***,")),
                "every hostname masked"
            );
        }
    };

    let probe = module("transforms/tests/guests", "probe");
    let pass = Pair::measure(
        dir.path(),
        &pipeline(n, "    type: filter\n    where: usage >= 0"),
        &pipeline(n, &wasm(&probe, "{mode: identity}")),
        runs,
        &rows(n),
    );
    let map = |n| pipeline(n, "    type: map\n    fields: {hostname: \"'***'\"}");
    let mask = |name: &str, n| {
        pipeline(
            n,
            &wasm(
                &module("examples/plugins", name),
                "{fields: [hostname], mask: '***'}",
            ),
        )
    };
    let rust = Pair::measure(
        dir.path(),
        &map(n),
        &mask("mask_fields", n),
        runs,
        &masked(n),
    );
    let python = Pair::measure(
        dir.path(),
        &map(slow_n),
        &mask("mask_fields_py", slow_n),
        slow_runs,
        &masked(slow_n),
    );
    let js = Pair::measure(
        dir.path(),
        &map(slow_n),
        &mask("mask_fields_js", slow_n),
        slow_runs,
        &masked(slow_n),
    );
    println!("wasm_filter: iot → transform → csv, batch 1 024, CPU time of the process, medians");
    println!("| transform | CPU s | ns per record |");
    println!("|---|---|---|");
    println!("{}", pass.row("native filter", "WASM pass-through", n));
    println!("{}", rust.row("native map", "Rust mask_fields", n));
    println!(
        "{}",
        python.row(
            "native map",
            &format!("Python mask_fields ({slow_n} records)"),
            slow_n
        )
    );
    println!(
        "{}",
        js.row(
            "native map",
            &format!("JavaScript mask_fields ({slow_n} records)"),
            slow_n
        )
    );
    let records_per_s = |p: &Pair, n: u64| n as f64 / median(p.plugin.clone());
    println!(
        "plugin throughput (records per CPU second): Rust {:.0}, Python {:.0}, JavaScript {:.0}",
        records_per_s(&rust, n),
        records_per_s(&python, slow_n),
        records_per_s(&js, slow_n)
    );
    common::report(&common::Row {
        path: "iot → WASM pass-through → csv",
        connectd: n as f64 / median(pass.plugin.clone()),
        unit: "records/CPU-s",
        yardstick: "the same pipeline with the native filter",
        yardstick_figure: n as f64 / median(pass.native.clone()),
        target: common::Target::AtLeast(1.0 / 1.3),
        checked: "every run's CSV: every record, as the native run",
    });
    assert!(
        common::quick() || pass.ratio() <= 1.3,
        "the WASM pass-through costs {:.2}× the native filter: over the 1.3× target",
        pass.ratio()
    );
}
