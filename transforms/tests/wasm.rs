//! WASM plugins in the host: the example plugins' outputs, and the sandbox against
//! purpose-built guests. Build them first: `scripts/build-plugins.sh` (the test script
//! does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectd_sdk::config::{ConfigErrors, ConfigMap, ConfigNode};
use connectd_sdk::{BuildContext, Emitter, FieldPath, Record, Transform, Value};

fn wasm(workspace: &str, name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(workspace)
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        p.display()
    );
    p.display().to_string()
}

fn plugin(config: serde_json::Value) -> Result<Box<dyn Transform>, Vec<String>> {
    let n = ConfigNode::from_json(&config);
    let errors = ConfigErrors::default();
    let mut cfg = ConfigMap::new(&n, "transforms.p", &errors);
    let ctx = BuildContext {
        pipeline: "t".into(),
        component: "p".into(),
        state_dir: ".".into(),
        inputs: vec!["in".into()],
        ..Default::default()
    };
    connectd_transforms::wasm::build(&mut cfg, &ctx)
        .map_err(|_| errors.take().iter().map(|e| e.to_string()).collect())
}

fn records(values: &[serde_json::Value]) -> Arc<Vec<Record>> {
    Arc::new(
        values
            .iter()
            .map(|v| Record::new(Value::from_json(v)))
            .collect(),
    )
}

fn run(t: &mut Box<dyn Transform>, values: &[serde_json::Value]) -> Emitter {
    let mut out = Emitter::default();
    t.process(0, records(values), &mut out).unwrap();
    out
}

fn get(r: &Record, f: &str) -> Value {
    r.value
        .get_path(&FieldPath::parse(f))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Records with everything the interface carries: key, timestamp, headers, nesting,
/// escapes and non-ASCII text.
fn rich_records() -> Vec<Record> {
    (0..5)
        .map(|i| Record {
            key: Value::from_json(&serde_json::json!({"id": i})),
            value: Value::from_json(&serde_json::json!({
                "n": i, "x": i as f64 / 3.0, "s": format!("q\"uote\\ {i} ünï"),
                "nested": {"list": [1, null, true, "two"]}
            })),
            timestamp: Some(1_700_000_000_000 + i),
            headers: vec![
                ("source".into(), format!("s-{i}").into()),
                ("é".into(), "ü".into()),
            ],
            // Kept and emitted records both stay in their input's lane.
            lane: 7,
        })
        .collect()
}

fn run_records(t: &mut Box<dyn Transform>, input: Vec<Record>) -> Emitter {
    let mut out = Emitter::default();
    t.process(0, Arc::new(input), &mut out).unwrap();
    out
}

#[test]
fn kept_records_come_back_exactly_and_emitted_ones_keep_key_time_and_headers() {
    let probe = wasm("transforms/tests/guests", "probe");
    let input = rich_records();

    let mut identity =
        plugin(serde_json::json!({"module": probe, "config": {"mode": "identity"}})).unwrap();
    assert_eq!(run_records(&mut identity, input.clone()).records, input);

    let mut twice =
        plugin(serde_json::json!({"module": probe, "config": {"mode": "twice"}})).unwrap();
    let doubled: Vec<Record> = input.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
    assert_eq!(run_records(&mut twice, input.clone()).records, doubled);

    // `pass` parses each value in the guest, adds `seen` and emits it as new JSON.
    let mut pass =
        plugin(serde_json::json!({"module": probe, "config": {"mode": "pass"}})).unwrap();
    let out = run_records(&mut pass, input.clone()).records;
    assert_eq!(out.len(), input.len());
    for (o, i) in out.iter().zip(&input) {
        let mut v = i.value.to_json();
        v["seen"] = true.into();
        // The guest's JSON library may order fields differently: compared as maps.
        assert_eq!(o.value.to_json(), v);
        assert_eq!(
            (&o.key, o.timestamp, &o.headers, o.lane),
            (&i.key, i.timestamp, &i.headers, i.lane)
        );
    }
}

#[test]
fn mask_fields_redacts_the_configured_fields() {
    let mut t = plugin(serde_json::json!({"module": wasm("examples/plugins", "mask_fields"), "config": {"fields": ["ssn", "card"]}})).unwrap();
    let out = run(
        &mut t,
        &[
            serde_json::json!({"name": "ann", "ssn": "123-45", "card": "4111"}),
            serde_json::json!({"name": "bob"}),
        ],
    );
    assert_eq!(out.records.len(), 2);
    assert_eq!(get(&out.records[0], "ssn"), Value::str("***"));
    assert_eq!(get(&out.records[0], "card"), Value::str("***"));
    assert_eq!(get(&out.records[0], "name"), Value::str("ann"));
    assert_eq!(get(&out.records[1], "ssn"), Value::Null);
}

#[test]
fn currency_converts_and_sends_a_bad_record_to_the_dlq() {
    let mut t = plugin(serde_json::json!({"module": wasm("examples/plugins", "currency"), "config": {"fields": ["price"], "rate": 15800.0, "round": 0}})).unwrap();
    let out = run(
        &mut t,
        &[
            serde_json::json!({"price": 1.5}),
            serde_json::json!({"price": "cheap"}),
            serde_json::json!({"price": 2}),
        ],
    );
    let prices: Vec<Value> = out.records.iter().map(|r| get(r, "price")).collect();
    assert_eq!(prices, [Value::Float(23700.0), Value::Float(31600.0)]);
    assert_eq!(out.bad.len(), 1);
    assert!(
        out.bad[0].reason.contains("not a number"),
        "{}",
        out.bad[0].reason
    );
}

#[test]
fn ewma_state_survives_snapshot_and_restore() {
    let config = serde_json::json!({"module": wasm("examples/plugins", "ewma"), "config": {"key": "s", "field": "p", "alpha": 0.5}});
    let input: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"s": if i % 2 == 0 { "a" } else { "b" }, "p": i as f64}))
        .collect();
    let mut whole = plugin(config.clone()).unwrap();
    let all = run(&mut whole, &input);
    let expected: Vec<Value> = all.records.iter().map(|r| get(r, "p_ewma")).collect();
    // Independently: a: 0, 1, 2.5, 4.25, 6.125; b: 1, 2, 3.5, 5.25, 7.125
    assert_eq!(expected[8], Value::Float(6.125));
    assert_eq!(expected[9], Value::Float(7.125));

    let mut first = plugin(config.clone()).unwrap();
    let head = run(&mut first, &input[..5]);
    let state = first.snapshot().unwrap();
    let mut second = plugin(config).unwrap();
    second
        .restore(serde_json::from_str(&state.to_string()).unwrap())
        .unwrap();
    let tail = run(&mut second, &input[5..]);
    let resumed: Vec<Value> = head
        .records
        .iter()
        .chain(&tail.records)
        .map(|r| get(r, "p_ewma"))
        .collect();
    assert_eq!(resumed, expected);
}

