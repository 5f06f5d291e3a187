//! The pipeline's state store (fjall, in `<state dir>/<pipeline>/state/`): the manifest
//! of the last complete checkpoint and the keyed state of its transforms.
//!
//! - Completing checkpoint *n* writes the manifest of *n* and every transform's keyed
//!   state changes of the epoch of *n* in one atomic, synced batch: the commit point
//!   of the two-phase commit. A crash leaves the store at *n − 1* or at *n*, whole.
//! - A transform writes into its epoch's changes; at barrier *n* they are sorted into
//!   the delta of *n* and a new epoch starts. Reads see the epoch's changes, then the
//!   frozen deltas not yet written, then the store. So a checkpoint writes only the
//!   keys changed in its epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use connectd_sdk::CheckpointControl;
use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context as FilterContext, Factory, ItemAccessor,
    Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use serde::{Deserialize, Serialize};

use super::checkpoint::PipelineState;
use super::delta_log::DeltaLogs;
use super::epoch_changes::SortedDelta;
use super::state_table::{lock, Overlay, SharedOverlay, TableGauges};
pub use super::state_table::{Freezer, StoreTable};
use super::PipelineError;

/// A task table's changes of one checkpoint (see `StateStore::task_deltas`).
pub(super) struct TaskDelta {
    pub transform: String,
    pub task: u32,
    /// `None`: the table was opened after the barrier, so has no changes in it.
    pub changes: Option<Arc<SortedDelta>>,
    /// Keys below this are forgotten (`KeyedState::forget_below`).
    pub bound: Vec<u8>,
    /// The keys the store holds that the bound's rise in this checkpoint forgets: each
    /// was logged when it was written, so its changelog needs a tombstone, or a
    /// compacted changelog would keep it for good.
    pub forgotten: Vec<Slice>,
}

/// A complete checkpoint: its id and the pipeline's state at it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: u64,
    pub state: PipelineState,
}

/// The bound of a table's last complete checkpoint: what compactions may drop.
type SharedBound = Arc<RwLock<Vec<u8>>>;

/// A table of the store with what the runtime keeps for it.
#[derive(Clone)]
struct Table {
    /// The keyspace's name (`t.<transform>`, or `t.<transform>#<task>`).
    name: String,
    /// A task's table (`task_table`): its transform and task.
    task: Option<(String, u32)>,
    ks: Keyspace,
    overlay: SharedOverlay,
    completed_bound: SharedBound,
}

/// Drops keys below the table's completed bound when the store compacts: how
/// forgotten keys (closed windows) leave the disk without a tombstone each.
struct ForgetBelow(SharedBound);

impl Factory for ForgetBelow {
    fn name(&self) -> &str {
        "connectd-forget-below"
    }

    fn make_filter(&self, _ctx: &FilterContext) -> Box<dyn CompactionFilter> {
        let bound = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        Box::new(BoundFilter(bound))
    }
}

struct BoundFilter(Vec<u8>);

impl CompactionFilter for BoundFilter {
    fn filter_item(
        &mut self,
        item: ItemAccessor<'_>,
        _ctx: &FilterContext,
    ) -> CompactionFilterResult {
        // No bound (a table that never forgets by range): no comparison, a
        // call to memcmp per item each compaction.
        Ok(
            if !self.0.is_empty() && item.key().as_ref() < self.0.as_slice() {
                Verdict::Remove
            } else {
                Verdict::Keep
            },
        )
    }
}

/// The key in `meta` under which a table's bound is kept.
fn bound_key(table: &str) -> Vec<u8> {
    format!("bound.{table}").into_bytes()
}

/// A table's memtable, before it is flushed to disk (fjall's default is 64 MiB): with
/// the cache, what bounds the store's memory.
const MEMTABLE_BYTES: u64 = 8 << 20;
const MANIFEST: &[u8] = b"manifest";
/// A table's delta of at least this many changes goes in as a table file (see
/// `delta_log`). Smaller ones go through the journal: a table file, a log and their
/// syncs for every small checkpoint (every 100 ms, say) would fill level 0 with tiny
/// tables.
const INGEST_MIN_CHANGES: usize = 16_384;

