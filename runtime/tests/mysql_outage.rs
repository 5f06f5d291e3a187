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

fn mariadb(action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mariadb.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/mariadb.sh {action} failed");
}

#[test]
fn a_ten_second_database_outage_loses_and_duplicates_nothing() {
    let (db, url) = fresh_database("outage");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: outage
checkpoint: {{interval: 200ms}}
sources:
  trades: {{type: trades, seed: 5, rate: 2000, count: 40000, start: 0}}
sinks:
  out:
    type: mysql
    inputs: [trades]
    url: {url}
    table: trades
    columns: [id, ticker, volume]
    create_table: {{id: CHAR(36) NOT NULL, ticker: VARCHAR(8) NOT NULL, volume: BIGINT NOT NULL}}
"#
        ),
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
