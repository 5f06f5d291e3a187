//! Avro values on the wire: plain datums (with a schema from the config) and the
//! Confluent wire format (magic byte 0, the 4-byte big-endian schema id, the datum),
//! with schemas from a schema registry (`registry`).

pub mod config;
pub mod registry;

use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use connectd_sdk::Value;

/// The Confluent wire format's first byte.
const MAGIC: u8 = 0;

/// Parses a schema written in the config (JSON text), naming the problem.
pub fn parse_schema(text: &str) -> Result<Schema, String> {
    Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))
}

/// A record's value as an Avro value of `schema`, or why it does not fit.
pub fn resolve(schema: &Schema, v: &Value) -> Result<AvroValue, String> {
    let json = v.to_json();
    let avro = AvroValue::from(json.clone()).resolve(schema).map_err(|e| {
        match field_at_fault(schema, &json) {
            Some((name, why)) => {
                format!("the record does not match the Avro schema at /{name}: {why}")
            }
            None => format!("the record does not match the Avro schema: {e}"),
        }
    })?;
    narrowed(&avro, &json, &mut String::new())?;
    Ok(avro)
}

/// apache-avro's reasons do not say where ("Int expected, got Double"): the first field
/// of a record schema that does not resolve alone, with its reason. None where fields
/// refer to named types (they do not resolve apart from the whole schema).
fn field_at_fault(schema: &Schema, json: &serde_json::Value) -> Option<(String, String)> {
    let (Schema::Record(record), serde_json::Value::Object(given)) = (schema, json) else {
        return None;
    };
    record.fields.iter().find_map(|field| {
        let value = given.get(&field.name).cloned().unwrap_or_default();
        match AvroValue::from(value).resolve(&field.schema) {
            Err(apache_avro::Error::SchemaResolutionError(_)) | Ok(_) => None,
            Err(e) if given.contains_key(&field.name) => Some((field.name.clone(), e.to_string())),
            // Absent: the record's resolution uses the field's default, if any.
            Err(_) if field.default.is_some() => None,
            Err(e) => Some((field.name.clone(), format!("missing ({e})"))),
        }
    })
}

/// apache-avro resolves a long into an `int` by truncation (`n as i32`: 2⁴⁰ is 0) and a
/// double into a `float` past ±3.4e38 as infinity. Compared with the value it came
/// from, such a number is an error naming its place, not a different number.
fn narrowed(avro: &AvroValue, json: &serde_json::Value, at: &mut String) -> Result<(), String> {
    let mut nested = |name: &str, avro: &AvroValue, json: &serde_json::Value| {
        let len = at.len();
        at.push('/');
        at.push_str(name);
        let r = narrowed(avro, json, at);
        at.truncate(len);
        r
    };
    match (avro, json) {
        (AvroValue::Union(_, inner), _) => narrowed(inner, json, at),
        (AvroValue::Record(fields), serde_json::Value::Object(given)) => fields
            .iter()
            .filter_map(|(name, v)| given.get(name).map(|g| (name, v, g)))
            .try_for_each(|(name, v, g)| nested(name, v, g)),
        (AvroValue::Map(entries), serde_json::Value::Object(given)) => entries
            .iter()
            .filter_map(|(name, v)| given.get(name).map(|g| (name, v, g)))
            .try_for_each(|(name, v, g)| nested(name, v, g)),
        (AvroValue::Array(items), serde_json::Value::Array(given)) => items
            .iter()
            .zip(given)
            .enumerate()
            .try_for_each(|(i, (v, g))| nested(&i.to_string(), v, g)),
        (AvroValue::Int(i), serde_json::Value::Number(n)) if n.as_i64() != Some(i64::from(*i)) => {
            Err(format!(
                "the record does not match the Avro schema at {}: {n} does not fit an `int` (32 bits); make it a `long`",
                place(at)
            ))
        }
        (AvroValue::Float(f), serde_json::Value::Number(n)) if f.is_infinite() => Err(format!(
            "the record does not match the Avro schema at {}: {n} is beyond a `float` (±3.4e38); make it a `double`",
            place(at)
        )),
        _ => Ok(()),
    }
}

fn place(at: &str) -> &str {
    if at.is_empty() {
        "the value"
    } else {
        at
    }
}

/// Encodes `v` as a datum of `schema`; with an id, in the Confluent wire format.
pub fn encode(schema: &Schema, id: Option<u32>, v: &Value) -> Result<Vec<u8>, String> {
    let avro = resolve(schema, v)?;
    let datum = apache_avro::to_avro_datum(schema, avro)
        .map_err(|e| format!("cannot encode the record as Avro: {e}"))?;
    Ok(match id {
        None => datum,
        Some(id) => {
            let mut out = Vec::with_capacity(5 + datum.len());
            out.push(MAGIC);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&datum);
            out
        }
    })
}

