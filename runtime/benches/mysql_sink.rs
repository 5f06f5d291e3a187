//! Benchmark: rows per second into MariaDB/MySQL through the `mysql` sink with
//! exactly-once on (rows and checkpoint row in one transaction per checkpoint), batch
//! 1 000: `trades` generator (rate 0) → mysql, run by the real `connectd` binary.
//!
//! Needs the test server: `scripts/mariadb.sh start` (or `MYSQL_URL`). Run:
//! `cargo bench -p connectd-runtime --bench mysql_sink` (env `ROWS`, `RUNS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Instant;

use mysql_async::prelude::Queryable;

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let server =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |stmts: Vec<String>| {
        rt.block_on(async {
            let mut conn = mysql_async::Conn::from_url(server.clone())
                .await
                .expect("start the server: scripts/mariadb.sh start");
            let mut last: Option<u64> = None;
            for s in stmts {
                last = conn.query_first(s).await.unwrap();
            }
            conn.disconnect().await.unwrap();
            last
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for run in 0..runs {
        sql(vec![
            "DROP DATABASE IF EXISTS connectd_bench".into(),
            "CREATE DATABASE connectd_bench".into(),
        ]);
        let _ = std::fs::remove_dir_all(dir.path().join(".connectd"));
        let cfg = dir.path().join("bench.yaml");
        std::fs::write(
            &cfg,
            format!(
                r#"name: mysql-bench
checkpoint: {{interval: 1s}}
batch_size: 1000
sources:
  trades: {{type: trades, seed: {run}, rate: 0, count: {rows}, start: 0}}
sinks:
  out:
    type: mysql
    inputs: [trades]
    url: {}/connectd_bench
    table: trades
    batch_size: 1000
    columns:
      id: id
      created_at: {{field: created_at, type: datetime}}
      ticker: ticker
      sector: sector
      volume: volume
      market_cap: market_cap
      price: price
    create_table:
      id: CHAR(36) NOT NULL
      created_at: DATETIME(3) NOT NULL
      ticker: VARCHAR(8) NOT NULL
      sector: VARCHAR(32) NOT NULL
      volume: BIGINT NOT NULL
      market_cap: DOUBLE NOT NULL
      price: DOUBLE NOT NULL
"#,
                server.trim_end_matches('/')
            ),
        )
        .unwrap();
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_connectd"))
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .args(["--admin-addr", "off", "--config", "bench.yaml"])
            .status()
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(status.success());
        let count = sql(vec!["SELECT COUNT(*) FROM connectd_bench.trades".into()]).unwrap_or(0);
        assert_eq!(count, rows, "every row must be there exactly once");
        results.push(rows as f64 / secs);
    }
    results.sort_by(|a, b| a.total_cmp(b));
    println!("mysql_sink: {rows} rows, 7 columns, batch 1000, exactly-once, {runs} runs");
    println!("| rows/s median | rows/s best |");
    println!("|---|---|");
    println!(
        "| {:.0} | {:.0} |",
        results[results.len() / 2],
        results[results.len() - 1]
    );
    sql(vec!["DROP DATABASE IF EXISTS connectd_bench".into()]);
}
