//! Shutting down when a sink is not healthy. A stop ends a sink's retries at once
//! instead of after `errors.retry_timeout`, and a second signal exits at once. A server
//! that accepts connections and never answers is an error, not a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A TCP server that accepts every connection and never sends a byte (an overloaded
/// server, or a port that is not the database's). Returns its port and the
/// connections it holds.
fn silent_server() -> (u16, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            holder.lock().unwrap().push(stream);
        }
    });
    (port, held)
}

/// Waits until `child` has logged `text`, failing the test after `limit`.
fn wait_for_log(child: &std::process::Child, text: &str, limit: Duration) {
    let started = Instant::now();
    while !stderr_tail(child, 1 << 20).contains(text) {
        assert!(
            started.elapsed() < limit,
            "`{text}` not logged within {limit:?}: {}",
            stderr_tail(child, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mysql_pipeline(port: u16, retry_timeout: &str) -> String {
    format!(
        "name: silent\nerrors: {{retry_timeout: {retry_timeout}}}\nsources:\n  trades: {{type: trades, seed: 1, rate: 0, count: 100}}\nsinks:\n  out: {{type: mysql, inputs: [trades], url: \"mysql://root@127.0.0.1:{port}/db\", table: t, columns: [id, price]}}\n"
    )
}

/// The sink's database goes away mid-run, for longer than the test waits, with
/// `errors.retry_timeout: 10m`. SIGTERM must end the retries: the worker exits with
/// the sink's error (exit 1) instead of waiting for the database (it would then
/// finish normally, exit 0). Run again with the database back, the pipeline delivers
/// every record: the stop that gave up lost nothing.
#[test]
fn a_stop_ends_the_retries_of_a_sink_that_is_down_and_loses_nothing() {
    let (addr, outage) = common::cql_server::start_emulator();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: stopping\ncheckpoint: {{interval: 200ms}}\nerrors: {{retry_timeout: 10m}}\nsources:\n  trades: {{type: trades, seed: 9, rate: 2500, count: 20000, start: 0}}\nsinks:\n  out:\n    inputs: [trades]\n    type: cassandra\n    contact_points: [\"{addr}\"]\n    keyspace: stopping\n    table: trades\n    consistency: one\n    columns: [id, volume]\n    create_schema:\n      primary_key: id\n      columns: {{id: text, volume: bigint}}\n"
        ),
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running when the database goes away: {}",
        stderr_tail(&child, 4000)
    );
    let outage_len = Duration::from_secs(25);
    let down_at = Instant::now();
    outage.go_down_for(outage_len);
    wait_for_log(&child, "failed; retrying", Duration::from_secs(20));
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(120));
    let log = stderr_of(&child);
    assert!(
        down_at.elapsed() < outage_len,
        "the worker waited for the database to come back: {log}"
    );
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("a stop was requested, so no more retries"),
        "{log}"
    );
    assert!(log.contains("pipeline `stopping` failed at `out`"), "{log}");

    // The database back: the same pipeline again, to its end.
    std::thread::sleep(outage_len.saturating_sub(down_at.elapsed()) + Duration::from_secs(1));
    let out = run_to_end(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = common::mysql::rt().block_on(async {
        use futures_util::StreamExt;
        let session = common::cql_server::session(&addr).await;
        let pager = session
            .query_iter("SELECT id, volume FROM stopping.trades", ())
            .await
            .unwrap();
        let mut rows = pager.rows_stream::<(String, i64)>().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        while let Some(r) = rows.next().await {
            ids.insert(r.unwrap().0);
        }
        ids
    });
    assert_eq!(ids.len(), 20_000, "every trade, once each (ids are unique)");
}

/// A MySQL "server" that accepts the connection and never answers the handshake: each
/// attempt ends after the sink's connect timeout, is retried, and once
/// `errors.retry_timeout` has passed the pipeline fails with an error saying so. It
/// used to wait for the handshake for ever, logging nothing.
#[test]
fn a_server_that_never_answers_is_an_error_not_a_hang() {
    let (port, held) = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &mysql_pipeline(port, "12s"));
    let mut child = spawn(dir.path(), &cfg, &[]);
    let status = wait_with_deadline(&mut child, Duration::from_secs(120));
    let log = stderr_of(&child);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("pipeline `silent` failed at `out`") && log.contains("no answer within 10s"),
        "{log}"
    );
    assert!(held.lock().unwrap().len() >= 2, "retried: {log}");
}

