//! Kafka source → filter → Kafka sink, exactly once, against a real Kafka-protocol broker
//! (a Tansu broker per test, see `common::tansu`, or `KAFKA_BOOTSTRAP`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::kafka;
use rand::Rng;

const N: u64 = 100_000;

fn record(i: u64) -> (String, String) {
    (
        format!("k{}", i % 16),
        format!(r#"{{"id":{i},"v":{},"name":"n{i}"}}"#, i % 100),
    )
}

/// The input (a topic already created) arrives over about 40 s, as a live stream would,
/// so that kills and rebalances land while records are flowing.
fn input(topic: &str) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    // Resolved here: the broker belongs to the test's thread (`common::tansu`).
    let bootstrap = kafka::bootstrap();
    std::thread::spawn(move || {
        const CHUNKS: u64 = 200;
        let producer = kafka::Producer::connect(&bootstrap);
        for chunk in 0..CHUNKS {
            let per = N / CHUNKS;
            producer.send(&topic, (chunk * per..(chunk + 1) * per).map(record));
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

fn pipeline(dir: &Path, input: &str, output: &str, group: &str) -> std::path::PathBuf {
    pipeline_with_interval(dir, input, output, group, "500ms")
}

fn pipeline_with_interval(
    dir: &Path,
    input: &str,
    output: &str,
    group: &str,
    interval: &str,
) -> std::path::PathBuf {
    common::write_pipeline(
        dir,
        "ctp.yaml",
        &format!(
            r#"name: ctp
checkpoint: {{interval: {interval}}}
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{input}]
    group: {group}
    properties: {{session.timeout.ms: "2000", heartbeat.interval.ms: "500"}}
transforms:
  keep:
    type: filter
    inputs: [in]
    where: v < 50
sinks:
  out:
    type: kafka
    inputs: [keep]
    bootstrap_servers: {bootstrap}
    topic: {output}
    key: [id]
"#,
            bootstrap = kafka::bootstrap()
        ),
    )
}

/// A run of the pipeline above: its directory, the output topic, the input being fed
/// (`input`) and the pipeline file.
struct Fed {
    dir: tempfile::TempDir,
    output: String,
    feeding: std::thread::JoinHandle<()>,
    config: std::path::PathBuf,
}

/// 4-partition input and output topics named after `prefix`, the input fed.
fn fed(prefix: &str) -> Fed {
    let dir = tempfile::tempdir().unwrap();
    let (input_topic, output) = (
        kafka::unique(&format!("{prefix}-in")),
        kafka::unique(&format!("{prefix}-out")),
    );
    kafka::create_topic(&output, 4);
    kafka::create_topic(&input_topic, 4);
    let feeding = input(&input_topic);
    let group = kafka::unique(&format!("{prefix}-group"));
    let config = pipeline(dir.path(), &input_topic, &output, &group);
    Fed {
        dir,
        output,
        feeding,
        config,
    }
}

fn expected() -> usize {
    (0..N).filter(|i| i % 100 < 50).count()
}

/// SIGKILLs the worker at a moment when its sink has no transaction open (the broker
/// under test may not hide aborted transactions: see the ignored test below). The
/// process is stopped first, so the check and the kill see the same state.
fn kill_between_transactions(child: &mut Child, marker: &Path) {
    loop {
        common::signal(child, libc::SIGSTOP);
        if !marker.exists() {
            common::signal(child, libc::SIGKILL);
            let _ = child.wait();
            return;
        }
        common::signal(child, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Records the sink `out` has written in this run, from `/metrics` (None while the
/// admin server is not up).
fn sink_records_out(port: u16) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("connectd_records_out_total{") && l.contains("component=\"out\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Kills the worker when a failed assertion unwinds the test (else it would outlive it).
use common::Worker;

/// Runs the worker until its sink has written something (the consumer group takes a
/// few seconds to hand a restarted worker its partitions), then a random while more.
fn run_a_while(dir: &Path, config: &Path, rng: &mut impl Rng) -> Worker {
    run_worker_a_while(dir, config, &[], rng)
}

fn run_worker_a_while(dir: &Path, config: &Path, extra: &[&str], rng: &mut impl Rng) -> Worker {
    let port = common::free_port();
    let child = common::spawn_captured(
        common::connectd()
            .current_dir(dir)
            .args(["--admin-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg("--config")
            .arg(config),
    );
    let started = Instant::now();
    // Without progress for long (all input processed), the kill comes at an idle moment.
    while sink_records_out(port).unwrap_or(0.0) == 0.0
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(0..1000)));
    Worker(child)
}

/// Checks the output; on failure, shows the end of the given workers' logs.
fn check_exactly_once(output: &str, workers: &[&Child]) {
    if let Err(e) = exactly_once(output) {
        let logs: Vec<String> = workers
            .iter()
            .map(|w| format!("-- worker {}:\n{}", w.id(), common::stderr_tail(w, 6000)))
            .collect();
        panic!("{e}\n{}", logs.join("\n"));
    }
}

fn exactly_once(output: &str) -> Result<(), String> {
    let want = expected();
    let values = kafka::consume_committed(
        output,
        Duration::from_secs(240),
        Duration::from_secs(3),
        |v| v.len() >= want,
    );
    let ids = kafka::ids(&values);
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    if !dups.is_empty() {
        return Err(format!("duplicates in the output (id, count): {dups:?}"));
    }
    let missing: Vec<u64> = (0..N)
        .filter(|i| i % 100 < 50 && !ids.contains_key(i))
        .take(5)
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing ids, e.g. {missing:?}"));
    }
    if values.len() != want {
        return Err(format!("{} records, expected {want}", values.len()));
    }
    Ok(())
}

#[test]
fn consume_transform_produce_is_exactly_once_across_sigkills() {
    let Fed {
        dir,
        output,
        feeding,
        config,
    } = fed("ctp");
    let marker = dir.path().join(".connectd/ctp/sinks/out.in-transaction");
    let (_, mut rng) = common::seeded_rng();
    for _ in 0..10 {
        let mut worker = run_a_while(dir.path(), &config, &mut rng);
        assert!(
            worker.0.try_wait().unwrap().is_none(),
            "connectd exited early"
        );
        kill_between_transactions(&mut worker.0, &marker);
    }
    // The kills landed mid-stream: some output was committed, not all of it.
    let so_far =
        kafka::consume_committed(&output, Duration::from_secs(8), Duration::ZERO, |_| false).len();
    assert!(
        so_far > 0 && so_far < expected(),
        "{so_far} records before the last restart"
    );
    feeding.join().unwrap();
    let mut last = Worker(common::spawn(dir.path(), &config, &[]));
    check_exactly_once(&output, &[&last.0]);
    common::signal(&last.0, libc::SIGTERM);
    common::wait_with_deadline(&mut last.0, Duration::from_secs(60));
}

/// The broker unreachable for 8 s while records flow, twice: every connection closed,
/// and new ones closed as soon as they open, as when a broker goes down. The group
/// session (2 s) expires meanwhile. The worker retries through it, and the output holds
/// every record once. The outages come from a proxy in front of the bundled broker, so
/// the test is skipped with `KAFKA_BOOTSTRAP`.
#[test]
fn exactly_once_across_broker_outages() {
    if std::env::var_os("KAFKA_BOOTSTRAP").is_some() {
        eprintln!("skipped: the outages are made by a proxy in front of the bundled broker");
        return;
    }
    let proxy = common::tansu::broker_behind_proxy();
    let Fed {
        dir,
        output,
        feeding,
        config,
    } = fed("down");
    let (_, mut rng) = common::seeded_rng();
    let mut worker = run_a_while(dir.path(), &config, &mut rng);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(3));
        proxy.cut();
        std::thread::sleep(Duration::from_secs(8));
        proxy.restore();
    }
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "connectd exited: {}",
        common::stderr_tail(&worker.0, 4000)
    );
    // The outages landed mid-stream: the input was still arriving after them.
    assert!(
        !feeding.is_finished(),
        "the input ended before the outages did"
    );
    feeding.join().unwrap();
    check_exactly_once(&output, &[&worker.0]);
    common::signal(&worker.0, libc::SIGTERM);
    let status = common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
    let log = common::stderr_of(&worker.0);
    assert!(status.success(), "{log}");
    assert!(
        log.contains("BrokerTransportFailure") || log.contains("AllBrokersDown"),
        "the worker did not see the broker go: {log}"
    );
}

/// Kills land anywhere, including inside a transaction: exactly-once then relies on the
/// broker hiding aborted transactions from read_committed consumers.
#[test]
#[ignore = "needs a broker that hides aborted transactions from read_committed consumers, which Tansu does not: KAFKA_BOOTSTRAP=host:port cargo test --test kafka -- --ignored"]
fn exactly_once_with_kills_inside_transactions() {
    let Fed {
        dir,
        output,
        feeding,
        config,
    } = fed("ctpa");
    let (_, mut rng) = common::seeded_rng();
    for _ in 0..10 {
        let worker = run_a_while(dir.path(), &config, &mut rng);
        drop(worker); // SIGKILL, wherever it is
    }
    feeding.join().unwrap();
    let mut last = Worker(common::spawn(dir.path(), &config, &[]));
    check_exactly_once(&output, &[&last.0]);
    common::signal(&last.0, libc::SIGTERM);
    common::wait_with_deadline(&mut last.0, Duration::from_secs(60));
}

/// Kafka → MySQL: the source's offsets are committed in the MySQL checkpoint
/// transaction; SIGKILLs anywhere (a MySQL transaction is atomic on any server).
#[test]
fn kafka_to_mysql_is_exactly_once_across_sigkills() {
    use common::mysql::{fresh_database, query};
    let (db, url) = fresh_database("kafka_mysql");
    let dir = tempfile::tempdir().unwrap();
    let input_topic = kafka::unique("k2m-in");
    kafka::create_topic(&input_topic, 4);
    let feeding = input(&input_topic);
    let config = common::write_pipeline(
        dir.path(),
        "k2m.yaml",
        &format!(
            r#"name: k2m
checkpoint: {{interval: 300ms}}
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{input_topic}]
    group: {group}
    properties: {{session.timeout.ms: "2000", heartbeat.interval.ms: "500"}}
sinks:
  out:
    type: mysql
    inputs: [in]
    url: {url}
    table: events
    columns: {{id: id, v: v, name: name}}
    create_table: {{id: BIGINT NOT NULL, v: INT NOT NULL, name: VARCHAR(16) NOT NULL}}
"#,
            bootstrap = kafka::bootstrap(),
            group = kafka::unique("k2m-group"),
        ),
    );
    let (_, mut rng) = common::seeded_rng();
    for _ in 0..10 {
        drop(run_a_while(dir.path(), &config, &mut rng)); // SIGKILL
    }
    let count = || query(&[&format!("SELECT COUNT(*) FROM {db}.events")]).unwrap_or_default();
    let partial: u64 = count().parse().unwrap();
    assert!(
        partial > 0 && partial < N,
        "{partial} rows before the last restart"
    );
    feeding.join().unwrap();
    let mut last = Worker(common::spawn(dir.path(), &config, &[]));
    let started = Instant::now();
    while count() != N.to_string() {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{} rows",
            count()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2)); // anything extra would show now
    common::signal(&last.0, libc::SIGTERM);
    common::wait_with_deadline(&mut last.0, Duration::from_secs(60));
    // No key on the table: a duplicate would show in the count.
    let summary = query(&[&format!(
        "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT id), '/', SUM(v), '/', SUM(id)) FROM {db}.events"
    )])
    .unwrap();
    let sum_v: u64 = (0..N).map(|i| i % 100).sum();
    let sum_id: u64 = (0..N).sum();
    assert_eq!(summary, format!("{N}/{N}/{sum_v}/{sum_id}"));
    // The offsets went into MySQL with the rows: they add up to every record read.
    let state: serde_json::Value = serde_json::from_str(
        &query(&[&format!(
            "SELECT state FROM {db}.connectd_checkpoints WHERE pipeline = 'k2m'"
        )])
        .unwrap(),
    )
    .unwrap();
    let offsets = &state["sources"]["in"]["offset"][&input_topic];
    let total: i64 = offsets
        .as_object()
        .unwrap()
        .values()
        .map(|o| o.as_i64().unwrap())
        .sum();
    assert_eq!(total, N as i64, "{offsets}");
    query(&[&format!("DROP DATABASE {db}")]);
}

/// Two workers run the same pipeline in one consumer group and split the partitions.
/// The second joins while records flow (the first gives up half its partitions only
/// after committing what it read of them), and later it is SIGKILLed (the first takes
/// its partitions back from its last commit).
#[test]
fn two_workers_split_the_partitions_and_survive_losing_one() {
    let (input_topic, output) = (kafka::unique("scale-in"), kafka::unique("scale-out"));
    kafka::create_topic(&input_topic, 4);
    kafka::create_topic(&output, 4);
    let group = kafka::unique("scale-group");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let configs: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            std::fs::write(d.path().join("worker.yaml"), format!("name: scale-{i}\n")).unwrap();
            // Long enough that a rebalance always finds records read and not committed.
            pipeline_with_interval(d.path(), &input_topic, &output, &group, "3s")
        })
        .collect();
    let spawn = |i: usize| {
        let port = common::free_port();
        let child = common::spawn_captured(
            common::connectd()
                .env("RUST_LOG", "info,librdkafka=warn")
                .current_dir(dirs[i].path())
                .args([
                    "--admin-addr",
                    &format!("127.0.0.1:{port}"),
                    "--worker",
                    "worker.yaml",
                    "--config",
                ])
                .arg(&configs[i]),
        );
        (Worker(child), port)
    };
    let wait_for_output = |port: u16, who: &str| {
        let started = Instant::now();
        while sink_records_out(port).unwrap_or(0.0) == 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{who} wrote nothing in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let feeding = input(&input_topic);
    let (mut first, first_port) = spawn(0);
    wait_for_output(first_port, "the first worker");
    std::thread::sleep(Duration::from_secs(2));
    let (mut second, second_port) = spawn(1);
    wait_for_output(second_port, "the joining worker");
    std::thread::sleep(Duration::from_secs(3));
    let marker = dirs[1]
        .path()
        .join(".connectd/ctp/sinks/out.in-transaction");
    kill_between_transactions(&mut second.0, &marker);
    feeding.join().unwrap();
    check_exactly_once(&output, &[&first.0, &second.0]);
    common::signal(&first.0, libc::SIGTERM);
    common::wait_with_deadline(&mut first.0, Duration::from_secs(60));
}

/// A sink other than `kafka` keeps the source positions in its own checkpoint, so
/// workers of one group cannot split its pipeline (issue 17): a second worker joining
/// while records flow stops its pipeline with the reason and writes nothing; the first
/// holds its share meanwhile, gets every partition back, and writes each record once.
#[test]
fn a_second_worker_cannot_split_a_pipeline_whose_sink_keeps_its_own_checkpoint() {
    let input_topic = kafka::unique("own-ckpt-in");
    kafka::create_topic(&input_topic, 4);
    let group = kafka::unique("own-ckpt-group");
    let yaml = format!(
        "name: own\ncheckpoint: {{interval: 300ms}}\nsources:\n  in:\n    type: kafka\n    bootstrap_servers: {}\n    topics: [{input_topic}]\n    group: {group}\n    properties: {{session.timeout.ms: \"2000\", heartbeat.interval.ms: \"500\"}}\nsinks:\n  out: {{type: jsonl, inputs: [in], path: out.jsonl}}\n",
        kafka::bootstrap()
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let configs: Vec<_> = dirs
        .iter()
        .map(|d| common::write_pipeline(d.path(), "own.yaml", &yaml))
        .collect();
    let lines = |i: usize| {
        std::fs::read_to_string(dirs[i].path().join("out.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<u64>>()
    };
    let feeding = input(&input_topic);
    let mut first = Worker(common::spawn(dirs[0].path(), &configs[0], &[]));
    let started = Instant::now();
    while lines(0).is_empty() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!lines(0).is_empty(), "the first worker wrote nothing");
    let mut second = Worker(common::spawn(dirs[1].path(), &configs[1], &[]));
    let status = common::wait_with_deadline(&mut second.0, Duration::from_secs(120));
    let said = common::stderr_of(&second.0);
    assert!(!status.success(), "the second worker ran on: {said}");
    assert!(
        said.contains("pipeline `own` cannot be split across workers: it keeps the source positions in sink `out`'s own checkpoint"),
        "{said}"
    );
    assert!(lines(1).is_empty(), "the second worker wrote records");
    feeding.join().unwrap();
    while (lines(0).len() as u64) < N && started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_millis(200));
    }
    common::signal(&first.0, libc::SIGTERM);
    assert!(common::wait_with_deadline(&mut first.0, Duration::from_secs(60)).success());
    let mut ids = lines(0);
    let written = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (
            written,
            ids.len(),
            ids.first().copied(),
            ids.last().copied()
        ),
        (N as usize, N as usize, Some(0), Some(N - 1)),
        "every record once (written, distinct, first, last); {}",
        common::stderr_tail(&first.0, 3000)
    );
}

