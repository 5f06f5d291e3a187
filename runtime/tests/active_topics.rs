//! Kafka Connect's active topics (KIP-558) in the running binary: `GET
//! /connectors/{name}/topics` lists the topics a pipeline's sources read and its sinks
//! wrote to; `PUT .../topics/reset` forgets them, and those used again come back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The pipeline's active topics, once they are `want` (or the test fails after 60 s).
fn wait_for_topics(port: u16, name: &str, want: &[&str]) {
    let started = Instant::now();
    loop {
        let (code, body) = http("GET", port, &format!("/connectors/{name}/topics"), None);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v == serde_json::json!({ name: {"topics": want} }) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "topics {body}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_topics_a_pipeline_read_and_wrote_are_listed_and_reset() {
    let (input, output) = (kafka::unique("active-in"), kafka::unique("active-out"));
    kafka::create_topic(&input, 2);
    kafka::create_topic(&output, 1);
    let batch = |from: u64| (from..from + 10).map(|i| (format!("k{i}"), format!("{{\"id\":{i}}}")));
    kafka::produce(&input, batch(0));
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: relay\ncheckpoint: {{interval: 200ms}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{input}], group: {g}}}\nsinks:\n  out: {{type: kafka, inputs: [in], bootstrap_servers: {b}, topic: {output}}}\n",
            b = kafka::bootstrap(),
            g = kafka::unique("active-group"),
        ),
    );
    let (mut worker, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let mut both = [input.as_str(), output.as_str()];
    both.sort();
    wait_for_topics(port, "relay", &both);

    let (code, body) = http("PUT", port, "/connectors/relay/topics/reset", None);
    assert_eq!(code, 200, "{body}");
    wait_for_topics(port, "relay", &[]);
    // Used again: listed again.
    kafka::produce(&input, batch(10));
    wait_for_topics(port, "relay", &both);

    let (code, body) = http("GET", port, "/connectors/nothing/topics", None);
    assert_eq!(code, 404, "{body}");
    signal(&worker, libc::SIGTERM);
    assert!(wait_with_deadline(&mut worker, Duration::from_secs(60)).success());
}
