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
use connectd_sdk::Value;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Record, Transform,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::keys::field_list;
use crate::time::TimeSource;
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
    /// (`record_codec`; JSON before 2026-12-03): 17 bytes for `keep: first`, which the
    /// store keeps without an allocation.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(17);
        bytes.push(BINARY_KEPT);
        bytes.extend_from_slice(&self.expires.to_be_bytes());
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        if let Some(r) = &self.record {
            connectd_sdk::record_codec::encode(r, &mut bytes);
        }
        bytes
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

/// Records whose keys are warmed (`KeyedState::warm`) before any of them is looked
/// up: enough for their cache misses to overlap, few enough that the lines are still
/// cached when read.
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
        let time = TimeSource::from_option(o.time.as_deref());
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
        for &segment in segments.live.range(clock..).rev() {
            let at = segment_key(segment, key);
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
        let at = match &mut self.meta.segments {
            Some(segments) => {
                let segment = segments.of(kept.expires);
                segments.live.insert(segment);
                segment_key(segment, key)
            }
            None => {
                if let Some((_, was)) = old {
                    self.state.delete_unique(&index_key(was.expires, was.seq));
                }
                self.state
                    .put_unique(&index_key(kept.expires, kept.seq), key);
                self.earliest = self.earliest.min(kept.expires);
                entry_key(key)
            }
        };
        if let Some((old, _)) = old.filter(|(old, _)| *old != at.as_slice()) {
            self.state.delete(old);
        }
        self.state.put(&at, &kept.encode());
    }

    /// Appends the stored form of `r`'s key (JSON of its key values) to `out`; false
    /// when a key field is missing or null.
    fn key_bytes(&self, r: &Record, out: &mut Vec<u8>) -> Result<bool, ConnectorError> {
        let mut values: SmallVec<[&Value; 4]> = SmallVec::new();
        for f in &self.key {
            match r.value.get_path(f) {
                None | Some(Value::Null) => return Ok(false),
                Some(v) => values.push(v),
            }
        }
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
        let records = take_records(batch);
        let mut keys = Vec::new();
        let mut spans = Vec::with_capacity(records.len());
        for r in &records {
            let start = keys.len();
            spans.push(self.key_bytes(r, &mut keys)?.then_some(start..keys.len()));
        }
        let (mut warm, mut ends) = (Vec::new(), Vec::new());
        for (i, (r, span)) in records.into_iter().zip(&spans).enumerate() {
            if i % WARM_CHUNK == 0 {
                warm.clear();
                ends.clear();
                let ahead = &spans[i..(i + WARM_CHUNK).min(spans.len())];
                for s in ahead.iter().flatten() {
                    self.entries_to_warm(&keys[s.clone()], &mut warm, &mut ends);
                }
                let mut start = 0;
                self.state.warm(&mut ends.iter().map(|&end| {
                    let key = &warm[start..end];
                    start = end;
                    key
                }));
            }
            let key = span.as_ref().map(|s| &keys[s.clone()]);
            self.on_record(r, key, out)?;
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
mod tests {
    use std::sync::Arc;

    use connectd_sdk::{Object, Value};
    use serde_json::json;

    use super::*;
    use crate::test_config;

    fn rec(id: i64, v: i64, ts: i64) -> Record {
        let o: Object = [
            ("id", Value::Int(id)),
            ("v", Value::Int(v)),
            ("ts", Value::Int(ts)),
        ]
        .into_iter()
        .collect();
        Record::new(Value::Object(o))
    }

    fn dedup(config: serde_json::Value) -> Box<dyn Transform> {
        test_config::build(build, config, &["in"]).unwrap()
    }

    impl Dedup {
        fn from_config(config: serde_json::Value) -> Self {
            test_config::build_as(Dedup::new, config, &["in"]).unwrap()
        }
    }

    /// (id, v) of each emitted record.
    fn run(t: &mut dyn Transform, input: &[Record], end: bool) -> Vec<(i64, i64)> {
        let mut out = Emitter::default();
        for r in input {
            t.process(0, Arc::new(vec![r.clone()]), &mut out).unwrap();
        }
        if end {
            t.on_end(&mut out).unwrap();
        }
        assert!(out.bad.is_empty(), "{:?}", out.bad);
        out.records
            .iter()
            .map(|r| {
                let get = |f: &str| match r.value.as_object().and_then(|o| o.get(f)) {
                    Some(Value::Int(i)) => *i,
                    other => panic!("{f}: {other:?}"),
                };
                (get("id"), get("v"))
            })
            .collect()
    }

    #[test]
    fn latest_passes_changes_and_drops_repeats() {
        let mut t =
            dedup(json!({"key": ["id"], "compare": ["v"], "retention": "1h", "time": "ts"}));
        let input = [
            rec(1, 10, 1000),
            rec(2, 20, 1001),
            rec(1, 10, 1002),
            rec(1, 11, 1003),
            rec(2, 20, 1004),
            rec(1, 11, 1005),
        ];
        assert_eq!(
            run(t.as_mut(), &input, true),
            vec![(1, 10), (2, 20), (1, 11)]
        );
    }

    #[test]
    fn first_forgets_a_key_after_its_retention() {
        let mut t = dedup(json!({"key": "id", "keep": "first", "retention": "10s", "time": "ts"}));
        let input = [
            rec(1, 1, 0),
            rec(1, 2, 5_000),
            rec(2, 3, 9_000),
            // The watermark passes 10 s: key 1 (kept at 0 s) is forgotten.
            rec(2, 4, 10_500),
            rec(1, 5, 11_000),
            rec(2, 6, 12_000),
        ];
        assert_eq!(run(t.as_mut(), &input, true), vec![(1, 1), (2, 3), (1, 5)]);
    }

    #[test]
    fn final_emits_the_latest_when_a_key_expires_or_the_input_ends() {
        let mut t =
            dedup(json!({"key": ["id"], "retention": "10s", "time": "ts", "emit": "final"}));
        let input = [
            rec(1, 1, 0),
            rec(1, 2, 1_000),
            rec(2, 3, 2_000),
            rec(3, 9, 12_000),
        ];
        // Key 1 expires at 11 s (its latest came at 1 s); 2 at 12 s; 3 at the end.
        assert_eq!(run(t.as_mut(), &input, true), vec![(1, 2), (2, 3), (3, 9)]);
    }

    #[test]
    fn a_restored_snapshot_goes_on_as_if_uninterrupted() {
        let config = json!({"key": ["id"], "compare": "v", "retention": "5s", "time": "ts"});
        let input: Vec<Record> = (0..400)
            .map(|i| rec(i % 7, (i / 50) % 3, i * 100))
            .collect();
        let whole = run(dedup(config.clone()).as_mut(), &input, true);
        let mut first = dedup(config.clone());
        let mut got = run(first.as_mut(), &input[..150], false);
        let state = first.snapshot().unwrap();
        let mut second = dedup(config);
        second.restore(state).unwrap();
        got.extend(run(second.as_mut(), &input[150..], true));
        assert_eq!(got, whole);
        assert!(whole.len() > 7 && whole.len() < 400, "{}", whole.len());
    }

    #[test]
    fn kept_entries_decode_in_binary_and_in_the_earlier_json_form() {
        let kept = Kept {
            record: Some(rec(1, 2, 3)),
            expires: -5,
            seq: 7,
        };
        let back = Kept::decode(&kept.encode()).unwrap();
        assert_eq!((back.record, back.expires, back.seq), (kept.record, -5, 7));
        let first = Kept {
            record: None,
            expires: 1 << 40,
            seq: 1,
        };
        assert_eq!(first.encode().len(), 17);
        let json = br#"{"expires":12,"seq":3}"#;
        let old = Kept::decode(json).unwrap();
        assert_eq!((old.record, old.expires, old.seq), (None, 12, 3));
        let err = Kept::decode(&[0xff, 1, 2]).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
    }

    #[test]
    fn a_record_without_the_key_goes_to_the_dlq() {
        let mut t = dedup(json!({"key": ["id"], "retention": "5s"}));
        let mut out = Emitter::default();
        let r = Record::new(Value::Object([("v", Value::Int(1))].into_iter().collect()));
        t.process(0, Arc::new(vec![r]), &mut out).unwrap();
        assert!(out.records.is_empty());
        assert_eq!(out.bad.len(), 1);
        assert!(out.bad[0].reason.contains("id"), "{}", out.bad[0].reason);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = test_config::build(
            build,
            json!({"key": [], "retention": "0s", "keep": "last"}),
            &["in"],
        )
        .err()
        .unwrap();
        for needle in ["t.key", "t.retention", "t.keep"] {
            assert!(e.contains(needle), "no {needle} in {e}");
        }
    }

    /// The documented semantics, computed here: a key's entry is live while its expiry
    /// (`retention` after its record, the latest's when it moved) is past the clock,
    /// the clock being the newest event time less `max_out_of_orderness` before the
    /// record.
    fn model(input: &[Record], retention: i64, ooo: i64, latest: bool) -> Vec<(i64, i64)> {
        let field = |r: &Record, f: &str| match r.value.as_object().and_then(|o| o.get(f)) {
            Some(Value::Int(i)) => *i,
            other => panic!("{f}: {other:?}"),
        };
        let mut clock = i64::MIN;
        let mut kept: std::collections::HashMap<i64, (i64, i64)> = Default::default();
        let mut out = Vec::new();
        for r in input {
            let (id, v, t) = (field(r, "id"), field(r, "v"), field(r, "ts"));
            match kept
                .get(&id)
                .copied()
                .filter(|&(_, expires)| expires > clock)
            {
                None => {
                    out.push((id, v));
                    kept.insert(id, (v, t + retention));
                }
                Some((was, expires)) if latest && was != v => {
                    out.push((id, v));
                    kept.insert(id, (v, (t + retention).max(expires)));
                }
                Some(_) => {}
            }
            clock = clock.max(t - ooo);
        }
        out
    }

    /// Out-of-order input over few keys, values that change now and then.
    fn scrambled(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let jitter = (i * 7_919) % 23 * 100; // up to 2.2 s late
                rec(i * 13 % 17, i / 40 % 3, i * 100 - jitter)
            })
            .collect()
    }

    #[test]
    fn segments_and_the_index_give_the_documented_output_on_out_of_order_input() {
        let input = scrambled(3_000);
        for keep in ["first", "latest"] {
            let config = json!({"key": ["id"], "keep": keep, "compare": ["v"],
                "retention": "5s", "max_out_of_orderness": "2s", "time": "ts"});
            let want = model(&input, 5_000, 2_000, keep == "latest");
            assert!(want.len() > 100 && want.len() < 2_000, "{}", want.len());
            let segmented = run(dedup(config.clone()).as_mut(), &input, true);
            assert_eq!(segmented, want, "segments, keep: {keep}");
            let mut indexed = Dedup::from_config(config);
            indexed.meta.segments = None;
            assert_eq!(run(&mut indexed, &input, true), want, "index, keep: {keep}");
        }
    }

    #[test]
    fn segments_past_the_clock_are_forgotten_and_restored_state_goes_on() {
        let config = json!({"key": ["id"], "keep": "latest", "compare": ["v"],
            "retention": "5s", "max_out_of_orderness": "2s", "time": "ts"});
        let input: Vec<Record> = (0..20_000)
            .map(|i| rec(i % 1_000, i / 3_000, i * 10))
            .collect();
        let want = model(&input, 5_000, 2_000, true);
        for cut in [1, 4_999, 12_345] {
            let mut first = Dedup::from_config(config.clone());
            let mut got = run(&mut first, &input[..cut], false);
            let mut second = Dedup::from_config(config.clone());
            second.restore(first.snapshot().unwrap()).unwrap();
            got.extend(run(&mut second, &input[cut..], true));
            assert_eq!(got, want, "cut at {cut}");
            // 200 s of input, entries for 1 000 keys: a segment is 3.5 s, so about
            // three are live at the end.
            let live = second.meta.segments.as_ref().map(|s| s.live.len());
            assert!(live.is_some_and(|n| (2..=4).contains(&n)), "{live:?}");
            let held = second.state.export().map(|e| e.len()).unwrap_or(0);
            assert!(held <= 1_000 * 3, "{held} entries held");
        }
    }

    #[test]
    fn state_of_the_index_layout_goes_on_in_it_after_an_upgrade() {
        let config = json!({"key": ["id"], "keep": "first", "retention": "5s",
            "max_out_of_orderness": "2s", "time": "ts"});
        let input = scrambled(2_000);
        let want = model(&input, 5_000, 2_000, false);
        let mut before = Dedup::from_config(config.clone());
        before.meta.segments = None;
        let mut got = run(&mut before, &input[..900], false);
        let snapshot = before.snapshot().unwrap();
        assert!(snapshot.get("segments").is_none(), "{snapshot}");
        let mut after = Dedup::from_config(config);
        after.restore(snapshot).unwrap();
        assert!(after.meta.segments.is_none());
        got.extend(run(&mut after, &input[900..], true));
        assert_eq!(got, want);
    }

    #[test]
    fn emit_final_refuses_state_written_in_segments() {
        let mut changes =
            Dedup::from_config(json!({"key": ["id"], "retention": "5s", "time": "ts"}));
        run(&mut changes, &[rec(1, 1, 0)], false);
        let mut fin = Dedup::from_config(
            json!({"key": ["id"], "retention": "5s", "time": "ts", "emit": "final"}),
        );
        let err = fin
            .restore(changes.snapshot().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("reset the pipeline's state"), "{err}");
    }
}
