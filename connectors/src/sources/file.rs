//! `file`: JSON lines from a file, resuming by byte offset; `follow: true` tails a
//! growing file. A line that is not valid JSON (or does not match `json_schema`) is
//! reported with its line number and the reason (to the DLQ or as a pipeline error, per
//! `errors.tolerance`). `format: csv` reads CSV rows instead (`csv_rows`), and
//! `format: avro` an Avro container file (`avro_file`).
//!
//! A followed file may be rotated (renamed away, a new one created at the path) or
//! truncated in place (`copytruncate`): at the end of what it has read, the source looks
//! whether the path still holds the file it reads and whether that file still begins
//! as it did (`file_identity`); then it reads the rest of the old file and the new one
//! from its start, or the truncated one from its start. A position is kept with the
//! file's identity and a hash of its first bytes, so a restart after a rotation finds
//! the rotated file beside the path and reads its rest first, and one after a
//! truncation reads the file from its start.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connectd_sdk::config::{ConfigMap, HumanDuration, Invalid};
use connectd_sdk::stats::SourceStats;
use connectd_sdk::{BadRecord, BuildContext, ConnectorError, Record, Source, SourcePoll};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::file_identity::{find_copy, find_rotated, head, newer_rotation, FileId, HeadPrint};
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
    /// A longer line is not read into memory: its first bytes go to the DLQ.
    max_line: usize,
    schema_check: Option<Arc<JsonSchemaCheck>>,
    /// `format: csv`: the columns and the row being read.
    csv: Option<CsvRows>,
    stats: Arc<SourceStats>,
    /// The file being read (`None` where files have no identity).
    file: Option<FileId>,
    /// Its first bytes up to the position (at most `HEAD_BYTES`), as read: a file
    /// rewritten in place begins otherwise.
    head: Vec<u8>,
    /// The last poll reached the end of the file: the next one first looks whether the
    /// path holds another file now (`rotated`).
    at_end: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileOffset {
    /// Byte position of the next line.
    pos: u64,
    /// Number of lines consumed (for error messages).
    line: u64,
    /// The file the position is in; absent in positions from before 2026-12-07 and in
    /// altered ones: the file at the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileId>,
    /// The file's first bytes up to the position (at most 256): a file rewritten in
    /// place since begins otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<HeadPrint>,
}

/// Reads JSON lines, CSV rows or an Avro container file from a file, resuming by byte
/// offset.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct FileOptions {
    /// The file to read.
    pub path: String,
    /// Keep reading as the file grows (JSON lines or CSV), across rotation: renamed away
    /// with a new file at the path, or truncated in place.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
    /// `json`: one JSON value per line; `csv`: CSV rows (see `csv`); `avro`: an Avro
    /// object container file.
    #[serde(default)]
    pub format: FileFormat,
    /// How `format: csv` reads: `header` (true: the first row names the fields),
    /// `columns` (the names, in order), `delimiter` (`,`), `types` (`{price: float, qty:
    /// int}`: int, float or bool; other columns are text).
    #[serde(default)]
    pub csv: Option<CsvReadOptions>,
    /// A line longer than this (such as 16MiB, the default) is not read: its first
    /// 64 KiB go to the dead-letter queue with its position and length.
    #[serde(default)]
    pub max_line_bytes: Option<String>,
    #[serde(skip)]
    #[schemars(flatten, !skip)]
    pub schema: SchemaCheckOptions,
}

