//! `window`: event-time windows (tumbling, hopping, sliding, session) with watermarks,
//! grace, a late-data policy, and `emit: final | changes`.
//!
//! Watermark = the minimum over the input partitions (lanes) of the newest event time
//! seen in each − `max_out_of_orderness` (see `connectd_sdk::lanes`): a partition read
//! ahead of the others does not make theirs late. A partition without records for
//! `idle_timeout` is left out until it has records again. A window `[start, end)` is
//! emitted once the watermark reaches `end + grace`; a record whose every window has
//! been emitted is late (`late: drop` counts it, `late: dlq` sends it to the DLQ).
//! The watermark advances per record, so within a partition results do not depend on
//! how the input was batched.

mod acc_codec;
mod aggregate;
mod output;
pub(crate) use output::emit_row;
mod aligned;
mod session;
mod sliding;

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid, TextMap};
use connectd_sdk::lanes::{LaneClock, LaneClockSnapshot, LateCause};
use connectd_sdk::state::{Entries, KeyedState, MemoryState};
use connectd_sdk::time::now_ms;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Record, Transform, Value,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use aggregate::{Acc, AggKind, AggSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tumbling,
    Hopping,
    Sliding,
    Session,
}

pub use crate::time::{TimeSource, TimeUnit};

/// Everything the window kinds share; built once from the config.
#[derive(Clone, Debug)]
pub struct WindowSpec {
    pub kind: Kind,
    pub size: i64,
    pub hop: i64,
    pub gap: i64,
    pub time: TimeSource,
    pub out_of_orderness: i64,
    pub grace: i64,
    pub late_to_dlq: bool,
    pub emit_changes: bool,
    pub group_by: Vec<FieldPath>,
    pub aggregates: Vec<AggSpec>,
    pub idle_timeout: Option<i64>,
}

/// The grouping key of a record: the values of `group_by`, compared by value.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupKey(pub SmallVec<[Value; 3]>);

/// The group-by values of one record, borrowed from it.
pub(crate) type KeyRefs<'r> = SmallVec<[&'r Value; 4]>;

static NULL: Value = Value::Null;

impl GroupKey {
    pub(crate) fn from_refs(refs: &[&Value]) -> Self {
        GroupKey(refs.iter().map(|v| (*v).clone()).collect())
    }

    /// Whether this key holds exactly these values.
    pub(crate) fn matches(&self, refs: &[&Value]) -> bool {
        self.0.len() == refs.len() && self.0.iter().zip(refs).all(|(a, b)| a.key_eq(b))
    }
}

/// Hash of key values, the same for an owned key and borrowed values.
pub(crate) fn key_hash<'v>(values: impl Iterator<Item = &'v Value>) -> u64 {
    use std::hash::Hasher as _;
    let mut h = rustc_hash::FxHasher::default();
    for v in values {
        v.hash_into(&mut h);
    }
    h.finish()
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for GroupKey {}
impl PartialOrd for GroupKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GroupKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let c = a.total_cmp(b);
            if c.is_ne() {
                return c;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}
impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for v in &self.0 {
            v.hash_into(h);
        }
    }
}

