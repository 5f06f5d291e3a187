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
