//! A record value as the CQL type of its column, as the prepared statement reports it
//! (numbers checked for range, exact decimals, timestamps, dates, UUIDs, collections).

use connectd_sdk::time::event_time_ms;
use connectd_sdk::Value;
use scylla::frame::response::result::{CollectionType, ColumnType, NativeType};
use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp, CqlTimeuuid, CqlValue};

fn number(v: &Value) -> Result<f64, String> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number")),
        other => Err(format!("a {} is not a number", other.type_name())),
    }
}

fn integer(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(*f as i64),
        Value::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an integer")),
        other => Err(format!(
            "a {} ({other}) is not an integer",
            other.type_name()
        )),
    }
}

/// An exact decimal from a number or numeric string ("123.45" → 12345 × 10^-2).
fn decimal(v: &Value) -> Result<CqlDecimal, String> {
    let text = match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.trim().to_string(),
        other => return Err(format!("a {} is not a decimal", other.type_name())),
    };
    let (int_part, frac) = text.split_once('.').unwrap_or((&text, ""));
    let digits = format!("{int_part}{frac}");
    let unscaled: i128 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a decimal"))?;
    let bytes = unscaled.to_be_bytes();
    // Minimal two's-complement encoding.
    let mut start = 0;
    while start < 15
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xFF && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    Ok(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
        &bytes[start..],
        frac.len() as i32,
    ))
}

