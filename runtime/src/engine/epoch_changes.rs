//! A state table's changes not yet in the store: those of the epoch in progress
//! (`EpochChanges`) and, frozen at a barrier, those of a checkpoint not yet complete
//! (`SortedDelta`).
//!
//! A million keys go through here per checkpoint interval, mostly point writes and
//! reads and few range reads (a window closing, dedup retention). An ordered map paid
//! a search down its tree and a shift inside a node for every write (a quarter of a
//! 1 M-key window's CPU); here a write is one hash probe and an append, and key order
//! is built only when it is asked for:
//! - a range read sorts the keys written since the previous one into a run, and runs
//!   merge as an LSM tree's levels do (each at least twice the next), so a key is moved
//!   O(log n) times however reads and writes interleave;
//! - a barrier sorts the epoch once into an immutable sorted delta: binary
//!   search for point reads, a slice for range reads, and the store takes it in order.
//!
//! Keys below the table's bound (`KeyedState::forget_below`) are never read (readers
//! check the bound first); they are dropped when the bound rises, and a change put
//! below it later is dropped at the barrier.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use fjall::Slice;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// Up to 8 bytes from `at`, zero-padded, as a big-endian integer.
fn word(bytes: &[u8], at: usize, len: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..len].copy_from_slice(&bytes[at..at + len]);
    u64::from_be_bytes(buf)
}

/// Byte order, 8 bytes at a time: keys share long prefixes (a window's end and start),
/// and a call to `memcmp` per comparison cost more than the comparison.
pub(super) fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
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

/// A key and its new value; `None` deletes the key.
pub(super) type Change = (Slice, Option<Slice>);

/// About what a change takes: its entry (keys and values up to 20 bytes inline), the
/// slack of the growing vector, its slot in the index and in a run.
pub(super) const CHANGE_BYTES: usize = 76;

/// Bytes past the 20 a key or value holds inline.
fn spilled(len: usize) -> usize {
    if len > 20 {
        len
    } else {
        0
    }
}

fn change_bytes((k, v): &Change) -> usize {
    spilled(k.len()) + v.as_ref().map_or(0, |v| spilled(v.len())) + CHANGE_BYTES
}

/// A key's place in the index: its position in `entries` and 32 bits of its hash, so
/// that growing the index rehashes from the slots alone. Recomputing each key's hash
/// from `entries` read a million scattered keys per doubling (6 % of a 1 M-key
/// window's CPU).
#[derive(Clone, Copy)]
struct Slot {
    at: u32,
    hash: u32,
}

/// 32 bits of a key's FxHash (its upper half: the lower bits are weak).
fn hash_of(key: &[u8]) -> u32 {
    (FxBuildHasher.hash_one(key) >> 32) as u32
}

