//! `csv`: appends rows with the configured `columns` (header once), exactly once.

use std::io::{Read, Write};

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, Invalid};
use connectd_sdk::{
    BadRecord, BuildContext, Checkpoint, Committed, ConnectorError, FieldPath, Record, Sink,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::columns::MissingFields;
use super::committed_file::CommittedFile;

#[derive(Debug)]
pub struct CsvSink {
    out: CommittedFile,
    columns: Vec<String>,
    paths: Vec<FieldPath>,
    missing: MissingFields,
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
    #[serde(default = "crate::csv_delimiter::comma")]
    #[schemars(extend("pattern" = "^(.|\\\\t)$"))]
    pub delimiter: String,
}

fn yes() -> bool {
    true
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
    let delimiter = crate::csv_delimiter::parse(&delimiter).unwrap_or_else(|why| {
        cfg.error("delimiter", why);
        b','
    });
    cfg.finish()?;
    let paths = columns.iter().map(|c| FieldPath::parse(c)).collect();
    Ok(Box::new(CsvSink {
        out: CommittedFile::new(path.into(), ctx),
        missing: MissingFields::new(columns.len()),
        columns,
        paths,
        header,
        delimiter,
        buf: Vec::new(),
    }))
}

impl CsvSink {
    /// The header row, in a file that is empty (new, or cut back to nothing); in one
    /// that is not, the header it begins with must be this sink's: rows of other columns
    /// appended under an old header (after `columns` changed) would not be the columns
    /// their header names, and nothing would say so.
    fn header_checked(&mut self, length: u64) -> Result<(), ConnectorError> {
        if !self.header {
            return Ok(());
        }
        let header = self.columns.clone();
        if length == 0 {
            return self.encode(|w| w.write_record(&header));
        }
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(Vec::new());
        let expected = w
            .write_record(&header)
            .map_err(|e| ConnectorError::permanent("csv: cannot encode the header").with_source(e))
            .and_then(|()| {
                w.into_inner().map_err(|e| {
                    ConnectorError::permanent("csv: cannot encode the header")
                        .with_source(e.into_error())
                })
            })?;
        let path = &self.out.data_path;
        let mut found = Vec::with_capacity(expected.len());
        std::fs::File::open(path)
            .and_then(|f| f.take(expected.len() as u64).read_to_end(&mut found))
            .map_err(|e| ConnectorError::io(format!("csv: cannot read {}", path.display()), e))?;
        if found == expected {
            return Ok(());
        }
        let first_line = String::from_utf8_lossy(&found);
        let first_line = first_line.lines().next().unwrap_or_default();
        Err(ConnectorError::permanent(format!(
            "csv: {} begins with `{first_line}`, not the header of this sink's columns `{}`: rows of these columns would be appended under another header. Give the sink the columns the file has, or move the file away and delete {} (a new file with this header then begins at the pipeline's checkpoint)",
            path.display(),
            String::from_utf8_lossy(&expected).trim_end(),
            self.out.commit_record_path().display()
        )))
    }

    /// Encodes rows with `rows` (given the CSV writer) and appends them to the file.
    fn encode(
        &mut self,
        rows: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>,
    ) -> Result<(), ConnectorError> {
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(std::mem::take(&mut self.buf));
        rows(&mut w)
            .map_err(|e| ConnectorError::permanent("csv: cannot encode a row").with_source(e))?;
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
        self.header_checked(length)?;
        Ok(committed)
    }

    fn keeps_prepared(&self) -> bool {
        true
    }

    fn prepared(&self) -> Option<u64> {
        self.out.prepared()
    }

    async fn abort_prepared(&mut self) -> Result<(), ConnectorError> {
        let length = self.out.abort_prepared()?;
        self.header_checked(length)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let paths = std::mem::take(&mut self.paths);
        let missing = std::mem::take(&mut self.missing);
        // One buffer for a row's fields, reused: a String per field was a third of
        // the sink's time at a million rows.
        let mut text = String::new();
        let mut ends = Vec::with_capacity(paths.len());
        let result = self.encode(|w| {
            for r in batch {
                text.clear();
                ends.clear();
                for (i, p) in paths.iter().enumerate() {
                    match r.value.get_path(p) {
                        Some(v) => v.push_text(&mut text),
                        None => missing.column("csv", i, &p.to_string(), p, &r.value),
                    }
                    ends.push(text.len());
                }
                let mut start = 0;
                w.write_record(ends.iter().map(|&end| {
                    let field = &text.as_bytes()[start..end];
                    start = end;
                    field
                }))?;
            }
            Ok(())
        });
        self.paths = paths;
        self.missing = missing;
        result
    }

    async fn pre_commit(
        &mut self,
        id: u64,
        _bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        self.out.pre_commit(id)
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.out.commit(checkpoint)
    }
}
