//! The embedded engine: one task per component, bounded channels of batches, aligned
//! checkpoint barriers, and a two-phase commit per checkpoint.
//!
//! Each sink pre-commits checkpoint *n* (its write-ahead log of the epoch is sealed);
//! then the state store records *n* as complete; then the sinks commit *n*. Recovery
//! restores the last complete checkpoint and finishes the commit of any sink that had
//! not made it (`recovery`). Nothing after that checkpoint survives anywhere, so what
//! the sources produce after a restart need not equal what they produced before.

mod align;
mod backfill;
mod chains;
mod changelog;
mod changelog_restore;
mod checkpoint;
mod coordinator;
mod crash_point;
mod delta_log;
pub(crate) mod dlq;
mod epoch_changes;
mod finish_sinks;
mod lanes;
mod messages;
mod partition_tasks;
pub mod recovery;
mod retry;
mod sink_task;
mod source_task;
mod state_store;
mod state_table;
mod transform_task;
mod wal;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use checkpoint::{publish as publish_committed, CommittedOffsets, PipelineState, SourceState};
pub use state_store::{StateStore, TableSize};
pub use wal::Wal;

use self::align::Aligner;
use self::checkpoint::CheckpointStore;
use self::coordinator::{CheckpointLine, Coordinator};
use self::dlq::DeadLetters;
use self::messages::{Envelope, Output};
use self::partition_tasks::PerTask;
use self::retry::retry;
use self::sink_task::SinkTask;
use self::source_task::{Chained, SourceTask};
use self::state_table::Freezers;
use self::transform_task::TransformTask;
use crate::config::PipelinePlan;
use crate::metrics::Metrics;

/// Batches in flight per edge: what bounds memory and makes a slow sink slow the source.
const CHANNEL_CAPACITY: usize = 8;

/// Opens transform `name`'s table of a task (`state.per_partition`), counted in its
/// state metrics and frozen with its other tables at each barrier.
fn task_table_opener(
    store: &StateStore,
    line: &Arc<CheckpointLine>,
    name: &str,
    freezers: &Freezers,
) -> partition_tasks::TableOpener {
    let (store, line, name, freezers) = (
        store.clone(),
        line.clone(),
        name.to_string(),
        freezers.clone(),
    );
    Box::new(move |task, shares| {
        let (table, freezer) = store.task_table(&name, task, Some(line.clone()), shares)?;
        store.task_in_use(&name, &table);
        freezers.add(freezer);
        Ok(Box::new(table))
    })
}

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
    run_as(plan, metrics, stop, committed_offsets, false).await
}

