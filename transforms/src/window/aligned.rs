//! Tumbling and hopping windows: fixed boundaries aligned to the epoch, with their
//! groups in keyed state (the pipeline's state store).
//!
//! - Groups being updated sit in memory, decoded, up to a byte budget. A checkpoint
//!   writes the groups changed since the previous one to the keyed state (so its cost
//!   grows with the keys changed, not the keys held). Past the budget, every group in
//!   memory is written and dropped: the window is then *spilled*, and a group not in
//!   memory is looked up in the store, unless a Bloom filter of the spilled keys says
//!   it was never there. A window that never spilled needs no lookups.
//! - A closing window is read back from the store in key order, a bounded number of
//!   rows at a time (see `Transform::resume`); then every key up to its end is
//!   forgotten at once (`KeyedState::forget_below`), not deleted key by key. So output
//!   order is the order of the encoded group keys (`connectd_sdk::ordered`), the same
//!   whether or not a window spilled or the pipeline restarted in between.
//! - The open windows themselves (a few) are listed in the snapshot.

use std::collections::{BTreeMap, VecDeque};

use connectd_sdk::state::KeyedState;
use connectd_sdk::{ordered, ConnectorError, Emitter, Value};
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::acc_codec;
use super::{emit_row, key_hash, pairs, Acc, GroupKey, Kind, WindowSpec};
use connectd_sdk::bloom::KeyFilter;

/// Rows emitted per call while a window closes.
const ROWS_PER_PART: usize = 4096;

/// A window's accumulators, inline for up to two aggregates: writing a million groups
/// out read each group's accumulators through a pointer, a cache miss apiece.
type Accs = SmallVec<[Acc; 2]>;

struct Group {
    key: GroupKey,
    accs: Accs,
    /// Changed since it was last written to the keyed state.
    dirty: bool,
}

/// Which of a window's groups may be in the store and not in memory.
#[derive(Default)]
enum Stored {
    /// None: the window never spilled; a key not in memory is new.
    #[default]
    Nothing,
    /// Those whose hash the filter holds.
    Keys(KeyFilter),
    /// Any (restored from a checkpoint): every key not in memory is looked up.
    Unknown,
}

impl Stored {
    fn bytes(&self) -> usize {
        match self {
            Stored::Keys(filter) => filter.bytes(),
            _ => 0,
        }
    }
}

/// One window's groups in memory, looked up by borrowed key values.
#[derive(Default)]
struct Groups {
    table: HashTable<Group>,
    stored: Stored,
}

/// A window being emitted from the store: the next key to read.
struct Closing {
    end: i64,
    start: i64,
    next: Vec<u8>,
}

pub struct Aligned {
    /// Open windows by (end, start): the first entry is the next to close.
    windows: BTreeMap<(i64, i64), Groups>,
    closing: VecDeque<Closing>,
    resident_bytes: usize,
    /// Memory of the spilled-key filters: counted against the budget, though groups
    /// always get at least a quarter of it.
    filter_bytes: usize,
    budget: usize,
    layout: KeyLayout,
}

impl Default for Aligned {
    fn default() -> Self {
        Self::with_budget(connectd_sdk::state::DEFAULT_MEMORY_BUDGET)
    }
}

impl std::fmt::Debug for Aligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aligned")
            .field("windows", &self.windows.len())
            .field("resident_bytes", &self.resident_bytes)
            .finish()
    }
}

/// A window's groups as checkpoints held them before the state store.
type LegacyGroups = Vec<(GroupKey, Vec<Acc>)>;

/// What a checkpoint holds of the aligned windows; the groups are in keyed state.
#[derive(Default, Serialize, Deserialize)]
pub struct AlignedSnapshot {
    #[serde(default)]
    open: Vec<(i64, i64)>,
    /// Checkpoints from before the state store: every window with its groups.
    #[serde(default, with = "pairs", skip_serializing)]
    windows: Vec<((i64, i64), LegacyGroups)>,
    /// Store keys begin with the window's end alone (`KeyLayout`); absent in
    /// checkpoints whose keys have the end and the start.
    #[serde(default)]
    short_keys: bool,
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

/// How a group's store key begins: its window's end, in time order (the start follows
/// from the end, as every window of a transform has one size). Keys of up to 20 bytes
/// are stored inline, so a group keyed by a number (9 bytes encoded) costs no
/// allocation, no reference count and no pointer to follow in the checkpoint. State
/// written before 2026-12-04 has the end and the start (16 bytes); a checkpoint says
/// which (`AlignedSnapshot::short_keys`) and restored state keeps its form.
#[derive(Clone, Copy, Debug)]
struct KeyLayout {
    with_start: bool,
}

impl KeyLayout {
    const CURRENT: Self = Self { with_start: false };

