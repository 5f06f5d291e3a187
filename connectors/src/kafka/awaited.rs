//! Partitions a kafka source waits for before its watermark may pass them.
//!
//! A restarted worker joins its group while the killed member still holds some
//! partitions, until that member's session times out. If the source declared only the
//! partitions it holds, the watermark would move on from them and the others' records,
//! handed over seconds later, would be late. So the source declares every partition of
//! its topics from the start. One it has not been given within two session timeouts is
//! held by a live member and is no longer waited for (a worker that starts next to
//! running ones waits that long before its windows close). A partition taken away by a
//! rebalance is not waited for: its new holder is alive. (A pipeline with windows cannot
//! be split across workers yet: `exclusive` holds such a worker's share unread and stops
//! it when the wait ends with partitions still held elsewhere.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::fetcher::Partition;

/// librdkafka's default `session.timeout.ms`.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
pub struct Awaited {
    /// The topics' partitions are known (metadata was read, or could not be).
    known: bool,
    partitions: BTreeSet<Partition>,
    until: Option<Instant>,
}

/// How long a partition is waited for: two session timeouts (the dead member's session
/// expires within one; the rebalance that follows hands its partitions over).
pub fn wait_for(props: &std::collections::BTreeMap<String, String>) -> Duration {
    let session = props
        .get("session.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_SESSION_TIMEOUT, Duration::from_millis);
    session * 2
}

impl Awaited {
    /// Every partition of the subscribed topics, read from the cluster's metadata at
    /// `now`, before the first assignment.
    pub fn known(&mut self, partitions: BTreeSet<Partition>, now: Instant, wait: Duration) {
        self.known = true;
        self.partitions = partitions;
        self.until = Some(now + wait);
    }

    /// These partitions were given to this worker: no longer only awaited.
    pub fn assigned<'a>(&mut self, partitions: impl IntoIterator<Item = &'a Partition>) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// The partitions still awaited at `now` (`None`: the topics' partitions are not
    /// known yet).
    pub fn at(&mut self, now: Instant) -> Option<&BTreeSet<Partition>> {
        if !self.known {
            return None;
        }
        if self.until.is_some_and(|u| now >= u) {
            self.partitions.clear();
            self.until = None;
        }
        Some(&self.partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    #[test]
    fn unknown_until_the_metadata_is_read() {
        let mut a = Awaited::default();
        assert!(a.at(Instant::now()).is_none());
    }

    #[test]
    fn partitions_are_awaited_until_assigned_or_the_wait_is_over() {
        let mut a = Awaited::default();
        let t0 = Instant::now();
        a.known((0..4).map(p).collect(), t0, Duration::from_secs(12));
        a.assigned(&[p(0), p(1)]);
        let left: Vec<_> = a
            .at(t0 + Duration::from_secs(11))
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(left, vec![p(2), p(3)]);
        a.assigned(&[p(2)]);
        assert_eq!(a.at(t0 + Duration::from_secs(11)).unwrap().len(), 1);
        assert!(a.at(t0 + Duration::from_secs(12)).unwrap().is_empty());
        // Over for good: a later rebalance does not bring them back.
        assert!(a.at(t0).unwrap().is_empty());
    }

    #[test]
    fn the_wait_is_two_session_timeouts() {
        let mut props = std::collections::BTreeMap::new();
        assert_eq!(wait_for(&props), Duration::from_secs(90));
        props.insert("session.timeout.ms".to_string(), "6000".to_string());
        assert_eq!(wait_for(&props), Duration::from_secs(12));
    }
}
