//! Drives one source: polls batches, fans them out, and forwards the coordinator's
//! barriers with the source's position at each.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use connectd_sdk::{lanes, Emitter, Record, Source, SourcePoll};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::align::Event;
use super::checkpoint::{CheckpointStore, SourceState};
use super::dlq::DeadLetters;
use super::messages::{broadcast, Barrier, BarrierKind, LaneSet, Message, Output};
use super::retry::retry;
use super::transform_task::TransformTask;
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
    pub retry: super::retry::RetryPolicy,
    /// The lanes last announced downstream (the source's own numbers).
    pub lanes_sent: Option<Vec<u32>>,
    /// The transform this source alone feeds, run in this task (see `chains`); then
    /// `outputs` is empty.
    pub chained: Option<Chained>,
}

/// A transform run inside its source's task, as Flink chains operators: each batch goes
/// straight into it, with no channel, no task wake-up and no other core in between
/// (measured on the window path: the hand-over between tasks cost about a fifth of its
/// CPU). Barriers and lanes reach it in order with the data, as through a channel of
/// one input.
pub struct Chained {
    task: TransformTask,
    out: Emitter,
    /// When its wall-clock tick is due next (see `Transform::tick_interval`).
    next_tick: Option<(Instant, Duration)>,
}

impl Chained {
    pub fn new(task: TransformTask) -> Self {
        let next_tick = task
            .transform
            .tick_interval()
            .map(|every| (Instant::now() + every, every));
        Self {
            task,
            out: Emitter::default(),
            next_tick,
        }
    }

    async fn take(&mut self, message: Message) -> Result<(), PipelineError> {
        let event = match message {
            Message::Data(batch) => Event::Data(0, batch),
            Message::Barrier(b) => Event::Aligned(b),
            Message::Lanes(set) => Event::Lanes(set),
        };
        self.task.handle(event, &mut self.out).await.map(drop)
    }

    /// Runs the transform's tick when it is due.
    async fn tick_if_due(&mut self) -> Result<(), PipelineError> {
        match self.next_tick {
            Some((at, every)) if Instant::now() >= at => {
                self.next_tick = Some((Instant::now() + every, every));
                self.task.tick(&mut self.out).await
            }
            _ => Ok(()),
        }
    }

    /// How long until the next tick (the most an idle source may sleep).
    fn until_tick(&self) -> Duration {
        self.next_tick.map_or(Duration::MAX, |(at, _)| {
            at.saturating_duration_since(Instant::now())
        })
    }
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

    /// Hands a message on: to the chained transform, or to every downstream channel.
    async fn send(&mut self, message: Message) -> Result<(), PipelineError> {
        match self.chained.as_mut() {
            Some(chained) => {
                chained.take(message).await?;
                // A source and its chained transform may go on without ever waiting
                // (a file, a window that emits nothing yet). Give the thread back now
                // and then, as a channel send would: a task they woke — a sink handed
                // a barrier — waits in this thread's LIFO slot, which no other thread
                // steals, so the checkpoint would not complete until the input ends.
                tokio::task::consume_budget().await;
                Ok(())
            }
            None => broadcast(&self.outputs, message)
                .await
                .map_err(|e| self.err(e)),
        }
    }

    async fn tick_chained(&mut self) -> Result<(), PipelineError> {
        match self.chained.as_mut() {
            Some(chained) => chained.tick_if_due().await,
            None => Ok(()),
        }
    }

    fn until_tick(&self) -> Duration {
        self.chained
            .as_ref()
            .map_or(Duration::MAX, Chained::until_tick)
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
        self.send(Message::Barrier(b)).await?;
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
        self.send(Message::Lanes(set)).await
    }

    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut queued: VecDeque<Barrier> = VecDeque::new();
        let mut exhausted = false;
        let mut bad = Vec::new();
        if let Some(chained) = self.chained.as_mut() {
            chained.task.start(&mut chained.out).await?;
        }
        loop {
            self.tick_chained().await?;
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
                let until_tick = self.until_tick();
                tokio::select! {
                    cmd = self.commands.recv() => match cmd {
                        Some(b) => queued.push_back(b),
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep(until_tick), if self.chained.is_some() => {}
                }
                continue;
            }
            let polled = retry!(
                unwatched & self.retry,
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
                        self.send(Message::Data(batch)).await?;
                    }
                }
                SourcePoll::Idle(wait) => {
                    let wait = wait.min(Duration::from_millis(100)).min(self.until_tick());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
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
