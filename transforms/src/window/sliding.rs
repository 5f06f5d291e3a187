//! Sliding windows: one output row per record, aggregating the records of its key whose
//! event time lies in `(t - size, t]` — emitted once the watermark passes `t + grace`,
//! so out-of-order records within the allowance are included.
//!
//! The records live in keyed state (the pipeline's state store), so a checkpoint
//! writes only the records that arrived since the last one, however many keys hold
//! records:
//! - `i` + event time + arrival seq + the encoded group key → that record's
//!   accumulators (`acc_codec`): the index by time that firing reads up to the
//!   watermark, and expiry (a window's `size` later) reads again;
//! - `r` + the encoded group key + event time + arrival seq → the same, only while
//!   the records do not fit in memory ("spilled"): a row's window is then one range
//!   read of its key.
//!
//! While the records fit in the transform's memory budget, memory holds all of them
//! (a decoded cache by key, and the index), and the store only receives each record's
//! index entry: rows and expiry read memory, and expired entries are forgotten by a
//! bound at the next checkpoint (`KeyedState::forget_below`), with no deletion at
//! all. Past the budget every record in memory is written under `r` too and memory
//! is dropped; from then on keys are read back as rows need them (and kept while they
//! fit), the index is read from the store, and expiry deletes the `r` entries (only
//! below the window any later row reads, so those reads never step over them). Once
//! no record is left, memory holds all again. A restore loads the records into memory
//! when they fit.
//!
//! The index is read by cursors, so fired and expired entries are never read twice.
//! An accepted record is never behind a fired one (it is accepted only while
//! `t + grace` is past the watermark, and everything fired is not), so the firing
//! cursor never has to move back.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use connectd_sdk::state::KeyedState;
use connectd_sdk::{ordered, ConnectorError, Emitter, Value};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::{acc_codec, emit_row, pairs, Acc, GroupKey, WindowSpec};

/// Rows emitted per call while records fire; index entries read per range read.
const ROWS_PER_PART: usize = 4096;

const INDEX: u8 = b'i';
const RECORDS: u8 = b'r';

/// A record's accumulators, inline for up to two aggregates: a row's window reads
/// its records from the tree's nodes, not one allocation each.
type RecordAccs = SmallVec<[Acc; 2]>;

/// A cached key's records: (event time, arrival seq) → accumulators of the record.
type Records = BTreeMap<(i64, u64), RecordAccs>;

#[derive(Debug)]
pub struct Sliding {
    /// Records by key, decoded: while not spilled, every record not expired; when
    /// spilled, keys read back, each with every record the store holds for it.
    cache: FxHashMap<Vec<u8>, Records>,
    /// While not spilled, the index entries from `expired_to` on.
    index: BTreeSet<Vec<u8>>,
    resident_bytes: usize,
    budget: usize,
    /// The records did not fit in memory: the store holds each under `r` as well, and
    /// the index is read from it.
    spilled: bool,
    /// Every record at or before this event time has expired.
    expired_time: i64,
    /// A record's encoded key and value, reused.
    buffers: (Vec<u8>, Vec<u8>),
    /// A firing in progress (a part at a time): up to which watermark, and the next
    /// index key to read.
    firing: Option<(i64, Vec<u8>)>,
    /// Every index entry below this has fired.
    fired_to: Vec<u8>,
    /// Every record whose index entry is below this has expired.
    expired_to: Vec<u8>,
    /// No record still to fire, or to expire, is older than these (`i64::MIN` when
    /// not known, after a restore): a watermark below them reads nothing.
    earliest_unfired: i64,
    earliest_unexpired: i64,
}

impl Default for Sliding {
    fn default() -> Self {
        Self::with_budget(connectd_sdk::state::DEFAULT_MEMORY_BUDGET)
    }
}

/// What a checkpoint holds of a sliding window: its cursors (the records are in
/// keyed state). Checkpoints from before kept every record here.
#[derive(Default, Serialize, Deserialize)]
pub struct SlidingSnapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fired_to: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expired_to: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expired_time: Option<i64>,
    #[serde(default)]
    spilled: bool,
    /// Before keyed state: per key, (event time, arrival seq) → the aggregate inputs.
    #[serde(default, with = "pairs", skip_serializing)]
    by_key: Vec<(GroupKey, LegacyRows)>,
}

type LegacyRows = Vec<((i64, u64), Vec<Value>)>;

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!(
        "window: a sliding window's record in the state store cannot be read ({e}); reset the pipeline's state"
    ))
}

