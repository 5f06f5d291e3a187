//! A transform's table in the state store: its changes of the current epoch, the
//! frozen deltas of checkpoints not yet complete (see `epoch_changes`), then the store.
//!
//! Cheap per key because a million keys go through here per checkpoint interval:
//! - Keys and values up to 20 bytes are stored inline (`fjall::Slice`), so most puts
//!   allocate nothing, and handing a delta to the store's batch copies no bytes.
//! - A Bloom filter of every key the table has held answers "absent" for a new key
//!   without looking at the overlay or the store: the common case for dedup by id or
//!   a window over many keys.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use connectd_sdk::bloom::KeyFilter;
use connectd_sdk::state::{Entries, KeyedState};
use connectd_sdk::CheckpointControl;
use connectd_sdk::ConnectorError;
use fjall::{Keyspace, Slice};

use super::epoch_changes::{Change, EpochChanges, SortedDelta, CHANGE_BYTES};

#[derive(Default)]
pub(super) struct Overlay {
    pub(super) dirty: EpochChanges,
    /// Deltas of checkpoints not yet complete, by checkpoint id.
    pub(super) frozen: BTreeMap<u64, Arc<SortedDelta>>,
    /// Keys below this are forgotten (`KeyedState::forget_below`); reads honour the
    /// newest bound at once.
    pub(super) bound: Vec<u8>,
    /// The bound as of each frozen epoch: written with its checkpoint.
    pub(super) frozen_bounds: BTreeMap<u64, Vec<u8>>,
    /// An early checkpoint was asked for in this epoch (its changes outgrew their share
    /// of the cache).
    pub(super) checkpoint_asked: bool,
    /// A completed delta's buffer, emptied, for the next barrier to sort into.
    pub(super) spare: Vec<(u64, Change)>,
    /// The table's task was handed over (`StateStore::retire_task_table`): its changes
    /// end with the next barrier's delta.
    pub(super) retire: bool,
    /// The checkpoint of its last delta, once frozen: the store drops the table when
    /// that checkpoint completes.
    pub(super) retired_at: Option<u64>,
    /// The key filter was rebuilt in this epoch, from the live keys: a key the epoch
    /// deleted may be absent from it, so a key new to the filter may have a change.
    pub(super) deletions_unfiltered: bool,
}

pub(super) type SharedOverlay = Arc<Mutex<Overlay>>;

pub(super) fn lock(o: &SharedOverlay) -> MutexGuard<'_, Overlay> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// Freezes a table's changes at a barrier, as the delta of that checkpoint.
#[derive(Debug, Clone)]
pub struct Freezer(pub(super) SharedOverlay);

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("dirty", &self.dirty.len())
            .field("frozen", &self.frozen.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Freezer {
    pub fn freeze(&self, id: u64) {
        let mut o = lock(&self.0);
        let bound = o.bound.clone();
        let spare = std::mem::take(&mut o.spare);
        let (delta, next) = std::mem::take(&mut o.dirty).freeze(&bound, spare);
        o.dirty = next;
        o.frozen.insert(id, Arc::new(delta));
        o.frozen_bounds.insert(id, bound);
        o.checkpoint_asked = false;
        o.deletions_unfiltered = false;
        if o.retire && o.retired_at.is_none() {
            o.retired_at = Some(id);
        }
    }

    fn retired(&self) -> bool {
        lock(&self.0).retired_at.is_some()
    }
}

/// The freezers of a transform's tables: its one table, or one per input partition
/// (`state.per_partition`), added as partitions appear.
#[derive(Debug, Clone, Default)]
pub struct Freezers(Arc<Mutex<Vec<Freezer>>>);

impl Freezers {
    pub fn add(&self, freezer: Freezer) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(freezer);
    }

    /// Freezes every table's changes as the delta of checkpoint `id`. A retired table's
    /// last delta is this one: its freezer goes.
    pub fn freeze(&self, id: u64) {
        let mut freezers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for f in freezers.iter() {
            f.freeze(id);
        }
        freezers.retain(|f| !f.retired());
    }
}

/// A table's figures for metrics, shared with its `StoreTable`.
#[derive(Clone)]
pub(super) struct TableGauges {
    pub(super) ks: Keyspace,
    pub(super) overlay: SharedOverlay,
    /// What the transform reports keeping decoded.
    pub(super) decoded: Arc<AtomicUsize>,
    /// The table's Bloom filter.
    pub(super) filter: Arc<AtomicUsize>,
}

