//! `${env:NAME}`, `${env:NAME:-default}` and `${file:PATH}` in config values.

/// Returns the expanded text and whether anything was substituted (such values are
/// treated as secrets: never logged or echoed in errors).
pub fn interpolate(text: &str) -> Result<(String, bool), String> {
    if !text.contains("${") {
        return Ok((text.to_string(), false));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut substituted = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
        let expr = &after[..end];
        out.push_str(&resolve(expr)?);
        substituted = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn resolve(expr: &str) -> Result<String, String> {
    if let Some(spec) = expr.strip_prefix("env:") {
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{env:{name}}}`: `{name}` is not a valid environment variable name"
            ));
        }
        return match (std::env::var(name), default) {
            (Ok(v), _) => Ok(v),
            (Err(_), Some(d)) => Ok(d.to_string()),
            (Err(_), None) => Err(format!(
                "environment variable `{name}` is not set (set it, or give a default: `${{env:{name}:-default}}`)"
            )),
        };
    }
    if let Some(path) = expr.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("`${{file:{path}}}`: cannot read: {e}"));
    }
    Err(format!("`${{{expr}}}`: unknown interpolation (use ${{env:NAME}}, ${{env:NAME:-default}} or ${{file:PATH}})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_and_defaults() {
        std::env::set_var("CONNECTD_TEST_SECRET", "s3cret");
        assert_eq!(interpolate("plain"), Ok(("plain".into(), false)));
        assert_eq!(
            interpolate("a-${env:CONNECTD_TEST_SECRET}-b"),
            Ok(("a-s3cret-b".into(), true))
        );
        assert_eq!(
            interpolate("${env:CONNECTD_SURELY_UNSET:-x}"),
            Ok(("x".into(), true))
        );
        assert!(interpolate("${env:CONNECTD_SURELY_UNSET}")
            .unwrap_err()
            .contains("not set"));
        assert!(interpolate("${vault:x}").is_err());
        assert!(interpolate("${env:X").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "hunter2\n").unwrap();
        assert_eq!(
            interpolate(&format!("${{file:{}}}", p.display())),
            Ok(("hunter2".into(), true))
        );
    }
}
