//! Issue 17, step 2: with `state.per_partition` and a `kafka` sink, each checkpoint's
//! state changes go to the changelog topic `connectd-<pipeline>-<transform>-changelog`
//! in the sink's transaction, so that a worker taking a partition over can rebuild its
//! state. Checked here in the running binary, with a live producer and a crash after a
//! checkpoint completed but before the sink committed it (the recovery redoes that
//! commit, changelog included): the changelog, compacted as Kafka would, holds exactly
//! each partition's dedup keys, computed from the input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const HOSTS: usize = 8;
const PARTITIONS: i32 = 4;
const MESSAGES: usize = 4000;
const IDS: usize = 300;

/// Message `i`: host `h<i % 8>` in partition `i % 8 % 4`, id `(i / 8) % 300`, so each
/// host repeats some ids.
fn message(i: usize) -> (i32, String, String) {
    let host = i % HOSTS;
    let id = (i / HOSTS) % IDS;
    let value = format!(r#"{{"host":"h{host}","id":{id},"t":{}}}"#, i * 10);
    ((host as i32) % PARTITIONS, format!("h{host}"), value)
}

/// The dedup keys each partition holds, from the input.
fn expected_keys() -> BTreeMap<u32, BTreeSet<(String, u64)>> {
    let mut keys: BTreeMap<u32, BTreeSet<(String, u64)>> = BTreeMap::new();
    for i in 0..MESSAGES {
        let (partition, host, value) = message(i);
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        keys.entry(partition as u32)
            .or_default()
            .insert((host, v["id"].as_u64().unwrap()));
    }
    keys
}

/// `expiry`: the dedup's retention options.
fn pipeline(input: &str, output: &str, group: &str, expiry: &str) -> String {
    format!(
        r#"name: cl
checkpoint: {{interval: 500ms}}
state: {{per_partition: true}}
sources:
{source}transforms:
  once: {{type: dedup, inputs: [iot], key: [host, id], keep: first, {expiry}}}
sinks:
  out: {{type: kafka, inputs: [once], bootstrap_servers: {bootstrap}, topic: {output}}}
"#,
        source = kafka::iot_source_keyed_by_host(input, group),
        bootstrap = kafka::bootstrap(),
    )
}

/// Every record of `topic`, read committed from each partition's start to its end:
/// `(partition, key, value)`, in partition order.
fn read_topic(topic: &str) -> Vec<(i32, Vec<u8>, Option<Vec<u8>>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka::bootstrap())
        .set("group.id", kafka::unique("changelog-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "no changelog topic `{topic}`");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
        // 0, not Beginning: see `kafka::assign_from_zero`.
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    loop {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            ));
        }
        let position = c.position().unwrap();
        let done = ends.iter().all(|(p, end)| {
            position
                .find_partition(topic, *p)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|at| at >= *end)
                || *end == 0
        });
        if done {
            return out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reading `{topic}` did not reach its end: {ends:?}"
        );
    }
}

