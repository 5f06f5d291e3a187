//! A JSON-like value tuned for the hot path: short strings (field names, symbols,
//! host names) are stored inline without allocation, objects are small ordered vectors
//! (faster than a map for the handful of fields a record has).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use compact_str::CompactString;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A structured value: what a record's key and value are made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(CompactString),
    List(Vec<Value>),
    Object(Object),
}

/// An ordered set of named fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    fields: Vec<(CompactString, Value)>,
}

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| same_name(k, name))
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Sets a field, replacing an existing one in place (order is kept).
    pub fn insert(&mut self, name: impl Into<CompactString>, value: Value) {
        let name = name.into();
        match self.get_mut(&name) {
            Some(slot) => *slot = value,
            None => self.fields.push((name, value)),
        }
    }

    /// The fields themselves, for the JSON parser's in-place appends.
    pub(crate) fn fields_mut(&mut self) -> &mut Vec<(CompactString, Value)> {
        &mut self.fields
    }

    /// Appends without checking for an existing field of that name (the caller knows).
    pub fn push_unchecked(&mut self, name: impl Into<CompactString>, value: Value) {
        self.fields.push((name.into(), value));
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let pos = self.fields.iter().position(|(k, _)| k == name)?;
        Some(self.fields.remove(pos).1)
    }

    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(v) = self.remove(from) {
            self.insert(to, v);
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.fields.retain(|(k, _)| keep(k));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl<K: Into<CompactString>> FromIterator<(K, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

/// String equality for short strings (field names, symbols) without a call to
/// `memcmp`: a few overlapping loads per side. Longer strings compare as usual.
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // First, middle and last byte: every byte of a string this short.
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=8 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        9..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

fn word4(s: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_le_bytes(w)
}

fn word8(s: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A dotted field path (`quote.bid.price`), split once at config time.
///
/// It remembers where its first segment was found last time: records of one stream
/// share a field order, so most lookups then take a single comparison.
#[derive(Debug)]
pub struct FieldPath {
    segments: Vec<CompactString>,
    hint: AtomicUsize,
}

impl Clone for FieldPath {
    fn clone(&self) -> Self {
        Self {
            segments: self.segments.clone(),
            hint: AtomicUsize::new(self.hint.load(Relaxed)),
        }
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments
    }
}
impl Eq for FieldPath {}
impl Hash for FieldPath {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.segments.hash(h);
    }
}

impl FieldPath {
    pub fn parse(path: &str) -> Self {
        Self {
            segments: path.split('.').map(CompactString::from).collect(),
            hint: AtomicUsize::new(0),
        }
    }

    pub fn segments(&self) -> &[CompactString] {
        &self.segments
    }

    /// The last segment: the name a value at this path is given in outputs.
    pub fn leaf(&self) -> &str {
        self.segments.last().map(|s| s.as_str()).unwrap_or("")
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

impl Value {
    pub fn str(s: impl Into<CompactString>) -> Self {
        Value::Str(s.into())
    }

    /// Follows a path through nested objects (and list indices); `None` when absent.
    pub fn get_path(&self, path: &FieldPath) -> Option<&Value> {
        let segs = path.segments();
        let first = segs.first()?;
        let mut cur = match self {
            Value::Object(o) => {
                let hint = path.hint.load(Relaxed);
                match o.fields.get(hint) {
                    Some((k, v)) if same_name(k, first) => v,
                    _ => {
                        let pos = o.fields.iter().position(|(k, _)| same_name(k, first))?;
                        path.hint.store(pos, Relaxed);
                        &o.fields[pos].1
                    }
                }
            }
            Value::List(items) => items.get(first.parse::<usize>().ok()?)?,
            _ => return None,
        };
        for seg in &segs[1..] {
            cur = match cur {
                Value::Object(o) => o.get(seg)?,
                Value::List(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Sets the value at a path, creating intermediate objects as needed.
    /// Returns false when a non-object stands in the way.
    pub fn set_path(&mut self, path: &FieldPath, value: Value) -> bool {
        let segs = path.segments();
        let Some((last, parents)) = segs.split_last() else {
            return false;
        };
        let mut cur = self;
        for seg in parents {
            if matches!(cur, Value::Null) {
                *cur = Value::Object(Object::new());
            }
            let Value::Object(o) = cur else { return false };
            if o.get(seg).is_none() {
                o.push_unchecked(seg.clone(), Value::Object(Object::new()));
            }
            match o.get_mut(seg) {
                Some(next) => cur = next,
                None => return false,
            }
        }
        if matches!(cur, Value::Null) {
            *cur = Value::Object(Object::new());
        }
        match cur {
            Value::Object(o) => {
                o.insert(last.clone(), value);
                true
            }
            _ => false,
        }
    }

    pub fn remove_path(&mut self, path: &FieldPath) -> Option<Value> {
        let segs = path.segments();
        let (last, parents) = segs.split_last()?;
        let mut cur = self;
        for seg in parents {
            let Value::Object(o) = cur else { return None };
            cur = o.get_mut(seg)?;
        }
        match cur {
            Value::Object(o) => o.remove(last),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Truthiness for filters: only `true` passes.
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Object(_) => "object",
        }
    }

    /// The type's name for a sentence: "an integer", "a string", "null".
    pub fn type_with_article(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Object(_) => "an object",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::List(_) => 4,
            Value::Object(_) => 5,
        }
    }

    /// A total order across all values (numbers compare by value, NaN last), used for
    /// deterministic output order and for grouping keys.
    /// Whether two values are the same key: `total_cmp` equality (so `1` and `1.0`
    /// are one key, as their hashes are), with the common cases compared directly.
    pub fn key_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => same_name(a, b),
            (Value::Int(a), Value::Int(b)) => a == b,
            _ => self.total_cmp(other).is_eq(),
        }
    }

    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                let (a, b) = (self.as_f64().unwrap_or(0.0), other.as_f64().unwrap_or(0.0));
                a.total_cmp(&b)
            }
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) => {
                for (x, y) in a.iter().zip(b) {
                    let c = x.total_cmp(y);
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value::Object(a), Value::Object(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    let c = ka.cmp(kb).then_with(|| va.total_cmp(vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// Hashes consistently with `total_cmp` equality (an integral float hashes as its int).
    pub fn hash_into<H: Hasher>(&self, h: &mut H) {
        match self {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => b.hash(h),
            Value::Int(i) => i.hash(h),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    (*f as i64).hash(h)
                } else {
                    f.to_bits().hash(h)
                }
            }
            Value::Str(s) => s.as_str().hash(h),
            Value::List(items) => {
                items.len().hash(h);
                for i in items {
                    i.hash_into(h);
                }
            }
            Value::Object(o) => {
                o.len().hash(h);
                for (k, v) in o.iter() {
                    k.hash(h);
                    v.hash_into(h);
                }
            }
        }
    }

    /// Converts from `serde_json::Value` (used for config literals and tests).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::str(s.as_str()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.as_str(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Displays a value as it appears in text outputs (CSV cells): strings bare, null empty.
impl Value {
    /// Appends the text `Display` writes: ints and strings directly, not through
    /// `write!`'s formatting machinery, which cost more than the digits where a sink
    /// writes millions of fields.
    pub fn push_text(&self, out: &mut String) {
        match self {
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::Str(s) => out.push_str(s),
            other => {
                use fmt::Write as _;
                // Writing to a String cannot fail.
                let _ = write!(out, "{other}");
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            // itoa: the same digits as `{i}`, without the formatting machinery (a
            // CSV sink writes millions).
            Value::Int(i) => f.write_str(itoa::Buffer::new().format(*i)),
            Value::Float(x) => write_float(*x, f),
            Value::Str(s) => f.write_str(s),
            Value::List(_) | Value::Object(_) => {
                let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
                f.write_str(&text)
            }
        }
    }
}

/// A float as text: plain digits in JavaScript's range for them (1e-6 to 1e21), with an
/// exponent past it, as JSON writers do. Rust's `{}` never uses an exponent, so 1e-300
/// in a CSV column came out as 300 zeros and its digits.
fn write_float(x: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if x != 0.0 && x.is_finite() && !(1e-6..1e21).contains(&x.abs()) {
        write!(f, "{x:e}")
    } else {
        write!(f, "{x}")
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(v) => s.serialize_str(v),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Value::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(CompactString::from(v)))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(CompactString::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut o = Object::with_capacity(map.size_hint().unwrap_or(4));
        // Key lengths seen so far (mod 64): a duplicate check is needed only when a
        // length repeats, which keeps parsing linear for typical records.
        let mut lengths: u64 = 0;
        while let Some(k) = map.next_key::<CompactString>()? {
            let v: Value = map.next_value()?;
            let bit = 1u64 << (k.len() % 64);
            if lengths & bit != 0 {
                // JSON allows duplicate keys; the last one wins, as in serde_json.
                o.insert(k, v);
            } else {
                lengths |= bit;
                o.push_unchecked(k, v);
            }
        }
        Ok(Value::Object(o))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        match d.deserialize_map(ValueVisitor)? {
            Value::Object(o) => Ok(o),
            _ => Err(de::Error::custom("expected an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_text_appends_what_display_writes() {
        let mut object = Object::new();
        object.push_unchecked("a", Value::Int(1));
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(0),
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(1.5),
            Value::Float(-0.0),
            Value::str(""),
            Value::str("a, \"quoted\" string over twenty-four bytes"),
            Value::List(vec![Value::Int(1), Value::str("x")]),
            Value::Object(object),
        ];
        for v in &values {
            let mut text = String::from("before|");
            v.push_text(&mut text);
            assert_eq!(text, format!("before|{v}"), "{v:?}");
        }
    }

    #[test]
    fn floats_as_text_take_an_exponent_past_javascripts_range() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (5.0, "5"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (-2.5e-300, "-2.5e-300"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e21, "1e21"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
        ];
        for (x, text) in cases {
            assert_eq!(Value::Float(x).to_string(), text, "{x:?}");
            let parsed: f64 = text.parse().unwrap();
            assert_eq!(parsed.to_bits(), x.to_bits(), "{text} reads back as {x:?}");
        }
    }

    #[test]
    fn same_name_is_string_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abce",
            "bbcd",
            "hostname",
            "hostnamf",
            "cpu",
            "occurred_at",
            "occurred_as",
            "pccurred_at",
            "a_sixteen_bytes!",
            "a_sixteen_bytes?",
            "seventeen_bytes!!",
            "seventeen_bytes!?",
            "ünï",
            "üni",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_name(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// `key_eq` is `total_cmp` equality, and equal keys hash alike.
    #[test]
    fn key_eq_is_total_cmp_equality() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(1),
            Value::Float(1.0),
            Value::Float(1.5),
            Value::Int(-3),
            Value::str("doc"),
            Value::str("dopey"),
            Value::str("a string longer than twenty-four bytes"),
            Value::List(vec![Value::Int(1)]),
            Value::List(vec![Value::Float(1.0)]),
        ];
        let hash = |v: &Value| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash_into(&mut h);
            h.finish()
        };
        for a in &values {
            for b in &values {
                assert_eq!(a.key_eq(b), a.total_cmp(b).is_eq(), "{a:?} {b:?}");
                if a.key_eq(b) {
                    assert_eq!(hash(a), hash(b), "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn parses_and_prints_json() {
        let v: Value = serde_json::from_str(r#"{"a":1,"b":[true,null,2.5],"c":{"d":"x"}}"#)
            .unwrap_or_default();
        assert_eq!(v.get_path(&FieldPath::parse("c.d")), Some(&Value::str("x")));
        assert_eq!(
            v.get_path(&FieldPath::parse("b.2")),
            Some(&Value::Float(2.5))
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap_or_default(),
            r#"{"a":1,"b":[true,null,2.5],"c":{"d":"x"}}"#
        );
    }

    #[test]
    fn set_and_remove_paths() {
        let mut v = Value::Null;
        assert!(v.set_path(&FieldPath::parse("a.b"), Value::Int(3)));
        assert_eq!(v.get_path(&FieldPath::parse("a.b")), Some(&Value::Int(3)));
        assert_eq!(v.remove_path(&FieldPath::parse("a.b")), Some(Value::Int(3)));
        assert_eq!(v.get_path(&FieldPath::parse("a.b")), None);
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert_eq!(Value::Int(2).total_cmp(&Value::Float(2.0)), Ordering::Equal);
        assert_eq!(Value::Int(2).total_cmp(&Value::Float(2.5)), Ordering::Less);
        assert_eq!(Value::Null.total_cmp(&Value::Int(0)), Ordering::Less);
    }
}
