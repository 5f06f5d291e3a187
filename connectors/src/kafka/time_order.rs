//! Hands a kafka source's messages to the pipeline in message-timestamp order across
//! its partitions, as Kafka Streams' `PartitionGroup` does. librdkafka returns what it
//! fetched partition by partition (a fetch of one partition can hold a day of a
//! backlog); handed over that way, every event-time transform would hold the whole lead
//! of the partition read first in its state until the others caught up, because its
//! watermark is the minimum over partitions (see `connectd_sdk::lanes`).
//!
//! Fetched messages wait in a queue per partition. The head with the lowest timestamp
//! goes first, unless a partition with an empty queue may still deliver an older one:
//! one with messages left at the broker (or whose end is not known yet) whose newest
//! message handed over is more than `max_skew` behind that head. Such a partition is
//! waited for at most `idle_wait` at a time (it may be slow, or its remaining offsets
//! may be transaction markers that are never delivered); then the others go on until it
//! delivers again. A queue over `QUEUE_CAP` messages has its partition paused at the
//! broker until it drains, which bounds memory.
//!
//! Pure (unit-tested here); the consumer thread (`fetcher`) feeds it and applies the
//! pauses.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::fetcher::Partition;
use super::offsets::Positions;

/// Messages queued per partition before it is paused at the broker.
pub const QUEUE_CAP: usize = 2048;

#[derive(Debug)]
pub struct TimeOrder<T> {
    max_skew: i64,
    idle_wait: Duration,
    /// The partitions held now, each with its queue.
    queues: Vec<(Partition, Queue<T>)>,
    index: HashMap<Partition, usize>,
    /// Partitions whose pause or resume the consumer has still to apply.
    to_pause: Vec<Partition>,
    to_resume: Vec<Partition>,
}

#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<(Option<i64>, T)>,
    /// The offset after the newest message fetched.
    fetched_to: Option<i64>,
    /// The partition's end (next offset the broker will give), when known.
    end: Option<i64>,
    /// Timestamp of the newest message handed over.
    handed: Option<i64>,
    /// Since when the others wait for this (empty) partition.
    waited_since: Option<Instant>,
    /// Waited for `idle_wait` without a message: not waited for until it delivers.
    given_up: bool,
    paused: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            fetched_to: None,
            end: None,
            handed: None,
            waited_since: None,
            given_up: false,
            paused: false,
        }
    }
}

impl<T> Queue<T> {
    /// Whether the broker has messages of it not fetched yet (unknown counts as yes).
    fn behind(&self) -> bool {
        match (self.fetched_to, self.end) {
            (Some(next), Some(end)) => next < end,
            _ => true,
        }
    }
}

impl<T> TimeOrder<T> {
    pub fn new(max_skew_ms: i64, idle_wait: Duration) -> Self {
        Self {
            max_skew: max_skew_ms,
            idle_wait,
            queues: Vec::new(),
            index: HashMap::new(),
            to_pause: Vec::new(),
            to_resume: Vec::new(),
        }
    }

