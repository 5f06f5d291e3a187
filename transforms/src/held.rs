//! What stateful transforms keep between records: records in a serializable form (for
//! checkpoints) and the key a record is grouped or joined by.

use connectd_sdk::{FieldPath, Record, Value};
use serde::{Deserialize, Serialize};

use crate::window::GroupKey;

/// A record as it is stored in a transform's checkpointed state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub key: Value,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl From<&Record> for Held {
    fn from(r: &Record) -> Self {
        Held {
            key: r.key.clone(),
            value: r.value.clone(),
            timestamp: r.timestamp,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl From<&Held> for Record {
    fn from(h: &Held) -> Self {
        Record {
            key: h.key.clone(),
            value: h.value.clone(),
            timestamp: h.timestamp,
            headers: h
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        }
    }
}

/// The values of `fields` in `r`; None when one is missing or null (such a record has
/// no key: it matches nothing).
pub fn key_of(r: &Record, fields: &[FieldPath]) -> Option<GroupKey> {
    let mut key = GroupKey::default();
    for f in fields {
        match r.value.get_path(f) {
            None | Some(Value::Null) => return None,
            Some(v) => key.0.push(v.clone()),
        }
    }
    Some(key)
}

/// Reads a list of field paths (`key: [id]` or `key: id`).
pub fn field_list(
    cfg: &mut connectd_sdk::config::ConfigMap<'_>,
    name: &'static str,
) -> Vec<FieldPath> {
    let fields: Vec<FieldPath> = cfg
        .str_list(name)
        .iter()
        .map(|p| FieldPath::parse(p))
        .collect();
    if cfg.has(name) && fields.is_empty() {
        cfg.error(name, "name at least one field");
    }
    fields
}
