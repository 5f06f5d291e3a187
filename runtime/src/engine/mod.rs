//! The embedded engine: one task per component, bounded channels of batches, aligned
//! checkpoint barriers, and recovery from what the sinks committed.
//!
//! Recovery: every sink reports its last committed checkpoint. The pipeline restores
//! source offsets and transform state from the oldest; a sink that is ahead drops the
//! replayed records up to its own checkpoint. For that, barriers are replayed at the
//! same record counts where they stood (each checkpoint stores each source's emitted
//! count), so the records between two barriers are the same as before the crash.

mod align;
mod checkpoint;
mod coordinator;
mod dlq;
mod messages;
mod retry;
mod sink_task;
mod source_task;
mod transform_task;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use checkpoint::{CommittedOffsets, PipelineState, SourceState};

use self::align::Aligner;
use self::checkpoint::CheckpointStore;
use self::coordinator::{CheckpointLine, Coordinator};
use self::dlq::DeadLetters;
use self::messages::{Envelope, Output};
use self::retry::retry;
use self::sink_task::SinkTask;
use self::source_task::SourceTask;
use self::transform_task::TransformTask;
use crate::config::PipelinePlan;
use crate::metrics::Metrics;

/// Batches in flight per edge: what bounds memory and makes a slow sink slow the source.
const CHANNEL_CAPACITY: usize = 8;

/// Why a pipeline stopped: the component and the cause.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PipelineError {
    pub component: String,
    pub message: String,
}

impl PipelineError {
    pub fn new(component: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            component: component.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.component, self.message)
    }
}

