//! The component traits. The runtime drives them; they know nothing of channels,
//! barriers or other components.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{BadRecord, ConnectorError};
use crate::record::{Batch, Record};

/// What a source's poll produced.
#[derive(Debug)]
pub enum SourcePoll {
    /// Records, at most the number asked for.
    Batch(Vec<Record>),
    /// Nothing right now; ask again after about this long (the runtime stays responsive
    /// to checkpoints and shutdown meanwhile).
    Idle(Duration),
    /// The source is exhausted (a bounded generator or a file read to its end).
    End,
}

/// Produces records and knows its own position so that a restart resumes exactly there.
///
/// Determinism contract for exactly-once: after `open(Some(offset))`, the source
/// produces the same records, in the same order, that it produced after reaching
/// `offset` before (for sources that can replay).
#[async_trait]
pub trait Source: Send {
    /// Opens connections/files and moves to `offset` (`None`: start from the beginning
    /// as configured).
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError>;

    /// Returns at most `max` records. Inputs that cannot be parsed go to `bad` (they do
    /// not count towards `max`). Must be cancel-safe: the runtime may drop the future
    /// only between polls, never inside one, so a poll may await freely.
    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError>;

    /// The position after the last record returned by `poll`.
    fn offset(&self) -> serde_json::Value;

    /// Called once before `open`: the line to the checkpoint coordinator, for a source
    /// that must see its output committed at moments of its own choosing.
    fn attach_checkpoints(&mut self, _control: std::sync::Arc<dyn crate::CheckpointControl>) {}

    /// The source's partitions (its own lane numbers, see [`crate::lanes`]) when it
    /// reads several ordered streams at once and sets `Record::lane`; `None`: one
    /// stream. Asked after every poll; a change (a rebalance) is passed downstream, so
    /// event-time transforms wait for every partition before their watermark moves.
    fn lanes(&self) -> Option<Vec<u32>> {
        None
    }

    /// What decides the partition (lane) a record comes through, for
    /// `state.per_partition`: keyed state is then split by partition, which is exact
    /// only when every record of a key comes through one partition.
    fn partitioning(&self) -> Partitioning {
        Partitioning::Single
    }

    /// Whether a restart re-reads what was lost (false for a live websocket).
    fn replayable(&self) -> bool {
        true
    }

    /// Why this source cannot backfill a sink added with `start: beginning`; `None`:
    /// it can. A backfill opens a second instance at its configured start and takes
    /// from it exactly as many records as the first produced up to a checkpoint, so it
    /// needs a source that replays one ordered stream from its start.
    fn backfill_blocker(&self) -> Option<String> {
        (!self.replayable())
            .then(|| "it cannot replay: what it produced before is gone (live data)".to_string())
    }

    /// Called before `open` when the pipeline cannot be split across workers (`why`
    /// says what it holds: keyed state, a sink's own checkpoint). A source whose input
    /// workers share (a consumer group) then reads only while this worker has all of it,
    /// and stops the pipeline with `why` when another worker takes part.
    fn exclusive(&mut self, _why: &str) {}

    /// Whether each of its partitions resumes from the later of the position in the
    /// restored checkpoint and the one its consumer group committed (the `kafka`
    /// source). Then, with sinks that commit the group's offsets, the group holds what
    /// every worker did, and recovery may give up a checkpoint no sink committed
    /// instead of redoing it (`recovery::give_up_uncommitted`).
    fn resumes_from_group(&self) -> bool {
        false
    }

    /// For a backfill, before `open(None)`: read from the configured start as a new
    /// reader would (ignoring positions kept outside the pipeline, such as a consumer
    /// group's) and return nothing past `position` (an `offset()` this source reported).
    /// `Ok(false)`: not supported; the runtime then counts records, which is exact for
    /// one ordered stream.
    fn stop_at(&mut self, _position: &serde_json::Value) -> Result<bool, ConnectorError> {
        Ok(false)
    }

    /// After `stop_at` returned true: whether every record before the position has been
    /// returned.
    fn stopped(&self) -> bool {
        false
    }

    /// For a backfill that counted records: whether `now` (this instance's `offset()`)
    /// is where `held` (a checkpoint's) had it. A source whose positions gained fields
    /// in a later version overrides this, so a checkpoint written before them still
    /// matches.
    fn same_position(&self, held: &serde_json::Value, now: &serde_json::Value) -> bool {
        held == now
    }

