//! The windowed stream–stream join's state: each side's records by key, held until no
//! record of the other side that is not late could still match them.
//!
//! Held records live in keyed state (the pipeline's state store), so a join over many
//! keys or a long `within` is not bounded by memory, and a checkpoint writes only the
//! records that arrived, matched or left since the last:
//! - `h` + side + encoded key + sequence → event time, leaving time, matched flag, the
//!   record as JSON: a record's partners are one range read of the other side's key;
//! - `l` + leaving time + sequence → the held record's key: an index by time, so
//!   letting go reads only what leaves.
//!
//! In memory: the newest held records (`recent`), where a record in a stream in time
//! order finds its partners without reading the store, and which keys each side may
//! hold (`presence`), so a record without a partner skips the range read otherwise.

use connectd_sdk::lanes::{LaneClock, LateCause};
use connectd_sdk::state::{Entries, KeyedState, MemoryState};
use connectd_sdk::{ordered, record_codec, ConnectorError, Emitter, Record};
use serde::{Deserialize, Serialize};

use super::presence::{prefix_hash, Presence};
use super::recent::{Held, Recent};
use super::Spec;
use crate::window::GroupKey;

const HELD: u8 = b'h';
const LEAVING: u8 = b'l';
/// Records read per range read.
const CHUNK: usize = 1024;
/// Where a held record's matched flag is in its value.
const MATCHED_AT: usize = 16;
const HEADER: usize = 17;

#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub within: i64,
    pub grace: i64,
}

#[derive(Debug)]
pub struct Windowed {
    /// The watermark over the lanes of both inputs.
    clock: LaneClock,
    seq: u64,
    state: Box<dyn KeyedState>,
    /// Leaving-index keys below this were deleted by earlier expiries (empty: unknown).
    /// A scan starts here: from the index's start it would read their deletions each
    /// time, until the store compacts them away (quadratic over a long backlog).
    expired_to: Vec<u8>,
    /// Which keys each side may hold.
    presence: Presence,
    /// The newest held records.
    recent: Recent,
    /// The latest event time of any record held (`i64::MIN`: none yet).
    newest: i64,
    /// The allowed out-of-orderness: records that far behind the newest still find
    /// their partners in memory.
    out_of_orderness: i64,
    /// The latest leaving time of any record held (`i64::MIN`: none yet).
    max_leaves_at: i64,
}

/// What a checkpoint holds of the join; the held records are in keyed state.
#[derive(Serialize, Deserialize)]
pub struct WindowedSnapshot {
    #[serde(flatten)]
    clock: LaneClock,
    seq: u64,
    /// The held records themselves when state lives in memory (no state store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Entries>,
    /// Checkpoints from before the state store: each side's held records.
    #[serde(default, skip_serializing)]
    sides: Vec<LegacySide>,
    /// The latest leaving time of any held record: until the watermark passes it,
    /// lookups after a restore read the store (the presence filters are not
    /// checkpointed). Absent from earlier versions' checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_leaves_at: Option<i64>,
    /// The latest event time of any held record: after a restore, the records in
    /// memory answer lookups only past it. Absent from earlier versions' checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<i64>,
}

#[derive(Deserialize)]
pub struct LegacySide {
    #[serde(with = "crate::window::pairs")]
    by_key: Vec<(GroupKey, Vec<LegacyHeld>)>,
}

#[derive(Deserialize)]
pub struct LegacyHeld {
    t: i64,
    seq: u64,
    leaves_at: i64,
    matched: bool,
    record: Record,
}

fn read_i64(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(b)
}

/// The prefix of `side`'s held records of `key`.
fn held_prefix(side: usize, key: &GroupKey) -> Vec<u8> {
    let mut k = vec![HELD, side as u8];
    ordered::encode_all(&key.0, &mut k);
    k
}

fn leaving_key(leaves_at: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(LEAVING);
    k.extend_from_slice(&ordered::i64_key(leaves_at));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!(
        "join: a held record in the state store cannot be read ({e}); reset the pipeline's state"
    ))
}

fn encode_held(t: i64, leaves_at: i64, matched: bool, r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&t.to_be_bytes());
    v.extend_from_slice(&leaves_at.to_be_bytes());
    v.push(u8::from(matched));
    record_codec::encode(r, &mut v);
    v
}

fn decode_record(v: &[u8]) -> Result<Record, ConnectorError> {
    record_codec::decode_stored(&v[HEADER..]).map_err(corrupt)
}

/// Emits the row of `r` (of `side`) and its partner.
fn emit_pair(spec: &Spec, side: usize, r: &Record, partner: &Record, out: &mut Emitter) {
    out.emit(if side == 0 {
        spec.combine(r, Some(partner))
    } else {
        spec.combine(partner, Some(r))
    });
}

