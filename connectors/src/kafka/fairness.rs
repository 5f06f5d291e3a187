//! Keeps a kafka source's partitions close in time while it catches up: a partition
//! whose newest message timestamp runs more than `max_partition_skew` ahead of the
//! slowest partition that still has messages to read is paused until the slowest one
//! comes within half that (Kafka Streams likewise picks the partition with the
//! lowest timestamp). Event-time transforms take the minimum over partitions (see
//! `connectd_sdk::lanes`), so without this a partition read far ahead would sit in
//! their state until the others catch up.
//!
//! The decision is pure (here, unit-tested); the consumer thread applies it.

use std::collections::{BTreeSet, HashMap};

use super::fetcher::Partition;

#[derive(Debug)]
pub struct Fairness {
    max_skew: i64,
    /// Newest message timestamp seen per partition.
    newest: HashMap<Partition, i64>,
    /// Next offset the consumer will hand over, per partition.
    next: HashMap<Partition, i64>,
    paused: BTreeSet<Partition>,
}

/// What to do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub pause: Vec<Partition>,
    pub resume: Vec<Partition>,
}

impl Fairness {
    pub fn new(max_skew_ms: i64) -> Self {
        Self {
            max_skew: max_skew_ms,
            newest: HashMap::new(),
            next: HashMap::new(),
            paused: BTreeSet::new(),
        }
    }

    /// A message of `p` at `offset` (timestamp `ts`, if it has one) was handed over.
    pub fn seen(&mut self, p: &Partition, offset: i64, ts: Option<i64>) {
        if let Some(ts) = ts {
            let newest = self.newest.entry(p.clone()).or_insert(ts);
            *newest = (*newest).max(ts);
        }
        self.next.insert(p.clone(), offset + 1);
    }

    /// A new assignment. librdkafka keeps a paused partition paused across a
    /// reassignment, so the caller resumes every held partition; nothing counts as
    /// paused any more.
    pub fn reassigned(&mut self) {
        self.paused.clear();
    }

    /// Which partitions to pause and resume, given those held now and each one's end
    /// (`high`: the next offset the broker will give it, when known).
    pub fn decide(
        &mut self,
        held: &BTreeSet<Partition>,
        high: impl Fn(&Partition) -> Option<i64>,
    ) -> Decision {
        self.paused.retain(|p| held.contains(p));
        let behind = |p: &Partition| match (self.next.get(p), high(p)) {
            (Some(next), Some(end)) => *next < end,
            _ => true,
        };
        let slowest = held
            .iter()
            .filter(|p| behind(p))
            .filter_map(|p| self.newest.get(p).copied())
            .min();
        let mut d = Decision::default();
        for p in held {
            let ahead = match (slowest, self.newest.get(p)) {
                (Some(min), Some(ts)) => ts - min,
                _ => 0,
            };
            let paused = self.paused.contains(p);
            if !paused && ahead > self.max_skew && behind(p) {
                d.pause.push(p.clone());
            } else if paused && (ahead <= self.max_skew / 2 || !behind(p)) {
                d.resume.push(p.clone());
            }
        }
        self.paused.extend(d.pause.iter().cloned());
        for p in &d.resume {
            self.paused.remove(p);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    #[test]
    fn a_partition_far_ahead_waits_for_the_slowest_with_messages_left() {
        let mut f = Fairness::new(1000);
        let held: BTreeSet<_> = [p(0), p(1)].into();
        f.seen(&p(0), 9, Some(5_000));
        f.seen(&p(1), 9, Some(1_000));
        let ends = |_: &Partition| Some(100);
        assert_eq!(
            f.decide(&held, ends),
            Decision {
                pause: vec![p(0)],
                resume: vec![]
            }
        );
        // Still ahead by more than half the bound: stays paused.
        f.seen(&p(1), 50, Some(4_000));
        assert_eq!(f.decide(&held, ends), Decision::default());
        f.seen(&p(1), 60, Some(4_600));
        assert_eq!(
            f.decide(&held, ends),
            Decision {
                pause: vec![],
                resume: vec![p(0)]
            }
        );
    }

    #[test]
    fn a_partition_read_to_its_end_holds_nobody_back() {
        let mut f = Fairness::new(1000);
        let held: BTreeSet<_> = [p(0), p(1)].into();
        f.seen(&p(0), 9, Some(50_000));
        f.seen(&p(1), 99, Some(1_000));
        // Partition 1 is at its end (next 100 = high 100): nothing to wait for.
        let ends = |_: &Partition| Some(100);
        assert_eq!(f.decide(&held, ends), Decision::default());
    }

    #[test]
    fn a_paused_partition_given_up_is_forgotten() {
        let mut f = Fairness::new(10);
        let both: BTreeSet<_> = [p(0), p(1)].into();
        f.seen(&p(0), 0, Some(500));
        f.seen(&p(1), 0, Some(0));
        assert_eq!(f.decide(&both, |_| Some(10)).pause, vec![p(0)]);
        let one: BTreeSet<_> = [p(1)].into();
        assert_eq!(f.decide(&one, |_| Some(10)), Decision::default());
        f.reassigned();
        assert_eq!(f.decide(&both, |_| Some(10)).pause, vec![p(0)]);
    }
}
