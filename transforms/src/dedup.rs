//! `dedup`: one record per key within a retention, as ksqlDB's `LATEST_BY_OFFSET`
//! tables (`keep: latest`) or a duplicate filter (`keep: first`).
//!
//! `keep: latest` passes a record when it differs from the key's current one (in the
//! `compare` fields, else in its whole value; a repeat is a duplicate); `keep: first` passes only a key's first record. With
//! `emit: final` nothing passes at once: each key's kept record is emitted when the key
//! expires, or when the input ends.
//!
//! A key expires `retention` after its kept record: by the watermark (the newest event
//! time seen − `max_out_of_orderness`) when `time:` is set, else by the wall clock.
//!
//! State lives in a [`KeyedState`]: the pipeline's state store when the runtime offers
//! one (checkpointed incrementally; only the clock, a sequence number and the live
//! segments go into the snapshot), else memory. Two layouts:
//! - **Segments** (`emit: changes`): the kept entry (with its record only for `keep:
//!   latest`) under `s<segment><key>`, the segment being its expiry time divided by a
//!   width of half of `retention + max_out_of_orderness`, as Kafka Streams' segmented
//!   stores. A lookup reads the few live segments, newest first; an entry found past
//!   its expiry counts as absent; a segment whose whole span the clock has passed is
//!   forgotten at once (`forget_below`). One write per new key, no read or delete at
//!   expiry: with an index, a million new keys were two million writes.
//! - **Index** (`emit: final`, and state from before 2026-12-03): per key `k<key>` →
//!   the kept entry; an index by expiry time `x<expires><seq>` → key, so expiring
//!   reads the keys due (their records are emitted then, in expiry order) and no other.

use std::time::Duration;

use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::record::take_records;
use connectd_sdk::state::{KeyedState, MemoryState};
use connectd_sdk::time::now_ms;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Record, Transform,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::keys::{field_list, key_values};
use crate::time::{TimeSource, TimeUnit};
use crate::window::GroupKey;

#[derive(Debug)]
pub struct Dedup {
    key: Vec<FieldPath>,
    keep_latest: bool,
    /// The fields that tell a change from a repeat (empty: the whole value).
    compare: Vec<FieldPath>,
    emit_final: bool,
    retention: i64,
    time: TimeSource,
    out_of_orderness: i64,
    meta: Meta,
    state: Box<dyn KeyedState>,
    /// No index entry expires before this (a lower bound; `i64::MIN`: unknown), so
    /// most records need no look at the index at all.
    earliest: i64,
    /// `keep`'s buffer for an entry's key and value, kept for its capacity.
    entry: Vec<u8>,
}

/// The segmented layout's bookkeeping, in the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segments {
    /// Milliseconds of expiry time per segment.
    width: i64,
    /// Segments written and not forgotten, oldest first (a handful: the clock's and
    /// the few after it, plus any a record dated far ahead opened).
    live: std::collections::BTreeSet<i64>,
    /// Segments below this are forgotten.
    forgotten: i64,
}

impl Segments {
    fn new(retention: i64, out_of_orderness: i64) -> Self {
        Self {
            width: (retention.saturating_add(out_of_orderness) / 2).max(1),
            live: Default::default(),
            forgotten: i64::MIN,
        }
    }

    fn of(&self, expires: i64) -> i64 {
        expires.div_euclid(self.width)
    }
}

/// What the snapshot holds besides the keyed state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Meta {
    /// The watermark (event time) or the last wall-clock reading (processing time).
    clock: i64,
    seq: u64,
    /// The segmented layout; `None`: the index layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segments: Option<Segments>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Record>,
    expires: i64,
    seq: u64,
}

/// The first byte of a kept entry in binary form; earlier versions stored JSON (`{`).
const BINARY_KEPT: u8 = 0xff;

