//! The example pipelines, run by the binary against local servers that speak the
//! providers' protocols (and the test broker, registry, databases); outputs checked value by value.
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
        r#"connectd_source_lag_seconds{pipeline="yahoo-btc",component="btc",kind="source"}"#,
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
            common::kafka::unique("example"),
            common::kafka::bootstrap()
        ),
    )
    .unwrap();
    let logs = std::cell::RefCell::new(String::new());
    let spawn_worker = |files: &[&str]| {
        let mut c = connectd();
        c.current_dir(dir.path())
            .env("YAHOO_BASE_URL", &base)
            .env("YAHOO_POLL_INTERVAL", "50ms")
            .env("CONN_EVENTS_TOPIC", &topic)
            // Logged in full: a failure's message shows the pipelines' lives.
            .env("RUST_LOG", "info")
            .args(["--admin-addr", "off", "--worker"])
            .arg(&worker)
            .arg("--config");
        for f in files {
            c.arg(examples.join(f));
        }
        spawn_captured(&mut c)
    };
    let stop = |mut child: std::process::Child| {
        signal(&child, libc::SIGTERM);
        let status = wait_with_deadline(&mut child, Duration::from_secs(60));
        logs.borrow_mut()
            .push_str(&format!("--- a run ({status}):\n{}", stderr_of(&child)));
        assert!(status.success(), "{}", logs.borrow());
    };
    let csv = dir.path().join("out/btc-usd.csv");
    let both = ["yahoo-btc-to-kafka.yaml", "conn-events-to-csv.yaml"];
    // Each run lasts until ticks have gone all the way through it (into the CSV) and a
    // few seconds more, so that it stops with ticks in flight. The second run is a
    // restart: it must not repeat a tick.
    for _ in 0..2 {
        let before = csv_rows(&csv);
        let mut child = spawn_worker(&both);
        if !wait_for_csv_rows(&csv, before + 5) {
            let _ = child.kill();
            panic!(
                "no new ticks in the CSV within 90 s; the workers' logs:\n{}\n--- this run:\n{}",
                logs.borrow(),
                stderr_tail(&child, 20_000)
            );
        }
        std::thread::sleep(Duration::from_secs(3));
        stop(child);
    }
    // The CSV half alone reads what is left in the topic: it runs until the CSV holds
    // every tick (on a loaded machine a group join can take seconds), then a little
    // longer, so that a repeat would show.
    let ticks = (requests.load(Ordering::SeqCst) - 1) / 4 + 1;
    let child = spawn_worker(&["conn-events-to-csv.yaml"]);
    // Not reaching it is reported below, tick by tick, with the logs.
    wait_for_csv_rows(&csv, (ticks as usize).saturating_sub(1));
    std::thread::sleep(Duration::from_secs(2));
    stop(child);
    let outcome = std::panic::catch_unwind(|| assert_each_tick_once(&requests, &csv));
    if let Err(e) = outcome {
        eprintln!("the workers' logs:\n{}", logs.borrow());
        std::panic::resume_unwind(e);
    }
}

