//! `csv`: appends rows with the configured `columns` (header once), exactly once.

use std::io::Write;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, FieldPath, Record, Sink,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::committed_file::CommittedFile;

#[derive(Debug)]
pub struct CsvSink {
    out: CommittedFile,
    columns: Vec<String>,
    paths: Vec<FieldPath>,
    header: bool,
    delimiter: u8,
    buf: Vec<u8>,
}

/// Appends rows with the configured columns to a CSV file (a header once), exactly once.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct CsvOptions {
    /// The file to append to.
    pub path: String,
    /// The columns, each a field path of the record (`price`, `quote.bid`) or `key`.
    pub columns: Vec<String>,
    /// Write a header row when the file is new.
    #[serde(default = "yes")]
    pub header: bool,
    /// One ASCII character; `\t` for a tab.
    #[serde(default = "comma")]
    #[schemars(extend("pattern" = "^(.|\\\\t)$"))]
    pub delimiter: String,
}

fn yes() -> bool {
    true
}

fn comma() -> String {
    ",".into()
}

pub fn build(cfg: &mut ConfigMap<'_>, ctx: &BuildContext) -> Result<Box<dyn Sink>, Invalid> {
    let CsvOptions {
        path,
        columns,
        header,
        delimiter,
    } = cfg.typed().ok_or(Invalid)?;
    if columns.is_empty() && cfg.has("columns") {
        cfg.error("columns", "expected at least one column");
    }
    let delimiter = match delimiter.as_bytes() {
        [b] if b.is_ascii() => *b,
        _ if delimiter == "\\t" => b'\t',
        _ => {
            cfg.error(
                "delimiter",
                format!("expected a single ASCII character, found `{delimiter}`"),
            );
            b','
        }
    };
    cfg.finish()?;
    let paths = columns.iter().map(|c| FieldPath::parse(c)).collect();
    Ok(Box::new(CsvSink {
        out: CommittedFile::new(path.into(), ctx),
        columns,
        paths,
        header,
        delimiter,
        buf: Vec::new(),
    }))
}

impl CsvSink {
    fn encode<I, S>(&mut self, rows: impl Iterator<Item = I>) -> Result<(), ConnectorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(std::mem::take(&mut self.buf));
        for row in rows {
            w.write_record(row).map_err(|e| {
                ConnectorError::permanent("csv: cannot encode a row").with_source(e)
            })?;
        }
        self.buf = w.into_inner().map_err(|e| {
            ConnectorError::permanent("csv: cannot encode").with_source(e.into_error())
        })?;
        let path = self.out.data_path.display().to_string();
        let file = self.out.file()?;
        file.write_all(&self.buf)
            .map_err(|e| ConnectorError::io(format!("csv: cannot write {path}"), e))?;
        self.buf.clear();
        Ok(())
    }
}

#[async_trait]
impl Sink for CsvSink {
    fn stats(&self) -> Option<std::sync::Arc<connectd_sdk::stats::SinkStats>> {
        Some(self.out.stats())
    }

    async fn reset(&mut self) -> Result<(), ConnectorError> {
        self.out.reset()
    }

    async fn open(&mut self) -> Result<Option<Committed>, ConnectorError> {
        let (committed, length) = self.out.open()?;
        if length == 0 && self.header {
            let header = self.columns.clone();
            self.encode(std::iter::once(header))?;
        }
        Ok(committed)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let paths = std::mem::take(&mut self.paths);
        let rows = batch.iter().map(|r| {
            paths
                .iter()
                .map(|p| {
                    r.value
                        .get_path(p)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                })
                .collect::<Vec<String>>()
        });
        let result = self.encode(rows);
        self.paths = paths;
        result
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.out.commit(checkpoint)
    }
}
