//! What a worker owns (issue 17, visibility): `/metrics` and the admin API show the
//! partitions each kafka source reads on this worker, each transform's keyed state,
//! and how long the last start took to restore it — read from the running binary on a
//! 4-partition topic, before and after a restart on the same state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::kafka;

const HOSTS: u64 = 12;
const EVENTS: u64 = 6_000;
const T0: i64 = 1_700_000_000_000;

fn pipeline(topic: &str, group: &str, per_partition: bool) -> String {
    format!(
        r#"name: owned
checkpoint: {{interval: 200ms}}
state: {{per_partition: {per_partition}}}
sources:
{source}transforms:
  once:
    type: dedup
    inputs: [iot]
    key: [host, id]
    keep: first
    retention: 1d
    time: t
  per_host:
    type: window
    inputs: [once]
    kind: tumbling
    size: 5s
    time: t
    max_out_of_orderness: 10s
    group_by: [host]
    aggregates: {{n: count()}}
sinks:
  out: {{type: jsonl, inputs: [per_host], path: out/windows.jsonl}}
"#,
        source = if per_partition {
            kafka::iot_source_keyed_by_host(topic, group)
        } else {
            kafka::iot_source_yaml(topic, group)
        },
    )
}

fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

/// The value of metric `name` on the line that has every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls the worker's `/metrics` until `ready` holds for it (or 90 s pass).
fn metrics_once(port: u16, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = common::http_get(port, "/metrics");
        if ready(&text) || started.elapsed() > Duration::from_secs(90) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_and_status_show_the_partitions_state_and_restore_time_a_worker_owns() {
    owned(false);
}

/// The same with state per partition: each transform holds a table per partition, four
/// here, shown as `connectd_state_partitions` and under `owned.state`; the keys are
/// those of all four summed.
#[test]
fn with_state_per_partition_each_transform_shows_the_partitions_it_holds() {
    owned(true);
}

fn owned(per_partition: bool) {
    let topic = kafka::unique("owned");
    kafka::create_topic(&topic, 4);
    // Every event twice: the dedup keeps EVENTS keys.
    kafka::produce(
        &topic,
        (0..EVENTS).chain(0..EVENTS).map(|i| {
            let host = format!("host-{:02}", i % HOSTS);
            let t = T0 + i as i64 * 10;
            (
                host.clone(),
                format!(r#"{{"id":{i},"host":"{host}","t":{t}}}"#),
            )
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "owned.yaml",
        &pipeline(&topic, &kafka::unique("g"), per_partition),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    let source = r#"pipeline="owned",component="iot",kind="source""#;
    let partitions = |t: &str| metric(t, "connectd_source_partitions", &[source]);
    let dedup_keys = |t: &str| {
        metric(
            t,
            "connectd_state_keys",
            &[r#"pipeline="owned""#, r#"component="once""#],
        )
    };

    for run in ["first start", "restart on the same state"] {
        let (mut worker, port) = common::start_worker(dir.path(), &["--config", &cfg]);
        let text = metrics_once(port, |t| {
            partitions(t) == Some(4.0) && dedup_keys(t).unwrap_or(0.0) >= EVENTS as f64
        });
        let context = format!("{run}: {text}\n{}", common::stderr_tail(&worker, 3000));
        assert_eq!(partitions(&text), Some(4.0), "{context}");
        for p in 0..4 {
            let line = format!(
                r#"connectd_source_partition_owned{{{source},topic="{topic}",partition="{p}"}} 1"#
            );
            assert!(text.lines().any(|l| l == line), "no `{line}`; {context}");
        }
        // Each kept id is one store key (its entry in its expiry segment); counted
        // approximately, and the repeats add none.
        let keys = dedup_keys(&text).unwrap_or(0.0);
        assert!(
            (EVENTS as f64..1.25 * EVENTS as f64).contains(&keys),
            "dedup keys {keys}; {context}"
        );
        let restore = metric(
            &text,
            "connectd_state_restore_seconds",
            &[r#"pipeline="owned""#],
        )
        .unwrap_or_else(|| panic!("no restore time; {context}"));
        assert!(
            (0.0..60.0).contains(&restore),
            "restore {restore} s; {context}"
        );

        let status: serde_json::Value =
            serde_json::from_str(body(&common::http_get(port, "/connectors/owned/status")))
                .unwrap();
        let owned = &status["owned"];
        let partitions: Vec<i64> = owned["partitions"]["iot"]
            .as_array()
            .unwrap_or_else(|| panic!("no partitions in {status}"))
            .iter()
            .map(|p| {
                assert_eq!(p["topic"], topic.as_str(), "{status}");
                p["partition"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(partitions, [0, 1, 2, 3], "{status}");
        let status_keys = owned["state"]["once"]["keys"].as_f64().unwrap_or(0.0);
        assert!(
            (EVENTS as f64..1.25 * EVENTS as f64).contains(&status_keys),
            "{status}"
        );
        assert!(owned["state"]["once"]["disk_bytes"].is_i64(), "{status}");
        assert!(owned["restore_seconds"].as_f64().is_some(), "{status}");
        for transform in ["once", "per_host"] {
            let labels = [
                r#"pipeline="owned""#,
                &format!(r#"component="{transform}""#),
            ];
            let held = metric(&text, "connectd_state_partitions", &labels);
            let shown = &owned["state"][transform]["partitions"];
            if per_partition {
                assert_eq!(held, Some(4.0), "{transform}; {context}");
                assert_eq!(shown, 4, "{transform}; {status}");
            } else {
                assert_eq!(held, None, "{transform}; {context}");
                assert!(shown.is_null(), "{transform}; {status}");
            }
        }

        common::signal(&worker, libc::SIGTERM);
        assert!(common::wait_with_deadline(&mut worker, Duration::from_secs(60)).success());
    }
}
