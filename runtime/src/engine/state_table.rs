//! A transform's table in the state store: its changes of the current epoch (the dirty
//! map), the frozen deltas of checkpoints not yet complete, then the store.
//!
//! Cheap per key because a million keys go through here per checkpoint interval:
//! - Keys and values up to 20 bytes are stored inline (`fjall::Slice`), so most puts
//!   allocate nothing, and handing a delta to the store's batch copies no bytes.
//! - Overlay keys compare 8 bytes at a time as integers, without a call to `memcmp`.
//! - A Bloom filter of every key the table has held answers "absent" for a new key
//!   without looking at the overlay or the store: the common case for dedup by id or
//!   a window over many keys.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use connectd_sdk::bloom::KeyFilter;
use connectd_sdk::state::{Entries, KeyedState};
use connectd_sdk::CheckpointControl;
use connectd_sdk::ConnectorError;
use fjall::{Keyspace, Slice};

/// A key of the overlay, ordered as its bytes.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct OverlayKey(pub(super) Slice);

impl OverlayKey {
    fn new(bytes: &[u8]) -> Self {
        Self(Slice::from(bytes))
    }
}

/// Up to 8 bytes from `at`, zero-padded, as a big-endian integer.
fn word(bytes: &[u8], at: usize, len: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..len].copy_from_slice(&bytes[at..at + len]);
    u64::from_be_bytes(buf)
}

/// Byte order, 8 bytes at a time: keys share long prefixes (a window's end and start),
/// and a call to `memcmp` per comparison cost more than the comparison.
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= common {
        let whole = |s: &[u8]| <[u8; 8]>::try_from(&s[at..at + 8]).map_or(0, u64::from_be_bytes);
        let (x, y) = (whole(a), whole(b));
        if x != y {
            return x.cmp(&y);
        }
        at += 8;
    }
    let rest = common - at;
    word(a, at, rest)
        .cmp(&word(b, at, rest))
        .then(a.len().cmp(&b.len()))
}

impl Ord for OverlayKey {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_bytes(&self.0, &other.0)
    }
}

impl PartialOrd for OverlayKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Changes of one epoch: `None` deletes the key.
pub(super) type Delta = BTreeMap<OverlayKey, Option<Slice>>;

#[derive(Default)]
pub(super) struct Overlay {
    pub(super) dirty: Delta,
    /// Deltas of checkpoints not yet complete, by checkpoint id.
    pub(super) frozen: BTreeMap<u64, Arc<Delta>>,
    /// Keys below this are forgotten (`KeyedState::forget_below`); reads honour the
    /// newest bound at once.
    pub(super) bound: Vec<u8>,
    /// The bound as of each frozen epoch: written with its checkpoint.
    pub(super) frozen_bounds: BTreeMap<u64, Vec<u8>>,
    /// An early checkpoint was asked for in this epoch (its changes outgrew their share
    /// of the cache).
    pub(super) checkpoint_asked: bool,
}

pub(super) type SharedOverlay = Arc<Mutex<Overlay>>;

pub(super) fn lock(o: &SharedOverlay) -> MutexGuard<'_, Overlay> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// About what an entry of a delta takes in its map node, keys and values inline.
const ENTRY_BYTES: usize = 64;

