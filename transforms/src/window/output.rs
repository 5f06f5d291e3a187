//! A window's output rows: `window_start`, `window_end`, the `group_by` fields by their
//! last segment, then the aggregates; and the check that no two share a name.

use connectd_sdk::config::ConfigMap;
use connectd_sdk::{BadRecord, Emitter, FieldPath, Object, Record, Value};

use super::{GroupKey, WindowSpec};

/// Emits an output row; one whose `sum` or `avg` passed the float range (±1.8e308) is
/// the window's error, to the dead-letter queue with the row: as infinity it became
/// `null` in JSON and `inf` in a CSV, a number no reader takes for the sum it was.
pub(crate) fn emit_row(
    out: &mut Emitter,
    spec: &WindowSpec,
    start: i64,
    end: i64,
    key: &GroupKey,
    values: impl Iterator<Item = Value>,
) {
    let (row, past_range) = output_row(spec, start, end, key, values);
    match past_range {
        Some(name) => out.bad.push(BadRecord::record(
            row,
            format!(
                "window: `{name}` of the window [{start}, {end}) passed the float range (±1.8e308): its inputs add up to more than a 64-bit float holds"
            ),
        )),
        None => out.emit(row),
    }
}

/// Builds an output row: window bounds, group fields, aggregates; with the name of the
/// first aggregate that is no finite number, if one is not.
fn output_row<'s>(
    spec: &'s WindowSpec,
    start: i64,
    end: i64,
    key: &GroupKey,
    values: impl Iterator<Item = Value>,
) -> (Record, Option<&'s str>) {
    let mut o = Object::with_capacity(2 + key.0.len() + spec.aggregates.len());
    o.push_unchecked("window_start", Value::Int(start));
    o.push_unchecked("window_end", Value::Int(end));
    for (p, v) in spec.group_by.iter().zip(&key.0) {
        o.insert(p.leaf(), v.clone());
    }
    let mut past_range = None;
    for (a, v) in spec.aggregates.iter().zip(values) {
        if matches!(v, Value::Float(f) if !f.is_finite()) && past_range.is_none() {
            past_range = Some(a.name.as_str());
        }
        o.insert(a.name.clone(), v);
    }
    let record_key = match key.0.as_slice() {
        [] => Value::Null,
        [one] => one.clone(),
        many => Value::List(many.to_vec()),
    };
    let row = Record::new(Value::Object(o))
        .with_key(record_key)
        .with_timestamp(end);
    (row, past_range)
}

/// Each field of an output row has one source. Two `group_by` fields with the same last
/// segment (`a.id`, `b.id`), or an aggregate named `window_start`, wrote one field over
/// the other in every row, without a word.
pub(super) fn check_names<'a>(
    cfg: &ConfigMap<'_>,
    group_by: &[FieldPath],
    aggregates: impl Iterator<Item = &'a str>,
) {
    let mut taken: Vec<(String, String)> = vec![
        ("window_start".into(), "the window's start".into()),
        ("window_end".into(), "the window's end".into()),
    ];
    for path in group_by {
        let name = path.leaf();
        match taken.iter().find(|(n, _)| n == name) {
            Some((_, by)) => cfg.error(
                "group_by",
                format!(
                    "`{path}` and {by} would both be the output field `{name}`; give one another name with a `map` upstream (`fields: {{{}: {path}}}`) and group by that",
                    path.to_string().replace('.', "_")
                ),
            ),
            None => taken.push((name.to_string(), format!("`group_by` field `{path}`"))),
        }
    }
    for name in aggregates {
        match taken.iter().find(|(n, _)| n == name) {
            Some((_, by)) => cfg.error(
                &format!("aggregates.{name}"),
                format!("the output field `{name}` is {by} already; name the aggregate otherwise"),
            ),
            None => taken.push((name.to_string(), format!("the aggregate `{name}`"))),
        }
    }
}