/// `max_line_bytes` unless set: a JSON line is rarely a megabyte; a file that is not
/// JSON lines (a binary, a log with no line ends) was held whole, five times over.
const DEFAULT_MAX_LINE: usize = 16 << 20;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    #[default]
    Json,
    Csv,
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
                "an Avro container file is read once: `follow` needs `format: json` or `csv`",
            );
        }
        if o.csv.is_some() {
            cfg.error("csv", "CSV settings need `format: csv`");
        }
        cfg.finish()?;
        return avro_source(path);
    }
    let csv = match (o.format, o.csv) {
        (FileFormat::Csv, options) => match CsvRows::new(options.unwrap_or_default()) {
            Ok(rows) => Some(rows),
            Err(problems) => {
                for (key, why) in problems {
                    cfg.error(key, why);
                }
                None
            }
        },
        (_, Some(_)) => {
            cfg.error("csv", "CSV settings need `format: csv`");
            None
        }
        (_, None) => None,
    };
    let schema_check = crate::json_schema::read(cfg, o.schema);
    let mut max_line = DEFAULT_MAX_LINE;
    if let Some(m) = &o.max_line_bytes {
        match connectd_sdk::config::parse_size(m) {
            Ok(0) => cfg.error("max_line_bytes", "must be more than 0"),
            Ok(bytes) => max_line = usize::try_from(bytes).unwrap_or(usize::MAX),
            Err(e) => cfg.error("max_line_bytes", e),
        }
    }
    cfg.finish()?;
    Ok(Box::new(FileSource {
        path,
        follow,
        poll_interval,
        reader: None,
        pos: 0,
        line: 0,
        buf: Vec::new(),
        max_line,
        schema_check,
        csv,
        stats: Arc::default(),
        file: None,
        head: Vec::new(),
        at_end: false,
    }))
}

impl FileSource {
    fn io(&self, what: &str, e: std::io::Error) -> ConnectorError {
        ConnectorError::io(format!("file source: {what} {}", self.path.display()), e)
    }

