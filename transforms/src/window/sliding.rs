//! Sliding windows: one output row per record, aggregating the records of its key whose
//! event time lies in `(t - size, t]` — emitted once the watermark passes `t + grace`,
//! so out-of-order records within the allowance are included.

use std::collections::{BTreeMap, BTreeSet};

use connectd_sdk::{Emitter, Value};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{output_row, pairs, GroupKey, WindowSpec};

/// One key's records: (event time, arrival seq) → the aggregate inputs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Rows(#[serde(with = "pairs")] BTreeMap<(i64, u64), Vec<Value>>);

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sliding {
    /// Per key: (event time, arrival seq) → the aggregate inputs of that record.
    #[serde(with = "pairs")]
    by_key: FxHashMap<GroupKey, Rows>,
    /// Records whose row is still to be emitted, in event-time order.
    pending: BTreeSet<(i64, u64, GroupKey)>,
    #[serde(skip)]
    fired_since_sweep: u32,
}

impl Sliding {
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        watermark: i64,
        t: i64,
        key: GroupKey,
        inputs: &[Option<&Value>],
        seq: u64,
    ) -> bool {
        if t.saturating_add(spec.grace) <= watermark {
            return false;
        }
        let values = inputs
            .iter()
            .map(|v| v.cloned().unwrap_or(Value::Null))
            .collect();
        self.by_key
            .entry(key.clone())
            .or_default()
            .0
            .insert((t, seq), values);
        self.pending.insert((t, seq, key));
        true
    }

    pub fn fire(&mut self, spec: &WindowSpec, watermark: i64, out: &mut Emitter) {
        // Records at or before this bound can no longer fall into any future row.
        let keep_after = watermark
            .saturating_sub(spec.grace)
            .saturating_sub(spec.size);
        while let Some(first) = self.pending.first() {
            if first.0.saturating_add(spec.grace) > watermark {
                break;
            }
            let Some((t, _, key)) = self.pending.pop_first() else {
                break;
            };
            let Some(rows) = self.by_key.get_mut(&key) else {
                continue;
            };
            let mut accs: Vec<_> = spec.aggregates.iter().map(|a| a.new_acc()).collect();
            let lo = t.saturating_sub(spec.size).saturating_add(1);
            for ((_, seq), values) in rows.0.range((lo, 0)..=(t, u64::MAX)) {
                for ((acc, v), a) in accs.iter_mut().zip(values).zip(&spec.aggregates) {
                    acc.add(if a.field.is_some() { Some(v) } else { None }, *seq);
                }
            }
            out.emit(output_row(
                spec,
                t - spec.size,
                t,
                &key,
                accs.iter().map(|a| a.value()),
            ));
            // Drop rows no future window needs (later rows fire at times >= t).
            let bound = keep_after.min(t - spec.size);
            while rows
                .0
                .first_key_value()
                .is_some_and(|((rt, _), _)| *rt <= bound)
            {
                rows.0.pop_first();
            }
            if rows.0.is_empty() {
                self.by_key.remove(&key);
            }
            self.fired_since_sweep += 1;
        }
        if self.fired_since_sweep > 4096 {
            self.fired_since_sweep = 0;
            self.by_key.retain(|_, rows| {
                while rows
                    .0
                    .first_key_value()
                    .is_some_and(|((rt, _), _)| *rt <= keep_after)
                {
                    rows.0.pop_first();
                }
                !rows.0.is_empty()
            });
        }
    }
}