impl Kept {
    /// `0xff`, expiry and sequence (big-endian), then the record if kept
    /// (`record_codec`; JSON before 2026-12-03), appended to `bytes`: 17 bytes for
    /// `keep: first`, which the store keeps without an allocation.
    fn encode_into(&self, bytes: &mut Vec<u8>) {
        bytes.push(BINARY_KEPT);
        bytes.extend_from_slice(&self.expires.to_be_bytes());
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        if let Some(r) = &self.record {
            connectd_sdk::record_codec::encode(r, bytes);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, ConnectorError> {
        let Some((&BINARY_KEPT, rest)) = bytes.split_first() else {
            return serde_json::from_slice(bytes).map_err(corrupt);
        };
        let (Some(expires), Some(seq)) = (rest.get(..8), rest.get(8..16)) else {
            return Err(corrupt(format!("{} bytes, too short", bytes.len())));
        };
        let be = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            a
        };
        let record = match &rest[16..] {
            [] => None,
            kept => Some(connectd_sdk::record_codec::decode_stored(kept).map_err(corrupt)?),
        };
        Ok(Self {
            record,
            expires: i64::from_be_bytes(be(expires)),
            seq: u64::from_be_bytes(be(seq)),
        })
    }
}

/// The snapshot: `entries` only when the state lives in memory.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    #[serde(flatten)]
    meta: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Round 1's whole-state snapshot (`keys`), read for an upgrade.
    #[serde(default, with = "crate::window::pairs", skip_serializing)]
    keys: std::collections::HashMap<GroupKey, Kept>,
}

/// Records whose keys are computed and warmed (`KeyedState::warm`) before any of them
/// is looked up: enough for their cache misses to overlap, few enough that the lines
/// and the records are still cached when read.
const WARM_CHUNK: usize = 256;

