//! `state.per_partition`: a stateful transform run as one instance per input partition,
//! each with its own state table, watermark and snapshot, as Kafka Streams runs a task
//! per partition. A partition's state is then a unit that can be handed over alone
//! (scale-out, README architecture section 4), and a partition's event time does not
//! wait for the others'.
//!
//! The task of a record is its source's own lane number (a Kafka source: topic index ×
//! 65 536 + partition), without the source's origin: partition 2 of a join's left topic
//! and partition 2 of its right topic meet in one instance, as co-partitioned topics do
//! in Kafka Streams. A single-stream source (a file) is task 0.
//!
//! An instance's output takes the lane of the first record or announcement that made
//! it, so a stateful transform further down runs per partition too, as a Kafka Streams
//! sub-topology does.
//!
//! With a changelog (`Handover`), a task's state moves with its partition: an instance
//! is made only for a partition this worker reads, restored from the changelog before
//! its first record; a partition its source stops declaring (revoked) is snapshotted a
//! last time at the next barrier, whose changelog carries that state to its next
//! holder, and then dropped with its table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use connectd_sdk::state::{KeyedState, MemoryState};
use connectd_sdk::{lanes, Batch, ConnectorError, Emitter, Record, Transform};
use serde_json::Value;

use super::PipelineError;
use crate::config::Rebuild;

/// The key of a per-partition snapshot: the instances' snapshots by lane.
pub(super) const SNAPSHOT_KEY: &str = "per_partition";

/// Opens the state table of a task, given how many tasks share the memory budget.
pub type TableOpener = Box<dyn Fn(u32, usize) -> Result<Box<dyn KeyedState>, PipelineError> + Send>;

/// Whether a transform keeps state per key, and so must run per partition: its output
/// is a new stream (windows, joins), or it takes keyed state (dedup). Asked of an
/// instance that is then thrown away: it may have taken the probe's state.
pub fn holds_keyed_state(t: &mut dyn Transform) -> bool {
    !t.keeps_lanes() || t.attach_state(Box::new(MemoryState::default()))
}

/// A checkpoint's snapshot of transform `name` must have the shape its run expects:
/// turning `state.per_partition` on or off over a checkpoint would restore state as
/// something it is not.
pub fn check_snapshot(
    name: &str,
    snapshot: &Value,
    per_partition: bool,
) -> Result<(), PipelineError> {
    let split = snapshot
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key(SNAPSHOT_KEY));
    match (split, per_partition) {
        (true, false) => Err(PipelineError::new(
            name,
            "the checkpoint holds this transform's state per partition, but `state.per_partition` is off: turn it back on, or reset the pipeline's state (DELETE /connectors/<name>/offsets) to start over",
        )),
        (false, true) => Err(PipelineError::new(
            name,
            "the checkpoint holds this transform's state as one, but `state.per_partition` is on: turn it off, or reset the pipeline's state (DELETE /connectors/<name>/offsets) to start over",
        )),
        _ => Ok(()),
    }
}

/// The task of a lane: its source's own lane number (see the module's note).
pub fn task_of(lane: u64) -> u32 {
    lane as u32
}

/// Restores a task from the changelog, in place of what the store held of it: its
/// lane and snapshot, or `None` when the changelog has nothing of it.
pub type TaskRestorer = Box<dyn FnMut(u32) -> Result<Option<(u64, Value)>, PipelineError> + Send>;

/// How tasks come and go when a changelog carries their state (scale-out).
pub struct Handover {
    pub restore: TaskRestorer,
    /// The task was handed over: its table ends with the next barrier's delta.
    pub retire: Box<dyn Fn(u32) + Send>,
}

/// One task's instance of the transform.
struct Instance {
    transform: Box<dyn Transform>,
    /// The lane its output takes: the first it was made for.
    lane: u64,
}

/// One transform run as an instance per task (input partition).
pub struct PerTask {
    name: String,
    rebuild: Rebuild<dyn Transform>,
    open_table: TableOpener,
    tick: Option<Duration>,
    instances: BTreeMap<u32, Instance>,
    /// Origins that have not declared their lanes yet, with their pending lane: a new
    /// instance waits for them too, as the transform would.
    pending: BTreeMap<u32, Vec<u64>>,
    /// Tasks whose instance may owe output (`Transform::resume`), in the order met.
    owing: Vec<u32>,
    /// How many tasks share the memory budget: the most known so far.
    shares: usize,
    /// An instance that could not be made in `on_lanes` (which cannot fail): reported
    /// at the next call that can.
    failed: Option<ConnectorError>,
    /// With a changelog: tasks are restored from it and handed over (see the module).
    handover: Option<Handover>,
    /// The lanes each origin declared last (with a handover: told to instances made
    /// later).
    announced: BTreeMap<u32, Vec<u64>>,
    /// Tasks whose partition is no longer declared: dropped at the next snapshot.
    leaving: BTreeSet<u32>,
}

