//! The `mysql` sink's behaviour on a real MariaDB/MySQL: upserts, rejected rows to the
//! DLQ with the server's message, and the transaction of rows + checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::mysql::*;
use common::*;

#[test]
fn upserts_keep_the_latest_row_per_key_and_rejected_rows_go_to_the_dlq() {
    let (db, url) = fresh_database("sink");
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..300 {
        let ticker = ["BBCA", "TLKM", "ASII"][i % 3];
        input.push_str(&format!("{{\"ticker\":\"{ticker}\",\"price\":{i},\"day\":\"2024-01-0{}\",\"at\":1700000000{:03}}}\n", 1 + i % 3, i));
    }
    // Too long for VARCHAR(8): the server rejects it; the other rows still go in.
    input.push_str(
        "{\"ticker\":\"WAYTOOLONGTICKER\",\"price\":1,\"day\":\"2024-01-01\",\"at\":1}\n",
    );
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: upsert
checkpoint: {{interval: 50ms}}
errors:
  tolerance: all
  dlq: {{path: dlq.jsonl}}
sources:
  lines: {{type: file, path: in.jsonl}}
sinks:
  latest:
    type: mysql
    inputs: [lines]
    url: {url}
    table: latest_price
    mode: upsert
    key: [ticker, day]
    batch_size: 7
    columns:
      ticker: ticker
      day: day
      price: price
      seen_at: {{field: at, type: datetime}}
    create_table:
      ticker: VARCHAR(8) NOT NULL
      day: DATE NOT NULL
      price: BIGINT NOT NULL
      seen_at: DATETIME(3) NOT NULL
"#
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = query(&[&format!(
        "SELECT GROUP_CONCAT(CONCAT(ticker, ' ', day, ' ', price, ' ', seen_at) ORDER BY ticker SEPARATOR '; ') FROM {db}.latest_price"
    )])
    .unwrap();
    // The last of each (ticker, day): i = 297 (BBCA), 298 (TLKM), 299 (ASII).
    assert_eq!(
        rows,
        "ASII 2024-01-03 299 2023-11-14 22:13:20.299; BBCA 2024-01-01 297 2023-11-14 22:13:20.297; TLKM 2024-01-02 298 2023-11-14 22:13:20.298"
    );
    let dlq = read(dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert!(
        dlq.contains("WAYTOOLONGTICKER") && dlq.contains("MySQL error 1406"),
        "{dlq}"
    );
    let checkpoint = query(&[&format!("SELECT checkpoint_id FROM {db}.connectd_checkpoints WHERE pipeline = 'upsert' AND sink = 'latest'")]);
    assert!(
        checkpoint.is_some(),
        "the checkpoint row is written with the data"
    );
    query(&[&format!("DROP DATABASE {db}")]);
}

#[test]
fn a_missing_database_is_a_clear_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\":1}\n").unwrap();
    let url = format!(
        "{}/connectd_surely_missing_db",
        server_url().trim_end_matches('/')
    );
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!("name: nodb\nsources:\n  l: {{type: file, path: in.jsonl}}\nsinks:\n  m: {{type: mysql, inputs: [l], url: '{url}', table: t, columns: [a]}}\n"),
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1049") && stderr.contains("CREATE DATABASE"),
        "{stderr}"
    );
}

/// `DELETE /connectors/{name}/offsets` on a stopped mysql pipeline deletes its
/// checkpoint row: the next run writes the whole input again after what is there.
#[test]
fn an_offset_reset_deletes_the_checkpoint_row_and_the_next_run_starts_over() {
    use std::time::{Duration, Instant};
    let (db, url) = fresh_database("reset");
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "keepalive.yaml",
        "name: keepalive\nsources:\n  gen: {type: trades, seed: 1, rate: 20, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/k.csv, columns: [id]}\n",
    );
    write_pipeline(
        dir.path(),
        "once.yaml",
        &format!(
            "name: once_db\nsources:\n  gen: {{type: trades, seed: 2, rate: 0, count: 200}}\nsinks:\n  out:\n    type: mysql\n    inputs: [gen]\n    url: {url}\n    table: trades\n    columns: {{id: id, volume: volume}}\n    create_table: {{id: CHAR(36) NOT NULL, volume: BIGINT NOT NULL}}\n"
        ),
    );
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "keepalive.yaml", "once.yaml"]),
    );
    wait_for_admin(port);
    let status = || {
        let (_, body) = http("GET", port, "/connectors/once_db/status", None);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let wait_finished = |after: &serde_json::Value| {
        let started = Instant::now();
        loop {
            let s = status();
            if s["state"] == "FINISHED" && s["since"] != after["since"] {
                return s;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = wait_finished(&serde_json::Value::Null);
    let rows = || query(&[&format!("SELECT COUNT(*) FROM {db}.trades")]).unwrap();
    let checkpoints = || {
        query(&[&format!(
            "SELECT COUNT(*) FROM {db}.connectd_checkpoints WHERE pipeline = 'once_db'"
        )])
        .unwrap()
    };
    assert_eq!((rows(), checkpoints()), ("200".into(), "1".into()));
    let (code, body) = http("DELETE", port, "/connectors/once_db/offsets", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(checkpoints(), "0");
    assert_eq!(
        http("POST", port, "/connectors/once_db/restart", None).0,
        202
    );
    wait_finished(&first);
    assert_eq!(rows(), "400", "the whole input again after what was there");
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    query(&[&format!("DROP DATABASE {db}")]);
}