/// Level-0 tables before they are compacted into level 1 (RocksDB's and fjall's
/// default is 4). Each large delta is one table, so with 4 every fourth checkpoint
/// rewrote level 1; state reads go there only past the table's own Bloom filter and
/// the overlay, so more level-0 tables cost reads little. Measured on the 1 M-key
/// dedup: 8 instead of 4 saved about 8 % of its CPU.
const L0_TABLES: u8 = 8;

/// A table's delta of a checkpoint and its bound then, if it has them.
type Frozen = (Option<Arc<SortedDelta>>, Option<Vec<u8>>);

/// How every table's keyspace is created (and opened for recovery).
fn table_options() -> KeyspaceCreateOptions {
    // Point reads that reach the store mostly find their key (the table's Bloom
    // filter, or a window's own, answers for new keys), so the last level, which
    // holds most keys, needs no filter of its own.
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .expect_point_read_hits(true)
        .compaction_strategy(Arc::new(
            fjall::compaction::Leveled::default().with_l0_threshold(L0_TABLES),
        ))
}

/// Writes a sorted delta into `ks` as table files.
fn ingest<'a>(
    ks: &Keyspace,
    entries: impl IntoIterator<Item = &'a (fjall::Slice, Option<fjall::Slice>)>,
) -> fjall::Result<()> {
    let mut ingestion = ks.start_ingestion()?;
    for (k, v) in entries {
        match v {
            Some(v) => ingestion.write(k.clone(), v.clone())?,
            None => ingestion.write_tombstone(k.clone())?,
        }
    }
    ingestion.finish()
}

