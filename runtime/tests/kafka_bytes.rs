//! Kafka messages keep their bytes: keys, header values and values that are not UTF-8
//! reach the DLQ as they were, and kafka → kafka writes every key back as it came. A
//! record too large for a message is the record's error, not the checkpoint's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{kafka, Worker};

/// A worker running pipeline `p` (checkpoints every 300 ms; `body`: its sources, sinks
/// and settings) in a directory of its own.
fn run_pipeline(body: &str) -> (tempfile::TempDir, Worker) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("name: p\ncheckpoint: {{interval: 300ms}}\n{body}");
    let cfg = common::write_pipeline(dir.path(), "p.yaml", &yaml);
    let (child, _port) = common::start_worker(dir.path(), &["--config", cfg.to_str().unwrap()]);
    (dir, Worker(child))
}

/// The `id`s of the values in `topic` (read_committed), once at least `count` are there.
fn ids_in(topic: &str, count: usize) -> Vec<u64> {
    kafka::consume_committed_messages(
        topic,
        Duration::from_secs(30),
        Duration::from_millis(500),
        |m| m.len() >= count,
    )
    .iter()
    .map(|m| {
        serde_json::from_slice::<serde_json::Value>(&m.value).unwrap()["id"]
            .as_u64()
            .unwrap()
    })
    .collect()
}

