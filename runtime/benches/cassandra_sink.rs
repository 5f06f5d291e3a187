//! Benchmark: rows per second into Cassandra through the `cassandra` sink, exactly
//! once (idempotent upserts written once their checkpoint is complete, checkpoint every
//! second): `trades` generator (rate 0) → cassandra, run by the real `connectd` binary.
//!
//! The yardstick, in the same run: the scylla driver's own bulk loop — one prepared
//! INSERT executed for every row with as many writes in flight as the sink's default
//! concurrency — loading the same rows (written out once by connectd's `jsonl` sink)
//! into an identical table. Both tables are then read back and must hold the same rows.
//!
//! The server: the in-process CQL emulator of the tests (kassandra; the figures are
//! then the emulator's), or a real Cassandra/ScyllaDB by `CASSANDRA_URL` (host:port).
//! Run: `cargo bench -p connectd-runtime --bench cassandra_sink` (env `ROWS`, `RUNS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../tests/common/cql_server.rs"]
mod cql_server;

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};

/// Writes in flight at once: the sink's default `concurrency`.
const IN_FLIGHT: usize = 64;

const COLUMNS: &str = "id text PRIMARY KEY, ticker text, sector text, volume bigint, price double";

type TradeRow = (String, String, String, i64, f64);

/// Every row of `keyspace.table`, sorted.
async fn rows_of(session: &scylla::client::session::Session, table: &str) -> Vec<TradeRow> {
    let mut rows: Vec<TradeRow> = session
        .query_iter(
            format!("SELECT id, ticker, sector, volume, price FROM connectd_bench.{table}"),
            (),
        )
        .await
        .unwrap()
        .rows_stream::<TradeRow>()
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn main() {
    let rows: u64 = common::env_or("ROWS", 100_000, 2_000);
    let runs: usize = common::env_or("RUNS", 3, 1);
    let addr = cql_server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let session = rt.block_on(cql_server::session(&addr));
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<TradeRow> = common::json_lines(&common::trades_jsonl(dir.path(), rows))
        .into_iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["ticker"].as_str().unwrap().to_string(),
                o["sector"].as_str().unwrap().to_string(),
                o["volume"].as_i64().unwrap(),
                o["price"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut want = input.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let table = format!("connectd_{run}");
        std::fs::write(
            dir.path().join("bench.yaml"),
            format!(
                r#"name: cassandra-bench-{run}
checkpoint: {{interval: 1s}}
batch_size: 1000
sources:
  trades: {{type: trades, seed: 7, rate: 0, count: {rows}, start: 0}}
sinks:
  out:
    type: cassandra
    inputs: [trades]
    contact_points: ["{addr}"]
    keyspace: connectd_bench
    table: {table}
    consistency: one
    columns: [id, ticker, sector, volume, price]
    create_schema:
      primary_key: id
      columns: {{id: text, ticker: text, sector: text, volume: bigint, price: double}}
"#
            ),
        )
        .unwrap();
        let usage = common::run_connectd(dir.path(), "bench.yaml");
        ours.push(rows as f64 / usage.wall_seconds);

        let driver = format!("driver_{run}");
        let started = Instant::now();
        rt.block_on(async {
            session
                .query_unpaged(
                    format!("CREATE TABLE connectd_bench.{driver} ({COLUMNS})"),
                    (),
                )
                .await
                .unwrap();
            let insert = session
                .prepare(format!(
                    "INSERT INTO connectd_bench.{driver} (id, ticker, sector, volume, price) VALUES (?, ?, ?, ?, ?)"
                ))
                .await
                .unwrap();
            futures_util::stream::iter(&input)
                .map(|row| session.execute_unpaged(&insert, row))
                .buffer_unordered(IN_FLIGHT)
                .try_for_each(|_| async { Ok(()) })
                .await
                .unwrap();
        });
        theirs.push(rows as f64 / started.elapsed().as_secs_f64());

        let (got, loaded) = rt.block_on(async {
            (
                rows_of(&session, &table).await,
                rows_of(&session, &driver).await,
            )
        });
        assert_eq!(loaded, want, "the driver's rows");
        assert_eq!(got.len(), want.len(), "connectd's row count");
        assert!(got == want, "connectd's rows differ from the input");
    }
    let (connectd, driver) = (common::median(ours), common::median(theirs));
    println!("cassandra_sink: {rows} rows, exactly-once, {runs} runs, {addr}");
    common::report(&common::Row {
        path: "trades → cassandra, exactly once",
        connectd,
        unit: "rows/s",
        yardstick: "the driver's prepared INSERTs, 64 in flight",
        yardstick_figure: driver,
        target: common::Target::AtLeast(0.8),
        checked: "every row equal to the input's",
    });
}