pub fn convert(v: &Value, typ: &ColumnType<'_>) -> Result<Option<CqlValue>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let value = match typ {
        ColumnType::Native(n) => match n {
            NativeType::Text | NativeType::Ascii => CqlValue::Text(v.to_string()),
            NativeType::Boolean => match v {
                Value::Bool(b) => CqlValue::Boolean(*b),
                other => return Err(format!("a {} is not a boolean", other.type_name())),
            },
            NativeType::BigInt | NativeType::Counter => CqlValue::BigInt(integer(v)?),
            NativeType::Int => CqlValue::Int(
                i32::try_from(integer(v)?).map_err(|_| "out of range for int".to_string())?,
            ),
            NativeType::SmallInt => CqlValue::SmallInt(
                i16::try_from(integer(v)?).map_err(|_| "out of range for smallint".to_string())?,
            ),
            NativeType::TinyInt => CqlValue::TinyInt(
                i8::try_from(integer(v)?).map_err(|_| "out of range for tinyint".to_string())?,
            ),
            NativeType::Double => CqlValue::Double(number(v)?),
            NativeType::Float => {
                let x = number(v)?;
                // `as f32` makes anything past ±3.4e38 infinity, without a word.
                match x as f32 {
                    f if f.is_infinite() && x.is_finite() => {
                        return Err(format!(
                            "{x} is beyond a float (±3.4e38); make the column a double"
                        ))
                    }
                    f => CqlValue::Float(f),
                }
            }
            NativeType::Decimal => CqlValue::Decimal(decimal(v)?),
            NativeType::Timestamp => CqlValue::Timestamp(CqlTimestamp(event_time_ms(v)?)),
            NativeType::Date => {
                let days = match v {
                    Value::Str(s) if s.len() == 10 => {
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map_err(|e| format!("`{s}` is not a date: {e}"))?
                            .signed_duration_since(chrono::NaiveDate::default())
                            .num_days()
                    }
                    other => event_time_ms(other)?.div_euclid(86_400_000),
                };
                // A date is days from 1970 offset by 2³¹ in a u32: past that it would wrap.
                let encoded = u32::try_from(days + (1i64 << 31))
                    .map_err(|_| format!("{v} is out of range for a date"))?;
                CqlValue::Date(CqlDate(encoded))
            }
            NativeType::Uuid | NativeType::Timeuuid => {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("a {} is not a UUID", v.type_name()))?;
                let u =
                    uuid::Uuid::parse_str(s).map_err(|e| format!("`{s}` is not a UUID: {e}"))?;
                if matches!(n, NativeType::Timeuuid) {
                    CqlValue::Timeuuid(CqlTimeuuid::from(u))
                } else {
                    CqlValue::Uuid(u)
                }
            }
            NativeType::Blob => match v {
                Value::Str(s) => CqlValue::Blob(s.as_bytes().to_vec()),
                other => CqlValue::Blob(serde_json::to_vec(other).map_err(|e| e.to_string())?),
            },
            other => {
                return Err(format!(
                    "the CQL type {other:?} is not supported by this sink"
                ))
            }
        },
        ColumnType::Collection { typ, .. } => match (typ, v) {
            (CollectionType::List(inner), Value::List(items)) => CqlValue::List(
                items
                    .iter()
                    .map(|i| {
                        convert(i, inner).and_then(|x| x.ok_or_else(|| "null inside a list".into()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (CollectionType::Set(inner), Value::List(items)) => CqlValue::Set(
                items
                    .iter()
                    .map(|i| {
                        convert(i, inner).and_then(|x| x.ok_or_else(|| "null inside a set".into()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (CollectionType::Map(k, val), Value::Object(o)) => CqlValue::Map(
                o.iter()
                    .map(|(key, x)| {
                        let key = convert(&Value::str(key), k)?.ok_or("null map key")?;
                        let x = convert(x, val)?.ok_or("null map value")?;
                        Ok((key, x))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            (_, other) => {
                return Err(format!(
                    "a {} does not fit this collection column",
                    other.type_name()
                ))
            }
        },
        other => {
            return Err(format!(
                "the CQL type {other:?} is not supported by this sink"
            ))
        }
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_to_the_column_types() {
        let t = |n| ColumnType::Native(n);
        assert_eq!(
            convert(&Value::Int(5), &t(NativeType::BigInt)),
            Ok(Some(CqlValue::BigInt(5)))
        );
        assert_eq!(
            convert(&Value::Int(5), &t(NativeType::Int)),
            Ok(Some(CqlValue::Int(5)))
        );
        assert!(convert(&Value::Int(1 << 40), &t(NativeType::Int)).is_err());
        // Past a float's range, and past a date's: errors, not infinity or a wrapped day.
        let e = convert(&Value::Float(1e300), &t(NativeType::Float)).unwrap_err();
        assert!(e.contains("beyond a float"), "{e}");
        assert_eq!(
            convert(&Value::Float(1.5), &t(NativeType::Float)),
            Ok(Some(CqlValue::Float(1.5)))
        );
        let e = convert(&Value::Int(i64::MAX), &t(NativeType::Date)).unwrap_err();
        assert!(e.contains("out of range for a date"), "{e}");
        assert_eq!(
            convert(
                &Value::str("2024-04-01T15:56:48.427Z"),
                &t(NativeType::Timestamp)
            ),
            Ok(Some(CqlValue::Timestamp(CqlTimestamp(1_711_987_008_427))))
        );
        assert_eq!(
            convert(&Value::Int(86_400_000), &t(NativeType::Date)),
            Ok(Some(CqlValue::Date(CqlDate((1u32 << 31) + 1))))
        );
        assert_eq!(
            convert(&Value::str("1970-01-03"), &t(NativeType::Date)),
            Ok(Some(CqlValue::Date(CqlDate((1u32 << 31) + 2))))
        );
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(
            convert(&Value::str(id), &t(NativeType::Uuid)),
            Ok(Some(CqlValue::Uuid(uuid::Uuid::parse_str(id).unwrap())))
        );
        assert!(convert(&Value::str("not-a-uuid"), &t(NativeType::Uuid)).is_err());
        assert_eq!(convert(&Value::Null, &t(NativeType::Text)), Ok(None));
        assert!(convert(&Value::str("x"), &t(NativeType::Boolean)).is_err());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(
            decimal(&Value::str("123.45")),
            Ok(CqlDecimal::from_signed_be_bytes_and_exponent(
                vec![0x30, 0x39],
                2
            ))
        );
        assert_eq!(
            decimal(&Value::str("-1.5")),
            Ok(CqlDecimal::from_signed_be_bytes_and_exponent(vec![0xF1], 1))
        );
        assert_eq!(
            decimal(&Value::Int(128)),
            Ok(CqlDecimal::from_signed_be_bytes_and_exponent(
                vec![0x00, 0x80],
                0
            ))
        );
        assert!(decimal(&Value::str("1e5x")).is_err());
    }
}
