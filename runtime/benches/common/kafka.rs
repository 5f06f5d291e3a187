//! What the Kafka benches share: the broker's address, topics, the group's committed
//! offsets, a component's record count from `/metrics`, a worker process.

use std::process::Child;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, TopicPartitionList};

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

pub fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

/// A name no earlier run used (the broker outlives runs).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

pub fn create_topic(name: &str, partitions: i32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for r in rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create topic (start the broker: scripts/kafka.sh start)")
    {
        r.expect("create topic");
    }
}

/// Produces `messages` — (partition, or the partitioner's choice; key; value) — to
/// `topic` in large batches, waiting when the producer's queue is full, and flushes.
pub fn fill(topic: &str, messages: impl IntoIterator<Item = (Option<i32>, String, String)>) {
    let p: ThreadedProducer<DefaultProducerContext> = config()
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .unwrap();
    for (partition, key, value) in messages {
        let mut rec = BaseRecord::to(topic).key(&key).payload(&value);
        rec.partition = partition;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// What `group` has committed on `input`'s `partitions`, summed.
pub fn committed(group: &str, input: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = config().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(input, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .map(|l| {
            l.elements()
                .iter()
                .filter_map(|e| e.offset().to_raw())
                .filter(|o| *o > 0)
                .sum()
        })
        .unwrap_or(0)
}

/// The records a component has passed on so far, from the `/metrics` of the worker
/// whose admin API listens on `port`.
pub fn records_out(port: u16, component: &str) -> Option<f64> {
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
        .find(|l| {
            l.starts_with("connectd_records_out_total{")
                && l.contains(&format!("component=\"{component}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A free local port, for a worker's admin API.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A worker process, killed if the bench fails first.
pub struct Worker(pub Child);

impl Worker {
    /// Stops the worker with SIGTERM (it commits and leaves its group) and waits.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
