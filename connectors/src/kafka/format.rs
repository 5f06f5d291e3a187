//! How the kafka connectors read and write record values: `format: json | raw | avro`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use connectd_sdk::config::ConfigMap;
use connectd_sdk::{ConnectorError, Value};

use crate::avro::config::{AvroSettings, RegistryOptions, SchemaOptions};
use crate::avro::registry::{Registry, RegistryError};
use crate::json_schema::JsonSchemaCheck;
use crate::json_schema::SchemaCheckOptions;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub enum ValueFormat {
    /// JSON, checked against a JSON Schema when one is given.
    Json(Option<Arc<JsonSchemaCheck>>),
    /// The value is text, taken as it is.
    Raw,
    Avro(Box<AvroSettings>),
}

/// How a kafka connector's record values are written, with the format's settings.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct FormatOptions {
    /// `json`, `raw` (the value is text, taken as it is) or `avro`.
    #[serde(default)]
    pub format: FormatWord,
    /// (avro) The Avro schema, inline: written as YAML or JSON, or as JSON text in a string.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// (avro) The Avro schema in a file (relative to the pipeline file's folder).
    #[serde(default)]
    pub schema_file: Option<String>,
    /// (avro) A schema registry (Confluent wire format).
    #[serde(default)]
    pub schema_registry: Option<RegistryOptions>,
    /// (json) A JSON Schema every record value must match (inline, as YAML or JSON).
    #[serde(default)]
    pub json_schema: Option<serde_json::Value>,
    /// (json) The same, read from a file.
    #[serde(default)]
    pub json_schema_file: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatWord {
    #[default]
    Json,
    Raw,
    Avro,
}

/// The format with, for avro, its schema settings.
pub fn read(cfg: &ConfigMap<'_>, o: FormatOptions) -> ValueFormat {
    let avro = crate::avro::config::read(
        cfg,
        o.format == FormatWord::Avro,
        SchemaOptions {
            schema: o.schema,
            schema_file: o.schema_file,
        },
        o.schema_registry,
    );
    let check = crate::json_schema::read(
        cfg,
        SchemaCheckOptions {
            json_schema: o.json_schema,
            json_schema_file: o.json_schema_file,
        },
    );
    if check.is_some() && o.format != FormatWord::Json {
        cfg.error("json_schema", "applies only with `format: json`");
    }
    match (o.format, avro) {
        (FormatWord::Raw, _) => ValueFormat::Raw,
        (_, Some(settings)) => ValueFormat::Avro(Box::new(settings)),
        _ => ValueFormat::Json(check),
    }
}

/// A source's decoder, used on its consumer thread (schema lookups block that thread).
#[derive(Debug)]
pub struct Decoder {
    format: ValueFormat,
    /// For registry lookups: the thread has no async runtime of its own otherwise.
    registry: Option<(Registry, tokio::runtime::Runtime)>,
}

impl Decoder {
    pub fn new(format: ValueFormat) -> Result<Self, String> {
        let registry = match &format {
            ValueFormat::Avro(settings) => match &settings.registry {
                Some(r) => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start the schema registry client: {e}"))?;
                    Some((Registry::new(&r.url), rt))
                }
                None => None,
            },
            _ => None,
        };
        Ok(Decoder { format, registry })
    }

    /// The value of a message. A registry that cannot be reached is waited for (with
    /// backoff, until `closing`): the record is not bad, the registry is away.
    pub fn decode(&self, payload: &[u8], closing: &AtomicBool) -> Result<Value, String> {
        let text =
            || std::str::from_utf8(payload).map_err(|e| format!("the value is not UTF-8: {e}"));
        match &self.format {
            ValueFormat::Raw => Ok(Value::str(text()?)),
            ValueFormat::Json(check) => {
                // From the bytes: UTF-8 is checked only inside strings, and an error
                // names the column.
                let v = connectd_sdk::json::parse_slice(payload)
                    .map_err(|e| format!("the value is not JSON: {e}"))?;
                match check {
                    Some(check) => check.check(&v).map(|()| v),
                    None => Ok(v),
                }
            }
            ValueFormat::Avro(settings) => match &self.registry {
                None => match &settings.schema {
                    Some(given) => crate::avro::decode(&given.schema, payload),
                    None => Err("no Avro schema configured".into()),
                },
                Some((registry, rt)) => {
                    let (id, datum) = crate::avro::split_wire(payload)?;
                    let schema = match registry.cached(id) {
                        Some(s) => s,
                        None => lookup(registry, rt, id, closing)?,
                    };
                    crate::avro::decode(&schema, datum).map_err(|e| format!("schema id {id}: {e}"))
                }
            },
        }
    }
}

