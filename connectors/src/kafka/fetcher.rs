//! The kafka source's consumer, polled on a thread of its own.
//!
//! Why a thread: librdkafka calls the rebalance callback from inside `poll`, and a
//! partition may only be given up after what was read of it is committed. The callback
//! therefore blocks — the thread, not the pipeline — until the source has had a
//! checkpoint committed (see `Fetched::Revoke`).
//!
//! Records travel to the source over a bounded channel, so a slow pipeline stops the
//! polling and librdkafka's own fetch buffer bounds memory. They travel in batches of
//! what librdkafka has ready (at most `BATCH`): sent one by one, each message freed a
//! slot of a full channel and woke the other thread, and both threads spent their time
//! handing over instead of working. The channel is tokio's: the source awaits the first
//! batch of a poll instead of sleeping, so a drained channel does not leave the thread
//! blocked on a full one while the pipeline sleeps.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::ToCompactString;
use connectd_sdk::stats::{ErrorKind, SourceStats};
use connectd_sdk::{BadRecord, Record, Value};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::{Receiver, Sender};

use super::awaited::Awaited;
use super::bounds::{Admit, Bounds};
use super::exclusive::{Exclusive, Verdict};
use super::format::{Decoder, ValueFormat};
use super::groups;
use super::offsets::{self, Positions};
use super::time_order::TimeOrder;

/// How long a rebalance waits for the checkpoint of the partitions it takes away. Below
/// librdkafka's default `max.poll.interval.ms` (5 min), after which the group would
/// drop this worker anyway.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// Most messages sent to the source at once.
const BATCH: usize = 512;

/// Batches fetched but not yet handed to the pipeline (at most 4 096 messages).
const CHANNEL_CAPACITY: usize = 8;

/// How long the others wait for a partition with messages left that delivers none (see
/// `time_order`).
const IDLE_WAIT: Duration = Duration::from_secs(1);

pub type Partition = (String, i32);

/// A message as the source takes it.
#[derive(Debug)]
pub struct FetchedMessage {
    /// Shared by the messages of a partition: no copy of the topic's name per message.
    pub partition: Arc<Partition>,
    pub offset: i64,
    pub record: Result<Record, Box<BadRecord>>,
}

#[derive(Debug)]
pub enum Fetched {
    /// Messages in the order they are handed over.
    Messages(Vec<FetchedMessage>),
    Error(KafkaError),
    /// The consumer thread cannot go on.
    Fatal(String),
    /// These partitions are being taken away. Every record of them was sent before
    /// this. The source answers on `done`, once those records are committed, with the
    /// positions it had reached in them (they are committed to the group too).
    Revoke {
        partitions: Vec<Partition>,
        done: std::sync::mpsc::Sender<Positions>,
    },
    /// A backfill has read these partitions up to their bounds (`Shared::stop_at`);
    /// every message before that was sent before this.
    Through(Vec<Partition>),
}

/// What the consumer thread and the source share.
#[derive(Debug)]
pub struct Shared {
    /// Where the source is in every partition it has read, held now or not: the next
    /// offset to read. Checkpoints keep them all, merged across assignments, so a
    /// partition that comes back never falls back to `start`.
    pub positions: Mutex<Positions>,
    /// The partitions this consumer holds now: the only ones whose positions a kafka
    /// sink may commit to the group (another worker's progress on the rest is newer).
    pub held: Arc<Mutex<BTreeSet<Partition>>>,
    pub closing: AtomicBool,
    pub pipeline: String,
    pub source: String,
    pub format: ValueFormat,
    pub stats: Arc<SourceStats>,
    /// Whether the consumer reads committed records only: its end of a partition is then
    /// the last stable offset rather than the high watermark.
    pub read_committed: bool,
    /// The subscribed topics, in configuration order: a partition's lane is its topic's
    /// index × 65 536 + its number.
    pub topics: Vec<String>,
    /// Hand messages over in timestamp order across partitions, letting one run this
    /// far (ms) ahead (see `time_order`); `None`: as fetched.
    pub max_partition_skew: Option<i64>,
    /// Counts assignments: a new one resumes every partition it gives.
    pub generation: AtomicU64,
    /// Each partition's end (high watermark, or last stable offset when reading
    /// committed), from librdkafka's statistics.
    pub ends: Mutex<std::collections::HashMap<Partition, i64>>,
    /// Partitions of the topics not held yet but waited for (see `awaited`).
    pub awaited: Mutex<Awaited>,
    /// How long `awaited` partitions are waited for.
    pub await_for: Duration,
    /// A backfill's bounds (`bounds`): the partitions are assigned, not subscribed to,
    /// and read from their start up to these offsets.
    pub stop_at: Option<Positions>,
    /// Set when the pipeline cannot be split across the group's workers (`exclusive`).
    pub exclusive: Option<Mutex<Exclusive>>,
    /// `key_field`: the field of the value that every message's key must equal.
    pub key_field: Option<connectd_sdk::FieldPath>,
    /// `start: earliest`: a partition without a position starts at offset 0 (moved to
    /// the log's start by `auto.offset.reset` where retention deleted it), not where
    /// the broker says its start is (see `kafka::changelog::FROM_START`).
    pub from_start: bool,
}