/// The index's hash of a slot: hashbrown takes buckets from the low bits and its
/// control tag from the top seven, so the 32 bits go to both ends.
fn table_hash(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

/// How many key hashes of the unindexed tail lookups may compare, in all, per entry of
/// the tail, before the tail is indexed instead. Comparing one (16 at a time) costs
/// about a hundredth of indexing it (a cache miss), so the reads and writes a filter's
/// false "maybe" makes (a few hundred per million new keys) mostly never build the
/// index, and lookups of keys in the tail can cost at most about twice the index.
const TAIL_SCANS_PER_ENTRY: usize = 256;

/// The changes of the epoch in progress.
#[derive(Default)]
pub(super) struct EpochChanges {
    /// One entry per key, in the order of its first change.
    entries: Vec<Change>,
    /// Positions in `entries`, by key, of the entries before `indexed`.
    index: HashTable<Slot>,
    /// Entries from here on were appended as new keys (`push_new`) and are indexed
    /// only when a write or a read needs them: a dedup by event id mostly writes keys
    /// its filter says are new and reads none of them back before the barrier sorts
    /// them, so its index was a cache miss per new key for nothing.
    indexed: usize,
    /// The hashes of the entries from `indexed` on, in order: a point read compares
    /// them instead of indexing the tail.
    tail_hashes: Vec<u32>,
    /// Hashes compared since the tail was last indexed.
    tail_scanned: usize,
    /// Sorted runs of positions, each at least twice as long as the next: every entry
    /// before `sorted` is in exactly one.
    runs: Vec<Vec<u32>>,
    sorted: usize,
}

impl EpochChanges {
    /// Room for `n` changes, so a busy table does not rehash and copy its index and
    /// entries as they grow.
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            ..Self::default()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn set(&mut self, key: &[u8], value: Option<Slice>) {
        let hash = hash_of(key);
        if let Some(at) = self.position(key, hash) {
            self.entries[at].1 = value;
            return;
        }
        if !self.tail_hashes.is_empty() {
            // The tail stays the entries from `indexed` on.
            self.entries.push((Slice::from(key), value));
            self.tail_hashes.push(hash);
            return;
        }
        // Positions fit in u32: an epoch is cut by its memory share long before.
        let at = self.entries.len() as u32;
        self.entries.push((Slice::from(key), value));
        self.index
            .insert_unique(table_hash(hash), Slot { at, hash }, |s| table_hash(s.hash));
        self.indexed = self.entries.len();
    }

    /// Where `key`'s entry is: the index, then the unindexed tail, which is indexed
    /// first once point reads have compared `TAIL_SCANS_PER_ENTRY` hashes per entry.
    fn position(&mut self, key: &[u8], hash: u32) -> Option<usize> {
        let tail = self.tail_hashes.len();
        if tail > 0 {
            self.tail_scanned += tail;
            if self.tail_scanned > tail * TAIL_SCANS_PER_ENTRY {
                self.index_tail();
            }
        }
        let entries = &self.entries;
        let same = |s: &Slot| s.hash == hash && *entries[s.at as usize].0 == *key;
        match self.index.find(table_hash(hash), same) {
            Some(s) => Some(s.at as usize),
            None => self.tail_position(key, hash),
        }
    }

    /// Appends a change to a key that has none in this epoch (the caller's filter
    /// says so), without indexing it.
    pub(super) fn push_new(&mut self, key: &[u8], value: Option<Slice>) {
        self.entries.push((Slice::from(key), value));
        self.tail_hashes.push(hash_of(key));
    }

    /// Indexes the entries `push_new` appended.
    fn index_tail(&mut self) {
        for (at, &hash) in (self.indexed..).zip(&self.tail_hashes) {
            // Positions fit in u32: an epoch is cut by its memory share long before.
            let slot = Slot {
                at: at as u32,
                hash,
            };
            self.index
                .insert_unique(table_hash(hash), slot, |s| table_hash(s.hash));
        }
        self.tail_hashes.clear();
        self.tail_scanned = 0;
        self.indexed = self.entries.len();
    }

    /// The position of `key`'s entry in the unindexed tail, if it has one.
    fn tail_position(&self, key: &[u8], hash: u32) -> Option<usize> {
        // Chunks compared whole (no early exit inside one), which the compiler
        // vectorizes; keys only where a hash matches.
        const CHUNK: usize = 16;
        let chunks = self.tail_hashes.chunks(CHUNK).enumerate();
        chunks
            .filter(|(_, c)| c.iter().fold(false, |any, &h| any | (h == hash)))
            .flat_map(|(i, c)| {
                let first = self.indexed + i * CHUNK;
                (first..)
                    .zip(c)
                    .filter(|&(_, &h)| h == hash)
                    .map(|(at, _)| at)
            })
            .find(|&at| *self.entries[at].0 == *key)
    }

    /// Where the entries are (tests check they are reused).
    #[cfg(test)]
    pub(super) fn buffer(&self) -> usize {
        self.entries.as_ptr() as usize
    }

    /// Loads the index's slots for `key` (see `KeyedState::warm`): a probe that matches
    /// nothing reads the same control bytes `set` and `get` will.
    pub(super) fn touch(&self, key: &[u8]) {
        std::hint::black_box(self.index.find(table_hash(hash_of(key)), |_| false));
    }

    /// The change to `key` in this epoch, if any: `Some(None)` is a deletion.
    pub(super) fn get(&mut self, key: &[u8]) -> Option<Option<&Slice>> {
        let at = self.position(key, hash_of(key))?;
        Some(self.entries[at].1.as_ref())
    }

    /// Every change, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Change> {
        self.entries.iter()
    }

    pub(super) fn bytes(&self) -> usize {
        self.entries.iter().map(change_bytes).sum()
    }

    /// Drops the changes to keys below `bound`: a closed window's keys are garbage at
    /// once, and memory must say so (a scan of the epoch, as a window closes).
    pub(super) fn forget_below(&mut self, bound: &[u8]) {
        // Rare (a window closing), so the positions are remapped in the index alone.
        self.index_tail();
        let below = |k: &Slice| cmp_bytes(k, bound).is_lt();
        // Old position -> new one (u32::MAX: dropped).
        let mut remap = Vec::with_capacity(self.entries.len());
        let (mut kept, mut sorted) = (0u32, 0);
        for (at, (k, _)) in self.entries.iter().enumerate() {
            if below(k) {
                remap.push(u32::MAX);
            } else {
                remap.push(kept);
                kept += 1;
                sorted += usize::from(at < self.sorted);
            }
        }
        if kept as usize == self.entries.len() {
            return;
        }
        let mut at = 0;
        self.entries.retain(|_| {
            at += 1;
            remap[at - 1] != u32::MAX
        });
        self.sorted = sorted;
        self.indexed = self.entries.len();
        for run in &mut self.runs {
            run.retain_mut(|at| {
                *at = remap[*at as usize];
                *at != u32::MAX
            });
        }
        self.runs.retain(|run| !run.is_empty());
        self.index.retain(|s| {
            s.at = remap[s.at as usize];
            s.at != u32::MAX
        });
    }

    /// Sorts the entries changed since the previous call into a run and merges runs
    /// until each is at least twice as long as the next.
    fn sort(&mut self) {
        let entries = &self.entries;
        let by_key = |a: &u32, b: &u32| cmp_bytes(&entries[*a as usize].0, &entries[*b as usize].0);
        if self.sorted < entries.len() {
            self.runs
                .push(sorted_positions(&entries[self.sorted..], self.sorted));
            self.sorted = entries.len();
        }
        while let [.., older, newer] = &self.runs[..] {
            if newer.len() * 2 < older.len() {
                break;
            }
            let (Some(newer), Some(older)) = (self.runs.pop(), self.runs.pop()) else {
                break;
            };
            self.runs.push(merge(older, newer, by_key));
        }
    }

    /// The changes to keys in `from..to`, in key order.
    pub(super) fn range(&mut self, from: &[u8], to: &[u8]) -> RunsRange<'_> {
        self.sort();
        let entries = &self.entries;
        let key = |at: &u32| &*entries[*at as usize].0;
        let heads = self
            .runs
            .iter()
            .map(|run| {
                let lo = run.partition_point(|at| cmp_bytes(key(at), from).is_lt());
                let hi = run.partition_point(|at| cmp_bytes(key(at), to).is_lt());
                &run[lo..hi.max(lo)]
            })
            .filter(|head| !head.is_empty())
            .collect();
        RunsRange { entries, heads }
    }

    /// The epoch's changes to keys from `bound` on, sorted once into `spare` (a
    /// completed delta's buffer, see `SortedDelta::into_spare`), and the next epoch,
    /// which keeps this one's buffers. Buffers reused stay faulted in: fresh ones each
    /// epoch cost a page fault per 4 KiB and were returned to the system after the
    /// checkpoint (faulting them in again was 6 % of a 1 M-key dedup's CPU).
    pub(super) fn freeze(
        self,
        bound: &[u8],
        mut spare: Vec<(u64, Change)>,
    ) -> (SortedDelta, EpochChanges) {
        let Self {
            mut entries,
            mut index,
            mut tail_hashes,
            ..
        } = self;
        entries.retain(|(k, _)| cmp_bytes(k, bound).is_ge());
        // Each change carries its word through the sort, so entries move in runs (a
        // permutation by sorted positions afterwards cost a cache miss per change).
        let shared = shared_prefix(&entries);
        spare.clear();
        spare.extend(entries.drain(..).map(|c| (word_past(&c.0, shared), c)));
        spare.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| cmp_bytes(&a.1 .0[shared..], &b.1 .0[shared..]))
        });
        // One change per key (`push_new` trusts its caller's filter for that): the
        // store's ingestion of a delta requires ascending keys.
        debug_assert!(
            spare
                .windows(2)
                .all(|w| cmp_bytes(&w[0].1 .0, &w[1].1 .0).is_lt()),
            "an epoch holds two changes of one key"
        );
        let n = spare.len();
        // A burst's buffers go once an epoch fills a quarter of them: the sorted one
        // too, or an idle table would hold it as its spare for good.
        let oversized = |capacity: usize| capacity > 4 * n.max(1 << 12);
        if oversized(spare.capacity()) {
            spare.shrink_to(n);
        }
        if oversized(entries.capacity()) {
            return (SortedDelta(spare), Self::with_capacity(n));
        }
        index.clear();
        tail_hashes.clear();
        let next = EpochChanges {
            entries,
            index,
            tail_hashes,
            ..Self::default()
        };
        (SortedDelta(spare), next)
    }
}

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many leading bytes every key of `entries` shares.
fn shared_prefix(entries: &[Change]) -> usize {
    let Some((first, _)) = entries.first() else {
        return 0;
    };
    entries
        .iter()
        .fold(first.len(), |n, (k, _)| common_prefix(&first[..n], k))
}

