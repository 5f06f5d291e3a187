//! The example WASM plugins inside pipelines run by the binary, outputs checked; and
//! the stateful plugin through the SIGKILL/restart crash test. Needs the plugins built
//! (`scripts/build-plugins.sh`; the test script does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn plugin(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        p.display()
    );
    p.display().to_string()
}

#[test]
fn the_example_plugins_in_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for i in 0..200 {
        let sym = ["BBCA", "TLKM"][i % 2];
        input.push_str(&format!(
            "{{\"symbol\":\"{sym}\",\"price\":{},\"owner\":\"person-{i}\"}}\n",
            1 + i % 7
        ));
    }
    input.push_str("{\"symbol\":\"BBCA\",\"price\":\"n/a\",\"owner\":\"x\"}\n");
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
name: plugins
checkpoint: {{interval: 50ms}}
errors: {{tolerance: all, dlq: {{path: dlq.jsonl}}}}
sources:
  lines: {{type: file, path: in.jsonl}}
transforms:
  masked:
    type: wasm
    inputs: [lines]
    module: {}
    config: {{fields: [owner]}}
  idr:
    type: wasm
    inputs: [masked]
    module: {}
    config: {{fields: [price], rate: 15800, round: 0}}
  smooth:
    type: wasm
    inputs: [idr]
    module: {}
    config: {{key: symbol, field: price, alpha: 0.5, output: price_ewma}}
    limits: {{memory: 32MiB, timeout: 2s}}
sinks:
  out: {{type: jsonl, inputs: [smooth], path: out.jsonl}}
"#,
            plugin("mask_fields"),
            plugin("currency"),
            plugin("ewma")
        ),
    );
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = read(dir.path().join("out.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 200);
    // Independently: price × 15800, then a per-symbol EWMA with alpha 0.5.
    let mut avg: std::collections::HashMap<&str, f64> = Default::default();
    for (i, row) in rows.iter().enumerate() {
        let sym = ["BBCA", "TLKM"][i % 2];
        let price = (1 + i % 7) as f64 * 15800.0;
        let e = match avg.get(sym) {
            Some(prev) => 0.5 * price + 0.5 * prev,
            None => price,
        };
        avg.insert(sym, e);
        assert_eq!(row["owner"], "***");
        assert_eq!(row["price"].as_f64().unwrap(), price);
        assert!(
            (row["price_ewma"].as_f64().unwrap() - e).abs() < 1e-9,
            "row {i}: {row}"
        );
    }
    let dlq = read(dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.lines().count(), 1);
    assert!(
        dlq.contains("not a number") && dlq.contains("\"component\":\"idr\""),
        "{dlq}"
    );
}

/// The same plugin written in Rust, Python (componentize-py) and JavaScript
/// (componentize-js), side by side in one pipeline: each output equals the input with
/// the field masked, computed here.
#[test]
fn the_python_and_javascript_plugins_run_in_a_pipeline_like_the_rust_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    for i in 0..3000 {
        input.push(match i % 5 {
            // Not an object, or without the field: passed on unchanged.
            0 => serde_json::json!([i, "owner"]),
            1 => serde_json::json!({"id": i, "name": "Jos\u{e9} \u{1F600}"}),
            _ => {
                serde_json::json!({"id": i, "owner": format!("person-{i}"), "nested": {"owner": i}})
            }
        });
    }
    let text: String = input.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), text).unwrap();
    let mut yaml = String::from(
        "name: languages\ncheckpoint: {interval: 50ms}\nsources:\n  lines: {type: file, path: in.jsonl}\ntransforms:\n",
    );
    let languages = ["mask_fields", "mask_fields_py", "mask_fields_js"];
    for name in languages {
        yaml.push_str(&format!(
            "  {name}: {{type: wasm, inputs: [lines], module: {}, config: {{fields: [owner], mask: '***'}}}}\n",
            plugin(name)
        ));
    }
    yaml.push_str("sinks:\n");
    for name in languages {
        yaml.push_str(&format!(
            "  {name}_out: {{type: jsonl, inputs: [{name}], path: {name}.jsonl}}\n"
        ));
    }
    let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<serde_json::Value> = input
        .into_iter()
        .map(|mut v| {
            if let Some(owner) = v.get_mut("owner") {
                *owner = "***".into();
            }
            v
        })
        .collect();
    for name in languages {
        let got: Vec<serde_json::Value> = read(dir.path().join(format!("{name}.jsonl")))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{name}, record {i}");
        }
    }
}

