//! Byte counters on `/metrics` (issue 19): `connectd_source_bytes_total` counts what a
//! source read, `connectd_sink_bytes_total` what a sink committed. Checked against the
//! sizes of the input file and of the output files, measured here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn metric(text: &str, name: &str, component: &str) -> Option<u64> {
    text.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{")) && l.contains(&format!("component=\"{component}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn bytes_in_and_out_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..5_000 {
        input.push_str(&format!("{{\"id\":{i},\"name\":\"n{}\"}}\n", i % 13));
    }
    std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
    // `follow` keeps the worker up after the input is read, for the scrape.
    write_pipeline(
        dir.path(),
        "p.yaml",
        "name: bytes\ncheckpoint: {interval: 200ms}\nsources:\n  lines: {type: file, path: in.jsonl, follow: true}\nsinks:\n  csv_out: {type: csv, inputs: [lines], path: out/a.csv, columns: [id, name]}\n  jsonl_out: {type: jsonl, inputs: [lines], path: out/a.jsonl}\n",
    );
    let (mut child, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let size = |p: &str| std::fs::metadata(dir.path().join(p)).map_or(0, |m| m.len());
    let started = Instant::now();
    loop {
        let text = http("GET", port, "/metrics", None).1;
        let got = (
            metric(&text, "connectd_source_bytes_total", "lines"),
            metric(&text, "connectd_sink_bytes_total", "csv_out"),
            metric(&text, "connectd_sink_bytes_total", "jsonl_out"),
        );
        let want = (
            Some(input.len() as u64),
            Some(size("out/a.csv")),
            Some(size("out/a.jsonl")),
        );
        let csv_rows = std::fs::read_to_string(dir.path().join("out/a.csv"))
            .unwrap_or_default()
            .lines()
            .count();
        if csv_rows == 5_001 && got == want {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "got {got:?}, files {want:?}, {csv_rows} csv lines"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

/// Polls `/metrics` until `want` holds for every (metric, component), or fails.
fn wait_for_bytes(port: u16, want: &[(&str, &str, u64)], child: &std::process::Child) {
    let started = Instant::now();
    loop {
        let text = http("GET", port, "/metrics", None).1;
        let got: Vec<Option<u64>> = want.iter().map(|(m, c, _)| metric(&text, m, c)).collect();
        if got.iter().zip(want).all(|(g, (_, _, w))| *g == Some(*w)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "got {got:?}, want {want:?}\n{}",
            stderr_tail(child, 3000)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An Avro file source counts the file's bytes (written by connectd's own avro sink
/// first); the database sinks count the bytes of the values they committed, computed
/// here from the input: MySQL's BIGINT as 8 bytes and text by length, MongoDB's
/// documents by their BSON size.
#[test]
fn avro_sources_and_database_sinks_count_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..3_000).map(|i| format!("n{}", i % 113)).collect();
    let input: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{{\"id\":{i},\"name\":\"{n}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
    let to_avro = write_pipeline(
        dir.path(),
        "to_avro.yaml",
        "name: to_avro\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  archive: {type: avro, inputs: [lines], path: out/in.avro, schema: '{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"name\",\"type\":\"string\"}]}'}\n",
    );
    let out = run_to_end(dir.path(), &to_avro);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let avro_size = std::fs::metadata(dir.path().join("out/in.avro"))
        .unwrap()
        .len();

    let (db, mysql_url) = common::mysql::fresh_database("bytes");
    let mongo_db = format!("bytes_{}", std::process::id());
    write_pipeline(
        dir.path(),
        "p.yaml",
        &format!("name: dbbytes\ncheckpoint: {{interval: 200ms}}\nsources:\n  archived: {{type: file, path: out/in.avro, format: avro}}\n  lines: {{type: file, path: in.jsonl, follow: true}}\nsinks:\n  copy: {{type: jsonl, inputs: [archived], path: out/copy.jsonl}}\n  rows:\n    type: mysql\n    inputs: [lines]\n    url: {mysql_url}\n    table: t\n    columns: [id, name]\n    create_table: {{id: BIGINT PRIMARY KEY, name: VARCHAR(16)}}\n  docs: {{type: mongodb, inputs: [lines], uri: \"{}\", database: {mongo_db}, collection: c, id: [id]}}\n", common::mongo::url()),
    );
    let (mut child, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let text_bytes: u64 = names.iter().map(|n| n.len() as u64).sum();
    let rows = names.len() as u64;
    // {id: int64, name: string, _id: int64}: 4 (length) + 1 (end) + per element a type
    // byte and the key as a C string; 8 per int64, 4 + len + 1 per string.
    let bson = rows * (5 + (1 + 3 + 8) + (1 + 5 + 4 + 1) + (1 + 4 + 8)) + text_bytes;
    wait_for_bytes(
        port,
        &[
            ("connectd_source_bytes_total", "archived", avro_size),
            ("connectd_source_bytes_total", "lines", input.len() as u64),
            ("connectd_sink_bytes_total", "rows", rows * 8 + text_bytes),
            ("connectd_sink_bytes_total", "docs", bson),
        ],
        &child,
    );
    assert_eq!(
        read(dir.path().join("out/copy.jsonl")).lines().count(),
        names.len()
    );
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    common::mysql::query(&[&format!("DROP DATABASE {db}")]);
}
