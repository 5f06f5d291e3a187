//! `stdout`: prints each record's value as a JSON line, for trying pipelines out.
//! At-least-once: it keeps no checkpoint of its own.

use std::io::Write;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, Record, Sink};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

/// Prints each record as a JSON line on standard output (for trying pipelines).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct StdoutOptions {
    /// How records are printed: `json` (the only format).
    #[serde(default)]
    pub format: StdoutFormat,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    #[default]
    Json,
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    cfg.typed::<StdoutOptions>().ok_or(Invalid)?;
    cfg.finish()?;
    Ok(Box::new(StdoutSink { buf: Vec::new() }))
}

/// A closed pipe does not come back, unlike a socket's (`connectd ... | head` once
/// `head` has its lines): retrying it for `errors.retry_timeout` only held the worker.
fn failed(what: &str, e: std::io::Error) -> ConnectorError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return ConnectorError::permanent(
            "stdout: the reader of standard output has gone (broken pipe)",
        );
    }
    ConnectorError::io(format!("stdout: {what}"), e)
}

#[async_trait]
impl Sink for StdoutSink {
    /// Nothing is committed: nothing to forget.
    async fn reset(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        Ok(None)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        super::jsonl::encode_lines(batch, &mut self.buf, "stdout")?;
        std::io::stdout()
            .lock()
            .write_all(&self.buf)
            .map_err(|e| failed("cannot write", e))
    }

    async fn commit(&mut self, _checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        std::io::stdout()
            .flush()
            .map_err(|e| failed("cannot flush", e))
    }

    fn exactly_once(&self) -> bool {
        false
    }
}
