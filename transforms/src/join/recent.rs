//! The windowed join's newest held records, in memory as well as in the store.
//!
//! A record's partners are at most `within` from it, and in a stream in time order they
//! are among the newest records held: kept here too, they are found with a hash lookup
//! instead of a range read of the store (30 µs in an LSM tree: a seek in every level-0
//! table and one per level). Kept from the newest event time back by `within + grace`,
//! and fewer when over the memory budget (the oldest go first). Every held record with
//! an event time at or after `floor` is here, so a lookup reaching no further back than
//! `floor` is answered here; any other reads the store, which holds everything.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxBuildHasher;

/// A held record: its event time, sequence number and stored value.
#[derive(Debug)]
pub struct Held {
    pub t: i64,
    pub seq: u64,
    pub value: Vec<u8>,
}

/// Bytes a record costs here besides its value and two copies of its prefix: the
/// allocations' headers, a map entry each, the tree's nodes (with 96 here, a join
/// holding more than its 32 MB budget rose by about 50 MB of peak RSS).
const OVERHEAD: usize = 160;

#[derive(Debug)]
pub struct Recent {
    /// Every held record with an event time at or after this is here.
    floor: i64,
    /// Held records by key prefix (side and key), in sequence order.
    by_prefix: HashMap<Vec<u8>, Vec<Held>, FxBuildHasher>,
    /// (event time, sequence) → key prefix: what to forget first.
    by_time: BTreeMap<(i64, u64), Vec<u8>>,
    bytes: usize,
    budget: usize,
}

impl Recent {
    pub fn new(budget: usize) -> Self {
        Self {
            floor: i64::MIN,
            by_prefix: HashMap::default(),
            by_time: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Whether every held record at or after `t` is here.
    pub fn covers(&self, t: i64) -> bool {
        t >= self.floor
    }

    /// The held records of key prefix `prefix` (those here).
    pub fn of(&mut self, prefix: &[u8]) -> &mut [Held] {
        self.by_prefix
            .get_mut(prefix)
            .map_or(&mut [], Vec::as_mut_slice)
    }

    /// A record was put in the store: kept here too unless older than the floor.
    pub fn insert(&mut self, prefix: &[u8], held: Held) {
        if held.t < self.floor {
            return;
        }
        self.bytes += held.value.len() + 2 * prefix.len() + OVERHEAD;
        self.by_time.insert((held.t, held.seq), prefix.to_vec());
        match self.by_prefix.get_mut(prefix) {
            Some(records) => records.push(held),
            None => {
                self.by_prefix.insert(prefix.to_vec(), vec![held]);
            }
        }
        if self.bytes > self.budget {
            let target = self.budget / 4 * 3;
            self.forget_while(|_, bytes| bytes > target);
        }
    }

    /// The newest event time is `newest`: records older than `keep` before it go.
    pub fn advance(&mut self, newest: i64, keep: i64) {
        let floor = newest.saturating_sub(keep);
        self.forget_while(|t, _| t < floor);
        self.floor = self.floor.max(floor);
    }

    /// Forgets everything: the records held now are only in the store, and the next
    /// are at or after `floor`.
    pub fn reset(&mut self, floor: i64) {
        self.by_prefix.clear();
        self.by_time.clear();
        self.bytes = 0;
        self.floor = floor;
    }

    /// Forgets the oldest records while `more(their time, bytes kept)`, a whole event
    /// time at a time (the floor rises past it).
    fn forget_while(&mut self, more: impl Fn(i64, usize) -> bool) {
        while let Some((&(t, _), _)) = self.by_time.first_key_value() {
            if !more(t, self.bytes) {
                return;
            }
            while let Some(entry) = self.by_time.first_entry() {
                if entry.key().0 != t {
                    break;
                }
                let ((_, seq), prefix) = entry.remove_entry();
                self.remove(&prefix, seq);
            }
            self.floor = self.floor.max(t.saturating_add(1));
        }
    }

    fn remove(&mut self, prefix: &[u8], seq: u64) {
        let Some(records) = self.by_prefix.get_mut(prefix) else {
            return;
        };
        if let Some(at) = records.iter().position(|h| h.seq == seq) {
            let held = records.remove(at);
            self.bytes = self
                .bytes
                .saturating_sub(held.value.len() + 2 * prefix.len() + OVERHEAD);
        }
        if records.is_empty() {
            self.by_prefix.remove(prefix);
        }
    }

    /// Memory the records take (about).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(t: i64, seq: u64) -> Held {
        Held {
            t,
            seq,
            value: vec![0; 100],
        }
    }

    #[test]
    fn records_older_than_what_is_kept_go_and_the_floor_says_so() {
        let mut r = Recent::new(usize::MAX);
        r.insert(b"a", held(1_000, 1));
        r.insert(b"a", held(2_000, 2));
        r.insert(b"b", held(3_000, 3));
        assert!(r.covers(i64::MIN));
        r.advance(3_000, 1_500);
        assert!(!r.covers(1_499) && r.covers(1_500));
        assert_eq!(r.of(b"a").iter().map(|h| h.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(r.of(b"b").len(), 1);
        // Older than the floor: not kept (the store has it).
        r.insert(b"a", held(1_000, 4));
        assert_eq!(r.of(b"a").len(), 1);
    }

    #[test]
    fn over_its_budget_it_forgets_the_oldest_whole_times_first() {
        let mut r = Recent::new(10 * (100 + 2 + OVERHEAD));
        for seq in 0..11 {
            r.insert(b"k", held(1_000 + (seq as i64) / 2, seq));
        }
        // Over budget at the 11th: down to three quarters, whole times at a time.
        assert!(r.bytes() <= 10 * (100 + 2 + OVERHEAD) / 4 * 3);
        let kept: Vec<i64> = r.of(b"k").iter().map(|h| h.t).collect();
        let floor = kept[0];
        assert!(r.covers(floor) && !r.covers(floor - 1));
        assert_eq!(kept.last(), Some(&1_005));
    }

    #[test]
    fn after_a_reset_only_what_comes_at_or_after_the_floor_is_answered() {
        let mut r = Recent::new(usize::MAX);
        r.insert(b"a", held(1_000, 1));
        r.reset(5_001);
        assert!(r.of(b"a").is_empty());
        assert!(!r.covers(5_000) && r.covers(5_001));
        assert_eq!(r.bytes(), 0);
    }
}
