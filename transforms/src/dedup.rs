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
//! State (every live key's record) is part of checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::record::take_records;
use connectd_sdk::time::now_ms;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Record, Transform,
};
use serde::{Deserialize, Serialize};

use crate::keys::{field_list, key_of};
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
    state: State,
    /// Expiry order: (expires, seq) → key. Rebuilt from `state` on restore.
    expiries: BTreeMap<(i64, u64), GroupKey>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The watermark (event time) or the last wall-clock reading (processing time).
    clock: i64,
    seq: u64,
    #[serde(with = "crate::window::pairs")]
    keys: HashMap<GroupKey, Kept>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    record: Record,
    expires: i64,
    seq: u64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Transform>, Invalid> {
    let key = field_list(cfg, "key");
    let keep_latest = cfg.one_of("keep", &["latest", "first"], "latest") == "latest";
    let compare = if cfg.has("compare") {
        field_list(cfg, "compare")
    } else {
        Vec::new()
    };
    let emit_final = cfg.one_of("emit", &["changes", "final"], "changes") == "final";
    let retention = ms(cfg.duration("retention"));
    if retention <= 0 && cfg.has("retention") {
        cfg.error("retention", "retention must be greater than 0");
    }
    let time = TimeSource::from_config(cfg);
    let out_of_orderness = ms(cfg.duration_or("max_out_of_orderness", Duration::ZERO));
    cfg.finish()?;
    Ok(Box::new(Dedup {
        key,
        keep_latest,
        compare,
        emit_final,
        retention,
        time,
        out_of_orderness,
        state: State {
            clock: i64::MIN,
            ..State::default()
        },
        expiries: BTreeMap::new(),
    }))
}

impl Dedup {
    fn event_time(&self) -> bool {
        !matches!(self.time, TimeSource::ProcessingTime)
    }

    fn on_record(&mut self, r: Record, out: &mut Emitter) {
        let t = match self.time.of(&r, "dedup") {
            Ok(t) => t,
            Err(e) => return out.bad.push(BadRecord::record(r, e)),
        };
        let Some(key) = key_of(&r, &self.key) else {
            let fields: Vec<String> = self.key.iter().map(ToString::to_string).collect();
            let why = format!(
                "dedup: the key field(s) {} are missing or null",
                fields.join(", ")
            );
            return out.bad.push(BadRecord::record(r, why));
        };
        self.state.seq += 1;
        let seq = self.state.seq;
        let expires = t.saturating_add(self.retention);
        match self.state.keys.get_mut(&key) {
            None => {
                self.expiries.insert((expires, seq), key.clone());
                let kept = Kept {
                    record: r,
                    expires,
                    seq,
                };
                if !self.emit_final {
                    out.emit(kept.record.clone());
                }
                self.state.keys.insert(key, kept);
            }
            Some(kept) if self.keep_latest && changed(&self.compare, &kept.record, &r) => {
                self.expiries.remove(&(kept.expires, kept.seq));
                kept.expires = expires.max(kept.expires);
                kept.seq = seq;
                self.expiries.insert((kept.expires, seq), key);
                if !self.emit_final {
                    out.emit(r.clone());
                }
                kept.record = r;
            }
            // A duplicate: of the latest (same value) or of the first.
            Some(_) => {}
        }
        if self.event_time() {
            let candidate = t.saturating_sub(self.out_of_orderness);
            if candidate > self.state.clock {
                self.state.clock = candidate;
                self.expire(out);
            }
        }
    }

    /// Forgets the keys whose retention has passed (emitting them under `emit: final`).
    fn expire(&mut self, out: &mut Emitter) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > self.state.clock {
                break;
            }
            let key = entry.remove();
            if let Some(kept) = self.state.keys.remove(&key) {
                if self.emit_final {
                    out.emit(kept.record);
                }
            }
        }
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
            self.state.clock = now_ms();
            self.expire(out);
        }
        for r in take_records(batch) {
            self.on_record(r, out);
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        (!self.event_time())
            .then(|| Duration::from_millis((self.retention / 4).clamp(10, 1000) as u64))
    }

    fn on_tick(&mut self, now: i64, out: &mut Emitter) -> Result<(), ConnectorError> {
        if !self.event_time() {
            self.state.clock = now;
            self.expire(out);
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        if self.emit_final {
            self.state.clock = i64::MAX;
            self.expire(out);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        serde_json::to_value(&self.state)
            .map_err(|e| ConnectorError::permanent("dedup: cannot serialize state").with_source(e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        if state.is_null() {
            return Ok(());
        }
        self.state = serde_json::from_value(state).map_err(|e| {
            ConnectorError::permanent("dedup: the checkpointed state is not a dedup's")
                .with_source(e)
        })?;
        self.expiries = self
            .state
            .keys
            .iter()
            .map(|(k, kept)| ((kept.expires, kept.seq), k.clone()))
            .collect();
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
}
