//! Drives one sink through the two-phase commit of each checkpoint: the epoch's records
//! are written to the sink (its open transaction) and to its write-ahead log; at the
//! aligned barrier the log is sealed (pre-commit), the task waits until the checkpoint
//! is complete in the state store, then commits it to the sink. A sink that cannot
//! take writes back (`Sink::writes_at_commit`) gets the epoch's records from the log
//! only then, just before its commit.

use std::sync::Arc;
use std::time::Instant;

use connectd_sdk::{Checkpoint, Sink};

use super::align::{Aligner, Event};
use super::changelog::ChangelogWriter;
use super::checkpoint::CheckpointStore;
use super::dlq::DeadLetters;
use super::messages::BarrierKind;
use super::retry::{retry, RetryPolicy};
use super::wal::Wal;
use super::PipelineError;
use crate::metrics::ComponentMetrics;

/// The most records joined into one write. A slow sink gets bigger writes (fewer round
/// trips) exactly when batches queue up; a sink that keeps up writes each as it comes.
const COALESCE_RECORDS: usize = 4096;

pub struct SinkTask {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub aligner: Aligner,
    pub store: Arc<CheckpointStore>,
    /// An exactly-once sink's write-ahead log (at-least-once sinks keep none).
    pub wal: Option<Wal>,
    /// The checkpoint the records now arriving belong to.
    pub epoch: u64,
    pub dlq: Arc<DeadLetters>,
    pub metrics: ComponentMetrics,
    pub retry: RetryPolicy,
    /// The sink that carries the pipeline's state changelogs in its transactions.
    pub changelog: Option<ChangelogWriter>,
}

impl SinkTask {
    fn err(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::new(&self.name, message)
    }

    /// Writes records to the sink; what it rejects goes to the dead-letter queue.
    async fn write(
        &mut self,
        batch: &[connectd_sdk::Record],
        bad: &mut Vec<connectd_sdk::BadRecord>,
    ) -> Result<(), PipelineError> {
        retry!(
            &self.retry,
            format!("sink `{}`", self.name),
            self.sink.write(batch, bad)
        )
        .map_err(|e| self.err(e.to_string()))?;
        let rejected = bad.len() as u64;
        if !bad.is_empty() {
            self.dlq
                .handle(&self.name, std::mem::take(bad), &self.metrics)?;
        }
        self.metrics
            .records_out
            .inc_by((batch.len() as u64).saturating_sub(rejected));
        Ok(())
    }

    /// The sink's own pre-commit of checkpoint `id`; what it rejects goes to the DLQ.
    async fn pre_commit(&mut self, id: u64) -> Result<(), PipelineError> {
        pre_commit(
            &mut *self.sink,
            &self.name,
            id,
            &self.dlq,
            &self.metrics,
            &self.retry,
        )
        .await
    }

