//! Every exactly-once sink as one entry of a table, for the conformance suite
//! (`tests/conformance.rs`): how to configure it and how to read back what it holds.
//! Records reaching a sink carry `n` (a whole number, unique per input record) and
//! `symbol`; each entry reads back the `n` of every record its destination holds.
//!
//! Sinks are configured **keyless** where they accept it (files; MySQL plain INSERT
//! into a table without a key; MongoDB with transactions and server-made `_id`; Kafka
//! without a message key): nothing there hides a replayed record. Cassandra needs a
//! primary key, and MongoDB without transactions needs `id`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where one run of the suite writes: a database, a keyspace, a topic of its own.
pub struct Targets {
    pub dir: PathBuf,
    pub db: String,
    pub db_url: String,
    pub cql: String,
    pub keyspace: String,
    pub mongo: String,
    pub topic: String,
}

impl Targets {
    pub fn new(dir: &Path, tag: &str) -> Self {
        let (db, db_url) = super::mysql::fresh_database(tag);
        let topic = super::kafka::unique(&format!("{tag}-out"));
        super::kafka::create_topic(&topic, 1);
        Targets {
            dir: dir.to_path_buf(),
            db,
            db_url,
            cql: super::cql_server::start(),
            keyspace: format!("{tag}_{}", rand::random::<u32>()),
            mongo: super::mongo::url(),
            topic,
        }
    }
}

pub struct SinkEntry {
    pub name: &'static str,
    /// The sink's YAML under `sinks:` (indented two spaces), reading `input`.
    pub yaml: fn(&Targets, &str) -> String,
    /// The `n` of every record the destination holds, sorted, duplicates kept.
    /// `expected`: how many there should be (a reader that polls stops there).
    pub read: fn(&Targets, usize) -> Vec<u64>,
    /// Whether the servers the suite runs against can show exactly-once for it across
    /// kills. Tansu shows aborted transactions to read_committed consumers, and the
    /// MongoDB emulator does not roll back a killed client's transaction: against them
    /// only "nothing lost" is checked; against real servers (`KAFKA_BOOTSTRAP`,
    /// `MONGODB_URL`) exactly-once is.
    pub exact_here: fn() -> bool,
}

fn always() -> bool {
    true
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

fn json_n(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["n"]
        .as_u64()
        .or_else(|| v["n"].as_f64().map(|f| f as u64))
        .unwrap()
}

pub fn entries() -> Vec<SinkEntry> {
    vec![
        SinkEntry {
            name: "csv",
            yaml: |_, input| {
                format!("  csv_out: {{type: csv, inputs: [{input}], path: out/n.csv, columns: [n, symbol]}}\n")
            },
            read: |t, _| {
                sorted(
                    super::read(t.dir.join("out/n.csv"))
                        .lines()
                        .skip(1)
                        .map(|l| l.split(',').next().unwrap().parse().unwrap())
                        .collect(),
                )
            },
            exact_here: always,
        },
        SinkEntry {
            name: "jsonl",
            yaml: |_, input| {
                format!("  jsonl_out: {{type: jsonl, inputs: [{input}], path: out/n.jsonl}}\n")
            },
            read: |t, _| {
                sorted(
                    super::read(t.dir.join("out/n.jsonl"))
                        .lines()
                        .map(json_n)
                        .collect(),
                )
            },
            exact_here: always,
        },
        SinkEntry {
            name: "avro",
            yaml: |_, input| {
                format!(
                    "  avro_out:\n    type: avro\n    inputs: [{input}]\n    path: out/n.avro\n    schema: '{{\"type\":\"record\",\"name\":\"N\",\"fields\":[{{\"name\":\"n\",\"type\":\"long\"}},{{\"name\":\"symbol\",\"type\":\"string\"}}]}}'\n"
                )
            },
            read: |t, _| {
                sorted(
                    super::avro_as_jsonl(&t.dir, "out/n.avro")
                        .lines()
                        .map(json_n)
                        .collect(),
                )
            },
            exact_here: always,
        },
        SinkEntry {
            name: "mysql",
            yaml: |t, input| {
                format!(
                    "  mysql_out:\n    type: mysql\n    inputs: [{input}]\n    url: {}\n    table: n_rows\n    columns: {{n: n, symbol: symbol}}\n    create_table: {{n: BIGINT NOT NULL, symbol: VARCHAR(8) NOT NULL}}\n",
                    t.db_url
                )
            },
            read: |t, _| {
                let all = super::mysql::query(&[&format!(
                    "SELECT GROUP_CONCAT(n ORDER BY n SEPARATOR ',') FROM {}.n_rows",
                    t.db
                )])
                .unwrap_or_default();
                sorted(
                    all.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().unwrap())
                        .collect(),
                )
            },
            exact_here: always,
        },
        SinkEntry {
            name: "cassandra",
            yaml: |t, input| {
                format!(
                    "  cql_out:\n    type: cassandra\n    inputs: [{input}]\n    contact_points: [\"{}\"]\n    keyspace: {}\n    table: n_rows\n    consistency: one\n    columns: [n, symbol]\n    create_schema: {{primary_key: n, columns: {{n: bigint, symbol: text}}}}\n",
                    t.cql, t.keyspace
                )
            },
            read: |t, _| cql_numbers(&t.cql, &t.keyspace),
            exact_here: always,
        },
        SinkEntry {
            name: "mongodb",
            yaml: |t, input| {
                format!(
                    "  mongo_out:\n    type: mongodb\n    inputs: [{input}]\n    uri: {}\n    database: {}\n    collection: keyed\n    id: [n]\n    transactions: \"off\"\n",
                    t.mongo, t.keyspace
                )
            },
            read: |t, _| mongo_numbers(&t.keyspace, "keyed", "_id"),
            exact_here: always,
        },
        SinkEntry {
            name: "mongodb (transactions)",
            yaml: |t, input| {
                format!(
                    "  mongo_tx_out:\n    type: mongodb\n    inputs: [{input}]\n    uri: {}\n    database: {}\n    collection: keyless\n    mode: insert\n    transactions: \"on\"\n",
                    t.mongo, t.keyspace
                )
            },
            read: |t, _| mongo_numbers(&t.keyspace, "keyless", "n"),
            exact_here: || std::env::var("MONGODB_URL").is_ok(),
        },
        SinkEntry {
            name: "kafka",
            yaml: |t, input| {
                format!(
                    "  kafka_out:\n    type: kafka\n    inputs: [{input}]\n    bootstrap_servers: {}\n    topic: {}\n",
                    super::kafka::bootstrap(),
                    t.topic
                )
            },
            read: |t, expected| {
                let values = super::kafka::consume_committed(
                    &t.topic,
                    Duration::from_secs(60),
                    Duration::from_secs(2),
                    |v| v.len() >= expected,
                );
                sorted(values.iter().map(|v| json_n(v)).collect())
            },
            exact_here: || std::env::var("KAFKA_BOOTSTRAP").is_ok(),
        },
    ]
}

