//! A pipeline that cannot be split across the workers of a consumer group.
//!
//! Keyed state (a window, a dedup, a join, a plugin's state) belongs to a worker, not to
//! the partitions, and a sink other than `kafka` keeps the source positions in its own
//! checkpoint. When workers of one group split such a pipeline, windows come out
//! partial, twice, and dedup lets repeats through — silently. Unless its state moves with its
//! partitions (tasks per partition that hand over through a changelog), such a
//! pipeline runs on one worker of its group, and this is the guard.
//!
//! What the group protocol shows (no member list: the test broker does not answer it):
//! - An assignment of only some of the topics' partitions: another member holds the
//!   rest. That may be this worker's own killed predecessor, whose session lingers, or
//!   another live worker. Either way nothing is read until this worker holds them all;
//!   a predecessor's session ends within one session timeout and the rebalance that
//!   follows hands everything over. Still partial after `wait` (two session timeouts):
//!   a live member holds them, and the pipeline stops with the reason. A worker that
//!   held everything before (the one that was running) waits twice as long, so the
//!   newcomer gives up first and the running worker goes on.
//! - A partition whose group offset is past what this worker's state has read: another
//!   worker read those records and this state never saw them. The pipeline stops.
//!   Likewise a partition the group has an offset for, this worker never read, after an
//!   assignment that showed another member: this worker is taking over another's
//!   partitions without its state.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::fetcher::Partition;
use super::offsets::Positions;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Read the assigned partitions.
    Proceed,
    /// Hold them without reading: another member holds the rest.
    Hold,
    /// Stop the pipeline, with this reason.
    Refuse(String),
}

#[derive(Debug)]
pub struct Exclusive {
    /// Why the pipeline cannot be split (from the runtime: its stateful transforms and
    /// sinks).
    why: String,
    group: String,
    wait: Duration,
    /// Every partition of the subscribed topics (`None`: the metadata could not be read,
    /// and nothing can be judged).
    all: Option<BTreeSet<Partition>>,
    /// This worker has held every partition in this run.
    had_all: bool,
    /// Since when this worker has held only some partitions, and which.
    partial_since: Option<Instant>,
    given: BTreeSet<Partition>,
    /// An assignment showed another member of the group.
    saw_another: bool,
    /// Where this worker was in partitions it gave up (their positions leave the
    /// source's own map).
    handed_over: Positions,
}

impl Exclusive {
    pub fn new(why: String, group: String, wait: Duration) -> Self {
        Self {
            why,
            group,
            wait,
            all: None,
            had_all: false,
            partial_since: None,
            given: BTreeSet::new(),
            saw_another: false,
            handed_over: Positions::new(),
        }
    }

    /// Every partition of the topics, from the metadata read before the first poll.
    pub fn known(&mut self, all: BTreeSet<Partition>) {
        self.all = (!all.is_empty()).then_some(all);
    }

    /// An assignment of `given`: this worker's positions (`mine`) and the group's
    /// committed offsets (`theirs`) for them.
    pub fn assigned(
        &mut self,
        given: &BTreeSet<Partition>,
        mine: &Positions,
        theirs: &Positions,
        now: Instant,
    ) -> Verdict {
        for p in given {
            let Some(&group_at) = theirs.get(p) else {
                continue;
            };
            let read = [mine.get(p), self.handed_over.get(p)]
                .into_iter()
                .flatten()
                .max()
                .copied();
            let taken_over = match read {
                Some(at) => group_at > at,
                None => self.saw_another,
            };
            if taken_over {
                return Verdict::Refuse(self.taken_over(p, group_at, read));
            }
        }
        let Some(all) = &self.all else {
            return Verdict::Proceed;
        };
        if all.is_subset(given) {
            self.had_all = true;
            self.partial_since = None;
            Verdict::Proceed
        } else {
            self.saw_another = true;
            self.partial_since.get_or_insert(now);
            self.given = given.clone();
            Verdict::Hold
        }
    }

    /// Partitions given up at these positions.
    pub fn revoked(&mut self, reached: &Positions) {
        self.handed_over
            .extend(reached.iter().map(|(p, o)| (p.clone(), *o)));
    }

    /// `Some(reason)` once another member has held partitions for too long.
    pub fn overdue(&self, now: Instant) -> Option<String> {
        let since = self.partial_since?;
        let wait = if self.had_all {
            self.wait * 2
        } else {
            self.wait
        };
        if now.duration_since(since) < wait {
            return None;
        }
        let others: Vec<String> = self
            .all
            .iter()
            .flatten()
            .filter(|p| !self.given.contains(*p))
            .map(|(t, p)| format!("{t}/{p}"))
            .collect();
        Some(format!(
            "another member of consumer group `{}` has held partitions {} for {:?}: {}. {}",
            self.group,
            others.join(", "),
            wait,
            self.why,
            FIX
        ))
    }

    fn taken_over(
        &self,
        (topic, partition): &Partition,
        group_at: i64,
        read: Option<i64>,
    ) -> String {
        let mine = match read {
            Some(at) => format!("this worker's state has read it up to offset {at}"),
            None => "this worker never read it".to_string(),
        };
        format!(
            "partition {topic}/{partition}: consumer group `{}` committed offset {group_at} but {mine}: another worker read those records, and this worker's state does not hold them: {}. {}",
            self.group, self.why, FIX
        )
    }
}

