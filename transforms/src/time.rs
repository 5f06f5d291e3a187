//! Where a stateful transform takes a record's event time from (`time:`, in
//! `time_unit`), and the watermark every event-time transform keeps.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use connectd_sdk::time::{event_time_ms, now_ms};
use connectd_sdk::{FieldPath, Record, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The unit of a numeric event time (`time_unit`); RFC 3339 text carries its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Milliseconds since the epoch.
    #[default]
    Ms,
    /// Seconds since the epoch (Unix time, as Yahoo's chart API and many feeds write it).
    S,
    /// Microseconds since the epoch.
    Us,
    /// Nanoseconds since the epoch.
    Ns,
}

impl TimeUnit {
    /// `n` of this unit in epoch milliseconds; `None` when `n` is not a number.
    fn to_ms(self, n: &Value) -> Option<Result<i64, String>> {
        let ms = match (self, n) {
            (TimeUnit::Ms, Value::Int(i)) => *i,
            (TimeUnit::S, Value::Int(i)) => match i.checked_mul(1000) {
                Some(ms) => ms,
                None => return Some(Err(format!("{i} seconds is out of range for a time"))),
            },
            (TimeUnit::Us, Value::Int(i)) => i.div_euclid(1000),
            (TimeUnit::Ns, Value::Int(i)) => i.div_euclid(1_000_000),
            (unit, Value::Float(f)) if f.is_finite() => {
                let ms = match unit {
                    TimeUnit::Ms => *f,
                    TimeUnit::S => f * 1e3,
                    TimeUnit::Us => f / 1e3,
                    TimeUnit::Ns => f / 1e6,
                };
                ms.floor() as i64
            }
            _ => return None,
        };
        Some(Ok(ms))
    }
}

/// Warns once (per `warned`) when epoch milliseconds `ms` look like another unit:
/// `message(unit, date)` says what was read, as what date, and how to fix it.
pub(crate) fn warn_of_another_unit(
    ms: i64,
    warned: &AtomicBool,
    message: impl FnOnce(&'static str, String) -> String,
) {
    if let Some((like, date)) = connectd_sdk::time::first_time_like_another_unit(ms, warned) {
        tracing::warn!("{}", message(like, date));
    }
}

#[derive(Clone, Debug)]
pub enum TimeSource {
    /// A field of the record: a number in `unit`, or an RFC 3339 text.
    Field {
        path: FieldPath,
        unit: TimeUnit,
        /// Whether a number that looks like another unit has been warned of.
        warned: Arc<AtomicBool>,
    },
    /// The record's own timestamp (`$timestamp`).
    RecordTimestamp,
    /// The wall clock when the record arrives (no `time:`).
    ProcessingTime,
}

impl TimeSource {
    /// Reads `time:`: a field path, `$timestamp`, or absent for processing time.
    pub fn from_option(written: Option<&str>, unit: TimeUnit) -> Self {
        match written {
            None => TimeSource::ProcessingTime,
            Some("$timestamp") => TimeSource::RecordTimestamp,
            Some(path) => TimeSource::field(path, unit),
        }
    }

    pub fn field(path: &str, unit: TimeUnit) -> Self {
        TimeSource::Field {
            path: FieldPath::parse(path),
            unit,
            warned: Arc::default(),
        }
    }

    /// The event time of `r`; the error names `what` (the transform) and the cause.
    pub fn of(&self, r: &Record, what: &str) -> Result<i64, String> {
        match self {
            TimeSource::Field { path, unit, warned } => {
                let v = r.value.get_path(path).unwrap_or(&Value::Null);
                let ms = unit
                    .to_ms(v)
                    .unwrap_or_else(|| event_time_ms(v))
                    .map_err(|e| format!("{what} time `{path}`: {e}"))?;
                if *unit == TimeUnit::Ms {
                    warn_of_another_unit(ms, warned, |like, date| {
                        format!("{what} time `{path}`: {v} read as epoch milliseconds is {date}; if it is in another unit, set `time_unit: {like}`")
                    });
                }
                Ok(ms)
            }
            TimeSource::RecordTimestamp => r
                .timestamp
                .ok_or_else(|| format!("{what} time `$timestamp`: the record has no timestamp")),
            TimeSource::ProcessingTime => Ok(now_ms()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unit: TimeUnit, json: &str) -> Result<i64, String> {
        let r = Record::new(connectd_sdk::json::parse(&format!(r#"{{"t":{json}}}"#)).unwrap());
        TimeSource::field("t", unit).of(&r, "window")
    }

    #[test]
    fn numbers_are_read_in_their_unit_and_text_as_rfc_3339() {
        let ms = 1_700_000_000_123;
        assert_eq!(at(TimeUnit::Ms, "1700000000123"), Ok(ms));
        assert_eq!(at(TimeUnit::S, "1700000000"), Ok(1_700_000_000_000));
        assert_eq!(at(TimeUnit::S, "1700000000.123"), Ok(ms));
        assert_eq!(at(TimeUnit::Us, "1700000000123456"), Ok(ms));
        assert_eq!(at(TimeUnit::Ns, "1700000000123456789"), Ok(ms));
        // Before the epoch, whole milliseconds round down, as for text.
        assert_eq!(at(TimeUnit::Us, "-1500"), Ok(-2));
        assert_eq!(at(TimeUnit::S, r#""2023-11-14T22:13:20.123Z""#), Ok(ms));
        let overflow = at(TimeUnit::S, "9223372036854775807").unwrap_err();
        assert!(overflow.contains("window time `t`"), "{overflow}");
    }

    #[test]
    fn epoch_ms_that_look_like_another_unit_are_named() {
        assert_eq!(
            connectd_sdk::time::unit_it_looks_like(1_700_000_000),
            Some("s")
        );
        assert_eq!(
            connectd_sdk::time::unit_it_looks_like(1_700_000_000_000),
            None
        );
        assert_eq!(
            connectd_sdk::time::unit_it_looks_like(1_700_000_000_000_000),
            Some("us")
        );
        assert_eq!(
            connectd_sdk::time::unit_it_looks_like(1_700_000_000_000_000_000),
            Some("ns")
        );
        // Small test times (a few seconds after the epoch) are not warned of.
        assert_eq!(connectd_sdk::time::unit_it_looks_like(5_000), None);
    }
}