    fn prefix_len(self) -> usize {
        if self.with_start {
            16
        } else {
            8
        }
    }

    /// The store keys of window (end, start) begin with this.
    fn prefix(self, end: i64, start: i64) -> Vec<u8> {
        let mut k = Vec::with_capacity(32);
        k.extend_from_slice(&ordered::i64_key(end));
        if self.with_start {
            k.extend_from_slice(&ordered::i64_key(start));
        }
        k
    }

    fn key(self, end: i64, start: i64, key: &GroupKey) -> Vec<u8> {
        let mut k = self.prefix(end, start);
        ordered::encode_all(&key.0, &mut k);
        k
    }
}

fn corrupt(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!(
        "window: a group in the state store cannot be read ({e}); reset the pipeline's state"
    ))
}

/// Approximate memory of a group, for the budget.
fn approx_bytes(g: &Group) -> usize {
    let key_heap: usize = g
        .key
        .0
        .iter()
        .map(|v| match v {
            Value::Str(s) if s.len() > 24 => s.len(),
            Value::List(l) => l.len() * 32,
            _ => 0,
        })
        .sum();
    let accs_heap = if g.accs.spilled() {
        g.accs.capacity() * std::mem::size_of::<Acc>()
    } else {
        0
    };
    std::mem::size_of::<Group>() + 16 + key_heap + accs_heap
}