    /// Adds checkpoint `id`'s state changelogs to the epoch, once every transform has
    /// frozen its changes of `id`, and keeps them beside the write-ahead log for a redo.
    /// Returns whether they hold state changes (not only the tasks' metadata).
    async fn write_changelogs(&mut self, id: u64) -> Result<bool, PipelineError> {
        let Some(writer) = &self.changelog else {
            return Ok(false);
        };
        let snapshots = self.store.transform_snapshots(id).await;
        let logs = writer.changelogs(id, &snapshots)?;
        if logs.is_empty() {
            return Ok(false);
        }
        let changes = logs.iter().any(super::changelog::holds_changes);
        if let Some(wal) = self.wal.as_mut() {
            wal.keep_changelogs(id, &logs)?;
        }
        retry!(
            &self.retry,
            format!("state changelogs of sink `{}`", self.name),
            self.sink.write_changelogs(id, &logs)
        )
        .map_err(|e| self.err(format!("checkpoint {id}: the state changelogs: {e}")))?;
        Ok(changes)
    }

    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut bad = Vec::new();
        let at_commit = self.wal.is_some() && self.sink.writes_at_commit();
        loop {
            match self.aligner.next().await {
                Event::Data(_, batch) => {
                    let batch = self.aligner.join_ready(batch, COALESCE_RECORDS);
                    self.metrics.records_in.inc_by(batch.len() as u64);
                    self.metrics.tap.offer(&batch);
                    if let Some(wal) = self.wal.as_mut() {
                        wal.append(self.epoch, &batch)?;
                        if at_commit {
                            continue;
                        }
                    }
                    self.write(&batch, &mut bad).await?;
                }
                Event::Aligned(b) => {
                    let started = Instant::now();
                    super::crash_point::trace("begin", b.id, &self.name);
                    let state_changes = self.write_changelogs(b.id).await?;
                    // Pre-commit: what the epoch sent to the DLQ and to this sink is durable.
                    if !at_commit {
                        self.pre_commit(b.id).await?;
                    }
                    self.dlq.sync(&self.name)?;
                    if let Some(wal) = self.wal.as_mut() {
                        wal.seal_as(b.id)?;
                    }
                    super::crash_point::hit("prepared", b.id, &self.name);
                    let state = self
                        .store
                        .prepared(b.id, &self.name)
                        .await
                        .map_err(|e| self.err(format!("checkpoint {}: {e}", b.id)))?;
                    if state_changes {
                        super::crash_point::hit("logged-changes", b.id, &self.name);
                    }
                    let state = serde_json::to_value(&state)
                        .map_err(|e| self.err(format!("cannot encode the checkpoint: {e}")))?;
                    let checkpoint = Checkpoint { id: b.id, state };
                    if at_commit {
                        // The checkpoint is complete: its records may reach the sink now.
                        let records = match self.wal.as_ref() {
                            Some(wal) => wal.read(b.id)?,
                            None => Vec::new(),
                        };
                        self.write(&records, &mut bad).await?;
                        self.pre_commit(b.id).await?;
                        self.dlq.sync(&self.name)?;
                    }
                    retry!(
                        &self.retry,
                        format!("commit of sink `{}`", self.name),
                        self.sink.commit(&checkpoint)
                    )
                    .map_err(|e| self.err(format!("checkpoint {} failed: {e}", b.id)))?;
                    super::crash_point::hit("committed", b.id, &self.name);
                    super::crash_point::trace("end", b.id, &self.name);
                    if let Some(wal) = self.wal.as_mut() {
                        wal.remove(b.id)?;
                    }
                    self.metrics
                        .checkpoint_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .last_checkpoint
                        .set(connectd_sdk::time::now_ms() as f64 / 1000.0);
                    self.store.sink_done(b.id);
                    self.epoch = b.id + 1;
                    if b.kind != BarrierKind::Checkpoint {
                        if let Err(e) = self.sink.close().await {
                            tracing::warn!(component = %self.name, error = %e, "closing the sink failed");
                        }
                        return Ok(());
                    }
                }
                Event::Lanes(_) => {}
                Event::Closed => return Ok(()),
            }
        }
    }
}

/// Runs a sink's pre-commit (`Sink::pre_commit`) with retries; the records it rejects go
/// to the dead-letter queue (the caller syncs it before the checkpoint completes).
pub(super) async fn pre_commit(
    sink: &mut dyn Sink,
    name: &str,
    id: u64,
    dlq: &DeadLetters,
    metrics: &ComponentMetrics,
    retry: &RetryPolicy,
) -> Result<(), PipelineError> {
    let mut bad = Vec::new();
    retry!(
        retry,
        format!("pre-commit of sink `{name}`"),
        sink.pre_commit(id, &mut bad)
    )
    .map_err(|e| PipelineError::new(name, format!("checkpoint {id}: pre-commit failed: {e}")))?;
    if !bad.is_empty() {
        dlq.handle(name, bad, metrics)?;
    }
    Ok(())
}
