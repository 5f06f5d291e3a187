//! `file`: JSON lines from a file, resuming by byte offset; `follow: true` tails a
//! growing file. A line that is not valid JSON (or does not match `json_schema`) is
//! reported with its line number and the reason (to the DLQ or as a pipeline error, per
//! `errors.tolerance`). `format: avro` reads an Avro container file instead
//! (`avro_file`).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::stats::SourceStats;
use connectd_sdk::{BadRecord, BuildContext, ConnectorError, Record, Source, SourcePoll};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::json_schema::{JsonSchemaCheck, SchemaCheckOptions};

#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    follow: bool,
    poll_interval: Duration,
    reader: Option<BufReader<File>>,
    pos: u64,
    line: u64,
    buf: Vec<u8>,
    schema_check: Option<Arc<JsonSchemaCheck>>,
    stats: Arc<SourceStats>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileOffset {
    /// Byte position of the next line.
    pos: u64,
    /// Number of lines consumed (for error messages).
    line: u64,
}

/// Reads JSON lines (or an Avro container file) from a file, resuming by byte offset.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct FileOptions {
    /// The file to read.
    pub path: String,
    /// Keep reading as the file grows (JSON lines only).
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// `json`: one JSON value per line; `avro`: an Avro object container file.
    #[serde(default)]
    pub format: FileFormat,
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub schema: SchemaCheckOptions,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    #[default]
    Json,
    Avro,
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::millis(250)
}

pub fn build(cfg: &mut ConfigMap<'_>, _ctx: &BuildContext) -> Result<Box<dyn Source>, Invalid> {
    let schema: Option<SchemaCheckOptions> = cfg.typed_part();
    let mut o: FileOptions = cfg.typed().ok_or(Invalid)?;
    o.schema = schema.ok_or(Invalid)?;
    let path = PathBuf::from(&o.path);
    let follow = o.follow;
    let poll_interval = o.poll_interval.0;
    if o.format == FileFormat::Avro {
        if o.schema.json_schema.is_some() || o.schema.json_schema_file.is_some() {
            cfg.error(
                "json_schema",
                "an Avro container file carries its own schema: `json_schema` needs `format: json`",
            );
        }
        if follow {
            cfg.error(
                "follow",
                "an Avro container file is read once: `follow` needs `format: json`",
            );
        }
        cfg.finish()?;
        return avro_source(path);
    }
    let schema_check = crate::json_schema::read(cfg, o.schema);
    cfg.finish()?;
    Ok(Box::new(FileSource {
        path,
        follow,
        poll_interval,
        reader: None,
        pos: 0,
        line: 0,
        buf: Vec::new(),
        schema_check,
        stats: Arc::default(),
    }))
}

#[cfg(feature = "avro")]
fn avro_source(path: PathBuf) -> Result<Box<dyn Source>, Invalid> {
    Ok(Box::new(super::avro_file::AvroFileSource::new(path)))
}

#[cfg(not(feature = "avro"))]
fn avro_source(_path: PathBuf) -> Result<Box<dyn Source>, Invalid> {
    tracing::error!("file source: this build has no Avro support (the `avro` feature)");
    Err(Invalid)
}

#[async_trait]
impl Source for FileSource {
    async fn open(&mut self, offset: Option<serde_json::Value>) -> Result<(), ConnectorError> {
        if let Some(v) = offset {
            let o: FileOffset = connectd_sdk::error::parse_offset(v, "file source")?;
            self.pos = o.pos;
            self.line = o.line;
        }
        let mut f = File::open(&self.path).map_err(|e| {
            ConnectorError::io(
                format!("file source: cannot open {}", self.path.display()),
                e,
            )
        })?;
        let len = f
            .metadata()
            .map_err(|e| ConnectorError::io(format!("file source: {}", self.path.display()), e))?
            .len();
        if len < self.pos {
            return Err(ConnectorError::permanent(format!(
                "file source: {} is {len} bytes, shorter than the checkpointed position {}: it was truncated or replaced",
                self.path.display(),
                self.pos
            )));
        }
        f.seek(SeekFrom::Start(self.pos))
            .map_err(|e| ConnectorError::io(format!("file source: {}", self.path.display()), e))?;
        // Reads from the page cache are short enough to do in place; a tokio file
        // would add a thread hand-off per read.
        self.reader = Some(BufReader::with_capacity(1 << 20, f));
        Ok(())
    }

