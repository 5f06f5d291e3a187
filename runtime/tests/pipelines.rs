//! End-to-end behaviour of the `connectd` binary on real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn the_example_runs_from_the_readme_command_and_writes_both_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/iot-monitoring.yaml");
    let mut child = spawn(dir.path(), &example, &[]);
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGTERM must stop cleanly with exit 0, got {status:?}"
    );
    let alerts = read(dir.path().join("out/iot-alerts.csv"));
    let mut lines = alerts.lines();
    assert_eq!(lines.next(), Some("hostname,cpu,usage,occurred_at"));
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.len() > 20,
        "about 10% of ~3000 events are alerts, got {}",
        rows.len()
    );
    for row in rows {
        let usage: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert!(usage > 90.0, "{row}");
    }
    let windows = read(dir.path().join("out/iot-cpu-5m.csv"));
    assert!(windows.starts_with("window_start,window_end,hostname,cpu,avg_usage,max_usage\n"));
}

const FILE_PIPELINE: &str = r#"
name: files
checkpoint: {interval: 50ms}
errors:
  tolerance: all
  dlq: {path: out/dlq.jsonl}
sources:
  lines: {type: file, path: in.jsonl}
transforms:
  priced:
    type: map
    inputs: [lines]
    fields:
      total: price * qty
      day: format_time(ts, "%Y-%m-%d")
    drop: [ts]
sinks:
  out: {type: jsonl, inputs: [priced], path: out/out.jsonl}
"#;

#[test]
fn malformed_lines_go_to_the_dlq_and_every_good_line_reaches_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut good = 0;
    for i in 0..500 {
        match i % 50 {
            7 => input.push_str("{\"price\": 1.5, \"qty\": \n"),
            19 => input.push_str("not json at all\n"),
            33 => input.push_str("{\"price\": \"cheap\", \"qty\": 2, \"ts\": 0}\n"),
            _ => {
                input.push_str(&format!(
                    "{{\"id\": {i}, \"price\": 2.5, \"qty\": {i}, \"ts\": 1700000000000}}\n"
                ));
                good += 1;
            }
        }
    }
    std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", FILE_PIPELINE);
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<serde_json::Value> = read(dir.path().join("out/out.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), good);
    for w in &written {
        let qty = w["qty"].as_f64().unwrap();
        assert_eq!(w["total"].as_f64().unwrap(), 2.5 * qty);
        assert_eq!(w["day"], "2023-11-14");
        assert!(w.get("ts").is_none());
    }
    let dlq: Vec<serde_json::Value> = read(dir.path().join("out/dlq.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        dlq.len(),
        30,
        "10 truncated, 10 not JSON, 10 with a string price"
    );
    let malformed = dlq.iter().filter(|d| d["component"] == "lines").count();
    assert_eq!(malformed, 20);
    let first = &dlq[0];
    assert_eq!(first["position"], "line 8 of in.jsonl");
    assert!(
        first["reason"].as_str().unwrap().contains("malformed JSON"),
        "{first}"
    );
    assert_eq!(first["raw"], "{\"price\": 1.5, \"qty\": ");
    let typed = dlq.iter().find(|d| d["component"] == "priced").unwrap();
    assert!(
        typed["reason"]
            .as_str()
            .unwrap()
            .contains("cannot apply `*`"),
        "{typed}"
    );
    assert_eq!(typed["record"]["value"]["price"], "cheap");
}

#[test]
fn with_tolerance_none_a_bad_line_stops_the_pipeline_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"a\": 1}\n{\"a\": \n{\"a\": 3}\n",
    )
    .unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: strict\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  out: {type: jsonl, inputs: [lines], path: out.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pipeline `strict` failed at `lines`"),
        "{stderr}"
    );
    assert!(stderr.contains("line 2 of in.jsonl"), "{stderr}");
    assert!(
        stderr.contains("errors.tolerance: all"),
        "the error says how to go on: {stderr}"
    );
}