const FIX: &str = "Run this pipeline on one worker of its group (or give each worker a group of its own); to start this worker afresh from the group's offsets, reset its state (`connectd reset-state <pipeline>`). State that moves with its partitions is not built yet";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    fn set(ns: &[i32]) -> BTreeSet<Partition> {
        ns.iter().map(|n| p(*n)).collect()
    }

    fn at(pairs: &[(i32, i64)]) -> Positions {
        pairs.iter().map(|(n, o)| (p(*n), *o)).collect()
    }

    fn guard() -> Exclusive {
        let mut g = Exclusive::new(
            "it keeps keyed state in `w`".into(),
            "g".into(),
            Duration::from_secs(12),
        );
        g.known(set(&[0, 1, 2, 3]));
        g
    }

    #[test]
    fn alone_it_proceeds() {
        let mut g = guard();
        let t0 = Instant::now();
        assert_eq!(
            g.assigned(&set(&[0, 1, 2, 3]), &at(&[]), &at(&[]), t0),
            Verdict::Proceed
        );
        assert!(g.overdue(t0 + Duration::from_secs(60)).is_none());
    }

    /// A restart while its killed predecessor's session lingers: held, then everything
    /// arrives and the positions are its own.
    #[test]
    fn a_lingering_predecessor_is_waited_out() {
        let mut g = guard();
        let t0 = Instant::now();
        let mine = at(&[(0, 10), (1, 10), (2, 10), (3, 10)]);
        let theirs = at(&[(0, 10), (1, 8), (2, 10), (3, 10)]);
        assert_eq!(g.assigned(&set(&[0, 1]), &mine, &theirs, t0), Verdict::Hold);
        assert!(g.overdue(t0 + Duration::from_secs(11)).is_none());
        let t1 = t0 + Duration::from_secs(7);
        assert_eq!(
            g.assigned(&set(&[0, 1, 2, 3]), &mine, &theirs, t1),
            Verdict::Proceed
        );
        assert!(g.overdue(t1 + Duration::from_secs(60)).is_none());
    }

    #[test]
    fn a_newcomer_gives_up_after_the_wait_and_names_the_others_partitions() {
        let mut g = guard();
        let t0 = Instant::now();
        assert_eq!(
            g.assigned(&set(&[2, 3]), &at(&[]), &at(&[]), t0),
            Verdict::Hold
        );
        let why = g.overdue(t0 + Duration::from_secs(12)).unwrap();
        assert!(why.contains("t/0, t/1"), "{why}");
        assert!(why.contains("keyed state in `w`"), "{why}");
        assert!(why.contains("group `g`"), "{why}");
    }

    /// The running worker waits twice as long as a newcomer: the newcomer stops first
    /// and everything comes back with the positions it handed over.
    #[test]
    fn the_running_worker_outwaits_a_newcomer_and_goes_on() {
        let mut g = guard();
        let t0 = Instant::now();
        let all = set(&[0, 1, 2, 3]);
        assert_eq!(g.assigned(&all, &at(&[]), &at(&[]), t0), Verdict::Proceed);
        g.revoked(&at(&[(0, 5), (1, 6), (2, 7), (3, 8)]));
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            g.assigned(&set(&[0, 1]), &at(&[]), &at(&[]), t1),
            Verdict::Hold
        );
        assert!(g.overdue(t1 + Duration::from_secs(20)).is_none());
        assert!(g.overdue(t1 + Duration::from_secs(24)).is_some());
        g.revoked(&at(&[]));
        let theirs = at(&[(0, 5), (1, 6), (2, 7), (3, 8)]);
        assert_eq!(
            g.assigned(&all, &at(&[]), &theirs, t1 + Duration::from_secs(13)),
            Verdict::Proceed
        );
    }

    #[test]
    fn a_group_offset_past_this_workers_state_is_refused() {
        let mut g = guard();
        let v = g.assigned(
            &set(&[0, 1, 2, 3]),
            &at(&[(0, 10), (1, 10), (2, 10), (3, 10)]),
            &at(&[(2, 15)]),
            Instant::now(),
        );
        let Verdict::Refuse(why) = v else {
            panic!("{v:?}")
        };
        assert!(
            why.contains("t/2") && why.contains("15") && why.contains("10"),
            "{why}"
        );
    }

    /// A fresh worker alone on an old group starts from its offsets; one that saw
    /// another member first is taking over that member's partitions without its state.
    #[test]
    fn group_offsets_never_read_are_refused_only_after_another_member_was_seen() {
        let all = set(&[0, 1, 2, 3]);
        let theirs = at(&[(0, 5), (1, 5), (2, 5), (3, 5)]);
        let mut alone = guard();
        assert_eq!(
            alone.assigned(&all, &at(&[]), &theirs, Instant::now()),
            Verdict::Proceed
        );
        let mut standby = guard();
        let t0 = Instant::now();
        assert_eq!(
            standby.assigned(&set(&[3]), &at(&[]), &at(&[]), t0),
            Verdict::Hold
        );
        assert!(matches!(
            standby.assigned(&all, &at(&[]), &theirs, t0),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn unknown_partitions_cannot_be_judged() {
        let mut g = Exclusive::new("x".into(), "g".into(), Duration::from_secs(1));
        g.known(BTreeSet::new());
        assert_eq!(
            g.assigned(&set(&[1]), &at(&[]), &at(&[]), Instant::now()),
            Verdict::Proceed
        );
    }
}