impl PerTask {
    /// `prototype`: an instance built from the same options, asked only for its tick.
    pub fn new(
        name: String,
        prototype: &dyn Transform,
        rebuild: Rebuild<dyn Transform>,
        open_table: TableOpener,
    ) -> Self {
        Self {
            name,
            rebuild,
            open_table,
            tick: prototype.tick_interval(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
            owing: Vec::new(),
            shares: 1,
            failed: None,
            handover: None,
            announced: BTreeMap::new(),
            leaving: BTreeSet::new(),
        }
    }

    /// Tasks' state moves with their partitions through a changelog (see the module).
    pub fn with_handover(mut self, handover: Handover) -> Self {
        self.handover = Some(handover);
        self
    }

    fn check(&mut self) -> Result<(), ConnectorError> {
        self.failed.take().map_or(Ok(()), Err)
    }

    /// A new instance for `task`, with its table; its output takes `lane`.
    fn build(&mut self, task: u32, lane: u64) -> Result<&mut Instance, ConnectorError> {
        let mut transform = self.rebuild.build().ok_or_else(|| {
            ConnectorError::permanent(format!(
                "transform `{}`: cannot build an instance for partition {task}",
                self.name
            ))
        })?;
        let table = (self.open_table)(task, self.shares)
            .map_err(|e| ConnectorError::permanent(e.to_string()))?;
        transform.attach_state(table);
        Ok(self
            .instances
            .entry(task)
            .or_insert(Instance { transform, lane }))
    }

    /// The instance of `lane`'s task, made when the task is new (and told of the
    /// origins it waits for).
    fn instance(&mut self, lane: u64, out: &mut Emitter) -> Result<&mut Instance, ConnectorError> {
        let task = task_of(lane);
        if self.handover.is_some() && !self.instances.contains_key(&task) {
            self.restore_task(task, lane, out)?;
        }
        if !self.instances.contains_key(&task) {
            self.shares = self.shares.max(self.instances.len() + 1);
            let pending = self.pending.clone();
            let start = out.records.len();
            let made = self.build(task, lane)?;
            for (origin, lanes) in &pending {
                made.transform.on_lanes(*origin, lanes, out);
            }
            relabel(out, start, lane);
        }
        self.instances
            .get_mut(&task)
            .ok_or_else(|| ConnectorError::permanent("partition instance vanished"))
    }

    /// With a handover: the instance of a partition this worker starts reading, as its
    /// changelog left it, told the lanes it waits for.
    fn restore_task(
        &mut self,
        task: u32,
        lane: u64,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        let Some(handover) = self.handover.as_mut() else {
            return Ok(());
        };
        let saved = (handover.restore)(task).map_err(|e| {
            ConnectorError::permanent(format!(
                "transform `{}`: cannot restore partition {task} from its changelog: {}",
                self.name, e.message
            ))
        })?;
        self.shares = self.shares.max(self.instances.len() + 1);
        let own = saved.as_ref().map_or(lane, |(l, _)| *l);
        let pending = self.pending.clone();
        let mut declared = self.announced.clone();
        let of_record = declared.entry(lanes::origin_of(lane)).or_default();
        if !of_record.contains(&lane) {
            of_record.push(lane);
        }
        let start = out.records.len();
        let made = self.build(task, own)?;
        if let Some((_, state)) = saved {
            made.transform.restore(state)?;
        }
        for (origin, lanes) in &pending {
            made.transform.on_lanes(*origin, lanes, out);
        }
        for (origin, lanes) in declared {
            let mine: Vec<u64> = lanes.into_iter().filter(|l| task_of(*l) == task).collect();
            made.transform.on_lanes(origin, &mine, out);
        }
        relabel(out, start, own);
        self.owe(task);
        Ok(())
    }

    fn owe(&mut self, task: u32) {
        if !self.owing.contains(&task) {
            self.owing.push(task);
        }
    }

    fn process_lane(
        &mut self,
        input: usize,
        lane: u64,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        let start = out.records.len();
        let instance = self.instance(lane, out)?;
        let own = instance.lane;
        instance.transform.process(input, batch, out)?;
        relabel(out, start, own);
        self.owe(task_of(lane));
        Ok(())
    }

    /// Calls `f` on every instance, its output labelled with its lane.
    fn each(
        &mut self,
        out: &mut Emitter,
        mut f: impl FnMut(&mut dyn Transform, &mut Emitter) -> Result<(), ConnectorError>,
    ) -> Result<(), ConnectorError> {
        let tasks: Vec<u32> = self.instances.keys().copied().collect();
        for task in tasks {
            let start = out.records.len();
            if let Some(i) = self.instances.get_mut(&task) {
                f(i.transform.as_mut(), out)?;
                relabel(out, start, i.lane);
            }
            self.owe(task);
        }
        Ok(())
    }
}

impl PerTask {
    /// Tells every instance its own lanes of `origin` (none: it has no partition of
    /// it). With a handover, an instance whose partition of `origin` is gone is leaving
    /// instead, and the declaration is kept for instances made later.
    fn declare(&mut self, origin: u32, real: Vec<u64>, out: &mut Emitter) {
        let handover = self.handover.is_some();
        let tasks: Vec<u32> = self.instances.keys().copied().collect();
        for task in tasks {
            let Some(i) = self.instances.get_mut(&task) else {
                continue;
            };
            let own: Vec<u64> = real
                .iter()
                .copied()
                .filter(|l| task_of(*l) == task)
                .collect();
            if handover && own.is_empty() && lanes::origin_of(i.lane) == origin {
                self.leaving.insert(task);
                continue;
            }
            self.leaving.remove(&task);
            let start = out.records.len();
            i.transform.on_lanes(origin, &own, out);
            relabel(out, start, i.lane);
            self.owe(task);
        }
        if handover {
            self.announced.insert(origin, real);
        }
    }

