//! Aggregate functions: specs parsed from config, and mergeable accumulators.

use std::hash::{Hash, Hasher};

use compact_str::CompactString;
use connectd_sdk::{FieldPath, Record, Value};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    CountDistinct,
}

impl AggKind {
    /// The function's name as written in a config.
    pub fn word(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Avg => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::First => "first",
            AggKind::Last => "last",
            AggKind::CountDistinct => "count_distinct",
        }
    }
}

/// `name: fn(field)` from the config.
#[derive(Clone, Debug)]
pub struct AggSpec {
    pub name: CompactString,
    pub kind: AggKind,
    /// `None` for `count()` / `count(*)`.
    pub field: Option<FieldPath>,
}

pub const AGG_HELP: &str =
    "count(), count(field), sum(field), avg(field), min(field), max(field), \
first(field), last(field) (alias latest_by_offset), count_distinct(field)";

impl AggSpec {
    pub fn parse(name: &str, text: &str) -> Result<AggSpec, String> {
        let text = text.trim();
        let (func, rest) = text
            .split_once('(')
            .ok_or_else(|| format!("`{text}` is not an aggregate; expected one of {AGG_HELP}"))?;
        let arg = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("`{text}`: missing closing parenthesis"))?
            .trim();
        let kind = match func.trim().to_ascii_lowercase().as_str() {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" | "mean" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "first" | "earliest_by_offset" => AggKind::First,
            "last" | "latest_by_offset" => AggKind::Last,
            "count_distinct" => AggKind::CountDistinct,
            other => {
                return Err(format!(
                    "unknown aggregate `{other}`; expected one of {AGG_HELP}"
                ))
            }
        };
        let field = match arg {
            "" | "*" if kind == AggKind::Count => None,
            "" | "*" => {
                return Err(format!(
                    "`{text}` needs a field, e.g. {}(price)",
                    func.trim()
                ))
            }
            f if f
                .split('.')
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')) =>
            {
                Some(FieldPath::parse(f))
            }
            f => return Err(format!("`{f}` is not a field path")),
        };
        Ok(AggSpec {
            name: name.into(),
            kind,
            field,
        })
    }

    /// The input value of this aggregate for a record, checked for type.
    pub fn input<'r>(&self, r: &'r Record) -> Result<Option<&'r Value>, String> {
        match &self.field {
            Some(path) => self.checked(r.value.get_path(path)),
            None => Ok(None),
        }
    }

    /// The value of this aggregate's field (looked up by the caller), checked for type.
    pub fn checked<'r>(&self, v: Option<&'r Value>) -> Result<Option<&'r Value>, String> {
        // A missing field is null, as everywhere else: `count(f)` counted records
        // without `f` (as `count()` does) but not those with `f: null`.
        static NULL: Value = Value::Null;
        let v = match (&self.field, v) {
            (Some(_), None) => Some(&NULL),
            (_, v) => v,
        };
        if matches!(self.kind, AggKind::Sum | AggKind::Avg) {
            if let (Some(v), Some(path)) = (v, &self.field) {
                if !matches!(v, Value::Int(_) | Value::Float(_) | Value::Null) {
                    return Err(format!(
                        "{}: `{path}` is a {} ({v}), expected a number",
                        self.name,
                        v.type_name()
                    ));
                }
            }
        }
        Ok(v)
    }

    pub fn new_acc(&self) -> Acc {
        match self.kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
                n: 0,
            },
            AggKind::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggKind::Min => Acc::Min(Value::Null),
            AggKind::Max => Acc::Max(Value::Null),
            AggKind::First => Acc::First(None),
            AggKind::Last => Acc::Last(None),
            AggKind::CountDistinct => Acc::Distinct(DistinctSet::default()),
        }
    }
}

/// A value usable as a hash key (numbers by value, NaN-safe).
#[derive(Clone, Debug)]
pub struct KeyValue(pub Value);

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.key_eq(&other.0)
    }
}
impl Eq for KeyValue {}
impl Hash for KeyValue {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash_into(h);
    }
}

#[derive(Clone, Debug, Default)]
pub struct DistinctSet(pub FxHashSet<KeyValue>);

impl Serialize for DistinctSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut items: Vec<&Value> = self.0.iter().map(|k| &k.0).collect();
        items.sort_by(|a, b| a.total_cmp(b));
        items.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DistinctSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<Value> = Vec::deserialize(d)?;
        Ok(DistinctSet(items.into_iter().map(KeyValue).collect()))
    }
}

/// A running aggregate. All are mergeable (session windows merge).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Acc {
    Count(i64),
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        n: u64,
    },
    Avg {
        sum: f64,
        n: u64,
    },
    Min(Value),
    Max(Value),
    /// (arrival sequence, value)
    First(Option<(u64, Value)>),
    Last(Option<(u64, Value)>),
    Distinct(DistinctSet),
}

impl Acc {
    /// Adds one input. `input` is `None` for `count()`; nulls are skipped (SQL semantics).
    pub fn add(&mut self, input: Option<&Value>, seq: u64) {
        match self {
            Acc::Count(n) => {
                if input.is_none_or(|v| !v.is_null()) {
                    *n += 1;
                }
            }
            _ => {
                let Some(v) = input.filter(|v| !v.is_null()) else {
                    return;
                };
                self.add_value(v, seq);
            }
        }
    }

