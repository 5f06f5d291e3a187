//! `jsonl`: appends each record's value as one JSON line, exactly once.

use std::io::Write;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, Record, Sink};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::committed_file::CommittedFile;

#[derive(Debug)]
pub struct JsonlSink {
    out: CommittedFile,
    buf: Vec<u8>,
}

/// Appends each record's value as one JSON line, exactly once.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct JsonlOptions {
    /// The file to append to.
    pub path: String,
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let path = cfg.typed::<JsonlOptions>().ok_or(Invalid)?.path;
    cfg.finish()?;
    Ok(Box::new(JsonlSink {
        out: CommittedFile::new(path.into(), ctx),
        buf: Vec::new(),
    }))
}

#[async_trait]
impl Sink for JsonlSink {
    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.out.stats())
    }

    async fn reset(&mut self) -> Result<(), ConnectorError> {
        self.out.reset()
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        Ok(self.out.open()?.0)
    }

    fn keeps_prepared(&self) -> bool {
        true
    }

    fn prepared(&self) -> Option<u64> {
        self.out.prepared()
    }

    async fn abort_prepared(&mut self) -> Result<(), ConnectorError> {
        self.out.abort_prepared().map(drop)
    }

    async fn pre_commit(
        &mut self,
        id: u64,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        self.out.pre_commit(id)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        encode_lines(batch, &mut self.buf, "jsonl")?;
        let path = self.out.data_path.display().to_string();
        self.out
            .file()?
            .write_all(&self.buf)
            .map_err(|e| ConnectorError::io(format!("jsonl: cannot write {path}"), e))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.out.commit(checkpoint)
    }
}

/// Each record's value as one JSON line, into `buf` (cleared first).
pub fn encode_lines(batch: &[Record], buf: &mut Vec<u8>, sink: &str) -> Result<(), ConnectorError> {
    buf.clear();
    for r in batch {
        serde_json::to_writer(&mut *buf, &r.value).map_err(|e| {
            ConnectorError::permanent(format!("{sink}: cannot encode")).with_source(e)
        })?;
        buf.push(b'\n');
    }
    Ok(())
}
