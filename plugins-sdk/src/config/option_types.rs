//! Value types and schema helpers for typed component options: durations as people
//! write them (`5s`, `1h 30m`), ordered name → text maps, and schemas for options read
//! as text.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};

use super::parse_duration;

/// A duration written like `250ms`, `5s`, `5m`, `1h` or `3d` (also `1h 30m`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(std::time::Duration::from_secs(s))
    }

    pub const fn millis(ms: u64) -> Self {
        HumanDuration(std::time::Duration::from_millis(ms))
    }

    /// Whole milliseconds, saturating.
    pub fn as_millis_i64(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The newtype name by which the config reader knows a duration.
pub(super) const DURATION: &str = "connectd::HumanDuration";
pub(super) const DURATION_EXPECTED: &str = "a duration such as 250ms, 5s, 5m, 1h or 3d";

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DURATION_EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
        parse_duration(text)
            .map(HumanDuration)
            .map_err(|_| E::custom(format!("expected {DURATION_EXPECTED}, found `{text}`")))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<HumanDuration, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Deserialize<'de> for HumanDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(DURATION, DurationVisitor)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "x-kind": "duration",
            "pattern": "^\\s*(0|(\\d+\\s*(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\\s*)+)$",
            "description": "a duration such as 250ms, 5s, 5m, 1h or 3d"
        })
    }
}

/// The schema of a value read as text from any scalar (`start: now`,
/// `start: 1700000000000`): YAML types the second as a number.
pub fn scalar_text(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "boolean"] })
}

/// For components whose options are not typed yet: any mapping.
#[derive(Debug)]
pub struct Untyped;

impl schemars::JsonSchema for Untyped {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Untyped".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "object" })
    }
}

/// The schema of a mapping of names to values read as text (librdkafka properties).
pub fn scalar_text_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": ["string", "number", "boolean"] }
    })
}

/// The schema of a list of values read as text (symbols, column names).
pub fn scalar_text_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": ["string", "number"] },
            { "type": "array", "items": { "type": ["string", "number", "boolean"] } }
        ]
    })
}

/// A mapping of names to text, in the order written (`fields:` of a map, a window's
/// `aggregates:`, a table's column types).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextMap(pub Vec<(String, String)>);

struct TextMapVisitor;

impl<'de> Visitor<'de> for TextMapVisitor {
    type Value = TextMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of names to text")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextMap, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<String, String>()? {
            out.push(entry);
        }
        Ok(TextMap(out))
    }
}

impl<'de> de::Deserialize<'de> for TextMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TextMapVisitor)
    }
}

impl serde::Serialize for TextMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl schemars::JsonSchema for TextMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TextMap".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": { "type": ["string", "number", "boolean"] }
        })
    }
}