#[test]
fn an_infinite_loop_is_stopped_within_the_timeout_and_the_instance_recreated() {
    let mut t = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "spin"}, "limits": {"timeout": "200ms"}})).unwrap();
    let started = Instant::now();
    let out = run(&mut t, &[serde_json::json!({"go": true})]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    assert_eq!(out.bad.len(), 1);
    assert!(
        out.bad[0].reason.contains("longer than"),
        "{}",
        out.bad[0].reason
    );
    let next = run(&mut t, &[serde_json::json!({"go": false})]);
    assert_eq!(
        next.records.len(),
        1,
        "a fresh instance serves the next batch"
    );
}

#[test]
fn memory_is_capped() {
    let mut t = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "hog"}, "limits": {"memory": "16MiB"}})).unwrap();
    let out = run(
        &mut t,
        &[
            serde_json::json!({"go": true}),
            serde_json::json!({"go": false}),
        ],
    );
    assert_eq!(
        out.bad.len(),
        1,
        "only the record it trapped on goes to the DLQ"
    );
    assert_eq!(out.records.len(), 1, "the rest of the batch goes through");
    assert!(
        out.bad[0].reason.contains("trapped"),
        "{}",
        out.bad[0].reason
    );
    assert_eq!(run(&mut t, &[serde_json::json!({"x": 1})]).records.len(), 1);
}

#[test]
fn an_allocation_under_the_cap_succeeds_and_one_over_it_traps() {
    let mut t = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "alloc"}, "limits": {"memory": "16MiB"}})).unwrap();
    let under = run(&mut t, &[serde_json::json!({"go": true, "bytes": 8 << 20})]);
    assert_eq!(under.records.len(), 1, "{:?}", under.bad);
    assert_eq!(get(&under.records[0], "allocated"), Value::from(8i64 << 20));
    let over = run(
        &mut t,
        &[serde_json::json!({"go": true, "bytes": 32 << 20})],
    );
    assert_eq!(over.bad.len(), 1);
    assert!(
        over.bad[0].reason.contains("trapped"),
        "{}",
        over.bad[0].reason
    );
}

/// In a worker, transforms run as tasks on the async runtime: a guest that prints
/// (and a Rust guest's panic message goes to stderr) must not take the runtime down.
#[test]
fn prints_and_traps_inside_the_async_runtime() {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for rt in [multi, current] {
        let out = rt.block_on(async {
            tokio::spawn(async {
                let mut t = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "trap", "print": true}})).unwrap();
                let mut outs = Vec::new();
                for _ in 0..3 {
                    outs.push(run(&mut t, &[
                        serde_json::json!({"go": false}),
                        serde_json::json!({"go": true}),
                        serde_json::json!({"go": false}),
                    ]));
                }
                outs
            })
            .await
            .unwrap()
        });
        for o in out {
            assert_eq!(o.records.len(), 2);
            assert_eq!(o.bad.len(), 1);
            assert!(
                o.bad[0].reason.contains("the probe panics on purpose"),
                "the trap reason quotes the guest's stderr: {}",
                o.bad[0].reason
            );
        }
    }
}

