//! A compact binary encoding of records, for what connectd writes and reads back itself
//! (a sink's write-ahead log). Exact where JSON is not: an integral float stays a float
//! and keeps its bits, NaN and infinities survive.
//!
//! Hand-written rather than serde with bincode or postcard: those need a type that
//! describes itself without `deserialize_any`, and [`Value`]'s serde form is JSON's.
//!
//! A value is a tag byte and then: nothing (null, false, true); a zigzag LEB128 integer;
//! 8 little-endian bytes of a float; a LEB128 length and UTF-8 bytes (string); a LEB128
//! count and the items (list), or the name-value pairs (object). A record is a flags
//! byte (which optional parts follow), its key, value, timestamp, headers and lane.

use compact_str::CompactString;

use crate::record::Record;
use crate::value::{Object, Value};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STR: u8 = 5;
const LIST: u8 = 6;
const OBJECT: u8 = 7;

const HAS_KEY: u8 = 1;
const HAS_TIMESTAMP: u8 = 2;
const HAS_HEADERS: u8 = 4;
const HAS_LANE: u8 = 8;

/// Deeper nesting than this is refused when decoding, so damaged bytes cannot exhaust
/// the stack.
const MAX_DEPTH: usize = 512;

/// Bytes that are not an encoding made by [`encode`].
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not an encoded record at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

/// Appends the encoding of `r` to `out`.
pub fn encode(r: &Record, out: &mut Vec<u8>) {
    let mut flags = 0;
    if !r.key.is_null() {
        flags |= HAS_KEY;
    }
    if r.timestamp.is_some() {
        flags |= HAS_TIMESTAMP;
    }
    if !r.headers.is_empty() {
        flags |= HAS_HEADERS;
    }
    if r.lane != 0 {
        flags |= HAS_LANE;
    }
    out.push(flags);
    if flags & HAS_KEY != 0 {
        encode_value(&r.key, out);
    }
    encode_value(&r.value, out);
    if let Some(t) = r.timestamp {
        put_signed(t, out);
    }
    if flags & HAS_HEADERS != 0 {
        put_unsigned(r.headers.len() as u64, out);
        for (name, value) in &r.headers {
            put_str(name, out);
            put_str(value, out);
        }
    }
    if flags & HAS_LANE != 0 {
        put_unsigned(r.lane, out);
    }
}

/// Appends the encoding of `v` to `out`.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Int(i) => {
            out.push(INT);
            put_signed(*i, out);
        }
        Value::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Str(s) => {
            out.push(STR);
            put_str(s, out);
        }
        Value::List(items) => {
            out.push(LIST);
            put_unsigned(items.len() as u64, out);
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Object(o) => {
            out.push(OBJECT);
            put_unsigned(o.len() as u64, out);
            for (name, value) in o.iter() {
                put_str(name, out);
                encode_value(value, out);
            }
        }
    }
}

