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

use super::option_types::{DURATION, DURATION_EXPECTED};
use super::{closest, parse_duration, ConfigErrors, ConfigKey, ConfigMap, ConfigNode, ConfigValue};

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
            ConfigValue::Scalar(s) if self.node.quoted => visitor.visit_str(s),
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

/// A value of the shape a schema asks for (empty, zero, the first choice): what a
/// missing required field reads as once it is reported.
pub(crate) fn stand_in(schema: Option<&serde_json::Value>, span: &super::Span) -> ConfigNode {
    use serde_json::Value as J;
    let node = |value| ConfigNode {
        value,
        span: span.clone(),
        secret: false,
        raw: None,
        quoted: false,
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
/// The typed readers of a component's mapping.
impl<'a> ConfigMap<'a> {
    /// Reads the whole mapping (less the keys already read, such as the runtime's
    /// `type` and `inputs`) into a typed options struct. Every problem is written to
    /// the file's errors with its position; `None` when the struct could not be made.
    /// Every key counts as read: unknown ones were reported here.
    pub fn typed<T: serde::de::DeserializeOwned + schemars::JsonSchema>(&mut self) -> Option<T> {
        // Unknown keys are found against the schema's properties: they include the
        // fields of flattened parts (shared options), which serde reads as a map.
        let schema = crate::registry::options_schema::<T>();
        let known: Vec<&str> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut skip: Vec<&str> = self.used.clone();
        if let ConfigValue::Map(entries) = &self.node.value {
            for (k, _) in entries {
                let name = k.name.as_str();
                if skip.contains(&name) || known.contains(&name) {
                    continue;
                }
                let hint = closest(name, &known)
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                self.errors.push(
                    &k.span,
                    self.field_path(name),
                    format!("unknown field (known fields: {}){hint}", known.join(", ")),
                );
                skip.push(name);
            }
        }
        // Every missing required field at once (serde stops at the first), with what
        // the field is.
        let required: Vec<&str> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let mut missing_reported = false;
        let mut missing = Vec::new();
        for name in required {
            if self.has_non_null(name) || skip.contains(&name) {
                continue;
            }
            let what = schema
                .get("properties")
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("description"))
                .and_then(|d| d.as_str())
                .map(|d| format!(" ({})", d.trim_end_matches('.').replace('\n', " ")))
                .unwrap_or_default();
            self.errors.push(
                &self.node.span,
                self.field_path(name),
                format!("missing required field{what}"),
            );
            missing_reported = true;
            missing.push(name);
        }
        // Reported: now stand-ins, so that the struct is made and the builder's own
        // checks of the other fields still run (and report) as before.
        let patched = (!missing.is_empty()).then(|| {
            let mut node = self.node.clone();
            let stand_ins = missing.iter().map(|name| {
                let key = ConfigKey {
                    name: name.to_string(),
                    span: self.node.span.clone(),
                };
                let property = schema.get("properties").and_then(|p| p.get(*name));
                (key, stand_in(property, &self.node.span))
            });
            match &mut node.value {
                ConfigValue::Map(entries) => entries.extend(stand_ins),
                other => *other = ConfigValue::Map(stand_ins.collect()),
            }
            node
        });
        let reader = NodeReader {
            node: patched.as_ref().unwrap_or(self.node),
            path: self.path.clone(),
            errors: self.errors,
            skip: &skip,
            missing_reported,
        };
        let read = T::deserialize(reader);
        if let ConfigValue::Map(entries) = &self.node.value {
            self.used
                .extend(entries.iter().map(|(k, _)| k.name.as_str()));
        }
        read.ok()
    }

    /// Reads the options one part of the component shares with others (such as every
    /// generator's `seed`, `rate`, `count`) from this mapping, before [`Self::typed`]
    /// reads the rest. The component's options struct names the part for its schema
    /// with `#[serde(skip)] #[schemars(flatten, !skip)]`.
    pub fn typed_part<T: serde::de::DeserializeOwned + schemars::JsonSchema>(
        &mut self,
    ) -> Option<T> {
        let schema = crate::registry::options_schema::<T>();
        let mine: Vec<String> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut others: Vec<&str> = Vec::new();
        if let ConfigValue::Map(entries) = &self.node.value {
            for (k, _) in entries {
                if mine.contains(&k.name) {
                    self.used.push(k.name.as_str());
                } else {
                    others.push(k.name.as_str());
                }
            }
        }
        let reader = NodeReader {
            node: self.node,
            path: self.path.clone(),
            errors: self.errors,
            skip: &others,
            missing_reported: false,
        };
        T::deserialize(reader).ok()
    }
}

/// Reads any node (a list, a mapping, a scalar) into `T` the way [`ConfigMap::typed`]
/// reads a component's mapping: every problem written to `errors` with its place.
pub fn typed_node<T: serde::de::DeserializeOwned>(
    node: &ConfigNode,
    path: &str,
    errors: &ConfigErrors,
) -> Option<T> {
    T::deserialize(NodeReader {
        node,
        path: path.to_string(),
        errors,
        skip: &[],
        missing_reported: false,
    })
    .ok()
}

#[cfg(test)]
mod tests;
