//! The file source reads CSV (`format: csv`): rows named by the header, typed columns,
//! quoted fields that hold commas, quotes and line ends; a row the `csv` sink wrote
//! reads back as the record it was; a bad row is the row's error; and a restart while a
//! row is half written reads it once, whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{json_lines, run_to_end, signal, spawn, wait_with_deadline, write_pipeline};
use serde_json::{json, Value};

/// A CSV field as RFC 4180 writes it: quoted when it holds a delimiter, a quote or a
/// line end, its quotes doubled.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Row `i`: its CSV line and the record it must become. Every seventh note holds a
/// line end, every fifth a quote, every third a comma; every eleventh row has no qty.
fn row(i: u64) -> (String, Value) {
    let mut note = format!("note {i}");
    if i.is_multiple_of(3) {
        note.push_str(", with a comma");
    }
    if i.is_multiple_of(5) {
        note.push_str(" and a \"quote\"");
    }
    if i.is_multiple_of(7) {
        note.push_str("\nover two lines");
    }
    let price = i as f64 * 0.25 + 0.5;
    let qty = (!i.is_multiple_of(11)).then_some(i as i64 * 3 - 40);
    let sym = format!("S{}", i % 13);
    let line = format!(
        "{i},{sym},{price},{},{}\n",
        qty.map(|q| q.to_string()).unwrap_or_default(),
        field(&note)
    );
    let record = json!({"id": i, "sym": sym, "price": price, "qty": qty, "note": note});
    (line, record)
}

const HEADER: &str = "id,sym,price,qty,note\n";
const CSV_OPTIONS: &str = "{types: {id: int, price: float, qty: int}}";

/// The records of a JSON-lines file, by `id`.
fn by_id(path: &std::path::Path) -> Vec<Value> {
    let mut rows = json_lines(path);
    rows.sort_by_key(|r| r["id"].as_u64());
    rows
}

/// Runs pipeline file `cfg` to its end, which must be a success.
fn run_to_success(dir: &std::path::Path, cfg: &std::path::Path) {
    let out = run_to_end(dir, cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn csv_rows_become_typed_records_and_read_back_as_the_csv_sink_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from(HEADER);
    let mut want = Vec::new();
    for i in 1..=2000 {
        let (line, record) = row(i);
        input.push_str(&line);
        want.push(record);
        if i == 500 {
            input.push_str("501x,S1,1.0,ten,bad qty\n");
        }
        if i == 900 {
            input.push_str("901x,S1,1.0\n");
        }
    }
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let first = write_pipeline(
        dir.path(),
        "first.yaml",
        &format!(
            "name: first\nerrors: {{tolerance: all, dlq: {{path: dlq.jsonl}}}}\nsources:\n  rows: {{type: file, path: in.csv, format: csv, csv: {CSV_OPTIONS}}}\nsinks:\n  records: {{type: jsonl, inputs: [rows], path: out/first.jsonl}}\n  again: {{type: csv, inputs: [rows], path: out/again.csv, columns: [id, sym, price, qty, note]}}\n"
        ),
    );
    run_to_success(dir.path(), &first);
    assert_eq!(by_id(&dir.path().join("out/first.jsonl")), want);

    let dlq = json_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let line_of = |id: u64| {
        // The header, then each row's lines: a note with a line end takes two.
        2 + (1..id).map(|i| 1 + u64::from(i % 7 == 0)).sum::<u64>()
    };
    let reasons: Vec<(String, String)> = dlq
        .iter()
        .map(|l| {
            (
                l["position"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        reasons[0]
            .0
            .starts_with(&format!("line {} of ", line_of(501)))
            && reasons[0]
                .1
                .contains("the field `id` is `501x`: not an integer"),
        "{reasons:?}"
    );
    assert!(
        reasons[1]
            .0
            .starts_with(&format!("line {} of ", line_of(901) + 1))
            && reasons[1].1.contains("3 fields, where the columns are 5"),
        "{reasons:?}"
    );

    // What the csv sink wrote reads back as the records it was given.
    let second = write_pipeline(
        dir.path(),
        "second.yaml",
        &format!(
            "name: second\nsources:\n  rows: {{type: file, path: out/again.csv, format: csv, csv: {CSV_OPTIONS}}}\nsinks:\n  records: {{type: jsonl, inputs: [rows], path: out/second.jsonl}}\n"
        ),
    );
    run_to_success(dir.path(), &second);
    assert_eq!(by_id(&dir.path().join("out/second.jsonl")), want);
}

/// Waits until `path` holds `n` JSON lines.
fn wait_for_lines(path: &std::path::Path, n: usize) {
    let start = Instant::now();
    while json_lines(path).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {n} lines",
            json_lines(path).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A followed CSV file whose row is half written (its quoted note open across a line
/// end) when the worker is killed: checkpoints taken meanwhile hold the position of the
/// row's start, so the restarted worker reads it whole, once.
#[test]
fn a_row_half_written_at_a_kill_is_read_once_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(HEADER.as_bytes()).unwrap();
    let mut want = Vec::new();
    for i in 1..=50 {
        let (line, record) = row(i);
        f.write_all(line.as_bytes()).unwrap();
        want.push(record);
    }
    f.write_all(b"51,S0,1.5,3,\"the first half\n").unwrap();
    f.flush().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: tail\ncheckpoint: {{interval: 50ms}}\nsources:\n  rows: {{type: file, path: in.csv, follow: true, poll_interval: 20ms, format: csv, csv: {CSV_OPTIONS}}}\nsinks:\n  records: {{type: jsonl, inputs: [rows], path: out.jsonl}}\n"
        ),
    );
    let out = dir.path().join("out.jsonl");
    let mut child = spawn(dir.path(), &cfg, &[]);
    wait_for_lines(&out, 50);
    // Checkpoints go on while the row is open.
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGKILL);
    let _ = child.wait();

    f.write_all(b"and the second\"\n").unwrap();
    want.push(json!({"id": 51, "sym": "S0", "price": 1.5, "qty": 3, "note": "the first half\nand the second"}));
    for i in 52..=60 {
        let (line, record) = row(i);
        f.write_all(line.as_bytes()).unwrap();
        want.push(record);
    }
    f.flush().unwrap();
    let mut child = spawn(dir.path(), &cfg, &[]);
    wait_for_lines(&out, 60);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    assert_eq!(json_lines(&out), want);
}

/// Settings that cannot work are named before anything runs.
#[test]
fn csv_settings_that_cannot_work_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), HEADER).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  a: {type: file, path: in.csv, format: csv, csv: {header: false, delimiter: ';;'}}\n  b: {type: file, path: in.csv, csv: {header: false}}\n  c: {type: file, path: in.csv, format: csv, csv: {columns: [x, x], types: {y: int}}}\nsinks:\n  out: {type: jsonl, inputs: [a, b, c], path: out.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        "with `header: false` the columns need names",
        "expected a single ASCII character, found `;;`",
        "CSV settings need `format: csv`",
        "`x` names two columns",
        "`y` is none of `columns`",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
}
