//! Reading a state changelog topic back (the `kafka` sink's `changelog_reader`): every
//! committed record, each partition (or the one asked for) from its start to its end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use connectd_sdk::{ChangelogReader, ChangelogRecord, ConnectorError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, error};

const TIMEOUT: Duration = Duration::from_secs(30);

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
    client_config(&consumer_props)
        .create()
        .map_err(|e| error("cannot create a reader", e))
}

/// Reads the changelogs with the sink's connection settings.
#[derive(Debug)]
pub struct KafkaChangelogReader {
    pub props: BTreeMap<String, String>,
}

impl ChangelogReader for KafkaChangelogReader {
    fn read(
        &self,
        topic: &str,
        partition: Option<u32>,
    ) -> Result<Vec<ChangelogRecord>, ConnectorError> {
        read(&self.props, topic, partition)
    }
}

/// Every committed record of `topic` (read_committed, each partition from its start to
/// its end), or of the partition holding input partition `only`'s records; none when
/// the topic does not exist.
pub fn read(
    props: &BTreeMap<String, String>,
    topic: &str,
    only: Option<u32>,
) -> Result<Vec<ChangelogRecord>, ConnectorError> {
    let consumer = committed_reader(props, &format!("connectd-changelog-reader-{topic}"))?;
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
    let mut ends = Vec::new();
    for p in found.partitions().iter().filter(|p| wanted(p.id())) {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), TIMEOUT)
            .map_err(|e| error(&format!("read the end of `{topic}`"), e))?;
        if high > 0 {
            ends.push((p.id(), high));
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
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
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| error(&format!("read `{topic}`"), e))?;
            records.push(ChangelogRecord {
                partition: m.partition() as u32,
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
        // Positions pass transaction markers too, so each reaches its end once all
        // committed records are read.
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
