//! The backfill of a sink added with `start: beginning` to a pipeline that already has
//! a checkpoint *c*. Fresh instances of the sources and of the transforms upstream of
//! the sink run from the sources' configured start until each has produced as many
//! records as it had at *c* (and ends there if it had ended by *c*), into a write-ahead
//! log epoch *c* for the sink alone. The epoch is then moved into the sink's own log,
//! which makes the sink look like one that took part in *c* but crashed before
//! committing it: recovery's redo writes the epoch and commits *c*, and the sink goes on
//! with the others.
//!
//! A crash during the backfill leaves no epoch in the sink's log, and nothing reached
//! the sink: the next start backfills again from scratch. Counting records is a position
//! only for a source that replays one ordered stream (`Source::backfill_blocker`); the
//! offset each ends at is checked against the one *c* holds.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::{
    BadRecord, Checkpoint, CheckpointControl, Committed, ConnectorError, Record, Sink, Source,
    SourcePoll,
};
use tokio::sync::watch;

use super::checkpoint::PipelineState;
use super::recovery::{SinkAction, SinkPlan};
use super::wal::Wal;
use super::PipelineError;
use crate::config::{BackfillParts, ComponentPlan, PipelinePlan, PipelineSpec};

/// A sink to backfill: its place among the pipeline's sinks, its name and inputs.
pub(super) struct Target {
    pub index: usize,
    pub name: String,
    pub inputs: Vec<String>,
}

/// The restored checkpoint a backfill runs up to, and the pipeline's state directory.
#[derive(Clone, Copy)]
pub(super) struct Restored<'a> {
    pub id: u64,
    pub state: &'a PipelineState,
    pub dir: &'a Path,
}

/// The sinks recovery found new (never committed) that say `start: beginning`.
pub(super) fn targets(
    spec: &PipelineSpec,
    sinks: &[ComponentPlan<dyn Sink>],
    plans: &[SinkPlan],
) -> Vec<Target> {
    sinks
        .iter()
        .zip(plans)
        .enumerate()
        .filter(|(_, (s, p))| {
            p.action == SinkAction::StartsHere { had: None } && spec.starts_at_beginning(&s.name)
        })
        .map(|(index, (s, _))| Target {
            index,
            name: s.name.clone(),
            inputs: s.inputs.clone(),
        })
        .collect()
}

/// Backfills `targets` and turns each into a sink with the epoch of the restored
/// checkpoint to redo. False: `stop` ended the backfill first (nothing changed).
pub(super) async fn new_sinks(
    spec: &Arc<PipelineSpec>,
    parts: BackfillParts,
    targets: &[Target],
    plans: &mut [SinkPlan],
    wals: &mut [Option<Wal>],
    at: Restored<'_>,
    stop: watch::Receiver<bool>,
) -> Result<bool, PipelineError> {
    let pipeline_dir = at.dir;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(pipeline = %spec.name, sinks = ?names, checkpoint = at.id, "start: beginning: backfilling from the sources' start up to the restored checkpoint");
    let Some(logs) = run(spec, parts, targets, at.id, at.state, pipeline_dir, stop).await? else {
        return Ok(false);
    };
    for (target, log) in targets.iter().zip(&logs) {
        let Some(wal) = wals.get_mut(target.index).and_then(Option::as_mut) else {
            continue;
        };
        wal.adopt(log, at.id)?;
        plans[target.index].action = SinkAction::Redo(at.id);
        super::crash_point::hit("backfilled", at.id, &target.name);
    }
    let _ = std::fs::remove_dir_all(pipeline_dir.join("backfill"));
    Ok(true)
}

