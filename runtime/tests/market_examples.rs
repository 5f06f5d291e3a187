//! The market-data example pipelines, run by the binary against local servers that
//! speak the providers' protocols; outputs checked value by value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../connectors/tests/alpaca_server/mod.rs"]
mod alpaca_server;
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use common::*;

/// Starts an HTTP server on a background thread; returns its base URL.
fn serve(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Tick n: price 60000 + n/4 (a new tick every fourth request), time 1700000000 + 30·n/4.
fn tick(request: u64) -> (f64, i64) {
    let n = request / 4;
    (60_000.0 + n as f64 * 0.25, 1_700_000_000 + 30 * n as i64)
}

async fn chart(State(requests): State<Arc<AtomicU64>>, Path(symbol): Path<String>) -> String {
    let (price, time) = tick(requests.fetch_add(1, Ordering::SeqCst));
    format!(
        r#"{{"chart":{{"result":[{{"meta":{{"symbol":"{symbol}","currency":"USD","regularMarketPrice":{price},"regularMarketTime":{time}}},"timestamp":[],"indicators":{{"quote":[{{}}]}}}}],"error":null}}}}"#
    )
}

#[test]
fn yahoo_btc_example_writes_each_tick_once() {
    let requests = Arc::new(AtomicU64::new(0));
    let base = serve(
        axum::Router::new()
            .route("/v8/finance/chart/{symbol}", get(chart))
            .with_state(requests.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/yahoo-btc.yaml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut metrics = String::new();
    let mut run = |ms: u64| {
        let mut child = connectd()
            .current_dir(dir.path())
            .env("YAHOO_BASE_URL", &base)
            .env("YAHOO_POLL_INTERVAL", "50ms")
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&example)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        metrics = http_get(port, "/metrics");
        signal(&child, libc::SIGTERM);
        assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    };
    run(1500);
    run(1500); // a restart must not repeat a tick
    for needle in [
        r#"connectd_source_requests_total{pipeline="yahoo-btc",component="btc",kind="source"}"#,
        r#"connectd_source_last_success_timestamp_seconds{pipeline="yahoo-btc",component="btc",kind="source"}"#,
        r#"connectd_source_lag{pipeline="yahoo-btc",component="btc",kind="source"}"#,
        r#"connectd_source_errors_total{pipeline="yahoo-btc",component="btc",kind="source",error="rate_limited"} 0"#,
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }
    assert_each_tick_once(&requests, &dir.path().join("out/btc-usd.csv"));
}

/// Every distinct tick the server handed out is in the CSV, in order, exactly once (the
/// last one may have been served after the final checkpoint).
fn assert_each_tick_once(requests: &AtomicU64, csv: &std::path::Path) {
    let served = requests.load(Ordering::SeqCst);
    assert!(served >= 20, "the source polled ({served} requests)");
    let csv = read(csv);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,price"));
    let rows: Vec<&str> = lines.collect();
    let expected: Vec<String> = (0..=(served - 1) / 4)
        .map(|n| {
            let (price, time) = tick(n * 4);
            format!(
                "{},{price}",
                connectd_sdk::time::format_rfc3339_ms(time * 1000)
            )
        })
        .collect();
    assert!(
        rows.len() + 1 >= expected.len() && rows.len() <= expected.len(),
        "{} rows for {} ticks",
        rows.len(),
        expected.len()
    );
    for (row, want) in rows.iter().zip(&expected) {
        assert_eq!(row, want);
    }
}

/// The Kafka variant: Yahoo → topic → csv, as two pipelines around a topic, stopped and
/// restarted; every tick lands in the CSV once.
#[test]
fn yahoo_btc_through_kafka_example_writes_each_tick_once() {
    let requests = Arc::new(AtomicU64::new(0));
    let base = serve(
        axum::Router::new()
            .route("/v8/finance/chart/{symbol}", get(chart))
            .with_state(requests.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = root.join("examples/pipelines/kafka");
    let topic = common::kafka::unique("conn-events");
    common::kafka::create_topic(&topic, 4);
    // Quick group joins (the broker waits half the session timeout before a join).
    let worker = dir.path().join("worker.yaml");
    std::fs::write(
        &worker,
        format!(
            "name: {}\nkafka:\n  bootstrap_servers: {}\n  properties: {{session.timeout.ms: \"2000\", heartbeat.interval.ms: \"500\"}}\n",
            // A worker name of its own: checkpoints in the broker are kept by name.
            common::kafka::unique("example"),
            common::kafka::bootstrap()
        ),
    )
    .unwrap();
    let run = |files: &[&str], ms: u64| {
        let mut c = connectd();
        c.current_dir(dir.path())
            .env("YAHOO_BASE_URL", &base)
            .env("YAHOO_POLL_INTERVAL", "50ms")
            .env("CONN_EVENTS_TOPIC", &topic)
            .args(["--admin-addr", "off", "--worker"])
            .arg(&worker)
            .arg("--config");
        for f in files {
            c.arg(examples.join(f));
        }
        let mut child = c.stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        signal(&child, libc::SIGTERM);
        assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
    };
    let both = ["yahoo-btc-to-kafka.yaml", "conn-events-to-csv.yaml"];
    run(&both, 6000);
    run(&both, 4000); // a restart must not repeat a tick
    run(&["conn-events-to-csv.yaml"], 8000); // reads what is left in the topic
    assert_each_tick_once(&requests, &dir.path().join("out/btc-usd.csv"));
}

#[test]
fn alpaca_spy_example_averages_bids_per_5s_window() {
    use alpaca_server::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = AlpacaServer::default();
    let quotes = [
        ("2024-04-01T15:56:50.500000001Z", 100.25),
        ("2024-04-01T15:56:51Z", 102.5),
        ("2024-04-01T15:56:54.999999Z", 104.0),
        ("2024-04-01T15:56:55.1Z", 200.5),
        ("2024-04-01T15:56:59Z", 210.25),
        ("2024-04-01T15:57:00Z", 1.5),
    ];
    *server.sessions.lock().unwrap() = vec![vec![batch(
        &quotes
            .iter()
            .map(|(t, p)| quote("SPY", t, *p))
            .collect::<Vec<_>>(),
    )]];
    let url = rt.block_on(server.start());
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/alpaca-spy.yaml");
    let mut child = connectd()
        .current_dir(dir.path())
        .env("ALPACA_STREAM_URL", &url)
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
        .args(["--admin-addr", "off", "--config"])
        .arg(&example)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let csv_path = dir.path().join("out/spy-5s-avg.csv");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(&csv_path)
            .map(|c| c.lines().count() >= 3)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // let a checkpoint commit the rows
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    // Independently: window [15:56:50, :55) holds the first three bids, [:55, 15:57:00) the next two.
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let w1 = ms("2024-04-01T15:56:50Z");
    let w2 = ms("2024-04-01T15:56:55Z");
    let expected = format!(
        "window_start,window_end,symbol,avg_price\n{w1},{w2},SPY,{}\n{w2},{},SPY,{}\n",
        (100.25 + 102.5 + 104.0) / 3.0,
        w2 + 5000,
        (200.5 + 210.25) / 2.0
    );
    assert_eq!(read(&csv_path), expected);
    drop(rt);
}
