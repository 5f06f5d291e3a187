//! `kafka`: reads topics as a member of a consumer group.
//!
//! Offsets are part of the pipeline's checkpoint and come back from the sink's committed
//! checkpoint on restart (auto-commit is off). Partitions are split between the workers
//! running the same pipeline with the same `group` by Kafka's group protocol. A
//! partition assigned to this worker resumes from the later of the position this
//! pipeline's checkpoint holds for it and the group's committed offset — which a
//! downstream kafka sink commits in its transaction —, else per `start` (a partition
//! never read). Checkpoints keep the position of every partition ever read, merged
//! across assignments: a restart that first gets only some partitions (the killed
//! member still holds the rest until its session times out) forgets none.
//!
//! When a rebalance takes partitions away, the source first has a checkpoint committed
//! that covers everything it read of them, commits those positions to the group, and
//! only then lets them go: their next holder starts exactly where this one stopped. (A
//! worker that dies cannot do this; its partitions resume from its last committed
//! checkpoint, which with a kafka sink is in the group too.)
//! Records carry `kafka.topic`, `kafka.partition` and `kafka.offset` headers and the
//! message timestamp, and each partition is a lane of its own (watermarks per
//! partition, see `connectd_sdk::lanes`). Messages are handed over in timestamp order
//! across partitions, a partition running at most `max_partition_skew` (60 s; 0: off,
//! as fetched) ahead of another with messages left (`kafka::time_order`).
//!
//! The source reports its consumer lag (records between its positions and the end of
//! its partitions) as `connectd_source_backlog_records`, from librdkafka's statistics
//! (every `statistics.interval.ms`, 5 s unless set in `properties`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::stats::SourceStats;
use connectd_sdk::{
    BadRecord, BuildContext, CheckpointControl, ConnectorError, Source, SourcePoll,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::Receiver;

use crate::kafka::bounds::Bounds;
use crate::kafka::exclusive::Exclusive;
use crate::kafka::fetcher::{self, Fetched, FetchedMessage, Partition, Shared};
use crate::kafka::format::{self, FormatOptions, ValueFormat};
use crate::kafka::offsets::{self, Positions};
use crate::kafka::{awaited, client_config, client_properties, error, groups, ClientOptions};

/// How long a poll waits for its first record: short, as a checkpoint barrier waits
/// for the poll to return.
const FIRST_RECORD_WAIT: Duration = Duration::from_millis(5);

/// After a poll found nothing: the pipeline's pause before the next one.
const IDLE: Duration = Duration::from_millis(15);

pub struct KafkaSource {
    props: std::collections::BTreeMap<String, String>,
    topics: Vec<String>,
    format: ValueFormat,
    max_partition_skew: Option<i64>,
    key_field: Option<connectd_sdk::FieldPath>,
    pipeline: String,
    name: String,
    shared: Option<Arc<Shared>>,
    fetched: Option<Receiver<Fetched>>,
    /// Messages received from the consumer thread, not yet returned by a poll.
    queued: std::collections::VecDeque<FetchedMessage>,
    thread: Option<std::thread::JoinHandle<()>>,
    control: Option<Arc<dyn CheckpointControl>>,
    revoking: Option<Revoking>,
    /// A consumer error that came after records: reported on the next poll.
    deferred_error: Option<KafkaError>,
    stats: Arc<SourceStats>,
    /// A backfill's bounds (`Source::stop_at`), and the partitions read up to them.
    stop_at: Option<Positions>,
    through: std::collections::BTreeSet<Partition>,
    /// Why the pipeline cannot be split across the group's workers (`Source::exclusive`).
    exclusive: Option<String>,
}

/// Partitions being taken away, waiting for the checkpoint that covers them.
struct Revoking {
    partitions: Vec<Partition>,
    done: std::sync::mpsc::Sender<Positions>,
    /// The checkpoint id asked for (once asked).
    covering: Option<u64>,
    /// Every record of them has been returned: `lanes` no longer declares them, so
    /// transforms run per partition hand their state over at the next barrier, which
    /// comes before (or is) the covering checkpoint.
    drained: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics)
            .finish()
    }
}

