//! The exactly-once conformance suite (issue 15): every exactly-once sink is one entry
//! of `common::sink_table`, and each scenario here runs one pipeline into all of them.
//! Expected records are computed here from the input, never taken from a run.
//! - seeded SIGKILLs over a file backlog, with some kills shown to land inside a commit
//!   (`CONNECTD_TEST_COMMIT_TRACE`);
//! - a live source that never replays (a local Alpaca-protocol server): every sink
//!   holds the same quotes, none twice;
//! - a 4-partition Kafka topic, restarted while the killed member still holds the
//!   group: every id in every sink exactly once;
//! - every sink added with `start: beginning` to a pipeline that has run, with a crash
//!   once all are backfilled and before they commit: each holds every record once.
//!
//! Sinks are keyless where they accept it (see `sink_table`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "../../connectors/tests/alpaca_server/mod.rs"]
mod alpaca_server;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::sink_table::{self, Targets};
use common::*;
use rand::Rng;

fn spawn_traced(dir: &Path, cfg: &Path, trace: &Path) -> Child {
    spawn_captured(
        connectd()
            .current_dir(dir)
            .env("CONNECTD_TEST_COMMIT_TRACE", trace)
            .args(["--admin-addr", "off", "--config"])
            .arg(cfg),
    )
}

/// The sinks a killed run was committing in: those whose last trace line is `begin`.
fn inside_commit(trace: &Path) -> Vec<String> {
    let mut open = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(trace).unwrap_or_default().lines() {
        let mut parts = line.split(' ');
        let (Some(what), Some(sink)) = (parts.next(), parts.next()) else {
            continue; // torn by the kill
        };
        open.insert(sink.to_string(), what == "begin");
    }
    open.into_iter()
        .filter(|(_, o)| *o)
        .map(|(s, _)| s)
        .collect()
}

/// `kills` runs, each started by `start`, left running a seeded while (ms from
/// `millis`) and SIGKILLed; then one more, stopped with SIGTERM. A live source never
/// ends, so every run must still be running when it is stopped.
fn kill_then_stop(
    seed: u64,
    rng: &mut rand::rngs::StdRng,
    kills: usize,
    millis: std::ops::Range<u64>,
    start: impl Fn() -> Child,
) {
    for k in 0..=kills {
        let mut child = start();
        std::thread::sleep(Duration::from_millis(rng.random_range(millis.clone())));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: run {k} ended by itself: {}",
            stderr_tail(&child, 4000)
        );
        if k < kills {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        } else {
            signal(&child, libc::SIGTERM);
            assert!(
                wait_with_deadline(&mut child, Duration::from_secs(60)).success(),
                "seed {seed}: {}",
                stderr_tail(&child, 4000)
            );
        }
    }
}

/// 30 000 records from a file into every sink, checkpoints every 100 ms, SIGKILLed at
/// seeded random moments until the input is done.
#[test]
fn every_sink_is_exactly_once_across_seeded_sigkills() {
    const RECORDS: u64 = 30_000;
    let (seed, mut rng) = seeded_rng();
    let dir = tempfile::tempdir().unwrap();
    let t = Targets::new(dir.path(), "conf_kill");
    let mut input = String::new();
    for n in 0..RECORDS {
        input.push_str(&format!("{{\"n\":{n},\"symbol\":\"S{}\"}}\n", n % 7));
    }
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: conformance\ncheckpoint: {{interval: 100ms}}\nsources:\n  in: {{type: file, path: in.jsonl}}\n{}",
            sink_table::sinks_yaml(&t, "in")
        ),
    );
    let (mut kills, mut in_commit) = (0, Vec::new());
    for k in 0..12 {
        let trace = dir.path().join(format!("trace-{k}.log"));
        let mut child = spawn_traced(dir.path(), &cfg, &trace);
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
        in_commit.extend(inside_commit(&trace));
    }
    println!("seed {seed}: {kills} kills, inside a commit of: {in_commit:?}");
    assert!(kills >= 4, "seed {seed}: only {kills} kills before the end");
    assert!(
        !in_commit.is_empty(),
        "seed {seed}: no kill landed inside a commit"
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(
        wait_with_deadline(&mut child, Duration::from_secs(300)).success(),
        "seed {seed}: {}",
        stderr_tail(&child, 4000)
    );
    let want: Vec<u64> = (0..RECORDS).collect();
    let report = sink_table::check_all(&t, &want, &format!("seed {seed}"));
    println!("{report}");
}

