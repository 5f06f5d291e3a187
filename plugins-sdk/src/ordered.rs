//! A canonical, order-preserving byte encoding of values, for keys in the state store.
//!
//! - Canonical: values equal under [`Value::total_cmp`] encode to the same bytes (an
//!   integral float is encoded as the integer it equals), so a key found in memory and
//!   the same key read back from the store are one key.
//! - Ordered: byte order equals value order among values of one type (integers,
//!   strings, lists of those), so a scan of the store yields keys in the order users
//!   expect in output. Across types the order is by type (null, bool, integer, float,
//!   string, list, object).
//!
//! Strings escape `0x00` as `0x00 0xff` and end with `0x00 0x01`, the usual trick for
//! prefix-free, order-preserving strings; lists and objects end with `0x00`, which sorts
//! before any element tag, so a shorter list sorts first.

use compact_str::CompactString;

use crate::value::{Object, Value};

const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INT: u8 = 0x04;
const FLOAT: u8 = 0x05;
const STR: u8 = 0x06;
const LIST: u8 = 0x07;
const OBJECT: u8 = 0x08;
const END: u8 = 0x00;

/// Largest magnitude below which an integral float is encoded as an integer (the same
/// bound `Value::hash_into` uses).
const INTEGRAL_FLOAT_BOUND: f64 = 9.0e15;

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Int(i) => encode_int(*i, out),
        // -0.0 is not 0 under `total_cmp`: it stays a float.
        Value::Float(f)
            if f.fract() == 0.0
                && f.abs() < INTEGRAL_FLOAT_BOUND
                && !(*f == 0.0 && f.is_sign_negative()) =>
        {
            encode_int(*f as i64, out)
        }
        Value::Float(f) => {
            out.push(FLOAT);
            // IEEE total order as unsigned bytes: flip all bits of negatives, the sign
            // bit of positives.
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Str(s) => {
            out.push(STR);
            encode_str(s, out);
        }
        Value::List(items) => {
            out.push(LIST);
            for item in items {
                encode(item, out);
            }
            out.push(END);
        }
        Value::Object(o) => {
            out.push(OBJECT);
            for (k, v) in o.iter() {
                encode_str(k, out);
                encode(v, out);
            }
            out.push(END);
        }
    }
}