/// Reads Kafka topics in a consumer group; positions live in checkpoints (and in a
/// kafka sink's transaction), never auto-committed.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct KafkaSourceOptions {
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub client: ClientOptions,
    /// The topics to read.
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub topics: Vec<String>,
    /// The consumer group.
    pub group: String,
    /// `read_committed` skips aborted transactions' records.
    #[serde(default)]
    pub isolation: Isolation,
    /// Where a partition never read starts: `earliest` or `latest`.
    #[serde(default)]
    pub start: StartAt,
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub format: FormatOptions,
    /// How far ahead in message time one partition may run of the others while they
    /// still have messages at the broker; 0 turns the ordering off.
    #[serde(default = "default_skew")]
    pub max_partition_skew: HumanDuration,
    /// The field of the value that the message key holds: the topics are partitioned
    /// by it (checked for every message; one whose key differs is a bad record).
    /// `state.per_partition` needs it to know that a stateful transform's key is whole
    /// in one partition.
    #[serde(default)]
    pub key_field: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    ReadCommitted,
    ReadUncommitted,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Earliest,
    Latest,
}

fn default_skew() -> HumanDuration {
    HumanDuration::secs(60)
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let client: Option<ClientOptions> = cfg.typed_part();
    let format: Option<FormatOptions> = cfg.typed_part();
    let o: KafkaSourceOptions = cfg.typed().ok_or(Invalid)?;
    let (Some(client), Some(format)) = (client, format) else {
        return Err(Invalid);
    };
    let mut props = client_properties(cfg, ctx, client);
    let topics = o.topics;
    if topics.is_empty() && cfg.has("topics") {
        cfg.error("topics", "name at least one topic");
    }
    let group = o.group;
    let isolation = match o.isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    };
    let start = match o.start {
        StartAt::Earliest => "earliest",
        StartAt::Latest => "latest",
    };
    let format = format::read(cfg, format);
    // 0 turns it off.
    let skew = o.max_partition_skew.0;
    let max_partition_skew =
        (!skew.is_zero()).then(|| i64::try_from(skew.as_millis()).unwrap_or(i64::MAX));
    let key_field = o.key_field.as_deref().map(connectd_sdk::FieldPath::parse);
    cfg.finish()?;
    props.insert("group.id".into(), group);
    props.insert("isolation.level".into(), isolation.into());
    props.insert("auto.offset.reset".into(), start.into());
    // Offsets live in checkpoints (and in the sink's transaction), never auto-committed.
    props.insert("enable.auto.commit".into(), "false".into());
    props.insert("enable.auto.offset.store".into(), "false".into());
    // librdkafka (2.x) waits 1 s before fetching a partition again once its local
    // queue was full; a pipeline drains that queue in well under a second, then sat
    // idle: 1 M records took 8 s instead of 2.
    props
        .entry("fetch.queue.backoff.ms".into())
        .or_insert_with(|| "100".into());
    // Statistics feed the backlog metric (`connectd_source_backlog_records`).
    props
        .entry("statistics.interval.ms".into())
        .or_insert_with(|| "5000".into());
    Ok(Box::new(KafkaSource::new(
        props,
        topics,
        format,
        max_partition_skew,
        key_field,
        ctx.pipeline.clone(),
        ctx.component.clone(),
    )))
}

impl KafkaSource {
    fn new(
        props: std::collections::BTreeMap<String, String>,
        topics: Vec<String>,
        format: ValueFormat,
        max_partition_skew: Option<i64>,
        key_field: Option<connectd_sdk::FieldPath>,
        pipeline: String,
        name: String,
    ) -> Self {
        KafkaSource {
            props,
            topics,
            format,
            max_partition_skew,
            key_field,
            pipeline,
            name,
            shared: None,
            fetched: None,
            queued: Default::default(),
            thread: None,
            control: None,
            revoking: None,
            deferred_error: None,
            stats: Arc::default(),
            stop_at: None,
            through: Default::default(),
            exclusive: None,
        }
    }

