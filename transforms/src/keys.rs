//! The key a stateful transform (dedup, join) groups or matches a record by.

use connectd_sdk::{FieldPath, Record, Value};

use crate::window::GroupKey;

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
    cfg: &connectd_sdk::config::ConfigMap<'_>,
    name: &'static str,
    written: &[String],
) -> Vec<FieldPath> {
    if written.is_empty() && cfg.has(name) {
        cfg.error(name, "name at least one field");
    }
    written.iter().map(|p| FieldPath::parse(p)).collect()
}
