//! Collects the state of every source and transform for each checkpoint id; once every
//! sink has pre-committed it, records it as complete in the state store (the commit
//! point); tells the coordinator when every sink has committed it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::state_store::{Manifest, StateStore};

/// A source's position in a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub offset: serde_json::Value,
    /// Records emitted since the pipeline first started: where a backfill stops.
    #[serde(default)]
    pub emitted: u64,
    /// The source had ended (a file read to its end): a backfill ends it there too, so
    /// what its end flushed is flushed again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
}

/// The source offsets of the newest checkpoint every sink has committed, as the admin
/// API shows them: `{"checkpoint": id, "sources": {name: offset}}`.
pub type CommittedOffsets = Arc<Mutex<Option<serde_json::Value>>>;

/// Records `state` as the committed one in `slot`.
pub fn publish(slot: &CommittedOffsets, id: u64, state: &PipelineState) {
    let sources: serde_json::Map<String, serde_json::Value> = state
        .sources
        .iter()
        .map(|(n, s)| (n.clone(), s.offset.clone()))
        .collect();
    *slot.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(serde_json::json!({"checkpoint": id, "sources": sources}));
}

/// The pipeline's state at a checkpoint, as the state store keeps it. Sinks commit
/// only its `sources` part (`for_sinks`): small, whatever the transforms hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    pub sources: BTreeMap<String, SourceState>,
    #[serde(default)]
    pub transforms: BTreeMap<String, serde_json::Value>,
}

impl PipelineState {
    /// What a sink stores with its commit: the source positions only.
    pub fn for_sinks(&self) -> PipelineState {
        PipelineState {
            sources: self.sources.clone(),
            transforms: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    state: PipelineState,
    sinks_prepared: usize,
    /// The state store is being written (by the last sink to prepare).
    completing: bool,
    /// Written to the state store: `Err` carries why it could not be.
    complete: Option<Result<(), String>>,
    sinks_done: usize,
    started: Option<Instant>,
}

/// What a sink waiting for a checkpoint to complete does next.
enum Step {
    Done(Result<PipelineState, String>),
    /// Every sink has prepared: this one writes the state store.
    Write(PipelineState),
    Wait,
}

#[derive(Debug)]
pub struct CheckpointStore {
    inner: Mutex<HashMap<u64, Pending>>,
    changed: Notify,
    n_sources: usize,
    n_transforms: usize,
    n_sinks: usize,
    completed: mpsc::UnboundedSender<(u64, f64)>,
    committed: CommittedOffsets,
    state: StateStore,
    metrics: crate::metrics::StateMetrics,
}

impl CheckpointStore {
    pub fn new(
        n_sources: usize,
        n_transforms: usize,
        n_sinks: usize,
        committed: CommittedOffsets,
        state: StateStore,
        metrics: crate::metrics::StateMetrics,
    ) -> (Self, mpsc::UnboundedReceiver<(u64, f64)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                inner: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                n_sources,
                n_transforms,
                n_sinks,
                completed: tx,
                committed,
                state,
                metrics,
            },
            rx,
        )
    }

    fn with<R>(&self, id: u64, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let p = map.entry(id).or_default();
        p.started.get_or_insert_with(Instant::now);
        f(p)
    }

    pub fn report_source(&self, id: u64, name: &str, state: SourceState) {
        self.with(id, |p| p.state.sources.insert(name.to_string(), state));
        self.changed.notify_waiters();
    }

    pub fn report_transform(&self, id: u64, name: &str, snapshot: serde_json::Value) {
        self.with(id, |p| {
            p.state.transforms.insert(name.to_string(), snapshot)
        });
        self.changed.notify_waiters();
    }

    /// Every transform's snapshot of checkpoint `id`, once all have reported it (each
    /// froze its tables' changes of `id` before reporting): what the state changelogs
    /// of `id` are made of.
    pub async fn transform_snapshots(&self, id: u64) -> BTreeMap<String, serde_json::Value> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ready = self.with(id, |p| {
                (p.state.transforms.len() == self.n_transforms).then(|| p.state.transforms.clone())
            });
            match ready {
                Some(snapshots) => return snapshots,
                None => notified.await,
            }
        }
    }

    /// A sink has pre-committed checkpoint `id` (its epoch is durable in its
    /// write-ahead log). Waits until the checkpoint is complete: every sink has
    /// pre-committed it and the state store holds it. The last sink to arrive writes
    /// the log. Returns the state the sinks commit with.
    pub async fn prepared(&self, id: u64, sink: &str) -> Result<PipelineState, String> {
        self.with(id, |p| p.sinks_prepared += 1);
        self.changed.notify_waiters();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = self.with(id, |p| {
                if let Some(done) = &p.complete {
                    return Step::Done(done.clone().map(|()| p.state.for_sinks()));
                }
                let ready = p.sinks_prepared >= self.n_sinks
                    && p.state.sources.len() == self.n_sources
                    && p.state.transforms.len() == self.n_transforms;
                if ready && !p.completing {
                    p.completing = true;
                    return Step::Write(p.state.clone());
                }
                Step::Wait
            });
            match step {
                Step::Done(result) => return result,
                Step::Write(state) => {
                    let written = self
                        .state
                        .complete(&Manifest { id, state })
                        .map(|bytes| {
                            self.metrics.checkpoint_bytes.inc_by(bytes);
                            for size in self.state.sizes() {
                                self.metrics.table(&size);
                            }
                        })
                        .map_err(|e| e.message);
                    super::crash_point::hit("logged", id, sink);
                    self.with(id, |p| p.complete = Some(written));
                    self.changed.notify_waiters();
                }
                Step::Wait => notified.await,
            }
        }
    }

    /// A sink is done with checkpoint `id` (committed it).
    pub fn sink_done(&self, id: u64) {
        let finished = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let p = map.entry(id).or_default();
            p.sinks_done += 1;
            if p.sinks_done >= self.n_sinks {
                map.remove(&id).map(|p| {
                    publish(&self.committed, id, &p.state);
                    p.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
                })
            } else {
                None
            }
        };
        if let Some(secs) = finished {
            let _ = self.completed.send((id, secs));
        }
    }
}
