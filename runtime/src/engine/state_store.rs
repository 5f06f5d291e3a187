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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use connectd_sdk::state::{Entries, KeyedState};
use connectd_sdk::ConnectorError;
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

/// Changes of one epoch: `None` deletes the key.
type Delta = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Debug, Default)]
struct Overlay {
    dirty: Delta,
    /// Deltas of checkpoints not yet complete, by checkpoint id.
    frozen: BTreeMap<u64, Arc<Delta>>,
}

type SharedOverlay = Arc<Mutex<Overlay>>;

fn lock(o: &SharedOverlay) -> MutexGuard<'_, Overlay> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// Block cache of the store: what of the keyed state stays in memory.
const CACHE_BYTES: u64 = 64 << 20;
/// A table's memtable, before it is flushed to disk (fjall's default is 64 MiB): with
/// the cache, what bounds the store's memory.
const MEMTABLE_BYTES: u64 = 8 << 20;
const MANIFEST: &[u8] = b"manifest";

#[derive(Clone)]
pub struct StateStore {
    db: Database,
    meta: Keyspace,
    dir: PathBuf,
    tables: Arc<Mutex<Vec<(Keyspace, SharedOverlay)>>>,
    /// Transforms that keep keyed state here, by table: their sizes go to metrics.
    used: Arc<Mutex<Vec<(String, Keyspace)>>>,
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
    pub fn open(pipeline_dir: &Path) -> Result<Self, PipelineError> {
        let dir = pipeline_dir.join("state");
        let db = Database::builder(&dir)
            .cache_size(CACHE_BYTES)
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
        let ks = self
            .db
            .keyspace(&format!("t.{name}"), || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| self.err("cannot open a table in", e))?;
        let overlay = SharedOverlay::default();
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ks.clone(), overlay.clone()));
        Ok((
            StoreTable {
                ks,
                overlay: overlay.clone(),
            },
            Freezer(overlay),
        ))
    }

    /// Marks the table of transform `name` as in use (it took its keyed state).
    pub fn in_use(&self, name: &str, table: &StoreTable) {
        lock_vec(&self.used).push((name.to_string(), table.keyspace()));
    }

    /// The transform declined keyed state: no metrics for its (empty) table.
    pub fn not_in_use(&self, name: &str) {
        lock_vec(&self.used).retain(|(n, _)| n != name);
    }

    /// (transform, approximate keys, bytes on disk) of every table in use.
    pub fn sizes(&self) -> Vec<(String, u64, u64)> {
        lock_vec(&self.used)
            .iter()
            .map(|(name, ks)| (name.clone(), ks.approximate_len() as u64, ks.disk_space()))
            .collect()
    }

    /// Records checkpoint `manifest.id` as complete, with every table's changes of its
    /// epoch, in one atomic synced batch.
    pub fn complete(&self, manifest: &Manifest) -> Result<u64, PipelineError> {
        let id = manifest.id;
        let tables = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        let mut bytes = 0u64;
        for (ks, overlay) in &tables {
            let delta = lock(overlay).frozen.get(&id).cloned();
            for (k, v) in delta.iter().flat_map(|d| d.iter()) {
                bytes += (k.len() + v.as_ref().map_or(0, Vec::len)) as u64;
                match v {
                    Some(v) => batch.insert(ks, k.as_slice(), v.as_slice()),
                    None => batch.remove(ks, k.as_slice()),
                }
            }
        }
        let m = serde_json::to_vec(manifest)
            .map_err(|e| self.err("cannot encode a manifest for", e))?;
        bytes += m.len() as u64;
        batch.insert(&self.meta, MANIFEST, m);
        batch.commit().map_err(|e| self.err("cannot write", e))?;
        // Only now may readers stop seeing the delta in memory: the store has it.
        for (_, overlay) in &tables {
            lock(overlay).frozen.remove(&id);
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
    }
}

impl StoreTable {
    fn keyspace(&self) -> Keyspace {
        self.ks.clone()
    }
}

/// A transform's view of its table: its changes over the store.
pub struct StoreTable {
    ks: Keyspace,
    overlay: SharedOverlay,
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

    fn put(&mut self, key: &[u8], value: &[u8]) {
        lock(&self.overlay)
            .dirty
            .insert(key.to_vec(), Some(value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        lock(&self.overlay).dirty.insert(key.to_vec(), None);
    }

    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        // The overlay's entries in range, newest change winning.
        let mut changed: Delta = BTreeMap::new();
        {
            let o = lock(&self.overlay);
            for d in o
                .frozen
                .values()
                .map(|d| &**d)
                .chain(std::iter::once(&o.dirty))
            {
                for (k, v) in d.range(from.to_vec()..to.to_vec()) {
                    changed.insert(k.clone(), v.clone());
                }
            }
        }
        let mut out = Vec::new();
        let mut pending = changed.into_iter().peekable();
        let push = |out: &mut Entries, k: Vec<u8>, v: Option<Vec<u8>>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        for item in self.ks.range(from..to) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.into_inner().map_err(read_error)?;
            let k = k.to_vec();
            while pending.peek().is_some_and(|(pk, _)| *pk < k) && out.len() < limit {
                if let Some((pk, pv)) = pending.next() {
                    push(&mut out, pk, pv);
                }
            }
            if out.len() >= limit {
                break;
            }
            match pending.peek() {
                Some((pk, _)) if *pk == k => {
                    if let Some((pk, pv)) = pending.next() {
                        push(&mut out, pk, pv);
                    }
                }
                _ => out.push((k, v.to_vec())),
            }
        }
        for (k, v) in pending {
            if out.len() >= limit {
                break;
            }
            push(&mut out, k, v);
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
            let store = StateStore::open(dir.path()).unwrap();
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
        let store = StateStore::open(dir.path()).unwrap();
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
        let store = StateStore::open(dir.path()).unwrap();
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
    fn a_damaged_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            let (mut t, freezer) = store.table("d").unwrap();
            for i in 0..1000u32 {
                t.put(&i.to_be_bytes(), b"value");
            }
            freezer.freeze(1);
            store.complete(&manifest(1)).unwrap();
        }
        damage(&dir.path().join("state"));
        let opened = StateStore::open(dir.path()).and_then(|s| {
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
