//! A component's configuration as a tree that remembers where every value was written,
//! and a reader that collects every problem (with file, line, column and field path)
//! instead of stopping at the first.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod option_types;
mod typed;
pub use option_types::{
    scalar_text, scalar_text_list, scalar_text_map, HumanDuration, TextMap, Untyped,
};
pub use typed::{typed_node, ReadError};

/// Where a value stands in a config file (1-based line and column).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Clone, Debug)]
pub enum ConfigValue {
    /// Every YAML scalar, as written; typed accessors convert it.
    Scalar(String),
    Null,
    List(Vec<ConfigNode>),
    Map(Vec<(ConfigKey, ConfigNode)>),
}

#[derive(Clone, Debug)]
pub struct ConfigKey {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct ConfigNode {
    pub value: ConfigValue,
    pub span: Span,
    /// True when `${env:...}` / `${file:...}` contributed to it: never echoed back.
    pub secret: bool,
    /// For interpolated values, the text as written (`${env:GOAPI_KEY}`): safe to show,
    /// so errors can name the variable to fix.
    pub raw: Option<String>,
    /// Written in quotes (or as a block scalar): text, never a number, boolean or null,
    /// where a value's type is read from how it is written (free-form blocks such as a
    /// plugin's `config` or an inline schema). `"007"` stays the text 007.
    pub quoted: bool,
}

impl ConfigNode {
    /// A config tree from JSON, with no source positions: for configs built in code
    /// (tests, embedding). Scalars become text, as if written in YAML.
    pub fn from_json(v: &serde_json::Value) -> ConfigNode {
        let value = match v {
            serde_json::Value::Null => ConfigValue::Null,
            serde_json::Value::String(s) => ConfigValue::Scalar(s.clone()),
            serde_json::Value::Array(items) => {
                ConfigValue::List(items.iter().map(ConfigNode::from_json).collect())
            }
            serde_json::Value::Object(fields) => ConfigValue::Map(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let key = ConfigKey {
                            name: k.clone(),
                            span: Span::default(),
                        };
                        (key, ConfigNode::from_json(v))
                    })
                    .collect(),
            ),
            other => ConfigValue::Scalar(other.to_string()),
        };
        ConfigNode {
            value,
            span: Span::default(),
            secret: false,
            raw: None,
            quoted: v.is_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            ConfigValue::Scalar(_) => "a scalar",
            ConfigValue::Null => "nothing (null)",
            ConfigValue::List(_) => "a list",
            ConfigValue::Map(_) => "a mapping",
        }
    }

    /// The value as shown in an error message (redacted when interpolated).
    pub fn shown(&self) -> String {
        match (&self.value, self.secret) {
            (_, true) => "<redacted>".into(),
            (ConfigValue::Scalar(s), false) => format!("`{s}`"),
            _ => self.kind().into(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ConfigNode> {
        match &self.value {
            ConfigValue::Map(entries) => {
                entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Converts to JSON (scalars typed the way YAML 1.2's core schema types them), for
    /// free-form blocks such as a plugin's `config`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            ConfigValue::Null => serde_json::Value::Null,
            ConfigValue::Scalar(s) if self.quoted => serde_json::Value::String(s.clone()),
            ConfigValue::Scalar(s) => scalar_to_json(s),
            ConfigValue::List(items) => items.iter().map(|n| n.to_json()).collect(),
            ConfigValue::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn scalar_to_json(s: &str) -> serde_json::Value {
    match s {
        "true" => return serde_json::Value::Bool(true),
        "false" => return serde_json::Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = s.parse::<f64>() {
        if let Some(n) = serde_json::Number::from_f64(f) {
            return serde_json::Value::Number(n);
        }
    }
    serde_json::Value::String(s.to_string())
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub span: Span,
    /// Dotted path of the field, e.g. `transforms.cpu_5m.size`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.span, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.span, self.field, self.message)
        }
    }
}

/// Collects the problems of one file. Shared by all readers of that file.
///
/// Values that came from `${env:}`/`${file:}` are registered as secrets; every message
/// pushed has them replaced by `<redacted>`, whichever reader wrote it.
#[derive(Debug, Default)]
pub struct ConfigErrors {
    errors: RefCell<Vec<ConfigError>>,
    secrets: RefCell<Vec<String>>,
}

/// Secrets shorter than this are not redacted from messages: replacing every `a` or
/// `,` would make them unreadable, and so short a value reveals little.
pub const MIN_REDACTED_LEN: usize = 4;

impl ConfigErrors {
    pub fn push(&self, span: &Span, field: impl Into<String>, message: impl Into<String>) {
        let message = self.redact(message.into());
        self.errors.borrow_mut().push(ConfigError {
            span: span.clone(),
            field: field.into(),
            message,
        });
    }

    /// Registers an interpolated value: no message will show it.
    pub fn add_secret(&self, value: &str) {
        if value.len() >= MIN_REDACTED_LEN {
            self.secrets.borrow_mut().push(value.to_string());
        }
    }

    fn redact(&self, message: String) -> String {
        self.secrets
            .borrow()
            .iter()
            .fold(message, |m, s| m.replace(s.as_str(), "<redacted>"))
    }

    pub fn len(&self) -> usize {
        self.errors.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn take(&self) -> Vec<ConfigError> {
        std::mem::take(&mut self.errors.borrow_mut())
    }
}

/// Returned by a builder whose config had problems (they are in [`ConfigErrors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Reads the fields of one mapping. Every getter records a precise error on bad input
/// and returns a usable default, so a builder reads all its fields and every problem of
/// the file is reported at once; [`ConfigMap::finish`] then rejects unknown keys.
#[derive(Debug)]
pub struct ConfigMap<'a> {
    node: &'a ConfigNode,
    path: String,
    used: Vec<&'a str>,
    errors: &'a ConfigErrors,
    errors_at_start: usize,
}

impl<'a> ConfigMap<'a> {
    /// `node` must be a mapping; anything else is reported and read as empty.
    pub fn new(node: &'a ConfigNode, path: impl Into<String>, errors: &'a ConfigErrors) -> Self {
        let path = path.into();
        if !matches!(node.value, ConfigValue::Map(_) | ConfigValue::Null) {
            errors.push(
                &node.span,
                &path,
                format!("expected a mapping, found {}", node.kind()),
            );
        }
        Self {
            node,
            path,
            used: Vec::new(),
            errors_at_start: errors.len(),
            errors,
        }
    }

    pub fn span(&self) -> &Span {
        &self.node.span
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn errors(&self) -> &'a ConfigErrors {
        self.errors
    }

    /// The node of a key, marking the key as known.
    pub fn node(&mut self, key: &'a str) -> Option<&'a ConfigNode> {
        self.used.push(key);
        self.node
            .get(key)
            .filter(|n| !matches!(n.value, ConfigValue::Null))
    }

    pub fn has(&self, key: &str) -> bool {
        self.node.get(key).is_some()
    }

    /// Records a problem at a key, which may be a dotted path into nested mappings
    /// (`aggregates.m`); placed at the deepest node of it that is there.
    pub fn error(&self, key: &str, message: impl Into<String>) {
        let mut node = self.node;
        for part in key.split('.') {
            match node.get(part) {
                Some(n) => node = n,
                None => break,
            }
        }
        self.errors.push(&node.span, self.field_path(key), message);
    }

    /// Records a problem at a given node under a key.
    pub fn error_at(&self, node: &ConfigNode, key: &str, message: impl Into<String>) {
        self.errors.push(&node.span, self.field_path(key), message);
    }

    fn missing(&self, key: &str, expected: &str) {
        self.errors.push(
            &self.node.span,
            self.field_path(key),
            format!("missing required field (expected {expected})"),
        );
    }

    fn scalar(&mut self, key: &'a str, expected: &str) -> Option<(&'a str, &'a ConfigNode)> {
        let node = self.node(key)?;
        match &node.value {
            ConfigValue::Scalar(s) => Some((s.as_str(), node)),
            _ => {
                self.error_at(
                    node,
                    key,
                    format!("expected {expected}, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub fn opt_str(&mut self, key: &'a str) -> Option<String> {
        self.scalar(key, "a string").map(|(s, _)| s.to_string())
    }

    pub fn str(&mut self, key: &'a str) -> String {
        let v = self.opt_str(key);
        if v.is_none() && !self.has_non_null(key) {
            self.missing(key, "a string");
        }
        v.unwrap_or_default()
    }

    fn has_non_null(&self, key: &str) -> bool {
        self.node
            .get(key)
            .is_some_and(|n| !matches!(n.value, ConfigValue::Null))
    }

    fn parsed<T>(
        &mut self,
        key: &'a str,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (s, node) = self.scalar(key, expected)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(why) => {
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                };
                self.error_at(
                    node,
                    key,
                    format!("expected {expected}, found {}{why}", node.shown()),
                );
                None
            }
        }
    }

    pub fn opt_u64(&mut self, key: &'a str) -> Option<u64> {
        self.parsed(key, "a whole number ≥ 0", |s| {
            s.replace('_', "").parse::<u64>().map_err(|_| String::new())
        })
    }

    pub fn u64_or(&mut self, key: &'a str, default: u64) -> u64 {
        self.opt_u64(key).unwrap_or(default)
    }

    pub fn opt_i64(&mut self, key: &'a str) -> Option<i64> {
        self.parsed(key, "a whole number", |s| {
            s.replace('_', "").parse::<i64>().map_err(|_| String::new())
        })
    }

    pub fn opt_f64(&mut self, key: &'a str) -> Option<f64> {
        self.parsed(key, "a number", |s| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_default()
        })
    }

    pub fn f64_or(&mut self, key: &'a str, default: f64) -> f64 {
        self.opt_f64(key).unwrap_or(default)
    }

    pub fn bool_or(&mut self, key: &'a str, default: bool) -> bool {
        self.parsed(key, "true or false", |s| match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(String::new()),
        })
        .unwrap_or(default)
    }

    /// Durations like `250ms`, `5s`, `5m`, `1h`, `3d`.
    pub fn opt_duration(&mut self, key: &'a str) -> Option<Duration> {
        self.parsed(
            key,
            "a duration such as 250ms, 5s, 5m, 1h or 3d",
            parse_duration,
        )
    }

    pub fn duration_or(&mut self, key: &'a str, default: Duration) -> Duration {
        self.opt_duration(key).unwrap_or(default)
    }

    pub fn duration(&mut self, key: &'a str) -> Duration {
        let v = self.opt_duration(key);
        if v.is_none() && !self.has_non_null(key) {
            self.missing(key, "a duration such as 5s");
        }
        v.unwrap_or(Duration::from_secs(1))
    }

    /// One of a fixed set of words.
    pub fn one_of(
        &mut self,
        key: &'a str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let expected = format!("one of {}", choices.join(" | "));
        self.parsed(key, &expected, |s| {
            choices.iter().find(|c| **c == s).copied().ok_or_default()
        })
        .unwrap_or(default)
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub fn opt_str_list(&mut self, key: &'a str) -> Option<Vec<String>> {
        let node = self.node(key)?;
        match &node.value {
            ConfigValue::Scalar(s) => Some(vec![s.clone()]),
            ConfigValue::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match &item.value {
                        ConfigValue::Scalar(s) => out.push(s.clone()),
                        _ => self.errors.push(
                            &item.span,
                            format!("{}[{i}]", self.field_path(key)),
                            format!("expected a string, found {}", item.kind()),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                self.error_at(
                    node,
                    key,
                    format!("expected a list of strings, found {}", node.kind()),
                );
                None
            }
        }
    }

    pub fn str_list(&mut self, key: &'a str) -> Vec<String> {
        let v = self.opt_str_list(key);
        if v.is_none() && !self.has_non_null(key) {
            self.missing(key, "a list of strings");
        }
        v.unwrap_or_default()
    }

    /// A nested mapping, read with its own reader.
    pub fn opt_map(&mut self, key: &'a str) -> Option<ConfigMap<'a>> {
        let path = self.field_path(key);
        let node = self.node(key)?;
        Some(ConfigMap::new(node, path, self.errors))
    }

    /// The entries of a nested mapping as (key, node) pairs, for user-named entries
    /// such as `aggregates:` or `rename:`.
    pub fn opt_entries(&mut self, key: &'a str) -> Option<Vec<(&'a ConfigKey, &'a ConfigNode)>> {
        let node = self.node(key)?;
        match &node.value {
            ConfigValue::Map(entries) => Some(entries.iter().map(|(k, v)| (k, v)).collect()),
            _ => {
                self.error_at(
                    node,
                    key,
                    format!("expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A free-form block as JSON (e.g. a plugin's own config).
    pub fn opt_json(&mut self, key: &'a str) -> Option<serde_json::Value> {
        self.node(key).map(|n| n.to_json())
    }

    /// How a value was written when it came from interpolation (`${env:NAME}`), for
    /// error messages that must point at the variable without showing the secret.
    pub fn written_as(&self, key: &str) -> Option<String> {
        self.node.get(key).and_then(|n| n.raw.clone())
    }

    /// Marks keys as read without reading them (handled by the runtime, e.g. `inputs`).
    pub fn allow(&mut self, keys: &[&'a str]) {
        self.used.extend_from_slice(keys);
    }

    /// Reports unknown keys; fails when this mapping (or anything read through it) had
    /// a problem since the reader was made.
    pub fn finish(&self) -> Result<(), Invalid> {
        if let ConfigValue::Map(entries) = &self.node.value {
            for (k, _) in entries {
                if !self.used.contains(&k.name.as_str()) {
                    let mut known: Vec<&str> = self.used.clone();
                    known.sort_unstable();
                    known.dedup();
                    let hint = closest(&k.name, &known)
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    self.errors.push(
                        &k.span,
                        self.field_path(&k.name),
                        format!("unknown field (known fields: {}){hint}", known.join(", ")),
                    );
                }
            }
        }
        if self.errors.len() > self.errors_at_start {
            Err(Invalid)
        } else {
            Ok(())
        }
    }
}

trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}
impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

/// Parses `250ms`, `5s`, `5m`, `1h`, `3d` (and combinations such as `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses sizes like `64MiB`, `512KiB`, `1GB`, `1.5GiB`, `1000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    let too_large = || format!("`{s}` is too large");
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(too_large);
    }
    // A fraction (`1.5GiB`), as Kubernetes and Vector take sizes: whole bytes, down.
    match num.parse::<f64>() {
        Ok(x) if num.contains('.') && x.is_finite() => {
            let bytes = (x * mult as f64).floor();
            if bytes < u64::MAX as f64 {
                Ok(bytes as u64)
            } else {
                Err(too_large())
            }
        }
        _ => Err(format!("`{s}` does not start with a number")),
    }
}

/// The closest known word within a small edit distance, for "did you mean" hints.
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str, line: usize) -> ConfigNode {
        ConfigNode {
            value: ConfigValue::Scalar(s.into()),
            span: Span {
                file: "f.yaml".into(),
                line,
                column: 5,
            },
            secret: false,
            raw: None,
            quoted: false,
        }
    }

    fn map(entries: Vec<(&str, ConfigNode)>) -> ConfigNode {
        ConfigNode {
            value: ConfigValue::Map(
                entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        (
                            ConfigKey {
                                name: k.into(),
                                span: Span {
                                    file: "f.yaml".into(),
                                    line: i + 1,
                                    column: 1,
                                },
                            },
                            v,
                        )
                    })
                    .collect(),
            ),
            span: Span {
                file: "f.yaml".into(),
                line: 1,
                column: 1,
            },
            secret: false,
            raw: None,
            quoted: false,
        }
    }

    #[test]
    fn collects_every_error_with_positions() {
        let node = map(vec![("rate", scalar("fast", 1)), ("sise", scalar("5m", 2))]);
        let errors = ConfigErrors::default();
        let mut m = ConfigMap::new(&node, "sources.x", &errors);
        assert_eq!(m.u64_or("rate", 0), 0);
        let _ = m.duration("size");
        assert_eq!(m.finish(), Err(Invalid));
        let errs = errors.take();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].field, "sources.x.rate");
        assert_eq!(errs[0].span.line, 1);
        assert!(errs[1].message.contains("missing required field"));
        assert!(
            errs[2].message.contains("did you mean `size`"),
            "{}",
            errs[2]
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("64XB").is_err());
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5 KiB"), Ok(512));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert!(parse_size("1.2.3MiB").is_err());
        assert!(parse_size(".MiB").is_err());
        assert!(parse_size("-5MiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