/// Decodes one datum of `schema` (all of `bytes`).
pub fn decode(schema: &Schema, mut bytes: &[u8]) -> Result<Value, String> {
    let avro = apache_avro::from_avro_datum(schema, &mut bytes, None)
        .map_err(|e| format!("not an Avro datum of the schema: {e}"))?;
    if !bytes.is_empty() {
        return Err(format!(
            "not an Avro datum of the schema: {} bytes left over after the datum",
            bytes.len()
        ));
    }
    let json = serde_json::Value::try_from(avro)
        .map_err(|e| format!("an Avro value has no JSON form: {e}"))?;
    Ok(Value::from_json(&json))
}

/// Splits a Confluent wire-format message into its schema id and datum.
pub fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [] => Err("empty value: not in the Confluent Avro wire format".into()),
        [first, ..] if *first != MAGIC => Err(format!(
            "not in the Confluent Avro wire format: the first byte is {first}, not 0"
        )),
        _ => Err("not in the Confluent Avro wire format: shorter than its 5-byte header".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"Stock","fields":[
        {"name":"ticker","type":"string"},
        {"name":"close","type":"double"},
        {"name":"volume","type":"long"},
        {"name":"note","type":["null","string"],"default":null}]}"#;

    fn stock() -> Value {
        Value::from_json(
            &serde_json::json!({"ticker":"BBCA","close":9125.5,"volume":120,"extra":1}),
        )
    }

    #[test]
    fn round_trips_through_the_wire_format() {
        let schema = parse_schema(SCHEMA).unwrap();
        let bytes = encode(&schema, Some(7), &stock()).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        let (id, datum) = split_wire(&bytes).unwrap();
        assert_eq!(id, 7);
        let back = decode(&schema, datum).unwrap();
        assert_eq!(
            back.to_json(),
            serde_json::json!({"ticker":"BBCA","close":9125.5,"volume":120,"note":null})
        );
    }

    #[test]
    fn mismatches_are_named() {
        let schema = parse_schema(SCHEMA).unwrap();
        let wrong = Value::from_json(&serde_json::json!({"ticker": 5}));
        assert!(encode(&schema, None, &wrong)
            .unwrap_err()
            .contains("does not match"));
        assert!(decode(&schema, &[1, 2])
            .unwrap_err()
            .contains("not an Avro datum"));
        assert!(split_wire(&[9, 0, 0, 0, 1])
            .unwrap_err()
            .contains("first byte is 9"));
        assert!(split_wire(&[0, 0]).unwrap_err().contains("shorter"));
        assert!(parse_schema("{")
            .unwrap_err()
            .contains("not a valid Avro schema"));
    }

    /// apache-avro truncates a long into an `int` (2⁴⁰ became 0) and rounds a double
    /// past a `float`'s range to infinity, which no reader can turn back into JSON.
    #[test]
    fn numbers_that_do_not_fit_are_refused_where_they_are() {
        let schema = parse_schema(
            r#"{"type":"record","name":"R","fields":[
            {"name":"i","type":"int"},
            {"name":"f","type":"float"},
            {"name":"deep","type":{"type":"array","items":["null","int"]}}]}"#,
        )
        .unwrap();
        let value = |json| Value::from_json(&json);
        let fits =
            value(serde_json::json!({"i": -2147483648, "f": 3.0e38, "deep": [null, 2147483647]}));
        assert!(resolve(&schema, &fits).is_ok());
        for (json, place, why) in [
            (
                serde_json::json!({"i": 1099511627776_i64, "f": 1.0, "deep": []}),
                "at /i:",
                "does not fit an `int`",
            ),
            (
                serde_json::json!({"i": 1, "f": 1e300, "deep": []}),
                "at /f:",
                "beyond a `float`",
            ),
            (
                serde_json::json!({"i": 1, "f": 1.0, "deep": [1, 2147483648_i64]}),
                "at /deep/1:",
                "does not fit an `int`",
            ),
            (
                serde_json::json!({"i": 2.5, "f": 1.0, "deep": []}),
                "at /i:",
                "Int expected",
            ),
            (
                serde_json::json!({"f": 1.0, "deep": []}),
                "at /i:",
                "missing",
            ),
        ] {
            let e = resolve(&schema, &value(json.clone())).unwrap_err();
            assert!(e.contains(place) && e.contains(why), "{json}: {e}");
        }
    }
}