/// Event-time windows (tumbling, hopping, sliding, session) with aggregates per group.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("allOf" = [
    {"if": {"properties": {"kind": {"const": "hopping"}}, "required": ["kind"]}, "then": {"required": ["size", "hop"]}},
    {"if": {"properties": {"kind": {"enum": ["tumbling", "sliding"]}}, "required": ["kind"]}, "then": {"required": ["size"]}},
    {"if": {"properties": {"kind": {"const": "session"}}, "required": ["kind"]}, "then": {"required": ["gap"]}},
    {"if": {"properties": {"kind": {"const": "sliding"}}, "required": ["kind"]}, "then": {"properties": {"emit": {"not": {"const": "changes"}}}}}
]))]
pub struct WindowOptions {
    /// `tumbling`, `hopping`, `sliding` or `session`.
    pub kind: KindWord,
    /// The window's length (not for `session`).
    #[serde(default)]
    pub size: Option<HumanDuration>,
    /// How far apart `hopping` windows start (0 < hop ≤ size).
    #[serde(default)]
    pub hop: Option<HumanDuration>,
    /// A `session` closes after this long without a record of its group.
    #[serde(default)]
    pub gap: Option<HumanDuration>,
    /// The event-time field (`$timestamp` for the record's timestamp); default: the
    /// wall clock (processing time).
    #[serde(default)]
    pub time: Option<String>,
    /// The unit of a numeric `time`: `ms` (default), `s`, `us` or `ns`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// How far out of order event times may arrive: the watermark trails the newest
    /// event time by this much.
    #[serde(default)]
    pub max_out_of_orderness: HumanDuration,
    /// How long after the watermark passes a window's end it still takes records.
    #[serde(default)]
    pub grace: HumanDuration,
    /// What happens to records too late for their window: `drop` (counted) or `dlq`.
    #[serde(default)]
    pub late: LateWord,
    /// `final`: a row per window when it closes; `changes`: a row at every change.
    #[serde(default)]
    pub emit: EmitWord,
    /// The grouping fields.
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub group_by: Vec<String>,
    /// A partition (lane) without data for this long stops holding the watermark.
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    /// Output field to aggregate, e.g. `avg_bid: avg(bid)`.
    #[schemars(schema_with = "aggregate::aggregates_schema")]
    pub aggregates: TextMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindWord {
    Tumbling,
    Hopping,
    Sliding,
    Session,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LateWord {
    #[default]
    Drop,
    Dlq,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitWord {
    #[default]
    Final,
    Changes,
}

/// A duration a kind needs: reported when missing or not above 0.
fn needed(cfg: &ConfigMap<'_>, key: &str, d: Option<HumanDuration>, kind: &str) -> i64 {
    match d {
        None => {
            cfg.error(
                key,
                format!(
                    "missing required field (a {kind} window needs `{key}`, a duration such as 5s)"
                ),
            );
            0
        }
        Some(d) if d.0.is_zero() => {
            cfg.error(key, format!("{key} must be greater than 0"));
            0
        }
        Some(d) => d.as_millis_i64(),
    }
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Transform>, Invalid> {
    let o: WindowOptions = cfg.typed().ok_or(Invalid)?;
    let kind = match o.kind {
        KindWord::Tumbling => Kind::Tumbling,
        KindWord::Hopping => Kind::Hopping,
        KindWord::Sliding => Kind::Sliding,
        KindWord::Session => Kind::Session,
    };
    let word = serde_json::to_value(o.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let (mut size, mut hop, mut gap) = (0, 0, 0);
    match kind {
        Kind::Session => gap = needed(cfg, "gap", o.gap, &word),
        _ => size = needed(cfg, "size", o.size, &word),
    }
    if kind == Kind::Hopping {
        hop = needed(cfg, "hop", o.hop, &word);
        if hop > size {
            cfg.error(
                "hop",
                format!("hop must be greater than 0 and at most size ({size} ms)"),
            );
        }
    }
    for (key, given, applies) in [
        ("size", o.size.is_some(), kind != Kind::Session),
        ("hop", o.hop.is_some(), kind == Kind::Hopping),
        ("gap", o.gap.is_some(), kind == Kind::Session),
    ] {
        if given && !applies {
            cfg.error(key, format!("`{key}` does not apply to a {word} window"));
        }
    }
    let time = TimeSource::from_option(o.time.as_deref(), o.time_unit);
    let out_of_orderness = o.max_out_of_orderness.as_millis_i64();
    let grace = o.grace.as_millis_i64();
    let late_to_dlq = o.late == LateWord::Dlq;
    let emit_changes = o.emit == EmitWord::Changes;
    if emit_changes && kind == Kind::Sliding {
        cfg.error(
            "emit",
            "sliding windows emit one row per record; `emit: changes` applies to the other kinds",
        );
    }
    let group_by: Vec<FieldPath> = o.group_by.iter().map(|p| FieldPath::parse(p)).collect();
    let idle_timeout = o.idle_timeout.map(|d| d.as_millis_i64());
    let mut aggregates = Vec::new();
    if o.aggregates.0.is_empty() && cfg.has("aggregates") {
        cfg.error(
            "aggregates",
            format!(
                "expected at least one aggregate (a mapping of output name to aggregate: {})",
                aggregate::AGG_HELP
            ),
        );
    }
    for (name, text) in &o.aggregates.0 {
        match AggSpec::parse(name, text) {
            Ok(spec) => aggregates.push(spec),
            Err(e) => cfg.error(&format!("aggregates.{name}"), e),
        }
    }
    output::check_names(
        cfg,
        &group_by,
        o.aggregates.0.iter().map(|(name, _)| name.as_str()),
    );
    cfg.finish()?;
    let spec = WindowSpec {
        kind,
        size,
        hop,
        gap,
        time,
        out_of_orderness,
        grace,
        late_to_dlq,
        emit_changes,
        group_by,
        aggregates,
        idle_timeout,
    };
    Ok(Box::new(Window::new(spec)))
}

/// The per-kind state behind a window transform.
#[derive(Debug)]
enum State {
    Aligned(aligned::Aligned),
    Session(session::Sessions),
    Sliding(sliding::Sliding),
}

/// The per-kind state in a checkpoint (groups, sessions and sliding windows' records
/// are in keyed state; this holds what finds them).
#[derive(Serialize, Deserialize)]
enum StateSnapshot {
    Aligned(aligned::AlignedSnapshot),
    Session(session::SessionsSnapshot),
    Sliding(sliding::SlidingSnapshot),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    watermark: i64,
    seq: u64,
    state: StateSnapshot,
    /// The newest event time per lane (absent in checkpoints of before lanes).
    #[serde(default)]
    lanes: Vec<(u64, i64)>,
    /// The keyed state itself when it lives in memory (no state store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Entries>,
    /// What the saved state means (`WindowSpec::state_layout`); absent in checkpoints
    /// from before 2026-12-07, which are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layout: Option<String>,
}

impl WindowSpec {
    /// What a group's saved state means: the windows' bounds, the group key's fields
    /// and the accumulators, in order. A checkpoint written under another layout would
    /// be read as this one's: a count taken for a maximum, groups of one field in rows
    /// of two. Output names, watermark settings and `emit` are not part of it.
    fn state_layout(&self) -> String {
        let bounds = match self.kind {
            Kind::Tumbling => format!("tumbling size {} ms", self.size),
            Kind::Hopping => format!("hopping size {} ms hop {} ms", self.size, self.hop),
            Kind::Sliding => format!("sliding size {} ms", self.size),
            Kind::Session => format!("session gap {} ms", self.gap),
        };
        let group_by: Vec<String> = self.group_by.iter().map(ToString::to_string).collect();
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| {
                let field = a
                    .field
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                format!("{}({field})", a.kind.word())
            })
            .collect();
        format!(
            "{bounds}, group_by [{}], aggregates [{}]",
            group_by.join(", "),
            aggregates.join(", ")
        )
    }
}

#[derive(Debug)]
pub struct Window {
    spec: WindowSpec,
    /// For each aggregate, an earlier one reading the same field (`avg(usage)` and
    /// `max(usage)`): its value is looked up once per record.
    same_field_as: Vec<Option<usize>>,
    state: State,
    /// Groups of aligned windows, sessions, sliding windows' records: the state store's
    /// table, or memory without one.
    keyed: Box<dyn KeyedState>,
    clock: LaneClock,
    /// Arrival sequence number: orders `first` / `last` and ties.
    seq: u64,
    last_input_wall: i64,
    last_tick_wall: i64,
    /// An error while firing from `on_lanes` (which cannot return one), reported by
    /// the next call that can.
    failed: Option<ConnectorError>,
    /// The watermark moved during the batch and a sliding window fires at its end.
    fire_after_batch: bool,
}

impl Window {
    pub fn new(spec: WindowSpec) -> Self {
        let state = match spec.kind {
            Kind::Tumbling | Kind::Hopping => State::Aligned(Default::default()),
            Kind::Session => State::Session(Default::default()),
            Kind::Sliding => State::Sliding(Default::default()),
        };
        let now = now_ms();
        let same_field_as = spec
            .aggregates
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let field = a.field.as_ref()?;
                spec.aggregates[..i]
                    .iter()
                    .position(|b| b.field.as_ref() == Some(field))
            })
            .collect();
        Self {
            clock: LaneClock::new(spec.out_of_orderness, spec.idle_timeout),
            same_field_as,
            spec,
            state,
            keyed: Box::new(MemoryState::default()),
            seq: 0,
            last_input_wall: now,
            last_tick_wall: now,
            failed: None,
            fire_after_batch: false,
        }
    }

    /// The same with at most `bytes` of aligned-window groups, sessions or sliding
    /// windows' records in memory (the rest in keyed state).
    pub fn with_resident_budget(spec: WindowSpec, bytes: usize) -> Self {
        let mut w = Self::new(spec);
        match w.state {
            State::Aligned(_) => w.state = State::Aligned(aligned::Aligned::with_budget(bytes)),
            State::Session(_) => w.state = State::Session(session::Sessions::with_budget(bytes)),
            State::Sliding(_) => w.state = State::Sliding(sliding::Sliding::with_budget(bytes)),
        }
        w
    }

    /// Handles one record: lateness, state update, watermark, firing.
    fn on_record(&mut self, r: &Record, now: i64, out: &mut Emitter) -> Result<(), ConnectorError> {
        let t = match self.spec.time.of(r, "window") {
            Ok(t) => t,
            Err(e) => {
                out.bad.push(BadRecord::record(r.clone(), e));
                return Ok(());
            }
        };
        let mut inputs: SmallVec<[Option<&Value>; 8]> = SmallVec::new();
        for (a, same) in self.spec.aggregates.iter().zip(&self.same_field_as) {
            let input = match same {
                Some(earlier) => a.checked(inputs[*earlier]),
                None => a.input(r),
            };
            match input {
                Ok(v) => inputs.push(v),
                Err(e) => {
                    out.bad
                        .push(BadRecord::record(r.clone(), format!("window: {e}")));
                    return Ok(());
                }
            }
        }
        // Borrowed key values: an owned key is built only when a new group starts.
        let key: KeyRefs = self
            .spec
            .group_by
            .iter()
            .map(|p| r.value.get_path(p).unwrap_or(&NULL))
            .collect();
        self.seq += 1;
        let watermark = self.clock.watermark();
        let accepted = match &mut self.state {
            State::Aligned(s) => s.add(
                &self.spec,
                &mut *self.keyed,
                watermark,
                t,
                &key,
                &inputs,
                self.seq,
                out,
            )?,
            State::Session(s) => s.add(
                &self.spec,
                &mut *self.keyed,
                watermark,
                t,
                &key,
                &inputs,
                self.seq,
                out,
            )?,
            State::Sliding(s) => s.add(
                &self.spec,
                &mut *self.keyed,
                watermark,
                t,
                &key,
                &inputs,
                self.seq,
                out,
            )?,
        };
        if !accepted {
            let cause = self.clock.late_cause(r.lane, t, self.spec.grace);
            if self.spec.late_to_dlq {
                let why = match cause {
                    LateCause::WithinPartition => "out of order within its partition",
                    LateCause::PartitionBehind => {
                        "its partition had been idle or was newly assigned"
                    }
                };
                let reason = format!(
                    "late record: event time {t} is behind the watermark {watermark} by more than grace {} ms ({why})",
                    self.spec.grace
                );
                out.bad.push(BadRecord::record(r.clone(), reason));
            } else if cause == LateCause::WithinPartition {
                out.late_dropped += 1;
            } else {
                out.late_partition_behind += 1;
            }
            return Ok(());
        }
        if self.clock.observe(r.lane, t, now).is_some() {
            // A sliding window fires once per batch, not once per record (each firing
            // reads its index, from the store once spilled). The rows due cannot
            // change meanwhile: a record accepted later in the batch is after all.
            if matches!(self.state, State::Sliding(_)) {
                self.fire_after_batch = true;
            } else {
                self.fire(out)?;
            }
        }
        Ok(())
    }

    fn fire(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        let wm = self.clock.watermark();
        match &mut self.state {
            State::Aligned(s) => s.fire(&self.spec, &mut *self.keyed, wm, out)?,
            State::Session(s) => s.fire(&self.spec, &mut *self.keyed, wm, out)?,
            State::Sliding(s) => s.fire(&self.spec, &mut *self.keyed, wm, out)?,
        }
        Ok(())
    }
}

impl Transform for Window {
    fn state_key(&self, _input: usize) -> Option<Vec<FieldPath>> {
        Some(self.spec.group_by.clone())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        self.last_input_wall = now;
        for r in batch.iter() {
            self.on_record(r, now, out)?;
        }
        if std::mem::take(&mut self.fire_after_batch) {
            self.fire(out)?;
        }
        Ok(())
    }

    fn on_lanes(&mut self, origin: u32, lanes: &[u64], out: &mut Emitter) {
        if self.clock.declare(origin, lanes, now_ms()).is_some() {
            if let Err(e) = self.fire(out) {
                self.failed = Some(e);
            }
        }
    }

    fn keeps_lanes(&self) -> bool {
        false
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.spec
            .idle_timeout
            .map(|t| Duration::from_millis((t / 4).clamp(10, 1000) as u64))
    }

    /// A partition quiet for `idle_timeout` stops holding the watermark back; when the
    /// whole input is quiet, processing time advances it, so the last windows of a
    /// quiet stream are still emitted.
    fn on_tick(&mut self, now: i64, out: &mut Emitter) -> Result<(), ConnectorError> {
        let elapsed = now - self.last_tick_wall;
        self.last_tick_wall = now;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.clock.tick(now).is_some() {
            self.fire(out)?;
        }
        if let Some(idle) = self.spec.idle_timeout {
            let wm = self.clock.watermark();
            if now - self.last_input_wall >= idle && wm != i64::MIN && elapsed > 0 {
                self.clock.advance_to(wm.saturating_add(elapsed));
                self.fire(out)?;
            }
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.clock.advance_to(i64::MAX);
        self.fire(out)
    }

    fn resume(&mut self, out: &mut Emitter) -> Result<bool, ConnectorError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match &mut self.state {
            State::Aligned(s) => s.drain(&self.spec, &mut *self.keyed, out),
            State::Session(s) => s.drain(&self.spec, &mut *self.keyed, out),
            State::Sliding(s) => s.drain(&self.spec, &mut *self.keyed, out),
        }
    }

    fn attach_state(&mut self, state: Box<dyn KeyedState>) -> bool {
        match self.state {
            State::Aligned(_) => {
                self.state = State::Aligned(aligned::Aligned::with_budget(state.memory_budget()));
                self.keyed = state;
                // Each window filters the group keys it spilled, by the hash it has at
                // hand.
                self.keyed.without_key_filter();
                true
            }
            // A key not in memory is read from the store: its filter answers for new
            // keys.
            State::Session(_) => {
                self.state = State::Session(session::Sessions::with_budget(state.memory_budget()));
                self.keyed = state;
                true
            }
            // Records are read by range only: a key filter would answer nothing.
            State::Sliding(_) => {
                self.state = State::Sliding(sliding::Sliding::with_budget(state.memory_budget()));
                self.keyed = state;
                self.keyed.without_key_filter();
                true
            }
        }
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        let clock = self.clock.snapshot();
        let state = match &mut self.state {
            State::Aligned(s) => StateSnapshot::Aligned(s.persist(&mut *self.keyed)?),
            State::Session(s) => StateSnapshot::Session(s.persist(&self.spec, &mut *self.keyed)),
            State::Sliding(s) => StateSnapshot::Sliding(s.persist(&mut *self.keyed)),
        };
        serde_json::to_value(Snapshot {
            watermark: clock.watermark,
            seq: self.seq,
            state,
            lanes: clock.lanes,
            entries: self.keyed.export(),
            layout: Some(self.spec.state_layout()),
        })
        .map_err(|e| ConnectorError::permanent("window: cannot serialize state").with_source(e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        if state.is_null() {
            return Ok(());
        }
        let snap: Snapshot = serde_json::from_value(state).map_err(|e| {
            ConnectorError::permanent(
                "window: the checkpointed state does not match this window's kind",
            )
            .with_source(e)
        })?;
        let layout = self.spec.state_layout();
        if let Some(saved) = snap.layout.filter(|saved| *saved != layout) {
            return Err(ConnectorError::permanent(format!(
                "window: the checkpointed state was saved by another configuration ({saved}) than this one's ({layout}), and would be read as this one's. Put the old configuration back, or reset the pipeline's state to start it over (DELETE /connectors/<pipeline>/offsets, or remove the pipeline's folder in the state directory)"
            )));
        }
        self.clock.restore(
            &LaneClockSnapshot {
                watermark: snap.watermark,
                lanes: snap.lanes,
            },
            now_ms(),
        );
        self.seq = snap.seq;
        for (k, v) in snap.entries.into_iter().flatten() {
            self.keyed.put(&k, &v);
        }
        match (&mut self.state, snap.state) {
            (State::Aligned(s), StateSnapshot::Aligned(a)) => s.restore(a, &mut *self.keyed)?,
            (State::Session(s), StateSnapshot::Session(a)) => {
                s.restore(&self.spec, a, &mut *self.keyed)?
            }
            (State::Sliding(s), StateSnapshot::Sliding(a)) => {
                s.restore(&self.spec, a, snap.watermark, &mut *self.keyed)?
            }
            _ => {
                return Err(ConnectorError::permanent(
                    "window: the checkpointed state does not match this window's kind",
                ))
            }
        }
        Ok(())
    }
}

/// Reads maps that older checkpoints wrote as lists of pairs (JSON keys must be
/// strings; ours are not). Nothing is written this way any more.
pub(crate) mod pairs {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, M, K, V>(d: D) -> Result<M, D::Error>
    where
        D: Deserializer<'de>,
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
    {
        let items: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(items.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