    /// After a snapshot: leaving tasks are handed over (their last state is in it).
    fn hand_over_leaving(&mut self) {
        let Some(handover) = &self.handover else {
            return;
        };
        for task in std::mem::take(&mut self.leaving) {
            if self.instances.remove(&task).is_some() {
                (handover.retire)(task);
                self.owing.retain(|t| *t != task);
                tracing::info!(transform = %self.name, partition = task, "partition handed over: its state is in this checkpoint's changelog");
            }
        }
    }
}

/// Output takes the lane of the instance that made it.
fn relabel(out: &mut Emitter, start: usize, lane: u64) {
    out.records[start..].iter_mut().for_each(|r| r.lane = lane);
}

impl Transform for PerTask {
    fn process(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        self.check()?;
        let Some(first) = batch.first().map(|r| r.lane) else {
            return Ok(());
        };
        // Batches come one lane at a time (`source_task::by_lane`); split any other.
        if batch.iter().all(|r| r.lane == first) {
            return self.process_lane(input, first, batch, out);
        }
        let mut runs: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
        for r in batch.iter() {
            runs.entry(r.lane).or_default().push(r.clone());
        }
        for (lane, records) in runs {
            self.process_lane(input, lane, Arc::new(records), out)?;
        }
        Ok(())
    }

    fn on_lanes(&mut self, origin: u32, announced: &[u64], out: &mut Emitter) {
        let real: Vec<u64> = announced
            .iter()
            .copied()
            .filter(|l| *l as u32 != lanes::PENDING)
            .collect();
        if real.is_empty() && !announced.is_empty() {
            // Not declared yet: every instance, and any made later, waits for it.
            self.pending.insert(origin, announced.to_vec());
            self.each(out, |t, out| {
                t.on_lanes(origin, announced, out);
                Ok(())
            })
            .ok();
            return;
        }
        self.pending.remove(&origin);
        // With a handover no instance is made for a declaration: the partition may be
        // another worker's, awaited.
        if self.handover.is_none() {
            let new = real
                .iter()
                .filter(|l| !self.instances.contains_key(&task_of(**l)))
                .count();
            self.shares = self.shares.max(self.instances.len() + new);
            for lane in &real {
                if let Err(e) = self.instance(*lane, out) {
                    self.failed.get_or_insert(e);
                }
            }
        }
        self.declare(origin, real, out);
    }

    fn keeps_lanes(&self) -> bool {
        true
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.tick
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Emitter) -> Result<(), ConnectorError> {
        self.check()?;
        self.each(out, |t, out| t.on_tick(now_ms, out))
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        self.check()?;
        self.each(out, |t, out| t.on_end(out))
    }

    fn resume(&mut self, out: &mut Emitter) -> Result<bool, ConnectorError> {
        while let Some(&task) = self.owing.first() {
            let more = match self.instances.get_mut(&task) {
                Some(i) => {
                    let start = out.records.len();
                    let more = i.transform.resume(out)?;
                    relabel(out, start, i.lane);
                    more
                }
                None => false,
            };
            if more {
                return Ok(true);
            }
            self.owing.remove(0);
        }
        Ok(false)
    }

    fn snapshot(&mut self) -> Result<Value, ConnectorError> {
        self.check()?;
        let mut tasks = serde_json::Map::new();
        for (task, i) in &mut self.instances {
            let snapshot = i.transform.snapshot()?;
            tasks.insert(
                task.to_string(),
                serde_json::json!({ "lane": i.lane, "state": snapshot }),
            );
        }
        self.hand_over_leaving();
        Ok(serde_json::json!({ SNAPSHOT_KEY: tasks }))
    }

    fn restore(&mut self, state: Value) -> Result<(), ConnectorError> {
        let Some(Value::Object(tasks)) = state.get(SNAPSHOT_KEY).cloned() else {
            return Err(ConnectorError::permanent(
                "the checkpoint holds no per-partition state",
            ));
        };
        if self.handover.is_some() {
            // Each partition comes back from its changelog when this worker is assigned
            // it: another worker may have moved it on since this checkpoint.
            return Ok(());
        }
        self.shares = self.shares.max(tasks.len());
        for (task, saved) in tasks {
            let (Ok(task), Some(lane)) = (task.parse::<u32>(), saved["lane"].as_u64()) else {
                return Err(ConnectorError::permanent(format!(
                    "the checkpoint's state of partition `{task}` is not of this version"
                )));
            };
            let state = saved.get("state").cloned().unwrap_or(Value::Null);
            self.build(task, lane)?.transform.restore(state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