/// Approximate memory of a cached record: its key and accumulators (and theirs on
/// the heap past two), and its share of the tree's node.
fn record_bytes(accs: &RecordAccs) -> usize {
    let heap = if accs.spilled() {
        std::mem::size_of_val(&accs[..])
    } else {
        0
    };
    48 + std::mem::size_of::<RecordAccs>() + heap
}

/// Approximate memory of a cached key besides its records: its slot, its encoded
/// form, the tree's root.
fn key_bytes(encoded_key: &[u8]) -> usize {
    128 + encoded_key.len()
}

/// Approximate memory of an index entry in memory.
fn index_bytes(index: &[u8]) -> usize {
    48 + index.len()
}

/// The first index key of records at `t` or later.
fn index_at(t: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(INDEX);
    k.extend_from_slice(&ordered::i64_key(t));
    k
}

/// The first index key past every record at or before `t`.
fn index_after(t: i64) -> Vec<u8> {
    match t.checked_add(1) {
        Some(next) => index_at(next),
        None => vec![INDEX + 1],
    }
}

fn index_key(t: i64, seq: u64, encoded_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + encoded_key.len());
    k.push(INDEX);
    k.extend_from_slice(&ordered::i64_key(t));
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(encoded_key);
    k
}

fn record_key(encoded_key: &[u8], t: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + encoded_key.len());
    k.push(RECORDS);
    k.extend_from_slice(encoded_key);
    k.extend_from_slice(&ordered::i64_key(t));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn word(bytes: Option<&[u8]>) -> Result<[u8; 8], ConnectorError> {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .ok_or_else(|| corrupt("a key too short"))
}

/// An index entry's event time, arrival seq and encoded group key.
fn parse_index(k: &[u8]) -> Result<(i64, u64, &[u8]), ConnectorError> {
    let t = ordered::i64_from_key(&word(k.get(1..9))?).ok_or_else(|| corrupt("a bad time"))?;
    let seq = u64::from_be_bytes(word(k.get(9..17))?);
    Ok((t, seq, &k[17..]))
}

/// A record entry's event time and arrival seq (its last 16 bytes).
fn parse_record(k: &[u8]) -> Result<(i64, u64), ConnectorError> {
    let at = k.len().saturating_sub(16);
    let t =
        ordered::i64_from_key(&word(k.get(at..at + 8))?).ok_or_else(|| corrupt("a bad time"))?;
    Ok((t, u64::from_be_bytes(word(k.get(at + 8..))?)))
}

