//! `connectd plugin test`: runs a WASM plugin over sample records, outside any
//! pipeline, and reports what it emitted and what it sent to the dead-letter queue.
//! The plugin runs in the same host as in a worker (sandbox, limits, trap rollback,
//! its prints forwarded to the log), so what passes here behaves the same there.

use std::path::PathBuf;
use std::sync::Arc;

use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigNode};
use connectd_sdk::{BadRecord, BuildContext, Emitter, Record, Value};

#[derive(Debug, thiserror::Error)]
pub enum PluginTestError {
    #[error("{flag} is not JSON: {source}")]
    Json {
        flag: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot read {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Record {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the plugin cannot be loaded:\n{0}")]
    Load(String),
    #[error("the plugin failed on the batch of records {first}..={last}: {reason}")]
    Failed {
        first: usize,
        last: usize,
        reason: String,
    },
}

/// What to run and on what.
#[derive(Debug, Clone)]
pub struct PluginTest {
    pub module: PathBuf,
    /// The plugin's `config` (JSON).
    pub config: String,
    pub input: PathBuf,
    /// Input lines are whole records (`{"key", "value", "timestamp", "headers"}`)
    /// rather than values.
    pub records: bool,
    pub batch_size: usize,
    /// `limits` and `allow` as in a pipeline, e.g. `{"memory": "64MiB"}`.
    pub limits: Option<String>,
    pub allow: Vec<String>,
}

/// What came out: records, and dead-letter entries.
#[derive(Debug, Default)]
pub struct Outcome {
    pub outputs: Vec<Record>,
    pub dead_letters: Vec<BadRecord>,
}

impl Outcome {
    /// One JSON line per output (`{"out": record}`) then per dead letter
    /// (`{"dlq": {reason, position, record}}`).
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        let outs = self
            .outputs
            .iter()
            .map(|r| serde_json::json!({ "out": r.to_json() }).to_string());
        let dlq = self.dead_letters.iter().map(|b| {
            let mut letter = serde_json::json!({
                "reason": b.reason,
                "position": b.position,
                "record": b.record.as_ref().map(Record::to_json),
                "raw": b.raw,
            });
            crate::engine::dlq::add_raw_bytes(&mut letter, b);
            serde_json::json!({ "dlq": letter }).to_string()
        });
        outs.chain(dlq)
    }
}

/// Builds the plugin as a pipeline would, then feeds it the input in batches.
pub fn run(test: &PluginTest) -> Result<Outcome, PluginTestError> {
    let config: serde_json::Value =
        serde_json::from_str(&test.config).map_err(|source| PluginTestError::Json {
            flag: "--config",
            source,
        })?;
    let inputs = read_input(test)?;
    let mut spec = serde_json::json!({
        "module": test.module.display().to_string(),
        "config": config,
    });
    if let Some(limits) = &test.limits {
        spec["limits"] = serde_json::from_str(limits).map_err(|source| PluginTestError::Json {
            flag: "--limits",
            source,
        })?;
    }
    if !test.allow.is_empty() {
        spec["allow"] = test.allow.clone().into();
    }
    let node = ConfigNode::from_json(&spec);
    let errors = ConfigErrors::default();
    let mut cfg = ConfigMap::new(&node, "plugin", &errors);
    let ctx = BuildContext {
        pipeline: "plugin-test".into(),
        component: "plugin".into(),
        inputs: vec!["input".into()],
        ..Default::default()
    };
    let mut plugin = connectd_transforms::wasm::build(&mut cfg, &ctx).map_err(|_| {
        let problems: Vec<String> = errors.take().iter().map(|e| e.to_string()).collect();
        PluginTestError::Load(problems.join("\n"))
    })?;
    let mut outcome = Outcome::default();
    let size = test.batch_size.max(1);
    for (n, chunk) in inputs.chunks(size).enumerate() {
        let mut out = Emitter::default();
        plugin
            .process(0, Arc::new(chunk.to_vec()), &mut out)
            .map_err(|e| PluginTestError::Failed {
                first: n * size + 1,
                last: n * size + chunk.len(),
                reason: e.to_string(),
            })?;
        outcome.outputs.append(&mut out.records);
        outcome.dead_letters.append(&mut out.bad);
    }
    Ok(outcome)
}

fn read_input(test: &PluginTest) -> Result<Vec<Record>, PluginTestError> {
    let text = std::fs::read_to_string(&test.input).map_err(|source| PluginTestError::Input {
        path: test.input.clone(),
        source,
    })?;
    let bad = |line: usize, reason: String| PluginTestError::Record {
        path: test.input.clone(),
        line,
        reason,
    };
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON: {e}")))?;
        let record = if test.records {
            envelope(&json).map_err(|reason| bad(i + 1, reason))?
        } else {
            Record::new(Value::from_json(&json))
        };
        records.push(record);
    }
    Ok(records)
}

/// A record written as `{"key", "value", "timestamp", "headers": {name: value}}`, the
/// shape dead-letter files and the output use.
fn envelope(json: &serde_json::Value) -> Result<Record, String> {
    let object = json
        .as_object()
        .ok_or("with --records, each line is an object with a `value`")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "key" | "value" | "timestamp" | "headers"))
    {
        return Err(format!(
            "unknown field `{unknown}` (a record has key, value, timestamp, headers)"
        ));
    }
    let value = object.get("value").ok_or("the record has no `value`")?;
    let mut record = Record::new(Value::from_json(value));
    if let Some(key) = object.get("key") {
        record.key = Value::from_json(key);
    }
    match object.get("timestamp") {
        None | Some(serde_json::Value::Null) => {}
        Some(t) => {
            record.timestamp = Some(
                t.as_i64()
                    .ok_or("`timestamp` is epoch milliseconds (an integer)")?,
            )
        }
    }
    if let Some(headers) = object.get("headers").filter(|h| !h.is_null()) {
        let headers = headers
            .as_object()
            .ok_or("`headers` is an object of text values")?;
        for (name, v) in headers {
            let v = v
                .as_str()
                .ok_or_else(|| format!("header `{name}` is not text"))?;
            record.headers.push((name.as_str().into(), v.into()));
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_carries_key_time_and_headers() {
        let r = envelope(&serde_json::json!({
            "key": {"id": 1}, "value": {"a": 2}, "timestamp": 5, "headers": {"h": "v"}
        }))
        .unwrap();
        assert_eq!(r.to_json()["key"], serde_json::json!({"id": 1}));
        assert_eq!(r.timestamp, Some(5));
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn a_malformed_envelope_says_what_is_wrong() {
        let e = envelope(&serde_json::json!({"valu": 1})).unwrap_err();
        assert!(e.contains("unknown field `valu`"), "{e}");
        let e = envelope(&serde_json::json!({"value": 1, "timestamp": "now"})).unwrap_err();
        assert!(e.contains("epoch milliseconds"), "{e}");
    }
}