    async fn poll(
        &mut self,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) -> Result<SourcePoll, ConnectorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(ConnectorError::permanent("file source: polled before open"));
        };
        let mut out = Vec::with_capacity(max.min(4096));
        let mut lines = Lines {
            path: &self.path,
            line: &mut self.line,
            pos: &mut self.pos,
            schema_check: self.schema_check.as_deref(),
        };
        let pos_before = *lines.pos;
        let reading =
            |e| ConnectorError::io(format!("file source: reading {}", self.path.display()), e);
        while out.len() < max {
            // A whole line in the reader's buffer is parsed where it lies (no copy).
            let chunk = reader.fill_buf().map_err(reading)?;
            if chunk.is_empty() {
                break;
            }
            if let Some(end) = memchr::memchr(b'\n', chunk) {
                lines.take(&chunk[..=end], &mut out, bad);
                reader.consume(end + 1);
                continue;
            }
            // A line across the buffer's end, or the last one without its end.
            self.buf.clear();
            let n = reader.read_until(b'\n', &mut self.buf).map_err(reading)?;
            if self.buf.last() != Some(&b'\n') && self.follow {
                // A line still being written: read it again once it is complete.
                reader.seek(SeekFrom::Current(-(n as i64))).map_err(|e| {
                    ConnectorError::io(format!("file source: {}", self.path.display()), e)
                })?;
                break;
            }
            lines.take(&self.buf, &mut out, bad);
        }
        // Counted once per poll, not per line: an atomic add per line shows in profiles.
        self.stats.read_bytes(self.pos - pos_before);
        if !out.is_empty() {
            return Ok(SourcePoll::Batch(out));
        }
        if !bad.is_empty() {
            return Ok(SourcePoll::Batch(Vec::new()));
        }
        Ok(if self.follow {
            SourcePoll::Idle(self.poll_interval)
        } else {
            SourcePoll::End
        })
    }

    fn stats(&self) -> Option<Arc<SourceStats>> {
        Some(self.stats.clone())
    }

    /// A position is a byte offset (and the line number there, for messages); it must
    /// lie within the file and start a line.
    async fn alter(&mut self, offset: &serde_json::Value) -> Result<(), ConnectorError> {
        let o: FileOffset = connectd_sdk::traits::offset_as(offset)?;
        let path = self.path.display().to_string();
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            // A file that is not there yet is read from wherever it is told.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ConnectorError::io(format!("file {path}"), e)),
        };
        let pos = usize::try_from(o.pos).unwrap_or(usize::MAX);
        if pos > data.len() {
            return Err(ConnectorError::permanent(format!(
                "pos {} is past the end of {path} ({} bytes)",
                o.pos,
                data.len()
            )));
        }
        if pos > 0 && data[pos - 1] != b'\n' {
            return Err(ConnectorError::permanent(format!(
                "pos {} of {path} is inside a line: a position starts a line",
                o.pos
            )));
        }
        Ok(())
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::to_value(FileOffset {
            pos: self.pos,
            line: self.line,
        })
        .unwrap_or_default()
    }
}

/// What parsing a line needs of the source (borrowed apart from its reader).
struct Lines<'a> {
    path: &'a std::path::Path,
    line: &'a mut u64,
    pos: &'a mut u64,
    schema_check: Option<&'a JsonSchemaCheck>,
}

impl Lines<'_> {
    /// One line read (with its end, if it has one): a record, a bad record, or nothing
    /// for a blank line; the position moves past it.
    fn take(&mut self, raw: &[u8], out: &mut Vec<Record>, bad: &mut Vec<BadRecord>) {
        *self.pos += raw.len() as u64;
        *self.line += 1;
        let text = trim_line(raw);
        if text.is_empty() {
            return;
        }
        // Bytes as read: the parser checks UTF-8 only inside strings (elsewhere a
        // non-ASCII byte is a syntax error), and names the column where it fails.
        let parsed = connectd_sdk::json::parse_slice(text)
            .map_err(|e| {
                format!(
                    "malformed JSON at {}:{}: {e}",
                    self.path.display(),
                    self.line
                )
            })
            .and_then(|v| match self.schema_check {
                Some(check) => check.check(&v).map(|()| v),
                None => Ok(v),
            });
        match parsed {
            Ok(v) => out.push(Record::new(v)),
            Err(reason) => bad.push(BadRecord::raw(
                String::from_utf8_lossy(text),
                format!("line {} of {}", self.line, self.path.display()),
                reason,
            )),
        }
    }
}

