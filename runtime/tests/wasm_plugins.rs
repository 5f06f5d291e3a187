//! The example WASM plugins inside pipelines run by the binary, outputs checked; and
//! the stateful plugin through the SIGKILL/restart crash test. Needs the plugins built
//! (`scripts/build-plugins.sh`; the test script does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use rand::Rng;

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
    let mut rng = rand::rng();
    let mut kills = 0;
    for _ in 0..100 {
        if kills >= 10 {
            break;
        }
        let mut child = spawn(dir.path(), &cfg, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(100..900)));
        if child.try_wait().unwrap().is_some() {
            let _ = std::fs::remove_dir_all(dir.path().join("out"));
            let _ = std::fs::remove_dir_all(dir.path().join(".connectd"));
            continue;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
    }
    assert!(kills >= 10);
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(300)).success());
    assert!(
        read(dir.path().join("out/ewma.csv")) == want,
        "the output differs from the uninterrupted run's"
    );
}
