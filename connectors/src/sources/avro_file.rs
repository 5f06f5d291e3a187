//! `file` with `format: avro`: the records of an Avro object container file (the
//! schema comes from the file's header). The offset is the number of records read, so
//! a restart skips those.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use apache_avro::Reader;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use connectd_sdk::stats::SourceStats;
use connectd_sdk::{BadRecord, ConnectorError, Record, Source, SourcePoll, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct AvroOffset {
    /// Records consumed.
    records: u64,
}

pub struct AvroFileSource {
    path: PathBuf,
    reader: Option<Reader<'static, BufReader<CountedRead<File>>>>,
    records: u64,
    /// Bytes the reader has taken from the file so far, and how many of them are
    /// already in `stats` (skipping to a restored position is not reading new data).
    read: Arc<AtomicU64>,
    reported: u64,
    stats: Arc<SourceStats>,
}

/// Counts the bytes read through it.
struct CountedRead<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for CountedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl std::fmt::Debug for AvroFileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroFileSource")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish()
    }
}

impl AvroFileSource {
    pub fn new(path: PathBuf) -> Self {
        AvroFileSource {
            path,
            reader: None,
            records: 0,
            read: Arc::default(),
            reported: 0,
            stats: Arc::default(),
        }
    }

    fn error(&self, what: &str) -> ConnectorError {
        ConnectorError::permanent(format!("file source: {}: {what}", self.path.display()))
    }
}

#[async_trait]
impl Source for AvroFileSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        if let Some(v) = offset {
            let o: AvroOffset = connectd_sdk::error::parse_offset(v, "file source")?;
            self.records = o.records;
        }
        let f = File::open(&self.path).map_err(|e| {
            ConnectorError::io(
                format!("file source: cannot open {}", self.path.display()),
                e,
            )
        })?;
        let counted = CountedRead {
            inner: f,
            read: self.read.clone(),
        };
        let mut reader = Reader::new(BufReader::with_capacity(1 << 20, counted))
            .map_err(|e| self.error(&format!("not an Avro container file: {e}")))?;
        for skipped in 0..self.records {
            match reader.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(self.error(&format!("record {}: {e}", skipped + 1))),
                None => {
                    return Err(self.error(&format!(
                        "holds {skipped} records, fewer than the {} already read: it was truncated or replaced",
                        self.records
                    )))
                }
            }
        }
        self.reader = Some(reader);
        // Skipping what a restored position had already read is no new data; the
        // file is read in 1 MiB steps, so a resumed run counts from the step it is in.
        if self.records > 0 {
            self.reported = self.read.load(Ordering::Relaxed);
        }
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            let next = self
                .reader
                .as_mut()
                .ok_or_else(|| ConnectorError::permanent("file source: polled before open"))?
                .next();
            match next {
                None => break,
                // A container block that does not decode cannot be skipped record by record.
                Some(Err(e)) => {
                    return Err(self.error(&format!("record {}: {e}", self.records + 1)))
                }
                Some(Ok(v)) => {
                    let json = serde_json::Value::try_from(v).map_err(|e| {
                        self.error(&format!("record {}: no JSON form: {e}", self.records + 1))
                    })?;
                    self.records += 1;
                    out.push(Record::new(Value::from_json(&json)));
                }
            }
        }
        let read = self.read.load(Ordering::Relaxed);
        self.stats.read_bytes(read - self.reported);
        self.reported = read;
        Ok(if out.is_empty() {
            SourcePoll::End
        } else {
            SourcePoll::Batch(out)
        })
    }

    /// A position is the number of records already read.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        connectd_sdk::traits::offset_as::<AvroOffset>(offset).map(|_| ())
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::to_value(AvroOffset {
            records: self.records,
        })
        .unwrap_or_default()
    }
}