/// Appends the encoding of a sequence of values (a composite key).
pub fn encode_all<'v>(values: impl IntoIterator<Item = &'v Value>, out: &mut Vec<u8>) {
    for v in values {
        encode(v, out);
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    out.push(INT);
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// An i64 as 8 bytes that sort as the numbers do (sign bit flipped, big-endian): times
/// in keys of a time-ordered index.
pub fn i64_key(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`i64_key`], from the first 8 bytes of `bytes` (`None` if shorter).
pub fn i64_from_key(bytes: &[u8]) -> Option<i64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// The first key after every key that begins with `prefix` (the end of a prefix range).
/// For a prefix of only `0xff` bytes there is none: the empty key is returned, which
/// callers must not use as an upper bound (prefixes here never are all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    end
}

/// Bytes that are not an encoding made by [`encode`].
#[derive(Debug, thiserror::Error)]
#[error("not an encoded key at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

/// Decodes every value in `bytes` (the inverse of [`encode_all`]).
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let mut out = Vec::new();
    while r.at < bytes.len() {
        out.push(r.value()?);
    }
    Ok(out)
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl Reader<'_> {
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

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let Some(chunk) = self.bytes.get(self.at..self.at + 8) else {
            return self.fail("unexpected end in a number");
        };
        self.at += 8;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        Ok(u64::from_be_bytes(buf))
    }

    fn string(&mut self) -> Result<CompactString, DecodeError> {
        let mut raw = Vec::new();
        loop {
            match self.byte()? {
                0 => match self.byte()? {
                    0x01 => break,
                    0xff => raw.push(0),
                    _ => return self.fail("bad escape in a string"),
                },
                b => raw.push(b),
            }
        }
        match String::from_utf8(raw) {
            Ok(s) => Ok(s.into()),
            Err(_) => self.fail("a string is not UTF-8"),
        }
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            INT => Value::Int((self.u64()? ^ (1 << 63)) as i64),
            FLOAT => {
                let ordered = self.u64()?;
                let bits = if ordered >> 63 == 1 {
                    ordered & !(1 << 63)
                } else {
                    !ordered
                };
                Value::Float(f64::from_bits(bits))
            }
            STR => Value::Str(self.string()?),
            LIST => {
                let mut items = Vec::new();
                while self.bytes.get(self.at) != Some(&END) {
                    items.push(self.value()?);
                }
                self.at += 1;
                Value::List(items)
            }
            OBJECT => {
                let mut o = Object::new();
                while self.bytes.get(self.at) != Some(&END) {
                    let k = self.string()?;
                    let v = self.value()?;
                    o.insert(k, v);
                }
                self.at += 1;
                Value::Object(o)
            }
            _ => return self.fail("unknown type tag"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    fn sample(seed: &mut u64) -> Value {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = *seed >> 33;
        match x % 7 {
            0 => Value::Int((x as i64 % 2001) - 1000),
            1 => Value::Float(((x % 4001) as f64 - 2000.0) / 8.0),
            2 => Value::Str(
                ["", "a", "ab", "a\0", "a\0b", "b", "é", "cpu1", "cpu10"][(x % 9) as usize].into(),
            ),
            3 => Value::Bool(x.is_multiple_of(2)),
            4 => Value::Null,
            5 => Value::List((0..x % 3).map(|i| Value::Int(i as i64 - 1)).collect()),
            _ => Value::Float([f64::NEG_INFINITY, -0.0, 1e300, -1e-300][(x % 4) as usize]),
        }
    }

    #[test]
    fn decoding_inverts_encoding() {
        let mut seed = 1;
        for _ in 0..5_000 {
            let values: Vec<Value> = (0..3).map(|_| sample(&mut seed)).collect();
            let mut bytes = Vec::new();
            encode_all(&values, &mut bytes);
            let back = decode_all(&bytes).unwrap();
            assert_eq!(back.len(), values.len());
            for (a, b) in values.iter().zip(&back) {
                assert!(a.total_cmp(b).is_eq(), "{a:?} came back as {b:?}");
            }
        }
    }

    #[test]
    fn equal_values_encode_alike_and_order_holds_within_a_type() {
        assert_eq!(enc(&Value::Int(3)), enc(&Value::Float(3.0)));
        assert_ne!(enc(&Value::Float(-0.0)), enc(&Value::Int(0)));
        assert_eq!(enc(&Value::Float(-2.0)), enc(&Value::Int(-2)));
        let mut seed = 9;
        for _ in 0..20_000 {
            let (a, b) = (sample(&mut seed), sample(&mut seed));
            let (ea, eb) = (enc(&a), enc(&b));
            if a.total_cmp(&b).is_eq() {
                assert_eq!(ea, eb, "{a:?} = {b:?}");
            }
            let same_kind = matches!(
                (&a, &b),
                (Value::Int(_), Value::Int(_))
                    | (Value::Str(_), Value::Str(_))
                    | (Value::Bool(_), Value::Bool(_))
            );
            if same_kind {
                assert_eq!(ea.cmp(&eb), a.total_cmp(&b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn floats_order_by_value() {
        let floats = [f64::NEG_INFINITY, -1e300, -2.5, -1e-300, 0.5, 1.5, 1e300];
        for w in floats.windows(2) {
            assert!(enc(&Value::Float(w[0])) < enc(&Value::Float(w[1])), "{w:?}");
        }
    }

    #[test]
    fn time_keys_sort_as_times_and_prefix_ends_bound_their_prefix() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(i64_key(w[0]) < i64_key(w[1]));
        }
        for t in times {
            assert_eq!(i64_from_key(&i64_key(t)), Some(t));
        }
        assert_eq!(i64_from_key(&[1, 2]), None);
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(&[1, 0xff]), [2]);
        assert!(b"ab\xff\xff".as_slice() < prefix_end(b"ab").as_slice());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[0x09u8][..],
            &[INT, 1, 2],
            &[STR, b'a'],
            &[STR, 0, 7],
            &[LIST],
        ] {
            assert!(decode_all(bytes).is_err(), "{bytes:?}");
        }
    }
}