/// The value of a metric line of the source `in`, if `/metrics` has it.
fn source_metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("component=\"in\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A source started behind a topic that already holds records reports a backlog while
/// it catches up, and none once it has read everything; and the event-time lag.
#[test]
fn kafka_source_reports_its_backlog() {
    const RECORDS: u64 = 200_000;
    let topic = kafka::unique("backlog");
    kafka::create_topic(&topic, 2);
    kafka::Producer::new().send(&topic, (0..RECORDS).map(record));
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_pipeline(
        dir.path(),
        "backlog.yaml",
        &format!(
            r#"name: backlog
sources:
  in:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{topic}]
    group: {group}
    properties: {{statistics.interval.ms: "100"}}
sinks:
  out: {{type: csv, inputs: [in], path: out.csv, columns: [id]}}
"#,
            bootstrap = kafka::bootstrap(),
            group = kafka::unique("backlog-group"),
        ),
    );
    let config = config.to_str().unwrap();
    let (child, port) = common::start_worker(dir.path(), &["--config", config]);
    let mut worker = Worker(child);
    let started = Instant::now();
    let mut largest = 0.0f64;
    let metrics = loop {
        let metrics = common::http("GET", port, "/metrics", None).1;
        let backlog = source_metric(&metrics, "connectd_source_backlog_records");
        largest = largest.max(backlog.unwrap_or(0.0));
        let written = sink_records_out(port).unwrap_or(0.0);
        if written >= RECORDS as f64 && backlog == Some(0.0) {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not caught up in 120 s: {written} written, backlog {backlog:?}\n{}",
            common::stderr_tail(&worker.0, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        largest > 0.0 && largest <= RECORDS as f64,
        "backlog while catching up: {largest}"
    );
    let lag = source_metric(&metrics, "connectd_source_lag_seconds")
        .expect("no connectd_source_lag_seconds");
    assert!((0.0..600.0).contains(&lag), "event-time lag {lag} s");
    common::signal(&worker.0, libc::SIGTERM);
    common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
}

/// `format: avro` both ways: through the schema registry (Confluent wire format) and
/// with an inline schema; values that are not Avro of a known schema go to the DLQ. And
/// `format: json` with a JSON Schema check.
#[test]
fn avro_values_round_trip_and_bad_ones_go_to_the_dlq() {
    const SCHEMA: &str = r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"long"},{"name":"v","type":"int"},{"name":"name","type":"string"}]}"#;
    let registry = common::schema_registry::start();
    let [input, via_registry, inline, bad] =
        ["avro-in", "avro-reg", "avro-inline", "avro-bad"].map(kafka::unique);
    for t in [&input, &via_registry, &inline, &bad] {
        kafka::create_topic(t, 1);
    }
    kafka::produce(&input, (0..300).map(record));
    let b = kafka::bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let to_kafka = |name: &str, topic: &str, avro: &str| {
        common::write_pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\ncheckpoint: {{interval: 300ms}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{input}], group: {g}}}\nsinks:\n  out: {{type: kafka, inputs: [in], bootstrap_servers: {b}, topic: {topic}, format: avro, {avro}}}\n",
                g = kafka::unique("avro-group"),
            ),
        )
    };
    let schema = serde_json::to_string(SCHEMA).unwrap();
    let write_registry = to_kafka(
        "write-reg",
        &via_registry,
        &format!("schema: {schema}, schema_registry: {{url: \"{registry}\"}}"),
    );
    let write_inline = to_kafka("write-inline", &inline, &format!("schema: {schema}"));
    let from_kafka = |name: &str, topics: &str, avro: &str| {
        common::write_pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\ncheckpoint: {{interval: 300ms}}\nerrors: {{tolerance: all, dlq: {{path: out/{name}-dlq.jsonl}}}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{topics}], group: {g}, format: avro, {avro}}}\nsinks:\n  out: {{type: jsonl, inputs: [in], path: out/{name}.jsonl}}\n",
                g = kafka::unique("avro-group"),
            ),
        )
    };
    let read_registry = from_kafka(
        "read-reg",
        &format!("{via_registry}, {bad}"),
        &format!("schema_registry: {{url: \"{registry}\"}}"),
    );
    let read_inline = from_kafka("read-inline", &inline, &format!("schema: {schema}"));
    // JSON with a JSON Schema check: the values with v ≥ 50 go to the DLQ.
    let read_checked = common::write_pipeline(
        dir.path(),
        "read-checked.yaml",
        &format!(
            "name: read-checked\nerrors: {{tolerance: all, dlq: {{path: out/read-checked-dlq.jsonl}}}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{input}], group: {g}, json_schema: {{type: object, properties: {{v: {{maximum: 49}}}}}}}}\nsinks:\n  out: {{type: jsonl, inputs: [in], path: out/read-checked.jsonl}}\n",
            g = kafka::unique("checked-group"),
        ),
    );
    // Not Avro at all; the wire format with a schema id the registry does not know.
    kafka::Producer::new().send(
        &bad,
        [
            ("x", b"{\"id\":1}".to_vec()),
            ("y", vec![0, 0, 0, 0, 99, 2]),
        ],
    );
    let configs: Vec<&str> = [
        &write_registry,
        &write_inline,
        &read_registry,
        &read_inline,
        &read_checked,
    ]
    .iter()
    .map(|p| p.to_str().unwrap())
    .collect();
    let mut args = vec!["--config"];
    args.extend(configs);
    let (child, _port) = common::start_worker(dir.path(), &args);
    let mut worker = Worker(child);
    let lines = |file: &str| common::json_lines(&dir.path().join("out").join(file));
    let started = Instant::now();
    while lines("read-reg.jsonl").len() < 300
        || lines("read-inline.jsonl").len() < 300
        || lines("read-reg-dlq.jsonl").len() < 2
        || lines("read-checked.jsonl").len() + lines("read-checked-dlq.jsonl").len() < 300
    {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not all through in 90 s\n{}",
            common::stderr_tail(&worker.0, 4000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let expected: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::from_str(&record(i).1).unwrap())
        .collect();
    for file in ["read-reg.jsonl", "read-inline.jsonl"] {
        let mut got = lines(file);
        got.sort_by_key(|v| v["id"].as_u64());
        assert_eq!(got, expected, "{file}");
    }
    let checked = lines("read-checked.jsonl");
    assert_eq!(checked.len(), 150);
    assert!(checked.iter().all(|v| v["v"].as_u64().unwrap() < 50));
    let rejected = lines("read-checked-dlq.jsonl");
    assert_eq!(rejected.len(), 150);
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("does not match the JSON Schema") && reason.contains("/v"),
        "{reason}"
    );
    let dlq = lines("read-reg-dlq.jsonl");
    let reasons: Vec<&str> = dlq.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("first byte is 123")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("Schema not found")),
        "{reasons:?}"
    );
    // The writer registered its schema under the topic's subject.
    let latest = common::http_get(
        registry
            .trim_start_matches("http://127.0.0.1:")
            .parse()
            .unwrap(),
        &format!("/subjects/{via_registry}-value/versions/latest"),
    );
    assert!(latest.contains("\"id\":1"), "{latest}");
    common::signal(&worker.0, libc::SIGTERM);
    common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
}