/// A line that is not UTF-8 (a Latin-1 file, a stray binary byte) goes to the DLQ as
/// the bytes it was, in base64: text made of it would have replaced them. With
/// tolerance `none` the error names the line and shows its first bytes.
#[test]
fn a_line_that_is_not_utf8_reaches_the_dlq_byte_for_byte() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let latin1: &[u8] = b"{\"city\": \"Bogot\xe1\"}";
    let binary: &[u8] = b"\xff\xfe{\"a\": 2}";
    let mut input = b"{\"a\": 1}\n".to_vec();
    for line in [latin1, binary] {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"a\": 3}\n");
    std::fs::write(dir.path().join("in.jsonl"), &input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: bytes\nerrors: {tolerance: all, dlq: {path: out/dlq.jsonl}}\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  out: {type: jsonl, inputs: [lines], path: out/out.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read(dir.path().join("out/out.jsonl")),
        "{\"a\":1}\n{\"a\":3}\n"
    );
    let dlq: Vec<serde_json::Value> = read(dir.path().join("out/dlq.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    for (letter, (line, bytes)) in dlq.iter().zip([(2, latin1), (3, binary)]) {
        assert_eq!(letter["position"], format!("line {line} of in.jsonl"));
        assert_eq!(letter["raw"], serde_json::Value::Null, "{letter}");
        let kept = base64::engine::general_purpose::STANDARD
            .decode(letter["raw_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(kept, bytes, "{letter}");
    }

    let strict = write_pipeline(
        dir.path(),
        "strict.yaml",
        "name: strict\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  out: {type: jsonl, inputs: [lines], path: out/strict.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &strict);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "input `{\"city\": \"Bogot\u{fffd}\"}` (18 bytes, not UTF-8) at line 2 of in.jsonl"
        ),
        "{stderr}"
    );
}

/// A state directory that cannot be made is named as such, not as a damaged store to
/// reset.
#[test]
fn a_state_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\": 1}\n").unwrap();
    // A file where the state directory's parent should be.
    std::fs::write(dir.path().join("taken"), "").unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  out: {type: jsonl, inputs: [lines], path: out.jsonl}\n",
    );
    let out = connectd()
        .current_dir(dir.path())
        .args([
            "--admin-addr",
            "off",
            "--state-dir",
            "taken/sub",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the state directory taken/sub/p/state")
            && !stderr.contains("damaged"),
        "{stderr}"
    );
}

/// Event times in epoch seconds (as Yahoo's chart API and many feeds write them): with
/// `time_unit: s` the windows are those of the seconds; without it they are read as
/// milliseconds of January 1970, and the log says which unit they look like (once), as
/// it does for a map's `timestamp`.
#[test]
fn event_times_in_seconds_are_windowed_with_time_unit_and_warned_of_without() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let start = 1_700_000_000u64; // 2023-11-14T22:13:20Z, in seconds
    let mut want = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for i in 0..300u64 {
        let t = start + i;
        input.push_str(&format!("{{\"v\":{i},\"t\":{t}}}\n"));
        let slot = want.entry(t / 60 * 60_000).or_default();
        slot.0 += 1;
        slot.1 += i;
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = |name: &str, unit: &str| {
        write_pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nsources:\n  lines: {{type: file, path: in.jsonl}}\ntransforms:\n  w: {{type: window, inputs: [lines], kind: tumbling, size: 1m, time: t{unit}, aggregates: {{n: count(), total: sum(v)}}}}\nsinks:\n  out: {{type: csv, inputs: [w], path: out/{name}.csv, columns: [window_start, n, total]}}\n"
            ),
        )
    };
    let seconds = pipeline("seconds", ", time_unit: s");
    let out = run_to_end(dir.path(), &seconds);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("time_unit"), "{stderr}");
    let rows: Vec<(u64, (u64, u64))> = read(dir.path().join("out/seconds.csv"))
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<u64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (f[0], (f[1], f[2]))
        })
        .collect();
    assert_eq!(rows, want.into_iter().collect::<Vec<_>>());

    let unset = pipeline("unset", "");
    let out = run_to_end(dir.path(), &unset);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("set `time_unit: s`").count(),
        1,
        "one warning naming the unit: {stderr}"
    );
    assert!(
        stderr.contains(
            "window time `t`: 1700000000 read as epoch milliseconds is 1970-01-20T16:13:20.000Z"
        ),
        "{stderr}"
    );

    // A map's timestamp is an expression: the warning says how to write it.
    let mapped = write_pipeline(
        dir.path(),
        "mapped.yaml",
        "name: mapped\nsources:\n  lines: {type: file, path: in.jsonl}\ntransforms:\n  m: {type: map, inputs: [lines], timestamp: t}\nsinks:\n  out: {type: jsonl, inputs: [m], path: out/mapped.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &mapped);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("map timestamp `t`: 1700000000 read as epoch milliseconds is 1970-01-20T16:13:20.000Z; if it is in another unit (s), write `timestamp: (t) * 1000`")
            .count(),
        1,
        "{stderr}"
    );
}

