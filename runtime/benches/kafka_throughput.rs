//! Benchmark: kafka source → kafka sink with exactly-once (transactions, offsets in the
//! transaction) against a plain rdkafka consume+produce loop (no transactions), on the
//! same broker, the same 1 M records of ~100 bytes, in the same run.
//!
//! Needs a broker: `scripts/kafka.sh start` (Tansu on 127.0.0.1:19092) or
//! `KAFKA_BOOTSTRAP`. Run: `cargo bench -p connectd-runtime --bench kafka_throughput`
//! (env `RECORDS`).
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

mod common;

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn create_topics(names: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 4, TopicReplication::Fixed(1)))
        .collect();
    for r in rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &[u8], payload: &[u8]) {
    let mut rec = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The plain loop: consume every record of `input` and produce it to `output`.
fn plain_loop(input: &str, output: &str, n: u64) -> f64 {
    let started = Instant::now();
    let c: BaseConsumer = config()
        .set("group.id", unique("bench-plain"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .create()
        .unwrap();
    c.subscribe(&[input]).unwrap();
    let p = producer();
    let mut seen = 0;
    while seen < n {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            send(
                &p,
                output,
                m.key().unwrap_or_default(),
                m.payload().unwrap_or_default(),
            );
            seen += 1;
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    started.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (input, plain_out, connectd_out) = (
        unique("bench-in"),
        unique("bench-plain-out"),
        unique("bench-cd-out"),
    );
    create_topics(&[&input, &plain_out, &connectd_out]);
    let p = producer();
    for i in 0..n {
        // ~100 bytes of JSON.
        let v = format!(
            r#"{{"id":{i},"symbol":"SYM{:03}","price":{}.25,"volume":{},"venue":"XNAS-{:04}"}}"#,
            i % 500,
            1000 + i % 9000,
            i % 10_000,
            i % 7919
        );
        send(&p, &input, format!("k{}", i % 64).as_bytes(), v.as_bytes());
    }
    p.flush(Duration::from_secs(120)).unwrap();

    let plain = plain_loop(&input, &plain_out, n);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        format!(
            r#"name: bench
batch_size: 1024
checkpoint: {{interval: 1s}}
sources:
  in:
    type: kafka
    bootstrap_servers: {b}
    topics: [{input}]
    group: {group}
    bounded: true
    properties: {{session.timeout.ms: "2000"}}
sinks:
  out:
    type: kafka
    inputs: [in]
    bootstrap_servers: {b}
    topic: {connectd_out}
"#,
            b = bootstrap(),
            group = unique("bench-cd")
        ),
    )
    .unwrap();
    let usage = common::run_connectd(dir.path(), "p.yaml");
    let (a, b) = (n as f64 / plain, n as f64 / usage.wall_seconds);
    println!(
        "kafka_throughput: {n} records of ~100 bytes, 4 partitions, broker {}",
        bootstrap()
    );
    println!("| pipeline | wall s | records/s |");
    println!("|---|---|---|");
    println!("| plain rdkafka consume+produce loop | {plain:.2} | {a:.0} |");
    println!(
        "| connectd kafka → kafka, exactly-once | {:.2} | {b:.0} |",
        usage.wall_seconds
    );
    println!(
        "connectd / plain: {:.2}× (CPU {:.2} s, peak RSS {:.0} MB)",
        b / a,
        usage.cpu_seconds,
        usage.max_rss_mb
    );
}
