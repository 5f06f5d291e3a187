//! Lines of a file into records: JSON values or CSV rows, a bad one to the DLQ with its
//! line number; the position moves past whole records only.

use connectd_sdk::{BadRecord, Record};

use super::csv_rows::{CsvRows, Row};
use super::long_lines::KEPT_OF_LONG_LINE;
use crate::json_schema::JsonSchemaCheck;
use crate::sources::file_identity::HEAD_BYTES;

/// What parsing a line needs of the source (borrowed apart from its reader).
pub(super) struct Lines<'a> {
    pub(super) path: &'a std::path::Path,
    pub(super) line: &'a mut u64,
    pub(super) pos: &'a mut u64,
    /// The file's first bytes read, kept as they pass.
    pub(super) head: &'a mut Vec<u8>,
    pub(super) schema_check: Option<&'a JsonSchemaCheck>,
    pub(super) csv: Option<&'a mut CsvRows>,
    pub(super) max_line: usize,
}

impl Lines<'_> {
    /// A line of `len` bytes, over `max`, of which `first` was kept: to the
    /// dead-letter queue, the position past it.
    pub(super) fn too_long(
        &mut self,
        first: &[u8],
        len: u64,
        max: usize,
        bad: &mut Vec<BadRecord>,
    ) {
        // A CSV row the line continues goes with it.
        let held = self
            .csv
            .as_deref_mut()
            .map(CsvRows::take_row)
            .unwrap_or_default();
        if !held.is_empty() {
            self.passed(&held);
        }
        if self.head.len() < HEAD_BYTES {
            let more = (HEAD_BYTES - self.head.len()).min(first.len());
            self.head.extend_from_slice(&first[..more]);
        }
        let start = *self.pos;
        *self.pos += len;
        *self.line += 1;
        bad.push(BadRecord::input(
            first,
            format!(
                "line {} of {} (bytes {start}..{})",
                self.line,
                self.path.display(),
                *self.pos
            ),
            format!(
                "the line is {len} bytes, longer than `max_line_bytes` ({max}): not read; its first {} bytes are kept here",
                first.len()
            ),
        ));
    }

    /// One line read (with its end, if it has one): a record, a bad record, or nothing
    /// for a blank line; the position moves past it.
    pub(super) fn take(&mut self, raw: &[u8], out: &mut Vec<Record>, bad: &mut Vec<BadRecord>) {
        if self.csv.is_some() {
            return self.take_csv(raw, out, bad);
        }
        // A byte order mark opens files saved by some Windows editors: not JSON.
        let unmarked = match *self.pos {
            0 => raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw),
            _ => raw,
        };
        if self.head.len() < HEAD_BYTES {
            let more = (HEAD_BYTES - self.head.len()).min(raw.len());
            self.head.extend_from_slice(&raw[..more]);
        }
        *self.pos += raw.len() as u64;
        *self.line += 1;
        let text = trim_line(unmarked);
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
            Err(reason) => bad.push(BadRecord::input(
                text,
                format!("line {} of {}", self.line, self.path.display()),
                reason,
            )),
        }
    }

    /// Bytes read past: the position moves over them, the lines are counted and the
    /// file's first bytes kept.
    fn passed(&mut self, bytes: &[u8]) {
        if self.head.len() < HEAD_BYTES {
            let more = (HEAD_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..more]);
        }
        *self.pos += bytes.len() as u64;
        let ends = memchr::memchr_iter(b'\n', bytes).count() as u64;
        *self.line += ends + u64::from(!bytes.ends_with(b"\n"));
    }

    /// One line of a CSV file: a row, the header, a row's error, or part of a row (its
    /// quoted field holds a line end): then the position stays at the row's start.
    fn take_csv(&mut self, raw: &[u8], out: &mut Vec<Record>, bad: &mut Vec<BadRecord>) {
        let Some(csv) = self.csv.as_deref_mut() else {
            return;
        };
        if csv.partial_len() == 0 && trim_line(raw).is_empty() {
            self.passed(raw);
            return;
        }
        let row = csv.line(raw, *self.pos == 0);
        if matches!(row, Row::Incomplete) && csv.partial_len() <= self.max_line {
            return;
        }
        let bytes = csv.take_row();
        let first_line = *self.line + 1;
        self.passed(&bytes);
        let at = format!("line {first_line} of {}", self.path.display());
        let checked = match row {
            Row::Header => return,
            Row::Record(v) => match self.schema_check {
                Some(check) => check.check(&v).map(|()| v),
                None => Ok(v),
            },
            Row::Bad(why) => Err(why),
            Row::Incomplete => Err(format!(
                "a quoted field runs past `max_line_bytes` ({}): a `\"` not closed?",
                self.max_line
            )),
        };
        match checked {
            Ok(v) => out.push(Record::new(v)),
            Err(why) => {
                let kept = &bytes[..bytes.len().min(KEPT_OF_LONG_LINE)];
                bad.push(BadRecord::input(trim_line(kept), at, format!("CSV: {why}")));
            }
        }
    }

    /// The file will not grow: a CSV row still open (a quoted field not closed) is the
    /// row's error, not left unread.
    pub(super) fn end_of_file(&mut self, out: &mut Vec<Record>, bad: &mut Vec<BadRecord>) {
        if self.csv.as_ref().is_some_and(|c| c.partial_len() > 0) {
            self.take_csv(b"", out, bad);
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