/// Runs a pipeline until its sources are exhausted, `stop` turns true, or it fails.
pub async fn run(
    plan: PipelinePlan,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
    committed_offsets: CommittedOffsets,
) -> Result<(), PipelineError> {
    let PipelinePlan {
        name,
        checkpoint_interval,
        batch_size,
        errors,
        sources,
        transforms,
        mut sinks,
        ..
    } = plan;
    let retry_timeout = errors.retry_timeout;
    let dlq = Arc::new(DeadLetters::open(&name, &errors)?);

    // 1. What did each sink commit?
    let mut committed = Vec::with_capacity(sinks.len());
    for s in &mut sinks {
        let c = retry!(
            retry_timeout,
            format!("opening sink `{}`", s.name),
            s.component.open()
        )
        .map_err(|e| PipelineError::new(&s.name, format!("cannot open: {e}")))?;
        if !s.component.exactly_once() {
            tracing::info!(pipeline = %name, sink = %s.name, "this sink is at-least-once: records may repeat after a crash");
        }
        committed.push(if s.component.exactly_once() {
            Some(c)
        } else {
            None
        });
    }
    // 2. Restore from the oldest committed checkpoint (none at all: from the start).
    let exact: Vec<&Option<connectd_sdk::Checkpoint>> = committed.iter().flatten().collect();
    let restore = if exact.iter().any(|c| c.is_none()) {
        None
    } else {
        exact.iter().filter_map(|c| c.as_ref()).min_by_key(|c| c.id)
    };
    let restore_id = restore.map_or(0, |c| c.id);
    let parse_state = |c: &connectd_sdk::Checkpoint| {
        serde_json::from_value::<PipelineState>(c.state.clone()).map_err(|e| {
            PipelineError::new(
                "checkpoint",
                format!("checkpoint {} is not a connectd pipeline state: {e}", c.id),
            )
        })
    };
    let state = restore.map(parse_state).transpose()?.unwrap_or_default();
    if restore.is_some() {
        checkpoint::publish(&committed_offsets, restore_id, &state);
    }
    // 3. Sinks ahead of the restore point, and where their barriers stood.
    let mut ahead: BTreeMap<u64, PipelineState> = BTreeMap::new();
    let mut dropping = Vec::with_capacity(sinks.len());
    for c in &committed {
        match c {
            Some(Some(c)) if restore.is_none() || c.id > restore_id => {
                ahead.insert(c.id, parse_state(c)?);
                dropping.push(Some(c.id));
            }
            _ => dropping.push(None),
        }
    }
    let max_committed = committed
        .iter()
        .flatten()
        .flatten()
        .map(|c| c.id)
        .max()
        .unwrap_or(0);
    let replay_until = ahead.keys().next_back().copied();
    match restore {
        Some(c) => {
            tracing::info!(pipeline = %name, checkpoint = c.id, replaying_to = ?replay_until, "restoring from checkpoint")
        }
        None => {
            tracing::info!(pipeline = %name, replaying_to = ?replay_until, "starting from the beginning (no checkpoint)")
        }
    }

    // 4. Channels: one receiver per transform/sink; outputs per producer.
    let mut outputs: HashMap<String, Vec<Output>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Envelope>> = HashMap::new();
    let consumers = transforms
        .iter()
        .map(|t| (&t.name, &t.inputs))
        .chain(sinks.iter().map(|s| (&s.name, &s.inputs)));
    for (cname, inputs) in consumers {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        receivers.insert(cname.clone(), rx);
        for (i, input) in inputs.iter().enumerate() {
            outputs.entry(input.clone()).or_default().push(Output {
                to: cname.clone(),
                sender: tx.clone(),
                input: i,
            });
        }
    }

    let (store, completed) = CheckpointStore::new(
        sources.len(),
        transforms.len(),
        sinks.len(),
        committed_offsets,
    );
    let store = Arc::new(store);
    let (exhausted_tx, exhausted_rx) = mpsc::unbounded_channel();
    let mut tasks: JoinSet<Result<(), PipelineError>> = JoinSet::new();
    let mut commands = Vec::new();
    let line = Arc::new(CheckpointLine::new(
        max_committed.max(restore_id) + 1,
        restore_id,
    ));

    for mut s in sources {
        s.component.attach_checkpoints(line.clone());
        let restored = state.sources.get(&s.name).cloned();
        let offset = restored.as_ref().map(|r| r.offset.clone());
        retry!(
            retry_timeout,
            format!("opening source `{}`", s.name),
            s.component.open(offset.clone())
        )
        .map_err(|e| PipelineError::new(&s.name, format!("cannot open: {e}")))?;
        if let Some(stats) = s.component.stats() {
            metrics.register_source_stats(&name, &s.name, stats);
        }
        if !s.component.replayable() {
            tracing::warn!(pipeline = %name, source = %s.name, "this source cannot replay: records it produced after the last checkpoint are lost in a crash (never duplicated)");
        }
        let emitted = restored.map_or(0, |r| r.emitted);
        let schedule: VecDeque<(u64, u64)> = ahead
            .iter()
            .map(|(id, st)| (*id, st.sources.get(&s.name).map_or(emitted, |x| x.emitted)))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let task = SourceTask {
            metrics: metrics.component(&name, &s.name, "source"),
            outputs: outputs.remove(&s.name).unwrap_or_default(),
            name: s.name,
            source: s.component,
            commands: rx,
            exhausted: exhausted_tx.clone(),
            store: store.clone(),
            schedule,
            emitted,
            batch_size,
            dlq: dlq.clone(),
            retry_timeout,
        };
        tasks.spawn(task.run().in_current_span());
    }
    drop(exhausted_tx);
    for mut t in transforms {
        if let Some(stats) = t.component.plugin_stats() {
            metrics.register_plugin_stats(&name, &t.name, stats);
        }
        if let Some(snapshot) = state.transforms.get(&t.name) {
            t.component
                .restore(snapshot.clone())
                .map_err(|e| PipelineError::new(&t.name, format!("cannot restore state: {e}")))?;
        }
        let rx = receivers
            .remove(&t.name)
            .ok_or_else(|| PipelineError::new(&t.name, "no input channel"))?;
        let task = TransformTask {
            live: (t.type_name == "window").then(|| metrics.live().tap(&name, &t.name)),
            metrics: metrics.component(&name, &t.name, "transform"),
            outputs: outputs.remove(&t.name).unwrap_or_default(),
            aligner: Aligner::new(rx, t.inputs.len()),
            name: t.name,
            transform: t.component,
            store: store.clone(),
            dlq: dlq.clone(),
        };
        tasks.spawn(task.run().in_current_span());
    }
    for (s, dropping_until) in sinks.into_iter().zip(dropping) {
        let rx = receivers
            .remove(&s.name)
            .ok_or_else(|| PipelineError::new(&s.name, "no input channel"))?;
        let task = SinkTask {
            metrics: metrics.component(&name, &s.name, "sink"),
            aligner: Aligner::new(rx, s.inputs.len()),
            name: s.name,
            sink: s.component,
            store: store.clone(),
            dropping_until,
            dlq: dlq.clone(),
            retry_timeout,
        };
        tasks.spawn(task.run().in_current_span());
    }
    drop(outputs);
    let coordinator = Coordinator {
        pipeline: name.clone(),
        commands,
        completed,
        exhausted: exhausted_rx,
        stop,
        interval: checkpoint_interval,
        line,
        replay_until,
    };
    tasks.spawn(coordinator.run().in_current_span());

    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(PipelineError::new(
                "runtime",
                format!("a task ended abnormally: {e}"),
            ))
        });
        if let Err(e) = result {
            tasks.abort_all();
            return Err(e);
        }
    }
    Ok(())
}
