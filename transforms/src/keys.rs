//! The key a stateful transform (dedup, join) groups or matches a record by.

use connectd_sdk::{FieldPath, Record, Value};
use smallvec::SmallVec;

use crate::window::GroupKey;

/// The values of `fields` in `r`; None when one is missing or null (such a record has
/// no key: it matches nothing).
pub fn key_of(r: &Record, fields: &[FieldPath]) -> Option<GroupKey> {
    key_values(r, fields).map(|values| GroupKey(values.into_iter().cloned().collect()))
}

/// `key_of` borrowed: the values themselves, for a key that is only serialized.
pub fn key_values<'r>(r: &'r Record, fields: &[FieldPath]) -> Option<SmallVec<[&'r Value; 4]>> {
    fields
        .iter()
        .map(|f| match r.value.get_path(f) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        })
        .collect()
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
