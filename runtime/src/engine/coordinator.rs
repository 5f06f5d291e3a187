//! Injects checkpoint barriers into every source on the interval, one checkpoint in
//! flight at a time; turns shutdown into a Stop barrier and exhaustion of every source
//! into an End barrier; finishes when that final checkpoint is committed everywhere.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectd_sdk::CheckpointControl;
use tokio::sync::{mpsc, watch, Notify};

use super::messages::{Barrier, BarrierKind};
use super::PipelineError;

/// Checkpoint ids shared with the sources that ask for checkpoints of their own
/// (`CheckpointControl`).
#[derive(Debug)]
pub struct CheckpointLine {
    ids: Mutex<Ids>,
    requested: Notify,
}

#[derive(Debug)]
struct Ids {
    next: u64,
    committed: u64,
}

impl CheckpointLine {
    pub fn new(next: u64, committed: u64) -> Self {
        Self {
            ids: Mutex::new(Ids { next, committed }),
            requested: Notify::new(),
        }
    }

    /// Starts the line over before any checkpoint is taken: the checkpoint to restore
    /// changed (recovery gave the last one up).
    pub fn restart(&self, next: u64, committed: u64) {
        *self.ids() = Ids { next, committed };
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_next(&self) -> u64 {
        let mut ids = self.ids();
        ids.next += 1;
        ids.next - 1
    }

    fn set_committed(&self, id: u64) {
        let mut ids = self.ids();
        ids.committed = ids.committed.max(id);
    }
}

impl CheckpointControl for CheckpointLine {
    fn request(&self) -> u64 {
        // Any barrier injected from now on reaches the source after what it returned.
        let next = self.ids().next;
        self.requested.notify_one();
        next
    }

    fn committed(&self) -> u64 {
        self.ids().committed
    }
}

pub struct Coordinator {
    pub pipeline: String,
    pub commands: Vec<mpsc::UnboundedSender<Barrier>>,
    pub completed: mpsc::UnboundedReceiver<(u64, f64)>,
    pub exhausted: mpsc::UnboundedReceiver<()>,
    pub stop: watch::Receiver<bool>,
    pub interval: Duration,
    pub line: Arc<CheckpointLine>,
}

impl Coordinator {
    fn inject(&mut self, kind: BarrierKind) -> u64 {
        let id = self.line.take_next();
        for c in &self.commands {
            let _ = c.send(Barrier { id, kind });
        }
        id
    }

    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut in_flight: Option<u64> = None;
        let mut final_id: Option<u64> = None;
        let mut exhausted = 0;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        if *self.stop.borrow() {
            final_id = Some(self.inject(BarrierKind::Stop));
        }
        loop {
            tokio::select! {
                _ = ticker.tick(), if in_flight.is_none() && final_id.is_none() => {
                    in_flight = Some(self.inject(BarrierKind::Checkpoint));
                }
                // A source asked for one (it waits for it before going on).
                _ = self.line.requested.notified(), if in_flight.is_none() && final_id.is_none() => {
                    in_flight = Some(self.inject(BarrierKind::Checkpoint));
                }
                done = self.completed.recv() => {
                    let Some((id, secs)) = done else { return Ok(()) };
                    tracing::debug!(pipeline = %self.pipeline, checkpoint = id, seconds = secs, "checkpoint committed");
                    self.line.set_committed(id);
                    if in_flight.is_some_and(|f| id >= f) {
                        in_flight = None;
                    }
                    if final_id == Some(id) {
                        return Ok(());
                    }
                }
                changed = self.stop.changed(), if final_id.is_none() => {
                    if changed.is_err() || *self.stop.borrow() {
                        tracing::info!(pipeline = %self.pipeline, "stopping: final checkpoint");
                        final_id = Some(self.inject(BarrierKind::Stop));
                    }
                }
                Some(()) = self.exhausted.recv() => {
                    exhausted += 1;
                    if exhausted == self.commands.len() && final_id.is_none() {
                        tracing::info!(pipeline = %self.pipeline, "all sources exhausted: flushing and taking the final checkpoint");
                        final_id = Some(self.inject(BarrierKind::End));
                    }
                }
            }
        }
    }
}