#[test]
fn a_panic_is_a_trap_not_a_crash() {
    let mut t = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "trap"}})).unwrap();
    let out = run(&mut t, &[serde_json::json!({"go": true})]);
    assert_eq!(out.bad.len(), 1);
    assert!(
        out.bad[0].reason.contains("probe.wasm trapped"),
        "{}",
        out.bad[0].reason
    );
}

#[test]
fn no_filesystem_and_no_environment() {
    let mut files = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "read-file"}})).unwrap();
    assert_eq!(
        get(
            &run(&mut files, &[serde_json::json!({"go": true})]).records[0],
            "read"
        ),
        Value::Bool(false)
    );
    std::env::set_var("CONNECTD_PLUGIN_SECRET", "x");
    let mut env = plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "probe"), "config": {"mode": "env"}})).unwrap();
    assert_eq!(
        get(
            &run(&mut env, &[serde_json::json!({"go": true})]).records[0],
            "env"
        ),
        Value::Int(0)
    );
}

#[test]
fn load_errors_are_clear() {
    let errs = plugin(serde_json::json!({"module": "/nonexistent/plugin.wasm"})).unwrap_err();
    assert!(
        errs[0].contains("cannot read /nonexistent/plugin.wasm"),
        "{errs:?}"
    );
    let not_wasm = tempfile_path();
    let errs = plugin(serde_json::json!({"module": not_wasm})).unwrap_err();
    assert!(errs[0].contains("not a WebAssembly component"), "{errs:?}");
    // A config the plugin's init refuses is an error of the build, with the field.
    let errs = plugin(serde_json::json!({"module": wasm("examples/plugins", "currency"), "config": {"fields": ["p"]}})).unwrap_err();
    assert!(
        errs[0].contains("transforms.p.config") && errs[0].contains("config.rate must be a number"),
        "{errs:?}"
    );
}

fn tempfile_path() -> String {
    let p = std::env::temp_dir().join(format!("not-wasm-{}.wasm", std::process::id()));
    std::fs::write(&p, b"this is not wasm").unwrap();
    p.display().to_string()
}

#[test]
fn a_plugin_built_against_another_interface_version_is_refused_naming_both() {
    let errs =
        plugin(serde_json::json!({"module": wasm("transforms/tests/guests", "other_version")}))
            .unwrap_err();
    assert!(
        errs[0].contains("connectd:plugin@0.2.0") && errs[0].contains("connectd:plugin@0.1.0"),
        "{errs:?}"
    );
}

#[test]
fn clocks_and_randomness_are_granted_only_when_allowed() {
    let probe = wasm("transforms/tests/guests", "probe");
    let go = [serde_json::json!({"go": true})];
    let field = |allow: &[&str], mode: &str, f: &str| {
        let mut t =
            plugin(serde_json::json!({"module": probe, "config": {"mode": mode}, "allow": allow}))
                .unwrap();
        let out = run(&mut t, &go);
        assert_eq!(out.records.len(), 1, "{:?}", out.bad);
        get(&out.records[0], f)
    };
    assert_eq!(
        field(&[], "clock", "now"),
        Value::from(0i64),
        "the clock is frozen by default"
    );
    match field(&["clock"], "clock", "now") {
        Value::Int(secs) => assert!(secs > 1_700_000_000, "{secs}"),
        other => panic!("{other:?}"),
    }
    // Fixed randomness: two instances hash alike; real randomness: they differ.
    assert_eq!(field(&[], "random", "hash"), field(&[], "random", "hash"));
    assert_ne!(
        field(&["random"], "random", "hash"),
        field(&["random"], "random", "hash")
    );
    let e = plugin(serde_json::json!({"module": probe, "allow": ["network"]})).unwrap_err();
    assert!(
        e.iter()
            .any(|m| m.contains("allow") && m.contains("network")),
        "{e:?}"
    );
}

#[test]
fn a_config_the_plugin_refuses_is_reported_when_the_pipeline_is_built() {
    let e = plugin(serde_json::json!({
        "module": wasm("examples/plugins", "ewma"),
        "config": {"key": "symbol", "field": "price", "alpha": 5}
    }))
    .unwrap_err();
    assert!(
        e.iter()
            .any(|m| m.contains("transforms.p.config") && m.contains("alpha")),
        "{e:?}"
    );
}