/// Connection `k` of the Alpaca server gets quotes `k * 10_000 ..`: 40 batches of 25,
/// 15 ms apart, then the next connection's.
fn sessions(connections: usize) -> Vec<Vec<alpaca_server::Step>> {
    use alpaca_server::{batch, quote, Step};
    let mut all: Vec<Vec<Step>> = (0..connections)
        .map(|k| {
            let mut steps = Vec::new();
            for b in 0..40 {
                let quotes: Vec<String> = (0..25)
                    .map(|i| {
                        let n = k * 10_000 + b * 25 + i;
                        let t = format!("2024-04-01T15:00:00.{:06}Z", n % 1_000_000);
                        quote("SPY", &t, n as f64)
                    })
                    .collect();
                steps.push(batch(&quotes));
                steps.push(Step::Wait(Duration::from_millis(15)));
            }
            steps
        })
        .collect();
    // Then silence, for the last run to stop.
    all.push(vec![Step::Wait(Duration::from_secs(600))]);
    all
}

/// A live source that never replays: a restarted worker gets new quotes, never the old
/// ones, so the quotes sent after a kill's last checkpoint are lost — by every sink
/// alike. Every sink must hold the same quotes as the CSV, none twice, and only quotes
/// the server sent.
#[test]
fn a_live_source_into_every_sink_stays_exactly_once_across_sigkills() {
    const KILLS: usize = 10;
    let (seed, mut rng) = seeded_rng();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = alpaca_server::AlpacaServer::default();
    *server.sessions.lock().unwrap() = sessions(KILLS + 1);
    let url = rt.block_on(server.start());
    let dir = tempfile::tempdir().unwrap();
    let t = Targets::new(dir.path(), "conf_live");
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: live\ncheckpoint: {{interval: 100ms}}\nsources:\n  quotes: {{type: alpaca, url: \"{url}\", key: {}, secret: {}, quotes: [SPY]}}\ntransforms:\n  prices: {{type: map, inputs: [quotes], fields: {{n: to_int(bp), symbol: S}}, keep: [n, symbol]}}\n{}",
            alpaca_server::KEY,
            alpaca_server::SECRET,
            sink_table::sinks_yaml(&t, "prices")
        ),
    );
    kill_then_stop(seed, &mut rng, KILLS, 600..1500, || {
        spawn(dir.path(), &cfg, &[])
    });
    drop(rt);
    // What the CSV holds is the reference: checked first to be sane on its own.
    let entries = sink_table::entries();
    let csv = (entries[0].read)(&t, 0);
    let mut want = csv.clone();
    want.dedup();
    assert_eq!(
        want.len(),
        csv.len(),
        "seed {seed}: a quote twice in the CSV"
    );
    assert!(
        want.len() > 1000,
        "seed {seed}: only {} quotes arrived",
        want.len()
    );
    assert!(
        want.iter()
            .all(|n| (n % 10_000) < 1000 && (n / 10_000) as usize <= KILLS),
        "seed {seed}: a quote the server never sent"
    );
    let report = sink_table::check_all(&t, &want, &format!("seed {seed}"));
    println!("{report}");
}