#[test]
fn the_stateful_plugin_is_exact_across_sigkills() {
    let yaml = format!(
        r#"
name: wasm-crash
checkpoint: {{interval: 100ms}}
sources:
  trades: {{type: trades, seed: 4, rate: 0, count: 60000, start: 2024-01-01T00:00:00Z, step: 1ms}}
transforms:
  smooth:
    type: wasm
    inputs: [trades]
    module: {}
    config: {{key: ticker, field: price, alpha: 0.2, output: ewma}}
sinks:
  out: {{type: csv, inputs: [smooth], path: out/ewma.csv, columns: [id, ticker, price, ewma]}}
"#,
        plugin("ewma")
    );
    let reference = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &yaml);
    assert!(run_to_end(reference.path(), &cfg).status.success());
    let want = read(reference.path().join("out/ewma.csv"));
    assert_eq!(want.lines().count(), 60_001);

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
    let (_, mut rng) = seeded_rng();
    kill_repeatedly(dir.path(), &cfg, 10, 100..900, &mut rng);
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    assert!(
        read(dir.path().join("out/ewma.csv")) == want,
        "the output differs from the uninterrupted run's"
    );
}

/// A purpose-built misbehaving guest (`transforms/tests/guests/probe`).
fn probe() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../transforms/tests/guests/target/wasm32-wasip2/release/probe.wasm");
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        p.display()
    );
    p.display().to_string()
}

/// Trades are numbered `n` by their event time (1 ms apart from the start); the probe
/// misbehaves on these (`go: true`).
const GO_IDS: [u64; 3] = [17, 1017, 2017];

fn probe_pipeline(mode: &str, tolerance: &str, rate: u32) -> String {
    format!(
        r#"
name: probe-{mode}
checkpoint: {{interval: 100ms}}
errors: {{tolerance: {tolerance}, dlq: {{path: dlq.jsonl}}}}
sources:
  trades: {{type: trades, seed: 3, rate: {rate}, count: 3000, start: 2024-01-01T00:00:00Z, step: 1ms}}
transforms:
  marked:
    type: map
    inputs: [trades]
    fields:
      n: $timestamp - 1704067200000
      go: ($timestamp - 1704067200000) % 1000 == 17
  probe:
    type: wasm
    inputs: [marked]
    module: {}
    config: {{mode: {mode}, print: true}}
    limits: {{memory: 32MiB, timeout: 300ms}}
sinks:
  out: {{type: jsonl, inputs: [probe], path: out.jsonl}}
"#,
        probe()
    )
}

fn ids_in(
    path: &std::path::Path,
    field: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> Vec<u64> {
    if !path.exists() {
        return Vec::new();
    }
    read(path)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            field(&v)["n"].as_u64().unwrap()
        })
        .collect()
}

fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The plugins of a third-party author, in a running worker (tasks on the async
/// runtime, where printing once took the pipeline down): one that prints on every
/// batch, one that panics on a record, one that allocates past its cap, one that loops
/// forever. Under `errors.tolerance: all` each pipeline stays RUNNING, counts its traps,
/// exits 0, and every record is in the output or, if the plugin trapped on it, in the DLQ.
#[test]
fn misbehaving_plugins_keep_their_pipeline_running() {
    for (mode, why) in [
        ("pass", None),
        ("trap", Some("the probe panics on purpose")),
        ("hog", Some("trapped")),
        ("spin", Some("timeout")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_pipeline(dir.path(), "p.yaml", &probe_pipeline(mode, "all", 1000));
        let port = free_port();
        let mut child = spawn_captured(
            connectd()
                .env("RUST_LOG", "info")
                .current_dir(dir.path())
                .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--config"])
                .arg(&cfg),
        );
        wait_for_admin(port);
        // While it runs: RUNNING, and the traps counted.
        let started = std::time::Instant::now();
        loop {
            let metrics = http("GET", port, "/metrics", None).1;
            let traps = metric(&metrics, "connectd_plugin_traps_total").unwrap_or(0.0);
            let status = http(
                "GET",
                port,
                &format!("/connectors/probe-{mode}/status"),
                None,
            )
            .1;
            assert!(
                status.contains("RUNNING"),
                "{mode}: {status}\n{}",
                stderr_tail(&child, 4000)
            );
            if why.is_none() || traps >= GO_IDS.len() as f64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{mode}: {traps} traps counted\n{metrics}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = wait_with_deadline(&mut child, Duration::from_secs(120));
        let log = stderr_of(&child);
        assert!(status.success(), "{mode}: {status}\n{log}");
        // The guest's prints reach the log under the plugin's name, both streams.
        assert!(
            log.contains("probe: batch") && log.contains("probe: stderr on batch"),
            "{mode}: {log}"
        );
        assert!(log.contains("probe-") && log.contains("/probe"), "{mode}");

        let out = ids_in(&dir.path().join("out.jsonl"), |v| v);
        let dlq_path = dir.path().join("dlq.jsonl");
        let dlq = ids_in(&dlq_path, |v| &v["record"]["value"]);
        let mut all: Vec<u64> = out.iter().chain(&dlq).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..3000).collect::<Vec<u64>>(),
            "{mode}: every record once"
        );
        match why {
            None => assert!(dlq.is_empty(), "{mode}: {dlq:?}"),
            Some(reason) => {
                let mut dlq = dlq.clone();
                dlq.sort_unstable();
                assert_eq!(dlq, GO_IDS, "{mode}: only the records it trapped on");
                let text = read(&dlq_path);
                assert!(
                    text.contains("trapped") && text.contains(reason),
                    "{mode}: {text}"
                );
            }
        }
    }
}

/// Under `errors.tolerance: none` a trap stops the pipeline, naming the plugin and the
/// record it trapped on.
#[test]
fn a_trap_under_tolerance_none_stops_the_pipeline_naming_plugin_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &probe_pipeline("trap", "none", 0));
    let out = run_to_end(dir.path(), &cfg);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("probe.wasm")
            && log.contains("trapped")
            && log.contains("2024-01-01T00:00:00.017Z")
            && log.contains("the probe panics on purpose"),
        "{log}"
    );
}

/// `n` records of two symbols with `BOOM` records among them when `boom`.
fn ewma_input(n: usize, boom: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        if boom && i % 997 == 500 {
            s.push_str(&format!("{{\"i\":{i},\"symbol\":\"BOOM\",\"price\":1}}\n"));
        }
        let sym = ["BBCA", "TLKM"][i % 2];
        s.push_str(&format!(
            "{{\"i\":{i},\"symbol\":\"{sym}\",\"price\":{}}}\n",
            1 + (i * 7919) % 101
        ));
    }
    s
}

fn ewma_pipeline(panic_on: bool) -> String {
    let extra = if panic_on { ", panic_on: BOOM" } else { "" };
    format!(
        r#"
name: ewma-trap
checkpoint: {{interval: 50ms}}
errors: {{tolerance: all, dlq: {{path: dlq.jsonl}}}}
sources:
  lines: {{type: file, path: in.jsonl}}
transforms:
  smooth:
    type: wasm
    inputs: [lines]
    module: {}
    config: {{key: symbol, field: price, alpha: 0.3, output: ewma{extra}}}
sinks:
  out: {{type: csv, inputs: [smooth], path: out/ewma.csv, columns: [i, symbol, price, ewma]}}
"#,
        plugin("ewma")
    )
}

