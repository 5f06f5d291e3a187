//! Which keys the windowed join may hold near which times, per side: Bloom filters by
//! leaving time.
//!
//! Finding a record's partners is a range read of the other side's key in the state
//! store, and a range read in an LSM tree seeks every level-0 table and one per level
//! (no Bloom filter can answer for a range): three quarters of a 1 M-record join's CPU.
//! Most records have no partner held, and a filter answers that in memory. A filter
//! entry is a key and a bucket of event time `2 × within` wide, so a partner of a
//! record at `t` can only be in the one or two buckets that `[t - within, t + within]`
//! touches: a key held only at other times (a long `grace` holds a key's records long
//! after they can match) is not read either.
//!
//! A filter cannot forget a key, so held records go into one filter per span of their
//! leaving time (a generation), and a generation is dropped once the watermark has
//! passed its span: every record in it has left. Records the filters may not know —
//! held before a restore (the filters are not checkpointed), or past the cap on
//! generations — make every lookup read the store until the last of them has left.

use std::collections::VecDeque;
use std::hash::Hasher as _;

use connectd_sdk::bloom::KeyFilter;

/// Generations a span of `within + grace` is cut into (a lookup probes each).
const SPANS_PER_HOLD: i64 = 2;
/// The narrowest generation: a tiny `within + grace` would make one per record.
const MIN_SPAN_MS: i64 = 1_000;
/// More generations than this (event times far apart across lanes) and new records go
/// unfiltered: lookups read the store rather than memory growing with the spread.
const MAX_GENERATIONS: usize = 64;

/// The hash of a held-record key prefix (side and encoded key).
pub fn prefix_hash(prefix: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(prefix);
    h.finish()
}

/// The filters' key: a key prefix's hash and a time bucket.
fn entry(prefix_hash: u64, bucket: i64) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write_u64(prefix_hash);
    h.write_i64(bucket);
    h.finish()
}

#[derive(Debug)]
pub struct Presence {
    /// How far apart partners may be: `within`.
    within: i64,
    /// The event-time width of a bucket: `2 × within` (at least 1 ms).
    bucket: i64,
    /// The leaving-time width of one generation, in ms.
    span: i64,
    /// (generation number: leaving time / span, the keys of its records), ascending.
    generations: VecDeque<(i64, KeyFilter)>,
    /// While the watermark is below this, a held record may be missing from the
    /// filters: every lookup reads the store.
    unfiltered_until: i64,
}

impl Presence {
    /// Filters for a join of records at most `within` ms apart, held `within + grace`
    /// past their event time.
    pub fn new(within: i64, grace: i64) -> Self {
        Self {
            within,
            bucket: within.saturating_mul(2).max(1),
            span: (within.saturating_add(grace) / SPANS_PER_HOLD).max(MIN_SPAN_MS),
            generations: VecDeque::new(),
            unfiltered_until: i64::MIN,
        }
    }

    /// Whether a record of key prefix hash `hash` may be held at most `within` from
    /// event time `t`, at `watermark`.
    pub fn may_hold(&self, hash: u64, t: i64, watermark: i64) -> bool {
        if watermark < self.unfiltered_until {
            return true;
        }
        let first = t.saturating_sub(self.within).div_euclid(self.bucket);
        let last = t.saturating_add(self.within).div_euclid(self.bucket);
        let entries = [entry(hash, first), entry(hash, last)];
        let entries = &entries[..if first == last { 1 } else { 2 }];
        self.generations
            .iter()
            .any(|(_, f)| entries.iter().any(|e| f.may_contain(*e)))
    }

    /// A record of key prefix hash `hash` and event time `t` is held until the
    /// watermark passes `leaves_at`.
    pub fn insert(&mut self, hash: u64, t: i64, leaves_at: i64) {
        let hash = entry(hash, t.div_euclid(self.bucket));
        let generation = leaves_at.div_euclid(self.span);
        let at = self.generations.partition_point(|(g, _)| *g < generation);
        if self
            .generations
            .get(at)
            .is_none_or(|(g, _)| *g != generation)
        {
            if self.generations.len() >= MAX_GENERATIONS {
                self.unfiltered(leaves_at);
                return;
            }
            // Sized like the fullest generation: a filter that grows adds parts, and
            // a lookup probes each part of each generation.
            let expected = self.generations.iter().map(|(_, f)| f.len()).max();
            let filter = KeyFilter::with_capacity(expected.unwrap_or(0).saturating_mul(5) / 4);
            self.generations.insert(at, (generation, filter));
        }
        if let Some((_, filter)) = self.generations.get_mut(at) {
            filter.insert(hash);
        }
    }

