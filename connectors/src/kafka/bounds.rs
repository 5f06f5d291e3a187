//! A kafka source's backfill (`Source::stop_at`): each partition is read from its
//! earliest offset, by assignment (the group is neither joined nor committed to), up to
//! the position a checkpoint had for it, and no further.
//!
//! A partition is through once a message at or past its bound arrives (it is dropped)
//! or once librdkafka's position in it reaches the bound: the last offsets before it
//! may be transaction markers or aborted records, which are never delivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;

use super::fetcher::Partition;
use super::offsets::Positions;

/// How often positions are compared with the bounds.
const CHECK_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Bounds {
    /// Partitions not through yet, with their bound (the first offset not to read).
    open: HashMap<Partition, i64>,
    checked: Instant,
}

/// What becomes of a fetched message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Keep,
    /// At or past the bound of a partition already through.
    Drop,
    /// The first at or past its partition's bound: dropped, and the partition is through.
    Through,
}

impl Bounds {
    /// The bounds of `stop_at` that leave something to read (a bound of 0 does not).
    pub fn new(stop_at: &Positions) -> Self {
        Bounds {
            open: stop_at
                .iter()
                .filter(|(_, b)| **b > 0)
                .map(|(p, b)| (p.clone(), *b))
                .collect(),
            checked: Instant::now(),
        }
    }

    /// Partitions to read: those with a bound above 0.
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.open.keys()
    }

    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> Admit {
        let key = (topic.to_string(), partition);
        match self.open.get(&key) {
            Some(b) if offset >= *b => {
                self.open.remove(&key);
                Admit::Through
            }
            Some(_) => Admit::Keep,
            None => Admit::Drop,
        }
    }

    /// Partitions whose position has reached their bound since the last check (at most
    /// every `CHECK_EVERY`).
    pub fn through_by_position<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Vec<Partition> {
        if self.open.is_empty() || self.checked.elapsed() < CHECK_EVERY {
            return Vec::new();
        }
        self.checked = Instant::now();
        let Ok(positions) = consumer.position() else {
            return Vec::new();
        };
        let mut through = Vec::new();
        for e in positions.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let (Some(b), Offset::Offset(o)) = (self.open.get(&key), e.offset()) {
                if o >= *b {
                    self.open.remove(&key);
                    through.push(key);
                }
            }
        }
        through
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_through_at_its_first_message_past_the_bound() {
        let stop: Positions = [(("t".to_string(), 0), 3), (("t".to_string(), 1), 0)]
            .into_iter()
            .collect();
        let mut b = Bounds::new(&stop);
        assert_eq!(b.partitions().count(), 1);
        assert_eq!(b.admit("t", 0, 2), Admit::Keep);
        assert_eq!(b.admit("t", 0, 3), Admit::Through);
        assert_eq!(b.admit("t", 0, 4), Admit::Drop);
        // Never to be read.
        assert_eq!(b.admit("t", 1, 0), Admit::Drop);
    }
}