impl TableGauges {
    pub(super) fn filter_bytes(&self) -> usize {
        self.filter.load(AtomicOrdering::Relaxed)
    }

    /// Changes not yet in the store (and the buffer the next barrier sorts into) plus
    /// what the transform holds decoded.
    pub(super) fn memory_bytes(&self) -> usize {
        let pending = {
            let o = lock(&self.overlay);
            o.dirty.bytes()
                + o.frozen.values().map(|d| d.bytes()).sum::<usize>()
                + SortedDelta::spare_bytes(&o.spare)
        };
        pending + self.decoded.load(AtomicOrdering::Relaxed)
    }
}

/// The filter is rebuilt from the live keys when it has taken this many keys, or four
/// times the live keys at its last build if more: keys that expire leave it only then.
const FILTER_REBUILD_MIN: usize = 1 << 22;
/// A filter is built for twice its keys and at least this many (1.25 MB): a check
/// reads one bit array per doubling past that, so a filter that had to grow from
/// small sizes would cost several cache misses per key.
const FILTER_FIRST_CAPACITY: usize = 1 << 20;

/// The part of a transform's memory budget an epoch's changes may take before the
/// table asks for a checkpoint.
const DIRTY_SHARE: usize = 2;

/// A transform's view of its table: its changes over the store.
pub struct StoreTable {
    gauges: TableGauges,
    memory_budget: usize,
    /// Where to ask for a checkpoint when an epoch's changes pass `DIRTY_SHARE` of the
    /// budget: what bounds the memory of changes waiting for their checkpoint, as a
    /// write buffer does in RocksDB.
    checkpoints: Option<Arc<dyn CheckpointControl>>,
    /// Every key put since the table was opened or the filter rebuilt, and every key
    /// the store held then.
    filter: Option<KeyFilter>,
    rebuild_at: usize,
}

impl std::fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreTable")
    }
}

fn read_error(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!("state store read failed: {e}"))
}

fn key_hash(key: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

impl StoreTable {
    /// Opens a transform's view of `gauges.ks`: the filter is filled from the keys
    /// the store holds (what a restore costs per key).
    pub(super) fn open(
        gauges: TableGauges,
        memory_budget: usize,
        checkpoints: Option<Arc<dyn CheckpointControl>>,
    ) -> Result<Self, String> {
        let filter = Some(filter_of(&gauges)?);
        let mut table = Self {
            gauges,
            memory_budget,
            checkpoints,
            rebuild_at: 0,
            filter,
        };
        table.rebuild_at =
            (table.filter.as_ref().map_or(0, KeyFilter::len) * 4).max(FILTER_REBUILD_MIN);
        table.publish_memory();
        Ok(table)
    }

    pub(super) fn gauges(&self) -> TableGauges {
        self.gauges.clone()
    }

    fn publish_memory(&self) {
        self.gauges.filter.store(
            self.filter.as_ref().map_or(0, KeyFilter::bytes),
            AtomicOrdering::Relaxed,
        );
    }

    /// Whether the table may hold `key`: false only for a key it never held.
    fn may_hold(&self, key: &[u8]) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.may_contain(key_hash(key)))
    }

    /// Adds `key` to the filter; true when the table never held it, so the epoch has
    /// no change to it either (every key changed with `put` or `delete` is in the
    /// filter, but for the epoch's deletions once it is rebuilt: see
    /// `Overlay::deletions_unfiltered`).
    fn note_key(&mut self, key: &[u8]) -> bool {
        let Some(filter) = &mut self.filter else {
            return false;
        };
        let h = key_hash(key);
        if filter.may_contain(h) {
            return false;
        }
        filter.insert(h);
        true
    }

    /// Rebuilds the filter from the table's keys once it has taken `rebuild_at` keys
    /// (after the change that reached it is in the epoch, so the new filter has it).
    fn rebuild_filter_if_due(&mut self) {
        let Some(filter) = &mut self.filter else {
            return;
        };
        if filter.len() >= self.rebuild_at {
            // On a read error the old filter stays: larger, still correct.
            match filter_of(&self.gauges) {
                Ok(f) => {
                    self.rebuild_at = (f.len() * 4).max(FILTER_REBUILD_MIN);
                    *filter = f;
                    lock(&self.gauges.overlay).deletions_unfiltered = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "state store: cannot rebuild a key filter");
                    self.rebuild_at = filter.len() * 2;
                }
            }
        }
        self.publish_memory();
    }
}

