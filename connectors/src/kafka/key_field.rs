//! `key_field`: a Kafka source told which field of the value its messages are keyed
//! by, so that its topics' partitions divide records by that field
//! (`state.per_partition` relies on it). Each message is checked: one keyed otherwise
//! came through a partition that says nothing about its key.

use connectd_sdk::{FieldPath, Value};

/// `key_field`: the message key must be the value of `field`, as text or as JSON, or
/// the partition the record came through says nothing about its key.
pub fn check(key: &Value, value: &Value, field: &FieldPath) -> Result<(), String> {
    let found = value.get_path(field);
    let same = |v: &Value| {
        v == key || {
            let (mut a, mut b) = (String::new(), String::new());
            v.push_text(&mut a);
            key.push_text(&mut b);
            // Or the field as JSON: a string key written as JSON (`"h1"`, as Kafka
            // Connect's JsonConverter writes one) is kept as that text.
            a == b || {
                let mut json = Vec::new();
                connectd_sdk::json::write(v, &mut json);
                json == b.as_bytes()
            }
        }
    };
    match found {
        Some(v) if same(v) => Ok(()),
        Some(v) => Err(format!(
            "its key `{key}` is not its `{field}` (`{v}`), and `key_field: {field}` says the topic is partitioned by it: the producer keyed it by something else"
        )),
        None => Err(format!(
            "it has no `{field}`, and `key_field: {field}` says the topic is partitioned by it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        connectd_sdk::json::parse(json).unwrap()
    }

    #[test]
    fn a_key_equal_to_the_field_as_text_or_json_passes() {
        let host = FieldPath::parse("host");
        check(&Value::str("h1"), &value(r#"{"host":"h1"}"#), &host).unwrap();
        // A numeric key parsed as JSON, and one kept as text.
        let id = FieldPath::parse("id");
        check(&Value::from(7), &value(r#"{"id":7}"#), &id).unwrap();
        check(&Value::str("7"), &value(r#"{"id":7}"#), &id).unwrap();
        // A string key written as JSON, with its quotes.
        check(&Value::str(r#""h1""#), &value(r#"{"host":"h1"}"#), &host).unwrap();
        let nested = FieldPath::parse("device.host");
        check(
            &Value::str("h"),
            &value(r#"{"device":{"host":"h"}}"#),
            &nested,
        )
        .unwrap();
    }

    #[test]
    fn another_key_or_a_missing_field_is_named_in_the_reason() {
        let host = FieldPath::parse("host");
        let e = check(&Value::str("h2"), &value(r#"{"host":"h1"}"#), &host).unwrap_err();
        assert!(e.contains("key `h2` is not its `host` (`h1`)"), "{e}");
        let e = check(&Value::str("h1"), &value(r#"{"cpu":1}"#), &host).unwrap_err();
        assert!(e.contains("has no `host`"), "{e}");
        let e = check(&Value::Null, &value(r#"{"host":"h1"}"#), &host).unwrap_err();
        assert!(e.contains("is not its `host`"), "{e}");
    }
}
