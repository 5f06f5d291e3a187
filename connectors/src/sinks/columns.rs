//! The `columns` option of the table sinks: `[a, b]` (column = field) or
//! `{column: field, column: {field: path, type: ...}}`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use connectd_sdk::config::ConfigMap;
use connectd_sdk::{FieldPath, Value};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Warns once per column when a record has no field for it. A misspelt field (or one a
/// transform upstream renamed) was written empty, or NULL, on every row without a word;
/// a record may also just lack an optional field, so it is a warning, said once.
#[derive(Debug, Default)]
pub struct MissingFields(Vec<AtomicBool>);

impl MissingFields {
    pub fn new(columns: usize) -> Self {
        Self((0..columns).map(|_| AtomicBool::new(false)).collect())
    }

    /// `value` has no `field` for column `i`; `written` says what is written instead.
    pub fn note(
        &self,
        sink: &str,
        i: usize,
        field: &FieldPath,
        value: &Value,
        written: impl FnOnce() -> String,
    ) {
        if self
            .0
            .get(i)
            .is_none_or(|said| said.swap(true, Ordering::Relaxed))
        {
            return;
        }
        let fields = match value {
            Value::Object(o) => {
                let names: Vec<&str> = o.iter().map(|(name, _)| name).take(30).collect();
                format!("its fields are {}", names.join(", "))
            }
            other => format!("it is {}", other.type_with_article()),
        };
        tracing::warn!(
            "{sink}: a record has no field `{field}`, so {}; {fields}. Said once for this field",
            written()
        );
    }

    /// `note` for a table's column, written empty or NULL.
    pub fn column(&self, sink: &str, i: usize, column: &str, field: &FieldPath, value: &Value) {
        self.note(sink, i, field, value, || {
            format!("column `{column}` is written empty (NULL)")
        });
    }
}

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    pub field: FieldPath,
    /// The `type:` given, if any (one of the sink's allowed words).
    pub kind: Option<&'static str>,
}

/// One column as written: the field it takes, and a type word if given.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnOption {
    pub field: String,
    pub kind: Option<String>,
}

/// `columns` as written, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnsOption(pub Vec<(String, ColumnOption)>);

struct ColumnsVisitor;

impl<'de> Visitor<'de> for ColumnsVisitor {
    type Value = ColumnsOption;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of fields, or a mapping column: field")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ColumnsOption, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = seq.next_element::<String>()? {
            let column = ColumnOption {
                field: name.clone(),
                kind: None,
            };
            out.push((name, column));
        }
        Ok(ColumnsOption(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ColumnsOption, A::Error> {
        let mut out = Vec::new();
        while let Some((name, column)) = map.next_entry::<String, ColumnOption>()? {
            out.push((name, column));
        }
        Ok(ColumnsOption(out))
    }
}

impl<'de> Deserialize<'de> for ColumnsOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ColumnsVisitor)
    }
}

struct ColumnVisitor;

impl<'de> Visitor<'de> for ColumnVisitor {
    type Value = ColumnOption;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field path or {field, type}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnOption, E> {
        Ok(ColumnOption {
            field: v.to_string(),
            kind: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ColumnOption, A::Error> {
        let (mut field, mut kind) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "field" => field = Some(map.next_value::<String>()?),
                "type" => kind = Some(map.next_value::<String>()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` (expected {{field: <path>, type: <type>}})"
                    )))
                }
            }
        }
        let field = field.ok_or_else(|| de::Error::missing_field("field"))?;
        Ok(ColumnOption { field, kind })
    }
}

impl<'de> Deserialize<'de> for ColumnOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ColumnVisitor)
    }
}

impl Serialize for ColumnsOption {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(name, _)| name))
    }
}

impl schemars::JsonSchema for ColumnsOption {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Columns".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a list of fields (the column is named as the field), or a mapping column: field or column: {field, type}",
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "object", "minProperties": 1, "additionalProperties": {"anyOf": [
                    {"type": "string"},
                    {"type": "object", "required": ["field"], "additionalProperties": false,
                     "properties": {"field": {"type": "string"}, "type": {"type": "string"}}}
                ]}}
            ]
        })
    }
}

/// The columns, checked: names, and type words against `kinds` (the sink's allowed
/// `type:` words). Problems are recorded in the config.
pub fn read(
    cfg: &ConfigMap<'_>,
    written: ColumnsOption,
    kinds: &[&'static str],
) -> Vec<ColumnSpec> {
    let mut columns = Vec::new();
    for (name, c) in written.0 {
        let kind = match c.kind.as_deref() {
            None => None,
            Some(t) => match kinds.iter().find(|k| **k == t) {
                Some(k) => Some(*k),
                None => {
                    let expected = if kinds.is_empty() {
                        "no `type` (this sink takes the table's types)".to_string()
                    } else {
                        format!("a type of {}", kinds.join(" | "))
                    };
                    cfg.error(
                        &format!("columns.{name}"),
                        format!("expected {expected}, found `{t}`"),
                    );
                    continue;
                }
            },
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            cfg.error(
                "columns",
                format!("`{name}` is not a valid column name (letters, digits, `_`)"),
            );
        }
        columns.push(ColumnSpec {
            field: FieldPath::parse(&c.field),
            name,
            kind,
        });
    }
    if columns.is_empty() && cfg.has("columns") {
        cfg.error("columns", "expected at least one column");
    }
    columns
}

/// Column name to database type (`create_table`, `create_schema.columns`), in order.
pub type ColumnTypes = connectd_sdk::config::TextMap;