/// Each DLQ line of `dir/dlq.jsonl` as its record's `id` and the reason, by `id`.
fn dlq_reasons(dir: &std::path::Path) -> Vec<(u64, String)> {
    let mut reasons: Vec<(u64, String)> = common::json_lines(&dir.join("dlq.jsonl"))
        .iter()
        .map(|l| {
            (
                l["record"]["value"]["id"].as_u64().unwrap(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    reasons
}

/// Runs pipeline file `cfg` to its end, which must be a success.
fn run_to_success(dir: &std::path::Path, cfg: &std::path::Path) {
    let out = common::run_to_end(dir, cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A record holds text keys and headers, and the kafka sink writes them back as UTF-8:
/// a key or header value that is not UTF-8 would come out changed (each invalid byte
/// replaced), so its message is a bad record, kept byte for byte in the DLQ (base64),
/// as is a value that is not UTF-8. The messages around them pass.
#[test]
fn keys_headers_and_values_that_are_not_utf8_reach_the_dlq_byte_for_byte() {
    use base64::Engine as _;
    let topic = kafka::unique("bytes");
    kafka::create_topic(&topic, 1);
    let json = |i: u64| format!(r#"{{"id":{i}}}"#).into_bytes();
    let message =
        |key: &[u8], value: Vec<u8>, headers: Vec<(&'static str, Vec<u8>)>| kafka::RawMessage {
            key: key.to_vec(),
            value,
            headers,
        };
    // A Long key 200 as Kafka's LongSerializer writes it: its last byte is not UTF-8.
    let long_key = 200i64.to_be_bytes();
    let messages = [
        message(b"k0", json(0), vec![("trace", b"t0".to_vec())]),
        message(&long_key, json(1), vec![]),
        message(b"k2", json(2), vec![("schema-id", vec![0x00, 0xfe, 0x81])]),
        message(b"k3", b"{\"id\":\"caf\xe9\"}".to_vec(), vec![]),
        message(b"k4", json(4), vec![("trace", "t\u{e9}4".into())]),
    ];
    kafka::Producer::new().send_with_headers(&topic, &messages);
    let (dir, mut worker) = run_pipeline(&format!(
        "errors: {{tolerance: all, dlq: {{path: out/dlq.jsonl}}}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{topic}], group: {g}}}\nsinks:\n  out: {{type: jsonl, inputs: [in], path: out/out.jsonl}}\n",
        b = kafka::bootstrap(),
        g = kafka::unique("bytes-group"),
    ));
    let lines = |file: &str| common::json_lines(&dir.path().join("out").join(file));
    let started = Instant::now();
    while lines("out.jsonl").len() + lines("dlq.jsonl").len() < messages.len() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all through in 60 s\n{}",
            common::stderr_tail(&worker.0, 4000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    common::signal(&worker.0, libc::SIGTERM);
    common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
    // Passed: messages 0 and 4 (a header value in UTF-8 beyond ASCII is text).
    let out = lines("out.jsonl");
    assert_eq!(
        out.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        [0, 4],
        "{out:?}"
    );
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let dlq = lines("dlq.jsonl");
    assert_eq!(dlq.len(), 3, "{dlq:?}");
    let positions: Vec<String> = (1..=3)
        .map(|o| format!("offset {o} of {topic} partition 0"))
        .collect();
    for (letter, position) in dlq.iter().zip(&positions) {
        assert_eq!(letter["position"], position.as_str(), "{letter}");
    }
    assert_eq!(dlq[0]["key_base64"], b64(&long_key), "{}", dlq[0]);
    assert_eq!(dlq[0]["raw"], r#"{"id":1}"#);
    assert!(
        dlq[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the key is not UTF-8"),
        "{}",
        dlq[0]
    );
    assert_eq!(dlq[1]["key"], "k2");
    assert!(
        dlq[1]["reason"]
            .as_str()
            .unwrap()
            .contains("header `schema-id` is not UTF-8"),
        "{}",
        dlq[1]
    );
    assert_eq!(dlq[2]["raw_base64"], b64(&messages[3].value), "{}", dlq[2]);
    assert_eq!(dlq[2]["raw"], serde_json::Value::Null);
}

/// kafka → kafka passes every key through as the bytes it came with, so each message
/// lands in the partition its key gave it upstream: JSON keys with spaces, numbers in
/// any notation, a JSON string, the text `null`, plain text. A sink keyed by a field
/// no record has says so, once.
#[test]
fn keys_pass_through_kafka_to_kafka_byte_for_byte() {
    let (input, output) = (kafka::unique("keys-in"), kafka::unique("keys-out"));
    kafka::create_topic(&input, 4);
    kafka::create_topic(&output, 4);
    // Keyed by a field no record has: said once, as every message then has the key `null`.
    let by_name = kafka::unique("keys-by-name");
    kafka::create_topic(&by_name, 4);
    let keys = [
        r#"{"id": 1}"#,
        r#"{"id":1}"#,
        " 5",
        "5",
        "1e3",
        "1.50",
        "-0",
        r#""abc""#,
        "null",
        "true",
        "[1, 2]",
        "k7",
        "12345678901234567890",
    ];
    // The producer's partitioner puts each key where its bytes say.
    let messages: Vec<(String, String)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), format!(r#"{{"id":{i}}}"#)))
        .collect();
    kafka::produce(&input, messages);
    let upstream = kafka::consume_committed_messages(
        &input,
        Duration::from_secs(30),
        Duration::from_millis(500),
        |m| m.len() >= keys.len(),
    );
    let (_dir, mut worker) = run_pipeline(&format!(
        "sources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{input}], group: {g}}}\nsinks:\n  out: {{type: kafka, inputs: [in], bootstrap_servers: {b}, topic: {output}}}\n  by_name: {{type: kafka, inputs: [in], bootstrap_servers: {b}, topic: {by_name}, key: [name]}}\n",
        b = kafka::bootstrap(),
        g = kafka::unique("keys-group"),
    ));
    let downstream = kafka::consume_committed_messages(
        &output,
        Duration::from_secs(60),
        Duration::from_secs(1),
        |m| m.len() >= keys.len(),
    );
    common::signal(&worker.0, libc::SIGTERM);
    common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
    let log = common::stderr_of(&worker.0);
    assert_eq!(
        log.matches("kafka: a record has no field `name`, so it is `null` in the message key")
            .count(),
        1,
        "{log}"
    );
    let by_value = |ms: &[kafka::Consumed]| -> std::collections::BTreeMap<Vec<u8>, (i32, String)> {
        ms.iter()
            .map(|m| {
                let key = String::from_utf8(m.key.clone().unwrap()).unwrap();
                (m.value.clone(), (m.partition, key))
            })
            .collect()
    };
    let (upstream, downstream) = (by_value(&upstream), by_value(&downstream));
    assert_eq!(upstream.len(), keys.len());
    assert_eq!(
        downstream, upstream,
        "keys or partitions changed on the way"
    );
}

/// librdkafka refuses a message over the producer's `message.max.bytes` (1 000 000 by
/// default). Inside the sink's transaction that failed the checkpoint, at every retry,
/// until the pipeline stopped with nothing written: one big record held back all the
/// others. It now goes to the DLQ, sized as librdkafka counts (a message of exactly the
/// limit passes), and the rest are written.
#[test]
fn a_record_too_large_for_a_message_goes_to_the_dlq_and_the_rest_are_written() {
    let topic = kafka::unique("sizes");
    kafka::create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    // With `message.max.bytes: 2000`: the value `{"id":N,"v":"x…"}` plus librdkafka's 36
    // bytes of record overhead, at the limit and one byte over it; then a 1.5 MB one
    // under a sink with the default limit.
    let record = |id: usize, value_bytes: usize| {
        let padding = value_bytes - format!(r#"{{"id":{id},"v":""}}"#).len();
        format!("{{\"id\":{id},\"v\":\"{}\"}}\n", "x".repeat(padding))
    };
    let input = [record(1, 2000 - 36), record(2, 2001 - 36), record(3, 20)].concat();
    std::fs::write(dir.path().join("small.jsonl"), input).unwrap();
    let big = [record(4, 20), record(5, 1_500_000), record(6, 20)].concat();
    std::fs::write(dir.path().join("big.jsonl"), big).unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: p\ncheckpoint: {{interval: 300ms}}\nerrors: {{tolerance: all, dlq: {{path: dlq.jsonl}}}}\nsources:\n  small: {{type: file, path: small.jsonl}}\n  big: {{type: file, path: big.jsonl}}\nsinks:\n  tight: {{type: kafka, inputs: [small], bootstrap_servers: {b}, topic: {topic}, properties: {{message.max.bytes: \"2000\"}}}}\n  default: {{type: kafka, inputs: [big], bootstrap_servers: {b}, topic: {topic}}}\n",
            b = kafka::bootstrap(),
        ),
    );
    run_to_success(dir.path(), &cfg);
    let mut ids = ids_in(&topic, 4);
    ids.sort_unstable();
    assert_eq!(ids, [1, 3, 4, 6]);
    let reasons = dlq_reasons(dir.path());
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(reasons[0].1.contains("the message is 2001 bytes (key, value and headers), over the producer's message.max.bytes of 2000"), "{reasons:?}");
    assert_eq!(reasons[1].0, 5);
    assert!(
        reasons[1]
            .1
            .contains("over the producer's message.max.bytes of 1000000"),
        "{reasons:?}"
    );
}

/// A record a transform refuses came from a Kafka message too: its DLQ line names that
/// message (topic, partition, offset), as the source's own bad messages do. The
/// position was empty, so the message could not be found again.
#[test]
fn a_record_a_transform_refuses_is_placed_by_its_kafka_message() {
    let topic = kafka::unique("placed");
    kafka::create_topic(&topic, 1);
    let messages: Vec<(String, String)> = [r#"{"id":1}"#, r#"{"id":"two"}"#, r#"{"id":3}"#]
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), v.to_string()))
        .collect();
    kafka::produce(&topic, messages);
    let (dir, mut worker) = run_pipeline(&format!(
        "errors: {{tolerance: all, dlq: {{path: out/dlq.jsonl}}}}\nsources:\n  in: {{type: kafka, bootstrap_servers: {b}, topics: [{topic}], group: {g}}}\ntransforms:\n  positive: {{type: filter, inputs: [in], where: id > 0}}\nsinks:\n  out: {{type: jsonl, inputs: [positive], path: out/out.jsonl}}\n",
        b = kafka::bootstrap(),
        g = kafka::unique("placed-group"),
    ));
    let lines = |file: &str| common::json_lines(&dir.path().join("out").join(file));
    let started = Instant::now();
    while lines("out.jsonl").len() + lines("dlq.jsonl").len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all through in 60 s\n{}",
            common::stderr_tail(&worker.0, 4000)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    common::signal(&worker.0, libc::SIGTERM);
    common::wait_with_deadline(&mut worker.0, Duration::from_secs(60));
    let dlq = lines("dlq.jsonl");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["component"], "positive");
    assert_eq!(
        dlq[0]["position"],
        format!("offset 1 of {topic} partition 0"),
        "{}",
        dlq[0]
    );
}

/// With `topic_field`, a value that cannot name a topic was produced anyway: its message
/// failed inside the transaction, and so did the checkpoint, at every retry. It is now
/// the record's error, and the records around it are written.
#[test]
fn a_record_whose_topic_field_names_no_topic_goes_to_the_dlq() {
    let topic = kafka::unique("routed");
    kafka::create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{{\"to\":\"{topic}\",\"id\":1}}\n{{\"to\":\"bad topic!\",\"id\":2}}\n{{\"to\":5,\"id\":3}}\n{{\"id\":4}}\n{{\"to\":\"{topic}\",\"id\":5}}\n"
    );
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = common::write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: p\nerrors: {{tolerance: all, dlq: {{path: dlq.jsonl}}, retry_timeout: 20s}}\nsources:\n  lines: {{type: file, path: in.jsonl}}\nsinks:\n  routed: {{type: kafka, inputs: [lines], bootstrap_servers: {b}, topic_field: to}}\n",
            b = kafka::bootstrap(),
        ),
    );
    run_to_success(dir.path(), &cfg);
    let ids = ids_in(&topic, 2);
    assert_eq!(ids, [1, 5]);
    let reasons = dlq_reasons(dir.path());
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0]
            .1
            .contains("the topic field `to` is `bad topic!`: a topic name holds only"),
        "{reasons:?}"
    );
    assert!(
        reasons[1]
            .1
            .contains("the topic field `to` is an integer (5)"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].1.contains("the record has no topic field `to`"),
        "{reasons:?}"
    );
}

/// On a broker that does not create topics on first use (here the client does not ask
/// it to: `allow.auto.create.topics: false`), a message to a missing topic failed its
/// transaction 30 s later, at every retry, naming no topic; on Tansu, which shows
/// aborted records to read_committed readers, the failed commit even looked committed
/// and the records were lost. A missing fixed topic now stops the sink at open, naming
/// it; a record routed to one goes to the DLQ, and the others are written.
#[test]
fn a_topic_that_does_not_exist_is_named_and_nothing_is_lost() {
    let (topic, missing) = (kafka::unique("present"), kafka::unique("absent"));
    kafka::create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{{\"to\":\"{topic}\",\"id\":1}}\n{{\"to\":\"{missing}\",\"id\":2}}\n{{\"to\":\"{topic}\",\"id\":3}}\n"
    );
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let pipeline = |name: &str, route: &str| {
        common::write_pipeline(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nerrors: {{tolerance: all, dlq: {{path: dlq.jsonl}}, retry_timeout: 20s}}\nsources:\n  lines: {{type: file, path: in.jsonl}}\nsinks:\n  out: {{type: kafka, inputs: [lines], bootstrap_servers: {b}, {route}, properties: {{allow.auto.create.topics: \"false\"}}}}\n",
                b = kafka::bootstrap(),
            ),
        )
    };
    let fixed = pipeline("fixed", &format!("topic: {missing}"));
    let out = common::run_to_end(dir.path(), &fixed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot open: kafka sink: the topic `{missing}` does not exist"
        )),
        "{stderr}"
    );

    let routed = pipeline("routed", "topic_field: to");
    run_to_success(dir.path(), &routed);
    assert_eq!(ids_in(&topic, 2), [1, 3]);
    let reasons = dlq_reasons(dir.path());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0]
            .1
            .contains(&format!("the topic `{missing}` does not exist")),
        "{reasons:?}"
    );
}
