//! The `state` interface: a plugin's keyed state, in the pipeline's state store.
//!
//! A live instance's writes are held as changes on top of the store until the instance
//! is snapshotted; then they go into the store (which writes them with the next
//! checkpoint). So the store always matches the plugin's last snapshot: after a trap,
//! the fresh instance restores that snapshot, reads the store as it was then, and the
//! replayed batches make the same changes again — the trapped call's writes are gone
//! with its instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use connectd_sdk::state::KeyedState;

/// The store, shared by the transform and its live instance.
pub type Shared = Arc<Mutex<Box<dyn KeyedState>>>;

pub fn lock(base: &Shared) -> MutexGuard<'_, Box<dyn KeyedState>> {
    base.lock().unwrap_or_else(|p| p.into_inner())
}

/// One instance's view: its changes since the snapshot it started from, over the store.
#[derive(Debug)]
pub struct PluginState {
    base: Shared,
    /// `None`: deleted.
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

impl PluginState {
    pub fn new(base: Shared) -> Self {
        Self {
            base,
            changes: BTreeMap::new(),
            bytes: 0,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.changes.get(key) {
            Some(change) => Ok(change.clone()),
            None => lock(&self.base).get(key).map_err(|e| e.to_string()),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.changes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.bytes += key.len();
        self.changes.insert(key, None);
    }

    /// Bytes written since the last flush (an upper bound of the changes held).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The instance was snapshotted: its changes belong in the store now.
    pub fn flush(&mut self) {
        let mut base = lock(&self.base);
        for (key, change) in std::mem::take(&mut self.changes) {
            match change {
                Some(value) => base.put(&key, &value),
                None => base.delete(&key),
            }
        }
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectd_sdk::state::MemoryState;

    #[test]
    fn changes_reach_the_store_only_when_flushed() {
        let base: Shared = Arc::new(Mutex::new(Box::new(MemoryState::default())));
        lock(&base).put(b"a", b"1");
        let mut live = PluginState::new(base.clone());
        live.put(b"a".to_vec(), b"2".to_vec());
        live.delete(b"b".to_vec());
        live.put(b"c".to_vec(), b"3".to_vec());
        assert_eq!(live.get(b"a").unwrap(), Some(b"2".to_vec()));
        // A trap drops the instance: a fresh one sees the store as it was.
        let fresh = PluginState::new(base.clone());
        assert_eq!(fresh.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(fresh.get(b"c").unwrap(), None);
        live.flush();
        assert_eq!(fresh.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(fresh.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(live.bytes(), 0);
    }
}