/// [`run`], or (`backfilling`) the inner run of a backfill (`backfill`).
async fn run_as(
    plan: PipelinePlan,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
    committed_offsets: CommittedOffsets,
    backfilling: bool,
) -> Result<(), PipelineError> {
    let PipelinePlan {
        spec,
        sources,
        transforms,
        mut sinks,
        state_dir,
        backfill,
    } = plan;
    let name = spec.name.clone();
    let (checkpoint_interval, batch_size) = (spec.checkpoint_interval, spec.batch_size);
    let (errors, state_cache_bytes) = (spec.errors.clone(), spec.state_cache_bytes);
    let retries = retry::RetryPolicy::new(errors.retry_timeout, stop.clone());
    let dlq = Arc::new(DeadLetters::open(&name, &errors)?);
    let mut restore_started = std::time::Instant::now();
    let state_store = StateStore::open(&state_dir, state_cache_bytes)?;

    // 1. What the state store (the pipeline's checkpoint log) and each sink hold.
    let manifest = state_store.latest()?;
    let mut found = Vec::with_capacity(sinks.len());
    let mut sink_checkpoints = Vec::with_capacity(sinks.len());
    let mut wals = Vec::with_capacity(sinks.len());
    for s in &mut sinks {
        let c = retry!(
            &retries,
            format!("opening sink `{}`", s.name),
            s.component.open()
        )
        .map_err(|e| PipelineError::new(&s.name, format!("cannot open: {e}")))?;
        let exactly_once = s.component.exactly_once();
        if !exactly_once && !backfilling {
            tracing::info!(pipeline = %name, sink = %s.name, "this sink is at-least-once: records may repeat after a crash");
        }
        let wal = Wal::new(&state_dir, &s.name);
        found.push(recovery::SinkFound {
            name: s.name.clone(),
            exactly_once,
            committed: c.as_ref().map(|c| c.id),
            prepared: s.component.prepared(),
            wal_epochs: wal.epochs()?,
        });
        sink_checkpoints.push(c);
        wals.push(exactly_once.then_some(wal));
    }
    // 2. The recovery plan: which checkpoint to restore, what each sink must finish.
    let mut plan = recovery::plan(manifest.as_ref().map(|m| m.id), &found)
        .map_err(|e| PipelineError::new("checkpoint", e))?;
    let parse_state = |c: &connectd_sdk::Checkpoint| {
        serde_json::from_value::<PipelineState>(c.state.clone()).map_err(|e| {
            PipelineError::new(
                "checkpoint",
                format!("checkpoint {} is not a connectd pipeline state: {e}", c.id),
            )
        })
    };
    let restored_state = |restore: &recovery::Restore| match restore {
        recovery::Restore::Beginning => Ok((0, PipelineState::default())),
        recovery::Restore::Log(id) => Ok((
            *id,
            manifest
                .as_ref()
                .map(|m| m.state.clone())
                .unwrap_or_default(),
        )),
        recovery::Restore::Sink { id, sink } => {
            let i = found.iter().position(|f| &f.name == sink).unwrap_or(0);
            let state = match sink_checkpoints.get(i) {
                Some(Some(c)) => parse_state(c)?,
                _ => PipelineState::default(),
            };
            Ok((*id, state))
        }
    };
    let (mut restore_id, mut state) = restored_state(&plan.restore)?;
    if let recovery::Restore::Sink { id, .. } = &plan.restore {
        tracing::warn!(pipeline = %name, checkpoint = id, store = %state_store.dir().display(), "no checkpoint log: restoring the checkpoint the sinks committed (a state directory from before the log existed, or a lost one)");
    }
    // Decided once the transforms show whether the pipeline splits across workers.
    let mut give_up = recovery::give_up_uncommitted(&plan, &found);
    // 3. A new sink with `start: beginning` gets what the pipeline produced before, as
    // the epoch of the restored checkpoint that it has yet to commit.
    let targets = backfill::targets(&spec, &sinks, &plan.sinks);
    if let (false, Some(parts)) = (targets.is_empty(), backfill) {
        // The backfilled epoch is the restored checkpoint's: it must not be given up.
        give_up = None;
        let at = backfill::Restored {
            id: restore_id,
            state: &state,
            dir: &state_dir,
        };
        let backfill_started = std::time::Instant::now();
        let done = backfill::new_sinks(
            &spec,
            parts,
            &targets,
            &mut plan.sinks,
            &mut wals,
            at,
            stop.clone(),
        )
        .await?;
        if !done {
            tracing::info!(pipeline = %name, "stopped during the backfill: it starts over on the next run");
            return Ok(());
        }
        // A backfill is not part of the restore.
        restore_started += backfill_started.elapsed();
    }

    // 4. Channels: one receiver per transform/sink; outputs per producer. A transform
    // chained into its source's task (`chains`) has none: the source calls it.
    let source_names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let chained = chains::into_sources(
        &source_names,
        &transforms
            .iter()
            .map(|t| chains::Node {
                name: &t.name,
                inputs: &t.inputs,
                chainable: true,
            })
            .chain(sinks.iter().map(|s| chains::Node {
                name: &s.name,
                inputs: &s.inputs,
                chainable: false,
            }))
            .collect::<Vec<_>>(),
    );
    let is_chained = |t: &str| chained.values().any(|c| c == t);
    let mut outputs: HashMap<String, Vec<Output>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Envelope>> = HashMap::new();
    let consumers = transforms
        .iter()
        .filter(|t| !is_chained(&t.name))
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
        committed_offsets.clone(),
        state_store.clone(),
        metrics.state(&name),
    );
    let store = Arc::new(store);
    let (exhausted_tx, exhausted_rx) = mpsc::unbounded_channel();
    let mut tasks: JoinSet<Result<(), PipelineError>> = JoinSet::new();
    let mut commands = Vec::new();
    let line = Arc::new(CheckpointLine::new(plan.next_id, restore_id));

    // Transforms take their state first: what holds state decides whether the sources
    // may let workers split the pipeline.
    let mut prepared = Vec::with_capacity(transforms.len());
    let mut holders = Vec::new();
    let mut runs_per_task = false;
    // The sink that carries the changelogs (the one `changelog` goes to below): with
    // it, state per partition moves with its partition across workers.
    let changelog_reader = sinks
        .iter()
        .zip(&wals)
        .find(|(s, wal)| {
            wal.is_some() && !s.component.keeps_prepared() && s.component.writes_changelogs()
        })
        .and_then(|(s, _)| s.component.changelog_reader())
        .filter(|_| !backfilling);
    for mut t in transforms {
        if let Some(stats) = t.component.plugin_stats() {
            metrics.register_plugin_stats(&name, &t.name, stats);
        }
        let freezers = Freezers::default();
        let per_partition = match (&t.rebuild, spec.state_per_partition) {
            // A plugin's counters are its instance's: plugins keep one table for now.
            (Some(rebuild), true)
                if t.component.plugin_stats().is_none()
                    && partition_tasks::holds_keyed_state(&mut *t.component) =>
            {
                let open_table = task_table_opener(&state_store, &line, &t.name, &freezers);
                let mut per_task =
                    PerTask::new(t.name.clone(), &*t.component, rebuild.clone(), open_table);
                match &changelog_reader {
                    Some(reader) => {
                        let state_metrics = metrics.state(&name);
                        let h =
                            handover(reader.clone(), &state_store, &name, &t.name, state_metrics);
                        per_task = per_task.with_handover(h);
                        if sources.len() > 1 {
                            holders.push(format!("keyed state in `{}` ({}) fed by several sources, whose consumers are assigned partitions independently", t.name, t.type_name));
                        }
                    }
                    None => holders.push(format!("keyed state in `{}` ({})", t.name, t.type_name)),
                }
                t.component = Box::new(per_task);
                true
            }
            _ => {
                let (table, freezer) = state_store.table(&t.name, Some(line.clone()))?;
                state_store.in_use(&t.name, &table);
                if t.component.attach_state(Box::new(table)) {
                    holders.push(format!("keyed state in `{}` ({})", t.name, t.type_name));
                    freezers.add(freezer);
                } else {
                    state_store.not_in_use(&t.name);
                }
                false
            }
        };
        runs_per_task |= per_partition;
        prepared.push((t, freezers, per_partition));
    }
    holders.extend(
        sinks
            .iter()
            .filter(|s| s.component.exactly_once() && !s.component.commits_group_offsets())
            .map(|s| format!("the source positions in sink `{}`'s own checkpoint", s.name)),
    );
    let unsplittable = (!holders.is_empty()).then(|| {
        format!(
            "pipeline `{name}` cannot be split across workers: it keeps {}",
            holders.join(", ")
        )
    });
    // 5. Where the group's offsets are the whole truth of what was done (a pipeline
    // split by partition, every source resuming from its group), a checkpoint no sink
    // committed is given up rather than redone: another worker may have done its work
    // since. Then the sinks finish what the crash interrupted, before anything new.
    // (Not a backfill's inner run: its sources read outside the group.)
    let by_group = !backfilling
        && unsplittable.is_none()
        && !sources.is_empty()
        && sources.iter().all(|s| s.component.resumes_from_group());
    if let Some(given) = give_up.filter(|_| by_group) {
        (restore_id, state) = restored_state(&given.plan.restore)?;
        let to = (restore_id > 0).then(|| state_store::Manifest {
            id: restore_id,
            state: state.clone(),
        });
        state_store.rewind(to.as_ref())?;
        plan = given.plan;
        line.restart(plan.next_id, restore_id);
        tracing::info!(pipeline = %name, checkpoint = given.given_up, restored = restore_id, "giving up checkpoint {}: complete here but committed by no sink, and the consumer group stands at the sinks' checkpoint or later (another worker may have done its work since); restoring checkpoint {restore_id}", given.given_up);
    }
    if restore_id > 0 {
        checkpoint::publish(&committed_offsets, restore_id, &state);
        tracing::info!(pipeline = %name, checkpoint = restore_id, "restoring from checkpoint");
    } else if !backfilling {
        tracing::info!(pipeline = %name, "starting from the beginning (no checkpoint)");
    }
    let at = finish_sinks::Restored {
        spec: &spec,
        id: restore_id,
        state: &state,
        metrics: &metrics,
        dlq: &dlq,
        retry: retries.clone(),
    };
    finish_sinks::finish(&mut sinks, &plan.sinks, &mut wals, &at).await?;
    let first_id = plan.next_id;
    for (t, _, per_partition) in &mut prepared {
        if let Some(snapshot) = state.transforms.get(&t.name) {
            partition_tasks::check_snapshot(&t.name, snapshot, *per_partition)?;
            t.component
                .restore(snapshot.clone())
                .map_err(|e| PipelineError::new(&t.name, format!("cannot restore state: {e}")))?;
        }
    }
    if !backfilling {
        metrics.state(&name).restored(restore_started.elapsed());
    }

    let mut expected_origins = lanes::upstream_origins(
        &prepared
            .iter()
            .map(|(t, _, _)| lanes::Node {
                name: &t.name,
                inputs: &t.inputs,
                keeps_lanes: t.component.keeps_lanes(),
            })
            .collect::<Vec<_>>(),
    );
    let mut own_tasks = Vec::new();
    let mut chained_tasks = HashMap::new();
    for (t, freezers, _) in prepared {
        let expected_origins = expected_origins.remove(&t.name).unwrap_or_default();
        let t_inputs = t.inputs.len();
        let task = TransformTask {
            live: (t.type_name == "window").then(|| metrics.live().tap(&name, &t.name)),
            metrics: metrics.component(&name, &t.name, "transform"),
            outputs: outputs.remove(&t.name).unwrap_or_default(),
            name: t.name,
            transform: t.component,
            freezers,
            store: store.clone(),
            dlq: dlq.clone(),
            own_lane: None,
            expected_origins,
        };
        if is_chained(&task.name) {
            chained_tasks.insert(task.name.clone(), task);
            continue;
        }
        let rx = receivers
            .remove(&task.name)
            .ok_or_else(|| PipelineError::new(&task.name, "no input channel"))?;
        own_tasks.push((task, Aligner::new(rx, t_inputs)));
    }
    for mut s in sources {
        s.component.attach_checkpoints(line.clone());
        if let Some(why) = &unsplittable {
            s.component.exclusive(why);
        }
        let restored = state.sources.get(&s.name).cloned();
        let offset = restored.as_ref().map(|r| r.offset.clone());
        retry!(
            &retries,
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
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let chained_here = chained
            .get(&s.name)
            .and_then(|t| chained_tasks.remove(t))
            .map(Chained::new);
        let task = SourceTask {
            metrics: metrics.component(&name, &s.name, "source"),
            outputs: outputs.remove(&s.name).unwrap_or_default(),
            name: s.name,
            source: s.component,
            commands: rx,
            exhausted: exhausted_tx.clone(),
            store: store.clone(),
            emitted,
            batch_size,
            dlq: dlq.clone(),
            retry: retries.clone(),
            lanes_sent: None,
            chained: chained_here,
        };
        tasks.spawn(task.run().in_current_span());
    }
    drop(exhausted_tx);
    for (task, aligner) in own_tasks {
        tasks.spawn(task.run(aligner).in_current_span());
    }
    // State per partition is logged by the first exactly-once sink that can carry it.
    let mut changelog = (runs_per_task && !backfilling).then(|| changelog::ChangelogWriter {
        pipeline: name.clone(),
        store: state_store.clone(),
    });
    for (s, mut wal) in sinks.into_iter().zip(wals) {
        if s.component.keeps_prepared() {
            // Its pre-commit keeps the epoch: nothing to log.
            wal = None;
        }
        let rx = receivers
            .remove(&s.name)
            .ok_or_else(|| PipelineError::new(&s.name, "no input channel"))?;
        if let Some(stats) = s.component.stats() {
            metrics.register_sink_stats(&name, &s.name, stats);
        }
        let carries_changelogs = wal.is_some() && s.component.writes_changelogs();
        let changelog = changelog.take_if(|_| carries_changelogs);
        if changelog.is_some() {
            tracing::info!(pipeline = %name, sink = %s.name, "state changelogs go in this sink's transactions");
        }
        let task = SinkTask {
            changelog,
            metrics: metrics.component(&name, &s.name, "sink"),
            aligner: Aligner::new(rx, s.inputs.len()),
            name: s.name,
            sink: s.component,
            store: store.clone(),
            wal,
            epoch: first_id,
            dlq: dlq.clone(),
            retry: retries.clone(),
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
            let e = root_cause(&mut tasks, e).await;
            tasks.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

/// How transform `transform`'s tasks move with their partitions: each is restored from
/// the changelog through `reader` (the carrying sink's) when this worker first reads
/// its partition, and its table retired when it is handed over.
fn handover(
    reader: Arc<dyn connectd_sdk::ChangelogReader>,
    store: &StateStore,
    pipeline: &str,
    transform: &str,
    metrics: crate::metrics::StateMetrics,
) -> partition_tasks::Handover {
    let topic = changelog::topic(pipeline, transform);
    let (restoring, retiring) = (store.clone(), store.clone());
    let (name, retired_name) = (transform.to_string(), transform.to_string());
    let restore = move |task: u32| {
        let started = std::time::Instant::now();
        let read = || reader.read(&topic, Some(changelog::partition_of(task)));
        // A blocking read where the transform runs: the partition waits for its state,
        // and this runtime thread is given up meanwhile.
        let records = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(read)
            }
            _ => read(),
        }
        .map_err(|e| PipelineError::new(&name, format!("cannot read `{topic}`: {e}")))?;
        let read_seconds = started.elapsed().as_secs_f64();
        let restored = changelog_restore::restore_task(&restoring, &name, task, records)
            .map_err(|e| {
                PipelineError::new(
                    &name,
                    format!("cannot restore partition {task} from `{topic}`: {e}. Reset the pipeline (DELETE /connectors/<name>/offsets) to start over"),
                )
            })?;
        metrics.restored(started.elapsed());
        tracing::info!(transform = %name, topic = %topic, partition = task, keys = restored.keys, empty = restored.saved.is_none(), seconds = started.elapsed().as_secs_f64(), read_seconds, "state rebuilt from its changelog");
        Ok(restored.saved)
    };
    partition_tasks::Handover {
        restore: Box::new(restore),
        retire: Box::new(move |task| retiring.retire_task_table(&retired_name, task)),
    }
}

/// A component that failed because its downstream ended is a knock-on: the downstream's
/// own error (a plugin trap, a sink that gave up) says why, so wait briefly for it.
async fn root_cause(
    tasks: &mut JoinSet<Result<(), PipelineError>>,
    first: PipelineError,
) -> PipelineError {
    if !first.message.ends_with(messages::STOPPED_RECEIVING) {
        return first;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(Err(e)) = joined {
            if !e.message.ends_with(messages::STOPPED_RECEIVING) {
                return e;
            }
        }
    }
    first
}
