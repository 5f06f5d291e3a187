//! Builds transforms from JSON-written configs in unit tests.

use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigNode, Invalid};
use connectd_sdk::registry::TransformBuilder;
use connectd_sdk::{BuildContext, Transform};

/// The transform, or the config errors as text.
pub fn build(
    builder: TransformBuilder,
    config: serde_json::Value,
    inputs: &[&str],
) -> Result<Box<dyn Transform>, String> {
    build_as(builder, config, inputs)
}

/// The same for a builder of a concrete type, for tests that look inside it.
pub fn build_as<T>(
    builder: impl Fn(&mut ConfigMap<'_>, &BuildContext) -> Result<T, Invalid>,
    config: serde_json::Value,
    inputs: &[&str],
) -> Result<T, String> {
    let root = ConfigNode::from_json(&config);
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