/// Up to 8 bytes of `key` past its first `shared`, as a big-endian integer: keys
/// whose words differ are in the words' order.
fn word_past(key: &[u8], shared: usize) -> u64 {
    word(key, shared, (key.len() - shared).min(8))
}

/// The positions of `entries` (offset by `base`) in key order. Sorted by the 8 bytes
/// past the prefix all the keys share (a window's end and start), then by whole keys
/// only where those are equal: comparing keys themselves read each through its
/// pointer (a key past 20 bytes lives on the heap), a cache miss per comparison.
fn sorted_positions(entries: &[Change], base: usize) -> Vec<u32> {
    let shared = shared_prefix(entries);
    let mut order: Vec<(u64, u32)> = entries
        .iter()
        .enumerate()
        .map(|(at, (k, _))| (word_past(k, shared), at as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            cmp_bytes(
                &entries[a.1 as usize].0[shared..],
                &entries[b.1 as usize].0[shared..],
            )
        })
    });
    order.into_iter().map(|(_, at)| at + base as u32).collect()
}

fn merge(older: Vec<u32>, newer: Vec<u32>, by_key: impl Fn(&u32, &u32) -> Ordering) -> Vec<u32> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut a, mut b) = (older.into_iter().peekable(), newer.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        // Runs hold distinct entries, so never equal.
        if by_key(x, y).is_lt() {
            out.extend(a.next());
        } else {
            out.extend(b.next());
        }
    }
    out.extend(a);
    out.extend(b);
    out
}

