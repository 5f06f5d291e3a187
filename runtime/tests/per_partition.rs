//! `state.per_partition` (issue 17, step 1): a stateful transform runs as one instance
//! per input partition, with its own state table, watermark and checkpoint, as Kafka
//! Streams runs a task per partition. Here: file sources (a single stream each, so
//! partition 0), the setting turned over a checkpoint, a join of two co-partitioned
//! Kafka topics, `validate` rejecting keys that are not co-partitioned (step 4), and
//! the per-message check of `key_field`; `partition_watermarks.rs` (a window through SIGKILLs) and
//! `ownership.rs` (a table per partition, in `/metrics`) run it on Kafka too. Expected
//! outputs are computed here, from the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka;

/// Ids of file `a`: 0..1000; of file `b`: 500..1500, so 500 ids are in both.
const A: std::ops::Range<u64> = 0..1_000;
const B: std::ops::Range<u64> = 500..1_500;

fn write_inputs(dir: &Path) {
    for (name, ids) in [("a", A), ("b", B)] {
        let text: String = ids
            .map(|i| {
                // Each file has hosts of its own: the window's key is co-partitioned.
                let t = 1_700_000_000_000 + i as i64 * 100;
                format!(
                    r#"{{"id":{i},"host":"{name}-{}","t":{t},"v":{}}}"#,
                    i % 3,
                    i % 10
                ) + "\n"
            })
            .collect();
        std::fs::write(dir.join(format!("{name}.jsonl")), text).unwrap();
    }
}

fn pipeline(per_partition: bool) -> String {
    format!(
        r#"name: lanes
state: {{per_partition: {per_partition}}}
sources:
  a: {{type: file, path: a.jsonl}}
  b: {{type: file, path: b.jsonl}}
transforms:
  once:
    type: dedup
    inputs: [a, b]
    key: [id]
    keep: first
    retention: 1d
    time: t
  per_host:
    type: window
    inputs: [a, b]
    kind: tumbling
    size: 10s
    time: t
    group_by: [host]
    aggregates: {{n: count(), total: sum(v)}}
sinks:
  ids: {{type: jsonl, inputs: [once], path: out/ids.jsonl}}
  windows: {{type: jsonl, inputs: [per_host], path: out/windows.jsonl}}
"#
    )
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (host, window start) → (count, sum), from the input.
fn expected_windows() -> BTreeMap<(String, i64), (u64, i64)> {
    let mut w = BTreeMap::new();
    for (name, ids) in [("a", A), ("b", B)] {
        for i in ids {
            let t = 1_700_000_000_000 + i as i64 * 100;
            let e = w
                .entry((format!("{name}-{}", i % 3), t.div_euclid(10_000) * 10_000))
                .or_insert((0, 0));
            e.0 += 1;
            e.1 += (i % 10) as i64;
        }
    }
    w
}

fn windows(dir: &Path) -> BTreeMap<(String, i64), (u64, i64)> {
    let rows = lines(&dir.join("out/windows.jsonl"));
    let n = rows.len();
    let w: BTreeMap<_, _> = rows
        .into_iter()
        .map(|r| {
            (
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["window_start"].as_i64().unwrap(),
                ),
                (r["n"].as_u64().unwrap(), r["total"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(w.len(), n, "a window written twice");
    w
}

fn ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = lines(&dir.join("out/ids.jsonl"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

fn run(dir: &Path, per_partition: bool) -> std::process::Output {
    let cfg = common::write_pipeline(dir, "lanes.yaml", &pipeline(per_partition));
    common::run_to_end(dir, &cfg)
}

/// A file is a single stream: partition 0. Two files are two sources, so their records
/// share partition 0's state and an id in both passes once, as without the setting;
/// the windows are those computed from the input either way.
#[test]
fn single_stream_sources_share_partition_zero() {
    let want_windows = expected_windows();
    let want_ids: Vec<u64> = A.chain(B).collect::<BTreeSet<u64>>().into_iter().collect();
    for per_partition in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path());
        let out = run(dir.path(), per_partition);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "per_partition {per_partition}: {log}");
        assert_eq!(
            ids(dir.path()),
            want_ids,
            "per_partition {per_partition}: the ids the dedup passed; {log}"
        );
        assert_eq!(
            windows(dir.path()),
            want_windows,
            "per_partition {per_partition}: windows; {log}"
        );
    }
}

/// A checkpoint holds a transform's state one way or the other: turning the setting
/// over an existing checkpoint is refused, naming the transform and the way out.
#[test]
fn turning_per_partition_over_a_checkpoint_is_refused_with_the_fix() {
    for first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path());
        let out = run(dir.path(), first);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(dir.path(), !first);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started with per_partition turned: {log}"
        );
        for part in [
            "`once`",
            "`state.per_partition` is",
            "reset the pipeline's state",
        ] {
            assert!(log.contains(part), "`{part}` not in: {log}");
        }
        // Turned back, it starts from its checkpoint: nothing new to write.
        let before = ids(dir.path()).len();
        let out = run(dir.path(), first);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            ids(dir.path()).len(),
            before,
            "the turned-back run wrote again"
        );
    }
}