    /// Counters about the external service, exported on `/metrics` (sources that talk
    /// to one: requests, reconnects, errors by kind, last success, lag).
    fn stats(&self) -> Option<std::sync::Arc<crate::stats::SourceStats>> {
        None
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The admin API's offset reset, with the pipeline stopped and this source not
    /// opened: forget any position kept outside the pipeline's checkpoints (a Kafka
    /// group's committed offsets), so the next run starts as configured. Most sources
    /// keep none.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The admin API's offset alteration (KIP-875), with the pipeline stopped and this
    /// source not opened: checks that `offset` is a position of this source (the error
    /// says what is wrong) and moves any position kept outside the pipeline's
    /// checkpoints to it (a Kafka group's committed offsets). The runtime then writes
    /// it into the last checkpoint. A source that does not override this refuses.
    async fn alter(&mut self, _offset: &serde_json::Value) -> Result<(), ConnectorError> {
        Err(ConnectorError::permanent(
            "this source's position cannot be altered (DELETE .../offsets resets it)",
        ))
    }
}

/// How a source's records are divided among its partitions (see
/// [`Source::partitioning`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// One stream: every key is whole in it.
    Single,
    /// Several partitions, by the value of this field: the message key holds it,
    /// checked for every record.
    ByField(crate::FieldPath),
    /// Several partitions, by something the source was not told.
    Undeclared,
}

/// Where a transform puts its output.
#[derive(Debug, Default)]
pub struct Emitter {
    pub records: Vec<Record>,
    /// Records this transform could not handle (type errors, unparsable times...).
    pub bad: Vec<BadRecord>,
    /// Records that arrived after their window closed and were dropped (counted):
    /// behind the watermark of their own partition.
    pub late_dropped: u64,
    /// Records dropped as late that were on time in their own partition: the partition
    /// had been idle, or was newly assigned, while the watermark moved on.
    pub late_partition_behind: u64,
}

impl Emitter {
    pub fn emit(&mut self, r: Record) {
        self.records.push(r);
    }
}

/// A synchronous, batch-at-a-time transform. Stateful transforms return their state in
/// `snapshot` at every checkpoint and get it back in `restore` after a restart.
pub trait Transform: Send {
    /// Processes one batch from input number `input` (in `inputs:` order).
    fn process(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError>;

    /// The lanes `origin` has now (see [`crate::lanes`]): sent before that origin's
    /// first records and again after a rebalance. Event-time transforms keep a
    /// watermark per lane.
    fn on_lanes(&mut self, _origin: u32, _lanes: &[u64], _out: &mut Emitter) {}

    /// Whether output records keep the lane of the input they came from (filters,
    /// maps, plugins). A transform whose output is a new stream (windows, joins)
    /// returns false: its output gets a lane of its own.
    fn keeps_lanes(&self) -> bool {
        true
    }

    /// How often `on_tick` wants to be called (processing-time duties), if at all.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Called every `tick_interval` with the wall clock in epoch ms.
    fn on_tick(&mut self, _now_ms: i64, _out: &mut Emitter) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// All inputs are exhausted: emit whatever is still held (open windows).
    fn on_end(&mut self, _out: &mut Emitter) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Emits more output owed from the previous call, a bounded amount at a time, so a
    /// window closing over millions of keys does not hold all its rows in memory at
    /// once. The host calls it, passing each part on, until it returns false; a
    /// snapshot is never taken in between.
    fn resume(&mut self, _out: &mut Emitter) -> Result<bool, ConnectorError> {
        Ok(false)
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        Ok(serde_json::Value::Null)
    }

    fn restore(&mut self, _state: serde_json::Value) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The fields input number `input`'s records are keyed by in this transform's
    /// state (a window's `group_by`, a dedup's `key`, a join's `on`); `None` when it
    /// keeps no state per key. `state.per_partition` checks them against how the
    /// input is partitioned.
    fn state_key(&self, _input: usize) -> Option<Vec<crate::FieldPath>> {
        None
    }

    /// Offered once, before `restore`: keyed state in the pipeline's state store,
    /// checkpointed incrementally by the runtime (already at the restored checkpoint).
    /// A transform that takes it returns true and keeps only small metadata in its
    /// `snapshot`.
    fn attach_state(&mut self, _state: Box<dyn crate::state::KeyedState>) -> bool {
        false
    }

    /// Counters of a transform that hosts a plugin (batches, traps, time in guest),
    /// exported on `/metrics`.
    fn plugin_stats(&self) -> Option<std::sync::Arc<crate::stats::PluginStats>> {
        None
    }
}

/// A checkpoint a sink commits together with the data written since the previous one.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub id: u64,
    /// The pipeline's state at this checkpoint (source offsets, transform snapshots):
    /// opaque to the sink, stored and handed back verbatim.
    pub state: serde_json::Value,
}

/// What a sink found committed when it opened.
pub type Committed = Checkpoint;

/// Writes records; the commit point of exactly-once delivery.
///
/// Contract: `commit(c)` makes every record written since the previous commit durable
/// *atomically with* `c`; after a crash, `open` returns the last committed checkpoint and
/// discards anything written after it (a sink that `keeps_prepared` keeps the epoch it
/// pre-committed, for the recovery to commit or give up).
#[async_trait]
pub trait Sink: Send {
    /// Connects, discards uncommitted writes, and returns the last committed checkpoint.
    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError>;

