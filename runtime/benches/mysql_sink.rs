//! Benchmark: rows per second into MariaDB/MySQL through the `mysql` sink with
//! exactly-once on (rows and checkpoint row in one transaction per checkpoint), batch
//! 1 000: `trades` generator (rate 0) → mysql, run by the real `connectd` binary.
//!
//! The yardstick, in the same run: the `mariadb` command-line client loading the same
//! rows (written out once by connectd's `jsonl` sink) as 1 000-row INSERT statements
//! into an identical table, all in one transaction (its fastest way: one commit, as
//! `mysqldump --no-autocommit` loads; connectd commits once per checkpoint). Both tables are checked equal: row count and a checksum
//! over every column.
//!
//! Needs the test server: `scripts/mariadb.sh start` (or `MYSQL_URL`) and the
//! `mariadb` client. Run: `cargo bench -p connectd-runtime --bench mysql_sink` (env
//! `ROWS`, `RUNS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use mysql_async::prelude::Queryable;

const TABLE: &str = "id CHAR(36) NOT NULL, created_at DATETIME(3) NOT NULL, ticker VARCHAR(8) NOT NULL, sector VARCHAR(32) NOT NULL, volume BIGINT NOT NULL, market_cap DOUBLE NOT NULL, price DOUBLE NOT NULL";

/// The `mariadb` client's connection flags for a `mysql://user[:password]@host[:port]` URL.
fn client_args(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or_default();
    let (user, host) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, password) = user
        .split_once(':')
        .map_or((user, None), |(u, p)| (u, Some(p)));
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let mut args = vec![
        "--protocol=tcp".to_string(),
        format!("-h{host}"),
        format!("-P{port}"),
        format!("-u{user}"),
    ];
    if let Some(p) = password {
        args.push(format!("-p{p}"));
    }
    args
}

/// SQL text of a string value.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The rows connectd wrote as JSON lines → INSERT statements of 1 000 rows each.
fn insert_statements(jsonl: &Path, sql: &Path, table: &str) -> u64 {
    let input = std::io::BufReader::new(std::fs::File::open(jsonl).unwrap());
    let mut out = std::io::BufWriter::new(std::fs::File::create(sql).unwrap());
    writeln!(out, "SET autocommit=0;").unwrap();
    let mut n = 0u64;
    for line in input.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let text = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {v}"))
                .to_string()
        };
        // RFC 3339 with milliseconds → a DATETIME(3) literal.
        let created = text("created_at")
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string();
        if n.is_multiple_of(1000) {
            if n > 0 {
                writeln!(out, ";").unwrap();
            }
            write!(out, "INSERT INTO {table} VALUES ").unwrap();
        } else {
            write!(out, ",").unwrap();
        }
        write!(
            out,
            "({},{},{},{},{},{},{})",
            quoted(&text("id")),
            quoted(&created),
            quoted(&text("ticker")),
            quoted(&text("sector")),
            v["volume"],
            v["market_cap"],
            v["price"]
        )
        .unwrap();
        n += 1;
    }
    writeln!(out, ";\nCOMMIT;").unwrap();
    out.flush().unwrap();
    n
}

fn main() {
    let rows: u64 = common::env_or("ROWS", 500_000, 3_000);
    let runs: usize = common::env_or("RUNS", 3, 1);
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
    // The rows, once, as JSON lines: what the client loads.
    let jsonl = common::trades_jsonl(dir.path(), rows);
    let inserts = dir.path().join("inserts.sql");
    assert_eq!(insert_statements(&jsonl, &inserts, "trades"), rows);
    let checksum = "SELECT CONCAT(COUNT(*), '/', SUM(CRC32(CONCAT_WS('|', id, created_at, ticker, sector, volume, market_cap, price)))) FROM";
    let (mut results, mut client) = (Vec::new(), Vec::new());
    for _ in 0..runs {
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
  trades: {{type: trades, seed: 7, rate: 0, count: {rows}, start: 0}}
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

        // The yardstick: the same rows through the client, into an identical table.
        sql(vec![
            "DROP DATABASE IF EXISTS connectd_bench_client".into(),
            "CREATE DATABASE connectd_bench_client".into(),
            format!("CREATE TABLE connectd_bench_client.trades ({TABLE})"),
        ]);
        let started = Instant::now();
        let status = Command::new("mariadb")
            .args(client_args(&server))
            .arg("connectd_bench_client")
            .stdin(std::fs::File::open(&inserts).unwrap())
            .stdout(Stdio::null())
            .status()
            .expect("the mariadb client (scripts/mariadb.sh installs it)");
        let secs = started.elapsed().as_secs_f64();
        assert!(status.success(), "the mariadb client failed");
        client.push(rows as f64 / secs);
        let sums = |db: &str| {
            rt.block_on(async {
                let mut conn = mysql_async::Conn::from_url(server.clone()).await.unwrap();
                let s: Option<String> = conn
                    .query_first(format!("{checksum} {db}.trades"))
                    .await
                    .unwrap();
                conn.disconnect().await.unwrap();
                s.unwrap()
            })
        };
        let (ours, theirs) = (sums("connectd_bench"), sums("connectd_bench_client"));
        assert_eq!(
            ours, theirs,
            "connectd's table and the client's differ (count/checksum)"
        );
    }
    let best = results.iter().copied().fold(0.0, f64::max);
    let (connectd, client) = (common::median(results), common::median(client));
    println!("mysql_sink: {rows} rows, 7 columns, batch 1000, exactly-once, {runs} runs");
    println!(
        "| connectd rows/s median | best | mariadb client, 1 000-row INSERTs, rows/s median |"
    );
    println!("|---|---|---|");
    println!("| {connectd:.0} | {best:.0} | {client:.0} |");
    common::report(&common::Row {
        path: "trades → mysql, exactly once",
        connectd,
        unit: "rows/s",
        yardstick: "mariadb client, 1 000-row INSERTs, one transaction",
        yardstick_figure: client,
        target: common::Target::AtLeast(0.8),
        checked: "row count and checksum of every column equal",
    });
    sql(vec![
        "DROP DATABASE IF EXISTS connectd_bench".into(),
        "DROP DATABASE IF EXISTS connectd_bench_client".into(),
    ]);
}
