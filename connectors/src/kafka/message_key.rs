//! A Kafka message's key and header values as a record holds them: text, or JSON
//! when connectd writes it back as the same bytes.

use connectd_sdk::Value;

/// A key as JSON when it is a JSON number, boolean, array or object written as connectd
/// writes it back, else as text. A kafka sink writes the key it is given back as these
/// bytes, and the partition of a message follows its key's bytes: `{"id": 1}` (spaces),
/// `1e3` or `null` parsed would come out as `{"id":1}`, `1000.0` or no key at all, and
/// `"a"` (a JSON string) as `a`. Only text that can start JSON is parsed: a failed parse
/// builds an error, and most keys are plain text.
pub(crate) fn key_value(text: &str) -> Value {
    let json_start = |b: u8| b.is_ascii_digit() || b"{[-tf".contains(&b);
    let parsed = match text.bytes().next() {
        Some(b) if json_start(b) => connectd_sdk::json::parse(text).ok(),
        _ => None,
    };
    match parsed {
        Some(v) if !matches!(v, Value::Null | Value::Str(_)) && written(&v) == text.as_bytes() => v,
        _ => Value::str(text),
    }
}

fn written(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    connectd_sdk::json::write(v, &mut out);
    out
}

/// Text of a key or header value. A record holds text there, and the kafka sink writes
/// it back as its UTF-8 bytes: bytes that are not UTF-8 would come out changed (each
/// invalid sequence replaced), so they make the message a bad record instead.
pub(crate) fn utf8(bytes: &[u8], what: impl FnOnce() -> String) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 ({e}); connectd's records hold text keys and headers, so it would be changed on its way",
            what()
        )
    })
}

#[cfg(test)]
mod key_tests {
    use super::*;

    /// What a kafka sink writes for the key of a passed-through message is the bytes
    /// the message came with.
    #[test]
    fn a_key_passes_through_byte_for_byte() {
        for key in [
            "5",
            " 5",
            "1.0",
            "1.50",
            "1e3",
            "-0",
            "007",
            "12345678901234567890",
            "{\"id\": 1}",
            "{\"id\":1}",
            "[1, 2]",
            "[1,2]",
            "\"abc\"",
            "null",
            "true",
            "abc",
            "",
            "k-1",
            "tf",
            "{\"a\":{\"b\":[1,\"x\"]}}",
        ] {
            let v = key_value(key);
            assert_eq!(
                String::from_utf8(super::super::format::text_of(&v)).unwrap(),
                key,
                "{v:?}"
            );
        }
        // Compact JSON stays JSON, for plugins and `key_field`.
        assert!(matches!(key_value("{\"id\":1}"), Value::Object(_)));
        assert_eq!(key_value("42"), Value::Int(42));
    }
}
