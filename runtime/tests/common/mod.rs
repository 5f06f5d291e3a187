//! Helpers for tests that run the real `connectd` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cql_server;
pub mod kafka;
pub mod mongo;
pub mod mysql;
pub mod proxy;
pub mod schema_registry;
pub mod sink_table;
pub mod tansu;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The seeded random generator of a kill test: the seed comes from `CONNECTD_TEST_SEED`
/// when set (to replay a failure), else at random; it is printed either way.
pub fn seeded_rng() -> (u64, rand::rngs::StdRng) {
    let seed = std::env::var("CONNECTD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (replay with CONNECTD_TEST_SEED={seed})");
    (
        seed,
        <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
    )
}

pub fn connectd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_connectd"));
    // CONNECTD_TEST_LOG raises the log level of the workers a test starts.
    c.env(
        "RUST_LOG",
        std::env::var("CONNECTD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    );
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

/// Runs `connectd --config <file>` in `dir` to completion with extra environment.
pub fn run_with_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Output {
    connectd()
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(["--admin-addr", "off", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// Starts the pipeline of `config` in `dir` and SIGKILLs it after a random delay in
/// `delay_ms`, `kills` times. A run that ends before its kill starts over from nothing
/// (`out/` and the state directory removed). The caller then runs it to the end.
pub fn kill_repeatedly(
    dir: &Path,
    config: &Path,
    kills: usize,
    delay_ms: std::ops::Range<u64>,
    rng: &mut impl rand::Rng,
) {
    let mut done = 0;
    for _ in 0..kills * 10 {
        if done >= kills {
            return;
        }
        let mut child = spawn(dir, config, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(delay_ms.clone())));
        if child.try_wait().unwrap().is_some() {
            let _ = std::fs::remove_dir_all(dir.join("out"));
            let _ = std::fs::remove_dir_all(dir.join(".connectd"));
            continue;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        done += 1;
    }
    panic!("the runs ended before {kills} kills could land: make the input longer");
}

/// Spawns `connectd` in `dir` with its stderr captured (see `spawn_captured`).
pub fn spawn(dir: &Path, config: &Path, extra: &[&str]) -> Child {
    spawn_captured(
        connectd()
            .current_dir(dir)
            .args(["--admin-addr", "off"])
            .args(extra)
            .arg("--config")
            .arg(config),
    )
}

/// Spawns a command with stdout discarded and stderr drained by a thread (a full pipe
/// would block the process) and kept for `stderr_of` and for the message of a missed
/// deadline.
pub fn spawn_captured(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    CAPTURED
        .lock()
        .unwrap()
        .insert(child.id(), (text, Some(reader)));
    child
}

type Captured = (Arc<Mutex<String>>, Option<std::thread::JoinHandle<()>>);
static CAPTURED: Mutex<BTreeMap<u32, Captured>> = Mutex::new(BTreeMap::new());

/// What a `spawn`ed child wrote to stderr; complete once the child has exited.
pub fn stderr_of(child: &Child) -> String {
    let mut map = CAPTURED.lock().unwrap();
    let Some((text, reader)) = map.get_mut(&child.id()) else {
        return String::new();
    };
    if let Some(r) = reader.take() {
        let _ = r.join();
    }
    let out = text.lock().unwrap().clone();
    out
}

/// The last `max` bytes of what a `spawn`ed child has written to stderr so far.
pub fn stderr_tail(child: &Child, max: usize) -> String {
    let map = CAPTURED.lock().unwrap();
    let Some((text, _)) = map.get(&child.id()) else {
        return String::new();
    };
    let all = text.lock().unwrap();
    let mut start = all.len().saturating_sub(max);
    while !all.is_char_boundary(start) {
        start += 1;
    }
    all[start..].to_string()
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
            let _ = child.wait();
            panic!(
                "connectd did not finish within {limit:?}; the end of its stderr:\n{}",
                stderr_tail(child, 8000)
            );
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

/// One HTTP/1.1 request on loopback: (status code, body).
pub fn http(method: &str, port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    http_with_body(method, port, path, token, "")
}

/// `http` with a JSON request body.
pub fn http_with_body(
    method: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{BufRead, Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Headers, then Content-Length bytes (a server may keep the connection open), else
    // everything up to the close.
    let mut reader = std::io::BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut length: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let mut bytes = Vec::new();
    match length {
        Some(n) => {
            bytes.resize(n, 0);
            reader.read_exact(&mut bytes).unwrap();
        }
        None => {
            reader.read_to_end(&mut bytes).unwrap();
        }
    }
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of `GET path`, or None when the connection fails or is reset (a
/// server still starting, or not there yet).
fn try_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until the admin server on `port` answers `/readyz` with 200.
pub fn wait_for_admin(port: u16) {
    let started = Instant::now();
    while try_status(port, "/readyz") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the admin server on {port} never got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `connectd` in `dir` with an admin server on a free port and `args` (e.g.
/// `--config` and files); returns once the server is ready.
pub fn start_worker(dir: &Path, args: &[&str]) -> (Child, u16) {
    let port = free_port();
    let child = spawn_captured(
        connectd()
            .current_dir(dir)
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(args),
    );
    wait_for_admin(port);
    (child, port)
}

/// Starts an HTTP server on a background thread; returns its base URL.
pub fn serve(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// The records of the Avro container file `path` (relative to `dir`), as JSON lines,
/// read by connectd itself.
pub fn avro_as_jsonl(dir: &Path, path: &str) -> String {
    let out_path = format!("{path}.read.jsonl");
    let cfg = write_pipeline(
        dir,
        "read-avro.yaml",
        &format!(
            "name: read-avro\nsources:\n  f: {{type: file, path: {path}, format: avro}}\nsinks:\n  j: {{type: jsonl, inputs: [f], path: {out_path}}}\n"
        ),
    );
    let _ = std::fs::remove_dir_all(dir.join(".connectd/read-avro"));
    let _ = std::fs::remove_file(dir.join(&out_path));
    let out = run_to_end(dir, &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read(dir.join(out_path))
}

/// The JSON lines of a file, none while it does not exist.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A worker that is killed when the test lets go of it (a failed assertion included).
pub struct Worker(pub Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
