//! The pipeline's state store (fjall, in `<state dir>/<pipeline>/state/`): the manifest
//! of the last complete checkpoint and the keyed state of its transforms.
//!
//! - Completing checkpoint *n* writes the manifest of *n* and every transform's keyed
//!   state changes of the epoch of *n* in one atomic, synced batch: the commit point
//!   of the two-phase commit. A crash leaves the store at *n − 1* or at *n*, whole.
//! - A transform writes into a dirty map; at barrier *n* it is frozen as the delta of
//!   *n* and a new one starts. Reads see the dirty map, then the frozen deltas not yet
//!   written, then the store. So a checkpoint writes only the keys changed in its
//!   epoch.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use connectd_sdk::state::{Entries, KeyedState};
use connectd_sdk::ConnectorError;
use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context as FilterContext, Factory, ItemAccessor,
    Verdict,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

use super::checkpoint::PipelineState;
use super::PipelineError;

/// A complete checkpoint: its id and the pipeline's state at it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: u64,
    pub state: PipelineState,
}

/// A key and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// Changes of one epoch: `None` deletes the key.
type Delta = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default)]
struct Overlay {
    dirty: Delta,
    /// Deltas of checkpoints not yet complete, by checkpoint id.
    frozen: BTreeMap<u64, Arc<Delta>>,
    /// Keys below this are forgotten (`KeyedState::forget_below`); reads honour the
    /// newest bound at once.
    bound: Vec<u8>,
    /// The bound as of each frozen epoch: written with its checkpoint.
    frozen_bounds: BTreeMap<u64, Vec<u8>>,
}

/// The bound of a table's last complete checkpoint: what compactions may drop.
type SharedBound = Arc<RwLock<Vec<u8>>>;

/// A table of the store with what the runtime keeps for it.
#[derive(Clone)]
struct Table {
    /// The keyspace's name (`t.<transform>`).
    name: String,
    ks: Keyspace,
    overlay: SharedOverlay,
    completed_bound: SharedBound,
}

/// Approximate memory of changes held until their checkpoint completes.
fn delta_bytes(d: &Delta) -> usize {
    // Key, value and about 48 bytes of map node per entry.
    d.iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 48)
        .sum()
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
        Ok(if item.key().as_ref() < self.0.as_slice() {
            Verdict::Remove
        } else {
            Verdict::Keep
        })
    }
}

/// The key in `meta` under which a table's bound is kept.
fn bound_key(table: &str) -> Vec<u8> {
    format!("bound.{table}").into_bytes()
}

type SharedOverlay = Arc<Mutex<Overlay>>;

