//! Which keys keyed state has written: a Bloom filter over 64-bit hashes, so that a key
//! seen for the first time (the common case with many keys) needs no lookup in the
//! state store. The store keeps one per table; a window keeps one over the group
//! hashes it computes anyway.
//!
//! Hand-written rather than a crate: those hash the key again, and this needs only
//! insert and contains over a hash already at hand. It grows by adding filters twice
//! as large (a scalable Bloom filter), since a window cannot know its key count ahead.
//! A check asks every filter, so each added one is tighter than the last (two more
//! bits per key, about half the false positives): the sum stays near twice the first
//! filter's rate however far it grows. With equal filters of 10 bits a key, one grown
//! to a million keys answered "maybe" for 6.5 % of keys it lacked; with 10 bits and
//! more per added filter, 2.6 %; from 16 bits, 0.8 %. Each "maybe" for a new key is a
//! read of the store's files that finds nothing (a twentieth of a 1 M-key window's
//! CPU at 2.6 %), so bits are cheap by comparison: a million keys take 3 MB.

/// About 0.25 % false positives for the first filter at 16 bits and 12 probes per key
/// (an unblocked filter's would be 0.05 %; a block of 512 bits saturates sooner, and
/// 20 bits gave only 0.14 %).
const BITS_PER_KEY: usize = 16;
/// Bits per key added with each filter, and the most a filter takes.
const BITS_STEP: usize = 2;
const MAX_BITS_PER_KEY: usize = 28;
const FIRST_CAPACITY: usize = 1 << 14;
/// A key's probes all fall in one block of 512 bits (a cache line), as in RocksDB's
/// blocked filters: a filter of a million keys is megabytes, and seven probes spread
/// over it were seven cache misses per check (an eighth of a 1 M-key dedup's CPU).
const BLOCK_WORDS: usize = 8;

#[derive(Debug)]
struct Filter {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
    probes: u32,
}

impl Filter {
    /// The `stage`-th filter of a `KeyFilter` (0 for the first).
    fn new(capacity: usize, stage: usize) -> Self {
        let bits_per_key = (BITS_PER_KEY + BITS_STEP * stage).min(MAX_BITS_PER_KEY);
        let blocks = (capacity * bits_per_key).div_ceil(64 * BLOCK_WORDS).max(1);
        Self {
            bits: vec![0; blocks * BLOCK_WORDS],
            capacity,
            len: 0,
            // ln 2 probes per bit of a key: the fewest false positives.
            probes: (bits_per_key as u32 * 7).div_ceil(10),
        }
    }

