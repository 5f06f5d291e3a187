//! Session windows: per key, records closer than `gap` belong to one session; a
//! record that bridges two sessions merges them.
//!
//! The sessions live in keyed state (the pipeline's state store), so a checkpoint
//! writes only the keys whose sessions changed, however many users hold a session open:
//! - `s` + the encoded group key → that key's open sessions (usually one);
//! - `c` + close time + the encoded group key → that session (a key's sessions are
//!   at least a gap apart, so they close at different times; a key of up to 20 bytes is
//!   stored inline, without an allocation): the
//!   index that closing reads up to the watermark (a range read, never a scan of every
//!   key). It holds the session too, so that when the input ends, a million closing
//!   sessions are read in one pass, not by a million point reads.
//!
//! Keys being updated stay decoded in memory up to a budget; their sessions and index
//! entries are written at a checkpoint, before a close reads the index, and past the
//! budget (then every key is written and dropped from memory).
//!
//! Closing reads the index from where the previous close stopped up to the watermark,
//! emitting in bounded parts (see `Transform::resume`), so a watermark that closes a
//! million sessions at once does not hold all their rows in memory. Closed index keys
//! are not deleted one by one (a range read would step over each deletion again): the
//! next close starts past them, and a checkpoint forgets them all at once
//! (`KeyedState::forget_below`).

use connectd_sdk::state::KeyedState;
use connectd_sdk::{ordered, ConnectorError, Emitter, Value};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{acc_codec, emit_row, pairs, Acc, GroupKey, WindowSpec};

/// Rows emitted per call while sessions close.
const ROWS_PER_PART: usize = 4096;

const SESSIONS: u8 = b's';
const CLOSING: u8 = b'c';

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    /// Earliest and latest event time in the session; it spans `[first, last + gap)`.
    first: i64,
    last: i64,
    accs: Vec<Acc>,
}

/// A key's open sessions, decoded, and the index entries the store has for them.
#[derive(Debug)]
struct Cached {
    sessions: Vec<Session>,
    /// Close times of the sessions as last written to the store: its index entries.
    stored: Vec<i64>,
    /// Changed since written.
    dirty: bool,
}

#[derive(Debug)]
pub struct Sessions {
    /// Keys being updated, decoded, up to the memory budget: a key's sessions and
    /// their index entries are written at a checkpoint, at a close or past the budget
    /// (then every key is written and dropped), not at every record.
    cache: FxHashMap<Vec<u8>, Cached>,
    resident_bytes: usize,
    budget: usize,
    /// A close in progress (a part at a time): up to which watermark, and the next
    /// index key to read.
    closing: Option<(i64, Vec<u8>)>,
    /// Every index key below this is of a closed session.
    closed_to: Vec<u8>,
    /// No session closes before this (`i64::MIN` when not known, after a restore): a
    /// watermark below it reads nothing.
    earliest: i64,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_budget(connectd_sdk::state::DEFAULT_MEMORY_BUDGET)
    }
}

/// Approximate memory of a cached key, for the budget: besides what it holds, its slot
/// in the map and four allocations (measured: a million keys of one session with two
/// aggregates took about 300 bytes each).
fn approx_bytes(key: &[u8], c: &Cached) -> usize {
    let accs: usize = c
        .sessions
        .iter()
        .map(|s| s.accs.len() * std::mem::size_of::<Acc>())
        .sum();
    160 + key.len() + c.sessions.len() * std::mem::size_of::<Session>() + accs + c.stored.len() * 8
}

fn closes(spec: &WindowSpec, sessions: &[Session]) -> Vec<i64> {
    sessions.iter().map(|s| close_at(spec, s)).collect()
}

/// What a checkpoint holds of the sessions: nothing, they are in keyed state.
/// Checkpoints from before kept every key's sessions here.
#[derive(Default, Serialize, Deserialize)]
pub struct SessionsSnapshot {
    #[serde(default, with = "pairs", skip_serializing)]
    by_key: Vec<(GroupKey, Vec<Session>)>,
}

