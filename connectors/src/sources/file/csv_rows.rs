//! `format: csv`: a file of CSV rows (RFC 4180, as the `csv` sink writes them) read into
//! records, one object per row named by the header or by `columns`. A quoted field may
//! hold line ends: a row is complete where `csv_core` says it ends, and the source's
//! position moves only past complete rows, so a restart never begins inside one.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use compact_str::CompactString;
use connectd_sdk::{Object, Value};
use csv_core::ReadRecordResult;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How `format: csv` reads a file.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvReadOptions {
    /// The first row names the columns (the default); it is skipped when `columns`
    /// names them.
    #[serde(default = "yes")]
    pub header: bool,
    /// The field names, in column order; needed with `header: false`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// One ASCII character; `\t` for a tab.
    #[serde(default = "crate::csv_delimiter::comma")]
    #[schemars(extend("pattern" = "^(.|\\\\t)$"))]
    pub delimiter: String,
    /// Columns read as numbers or booleans (`int`, `float`, `bool`); the others are
    /// text. An empty cell of a typed column is null (as the `csv` sink writes null);
    /// a cell that is not of its type is the row's error.
    #[serde(default)]
    pub types: BTreeMap<String, CellType>,
}

impl Default for CsvReadOptions {
    fn default() -> Self {
        Self {
            header: true,
            columns: Vec::new(),
            delimiter: crate::csv_delimiter::comma(),
            types: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CellType {
    #[serde(alias = "string")]
    Text,
    #[serde(alias = "integer", alias = "long")]
    Int,
    #[serde(alias = "number", alias = "double")]
    Float,
    #[serde(alias = "boolean")]
    Bool,
}

/// The settings checked, and what reading has learnt: the columns' names and the
/// row being read.
pub struct CsvRows {
    header: bool,
    /// From `columns`; else from the header row of the file read.
    names: Option<Arc<[CompactString]>>,
    names_given: bool,
    types: BTreeMap<String, CellType>,
    /// The bytes of the row being read, as read: a row whose quoted field holds a line
    /// end goes on over lines.
    pending: Vec<u8>,
    /// The row's parse so far, line by line (each line is parsed once: a 16 MiB
    /// field of a million lines is not parsed a million times).
    parser: csv_core::Reader,
    /// Its fields' bytes unquoted, and where each ends; `cells_len`, `ends_len`: how
    /// much of them is written.
    cells: Vec<u8>,
    cells_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
}

impl std::fmt::Debug for CsvRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows")
            .field("names", &self.names)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What one line does to the row being read.
pub enum Row {
    /// The row goes on in the next line.
    Incomplete,
    /// The header row: the names, or skipped.
    Header,
    Record(Value),
    /// The row's error.
    Bad(String),
}

impl CsvRows {
    /// Checks the options; the problems by option name.
    pub fn new(o: CsvReadOptions) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let delimiter = crate::csv_delimiter::parse(&o.delimiter).unwrap_or_else(|why| {
            problems.push(("csv.delimiter", why));
            b','
        });
        if !o.header && o.columns.is_empty() {
            problems.push((
                "csv.columns",
                "with `header: false` the columns need names: `columns: [a, b, ...]`".into(),
            ));
        }
        if let Err(why) = check_names(o.columns.iter().map(String::as_str)) {
            problems.push(("csv.columns", why));
        }
        if !o.columns.is_empty() {
            for name in o.types.keys() {
                if !o.columns.contains(name) {
                    problems.push((
                        "csv.types",
                        format!("`{name}` is none of `columns` ({})", o.columns.join(", ")),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let names_given = !o.columns.is_empty();
        Ok(Self {
            header: o.header,
            names: names_given.then(|| o.columns.iter().map(CompactString::from).collect()),
            names_given,
            types: o.types,
            pending: Vec::new(),
            parser: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            cells: vec![0; 256],
            cells_len: 0,
            ends: vec![0; 16],
            ends_len: 0,
        })
    }

    /// Reads the header row from the start of `file` (at a position past it, after a
    /// restart). Nothing to do without a header or with `columns`.
    pub fn read_header(&mut self, file: &std::fs::File) -> Result<(), String> {
        if !self.header || self.names_given {
            return Ok(());
        }
        // Read where it lies, not through the file's cursor, which the caller has set.
        let mut start = vec![0u8; 1 << 20];
        let mut n = 0;
        while n < start.len() {
            match file.read_at(&mut start[n..], n as u64) {
                Ok(0) => break,
                Ok(read) => n += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read the header row: {e}")),
            }
        }
        let whole = n < start.len();
        start.truncate(n);
        if whole {
            start.push(b'\n'); // a file of a header row without its line end
        }
        let text = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&start);
        // The first line end outside quotes ends it.
        self.take_row();
        let complete = self.feed(text);
        let names = self.take_cells();
        self.take_row();
        match complete {
            true => self.take_names(&names),
            false => Err("the header row does not end in the file's first MiB".into()),
        }
    }

    /// How many bytes of a row are read while it is not complete.
    pub fn partial_len(&self) -> usize {
        self.pending.len()
    }

    /// The bytes of the row read (or read in part), as read; the next line begins a row.
    pub fn take_row(&mut self) -> Vec<u8> {
        self.parser.reset();
        (self.cells_len, self.ends_len) = (0, 0);
        std::mem::take(&mut self.pending)
    }

    /// Adds `line` (with its end, if it has one; none, or empty: the end of the file) to
    /// the row being read. The caller takes the row's bytes (`take_row`) after any
    /// answer but `Incomplete`. `at_start`: the row begins the file.
    pub fn line(&mut self, line: &[u8], at_start: bool) -> Row {
        self.pending.extend_from_slice(line);
        let mut complete = self.feed(line);
        // The last line of a file that will not grow: ended here.
        let at_eof = !line.ends_with(b"\n");
        if !complete && at_eof {
            complete = self.feed(b"\n");
        }
        if !complete {
            return if at_eof {
                Row::Bad("the file ends inside a quoted field (a `\"` not closed)".into())
            } else {
                Row::Incomplete
            };
        }
        let cells = self.take_cells();
        if at_start && self.header {
            if self.names_given {
                return Row::Header;
            }
            return match self.take_names(&cells) {
                Ok(()) => Row::Header,
                Err(why) => Row::Bad(why),
            };
        }
        self.record(&cells)
    }

    /// Parses `input` on from where the row's parse is; true once the row is complete.
    fn feed(&mut self, mut input: &[u8]) -> bool {
        loop {
            let (result, n_in, n_out, n_ends) = self.parser.read_record(
                input,
                &mut self.cells[self.cells_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[n_in..];
            self.cells_len += n_out;
            self.ends_len += n_ends;
            match result {
                ReadRecordResult::Record => return true,
                ReadRecordResult::OutputFull => self.cells.resize(self.cells.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return false,
            }
        }
    }

    /// The complete row's fields, unquoted.
    fn take_cells(&self) -> Vec<Vec<u8>> {
        let mut start = 0;
        self.ends[..self.ends_len]
            .iter()
            .map(|&end| {
                let cell = self.cells[start..end].to_vec();
                start = end;
                cell
            })
            .collect()
    }

    fn take_names(&mut self, cells: &[Vec<u8>]) -> Result<(), String> {
        let names: Vec<&str> = cells
            .iter()
            .map(|c| std::str::from_utf8(c))
            .collect::<Result<_, _>>()
            .map_err(|_| "the header row is not UTF-8".to_string())?;
        check_names(names.iter().copied()).map_err(|why| format!("the header row: {why}"))?;
        if let Some(unknown) = self.types.keys().find(|t| !names.contains(&t.as_str())) {
            return Err(format!(
                "`csv.types` names `{unknown}`, which the header row ({}) does not",
                names.join(","),
            ));
        }
        self.names = Some(names.into_iter().map(CompactString::from).collect());
        Ok(())
    }

    fn record(&self, cells: &[Vec<u8>]) -> Row {
        let Some(names) = &self.names else {
            return Row::Bad("no header row names the columns".into());
        };
        if cells.len() != names.len() {
            return Row::Bad(format!(
                "{} fields, where the columns are {} ({})",
                cells.len(),
                names.len(),
                names.join(",")
            ));
        }
        let mut o = Object::with_capacity(names.len());
        for (name, cell) in names.iter().zip(cells) {
            let Ok(text) = std::str::from_utf8(cell) else {
                return Row::Bad(format!("the field `{name}` is not UTF-8"));
            };
            let kind = self.types.get(name.as_str()).copied();
            match typed(text, kind.unwrap_or(CellType::Text)) {
                Ok(v) => o.push_unchecked(name.clone(), v),
                Err(why) => return Row::Bad(format!("the field `{name}` is `{text}`: {why}")),
            }
        }
        Row::Record(Value::Object(o))
    }
}

/// Names for the fields of a row: none empty, none twice.
fn check_names<'n>(names: impl Iterator<Item = &'n str>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            return Err(format!("column {} has no name", i + 1));
        }
        if !seen.insert(name) {
            return Err(format!("`{name}` names two columns"));
        }
    }
    Ok(())
}

/// A cell as its column's type.
fn typed(text: &str, kind: CellType) -> Result<Value, &'static str> {
    if kind == CellType::Text {
        return Ok(Value::str(text));
    }
    let t = text.trim();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    match kind {
        CellType::Text => Ok(Value::str(text)),
        CellType::Int => t
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| "not an integer (64-bit)"),
        CellType::Float => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            Ok(_) => Err("not a finite number"),
            Err(_) => Err("not a number"),
        },
        CellType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("not `true` or `false`"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(options: CsvReadOptions) -> CsvRows {
        CsvRows::new(options).unwrap()
    }

    fn fields(row: Row) -> Vec<(String, Value)> {
        match row {
            Row::Record(Value::Object(o)) => {
                o.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
            }
            Row::Bad(why) => panic!("bad: {why}"),
            _ => panic!("no record"),
        }
    }

    #[test]
    fn a_quoted_field_holds_delimiters_quotes_and_line_ends() {
        let mut r = rows(CsvReadOptions::default());
        assert!(matches!(r.line(b"\xef\xbb\xbfa,b\n", true), Row::Header));
        r.take_row();
        assert!(matches!(
            r.line(b"1,\"x, \"\"y\"\"\n", false),
            Row::Incomplete
        ));
        let row = r.line(b"z\"\n", false);
        assert_eq!(
            fields(row),
            [
                ("a".into(), Value::str("1")),
                ("b".into(), Value::str("x, \"y\"\nz"))
            ]
        );
        r.take_row();
        // The last line of a file, without its end.
        assert_eq!(fields(r.line(b"2,w", false))[1].1, Value::str("w"));
        r.take_row();
        assert!(matches!(r.line(b"3,\"open", false), Row::Bad(why) if why.contains("not closed")));
    }

    #[test]
    fn typed_columns_convert_and_empty_cells_are_null() {
        let mut o = CsvReadOptions {
            header: false,
            columns: vec!["i".into(), "f".into(), "b".into(), "t".into()],
            delimiter: "\\t".into(),
            ..Default::default()
        };
        o.types.insert("i".into(), CellType::Int);
        o.types.insert("f".into(), CellType::Float);
        o.types.insert("b".into(), CellType::Bool);
        let mut r = rows(o);
        let got = fields(r.line(b" 42 \t1.5e3\tTRUE\t\n", true));
        let values: Vec<Value> = got.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                Value::Int(42),
                Value::Float(1500.0),
                Value::Bool(true),
                Value::str("")
            ]
        );
        r.take_row();
        let values: Vec<Value> = fields(r.line(b"\t\t\tx\n", false))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values[..3], [Value::Null, Value::Null, Value::Null]);
        for (line, why) in [
            (
                &b"9223372036854775808\t1\ttrue\tx\n"[..],
                "`i` is `9223372036854775808`: not an integer",
            ),
            (
                b"1\t1e999\ttrue\tx\n",
                "`f` is `1e999`: not a finite number",
            ),
            (b"1\t1\tyes\tx\n", "`b` is `yes`: not `true` or `false`"),
            (b"1\t1\ttrue\n", "3 fields, where the columns are 4"),
        ] {
            r.take_row();
            match r.line(line, false) {
                Row::Bad(got) => assert!(got.contains(why), "{got}"),
                _ => panic!("{why}: not refused"),
            }
        }
    }

    #[test]
    fn a_header_that_cannot_name_fields_is_refused() {
        for (header, why) in [
            (&b"a,,c\n"[..], "column 2 has no name"),
            (b"a,b,a\n", "`a` names two columns"),
        ] {
            let mut r = rows(CsvReadOptions::default());
            match r.line(header, true) {
                Row::Bad(got) => assert!(got.contains(why), "{got}"),
                _ => panic!("{why}: not refused"),
            }
        }
        let mut o = CsvReadOptions::default();
        o.types.insert("price".into(), CellType::Float);
        let mut r = rows(o);
        assert!(matches!(r.line(b"sym,qty\n", true), Row::Bad(why) if why.contains("`price`")));
    }
}