    /// What the consumer thread and this source share, starting at `start`.
    fn new_shared(&self, start: Positions) -> Shared {
        Shared {
            positions: std::sync::Mutex::new(start),
            held: Default::default(),
            closing: Default::default(),
            pipeline: self.pipeline.clone(),
            source: self.name.clone(),
            format: self.format.clone(),
            stats: self.stats.clone(),
            read_committed: self.props.get("isolation.level").map(String::as_str)
                == Some("read_committed"),
            topics: self.topics.clone(),
            // A backfill's partitions go at their own pace: event time per partition
            // keeps its windows exact.
            max_partition_skew: self.max_partition_skew.filter(|_| self.stop_at.is_none()),
            generation: Default::default(),
            ends: Default::default(),
            awaited: Default::default(),
            await_for: awaited::wait_for(&self.props),
            stop_at: self.stop_at.clone(),
            key_field: self.key_field.clone(),
            from_start: self.props.get("auto.offset.reset").map(String::as_str) == Some("earliest"),
            // A backfill reads by assignment, outside the group.
            exclusive: self
                .exclusive
                .clone()
                .filter(|_| self.stop_at.is_none())
                .map(|why| {
                    let group = self.props.get("group.id").cloned().unwrap_or_default();
                    std::sync::Mutex::new(Exclusive::new(
                        why,
                        group,
                        awaited::wait_for(&self.props),
                    ))
                }),
        }
    }

    fn shared(&self) -> Result<&Arc<Shared>, ConnectorError> {
        self.shared
            .as_ref()
            .ok_or_else(|| ConnectorError::permanent("kafka source polled before open"))
    }

    /// Asks for the checkpoint that covers the revoked partitions and, once it is
    /// committed, hands their positions to the consumer thread, which lets them go.
    fn continue_revoke(&mut self) -> Result<SourcePoll, ConnectorError> {
        let shared = self.shared()?.clone();
        let Some(r) = self.revoking.as_mut() else {
            return Ok(SourcePoll::Idle(Duration::ZERO));
        };
        r.drained = true;
        if let Some(control) = &self.control {
            let covering = *r.covering.get_or_insert_with(|| control.request());
            if control.committed() < covering {
                return Ok(SourcePoll::Idle(Duration::from_millis(10)));
            }
        }
        let mut positions = shared.positions();
        let reached: Positions = r
            .partitions
            .iter()
            .filter_map(|p| positions.remove(p).map(|o| (p.clone(), o)))
            .collect();
        drop(positions);
        // The thread may have given up waiting: then nobody listens any more.
        let _ = r.done.send(reached);
        self.revoking = None;
        Ok(SourcePoll::Idle(Duration::ZERO))
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn attach_checkpoints(&mut self, control: Arc<dyn CheckpointControl>) {
        self.control = Some(control);
    }

    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        let start = match &offset {
            Some(v) if !v.is_null() => offsets::from_json(v).map_err(|e| {
                ConnectorError::permanent(format!(
                    "kafka source {}: checkpointed offsets: {e}",
                    self.name
                ))
            })?,
            _ => Positions::new(),
        };
        let shared = Arc::new(self.new_shared(start));
        // None held yet: the group assigns them.
        shared.publish_held();
        let (consumer, fetched) = fetcher::create(&client_config(&self.props), shared.clone())
            .map_err(|e| error("cannot create the consumer", e))?;
        match &self.stop_at {
            // A backfill: from the start of each partition it has a bound in, outside
            // the group (`kafka::bounds`).
            Some(stop) => {
                let mut tpl = rdkafka::TopicPartitionList::new();
                for (topic, partition) in Bounds::new(stop).partitions() {
                    tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
                        .map_err(|e| error("cannot assign", e))?;
                }
                shared.held().extend(stop.keys().cloned());
                consumer
                    .assign(&tpl)
                    .map_err(|e| error("cannot assign", e))?;
            }
            None => {
                let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
                consumer
                    .subscribe(&topics)
                    .map_err(|e| error("cannot subscribe", e))?;
            }
        }
        let thread = std::thread::Builder::new()
            .name(format!("kafka-{}", self.name))
            .spawn(move || fetcher::run(consumer))
            .map_err(|e| ConnectorError::io("kafka source: starting the consumer thread", e))?;
        self.shared = Some(shared);
        self.fetched = Some(fetched);
        self.queued.clear();
        self.thread = Some(thread);
        self.revoking = None;
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        // Set only when the queue is empty (the channel is read only then): both come
        // after every message received before them was returned.
        if let Some(e) = self.deferred_error.take() {
            return Err(error("consume", e));
        }
        if self.revoking.is_some() {
            return self.continue_revoke();
        }
        let shared = self.shared()?.clone();
        let fetched = self
            .fetched
            .as_mut()
            .ok_or_else(|| ConnectorError::permanent("kafka source polled before open"))?;
        let stopped = || ConnectorError::permanent("kafka source: the consumer thread stopped");
        let mut out = Vec::with_capacity(max.min(self.queued.len().max(64)));
        // Where this poll leaves each partition it took messages of.
        let mut reached: Vec<(Arc<Partition>, i64)> = Vec::new();
        let mut waited = false;
        while out.len() < max {
            if let Some(m) = self.queued.pop_front() {
                match m.record {
                    Ok(r) => out.push(r),
                    Err(b) => bad.push(*b),
                }
                match reached
                    .iter_mut()
                    .find(|(p, _)| Arc::ptr_eq(p, &m.partition))
                {
                    Some(r) => r.1 = m.offset + 1,
                    None => reached.push((m.partition, m.offset + 1)),
                }
                continue;
            }
            // The first batch is awaited a little (woken as soon as it comes), the rest
            // taken as they are: a poll never waits for a full batch.
            let next = match fetched.try_recv() {
                Ok(f) => f,
                Err(TryRecvError::Disconnected) => return Err(stopped()),
                Err(TryRecvError::Empty) if waited || !out.is_empty() || !bad.is_empty() => break,
                Err(TryRecvError::Empty) => {
                    waited = true;
                    match tokio::time::timeout(FIRST_RECORD_WAIT, fetched.recv()).await {
                        Ok(Some(f)) => f,
                        Ok(None) => return Err(stopped()),
                        Err(_) => break,
                    }
                }
            };
            match next {
                Fetched::Messages(messages) => self.queued.extend(messages),
                Fetched::Fatal(why) => {
                    return Err(ConnectorError::permanent(format!("kafka source: {why}")))
                }
                Fetched::Error(e) => {
                    if out.is_empty() && bad.is_empty() {
                        return Err(error("consume", e));
                    }
                    self.deferred_error = Some(e);
                    break;
                }
                Fetched::Through(partitions) => self.through.extend(partitions),
                Fetched::Revoke { partitions, done } => {
                    self.revoking = Some(Revoking {
                        partitions,
                        done,
                        covering: None,
                        drained: false,
                    });
                    break;
                }
            }
        }
        if !reached.is_empty() {
            let mut positions = shared.positions();
            for (p, offset) in reached {
                positions.insert((*p).clone(), offset);
            }
        }
        if !out.is_empty() || !bad.is_empty() {
            // Returned first: the revoke's checkpoint is asked for after these are out.
            return Ok(SourcePoll::Batch(out));
        }
        if self.revoking.is_some() {
            return self.continue_revoke();
        }
        Ok(SourcePoll::Idle(IDLE))
    }