/// A window's saved groups hold their accumulators in the order of `aggregates`: a
/// pipeline restarted with other aggregates (count and sum before, max and avg now)
/// read a count as a maximum and a sum as an average, and wrote those rows. Now it
/// stops with the reason and writes nothing; with the old configuration back it goes on
/// from its checkpoint, every value right.
#[test]
fn a_window_restarted_with_other_aggregates_refuses_its_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut want = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for i in 0..1000u64 {
        let host = format!("h{}", i % 5);
        input.push_str(&format!(
            "{{\"h\":\"{host}\",\"v\":{i},\"ts\":{}}}\n",
            1_700_000_000_000 + i * 1000
        ));
        let slot = want.entry(host).or_default();
        slot.0 += 1;
        slot.1 += i;
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = |follow: bool, aggregates: &str| {
        write_pipeline(
            dir.path(),
            "p.yaml",
            &format!(
                "name: p\ncheckpoint: {{interval: 100ms}}\nsources:\n  l: {{type: file, path: in.jsonl, follow: {follow}}}\ntransforms:\n  w: {{type: window, inputs: [l], kind: tumbling, size: 1h, time: ts, group_by: [h], aggregates: {aggregates}}}\nsinks:\n  out: {{type: csv, inputs: [w], path: out.csv, columns: [h, a, b]}}\n"
            ),
        )
    };
    let before = "{a: count(), b: sum(v)}";
    // Every record read and checkpointed, every window still open: then stopped.
    let cfg = pipeline(true, before);
    let mut child = spawn(dir.path(), &cfg, &[]);
    std::thread::sleep(Duration::from_secs(2));
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());

    let cfg = pipeline(false, "{a: max(v), b: avg(v)}");
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pipeline `p` failed at `w`: cannot restore state: window: the checkpointed state was saved by another configuration (tumbling size 3600000 ms, group_by [h], aggregates [count(), sum(v)]) than this one's (tumbling size 3600000 ms, group_by [h], aggregates [max(v), avg(v)])"),
        "{stderr}"
    );
    assert_eq!(
        read(dir.path().join("out.csv")).lines().count(),
        1,
        "only the header"
    );

    let cfg = pipeline(false, before);
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: std::collections::BTreeMap<String, (u64, u64)> = read(dir.path().join("out.csv"))
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(rows, want);
}

/// A column whose field no record has (misspelt, or renamed upstream) was written
/// empty on every row without a word; now the log names it once, with the fields the
/// record has. A field some records lack is named once too, and the rows stay as they
/// were.
#[test]
fn a_column_no_record_has_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..100)
        .map(|i| format!("{{\"hostname\":\"h{i}\",\"usage\":{i}}}\n"))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  lines: {type: file, path: in.jsonl}\nsinks:\n  out: {type: csv, inputs: [lines], path: out.csv, columns: [hostnme, usage]}\n",
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = "csv: a record has no field `hostnme`, so column `hostnme` is written empty (NULL); its fields are hostname, usage";
    assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
    assert!(!stderr.contains("field `usage`"), "{stderr}");
    let rows: Vec<String> = read(dir.path().join("out.csv"))
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(rows.len(), 101);
    assert_eq!(rows[1], ",0");
}

/// A CSV file's header names its columns. With `columns` changed between runs, rows of
/// the new columns were appended under the old header without a word; the sink now
/// refuses to open such a file and says how to go on.
#[test]
fn a_csv_file_with_another_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1,\"b\":2,\"c\":3}\n").unwrap();
    let pipeline = |columns: &str| {
        format!("name: p\nsources:\n  lines: {{type: file, path: in.jsonl}}\nsinks:\n  out: {{type: csv, inputs: [lines], path: out.csv, columns: [{columns}]}}\n")
    };
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline("a, b"));
    assert!(run_to_end(dir.path(), &cfg).status.success());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    writeln!(f, "{{\"a\":4,\"b\":5,\"c\":6}}").unwrap();
    write_pipeline(dir.path(), "p.yaml", &pipeline("a, b, c"));
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("out.csv begins with `a,b`, not the header of this sink's columns `a,b,c`"),
        "{stderr}"
    );
    assert_eq!(read(dir.path().join("out.csv")), "a,b\n1,2\n");
    // The way on the message gives: the old file away, the sink's commit record deleted.
    let record = stderr
        .split("delete ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    std::fs::rename(dir.path().join("out.csv"), dir.path().join("old.csv")).unwrap();
    std::fs::remove_file(dir.path().join(record)).unwrap();
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(dir.path().join("out.csv")), "a,b,c\n4,5,6\n");
}

