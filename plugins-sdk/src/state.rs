//! Keyed state for transforms, kept by the runtime in the pipeline's state store.
//!
//! A transform that holds state per key takes a [`KeyedState`] in
//! [`Transform::attach_state`](crate::Transform::attach_state) and reads and writes it
//! instead of keeping its keys in memory and in its snapshot. The runtime writes only
//! what changed since the previous checkpoint, together with the checkpoint, and
//! restores it after a crash: a checkpoint's cost grows with the keys changed, not
//! with the keys held. [`MemoryState`] is the same thing in memory, for tests and for
//! hosts without a store.

use std::collections::BTreeMap;

use crate::error::ConnectorError;

/// The default `state.cache_size` of a pipeline: half is the store's block cache, half
/// what transforms keep decoded in front of it.
pub const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
/// A transform's share of the default cache size.
pub const DEFAULT_MEMORY_BUDGET: usize = (DEFAULT_CACHE_SIZE / 2) as usize;

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Byte keys to byte values, ordered by key.
pub trait KeyedState: Send + std::fmt::Debug {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConnectorError>;
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    /// The entries with keys in `[from, to)`, in key order, at most `limit`: an index
    /// ordered by time is read this way, up to the watermark.
    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError>;
    /// Forgets every key below `bound`: the old part of a time-ordered key space that
    /// is done with (windows that have closed). Reads stop seeing those keys at once;
    /// a store reclaims them in the background, so this costs the same for a million
    /// keys as for one.
    fn forget_below(&mut self, bound: &[u8]);
    /// How many bytes of decoded state a transform may keep in memory in front of this
    /// store (a share of the pipeline's `state.cache_size`).
    fn memory_budget(&self) -> usize {
        DEFAULT_MEMORY_BUDGET
    }

    /// Tells the host how many bytes of this state the transform keeps decoded in
    /// memory (for `connectd_state_bytes{where="memory"}`).
    fn report_memory(&self, _bytes: usize) {}

    /// Puts a key written nowhere before and never read with `get`, only by `range`
    /// (an index entry made unique by a sequence number): a store may leave it out of
    /// what answers `get`. Remove it with [`delete_unique`](Self::delete_unique).
    fn put_unique(&mut self, key: &[u8], value: &[u8]) {
        self.put(key, value);
    }

    /// Deletes a key put with [`put_unique`](Self::put_unique).
    fn delete_unique(&mut self, key: &[u8]) {
        self.delete(key);
    }

    /// The transform keeps its own filter of the keys it wrote (a window does, over
    /// hashes it computes anyway), so the store need not keep one.
    fn without_key_filter(&mut self) {}

    /// A hint: `keys` will be read or written soon. A transform that knows a batch's
    /// keys before it reads them passes them all at once, and a store loads what
    /// answers for them (its key filter's lines, its index) in parallel, not one
    /// cache miss at a time.
    fn warm(&self, _keys: &mut dyn Iterator<Item = &[u8]>) {}

    /// Every entry, when the state lives only in memory (it then goes into the
    /// transform's snapshot); `None` for a store that checkpoints itself.
    fn export(&self) -> Option<Entries> {
        None
    }
}

/// Keyed state in memory: snapshotted whole through `export`.
#[derive(Debug, Default, Clone)]
pub struct MemoryState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl KeyedState for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ConnectorError> {
        Ok(self.0.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.0.insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, key: &[u8]) {
        self.0.remove(key);
    }

    fn forget_below(&mut self, bound: &[u8]) {
        self.0 = self.0.split_off(bound);
    }

    fn range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Entries, ConnectorError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn export(&self) -> Option<Entries> {
        Some(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