fn lock(o: &SharedOverlay) -> MutexGuard<'_, Overlay> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// A table's memtable, before it is flushed to disk (fjall's default is 64 MiB): with
/// the cache, what bounds the store's memory.
const MEMTABLE_BYTES: u64 = 8 << 20;
const MANIFEST: &[u8] = b"manifest";

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
    /// Transforms that keep keyed state here, by table: their sizes go to metrics.
    used: Arc<Mutex<Vec<(String, StoreTable)>>>,
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
        let bounds: Arc<Mutex<HashMap<String, SharedBound>>> = Default::default();
        let for_filters = bounds.clone();
        let db = Database::builder(&dir)
            .cache_size(cache_bytes / 2)
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                let bound = lock_vec(&for_filters)
                    .entry(keyspace.to_string())
                    .or_default()
                    .clone();
                Some(Arc::new(ForgetBelow(bound)) as Arc<dyn Factory>)
            }))
            .open()
            .map_err(|e| fail(&dir, "cannot open", e))?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(|e| fail(&dir, "cannot open", e))?;
        Ok(Self {
            db,
            meta,
            dir,
            tables: Default::default(),
            bounds,
            memory_budget: usize::try_from(cache_bytes / 2).unwrap_or(usize::MAX),
            used: Default::default(),
        })
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
    pub fn table(&self, name: &str) -> Result<(StoreTable, Freezer), PipelineError> {
        // Keyspace names are limited to 255 bytes; component names are short.
        let ks_name = format!("t.{name}");
        let ks = self
            .db
            .keyspace(&ks_name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
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
            ks: ks.clone(),
            overlay: overlay.clone(),
            completed_bound,
        });
        Ok((
            StoreTable {
                ks,
                overlay: overlay.clone(),
                memory_budget: self.memory_budget,
                reported_memory: Default::default(),
            },
            Freezer(overlay),
        ))
    }

    /// Marks the table of transform `name` as in use (it took its keyed state).
    pub fn in_use(&self, name: &str, table: &StoreTable) {
        lock_vec(&self.used).push((name.to_string(), table.handle()));
    }

    /// The transform declined keyed state: no metrics for its (empty) table.
    pub fn not_in_use(&self, name: &str) {
        lock_vec(&self.used).retain(|(n, _)| n != name);
    }

    /// The size of every table in use, by transform.
    pub fn sizes(&self) -> Vec<TableSize> {
        lock_vec(&self.used)
            .iter()
            .map(|(name, t)| {
                let pending = {
                    let o = lock(&t.overlay);
                    delta_bytes(&o.dirty) + o.frozen.values().map(|d| delta_bytes(d)).sum::<usize>()
                };
                TableSize {
                    transform: name.clone(),
                    keys: t.ks.approximate_len() as u64,
                    disk_bytes: t.ks.disk_space(),
                    memory_bytes: (pending
                        + t.reported_memory.load(std::sync::atomic::Ordering::Relaxed))
                        as u64,
                }
            })
            .collect()
    }

    /// Records checkpoint `manifest.id` as complete, with every table's changes of its
    /// epoch, in one atomic synced batch.
    pub fn complete(&self, manifest: &Manifest) -> Result<u64, PipelineError> {
        let id = manifest.id;
        let tables = lock_vec(&self.tables).clone();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        let mut bytes = 0u64;
        let mut new_bounds = Vec::new();
        for t in &tables {
            let (delta, bound) = {
                let o = lock(&t.overlay);
                (
                    o.frozen.get(&id).cloned(),
                    o.frozen_bounds.get(&id).cloned(),
                )
            };
            for (k, v) in delta.iter().flat_map(|d| d.iter()) {
                bytes += (k.len() + v.as_ref().map_or(0, Vec::len)) as u64;
                match v {
                    Some(v) => batch.insert(&t.ks, k.as_slice(), v.as_slice()),
                    None => batch.remove(&t.ks, k.as_slice()),
                }
            }
            if let Some(bound) = bound {
                if *t.completed_bound.read().unwrap_or_else(|p| p.into_inner()) != bound {
                    batch.insert(&self.meta, bound_key(&t.name), bound.as_slice());
                    new_bounds.push((t.completed_bound.clone(), bound));
                }
            }
        }
        let m = serde_json::to_vec(manifest)
            .map_err(|e| self.err("cannot encode a manifest for", e))?;
        bytes += m.len() as u64;
        batch.insert(&self.meta, MANIFEST, m);
        batch.commit().map_err(|e| self.err("cannot write", e))?;
        // Only now may readers stop seeing the delta in memory: the store has it. And
        // only now may compactions drop what the bound forgets.
        for t in &tables {
            let mut o = lock(&t.overlay);
            o.frozen.remove(&id);
            o.frozen_bounds.remove(&id);
        }
        for (shared, bound) in new_bounds {
            *shared.write().unwrap_or_else(|p| p.into_inner()) = bound;
        }
        Ok(bytes)
    }

    /// Forgets every checkpoint and all keyed state (offset reset; the pipeline is
    /// stopped).
    pub fn remove(pipeline_dir: &Path) -> Result<(), PipelineError> {
        let dir = pipeline_dir.join("state");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(&dir, "cannot remove", e)),
        }
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

/// Freezes a table's changes at a barrier, as the delta of that checkpoint.
#[derive(Debug, Clone)]
pub struct Freezer(SharedOverlay);

impl Freezer {
    pub fn freeze(&self, id: u64) {
        let mut o = lock(&self.0);
        let dirty = std::mem::take(&mut o.dirty);
        o.frozen.insert(id, Arc::new(dirty));
        let bound = o.bound.clone();
        o.frozen_bounds.insert(id, bound);
    }
}

impl StoreTable {
    /// Another handle on the same table (for metrics).
    fn handle(&self) -> StoreTable {
        StoreTable {
            ks: self.ks.clone(),
            overlay: self.overlay.clone(),
            memory_budget: self.memory_budget,
            reported_memory: self.reported_memory.clone(),
        }
    }
}

/// A transform's keyed state, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub transform: String,
    /// Approximate: the store counts keys per table file.
    pub keys: u64,
    pub disk_bytes: u64,
    /// What the transform keeps decoded, plus changes not yet in the store.
    pub memory_bytes: u64,
}