/// The (host, id) keys of the output, each asserted to be there once.
fn output_keys(values: &[String], log: &str) -> BTreeSet<(String, u64)> {
    let mut got = BTreeSet::new();
    let mut twice = Vec::new();
    for v in values {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        let key = (
            v["host"].as_str().unwrap().to_string(),
            v["id"].as_u64().unwrap(),
        );
        if !got.insert(key.clone()) {
            twice.push(key);
        }
    }
    assert!(
        twice.is_empty(),
        "{} keys twice in the output, e.g. {:?}; {log}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    got
}

/// A test's topics (the input with 4 partitions) and its pipeline file.
struct Setup {
    input: String,
    output: String,
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

impl Setup {
    fn new() -> Self {
        Self::with_expiry("retention: 1d")
    }

    fn with_expiry(expiry: &str) -> Self {
        let (input, output) = (kafka::unique("iot"), kafka::unique("deduped"));
        kafka::create_topic(&input, PARTITIONS);
        // Made here: a reader subscribed to a topic not there yet would look again
        // only minutes later.
        kafka::create_topic(&output, 1);
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(&input, &output, &kafka::unique("cl"), expiry);
        let cfg = common::write_pipeline(dir.path(), "cl.yaml", &yaml);
        Self {
            input,
            output,
            dir,
            cfg,
        }
    }
}

/// Starts the pipeline with the runtime's INFO log.
fn start(dir: &Path, cfg: &Path) -> std::process::Child {
    common::spawn_captured(
        common::connectd()
            .current_dir(dir)
            .env("RUST_LOG", "warn,connectd_runtime=info")
            .args(["--admin-addr", "off", "--config"])
            .arg(cfg),
    )
}

/// Reads the output until it holds `n` records, then stops the worker with SIGTERM.
fn run_until(child: &mut std::process::Child, output: &str, n: usize) -> (Vec<String>, String) {
    let values = kafka::consume_committed(
        output,
        Duration::from_secs(120),
        Duration::from_secs(2),
        |v| v.len() >= n,
    );
    common::signal(child, libc::SIGTERM);
    let ended = common::wait_with_deadline(child, Duration::from_secs(60));
    let log = common::stderr_of(child);
    assert!(ended.success(), "{log}");
    (values, log)
}

/// Step 3's first part: a worker whose state store is gone (a new machine, a lost
/// volume) but whose `kafka` sink committed a checkpoint rebuilds each partition's
/// state from the changelog before it reads on. Its dedup then keeps dropping the ids
/// it saw before: the second half of the input repeats 1 600 of them.
#[test]
fn a_worker_without_its_state_store_rebuilds_each_partition_from_the_changelog() {
    let Setup {
        input,
        output,
        dir,
        cfg,
    } = Setup::new();
    let half = MESSAGES / 2;
    let producer = kafka::Producer::new();
    producer.send_keyed_to(&input, (0..half).map(message));
    let first: BTreeSet<(String, u64)> = (0..half)
        .map(|i| {
            let v: serde_json::Value = serde_json::from_str(&message(i).2).unwrap();
            (
                v["host"].as_str().unwrap().to_string(),
                v["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut child = start(dir.path(), &cfg);
    let (before, log) = run_until(&mut child, &output, first.len());
    assert_eq!(output_keys(&before, &log), first, "{log}");

    // The pipeline's state directory goes (the worker's instance id stays, as on a
    // volume that keeps only it): no state store, no write-ahead log.
    std::fs::remove_dir_all(dir.path().join(".connectd/cl")).unwrap();
    producer.send_keyed_to(&input, (half..MESSAGES).map(message));
    let mut child = start(dir.path(), &cfg);
    let want: BTreeSet<(String, u64)> = expected_keys().into_values().flatten().collect();
    let (all, log) = run_until(&mut child, &output, want.len());
    let got = output_keys(&all, &log);
    assert_eq!(got.len(), want.len(), "{log}");
    assert_eq!(got, want);
    assert!(
        log.contains("state rebuilt from its changelog"),
        "no rebuild logged: {log}"
    );
}

/// The changelogs waiting beside the sink's write-ahead log: file name and size.
fn kept_changelogs(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir.join(".connectd/cl/wal/out"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let size = e.metadata().map_or(0, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .filter(|(n, _)| n.ends_with(".changelog"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_partitions_state_changes_go_to_its_changelog_partition_in_the_sinks_transaction() {
    let Setup {
        input,
        output,
        dir,
        cfg,
    } = Setup::new();
    // Half the input waits before the start; the rest arrives live after the crash.
    let half = MESSAGES / 2;
    kafka::Producer::new().send_keyed_to(&input, (0..half).map(message));

    // Crash after a checkpoint holding state changes completed, before its sink
    // committed it: the recovery gives that epoch up (the group stands at the sink's
    // checkpoint) and its work, changelog included, is done again.
    let run = common::run_with_env(
        dir.path(),
        &cfg,
        &[("CONNECTD_CRASH_AT", "logged-changes:*:out")],
    );
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(
        said.contains("aborting at logged-changes"),
        "the crash hook did not fire: {said}"
    );
    let kept = kept_changelogs(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    let producer = {
        let (bootstrap, input) = (kafka::bootstrap(), input.clone());
        std::thread::spawn(move || {
            let p = kafka::Producer::connect(&bootstrap);
            for chunk in (half..MESSAGES).collect::<Vec<_>>().chunks(100) {
                p.send_keyed_to(&input, chunk.iter().map(|&i| message(i)));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut child = start(dir.path(), &cfg);
    let want: BTreeSet<(String, u64)> = expected_keys().into_values().flatten().collect();
    let (values, log) = run_until(&mut child, &output, want.len());
    producer.join().unwrap();
    let got = output_keys(&values, &log);
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{} of {} keys out, missing e.g. {missing:?}; {log}",
        got.len(),
        want.len()
    );

    // The changelog, compacted as Kafka compacts it: the last value of each key.
    let records = read_topic("connectd-cl-once-changelog");
    let mut latest: BTreeMap<Vec<u8>, (i32, Option<Vec<u8>>)> = BTreeMap::new();
    for (partition, key, value) in records {
        latest.insert(key, (partition, value));
    }
    let mut keys: BTreeMap<u32, BTreeSet<(String, u64)>> = BTreeMap::new();
    let mut metas = BTreeMap::new();
    for (key, (partition, value)) in latest {
        let task = u32::from_be_bytes(key[1..5].try_into().unwrap());
        assert_eq!(
            partition as u32,
            task & 0xffff,
            "task {task} in partition {partition}"
        );
        let Some(value) = value else { continue };
        match (key[0], key.get(5)) {
            (0, None) => {
                let meta: serde_json::Value = serde_json::from_slice(&value).unwrap();
                metas.insert(task, meta);
            }
            // The dedup's entries: `s`, the expiry segment (8 bytes), and the JSON of
            // the key's values.
            (1, Some(b's')) => {
                let (host, id): (String, u64) = serde_json::from_slice(&key[14..]).unwrap();
                keys.entry(task).or_default().insert((host, id));
            }
            (tag, _) => panic!("a changelog key of unknown kind {tag}"),
        }
    }
    for (task, want) in expected_keys() {
        let held = keys.remove(&task).unwrap_or_default();
        let missing: Vec<_> = want.difference(&held).take(5).collect();
        let extra: Vec<_> = held.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "partition {task}'s changelog: {} keys for {}, missing e.g. {missing:?}, extra e.g. {extra:?}; {log}",
            held.len(),
            want.len()
        );
    }
    assert!(keys.is_empty(), "keys of unknown tasks: {:?}", keys.keys());
    assert_eq!(metas.len(), PARTITIONS as usize, "{metas:?}");
    for (task, meta) in &metas {
        assert!(meta["checkpoint"].as_u64().unwrap() > 1, "{meta}");
        assert!(meta["state"].is_object(), "task {task}: {meta}");
    }
    eprintln!(
        "redone with changelogs {kept:?}; {} keys in 4 partitions",
        want.len()
    );
}

/// Keys a task forgets (here a dedup's, past a 1 s retention) get a tombstone in its
/// changelog: compacted as Kafka compacts it, the changelog holds no value below a
/// task's bound, so it does not grow with every key ever seen, nor does a restore read
/// them. (Before the tombstones, every forgotten key stayed with its value.)
#[test]
fn forgotten_keys_leave_the_changelog_through_tombstones() {
    let Setup {
        input,
        output,
        dir,
        cfg,
    } = Setup::with_expiry("retention: 1s, time: t");
    // Live, 1 s of event time every 100 ms: a key outlives the checkpoint (500 ms) it
    // was logged in before it is forgotten (all at once, no key would be logged).
    let mut child = start(dir.path(), &cfg);
    let producer = {
        let (bootstrap, input) = (kafka::bootstrap(), input.clone());
        std::thread::spawn(move || {
            let p = kafka::Producer::connect(&bootstrap);
            for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
                p.send_keyed_to(&input, chunk.iter().map(|&i| message(i)));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // A host's id comes back 24 s of event time later, past the retention (by event
    // time): every message passes the dedup.
    let (values, log) = run_until(&mut child, &output, MESSAGES);
    producer.join().unwrap();
    assert_eq!(values.len(), MESSAGES, "{log}");

    let records = read_topic("connectd-cl-once-changelog");
    let tombstones = records.iter().filter(|(_, _, v)| v.is_none()).count();
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for (_, key, value) in records {
        latest.insert(key, value);
    }
    let mut bounds: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (key, value) in &latest {
        if let (0, Some(v)) = (key[0], value) {
            let meta: serde_json::Value = serde_json::from_slice(v).unwrap();
            let hex = meta["bound"].as_str().unwrap();
            let bound = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            bounds.insert(key[1..5].to_vec(), bound);
        }
    }
    assert_eq!(bounds.len(), PARTITIONS as usize, "{bounds:?}");
    assert!(
        bounds.values().all(|b| !b.is_empty()),
        "no task forgot anything: {bounds:?}"
    );
    let stale: Vec<_> = latest
        .iter()
        .filter(|(k, v)| k[0] == 1 && v.is_some() && k[5..] < bounds[&k[1..5]][..])
        .map(|(k, _)| String::from_utf8_lossy(&k[5..]).into_owned())
        .collect();
    assert!(
        stale.is_empty(),
        "{} forgotten keys kept their values in the changelog (of {} keys; {tombstones} tombstones), e.g. {:?}",
        stale.len(),
        latest.len(),
        &stale[..stale.len().min(3)]
    );
    assert!(tombstones > 0);
}