impl StoreTable {
    /// `new_key`: the filter says the table never held `key` (`note_key`).
    fn change(&mut self, key: &[u8], value: Option<Slice>, new_key: bool) {
        let mut o = lock(&self.gauges.overlay);
        if new_key && !o.deletions_unfiltered {
            o.dirty.push_new(key, value);
        } else {
            o.dirty.set(key, value);
        }
        // Counted by entries: measuring each costs more than the estimate saves.
        let full = o.dirty.len() * CHANGE_BYTES > self.memory_budget / DIRTY_SHARE;
        if full && !o.checkpoint_asked {
            if let Some(c) = &self.checkpoints {
                o.checkpoint_asked = true;
                c.request();
            }
        }
    }
}

/// A filter of the table's keys (a deletion in the overlay is not one): the overlay's
/// (read first, so a delta that reaches the store meanwhile is seen in one place or
/// the other), then the store's.
fn filter_of(gauges: &TableGauges) -> Result<KeyFilter, String> {
    let mut hashes: Vec<u64> = {
        let o = lock(&gauges.overlay);
        o.dirty
            .iter()
            .chain(o.frozen.values().flat_map(|d| d.iter()))
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| key_hash(k))
            .collect()
    };
    for item in gauges.ks.iter() {
        hashes.push(key_hash(&item.key().map_err(|e| e.to_string())?));
    }
    let mut filter = KeyFilter::with_capacity((hashes.len() * 2).max(FILTER_FIRST_CAPACITY));
    for h in hashes {
        filter.insert(h);
    }
    Ok(filter)
}

impl KeyedState for StoreTable {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConnectorError> {
        if !self.may_hold(key) {
            return Ok(None);
        }
        {
            let mut guard = lock(&self.gauges.overlay);
            let o = &mut *guard;
            if key < o.bound.as_slice() {
                return Ok(None);
            }
            let newest = std::iter::once(o.dirty.get(key))
                .chain(o.frozen.values().rev().map(|d| d.get(key)))
                .flatten()
                .next();
            if let Some(v) = newest {
                return Ok(v.map(|v| v.to_vec()));
            }
        }
        // A delta dropped meanwhile is in the store already.
        self.gauges
            .ks
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(read_error)
    }

    fn memory_budget(&self) -> usize {
        self.memory_budget
    }

    /// One lock for the whole batch: a lock is an atomic instruction, which waits for
    /// every load before it, so taking it per key made the misses queue up again.
    fn warm(&self, keys: &mut dyn Iterator<Item = &[u8]>) {
        let o = lock(&self.gauges.overlay);
        for key in keys {
            if let Some(f) = &self.filter {
                // A new key is appended unindexed (`put`): the index is not read.
                if !f.may_contain(key_hash(key)) {
                    continue;
                }
            }
            o.dirty.touch(key);
        }
    }

    fn report_memory(&self, bytes: usize) {
        self.gauges.decoded.store(bytes, AtomicOrdering::Relaxed);
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        let new_key = self.note_key(key);
        self.change(key, Some(Slice::from(value)), new_key);
        if new_key {
            self.rebuild_filter_if_due();
        }
    }

    fn delete(&mut self, key: &[u8]) {
        if !self.may_hold(key) {
            return; // never held: nothing to delete
        }
        self.change(key, None, false);
    }

    /// Not in the filter: a dedup's expiry index costs no probe and no filter bits.
    fn put_unique(&mut self, key: &[u8], value: &[u8]) {
        self.change(key, Some(Slice::from(value)), false);
    }

    /// Past the filter, which does not hold the key.
    fn delete_unique(&mut self, key: &[u8]) {
        self.change(key, None, false);
    }

    fn without_key_filter(&mut self) {
        self.filter = None;
        self.publish_memory();
    }

