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