/// Waits up to 90 s for the CSV to hold `rows` data rows; whether it got there.
fn wait_for_csv_rows(path: &std::path::Path, rows: usize) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while csv_rows(path) < rows {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Data rows in a CSV with a header (0 while it does not exist).
fn csv_rows(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Runs an Alpaca example against a local stream of six SPY quotes until its CSV has
/// two windows; returns the folder it ran in and the expected rows
/// `(window_start, window_end, avg_price)`.
fn run_alpaca_example(
    file: &str,
    worker: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, Vec<(i64, i64, f64)>) {
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
        .join("../examples/pipelines")
        .join(file);
    let mut cmd = connectd();
    cmd.current_dir(dir.path())
        .env("ALPACA_STREAM_URL", &url)
        .env("APCA_API_KEY_ID", KEY)
        .env("APCA_API_SECRET_KEY", SECRET)
        .envs(env.iter().copied())
        .args(["--admin-addr", "off"]);
    if let Some(w) = worker {
        cmd.arg("--worker").arg(w);
    }
    let mut child = spawn_captured(cmd.arg("--config").arg(&example));
    let csv_path = dir.path().join("out/spy-5s-avg.csv");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
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
    assert!(
        wait_with_deadline(&mut child, Duration::from_secs(30)).success(),
        "{}",
        stderr_tail(&child, 3000)
    );
    drop(rt);
    // Independently: window [15:56:50, :55) holds the first three bids, [:55, 15:57:00) the next two.
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let w1 = ms("2024-04-01T15:56:50Z");
    let w2 = ms("2024-04-01T15:56:55Z");
    let expected = vec![
        (w1, w2, (100.25 + 102.5 + 104.0) / 3.0),
        (w2, w2 + 5000, (200.5 + 210.25) / 2.0),
    ];
    (dir, expected)
}

fn expected_spy_csv(rows: &[(i64, i64, f64)]) -> String {
    let mut csv = String::from("window_start,window_end,symbol,avg_price\n");
    for (start, end, avg) in rows {
        csv.push_str(&format!("{start},{end},SPY,{avg}\n"));
    }
    csv
}

#[test]
fn alpaca_spy_example_averages_bids_per_5s_window() {
    let (dir, expected) = run_alpaca_example("alpaca-spy.yaml", None, &[]);
    assert_eq!(
        read(dir.path().join("out/spy-5s-avg.csv")),
        expected_spy_csv(&expected)
    );
}

/// The Kafka variant: the same windows in the topic (once each) and in the CSV.
#[test]
fn alpaca_spy_kafka_example_writes_the_windows_to_the_topic_and_csv() {
    let topic = common::kafka::unique("spy-5s-avg");
    common::kafka::create_topic(&topic, 1);
    let worker = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        worker.path(),
        format!(
            "name: {}\nkafka: {{bootstrap_servers: {}}}\n",
            common::kafka::unique("alpaca"),
            common::kafka::bootstrap()
        ),
    )
    .unwrap();
    let (dir, expected) = run_alpaca_example(
        "kafka/alpaca-spy-to-kafka.yaml",
        Some(worker.path()),
        &[("SPY_TOPIC", &topic)],
    );
    assert_eq!(
        read(dir.path().join("out/spy-5s-avg.csv")),
        expected_spy_csv(&expected)
    );
    let values = common::kafka::consume_committed(
        &topic,
        Duration::from_secs(30),
        Duration::from_secs(2),
        |v| v.len() >= expected.len(),
    );
    let got: Vec<(i64, i64, f64)> = values
        .iter()
        .map(|v| {
            let v: serde_json::Value = serde_json::from_str(v).unwrap();
            assert_eq!(v["symbol"], "SPY", "{v}");
            (
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["avg_price"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

/// GoAPI's answer around `results`.
fn goapi_ok(results: serde_json::Value) -> axum::Json<serde_json::Value> {
    axum::Json(
        serde_json::json!({"status": "success", "message": "OK", "data": {"results": results}}),
    )
}

const TRENDING: [&str; 3] = ["BBCA", "TLKM", "GOTO"];
/// (ticker, name, logo): GOTO is trending but not listed here; ASII is listed only.
const COMPANIES: [(&str, &str, Option<&str>); 3] = [
    (
        "BBCA",
        "Bank Central Asia Tbk.",
        Some("https://logo.test/bbca.png"),
    ),
    ("TLKM", "Telkom Indonesia (Persero) Tbk.", None),
    (
        "ASII",
        "Astra International Tbk.",
        Some("https://logo.test/asii.png"),
    ),
];

/// Day d (1..=5 days ago) of a ticker: (date, open, close, volume), numbers as GoAPI
/// sends them (strings, thousands separators).
fn goapi_day(ticker: &str, d: u64) -> (String, f64, f64, i64) {
    let date = (chrono::Utc::now().date_naive() - chrono::Days::new(d)).to_string();
    let base = ticker.bytes().map(f64::from).sum::<f64>() * 10.0;
    (
        date,
        base + d as f64,
        base + d as f64 + 0.5,
        1_000 * d as i64 + 7,
    )
}

async fn goapi_trending() -> axum::Json<serde_json::Value> {
    goapi_ok(
        TRENDING
            .iter()
            .map(|t| serde_json::json!({"ticker": t, "change": "5", "percent": "0.1"}))
            .collect(),
    )
}

async fn goapi_companies() -> axum::Json<serde_json::Value> {
    goapi_ok(
        COMPANIES
            .iter()
            .map(|(t, n, l)| serde_json::json!({"ticker": t, "name": n, "logo": l}))
            .collect(),
    )
}

async fn goapi_history(
    Path(ticker): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, axum::http::StatusCode> {
    if headers.get("X-API-KEY").and_then(|v| v.to_str().ok()) != Some("test-key") {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    Ok(goapi_ok(
        (1..=5)
            .map(|d| {
                let (date, open, close, volume) = goapi_day(&ticker, d);
                serde_json::json!({"ticker": ticker, "date": date, "open": open.to_string(),
                    "high": (close + 1.0).to_string(), "low": (open - 1.0).to_string(),
                    "close": close.to_string(), "volume": format!("{},{:03}", volume / 1000, volume % 1000)})
            })
            .collect(),
    ))
}

/// The GoAPI → Avro topics → dedup → join → MongoDB pair of example pipelines, against
/// a local GoAPI, the test schema registry, the broker and MongoDB; each collection
/// checked document by document against what the server served.
#[test]
fn goapi_ksql_example_upserts_latest_rows_and_the_join_into_mongodb() {
    let goapi = serve(
        axum::Router::new()
            .route("/trending", get(goapi_trending))
            .route("/companies", get(goapi_companies))
            .route("/{ticker}/historical", get(goapi_history)),
    );
    let registry = common::schema_registry::start();
    let (stocks, companies) = (
        common::kafka::unique("ksql-stock"),
        common::kafka::unique("ksql-company"),
    );
    common::kafka::create_topic(&stocks, 2);
    common::kafka::create_topic(&companies, 1);
    let database = common::kafka::unique("idx").replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/kafka");
    let worker = dir.path().join("worker.yaml");
    std::fs::write(
        &worker,
        format!(
            "name: {}\nkafka:\n  bootstrap_servers: {}\n  properties: {{session.timeout.ms: \"2000\", heartbeat.interval.ms: \"500\"}}\n",
            common::kafka::unique("goapi"),
            common::kafka::bootstrap()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .env("GOAPI_BASE_URL", &goapi)
            .env("GOAPI_API_KEY", "test-key")
            .env("GOAPI_INTERVAL", "1s")
            .env("SCHEMA_REGISTRY_URL", &registry)
            .env("STOCK_TOPIC", &stocks)
            .env("COMPANY_TOPIC", &companies)
            .env("KSQL_GROUP", common::kafka::unique("ksql"))
            .env("KSQL_DATABASE", &database)
            // The emulator refuses `-` in collection names; a real MongoDB takes them.
            .env("STOCK_COLLECTION", "ksql_stock_stream")
            .env("COMPANY_COLLECTION", "ksql_company_stream")
            .env("JOIN_COLLECTION", "ksql_join_stock_company")
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--worker"])
            .arg(&worker)
            .arg("--config")
            .arg(examples.join("goapi-to-avro.yaml"))
            .arg(examples.join("goapi-ksql-to-mongodb.yaml")),
    );
    let mut want_stocks = std::collections::BTreeMap::new();
    for t in TRENDING {
        for d in 1..=5 {
            let (date, open, close, volume) = goapi_day(t, d);
            want_stocks.insert(format!("{t}_{date}"), (t, date, open, close, volume));
        }
    }
    let want_joined = want_stocks.values().filter(|s| s.0 != "GOTO").count();
    let started = std::time::Instant::now();
    loop {
        let done = common::mongo::collection(&database, "ksql_stock_stream").len()
            == want_stocks.len()
            && common::mongo::collection(&database, "ksql_company_stream").len() == COMPANIES.len()
            && common::mongo::collection(&database, "ksql_join_stock_company").len() == want_joined;
        if done {
            // A few more poll rounds: repeats must change nothing.
            std::thread::sleep(Duration::from_secs(3));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not all in MongoDB within 120 s\n{}",
            stderr_tail(&child, 4000)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let stock_docs = common::mongo::collection(&database, "ksql_stock_stream");
    assert_eq!(stock_docs.len(), want_stocks.len());
    for (id, (t, date, open, close, volume)) in &want_stocks {
        let d = &stock_docs[id];
        assert_eq!(
            (
                d["ticker"].as_str(),
                d["date"].as_str(),
                d["open"].as_f64(),
                d["close"].as_f64(),
                d["volume"].as_i64()
            ),
            (
                Some(*t),
                Some(date.as_str()),
                Some(*open),
                Some(*close),
                Some(*volume)
            ),
            "{id}: {d}"
        );
    }
    let company_docs = common::mongo::collection(&database, "ksql_company_stream");
    assert_eq!(company_docs.len(), COMPANIES.len());
    for (t, name, logo) in COMPANIES {
        assert_eq!(company_docs[t]["name"].as_str(), Some(name));
        assert_eq!(company_docs[t]["logo"].as_str(), logo);
    }
    let joined = common::mongo::collection(&database, "ksql_join_stock_company");
    assert_eq!(joined.len(), want_joined, "{joined:?}");
    for (id, (t, _, _, close, _)) in want_stocks.iter().filter(|(_, s)| s.0 != "GOTO") {
        let (_, name, logo) = COMPANIES.iter().find(|c| c.0 == *t).unwrap();
        let d = &joined[id];
        assert_eq!(
            (d["close"].as_f64(), d["name"].as_str(), d["logo"].as_str()),
            (Some(*close), Some(*name), *logo),
            "{id}: {d}"
        );
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(60)).success());
}

/// The IoT reference pipeline with Kafka outputs: the same generated input is captured
/// to a file by a second pipeline, and alerts and 5-minute windows are computed from it
/// here; the topics and the CSV must hold exactly those.
#[test]
fn iot_kafka_example_alerts_and_windows_match_the_generated_input() {
    const SOURCE: &str = "type: iot, seed: 42, rate: 0, count: 30000, start: 2024-01-01T00:00:00Z, step: 40ms, jitter: 5s";
    let (alerts_topic, cpu_topic) = (
        common::kafka::unique("iot-alerts"),
        common::kafka::unique("iot-cpu-5m"),
    );
    common::kafka::create_topic(&alerts_topic, 1);
    common::kafka::create_topic(&cpu_topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let capture = write_pipeline(
        dir.path(),
        "capture.yaml",
        &format!("name: capture\nsources:\n  metrics: {{{SOURCE}}}\nsinks:\n  raw: {{type: jsonl, inputs: [metrics], path: out/raw.jsonl}}\n"),
    );
    assert!(run_to_end(dir.path(), &capture).status.success());
    let worker = dir.path().join("worker.yaml");
    std::fs::write(
        &worker,
        format!(
            "name: {}\nkafka: {{bootstrap_servers: {}}}\n",
            common::kafka::unique("iot"),
            common::kafka::bootstrap()
        ),
    )
    .unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines/kafka/iot-to-kafka.yaml");
    let mut child = spawn_captured(
        connectd()
            .current_dir(dir.path())
            .envs([
                ("IOT_RATE", "0"),
                ("IOT_COUNT", "30000"),
                ("IOT_START", "2024-01-01T00:00:00Z"),
                ("IOT_STEP", "40ms"),
                ("ALERTS_TOPIC", alerts_topic.as_str()),
                ("CPU_TOPIC", cpu_topic.as_str()),
            ])
            .args(["--admin-addr", "off", "--worker"])
            .arg(&worker)
            .arg("--config")
            .arg(&example),
    );
    assert!(
        wait_with_deadline(&mut child, Duration::from_secs(120)).success(),
        "{}",
        stderr_tail(&child, 3000)
    );

    // Independently, from the captured input.
    let input: Vec<serde_json::Value> = read(dir.path().join("out/raw.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(input.len(), 30000);
    let want_alerts: Vec<&serde_json::Value> = input
        .iter()
        .filter(|r| r["usage"].as_f64().unwrap() > 90.0)
        .collect();
    type Window = (i64, String, String);
    let mut groups: std::collections::BTreeMap<Window, (f64, f64, f64)> = Default::default();
    for r in &input {
        let t = r["occurred_at"].as_i64().unwrap();
        let key = (
            t.div_euclid(300_000) * 300_000,
            r["hostname"].as_str().unwrap().to_string(),
            r["cpu"].as_str().unwrap().to_string(),
        );
        let usage = r["usage"].as_f64().unwrap();
        let g = groups.entry(key).or_insert((0.0, 0.0, f64::MIN));
        *g = (g.0 + usage, g.1 + 1.0, g.2.max(usage));
    }
    let want_windows: Vec<(Window, f64, f64)> = groups
        .into_iter()
        .map(|(k, (sum, n, max))| (k, sum / n, max))
        .collect();

    let alerts = common::kafka::consume_committed(
        &alerts_topic,
        Duration::from_secs(60),
        Duration::from_secs(2),
        |v| v.len() >= want_alerts.len(),
    );
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|v| serde_json::from_str(v).unwrap())
        .collect();
    assert_eq!(alerts.len(), want_alerts.len());
    assert!(alerts.iter().zip(&want_alerts).all(|(a, b)| a == *b));

    let same = |got: &[(Window, f64, f64)], source: &str| {
        assert_eq!(got.len(), want_windows.len(), "{source}");
        for (g, w) in got.iter().zip(&want_windows) {
            assert_eq!(g.0, w.0, "{source}");
            assert!(
                (g.1 - w.1).abs() < 1e-9 && g.2 == w.2,
                "{source}: {g:?} vs {w:?}"
            );
        }
    };
    let row = |start: i64, end: i64, host: &str, cpu: &str, avg: f64, max: f64| {
        assert_eq!(end - start, 300_000);
        ((start, host.to_string(), cpu.to_string()), avg, max)
    };
    let mut from_topic: Vec<(Window, f64, f64)> = common::kafka::consume_committed(
        &cpu_topic,
        Duration::from_secs(60),
        Duration::from_secs(2),
        |v| v.len() >= want_windows.len(),
    )
    .iter()
    .map(|v| {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        row(
            v["window_start"].as_i64().unwrap(),
            v["window_end"].as_i64().unwrap(),
            v["hostname"].as_str().unwrap(),
            v["cpu"].as_str().unwrap(),
            v["avg_usage"].as_f64().unwrap(),
            v["max_usage"].as_f64().unwrap(),
        )
    })
    .collect();
    from_topic.sort_by(|a, b| a.0.cmp(&b.0));
    same(&from_topic, "topic");
    let csv = read(dir.path().join("out/iot-cpu-5m.csv"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("window_start,window_end,hostname,cpu,avg_usage,max_usage")
    );
    let mut from_csv: Vec<(Window, f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            row(
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2],
                f[3],
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect();
    from_csv.sort_by(|a, b| a.0.cmp(&b.0));
    same(&from_csv, "csv");
}
