//! Session windows: per key, records closer than `gap` belong to one session; a
//! record that bridges two sessions merges them.

use std::collections::BTreeSet;

use connectd_sdk::{Emitter, Value};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{output_row, pairs, Acc, GroupKey, WindowSpec};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    /// Earliest and latest event time in the session; it spans `[first, last + gap)`.
    first: i64,
    last: i64,
    accs: Vec<Acc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sessions {
    #[serde(with = "pairs")]
    by_key: FxHashMap<GroupKey, Vec<Session>>,
    /// (close time, key, first): the next session to close comes first.
    #[serde(skip)]
    closing: BTreeSet<(i64, GroupKey, i64)>,
}

fn close_at(spec: &WindowSpec, s: &Session) -> i64 {
    s.last.saturating_add(spec.gap).saturating_add(spec.grace)
}

impl Sessions {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        watermark: i64,
        t: i64,
        key: GroupKey,
        inputs: &[Option<&Value>],
        seq: u64,
        out: &mut Emitter,
    ) -> bool {
        if self.closing.is_empty() && !self.by_key.is_empty() {
            self.rebuild_index(spec);
        }
        let sessions = self.by_key.entry(key.clone()).or_default();
        // The new record's own window [t, t + gap) merges with every session it meets.
        let (meets, rest): (Vec<Session>, Vec<Session>) =
            std::mem::take(sessions).into_iter().partition(|s| {
                t < s.last.saturating_add(spec.gap) && s.first < t.saturating_add(spec.gap)
            });
        *sessions = rest;
        if meets.is_empty() && t.saturating_add(spec.gap).saturating_add(spec.grace) <= watermark {
            if sessions.is_empty() {
                self.by_key.remove(&key);
            }
            return false;
        }
        let mut merged = Session {
            first: t,
            last: t,
            accs: spec.aggregates.iter().map(|a| a.new_acc()).collect(),
        };
        for (acc, input) in merged.accs.iter_mut().zip(inputs) {
            acc.add(*input, seq);
        }
        for s in meets {
            self.closing
                .remove(&(close_at(spec, &s), key.clone(), s.first));
            merged.first = merged.first.min(s.first);
            merged.last = merged.last.max(s.last);
            for (a, b) in merged.accs.iter_mut().zip(s.accs) {
                a.merge(b);
            }
        }
        self.closing
            .insert((close_at(spec, &merged), key.clone(), merged.first));
        if spec.emit_changes {
            let end = merged.last.saturating_add(spec.gap);
            out.emit(output_row(
                spec,
                merged.first,
                end,
                &key,
                merged.accs.iter().map(Acc::value),
            ));
        }
        sessions.push(merged);
        true
    }

    fn rebuild_index(&mut self, spec: &WindowSpec) {
        for (key, sessions) in &self.by_key {
            for s in sessions {
                self.closing
                    .insert((close_at(spec, s), key.clone(), s.first));
            }
        }
    }

    pub fn fire(&mut self, spec: &WindowSpec, watermark: i64, out: &mut Emitter) {
        if self.closing.is_empty() && !self.by_key.is_empty() {
            self.rebuild_index(spec);
        }
        while let Some(first) = self.closing.first() {
            if first.0 > watermark {
                break;
            }
            let Some((_, key, start)) = self.closing.pop_first() else {
                break;
            };
            let Some(sessions) = self.by_key.get_mut(&key) else {
                continue;
            };
            let Some(pos) = sessions.iter().position(|s| s.first == start) else {
                continue;
            };
            let s = sessions.swap_remove(pos);
            if sessions.is_empty() {
                self.by_key.remove(&key);
            }
            if !spec.emit_changes {
                let end = s.last.saturating_add(spec.gap);
                out.emit(output_row(
                    spec,
                    s.first,
                    end,
                    &key,
                    s.accs.iter().map(Acc::value),
                ));
            }
        }
    }
}
