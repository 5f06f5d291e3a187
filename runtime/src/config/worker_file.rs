//! The worker file (`--worker configs/worker.yaml`): settings of this process that
//! pipelines share, such as how to reach Kafka.
//!
//! ```yaml
//! name: worker-1                       # default: the host name
//! kafka:
//!   bootstrap_servers: ${env:KAFKA_BOOTSTRAP}
//!   properties:                        # passed to librdkafka as they are
//!     security.protocol: SASL_SSL
//!     sasl.mechanisms: PLAIN
//!     sasl.username: ${env:KAFKA_USER}
//!     sasl.password: ${env:KAFKA_PASSWORD}
//! ```

use std::path::Path;
use std::sync::Arc;

use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigValue, Span};
use connectd_sdk::WorkerSettings;

use super::{yaml, ConfigProblems};

/// Reads the worker file; without one, the defaults (host name, no Kafka settings).
pub fn load_worker(path: Option<&Path>) -> Result<WorkerSettings, ConfigProblems> {
    let mut settings = WorkerSettings {
        name: default_name(),
        ..Default::default()
    };
    let Some(path) = path else {
        return Ok(settings);
    };
    let file: Arc<str> = path.display().to_string().into();
    let errors = ConfigErrors::default();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Some(root) = yaml::parse(&file, &text, &errors) {
                let mut top = ConfigMap::new(&root, "", &errors);
                if let Some(name) = top.opt_str("name") {
                    settings.name = name;
                }
                if let Some(mut kafka) = top.opt_map("kafka") {
                    if let Some(servers) = kafka.opt_str("bootstrap_servers") {
                        settings.kafka.insert("bootstrap.servers".into(), servers);
                    }
                    for (key, node) in kafka.opt_entries("properties").unwrap_or_default() {
                        match &node.value {
                            ConfigValue::Scalar(v) => {
                                settings.kafka.insert(key.name.clone(), v.clone());
                            }
                            _ => kafka.error_at(
                                node,
                                &format!("properties.{}", key.name),
                                "expected a text value (librdkafka properties are strings)",
                            ),
                        }
                    }
                    let _ = kafka.finish();
                }
                let _ = top.finish();
            }
        }
        Err(e) => errors.push(
            &Span {
                file,
                line: 0,
                column: 0,
            },
            "",
            format!("cannot read the worker file: {e}"),
        ),
    }
    let problems = errors.take();
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigProblems(problems))
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "connectd".into())
}