    /// A backfill reads each partition from its earliest offset; where a first run
    /// with `start: latest` began is not kept.
    fn backfill_blocker(&self) -> Option<String> {
        (self.props.get("auto.offset.reset").map(String::as_str) == Some("latest")).then(|| {
            "with `start: latest` it began each partition wherever its end was then, which is not kept; a backfill reads from the earliest offset (use `start: earliest`)".to_string()
        })
    }

    fn exclusive(&mut self, why: &str) {
        self.exclusive = Some(why.to_string());
    }

    fn stop_at(&mut self, position: &serde_json::Value) -> Result<bool, ConnectorError> {
        let stop = match position {
            serde_json::Value::Null => Positions::new(),
            v => offsets::from_json(v).map_err(|e| {
                ConnectorError::permanent(format!(
                    "kafka source {}: checkpointed offsets: {e}",
                    self.name
                ))
            })?,
        };
        self.stop_at = Some(stop);
        Ok(true)
    }

    fn stopped(&self) -> bool {
        self.stop_at.as_ref().is_some_and(|stop| {
            self.queued.is_empty()
                && stop
                    .iter()
                    .all(|(p, b)| *b <= 0 || self.through.contains(p))
        })
    }

    /// A partition resumes from the later of the checkpoint and the group's offset.
    fn resumes_from_group(&self) -> bool {
        true
    }

    /// By `key_field` when it is set: the producer's partitioner keyed by it.
    fn partitioning(&self) -> connectd_sdk::Partitioning {
        match &self.key_field {
            Some(field) => connectd_sdk::Partitioning::ByField(field.clone()),
            None => connectd_sdk::Partitioning::Undeclared,
        }
    }

