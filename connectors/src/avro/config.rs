//! The Avro settings of a connector: `schema` (inline JSON) or `schema_file` (a path
//! relative to the pipeline file's folder), and `schema_registry: {url, subject}`.

use apache_avro::Schema;
use connectd_sdk::config::ConfigMap;

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

/// Reads the Avro settings when `avro` (the connector's `format` is avro); otherwise
/// reports them as misplaced if present.
pub fn read(cfg: &mut ConfigMap<'_>, avro: bool) -> Option<AvroSettings> {
    const KEYS: [&str; 3] = ["schema", "schema_file", "schema_registry"];
    if !avro {
        for key in KEYS {
            if cfg.has(key) {
                cfg.allow(&[key]);
                cfg.error(key, "applies only with `format: avro`");
            }
        }
        return None;
    }
    let schema = given_schema(cfg);
    let registry = cfg.opt_map("schema_registry").and_then(|mut r| {
        let url = r.str("url");
        let subject = r.opt_str("subject");
        r.finish().ok()?;
        Some(RegistrySettings { url, subject })
    });
    if registry.is_none() && schema.is_none() && !cfg.has("schema_registry") {
        cfg.error(
            "schema",
            "`format: avro` needs a schema: `schema` (inline JSON), `schema_file`, or `schema_registry: {url: ...}`",
        );
    }
    Some(AvroSettings { schema, registry })
}

/// `schema` (inline JSON) or `schema_file`, if either is given.
fn given_schema(cfg: &mut ConfigMap<'_>) -> Option<GivenSchema> {
    let text = match (cfg.opt_str("schema"), cfg.opt_str("schema_file")) {
        (Some(_), Some(_)) => {
            cfg.error(
                "schema_file",
                "give either `schema` or `schema_file`, not both",
            );
            None
        }
        (Some(text), None) => Some(("schema", text)),
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

/// A schema that must be given (`schema` or `schema_file`): for Avro files.
pub fn read_schema(cfg: &mut ConfigMap<'_>) -> Option<GivenSchema> {
    let schema = given_schema(cfg);
    if schema.is_none() && !cfg.has("schema") && !cfg.has("schema_file") {
        cfg.error(
            "schema",
            "missing: the Avro schema, inline (`schema: '{...}'`) or in a file (`schema_file`)",
        );
    }
    schema
}
