//! Event-time helpers shared by sources and transforms.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use crate::value::Value;

/// Reads an event time in epoch milliseconds from a value: an integer or float is taken
/// as epoch ms, a string as RFC 3339 (any precision up to nanoseconds).
pub fn event_time_ms(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        // `as` would saturate: 1e300 would be the last millisecond of time.
        Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(*f as i64),
        Value::Float(f) => Err(format!(
            "the time field {} is outside the range of epoch milliseconds",
            Value::Float(*f)
        )),
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
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {}", why_not_rfc3339(s, e)))
}

/// chrono's reason, or the one a user needs where chrono's misleads ("premature end of
/// input" for a time without its offset).
fn why_not_rfc3339(s: &str, e: chrono::ParseError) -> String {
    let t = s.trim();
    if t.parse::<f64>().is_ok() {
        return "it is a number written as a string; for epoch milliseconds use to_int()".into();
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];
    if local
        .iter()
        .any(|f| chrono::NaiveDateTime::parse_from_str(t, f).is_ok())
    {
        return "it has no UTC offset (end it with `Z` for UTC, or an offset as `+07:00`)".into();
    }
    if chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok() {
        return "it is a date without a time of day (write `2024-04-01T00:00:00Z`)".into();
    }
    e.to_string()
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

/// Epoch milliseconds from 1e8 up to 1e11 fall between 1970-01-02 and 1973-03-03, where
/// the seconds of any time since then lie; past 1e14 (year 5138) lie the microseconds
/// and nanoseconds of today.
pub fn unit_it_looks_like(ms: i64) -> Option<&'static str> {
    match ms {
        100_000_000..100_000_000_000 => Some("s"),
        100_000_000_000_000..100_000_000_000_000_000 => Some("us"),
        100_000_000_000_000_000.. => Some("ns"),
        _ => None,
    }
}

/// The first time (per `warned`) that epoch milliseconds `ms` look like another unit:
/// that unit and the date `ms` is read as, for a warning saying how to fix it.
pub fn first_time_like_another_unit(
    ms: i64,
    warned: &std::sync::atomic::AtomicBool,
) -> Option<(&'static str, String)> {
    use std::sync::atomic::Ordering::Relaxed;
    if warned.load(Relaxed) {
        return None;
    }
    let like = unit_it_looks_like(ms)?;
    if warned.swap(true, Relaxed) {
        return None;
    }
    Some((like, format_rfc3339_ms(ms)))
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_a_time_is_not_read() {
        let why = |v: Value| event_time_ms(&v).unwrap_err();
        assert!(why(Value::str("2024-04-01 15:56:48")).contains("no UTC offset"));
        assert!(why(Value::str("2024-04-01T15:56:48.5")).contains("no UTC offset"));
        assert!(why(Value::str("2024-04-01")).contains("without a time of day"));
        assert!(why(Value::str("1711987008")).contains("to_int()"));
        assert!(why(Value::str("2024-02-30T00:00:00Z")).contains("out of range"));
        assert!(why(Value::Float(1e300)).contains("outside the range"));
        assert_eq!(event_time_ms(&Value::Float(1.5e12)), Ok(1_500_000_000_000));
    }

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
