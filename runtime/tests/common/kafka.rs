//! The test broker: `KAFKA_BOOTSTRAP`, or a Tansu broker of the test's own.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;

/// `KAFKA_BOOTSTRAP` (a broker shared by all tests), else the calling test's own
/// Tansu broker (see `tansu`).
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| super::tansu::broker_for_this_test())
}

/// A name no earlier run used (the broker may outlive test runs).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A `kafka` source `iot` on `topic` in `group`, from the earliest offset, with a short
/// session (a killed worker's partitions move on within seconds): the lines to put
/// under a pipeline's `sources:`.
pub fn iot_source_yaml(topic: &str, group: &str) -> String {
    format!(
        r#"  iot:
    type: kafka
    bootstrap_servers: {bootstrap}
    topics: [{topic}]
    group: {group}
    start: earliest
    properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
"#,
        bootstrap = bootstrap(),
    )
}

/// `iot_source_yaml` with `key_field: host`: its messages are keyed by their host.
pub fn iot_source_keyed_by_host(topic: &str, group: &str) -> String {
    iot_source_yaml(topic, group) + "    key_field: host\n"
}

fn config() -> ClientConfig {
    config_for(&bootstrap())
}

fn config_for(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

pub fn create_topic(name: &str, partitions: i32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create topic");
    for r in results {
        r.expect("create topic");
    }
}

/// An idempotent producer for test input.
pub struct Producer(ThreadedProducer<DefaultProducerContext>);

impl Producer {
    pub fn new() -> Self {
        Self::connect(&bootstrap())
    }

    /// A producer to the given broker (for threads other than the test's own).
    pub fn connect(bootstrap: &str) -> Self {
        Self(
            config_for(bootstrap)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .unwrap(),
        )
    }

    /// Produces `(key, value)` records, in order, and waits until all are acknowledged.
    pub fn send<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (K, V)>,
    ) {
        for (k, v) in records {
            self.enqueue(BaseRecord::to(topic).key(k.as_ref()).payload(v.as_ref()));
        }
        self.0.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Produces `(value, message timestamp ms)` records into one partition, in order.
    pub fn send_at(
        &self,
        topic: &str,
        partition: i32,
        records: impl IntoIterator<Item = (String, i64)>,
    ) {
        for (v, ts) in records {
            self.enqueue(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .partition(partition)
                    .payload(v.as_bytes())
                    .timestamp(ts),
            );
        }
        self.0.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Produces `(partition, key, value)` records, in order, and waits until all are
    /// acknowledged.
    pub fn send_keyed_to(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (i32, String, String)>,
    ) {
        for (partition, k, v) in records {
            self.enqueue(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(k.as_bytes())
                    .payload(v.as_bytes()),
            );
        }
        self.0.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Produces messages with a key, a value and headers, all as bytes, in order.
    pub fn send_with_headers(&self, topic: &str, messages: &[RawMessage]) {
        for m in messages {
            let mut headers = rdkafka::message::OwnedHeaders::new();
            for (name, value) in &m.headers {
                headers = headers.insert(rdkafka::message::Header {
                    key: name,
                    value: Some(value),
                });
            }
            self.enqueue(
                BaseRecord::to(topic)
                    .key(&m.key[..])
                    .payload(&m.value[..])
                    .headers(headers),
            );
        }
        self.0.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Queues one record, waiting while the producer's queue is full.
    fn enqueue<K: rdkafka::message::ToBytes + ?Sized, V: rdkafka::message::ToBytes + ?Sized>(
        &self,
        mut rec: BaseRecord<'_, K, V>,
    ) {
        loop {
            match self.0.send(rec) {
                Ok(()) => return,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// A message as bytes, for `Producer::send_with_headers`.
pub struct RawMessage {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Produces `(key, value)` records with a producer of its own (see `Producer::send`).
pub fn produce(topic: &str, records: impl IntoIterator<Item = (String, String)>) {
    Producer::new().send(topic, records);
}

/// Reads `topic` from the beginning with read_committed until `until` says enough (or
/// `limit` passes), then `settle` longer to catch anything extra. Returns the values.
pub fn consume_committed(
    topic: &str,
    limit: Duration,
    settle: Duration,
    until: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    consume_committed_as(
        topic,
        limit,
        settle,
        |m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        until,
    )
}

/// A message read back: its partition, key and value as they are at the broker.
#[derive(Debug)]
pub struct Consumed {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// `consume_committed` with each message's partition and key.
pub fn consume_committed_messages(
    topic: &str,
    limit: Duration,
    settle: Duration,
    until: impl Fn(&[Consumed]) -> bool,
) -> Vec<Consumed> {
    let read = |m: &rdkafka::message::BorrowedMessage<'_>| Consumed {
        partition: m.partition(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
    };
    consume_committed_as(topic, limit, settle, read, until)
}

fn consume_committed_as<T>(
    topic: &str,
    limit: Duration,
    settle: Duration,
    read: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> T,
    until: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    let c: BaseConsumer = config()
        .set("group.id", unique("test-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let start = Instant::now();
    assign_from_zero(&c, topic, limit);
    let mut out = Vec::new();
    let mut done_at: Option<Instant> = None;
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(read(&m));
        }
        if done_at.is_none() && until(&out) {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > settle) || start.elapsed() > limit {
            return out;
        }
    }
}

/// Assigns every partition of `topic` (waiting up to `limit` for it to exist) from
/// offset 0, not from "earliest": Tansu answers ListOffsets(earliest) with the record
/// batch stored first, which is not the lowest offset when two producers write one
/// partition at once (its offsets are handed out before the batches are stored), so a
/// reader from "earliest" skipped the first batch now and then. A test's topics are
/// new and never truncated, so 0 is their start on any broker.
pub fn assign_from_zero(c: &BaseConsumer, topic: &str, limit: Duration) {
    let start = Instant::now();
    let partitions = loop {
        let n = c
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| md.topics().first().map(|t| t.partitions().len()))
            .unwrap_or(0);
        if n > 0 {
            break n as i32;
        }
        assert!(
            start.elapsed() < limit,
            "no topic `{topic}` after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(0))
            .unwrap();
    }
    c.assign(&tpl).unwrap();
}

/// Counts values by their `id` field.
pub fn ids(values: &[String]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        *m.entry(v["id"].as_u64().unwrap()).or_insert(0) += 1;
    }
    m
}