impl Shared {
    /// The lane (see `connectd_sdk::lanes`) of a partition.
    pub fn lane(&self, topic: &str, partition: i32) -> u32 {
        let index = self.topics.iter().position(|t| t == topic).unwrap_or(0) as u32;
        (index << 16) | (partition as u32 & 0xffff)
    }

    pub fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<Partition>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells `/metrics` and the admin API which partitions this worker reads now.
    pub fn publish_held(&self) {
        let held = self.held().iter().cloned().collect();
        self.stats.set_partitions(held);
    }

    pub fn awaited(&self) -> std::sync::MutexGuard<'_, Awaited> {
        self.awaited.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn exclusive(&self) -> Option<std::sync::MutexGuard<'_, Exclusive>> {
        self.exclusive
            .as_ref()
            .map(|e| e.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Debug)]
pub struct Rebalancer {
    shared: Arc<Shared>,
    sender: Sender<Fetched>,
    /// Fetched records not handed over yet (`max_partition_skew` set). The rebalance
    /// callbacks run inside `poll`, on the consumer thread, as does everything else
    /// that locks it: never contended.
    order: Option<Mutex<TimeOrder<FetchedMessage>>>,
    /// Messages handed over but not sent yet: the batch being gathered. A revoke sends
    /// it before it tells the source, which then holds every message of the partitions.
    batch: Mutex<Vec<FetchedMessage>>,
    errors: super::client_errors::ClientErrors,
}