    fn forget_below(&mut self, bound: &[u8]) {
        let mut o = lock(&self.gauges.overlay);
        if bound > o.bound.as_slice() {
            o.bound = bound.to_vec();
            o.dirty.forget_below(bound);
        }
    }

    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let mut guard = lock(&self.gauges.overlay);
        let o = &mut *guard;
        let from = from.max(o.bound.as_slice());
        if from >= to {
            return Ok(Vec::new());
        }
        // The overlay's layers, newest first: the epoch's changes, then the frozen deltas.
        type Layer<'a> = Box<dyn Iterator<Item = (&'a [u8], Option<&'a Slice>)> + 'a>;
        let newest: Layer<'_> = Box::new(o.dirty.range(from, to));
        let mut layers: Vec<_> = std::iter::once(newest)
            .chain(o.frozen.values().rev().map(|d| -> Layer<'_> {
                Box::new(d.range(from, to).map(|(k, v)| (&**k, v.as_ref())))
            }))
            .map(Iterator::peekable)
            .collect();
        let mut stored = self.gauges.ks.range(from..to);
        let mut next_stored = || -> Result<Option<(Slice, Slice)>, ConnectorError> {
            match stored.next() {
                None => Ok(None),
                Some(item) => item.into_inner().map(Some).map_err(read_error),
            }
        };
        let mut store_head = next_stored()?;
        let mut out = Vec::new();
        // A k-way merge in key order; per key the newest layer wins, and a deletion
        // hides the key. Costs what it returns plus the deletions it skips.
        while out.len() < limit {
            let mut min: Option<&[u8]> = store_head.as_ref().map(|(k, _)| &k[..]);
            for layer in &mut layers {
                if let Some(&(k, _)) = layer.peek() {
                    if min.is_none_or(|m| k < m) {
                        min = Some(k);
                    }
                }
            }
            let Some(min) = min.map(<[u8]>::to_vec) else {
                break;
            };
            let mut value: Option<Option<&Slice>> = None;
            for layer in &mut layers {
                if layer.peek().is_some_and(|&(k, _)| k == &min[..]) {
                    if let Some((_, v)) = layer.next() {
                        value.get_or_insert(v);
                    }
                }
            }
            let mut stored_value = None;
            if store_head.as_ref().is_some_and(|(k, _)| k[..] == min[..]) {
                stored_value = store_head.take().map(|(_, v)| v);
                store_head = next_stored()?;
            }
            match value {
                Some(Some(v)) => out.push((min, v.to_vec())),
                Some(None) => {}
                None => {
                    if let Some(v) = stored_value {
                        out.push((min, v.to_vec()));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Completes checkpoint `id` with no state besides the tables'.
    fn complete(store: &super::super::StateStore, id: u64) {
        let manifest = super::super::state_store::Manifest {
            id,
            state: Default::default(),
        };
        store.complete(&manifest).unwrap();
    }

    #[test]
    fn the_key_filter_is_rebuilt_from_the_live_keys_and_answers_for_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        // Past the rebuild threshold (lowered for the test), deleting as we go: the
        // rebuilt filter holds the live keys (in the epoch's changes and the frozen delta)
        // and the store's.
        t.rebuild_at = 40_000;
        let n = 50_000u32;
        for i in 0..n {
            t.put(&i.to_be_bytes(), b"v");
            if i == 1000 {
                freezer.freeze(1);
                complete(&store, 1);
            }
            if i == 2000 {
                freezer.freeze(2);
            }
            if i > 2000 && i % 2 == 0 {
                t.delete(&i.to_be_bytes());
            }
        }
        let kept = t.filter.as_ref().map_or(0, KeyFilter::len);
        assert!(kept < 40_000, "rebuilt: {kept}");
        for i in (0..n).step_by(997) {
            let want = (i <= 2000 || i % 2 == 1).then(|| b"v".to_vec());
            assert_eq!(t.get(&i.to_be_bytes()).unwrap(), want, "key {i}");
        }
        assert_eq!(t.get(b"never").unwrap(), None);
    }

    /// New keys are appended to the epoch unindexed, on the filter's word that the
    /// table never held them. Across a rebuild of the filter in mid-epoch, a key the
    /// epoch deleted is new to the rebuilt filter, and the key whose put triggered the
    /// rebuild must be in it: a second change of a key in a frozen delta would stop
    /// the store's ingestion (keys must ascend), and a key left out would read absent.
    #[test]
    fn keys_put_across_a_filter_rebuild_are_changed_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        // The 20 000th new key triggers the rebuild (no false "maybe" this early).
        let (n, trigger) = (30_000u32, 19_999u32);
        t.rebuild_at = trigger as usize + 1;
        for i in 0..n {
            t.put(&i.to_be_bytes(), b"v1");
            if i % 3 == 0 && i + 1 < n {
                t.delete(&i.to_be_bytes());
            }
        }
        assert!(
            t.filter.as_ref().map_or(0, KeyFilter::len) < n as usize,
            "rebuilt"
        );
        assert_eq!(t.get(&trigger.to_be_bytes()).unwrap(), Some(b"v1".to_vec()));
        for i in (0..n).step_by(3) {
            t.put(&i.to_be_bytes(), b"v2");
        }
        freezer.freeze(1);
        complete(&store, 1);
        for i in 0..n {
            let want: &[u8] = if i % 3 == 0 { b"v2" } else { b"v1" };
            assert_eq!(
                t.get(&i.to_be_bytes()).unwrap().as_deref(),
                Some(want),
                "key {i}"
            );
        }
    }

    #[test]
    fn unique_keys_stay_out_of_the_filter_and_are_read_by_range_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        t.put(b"k1", b"entry");
        for i in 0..3u8 {
            t.put_unique(&[b'x', i], b"k1");
        }
        assert_eq!(t.filter.as_ref().map_or(0, KeyFilter::len), 1, "only k1");
        t.delete_unique(&[b'x', 0]); // in the same epoch
        freezer.freeze(1);
        complete(&store, 1);
        t.delete_unique(&[b'x', 1]); // in the store
        let index: Vec<_> = t
            .range(b"x", b"y", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(index, [vec![b'x', 2]]);
        assert_eq!(t.get(b"k1").unwrap(), Some(b"entry".to_vec()));
    }

    /// A barrier sorts into the buffer of the last completed delta, and the next epoch
    /// keeps the frozen one's entries: fresh buffers each epoch were faulted in anew.
    #[test]
    fn barriers_reuse_the_buffers_of_completed_deltas_and_reads_stay_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        // Epochs past the size a table keeps its buffers for when epochs shrink.
        let key = |epoch: u32, i: u32| (epoch * 100_000 + i).to_be_bytes();
        let mut sorted_into = Vec::new();
        for epoch in 1..=4u32 {
            for i in 0..20_000 {
                t.put(&key(epoch, i), &epoch.to_be_bytes());
            }
            let entries = lock(&freezer.0).dirty.buffer();
            freezer.freeze(u64::from(epoch));
            let o = lock(&freezer.0);
            assert_eq!(o.dirty.buffer(), entries, "epoch {epoch}: entries kept");
            sorted_into.push(o.frozen[&u64::from(epoch)].buffer());
            drop(o);
            complete(&store, u64::from(epoch));
        }
        assert!(
            sorted_into.windows(2).all(|w| w[0] == w[1]),
            "each barrier sorts into the last delta's buffer: {sorted_into:?}"
        );
        // Nothing pending, but the spare buffer is memory the table holds.
        let spare = 20_000 * std::mem::size_of::<(u64, Change)>();
        let memory = t.gauges().memory_bytes();
        assert!(memory >= spare, "memory {memory} counts the spare {spare}");
        // A burst's buffers go once epochs are small: an idle table keeps neither.
        for epoch in 5..=6u64 {
            t.put(&key(epoch as u32, 0), b"v");
            freezer.freeze(epoch);
            complete(&store, epoch);
        }
        let memory = t.gauges().memory_bytes();
        assert!(memory < spare / 4, "after small epochs: {memory} bytes");
        for epoch in 1..=4u32 {
            for i in (0..20_000).step_by(1_999) {
                let got = t.get(&key(epoch, i)).unwrap();
                assert_eq!(got, Some(epoch.to_be_bytes().to_vec()), "{epoch}/{i}");
            }
        }
    }

    #[derive(Debug, Default)]
    struct Asks(std::sync::atomic::AtomicU64);

    impl CheckpointControl for Asks {
        fn request(&self) -> u64 {
            self.0.fetch_add(1, AtomicOrdering::SeqCst)
        }
        fn committed(&self) -> u64 {
            0
        }
    }

    #[test]
    fn an_epoch_whose_changes_outgrow_their_share_of_the_cache_asks_for_a_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB cache: a transform's budget is 512 KiB, an epoch's share 256 KiB.
        let store = super::super::StateStore::open(dir.path(), 1 << 20).unwrap();
        let asks = Arc::new(Asks::default());
        let (mut t, freezer) = store.table("w", Some(asks.clone())).unwrap();
        let entries = (256 << 10) / CHANGE_BYTES;
        let count = || asks.0.load(AtomicOrdering::SeqCst);
        for i in 0..entries as u32 {
            t.put(&i.to_be_bytes(), b"v");
        }
        assert_eq!(count(), 0, "at the share, not past it");
        for i in 0..3 * entries as u32 {
            t.put(&(1u32 << 31 | i).to_be_bytes(), b"v");
        }
        assert_eq!(count(), 1, "once per epoch");
        freezer.freeze(1);
        t.put(b"x", b"v");
        assert_eq!(count(), 1, "a new epoch starts empty");
        for i in 0..2 * entries as u32 {
            t.delete(&i.to_be_bytes());
        }
        assert_eq!(count(), 2, "deletions are changes too");
    }
}
