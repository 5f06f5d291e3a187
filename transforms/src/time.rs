//! Where a stateful transform takes a record's event time from (`time:`), and the
//! watermark every event-time transform keeps.

use connectd_sdk::time::{event_time_ms, now_ms};
use connectd_sdk::{FieldPath, Record, Value};

#[derive(Clone, Debug)]
pub enum TimeSource {
    /// A field of the record (epoch ms, epoch s, or an RFC 3339 text).
    Field(FieldPath),
    /// The record's own timestamp (`$timestamp`).
    RecordTimestamp,
    /// The wall clock when the record arrives (no `time:`).
    ProcessingTime,
}

impl TimeSource {
    /// Reads `time:`: a field path, `$timestamp`, or absent for processing time.
    pub fn from_option(written: Option<&str>) -> Self {
        match written {
            None => TimeSource::ProcessingTime,
            Some("$timestamp") => TimeSource::RecordTimestamp,
            Some(path) => TimeSource::Field(FieldPath::parse(path)),
        }
    }

    /// The event time of `r`; the error names `what` (the transform) and the cause.
    pub fn of(&self, r: &Record, what: &str) -> Result<i64, String> {
        match self {
            TimeSource::Field(path) => {
                event_time_ms(r.value.get_path(path).unwrap_or(&Value::Null))
                    .map_err(|e| format!("{what} time `{path}`: {e}"))
            }
            TimeSource::RecordTimestamp => r
                .timestamp
                .ok_or_else(|| format!("{what} time `$timestamp`: the record has no timestamp")),
            TimeSource::ProcessingTime => Ok(now_ms()),
        }
    }
}
