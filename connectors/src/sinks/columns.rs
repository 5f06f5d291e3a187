//! The `columns` option of the table sinks: `[a, b]` (column = field) or
//! `{column: field, column: {field: path, type: ...}}`.

use connectd_sdk::config::{ConfigMap, ConfigValue};
use connectd_sdk::FieldPath;

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    pub field: FieldPath,
    /// The `type:` given, if any (one of the sink's allowed words).
    pub kind: Option<&'static str>,
}

/// Reads `columns`, recording problems in the config; `kinds` are the allowed `type:` words.
pub fn read(cfg: &mut ConfigMap<'_>, kinds: &[&'static str]) -> Vec<ColumnSpec> {
    let mut columns = Vec::new();
    let node = cfg.node("columns");
    match node.map(|n| &n.value) {
        None => cfg.error(
            "columns",
            "missing required field (a list of fields, or a mapping column: field)",
        ),
        Some(ConfigValue::List(items)) => {
            for item in items {
                match &item.value {
                    ConfigValue::Scalar(name) => columns.push(ColumnSpec {
                        name: name.clone(),
                        field: FieldPath::parse(name),
                        kind: None,
                    }),
                    _ => cfg.error_at(item, "columns", "expected a field name"),
                }
            }
        }
        Some(ConfigValue::Map(entries)) => {
            for (k, v) in entries {
                let at = format!("columns.{}", k.name);
                match &v.value {
                    ConfigValue::Scalar(field) => columns.push(ColumnSpec {
                        name: k.name.clone(),
                        field: FieldPath::parse(field),
                        kind: None,
                    }),
                    ConfigValue::Map(_) => {
                        let field = match v.get("field").map(|f| &f.value) {
                            Some(ConfigValue::Scalar(s)) => Some(s.clone()),
                            _ => None,
                        };
                        let kind = match v.get("type").map(|t| &t.value) {
                            None => Some(None),
                            Some(ConfigValue::Scalar(t)) => {
                                kinds.iter().find(|k| *k == t).map(|k| Some(*k))
                            }
                            _ => None,
                        };
                        let unknown = match &v.value {
                            ConfigValue::Map(e) => {
                                e.iter().any(|(k, _)| k.name != "field" && k.name != "type")
                            }
                            _ => false,
                        };
                        match (field, kind) {
                            (Some(f), Some(kind)) if !unknown => columns.push(ColumnSpec {
                                name: k.name.clone(),
                                field: FieldPath::parse(&f),
                                kind,
                            }),
                            _ => cfg.error_at(
                                v,
                                &at,
                                format!("expected {{field: <path>, type: {}}}", kinds.join(" | ")),
                            ),
                        }
                    }
                    _ => cfg.error_at(v, &at, "expected a field path or {field, type}"),
                }
            }
        }
        Some(_) => cfg.error(
            "columns",
            "expected a list of fields, or a mapping column: field",
        ),
    }
    for c in &columns {
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            cfg.error(
                "columns",
                format!(
                    "`{}` is not a valid column name (letters, digits, `_`)",
                    c.name
                ),
            );
        }
    }
    if columns.is_empty() && node.is_some() {
        cfg.error("columns", "expected at least one column");
    }
    columns
}