#[derive(Clone)]
pub struct StateStore {
    db: Database,
    meta: Keyspace,
    dir: PathBuf,
    tables: Arc<Mutex<Vec<Table>>>,
    /// Each table's completed bound, by keyspace name, shared with its compaction filter.
    bounds: Arc<Mutex<HashMap<String, SharedBound>>>,
    /// What each transform may keep decoded in memory (see `KeyedState::memory_budget`).
    memory_budget: usize,
    /// Tables in use, for metrics: their transform, whether the table is one
    /// partition's (`task_table`), their figures.
    used: Arc<Mutex<Vec<(String, bool, TableGauges)>>>,
    deltas: Arc<DeltaLogs>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl StateStore {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> PipelineError {
        fail(&self.dir, what, e)
    }

    /// Opens (or creates) the store of the pipeline whose state lives in
    /// `pipeline_dir`. A store that cannot be read is an error naming it: the pipeline
    /// refuses to start rather than run on state it cannot trust.
    ///
    /// `cache_bytes` (`state.cache_size`) is split: half the store's block cache, half
    /// for what transforms keep decoded in front of it.
    pub fn open(pipeline_dir: &Path, cache_bytes: u64) -> Result<Self, PipelineError> {
        let dir = pipeline_dir.join("state");
        // Created here, so that a state directory that cannot be made (no permission, a
        // read-only volume) is named as such, not as a damaged store to reset.
        std::fs::create_dir_all(&dir).map_err(|e| {
            PipelineError::new(
                "state",
                format!(
                    "cannot create the state directory {}: {e} (see --state-dir)",
                    dir.display()
                ),
            )
        })?;
        let bounds: Arc<Mutex<HashMap<String, SharedBound>>> = Default::default();
        let for_filters = bounds.clone();
        let db = Database::builder(&dir)
            .cache_size(cache_bytes / 2)
            // One worker for flushes and compactions: with two, worker 0 hands every
            // compaction back to the queue and takes it again while worker 1 is busy,
            // a busy loop that took 6 % of a 1 M-key dedup's CPU (fjall 3.1).
            .worker_threads(1)
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                let bound = lock_vec(&for_filters)
                    .entry(keyspace.to_string())
                    .or_default()
                    .clone();
                Some(Arc::new(ForgetBelow(bound)) as Arc<dyn Factory>)
            }))
            .open()
            .map_err(|e| match e {
                // Not damage: resetting or removing it would destroy a live pipeline's state.
                fjall::Error::Locked => PipelineError::new(
                    "state",
                    format!(
                        "the state store {} is in use by another process (a connectd running in the same state directory?): stop that one, or give this one its own --state-dir",
                        dir.display()
                    ),
                ),
                e => fail(&dir, "cannot open", e),
            })?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(|e| fail(&dir, "cannot open", e))?;
        let store = Self {
            db,
            meta,
            dir,
            tables: Default::default(),
            bounds,
            memory_budget: usize::try_from(cache_bytes / 2).unwrap_or(usize::MAX),
            used: Default::default(),
            deltas: Arc::new(DeltaLogs::new(pipeline_dir)),
        };
        store.finish_ingestions()?;
        Ok(store)
    }

    /// Ingests the logged deltas of the last complete checkpoint that a crash kept
    /// from their tables, and removes the logs of a checkpoint that never completed.
    fn finish_ingestions(&self) -> Result<(), PipelineError> {
        let logs_err = |e: std::io::Error| fail(self.deltas.dir(), "cannot read", e);
        let logs = self.deltas.list().map_err(logs_err)?;
        if logs.is_empty() {
            return Ok(()); // the usual start: no manifest to read here
        }
        let committed = self.latest()?.map_or(0, |m| m.id);
        for (id, path) in logs {
            if id <= committed {
                for (name, entries) in DeltaLogs::read(&path)
                    .map_err(|e| PipelineError::new("state", format!("{e}. Restore it, or reset the pipeline (DELETE /connectors/<name>/offsets) to start over")))?
                {
                    let ks = self
                        .db
                        .keyspace(&name, table_options)
                        .map_err(|e| self.err("cannot open a table in", e))?;
                    ingest(&ks, &entries).map_err(|e| self.err("cannot write", e))?;
                }
            }
            self.deltas.remove(id).map_err(logs_err)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last complete checkpoint; `None` before the first.
    pub fn latest(&self) -> Result<Option<Manifest>, PipelineError> {
        let Some(bytes) = self
            .meta
            .get(MANIFEST)
            .map_err(|e| self.err("cannot read", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err("holds a corrupt checkpoint manifest in", e))
    }

    /// The keyed state of transform `name`, at the last complete checkpoint.
    ///
    /// `checkpoints`: where the table asks for a checkpoint when an epoch's changes
    /// outgrow their share of the cache.
    pub fn table(
        &self,
        name: &str,
        checkpoints: Option<Arc<dyn CheckpointControl>>,
    ) -> Result<(StoreTable, Freezer), PipelineError> {
        // Keyspace names are limited to 255 bytes; component names are short.
        self.open_table(format!("t.{name}"), None, checkpoints, self.memory_budget)
    }

    /// The keyed state of transform `name` in input partition `task`
    /// (`state.per_partition`), at the last complete checkpoint: a table of its own, so
    /// that the partition's state can move alone. It gets `1 / shares` of the memory a
    /// transform may keep decoded.
    pub fn task_table(
        &self,
        name: &str,
        task: u32,
        checkpoints: Option<Arc<dyn CheckpointControl>>,
        shares: usize,
    ) -> Result<(StoreTable, Freezer), PipelineError> {
        let budget = self.memory_budget / shares.max(1);
        let ks_name = format!("t.{name}#{task:08x}");
        self.open_table(ks_name, Some((name.to_string(), task)), checkpoints, budget)
    }

    fn open_table(
        &self,
        ks_name: String,
        task: Option<(String, u32)>,
        checkpoints: Option<Arc<dyn CheckpointControl>>,
        memory_budget: usize,
    ) -> Result<(StoreTable, Freezer), PipelineError> {
        let ks = self
            .db
            .keyspace(&ks_name, table_options)
            .map_err(|e| self.err("cannot open a table in", e))?;
        let bound = self
            .meta
            .get(bound_key(&ks_name))
            .map_err(|e| self.err("cannot read", e))?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let completed_bound = lock_vec(&self.bounds)
            .entry(ks_name.clone())
            .or_default()
            .clone();
        *completed_bound.write().unwrap_or_else(|p| p.into_inner()) = bound.clone();
        let overlay = SharedOverlay::new(Mutex::new(Overlay {
            bound,
            ..Default::default()
        }));
        lock_vec(&self.tables).push(Table {
            name: ks_name,
            task,
            ks: ks.clone(),
            overlay: overlay.clone(),
            completed_bound,
        });
        let gauges = TableGauges {
            ks,
            overlay: overlay.clone(),
            decoded: Default::default(),
            filter: Default::default(),
        };
        let table = StoreTable::open(gauges, memory_budget, checkpoints)
            .map_err(|e| self.err("cannot read", e))?;
        Ok((table, Freezer(overlay)))
    }

    /// Marks the table of transform `name` as in use (it took its keyed state).
    pub fn in_use(&self, name: &str, table: &StoreTable) {
        lock_vec(&self.used).push((name.to_string(), false, table.gauges()));
    }

    /// Marks a table of transform `name`'s partitions as in use (`task_table`).
    pub fn task_in_use(&self, name: &str, table: &StoreTable) {
        lock_vec(&self.used).push((name.to_string(), true, table.gauges()));
    }

    /// The transform declined keyed state: no metrics for its (empty) table.
    pub fn not_in_use(&self, name: &str) {
        lock_vec(&self.used).retain(|(n, _, _)| n != name);
    }

    /// The size of every table in use, by transform (the tables of its partitions
    /// summed).
    pub fn sizes(&self) -> Vec<TableSize> {
        let mut sizes: Vec<TableSize> = Vec::new();
        for (name, per_task, t) in lock_vec(&self.used).iter() {
            let i = match sizes.iter().position(|s| s.transform == *name) {
                Some(i) => i,
                None => {
                    sizes.push(TableSize {
                        transform: name.clone(),
                        ..TableSize::default()
                    });
                    sizes.len() - 1
                }
            };
            let size = &mut sizes[i];
            size.keys += t.ks.approximate_len() as u64;
            size.disk_bytes += t.ks.disk_space();
            size.memory_bytes += t.memory_bytes() as u64;
            size.filter_bytes += t.filter_bytes() as u64;
            size.partitions += u64::from(*per_task);
        }
        sizes
    }

    /// Writes the table of transform `name`'s task `task` as a changelog left it:
    /// `entries` in key order, and its bound, in place of anything this store held of
    /// it (before the transform opens the table). Durable once it returns.
    pub fn rebuild_task_table(
        &self,
        name: &str,
        task: u32,
        entries: &[(fjall::Slice, Option<fjall::Slice>)],
        bound: &[u8],
    ) -> Result<(), PipelineError> {
        let ks_name = format!("t.{name}#{task:08x}");
        if lock_vec(&self.tables).iter().any(|t| t.name == ks_name) {
            return Err(PipelineError::new(
                name,
                format!("partition {task}'s state is rebuilt while its table is still open (its handover has not completed)"),
            ));
        }
        let ks = self
            .db
            .keyspace(&ks_name, table_options)
            .map_err(|e| self.err("cannot open a table in", e))?;
        // What an earlier hold of the partition left: the changelog is newer.
        ks.clear()
            .map_err(|e| self.err("cannot clear a table in", e))?;
        if !entries.is_empty() {
            ingest(&ks, entries).map_err(|e| self.err("cannot write", e))?;
        }
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, bound_key(&ks_name), bound);
        batch.commit().map_err(|e| self.err("cannot write", e))
    }

    /// Transform `name`'s task `task` was handed over: its table's changes end with the
    /// next barrier's delta (still logged and completed), and the table is dropped when
    /// that checkpoint completes.
    pub fn retire_task_table(&self, name: &str, task: u32) {
        let wanted = Some((name.to_string(), task));
        for t in lock_vec(&self.tables).iter().filter(|t| t.task == wanted) {
            lock(&t.overlay).retire = true;
        }
    }

    /// Drops the tables whose last delta was checkpoint `id`'s or older, and their data.
    fn drop_retired(&self, id: u64) -> Result<(), PipelineError> {
        let gone: Vec<Table> = {
            let mut tables = lock_vec(&self.tables);
            let (gone, kept) = std::mem::take(&mut *tables)
                .into_iter()
                .partition(|t| lock(&t.overlay).retired_at.is_some_and(|at| at <= id));
            *tables = kept;
            gone
        };
        for t in gone {
            lock_vec(&self.used).retain(|(_, _, g)| g.ks.name() != t.ks.name());
            lock_vec(&self.bounds).remove(&t.name);
            t.ks.clear()
                .map_err(|e| self.err("cannot clear a table in", e))?;
            self.meta
                .remove(bound_key(&t.name))
                .map_err(|e| self.err("cannot write", e))?;
        }
        Ok(())
    }

    /// The changes of checkpoint `id` (frozen, not yet complete) of every task's table
    /// (`task_table`), with the table's bound as of `id`: what goes to the changelogs.
    /// A table handed over before `id` has none.
    ///
    /// Called when the checkpoint before `id` is complete (a sink logs `id` after it
    /// committed the one before), so the store holds every key logged before `id`.
    pub(super) fn task_deltas(&self, id: u64) -> Result<Vec<TaskDelta>, PipelineError> {
        let tables = lock_vec(&self.tables).clone();
        let mut deltas = Vec::new();
        for t in tables {
            let Some((transform, task)) = t.task.clone() else {
                continue;
            };
            let (changes, bound) = {
                let o = lock(&t.overlay);
                if o.retired_at.is_some_and(|at| at < id) {
                    continue;
                }
                let bound = o.frozen_bounds.get(&id).cloned().unwrap_or_default();
                (o.frozen.get(&id).cloned(), bound)
            };
            let was = t
                .completed_bound
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let mut forgotten = Vec::new();
            if bound > was {
                // Compactions drop only keys below `was` so far: these are all here.
                for item in t.ks.range(was..bound.clone()) {
                    forgotten.push(item.key().map_err(|e| self.err("cannot read", e))?);
                }
            }
            deltas.push(TaskDelta {
                transform,
                task,
                changes,
                bound,
                forgotten,
            });
        }
        Ok(deltas)
    }

    /// Records checkpoint `manifest.id` as complete, with every table's changes of its
    /// epoch: small deltas in one atomic synced batch with the manifest (the commit
    /// point), large ones logged before it and ingested as table files after it.
    pub fn complete(&self, manifest: &Manifest) -> Result<u64, PipelineError> {
        let id = manifest.id;
        let tables = lock_vec(&self.tables).clone();
        let frozen: Vec<Frozen> = tables
            .iter()
            .map(|t| {
                let o = lock(&t.overlay);
                (
                    o.frozen.get(&id).cloned(),
                    o.frozen_bounds.get(&id).cloned(),
                )
            })
            .collect();
        let ingest_min = super::crash_point::ingest_min(INGEST_MIN_CHANGES);
        let large: Vec<(&Table, &SortedDelta)> = tables
            .iter()
            .zip(&frozen)
            .filter_map(|(t, (d, _))| Some((t, d.as_deref()?)))
            .filter(|(_, d)| d.len() >= ingest_min)
            .collect();
        if !large.is_empty() {
            self.deltas
                .write(id, large.iter().map(|(t, d)| (t.name.as_str(), d.iter())))
                .map_err(|e| fail(self.deltas.dir(), "cannot write", e))?;
            super::crash_point::hit("delta-logged", id, "state");
        }
        // Sized up front: grown by doubling, a batch of a million changes would be
        // copied several times into freshly faulted pages.
        let items: usize = frozen
            .iter()
            .map(|(d, _)| d.as_ref().map_or(0, |d| d.len()).min(ingest_min) + 1)
            .sum::<usize>()
            + 1;
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), items)
            .durability(Some(PersistMode::SyncAll));
        let mut bytes = 0u64;
        let mut new_bounds = Vec::new();
        for (t, (delta, bound)) in tables.iter().zip(&frozen) {
            for (k, v) in delta.iter().flat_map(|d| d.iter()) {
                bytes += (k.len() + v.as_ref().map_or(0, |v| v.len())) as u64;
            }
            // Inline keys and values are copied as they are; longer ones share their bytes.
            let small = delta.as_ref().filter(|d| d.len() < ingest_min);
            for (k, v) in small.iter().flat_map(|d| d.iter()) {
                match v {
                    Some(v) => batch.insert(&t.ks, k.clone(), v.clone()),
                    None => batch.remove(&t.ks, k.clone()),
                }
            }
            if let Some(bound) = bound {
                if *t.completed_bound.read().unwrap_or_else(|p| p.into_inner()) != *bound {
                    batch.insert(&self.meta, bound_key(&t.name), bound.as_slice());
                    new_bounds.push((t.completed_bound.clone(), bound.clone()));
                }
            }
        }
        let m = serde_json::to_vec(manifest)
            .map_err(|e| self.err("cannot encode a manifest for", e))?;
        bytes += m.len() as u64;
        batch.insert(&self.meta, MANIFEST, m);
        batch.commit().map_err(|e| self.err("cannot write", e))?;
        if !large.is_empty() {
            super::crash_point::hit("ingesting", id, "state");
            for (t, d) in &large {
                ingest(&t.ks, d.iter()).map_err(|e| self.err("cannot write", e))?;
            }
            self.deltas
                .remove(id)
                .map_err(|e| fail(self.deltas.dir(), "cannot remove a log in", e))?;
        }
        // Only now may readers stop seeing the delta in memory: the store has it. And
        // only now may compactions drop what the bound forgets.
        drop(large);
        drop(frozen);
        for t in &tables {
            let delta = {
                let mut o = lock(&t.overlay);
                o.frozen_bounds.remove(&id);
                o.frozen.remove(&id)
            };
            // Emptied outside the lock (the transform writes meanwhile), then kept for
            // the next barrier to sort into.
            let spare = delta.and_then(|d| Arc::try_unwrap(d).ok());
            if let Some(spare) = spare.map(SortedDelta::into_spare) {
                lock(&t.overlay).spare = spare;
            }
        }
        for (shared, bound) in new_bounds {
            *shared.write().unwrap_or_else(|p| p.into_inner()) = bound;
        }
        self.drop_retired(id)?;
        Ok(bytes)
    }

    /// Records `to` as the last complete checkpoint (`None`: none) in place of the one
    /// recorded, which the runtime gave up (`recovery::give_up_uncommitted`). The keyed
    /// state that checkpoint wrote stays: it is only ever in the tables of partition
    /// tasks, which are rebuilt from their changelogs before they are read.
    pub fn rewind(&self, to: Option<&Manifest>) -> Result<(), PipelineError> {
        let mut batch = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), 1)
            .durability(Some(PersistMode::SyncAll));
        match to {
            Some(m) => {
                let m = serde_json::to_vec(m)
                    .map_err(|e| self.err("cannot encode a manifest for", e))?;
                batch.insert(&self.meta, MANIFEST, m);
            }
            None => batch.remove(&self.meta, MANIFEST),
        }
        batch.commit().map_err(|e| self.err("cannot write", e))
    }

    /// Forgets every checkpoint and all keyed state (offset reset; the pipeline is
    /// stopped).
    pub fn remove(pipeline_dir: &Path) -> Result<(), PipelineError> {
        // The store first: logs left without it belong to no checkpoint, and opening
        // removes them.
        let logs = DeltaLogs::new(pipeline_dir);
        for dir in [pipeline_dir.join("state").as_path(), logs.dir()] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail(dir, "cannot remove", e)),
            }
        }
        Ok(())
    }
}

fn fail(dir: &Path, what: &str, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::new(
        "state",
        format!(
            "the state store {}: {what} it: {e}. If it is damaged, restore it, or reset the pipeline (DELETE /connectors/<name>/offsets, or remove that directory) to start over",
            dir.display()
        ),
    )
}

fn lock_vec<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A transform's keyed state, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSize {
    pub transform: String,
    /// Approximate: the store counts keys per table file.
    pub keys: u64,
    pub disk_bytes: u64,
    /// What the transform keeps decoded, plus changes not yet in the store.
    pub memory_bytes: u64,
    /// The table's Bloom filter of keys.
    pub filter_bytes: u64,
    /// How many input partitions' tables are summed here (`state.per_partition`; 0
    /// for a transform whose state is one table).
    pub partitions: u64,
}

#[cfg(test)]
mod tests;