fn put_unsigned(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_signed(i: i64, out: &mut Vec<u8>) {
    put_unsigned(((i << 1) ^ (i >> 63)) as u64, out);
}

fn put_str(s: &str, out: &mut Vec<u8>) {
    put_unsigned(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// The record that `bytes` hold whole: this encoding, or the JSON that versions before
/// 2026-12-03 kept in the state store (it begins with `{`, never a flags byte).
pub fn decode_stored(bytes: &[u8]) -> Result<Record, String> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let mut d = Decoder::new(bytes);
    let r = d.record().map_err(|e| e.to_string())?;
    if !d.is_empty() {
        return Err(format!("{} bytes after the record", bytes.len() - d.at));
    }
    Ok(r)
}

/// Reads records one after another from bytes made by [`encode`].
#[derive(Debug)]
pub struct Decoder<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Decoder<'b> {
    pub fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError { at: self.at, what })
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let Some(&b) = self.bytes.get(self.at) else {
            return self.fail("unexpected end");
        };
        self.at += 1;
        Ok(b)
    }

    fn unsigned(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        self.fail("a number longer than 10 bytes")
    }

    fn signed(&mut self) -> Result<i64, DecodeError> {
        let n = self.unsigned()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    /// A count of items that each take at least one byte: more than the bytes left is
    /// damage, and must not size an allocation.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.unsigned()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return self.fail("a count larger than the bytes left");
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<CompactString, DecodeError> {
        let n = self.count()?;
        let raw = &self.bytes[self.at..self.at + n];
        match std::str::from_utf8(raw) {
            Ok(s) => {
                self.at += n;
                Ok(CompactString::from(s))
            }
            Err(_) => self.fail("a string is not UTF-8"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            INT => Value::Int(self.signed()?),
            FLOAT => {
                let Some(chunk) = self.bytes.get(self.at..self.at + 8) else {
                    return self.fail("unexpected end in a float");
                };
                let mut buf = [0u8; 8];
                buf.copy_from_slice(chunk);
                self.at += 8;
                Value::Float(f64::from_bits(u64::from_le_bytes(buf)))
            }
            STR => Value::Str(self.str()?),
            LIST => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            OBJECT => {
                let n = self.count()?;
                let mut o = Object::with_capacity(n);
                for _ in 0..n {
                    let name = self.str()?;
                    o.push_unchecked(name, self.value(depth + 1)?);
                }
                Value::Object(o)
            }
            _ => {
                self.at -= 1;
                return self.fail("unknown value tag");
            }
        })
    }

    /// The next record.
    pub fn record(&mut self) -> Result<Record, DecodeError> {
        let flags = self.byte()?;
        if flags & !(HAS_KEY | HAS_TIMESTAMP | HAS_HEADERS | HAS_LANE) != 0 {
            self.at -= 1;
            return self.fail("unknown record flags");
        }
        let key = if flags & HAS_KEY != 0 {
            self.value(0)?
        } else {
            Value::Null
        };
        let value = self.value(0)?;
        let timestamp = if flags & HAS_TIMESTAMP != 0 {
            Some(self.signed()?)
        } else {
            None
        };
        let mut headers = Vec::new();
        if flags & HAS_HEADERS != 0 {
            let n = self.count()?;
            headers.reserve(n);
            for _ in 0..n {
                headers.push((self.str()?, self.str()?));
            }
        }
        let lane = if flags & HAS_LANE != 0 {
            self.unsigned()?
        } else {
            0
        };
        Ok(Record {
            key,
            value,
            timestamp,
            headers,
            lane,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(r: &Record) -> Record {
        let mut bytes = Vec::new();
        encode(r, &mut bytes);
        let mut d = Decoder::new(&bytes);
        let back = d.record().unwrap();
        assert!(d.is_empty());
        back
    }

    /// Every kind of value and every optional part of a record come back as they were,
    /// exactly: floats keep their bits (NaN, -0.0, integral floats stay floats).
    #[test]
    fn records_come_back_exactly() {
        let mut nested = Object::new();
        nested.push_unchecked("ü", Value::List(vec![Value::Null, Value::Bool(true)]));
        nested.push_unchecked("", Value::Bool(false));
        let values = [
            Value::Null,
            Value::Int(0),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Int(-1),
            Value::Float(1.0),
            Value::Float(-0.0),
            Value::Float(f64::INFINITY),
            Value::str(""),
            Value::str("zürich \0 \n"),
            Value::str("x".repeat(300)),
            Value::List(vec![]),
            Value::Object(nested),
        ];
        for (i, v) in values.iter().enumerate() {
            let mut r = Record::new(v.clone());
            if i % 2 == 0 {
                r.key = Value::str(format!("k{i}"));
                r.timestamp = Some(-(i as i64) * 1_000_000_007);
                r.headers = vec![("kafka.topic".into(), "t".into()), ("a".into(), "".into())];
                r.lane = (i as u64) << 40;
            }
            assert_eq!(round_trip(&r), r, "{v:?}");
        }
        let nan = round_trip(&Record::new(Value::Float(f64::NAN)));
        assert!(matches!(nan.value, Value::Float(f) if f.is_nan()));
        let neg_zero = round_trip(&Record::new(Value::Float(-0.0)));
        assert!(matches!(neg_zero.value, Value::Float(f) if f.is_sign_negative()));
    }

    /// A record stored whole decodes from this encoding and from the JSON of earlier
    /// versions; trailing bytes are an error.
    #[test]
    fn stored_records_decode_from_either_form() {
        let r = Record::new(Value::Float(2.5))
            .with_key(Value::str("k"))
            .with_timestamp(5);
        let mut bytes = Vec::new();
        encode(&r, &mut bytes);
        assert_eq!(decode_stored(&bytes).unwrap(), r);
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(decode_stored(&json).unwrap(), r);
        bytes.push(0);
        assert!(decode_stored(&bytes)
            .unwrap_err()
            .contains("after the record"));
    }

    /// Damaged bytes are an error at a position, never a panic or a huge allocation:
    /// every truncation and every single-byte change of an encoding is tried.
    #[test]
    fn damaged_bytes_are_errors() {
        let mut o = Object::new();
        o.push_unchecked("name", Value::str("abc"));
        o.push_unchecked("n", Value::List(vec![Value::Int(300), Value::Float(0.5)]));
        let r = Record::new(Value::Object(o))
            .with_key(Value::str("k"))
            .with_timestamp(1_700_000_000_000);
        let mut bytes = Vec::new();
        encode(&r, &mut bytes);
        for cut in 0..bytes.len() {
            assert!(
                Decoder::new(&bytes[..cut]).record().is_err(),
                "cut at {cut}"
            );
        }
        for at in 0..bytes.len() {
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = b;
                // Either an error or some record: what matters is no panic.
                let _ = Decoder::new(&changed).record();
            }
        }
        assert_eq!(
            Decoder::new(&[0x10]).record().unwrap_err().what,
            "unknown record flags"
        );
        let deep: Vec<u8> = std::iter::once(0)
            .chain(std::iter::repeat_n(LIST, 1000).flat_map(|t| [t, 1]))
            .collect();
        assert_eq!(
            Decoder::new(&deep).record().unwrap_err().what,
            "nested too deeply"
        );
    }
}