/// A k-way merge of the runs' parts in a key range (runs hold distinct keys).
pub(super) struct RunsRange<'a> {
    entries: &'a [Change],
    heads: Vec<&'a [u32]>,
}

impl<'a> Iterator for RunsRange<'a> {
    type Item = (&'a [u8], Option<&'a Slice>);

    fn next(&mut self) -> Option<Self::Item> {
        let entries = self.entries;
        let key = |at: u32| &*entries[at as usize].0;
        let mut min: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            let Some(&at) = head.first() else { continue };
            if min.is_none_or(|m| cmp_bytes(key(at), key(self.heads[m][0])).is_lt()) {
                min = Some(i);
            }
        }
        let (&at, rest) = self.heads[min?].split_first()?;
        self.heads[min?] = rest;
        let (k, v) = &entries[at as usize];
        Some((&**k, v.as_ref()))
    }
}

/// An epoch's changes frozen at its barrier, sorted by key, each with the word it
/// was sorted by (kept so that the buffer can sort the next epoch in place).
#[derive(Default)]
pub(super) struct SortedDelta(Vec<(u64, Change)>);

impl SortedDelta {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<Option<&Slice>> {
        self.0
            .binary_search_by(|(_, (k, _))| cmp_bytes(k, key))
            .ok()
            .map(|at| self.0[at].1 .1.as_ref())
    }