    fn add_value(&mut self, v: &Value, seq: u64) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum {
                int,
                float,
                is_float,
                n,
            } => {
                *n += 1;
                match v {
                    Value::Int(i) if !*is_float => match int.checked_add(*i) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + *i as f64;
                        }
                    },
                    _ => {
                        if !*is_float {
                            *is_float = true;
                            *float = *int as f64;
                        }
                        *float += v.as_f64().unwrap_or(0.0);
                    }
                }
            }
            Acc::Avg { sum, n } => {
                *sum += v.as_f64().unwrap_or(0.0);
                *n += 1;
            }
            Acc::Min(m) => {
                if m.is_null() || v.total_cmp(m).is_lt() {
                    *m = v.clone();
                }
            }
            Acc::Max(m) => {
                if m.is_null() || v.total_cmp(m).is_gt() {
                    *m = v.clone();
                }
            }
            Acc::First(f) => {
                if f.as_ref().is_none_or(|(s, _)| seq < *s) {
                    *f = Some((seq, v.clone()));
                }
            }
            Acc::Last(l) => {
                if l.as_ref().is_none_or(|(s, _)| seq >= *s) {
                    *l = Some((seq, v.clone()));
                }
            }
            Acc::Distinct(set) => {
                set.0.insert(KeyValue(v.clone()));
            }
        }
    }

    /// Folds another accumulator of the same aggregate into this one.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (
                Acc::Sum {
                    int,
                    float,
                    is_float,
                    n,
                },
                &Acc::Sum {
                    int: i2,
                    float: f2,
                    is_float: fl2,
                    n: n2,
                },
            ) => {
                *n += n2;
                if *is_float || fl2 {
                    let mine = if *is_float { *float } else { *int as f64 };
                    let theirs = if fl2 { f2 } else { i2 as f64 };
                    *is_float = true;
                    *float = mine + theirs;
                } else {
                    match int.checked_add(i2) {
                        Some(s) => *int = s,
                        None => {
                            *is_float = true;
                            *float = *int as f64 + i2 as f64;
                        }
                    }
                }
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (a @ (Acc::Min(_) | Acc::Max(_)), Acc::Min(v) | Acc::Max(v)) if !v.is_null() => {
                a.add_value(v, 0)
            }
            (
                a @ (Acc::First(_) | Acc::Last(_)),
                Acc::First(Some((s, v))) | Acc::Last(Some((s, v))),
            ) => {
                a.add_value(v, *s);
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.0.extend(b.0.iter().cloned()),
            _ => {}
        }
    }

    pub fn value(&self) -> Value {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::Sum { n: 0, .. } => Value::Null,
            Acc::Sum {
                float,
                is_float: true,
                ..
            } => Value::Float(*float),
            Acc::Sum { int, .. } => Value::Int(*int),
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(*sum / *n as f64),
            Acc::Min(v) | Acc::Max(v) => v.clone(),
            Acc::First(f) | Acc::Last(f) => {
                f.as_ref().map(|(_, v)| v.clone()).unwrap_or(Value::Null)
            }
            Acc::Distinct(s) => Value::Int(s.0.len() as i64),
        }
    }
}

/// The schema of `aggregates:`: output names to one of the aggregate functions.
pub fn aggregates_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "minProperties": 1,
        "description": AGG_HELP,
        "additionalProperties": {
            "type": "string",
            "pattern": "^\\s*(count|sum|avg|min|max|first|last|latest_by_offset|count_distinct)\\s*\\(.*\\)\\s*$"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_specs() {
        assert_eq!(
            AggSpec::parse("n", "count()").map(|s| s.kind),
            Ok(AggKind::Count)
        );
        assert_eq!(
            AggSpec::parse("n", "count(*)").map(|s| s.field.is_none()),
            Ok(true)
        );
        assert_eq!(
            AggSpec::parse("p", "latest_by_offset(price)").map(|s| s.kind),
            Ok(AggKind::Last)
        );
        assert!(AggSpec::parse("p", "median(price)").is_err());
        assert!(AggSpec::parse("p", "sum()").is_err());
        assert!(AggSpec::parse("p", "sum(price").is_err());
    }

    #[test]
    fn merge_matches_sequential_adds() {
        let vals = [
            Value::Int(3),
            Value::Float(1.5),
            Value::Int(7),
            Value::Null,
            Value::Int(3),
        ];
        for kind in [
            "count(x)",
            "sum(x)",
            "avg(x)",
            "min(x)",
            "max(x)",
            "first(x)",
            "last(x)",
            "count_distinct(x)",
        ] {
            let spec = AggSpec::parse("a", kind).unwrap();
            let mut whole = spec.new_acc();
            for (i, v) in vals.iter().enumerate() {
                whole.add(Some(v), i as u64);
            }
            let (mut left, mut right) = (spec.new_acc(), spec.new_acc());
            for (i, v) in vals.iter().enumerate() {
                if i % 2 == 0 {
                    left.add(Some(v), i as u64)
                } else {
                    right.add(Some(v), i as u64)
                }
            }
            right.merge(&left);
            assert_eq!(whole.value(), right.value(), "{kind}");
        }
    }

    /// `count(v)` counts the records whose `v` is not null; a missing `v` is null.
    #[test]
    fn count_of_a_field_skips_records_without_it() {
        let records = [
            r#"{"v": 1}"#,
            r#"{"v": null}"#,
            r#"{"w": 2}"#,
            r#"{"v": 0}"#,
        ];
        for (text, expected) in [("count(v)", 2), ("count()", 4)] {
            let spec = AggSpec::parse("n", text).unwrap();
            let mut acc = spec.new_acc();
            for (i, json) in records.iter().enumerate() {
                let r = Record::new(serde_json::from_str(json).unwrap());
                acc.add(spec.input(&r).unwrap(), i as u64);
            }
            assert_eq!(acc.value(), Value::Int(expected), "{text}");
        }
    }
}