impl Aligned {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            windows: BTreeMap::new(),
            closing: VecDeque::new(),
            resident_bytes: 0,
            filter_bytes: 0,
            budget,
            layout: KeyLayout::CURRENT,
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
        let mut accepted = false;
        for start in window_starts(spec, t) {
            let end = start + spec.size;
            if end.saturating_add(spec.grace) <= watermark {
                continue; // this window already closed
            }
            accepted = true;
            let groups = self.windows.entry((end, start)).or_default();
            let hash = key_hash(key.iter().copied());
            let group = match groups.table.find_mut(hash, |g| g.key.matches(key)) {
                Some(g) => g,
                None => {
                    let owned = GroupKey::from_refs(key);
                    let maybe_stored = match &groups.stored {
                        Stored::Nothing => false,
                        Stored::Keys(filter) => filter.may_contain(hash),
                        Stored::Unknown => true,
                    };
                    let stored = if maybe_stored {
                        state.get(&self.layout.key(end, start, &owned))?
                    } else {
                        None
                    };
                    let accs = match stored {
                        Some(bytes) => Accs::from_vec(
                            acc_codec::decode(&bytes, spec.aggregates.len()).map_err(corrupt)?,
                        ),
                        None => spec.aggregates.iter().map(|a| a.new_acc()).collect(),
                    };
                    let fresh = Group {
                        key: owned,
                        accs,
                        dirty: true,
                    };
                    self.resident_bytes += approx_bytes(&fresh);
                    groups
                        .table
                        .insert_unique(hash, fresh, |g| key_hash(g.key.0.iter()))
                        .into_mut()
                }
            };
            group.dirty = true;
            for (acc, input) in group.accs.iter_mut().zip(inputs) {
                acc.add(*input, seq);
            }
            if spec.emit_changes {
                emit_row(
                    out,
                    spec,
                    start,
                    end,
                    &group.key,
                    group.accs.iter().map(Acc::value),
                );
            }
        }
        if self.resident_bytes > self.resident_limit() {
            self.spill(state)?;
        }
        Ok(accepted)
    }

    /// Writes every changed group of a window in memory to the keyed state.
    fn write_groups(
        layout: KeyLayout,
        groups: &mut Groups,
        end: i64,
        start: i64,
        state: &mut dyn KeyedState,
    ) -> Result<(), ConnectorError> {
        // Key and value buffers reused across groups: no allocation per group.
        let prefix = layout.prefix(end, start);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for g in groups.table.iter_mut().filter(|g| g.dirty) {
            key.clear();
            key.extend_from_slice(&prefix);
            ordered::encode_all(&g.key.0, &mut key);
            value.clear();
            acc_codec::encode(&g.accs, &mut value);
            state.put(&key, &value);
            g.dirty = false;
        }
        Ok(())
    }

    fn resident_limit(&self) -> usize {
        self.budget
            .saturating_sub(self.filter_bytes)
            .max(self.budget / 4)
    }

    fn spill(&mut self, state: &mut dyn KeyedState) -> Result<(), ConnectorError> {
        for (&(end, start), groups) in &mut self.windows {
            Self::write_groups(self.layout, groups, end, start, state)?;
            if let Stored::Nothing = groups.stored {
                // Sized for this spill's groups: one filter at its rate rather than a
                // chain grown from a small one, whose rates add up.
                groups.stored = Stored::Keys(KeyFilter::with_capacity(groups.table.len()));
            }
            if let Stored::Keys(filter) = &mut groups.stored {
                for g in groups.table.iter() {
                    filter.insert(key_hash(g.key.0.iter()));
                }
            }
            groups.table.clear();
        }
        self.resident_bytes = 0;
        self.filter_bytes = self.windows.values().map(|g| g.stored.bytes()).sum();
        Ok(())
    }

    /// At a checkpoint: the groups changed since the previous one go to keyed state.
    pub fn persist(
        &mut self,
        state: &mut dyn KeyedState,
    ) -> Result<AlignedSnapshot, ConnectorError> {
        for (&(end, start), groups) in &mut self.windows {
            Self::write_groups(self.layout, groups, end, start, state)?;
        }
        state.report_memory(self.resident_bytes + self.filter_bytes);
        Ok(AlignedSnapshot {
            open: self.windows.keys().copied().collect(),
            windows: Vec::new(),
            short_keys: !self.layout.with_start,
        })
    }

    /// Back to a checkpoint: its open windows, their groups in keyed state.
    pub fn restore(
        &mut self,
        snap: AlignedSnapshot,
        state: &mut dyn KeyedState,
    ) -> Result<(), ConnectorError> {
        self.windows.clear();
        self.closing.clear();
        self.resident_bytes = 0;
        self.filter_bytes = 0;
        self.layout = KeyLayout {
            with_start: !snap.short_keys,
        };
        for id in snap.open {
            self.windows.insert(
                id,
                Groups {
                    table: HashTable::new(),
                    stored: Stored::Unknown,
                },
            );
        }
        for ((end, start), groups) in snap.windows {
            self.windows.entry((end, start)).or_default().stored = Stored::Unknown;
            for (key, accs) in groups {
                let mut value = Vec::new();
                acc_codec::encode(&accs, &mut value);
                state.put(&self.layout.key(end, start, &key), &value);
            }
        }
        Ok(())
    }

    /// Closes every window the watermark has passed and emits a first part of them.
    pub fn fire(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        watermark: i64,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        while let Some(entry) = self.windows.first_entry() {
            let (end, start) = *entry.key();
            if end.saturating_add(spec.grace) > watermark {
                break;
            }
            let mut groups = entry.remove();
            self.resident_bytes = self
                .resident_bytes
                .saturating_sub(groups.table.iter().map(approx_bytes).sum());
            self.filter_bytes = self.filter_bytes.saturating_sub(groups.stored.bytes());
            if spec.emit_changes {
                // Every update was emitted already: the window's state is garbage.
                state.forget_below(&ordered::prefix_end(&self.layout.prefix(end, start)));
                continue;
            }
            // One way out for every group: through the store, in key order.
            Self::write_groups(self.layout, &mut groups, end, start, state)?;
            self.closing.push_back(Closing {
                end,
                start,
                next: self.layout.prefix(end, start),
            });
        }
        self.drain(spec, state, out).map(|_| ())
    }

    /// Emits up to one part of the closing windows; true while more remains.
    pub fn drain(
        &mut self,
        spec: &WindowSpec,
        state: &mut dyn KeyedState,
        out: &mut Emitter,
    ) -> Result<bool, ConnectorError> {
        let mut room = ROWS_PER_PART;
        while let Some(c) = self.closing.front_mut() {
            let upper = ordered::prefix_end(&self.layout.prefix(c.end, c.start));
            let entries = state.range(&c.next, &upper, room)?;
            let done = entries.len() < room;
            room -= entries.len();
            for (k, v) in entries {
                let values = k
                    .get(self.layout.prefix_len()..)
                    .ok_or_else(|| corrupt("a key shorter than its window's"))
                    .and_then(|group| ordered::decode_all(group).map_err(corrupt))?;
                let accs = acc_codec::decode(&v, spec.aggregates.len()).map_err(corrupt)?;
                let key = GroupKey(values.into_iter().collect());
                emit_row(out, spec, c.start, c.end, &key, accs.iter().map(Acc::value));
                c.next = k;
                c.next.push(0);
            }
            if !done {
                return Ok(true);
            }
            // This window and every earlier one are closed: their keys are garbage.
            state.forget_below(&upper);
            self.closing.pop_front();
        }
        Ok(false)
    }
}
