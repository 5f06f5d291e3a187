//! Tumbling and hopping windows: fixed boundaries aligned to the epoch.

use std::collections::BTreeMap;

use connectd_sdk::{Emitter, Value};
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use super::{key_hash, output_row, pairs, Acc, GroupKey, Kind, WindowSpec};

/// One window's groups: key → accumulators, looked up by borrowed key values.
#[derive(Default)]
struct Groups(HashTable<(GroupKey, Vec<Acc>)>);

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Groups({})", self.0.len())
    }
}

impl Serialize for Groups {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<(GroupKey, Vec<Acc>)> = Vec::deserialize(d)?;
        let mut table = HashTable::with_capacity(entries.len());
        for e in entries {
            table.insert_unique(key_hash(e.0 .0.iter()), e, |(k, _)| key_hash(k.0.iter()));
        }
        Ok(Groups(table))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Aligned {
    /// Open windows by (end, start): the first entry is the next to close.
    #[serde(with = "pairs")]
    windows: BTreeMap<(i64, i64), Groups>,
}

/// The starts of the windows containing `t`, newest first.
fn window_starts(spec: &WindowSpec, t: i64) -> impl Iterator<Item = i64> + '_ {
    let step = if spec.kind == Kind::Hopping {
        spec.hop
    } else {
        spec.size
    };
    let newest = t.div_euclid(step) * step;
    (0..)
        .map(move |i| newest - i * step)
        .take_while(move |start| *start + spec.size > t)
}

impl Aligned {
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        spec: &WindowSpec,
        watermark: i64,
        t: i64,
        key: &[&Value],
        inputs: &[Option<&Value>],
        seq: u64,
        out: &mut Emitter,
    ) -> bool {
        let mut accepted = false;
        for start in window_starts(spec, t) {
            let end = start + spec.size;
            if end.saturating_add(spec.grace) <= watermark {
                continue; // this window already closed
            }
            accepted = true;
            let groups = self.windows.entry((end, start)).or_default();
            let hash = key_hash(key.iter().copied());
            let (owned_key, accs) = match groups.0.find_mut(hash, |(k, _)| k.matches(key)) {
                Some((k, a)) => (&*k, a),
                None => {
                    let fresh = (
                        GroupKey::from_refs(key),
                        spec.aggregates.iter().map(|a| a.new_acc()).collect(),
                    );
                    let (k, a) = groups
                        .0
                        .insert_unique(hash, fresh, |(k, _)| key_hash(k.0.iter()))
                        .into_mut();
                    (&*k, a)
                }
            };
            for (acc, input) in accs.iter_mut().zip(inputs) {
                acc.add(*input, seq);
            }
            if spec.emit_changes {
                out.emit(output_row(
                    spec,
                    start,
                    end,
                    owned_key,
                    accs.iter().map(Acc::value),
                ));
            }
        }
        accepted
    }

    pub fn fire(&mut self, spec: &WindowSpec, watermark: i64, out: &mut Emitter) {
        while let Some(entry) = self.windows.first_entry() {
            let (end, start) = *entry.key();
            if end.saturating_add(spec.grace) > watermark {
                break;
            }
            let groups = entry.remove();
            if spec.emit_changes {
                continue; // every update was already emitted
            }
            let mut rows: Vec<(GroupKey, Vec<Acc>)> = groups.0.into_iter().collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, accs) in rows {
                out.emit(output_row(
                    spec,
                    start,
                    end,
                    &key,
                    accs.iter().map(Acc::value),
                ));
            }
        }
    }
}
