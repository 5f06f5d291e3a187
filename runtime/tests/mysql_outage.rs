//! The database goes away for 10 s mid-run (the server process is stopped and started
//! again): the pipeline stalls, retries, and ends with exactly the expected rows. Runs
//! against the server `scripts/mariadb.sh` manages (it stops and starts it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mysql::*;
use common::*;

/// Held by each test: the first stops the server that the second's proxy stands in
/// front of, and run side by side (as the test harness does), the second saw a server
/// gone, not one that stopped answering, and failed.
static SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mariadb(action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mariadb.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/mariadb.sh {action} failed");
}

/// A pipeline `name` of generated trades (`trades` options) into table `trades` of the
/// database at `url`, exactly once, checkpoints every 200 ms.
fn trades_to_mysql(dir: &Path, name: &str, trades: &str, url: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"
name: {name}
checkpoint: {{interval: 200ms}}
sources:
  trades: {{type: trades, {trades}, start: 0}}
sinks:
  out:
    type: mysql
    inputs: [trades]
    url: {url}
    table: trades
    columns: [id, ticker, volume]
    create_table: {{id: CHAR(36) NOT NULL, ticker: VARCHAR(8) NOT NULL, volume: BIGINT NOT NULL}}
"#
    );
    write_pipeline(dir, "p.yaml", &yaml)
}

#[test]
fn a_ten_second_database_outage_loses_and_duplicates_nothing() {
    let _alone = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let (db, url) = fresh_database("outage");
    let dir = tempfile::tempdir().unwrap();
    let cfg = trades_to_mysql(
        dir.path(),
        "outage",
        "seed: 5, rate: 2000, count: 40000",
        &url,
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running when the database goes away"
    );
    mariadb("stop");
    std::thread::sleep(Duration::from_secs(10));
    let alive_during_outage = child.try_wait().unwrap().is_none();
    mariadb("start");
    assert!(
        alive_during_outage,
        "the pipeline must wait for the database, not fail"
    );
    let status = wait_with_deadline(&mut child, Duration::from_secs(180));
    assert!(status.success(), "{}", stderr_of(&child));
    let summary = query(&[&format!(
        "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT id)) FROM {db}.trades"
    )])
    .unwrap();
    assert_eq!(summary, "40000/40000");
    query(&[&format!("DROP DATABASE {db}")]);
}

/// The database stops answering mid-run for 5 s, without closing the connection (no
/// error, so no retry): the worker says which operation has not returned, each
/// `CONNECTD_SLOW_OPERATION_SECS` (here 1 s), and when the server answers again the
/// pipeline ends with exactly the expected rows. Before, such a stall was silent.
#[test]
fn a_database_that_stops_answering_is_logged_and_then_loses_nothing() {
    let _alone = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    let (db, url) = fresh_database("stall");
    let server = server_url();
    let host_port = server.rsplit('@').next().unwrap().trim_end_matches('/');
    let proxy = proxy::Proxy::start(0, host_port.to_string());
    // The driver would move a connection to 127.0.0.1 onto the server's Unix socket.
    let url = url.replace(host_port, &format!("127.0.0.1:{}", proxy.port)) + "?prefer_socket=false";
    let dir = tempfile::tempdir().unwrap();
    let cfg = trades_to_mysql(
        dir.path(),
        "stall",
        "seed: 6, rate: 2000, count: 16000",
        &url,
    );
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .env("CONNECTD_SLOW_OPERATION_SECS", "1")
            .args(["--admin-addr", "off", "--config"])
            .arg(&cfg),
    );
    std::thread::sleep(Duration::from_secs(3));
    proxy.freeze();
    std::thread::sleep(Duration::from_secs(5));
    let alive = child.try_wait().unwrap().is_none();
    proxy.thaw();
    assert!(alive, "the pipeline waits for the server");
    let status = wait_with_deadline(&mut child, Duration::from_secs(180));
    let log = stderr_of(&child);
    assert!(status.success(), "{log}");
    assert!(
        log.contains("sink `out` has not returned after")
            || log.contains("commit of sink `out` has not returned after")
            || log.contains("pre-commit of sink `out` has not returned after"),
        "the stall is logged: {log}"
    );
    let summary = query(&[&format!(
        "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT id)) FROM {db}.trades"
    )])
    .unwrap();
    assert_eq!(summary, "16000/16000");
    query(&[&format!("DROP DATABASE {db}")]);
}
