//! JSON text → [`Value`], with a fast path for the common record shape.
//!
//! Most event streams are flat JSON objects of strings and numbers. For those, a
//! direct scan is about three times faster than going through serde's visitor
//! machinery (see the README's benchmark). Anything else — nesting, escapes, unusual
//! numbers, any syntax error — is handed to `serde_json`, which gives the result and
//! the error messages. A test checks that both paths agree.

pub use crate::json_out::write;

use compact_str::CompactString;

use crate::value::{Object, Value};

/// Parses one JSON document.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    match parse_flat_object(text.as_bytes()) {
        Some(v) => Ok(v),
        None => serde_json::from_str(text),
    }
}

/// Parses one JSON document from bytes not yet known to be UTF-8: the fast path checks
/// only the strings that hold non-ASCII bytes, `serde_json` everything else (its error
/// names the position of a byte that is not UTF-8).
pub fn parse_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    match parse_flat_object(bytes) {
        Some(v) => Ok(v),
        None => serde_json::from_slice(bytes),
    }
}

/// The fast path: a flat object with plain strings, numbers, booleans and nulls.
/// `None` means "not that shape": the caller falls back to the full parser.
pub fn parse_flat_object(bytes: &[u8]) -> Option<Value> {
    parse_flat_fields(bytes).map(Value::Object)
}

