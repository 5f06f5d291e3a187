//! Avro values on the wire: plain datums (with a schema from the config) and the
//! Confluent wire format (magic byte 0, the 4-byte big-endian schema id, the datum),
//! with schemas from a schema registry (`registry`).

pub mod config;
pub mod registry;

use apache_avro::Schema;
use connectd_sdk::Value;

/// The Confluent wire format's first byte.
const MAGIC: u8 = 0;

/// Parses a schema written in the config (JSON text), naming the problem.
pub fn parse_schema(text: &str) -> Result<Schema, String> {
    Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))
}

/// Encodes `v` as a datum of `schema`; with an id, in the Confluent wire format.
pub fn encode(schema: &Schema, id: Option<u32>, v: &Value) -> Result<Vec<u8>, String> {
    let avro = apache_avro::types::Value::from(v.to_json())
        .resolve(schema)
        .map_err(|e| format!("the record does not match the Avro schema: {e}"))?;
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
}
