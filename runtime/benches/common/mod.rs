//! What the benches share: run the real `connectd` binary on a pipeline file and read
//! its resource usage from `wait4`.
#![allow(
    unsafe_code,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

pub mod kafka;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub max_rss_mb: f64,
    pub wall_seconds: f64,
}

/// Runs `connectd --config <config>` in `dir` to completion (fresh state), asserting success.
pub fn run_connectd(dir: &Path, config: &str) -> Usage {
    run_binary(Path::new(env!("CARGO_BIN_EXE_connectd")), dir, config)
}

/// The same with another `connectd` binary (an earlier build, to compare against).
pub fn run_binary(binary: &Path, dir: &Path, config: &str) -> Usage {
    let _ = std::fs::remove_dir_all(dir.join(".connectd"));
    let started = Instant::now();
    let child = Command::new(binary)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .args(["--admin-addr", "off", "--config", config])
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "connectd failed"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_seconds: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds (user + system) a running child has used so far, from `/proc`.
pub fn child_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 and 15 (utime, stime), counted after the parenthesized command name.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: f64 = fields.next()?.parse::<f64>().ok()? + fields.next()?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_second)
}

/// A quick run (`BENCH_QUICK=1`, from `scripts/bench.sh --quick` in the test script):
/// small inputs, every output checked, no target judged (a debug build says nothing
/// about speed).
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}

/// The number in environment variable `name`, else `full` (`quick` in a quick run).
pub fn env_or<T: std::str::FromStr>(name: &str, full: T, quick_default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick() { quick_default } else { full })
}

/// Which way a ratio must go.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// connectd / yardstick (a throughput) at least this.
    AtLeast(f64),
    /// connectd / yardstick (a cost) at most this.
    AtMost(f64),
    /// No target: the ratio is reported.
    Reported,
}

/// One row of the table `scripts/bench.sh` prints.
#[derive(Debug)]
pub struct Row<'a> {
    /// The path measured, e.g. `file → window → csv`.
    pub path: &'a str,
    /// connectd's figure, with its unit.
    pub connectd: f64,
    pub unit: &'a str,
    /// What connectd is measured against, and its figure in the same unit.
    pub yardstick: &'a str,
    pub yardstick_figure: f64,
    pub target: Target,
    /// How the output was checked (the bench has asserted it by now).
    pub checked: &'a str,
}

/// Prints the row and appends it to `$BENCH_TABLE` (tab-separated) when set; returns
/// whether the target is met (always true in a quick run, where it is not judged).
pub fn report(row: &Row<'_>) -> bool {
    use std::io::Write as _;
    let ratio = row.connectd / row.yardstick_figure;
    let (met, target) = match row.target {
        Target::AtLeast(t) => (ratio >= t, format!(">= {t:.2}")),
        Target::AtMost(t) => (ratio <= t, format!("<= {t:.2}")),
        Target::Reported => (true, "none".to_string()),
    };
    let verdict = if quick() {
        "not judged (quick run)"
    } else if let Target::Reported = row.target {
        "reported"
    } else if met {
        "met"
    } else {
        "NOT MET"
    };
    let fields = [
        row.path.to_string(),
        format!("{} {}", figure(row.connectd), row.unit),
        format!(
            "{}: {} {}",
            row.yardstick,
            figure(row.yardstick_figure),
            row.unit
        ),
        format!("{ratio:.2}"),
        target,
        verdict.to_string(),
        row.checked.to_string(),
    ];
    println!("result: {}", fields.join(" | "));
    if let Some(path) = std::env::var_os("BENCH_TABLE") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{}", fields.join("\t")).unwrap();
    }
    met || quick()
}

/// A figure with three significant digits' worth of precision, thousands grouped.
fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        if x < 0.0 {
            out.insert(0, '-');
        }
        out
    } else {
        format!("{x:.3}")
    }
}

/// `rows` trade records (`trades` generator, seed 7, from time 0) as JSON lines in
/// `dir/rows.jsonl`, written once by connectd's `jsonl` sink: what a yardstick loads.
pub fn trades_jsonl(dir: &Path, rows: u64) -> std::path::PathBuf {
    std::fs::write(
        dir.join("rows.yaml"),
        format!(
            "name: rows\nsources:\n  trades: {{type: trades, seed: 7, rate: 0, count: {rows}, start: 0}}\nsinks:\n  out: {{type: jsonl, inputs: [trades], path: rows.jsonl}}\n"
        ),
    )
    .unwrap();
    run_connectd(dir, "rows.yaml");
    dir.join("rows.jsonl")
}

/// The JSON objects of a JSON-lines file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The median of some figures.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