/// The fields of [`parse_flat_object`], which wraps them: a `Value` built at the end of
/// this loop came back in pieces read by wider loads (`perf annotate`).
fn parse_flat_fields(bytes: &[u8]) -> Option<Object> {
    let mut p = Scanner { b: bytes, i: 0 };
    p.ws();
    p.expect(b'{')?;
    let mut o = Object::with_capacity(8);
    p.ws();
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        let mut seen: u64 = 0; // a bit per (length, first letter) of the names so far
        loop {
            p.ws();
            let key = p.string()?;
            // Names told apart by length and first letter; only a name that shares
            // both with an earlier one is looked up (`id` and `ts` share a length).
            let first = key.as_bytes().first().map_or(0, |&b| usize::from(b));
            let bit = 1u64 << ((key.len() + 8 * first) % 64);
            let key = p.compact(key);
            p.ws();
            p.expect(b':')?;
            p.ws();
            if seen & bit != 0 {
                // Maybe a duplicate (rare): parsed aside, then the last wins, as in
                // serde_json.
                let mut aside = Vec::with_capacity(1);
                p.push_field(&mut aside, key)?;
                let (key, value) = aside.pop()?;
                o.insert(key, value);
            } else {
                seen |= bit;
                p.push_field(o.fields_mut(), key)?;
            }
            p.ws();
            match p.peek()? {
                b',' => p.i += 1,
                b'}' => {
                    p.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    p.ws();
    (p.i == p.b.len()).then_some(o)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is a quote, a backslash, a control
/// character or not ASCII. Exact up to the first such byte (the SWAR tests' borrows
/// only run towards higher bytes), which is all the scan needs.
fn special_bytes(word: u64) -> u64 {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control | (word & HIGH)
}

/// Bytes of a `CompactString`, the longest string it holds inline.
#[cfg(all(target_endian = "little", target_pointer_width = "64"))]
const INLINE: usize = std::mem::size_of::<CompactString>();

/// The inline `CompactString` of the first `len` (< [`INLINE`]) bytes of `window`,
/// which are UTF-8: compact_str 0.8's inline form is the text, zero bytes, and
/// `0xC0 | len` in the last byte (`repr/inline.rs`; a test compares every length with
/// `CompactString::new`, so a change of form fails it).
#[cfg(all(target_endian = "little", target_pointer_width = "64"))]
#[inline(always)]
fn inline_compact(window: &[u8], len: usize) -> CompactString {
    debug_assert!(window.len() == INLINE && len < INLINE);
    let word = |k: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&window[8 * k..8 * k + 8]);
        let w = u64::from_le_bytes(bytes);
        let kept = len.saturating_sub(8 * k).min(8);
        if kept == 8 {
            w
        } else {
            w & ((1u64 << (8 * kept)) - 1)
        }
    };
    let words = [word(0), word(1), word(2) | ((0xC0 | len as u64) << 56)];
    // SAFETY: `CompactString` is 24 bytes (the const assertion below), and `words` in
    // memory are the inline form described above of `len` bytes that are UTF-8
    // (`compact`'s caller holds them as a `&str`), a valid value of the type.
    #[allow(unsafe_code)]
    unsafe {
        std::mem::transmute::<[u64; 3], CompactString>(words)
    }
}

#[cfg(all(target_endian = "little", target_pointer_width = "64"))]
const _: () = assert!(INLINE == 24);

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.b[self.i..]
            .starts_with(word.as_bytes())
            .then(|| self.i += word.len())
    }

    /// A string without escapes or control characters (else: fall back). Scanned a
    /// word at a time: field names and values are short, and a general search's setup
    /// costs more than the scan. A string with non-ASCII bytes is checked as UTF-8
    /// (the fallback reports where it is not).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let mut end = start;
        let mut ascii = true;
        while let Some(word) = self.b.get(end..end + 8) {
            let special = special_bytes(u64::from_le_bytes(word.try_into().ok()?));
            if special == 0 {
                end += 8;
                continue;
            }
            end += (special.trailing_zeros() / 8) as usize;
            if self.b[end] < 0x80 {
                break;
            }
            ascii = false;
            end += 1;
        }
        // The last few bytes of the text, one at a time.
        while let Some(&c) = self.b.get(end) {
            match c {
                b'"' | b'\\' | 0..=0x1f => break,
                0x80.. => ascii = false,
                _ => {}
            }
            end += 1;
        }
        if self.b.get(end) != Some(&b'"') {
            return None; // an escape, a control character or no end
        }
        let bytes = &self.b[start..end];
        let s = if ascii {
            debug_assert!(bytes.is_ascii());
            // SAFETY: every byte of `bytes` was seen above with its high bit clear
            // (the word scan stops at the first byte >= 0x80 and clears `ascii`, the
            // byte loop clears it for any such byte), and ASCII is valid UTF-8. The
            // library check costs more than the whole scan on strings this short.
            #[allow(unsafe_code)]
            unsafe {
                std::str::from_utf8_unchecked(bytes)
            }
        } else {
            std::str::from_utf8(bytes).ok()?
        };
        self.i = end + 1;
        Some(s)
    }

    /// `s` (a string of this scanner's input) as a `CompactString`. A short one is
    /// built from three word loads of the input: `CompactString::new` copies it byte by
    /// byte into its inline buffer and reads it back by words, and those reads waiting
    /// for the byte stores were the parser's largest cost (`perf annotate`).
    #[inline(always)]
    fn compact(&self, s: &str) -> CompactString {
        #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
        {
            let start = s.as_ptr() as usize - self.b.as_ptr() as usize;
            if let Some(window) = self.b.get(start..start + INLINE) {
                if s.len() < INLINE {
                    return inline_compact(window, s.len());
                }
            }
        }
        CompactString::new(s)
    }

    /// Parses the scalar at the cursor and appends it to `fields` under `key`, each
    /// kind of value written straight into the vector's next slot. Built as a
    /// `(name, value)` pair and pushed, the pair went through the stack in pieces and
    /// was read back by wider loads that waited for those stores: 40 % of the parser's
    /// samples (`perf annotate`). On `None` nothing is appended (and `key` dropped).
    #[inline(always)]
    fn push_field(
        &mut self,
        fields: &mut Vec<(CompactString, Value)>,
        key: CompactString,
    ) -> Option<()> {
        fields.reserve(1);
        let slot = fields.spare_capacity_mut().first_mut()?.as_mut_ptr();
        // SAFETY: `slot` points at the vector's first spare element (reserved above),
        // valid for writes and untouched by the parsing below (which borrows only the
        // scanner). The value, then the name, are written there whole, each exactly
        // once, and only then is the length raised over them; an early return leaves
        // the slot unwritten and the length as it was.
        #[allow(unsafe_code)]
        unsafe {
            let value = std::ptr::addr_of_mut!((*slot).1);
            match self.peek()? {
                b'"' => {
                    let s = self.string()?;
                    value.write(Value::Str(self.compact(s)));
                }
                b't' => {
                    self.literal("true")?;
                    value.write(Value::Bool(true));
                }
                b'f' => {
                    self.literal("false")?;
                    value.write(Value::Bool(false));
                }
                b'n' => {
                    self.literal("null")?;
                    value.write(Value::Null);
                }
                b'-' | b'0'..=b'9' => match self.number()? {
                    Number::Int(n) => value.write(Value::Int(n)),
                    Number::Float(f) => value.write(Value::Float(f)),
                },
                _ => return None, // nested object or array
            }
            std::ptr::addr_of_mut!((*slot).0).write(key);
            fields.set_len(fields.len() + 1);
        }
        Some(())
    }

    /// A number in strict JSON grammar; ints that fit i64, finite floats.
    fn number(&mut self) -> Option<Number> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let (int_len, int_value) = match self.peek()? {
            b'0' => {
                self.i += 1;
                (1, 0)
            }
            b'1'..=b'9' => self.digit_run(),
            _ => return None,
        };
        let mut fraction = (0, 0);
        if self.peek() == Some(b'.') {
            self.i += 1;
            fraction = self.digit_run();
            if fraction.0 == 0 {
                return None;
            }
        }
        let mut exponent = false;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digit_run().0 == 0 {
                return None;
            }
            exponent = true;
        }
        let (frac_len, frac_value) = fraction;
        if frac_len == 0 && !exponent {
            // "-0" and integers of 19 digits or more take serde_json's own path.
            if int_len > 18 || (negative && int_len == 1 && int_value == 0) {
                return None;
            }
            let n = int_value as i64; // at most 18 digits: fits
            return Some(Number::Int(if negative { -n } else { n }));
        }
        if !exponent && int_len + frac_len <= 15 {
            // Up to 15 digits the mantissa is exact in an f64 and so is the power of
            // ten: one division, which IEEE rounds correctly (Clinger's fast path).
            let m = int_value * POW10[frac_len] as u64 + frac_value;
            let f = m as f64 / POW10[frac_len];
            return Some(Number::Float(if negative { -f } else { f }));
        }
        // Rust's float parsing is correctly rounded, as serde_json's float_roundtrip.
        std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Float)
    }

    /// Consumes a run of ASCII digits: how many, and their value (which wraps past 19
    /// digits, where callers do not use it). Eight at a time where the input has them
    /// (a timestamp in milliseconds has 13 digits), as fast_float does.
    fn digit_run(&mut self) -> (usize, u64) {
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            let word = u64::from_le_bytes(bytes);
            if !eight_digits(word) {
                break;
            }
            value = value
                .wrapping_mul(100_000_000)
                .wrapping_add(eight_digits_value(word));
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            self.i += 1;
        }
        (self.i - start, value)
    }
}

