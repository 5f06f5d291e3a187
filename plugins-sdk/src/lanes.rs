//! Lanes: the input partitions of a pipeline, for event time per partition.
//!
//! A source numbers its own partitions (a Kafka source: topic index × 65 536 +
//! partition; a single-stream source: 0). The runtime makes the number unique in the
//! pipeline by putting the source's [`origin`] in the upper 32 bits, and tells every
//! downstream transform which lanes each origin has (a rebalance changes them).
//!
//! [`LaneClock`] is the watermark over lanes: the maximum event time is kept per lane
//! and the watermark is the **minimum** over the lanes, as in Flink and Kafka Streams,
//! so a partition read ahead of the others (a backlog is handed over partition by
//! partition) does not make the others' records late.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The origin number of a component (source, or a transform whose output is a new
/// stream): FNV-1a of its name, stable across runs and versions.
pub fn origin(component: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in component.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The lane number standing for "lanes not declared yet": the runtime declares it for
/// every origin upstream of a transform before any record, so an origin whose source
/// starts later still holds the watermark back.
pub const PENDING: u32 = u32::MAX;

/// The pipeline-wide lane of a source's own lane number.
pub fn global(origin: u32, local: u32) -> u64 {
    (u64::from(origin) << 32) | u64::from(local)
}

/// The origin a pipeline-wide lane belongs to.
pub fn origin_of(lane: u64) -> u32 {
    (lane >> 32) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lane {
    /// The newest event time seen in the lane (`i64::MIN`: none yet).
    max: i64,
    /// The wall clock (ms) when the lane last had a record, or was declared.
    last_seen: i64,
    /// Left out of the watermark: no record for `idle_timeout`.
    idle: bool,
    /// Known from the checkpoint, not yet declared again by its origin in this run.
    restored: bool,
}

impl Lane {
    fn new(now: i64) -> Self {
        Lane {
            max: i64::MIN,
            last_seen: now,
            idle: false,
            restored: false,
        }
    }
}

/// Why a record was behind the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateCause {
    /// Behind its own lane's watermark: out of order by more than the allowed bound.
    WithinPartition,
    /// On time in its lane, but the lane had been left behind: idle for
    /// `idle_timeout`, or newly assigned after the watermark had moved on.
    PartitionBehind,
}

/// The watermark of an event-time transform over the lanes of its inputs. Serialized
/// as its [`LaneClockSnapshot`] (the settings are not: [`LaneClock::configure`] after
/// deserializing).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "LaneClockSnapshot", from = "LaneClockSnapshot")]
pub struct LaneClock {
    out_of_orderness: i64,
    idle_timeout: Option<i64>,
    lanes: BTreeMap<u64, Lane>,
    watermark: i64,
    /// The newest event time of lanes a rebalance took away. A lane given back (an
    /// eager rebalance takes every partition away and hands them out again) resumes
    /// from it: a partition already read to its end would otherwise hold the
    /// watermark at nothing-seen for good.
    given_up: BTreeMap<u64, i64>,
}

/// What a checkpoint keeps of a [`LaneClock`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneClockSnapshot {
    pub watermark: i64,
    /// `(lane, newest event time)` of every lane known (`i64::MIN`: declared, no
    /// record yet), so a restart waits for partitions that had not delivered yet.
    #[serde(default)]
    pub lanes: Vec<(u64, i64)>,
}

impl From<LaneClock> for LaneClockSnapshot {
    fn from(c: LaneClock) -> Self {
        c.snapshot()
    }
}

impl From<LaneClockSnapshot> for LaneClock {
    fn from(s: LaneClockSnapshot) -> Self {
        let mut c = LaneClock::new(0, None);
        c.restore(&s, crate::time::now_ms());
        c
    }
}

impl LaneClock {
    pub fn new(out_of_orderness: i64, idle_timeout: Option<i64>) -> Self {
        Self {
            out_of_orderness,
            idle_timeout,
            lanes: BTreeMap::new(),
            watermark: i64::MIN,
            given_up: BTreeMap::new(),
        }
    }