    /// Records up to `leaves_at` may be held without the filters knowing them.
    pub fn unfiltered(&mut self, leaves_at: i64) {
        self.unfiltered_until = self.unfiltered_until.max(leaves_at.saturating_add(1));
    }

    /// Forgets the generations whose records have all left: the expiry at `watermark`
    /// removed every record leaving before it.
    pub fn expire(&mut self, watermark: i64) {
        while let Some((g, _)) = self.generations.front() {
            let end = g.saturating_add(1).saturating_mul(self.span);
            if end > watermark {
                break;
            }
            self.generations.pop_front();
        }
    }

    /// Forgets everything: the filters know none of the records held now.
    pub fn reset(&mut self) {
        self.generations.clear();
        self.unfiltered_until = i64::MIN;
    }

    /// Memory the filters take.
    pub fn bytes(&self) -> usize {
        self.generations.iter().map(|(_, f)| f.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_key_is_found_until_its_generation_has_left() {
        let mut p = Presence::new(1_000, 3_000); // generations of 2 s
        p.insert(prefix_hash(b"a"), 0, 5_000);
        assert!(p.may_hold(prefix_hash(b"a"), 0, 0));
        assert!(!p.may_hold(prefix_hash(b"b"), 0, 0));
        p.expire(5_000); // the record leaves once the watermark is past 5 000
        assert!(p.may_hold(prefix_hash(b"a"), 0, 5_000));
        p.expire(6_000); // its generation [4 000, 6 000) has left
        assert!(!p.may_hold(prefix_hash(b"a"), 0, 6_000));
    }

    #[test]
    fn a_key_is_found_within_its_bound_and_not_far_from_it() {
        let mut p = Presence::new(1_000, 60_000);
        p.insert(prefix_hash(b"a"), 10_000, 71_000);
        for t in [9_000, 9_500, 10_000, 10_999, 11_000] {
            assert!(p.may_hold(prefix_hash(b"a"), t, 0), "{t}");
        }
        // Buckets are 2 s wide ([10 000, 12 000) holds it): from 12 000 on, or
        // before 8 000, no partner can be within 1 s.
        for t in [7_999, 13_000, 40_000] {
            assert!(!p.may_hold(prefix_hash(b"a"), t, 0), "{t}");
        }
    }

    #[test]
    fn unknown_records_make_every_key_possible_until_they_leave() {
        let mut p = Presence::new(0, 0);
        p.unfiltered(10_000);
        assert!(p.may_hold(prefix_hash(b"x"), 0, 10_000));
        assert!(!p.may_hold(prefix_hash(b"x"), 0, 10_001));
    }

    #[test]
    fn past_the_cap_on_generations_records_go_unfiltered() {
        let mut p = Presence::new(0, 0); // generations of 1 s
        for i in 0..=MAX_GENERATIONS as i64 {
            p.insert(prefix_hash(&i.to_be_bytes()), i * 1_000, i * 1_000);
        }
        let last = MAX_GENERATIONS as i64 * 1_000;
        // Not in any filter, yet reported as possibly held until it leaves.
        assert!(p.may_hold(prefix_hash(b"never inserted"), 0, last));
        assert!(!p.may_hold(prefix_hash(b"never inserted"), 0, last + 1));
        assert!(p.bytes() > 0);
    }

    #[test]
    fn negative_times_fall_in_their_own_generations() {
        let mut p = Presence::new(1, 1_999); // generations of 1 s
        p.insert(prefix_hash(b"k"), -2, -1);
        p.expire(-1);
        assert!(p.may_hold(prefix_hash(b"k"), -2, -1));
        p.expire(0);
        assert!(!p.may_hold(prefix_hash(b"k"), -2, 0));
    }
}