    /// The block of a hash and its bit positions in it: the block from the high half
    /// of a mixed hash (FxHash's low bits are weak), by multiply-shift rather than a
    /// division; the positions by double hashing over the low half.
    fn probes(&self, hash: u64) -> (usize, impl Iterator<Item = usize>) {
        let mixed = splitmix(hash);
        let blocks = (self.bits.len() / BLOCK_WORDS) as u64;
        let block = (((mixed >> 32) * blocks) >> 32) as usize * BLOCK_WORDS;
        let (h1, h2) = (
            mixed as u32,
            ((mixed as u32) >> 16 | 1).wrapping_mul(0x9e37_79b9) | 1,
        );
        let positions =
            (0..self.probes).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) >> 23) as usize);
        (block, positions)
    }

    fn insert(&mut self, hash: u64) {
        let (block, positions) = self.probes(hash);
        let words = &mut self.bits[block..block + BLOCK_WORDS];
        for p in positions {
            words[p / 64] |= 1 << (p % 64);
        }
        self.len += 1;
    }

    /// Reads the word of `hash`'s block (see [`KeyFilter::touch`]).
    fn touch(&self, hash: u64) -> u64 {
        self.bits[self.probes(hash).0]
    }

    fn contains(&self, hash: u64) -> bool {
        let (block, mut positions) = self.probes(hash);
        let words = &self.bits[block..block + BLOCK_WORDS];
        positions.all(|p| words[p / 64] & (1 << (p % 64)) != 0)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A set of hashes that may answer "maybe" for one not in it, never "no" for one in it.
#[derive(Debug, Default)]
pub struct KeyFilter {
    filters: Vec<Filter>,
}

impl KeyFilter {
    /// A filter whose first part holds `keys` hashes at its false-positive rate.
    pub fn with_capacity(keys: usize) -> Self {
        Self {
            filters: vec![Filter::new(keys.max(FIRST_CAPACITY), 0)],
        }
    }

    /// How many hashes were inserted.
    pub fn len(&self) -> usize {
        self.filters.iter().map(|f| f.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&mut self, hash: u64) {
        let full = self.filters.last().is_none_or(|f| f.len >= f.capacity);
        if full {
            let capacity = self
                .filters
                .last()
                .map_or(FIRST_CAPACITY, |f| f.capacity * 2);
            let stage = self.filters.len();
            self.filters.push(Filter::new(capacity, stage));
        }
        if let Some(f) = self.filters.last_mut() {
            f.insert(hash);
        }
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        self.filters.iter().any(|f| f.contains(hash))
    }

    /// Loads the cache line `may_contain(hash)` will read, and returns a word of it
    /// (for `std::hint::black_box`). Touching a batch of keys before checking them
    /// lets their cache misses overlap instead of stalling one by one: over a filter
    /// of a million keys, most of a new key's check was that one miss. (A prefetch
    /// instruction would do the same; it needs `unsafe`, which this workspace denies.)
    pub fn touch(&self, hash: u64) -> u64 {
        self.filters.iter().fold(0, |acc, f| acc ^ f.touch(hash))
    }

    /// Memory it takes, for the window's budget.
    pub fn bytes(&self) -> usize {
        self.filters.iter().map(|f| f.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_says_no_for_a_key_it_holds_and_rarely_yes_for_others() {
        let mut f = KeyFilter::default();
        for i in 0..200_000u64 {
            f.insert(i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        }
        for i in 0..200_000u64 {
            assert!(f.may_contain(i.wrapping_mul(0x2545_f491_4f6c_dd1d)));
        }
        let false_positives = (200_000..400_000u64)
            .filter(|i| f.may_contain(i.wrapping_mul(0x2545_f491_4f6c_dd1d)))
            .count();
        // Several filters (grown 4 times), each under 0.3 %: 1 261 measured.
        assert!(false_positives < 4_000, "{false_positives}");
        assert!(f.bytes() < 1 << 20, "{}", f.bytes());
    }

    #[test]
    fn a_filter_at_its_capacity_answers_yes_for_about_one_key_in_four_hundred_it_lacks() {
        let mut f = KeyFilter::with_capacity(100_000);
        let hash = |i: u64| rustc_hash_like(i);
        for i in 0..100_000u64 {
            f.insert(hash(i));
        }
        assert!((0..100_000u64).all(|i| f.may_contain(hash(i))));
        let false_positives = (100_000..300_000u64)
            .filter(|&i| f.may_contain(hash(i)))
            .count();
        // 0.25 % of 200 000 is 500 (451 measured); at 10 bits a key it was 2 316.
        assert!(false_positives < 700, "{false_positives}");
    }

    #[test]
    fn a_filter_grown_from_small_to_a_million_keys_answers_yes_for_few_keys_it_lacks() {
        // Six filters: with equal ones, 6 % of absent keys were "maybe".
        let mut f = KeyFilter::default();
        let n = 1_000_000u64;
        for i in 0..n {
            f.insert(rustc_hash_like(i));
        }
        assert_eq!(f.filters.len(), 6);
        assert!((0..n).step_by(7).all(|i| f.may_contain(rustc_hash_like(i))));
        let false_positives = (n..2 * n)
            .filter(|&i| f.may_contain(rustc_hash_like(i)))
            .count();
        // 0.8 % (8 308, and 3.1 MB); from 10 bits: 2.6 % (2.3 MB); equal filters of
        // 10 bits: 6.5 % (1.3 MB).
        assert!(false_positives < 12_000, "{false_positives}");
        assert!(f.bytes() < 4 << 20, "{}", f.bytes());
    }

    /// Sequential keys hashed as FxHash does a u64 (a multiply): weak low bits.
    fn rustc_hash_like(i: u64) -> u64 {
        i.wrapping_mul(0xf135_7aea_2e62_a9c5)
    }
}
