//! Helpers for tests that run the real `connectd` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cql_server;
pub mod kafka;
pub mod mysql;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn connectd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_connectd"));
    c.env("RUST_LOG", "warn");
    c
}

/// Writes a pipeline file into `dir` and returns its path.
pub fn write_pipeline(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p
}

/// Runs `connectd --config <file>` in `dir` to completion.
pub fn run_to_end(dir: &Path, config: &Path) -> Output {
    connectd()
        .current_dir(dir)
        .args(["--admin-addr", "off", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

pub fn spawn(dir: &Path, config: &Path, extra: &[&str]) -> Child {
    connectd()
        .current_dir(dir)
        .args(["--admin-addr", "off"])
        .args(extra)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child with a deadline; kills it and fails the test when exceeded.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("connectd did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY-free: libc::kill on our own child's pid.
    let rc = unsafe_kill(child.id() as i32, sig);
    assert_eq!(rc, 0, "kill({}, {sig}) failed", child.id());
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // SAFETY: sending a signal to a process we spawned; no memory is touched.
    unsafe { libc::kill(pid, sig) }
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// A plain HTTP/1.1 GET on loopback (for /metrics and /healthz).
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
