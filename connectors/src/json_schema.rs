//! `json_schema` / `json_schema_file`: an optional JSON Schema that every JSON record
//! value a source reads must match; a value that does not goes to the DLQ with the
//! places and reasons of the mismatch.

use std::sync::Arc;

use connectd_sdk::config::ConfigMap;
use connectd_sdk::Value;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many mismatches a DLQ reason lists.
const MAX_REPORTED: usize = 5;

pub struct JsonSchemaCheck {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JsonSchemaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSchemaCheck")
    }
}

/// The options of a source that checks its records against a JSON Schema.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct SchemaCheckOptions {
    /// A JSON Schema every record value must match (written inline, as YAML or JSON);
    /// a value that does not goes to the dead-letter queue with the reasons.
    #[serde(default)]
    pub json_schema: Option<serde_json::Value>,
    /// The same, read from a file (relative to the pipeline file's folder).
    #[serde(default)]
    pub json_schema_file: Option<String>,
}

/// Makes the check of `json_schema` or `json_schema_file`, if one is given.
pub fn read(cfg: &ConfigMap<'_>, o: SchemaCheckOptions) -> Option<Arc<JsonSchemaCheck>> {
    let (key, schema) = match (o.json_schema, o.json_schema_file) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            cfg.error(
                "json_schema_file",
                "give either `json_schema` or `json_schema_file`, not both",
            );
            return None;
        }
        (Some(inline), None) => ("json_schema", inline),
        (None, Some(path)) => {
            let full = crate::config_paths::beside_config(cfg, &path);
            let parsed = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read `{}`: {e}", full.display()))
                .and_then(|text| {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("`{}` is not JSON: {e}", full.display()))
                });
            match parsed {
                Ok(schema) => ("json_schema_file", schema),
                Err(e) => {
                    cfg.error("json_schema_file", e);
                    return None;
                }
            }
        }
    };
    match jsonschema::validator_for(&schema) {
        Ok(validator) => Some(Arc::new(JsonSchemaCheck { validator })),
        Err(e) => {
            cfg.error(key, format!("not a valid JSON Schema: {e}"));
            None
        }
    }
}

impl JsonSchemaCheck {
    /// Ok, or the mismatches: `at /price: "x" is not of type "number"; ...`.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        let json = v.to_json();
        let problems: Vec<String> = self
            .validator
            .iter_errors(&json)
            .take(MAX_REPORTED)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("at {}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the value does not match the JSON Schema: {}",
                problems.join("; ")
            ))
        }
    }
}
