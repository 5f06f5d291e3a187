//! `PATCH /connectors/{name}/offsets` (KIP-875's alter): a stopped pipeline's sources
//! are moved to new positions in its last checkpoint, each source checking its own
//! offset; the next run starts there. Expected output is computed from the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const LINES: usize = 100;
const TRADES: u64 = 50;

#[test]
fn altered_offsets_are_where_the_next_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..LINES).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/in.jsonl"), &input).unwrap();
    write_pipeline(
        dir.path(),
        "keepalive.yaml",
        "name: keepalive\nsources:\n  gen: {type: trades, seed: 1, rate: 20, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/k.csv, columns: [id]}\n",
    );
    write_pipeline(
        dir.path(),
        "moved.yaml",
        &format!("name: moved\nsources:\n  lines: {{type: file, path: data/in.jsonl}}\n  trades: {{type: trades, seed: 3, rate: 0, count: {TRADES}}}\nsinks:\n  lines_out: {{type: jsonl, inputs: [lines], path: out/lines.jsonl}}\n  trades_out: {{type: csv, inputs: [trades], path: out/trades.csv, columns: [id]}}\n"),
    );
    let (mut child, port) = start_worker(dir.path(), &["--config", "keepalive.yaml", "moved.yaml"]);
    let finished_after = |before: &Value| {
        let started = Instant::now();
        loop {
            let (_, body) = http("GET", port, "/connectors/moved/status", None);
            let s: Value = serde_json::from_str(&body).unwrap();
            if s["state"] == "FINISHED" && s["since"] != before["since"] {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{s}\n{}",
                stderr_tail(&child, 3000)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = finished_after(&Value::Null);
    let (_, body) = http("GET", port, "/connectors/moved/offsets", None);
    let before: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(before["sources"]["lines"]["pos"], input.len(), "{before}");
    assert_eq!(before["sources"]["trades"]["seq"], TRADES, "{before}");
    let start = before["sources"]["trades"]["start"].clone();

    let patch = |body: Value| {
        http_with_body(
            "PATCH",
            port,
            "/connectors/moved/offsets",
            None,
            &body.to_string(),
        )
    };
    let entry = |source: &str, offset: Value| json!({"offsets": [{"partition": {"source": source}, "offset": offset}]});
    // Refused, naming why; nothing changes.
    let (code, body) = patch(entry("nope", json!({"seq": 1})));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("lines, trades"), "{body}");
    let (code, body) = patch(entry("lines", json!({"pos": 5, "line": 1})));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("inside a line"), "{body}");
    let (code, body) = patch(entry("trades", json!({"seq": 1, "start": start, "sq": 2})));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field `sq`"), "{body}");
    let (code, body) = patch(entry("lines", json!({"pos": input.len() + 10, "line": 0})));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("past the end"), "{body}");
    let (code, body) = http_with_body(
        "PATCH",
        port,
        "/connectors/keepalive/offsets",
        None,
        &entry("gen", json!({"seq": 0, "start": 0})).to_string(),
    );
    assert_eq!(code, 409, "a running pipeline: {body}");
    let unchanged: Value =
        serde_json::from_str(&http("GET", port, "/connectors/moved/offsets", None).1).unwrap();
    assert_eq!(unchanged, before);

    // Line 60 starts after 60 lines; trade 40 is the 41st record.
    let pos_60: usize = input.lines().take(60).map(|l| l.len() + 1).sum();
    let (code, body) = patch(json!({"offsets": [
        {"partition": {"source": "lines"}, "offset": {"pos": pos_60, "line": 60}},
        {"partition": {"source": "trades"}, "offset": {"seq": 40, "start": start}},
    ]}));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("altered successfully"), "{body}");
    let (_, body) = http("GET", port, "/connectors/moved/offsets", None);
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after["sources"]["lines"]["pos"], pos_60, "{after}");
    assert_eq!(after["sources"]["trades"]["seq"], 40, "{after}");
    assert_eq!(after["offsets"].as_array().unwrap().len(), 2, "{after}");

    assert_eq!(http("POST", port, "/connectors/moved/restart", None).0, 204);
    finished_after(&first);
    // The first run's output, then what follows the new positions again.
    let lines = read(dir.path().join("out/lines.jsonl"));
    let expected: String = (0..LINES)
        .chain(60..LINES)
        .map(|n| format!("{{\"n\":{n}}}\n"))
        .collect();
    assert_eq!(lines, expected);
    let trades: Vec<String> = read(dir.path().join("out/trades.csv"))
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(trades.len() as u64, TRADES + 10, "{trades:?}");
    assert_eq!(trades[TRADES as usize..], trades[40..TRADES as usize]);
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}
