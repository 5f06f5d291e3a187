//! Reads a component's options into a `#[derive(Deserialize)]` struct straight from the
//! config tree, so every error keeps its file, line, column and field path.
//!
//! The reader is tolerant where it can be: an unknown key is reported (with "did you
//! mean") and skipped, and a scalar of the wrong kind is reported and read as a
//! default, so one pass reports every such problem of a component. What serde itself
//! rejects (a missing field, an unknown choice) ends the pass at that point; a builder
//! then reports what it has.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::{closest, parse_duration, ConfigErrors, ConfigNode, ConfigValue};

/// An error of serde's, with whether it was already written to [`ConfigErrors`].
#[derive(Debug)]
pub struct ReadError {
    message: String,
    /// A required field that was absent (serde names it; its place is the mapping).
    missing: Option<&'static str>,
    recorded: bool,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ReadError {
            message: msg.to_string(),
            missing: None,
            recorded: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ReadError {
            message: "missing required field".into(),
            missing: Some(field),
            recorded: false,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = closest(variant, expected)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        Self::custom(format!(
            "expected one of {}, found `{variant}`{hint}",
            expected.join(" | ")
        ))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, found {}", unexpected(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, found {}", unexpected(&unexp)))
    }
}

fn unexpected(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Str(s) => format!("`{s}`"),
        de::Unexpected::Unsigned(n) => format!("`{n}`"),
        de::Unexpected::Signed(n) => format!("`{n}`"),
        de::Unexpected::Float(n) => format!("`{n}`"),
        de::Unexpected::Bool(b) => format!("`{b}`"),
        other => other.to_string(),
    }
}

/// The deserializer of one node of the tree, with its field path.
pub(crate) struct NodeReader<'a> {
    pub node: &'a ConfigNode,
    pub path: String,
    pub errors: &'a ConfigErrors,
    /// Keys of this mapping read by someone else (the runtime's `type`, `inputs`).
    pub skip: &'a [&'a str],
    /// This mapping's missing fields are already reported (all of them, by `typed`).
    pub missing_reported: bool,
}