fn close_at(spec: &WindowSpec, s: &Session) -> i64 {
    s.last.saturating_add(spec.gap).saturating_add(spec.grace)
}

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!(
        "window: a session in the state store cannot be read ({e}); reset the pipeline's state"
    ))
}

fn sessions_key<'v>(key: impl IntoIterator<Item = &'v Value>) -> Vec<u8> {
    let mut k = vec![SESSIONS];
    ordered::encode_all(key, &mut k);
    k
}

/// The index entry of a session of the key encoded as `key` (past its tag byte).
fn closing_key(close: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(CLOSING);
    k.extend_from_slice(&ordered::i64_key(close));
    k.extend_from_slice(key);
    k
}

/// Each session: first and last (8 bytes each), the length of its accumulators (4),
/// then those (`acc_codec`).
fn encode(sessions: &[Session]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * sessions.len());
    let mut accs = Vec::new();
    for s in sessions {
        out.extend_from_slice(&s.first.to_be_bytes());
        out.extend_from_slice(&s.last.to_be_bytes());
        accs.clear();
        acc_codec::encode(&s.accs, &mut accs);
        out.extend_from_slice(&(accs.len() as u32).to_be_bytes());
        out.extend_from_slice(&accs);
    }
    out
}

fn decode(mut bytes: &[u8], aggregates: usize) -> Result<Vec<Session>, ConnectorError> {
    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Result<&'b [u8], ConnectorError> {
        if bytes.len() < n {
            return Err(corrupt("a truncated session"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    let word = |b: &[u8]| <[u8; 8]>::try_from(b).map(i64::from_be_bytes);
    let mut sessions = Vec::with_capacity(1);
    while !bytes.is_empty() {
        let first = word(take(&mut bytes, 8)?).map_err(corrupt)?;
        let last = word(take(&mut bytes, 8)?).map_err(corrupt)?;
        let len = <[u8; 4]>::try_from(take(&mut bytes, 4)?).map_err(corrupt)?;
        let accs = take(&mut bytes, u32::from_be_bytes(len) as usize)?;
        let accs = acc_codec::decode(accs, aggregates).map_err(corrupt)?;
        sessions.push(Session { first, last, accs });
    }
    Ok(sessions)
}

/// Stores `key`'s sessions (`at`: their key), or forgets the key when none is left.
fn store(state: &mut dyn KeyedState, at: &[u8], sessions: &[Session]) {
    if sessions.is_empty() {
        state.delete(at);
    } else {
        state.put(at, &encode(sessions));
    }
}

impl Sessions {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            cache: FxHashMap::default(),
            resident_bytes: 0,
            budget,
            closing: None,
            closed_to: vec![CLOSING],
            earliest: i64::MAX,
        }
    }

    /// The cached sessions of the key stored at `at`, read from the store if needed.
    fn load(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        at: &[u8],
    ) -> Result<&mut Cached, ConnectorError> {
        if !self.cache.contains_key(at) {
            let sessions = match state.get(at)? {
                Some(bytes) => decode(&bytes, spec.aggregates.len())?,
                None => Vec::new(),
            };
            let cached = Cached {
                stored: closes(spec, &sessions),
                sessions,
                dirty: false,
            };
            self.resident_bytes += approx_bytes(at, &cached);
            self.cache.insert(at.to_vec(), cached);
        }
        self.cache
            .get_mut(at)
            .ok_or_else(|| corrupt("a cached key vanished"))
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
        // A record must not merge into a session its watermark already closed.
        while self.closing.is_some() {
            self.drain(spec, state, out)?;
        }
        let at = sessions_key(key.iter().copied());
        let cached = self.load(spec, state, &at)?;
        let before = approx_bytes(&at, cached);
        // The new record's own window [t, t + gap) merges with every session it meets.
        let meets = |s: &Session| {
            t < s.last.saturating_add(spec.gap) && s.first < t.saturating_add(spec.gap)
        };
        let late = t.saturating_add(spec.gap).saturating_add(spec.grace) <= watermark;
        if late && !cached.sessions.iter().any(meets) {
            if cached.sessions.is_empty() {
                if let Some(gone) = self.cache.remove(&at) {
                    self.resident_bytes =
                        self.resident_bytes.saturating_sub(approx_bytes(&at, &gone));
                }
            }
            return Ok(false);
        }
        let mut merged = Session {
            first: t,
            last: t,
            accs: spec.aggregates.iter().map(|a| a.new_acc()).collect(),
        };
        for (acc, input) in merged.accs.iter_mut().zip(inputs) {
            acc.add(*input, seq);
        }
        let mut i = 0;
        while i < cached.sessions.len() {
            if meets(&cached.sessions[i]) {
                let s = cached.sessions.swap_remove(i);
                merged.first = merged.first.min(s.first);
                merged.last = merged.last.max(s.last);
                for (a, b) in merged.accs.iter_mut().zip(s.accs) {
                    a.merge(&b);
                }
            } else {
                i += 1;
            }
        }
        let close = close_at(spec, &merged);
        if spec.emit_changes {
            let end = merged.last.saturating_add(spec.gap);
            emit_row(
                out,
                spec,
                merged.first,
                end,
                &GroupKey::from_refs(key),
                merged.accs.iter().map(Acc::value),
            );
        }
        cached.sessions.push(merged);
        cached.dirty = true;
        let after = approx_bytes(&at, cached);
        self.resident_bytes = (self.resident_bytes + after).saturating_sub(before);
        self.earliest = self.earliest.min(close);
        if self.resident_bytes > self.budget {
            self.flush(spec, state);
            self.cache.clear();
            self.resident_bytes = 0;
        }
        Ok(true)
    }

    /// Writes every changed key's sessions and their index entries to the store.
    fn flush(&mut self, spec: &WindowSpec, state: &mut dyn KeyedState) {
        for (at, c) in self.cache.iter_mut().filter(|(_, c)| c.dirty) {
            let now = closes(spec, &c.sessions);
            let encoded_key = &at[1..];
            for &close in c.stored.iter().filter(|e| !now.contains(e)) {
                state.delete_unique(&closing_key(close, encoded_key));
            }
            // Every entry again: a session's accumulators may have changed, not its times.
            for (s, &close) in c.sessions.iter().zip(&now) {
                state.put_unique(
                    &closing_key(close, encoded_key),
                    &encode(std::slice::from_ref(s)),
                );
            }
            store(state, at, &c.sessions);
            c.stored = now;
            c.dirty = false;
        }
    }

    /// Closes the sessions the watermark has passed and emits a first part of them.
    pub fn fire(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        watermark: i64,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        match &mut self.closing {
            Some((to, _)) => *to = (*to).max(watermark),
            None if watermark < self.earliest => return Ok(()),
            None => {
                // The index is read from the store: it must know every change.
                self.flush(spec, state);
                self.closing = Some((watermark, self.closed_to.clone()));
            }
        }
        self.drain(spec, state, out).map(|_| ())
    }

    /// Emits up to one part of the closing sessions; true while more remains.
    pub fn drain(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        out: &mut Emitter,
    ) -> Result<bool, ConnectorError> {
        let Some((watermark, next)) = self.closing.take() else {
            return Ok(false);
        };
        // Index keys up to and including the watermark's close time.
        let upper = match watermark.checked_add(1) {
            Some(after) => {
                let mut k = vec![CLOSING];
                k.extend_from_slice(&ordered::i64_key(after));
                k
            }
            None => vec![CLOSING + 1],
        };
        let due = state.range(&next, &upper, ROWS_PER_PART)?;
        // The input has ended: every session closes, and the state is dropped whole
        // after (a million closing sessions deleted one by one filled the last
        // checkpoint with a million deletions).
        let last_close = watermark == i64::MAX;
        let mut at = Vec::new();
        for (index, value) in &due {
            let close = index
                .get(1..9)
                .and_then(ordered::i64_from_key)
                .ok_or_else(|| corrupt("a closing index entry too short"))?;
            let encoded_key = &index[9..];
            // The session as of the last write, which the close began with.
            let s = decode(value, spec.aggregates.len())?
                .pop()
                .ok_or_else(|| corrupt("a closing index entry without its session"))?;
            // When the input has ended nothing is written: all of it is forgotten at
            // once below.
            if !last_close {
                at.clear();
                at.push(SESSIONS);
                at.extend_from_slice(encoded_key);
                let cached = self.load(spec, state, &at)?;
                let before = approx_bytes(&at, cached);
                let Some(pos) = cached.sessions.iter().position(|h| h.first == s.first) else {
                    return Err(corrupt("a closing session its key does not hold"));
                };
                cached.sessions.swap_remove(pos);
                cached.stored.retain(|&e| e != close);
                store(state, &at, &cached.sessions);
                let after = if cached.sessions.is_empty() {
                    self.cache.remove(&at[..]);
                    0
                } else {
                    approx_bytes(&at, cached)
                };
                self.resident_bytes = (self.resident_bytes + after).saturating_sub(before);
            }
            if !spec.emit_changes {
                let key = GroupKey(
                    ordered::decode_all(encoded_key)
                        .map_err(corrupt)?
                        .into_iter()
                        .collect(),
                );
                let end = s.last.saturating_add(spec.gap);
                emit_row(out, spec, s.first, end, &key, s.accs.iter().map(Acc::value));
            }
        }
        if due.len() == ROWS_PER_PART {
            let mut next = due.last().map(|(k, _)| k.clone()).unwrap_or_default();
            next.push(0);
            self.closing = Some((watermark, next));
            return Ok(true);
        }
        if last_close {
            state.forget_below(&[SESSIONS + 1]);
            self.cache.clear();
            self.resident_bytes = 0;
        }
        // Every session closing up to the watermark is out.
        self.earliest = match state.range(&upper, &[CLOSING + 1], 1)?.first() {
            Some((index, _)) => index
                .get(1..9)
                .and_then(ordered::i64_from_key)
                .ok_or_else(|| corrupt("a closing index entry too short"))?,
            None => i64::MAX,
        };
        self.closed_to = upper;
        if self.resident_bytes > self.budget {
            self.cache.clear();
            self.resident_bytes = 0;
        }
        Ok(false)
    }

    /// What a checkpoint holds: the sessions themselves are in keyed state, written
    /// now if changed, where the closed ones' index keys are forgotten with it.
    pub fn persist(&mut self, spec: &WindowSpec, state: &mut dyn KeyedState) -> SessionsSnapshot {
        self.flush(spec, state);
        state.forget_below(&self.closed_to);
        state.report_memory(self.resident_bytes);
        SessionsSnapshot::default()
    }

    /// Back to a checkpoint; one from before keyed state has its sessions with it.
    pub fn restore(
        &mut self,
        spec: &WindowSpec,
        snap: SessionsSnapshot,
        state: &mut dyn KeyedState,
    ) -> Result<(), ConnectorError> {
        *self = Self::with_budget(self.budget);
        self.earliest = i64::MIN;
        for (key, sessions) in snap.by_key {
            let at = sessions_key(&key.0);
            for s in &sessions {
                state.put_unique(
                    &closing_key(close_at(spec, s), &at[1..]),
                    &encode(std::slice::from_ref(s)),
                );
            }
            store(state, &at, &sessions);
        }
        Ok(())
    }
}

/// The form checkpoints had before sessions moved to keyed state (`by_key` in the
/// snapshot), rebuilt from the entries of a `MemoryState`.
#[cfg(test)]
pub(super) fn legacy_by_key(
    entries: &[(Vec<u8>, Vec<u8>)],
    aggregates: usize,
) -> serde_json::Value {
    let by_key: Vec<(GroupKey, Vec<Session>)> = entries
        .iter()
        .filter(|(k, _)| k.first() == Some(&SESSIONS))
        .map(|(k, v)| {
            let key = GroupKey(ordered::decode_all(&k[1..]).unwrap().into_iter().collect());
            (key, decode(v, aggregates).unwrap())
        })
        .collect();
    serde_json::to_value(by_key).unwrap()
}
