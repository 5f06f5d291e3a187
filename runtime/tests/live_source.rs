//! Exactly-once with a live source that never replays: a local server speaking the
//! Alpaca v2 stream protocol sends each quote once, to whichever connection is open
//! (a restarted worker gets new quotes, never the old ones). The pipeline maps them
//! into six sinks — `csv`, `jsonl`, `avro`, `mysql` in plain INSERT mode, `cassandra`
//! and `mongodb` without transactions — with checkpoints every 100 ms, and is SIGKILLed
//! at seeded random moments. Afterwards the six sinks must hold the same quotes, none
//! twice, and only quotes the server sent.
//! (Quotes sent after the last checkpoint before a kill are lost: the source cannot
//! replay. What matters is that every sink loses the same ones.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "../../connectors/tests/alpaca_server/mod.rs"]
mod alpaca_server;

use std::collections::BTreeSet;
use std::time::Duration;

use alpaca_server::*;
use common::mysql::*;
use common::*;
use rand::Rng;

/// Connection `k` gets quotes `k * 10_000 ..`: 40 batches of 25, 15 ms apart.
fn sessions(connections: usize) -> Vec<Vec<Step>> {
    let mut all: Vec<Vec<Step>> = (0..connections)
        .map(|k| {
            let mut steps = Vec::new();
            for b in 0..40 {
                let quotes: Vec<String> = (0..25)
                    .map(|i| {
                        let n = k * 10_000 + b * 25 + i;
                        let t = format!("2024-04-01T15:00:00.{:06}Z", n % 1_000_000);
                        quote("SPY", &t, n as f64)
                    })
                    .collect();
                steps.push(batch(&quotes));
                steps.push(Step::Wait(Duration::from_millis(15)));
            }
            steps
        })
        .collect();
    // Then silence, for the last run to stop.
    all.push(vec![Step::Wait(Duration::from_secs(600))]);
    all
}

fn pipeline(url: &str, db_url: &str, cql: &str, keyspace: &str, mongo: &str) -> String {
    format!(
        r#"
name: live
checkpoint: {{interval: 100ms}}
sources:
  quotes: {{type: alpaca, url: "{url}", key: {KEY}, secret: {SECRET}, quotes: [SPY]}}
transforms:
  prices:
    type: map
    inputs: [quotes]
    fields: {{n: bp, symbol: S}}
    keep: [n, symbol]
sinks:
  csv_out: {{type: csv, inputs: [prices], path: out/q.csv, columns: [n, symbol]}}
  jsonl_out: {{type: jsonl, inputs: [prices], path: out/q.jsonl}}
  avro_out:
    type: avro
    inputs: [prices]
    path: out/q.avro
    schema: '{{"type":"record","name":"Q","fields":[{{"name":"n","type":"double"}},{{"name":"symbol","type":"string"}}]}}'

  db_out:
    type: mysql
    inputs: [prices]
    url: {db_url}
    table: quotes
    columns: {{n: n, symbol: symbol}}
    create_table: {{n: BIGINT NOT NULL, symbol: VARCHAR(8) NOT NULL}}
  cql_out:
    type: cassandra
    inputs: [prices]
    contact_points: ["{cql}"]
    keyspace: {keyspace}
    table: quotes
    consistency: one
    columns: [n, symbol]
    create_schema: {{primary_key: n, columns: {{n: double, symbol: text}}}}
  mongo_out:
    type: mongodb
    inputs: [prices]
    uri: {mongo}
    database: {keyspace}
    collection: quotes
    id: [n]
    transactions: "off"
"#
    )
}

/// The quote numbers in the Cassandra table.
fn cql_numbers(addr: &str, keyspace: &str) -> Vec<u64> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = common::cql_server::session(addr).await;
        let pager = session
            .query_iter(format!("SELECT n FROM {keyspace}.quotes").as_str(), ())
            .await
            .unwrap();
        let mut rows = pager.rows_stream::<(f64,)>().unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            out.push(row.unwrap().0);
        }
        numbers(out.into_iter())
    })
}

fn numbers(values: impl Iterator<Item = f64>) -> Vec<u64> {
    let mut v: Vec<u64> = values.map(|x| x as u64).collect();
    v.sort_unstable();
    v
}

#[test]
fn a_live_source_into_six_sinks_stays_exactly_once_across_sigkills() {
    const KILLS: usize = 12;
    let (seed, mut rng) = common::seeded_rng();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = AlpacaServer::default();
    *server.sessions.lock().unwrap() = sessions(KILLS + 1);
    let url = rt.block_on(server.start());
    let (db, db_url) = fresh_database("live");
    let cql = common::cql_server::start();
    let keyspace = format!("live_{}", rand::random::<u32>());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &pipeline(&url, &db_url, &cql, &keyspace, &common::mongo::url()),
    );

    for k in 0..=KILLS {
        let mut child = spawn(dir.path(), &cfg, &[]);
        // Let it take quotes and commit some checkpoints, then stop it.
        std::thread::sleep(Duration::from_millis(rng.random_range(300..900)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: run {k} ended by itself: {}",
            stderr_tail(&child, 4000)
        );
        if k < KILLS {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        } else {
            signal(&child, libc::SIGTERM);
            assert!(
                wait_with_deadline(&mut child, Duration::from_secs(60)).success(),
                "seed {seed}: {}",
                stderr_tail(&child, 4000)
            );
        }
    }
    drop(rt);

    let csv = numbers(
        read(dir.path().join("out/q.csv"))
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap()),
    );
    let jsonl = numbers(read(dir.path().join("out/q.jsonl")).lines().map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
            .as_f64()
            .unwrap()
    }));
    let avro = numbers(avro_as_jsonl(dir.path(), "out/q.avro").lines().map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
            .as_f64()
            .unwrap()
    }));
    let in_db = query(&[&format!(
        "SELECT GROUP_CONCAT(n ORDER BY n SEPARATOR ',') FROM {db}.quotes"
    )])
    .unwrap_or_default();
    let mysql = numbers(
        in_db
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap()),
    );

    assert!(
        csv.len() > 1000,
        "seed {seed}: only {} quotes arrived",
        csv.len()
    );
    let distinct: BTreeSet<u64> = csv.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        csv.len(),
        "seed {seed}: a quote is in the CSV twice"
    );
    assert!(
        csv.iter()
            .all(|n| (n % 10_000) < 1000 && (n / 10_000) as usize <= KILLS),
        "seed {seed}: a quote the server never sent"
    );
    assert!(
        jsonl == csv,
        "seed {seed}: the JSONL and the CSV hold different quotes ({} vs {})",
        jsonl.len(),
        csv.len()
    );
    assert!(
        avro == csv,
        "seed {seed}: the Avro file and the CSV hold different quotes ({} vs {})",
        avro.len(),
        csv.len()
    );
    assert!(
        mysql == csv,
        "seed {seed}: MySQL and the CSV hold different quotes ({} vs {})",
        mysql.len(),
        csv.len()
    );
    let cassandra = cql_numbers(&cql, &keyspace);
    assert!(
        cassandra == csv,
        "seed {seed}: Cassandra and the CSV hold different quotes ({} vs {})",
        cassandra.len(),
        csv.len()
    );
    let mongo = numbers(
        common::mongo::documents(&keyspace, "quotes")
            .iter()
            .map(|d| {
                d["_id"]
                    .as_f64()
                    .or_else(|| d["_id"].as_i64().map(|i| i as f64))
                    .unwrap()
            }),
    );
    assert!(
        mongo == csv,
        "seed {seed}: MongoDB and the CSV hold different quotes ({} vs {})",
        mongo.len(),
        csv.len()
    );
}