impl Rebalancer {
    fn order(&self) -> Option<std::sync::MutexGuard<'_, TimeOrder<FetchedMessage>>> {
        self.order
            .as_ref()
            .map(|o| o.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Vec<FetchedMessage>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the gathered batch. `Err`: the source is gone.
    fn send_batch(&self) -> Result<(), ()> {
        let messages = std::mem::take(&mut *self.batch());
        if messages.is_empty() {
            return Ok(());
        }
        // Once per batch: the clock is read for it (slow in a VM), and the topics.
        self.shared.stats.success();
        let mut topics: Vec<&str> = Vec::new();
        let mut last: Option<&Arc<Partition>> = None;
        for m in &messages {
            if last.is_none_or(|l| !Arc::ptr_eq(l, &m.partition)) {
                last = Some(&m.partition);
                if !topics.contains(&m.partition.0.as_str()) {
                    topics.push(&m.partition.0);
                }
            }
        }
        self.shared.stats.topics.used(topics);
        self.sender
            .blocking_send(Fetched::Messages(messages))
            .map_err(|_| ())
    }
}

impl ClientContext for Rebalancer {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }

    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's
    /// end offsets: the backlog is how far the source's positions are behind them.
    fn stats(&self, statistics: Statistics) {
        let held = self.shared.held().clone();
        let positions = self.shared.positions();
        let mut ends = self.shared.ends.lock().unwrap_or_else(|p| p.into_inner());
        let mut backlog = 0u64;
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                let key = (name.clone(), *id);
                let end = if self.shared.read_committed && p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if end >= 0 {
                    ends.insert(key.clone(), end);
                }
                // Only what this worker holds is its backlog.
                let (true, Some(position)) = (held.contains(&key), positions.get(&key)) else {
                    continue;
                };
                backlog += u64::try_from(end - position).unwrap_or(0);
            }
        }
        self.shared.stats.set_backlog(backlog);
    }
}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::error!(source = %self.shared.source, error = ?other, "kafka rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

impl Rebalancer {
    /// Starts each partition at the later of this worker's position (from its own
    /// checkpoint) and the group's committed offset (which the worker that held it last
    /// committed before giving it up); else per `auto.offset.reset`.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let source = &self.shared.source;
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .unwrap_or_else(|e| {
                tracing::warn!(source = %source, error = %e, "kafka: cannot read the group's committed offsets; using this worker's positions");
                TopicPartitionList::new()
            });
        let mut positions = self.shared.positions();
        if let Some(mut exclusive) = self.shared.exclusive() {
            let given: BTreeSet<Partition> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let theirs = offsets::from_list(&committed);
            let verdict =
                exclusive.assigned(&given, &positions, &theirs, std::time::Instant::now());
            drop(exclusive);
            match verdict {
                Verdict::Proceed => {}
                Verdict::Hold => {
                    tracing::warn!(source = %source, partitions = tpl.count(), "kafka: another member of the group holds some of the partitions; this pipeline cannot be split across workers, so none is read until this worker holds them all (a restarted worker's predecessor leaves within a session timeout)");
                    drop(positions);
                    self.take_nothing(consumer);
                    return;
                }
                Verdict::Refuse(why) => {
                    drop(positions);
                    self.take_nothing(consumer);
                    self.refuse(why);
                    return;
                }
            }
        }
        let mut starts = Positions::new();
        for e in tpl.elements() {
            let key = (e.topic().to_string(), e.partition());
            let group = match committed.find_partition(&key.0, key.1).map(|c| c.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            // The newest position known: this pipeline's checkpoint (every partition it
            // ever read) or the group's committed offset (the last holder's progress).
            let start = match (positions.get(&key).copied(), group) {
                (Some(mine), Some(theirs)) => Some(mine.max(theirs)),
                (mine, theirs) => mine.or(theirs),
            };
            if let Some(start) = start {
                starts.insert(key, start);
            }
        }
        for e in tpl.clone().elements() {
            let (topic, partition) = (e.topic(), e.partition());
            let offset = match starts.get(&(topic.to_string(), partition)) {
                Some(o) => Offset::Offset(*o),
                None if self.shared.from_start => crate::kafka::changelog::FROM_START,
                None => continue,
            };
            // Cannot fail: the partition is in the list.
            let _ = tpl.set_partition_offset(topic, partition, offset);
        }
        let held: BTreeSet<Partition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if let Some(mut order) = self.order() {
            order.assigned(&held, &starts);
        }
        // Merged, never replaced: a partition held elsewhere now keeps its position here.
        positions.extend(starts);
        drop(positions);
        self.shared.awaited().assigned(&held);
        *self.shared.held() = held;
        self.shared.publish_held();
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
        tracing::info!(source = %source, partitions = tpl.count(), "kafka partitions assigned");
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(source = %source, error = %e, "kafka: cannot take the assigned partitions");
        }
        // The new generation: a kafka sink commits offsets in its transactions with it.
        if let Some(md) = consumer.group_metadata() {
            let (topics, held) = (self.shared.topics.clone(), self.shared.held.clone());
            groups::register(&self.shared.pipeline, source, md, topics, held);
        }
    }

    /// Holds the group's assignment without reading any of it.
    fn take_nothing(&self, consumer: &BaseConsumer<Self>) {
        if let Err(e) = consumer.assign(&TopicPartitionList::new()) {
            tracing::error!(source = %self.shared.source, error = %e, "kafka: cannot hold the assigned partitions unread");
        }
    }

    /// Stops the source (it fails the pipeline with `why`) and the consumer thread,
    /// which then leaves the group.
    fn refuse(&self, why: String) {
        tracing::error!(source = %self.shared.source, "{why}");
        let _ = self.sender.blocking_send(Fetched::Fatal(why));
        self.shared.closing.store(true, Ordering::Relaxed);
    }

    /// Waits until the source has had what it read of these partitions committed, then
    /// commits those positions to the group (for the next holder) and lets them go.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let source = &self.shared.source;
        let partitions: Vec<Partition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        tracing::info!(source = %source, partitions = partitions.len(), "kafka partitions revoked: committing what was read of them");
        // Handed over: the source must have them before it answers. (If it is gone,
        // the revoke below finds it gone too.)
        let _ = self.send_batch();
        // Never handed over: the next holder reads them.
        if let Some(mut order) = self.order() {
            order.revoked(&partitions);
        }
        let (done, answer) = std::sync::mpsc::channel();
        let committed = match self
            .sender
            .blocking_send(Fetched::Revoke { partitions, done })
        {
            Ok(()) => answer.recv_timeout(REVOKE_TIMEOUT).ok(),
            Err(_) => None,
        };
        match committed {
            Some(reached) if !reached.is_empty() => {
                if let Some(mut exclusive) = self.shared.exclusive() {
                    exclusive.revoked(&reached);
                }
                if let Err(e) = consumer.commit(&offsets::to_list(&reached), CommitMode::Sync) {
                    tracing::warn!(source = %source, error = %e, "kafka: cannot commit the given-up partitions' offsets to the group");
                }
            }
            Some(_) => {}
            None if self.shared.closing.load(Ordering::Relaxed) => {}
            None => {
                tracing::warn!(source = %source, "kafka: partitions given up before what was read of them was committed (no checkpoint within {REVOKE_TIMEOUT:?}): their next holder may write those records again");
                self.shared
                    .positions()
                    .retain(|p, _| tpl.find_partition(&p.0, p.1).is_none());
            }
        }
        self.shared
            .held()
            .retain(|p| tpl.find_partition(&p.0, p.1).is_none());
        self.shared.publish_held();
        if let Err(e) = consumer.unassign() {
            tracing::error!(source = %source, error = %e, "kafka: cannot give up the revoked partitions");
        }
    }
}

