//! The windowed stream–stream join's state: each side's records by key, held until no
//! record of the other side that is not late could still match them.

use std::collections::{BTreeMap, HashMap};

use connectd_sdk::lanes::{LaneClock, LateCause};
use connectd_sdk::{Emitter, Record};
use serde::{Deserialize, Serialize};

use super::Spec;
use crate::window::GroupKey;

#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub within: i64,
    pub grace: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Windowed {
    /// The watermark over the lanes of both inputs.
    #[serde(flatten)]
    clock: LaneClock,
    seq: u64,
    sides: [Side; 2],
    /// When each held record leaves: (leaves_at, seq) → (side, key). Rebuilt on restore.
    #[serde(skip)]
    leaving: BTreeMap<(i64, u64), (usize, GroupKey)>,
}

impl Default for Windowed {
    fn default() -> Self {
        Self {
            clock: LaneClock::new(0, None),
            seq: 0,
            sides: Default::default(),
            leaving: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Side {
    #[serde(with = "crate::window::pairs")]
    by_key: HashMap<GroupKey, Vec<Buffered>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Buffered {
    t: i64,
    seq: u64,
    leaves_at: i64,
    matched: bool,
    record: Record,
}

impl Windowed {
    pub fn watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Sets the allowed out-of-orderness (at build and after a restore).
    pub fn configure(&mut self, out_of_orderness: i64) {
        self.clock.configure(out_of_orderness, None);
    }

    /// Why a record of `lane` at `t` was late.
    pub fn late_cause(&self, lane: u64, t: i64, grace: i64) -> LateCause {
        self.clock.late_cause(lane, t, grace)
    }

    /// The lanes `origin` has now.
    pub fn declare(&mut self, spec: &Spec, origin: u32, lanes: &[u64], out: &mut Emitter) {
        if self
            .clock
            .declare(origin, lanes, connectd_sdk::time::now_ms())
            .is_some()
        {
            self.expire(spec, out);
        }
    }

    /// Joins `r` (of `side`, event time `t`) with the other side's held records, holds
    /// it, and advances the watermark. A late record is handed back.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        spec: &Spec,
        b: &Bounds,
        side: usize,
        key: GroupKey,
        t: i64,
        r: Record,
        now: i64,
        out: &mut Emitter,
    ) -> Result<(), Record> {
        let watermark = self.clock.watermark();
        if watermark != i64::MIN && t < watermark.saturating_sub(b.grace) {
            return Err(r);
        }
        let lane = r.lane;
        let mut matched = false;
        if let Some(partners) = self.sides[1 - side].by_key.get_mut(&key) {
            for p in partners.iter_mut() {
                if (p.t - t).abs() > b.within {
                    continue;
                }
                p.matched = true;
                matched = true;
                out.emit(if side == 0 {
                    spec.combine(&r, Some(&p.record))
                } else {
                    spec.combine(&p.record, Some(&r))
                });
            }
        }
        self.seq += 1;
        let leaves_at = t.saturating_add(b.within).saturating_add(b.grace);
        self.leaving
            .insert((leaves_at, self.seq), (side, key.clone()));
        self.sides[side]
            .by_key
            .entry(key)
            .or_default()
            .push(Buffered {
                t,
                seq: self.seq,
                leaves_at,
                matched,
                record: r,
            });
        if self.clock.observe(lane, t, now).is_some() {
            self.expire(spec, out);
        }
        Ok(())
    }

    /// Lets go of the records no future record can match; under `kind: left`, a left
    /// record that never matched is emitted alone.
    fn expire(&mut self, spec: &Spec, out: &mut Emitter) {
        let watermark = self.clock.watermark();
        while let Some(entry) = self.leaving.first_entry() {
            if entry.key().0 >= watermark {
                break;
            }
            let seq = entry.key().1;
            let (side, key) = entry.remove();
            let held = &mut self.sides[side].by_key;
            let Some(records) = held.get_mut(&key) else {
                continue;
            };
            let Some(i) = records.iter().position(|b| b.seq == seq) else {
                continue;
            };
            let gone = records.remove(i);
            if records.is_empty() {
                held.remove(&key);
            }
            if side == 0 && spec.left_outer && !gone.matched {
                out.emit(spec.combine(&gone.record, None));
            }
        }
    }

    /// The input ended: every held record leaves.
    pub fn finish(&mut self, spec: &Spec, out: &mut Emitter) {
        self.clock.advance_to(i64::MAX);
        self.expire(spec, out);
    }

    pub fn rebuild_index(&mut self) {
        self.leaving = self
            .sides
            .iter()
            .enumerate()
            .flat_map(|(side, s)| {
                s.by_key.iter().flat_map(move |(k, records)| {
                    records
                        .iter()
                        .map(move |b| ((b.leaves_at, b.seq), (side, k.clone())))
                })
            })
            .collect();
    }
}