/// A trap rolls the stateful plugin back to its state before the trapped batch: the
/// ewma's output with forced traps (`panic_on`) equals its output on the input without
/// the records it trapped on, also across SIGKILLs.
#[test]
fn a_trap_leaves_the_stateful_plugin_as_if_the_record_never_came() {
    const N: usize = 40_000;
    let reference = tempfile::tempdir().unwrap();
    std::fs::write(reference.path().join("in.jsonl"), ewma_input(N, false)).unwrap();
    let cfg = write_pipeline(reference.path(), "p.yaml", &ewma_pipeline(false));
    assert!(run_to_end(reference.path(), &cfg).status.success());
    let want = read(reference.path().join("out/ewma.csv"));
    assert_eq!(want.lines().count(), N + 1);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), ewma_input(N, true)).unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &ewma_pipeline(true));
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        read(dir.path().join("out/ewma.csv")) == want,
        "the output differs from the run without the trapping records"
    );
    let booms = ewma_input(N, true)
        .lines()
        .filter(|l| l.contains("BOOM"))
        .count();
    let dlq = read(dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.lines().count(), booms, "{dlq}");
    assert!(
        dlq.lines()
            .all(|l| l.contains("BOOM") && l.contains("panic_on")),
        "{dlq}"
    );

    // Again, SIGKILLed at seeded random moments.
    let (seed, mut rng) = seeded_rng();
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    let _ = std::fs::remove_dir_all(dir.path().join(".connectd"));
    kill_repeatedly(dir.path(), &cfg, 6, 150..700, &mut rng);
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    assert!(
        read(dir.path().join("out/ewma.csv")) == want,
        "seed {seed}: the output differs from the run without the trapping records"
    );
}

/// Records `{"i", "symbol"}` over 1 000 symbols; with `boom`, `BOOM` records between.
fn count_input(n: usize, boom: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        if boom && i % 997 == 500 {
            s.push_str("{\"i\":-1,\"symbol\":\"BOOM\"}\n");
        }
        s.push_str(&format!(
            "{{\"i\":{i},\"symbol\":\"S{}\"}}\n",
            (i * 7919) % 1000
        ));
    }
    s
}

/// Every file of the worker's state directory that holds `needle`.
fn state_files_with(dir: &std::path::Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.join(".connectd")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(p);
            }
        }
    }
    found
}

/// Keyed state host functions (`state.get/put`): the running-count plugin keeps a
/// count per symbol in the pipeline's state store. Its output equals the running counts
/// computed here from the input, with traps (whose calls had already written counts)
/// and across SIGKILLs; the counts are in the store, not in the plugin's snapshot.
#[test]
fn a_plugin_keeps_keyed_state_in_the_store_exactly_through_traps_and_sigkills() {
    const N: usize = 20_000;
    let mut counts = std::collections::HashMap::new();
    let mut want = vec!["i,symbol,count".to_string()];
    for i in 0..N {
        let symbol = format!("S{}", (i * 7919) % 1000);
        let c = counts.entry(symbol.clone()).or_insert(0u64);
        *c += 1;
        want.push(format!("{i},{symbol},{c}"));
    }
    let yaml = format!(
        r#"
name: counting
checkpoint: {{interval: 50ms}}
errors: {{tolerance: all, dlq: {{path: dlq.jsonl}}}}
sources:
  lines: {{type: file, path: in.jsonl}}
transforms:
  count:
    type: wasm
    inputs: [lines]
    module: {}
    config: {{key: symbol, output: count, panic_on: BOOM}}
sinks:
  out: {{type: csv, inputs: [count], path: out/counts.csv, columns: [i, symbol, count]}}
"#,
        plugin("running_count")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), count_input(N, true)).unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &yaml);
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = read(dir.path().join("out/counts.csv"));
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {i}");
    }
    let booms = count_input(N, true).matches("BOOM").count();
    assert_eq!(read(dir.path().join("dlq.jsonl")).lines().count(), booms);
    assert!(
        state_files_with(dir.path(), "\"keyed\"").is_empty(),
        "the counts went into a snapshot, not the state store"
    );

    // Again, SIGKILLed at seeded random moments.
    let (seed, mut rng) = seeded_rng();
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    let _ = std::fs::remove_dir_all(dir.path().join(".connectd"));
    let _ = std::fs::remove_file(dir.path().join("dlq.jsonl"));
    kill_repeatedly(dir.path(), &cfg, 6, 150..700, &mut rng);
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    assert!(
        read(dir.path().join("out/counts.csv")) == want.join("\n") + "\n",
        "seed {seed}: the counts differ from the running counts of the input"
    );
}
