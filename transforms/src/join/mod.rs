//! `join`: two inputs joined on key fields, `inputs: [left, right]`.
//!
//! - `within: <duration>` — a windowed stream–stream join: a left and a right record
//!   with equal keys whose event times are at most `within` apart make one output.
//!   Event time is `time` (and `right_time` for the right input, if it differs).
//!   Records are held until the watermark (the minimum over the input partitions of
//!   the newest event time in each − `max_out_of_orderness`, see `connectd_sdk::lanes`)
//!   passes their time + `within` + `grace`; one older than watermark − `grace` on
//!   arrival is late (`late: drop | dlq`). `kind: left` also emits each left record that
//!   found no partner, with the left fields only, when it leaves the window.
//! - `table: <right input>` — a stream–table join: the right input is kept as the
//!   latest record per key, and each left record is
//!   enriched with the right one of its key (`kind: inner` drops a left record without
//!   one; `kind: left` passes it unenriched). Table updates emit nothing. With
//!   `retention`, a row not updated for that long (wall clock) is forgotten.
//!
//! The output is the left record's fields, then the right record's fields that the left
//! lacks (prefixed with `right_prefix`, if set); its time is the later of the two.
//! A record without the key fields goes to the DLQ. State is in the pipeline's state
//! store (the table's rows, the windowed join's held records), written as it changes.

mod presence;
mod recent;
mod table;
mod windowed;

use std::time::Duration;

use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::window::LateWord;
use connectd_sdk::{
    BadRecord, Batch, BuildContext, ConnectorError, Emitter, FieldPath, Object, Record, Value,
};

use connectd_sdk::lanes::LateCause;
use connectd_sdk::record::take_records;

use crate::keys::{field_list, key_of};
use crate::time::{TimeSource, TimeUnit};

/// What both join kinds need to know.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Key fields of the left and the right input.
    keys: [Vec<FieldPath>; 2],
    left_outer: bool,
    right_prefix: String,
    /// The input names, for non-object values.
    names: [String; 2],
    /// Whether a right field left out for a left field of its name was warned of.
    shadowed_warned: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
enum Kind {
    Windowed {
        within: i64,
        grace: i64,
        /// Event time of the left and the right input.
        time: [TimeSource; 2],
        out_of_orderness: i64,
        late_to_dlq: bool,
        /// Boxed: far larger than a table join's state.
        state: Box<windowed::Windowed>,
    },
    Table {
        /// Rows not updated for this long (ms) are forgotten.
        retention: Option<i64>,
        state: table::Table,
    },
}

#[derive(Debug)]
pub struct Join {
    spec: Spec,
    kind: Kind,
    /// An error from `on_lanes` (which cannot return one), reported by the next call
    /// that can.
    failed: Option<ConnectorError>,
}

/// Joins two inputs by key: a windowed stream–stream join (`within`) or a
/// stream–table join (`table`, the right input holds the latest record per key).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct JoinOptions {
    /// The left input's key field(s).
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub on: Vec<String>,
    /// The right input's key field(s), in the same order (default: `on`).
    #[serde(default)]
    #[schemars(schema_with = "connectd_sdk::config::scalar_text_list")]
    pub right_on: Option<Vec<String>>,
    /// `inner`, or `left` (left records without a match are emitted too).
    #[serde(default)]
    pub kind: JoinKind,
    /// A prefix for the right record's fields in the output.
    #[serde(default)]
    pub right_prefix: String,
    /// A windowed stream–stream join: records match when their event times are at most
    /// this far apart.
    #[serde(default)]
    pub within: Option<HumanDuration>,
    /// A stream–table join: the name of the right input, read as a table.
    #[serde(default)]
    pub table: Option<String>,
    /// (windowed) How long after the watermark records are still matched.
    #[serde(default)]
    pub grace: HumanDuration,
    /// The event-time field of the left input (`$timestamp`: the record's timestamp).
    #[serde(default)]
    pub time: Option<String>,
    /// The event-time field of the right input (default: `time`).
    #[serde(default)]
    pub right_time: Option<String>,
    /// (windowed) The unit of a numeric `time` and `right_time`: `ms` (default), `s`,
    /// `us` or `ns`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// (windowed) How far out of order event times may arrive.
    #[serde(default)]
    pub max_out_of_orderness: HumanDuration,
    /// (windowed) Records too late to match: `drop` or `dlq`.
    #[serde(default)]
    pub late: LateWord,
    /// (table) How long a table row is kept after its last update.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    #[default]
    Inner,
    Left,
}