/// Reads every entry in `[from, to)`, a chunk at a time.
fn for_each_in(
    state: &dyn KeyedState,
    from: &[u8],
    to: &[u8],
    mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), ConnectorError>,
) -> Result<(), ConnectorError> {
    let mut from = from.to_vec();
    loop {
        let entries = state.range(&from, to, CHUNK)?;
        let done = entries.len() < CHUNK;
        if let Some((last, _)) = entries.last() {
            from = last.clone();
            from.push(0);
        }
        for (k, v) in entries {
            f(k, v)?;
        }
        if done {
            return Ok(());
        }
    }
}

impl Windowed {
    /// A join of records at most `within` ms apart, held `within + grace` past their
    /// event time.
    pub fn new(within: i64, grace: i64) -> Self {
        Self {
            clock: LaneClock::new(0, None),
            seq: 0,
            state: Box::new(MemoryState::default()),
            expired_to: Vec::new(),
            presence: Presence::new(within, grace),
            recent: Recent::new(connectd_sdk::state::DEFAULT_MEMORY_BUDGET),
            newest: i64::MIN,
            out_of_orderness: 0,
            max_leaves_at: i64::MIN,
        }
    }

    pub fn attach(&mut self, mut state: Box<dyn KeyedState>) {
        // The store's filter of keys held answers `get`, and the join reads held
        // records by range (a left join's expiry reads records it knows are held).
        state.without_key_filter();
        self.recent = Recent::new(state.memory_budget());
        self.recent.reset(self.newest.saturating_add(1));
        self.state = state;
        self.expired_to.clear();
    }

    pub fn watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Sets the allowed out-of-orderness (at build and after a restore).
    pub fn configure(&mut self, out_of_orderness: i64) {
        self.clock.configure(out_of_orderness, None);
        self.out_of_orderness = out_of_orderness;
    }

    /// Why a record of `lane` at `t` was late.
    pub fn late_cause(&self, lane: u64, t: i64, grace: i64) -> LateCause {
        self.clock.late_cause(lane, t, grace)
    }

    /// The lanes `origin` has now.
    pub fn declare(
        &mut self,
        spec: &Spec,
        origin: u32,
        lanes: &[u64],
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        if self
            .clock
            .declare(origin, lanes, connectd_sdk::time::now_ms())
            .is_some()
        {
            self.expire(spec, out)?;
        }
        Ok(())
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
    ) -> Result<Result<(), Record>, ConnectorError> {
        let watermark = self.clock.watermark();
        if watermark != i64::MIN && t < watermark.saturating_sub(b.grace) {
            return Ok(Err(r));
        }
        let lane = r.lane;
        let mut matched = false;
        let partners = held_prefix(1 - side, &key);
        let mut newly_matched = Vec::new();
        if self.recent.covers(t.saturating_sub(b.within)) {
            // Every partner is at or after the floor: in memory.
            for h in self.recent.of(&partners) {
                if h.t.saturating_sub(t).saturating_abs() > b.within {
                    continue;
                }
                matched = true;
                emit_pair(spec, side, &r, &decode_record(&h.value)?, out);
                if spec.left_outer && side == 1 && h.value[MATCHED_AT] == 0 {
                    h.value[MATCHED_AT] = 1;
                    let mut k = partners.clone();
                    k.extend_from_slice(&h.seq.to_be_bytes());
                    self.state.put(&k, &h.value);
                }
            }
        } else if self.presence.may_hold(prefix_hash(&partners), t, watermark) {
            for_each_in(
                &*self.state,
                &partners,
                &ordered::prefix_end(&partners),
                |k, v| {
                    if v.len() < HEADER {
                        return Err(corrupt("a held record shorter than its header"));
                    }
                    if read_i64(&v).saturating_sub(t).saturating_abs() > b.within {
                        return Ok(());
                    }
                    matched = true;
                    emit_pair(spec, side, &r, &decode_record(&v)?, out);
                    // Only a left join reads the flag, of left records.
                    if spec.left_outer && side == 1 && v[MATCHED_AT] == 0 {
                        newly_matched.push((k, v));
                    }
                    Ok(())
                },
            )?;
        }
        for (k, mut v) in newly_matched {
            v[MATCHED_AT] = 1;
            self.state.put(&k, &v);
        }
        self.seq += 1;
        let leaves_at = t.saturating_add(b.within).saturating_add(b.grace);
        let mut held = held_prefix(side, &key);
        self.presence.insert(prefix_hash(&held), t, leaves_at);
        self.max_leaves_at = self.max_leaves_at.max(leaves_at);
        self.newest = self.newest.max(t);
        let value = encode_held(t, leaves_at, matched, &r);
        let prefix_len = held.len();
        held.extend_from_slice(&self.seq.to_be_bytes());
        self.state.put(&held, &value);
        let seq = self.seq;
        self.recent
            .insert(&held[..prefix_len], Held { t, seq, value });
        let keep = b
            .within
            .saturating_add(b.grace)
            .saturating_add(self.out_of_orderness);
        self.recent.advance(self.newest, keep);
        let leaving = leaving_key(leaves_at, self.seq);
        if leaving < self.expired_to {
            // Behind the last expiry (should the watermark ever move back): the next
            // expiry scans the index from its start again.
            self.expired_to.clear();
        }
        self.state.put(&leaving, &held);
        if self.clock.observe(lane, t, now).is_some() {
            self.expire(spec, out)?;
        }
        Ok(Ok(()))
    }