fn lookup(
    registry: &Registry,
    rt: &tokio::runtime::Runtime,
    id: u32,
    closing: &AtomicBool,
) -> Result<Arc<Schema>, String> {
    let mut backoff = crate::sources::backoff::Backoff::default();
    loop {
        match rt.block_on(registry.by_id(id)) {
            Ok(schema) => return Ok(schema),
            Err(e @ RegistryError::Refused { .. }) => return Err(e.to_string()),
            Err(e) => {
                if closing.load(Ordering::Relaxed) {
                    return Err(e.to_string());
                }
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, "kafka: cannot look up Avro schema {id}; retrying in {wait:?}");
                // In slices, so that closing the source does not wait out the backoff.
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until && !closing.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// A sink's encoder, made ready (schema registered or looked up) when the sink opens.
#[derive(Clone, Debug)]
pub enum Encoder {
    Json(Option<Arc<JsonSchemaCheck>>),
    Raw,
    Avro {
        schema: Arc<Schema>,
        id: Option<u32>,
    },
}

impl Encoder {
    /// Registers the configured schema (or reads the subject's latest) when there is a
    /// registry.
    pub async fn ready(format: &ValueFormat, subject: &str) -> Result<Encoder, ConnectorError> {
        let settings = match format {
            ValueFormat::Json(check) => return Ok(Encoder::Json(check.clone())),
            ValueFormat::Raw => return Ok(Encoder::Raw),
            ValueFormat::Avro(s) => s,
        };
        let Some(r) = &settings.registry else {
            let given = settings.schema.as_ref().ok_or_else(|| {
                ConnectorError::permanent("kafka sink: no Avro schema configured")
            })?;
            return Ok(Encoder::Avro {
                schema: Arc::new(given.schema.clone()),
                id: None,
            });
        };
        let registry = Registry::new(&r.url);
        let subject = r.subject.as_deref().unwrap_or(subject);
        let found = match &settings.schema {
            Some(given) => registry
                .register(subject, &given.text, &given.schema)
                .await
                .map(|id| (id, Arc::new(given.schema.clone()))),
            None => registry.latest(subject).await,
        };
        let (id, schema) = found.map_err(|e| {
            let message = format!("kafka sink: {e}");
            if e.is_transient() {
                ConnectorError::transient(message)
            } else {
                ConnectorError::permanent(message)
            }
        })?;
        Ok(Encoder::Avro {
            schema,
            id: Some(id),
        })
    }

    pub fn encode(&self, v: &Value) -> Result<Vec<u8>, String> {
        match self {
            Encoder::Raw => Ok(text_of(v)),
            Encoder::Json(check) => {
                if let Some(check) = check {
                    check.check(v)?;
                }
                let mut out = Vec::new();
                connectd_sdk::json::write(v, &mut out);
                Ok(out)
            }
            Encoder::Avro { schema, id } => crate::avro::encode(schema, *id, v),
        }
    }
}

/// A value as text: strings as they are, anything else as JSON.
pub fn text_of(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.as_bytes().to_vec(),
        other => {
            let mut out = Vec::new();
            connectd_sdk::json::write(other, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON value is parsed from the message's bytes: text in any language passes,
    /// bytes that are not UTF-8 are an error naming the column; raw values stay text.
    #[test]
    fn json_values_from_bytes() {
        let closing = AtomicBool::new(false);
        let json = Decoder::new(ValueFormat::Json(None)).unwrap();
        let v = json
            .decode("{\"city\":\"Zürich\",\"n\":1}".as_bytes(), &closing)
            .unwrap();
        assert_eq!(
            v.as_object().and_then(|o| o.get("city")),
            Some(&Value::str("Zürich"))
        );
        let err = json
            .decode(b"{\"city\":\"Z\xfcrich\"}", &closing)
            .unwrap_err();
        assert!(err.contains("not JSON") && err.contains("column"), "{err}");
        let raw = Decoder::new(ValueFormat::Raw).unwrap();
        assert!(raw
            .decode(b"\xfc", &closing)
            .unwrap_err()
            .contains("not UTF-8"));
    }
}