/// A join's output has the left record's fields, then the right's the left lacks: a
/// right field whose name the left has too was left out without a word. It is named
/// once in a warning (not the key, equal on both sides).
#[test]
fn a_join_names_the_right_fields_its_output_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let left: String = (0..20)
        .map(|i| format!("{{\"t\":{},\"k\":{i},\"price\":{i}}}\n", 1000 + i))
        .collect();
    let right: String = (0..20)
        .map(|i| {
            format!(
                "{{\"t\":{},\"k\":{i},\"price\":{},\"name\":\"n{i}\"}}\n",
                1000 + i,
                100 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("l.jsonl"), left).unwrap();
    std::fs::write(dir.path().join("r.jsonl"), right).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  l: {type: file, path: l.jsonl}\n  r: {type: file, path: r.jsonl}\ntransforms:\n  j: {type: join, inputs: [l, r], on: [k], within: 1s, time: t}\nsinks:\n  out: {type: jsonl, inputs: [j], path: out.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows = json_lines(&dir.path().join("out.jsonl"));
    assert_eq!(rows.len(), 20);
    for row in &rows {
        assert_eq!(row["price"], row["k"], "the left's price: {row}");
        assert_eq!(row["name"], format!("n{}", row["k"]), "{row}");
    }
    assert_eq!(
        stderr.matches("left out of the output").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("join of `l` and `r`: the right record's `price` (1")
            && stderr.contains(") is left out of the output, as the left record has a field of that name; set `right_prefix` to keep both"),
        "{stderr}"
    );
    assert!(!stderr.contains("`k` ("), "{stderr}");
}

#[test]
fn a_followed_file_resumes_by_offset_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: tail\ncheckpoint: {interval: 50ms}\nsources:\n  lines: {type: file, path: in.jsonl, follow: true, poll_interval: 20ms}\nsinks:\n  out: {type: csv, inputs: [lines], path: out.csv, columns: [n]}\n",
    );
    let mut expected = String::from("n\n");
    for round in 0..3 {
        let mut child = spawn(dir.path(), &cfg, &[]);
        for i in 0..50 {
            let n = round * 100 + i;
            writeln!(f, "{{\"n\": {n}}}").unwrap();
            expected.push_str(&format!("{n}\n"));
        }
        // A half-written line must wait for its end.
        write!(f, "{{\"n\": {}", round * 100 + 50).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(600));
        writeln!(f, "}}").unwrap();
        expected.push_str(&format!("{}\n", round * 100 + 50));
        std::thread::sleep(Duration::from_millis(400));
        signal(&child, libc::SIGTERM);
        assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    }
    assert_eq!(read(dir.path().join("out.csv")), expected);
}

/// A transform that alone reads a source runs in the source's task (`engine/chains.rs`):
/// its wall-clock tick must still come while the source has nothing to read. Here a
/// dedup with `emit: final` and wall-clock retention emits each key's record only when
/// the key expires, which only a tick does once the followed file goes quiet.
#[test]
fn a_chained_transform_gets_its_wall_clock_ticks_while_its_source_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"id\": 1, \"v\": \"a\"}\n{\"id\": 1, \"v\": \"b\"}\n{\"id\": 2, \"v\": \"c\"}\n",
    )
    .unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: ticks\ncheckpoint: {interval: 100ms}\nsources:\n  lines: {type: file, path: in.jsonl, follow: true, poll_interval: 20ms}\ntransforms:\n  once: {type: dedup, inputs: [lines], key: [id], keep: first, retention: 500ms, emit: final}\nsinks:\n  out: {type: csv, inputs: [once], path: out.csv, columns: [id, v]}\n",
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    let started = std::time::Instant::now();
    let out = dir.path().join("out.csv");
    let rows = || std::fs::read_to_string(&out).unwrap_or_default();
    while rows().lines().count() < 3 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    let mut got: Vec<String> = rows().lines().skip(1).map(String::from).collect();
    got.sort();
    assert_eq!(got, ["1,a", "2,c"], "{}", stderr_tail(&child, 2000));
}