/// A 4-partition topic, SIGKILLed at seeded moments and restarted at once: the new
/// member joins while the killed one still holds its partitions, so it first gets
/// only some. Every id must be in every sink exactly once.
#[test]
fn a_four_partition_kafka_source_into_every_sink_is_exactly_once() {
    const IDS: u64 = 20_000;
    let (seed, mut rng) = seeded_rng();
    let topic = kafka::unique("conf-four");
    kafka::create_topic(&topic, 4);
    kafka::produce(
        &topic,
        (0..IDS).map(|n| {
            (
                format!("k{}", n % 64),
                format!(r#"{{"n":{n},"symbol":"k{}"}}"#, n % 64),
            )
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let t = Targets::new(dir.path(), "conf_four");
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: four\ncheckpoint: {{interval: 200ms}}\nsources:\n  in:\n    type: kafka\n    bootstrap_servers: {}\n    topics: [{topic}]\n    group: {}\n    start: earliest\n    properties: {{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\", max.partition.fetch.bytes: \"20000\"}}\n{}",
            kafka::bootstrap(),
            kafka::unique("conf-four-group"),
            sink_table::sinks_yaml(&t, "in")
        ),
    );
    let csv_count = || {
        std::fs::read_to_string(dir.path().join("out/n.csv"))
            .unwrap_or_default()
            .lines()
            .count()
            .saturating_sub(1)
    };
    for _ in 0..5 {
        let mut child = spawn(dir.path(), &cfg, &[]);
        // Until it writes, then a random while more.
        let (started, before) = (Instant::now(), csv_count());
        while csv_count() == before && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: {}",
            stderr_tail(&child, 4000)
        );
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }
    // Then runs until every id is in the CSV, each stopped gracefully (one may stop
    // before it reads anything while the killed member's session lingers; lost records
    // stay lost whatever the number of runs).
    for _ in 0..3 {
        let mut child = spawn(dir.path(), &cfg, &[]);
        let started = Instant::now();
        while csv_count() < IDS as usize && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(1000));
        signal(&child, libc::SIGTERM);
        assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
        if csv_count() >= IDS as usize {
            break;
        }
    }
    let want: Vec<u64> = (0..IDS).collect();
    let report = sink_table::check_all(&t, &want, &format!("seed {seed}"));
    println!("{report}");
}

/// The shipped `kafka/alpaca-spy-to-kafka.yaml` (quotes → 5 s average → a Kafka topic
/// and a CSV file) under the live-source test: a server that never replays, seeded
/// SIGKILLs, then SIGTERM. The topic and the CSV must hold the same windows, none twice.
#[test]
fn the_alpaca_to_kafka_example_keeps_its_two_sinks_equal_across_sigkills() {
    use alpaca_server::{batch, quote, Step};
    const KILLS: usize = 5;
    let (seed, mut rng) = seeded_rng();
    // Connection k: quotes g = k·1000 .. k·1000+999, 20 ms of event time apart (250 per
    // 5 s window), in 40 batches 15 ms apart; event time goes on across connections.
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-04-01T15:00:00Z").unwrap();
    let mut sessions: Vec<Vec<Step>> = (0..=KILLS)
        .map(|k| {
            (0..40)
                .flat_map(|b| {
                    let quotes: Vec<String> = (0..25)
                        .map(|i| {
                            let g = (k * 1000 + b * 25 + i) as i64;
                            let t = t0 + chrono::Duration::milliseconds(g * 20);
                            let t = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                            quote("SPY", &t, 100.0 + (g % 97) as f64)
                        })
                        .collect();
                    [batch(&quotes), Step::Wait(Duration::from_millis(15))]
                })
                .collect()
        })
        .collect();
    sessions.push(vec![Step::Wait(Duration::from_secs(600))]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = alpaca_server::AlpacaServer::default();
    *server.sessions.lock().unwrap() = sessions;
    let url = rt.block_on(server.start());
    let topic = kafka::unique("spy-5s-avg");
    kafka::create_topic(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker.yaml");
    std::fs::write(
        &worker,
        format!(
            "name: {}\nkafka: {{bootstrap_servers: {}}}\n",
            kafka::unique("alpaca"),
            kafka::bootstrap()
        ),
    )
    .unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/kafka/alpaca-spy-to-kafka.yaml");
    // Checkpoints are 1 s apart in the example: runs long enough to commit some.
    kill_then_stop(seed, &mut rng, KILLS, 1200..2500, || {
        spawn_captured(
            connectd()
                .current_dir(dir.path())
                .env("ALPACA_STREAM_URL", &url)
                .env("APCA_API_KEY_ID", alpaca_server::KEY)
                .env("APCA_API_SECRET_KEY", alpaca_server::SECRET)
                .env("SPY_TOPIC", &topic)
                .args(["--admin-addr", "off", "--worker"])
                .arg(&worker)
                .arg("--config")
                .arg(&example),
        )
    });
    drop(rt);
    let csv: Vec<(i64, i64, String)> = read(dir.path().join("out/spy-5s-avg.csv"))
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[2], "SPY", "{l}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3].to_string(),
            )
        })
        .collect();
    assert!(csv.len() >= 3, "seed {seed}: only {} windows", csv.len());
    let values = kafka::consume_committed(
        &topic,
        Duration::from_secs(30),
        Duration::from_secs(2),
        |v| v.len() >= csv.len(),
    );
    let topic_rows: Vec<(i64, i64, String)> = values
        .iter()
        .map(|v| {
            let v: serde_json::Value = serde_json::from_str(v).unwrap();
            (
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["avg_price"].as_f64().unwrap().to_string(),
            )
        })
        .collect();
    println!(
        "seed {seed}: {} windows in the CSV, {} in the topic",
        csv.len(),
        topic_rows.len()
    );
    let mut starts: Vec<i64> = csv.iter().map(|r| r.0).collect();
    starts.dedup();
    assert_eq!(
        starts.len(),
        csv.len(),
        "seed {seed}: a window twice in the CSV"
    );
    assert_eq!(
        topic_rows, csv,
        "seed {seed}: the topic and the CSV hold different windows"
    );
}

/// Every sink added with `start: beginning` after a first run (stopped with SIGTERM
/// half-way through a tailed file) is backfilled with that half; a crash once every
/// backfill is in its sink's log, before any commit, makes the next start write each
/// one from the log (chunked) and commit it; then the sinks get the rest with the others.
#[test]
fn every_sink_added_with_start_beginning_holds_every_record_once() {
    const RECORDS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let t = Targets::new(dir.path(), "conf_backfill");
    let lines = |r: std::ops::Range<u64>| -> String {
        r.map(|n| format!("{{\"n\":{n},\"symbol\":\"S{}\"}}\n", n % 7))
            .collect()
    };
    let pipeline = |follow: bool, added: &str| {
        format!(
            "name: conformance_backfill\ncheckpoint: {{interval: 100ms}}\nsources:\n  in: {{type: file, path: in.jsonl, follow: {follow}}}\nsinks:\n  first: {{type: jsonl, inputs: [in], path: out/first.jsonl}}\n{added}"
        )
    };
    std::fs::write(dir.path().join("in.jsonl"), lines(0..RECORDS / 2)).unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &pipeline(true, ""));
    let mut child = spawn(dir.path(), &cfg, &[]);
    let started = Instant::now();
    let first = dir.path().join("out/first.jsonl");
    while std::fs::read_to_string(&first).map_or(0, |t| t.lines().count()) < (RECORDS / 2) as usize
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("in.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, lines(RECORDS / 2..RECORDS).as_bytes()).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &pipeline(false, &sink_table::sinks_starting_at_beginning(&t, "in")),
    );
    let last = sink_table::entries().last().unwrap().name;
    let crashed = run_with_env(
        dir.path(),
        &cfg,
        &[("CONNECTD_CRASH_AT", &format!("backfilled:*:{last}_out"))],
    );
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        stderr.contains("aborting at backfilled"),
        "the hook did not fire: {stderr}"
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    assert!(
        wait_with_deadline(&mut child, Duration::from_secs(300)).success(),
        "{}",
        stderr_tail(&child, 4000)
    );
    let want: Vec<u64> = (0..RECORDS).collect();
    let report = sink_table::check_all(&t, &want, "backfilled sinks");
    println!("{report}");
    let mut firsts: Vec<u64> = read(&first)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    firsts.sort_unstable();
    assert_eq!(firsts, want, "the sink that was there from the start");
}