/// Creates the consumer and the channel its thread (`run`) fills.
pub fn create(
    config: &rdkafka::ClientConfig,
    shared: Arc<Shared>,
) -> Result<(BaseConsumer<Rebalancer>, Receiver<Fetched>), KafkaError> {
    let (sender, receiver) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
    let order = shared
        .max_partition_skew
        .map(|skew| Mutex::new(TimeOrder::new(skew, IDLE_WAIT)));
    let consumer = config.create_with_context(Rebalancer {
        shared,
        sender,
        order,
        batch: Mutex::new(Vec::with_capacity(BATCH)),
        errors: Default::default(),
    })?;
    Ok((consumer, receiver))
}

/// The consumer thread: polls until the source closes (the channel's receiver is gone
/// or `closing` is set), then drops the consumer, which leaves the group.
pub fn run(consumer: BaseConsumer<Rebalancer>) {
    let shared = consumer.context().shared.clone();
    let sender = consumer.context().sender.clone();
    let decoder = match Decoder::new(shared.format.clone()) {
        Ok(d) => d,
        Err(e) => {
            let _ = sender.blocking_send(Fetched::Fatal(e));
            shared.closing.store(true, Ordering::Relaxed);
            return;
        }
    };
    await_partitions(&consumer, &shared);
    let context = consumer.context();
    let (mut generation, mut refreshed) = (0, std::time::Instant::now());
    let mut partitions = PartitionNames::default();
    let mut bounds = shared.stop_at.as_ref().map(Bounds::new);
    // The time order had more to let go than a batch holds.
    let mut ready = false;
    while !shared.closing.load(Ordering::Relaxed) {
        // Partitions a backfill has read to their bounds in this round.
        let mut through = Vec::new();
        // One clock read per message (the time order's) for all that follows.
        let now = std::time::Instant::now();
        let overdue = shared.exclusive().and_then(|e| e.overdue(now));
        if let Some(why) = overdue {
            context.refuse(why);
            break;
        }
        if context.order.is_some() && now.duration_since(refreshed) >= Duration::from_millis(100) {
            refreshed = now;
            refresh(&consumer, &mut generation);
        }
        // While a batch is gathered, only what librdkafka has ready is added to it.
        let timeout = if ready || !context.batch().is_empty() {
            Duration::ZERO
        } else if context.order().is_some_and(|o| o.holding()) {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        let (mut drained, mut error) = (false, None);
        match consumer.poll(timeout) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => drained = true,
            Some(Err(e)) => {
                shared.stats.error(error_kind(&e));
                error = Some(e);
            }
            Some(Ok(m))
                if bounds.as_mut().is_some_and(|b| {
                    let admit = b.admit(m.topic(), m.partition(), m.offset());
                    if admit == Admit::Through {
                        through.push((m.topic().to_string(), m.partition()));
                    }
                    admit != Admit::Keep
                }) => {}
            Some(Ok(m)) => {
                let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                shared.stats.read_bytes(size as u64);
                let ts = m.timestamp().to_millis();
                if let Some(ms) = ts {
                    shared.stats.event_time(ms);
                }
                let message = FetchedMessage {
                    partition: partitions.get(m.topic(), m.partition()),
                    offset: m.offset(),
                    record: message_record(&m, &decoder, &shared),
                };
                let unordered = match context.order() {
                    Some(mut order) => {
                        let partition = message.partition.clone();
                        order.push(&partition, m.offset(), ts, message).err()
                    }
                    None => Some(message),
                };
                context.batch().extend(unordered);
            }
        }
        ready = hand_over_in_order(&consumer, now);
        // The records before an error go first.
        let full = context.batch().len() >= BATCH;
        if (drained || full || error.is_some()) && context.send_batch().is_err() {
            break;
        }
        if let Some(e) = error {
            if sender.blocking_send(Fetched::Error(e)).is_err() {
                break;
            }
        }
        if let Some(b) = bounds.as_mut() {
            through.extend(b.through_by_position(&consumer));
        }
        if !through.is_empty() {
            if let Err(e) = consumer.pause(&list(&through)) {
                tracing::warn!(source = %shared.source, error = %e, "kafka: cannot pause partitions read to their bounds");
            }
            if context.send_batch().is_err()
                || sender.blocking_send(Fetched::Through(through)).is_err()
            {
                break;
            }
        }
    }
    shared.closing.store(true, Ordering::Relaxed);
}

