//! A compact binary form of a group's accumulators, for the state store: a window over
//! a million keys writes and reads back each group at least once, and this is about
//! half the size of their JSON and several times cheaper to encode and decode.
//!
//! Each accumulator is a tag byte and its fields, big-endian; values keep their exact
//! type (an integral float stays a float), unlike the ordered key encoding. Lists and
//! objects, rare in aggregates, are carried as JSON.

use connectd_sdk::Value;

use super::aggregate::{Acc, DistinctSet, KeyValue};

const COUNT: u8 = 1;
const SUM: u8 = 2;
const AVG: u8 = 3;
const MIN: u8 = 4;
const MAX: u8 = 5;
const FIRST: u8 = 6;
const LAST: u8 = 7;
const DISTINCT: u8 = 8;

const V_NULL: u8 = 0;
const V_FALSE: u8 = 1;
const V_TRUE: u8 = 2;
const V_INT: u8 = 3;
const V_FLOAT: u8 = 4;
const V_STR: u8 = 5;
const V_JSON: u8 = 6;

pub fn encode(accs: &[Acc], out: &mut Vec<u8>) {
    for acc in accs {
        match acc {
            Acc::Count(n) => {
                out.push(COUNT);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Acc::Sum {
                int,
                float,
                is_float,
                n,
            } => {
                out.push(SUM);
                out.extend_from_slice(&int.to_be_bytes());
                out.extend_from_slice(&float.to_bits().to_be_bytes());
                out.push(u8::from(*is_float));
                out.extend_from_slice(&n.to_be_bytes());
            }
            Acc::Avg { sum, n } => {
                out.push(AVG);
                out.extend_from_slice(&sum.to_bits().to_be_bytes());
                out.extend_from_slice(&n.to_be_bytes());
            }
            Acc::Min(v) | Acc::Max(v) => {
                out.push(if matches!(acc, Acc::Min(_)) { MIN } else { MAX });
                put_value(v, out);
            }
            Acc::First(f) | Acc::Last(f) => {
                out.push(if matches!(acc, Acc::First(_)) {
                    FIRST
                } else {
                    LAST
                });
                match f {
                    None => out.push(0),
                    Some((seq, v)) => {
                        out.push(1);
                        out.extend_from_slice(&seq.to_be_bytes());
                        put_value(v, out);
                    }
                }
            }
            Acc::Distinct(set) => {
                out.push(DISTINCT);
                out.extend_from_slice(&(set.0.len() as u64).to_be_bytes());
                for k in &set.0 {
                    put_value(&k.0, out);
                }
            }
        }
    }
}

fn put_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(V_NULL),
        Value::Bool(false) => out.push(V_FALSE),
        Value::Bool(true) => out.push(V_TRUE),
        Value::Int(i) => {
            out.push(V_INT);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(V_FLOAT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            out.push(V_STR);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        other => {
            let json = serde_json::to_vec(other).unwrap_or_default();
            out.push(V_JSON);
            out.extend_from_slice(&(json.len() as u32).to_be_bytes());
            out.extend_from_slice(&json);
        }
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!("accumulators end early at byte {}", self.at));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<usize, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b) as usize)
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    fn value(&mut self) -> Result<Value, String> {
        Ok(match self.u8()? {
            V_NULL => Value::Null,
            V_FALSE => Value::Bool(false),
            V_TRUE => Value::Bool(true),
            V_INT => Value::Int(self.u64()? as i64),
            V_FLOAT => Value::Float(self.f64()?),
            V_STR => {
                let n = self.u32()?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())?;
                Value::Str(s.into())
            }
            V_JSON => {
                let n = self.u32()?;
                serde_json::from_slice(self.take(n)?).map_err(|e| e.to_string())?
            }
            t => return Err(format!("unknown value tag {t} at byte {}", self.at - 1)),
        })
    }
}

/// Decodes the `expected` accumulators of a group.
pub fn decode(bytes: &[u8], expected: usize) -> Result<Vec<Acc>, String> {
    // Stores written before this form held JSON (a list).
    if bytes.first() == Some(&b'[') {
        let accs: Vec<Acc> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        return check(accs, expected);
    }
    let mut r = Reader { bytes, at: 0 };
    let mut accs = Vec::new();
    while r.at < bytes.len() {
        let acc = match r.u8()? {
            COUNT => Acc::Count(r.u64()? as i64),
            SUM => Acc::Sum {
                int: r.u64()? as i64,
                float: r.f64()?,
                is_float: r.u8()? != 0,
                n: r.u64()?,
            },
            AVG => Acc::Avg {
                sum: r.f64()?,
                n: r.u64()?,
            },
            MIN => Acc::Min(r.value()?),
            MAX => Acc::Max(r.value()?),
            tag @ (FIRST | LAST) => {
                let held = match r.u8()? {
                    0 => None,
                    _ => Some((r.u64()?, r.value()?)),
                };
                if tag == FIRST {
                    Acc::First(held)
                } else {
                    Acc::Last(held)
                }
            }
            DISTINCT => {
                let n = r.u64()?;
                let mut set = DistinctSet::default();
                for _ in 0..n {
                    set.0.insert(KeyValue(r.value()?));
                }
                Acc::Distinct(set)
            }
            t => return Err(format!("unknown accumulator tag {t} at byte {}", r.at - 1)),
        };
        accs.push(acc);
    }
    check(accs, expected)
}

fn check(accs: Vec<Acc>, expected: usize) -> Result<Vec<Acc>, String> {
    if accs.len() == expected {
        Ok(accs)
    } else {
        Err(format!(
            "{} accumulators where the window has {expected}",
            accs.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn json(accs: &[Acc]) -> String {
        serde_json::to_string(accs).unwrap()
    }

    #[test]
    fn every_accumulator_comes_back_exactly() {
        let mut distinct = DistinctSet::default();
        for v in [Value::Int(1), Value::str("x"), Value::Float(2.5)] {
            distinct.0.insert(KeyValue(v));
        }
        let accs = vec![
            Acc::Count(-7),
            Acc::Sum {
                int: 5,
                float: 1.25,
                is_float: true,
                n: 3,
            },
            Acc::Avg { sum: 0.1, n: 9 },
            Acc::Min(Value::Float(3.0)),
            Acc::Max(Value::str("zz\u{e9}")),
            Acc::First(None),
            Acc::Last(Some((42, Value::List(vec![Value::Int(1), Value::Null])))),
            Acc::Distinct(distinct),
        ];
        let mut bytes = Vec::new();
        encode(&accs, &mut bytes);
        let back = decode(&bytes, accs.len()).unwrap();
        assert_eq!(json(&back), json(&accs));
        assert!(
            matches!(back[3], Acc::Min(Value::Float(f)) if f == 3.0),
            "a float stays a float"
        );
        assert!(bytes.len() < json(&accs).len());
        // JSON from an earlier store still reads.
        assert_eq!(
            json(&decode(json(&accs).as_bytes(), accs.len()).unwrap()),
            json(&accs)
        );
    }

    #[test]
    fn truncated_or_garbage_bytes_are_errors() {
        let mut bytes = Vec::new();
        encode(&[Acc::Count(1), Acc::Max(Value::str("abc"))], &mut bytes);
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut], 2).is_err(), "cut at {cut}");
        }
        assert!(decode(&[99], 1).is_err());
    }
}
