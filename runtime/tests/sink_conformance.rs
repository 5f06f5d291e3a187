//! The sink conformance suite: a 100 000-record generator → sink pipeline with
//! checkpoints every 100 ms is SIGKILLed at 10+ random moments and restarted; afterwards
//! the sink holds exactly the expected rows (count and a checksum over the values),
//! compared with an uninterrupted run into a second destination.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::mysql::*;
use common::*;
use rand::Rng;

fn pipeline(sink: &str) -> String {
    format!(
        r#"
name: conformance
checkpoint: {{interval: 100ms}}
sources:
  trades: {{type: trades, seed: 3, rate: 0, count: 100000, start: 2024-01-01T00:00:00Z, step: 1ms}}
sinks:
  out:
    inputs: [trades]
{sink}
"#
    )
}

/// Runs the pipeline to completion with `kills` SIGKILLs at random moments.
fn run_with_kills(dir: &Path, cfg: &Path, kills: usize, reset: &dyn Fn()) {
    let mut rng = rand::rng();
    let (mut done, mut attempts) = (0, 0);
    while done < kills {
        attempts += 1;
        assert!(attempts < 200, "too many restarts");
        let mut child = spawn(dir, cfg, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(50..700)));
        if child.try_wait().unwrap().is_some() {
            // It finished before the kill: start over to kill it mid-run.
            let _ = std::fs::remove_dir_all(dir.join(".connectd"));
            reset();
            continue;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        done += 1;
    }
    let mut child = spawn(dir, cfg, &[]);
    let status = wait_with_deadline(&mut child, Duration::from_secs(300));
    assert!(status.success(), "the final run failed");
}

#[test]
fn mysql_sink_is_exactly_once_across_sigkills() {
    let (reference_db, reference_url) = fresh_database("conf_ref");
    let (crashed_db, crashed_url) = fresh_database("conf_crash");
    let sink = |url: &str| {
        format!(
            r#"    type: mysql
    url: {url}
    table: trades
    batch_size: 1000
    columns:
      id: id
      created_at: {{field: created_at, type: datetime}}
      ticker: ticker
      sector: sector
      volume: volume
      price: price
    create_table:
      id: CHAR(36) NOT NULL
      created_at: DATETIME(3) NOT NULL
      ticker: VARCHAR(8) NOT NULL
      sector: VARCHAR(32) NOT NULL
      volume: BIGINT NOT NULL
      price: DOUBLE NOT NULL"#
        )
    };
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &pipeline(&sink(&reference_url)));
    let out = run_to_end(reference.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline(&sink(&crashed_url)));
    let reset = || {
        query(&[
            &format!("DROP TABLE IF EXISTS {crashed_db}.trades"),
            &format!("DELETE FROM {crashed_db}.connectd_checkpoints"),
        ]);
    };
    run_with_kills(dir.path(), &cfg, 10, &reset);

    // No primary key on purpose: a duplicate would show in the count.
    let summary = |db: &str| {
        query(&[&format!(
            "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT id), '/', SUM(volume), '/', \
             SUM(CRC32(CONCAT_WS('|', id, created_at, ticker, sector, volume, price)))) FROM {db}.trades"
        )])
        .unwrap()
    };
    let want = summary(&reference_db);
    assert!(want.starts_with("100000/100000/"), "{want}");
    assert_eq!(summary(&crashed_db), want);
    query(&[
        &format!("DROP DATABASE {reference_db}"),
        &format!("DROP DATABASE {crashed_db}"),
    ]);
}

#[test]
fn csv_sink_is_exactly_once_across_sigkills() {
    let sink = "    type: csv\n    path: out/trades.csv\n    columns: [id, created_at, ticker, sector, volume, market_cap, price]";
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &pipeline(sink));
    assert!(run_to_end(reference.path(), &cfg).status.success());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline(sink));
    let out_dir = dir.path().join("out");
    run_with_kills(dir.path(), &cfg, 10, &|| {
        let _ = std::fs::remove_dir_all(&out_dir);
    });
    let want = read(reference.path().join("out/trades.csv"));
    assert_eq!(want.lines().count(), 100_001);
    assert!(
        read(dir.path().join("out/trades.csv")) == want,
        "the CSV differs from the uninterrupted run's"
    );
}