/// One shared name per partition, looked up without allocating.
#[derive(Default)]
struct PartitionNames(Vec<Arc<Partition>>);

impl PartitionNames {
    fn get(&mut self, topic: &str, partition: i32) -> Arc<Partition> {
        if let Some(p) = self.0.iter().find(|p| p.1 == partition && p.0 == topic) {
            return p.clone();
        }
        let p = Arc::new((topic.to_string(), partition));
        self.0.push(p.clone());
        p
    }
}

/// Moves what the time order lets go now to the batch, and pauses and resumes
/// partitions as their queues fill and drain. True when the batch filled first.
fn hand_over_in_order(consumer: &BaseConsumer<Rebalancer>, now: std::time::Instant) -> bool {
    let context = consumer.context();
    let Some(mut order) = context.order() else {
        return false;
    };
    let mut batch = context.batch();
    while batch.len() < BATCH {
        let Some(next) = order.pop(now) else {
            break;
        };
        batch.push(next);
    }
    let full = batch.len() >= BATCH;
    drop(batch);
    let (pause, resume) = order.flow();
    drop(order);
    let source = &context.shared.source;
    if !pause.is_empty() {
        tracing::debug!(source = %source, partitions = ?pause, "kafka: pausing partitions with a full queue");
        if let Err(e) = consumer.pause(&list(&pause)) {
            tracing::warn!(source = %source, error = %e, "kafka: cannot pause partitions");
        }
    }
    if !resume.is_empty() {
        if let Err(e) = consumer.resume(&list(&resume)) {
            tracing::warn!(source = %source, error = %e, "kafka: cannot resume partitions");
        }
    }
    full
}

fn list<'a>(partitions: impl IntoIterator<Item = &'a Partition>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    tpl
}