    /// Sets the allowed out-of-orderness and idle timeout (after deserializing).
    pub fn configure(&mut self, out_of_orderness: i64, idle_timeout: Option<i64>) {
        self.out_of_orderness = out_of_orderness;
        self.idle_timeout = idle_timeout;
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The watermark of one lane on its own (its newest event time − the allowed
    /// out-of-orderness); `i64::MIN` for a lane without records.
    pub fn lane_watermark(&self, lane: u64) -> i64 {
        self.lanes
            .get(&lane)
            .map_or(i64::MIN, |l| l.max.saturating_sub(self.out_of_orderness))
    }

    /// Why a record of `lane` at `t` is late (it was refused against the watermark).
    pub fn late_cause(&self, lane: u64, t: i64, grace: i64) -> LateCause {
        if t < self.lane_watermark(lane).saturating_sub(grace) {
            LateCause::WithinPartition
        } else {
            LateCause::PartitionBehind
        }
    }

    /// The lanes `origin` has now (a source's partitions after a rebalance). New lanes
    /// hold the watermark back until they have records (or go idle); lanes of `origin`
    /// it gave up are forgotten. Lanes known from the checkpoint are kept until their
    /// origin has them again (or they go idle): after a restart, a Kafka source first
    /// gets only some of its partitions while the old member's session lingers, and the
    /// rest must not become late meanwhile. Returns the new watermark if it advanced.
    pub fn declare(&mut self, origin: u32, lanes: &[u64], now: i64) -> Option<i64> {
        let given_up = &mut self.given_up;
        self.lanes.retain(|id, lane| {
            let keep = origin_of(*id) != origin || lane.restored || lanes.contains(id);
            if !keep && lane.max != i64::MIN {
                given_up.insert(*id, lane.max);
            }
            keep
        });
        for id in lanes {
            self.lanes
                .entry(*id)
                .or_insert_with(|| Lane {
                    max: self.given_up.remove(id).unwrap_or(i64::MIN),
                    ..Lane::new(now)
                })
                .restored = false;
        }
        self.recompute()
    }

    /// A record of `lane` at event time `t`, arriving at wall time `now`. Returns the
    /// new watermark if it advanced.
    pub fn observe(&mut self, lane: u64, t: i64, now: i64) -> Option<i64> {
        let entry = self.lanes.entry(lane).or_insert_with(|| Lane::new(now));
        entry.last_seen = now;
        let was_idle = std::mem::replace(&mut entry.idle, false);
        if t <= entry.max && !was_idle {
            return None;
        }
        let before = entry.max;
        entry.max = entry.max.max(t);
        // Only a lane at (or behind) the watermark, or one coming back, can move it.
        if was_idle || before.saturating_sub(self.out_of_orderness) <= self.watermark {
            return self.recompute();
        }
        None
    }

    /// Leaves out lanes without records for `idle_timeout` (wall clock `now`). Returns
    /// the new watermark if it advanced.
    pub fn tick(&mut self, now: i64) -> Option<i64> {
        let idle = self.idle_timeout?;
        let mut changed = false;
        for lane in self.lanes.values_mut() {
            if !lane.idle && now - lane.last_seen >= idle {
                lane.idle = true;
                changed = true;
            }
        }
        if changed {
            self.recompute()
        } else {
            None
        }
    }

    /// Whether every lane is idle (or there are none): then only processing time can
    /// move the watermark.
    pub fn all_idle(&self) -> bool {
        self.lanes.values().all(|l| l.idle)
    }

    /// Moves the watermark to `to` if that is later (processing-time advance of an
    /// idle input, or the end of the input).
    pub fn advance_to(&mut self, to: i64) -> bool {
        if to > self.watermark {
            self.watermark = to;
            true
        } else {
            false
        }
    }

    fn recompute(&mut self) -> Option<i64> {
        let min = self
            .lanes
            .values()
            .filter(|l| !l.idle)
            .map(|l| l.max)
            .min()?;
        if min == i64::MIN {
            return None;
        }
        let candidate = min.saturating_sub(self.out_of_orderness);
        self.advance_to(candidate).then_some(candidate)
    }

    pub fn snapshot(&self) -> LaneClockSnapshot {
        LaneClockSnapshot {
            watermark: self.watermark,
            lanes: self
                .lanes
                .iter()
                // Placeholders are made again at every start.
                .filter(|(id, _)| (**id & 0xffff_ffff) as u32 != PENDING)
                .map(|(id, l)| (*id, l.max))
                .collect(),
        }
    }

    /// Back to a checkpoint; the restored lanes count as just seen (`now`).
    pub fn restore(&mut self, snap: &LaneClockSnapshot, now: i64) {
        self.watermark = snap.watermark;
        self.lanes = snap
            .lanes
            .iter()
            .map(|(id, max)| {
                (
                    *id,
                    Lane {
                        max: *max,
                        restored: true,
                        ..Lane::new(now)
                    },
                )
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_minimum_over_declared_lanes() {
        let (a, b) = (global(1, 0), global(1, 1));
        let mut c = LaneClock::new(10, None);
        c.declare(1, &[a, b], 0);
        // Lane a runs far ahead: b has nothing yet, so nothing moves.
        for t in [100, 200, 300] {
            assert_eq!(c.observe(a, t, 0), None);
        }
        assert_eq!(c.observe(b, 50, 0), Some(40));
        assert_eq!(c.observe(b, 400, 0), Some(290));
        assert_eq!(c.late_cause(b, 20, 0), LateCause::WithinPartition);
        assert_eq!(c.late_cause(a, 295, 0), LateCause::PartitionBehind);
    }

    #[test]
    fn an_idle_lane_stops_holding_the_watermark_and_rejoins_with_data() {
        let (a, b) = (global(1, 0), global(1, 1));
        let mut c = LaneClock::new(0, Some(1000));
        c.declare(1, &[a, b], 0);
        c.observe(a, 500, 500);
        assert_eq!(c.watermark(), i64::MIN);
        assert_eq!(c.tick(999), None);
        assert_eq!(c.tick(1000), Some(500));
        c.observe(a, 700, 1000);
        assert_eq!(c.watermark(), 700);
        // b comes back behind: the watermark never goes back.
        assert_eq!(c.observe(b, 600, 1100), None);
        assert_eq!(c.watermark(), 700);
        assert_eq!(c.observe(b, 900, 1100), None);
        assert_eq!(c.observe(a, 1000, 1100), Some(900));
    }

    #[test]
    fn a_rebalance_forgets_lanes_no_longer_held_and_snapshots_round_trip() {
        let (a, b, other) = (global(1, 0), global(1, 1), global(2, 0));
        let mut c = LaneClock::new(0, None);
        c.declare(1, &[a, b], 0);
        c.observe(a, 10, 0);
        c.observe(b, 20, 0);
        c.observe(other, 30, 0);
        assert_eq!(c.watermark(), 10);
        c.declare(1, &[b], 0);
        assert_eq!(c.watermark(), 20);
        let snap = c.snapshot();
        let mut d = LaneClock::new(0, None);
        d.restore(&snap, 0);
        assert_eq!(d.snapshot(), snap);
        assert_eq!(d.observe(b, 40, 0), Some(30));
    }

    #[test]
    fn after_a_restart_checkpointed_lanes_hold_until_their_origin_has_them_again() {
        let (a, b) = (global(1, 0), global(1, 1));
        let mut c = LaneClock::new(0, None);
        c.declare(1, &[a, b], 0);
        c.observe(a, 100, 0);
        c.observe(b, 100, 0);
        let mut d = LaneClock::new(0, None);
        d.restore(&c.snapshot(), 0);
        // A lane declared but without records is kept too.
        let mut e = LaneClock::new(0, None);
        e.declare(1, &[a, b, global(1, PENDING)], 0);
        e.observe(a, 100, 0);
        let mut f = LaneClock::new(0, None);
        f.restore(&e.snapshot(), 0);
        f.declare(1, &[a], 0);
        assert_eq!(f.observe(a, 500, 0), None, "b, never read, holds it");
        // The restarted source first gets only a: b still holds the watermark.
        d.declare(1, &[a], 0);
        assert_eq!(d.observe(a, 500, 0), None);
        d.declare(1, &[a, b], 0);
        assert_eq!(d.observe(b, 300, 0), Some(300));
        // A rebalance in this run that takes b away forgets it.
        assert_eq!(d.declare(1, &[a], 0), Some(500));
    }

    #[test]
    fn a_lane_given_back_resumes_from_where_it_was() {
        let (a, b) = (global(1, 0), global(1, 1));
        let mut c = LaneClock::new(0, None);
        c.declare(1, &[a, b], 0);
        c.observe(a, 100, 0);
        c.observe(b, 900, 0);
        // An eager rebalance: everything taken away, then handed out again. b was read
        // to its end and has no more records: it must not hold the watermark back.
        c.declare(1, &[], 0);
        c.declare(1, &[a, b], 0);
        assert_eq!(c.observe(a, 1000, 0), Some(900));
    }
}
