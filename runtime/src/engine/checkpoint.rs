//! Collects the state of every source and transform for each checkpoint id, hands the
//! complete state to the sinks that commit it, and tells the coordinator when every
//! sink has committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

/// A source's position in a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub offset: serde_json::Value,
    /// Records emitted since the pipeline first started: where the barrier stood in the
    /// source's output, so a replay can put it at exactly the same place.
    pub emitted: u64,
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

/// The state a sink commits with its data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    pub sources: BTreeMap<String, SourceState>,
    pub transforms: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default)]
struct Pending {
    state: PipelineState,
    sinks_done: usize,
    started: Option<Instant>,
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
}

impl CheckpointStore {
    pub fn new(
        n_sources: usize,
        n_transforms: usize,
        n_sinks: usize,
        committed: CommittedOffsets,
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

    /// Waits until every source and transform has reported checkpoint `id`.
    pub async fn state_for(&self, id: u64) -> PipelineState {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ready = self.with(id, |p| {
                (p.state.sources.len() == self.n_sources
                    && p.state.transforms.len() == self.n_transforms)
                    .then(|| p.state.clone())
            });
            if let Some(state) = ready {
                return state;
            }
            notified.await;
        }
    }

    /// A sink is done with checkpoint `id` (committed, or skipped while replaying).
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