/// Reads every partition of the subscribed topics before the first poll (which is
/// where assignments happen), so the source declares them all as lanes.
fn await_partitions(consumer: &BaseConsumer<Rebalancer>, shared: &Shared) {
    let mut partitions = BTreeSet::new();
    // All topics (`None`): asking for one by name may create it on some brokers.
    match consumer.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(md) => {
            for t in md
                .topics()
                .iter()
                .filter(|t| shared.topics.iter().any(|s| s == t.name()))
            {
                partitions.extend(
                    t.partitions()
                        .iter()
                        .map(|p| (t.name().to_string(), p.id())),
                );
            }
        }
        Err(e) => {
            tracing::warn!(source = %shared.source, error = %e, "kafka: cannot read the topics' partitions; the watermark waits only for partitions assigned to this worker");
        }
    }
    if let Some(mut exclusive) = shared.exclusive() {
        exclusive.known(partitions.clone());
    }
    // A backfill holds every partition, as one worker alone would.
    if shared.stop_at.is_some() {
        shared.held().extend(partitions.iter().cloned());
        shared.publish_held();
    }
    shared
        .awaited()
        .known(partitions, std::time::Instant::now(), shared.await_for);
}

/// Gives the time order each partition's end (from the last statistics: no request
/// here), and after a new assignment resumes every held partition: librdkafka keeps a
/// partition paused across a rebalance.
fn refresh(consumer: &BaseConsumer<Rebalancer>, generation: &mut u64) {
    let context = consumer.context();
    let shared = &context.shared;
    let now = shared.generation.load(Ordering::Relaxed);
    if now != *generation {
        *generation = now;
        let held = shared.held().clone();
        if let Err(e) = consumer.resume(&list(&held)) {
            tracing::warn!(source = %shared.source, error = %e, "kafka: cannot resume partitions");
        }
    }
    let ends = shared
        .ends
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(mut order) = context.order() {
        for (p, end) in &ends {
            order.set_end(p, *end);
        }
    }
}

fn error_kind(e: &KafkaError) -> ErrorKind {
    use rdkafka::error::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NetworkException
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::Resolve,
        ) => ErrorKind::Network,
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::UnknownTopicOrPartition
            | C::UnknownTopic,
        ) => ErrorKind::Rejected,
        _ => ErrorKind::Server,
    }
}

/// A message that cannot become a record: its payload and key as they came (bytes that
/// are not UTF-8, as Avro, kept as bytes), where it is, and why.
fn bad_message(m: &BorrowedMessage<'_>, reason: impl Into<String>) -> Box<BadRecord> {
    let position = format!(
        "offset {} of {} partition {}",
        m.offset(),
        m.topic(),
        m.partition()
    );
    Box::new(BadRecord::input(m.payload().unwrap_or_default(), position, reason).with_key(m.key()))
}

fn message_record(
    m: &BorrowedMessage<'_>,
    decoder: &Decoder,
    shared: &Shared,
) -> Result<Record, Box<BadRecord>> {
    let payload = m.payload().unwrap_or_default();
    let value = decoder
        .decode(payload, &shared.closing)
        .map_err(|reason| bad_message(m, reason))?;
    let key = match m.key() {
        None => Value::Null,
        Some(k) => super::message_key::key_value(
            super::message_key::utf8(k, || "the key".into()).map_err(|why| bad_message(m, why))?,
        ),
    };
    if let Some(field) = &shared.key_field {
        super::key_field::check(&key, &value, field).map_err(|reason| bad_message(m, reason))?;
    }
    let mut headers = vec![
        ("kafka.topic".into(), m.topic().into()),
        ("kafka.partition".into(), m.partition().to_compact_string()),
        ("kafka.offset".into(), m.offset().to_compact_string()),
    ];
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let v = super::message_key::utf8(h.value.unwrap_or_default(), || {
                format!("header `{}`", h.key)
            })
            .map_err(|why| bad_message(m, why))?;
            headers.push((h.key.into(), v.into()));
        }
    }
    Ok(Record {
        key,
        value,
        timestamp: m.timestamp().to_millis(),
        headers,
        lane: shared.lane(m.topic(), m.partition()).into(),
    })
}