    /// The file a checkpoint's position is in: the one at the path, or, when the path
    /// holds another file now (or, followed, none yet), the checkpoint's own where
    /// rotation moved it (its rest is read first). If that one is gone, the path's
    /// file from its start. `None`: a followed file that is not there yet.
    fn file_of_checkpoint(
        &mut self,
        stored: Option<FileId>,
    ) -> Result<Option<File>, ConnectorError> {
        let current = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if self.follow && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io("cannot open", e)),
        };
        let current_id = match &current {
            Some(f) => FileId::of(&f.metadata().map_err(|e| self.io("reading", e))?),
            None => None,
        };
        let elsewhere =
            stored.filter(|id| current.is_none() || current_id.is_some_and(|c| c != *id));
        if let Some(stored) = elsewhere {
            if let Some(rotated) = find_rotated(&self.path, stored) {
                tracing::info!(path = %self.path.display(), rotated = %rotated.display(), "file source: the file was rotated since the checkpoint: reading the rest of the rotated one first");
                self.file = Some(stored);
                let f = File::open(&rotated)
                    .map_err(|e| self.io("cannot open the rotated file of", e))?;
                return Ok(Some(f));
            }
        }
        if current.is_none() || elsewhere.is_some() {
            if self.pos > 0 {
                tracing::warn!(path = %self.path.display(), position = self.pos, "file source: the file read at the checkpoint is neither at the path nor beside it (rotated away or deleted): reading the new file from its start; lines after the position in the old one were not read");
            }
            (self.pos, self.line) = (0, 0);
        }
        if current.is_none() {
            tracing::info!(path = %self.path.display(), "file source: waiting for the file to appear");
        }
        self.file = current_id;
        Ok(current)
    }

    /// A CSV row read in part is read again from the position, which it begins at.
    fn forget_partial_row(&mut self) {
        if let Some(csv) = &mut self.csv {
            csv.take_row();
        }
    }

    /// Reads from the start of the file now at the path.
    fn restart_at_path(&mut self) -> Result<(), ConnectorError> {
        let f = File::open(&self.path).map_err(|e| self.io("cannot open", e))?;
        self.restart_in(f);
        Ok(())
    }

    /// Reads `f` from its start.
    fn restart_in(&mut self, f: File) {
        self.file = f.metadata().ok().as_ref().and_then(FileId::of);
        (self.pos, self.line) = (0, 0);
        self.head.clear();
        self.forget_partial_row();
        self.reader = Some(BufReader::with_capacity(1 << 20, f));
    }

    /// After the end of a followed file was reached: follows the path if it holds
    /// another file now (rotated): the rest of this one, a last line without its end
    /// included, is taken, then the file rotated after it or the path's from its start.
    fn rotated(
        &mut self,
        out: &mut Vec<Record>,
        bad: &mut Vec<BadRecord>,
    ) -> Result<(), ConnectorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let now = FileId::at(&self.path);
        if now.is_none() || self.file.is_none() || now == self.file {
            return Ok(());
        }
        let mut rest = Vec::new();
        let read = reader.read_to_end(&mut rest);
        read.map_err(|e| self.io("reading", e))?;
        self.take_rest(&rest, out, bad);
        // Rotated more than once since it was opened (a worker down for days): the
        // files between it and the path's come first.
        if let Some(newer) = self.file.and_then(|id| newer_rotation(&self.path, id)) {
            if let Ok(f) = File::open(&newer) {
                tracing::info!(path = %self.path.display(), next = %newer.display(), "file source: the file was rotated more than once: reading the one rotated after it");
                self.restart_in(f);
                return Ok(());
            }
        }
        tracing::info!(path = %self.path.display(), "file source: the file was rotated: reading the new one from its start");
        self.restart_at_path()
    }

    /// Whether the file read was truncated or rewritten in place (it ends before the
    /// position, or no longer begins as read); then reading goes on from the position
    /// in the copy `copytruncate` left beside it, if there is one (the path's file
    /// follows it as after a rotation), else in the file again from its start. Looked
    /// at before every read of a followed file, not only at its end: a source behind a
    /// rotation would read the new bytes past its position, the middle of their lines.
    fn follow_truncation(&mut self) -> Result<(), ConnectorError> {
        let Some(reader) = self.reader.as_ref() else {
            return Ok(());
        };
        let file = reader.get_ref();
        let len = file.metadata().map_err(|e| self.io("reading", e))?.len();
        if len >= self.pos && head(file, self.pos) == self.head {
            return Ok(());
        }
        if let Some((copy, f)) = self.copy_at_position(HeadPrint::of(&self.head))? {
            tracing::info!(path = %self.path.display(), copy = %copy.display(), position = self.pos, "file source: the file was copied and truncated in place: reading on in the copy, then the file from its start");
            self.reader = Some(BufReader::with_capacity(1 << 20, f));
            return Ok(());
        }
        tracing::warn!(path = %self.path.display(), position = self.pos, length = len, "file source: the file was truncated or rewritten in place: reading it again from its start; lines written after the position and before the truncation were not read (no copy of the file beside it begins as it did)");
        self.restart_at_path()
    }

    /// The copy `copytruncate` left of the file read (`find_copy`: it begins as `print`
    /// says the file did), opened at the position and made the file read; `None` if
    /// there is none. The path's file follows it as after a rotation (`rotated`).
    fn copy_at_position(
        &mut self,
        print: HeadPrint,
    ) -> Result<Option<(PathBuf, File)>, ConnectorError> {
        let Some(copy) = find_copy(&self.path, print, self.pos) else {
            return Ok(None);
        };
        let Ok(mut f) = File::open(&copy) else {
            return Ok(None); // gone since: as if there were none
        };
        f.seek(SeekFrom::Start(self.pos))
            .map_err(|e| self.io("reading the copy of", e))?;
        self.file = f.metadata().ok().as_ref().and_then(FileId::of);
        // Read again from the position, which a CSV row not complete yet begins at.
        self.forget_partial_row();
        Ok(Some((copy, f)))
    }

    /// The rest of a file that will not grow any more, a last line without its end
    /// included.
    fn take_rest(&mut self, rest: &[u8], out: &mut Vec<Record>, bad: &mut Vec<BadRecord>) {
        let mut lines = Lines {
            path: &self.path,
            line: &mut self.line,
            pos: &mut self.pos,
            head: &mut self.head,
            schema_check: self.schema_check.as_deref(),
            csv: self.csv.as_mut(),
            max_line: self.max_line,
        };
        for raw in rest.split_inclusive(|b| *b == b'\n') {
            lines.take(raw, out, bad);
        }
        lines.end_of_file(out, bad);
    }
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
        let (mut stored, mut print) = (None, None);
        if let Some(v) = offset {
            let o: FileOffset = connectd_sdk::error::parse_offset(v, "file source")?;
            self.pos = o.pos;
            self.line = o.line;
            (stored, print) = (o.file, o.head);
        }
        let Some(mut f) = self.file_of_checkpoint(stored)? else {
            return Ok(()); // followed, and not there yet: `poll` looks for it
        };
        let len = f
            .metadata()
            .map_err(|e| ConnectorError::io(format!("file source: {}", self.path.display()), e))?
            .len();
        // Followed, a file is truncated by rotation (`copytruncate`): one that no longer
        // begins as it did, or ends before the position, is read from its start.
        if self.follow && (len < self.pos || print.is_some_and(|p| !p.matches(&f))) {
            // Copied first (`copytruncate`): the copy's rest, then the file from its
            // start.
            let copy = match print {
                Some(p) => self.copy_at_position(p)?,
                None => None,
            };
            match copy {
                Some((copy, copied)) => {
                    tracing::info!(path = %self.path.display(), copy = %copy.display(), position = self.pos, "file source: the file was copied and truncated in place since the checkpoint: reading the rest of the copy first");
                    f = copied;
                }
                None => {
                    tracing::warn!(path = %self.path.display(), position = self.pos, length = len, "file source: the file was truncated or rewritten in place since the checkpoint: reading it from its start");
                    (self.pos, self.line) = (0, 0);
                }
            }
        }
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
        if let (Some(csv), true) = (&mut self.csv, self.pos > 0) {
            csv.read_header(&f).map_err(|why| {
                ConnectorError::permanent(format!("file source: {}: {why}", self.path.display()))
            })?;
        }
        f.seek(SeekFrom::Start(self.pos))
            .map_err(|e| ConnectorError::io(format!("file source: {}", self.path.display()), e))?;
        self.head = head(&f, self.pos);
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
        let mut out = Vec::with_capacity(max.min(4096));
        if self.reader.is_none() && self.follow {
            if !self.path.exists() {
                return Ok(SourcePoll::Idle(self.poll_interval));
            }
            tracing::info!(path = %self.path.display(), "file source: the file appeared");
            self.restart_at_path()?;
        }
        // Before reading what was added since the end was reached: read past the
        // position of a file rewritten in place, it would be the middle of its lines.
        if self.follow {
            if std::mem::take(&mut self.at_end) {
                self.rotated(&mut out, bad)?;
            }
            self.follow_truncation()?;
        }
        let Some(reader) = self.reader.as_mut() else {
            return Err(ConnectorError::permanent("file source: polled before open"));
        };
        let mut lines = Lines {
            path: &self.path,
            line: &mut self.line,
            pos: &mut self.pos,
            head: &mut self.head,
            schema_check: self.schema_check.as_deref(),
            csv: self.csv.as_mut(),
            max_line: self.max_line,
        };
        let pos_before = *lines.pos;
        let reading =
            |e| ConnectorError::io(format!("file source: reading {}", self.path.display()), e);
        while out.len() < max {
            // A whole line in the reader's buffer is parsed where it lies (no copy).
            let chunk = reader.fill_buf().map_err(reading)?;
            if chunk.is_empty() {
                if !self.follow {
                    lines.end_of_file(&mut out, bad);
                }
                self.at_end = true;
                break;
            }
            if let Some(end) = memchr::memchr(b'\n', chunk) {
                let line = &chunk[..=end];
                if line.len() > self.max_line {
                    let kept = &line[..line.len().min(KEPT_OF_LONG_LINE)];
                    lines.too_long(kept, line.len() as u64, self.max_line, bad);
                } else {
                    lines.take(line, &mut out, bad);
                }
                reader.consume(end + 1);
                continue;
            }
            // A line across the buffer's end, or the last one without its end.
            self.buf.clear();
            let read = read_line_capped(reader, &mut self.buf, self.max_line).map_err(reading)?;
            if !read.ended && self.follow {
                // A line still being written: read it again once it is complete.
                let back = i64::try_from(read.len).unwrap_or(i64::MAX);
                reader.seek(SeekFrom::Current(-back)).map_err(|e| {
                    ConnectorError::io(format!("file source: {}", self.path.display()), e)
                })?;
                self.at_end = true;
                break;
            }
            if read.len > self.max_line as u64 {
                lines.too_long(&self.buf, read.len, self.max_line, bad);
                continue;
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

    /// A checkpoint from before positions named their file and its first bytes
    /// matches on the byte position and line alone.
    fn same_position(&self, held: &serde_json::Value, now: &serde_json::Value) -> bool {
        let parse = |v: &serde_json::Value| serde_json::from_value::<FileOffset>(v.clone()).ok();
        let (Some(held), Some(now)) = (parse(held), parse(now)) else {
            return held == now;
        };
        (held.pos, held.line) == (now.pos, now.line)
            && held.file.is_none_or(|f| Some(f) == now.file)
            && held.head.is_none_or(|h| Some(h) == now.head)
    }

    fn offset(&self) -> serde_json::Value {
        serde_json::to_value(FileOffset {
            pos: self.pos,
            line: self.line,
            file: self.file,
            // Of the bytes read up to the position, not of the file as it is now: a file
            // rewritten after its end was read, before the source looked again, would
            // give a print of the new bytes beside a position in the old ones, and a
            // restart would take the position as valid in the new file.
            head: Some(HeadPrint::of(&self.head)),
        })
        .unwrap_or_default()
    }
}

mod csv_rows;
mod lines;
mod long_lines;
pub use csv_rows::CsvReadOptions;
use csv_rows::CsvRows;
use lines::Lines;
use long_lines::{read_line_capped, KEPT_OF_LONG_LINE};

#[cfg(test)]
mod csv_rotation_tests;
#[cfg(test)]
mod long_line_tests;
#[cfg(test)]
mod rotation_tests;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn number(r: &Record) -> i64 {
        match r.value.as_object().and_then(|o| o.get("n")) {
            Some(connectd_sdk::Value::Int(n)) => *n,
            other => panic!("no number in {other:?}"),
        }
    }

    pub(super) fn source(path: PathBuf, follow: bool) -> FileSource {
        FileSource {
            path,
            follow,
            poll_interval: Duration::from_millis(10),
            reader: None,
            pos: 0,
            line: 0,
            buf: Vec::new(),
            max_line: DEFAULT_MAX_LINE,
            schema_check: None,
            csv: None,
            stats: Arc::default(),
            file: None,
            head: Vec::new(),
            at_end: false,
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

    /// A file that opens with a UTF-8 byte order mark (as some Windows editors save
    /// it): its first line is JSON after the mark.
    #[tokio::test]
    async fn a_byte_order_mark_before_the_first_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, b"\xef\xbb\xbf{\"n\":1}\r\n{\"n\":2}\r\n").unwrap();
        let mut s = source(path, false);
        s.open(None).await.unwrap();
        let mut bad = Vec::new();
        let SourcePoll::Batch(records) = s.poll(10, &mut bad).await.unwrap() else {
            panic!("both lines come out");
        };
        assert_eq!(records.iter().map(number).collect::<Vec<_>>(), [1, 2]);
        assert!(bad.is_empty(), "{bad:?}");
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
