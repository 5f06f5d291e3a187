//! YAML text → [`ConfigNode`] tree with positions, with `${env:…}` / `${file:…}`
//! interpolation applied to scalars (so positions stay those of the written text).

use std::sync::Arc;

use connectd_sdk::config::{ConfigErrors, ConfigKey, ConfigNode, ConfigValue, Span};
use marked_yaml::{LoadError, LoaderOptions, Node};

use super::interpolate::interpolate;

fn span(file: &Arc<str>, s: &marked_yaml::Span) -> Span {
    let (line, column) = s.start().map_or((1, 1), |m| (m.line(), m.column()));
    Span {
        file: file.clone(),
        line,
        column,
    }
}

/// Parses a file's text; on a syntax error returns it as a single config error.
/// Whether `${env:}` and `${file:}` are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Pipeline files: written by the operator, read with the worker's rights.
    Expand,
    /// Bodies of API requests: expanding them would let any caller read the worker's
    /// files and environment, so a `${` is refused with an error instead.
    Refuse,
    /// `${...}` stays as written: the file as an editor sees it.
    Keep,
}

pub fn parse(file: &Arc<str>, text: &str, errors: &ConfigErrors) -> Option<ConfigNode> {
    parse_with(file, text, errors, Interpolation::Expand)
}

pub fn parse_with(
    file: &Arc<str>,
    text: &str,
    errors: &ConfigErrors,
    interpolation: Interpolation,
) -> Option<ConfigNode> {
    // Without `prevent_coercion`, marked-yaml says every scalar "may coerce", so a
    // quoted "null" or "" read as null and a quoted "007" as the number 7.
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => Some(convert(file, &node, errors, "", interpolation)),
        Err(e) => {
            let (marker, message) = match &e {
                LoadError::TopLevelMustBeMapping(m) => (
                    Some(*m),
                    "the top level of a pipeline file must be a mapping".to_string(),
                ),
                LoadError::UnexpectedAnchor(m) => {
                    (Some(*m), "YAML anchors are not supported".to_string())
                }
                LoadError::MappingKeyMustBeScalar(m) => {
                    (Some(*m), "mapping keys must be plain names".to_string())
                }
                LoadError::UnexpectedTag(m) => {
                    (Some(*m), "YAML tags are not supported".to_string())
                }
                LoadError::ScanError(m, scan) => {
                    (Some(*m), format!("YAML syntax error: {}", scan.info()))
                }
                LoadError::DuplicateKey(inner) => (
                    inner.key.span().start().copied(),
                    format!("duplicate key `{}`", inner.key.as_str()),
                ),
                other => (None, format!("YAML error: {other}")),
            };
            let span = marker.map_or(
                Span {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                },
                |m| Span {
                    file: file.clone(),
                    line: m.line(),
                    column: m.column(),
                },
            );
            errors.push(&span, "", message);
            None
        }
    }
}

fn convert(
    file: &Arc<str>,
    node: &Node,
    errors: &ConfigErrors,
    path: &str,
    interpolation: Interpolation,
) -> ConfigNode {
    match node {
        Node::Scalar(s) => {
            let sp = span(file, s.span());
            let text = s.as_str();
            if matches!(text, "" | "~" | "null") && s.may_coerce() {
                return ConfigNode {
                    value: ConfigValue::Null,
                    span: sp,
                    secret: false,
                    raw: None,
                    quoted: false,
                };
            }
            if interpolation == Interpolation::Refuse && text.contains("${") {
                errors.push(
                    &sp,
                    path,
                    "`${...}` is not expanded in a request: the API never reads the worker's files or environment for a caller. Write the value itself, or check the pipeline file on the worker with `connectd validate --config FILE`",
                );
                return ConfigNode {
                    value: ConfigValue::Scalar(String::new()),
                    span: sp,
                    secret: true,
                    raw: None,
                    quoted: false,
                };
            }
            if interpolation == Interpolation::Keep {
                return ConfigNode {
                    value: ConfigValue::Scalar(text.to_string()),
                    span: sp,
                    secret: false,
                    raw: None,
                    quoted: !s.may_coerce(),
                };
            }
            match interpolate(text) {
                Ok((value, secret)) => ConfigNode {
                    value: ConfigValue::Scalar({
                        if secret {
                            errors.add_secret(&value);
                        }
                        value
                    }),
                    span: sp,
                    secret,
                    raw: secret.then(|| text.to_string()),
                    quoted: !s.may_coerce(),
                },
                Err(message) => {
                    errors.push(&sp, path, message);
                    ConfigNode {
                        value: ConfigValue::Scalar(String::new()),
                        span: sp,
                        secret: true,
                        raw: None,
                        quoted: false,
                    }
                }
            }
        }
        Node::Sequence(seq) => ConfigNode {
            value: ConfigValue::List(
                seq.iter()
                    .enumerate()
                    .map(|(i, n)| convert(file, n, errors, &format!("{path}[{i}]"), interpolation))
                    .collect(),
            ),
            span: span(file, seq.span()),
            secret: false,
            raw: None,
            quoted: false,
        },
        Node::Mapping(map) => ConfigNode {
            value: ConfigValue::Map(
                map.iter()
                    .map(|(k, v)| {
                        let child = if path.is_empty() {
                            k.as_str().to_string()
                        } else {
                            format!("{path}.{}", k.as_str())
                        };
                        (
                            ConfigKey {
                                name: k.as_str().to_string(),
                                span: span(file, k.span()),
                            },
                            convert(file, v, errors, &child, interpolation),
                        )
                    })
                    .collect(),
            ),
            span: span(file, map.span()),
            secret: false,
            raw: None,
            quoted: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A free-form block (a plugin's `config`, an inline schema) types its scalars the
    /// way they are written: quoted text stays text. marked-yaml coerced every scalar, so
    /// `"null"` (an Avro union's first branch) read as null and `"007"` as 7.
    #[test]
    fn quoted_scalars_stay_text() {
        let text = r#"
config: {zip: "007", flag: 'true', none: "null", empty: "", n: 7, b: true, z: null, t: ~}
union: ["null", "string"]
block: |
  12
"#;
        let errors = ConfigErrors::default();
        let node = parse(&Arc::from("f.yaml"), text, &errors).unwrap();
        assert_eq!(
            node.to_json(),
            serde_json::json!({
                "config": {"zip": "007", "flag": "true", "none": "null", "empty": "",
                           "n": 7, "b": true, "z": null, "t": null},
                "union": ["null", "string"],
                "block": "12\n",
            })
        );
    }
}