/// Whether all eight bytes of `word` are ASCII digits (fast_float's `is_8digits`: a
/// byte above `'9'` sets its high bit in the sum, one below `'0'` in the difference).
fn eight_digits(word: u64) -> bool {
    let above = word.wrapping_add(0x4646_4646_4646_4646);
    let below = word.wrapping_sub(0x3030_3030_3030_3030);
    (above | below) & HIGH == 0
}

/// The value of eight ASCII digits loaded little-endian (the first digit in the low
/// byte): pairs, then fours, then the eight, by multiplications (fast_float's
/// `parse_eight_digits_unrolled`).
fn eight_digits_value(word: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = word.wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32
}

/// A parsed number, small enough to come back in registers (a `Value` comes back
/// through memory, in pieces).
enum Number {
    Int(i64),
    Float(f64),
}

/// Powers of ten exact in an f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Short strings built from word loads are the very `CompactString`s
    /// `CompactString::new` builds, at every length and with the input going on after
    /// them; a change in compact_str's inline form fails here.
    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    #[test]
    fn inline_strings_equal_compact_str_new() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789éxyzxyz";
        for start in 0..8 {
            for len in 0..INLINE {
                let s = &text[start..start + len];
                let window = &text.as_bytes()[start..start + INLINE];
                let built = inline_compact(window, len);
                let want = CompactString::new(s);
                assert_eq!(built, want);
                assert_eq!(built.as_str(), s);
                assert_eq!(built.len(), len);
                assert!(!built.is_heap_allocated());
                let (mut a, mut b) = (built.clone(), want.clone());
                a.push_str("-more text past the inline size");
                b.push_str("-more text past the inline size");
                assert_eq!(a, b);
            }
        }
        // Through the parser: names and values of every length, at the line's end too.
        for len in 0..40 {
            let word: String = "é".chars().chain('a'..='z').cycle().take(len).collect();
            let doc = format!("{{\"{word}\":\"{word}\"}}");
            let v = parse_slice(doc.as_bytes()).unwrap();
            let want: Value = serde_json::from_str(&doc).unwrap();
            assert_eq!(v, want, "{doc}");
        }
    }

    /// Deterministic pseudo-random generator for the differential test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    const KEYS: &[&str] = &[
        "a",
        "bb",
        "hostname",
        "cpu",
        "x y",
        "ünï",
        "a\\\"q",
        "a",
        "\\u0041",
        "very_long_field_name_over_24_bytes",
        // Same length, first letters that share a bit of the duplicate check or not.
        "id",
        "ts",
        "ix",
        "ab",
    ];
    const VALUES: &[&str] = &[
        "0",
        "-0",
        "1",
        "-17",
        "42.5",
        "-0.001",
        "1e3",
        "2.5E-3",
        "1E+2",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "01",
        "1.",
        ".5",
        "-",
        "+1",
        "true",
        "false",
        "null",
        "tru",
        "\"\"",
        "\"doc\"",
        "\"ünïcödé\"",
        "\"tab\\there\"",
        "\"q\\\"\"",
        "\"\\u00e9\"",
        "[1,2]",
        "{\"n\":1}",
        "\"a\u{1}b\"",
        "NaN",
        "123456789.123456789e-5",
    ];
    const SPACES: &[&str] = &["", " ", "\t", "\r\n"];

    fn random_doc(rng: &mut Rng) -> String {
        let n = rng.next() % 6;
        let mut s = String::from(rng.pick(SPACES));
        s.push('{');
        for i in 0..n {
            if i > 0 {
                s.push_str(rng.pick(&[",", " , ", ",,", ""]));
            }
            s.push_str(rng.pick(SPACES));
            s.push_str(&format!("\"{}\"", rng.pick(KEYS)));
            s.push_str(rng.pick(&[":", " : ", ""]));
            s.push_str(rng.pick(VALUES));
        }
        s.push_str(rng.pick(&["}", " }", "", "}x", "} "]));
        s
    }

    /// Checks a document against serde_json: the fast path, when it takes it, gives
    /// serde_json's value; `parse_slice` gives its value or its error. Whether the
    /// fast path took it.
    fn agrees_with_serde_json(doc: &[u8]) -> bool {
        let reference: Result<Value, _> = serde_json::from_slice(doc);
        let fast = parse_flat_object(doc);
        if let Some(v) = &fast {
            assert_eq!(Some(v), reference.as_ref().ok(), "fast path on {doc:?}");
        }
        match (parse_slice(doc), reference) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{doc:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("{doc:?}: {a:?} vs {b:?}"),
        }
        fast.is_some()
    }

    #[test]
    fn fast_path_agrees_with_serde_json() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut fast = 0;
        for _ in 0..200_000 {
            let doc = random_doc(&mut rng);
            fast += usize::from(agrees_with_serde_json(doc.as_bytes()));
            // The &str entry point gives the same.
            assert_eq!(
                parse(&doc).ok(),
                parse_slice(doc.as_bytes()).ok(),
                "{doc:?}"
            );
        }
        assert!(
            fast > 20_000,
            "the fast path must cover the common shapes ({fast})"
        );
    }

    #[test]
    fn eight_digits_at_once_equal_one_at_a_time() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                *b = b'0' + (rng.next() % 10) as u8;
            }
            let word = u64::from_le_bytes(bytes);
            assert!(eight_digits(word), "{bytes:?}");
            let want = bytes.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            assert_eq!(eight_digits_value(word), want, "{bytes:?}");
            // Any byte that is not a digit, at any position, fails the check.
            for at in 0..8 {
                for other in (0..=255u8).filter(|c| !c.is_ascii_digit()) {
                    let mut broken = bytes;
                    broken[at] = other;
                    assert!(!eight_digits(u64::from_le_bytes(broken)), "{broken:?}");
                }
            }
        }
    }

    /// Decimals of up to 15 digits are divided out on the fast path; every one must
    /// be the float serde_json (correctly rounded) reads.
    #[test]
    fn fast_decimals_equal_serde_json() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut floats = 0;
        for _ in 0..200_000 {
            // Past 15 digits floats, past 18 integers take the general path.
            let digits = 1 + (rng.next() % 20) as usize;
            let point = (rng.next() % digits as u64) as usize;
            let mut text = String::new();
            if rng.next().is_multiple_of(3) {
                text.push('-');
            }
            for i in 0..digits {
                if i == point + 1 {
                    text.push('.');
                }
                let d = (rng.next() % 10) as u8;
                // No leading zero before more integral digits (invalid JSON).
                let d = if i == 0 && point > 0 && d == 0 { 7 } else { d };
                text.push(char::from(b'0' + d));
            }
            let doc = format!(r#"{{"v":{text}}}"#);
            let want: serde_json::Value = match serde_json::from_str::<serde_json::Value>(&doc) {
                // Past i64 a record holds the integer as a float (no u64 in `Value`).
                Ok(v) if v["v"].is_u64() && !v["v"].is_i64() => continue,
                Ok(v) => v,
                Err(_) => continue,
            };
            let got = parse_slice(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(got.to_json(), want, "{doc}");
            if let (Some(Value::Float(a)), Some(b)) =
                (got.as_object().and_then(|o| o.get("v")), want["v"].as_f64())
            {
                assert_eq!(a.to_bits(), b.to_bits(), "{doc}");
                floats += 1;
            }
        }
        assert!(floats > 100_000, "too few decimals tried ({floats})");
    }

    /// Strings of every length around the scan's word size, made of ASCII, valid and
    /// broken UTF-8, control bytes, quotes and escapes: the fast path accepts exactly
    /// what serde_json accepts, with the same text.
    #[test]
    fn string_bytes_agree_with_serde_json() {
        const PIECES: &[&[u8]] = &[
            b"a",
            b"Z",
            b"0",
            b" ",
            b"~",
            b"\xc3\xa9",
            b"\xe6\x9d\xb1",
            b"\xf0\x9f\x98\x80",
            b"\xe9",
            b"\xc3",
            b"\x80",
            b"\xff",
            b"\x01",
            b"\x1f",
            b"\x7f",
            b"\\n",
            b"\\\"",
        ];
        let mut rng = Rng(0xA076_1D64_78BD_642F);
        let mut fast = 0;
        for _ in 0..100_000 {
            let mut doc = b"{\"k\":\"".to_vec();
            let len = rng.next() % 20;
            for _ in 0..len {
                // Mostly ASCII, as real text is.
                let piece = if rng.next().is_multiple_of(4) {
                    PIECES[(rng.next() % PIECES.len() as u64) as usize]
                } else {
                    PIECES[(rng.next() % 5) as usize]
                };
                doc.extend_from_slice(piece);
            }
            doc.extend_from_slice(b"\"}");
            fast += usize::from(agrees_with_serde_json(&doc));
        }
        assert!(
            fast > 30_000,
            "the fast path must take most strings ({fast})"
        );
    }

    #[test]
    fn strings_with_non_ascii_or_bad_bytes() {
        let v = parse_slice("{\"h\":\"grüße aus köln, 東京\",\"k\":1}".as_bytes()).unwrap();
        assert_eq!(
            v.as_object()
                .and_then(|o| o.get("h"))
                .and_then(Value::as_str),
            Some("grüße aus köln, 東京")
        );
        // Not UTF-8: the fallback names the place.
        let err = parse_slice(b"{\"h\":\"caf\xe9 au lait\"}").unwrap_err();
        assert!(err.to_string().contains("column"), "{err}");
        assert!(parse_flat_object(b"{\"h\":\"caf\xe9 au lait\"}").is_none());
        // A control character or an escape past the first word leaves the fast path.
        assert!(parse_flat_object(b"{\"h\":\"0123456789\x01\"}").is_none());
        assert!(parse_flat_object(b"{\"h\":\"0123456789\\n\"}").is_none());
        assert!(parse_flat_object(b"{\"h\":\"0123456789abcdefg").is_none());
    }

    #[test]
    fn typical_records_take_the_fast_path() {
        let v = parse_flat_object(
            br#"{"hostname":"dopey","cpu":"cpu4","usage":90.51,"occurred_at":1700000000000}"#,
        );
        assert!(v.is_some());
        assert!(parse_flat_object(br#"{"a":{"b":1}}"#).is_none());
        assert!(parse(r#"{"a":{"b":1}}"#).is_ok());
    }
}