const KEYS: u64 = 40;
const ORDERS_PER_KEY: u64 = 250;
const T0: i64 = 1_700_000_000_000;

/// Order `i` of key `k`, and its payment 300 ms later; every fifth order has none.
/// Kafka messages: (key, JSON value).
type Messages = Vec<(String, String)>;

fn orders_and_payments() -> (Messages, Messages) {
    let (mut orders, mut payments) = (Vec::new(), Vec::new());
    for i in 0..ORDERS_PER_KEY {
        for k in 0..KEYS {
            let key = format!("k{k:02}");
            let t = T0 + i as i64 * 1_000;
            let q = (k * 31 + i * 7) % 100;
            orders.push((key.clone(), format!(r#"{{"k":"{key}","t":{t},"q":{q}}}"#)));
            if i % 5 != 4 {
                let paid = t + 300;
                payments.push((
                    key.clone(),
                    format!(r#"{{"k":"{key}","paid":{paid},"amt":{q}}}"#),
                ));
            }
        }
    }
    (orders, payments)
}

fn join_pipeline(orders: &str, payments: &str, per_partition: bool) -> String {
    let source = |name: &str, topic: &str| {
        format!(
            "  {name}:\n    type: kafka\n    bootstrap_servers: {}\n    topics: [{topic}]\n    group: {}\n    start: earliest\n    key_field: k\n",
            kafka::bootstrap(),
            kafka::unique("join-group"),
        )
    };
    format!(
        r#"name: paid
checkpoint: {{interval: 300ms}}
state: {{per_partition: {per_partition}}}
sources:
{}{}transforms:
  paid_orders:
    type: join
    inputs: [orders, payments]
    on: [k]
    kind: inner
    within: 500ms
    time: t
    right_time: paid
sinks:
  out: {{type: jsonl, inputs: [paid_orders], path: out/paid.jsonl}}
"#,
        source("orders", orders),
        source("payments", payments),
    )
}

/// A windowed join of two topics of 4 partitions each, both keyed by the join key (so
/// co-partitioned): partition p of both sides meets in one instance. Every order with
/// a payment is joined exactly once, as computed from the input, with the setting and
/// without.
#[test]
fn a_join_of_two_co_partitioned_topics_meets_each_partition_in_one_task() {
    let (orders, payments) = orders_and_payments();
    // (key, order time) → quantity, for the orders that have a payment 300 ms later.
    let want: BTreeSet<(String, i64, i64)> = orders
        .iter()
        .filter_map(|(_, v)| {
            let o: serde_json::Value = serde_json::from_str(v).unwrap();
            let (k, t, q) = (
                o["k"].as_str().unwrap(),
                o["t"].as_i64().unwrap(),
                o["q"].as_i64().unwrap(),
            );
            payments
                .iter()
                .any(|(pk, pv)| pk == k && pv.contains(&format!(r#""paid":{}"#, t + 300)))
                .then(|| (k.to_string(), t, q))
        })
        .collect();
    assert_eq!(want.len() as u64, KEYS * ORDERS_PER_KEY * 4 / 5);
    for per_partition in [false, true] {
        let (o_topic, p_topic) = (kafka::unique("orders"), kafka::unique("payments"));
        kafka::create_topic(&o_topic, 4);
        kafka::create_topic(&p_topic, 4);
        kafka::produce(&o_topic, orders.clone());
        kafka::produce(&p_topic, payments.clone());
        let dir = tempfile::tempdir().unwrap();
        let cfg = common::write_pipeline(
            dir.path(),
            "paid.yaml",
            &join_pipeline(&o_topic, &p_topic, per_partition),
        );
        let out = dir.path().join("out/paid.jsonl");
        let mut child = common::spawn(dir.path(), &cfg, &[]);
        let started = Instant::now();
        while lines(&out).len() < want.len() && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(500));
        common::signal(&child, libc::SIGTERM);
        assert!(common::wait_with_deadline(&mut child, Duration::from_secs(60)).success());
        let log = common::stderr_tail(&child, 3000);
        let rows = lines(&out);
        let got: BTreeSet<(String, i64, i64)> = rows
            .iter()
            .map(|r| {
                assert_eq!(r["amt"], r["q"], "joined to another order's payment: {r}");
                (
                    r["k"].as_str().unwrap().to_string(),
                    r["t"].as_i64().unwrap(),
                    r["q"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows.len(),
            got.len(),
            "per_partition {per_partition}: a row twice; {log}"
        );
        let missing = want.difference(&got).count();
        let extra = got.difference(&want).count();
        assert!(
            missing == 0 && extra == 0,
            "per_partition {per_partition}: {missing} of {} joined orders missing, {extra} extra; {log}",
            want.len()
        );
    }
}

/// A pipeline reading a 4-partition topic into a window and a dedup, per partition.
fn keyed_pipeline(key_field: Option<&str>, group_by: &str, dedup_key: &str) -> String {
    let key_field = key_field.map_or(String::new(), |f| format!("\n    key_field: {f}"));
    format!(
        r#"name: co
state: {{per_partition: true}}
sources:
  iot:
    type: kafka
    bootstrap_servers: 127.0.0.1:1
    topics: [iot]
    group: co{key_field}
transforms:
  once: {{type: dedup, inputs: [iot], key: {dedup_key}, keep: first, retention: 1d}}
  per_cpu:
    type: window
    inputs: [once]
    kind: tumbling
    size: 5s
    time: t
    group_by: {group_by}
    aggregates: {{n: count()}}
sinks:
  out: {{type: jsonl, inputs: [per_cpu], path: out/w.jsonl}}
"#
    )
}

fn validate(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(dir.path(), "co.yaml", yaml);
    let out = common::connectd()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 17's co-partitioning: with `state.per_partition`, a stateful transform whose
/// key is not the field the topic is partitioned by (or a topic that does not say) is
/// rejected by `validate`, naming the transform, the source and the fix; a key that
/// holds the field passes.
#[test]
fn validate_rejects_state_keys_that_are_not_co_partitioned() {
    let (code, said) = validate(&keyed_pipeline(Some("host"), "[cpu]", "[host, id]"));
    assert_eq!(code, Some(1), "{said}");
    for part in [
        "`transforms.per_cpu`",
        "`state.per_partition` keeps each input partition's state apart",
        "its key is [cpu]",
        "source `iot`'s partitions are keyed by `host`, which is not part of the key",
        "Add `host` to the key",
        "a repartition step",
        "or turn `state.per_partition` off",
    ] {
        assert!(said.contains(part), "`{part}` not in: {said}");
    }
    assert!(
        !said.contains("transforms.once"),
        "the dedup's key holds host: {said}"
    );

    let (code, said) = validate(&keyed_pipeline(None, "[host, cpu]", "[host, id]"));
    assert_eq!(code, Some(1), "{said}");
    for part in [
        "`transforms.per_cpu`",
        "`transforms.once`",
        "source `iot` does not say what its partitions are keyed by",
        "Set its `key_field`",
    ] {
        assert!(said.contains(part), "`{part}` not in: {said}");
    }

    let (code, said) = validate(&keyed_pipeline(Some("host"), "[host, cpu]", "[host, id]"));
    assert_eq!(code, Some(0), "a co-partitioned key: {said}");
    // Without the setting, state is not split, and any key is exact.
    let (code, said) = validate(
        &keyed_pipeline(Some("host"), "[cpu]", "[id]")
            .replace("per_partition: true", "per_partition: false"),
    );
    assert_eq!(code, Some(0), "without per_partition: {said}");
}

/// `key_field` is checked for every message: one keyed by anything but its field went
/// through a partition that says nothing about its key, so it is a bad record (to the
/// dead-letter queue here, with the reason), never state in the wrong partition.
#[test]
fn a_message_not_keyed_by_its_key_field_is_a_bad_record() {
    let topic = kafka::unique("keyed");
    kafka::create_topic(&topic, 4);
    let good = (0..200).map(|i| {
        let host = format!("h{}", i % 8);
        (host.clone(), format!(r#"{{"host":"{host}","i":{i}}}"#))
    });
    let bad = [
        ("h1".to_string(), r#"{"host":"h2","i":1000}"#.to_string()),
        ("h3".to_string(), r#"{"i":1001}"#.to_string()),
    ];
    kafka::produce(&topic, good.chain(bad));
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "keyed.yaml",
        &format!(
            "name: keyed\nerrors: {{tolerance: all, dlq: {{path: out/dlq.jsonl}}}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {}, topics: [{topic}], group: {}, start: earliest, key_field: host}}\nsinks:\n  out: {{type: jsonl, inputs: [in], path: out/rows.jsonl}}\n",
            kafka::bootstrap(),
            kafka::unique("g"),
        ),
    );
    let (rows, dlq) = (
        dir.path().join("out/rows.jsonl"),
        dir.path().join("out/dlq.jsonl"),
    );
    let mut child = common::spawn(dir.path(), &cfg, &[]);
    let started = Instant::now();
    while (lines(&rows).len() < 200 || lines(&dlq).len() < 2)
        && started.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    common::signal(&child, libc::SIGTERM);
    assert!(common::wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    let log = common::stderr_tail(&child, 3000);
    let mut kept: Vec<i64> = lines(&rows)
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, (0..200).collect::<Vec<_>>(), "{log}");
    let reasons: Vec<String> = lines(&dlq)
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}; {log}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("its key `h1` is not its `host` (`h2`)")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("it has no `host`")),
        "{reasons:?}"
    );
}