    /// Lets go of the records no future record can match; under `kind: left`, a left
    /// record that never matched is emitted alone.
    fn expire(&mut self, spec: &Spec, out: &mut Emitter) -> Result<(), ConnectorError> {
        self.presence.expire(self.clock.watermark());
        self.state
            .report_memory(self.presence.bytes() + self.recent.bytes());
        let upper = leaving_key(self.clock.watermark(), 0);
        let mut from = if self.expired_to.is_empty() {
            vec![LEAVING]
        } else {
            self.expired_to.clone()
        };
        if from >= upper {
            return Ok(());
        }
        loop {
            let leaving = self.state.range(&from, &upper, CHUNK)?;
            let done = leaving.len() < CHUNK;
            if let Some((last, _)) = leaving.last() {
                from = last.clone();
                from.push(0);
            }
            for (index, held) in leaving {
                self.state.delete(&index);
                // Only a left join reads what leaves (a left record never matched is
                // emitted alone); a point read per record was a third of a join's CPU.
                let left = held.get(1) == Some(&0);
                if left && spec.left_outer {
                    if let Some(v) = self.state.get(&held)? {
                        if v.get(MATCHED_AT) == Some(&0) {
                            out.emit(spec.combine(&decode_record(&v)?, None));
                        }
                    }
                }
                self.state.delete(&held);
            }
            if done {
                self.expired_to = upper;
                return Ok(());
            }
        }
    }

    /// The input ended: every held record leaves.
    pub fn finish(&mut self, spec: &Spec, out: &mut Emitter) -> Result<(), ConnectorError> {
        self.clock.advance_to(i64::MAX);
        self.expire(spec, out)
    }

    pub fn snapshot(&self) -> WindowedSnapshot {
        WindowedSnapshot {
            clock: self.clock.clone(),
            seq: self.seq,
            entries: self.state.export(),
            sides: Vec::new(),
            max_leaves_at: Some(self.max_leaves_at),
            newest: Some(self.newest),
        }
    }

    pub fn restore(&mut self, snap: WindowedSnapshot) -> Result<(), ConnectorError> {
        self.clock = snap.clock;
        self.seq = snap.seq;
        self.expired_to.clear();
        for (k, v) in snap.entries.into_iter().flatten() {
            self.state.put(&k, &v);
        }
        for (side, s) in snap.sides.into_iter().enumerate() {
            for (key, records) in s.by_key {
                for h in records {
                    let mut held = held_prefix(side, &key);
                    held.extend_from_slice(&h.seq.to_be_bytes());
                    self.state
                        .put(&held, &encode_held(h.t, h.leaves_at, h.matched, &h.record));
                    self.state.put(&leaving_key(h.leaves_at, h.seq), &held);
                }
            }
        }
        self.max_leaves_at = match snap.max_leaves_at {
            Some(m) => m,
            None => self.latest_leaving()?,
        };
        self.presence.reset();
        self.presence.unfiltered(self.max_leaves_at);
        // Without the newest event time (an earlier version), the latest leaving time
        // is past it (leaving = event time + within + grace).
        self.newest = snap.newest.unwrap_or(self.max_leaves_at);
        self.recent.reset(self.newest.saturating_add(1));
        Ok(())
    }

    /// The latest leaving time in the index (`i64::MIN`: nothing held): one read of the
    /// index, for a checkpoint of an earlier version, which does not say.
    fn latest_leaving(&self) -> Result<i64, ConnectorError> {
        let mut latest = i64::MIN;
        for_each_in(&*self.state, &[LEAVING], &[LEAVING + 1], |k, _| {
            if let Some(t) = k.get(1..).and_then(ordered::i64_from_key) {
                latest = latest.max(t);
            }
            Ok(())
        })?;
        Ok(latest)
    }
}