    /// Writes (or buffers) records. Records the destination rejects go to `bad`.
    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError>;

    /// The first phase of the commit of checkpoint `id`: the sink makes the epoch's
    /// writes ready to commit (a sink that writes at commit, inside a transaction, does
    /// those writes here and leaves the transaction open). Records the destination
    /// rejects go to `bad`: the runtime puts them in the dead-letter queue and syncs it
    /// before the checkpoint can complete. May be called again for the same `id` after
    /// a failure; `commit` follows.
    async fn pre_commit(
        &mut self,
        _id: u64,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError>;

    async fn close(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Forgets the committed checkpoint (the admin API's offset reset, with the
    /// pipeline stopped and this sink not opened): the next run starts from the
    /// beginning, and what was written stays.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        Err(ConnectorError::permanent(
            "this sink type cannot reset its checkpoint yet",
        ))
    }

    /// Whether this sink can honour exactly-once (false: at-least-once, e.g. stdout).
    fn exactly_once(&self) -> bool {
        true
    }

    /// Whether this sink stays exactly-once when workers of a consumer group split the
    /// pipeline's source partitions: it commits the positions it wrote up to to the
    /// group itself, in the same transaction as its records (the `kafka` sink). Others
    /// keep them in a checkpoint of their own, so such a pipeline runs on one worker.
    fn commits_group_offsets(&self) -> bool {
        false
    }

    /// An idempotent sink without transactions (asked after `open`): it cannot take
    /// back what it wrote, so the runtime hands it an epoch's records only once their
    /// checkpoint is complete, from the write-ahead log, then commits. Records of an
    /// epoch given up after a crash (a live source sends different ones next time)
    /// therefore never reach it. The cost: its output appears a checkpoint later.
    fn writes_at_commit(&self) -> bool {
        false
    }

    /// A sink whose pre-commit makes the epoch durable at the destination and keeps it,
    /// uncommitted, across a crash (Flink's recoverable committables: a file and the
    /// length it had at the pre-commit). The runtime keeps no write-ahead log for it.
    /// Its `open` discards writes after the pre-commit, not the pre-committed epoch;
    /// the recovery then commits that epoch (`commit` with its id, nothing written
    /// again) or gives it up (`abort_prepared`).
    fn keeps_prepared(&self) -> bool {
        false
    }

    /// After `open`: the checkpoint this sink pre-committed and has not committed.
    fn prepared(&self) -> Option<u64> {
        None
    }

    /// Gives up the pre-committed epoch `prepared` names: the destination is as of the
    /// last commit again.
    async fn abort_prepared(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Counters about the destination, exported on `/metrics` (bytes written).
    fn stats(&self) -> Option<std::sync::Arc<crate::stats::SinkStats>> {
        None
    }

    /// Whether this sink can carry the state changelogs of a pipeline with
    /// `state.per_partition` in the transaction of each checkpoint (the `kafka` sink).
    fn writes_changelogs(&self) -> bool {
        false
    }

    /// Adds checkpoint `id`'s state changes to the epoch it is about to pre-commit, to
    /// commit atomically with its records (called before `pre_commit(id)`, and again
    /// before `commit` when a recovery redoes the epoch). Only called when
    /// `writes_changelogs` is true.
    async fn write_changelogs(
        &mut self,
        _id: u64,
        _changelogs: &[crate::changelog::Changelog],
    ) -> Result<(), ConnectorError> {
        Err(ConnectorError::permanent(
            "this sink cannot write state changelogs",
        ))
    }

    /// What reads this sink's changelogs back (after `open`), for a worker that takes a
    /// partition over or lost its state store. Only asked when `writes_changelogs` is
    /// true.
    fn changelog_reader(&self) -> Option<std::sync::Arc<dyn crate::changelog::ChangelogReader>> {
        None
    }
}

macro_rules! opaque_debug {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for dyn $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($t))
            }
        }
    )*};
}
opaque_debug!(Source, Transform, Sink);

/// Reads an offset given to [`Source::alter`] as the source's own offset type, refusing
/// fields the type does not have (a typo would otherwise be dropped silently).
pub fn offset_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    offset: &serde_json::Value,
) -> Result<T, ConnectorError> {
    let parsed: T = serde_json::from_value(offset.clone())
        .map_err(|e| ConnectorError::permanent(format!("not a position of this source: {e}")))?;
    let known = serde_json::to_value(&parsed).unwrap_or_default();
    if let (Some(given), Some(known)) = (offset.as_object(), known.as_object()) {
        if let Some(extra) = given.keys().find(|k| !known.contains_key(*k)) {
            let fields: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(ConnectorError::permanent(format!(
                "unknown field `{extra}` in the offset (its fields: {})",
                fields.join(", ")
            )));
        }
    }
    Ok(parsed)
}