pub fn build(
    cfg: &mut ConfigMap<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn connectd_sdk::Transform>, Invalid> {
    if ctx.inputs.len() != 2 {
        cfg.error(
            "inputs",
            format!(
                "a join has exactly two inputs, [left, right]; found {}",
                ctx.inputs.len()
            ),
        );
    }
    let o: JoinOptions = cfg.typed().ok_or(Invalid)?;
    let left_key = field_list(cfg, "on", &o.on);
    let right_key = match &o.right_on {
        Some(list) => field_list(cfg, "right_on", list),
        None => left_key.clone(),
    };
    if right_key.len() != left_key.len() {
        cfg.error(
            "right_on",
            format!(
                "name as many fields as `on` ({}), in the same order",
                left_key.len()
            ),
        );
    }
    let left_outer = o.kind == JoinKind::Left;
    let right_prefix = o.right_prefix;
    let within = o.within.map(|d| d.as_millis_i64());
    let table = o.table;
    let kind = match (within, table) {
        (Some(within), None) => {
            let grace = o.grace.as_millis_i64();
            let left_time = TimeSource::from_option(o.time.as_deref(), o.time_unit);
            let right_time = match o.right_time.as_deref() {
                Some(t) => TimeSource::from_option(Some(t), o.time_unit),
                None => left_time.clone(),
            };
            let time = [left_time, right_time];
            let out_of_orderness = o.max_out_of_orderness.as_millis_i64();
            let late_to_dlq = o.late == LateWord::Dlq;
            let mut state = windowed::Windowed::new(within, grace);
            state.configure(out_of_orderness);
            Kind::Windowed {
                within,
                grace,
                time,
                out_of_orderness,
                late_to_dlq,
                state: Box::new(state),
            }
        }
        (None, Some(table)) => {
            if ctx.inputs.len() == 2 && ctx.inputs[1] != table {
                cfg.error(
                    "table",
                    format!(
                        "the table must be the right (second) input, `{}`: inputs: [stream, table]",
                        ctx.inputs[1]
                    ),
                );
            }
            let retention = o.retention.map(|d| d.as_millis_i64());
            if retention.is_some_and(|r| r <= 0) {
                cfg.error("retention", "retention must be greater than 0");
            }
            Kind::Table {
                retention,
                state: table::Table::default(),
            }
        }
        (Some(_), Some(_)) => {
            cfg.error(
                "table",
                "set `within` (a windowed stream–stream join) or `table` (a stream–table join), not both",
            );
            Kind::Table {
                retention: None,
                state: table::Table::default(),
            }
        }
        (None, None) => {
            cfg.error(
                "within",
                "missing: set `within` (a windowed stream–stream join) or `table: <right input>` (a stream–table join)",
            );
            Kind::Table {
                retention: None,
                state: table::Table::default(),
            }
        }
    };
    cfg.finish()?;
    let name = |i: usize| ctx.inputs.get(i).cloned().unwrap_or_default();
    Ok(Box::new(Join {
        spec: Spec {
            keys: [left_key, right_key],
            left_outer,
            right_prefix,
            names: [name(0), name(1)],
            shadowed_warned: Default::default(),
        },
        kind,
        failed: None,
    }))
}

impl Spec {
    /// Once: a right record's fields that the output left out, as the left record has
    /// fields of their names with other values (the right's price under the left's).
    fn warn_of_shadowed(&self, shadowed: &[String]) {
        if !self
            .shadowed_warned
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "join of `{}` and `{}`: the right record's {} left out of the output, as the left record has a field of that name; set `right_prefix` to keep both. Said once",
                self.names[0],
                self.names[1],
                shadowed.join(", ") + if shadowed.len() == 1 { " is" } else { " are" }
            );
        }
    }

    /// One output row: the left fields, then the right's that the left lacks.
    pub(crate) fn combine(&self, left: &Record, right: Option<&Record>) -> Record {
        let mut o = match &left.value {
            Value::Object(o) => o.clone(),
            other => Object::from_iter([(self.names[0].as_str(), other.clone())]),
        };
        if let Some(right) = right {
            match &right.value {
                Value::Object(fields) => {
                    let mut shadowed = Vec::new();
                    let warn = !self
                        .shadowed_warned
                        .load(std::sync::atomic::Ordering::Relaxed);
                    for (name, v) in fields.iter() {
                        let name = format!("{}{name}", self.right_prefix);
                        match o.get(&name) {
                            None => o.push_unchecked(name, v.clone()),
                            // The key fields are equal on both sides: nothing is lost.
                            Some(own) if warn && own != v => {
                                shadowed.push(format!("`{name}` ({v})"))
                            }
                            Some(_) => {}
                        }
                    }
                    if !shadowed.is_empty() {
                        self.warn_of_shadowed(&shadowed);
                    }
                }
                other => o.insert(self.names[1].as_str(), other.clone()),
            }
        }
        Record {
            lane: left.lane,
            key: left.key.clone(),
            value: Value::Object(o),
            timestamp: match (left.timestamp, right.and_then(|r| r.timestamp)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            headers: left.headers.clone(),
        }
    }
}