/// The first SIGTERM asks for a final checkpoint, which cannot happen while the sink
/// waits for a server that does not answer; a second SIGTERM exits at once with
/// status 130, saying so (the first alone would have ended only when the connection
/// attempt timed out, with the sink's error and status 1).
#[test]
fn a_second_signal_exits_at_once() {
    let (port, held) = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(dir.path(), "p.yaml", &mysql_pipeline(port, "10m"));
    let mut child = spawn(dir.path(), &cfg, &[]);
    let started = Instant::now();
    while held.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sink never connected: {}",
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited on the first signal: {}",
        stderr_tail(&child, 4000)
    );
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(60));
    let log = stderr_of(&child);
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        log.contains("a second shutdown signal: exiting now"),
        "{log}"
    );
}

/// A pipeline stuck opening a sink that is down, and its file changed (the fix, here
/// another sink): the stop for the change ends the retries, and the changed pipeline
/// starts at once, instead of the worker waiting out the retries and then dropping the
/// change with the old version's error.
#[test]
fn a_changed_file_replaces_a_pipeline_whose_sink_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    let file = pipelines.join("p.yaml");
    let source = "sources:\n  trades: {type: trades, seed: 1, rate: 0, count: 100}\n";
    std::fs::write(
        &file,
        format!(
            "name: fixed\nerrors: {{retry_timeout: 10m}}\n{source}sinks:\n  out: {{type: mysql, inputs: [trades], url: \"mysql://root@127.0.0.1:{}/db\", table: t, columns: [id]}}\n",
            free_port()
        ),
    )
    .unwrap();
    let (mut child, _port) = start_worker(dir.path(), &["--config", "pipelines/*.yaml"]);
    wait_for_log(&child, "failed; retrying", Duration::from_secs(30));
    std::fs::write(
        &file,
        format!("name: fixed\n{source}sinks:\n  out: {{type: csv, inputs: [trades], path: out.csv, columns: [id]}}\n"),
    )
    .unwrap();
    let out = dir.path().join("out.csv");
    let changed = Instant::now();
    while std::fs::read_to_string(&out).map_or(0, |s| s.lines().count()) < 101 {
        assert!(
            changed.elapsed() < Duration::from_secs(60),
            "the changed pipeline did not run: {}",
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{}", stderr_of(&child));
    assert_eq!(read(&out).lines().count(), 101, "the header and 100 rows");
}

/// A `kafka` source whose broker is down: librdkafka raises an error event on every
/// failed reconnect, and they are logged once per kind (a five-minute outage used to
/// log the same line 143 times); SIGTERM ends the source's retries at once, with its
/// error (exit 1).
#[test]
fn a_source_whose_broker_is_down_logs_each_error_once_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "name: nobroker\nerrors: {{retry_timeout: 10m}}\nsources:\n  s: {{type: kafka, bootstrap_servers: \"127.0.0.1:{}\", topics: [t], group: g}}\nsinks:\n  o: {{type: csv, inputs: [s], path: out.csv, columns: [id]}}\n",
            free_port()
        ),
    );
    let mut child = spawn(dir.path(), &cfg, &[]);
    wait_for_log(
        &child,
        "source `s` failed; retrying",
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_secs(5));
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, Duration::from_secs(60));
    let log = stderr_of(&child);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("a stop was requested, so no more retries"),
        "{log}"
    );
    assert!(log.contains("pipeline `nobroker` failed at `s`"), "{log}");
    for event in ["AllBrokersDown", "BrokerTransportFailure"] {
        let lines = log
            .lines()
            .filter(|l| l.contains("librdkafka: ") && l.contains(event))
            .count();
        assert!(lines <= 2, "{event} logged {lines} times: {log}");
    }
}
