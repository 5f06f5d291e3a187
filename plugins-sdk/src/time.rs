//! Event-time helpers shared by sources and transforms.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use crate::value::Value;

/// Reads an event time in epoch milliseconds from a value: an integer or float is taken
/// as epoch ms, a string as RFC 3339 (any precision up to nanoseconds).
pub fn event_time_ms(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.is_finite() => Ok(*f as i64),
        Value::Str(s) => parse_rfc3339_ms(s),
        Value::Null => Err("the time field is missing or null".into()),
        other => Err(format!(
            "the time field is a {}, expected epoch milliseconds or an RFC 3339 string",
            other.type_name()
        )),
    }
}

pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

/// Formats epoch ms as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Formats epoch ms with a strftime pattern, in UTC.
pub fn format_with(ms: i64, pattern: &str) -> Result<String, String> {
    use std::fmt::Write;
    let t = Utc
        .timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| format!("{ms} is out of range for a time"))?;
    let mut out = String::new();
    write!(out, "{}", t.format(pattern)).map_err(|_| format!("bad time format `{pattern}`"))?;
    Ok(out)
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_rfc3339() {
        assert_eq!(
            parse_rfc3339_ms("2024-04-01T15:56:48.427360123Z"),
            Ok(1_711_987_008_427)
        );
        assert_eq!(
            format_rfc3339_ms(1_711_987_008_427),
            "2024-04-01T15:56:48.427Z"
        );
        assert!(format_with(0, "%Y-%m-%d %H").is_ok());
    }
}
