//! Drives one sink: writes batches, commits each aligned checkpoint with the pipeline
//! state, and — when it was ahead of the others at restart — drops the replayed
//! records it had already committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connectd_sdk::{Checkpoint, Sink};

use super::align::{Aligner, Event};
use super::checkpoint::CheckpointStore;
use super::dlq::DeadLetters;
use super::messages::BarrierKind;
use super::retry::retry;
use super::PipelineError;
use crate::metrics::ComponentMetrics;

pub struct SinkTask {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub aligner: Aligner,
    pub store: Arc<CheckpointStore>,
    /// Set when this sink had committed checkpoint `k` beyond the restore point:
    /// everything before barrier `k` is already in the sink.
    pub dropping_until: Option<u64>,
    pub dlq: Arc<DeadLetters>,
    pub metrics: ComponentMetrics,
    pub retry_timeout: Duration,
}

impl SinkTask {
    fn err(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::new(&self.name, message)
    }

    pub async fn run(mut self) -> Result<(), PipelineError> {
        let mut bad = Vec::new();
        let mut skipped = 0u64;
        loop {
            match self.aligner.next().await {
                Event::Data(_, batch) => {
                    self.metrics.records_in.inc_by(batch.len() as u64);
                    if self.dropping_until.is_some() {
                        skipped += batch.len() as u64;
                        continue;
                    }
                    retry!(
                        self.retry_timeout,
                        format!("sink `{}`", self.name),
                        self.sink.write(&batch, &mut bad)
                    )
                    .map_err(|e| self.err(e.to_string()))?;
                    let rejected = bad.len() as u64;
                    if !bad.is_empty() {
                        self.dlq
                            .handle(&self.name, std::mem::take(&mut bad), &self.metrics)?;
                    }
                    self.metrics
                        .records_out
                        .inc_by((batch.len() as u64).saturating_sub(rejected));
                }
                Event::Aligned(b) => {
                    match self.dropping_until {
                        Some(k) => {
                            if b.id == k {
                                tracing::info!(component = %self.name, checkpoint = k, skipped, "caught up with the records this sink had already committed");
                                self.dropping_until = None;
                            }
                        }
                        None => {
                            let state = self.store.state_for(b.id).await;
                            let state = serde_json::to_value(&state).map_err(|e| {
                                self.err(format!("cannot encode the checkpoint: {e}"))
                            })?;
                            let checkpoint = Checkpoint { id: b.id, state };
                            let started = Instant::now();
                            retry!(
                                self.retry_timeout,
                                format!("commit of sink `{}`", self.name),
                                self.sink.commit(&checkpoint)
                            )
                            .map_err(|e| self.err(format!("checkpoint {} failed: {e}", b.id)))?;
                            self.metrics
                                .checkpoint_duration
                                .observe(started.elapsed().as_secs_f64());
                            self.metrics
                                .last_checkpoint
                                .set(connectd_sdk::time::now_ms() as f64 / 1000.0);
                        }
                    }
                    self.store.sink_done(b.id);
                    if b.kind != BarrierKind::Checkpoint {
                        if let Err(e) = self.sink.close().await {
                            tracing::warn!(component = %self.name, error = %e, "closing the sink failed");
                        }
                        return Ok(());
                    }
                }
                Event::Closed => return Ok(()),
            }
        }
    }
}