impl Sliding {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            cache: FxHashMap::default(),
            index: BTreeSet::new(),
            resident_bytes: 0,
            budget,
            spilled: false,
            expired_time: i64::MIN,
            buffers: Default::default(),
            firing: None,
            fired_to: vec![INDEX],
            expired_to: vec![INDEX],
            earliest_unfired: i64::MAX,
            earliest_unexpired: i64::MAX,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        watermark: i64,
        t: i64,
        key: &[&Value],
        inputs: &[Option<&Value>],
        seq: u64,
        out: &mut Emitter,
    ) -> Result<bool, ConnectorError> {
        // A firing in progress ends first: its bound was set before this record.
        while self.firing.is_some() {
            self.drain(spec, state, out)?;
        }
        if t.saturating_add(spec.grace) <= watermark {
            return Ok(false);
        }
        let mut accs: RecordAccs = spec.aggregates.iter().map(|a| a.new_acc()).collect();
        for (acc, input) in accs.iter_mut().zip(inputs) {
            acc.add(*input, seq);
        }
        // Buffers reused across records: only a new key and the index entry allocate.
        let (mut encoded_key, mut value) = std::mem::take(&mut self.buffers);
        encoded_key.clear();
        ordered::encode_all(key.iter().copied(), &mut encoded_key);
        value.clear();
        acc_codec::encode(&accs, &mut value);
        let index = index_key(t, seq, &encoded_key);
        state.put_unique(&index, &value);
        if self.spilled {
            state.put_unique(&record_key(&encoded_key, t, seq), &value);
        }
        self.earliest_unfired = self.earliest_unfired.min(t);
        self.earliest_unexpired = self.earliest_unexpired.min(t);
        self.remember(state, &encoded_key, index, t, seq, accs);
        self.buffers = (encoded_key, value);
        Ok(true)
    }

    /// Keeps a record in memory: always while not spilled; when spilled, only if its
    /// key is cached (a key not cached is read whole when a row needs it).
    fn remember(
        &mut self,
        state: &mut dyn KeyedState,
        encoded_key: &[u8],
        index: Vec<u8>,
        t: i64,
        seq: u64,
        accs: RecordAccs,
    ) {
        let records = match self.cache.get_mut(encoded_key) {
            Some(records) => records,
            None if self.spilled => return,
            None => {
                self.resident_bytes += key_bytes(encoded_key);
                self.cache.entry(encoded_key.to_vec()).or_default()
            }
        };
        self.resident_bytes += record_bytes(&accs);
        records.insert((t, seq), accs);
        if !self.spilled {
            self.resident_bytes += index_bytes(&index);
            self.index.insert(index);
        }
        if self.resident_bytes > self.budget {
            self.spill(state);
        }
    }

    /// Drops memory, the first time writing every record in it under `r` (the store
    /// had only their index entries).
    fn spill(&mut self, state: &mut dyn KeyedState) {
        if !self.spilled {
            let mut value = Vec::new();
            for (encoded_key, records) in &self.cache {
                for (&(t, seq), accs) in records {
                    value.clear();
                    acc_codec::encode(accs, &mut value);
                    state.put_unique(&record_key(encoded_key, t, seq), &value);
                }
            }
        }
        self.cache.clear();
        self.index.clear();
        self.resident_bytes = 0;
        self.spilled = true;
    }

    /// Index keys in `[from, to)`, at most `limit`: from memory unless spilled.
    fn index_part(
        &self,
        state: &dyn KeyedState,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, ConnectorError> {
        if self.spilled {
            let part = state.range(from, to, limit)?;
            return Ok(part.into_iter().map(|(k, _)| k).collect());
        }
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .index
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .cloned()
            .collect())
    }

    /// The event time of the first index entry in `[from, ..)`, or `i64::MAX` for none.
    fn first_time(&self, state: &dyn KeyedState, from: &[u8]) -> Result<i64, ConnectorError> {
        match self.index_part(state, from, &[INDEX + 1], 1)?.first() {
            Some(k) => parse_index(k).map(|(t, _, _)| t),
            None => Ok(i64::MAX),
        }
    }

    /// Fires the records the watermark has passed (a first part of them), then
    /// expires those no future row can include.
    pub fn fire(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        watermark: i64,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        match &mut self.firing {
            Some((to, _)) => *to = (*to).max(watermark),
            None if watermark.saturating_sub(spec.grace) < self.earliest_unfired => {
                return self.expire(spec, state, watermark);
            }
            None => self.firing = Some((watermark, self.fired_to.clone())),
        }
        self.drain(spec, state, out).map(|_| ())
    }

    /// Emits up to one part of the records due; true while more remains. The last
    /// part expires what the watermark allows.
    pub fn drain(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        out: &mut Emitter,
    ) -> Result<bool, ConnectorError> {
        let Some((watermark, next)) = self.firing.take() else {
            return Ok(false);
        };
        let upper = index_after(watermark.saturating_sub(spec.grace));
        let due = self.index_part(&*state, &next, &upper, ROWS_PER_PART)?;
        for index in &due {
            let (t, _, encoded_key) = parse_index(index)?;
            let accs = self.window_of(spec, state, encoded_key, t)?;
            let key = GroupKey(
                ordered::decode_all(encoded_key)
                    .map_err(corrupt)?
                    .into_iter()
                    .collect(),
            );
            emit_row(
                out,
                spec,
                t.saturating_sub(spec.size),
                t,
                &key,
                accs.iter().map(Acc::value),
            );
        }
        if due.len() == ROWS_PER_PART {
            let mut next = due.last().cloned().unwrap_or_default();
            next.push(0);
            self.firing = Some((watermark, next));
            return Ok(true);
        }
        self.earliest_unfired = self.first_time(&*state, &upper)?;
        self.fired_to = upper;
        self.expire(spec, state, watermark)?;
        Ok(false)
    }

    /// The aggregates over the records of a key in `(t - size, t]`.
    fn window_of(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        encoded_key: &[u8],
        t: i64,
    ) -> Result<Vec<Acc>, ConnectorError> {
        if !self.cache.contains_key(encoded_key) {
            if !self.spilled {
                return Err(corrupt("a record its key does not hold"));
            }
            self.load(spec, &*state, encoded_key)?;
        }
        let mut accs: Vec<Acc> = spec.aggregates.iter().map(|a| a.new_acc()).collect();
        let lo = t.saturating_sub(spec.size).saturating_add(1);
        if let Some(records) = self.cache.get(encoded_key) {
            for one in records.range((lo, 0)..=(t, u64::MAX)).map(|(_, a)| a) {
                for (acc, o) in accs.iter_mut().zip(one) {
                    acc.merge(o);
                }
            }
        }
        if self.resident_bytes > self.budget {
            self.spill(state);
        }
        Ok(accs)
    }

    /// Reads every record of a key the store holds under `r` into the cache (only
    /// those not expired: a range read from there never steps over the deleted ones).
    fn load(
        &mut self,
        spec: &WindowSpec,
        state: &dyn KeyedState,
        encoded_key: &[u8],
    ) -> Result<(), ConnectorError> {
        let mut from = record_key(encoded_key, self.expired_time.saturating_add(1), 0);
        let mut to = vec![RECORDS];
        to.extend_from_slice(encoded_key);
        to = ordered::prefix_end(&to);
        let mut records = Records::new();
        let mut bytes = key_bytes(encoded_key);
        loop {
            let part = state.range(&from, &to, ROWS_PER_PART)?;
            for (k, value) in &part {
                let accs: RecordAccs = acc_codec::decode(value, spec.aggregates.len())
                    .map_err(corrupt)?
                    .into_iter()
                    .collect();
                bytes += record_bytes(&accs);
                records.insert(parse_record(k)?, accs);
            }
            match part.last() {
                Some((last, _)) if part.len() == ROWS_PER_PART => {
                    from = last.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        self.resident_bytes += bytes;
        self.cache.insert(encoded_key.to_vec(), records);
        Ok(())
    }

    /// Expires the records at or before `watermark - grace - size`: a record accepted
    /// later is after `watermark - grace`, so its window cannot reach back to them.
    /// Their index entries are forgotten at the next checkpoint; spilled records are
    /// deleted.
    fn expire(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        watermark: i64,
    ) -> Result<(), ConnectorError> {
        if watermark == i64::MAX {
            // The input has ended and every row is out: the state goes at once (a
            // million records deleted one by one would fill the last checkpoint).
            state.forget_below(&[RECORDS + 1]);
            self.expired_to = vec![INDEX + 1];
            self.earliest_unexpired = i64::MAX;
            self.expired_time = i64::MAX;
            self.cache.clear();
            self.index.clear();
            self.resident_bytes = 0;
            self.spilled = false;
            return Ok(());
        }
        let keep_after = watermark
            .saturating_sub(spec.grace)
            .saturating_sub(spec.size);
        if keep_after < self.earliest_unexpired {
            return Ok(());
        }
        // Only fired records (all of these are: they are older than anything due).
        let upper = index_after(keep_after).min(self.fired_to.clone());
        loop {
            let part = self.index_part(&*state, &self.expired_to, &upper, ROWS_PER_PART)?;
            for index in &part {
                let (t, seq, encoded_key) = parse_index(index)?;
                if self.spilled {
                    state.delete_unique(&record_key(encoded_key, t, seq));
                }
                self.forget_record(encoded_key, t, seq);
            }
            match part.last() {
                Some(last) if part.len() == ROWS_PER_PART => {
                    self.expired_to = last.clone();
                    self.expired_to.push(0);
                }
                _ => break,
            }
        }
        let kept = self.index.split_off(upper.as_slice());
        for gone in std::mem::replace(&mut self.index, kept) {
            self.resident_bytes = self.resident_bytes.saturating_sub(index_bytes(&gone));
        }
        self.earliest_unexpired = self.first_time(&*state, &upper)?;
        self.expired_to = upper;
        self.expired_time = self.expired_time.max(keep_after);
        if self.earliest_unexpired == i64::MAX {
            // No record left anywhere: memory (empty) holds all again.
            self.spilled = false;
        }
        Ok(())
    }

    fn forget_record(&mut self, encoded_key: &[u8], t: i64, seq: u64) {
        let Some(records) = self.cache.get_mut(encoded_key) else {
            return;
        };
        if let Some(accs) = records.remove(&(t, seq)) {
            self.resident_bytes = self.resident_bytes.saturating_sub(record_bytes(&accs));
        }
        if records.is_empty() {
            self.cache.remove(encoded_key);
            self.resident_bytes = self.resident_bytes.saturating_sub(key_bytes(encoded_key));
        }
    }

    /// What a checkpoint holds: the cursors; the expired index entries are forgotten.
    pub fn persist(&mut self, state: &mut dyn KeyedState) -> SlidingSnapshot {
        state.forget_below(&self.expired_to);
        state.report_memory(self.resident_bytes);
        SlidingSnapshot {
            fired_to: Some(self.fired_to.clone()),
            expired_to: Some(self.expired_to.clone()),
            expired_time: Some(self.expired_time),
            spilled: self.spilled,
            by_key: Vec::new(),
        }
    }

    /// Back to a checkpoint: its records are read into memory when they fit. One
    /// from before keyed state holds the records themselves and no cursors: what had
    /// fired follows from its watermark.
    pub fn restore(
        &mut self,
        spec: &WindowSpec,
        snap: SlidingSnapshot,
        watermark: i64,
        state: &mut dyn KeyedState,
    ) -> Result<(), ConnectorError> {
        *self = Self::with_budget(self.budget);
        self.earliest_unfired = i64::MIN;
        self.earliest_unexpired = i64::MIN;
        self.fired_to = snap
            .fired_to
            .unwrap_or_else(|| index_after(watermark.saturating_sub(spec.grace)));
        if let Some(expired_to) = snap.expired_to {
            self.expired_to = expired_to;
        }
        if let Some(expired_time) = snap.expired_time {
            self.expired_time = expired_time;
        }
        if !snap.by_key.is_empty() {
            // Written as spilled: both entries of each record.
            self.spilled = true;
            let mut value = Vec::new();
            for (key, rows) in snap.by_key {
                let mut encoded_key = Vec::with_capacity(16);
                ordered::encode_all(&key.0, &mut encoded_key);
                for ((t, seq), values) in rows {
                    // As the records were aggregated then: a counted field as its value.
                    let accs: Vec<Acc> = spec
                        .aggregates
                        .iter()
                        .zip(&values)
                        .map(|(a, v)| {
                            let mut acc = a.new_acc();
                            acc.add(a.field.as_ref().map(|_| v), seq);
                            acc
                        })
                        .collect();
                    value.clear();
                    acc_codec::encode(&accs, &mut value);
                    state.put_unique(&index_key(t, seq, &encoded_key), &value);
                    state.put_unique(&record_key(&encoded_key, t, seq), &value);
                }
            }
            return Ok(());
        }
        if snap.spilled {
            self.spilled = true;
            return Ok(());
        }
        self.load_all(spec, state)
    }

    /// Reads every record not expired from the index into memory; past the budget,
    /// spills (which writes them under `r`) and goes on writing the rest there.
    fn load_all(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
    ) -> Result<(), ConnectorError> {
        let mut from = self.expired_to.clone();
        loop {
            let part = state.range(&from, &[INDEX + 1], ROWS_PER_PART)?;
            for (index, value) in &part {
                let (t, seq, encoded_key) = parse_index(index)?;
                if self.spilled {
                    state.put_unique(&record_key(encoded_key, t, seq), value);
                } else {
                    let accs = acc_codec::decode(value, spec.aggregates.len())
                        .map_err(corrupt)?
                        .into_iter()
                        .collect();
                    self.remember(state, encoded_key, index.clone(), t, seq, accs);
                }
            }
            match part.last() {
                Some((last, _)) if part.len() == ROWS_PER_PART => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }
}

/// The form checkpoints had before sliding windows moved to keyed state (`by_key` in
/// the snapshot), rebuilt from the entries of a `MemoryState`: for aggregates whose
/// value over one record is that record's input (not `count_distinct`).
#[cfg(test)]
pub(super) fn legacy_by_key(
    entries: &[(Vec<u8>, Vec<u8>)],
    aggregates: usize,
) -> serde_json::Value {
    let mut by_key = BTreeMap::<Vec<u8>, LegacyRows>::new();
    for (k, v) in entries.iter().filter(|(k, _)| k.first() == Some(&INDEX)) {
        let (t, seq, encoded_key) = parse_index(k).unwrap();
        let values = acc_codec::decode(v, aggregates)
            .unwrap()
            .iter()
            .map(Acc::value)
            .collect();
        by_key
            .entry(encoded_key.to_vec())
            .or_default()
            .push(((t, seq), values));
    }
    let by_key: Vec<(GroupKey, LegacyRows)> = by_key
        .into_iter()
        .map(|(k, rows)| {
            let key = GroupKey(ordered::decode_all(&k).unwrap().into_iter().collect());
            (key, rows)
        })
        .collect();
    serde_json::to_value(by_key).unwrap()
}
