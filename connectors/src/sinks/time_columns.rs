//! A number written to a time column is read as epoch milliseconds. Epoch seconds
//! (Unix time, as many feeds write it) then land in January 1970 without a word, so
//! the first number per column that looks like another unit is named in a warning.

use std::sync::atomic::AtomicBool;

use connectd_sdk::time::{event_time_ms, first_time_like_another_unit};
use connectd_sdk::{FieldPath, Value};

/// One flag per column of the sink: whether it was warned of.
#[derive(Debug, Default)]
pub struct UnitWarnings(Vec<AtomicBool>);

impl UnitWarnings {
    pub fn new(columns: usize) -> Self {
        Self((0..columns).map(|_| AtomicBool::new(false)).collect())
    }

    /// `v` is about to be written to time column `i` as epoch milliseconds.
    pub fn note(&self, sink: &str, i: usize, column: &str, field: &FieldPath, v: &Value) {
        if !matches!(v, Value::Int(_) | Value::Float(_)) {
            return; // RFC 3339 text carries its own unit
        }
        let (Some(warned), Ok(ms)) = (self.0.get(i), event_time_ms(v)) else {
            return;
        };
        if let Some((like, date)) = first_time_like_another_unit(ms, warned) {
            let fix = match like {
                "s" => format!("{field} * 1000"),
                "us" => format!("to_int({field} / 1000)"),
                _ => format!("to_int({field} / 1000000)"),
            };
            tracing::warn!(
                "{sink}: column `{column}` (field `{field}`): {v} read as epoch milliseconds is {date}; if the field is in another unit ({like}), convert it in a `map` first: `{fix}`. Said once for this column"
            );
        }
    }
}
