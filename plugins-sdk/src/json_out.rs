//! [`Value`] → JSON text, straight into a byte buffer.
//!
//! The same text `serde_json` writes (a test checks), without going through serde's
//! serializer and `io::Write`: this runs once per record on the WASM plugin path.

use crate::value::Value;

/// Appends `v` as JSON to `out`. Non-finite floats, which JSON cannot hold, become
/// `null` (as with `serde_json`).
pub fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(*f).as_bytes())
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => write_str(s, out),
        Value::List(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(o) => {
            out.push(b'{');
            for (n, (k, v)) in o.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Which bytes a JSON string must escape, and how (`u`: as `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[b'\x08' as usize] = b'b';
    t[b'\t' as usize] = b't';
    t[b'\n' as usize] = b'n';
    t[b'\x0c' as usize] = b'f';
    t[b'\r' as usize] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| ESCAPE[b as usize] != 0) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    write_escaped(bytes, out);
}

#[cold]
fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        match e {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            e => out.extend_from_slice(&[b'\\', e]),
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(v: &Value) -> String {
        text(v)
    }

    fn text(v: &Value) -> String {
        let mut out = Vec::new();
        write(v, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let samples = [
            serde_json::json!(null),
            serde_json::json!({"hostname": "host-1", "cpu": "cpu3", "usage": 91.25, "n": -7, "ok": true, "z": null}),
            serde_json::json!({"s": "q\"uote\\ tab\t nl\n cr\r bell\u{7} del\u{7f} ünï 😀", "nested": {"list": [1, 2.5, "x", [], {}]}}),
            serde_json::json!([
                1.0,
                0.1,
                1e300,
                -0.0,
                123456789012345678i64,
                i64::MIN,
                f64::MAX
            ]),
            serde_json::json!(""),
        ];
        for s in samples {
            let v = Value::from_json(&s);
            assert_eq!(
                text(&v),
                serde_json::to_string(&v).unwrap_or_default(),
                "{s}"
            );
        }
        assert_eq!(text(&Value::Float(f64::NAN)), "null");
        assert_eq!(text(&Value::Float(f64::INFINITY)), "null");
    }

    #[test]
    fn escapes_every_special_byte_at_every_position() {
        // The word-at-a-time check must find a special byte wherever it sits.
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for len in 0..20 {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = special;
                    let s = String::from_utf8(text).unwrap_or_default();
                    let v = Value::str(s.as_str());
                    assert_eq!(text_of(&v), serde_json::to_string(&s).unwrap_or_default());
                }
            }
        }
        // Bytes of multi-byte UTF-8 (>= 0x80) are not mistaken for special ones.
        let s = "ünïcödé — ✓ 😀 ÿ\u{80}\u{7ff}";
        assert_eq!(
            text_of(&Value::str(s)),
            serde_json::to_string(s).unwrap_or_default()
        );
    }

    #[test]
    fn round_trips_through_the_parser() {
        let v = Value::from_json(
            &serde_json::json!({"a": 1, "b": 1.0, "c": "\u{1}\u{1f}", "d": [true, false]}),
        );
        let parsed = crate::json::parse(&text(&v)).ok();
        assert_eq!(parsed, Some(v));
    }
}
