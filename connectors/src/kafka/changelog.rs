//! Reading a state changelog topic back (the `kafka` sink's `changelog_reader`): every
//! committed record, each partition (or the one asked for) from its start to its end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connectd_sdk::{ChangelogReader, ChangelogRecord, ConnectorError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, error};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a reader of a whole partition (and the `kafka` source's `start: earliest`)
/// starts: offset 0, moved to the log's start by `auto.offset.reset: earliest` where
/// retention has deleted it (compaction does not move the start). Not
/// `Offset::Beginning`, which asks the broker for the start: Tansu answers with the
/// record batch it stored first, which is not the lowest offset when two producers
/// wrote the partition at once, so a read from there missed a batch.
pub const FROM_START: Offset = Offset::Offset(0);

/// A consumer that reads committed records only, in group `group` (never committed
/// to), with the sink's connection settings.
pub fn committed_reader(
    props: &BTreeMap<String, String>,
    group: &str,
) -> Result<BaseConsumer, ConnectorError> {
    let mut consumer_props = props.clone();
    consumer_props.remove("transactional.id");
    consumer_props.remove("enable.idempotence");
    consumer_props.insert("group.id".into(), group.into());
    consumer_props.insert("enable.auto.commit".into(), "false".into());
    consumer_props.insert("isolation.level".into(), "read_committed".into());
    consumer_props.insert("auto.offset.reset".into(), "earliest".into());
    // A reader reads to an end it knows, then stops: a fetch left waiting at the broker
    // for more (500 ms by default) only delays the next partition's first fetch.
    consumer_props
        .entry("fetch.wait.max.ms".into())
        .or_insert_with(|| "10".into());
    client_config(&consumer_props)
        .create()
        .map_err(|e| error("cannot create a reader", e))
}

/// Reads the changelogs with the sink's connection settings, through one consumer kept
/// between reads: a worker given several partitions restores them one after another,
/// and a new consumer costs a connection and a metadata round trip each time.
pub struct KafkaChangelogReader {
    props: BTreeMap<String, String>,
    consumer: Mutex<Option<BaseConsumer>>,
}

impl std::fmt::Debug for KafkaChangelogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaChangelogReader")
            .finish_non_exhaustive()
    }
}

impl KafkaChangelogReader {
    pub fn new(props: BTreeMap<String, String>) -> Self {
        Self {
            props,
            consumer: Mutex::new(None),
        }
    }
}

impl ChangelogReader for KafkaChangelogReader {
    fn read(
        &self,
        topic: &str,
        partition: Option<u32>,
    ) -> Result<Vec<ChangelogRecord>, ConnectorError> {
        let mut kept = self.consumer.lock().unwrap_or_else(|p| p.into_inner());
        let consumer = match kept.take() {
            Some(c) => c,
            None => committed_reader(&self.props, "connectd-changelog-reader")?,
        };
        let read = read(&consumer, topic, partition);
        // Nothing fetched in the background between reads.
        if consumer.unassign().is_ok() {
            *kept = Some(consumer);
        }
        read
    }
}

/// Reads `topic`'s committed records through `consumer` — only the partition holding
/// input partition `only` (`only` mod the partition count) when given — each partition
/// from its start to the end it had when the read began.
fn read(
    consumer: &BaseConsumer,
    topic: &str,
    only: Option<u32>,
) -> Result<Vec<ChangelogRecord>, ConnectorError> {
    // All topics: asking for one by name may create it on some brokers.
    let md = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| error("read the topics", e))?;
    let Some(found) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    let count = found.partitions().len() as u32;
    let wanted = |id: i32| only.is_none_or(|p| count > 0 && p % count == id as u32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in found.partitions().iter().filter(|p| wanted(p.id())) {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), TIMEOUT)
            .map_err(|e| error(&format!("read the end of `{topic}`"), e))?;
        if high > 0 {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), FROM_START)
                .map_err(|e| error(&format!("read `{topic}`"), e))?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(&tpl)
        .map_err(|e| error(&format!("read `{topic}`"), e))?;
    let mut records = Vec::new();
    let deadline = Instant::now() + 10 * TIMEOUT;
    let mut unchecked = 0u32;
    loop {
        let polled = consumer.poll(Duration::from_millis(10));
        // Asking the consumer its position is a round trip to its thread: only near a
        // partition's end (the last offsets may be transaction markers, which it skips
        // without handing them over), when nothing came, or now and then.
        let mut check = polled.is_none() || unchecked >= 4096;
        if let Some(m) = polled {
            let m = m.map_err(|e| error(&format!("read `{topic}`"), e))?;
            check |= ends
                .get(&m.partition())
                .is_none_or(|high| m.offset() + 2 >= *high);
            records.push(ChangelogRecord {
                partition: m.partition() as u32,
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
        unchecked += 1;
        if !check {
            continue;
        }
        unchecked = 0;
        let positions = consumer
            .position()
            .map_err(|e| error(&format!("read `{topic}`"), e))?;
        let at_end = ends.iter().all(|(p, high)| {
            positions
                .find_partition(topic, *p)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|at| at >= *high)
        });
        if at_end {
            return Ok(records);
        }
        if Instant::now() > deadline {
            return Err(ConnectorError::transient(format!(
                "kafka: reading the state changelog `{topic}` did not reach its end in 5 minutes (an open transaction?)"
            )));
        }
    }
}