/// Drops repeats of a key within a retention time (kept in the state store).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct DedupOptions {
    /// The field(s) that identify a record.
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub key: Vec<String>,
    /// Which record of a key to keep: `latest` or `first`.
    #[serde(default)]
    pub keep: KeepWord,
    /// With `keep: latest`, a record replaces the kept one only when these fields
    /// differ (default: any change).
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub compare: Option<Vec<String>>,
    /// `changes`: emit a record when it is kept; `final`: emit a key's record when its
    /// retention ends.
    #[serde(default)]
    pub emit: DedupEmit,
    /// How long a key is remembered.
    pub retention: HumanDuration,
    /// The event-time field (`$timestamp` for the record's timestamp); default: the
    /// wall clock.
    #[serde(default)]
    pub time: Option<String>,
    /// The unit of a numeric `time`: `ms` (default), `s`, `us` or `ns`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// How far out of order event times may arrive.
    #[serde(default)]
    pub max_out_of_orderness: HumanDuration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeepWord {
    #[default]
    Latest,
    First,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DedupEmit {
    #[default]
    Changes,
    Final,
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Transform>, Invalid> {
    Ok(Box::new(Dedup::new(cfg, ctx)?))
}

impl Dedup {
    fn new(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Self, Invalid> {
        let o: DedupOptions = cfg.typed().ok_or(Invalid)?;
        let key = field_list(cfg, "key", &o.key);
        let keep_latest = o.keep == KeepWord::Latest;
        let compare = match &o.compare {
            Some(list) => field_list(cfg, "compare", list),
            None => Vec::new(),
        };
        let emit_final = o.emit == DedupEmit::Final;
        let retention = o.retention.as_millis_i64();
        if retention <= 0 {
            cfg.error("retention", "retention must be greater than 0");
        }
        let time = TimeSource::from_option(o.time.as_deref(), o.time_unit);
        let out_of_orderness = o.max_out_of_orderness.as_millis_i64();
        cfg.finish()?;
        Ok(Dedup {
            key,
            keep_latest,
            compare,
            emit_final,
            retention,
            time,
            out_of_orderness,
            meta: Meta {
                clock: i64::MIN,
                seq: 0,
                segments: (!emit_final).then(|| Segments::new(retention, out_of_orderness)),
            },
            state: Box::new(MemoryState::default()),
            earliest: i64::MIN,
            entry: Vec::new(),
        })
    }
}

/// `k` + the key.
fn entry_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    entry_key_into(key, &mut k);
    k
}

fn entry_key_into(key: &[u8], out: &mut Vec<u8>) {
    out.push(b'k');
    out.extend_from_slice(key);
}

/// `s` + segment + the key.
fn segment_key(segment: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    segment_key_into(segment, key, &mut k);
    k
}

fn segment_key_into(segment: i64, key: &[u8], out: &mut Vec<u8>) {
    out.push(b's');
    out.extend_from_slice(&connectd_sdk::ordered::i64_key(segment));
    out.extend_from_slice(key);
}

/// `x` + expiry time + sequence: the expiry index, in time order.
fn index_key(expires: i64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'x';
    k[1..9].copy_from_slice(&connectd_sdk::ordered::i64_key(expires));
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!("dedup: a state entry does not decode: {e}"))
}

/// How many index entries one read of the expiry index takes.
const EXPIRE_CHUNK: usize = 1024;

impl Dedup {
    fn event_time(&self) -> bool {
        !matches!(self.time, TimeSource::ProcessingTime)
    }

    /// Whether the kept entry needs the record itself.
    fn keeps_records(&self) -> bool {
        self.keep_latest || self.emit_final
    }

    /// The key's kept entry and where it is stored. Segments: the newest entry in a
    /// live segment, absent once expired.
    fn lookup(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Kept)>, ConnectorError> {
        let Some(segments) = &self.meta.segments else {
            let at = entry_key(key);
            return match self.state.get(&at)? {
                Some(bytes) => Ok(Some((at, Kept::decode(&bytes)?))),
                None => Ok(None),
            };
        };
        let clock = segments.of(self.meta.clock);
        let mut at = Vec::with_capacity(key.len() + 9);
        for &segment in segments.live.range(clock..).rev() {
            at.clear();
            segment_key_into(segment, key, &mut at);
            if let Some(bytes) = self.state.get(&at)? {
                let kept = Kept::decode(&bytes)?;
                // Later segments hold later expiries: an expired entry is the newest.
                return Ok((kept.expires > self.meta.clock).then_some((at, kept)));
            }
        }
        Ok(None)
    }

    /// Keeps `kept` for `key`, replacing `old` (from `lookup`).
    fn keep(&mut self, key: &[u8], kept: &Kept, old: Option<(&[u8], &Kept)>) {
        // The entry's key then its value in one reused buffer: a new key allocates
        // nothing here.
        let mut entry = std::mem::take(&mut self.entry);
        entry.clear();
        match &mut self.meta.segments {
            Some(segments) => {
                let segment = segments.of(kept.expires);
                segments.live.insert(segment);
                segment_key_into(segment, key, &mut entry);
            }
            None => {
                if let Some((_, was)) = old {
                    self.state.delete_unique(&index_key(was.expires, was.seq));
                }
                self.state
                    .put_unique(&index_key(kept.expires, kept.seq), key);
                self.earliest = self.earliest.min(kept.expires);
                entry_key_into(key, &mut entry);
            }
        }
        let key_len = entry.len();
        kept.encode_into(&mut entry);
        let (at, value) = entry.split_at(key_len);
        if let Some((old, _)) = old.filter(|(old, _)| *old != at) {
            self.state.delete(old);
        }
        self.state.put(at, value);
        self.entry = entry;
    }

    /// Appends the stored form of `r`'s key (JSON of its key values) to `out`; false
    /// when a key field is missing or null.
    fn key_bytes(&self, r: &Record, out: &mut Vec<u8>) -> Result<bool, ConnectorError> {
        let Some(values) = key_values(r, &self.key) else {
            return Ok(false);
        };
        serde_json::to_writer(&mut *out, &values[..]).map_err(corrupt)?;
        Ok(true)
    }

    /// Appends the entries `lookup(key)` will read to `out`, each ending at a
    /// position pushed to `ends` (for `KeyedState::warm`).
    fn entries_to_warm(&self, key: &[u8], out: &mut Vec<u8>, ends: &mut Vec<usize>) {
        match &self.meta.segments {
            Some(segments) => {
                for &segment in segments.live.range(segments.of(self.meta.clock)..) {
                    segment_key_into(segment, key, out);
                    ends.push(out.len());
                }
            }
            None => {
                entry_key_into(key, out);
                ends.push(out.len());
            }
        }
    }

    /// `key`: the record's stored key (`key_bytes`), `None` when it has none.
    fn on_record(
        &mut self,
        r: Record,
        key: Option<&[u8]>,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        let t = match self.time.of(&r, "dedup") {
            Ok(t) => t,
            Err(e) => {
                out.bad.push(BadRecord::record(r, e));
                return Ok(());
            }
        };
        let Some(key) = key else {
            let fields: Vec<String> = self.key.iter().map(ToString::to_string).collect();
            let why = format!(
                "dedup: the key field(s) {} are missing or null",
                fields.join(", ")
            );
            out.bad.push(BadRecord::record(r, why));
            return Ok(());
        };
        self.meta.seq += 1;
        let seq = self.meta.seq;
        let expires = t.saturating_add(self.retention);
        match self.lookup(key)? {
            None => {
                // `keep: first` keeps no record, so it passes this one on uncopied.
                let record = if self.keeps_records() {
                    if !self.emit_final {
                        out.emit(r.clone());
                    }
                    Some(r)
                } else {
                    out.emit(r);
                    None
                };
                let kept = Kept {
                    record,
                    expires,
                    seq,
                };
                self.keep(key, &kept, None);
            }
            Some((at, kept))
                if self.keep_latest
                    && kept
                        .record
                        .as_ref()
                        .is_none_or(|k| changed(&self.compare, k, &r)) =>
            {
                if !self.emit_final {
                    out.emit(r.clone());
                }
                let latest = Kept {
                    record: Some(r),
                    expires: expires.max(kept.expires),
                    seq,
                };
                self.keep(key, &latest, Some((&at, &kept)));
            }
            // A duplicate: of the latest (same value) or of the first.
            Some(_) => {}
        }
        if self.event_time() {
            let candidate = t.saturating_sub(self.out_of_orderness);
            if candidate > self.meta.clock {
                self.meta.clock = candidate;
                self.expire(out)?;
            }
        }
        Ok(())
    }

    /// Forgets the keys whose retention has passed (emitting them under `emit: final`).
    fn expire(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        if let Some(segments) = &mut self.meta.segments {
            // Every entry in a segment before the clock's has expired.
            let below = segments.of(self.meta.clock);
            if below > segments.forgotten {
                segments.forgotten = below;
                segments.live = segments.live.split_off(&below);
                self.state.forget_below(&segment_key(below, &[]));
            }
            return Ok(());
        }
        if self.meta.clock < self.earliest {
            return Ok(());
        }
        // Up to and including the clock (the whole index at the end of the input).
        let to = match self.meta.clock.checked_add(1) {
            Some(next) => index_key(next, 0).to_vec(),
            None => b"y".to_vec(),
        };
        loop {
            let due = self.state.range(b"x", &to, EXPIRE_CHUNK)?;
            for (index, key) in &due {
                self.state.delete_unique(index);
                let entry = entry_key(key);
                if let Some(bytes) = self.state.get(&entry)? {
                    let kept = Kept::decode(&bytes)?;
                    self.state.delete(&entry);
                    if let (true, Some(r)) = (self.emit_final, kept.record) {
                        out.emit(r);
                    }
                }
            }
            if due.len() < EXPIRE_CHUNK {
                break;
            }
        }
        // The next entry due, if any: until the clock reaches it, nothing expires.
        self.earliest = match self.state.range(b"x", b"y", 1)?.first() {
            Some((index, _)) => {
                connectd_sdk::ordered::i64_from_key(&index[1..]).unwrap_or(i64::MIN)
            }
            None => i64::MAX,
        };
        Ok(())
    }
}

/// Whether `r` differs from what is kept in the `compare` fields (or anywhere).
fn changed(compare: &[FieldPath], kept: &Record, r: &Record) -> bool {
    if compare.is_empty() {
        return kept.value != r.value;
    }
    compare
        .iter()
        .any(|f| kept.value.get_path(f) != r.value.get_path(f))
}

impl Transform for Dedup {
    fn state_key(&self, _input: usize) -> Option<Vec<FieldPath>> {
        Some(self.key.clone())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        if !self.event_time() {
            self.meta.clock = now_ms();
            self.expire(out)?;
        }
        // A chunk at a time: its keys computed, warmed, then its records processed, so
        // the records are still cached when read again (a whole batch was not).
        let mut records = take_records(batch).into_iter();
        let (mut keys, mut spans) = (Vec::new(), Vec::with_capacity(WARM_CHUNK));
        let (mut warm, mut ends) = (Vec::new(), Vec::new());
        while !records.as_slice().is_empty() {
            keys.clear();
            spans.clear();
            for r in records.as_slice().iter().take(WARM_CHUNK) {
                let start = keys.len();
                spans.push(self.key_bytes(r, &mut keys)?.then_some(start..keys.len()));
            }
            warm.clear();
            ends.clear();
            for s in spans.iter().flatten() {
                self.entries_to_warm(&keys[s.clone()], &mut warm, &mut ends);
            }
            let mut start = 0;
            self.state.warm(&mut ends.iter().map(|&end| {
                let key = &warm[start..end];
                start = end;
                key
            }));
            // `spans` first: the zip stops at its end without taking a record more.
            for (span, r) in spans.iter().zip(records.by_ref()) {
                let key = span.as_ref().map(|s| &keys[s.clone()]);
                self.on_record(r, key, out)?;
            }
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        (!self.event_time())
            .then(|| Duration::from_millis((self.retention / 4).clamp(10, 1000) as u64))
    }

    fn on_tick(&mut self, now: i64, out: &mut Emitter) -> Result<(), ConnectorError> {
        if !self.event_time() {
            self.meta.clock = now;
            self.expire(out)?;
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        if self.emit_final {
            self.meta.clock = i64::MAX;
            self.expire(out)?;
        }
        Ok(())
    }

    fn attach_state(&mut self, state: Box<dyn KeyedState>) -> bool {
        self.state = state;
        self.earliest = i64::MIN;
        true
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        let snapshot = Snapshot {
            meta: self.meta.clone(),
            entries: self.state.export(),
            keys: Default::default(),
        };
        serde_json::to_value(&snapshot)
            .map_err(|e| ConnectorError::permanent("dedup: cannot serialize state").with_source(e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        if state.is_null() {
            return Ok(());
        }
        let snapshot: Snapshot = serde_json::from_value(state).map_err(|e| {
            ConnectorError::permanent("dedup: the checkpointed state is not a dedup's")
                .with_source(e)
        })?;
        if self.emit_final && snapshot.meta.segments.is_some() {
            return Err(ConnectorError::permanent(
                "dedup: the checkpointed state was written with `emit: changes` and keeps no \
                 expiry index, which `emit: final` needs; reset the pipeline's state to change `emit`",
            ));
        }
        self.meta = snapshot.meta;
        self.earliest = i64::MIN;
        for (k, v) in snapshot.entries.into_iter().flatten() {
            self.state.put(&k, &v);
        }
        for (key, kept) in snapshot.keys {
            let key = serde_json::to_vec(&key.0).map_err(corrupt)?;
            self.keep(&key, &kept, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