/// A transform's view of its table: its changes over the store.
pub struct StoreTable {
    ks: Keyspace,
    overlay: SharedOverlay,
    memory_budget: usize,
    reported_memory: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreTable")
    }
}

fn read_error(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!("state store read failed: {e}"))
}

impl KeyedState for StoreTable {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConnectorError> {
        {
            let o = lock(&self.overlay);
            if key < o.bound.as_slice() {
                return Ok(None);
            }
            if let Some(v) = o.dirty.get(key) {
                return Ok(v.clone());
            }
            for d in o.frozen.values().rev() {
                if let Some(v) = d.get(key) {
                    return Ok(v.clone());
                }
            }
        }
        // A delta dropped meanwhile is in the store already.
        self.ks
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(read_error)
    }

    fn memory_budget(&self) -> usize {
        self.memory_budget
    }

    fn report_memory(&self, bytes: usize) {
        self.reported_memory
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        lock(&self.overlay)
            .dirty
            .insert(key.to_vec(), Some(value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        lock(&self.overlay).dirty.insert(key.to_vec(), None);
    }

    fn forget_below(&mut self, bound: &[u8]) {
        let mut o = lock(&self.overlay);
        if bound > o.bound.as_slice() {
            o.bound = bound.to_vec();
            o.dirty = o.dirty.split_off(bound);
        }
    }

    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let o = lock(&self.overlay);
        let from = from.max(o.bound.as_slice());
        if from >= to {
            return Ok(Vec::new());
        }
        let bounds = (Bound::Included(from), Bound::Excluded(to));
        // The overlay's layers, newest first: the dirty map, then the frozen deltas.
        let mut layers: Vec<_> = std::iter::once(&o.dirty)
            .chain(o.frozen.values().rev().map(|d| &**d))
            .map(|d| d.range::<[u8], _>(bounds).peekable())
            .collect();
        let mut stored = self.ks.range(from..to);
        let mut next_stored = || -> Result<Option<Entry>, ConnectorError> {
            match stored.next() {
                None => Ok(None),
                Some(item) => {
                    let (k, v) = item.into_inner().map_err(read_error)?;
                    Ok(Some((k.to_vec(), v.to_vec())))
                }
            }
        };
        let mut store_head = next_stored()?;
        let mut out = Vec::new();
        // A k-way merge in key order; per key the newest layer wins, and a deletion
        // hides the key. Costs what it returns plus the deletions it skips.
        while out.len() < limit {
            let mut min: Option<&[u8]> = store_head.as_ref().map(|(k, _)| k.as_slice());
            for layer in &mut layers {
                if let Some((k, _)) = layer.peek() {
                    if min.is_none_or(|m| k.as_slice() < m) {
                        min = Some(k.as_slice());
                    }
                }
            }
            let Some(min) = min.map(<[u8]>::to_vec) else {
                break;
            };
            let mut value: Option<Option<Vec<u8>>> = None;
            for layer in &mut layers {
                if layer.peek().is_some_and(|(k, _)| **k == min) {
                    if let Some((_, v)) = layer.next() {
                        value.get_or_insert_with(|| v.clone());
                    }
                }
            }
            if store_head.as_ref().is_some_and(|(k, _)| *k == min) {
                if let Some((_, v)) = store_head.take() {
                    value.get_or_insert(Some(v));
                }
                store_head = next_stored()?;
            }
            if let Some(Some(v)) = value {
                out.push((min, v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifest(id: u64) -> Manifest {
        Manifest {
            id,
            state: PipelineState::default(),
        }
    }

    #[test]
    fn changes_reach_the_store_only_with_their_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path(), 64 << 20).unwrap();
            assert_eq!(store.latest().unwrap(), None);
            let (mut t, freezer) = store.table("dedup").unwrap();
            t.put(b"a", b"1");
            t.put(b"b", b"2");
            freezer.freeze(1);
            t.put(b"c", b"3"); // epoch 2: never completed
            t.delete(b"a");
            assert_eq!(t.get(b"a").unwrap(), None);
            assert_eq!(t.get(b"b").unwrap(), Some(b"2".to_vec()));
            store.complete(&manifest(1)).unwrap();
            assert_eq!(
                t.get(b"b").unwrap(),
                Some(b"2".to_vec()),
                "read from the store now"
            );
            assert_eq!(
                t.range(b"a", b"z", 10).unwrap(),
                [
                    (b"b".to_vec(), b"2".to_vec()),
                    (b"c".to_vec(), b"3".to_vec())
                ]
            );
        }
        // Reopened as after a crash: checkpoint 1, without epoch 2's changes.
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(store.latest().unwrap(), Some(manifest(1)));
        let (t, _) = store.table("dedup").unwrap();
        assert_eq!(t.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(t.get(b"c").unwrap(), None);
        assert_eq!(
            t.range(b"a", b"c", 1).unwrap(),
            [(b"a".to_vec(), b"1".to_vec())]
        );
    }

    #[test]
    fn range_merges_the_overlay_with_the_store_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("w").unwrap();
        let mut model = connectd_sdk::state::MemoryState::default();
        // Three epochs of random puts and deletes; the first two complete.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8 % 40
        };
        for epoch in 1..=3u64 {
            for _ in 0..200 {
                let k = [b'k', next()];
                if next() % 4 == 0 {
                    t.delete(&k);
                    model.delete(&k);
                } else {
                    let v = [next()];
                    t.put(&k, &v);
                    model.put(&k, &v);
                }
            }
            freezer.freeze(epoch);
            if epoch < 3 {
                store.complete(&manifest(epoch)).unwrap();
            }
            for limit in [1, 5, 100] {
                assert_eq!(
                    t.range(b"k\x05", b"k\x20", limit).unwrap(),
                    model.range(b"k\x05", b"k\x20", limit).unwrap(),
                    "epoch {epoch}, limit {limit}"
                );
            }
        }
    }

    #[test]
    fn forgotten_keys_vanish_for_reads_at_once_and_from_disk_after_their_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let keys = |t: &StoreTable| t.range(&[0], &[255], 1000).unwrap().len();
        {
            let store = StateStore::open(dir.path(), 64 << 20).unwrap();
            let (mut t, freezer) = store.table("w").unwrap();
            for i in 0..100u8 {
                t.put(&[i], b"v");
            }
            freezer.freeze(1);
            store.complete(&manifest(1)).unwrap();
            t.forget_below(&[50]);
            assert_eq!(t.get(&[10]).unwrap(), None);
            assert_eq!(t.get(&[60]).unwrap(), Some(b"v".to_vec()));
            assert_eq!(keys(&t), 50);
            freezer.freeze(2); // never completed
        }
        {
            // Back at checkpoint 1: nothing forgotten.
            let store = StateStore::open(dir.path(), 64 << 20).unwrap();
            let (mut t, freezer) = store.table("w").unwrap();
            assert_eq!(t.get(&[10]).unwrap(), Some(b"v".to_vec()));
            t.forget_below(&[50]);
            t.put(&[20], b"too old"); // below the bound: invisible too
            assert_eq!(t.get(&[20]).unwrap(), None);
            freezer.freeze(2);
            store.complete(&manifest(2)).unwrap();
        }
        let store = StateStore::open(dir.path(), 64 << 20).unwrap();
        let (t, _) = store.table("w").unwrap();
        assert_eq!(t.get(&[10]).unwrap(), None);
        assert_eq!(keys(&t), 50);
        // A compaction drops them from disk (no tombstone was written for them).
        t.ks.rotate_memtable_and_wait().unwrap();
        t.ks.major_compact().unwrap();
        let on_disk = t.ks.range::<&[u8], _>(..).count();
        assert_eq!(on_disk, 50);
    }

    #[test]
    fn a_damaged_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path(), 64 << 20).unwrap();
            let (mut t, freezer) = store.table("d").unwrap();
            for i in 0..1000u32 {
                t.put(&i.to_be_bytes(), b"value");
            }
            freezer.freeze(1);
            store.complete(&manifest(1)).unwrap();
        }
        damage(&dir.path().join("state"));
        let opened = StateStore::open(dir.path(), 64 << 20).and_then(|s| {
            s.latest()?;
            let (t, _) = s.table("d")?;
            t.get(&5u32.to_be_bytes())
                .map_err(|e| PipelineError::new("state", e.to_string()))?;
            Ok(())
        });
        let e = opened.unwrap_err().message;
        assert!(e.contains("state") && e.contains("reset"), "{e}");
    }

    /// Overwrites the middle of every file under `dir` with garbage.
    pub fn damage(dir: &Path) {
        for entry in walk(dir) {
            let mut bytes = std::fs::read(&entry).unwrap();
            if bytes.len() > 8 {
                let (mid, len) = (bytes.len() / 2, bytes.len());
                for b in &mut bytes[mid.saturating_sub(4)..(mid + 4).min(len)] {
                    *b ^= 0x5a;
                }
                std::fs::write(&entry, bytes).unwrap();
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
