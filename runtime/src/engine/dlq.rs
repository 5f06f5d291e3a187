//! Bad records: stop the pipeline (`errors.tolerance: none`) or append them, with the
//! reason, component and time, to the dead-letter file (`tolerance: all`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use connectd_sdk::BadRecord;

use super::PipelineError;
use crate::config::{ErrorPolicy, Tolerance};
use crate::metrics::ComponentMetrics;

/// Where a bad record came from: as its component said, or, for a record a transform
/// or sink refused, the Kafka message it was read from (its `kafka.*` headers), in the
/// words the kafka source uses for its own bad messages. Empty when nothing says.
fn position_of(b: &BadRecord) -> std::borrow::Cow<'_, str> {
    if !b.position.is_empty() {
        return b.position.as_str().into();
    }
    let header = |name: &str| {
        b.record
            .as_ref()?
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match (
        header("kafka.topic"),
        header("kafka.partition"),
        header("kafka.offset"),
    ) {
        (Some(topic), Some(partition), Some(offset)) => {
            format!("offset {offset} of {topic} partition {partition}").into()
        }
        _ => "".into(),
    }
}

#[derive(Debug)]
pub struct DeadLetters {
    pipeline: String,
    tolerance: Tolerance,
    file: Option<(String, Mutex<File>)>,
}

impl DeadLetters {
    pub fn open(pipeline: &str, policy: &ErrorPolicy) -> Result<Self, PipelineError> {
        let file = match &policy.dlq_path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        PipelineError::new(
                            "errors.dlq",
                            format!("cannot create {}: {e}", dir.display()),
                        )
                    })?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        PipelineError::new(
                            "errors.dlq",
                            format!("cannot open {}: {e}", path.display()),
                        )
                    })?;
                Some((path.display().to_string(), Mutex::new(f)))
            }
            None => None,
        };
        Ok(Self {
            pipeline: pipeline.to_string(),
            tolerance: policy.tolerance,
            file,
        })
    }

    pub fn handle(
        &self,
        component: &str,
        bad: Vec<BadRecord>,
        m: &ComponentMetrics,
    ) -> Result<(), PipelineError> {
        if bad.is_empty() {
            return Ok(());
        }
        m.errors.inc_by(bad.len() as u64);
        if self.tolerance == Tolerance::None {
            let first = &bad[0];
            let position = position_of(first);
            let at = if position.is_empty() {
                String::new()
            } else {
                format!(" at {position}")
            };
            let what = match (&first.record, &first.raw, &first.raw_bytes) {
                (Some(r), _, _) => format!(" record {}", excerpt(&r.to_json().to_string())),
                (None, Some(raw), _) => format!(" input {}", excerpt(raw)),
                (None, None, Some(bytes)) => format!(
                    " input {} ({} bytes, not UTF-8)",
                    excerpt(&String::from_utf8_lossy(bytes)),
                    bytes.len()
                ),
                _ => String::new(),
            };
            return Err(PipelineError::new(
                component,
                format!(
                    "bad{what}{at}: {} (set `errors.tolerance: all` with `errors.dlq.path` to divert bad records and go on)",
                    first.reason
                ),
            ));
        }
        let now = connectd_sdk::time::format_rfc3339_ms(connectd_sdk::time::now_ms());
        let mut lines = Vec::new();
        for b in &bad {
            let mut line = serde_json::json!({
                "time": now,
                "pipeline": self.pipeline,
                "component": component,
                "position": position_of(b),
                "reason": b.reason,
                "record": b.record.as_ref().map(|r| r.to_json()),
                "raw": b.raw,
            });
            add_raw_bytes(&mut line, b);
            lines.extend_from_slice(line.to_string().as_bytes());
            lines.push(b'\n');
        }
        match &self.file {
            Some((path, f)) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                f.write_all(&lines).and_then(|_| f.flush()).map_err(|e| {
                    PipelineError::new(
                        component,
                        format!("cannot write the dead-letter file {path}: {e}"),
                    )
                })?;
            }
            None => {
                for b in &bad {
                    tracing::warn!(pipeline = %self.pipeline, component, position = %position_of(b), reason = %b.reason, "bad record skipped (no errors.dlq.path set)");
                }
            }
        }
        m.dlq.inc_by(bad.len() as u64);
        Ok(())
    }
}

impl DeadLetters {
    /// Makes the dead-letter file durable: called before a checkpoint that covers what
    /// it holds is committed.
    pub fn sync(&self, component: &str) -> Result<(), PipelineError> {
        if let Some((path, f)) = &self.file {
            let f = f.lock().unwrap_or_else(|p| p.into_inner());
            f.sync_data().map_err(|e| {
                PipelineError::new(
                    component,
                    format!("cannot fsync the dead-letter file {path}: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

/// Input that is not UTF-8, and a message's key, go to the dead-letter line as base64
/// (`raw_base64`, `key`, `key_base64`): the bytes exactly as they came.
pub(crate) fn add_raw_bytes(line: &mut serde_json::Value, b: &BadRecord) {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let Some(fields) = line.as_object_mut() else {
        return;
    };
    if let Some(bytes) = &b.raw_bytes {
        fields.insert("raw_base64".into(), b64(bytes).into());
    }
    match b.raw_key.as_deref().map(std::str::from_utf8) {
        Some(Ok(text)) => {
            fields.insert("key".into(), text.into());
        }
        Some(Err(_)) => {
            let bytes = b.raw_key.as_deref().unwrap_or_default();
            fields.insert("key_base64".into(), b64(bytes).into());
        }
        None => {}
    }
}

fn excerpt(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("`{}…`", s.chars().take(200).collect::<String>())
    } else {
        format!("`{s}`")
    }
}
