//! Drives one source: polls batches, fans them out, and forwards the coordinator's
//! barriers with the source's position at each.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use connectd_sdk::{lanes, Record, Source, SourcePoll};
use tokio::sync::mpsc;

use super::checkpoint::{CheckpointStore, SourceState};
use super::dlq::DeadLetters;
use super::messages::{broadcast, Barrier, BarrierKind, LaneSet, Message, Output};
use super::retry::retry;
use super::PipelineError;
use crate::metrics::ComponentMetrics;

pub struct SourceTask {
    pub name: String,
    pub source: Box<dyn Source>,
    pub outputs: Vec<Output>,
    pub commands: mpsc::UnboundedReceiver<Barrier>,
    pub exhausted: mpsc::UnboundedSender<()>,
    pub store: Arc<CheckpointStore>,
    pub emitted: u64,
    pub batch_size: usize,
    pub dlq: Arc<DeadLetters>,
    pub metrics: ComponentMetrics,
    pub retry_timeout: Duration,
    /// The lanes last announced downstream (the source's own numbers).
    pub lanes_sent: Option<Vec<u32>>,
}

/// Splits a polled batch by lane (records keep their order within a lane), making
/// each lane pipeline-wide: downstream, a batch is one lane's.
fn by_lane(origin: u32, mut records: Vec<Record>) -> Vec<Vec<Record>> {
    for r in &mut records {
        r.lane = lanes::global(origin, r.lane as u32);
    }
    let first = records.first().map_or(0, |r| r.lane);
    if records.iter().all(|r| r.lane == first) {
        return vec![records];
    }
    let mut runs: Vec<Vec<Record>> = Vec::new();
    for r in records {
        match runs.iter_mut().find(|run| run[0].lane == r.lane) {
            Some(run) => run.push(r),
            None => runs.push(vec![r]),
        }
    }
    runs
}

impl SourceTask {
    fn err(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::new(&self.name, message)
    }

    /// Records the position and forwards the barrier. Returns true when the task ends.
    async fn barrier(&mut self, b: Barrier, exhausted: bool) -> Result<bool, PipelineError> {
        self.store.report_source(
            b.id,
            &self.name,
            SourceState {
                offset: self.source.offset(),
                emitted: self.emitted,
                exhausted,
            },
        );
        broadcast(&self.outputs, Message::Barrier(b))
            .await
            .map_err(|e| self.err(e))?;
        if b.kind == BarrierKind::Checkpoint {
            return Ok(false);
        }
        if let Err(e) = self.source.close().await {
            tracing::warn!(component = %self.name, error = %e, "closing the source failed");
        }
        Ok(true)
    }

    /// Tells downstream transforms the source's lanes when they changed (at the start
    /// and after a rebalance).
    async fn announce_lanes(&mut self, exhausted: bool) -> Result<(), PipelineError> {
        // An exhausted source has no lanes left: it no longer holds watermarks back.
        let now = match exhausted {
            true => Vec::new(),
            false => self.source.lanes().unwrap_or_else(|| vec![0]),
        };
        if self.lanes_sent.as_ref() == Some(&now) {
            return Ok(());
        }
        let origin = lanes::origin(&self.name);
        let set = LaneSet {
            origin,
            lanes: Arc::new(now.iter().map(|l| lanes::global(origin, *l)).collect()),
        };
        self.lanes_sent = Some(now);
        broadcast(&self.outputs, Message::Lanes(set))
            .await
            .map_err(|e| self.err(e))
    }

    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut queued: VecDeque<Barrier> = VecDeque::new();
        let mut exhausted = false;
        let mut bad = Vec::new();
        loop {
            while let Ok(b) = self.commands.try_recv() {
                queued.push_back(b);
            }
            if let Some(b) = queued.pop_front() {
                if self.barrier(b, exhausted).await? {
                    return Ok(());
                }
                continue;
            }
            if exhausted {
                match self.commands.recv().await {
                    Some(b) => queued.push_back(b),
                    None => return Ok(()),
                }
                continue;
            }
            let polled = retry!(
                self.retry_timeout,
                format!("source `{}`", self.name),
                self.source.poll(self.batch_size, &mut bad)
            )
            .map_err(|e| self.err(e.to_string()))?;
            if !bad.is_empty() {
                self.dlq
                    .handle(&self.name, std::mem::take(&mut bad), &self.metrics)?;
            }
            self.announce_lanes(matches!(polled, SourcePoll::End))
                .await?;
            match polled {
                SourcePoll::Batch(records) => {
                    if records.is_empty() {
                        continue;
                    }
                    self.emitted += records.len() as u64;
                    self.metrics.records_out.inc_by(records.len() as u64);
                    for run in by_lane(lanes::origin(&self.name), records) {
                        let batch = Arc::new(run);
                        self.metrics.tap.offer(&batch);
                        broadcast(&self.outputs, Message::Data(batch))
                            .await
                            .map_err(|e| self.err(e))?;
                    }
                }
                SourcePoll::Idle(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait.min(Duration::from_millis(100))) => {}
                        cmd = self.commands.recv() => match cmd {
                            Some(b) => queued.push_back(b),
                            None => return Ok(()),
                        },
                    }
                }
                SourcePoll::End => {
                    tracing::info!(component = %self.name, records = self.emitted, "source exhausted");
                    exhausted = true;
                    let _ = self.exhausted.send(());
                }
            }
        }
    }
}