    /// A new assignment: these partitions are held now, each read from the position the
    /// source reached, so what was queued of them is dropped (it is fetched again).
    /// librdkafka keeps paused partitions paused across it: the caller resumes them all.
    /// `starts`: where each is read from, where known.
    pub fn assigned<'a>(
        &mut self,
        held: impl IntoIterator<Item = &'a Partition>,
        starts: &Positions,
    ) {
        let ends: HashMap<Partition, Option<i64>> =
            self.queues.drain(..).map(|(p, q)| (p, q.end)).collect();
        self.queues = held
            .into_iter()
            .map(|p| {
                let queue = Queue {
                    end: ends.get(p).copied().flatten(),
                    fetched_to: starts.get(p).copied(),
                    ..Queue::default()
                };
                (p.clone(), queue)
            })
            .collect();
        self.reindex();
        self.to_pause.clear();
        self.to_resume.clear();
    }

    /// These partitions are taken away: what was queued of them is dropped (never
    /// handed over, so the source's positions stop before it; their next holder reads
    /// it).
    pub fn revoked(&mut self, partitions: &[Partition]) {
        self.queues.retain(|(p, _)| !partitions.contains(p));
        self.reindex();
        self.to_pause.retain(|p| !partitions.contains(p));
        self.to_resume.retain(|p| !partitions.contains(p));
    }

    fn reindex(&mut self) {
        self.index = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
    }

    /// Each partition's end, from the consumer's statistics.
    pub fn set_end(&mut self, p: &Partition, end: i64) {
        if let Some(&i) = self.index.get(p) {
            self.queues[i].1.end = Some(end);
        }
    }

    /// A message fetched of `p` at `offset` (timestamp `ts`). `Err` gives it back when
    /// `p` is not held (a message of a partition given up): the caller hands it over
    /// as it is.
    pub fn push(&mut self, p: &Partition, offset: i64, ts: Option<i64>, item: T) -> Result<(), T> {
        let Some(&i) = self.index.get(p) else {
            return Err(item);
        };
        let q = &mut self.queues[i].1;
        q.items.push_back((ts, item));
        q.fetched_to = Some(q.fetched_to.map_or(offset + 1, |n| n.max(offset + 1)));
        q.waited_since = None;
        q.given_up = false;
        if q.items.len() >= QUEUE_CAP && !q.paused {
            q.paused = true;
            self.to_pause.push(p.clone());
        }
        Ok(())
    }

    /// The next message to hand over, or `None`: nothing queued, or waiting for a
    /// partition that may still deliver an older one.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        // The queued head with the lowest timestamp; one without a timestamp at once.
        let (first, head) = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, (_, q))| q.items.front().map(|(ts, _)| (i, *ts)))
            .min_by_key(|(_, ts)| ts.unwrap_or(i64::MIN))?;
        if let Some(head) = head {
            // Only an empty queue can hold it back: every queued head is later.
            for (p, q) in &mut self.queues {
                let holds = q.items.is_empty()
                    && !q.given_up
                    && q.behind()
                    && q.handed
                        .is_none_or(|h| head > h.saturating_add(self.max_skew));
                if !holds {
                    q.waited_since = None;
                    continue;
                }
                let since = *q.waited_since.get_or_insert(now);
                if now.duration_since(since) < self.idle_wait {
                    return None;
                }
                tracing::debug!(topic = %p.0, partition = p.1, "kafka: no message from a partition with messages left; the others go on without it");
                q.given_up = true;
            }
        }
        let (p, q) = &mut self.queues[first];
        let (ts, item) = q.items.pop_front()?;
        if let Some(ts) = ts {
            q.handed = Some(q.handed.map_or(ts, |h| h.max(ts)));
        }
        if q.paused && q.items.len() <= QUEUE_CAP / 4 {
            q.paused = false;
            self.to_resume.push(p.clone());
        }
        Some(item)
    }

    /// Whether messages are queued but held back (the caller then polls briefly, to
    /// look again soon).
    pub fn holding(&self) -> bool {
        self.queues.iter().any(|(_, q)| !q.items.is_empty())
    }

    /// Partitions to pause and to resume at the broker, since the last call.
    pub fn flow(&mut self) -> (Vec<Partition>, Vec<Partition>) {
        (
            std::mem::take(&mut self.to_pause),
            std::mem::take(&mut self.to_resume),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    fn order(skew: i64) -> TimeOrder<&'static str> {
        let mut o = TimeOrder::new(skew, Duration::from_secs(1));
        // Both read from offset 0.
        o.assigned(&[p(0), p(1)], &[(p(0), 0), (p(1), 0)].into());
        o
    }

    #[test]
    fn the_lowest_timestamp_goes_first_across_partitions() {
        let mut o = order(0);
        let now = Instant::now();
        o.push(&p(0), 0, Some(10), "a10").unwrap();
        o.push(&p(0), 1, Some(30), "a30").unwrap();
        // Partition 1 never delivered: wait for it.
        assert_eq!(o.pop(now), None);
        o.push(&p(1), 0, Some(20), "b20").unwrap();
        assert_eq!(o.pop(now), Some("a10"));
        assert_eq!(o.pop(now), Some("b20"));
        // Partition 1 is empty, its end unknown, and 30 > 20 + 0: wait.
        assert_eq!(o.pop(now), None);
        o.set_end(&p(1), 1);
        // Read to its end: nobody waits for it.
        assert_eq!(o.pop(now), Some("a30"));
        assert_eq!(o.pop(now), None);
    }

    #[test]
    fn a_partition_within_the_skew_does_not_hold_the_others() {
        let mut o = order(100);
        let now = Instant::now();
        o.push(&p(1), 0, Some(1_000), "b").unwrap();
        o.push(&p(0), 0, Some(1_050), "a").unwrap();
        assert_eq!(o.pop(now), Some("b"));
        // 1 050 ≤ 1 000 + 100: goes although partition 1 may deliver more.
        assert_eq!(o.pop(now), Some("a"));
        o.push(&p(0), 1, Some(1_200), "a2").unwrap();
        assert_eq!(o.pop(now), None, "1 200 is past 1 000 + 100");
    }

    #[test]
    fn a_silent_partition_is_waited_for_only_so_long() {
        let mut o = order(0);
        let t0 = Instant::now();
        o.push(&p(0), 0, Some(10), "a").unwrap();
        assert_eq!(o.pop(t0), None);
        assert_eq!(o.pop(t0 + Duration::from_millis(999)), None);
        assert_eq!(o.pop(t0 + Duration::from_secs(1)), Some("a"));
        // Given up: no new wait for it until it delivers.
        o.push(&p(0), 1, Some(20), "a2").unwrap();
        assert_eq!(o.pop(t0 + Duration::from_secs(1)), Some("a2"));
        o.push(&p(1), 0, Some(30), "b").unwrap();
        // Partition 0 is read to its end: nothing to wait for.
        o.set_end(&p(0), 2);
        assert_eq!(o.pop(t0 + Duration::from_secs(1)), Some("b"));
        o.push(&p(0), 2, Some(40), "a3").unwrap();
        assert_eq!(
            o.pop(t0 + Duration::from_secs(2)),
            None,
            "partition 1 delivered again: waited for again"
        );
    }

    #[test]
    fn a_full_queue_is_paused_until_it_drains() {
        let mut o = order(i64::MAX);
        let now = Instant::now();
        o.set_end(&p(1), 0);
        for i in 0..QUEUE_CAP as i64 {
            o.push(&p(0), i, Some(i), "a").unwrap();
        }
        assert_eq!(o.flow(), (vec![p(0)], vec![]));
        for _ in 0..(QUEUE_CAP - QUEUE_CAP / 4) {
            assert!(o.pop(now).is_some());
        }
        assert_eq!(o.flow(), (vec![], vec![p(0)]));
    }

    #[test]
    fn what_was_queued_of_a_partition_taken_away_is_dropped() {
        let mut o = order(0);
        let now = Instant::now();
        o.push(&p(0), 0, Some(10), "a").unwrap();
        o.revoked(&[p(0)]);
        assert!(!o.holding());
        assert_eq!(o.push(&p(0), 1, Some(20), "late"), Err("late"));
        o.assigned(&[p(0), p(1)], &[(p(1), 0)].into());
        o.set_end(&p(1), 0);
        o.push(&p(0), 1, Some(20), "again").unwrap();
        assert_eq!(o.pop(now), Some("again"));
    }
}
