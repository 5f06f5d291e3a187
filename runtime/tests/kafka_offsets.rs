//! KIP-875's offset operations on a running kafka → kafka pipeline, against a real
//! Kafka-protocol broker (a Tansu broker per test, see `common::tansu`, or
//! `KAFKA_BOOTSTRAP`): a reset starts it over, an alter rewinds one partition. The
//! output is read back and counted per input id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::kafka;

fn record(i: u64) -> (String, String) {
    (
        format!("k{}", i % 16),
        format!(r#"{{"id":{i},"v":{},"name":"n{i}"}}"#, i % 100),
    )
}

/// A worker process, killed when the test ends however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An offset reset of a stopped kafka → kafka pipeline: the sink commits a reset record
/// under its checkpoint key and the source's group goes back to the start, so the next
/// run reads and writes the whole input again.
#[test]
fn an_offset_reset_starts_a_kafka_pipeline_over() {
    let k = PausedPipeline::after_200("reset");
    let (code, body) = common::http(
        "DELETE",
        k.port,
        &format!("/connectors/{}/offsets", k.name),
        None,
    );
    assert_eq!(code, 200, "{body}");
    // Each input record twice: once per run.
    let values = k.resume_until(400);
    let ids = kafka::ids(&values);
    assert!(ids.values().all(|n| *n == 2) && ids.len() == 200);
    k.stop();
}

/// `PATCH .../offsets` rewinds one partition: the kafka source also moves its group's
/// committed offset (else the group's, being newer, would win and nothing be re-read).
#[test]
fn an_altered_offset_rewinds_a_kafka_partition() {
    let k = PausedPipeline::after_200("alter");
    let (_, body) = common::http(
        "GET",
        k.port,
        &format!("/connectors/{}/offsets", k.name),
        None,
    );
    let offsets: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parts = &offsets["sources"]["in"][&k.input_topic];
    let (p0, p1) = (parts["0"].as_i64().unwrap(), parts["1"].as_i64().unwrap());
    assert_eq!(p0 + p1, 200, "{offsets}");
    assert!(p0 > 50, "{offsets}");
    let mut offset = serde_json::Map::new();
    offset.insert(k.input_topic.clone(), serde_json::json!({"0": 50, "1": p1}));
    let patch = serde_json::json!({"offsets": [{"partition": {"source": "in"}, "offset": offset}]});
    let (code, body) = common::http_with_body(
        "PATCH",
        k.port,
        &format!("/connectors/{}/offsets", k.name),
        None,
        &patch.to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let values = k.resume_until(200 + (p0 - 50) as usize);
    let ids = kafka::ids(&values);
    assert_eq!(ids.len(), 200);
    let twice = ids.values().filter(|n| **n == 2).count() as i64;
    assert_eq!(
        twice,
        p0 - 50,
        "partition 0 from offset 50 again, nothing else"
    );
    k.stop();
}

/// A kafka → kafka pipeline that has copied 200 records and is paused.
struct PausedPipeline {
    name: String,
    input_topic: String,
    output: String,
    port: u16,
    worker: Worker,
    _dir: tempfile::TempDir,
}

impl PausedPipeline {
    fn after_200(prefix: &str) -> Self {
        let input_topic = kafka::unique(&format!("{prefix}-in"));
        let output = kafka::unique(&format!("{prefix}-out"));
        kafka::create_topic(&input_topic, 2);
        kafka::create_topic(&output, 2);
        kafka::produce(&input_topic, (0..200).map(record));
        let name = kafka::unique(prefix);
        let dir = tempfile::tempdir().unwrap();
        common::write_pipeline(
            dir.path(),
            "keepalive.yaml",
            "name: keepalive\nsources:\n  gen: {type: trades, seed: 1, rate: 20, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [gen], path: out/k.csv, columns: [id]}\n",
        );
        common::write_pipeline(
            dir.path(),
            "k2k.yaml",
            &format!(
                "name: {name}\ncheckpoint: {{interval: 300ms}}\nsources:\n  in:\n    type: kafka\n    bootstrap_servers: {b}\n    topics: [{input_topic}]\n    group: {group}\n    properties: {{session.timeout.ms: \"2000\", heartbeat.interval.ms: \"500\"}}\nsinks:\n  out:\n    type: kafka\n    inputs: [in]\n    bootstrap_servers: {b}\n    topic: {output}\n",
                b = kafka::bootstrap(),
                group = kafka::unique(&format!("{prefix}-group")),
            ),
        );
        let port = common::free_port();
        let worker = Worker(common::spawn_captured(
            common::connectd()
                .current_dir(dir.path())
                .args(["--admin-addr", &format!("127.0.0.1:{port}")])
                .args(["--config", "keepalive.yaml", "k2k.yaml"]),
        ));
        common::wait_for_admin(port);
        let k = PausedPipeline {
            name,
            input_topic,
            output,
            port,
            worker,
            _dir: dir,
        };
        assert_eq!(k.committed(200).len(), 200);
        assert_eq!(
            common::http("PUT", port, &format!("/connectors/{}/pause", k.name), None).0,
            202
        );
        let started = Instant::now();
        while k.state() != "PAUSED" {
            assert!(started.elapsed() < Duration::from_secs(60), "not paused");
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }

    fn committed(&self, n: usize) -> Vec<String> {
        kafka::consume_committed(
            &self.output,
            Duration::from_secs(90),
            Duration::from_secs(2),
            |v| v.len() >= n,
        )
    }

    fn state(&self) -> serde_json::Value {
        let (_, body) = common::http(
            "GET",
            self.port,
            &format!("/connectors/{}/status", self.name),
            None,
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["state"].clone()
    }

    /// Resumes; the output once it holds `n` records (checked to be exactly `n`).
    fn resume_until(&self, n: usize) -> Vec<String> {
        assert_eq!(
            common::http(
                "PUT",
                self.port,
                &format!("/connectors/{}/resume", self.name),
                None
            )
            .0,
            202
        );
        let values = self.committed(n);
        assert_eq!(
            values.len(),
            n,
            "{}",
            common::stderr_tail(&self.worker.0, 3000)
        );
        values
    }

    fn stop(mut self) {
        common::signal(&self.worker.0, libc::SIGTERM);
        common::wait_with_deadline(&mut self.worker.0, Duration::from_secs(60));
    }
}
