//! The Avro settings of a connector: `schema` (inline, YAML or JSON) or `schema_file` (a path
//! relative to the pipeline file's folder), and `schema_registry: {url, subject}`.

use apache_avro::Schema;
use connectd_sdk::config::ConfigMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A schema as written and as parsed.
#[derive(Clone, Debug)]
pub struct GivenSchema {
    pub text: String,
    pub schema: Schema,
}

#[derive(Clone, Debug)]
pub struct RegistrySettings {
    pub url: String,
    /// The subject a sink registers under or reads the latest schema of.
    pub subject: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AvroSettings {
    pub schema: Option<GivenSchema>,
    pub registry: Option<RegistrySettings>,
}

/// Where an Avro schema is given: inline or in a file.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct SchemaOptions {
    /// The Avro schema, inline: written as YAML or JSON, or as JSON text in a string.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// The Avro schema in a file (relative to the pipeline file's folder).
    #[serde(default)]
    pub schema_file: Option<String>,
}

/// A Confluent-compatible schema registry.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryOptions {
    /// The registry's base URL.
    pub url: String,
    /// The subject a sink registers its schema under, or a source reads the latest of.
    #[serde(default)]
    pub subject: Option<String>,
}

/// Makes the Avro settings when `avro` (the connector's `format` is avro); otherwise
/// reports them as misplaced if present.
pub fn read(
    cfg: &ConfigMap<'_>,
    avro: bool,
    given: SchemaOptions,
    registry: Option<RegistryOptions>,
) -> Option<AvroSettings> {
    if !avro {
        let present = [
            ("schema", given.schema.is_some()),
            ("schema_file", given.schema_file.is_some()),
            ("schema_registry", registry.is_some()),
        ];
        for (key, _) in present.iter().filter(|(_, p)| *p) {
            cfg.error(key, "applies only with `format: avro`");
        }
        return None;
    }
    let schema = given_schema(cfg, given);
    let registry = registry.map(|r| RegistrySettings {
        url: r.url,
        subject: r.subject,
    });
    if registry.is_none() && schema.is_none() && !cfg.has("schema_registry") {
        cfg.error(
            "schema",
            "`format: avro` needs a schema: `schema` (inline, YAML or JSON), `schema_file`, or `schema_registry: {url: ...}`",
        );
    }
    Some(AvroSettings { schema, registry })
}

/// `schema` (inline, YAML or JSON) or `schema_file`, if either is given.
fn given_schema(cfg: &ConfigMap<'_>, given: SchemaOptions) -> Option<GivenSchema> {
    let text = match (given.schema, given.schema_file) {
        (Some(_), Some(_)) => {
            cfg.error(
                "schema_file",
                "give either `schema` or `schema_file`, not both",
            );
            None
        }
        (Some(inline), None) => Some(("schema", inline_schema_text(inline))),
        (None, Some(path)) => {
            match std::fs::read_to_string(crate::config_paths::beside_config(cfg, &path)) {
                Ok(text) => Some(("schema_file", text)),
                Err(e) => {
                    cfg.error("schema_file", format!("cannot read `{path}`: {e}"));
                    None
                }
            }
        }
        (None, None) => None,
    };
    text.and_then(|(key, text)| match super::parse_schema(&text) {
        Ok(schema) => Some(GivenSchema { text, schema }),
        Err(e) => {
            cfg.error(key, e);
            None
        }
    })
}

/// An inline schema's JSON text: a string is that text (`schema: '{"type": ...}'`, as
/// before YAML was taken), anything else the schema itself (a mapping, a list for a
/// union), as the `json_schema` option takes it.
fn inline_schema_text(inline: serde_json::Value) -> String {
    match inline {
        serde_json::Value::String(text) => text,
        schema => schema.to_string(),
    }
}

/// A schema that must be given (`schema` or `schema_file`): for Avro files.
pub fn read_schema(cfg: &ConfigMap<'_>, given: SchemaOptions) -> Option<GivenSchema> {
    let missing = given.schema.is_none() && given.schema_file.is_none();
    let schema = given_schema(cfg, given);
    if missing {
        cfg.error(
            "schema",
            "missing: the Avro schema, inline (`schema:` as YAML or JSON) or in a file (`schema_file`)",
        );
    }
    schema
}
