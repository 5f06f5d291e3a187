//! `DELETE /connectors/{name}/offsets` with the database sinks (csv is in
//! `admin_api.rs`): the sink's checkpoint is gone, and the next run writes the whole
//! input again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::mysql::rt;
use common::*;
use serde_json::Value;

/// Runs `pipeline` (200 records into `sink`) beside a pipeline that keeps the worker
/// up, resets it, runs it again; `checkpoints()` counts its stored checkpoints.
fn reset_and_run_again(pipeline: &str, sink: &str, checkpoints: &dyn Fn() -> usize) {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "keepalive.yaml",
        "name: keepalive\nsources:\n  gen: {type: trades, seed: 1, rate: 20, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/k.csv, columns: [id]}\n",
    );
    write_pipeline(
        dir.path(),
        "once.yaml",
        &format!("name: {pipeline}\nsources:\n  gen: {{type: trades, seed: 2, rate: 0, count: 200}}\nsinks:\n  out:\n    inputs: [gen]\n{sink}\n"),
    );
    let (mut child, port) = start_worker(dir.path(), &["--config", "keepalive.yaml", "once.yaml"]);
    let finished_after = |before: &Value| {
        let started = Instant::now();
        loop {
            let (_, body) = http("GET", port, &format!("/connectors/{pipeline}/status"), None);
            let s: Value = serde_json::from_str(&body).unwrap();
            if s["state"] == "FINISHED" && s["since"] != before["since"] {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{s}\n{}",
                stderr_tail(&child, 3000)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let written = || {
        let metrics = http("GET", port, "/metrics", None).1;
        metrics
            .lines()
            .find(|l| {
                l.starts_with("connectd_records_out_total{")
                    && l.contains(&format!("pipeline=\"{pipeline}\""))
                    && l.contains("kind=\"sink\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let first = finished_after(&Value::Null);
    assert_eq!((written(), checkpoints()), (200.0, 1));
    let (code, body) = http(
        "DELETE",
        port,
        &format!("/connectors/{pipeline}/offsets"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(checkpoints(), 0, "the checkpoint is still stored");
    assert_eq!(
        http(
            "POST",
            port,
            &format!("/connectors/{pipeline}/restart"),
            None
        )
        .0,
        204
    );
    finished_after(&first);
    // With its checkpoint, the second run would have had nothing left to write.
    assert_eq!(written(), 400.0, "the whole input again");
    assert_eq!(checkpoints(), 1);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

#[test]
fn mysql_offset_reset_deletes_the_checkpoint_row() {
    use common::mysql::{fresh_database, query};
    let (db, url) = fresh_database("reset");
    let sink = format!("    type: mysql\n    url: {url}\n    table: trades\n    columns: {{id: id, volume: volume}}\n    create_table: {{id: CHAR(36) NOT NULL, volume: BIGINT NOT NULL}}");
    let count = |sql: &str| query(&[sql]).unwrap().parse::<usize>().unwrap();
    let checkpoints = || {
        count(&format!(
            "SELECT COUNT(*) FROM {db}.connectd_checkpoints WHERE pipeline = 'once_db'"
        ))
    };
    reset_and_run_again("once_db", &sink, &checkpoints);
    // No key on the table: the second run's rows are there beside the first's.
    assert_eq!(count(&format!("SELECT COUNT(*) FROM {db}.trades")), 400);
    query(&[&format!("DROP DATABASE {db}")]);
}

#[test]
fn mongodb_offset_reset_deletes_the_checkpoint_document() {
    let url = std::env::var("MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let db = format!("reset_{}", rand::random::<u32>());
    let sink = format!("    type: mongodb\n    uri: {url}\n    database: {db}\n    collection: trades\n    id: [id]\n    mode: upsert");
    let checkpoints = || {
        rt().block_on(async {
            let client = mongodb::Client::with_uri_str(&url).await.unwrap();
            client
                .database(&db)
                .collection::<mongodb::bson::Document>("connectd_checkpoints")
                .count_documents(mongodb::bson::doc! {"_id": "once_m/out"})
                .await
                .unwrap() as usize
        })
    };
    reset_and_run_again("once_m", &sink, &checkpoints);
}

#[test]
fn cassandra_offset_reset_deletes_the_checkpoint_row() {
    let addr = common::cql_server::start();
    let keyspace = format!("reset_{}", rand::random::<u32>());
    let sink = format!("    type: cassandra\n    contact_points: [\"{addr}\"]\n    keyspace: {keyspace}\n    table: trades\n    consistency: one\n    columns: [id, volume]\n    create_schema:\n      primary_key: id\n      columns: {{id: text, volume: bigint}}");
    let checkpoints = || {
        rt().block_on(async {
            let session = common::cql_server::session(&addr).await;
            let rows = session
                .query_unpaged(
                    format!("SELECT checkpoint_id FROM {keyspace}.connectd_checkpoints WHERE pipeline = 'once_c' AND sink = 'out'").as_str(),
                    (),
                )
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            rows.rows_num()
        })
    };
    reset_and_run_again("once_c", &sink, &checkpoints);
}