#[test]
fn a_failing_pipeline_stops_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.jsonl"), "{\"a\": 1}\nbroken\n").unwrap();
    write_pipeline(dir.path(), "bad.yaml", "name: bad\nsources:\n  l: {type: file, path: bad.jsonl}\nsinks:\n  o: {type: jsonl, inputs: [l], path: bad-out.jsonl}\n");
    write_pipeline(
        dir.path(),
        "good.yaml",
        "name: good\nsources:\n  g: {type: trades, rate: 2000, count: 3000, seed: 1}\nsinks:\n  o: {type: jsonl, inputs: [g], path: good-out.jsonl}\n",
    );
    let out = connectd()
        .current_dir(dir.path())
        .args(["--admin-addr", "off", "--config", "*.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pipeline `bad` failed"), "{stderr}");
    assert_eq!(
        read(dir.path().join("good-out.jsonl")).lines().count(),
        3000,
        "the good pipeline ran to its end"
    );
}

#[test]
fn metrics_are_served_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: m\ncheckpoint: {interval: 100ms}\nsources:\n  g: {type: iot, rate: 5000}\ntransforms:\n  hot: {type: filter, inputs: [g], where: usage > 50}\n  w:\n    type: window\n    inputs: [g]\n    kind: tumbling\n    size: 1s\n    time: occurred_at\n    late: drop\n    aggregates: {n: count()}\nsinks:\n  o: {type: jsonl, inputs: [hot, w], path: o.jsonl}\n",
    );
    let mut child = common::connectd()
        .current_dir(dir.path())
        .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let body = http_get(port, "/metrics");
    let health = http_get(port, "/healthz");
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    assert!(health.contains("ok"));
    for needle in [
        r#"connectd_records_out_total{component="g",kind="source",pipeline="m"}"#,
        r#"connectd_records_in_total{component="hot",kind="transform",pipeline="m"}"#,
        r#"connectd_records_out_total{component="o",kind="sink",pipeline="m"}"#,
        r#"connectd_checkpoint_duration_seconds_count{component="o",kind="sink",pipeline="m"}"#,
        r#"connectd_last_checkpoint_timestamp_seconds{component="o",kind="sink",pipeline="m"}"#,
    ] {
        let line = body
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{body}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 0.0, "{line}");
    }
}

const ROW_SCHEMA: &str = r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"long"},{"name":"price","type":"double"},{"name":"sym","type":"string"}]}"#;

/// JSON lines checked by a JSON Schema → an Avro container file (`avro` sink) → read
/// back by the `file` source with `format: avro`: the good records come back as they
/// were; a JSON Schema mismatch and a record the Avro schema cannot hold go to the DLQ.
#[test]
fn avro_files_round_trip_and_mismatches_go_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        let v = serde_json::json!({"id": i, "price": 1.5 * i as f64 + 0.25, "sym": format!("S{}", i % 3)});
        input.push_str(&format!("{v}\n"));
        expected.push(v);
        if i == 50 {
            input.push_str("{\"id\": 1000, \"price\": \"cheap\", \"sym\": \"X\"}\n");
        }
        if i == 120 {
            // Passes the JSON Schema (sym is optional there), not the Avro schema.
            input.push_str("{\"id\": 1001, \"price\": 2.5}\n");
        }
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let schema = serde_json::to_string(ROW_SCHEMA).unwrap();
    let write = write_pipeline(
        dir.path(),
        "write.yaml",
        &format!(
            r#"name: to-avro
errors: {{tolerance: all, dlq: {{path: out/dlq.jsonl}}}}
sources:
  lines:
    type: file
    path: in.jsonl
    json_schema:
      type: object
      required: [id, price]
      properties:
        id: {{type: integer}}
        price: {{type: number}}
sinks:
  rows: {{type: avro, inputs: [lines], path: out/rows.avro, schema: {schema}}}
"#
        ),
    );
    let out = run_to_end(dir.path(), &write);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_back = write_pipeline(
        dir.path(),
        "read.yaml",
        "name: from-avro\nsources:\n  rows: {type: file, path: out/rows.avro, format: avro}\nsinks:\n  back: {type: jsonl, inputs: [rows], path: out/back.jsonl}\n",
    );
    let out = run_to_end(dir.path(), &read_back);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: Vec<serde_json::Value> = read(dir.path().join("out/back.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, expected);
    let dlq: Vec<serde_json::Value> = read(dir.path().join("out/dlq.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let reasons: Vec<&str> = dlq.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not match the JSON Schema") && r.contains("/price")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not match the Avro schema at /sym: missing")),
        "{reasons:?}"
    );
}
