//! Benchmark: documents per second into MongoDB through the `mongodb` sink, exactly
//! once (`id: [id]`: each document's `_id` from its `id`, so a replay is recognised;
//! transactions where the server has them), checkpoint every second: `trades` generator (rate 0) → mongodb, run by the
//! real `connectd` binary.
//!
//! The yardstick, in the same run: the MongoDB Rust driver's own bulk loop —
//! `insert_many` of 1 000 documents at a time — loading the same records (written out
//! once by connectd's `jsonl` sink, `_id` set from `id`) into another collection. Both
//! collections are then read back and must hold the same documents.
//!
//! Needs a server: the emulator (`scripts/mongo-emulator.sh start`, which makes the
//! figures the emulator's) or a real one by `MONGODB_URL`. Run:
//! `cargo bench -p connectd-runtime --bench mongodb_sink` (env `ROWS`, `RUNS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

const DATABASE: &str = "connectd_bench";

/// Every document of a collection, each as canonical JSON (keys sorted), sorted.
async fn documents(db: &mongodb::Database, collection: &str) -> Vec<String> {
    let mut docs: Vec<String> = db
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let v: serde_json::Value = Bson::Document(d).into_relaxed_extjson();
            // serde_json's map is ordered by key: the text is canonical.
            v.to_string()
        })
        .collect();
    docs.sort();
    docs
}

fn main() {
    let rows: u64 = common::env_or("ROWS", 100_000, 2_000);
    let runs: usize = common::env_or("RUNS", 3, 1);
    let uri = std::env::var("MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(mongodb::Client::with_uri_str(&uri))
        .expect("start the server: scripts/mongo-emulator.sh start");
    let db = client.database(DATABASE);
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<Document>> = common::json_lines(&common::trades_jsonl(dir.path(), rows))
        .into_iter()
        .map(|mut o| {
            let id = o["id"].clone();
            o.insert("_id".into(), id);
            mongodb::bson::to_document(&o).unwrap()
        })
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[Document]>::to_vec)
        .collect();
    std::fs::write(
        dir.path().join("bench.yaml"),
        format!(
            r#"name: mongodb-bench
checkpoint: {{interval: 1s}}
batch_size: 1000
sources:
  trades: {{type: trades, seed: 7, rate: 0, count: {rows}, start: 0}}
sinks:
  out: {{type: mongodb, inputs: [trades], uri: "{uri}", database: {DATABASE}, collection: connectd, id: [id]}}
"#
        ),
    )
    .unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        rt.block_on(async { db.drop().await }).unwrap();
        let usage = common::run_connectd(dir.path(), "bench.yaml");
        ours.push(rows as f64 / usage.wall_seconds);
        let started = Instant::now();
        rt.block_on(async {
            let c = db.collection::<Document>("driver");
            for batch in &batches {
                c.insert_many(batch.clone()).await.unwrap();
            }
        });
        theirs.push(rows as f64 / started.elapsed().as_secs_f64());
        let (got, want) = rt.block_on(async {
            (
                documents(&db, "connectd").await,
                documents(&db, "driver").await,
            )
        });
        assert_eq!(got.len() as u64, rows, "connectd's documents");
        assert!(
            got == want,
            "connectd's documents differ from the driver's: first {:?} / {:?}",
            got.first(),
            want.first()
        );
    }
    let (connectd, driver) = (common::median(ours), common::median(theirs));
    println!("mongodb_sink: {rows} documents, exactly-once (_id from id), {runs} runs, {uri}");
    common::report(&common::Row {
        path: "trades → mongodb, exactly once",
        connectd,
        unit: "docs/s",
        yardstick: "the driver's insert_many, 1 000 per call",
        yardstick_figure: driver,
        target: common::Target::AtLeast(0.8),
        checked: "every document equal",
    });
    rt.block_on(async { db.drop().await }).unwrap();
}
