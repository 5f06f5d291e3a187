//! Builds transforms from JSON-written configs in unit tests.

use connectd_sdk::config::{ConfigErrors, ConfigKey, ConfigMap, ConfigNode, ConfigValue, Span};
use connectd_sdk::registry::TransformBuilder;
use connectd_sdk::{BuildContext, Transform};

fn node(v: &serde_json::Value) -> ConfigNode {
    let value = match v {
        serde_json::Value::Null => ConfigValue::Null,
        serde_json::Value::String(s) => ConfigValue::Scalar(s.clone()),
        serde_json::Value::Array(items) => ConfigValue::List(items.iter().map(node).collect()),
        serde_json::Value::Object(fields) => ConfigValue::Map(
            fields
                .iter()
                .map(|(k, v)| {
                    let key = ConfigKey {
                        name: k.clone(),
                        span: Span::default(),
                    };
                    (key, node(v))
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
    }
}

/// The transform, or the config errors as text.
pub fn build(
    builder: TransformBuilder,
    config: serde_json::Value,
    inputs: &[&str],
) -> Result<Box<dyn Transform>, String> {
    let root = node(&config);
    let errors = ConfigErrors::default();
    let mut cfg = ConfigMap::new(&root, "t", &errors);
    let ctx = BuildContext {
        pipeline: "p".into(),
        component: "t".into(),
        state_dir: std::env::temp_dir(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        worker: Default::default(),
    };
    let built = builder(&mut cfg, &ctx);
    let problems: Vec<String> = errors.take().iter().map(|e| format!("{e}")).collect();
    match built {
        Ok(t) if problems.is_empty() => Ok(t),
        _ => Err(problems.join("; ")),
    }
}