    /// The changes to keys in `from..to`, in key order.
    pub(super) fn range(&self, from: &[u8], to: &[u8]) -> impl ExactSizeIterator<Item = &Change> {
        let lo = self
            .0
            .partition_point(|(_, (k, _))| cmp_bytes(k, from).is_lt());
        let hi = self
            .0
            .partition_point(|(_, (k, _))| cmp_bytes(k, to).is_lt());
        self.0[lo..hi.max(lo)].iter().map(|(_, c)| c)
    }

    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = &Change> + Clone {
        self.0.iter().map(|(_, c)| c)
    }

    pub(super) fn bytes(&self) -> usize {
        self.iter().map(change_bytes).sum()
    }

    /// Where the buffer is (tests check it is reused).
    #[cfg(test)]
    pub(super) fn buffer(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Bytes of a spare buffer (`into_spare`) of this capacity.
    pub(super) fn spare_bytes(spare: &Vec<(u64, Change)>) -> usize {
        spare.capacity() * std::mem::size_of::<(u64, Change)>()
    }

    /// The buffer, emptied, for `EpochChanges::freeze` to reuse.
    pub(super) fn into_spare(self) -> Vec<(u64, Change)> {
        let mut buffer = self.0;
        buffer.clear();
        buffer
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn keys_compare_as_their_bytes() {
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
                assert_eq!(cmp_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    /// Keys of varied lengths (some past the 20 inline bytes) in a scrambled order.
    fn key(i: u64) -> Vec<u8> {
        let n = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let mut k = n.to_be_bytes().to_vec();
        k.resize(4 + (i % 30) as usize, b'k');
        k
    }

    /// Interleaves writes (of new keys both appended unindexed and indexed at once),
    /// deletions, point reads and range reads (so runs form and merge at many sizes,
    /// and the unindexed tail is both scanned and indexed) and checks every read
    /// against an ordered map of the same changes.
    #[test]
    fn range_and_point_reads_match_an_ordered_map_however_writes_and_reads_interleave() {
        let mut changes = EpochChanges::default();
        let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut scanned = 0;
        for i in 0..20_000u64 {
            let k = key(i % 7_000);
            let v = (i % 5 != 0).then(|| i.to_be_bytes().to_vec());
            if !model.contains_key(&k) && i % 3 != 0 {
                changes.push_new(&k, v.as_deref().map(Slice::from));
            } else {
                changes.set(&k, v.as_deref().map(Slice::from));
            }
            model.insert(k, v);
            if i % 11 == 0 {
                let tail = changes.tail_hashes.len();
                let probe = key(i.wrapping_mul(7) % 7_100);
                assert_eq!(
                    changes.get(&probe).map(|v| v.map(|v| v.to_vec())),
                    model.get(&probe).cloned(),
                    "point read at {i}"
                );
                scanned += usize::from(tail > 0);
            }
            if i % 4_999 == 4_998 {
                let bound = key(i / 4_999).max(model.keys().next().cloned().unwrap_or_default());
                changes.forget_below(&bound);
                model = model.split_off(&bound);
            }
            if i % 97 == 0 {
                let (from, to) = (key(i), key(i + 3));
                let (from, to) = if from < to { (from, to) } else { (to, from) };
                let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = changes
                    .range(&from, &to)
                    .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
                    .collect();
                let want: Vec<_> = model
                    .range(from.clone()..to.clone())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, want, "range at {i}");
            }
        }
        assert!(scanned > 100, "the tail was scanned {scanned} times");
        assert!(
            changes.runs.len() <= 16,
            "runs stay few: {}",
            changes.runs.len()
        );
        assert_eq!(changes.len(), model.len());
        for (k, v) in &model {
            assert_eq!(changes.get(k), Some(v.as_deref().map(Slice::from).as_ref()));
        }
        assert_eq!(changes.get(b"absent"), None);
        let whole: Vec<_> = changes
            .range(&[], &[255; 40])
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(whole, model.keys().cloned().collect::<Vec<_>>());

        let bound = key(3);
        let (frozen, next) = changes.freeze(&bound, Vec::new());
        assert_eq!(next.len(), 0);
        let kept: Vec<_> = model.range(bound.clone()..).collect();
        assert_eq!(frozen.len(), kept.len());
        for (got, (k, v)) in frozen.iter().zip(&kept) {
            assert_eq!((&got.0[..], got.1.as_deref()), (&k[..], v.as_deref()));
        }
        for (k, v) in &kept {
            assert_eq!(
                frozen.get(k).map(|v| v.map(|v| v.to_vec())),
                Some((*v).clone())
            );
        }
        for i in 0..50 {
            let (from, to) = (key(i), key(i + 1));
            let (from, to) = if from < to { (from, to) } else { (to, from) };
            let got: Vec<_> = frozen.range(&from, &to).map(|(k, _)| k.to_vec()).collect();
            let want: Vec<_> = kept
                .iter()
                .filter(|(k, _)| **k >= from && **k < to)
                .map(|(k, _)| (*k).clone())
                .collect();
            assert_eq!(got, want, "frozen range {i}");
        }
    }

    /// Point reads scan the unindexed tail until they have compared as many hashes
    /// as `TAIL_SCANS_PER_ENTRY` indexes' worth, then the tail is indexed; every read
    /// finds what was written either way.
    #[test]
    fn point_reads_index_the_new_keys_once_scanning_them_costs_more() {
        let key = |i: u64| (i * 7_919).to_be_bytes();
        let mut changes = EpochChanges::default();
        for i in 0..1_000u64 {
            changes.push_new(&key(i), Some(Slice::from(&i.to_be_bytes()[..])));
        }
        let mut reads = 0;
        while !changes.tail_hashes.is_empty() {
            let i = reads % 1_000;
            let got = changes.get(&key(i)).map(|v| v.map(|v| v.to_vec()));
            assert_eq!(got, Some(Some(i.to_be_bytes().to_vec())), "read {reads}");
            assert_eq!(changes.get(b"absent"), None);
            reads += 1;
        }
        // Two scans per round; the first read past the budget indexes.
        assert_eq!(reads as usize, TAIL_SCANS_PER_ENTRY / 2 + 1);
        assert_eq!(changes.index.len(), 1_000);
        changes.set(&key(5), None);
        assert_eq!(changes.get(&key(5)), Some(None));
        assert_eq!(changes.len(), 1_000, "the set found the indexed entry");
    }

    /// Keys as a window writes them (16 bytes of window shared by all, then the group
    /// key, some shorter than 8 bytes past it, some with zero bytes where a shorter
    /// key is padded): the barrier's sort by the word past the shared prefix must
    /// still give byte order.
    #[test]
    fn a_frozen_epoch_is_in_byte_order_when_every_key_shares_a_long_prefix() {
        let mut changes = EpochChanges::default();
        let mut model = BTreeMap::new();
        for i in 0..5_000u64 {
            let mut k = vec![7u8; 16];
            let n = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            k.extend_from_slice(&n.to_be_bytes()[..(i % 9) as usize]);
            k.extend_from_slice(&n.to_le_bytes()[..(i % 5) as usize]);
            if i % 3 == 0 {
                k.push(0);
            }
            changes.set(&k, Some(Slice::from(&k[..])));
            model.insert(k, ());
        }
        let (frozen, _) = changes.freeze(&[], Vec::new());
        let got: Vec<_> = frozen.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(got, model.into_keys().collect::<Vec<_>>());
    }
}