    /// The partitions this worker holds now, and those it still waits for (see
    /// `kafka::awaited`); before the topics' partitions are known, the pending lane.
    /// Partitions being revoked whose records were all returned are left out.
    fn lanes(&self) -> Option<Vec<u32>> {
        let shared = self.shared.as_ref()?;
        let mut awaited = shared.awaited();
        let Some(waiting) = awaited.at(std::time::Instant::now()) else {
            return Some(vec![connectd_sdk::lanes::PENDING]);
        };
        let mut lanes: std::collections::BTreeSet<u32> =
            waiting.iter().map(|(t, p)| shared.lane(t, *p)).collect();
        drop(awaited);
        let leaving = self.revoking.as_ref().filter(|r| r.drained);
        lanes.extend(
            shared
                .held()
                .iter()
                .filter(|p| !leaving.is_some_and(|r| r.partitions.contains(p)))
                .map(|(t, p)| shared.lane(t, *p)),
        );
        Some(lanes.into_iter().collect())
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    fn offset(&self) -> serde_json::Value {
        match &self.shared {
            Some(s) => offsets::to_json(&s.positions()),
            None => serde_json::json!({}),
        }
    }

    /// Sets the group's committed offsets back to where `start` says a new group
    /// begins (the group has no members: the pipeline is stopped).
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        let (props, topics) = (self.props.clone(), self.topics.clone());
        tokio::task::spawn_blocking(move || reset_group(&props, &topics))
            .await
            .map_err(|e| ConnectorError::permanent(format!("kafka: reset: {e}")))?
    }

    /// Sets the group's committed offsets to the new positions too: a partition
    /// starts at the newer of the checkpoint and the group's commit, so the group
    /// must not stay ahead of a rewind.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        let positions = offsets::from_json(offset).map_err(ConnectorError::permanent)?;
        if let Some(((topic, _), _)) = positions
            .iter()
            .find(|((t, _), _)| !self.topics.contains(t))
        {
            return Err(ConnectorError::permanent(format!(
                "topic `{topic}` is not one this source reads ({})",
                self.topics.join(", ")
            )));
        }
        let props = self.props.clone();
        tokio::task::spawn_blocking(move || commit_group(&props, &positions))
            .await
            .map_err(|e| ConnectorError::permanent(format!("kafka: alter: {e}")))?
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        groups::unregister(&self.pipeline, &self.name);
        if let Some(s) = &self.shared {
            s.closing.store(true, Ordering::Relaxed);
        }
        // Unblocks the thread if it waits to hand over records or a revoke.
        self.fetched = None;
        self.queued.clear();
        self.revoking = None;
        if let Some(t) = self.thread.take() {
            // Dropping the consumer leaves the group now rather than after the session
            // timeout.
            tokio::task::spawn_blocking(move || t.join()).await.ok();
        }
        Ok(())
    }
}

/// Commits `positions` to the group (it has no members: the pipeline is stopped).
fn commit_group(
    props: &std::collections::BTreeMap<String, String>,
    positions: &offsets::Positions,
) -> Result<(), ConnectorError> {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    let consumer: BaseConsumer = client_config(props)
        .create()
        .map_err(|e| error("cannot create the consumer", e))?;
    let tpl = offsets::to_list(positions);
    if tpl.count() > 0 {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| error("commit the altered offsets to the group", e))?;
    }
    Ok(())
}

fn reset_group(
    props: &std::collections::BTreeMap<String, String>,
    topics: &[String],
) -> Result<(), ConnectorError> {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    const TIMEOUT: Duration = Duration::from_secs(30);
    let consumer: BaseConsumer = client_config(props)
        .create()
        .map_err(|e| error("cannot create the consumer", e))?;
    let latest = props.get("auto.offset.reset").map(String::as_str) == Some("latest");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| error("read the topic's partitions", e))?;
        for t in md.topics() {
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p.id(), TIMEOUT)
                    .map_err(|e| error("read the partition's offsets", e))?;
                let offset = if latest { high } else { low };
                tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(offset))
                    .map_err(|e| error("reset", e))?;
            }
        }
    }
    if tpl.count() > 0 {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| error("commit the reset offsets to the group", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