/// The `sinks:` section with every entry reading `input`.
pub fn sinks_yaml(t: &Targets, input: &str) -> String {
    let mut out = String::from("sinks:\n");
    for e in entries() {
        out.push_str(&(e.yaml)(t, input));
    }
    out
}

/// Every entry reading `input`, each with `start: beginning` (without the `sinks:` key).
pub fn sinks_starting_at_beginning(t: &Targets, input: &str) -> String {
    let mut out = String::new();
    for e in entries() {
        let yaml = (e.yaml)(t, input);
        // One line: `  name: {...}`; else a block of options, four spaces in.
        match yaml
            .strip_suffix("}\n")
            .filter(|_| yaml.lines().count() == 1)
        {
            Some(flow) => out.push_str(&format!("{flow}, start: beginning}}\n")),
            None => out.push_str(&format!("{yaml}    start: beginning\n")),
        }
    }
    out
}

/// Checks every sink against `want` (sorted `n`s): exactly those, once each. For an
/// entry the servers here cannot show exactly-once for, only that none is lost (the
/// rest is printed).
/// Returns a report line per sink.
pub fn check_all(t: &Targets, want: &[u64], context: &str) -> String {
    let mut report = String::new();
    for e in entries() {
        let got = (e.read)(t, want.len());
        let mut distinct = got.clone();
        distinct.dedup();
        let twice = got.len() - distinct.len();
        let missing = want
            .iter()
            .filter(|n| distinct.binary_search(n).is_err())
            .count();
        let foreign = distinct
            .iter()
            .filter(|n| want.binary_search(n).is_err())
            .count();
        report.push_str(&format!(
            "{}: {} records, {twice} twice, {missing} missing\n",
            e.name,
            got.len()
        ));
        assert_eq!(
            missing,
            0,
            "{context}: {}: {missing} of {} records missing",
            e.name,
            want.len()
        );
        if (e.exact_here)() {
            assert_eq!(
                foreign, 0,
                "{context}: {}: {foreign} records that should not be there",
                e.name
            );
            assert_eq!(twice, 0, "{context}: {}: {twice} records twice", e.name);
        } else if twice > 0 || foreign > 0 {
            // Tansu shows aborted transactions to read_committed readers; the MongoDB
            // emulator keeps the writes of a transaction whose client was killed. So a
            // given-up epoch (a live source sends other records after the restart) can
            // show here, and a redone one twice; real servers hide both.
            println!("{context}: {}: {twice} records twice, {foreign} from given-up epochs, which these test servers allow (exactly-once for it is checked against real servers)", e.name);
        }
    }
    report
}

/// The whole number in `field` of every document of a collection, sorted.
fn mongo_numbers(database: &str, collection: &str, field: &str) -> Vec<u64> {
    sorted(
        super::mongo::documents(database, collection)
            .iter()
            .map(|d| {
                d[field]
                    .as_u64()
                    .or_else(|| d[field].as_f64().map(|f| f as u64))
                    .unwrap()
            })
            .collect(),
    )
}

/// The `n`s in the Cassandra table.
fn cql_numbers(addr: &str, keyspace: &str) -> Vec<u64> {
    use futures_util::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = super::cql_server::session(addr).await;
        let pager = session
            .query_iter(format!("SELECT n FROM {keyspace}.n_rows").as_str(), ())
            .await
            .unwrap();
        let mut rows = pager.rows_stream::<(i64,)>().unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            out.push(row.unwrap().0 as u64);
        }
        sorted(out)
    })
}