/// Approximate memory of changes held until their checkpoint completes.
pub(super) fn delta_bytes(d: &Delta) -> usize {
    // Bytes past the inline 20, plus the map node.
    let spilled = |len: usize| if len > 20 { len } else { 0 };
    d.iter()
        .map(|(k, v)| spilled(k.0.len()) + v.as_ref().map_or(0, |v| spilled(v.len())) + ENTRY_BYTES)
        .sum()
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
        let dirty = std::mem::take(&mut o.dirty);
        o.frozen.insert(id, Arc::new(dirty));
        let bound = o.bound.clone();
        o.frozen_bounds.insert(id, bound);
        o.checkpoint_asked = false;
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
    /// Changes not yet in the store plus what the transform holds decoded.
    pub(super) fn filter_bytes(&self) -> usize {
        self.filter.load(AtomicOrdering::Relaxed)
    }

    pub(super) fn memory_bytes(&self) -> usize {
        let pending = {
            let o = lock(&self.overlay);
            delta_bytes(&o.dirty) + o.frozen.values().map(|d| delta_bytes(d)).sum::<usize>()
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

    fn note_key(&mut self, key: &[u8]) {
        let Some(filter) = &mut self.filter else {
            return;
        };
        let h = key_hash(key);
        if filter.may_contain(h) {
            return;
        }
        filter.insert(h);
        if filter.len() >= self.rebuild_at {
            // On a read error the old filter stays: larger, still correct.
            match filter_of(&self.gauges) {
                Ok(f) => {
                    self.rebuild_at = (f.len() * 4).max(FILTER_REBUILD_MIN);
                    *filter = f;
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
    fn change(&mut self, key: &[u8], value: Option<Slice>) {
        let mut o = lock(&self.gauges.overlay);
        o.dirty.insert(OverlayKey::new(key), value);
        // Counted by entries: measuring each costs more than the estimate saves.
        let full = o.dirty.len() * ENTRY_BYTES > self.memory_budget / DIRTY_SHARE;
        if full && !o.checkpoint_asked {
            if let Some(c) = &self.checkpoints {
                o.checkpoint_asked = true;
                c.request();
            }
        }
    }
}

/// A filter of the table's keys (a deletion in the overlay is not one): the overlay's (read first, so a delta that reaches
/// the store meanwhile is seen in one place or the other), then the store's.
fn filter_of(gauges: &TableGauges) -> Result<KeyFilter, String> {
    let mut hashes: Vec<u64> = {
        let o = lock(&gauges.overlay);
        std::iter::once(&o.dirty)
            .chain(o.frozen.values().map(|d| &**d))
            .flat_map(|d| d.iter().filter(|(_, v)| v.is_some()))
            .map(|(k, _)| key_hash(&k.0))
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
        let wanted = OverlayKey::new(key);
        {
            let o = lock(&self.gauges.overlay);
            if key < o.bound.as_slice() {
                return Ok(None);
            }
            if let Some(v) = o.dirty.get(&wanted) {
                return Ok(v.as_ref().map(|v| v.to_vec()));
            }
            for d in o.frozen.values().rev() {
                if let Some(v) = d.get(&wanted) {
                    return Ok(v.as_ref().map(|v| v.to_vec()));
                }
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

    fn report_memory(&self, bytes: usize) {
        self.gauges.decoded.store(bytes, AtomicOrdering::Relaxed);
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.note_key(key);
        self.change(key, Some(Slice::from(value)));
    }

    fn delete(&mut self, key: &[u8]) {
        if !self.may_hold(key) {
            return; // never held: nothing to delete
        }
        self.change(key, None);
    }

    fn without_key_filter(&mut self) {
        self.filter = None;
        self.publish_memory();
    }

    fn forget_below(&mut self, bound: &[u8]) {
        let mut o = lock(&self.gauges.overlay);
        if bound > o.bound.as_slice() {
            o.bound = bound.to_vec();
            o.dirty = o.dirty.split_off(&OverlayKey::new(bound));
        }
    }

    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        let o = lock(&self.gauges.overlay);
        let from = from.max(o.bound.as_slice());
        if from >= to {
            return Ok(Vec::new());
        }
        let bounds = (
            Bound::Included(OverlayKey::new(from)),
            Bound::Excluded(OverlayKey::new(to)),
        );
        // The overlay's layers, newest first: the dirty map, then the frozen deltas.
        let mut layers: Vec<_> = std::iter::once(&o.dirty)
            .chain(o.frozen.values().rev().map(|d| &**d))
            .map(|d| d.range(bounds.clone()).peekable())
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
                if let Some((k, _)) = layer.peek() {
                    if min.is_none_or(|m| &k.0[..] < m) {
                        min = Some(&k.0[..]);
                    }
                }
            }
            let Some(min) = min.map(<[u8]>::to_vec) else {
                break;
            };
            let mut value: Option<Option<&Slice>> = None;
            for layer in &mut layers {
                if layer.peek().is_some_and(|(k, _)| k.0[..] == min[..]) {
                    if let Some((_, v)) = layer.next() {
                        value.get_or_insert(v.as_ref());
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

    #[test]
    fn overlay_keys_order_as_their_bytes() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0\0\0\0\0\0\0".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefghi".to_vec(),
            b"abcdefgi".to_vec(),
            b"abcdefghijklmnopqrstuvwxyz".to_vec(),
            b"abcdefghijklmnopqrstuvwxy".to_vec(),
            b"abcdefghijklmnopqrstuvwxz".to_vec(),
            b"abcdefghijklmnop".to_vec(),
            b"abcdefghijklmnop\0".to_vec(),
            vec![255; 30],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    OverlayKey::new(a).cmp(&OverlayKey::new(b)),
                    a.cmp(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn the_key_filter_is_rebuilt_from_the_live_keys_and_answers_for_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::StateStore::open(dir.path(), 64 << 20).unwrap();
        let (mut t, freezer) = store.table("dedup", None).unwrap();
        // Past the rebuild threshold (lowered for the test), deleting as we go: the
        // rebuilt filter holds the live keys (in the dirty map and the frozen delta)
        // and the store's.
        t.rebuild_at = 40_000;
        let n = 50_000u32;
        for i in 0..n {
            t.put(&i.to_be_bytes(), b"v");
            if i == 1000 {
                freezer.freeze(1);
                store
                    .complete(&super::super::state_store::Manifest {
                        id: 1,
                        state: Default::default(),
                    })
                    .unwrap();
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
        let entries = (256 << 10) / ENTRY_BYTES;
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