impl connectd_sdk::Transform for Join {
    fn state_key(&self, input: usize) -> Option<Vec<connectd_sdk::FieldPath>> {
        self.spec.keys.get(input).cloned()
    }

    fn process(
        &mut self,
        input: usize,
        batch: Batch,
        out: &mut Emitter,
    ) -> Result<(), ConnectorError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let side = input.min(1);
        let now = connectd_sdk::time::now_ms();
        for r in take_records(batch) {
            let Some(key) = key_of(&r, &self.spec.keys[side]) else {
                let fields: Vec<String> = self.spec.keys[side]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let why = format!(
                    "join: the key field(s) {} of input `{}` are missing or null",
                    fields.join(", "),
                    self.spec.names[side]
                );
                out.bad.push(BadRecord::record(r, why));
                continue;
            };
            match &mut self.kind {
                Kind::Table { state, retention } => {
                    state.add(&self.spec, side, key, r, *retention, out)?
                }
                Kind::Windowed {
                    within,
                    grace,
                    time,
                    late_to_dlq,
                    state,
                    ..
                } => {
                    let t = match time[side].of(&r, "join") {
                        Ok(t) => t,
                        Err(e) => {
                            out.bad.push(BadRecord::record(r, e));
                            continue;
                        }
                    };
                    let window = windowed::Bounds {
                        within: *within,
                        grace: *grace,
                    };
                    if let Err(r) = state.add(&self.spec, &window, side, key, t, r, now, out)? {
                        let cause = state.late_cause(r.lane, t, *grace);
                        if *late_to_dlq {
                            let why = match cause {
                                LateCause::WithinPartition => "out of order within its partition",
                                LateCause::PartitionBehind => {
                                    "its partition had been idle or was newly assigned"
                                }
                            };
                            let reason = format!(
                                "late record: event time {t} is behind the join's watermark {} by more than grace {grace} ms ({why})",
                                state.watermark()
                            );
                            out.bad.push(BadRecord::record(r, reason));
                        } else if cause == LateCause::WithinPartition {
                            out.late_dropped += 1;
                        } else {
                            out.late_partition_behind += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Table {
                retention: Some(r), ..
            } => Some(Duration::from_millis((r / 4).clamp(10, 1000) as u64)),
            _ => None,
        }
    }

    fn on_tick(&mut self, now: i64, _out: &mut Emitter) -> Result<(), ConnectorError> {
        if let Kind::Table {
            retention: Some(r),
            state,
        } = &mut self.kind
        {
            state.expire(now, *r)?;
        }
        Ok(())
    }

    fn on_lanes(&mut self, origin: u32, lanes: &[u64], out: &mut Emitter) {
        if let Kind::Windowed { state, .. } = &mut self.kind {
            if let Err(e) = state.declare(&self.spec, origin, lanes, out) {
                self.failed = Some(e);
            }
        }
    }

    fn keeps_lanes(&self) -> bool {
        false
    }

    fn on_end(&mut self, out: &mut Emitter) -> Result<(), ConnectorError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if let Kind::Windowed { state, .. } = &mut self.kind {
            state.finish(&self.spec, out)?;
        }
        Ok(())
    }

    fn attach_state(&mut self, keyed: Box<dyn connectd_sdk::state::KeyedState>) -> bool {
        match &mut self.kind {
            Kind::Table { state, .. } => {
                state.attach(keyed);
                true
            }
            Kind::Windowed { state, .. } => {
                state.attach(keyed);
                true
            }
        }
    }

    fn snapshot(&mut self) -> Result<serde_json::Value, ConnectorError> {
        let state = match &self.kind {
            Kind::Table { state, .. } => serde_json::to_value(state.snapshot()),
            Kind::Windowed { state, .. } => serde_json::to_value(state.snapshot()),
        };
        state.map_err(|e| ConnectorError::permanent("join: cannot serialize state").with_source(e))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ConnectorError> {
        if state.is_null() {
            return Ok(());
        }
        let wrong = |e| {
            ConnectorError::permanent("join: the checkpointed state is not this join's")
                .with_source(e)
        };
        match &mut self.kind {
            Kind::Table {
                state: t,
                retention,
            } => t.restore(serde_json::from_value(state).map_err(wrong)?, *retention)?,
            Kind::Windowed {
                state: w,
                out_of_orderness,
                ..
            } => {
                w.restore(serde_json::from_value(state).map_err(wrong)?)?;
                w.configure(*out_of_orderness);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