impl<'a> NodeReader<'a> {
    fn child(&self, node: &'a ConfigNode, path: String) -> NodeReader<'a> {
        NodeReader {
            node,
            path,
            errors: self.errors,
            skip: &[],
            missing_reported: false,
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Writes the error at this node unless a node below already did.
    fn record(&self, mut e: ReadError) -> ReadError {
        if e.missing.is_some() && self.missing_reported {
            e.recorded = true;
        }
        if !e.recorded {
            let field = match e.missing {
                Some(f) => self.field(f),
                None => self.path.clone(),
            };
            self.errors.push(&self.node.span, field, e.message.clone());
            e.recorded = true;
        }
        e
    }

    /// Reports a value of the wrong kind; reading goes on with a default.
    fn wrong(&self, expected: &str) {
        self.errors.push(
            &self.node.span,
            self.path.clone(),
            format!("expected {expected}, found {}", self.node.shown()),
        );
    }

    fn scalar(&self) -> Option<&'a str> {
        match &self.node.value {
            ConfigValue::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr + Default>(&self, expected: &str) -> T {
        match self.scalar().map(|s| s.replace('_', "").parse::<T>()) {
            Some(Ok(n)) => n,
            _ => {
                self.wrong(expected);
                T::default()
            }
        }
    }
}

macro_rules! numbers {
    ($($method:ident $ty:ty => $visit:ident, $expected:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
            let n: $ty = self.number($expected);
            visitor.$visit(n).map_err(|e| self.record(e))
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for NodeReader<'a> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let r = match &self.node.value {
            ConfigValue::Null => visitor.visit_unit(),
            ConfigValue::Scalar(s) => match super::scalar_to_json(s) {
                serde_json::Value::Bool(b) => visitor.visit_bool(b),
                serde_json::Value::Number(n) if n.is_i64() => {
                    visitor.visit_i64(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Number(n) => visitor.visit_f64(n.as_f64().unwrap_or_default()),
                _ => visitor.visit_str(s),
            },
            ConfigValue::List(_) => return self.deserialize_seq(visitor),
            ConfigValue::Map(_) => return self.deserialize_map(visitor),
        };
        r.map_err(|e| self.record(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let b = match self.scalar() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                self.wrong("true or false");
                false
            }
        };
        visitor.visit_bool(b).map_err(|e| self.record(e))
    }

    numbers! {
        deserialize_u8 u64 => visit_u64, "a whole number ≥ 0";
        deserialize_u16 u64 => visit_u64, "a whole number ≥ 0";
        deserialize_u32 u64 => visit_u64, "a whole number ≥ 0";
        deserialize_u64 u64 => visit_u64, "a whole number ≥ 0";
        deserialize_i8 i64 => visit_i64, "a whole number";
        deserialize_i16 i64 => visit_i64, "a whole number";
        deserialize_i32 i64 => visit_i64, "a whole number";
        deserialize_i64 i64 => visit_i64, "a whole number";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let f = match self.scalar().and_then(|s| s.parse::<f64>().ok()) {
            Some(f) if f.is_finite() => f,
            _ => {
                self.wrong("a number");
                0.0
            }
        };
        visitor.visit_f64(f).map_err(|e| self.record(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let s = self.scalar().unwrap_or_else(|| {
            self.wrong("a string");
            ""
        });
        visitor.visit_str(s).map_err(|e| self.record(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.node.value {
            ConfigValue::Null => visitor.visit_none().map_err(|e| self.record(e)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit().map_err(|e| self.record(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        if name == DURATION {
            // Read here so that a bad duration is reported and reading goes on.
            let text = match self.scalar() {
                Some(s) if parse_duration(s).is_ok() => s,
                _ => {
                    self.wrong(DURATION_EXPECTED);
                    "0"
                }
            };
            return visitor.visit_str(text).map_err(|e| self.record(e));
        }
        visitor.visit_newtype_struct(self)
    }

    /// A list; a single scalar is read as a list of one, as `inputs: a` reads.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let items: Vec<(&'a ConfigNode, String)> = match &self.node.value {
            ConfigValue::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (n, format!("{}[{i}]", self.path)))
                .collect(),
            ConfigValue::Scalar(_) => vec![(self.node, self.path.clone())],
            ConfigValue::Null => Vec::new(),
            ConfigValue::Map(_) => {
                self.wrong("a list");
                Vec::new()
            }
        };
        let access = Items {
            items: items.into_iter(),
            parent: &self,
        };
        visitor.visit_seq(access).map_err(|e| self.record(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    /// A mapping with user-chosen keys (`aggregates:`, `properties:`).
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.entries(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.entries(Some(fields), visitor)
    }

    /// A choice written as a word.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.scalar() {
            Some(s) => {
                // An unknown word is reported and read as the first choice, so the
                // rest of the component is still checked.
                let s = if variants.contains(&s) || variants.is_empty() {
                    s
                } else {
                    let e: ReadError = de::Error::unknown_variant(s, variants);
                    self.record(e);
                    variants[0]
                };
                let word: de::value::StrDeserializer<'_, ReadError> = s.into_deserializer();
                visitor.visit_enum(word).map_err(|e| self.record(e))
            }
            None => {
                let e = de::Error::custom(format!(
                    "expected one of {}, found {}",
                    variants.join(" | "),
                    self.node.kind()
                ));
                Err(self.record(e))
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }
}

impl<'a> NodeReader<'a> {
    fn entries<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        let mut kept = Vec::new();
        match &self.node.value {
            ConfigValue::Map(entries) => {
                for (k, v) in entries {
                    if self.skip.contains(&k.name.as_str()) {
                        continue;
                    }
                    if let Some(known) = fields {
                        if !known.contains(&k.name.as_str()) {
                            let hint = closest(&k.name, known)
                                .map(|c| format!("; did you mean `{c}`?"))
                                .unwrap_or_default();
                            self.errors.push(
                                &k.span,
                                self.field(&k.name),
                                format!("unknown field (known fields: {}){hint}", known.join(", ")),
                            );
                            continue;
                        }
                    }
                    kept.push((k.name.as_str(), v));
                }
            }
            ConfigValue::Null => {}
            _ => self.wrong("a mapping"),
        }
        let access = Entries {
            entries: kept.into_iter(),
            value: None,
            parent: &self,
        };
        visitor.visit_map(access).map_err(|e| self.record(e))
    }
}

struct Items<'p, 'a, I> {
    items: I,
    parent: &'p NodeReader<'a>,
}

impl<'de, 'a, I: Iterator<Item = (&'a ConfigNode, String)>> SeqAccess<'de> for Items<'_, 'a, I> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        match self.items.next() {
            Some((node, path)) => {
                // What a type's own `Deserialize` rejects is placed at its node too.
                let at = self.parent.child(node, path.clone());
                seed.deserialize(self.parent.child(node, path))
                    .map(Some)
                    .map_err(|e| at.record(e))
            }
            None => Ok(None),
        }
    }
}

struct Entries<'p, 'a, I> {
    entries: I,
    value: Option<(&'a str, &'a ConfigNode)>,
    parent: &'p NodeReader<'a>,
}

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a ConfigNode)>> MapAccess<'de> for Entries<'_, 'a, I> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        match self.entries.next() {
            Some((key, node)) => {
                self.value = Some((key, node));
                let word: de::value::StrDeserializer<'_, ReadError> = key.into_deserializer();
                seed.deserialize(word).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        let (key, node) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        let at = self.parent.child(node, self.parent.field(key));
        seed.deserialize(self.parent.child(node, self.parent.field(key)))
            .map_err(|e| at.record(e))
    }
}

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

/// A value of the shape a schema asks for (empty, zero, the first choice): what a
/// missing required field reads as once it is reported.
pub(crate) fn stand_in(schema: Option<&serde_json::Value>, span: &super::Span) -> ConfigNode {
    use serde_json::Value as J;
    let node = |value| ConfigNode {
        value,
        span: span.clone(),
        secret: false,
        raw: None,
    };
    let Some(s) = schema else {
        return node(ConfigValue::Null);
    };
    if let Some(first) = s.get("enum").and_then(J::as_array).and_then(|e| e.first()) {
        let word = first
            .as_str()
            .map_or_else(|| first.to_string(), str::to_string);
        return node(ConfigValue::Scalar(word));
    }
    if let Some(any) = s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(J::as_array)
    {
        let first = any.iter().find(|a| a.get("type") != Some(&J::from("null")));
        return stand_in(first, span);
    }
    if s.get("x-kind").and_then(J::as_str) == Some("duration") {
        return node(ConfigValue::Scalar("0".into()));
    }
    let kind = match s.get("type") {
        Some(J::String(t)) => t.as_str(),
        Some(J::Array(ts)) => ts
            .iter()
            .filter_map(J::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    node(match kind {
        "array" => ConfigValue::List(Vec::new()),
        "object" => ConfigValue::Map(Vec::new()),
        "integer" | "number" => ConfigValue::Scalar("0".into()),
        "boolean" => ConfigValue::Scalar("false".into()),
        _ => ConfigValue::Scalar(String::new()),
    })
}

/// The newtype name by which the config reader knows a duration.
const DURATION: &str = "connectd::HumanDuration";
const DURATION_EXPECTED: &str = "a duration such as 250ms, 5s, 5m, 1h or 3d";

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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::{ConfigErrors, ConfigKey, ConfigMap, ConfigNode, ConfigValue, Span};
    use super::{HumanDuration, TextMap};

    fn at(line: usize) -> Span {
        Span {
            file: "p.yaml".into(),
            line,
            column: 3,
        }
    }

    fn scalar(s: &str, line: usize) -> ConfigNode {
        ConfigNode {
            value: ConfigValue::Scalar(s.into()),
            span: at(line),
            secret: false,
            raw: None,
        }
    }

    fn map(entries: Vec<(&str, ConfigNode)>, line: usize) -> ConfigNode {
        let value = ConfigValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = ConfigKey {
                        name: k.into(),
                        span: v.span.clone(),
                    };
                    (key, v)
                })
                .collect(),
        );
        ConfigNode {
            value,
            span: at(line),
            secret: false,
            raw: None,
        }
    }

    #[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Safe,
    }

    /// What a component reads.
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct Options {
        /// Where to write.
        path: String,
        /// How many.
        #[serde(default)]
        count: u64,
        #[serde(default)]
        every: Option<HumanDuration>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        columns: Vec<String>,
        #[serde(default)]
        names: TextMap,
    }

    #[test]
    fn every_problem_of_a_component_is_reported_at_its_line() {
        let node = map(
            vec![
                ("type", scalar("x", 1)),
                ("count", scalar("many", 2)),
                ("every", scalar("5 parsecs", 3)),
                ("mode", scalar("fsat", 4)),
                ("colums", scalar("a", 5)),
            ],
            1,
        );
        let errors = ConfigErrors::default();
        let mut cfg = ConfigMap::new(&node, "sinks.s", &errors);
        cfg.allow(&["type"]);
        let read: Option<Options> = cfg.typed();
        assert!(cfg.finish().is_err());
        let errs = errors.take();
        let show =
            |e: &super::super::ConfigError| format!("{}: {} {}", e.span.line, e.field, e.message);
        let all: Vec<String> = errs.iter().map(show).collect();
        let expect = [
            "5: sinks.s.colums unknown field",
            "1: sinks.s.path missing required field (Where to write)",
            "2: sinks.s.count expected a whole number ≥ 0, found `many`",
            "3: sinks.s.every expected a duration",
            "4: sinks.s.mode expected one of fast | safe, found `fsat`; did you mean `fast`?",
        ];
        for e in expect {
            assert!(all.iter().any(|a| a.starts_with(e)), "no `{e}` in {all:#?}");
        }
        assert!(all[0].contains("did you mean `columns`?"), "{all:#?}");
        // Reported, then read as a stand-in: the builder's own checks still run.
        assert_eq!(read.map(|o| o.path), Some(String::new()));
    }

    #[test]
    fn scalars_read_as_the_type_asked_for() {
        let node = map(
            vec![
                ("path", scalar("123", 1)),
                ("count", scalar("1_000", 2)),
                ("every", scalar("1h 30m", 3)),
                ("columns", scalar("only", 4)),
                (
                    "names",
                    map(vec![("b", scalar("2", 6)), ("a", scalar("x", 7))], 5),
                ),
            ],
            1,
        );
        let errors = ConfigErrors::default();
        let o: Options = ConfigMap::new(&node, "s", &errors).typed().unwrap();
        assert!(errors.is_empty(), "{:?}", errors.take());
        assert_eq!(o.path, "123");
        assert_eq!(o.count, 1000);
        assert_eq!(o.every, Some(HumanDuration::secs(5400)));
        assert_eq!(o.columns, vec!["only"]);
        assert_eq!(o.mode, None);
        // In the order written.
        assert_eq!(
            o.names.0,
            vec![("b".to_string(), "2".to_string()), ("a".into(), "x".into())]
        );
    }

    #[test]
    fn a_nested_problem_names_its_full_path() {
        let node = map(
            vec![
                ("path", scalar("p", 1)),
                (
                    "names",
                    map(vec![("a", map(vec![("deep", scalar("x", 3))], 3))], 2),
                ),
            ],
            1,
        );
        let errors = ConfigErrors::default();
        let read: Option<Options> = ConfigMap::new(&node, "t.w", &errors).typed();
        let errs = errors.take();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "t.w.names.a");
        assert_eq!(errs[0].span.line, 3);
        assert!(errs[0].message.contains("expected a string"), "{}", errs[0]);
        assert!(
            read.is_some(),
            "a wrong scalar is reported, and reading goes on"
        );
    }
}
