//! The `delimiter` setting the `csv` sink and the `file` source's `format: csv` share:
//! one ASCII character, or `\t` for a tab.

/// The default, `,`.
pub fn comma() -> String {
    ",".into()
}

/// The delimiter byte `text` names, or why it names none.
pub fn parse(text: &str) -> Result<u8, String> {
    match text.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ if text == "\\t" => Ok(b'\t'),
        _ => Err(format!("expected a single ASCII character, found `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_ascii_character_or_a_tab() {
        assert_eq!(super::parse(";"), Ok(b';'));
        assert_eq!(super::parse("\\t"), Ok(b'\t'));
        assert!(super::parse(";;").is_err() && super::parse("é").is_err());
    }
}
