//! The database goes away for 10 s mid-run and comes back: the pipeline stalls,
//! retries, and ends with exactly the expected rows — for the Cassandra and MongoDB
//! sinks, against their emulators (MySQL: `mysql_outage.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn pipeline(sink: &str) -> String {
    format!(
        "name: outage\ncheckpoint: {{interval: 200ms}}\nsources:\n  trades: {{type: trades, seed: 9, rate: 2500, count: 40000, start: 0}}\nsinks:\n  out:\n    inputs: [trades]\n{sink}\n"
    )
}

/// Runs the pipeline; `outage` is called 4 s in and must return after the database is back.
fn run_through_outage(dir: &Path, yaml: &str, outage: &dyn Fn()) {
    let cfg = write_pipeline(dir, "p.yaml", yaml);
    let mut child = spawn(dir, &cfg, &[]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running when the database goes away"
    );
    outage();
    let status = wait_with_deadline(&mut child, Duration::from_secs(240));
    assert!(status.success(), "{}", stderr_of(&child));
}

#[test]
fn cassandra_outage_loses_and_duplicates_nothing() {
    let (addr, outage) = common::cql_server::start_emulator();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "    type: cassandra\n    contact_points: [\"{addr}\"]\n    keyspace: outage\n    table: trades\n    consistency: one\n    columns: [id, volume]\n    create_schema:\n      primary_key: id\n      columns: {{id: text, volume: bigint}}"
    );
    run_through_outage(dir.path(), &pipeline(&sink), &|| {
        outage.go_down_for(Duration::from_secs(10));
        std::thread::sleep(Duration::from_secs(11));
    });
    let (count, total) = common::mysql::rt().block_on(async {
        use futures_util::StreamExt;
        let session = common::cql_server::session(&addr).await;
        let pager = session
            .query_iter("SELECT id, volume FROM outage.trades", ())
            .await
            .unwrap();
        let mut rows = pager.rows_stream::<(String, i64)>().unwrap();
        let (mut n, mut sum) = (0u64, 0i64);
        while let Some(r) = rows.next().await {
            let (_, v) = r.unwrap();
            n += 1;
            sum += v;
        }
        (n, sum)
    });
    assert_eq!(count, 40_000);
    assert!(total > 0);
}

#[test]
fn mongodb_outage_loses_and_duplicates_nothing() {
    if std::env::var("MONGODB_URL").is_ok() {
        eprintln!("MONGODB_URL is set: this test stops and starts its own emulator instance only");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mongo-emulator.sh");
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let emulator = |action: &str| {
        let status = Command::new("bash")
            .arg(&script)
            .arg(action)
            .env("MONGODB_PORT", &port)
            .env("MONGODB_DATA_DIR", data.path())
            .status()
            .unwrap();
        assert!(status.success(), "mongo-emulator.sh {action}");
    };
    emulator("start");
    let uri = format!("mongodb://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("    type: mongodb\n    uri: {uri}\n    database: outage\n    collection: trades\n    id: [id]\n    transactions: off");
    run_through_outage(dir.path(), &pipeline(&sink), &|| {
        emulator("stop");
        std::thread::sleep(Duration::from_secs(10));
        emulator("start");
    });
    let count = common::mysql::rt().block_on(async {
        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
        client
            .database("outage")
            .collection::<mongodb::bson::Document>("trades")
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap()
    });
    emulator("stop");
    assert_eq!(count, 40_000);
}
