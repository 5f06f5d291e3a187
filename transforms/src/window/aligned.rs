//! Tumbling and hopping windows: fixed boundaries aligned to the epoch.

use std::collections::BTreeMap;

use connectd_sdk::{Emitter, Value};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{output_row, pairs, Acc, GroupKey, Kind, WindowSpec};

/// One window's groups: key → accumulators.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Groups(#[serde(with = "pairs")] FxHashMap<GroupKey, Vec<Acc>>);

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
        key: GroupKey,
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
            let accs = match groups.0.get_mut(&key) {
                Some(a) => a,
                None => groups
                    .0
                    .entry(key.clone())
                    .or_insert_with(|| spec.aggregates.iter().map(|a| a.new_acc()).collect()),
            };
            for (acc, input) in accs.iter_mut().zip(inputs) {
                acc.add(*input, seq);
            }
            if spec.emit_changes {
                out.emit(output_row(
                    spec,
                    start,
                    end,
                    &key,
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
