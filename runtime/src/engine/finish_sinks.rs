//! Recovery's last step: each sink finishes what a crash interrupted (as the recovery
//! plan says), before anything new is written.

use connectd_sdk::Sink;

use super::dlq::DeadLetters;
use super::recovery::{SinkAction, SinkPlan};
use super::retry::{retry, RetryPolicy};
use super::{sink_task, PipelineError, PipelineState, Wal};
use crate::config::{ComponentPlan, PipelineSpec};
use crate::metrics::Metrics;

/// Records per write when an epoch is redone from its write-ahead log.
const REDO_CHUNK: usize = 4096;

/// What the sinks finish against: the restored checkpoint and the pipeline's services.
pub(super) struct Restored<'a> {
    pub spec: &'a PipelineSpec,
    pub id: u64,
    pub state: &'a PipelineState,
    pub metrics: &'a Metrics,
    pub dlq: &'a DeadLetters,
    pub retry: RetryPolicy,
}

/// Carries out `plans` (one per sink, in order): discards the write-ahead logs it
/// names, gives up an epoch a sink kept prepared for a checkpoint that is not to be
/// committed, and redoes the commit of the restored checkpoint where it says so.
pub(super) async fn finish(
    sinks: &mut [ComponentPlan<dyn Sink>],
    plans: &[SinkPlan],
    wals: &mut [Option<Wal>],
    at: &Restored<'_>,
) -> Result<(), PipelineError> {
    let name = &at.spec.name;
    let retry = &at.retry;
    for ((s, sink_plan), wal) in sinks.iter_mut().zip(plans).zip(wals.iter_mut()) {
        if let Some(wal) = wal.as_mut() {
            for epoch in &sink_plan.discard {
                wal.remove(*epoch)?;
            }
        }
        if let Some(prepared) = s.component.prepared() {
            if sink_plan.action != SinkAction::Redo(prepared) {
                // Pre-committed for a checkpoint that never completed: given up.
                tracing::info!(pipeline = %name, sink = %s.name, checkpoint = prepared, "giving up checkpoint {prepared}: prepared in the sink, never complete");
                retry!(
                    retry,
                    format!("sink `{}`", s.name),
                    s.component.abort_prepared()
                )
                .map_err(|e| {
                    PipelineError::new(
                        &s.name,
                        format!("cannot give up checkpoint {prepared}: {e}"),
                    )
                })?;
            }
        }
        match sink_plan.action {
            SinkAction::UpToDate => {}
            SinkAction::StartsHere { had } => {
                if had.is_some() && at.spec.starts_at_beginning(&s.name) {
                    tracing::warn!(pipeline = %name, sink = %s.name, "`start: beginning` applies only to a sink that has never committed a checkpoint");
                }
                tracing::warn!(pipeline = %name, sink = %s.name, had = ?had, checkpoint = at.id, "sink new to the pipeline (or back after missing checkpoints): it starts at the pipeline's current checkpoint, without what came before");
            }
            SinkAction::Redo(id) if s.component.prepared() == Some(id) => {
                // The sink kept the epoch it pre-committed: commit it as it is.
                tracing::info!(pipeline = %name, sink = %s.name, checkpoint = id, "finishing the commit of checkpoint {id}, prepared in the sink");
                commit_redone(s, id, at.state, retry).await?;
            }
            SinkAction::Redo(id) => {
                let Some(wal) = wal.as_mut() else { continue };
                tracing::info!(pipeline = %name, sink = %s.name, checkpoint = id, "finishing the commit of checkpoint {id}, from the write-ahead log");
                let m = at.metrics.component(name, &s.name, "sink");
                let mut reader = wal.reader(id)?;
                while let Some(records) = reader.next_chunk(REDO_CHUNK)? {
                    let mut bad = Vec::new();
                    retry!(
                        retry,
                        format!("sink `{}`", s.name),
                        s.component.write(&records, &mut bad)
                    )
                    .map_err(|e| PipelineError::new(&s.name, e.to_string()))?;
                    at.dlq.handle(&s.name, bad, &m)?;
                }
                if let Some(logs) = wal.changelogs(id)? {
                    retry!(
                        retry,
                        format!("state changelogs of sink `{}`", s.name),
                        s.component.write_changelogs(id, &logs)
                    )
                    .map_err(|e| PipelineError::new(&s.name, e.to_string()))?;
                }
                sink_task::pre_commit(&mut *s.component, &s.name, id, at.dlq, &m, retry).await?;
                at.dlq.sync(&s.name)?;
                commit_redone(s, id, at.state, retry).await?;
                wal.remove(id)?;
            }
        }
    }
    Ok(())
}

/// Commits checkpoint `id`, whose epoch the sink holds (prepared, or just written
/// again), with the restored state's source positions.
async fn commit_redone(
    s: &mut ComponentPlan<dyn Sink>,
    id: u64,
    state: &PipelineState,
    retry: &RetryPolicy,
) -> Result<(), PipelineError> {
    let checkpoint = connectd_sdk::Checkpoint {
        id,
        state: serde_json::to_value(state.for_sinks()).map_err(|e| {
            PipelineError::new(&s.name, format!("cannot encode the checkpoint: {e}"))
        })?,
    };
    retry!(
        retry,
        format!("commit of sink `{}`", s.name),
        s.component.commit(&checkpoint)
    )
    .map_err(|e| PipelineError::new(&s.name, format!("checkpoint {id} failed: {e}")))
}