fn trim_line(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(r: &Record) -> i64 {
        match r.value.as_object().and_then(|o| o.get("n")) {
            Some(connectd_sdk::Value::Int(n)) => *n,
            other => panic!("no number in {other:?}"),
        }
    }

    fn source(path: PathBuf, follow: bool) -> FileSource {
        FileSource {
            path,
            follow,
            poll_interval: Duration::from_millis(10),
            reader: None,
            pos: 0,
            line: 0,
            buf: Vec::new(),
            schema_check: None,
            stats: Arc::default(),
        }
    }

    /// Lines are parsed in the reader's buffer; the ones across its end (every 1 MiB)
    /// and a last line without its end take the copying path. All must come out once,
    /// in order, with the position at the end of the file.
    #[tokio::test]
    async fn every_line_once_in_order_across_buffer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = String::new();
        let n = 60_000u64;
        for i in 0..n {
            let pad = "x".repeat((i % 97) as usize);
            text.push_str(&format!("{{\"n\":{i},\"pad\":\"{pad}\"}}\r\n"));
            if i == 777 {
                text.push_str("\nnot json\n");
            }
        }
        text.push_str(&format!("{{\"n\":{n}}}"));
        assert!(text.len() > 3 << 20, "crosses several buffer ends");
        std::fs::write(&path, &text).unwrap();
        let mut s = source(path, false);
        s.open(None).await.unwrap();
        let (mut seen, mut bad, mut rejected) = (Vec::new(), Vec::new(), 0);
        loop {
            let polled = s.poll(1000, &mut bad).await.unwrap();
            // As the engine does: what a poll rejected goes on (to the DLQ).
            rejected += std::mem::take(&mut bad).len();
            match polled {
                SourcePoll::Batch(records) => seen.extend(records.iter().map(number)),
                SourcePoll::End => break,
                SourcePoll::Idle(_) => panic!("a file read once does not idle"),
            }
        }
        assert_eq!(seen, (0..=n as i64).collect::<Vec<_>>());
        assert_eq!(rejected, 1, "the malformed line");
        assert_eq!(s.pos, text.len() as u64);
        assert_eq!(s.line, n + 3, "every line counted, the blank one too");
    }

    /// Following a file, a line still being written waits for its end.
    #[tokio::test]
    async fn a_followed_line_without_its_end_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":").unwrap();
        let mut s = source(path.clone(), true);
        s.open(None).await.unwrap();
        let mut bad = Vec::new();
        let SourcePoll::Batch(first) = s.poll(10, &mut bad).await.unwrap() else {
            panic!("the whole line comes out");
        };
        assert_eq!(first.len(), 1);
        assert!(matches!(
            s.poll(10, &mut bad).await.unwrap(),
            SourcePoll::Idle(_)
        ));
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n").unwrap();
        let SourcePoll::Batch(second) = s.poll(10, &mut bad).await.unwrap() else {
            panic!("the finished line comes out");
        };
        assert_eq!(number(&second[0]), 2);
        assert!(bad.is_empty());
    }

    /// A line that is not UTF-8 is a bad record naming the file, the line and the
    /// column; the lines around it come through, non-ASCII text included.
    #[tokio::test]
    async fn a_line_not_utf8_is_named_and_its_neighbours_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut bytes = b"{\"n\":1,\"s\":\"k\xc3\xb6ln\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"n\":2,\"s\":\"caf\xe9\"}\n{\"n\":3}\n");
        std::fs::write(&path, &bytes).unwrap();
        let mut s = source(path, false);
        s.open(None).await.unwrap();
        let mut bad = Vec::new();
        let SourcePoll::Batch(records) = s.poll(10, &mut bad).await.unwrap() else {
            panic!("the good lines come out");
        };
        assert_eq!(records.iter().map(number).collect::<Vec<_>>(), [1, 3]);
        let text = |r: &Record| r.value.as_object().and_then(|o| o.get("s")).cloned();
        assert_eq!(text(&records[0]), Some(connectd_sdk::Value::str("köln")));
        assert_eq!(bad.len(), 1);
        let reason = &bad[0].reason;
        assert!(
            reason.contains("in.jsonl:2") && reason.contains("column"),
            "{reason}"
        );
    }
}