/// Runs the backfill of `targets` up to checkpoint `id` (whose state is `state`). Returns
/// each target's sealed log (under `<pipeline dir>/backfill`), or `None` when `stop`
/// ended it first.
async fn run(
    spec: &Arc<PipelineSpec>,
    parts: BackfillParts,
    targets: &[Target],
    id: u64,
    state: &PipelineState,
    pipeline_dir: &Path,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Vec<Wal>>, PipelineError> {
    let dir = pipeline_dir.join("backfill");
    // What an interrupted backfill left: its state store and its logs.
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(PipelineError::new(
                "backfill",
                format!("cannot remove {}: {e}", dir.display()),
            ))
        }
        _ => {}
    }
    let reached = Arc::new(AtomicUsize::new(0));
    let ends = |name: &str| state.sources.get(name).is_some_and(|at| at.exhausted);
    let all_end = parts.sources.iter().all(|s| ends(&s.name));
    let mut sources: Vec<ComponentPlan<dyn Source>> = Vec::with_capacity(parts.sources.len());
    for s in parts.sources {
        let at = state.sources.get(&s.name).cloned().unwrap_or_default();
        let mut inner = s.component;
        let positional = inner
            .stop_at(&at.offset)
            .map_err(|e| PipelineError::new(&s.name, format!("backfill: {e}")))?;
        let bounded: Box<dyn Source> = Box::new(Bounded {
            name: s.name.clone(),
            inner,
            positional,
            left: at.emitted,
            produced: 0,
            offset: at.offset,
            ends: at.exhausted,
            checkpoint: id,
            reached: reached.clone(),
            counted: false,
        });
        sources.push(ComponentPlan {
            name: s.name,
            type_name: s.type_name,
            inputs: s.inputs,
            component: bounded,
            rebuild: None,
        });
    }
    let needed = upstream(&parts.transforms, targets);
    let transforms = parts
        .transforms
        .into_iter()
        .filter(|t| needed.contains(&t.name))
        .collect();
    let mut logs = Vec::with_capacity(targets.len());
    let mut sinks: Vec<ComponentPlan<dyn Sink>> = Vec::with_capacity(targets.len());
    for t in targets {
        let log = Arc::new(Mutex::new(Wal::new(&dir, &t.name)));
        logs.push(log.clone());
        sinks.push(ComponentPlan {
            name: t.name.clone(),
            type_name: "backfill".into(),
            inputs: t.inputs.clone(),
            component: Box::new(IntoLog { log, epoch: id }),
            rebuild: None,
        });
    }
    let mut own_spec = PipelineSpec::clone(spec);
    // Bad records were dealt with by the run that first met them.
    own_spec.errors.dlq_path = None;
    // Its own checkpoints would serve nothing: a crash starts the backfill over.
    own_spec.checkpoint_interval = Duration::from_secs(86_400);
    let plan = PipelinePlan {
        spec: Arc::new(own_spec),
        sources,
        transforms,
        sinks,
        state_dir: dir.clone(),
        backfill: None,
    };

    // Stops the backfill once every source is where `id` had it (unless all of them
    // end there: their end flushes, as it did then), or when the pipeline is stopped.
    let (stop_tx, stop_rx) = watch::channel(*stop.borrow());
    let count = plan.sources.len();
    let watcher = {
        let reached = reached.clone();
        tokio::spawn(async move {
            loop {
                if *stop.borrow() || (!all_end && reached.load(Ordering::Acquire) == count) {
                    let _ = stop_tx.send(true);
                    return;
                }
                tokio::select! {
                    changed = stop.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };
    let ran = Box::pin(super::run_as(
        plan,
        crate::metrics::Metrics::new(),
        stop_rx,
        Arc::default(),
        true,
    ))
    .await;
    watcher.abort();
    ran?;
    if reached.load(Ordering::Acquire) < count {
        return Ok(None);
    }
    let mut sealed = Vec::with_capacity(logs.len());
    for log in logs {
        let mut wal = match Arc::try_unwrap(log) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(_) => {
                return Err(PipelineError::new(
                    "backfill",
                    "a backfill sink outlived its run",
                ))
            }
        };
        wal.seal()?;
        sealed.push(wal);
    }
    Ok(Some(sealed))
}

/// The transforms the targets read from, directly or through others.
fn upstream(
    transforms: &[ComponentPlan<dyn connectd_sdk::Transform>],
    targets: &[Target],
) -> BTreeSet<String> {
    let mut needed = BTreeSet::new();
    let mut todo: Vec<&String> = targets.iter().flat_map(|t| &t.inputs).collect();
    while let Some(name) = todo.pop() {
        if let Some(t) = transforms.iter().find(|t| &t.name == name) {
            if needed.insert(name.clone()) {
                todo.extend(&t.inputs);
            }
        }
    }
    needed
}

/// A source cut where the checkpoint had it: by its own `stop_at`, else at the number
/// of records it had produced.
struct Bounded {
    name: String,
    inner: Box<dyn Source>,
    /// The source stops itself (`Source::stop_at`); `left` is not used.
    positional: bool,
    /// Records still to produce.
    left: u64,
    produced: u64,
    /// Where the checkpoint had it.
    offset: serde_json::Value,
    ends: bool,
    checkpoint: u64,
    reached: Arc<AtomicUsize>,
    counted: bool,
}

impl Bounded {
    /// A source that stops itself: through once it says so.
    async fn poll_positional(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        if !self.counted && self.inner.stopped() {
            self.counted = true;
            self.reached.fetch_add(1, Ordering::AcqRel);
        }
        if self.counted {
            return Ok(SourcePoll::Idle(Duration::from_millis(100)));
        }
        match self.inner.poll(max, bad).await? {
            SourcePoll::End => Err(self.changed(format!(
                "ended before reaching where checkpoint {} had it ({})",
                self.checkpoint, self.offset
            ))),
            other => Ok(other),
        }
    }

    fn changed(&self, what: String) -> ConnectorError {
        ConnectorError::permanent(format!(
            "backfill: source `{}` {what}: its input is not what it was, so the backfill would not match what the other sinks received. Remove `start: beginning` to start the new sink at the current checkpoint",
            self.name
        ))
    }
}

#[async_trait]
impl Source for Bounded {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        self.inner.open(offset).await
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        if self.positional {
            return self.poll_positional(max, bad).await;
        }
        if self.left == 0 {
            if !self.counted {
                let now = self.inner.offset();
                if self.produced > 0 && !self.inner.same_position(&self.offset, &now) {
                    return Err(self.changed(format!(
                        "stands at {now} after {} records, where checkpoint {} had it at {}",
                        self.produced, self.checkpoint, self.offset
                    )));
                }
                self.counted = true;
                self.reached.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(match self.ends {
                true => SourcePoll::End,
                false => SourcePoll::Idle(Duration::from_millis(100)),
            });
        }
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(max);
        match self.inner.poll(want, bad).await? {
            SourcePoll::Batch(records) => {
                let n = records.len() as u64;
                if n > self.left {
                    return Err(self.changed(format!("returned {n} records when asked for {want}")));
                }
                self.left -= n;
                self.produced += n;
                Ok(SourcePoll::Batch(records))
            }
            SourcePoll::End => Err(self.changed(format!(
                "ended after {} records, {} fewer than it had produced at checkpoint {}",
                self.produced, self.left, self.checkpoint
            ))),
            idle => Ok(idle),
        }
    }

    fn offset(&self) -> serde_json::Value {
        self.inner.offset()
    }

    fn attach_checkpoints(&mut self, control: Arc<dyn CheckpointControl>) {
        self.inner.attach_checkpoints(control);
    }

    fn lanes(&self) -> Option<Vec<u32>> {
        self.inner.lanes()
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.inner.close().await
    }
}

/// The backfill's only sink: the target's records, into the epoch of the checkpoint.
struct IntoLog {
    log: Arc<Mutex<Wal>>,
    epoch: u64,
}

#[async_trait]
impl Sink for IntoLog {
    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        Ok(None)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.append(self.epoch, batch)
            .map_err(|e| ConnectorError::permanent(e.message))
    }

    async fn commit(&mut self, _checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// Sealed once, at the end (`run`).
    fn exactly_once(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use connectd_sdk::Value;

    /// Numbers 0..len, one stream; its offset is the next number.
    struct Numbers {
        next: i64,
        len: i64,
    }

    #[async_trait]
    impl Source for Numbers {
        async fn open(&mut self, _: Option<serde_json::Value>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn poll(
            &mut self,
            max: usize,
            _: &mut Vec<BadRecord>,
        ) -> Result<SourcePoll, ConnectorError> {
            if self.next == self.len {
                return Ok(SourcePoll::End);
            }
            let end = (self.next + max as i64).min(self.len);
            let records = (self.next..end)
                .map(|i| Record::new(Value::from(i)))
                .collect();
            self.next = end;
            Ok(SourcePoll::Batch(records))
        }
        fn offset(&self) -> serde_json::Value {
            serde_json::json!(self.next)
        }
    }

    fn bounded(len: i64, left: u64, offset: i64, ends: bool) -> (Bounded, Arc<AtomicUsize>) {
        let reached = Arc::new(AtomicUsize::new(0));
        let b = Bounded {
            name: "n".into(),
            inner: Box::new(Numbers { next: 0, len }),
            positional: false,
            left,
            produced: 0,
            offset: serde_json::json!(offset),
            ends,
            checkpoint: 4,
            reached: reached.clone(),
            counted: false,
        };
        (b, reached)
    }

    async fn drain(b: &mut Bounded) -> Result<(Vec<i64>, SourcePoll), ConnectorError> {
        let mut got = Vec::new();
        loop {
            match b.poll(4, &mut Vec::new()).await? {
                SourcePoll::Batch(r) => {
                    got.extend(r.iter().map(|r| r.value.as_f64().unwrap() as i64))
                }
                other => return Ok((got, other)),
            }
        }
    }

    #[tokio::test]
    async fn a_source_stops_where_the_checkpoint_had_it() {
        let (mut b, reached) = bounded(100, 10, 10, false);
        let (got, last) = drain(&mut b).await.unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(matches!(last, SourcePoll::Idle(_)));
        assert_eq!(reached.load(Ordering::Acquire), 1);
        // Asked again, still nothing more, counted once.
        assert!(matches!(
            drain(&mut b).await.unwrap().1,
            SourcePoll::Idle(_)
        ));
        assert_eq!(reached.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn a_source_that_had_ended_ends_again() {
        let (mut b, _) = bounded(10, 10, 10, true);
        assert!(matches!(drain(&mut b).await.unwrap().1, SourcePoll::End));
    }

    /// `Numbers` whose positions gained a field in a later version.
    struct Upgraded(Numbers);

    #[async_trait]
    impl Source for Upgraded {
        async fn open(&mut self, _: Option<serde_json::Value>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn poll(
            &mut self,
            max: usize,
            bad: &mut Vec<BadRecord>,
        ) -> Result<SourcePoll, ConnectorError> {
            self.0.poll(max, bad).await
        }
        fn offset(&self) -> serde_json::Value {
            serde_json::json!({"next": self.0.next, "added": true})
        }
        fn same_position(&self, held: &serde_json::Value, now: &serde_json::Value) -> bool {
            held["next"] == now["next"]
        }
    }

    /// A checkpoint written before the source's positions gained a field: the source
    /// says whether it matches, not a comparison of the whole position.
    #[tokio::test]
    async fn the_source_judges_a_position_from_an_earlier_version() {
        for (held, matches) in [(10, true), (11, false)] {
            let (mut b, reached) = bounded(100, 10, 0, false);
            b.inner = Box::new(Upgraded(Numbers { next: 0, len: 100 }));
            b.offset = serde_json::json!({ "next": held });
            let got = drain(&mut b).await;
            assert_eq!(got.is_ok(), matches, "{held}");
            assert_eq!(reached.load(Ordering::Acquire), usize::from(matches));
        }
    }

    #[tokio::test]
    async fn a_changed_input_is_an_error_naming_the_source() {
        // Shorter than it was.
        let (mut b, _) = bounded(5, 10, 10, false);
        let e = drain(&mut b).await.unwrap_err();
        assert!(
            e.message.contains("`n` ended after 5 records"),
            "{}",
            e.message
        );
        // As long, but another position.
        let (mut b, reached) = bounded(100, 10, 12, false);
        let e = drain(&mut b).await.unwrap_err();
        assert!(e.message.contains("stands at 10"), "{}", e.message);
        assert_eq!(reached.load(Ordering::Acquire), 0);
    }
}
