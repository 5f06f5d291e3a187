//! `avro`: appends records to an Avro object container file, exactly once.
//!
//! Records are encoded with the configured schema (`schema` or `schema_file`) and
//! written as one container block per checkpoint (or per `block_records`); the file's
//! committed length is checkpointed as for `csv` and `jsonl`, so a crash truncates it
//! back to a block boundary. A record that does not fit the schema goes to the DLQ.

use std::io::{Read, Seek, SeekFrom, Write};

use apache_avro::types::Value as AvroValue;
use apache_avro::{Schema, Writer};
use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, Record, Sink};

use super::committed_file::CommittedFile;
use crate::avro::config::{GivenSchema, SchemaOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The magic bytes an Avro object container file starts with.
const MAGIC: &[u8; 4] = b"Obj\x01";
const MARKER_LEN: u64 = 16;

#[derive(Debug)]
pub struct AvroFileSink {
    out: CommittedFile,
    schema: Schema,
    /// The file's sync marker, once it has a header.
    marker: Option<[u8; 16]>,
    pending: Vec<AvroValue>,
    block_records: usize,
}

/// Appends records to an Avro object container file with a given schema, exactly once.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct AvroFileOptions {
    /// The file to append to.
    pub path: String,
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub schema: SchemaOptions,
    /// Records per Avro block (a block is written whole at a checkpoint or when full).
    #[serde(default = "default_block_records")]
    pub block_records: u64,
}

fn default_block_records() -> u64 {
    10_000
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let schema: Option<SchemaOptions> = cfg.typed_part();
    let mut o: AvroFileOptions = cfg.typed().ok_or(Invalid)?;
    o.schema = schema.ok_or(Invalid)?;
    let path = o.path;
    let settings = crate::avro::config::read_schema(cfg, o.schema);
    let block_records = o.block_records.max(1) as usize;
    cfg.finish()?;
    let Some(GivenSchema { schema, .. }) = settings else {
        return Err(Invalid);
    };
    Ok(Box::new(AvroFileSink {
        out: CommittedFile::new(path.into(), ctx),
        schema,
        marker: None,
        pending: Vec::new(),
        block_records,
    }))
}

impl AvroFileSink {
    /// The sync marker of the committed part of the file (`length` bytes): a container
    /// file's header, and each of its blocks, end with it.
    fn read_marker(&mut self, length: u64) -> Result<Option<[u8; 16]>, ConnectorError> {
        if length == 0 {
            return Ok(None);
        }
        let path = self.out.data_path.display().to_string();
        let not_avro = || {
            ConnectorError::permanent(format!(
                "avro sink: {path} is not an Avro container file (write to a new file, or delete it)"
            ))
        };
        if length < MAGIC.len() as u64 + MARKER_LEN {
            return Err(not_avro());
        }
        let file = self.out.file()?;
        let mut magic = [0u8; 4];
        let mut marker = [0u8; 16];
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_exact(&mut magic))
            .and_then(|_| file.seek(SeekFrom::Start(length - MARKER_LEN)))
            .and_then(|_| file.read_exact(&mut marker))
            .and_then(|_| file.seek(SeekFrom::Start(length)));
        read.map_err(|e| ConnectorError::io(format!("avro sink: reading {path}"), e))?;
        if &magic != MAGIC {
            return Err(not_avro());
        }
        Ok(Some(marker))
    }

    /// Writes the pending records as one block (with the header first, in a new file).
    fn write_block(&mut self) -> Result<(), ConnectorError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut writer = match self.marker {
            Some(marker) => Writer::append_to(&self.schema, Vec::new(), marker),
            None => Writer::new(&self.schema, Vec::new()),
        };
        for v in self.pending.drain(..) {
            writer
                .append(v)
                .map_err(|e| ConnectorError::permanent(format!("avro sink: cannot encode: {e}")))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| ConnectorError::permanent(format!("avro sink: cannot encode: {e}")))?;
        if self.marker.is_none() && bytes.len() >= MARKER_LEN as usize {
            let mut marker = [0u8; 16];
            marker.copy_from_slice(&bytes[bytes.len() - MARKER_LEN as usize..]);
            self.marker = Some(marker);
        }
        let file = self.out.file()?;
        file.write_all(&bytes).map_err(|e| {
            let path = self.out.data_path.display().to_string();
            ConnectorError::io(format!("avro sink: cannot write {path}"), e)
        })
    }
}

#[async_trait]
impl Sink for AvroFileSink {
    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.out.stats())
    }

    async fn reset(&mut self) -> Result<(), ConnectorError> {
        self.out.reset()
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        self.pending.clear();
        let (committed, length) = self.out.open()?;
        self.marker = self.read_marker(length)?;
        Ok(committed)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        for r in batch {
            match crate::avro::resolve(&self.schema, &r.value) {
                Ok(v) => self.pending.push(v),
                Err(e) => bad.push(BadRecord::record(r.clone(), format!("avro sink: {e}"))),
            }
        }
        if self.pending.len() >= self.block_records {
            self.write_block()?;
        }
        Ok(())
    }

    fn keeps_prepared(&self) -> bool {
        true
    }

    fn prepared(&self) -> Option<u64> {
        self.out.prepared()
    }

    async fn abort_prepared(&mut self) -> Result<(), ConnectorError> {
        self.pending.clear();
        let length = self.out.abort_prepared()?;
        self.marker = self.read_marker(length)?;
        Ok(())
    }

    async fn pre_commit(
        &mut self,
        id: u64,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        self.write_block()?;
        self.out.pre_commit(id)
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.write_block()?;
        self.out.commit(checkpoint)
    }
}
