//! The market-data example pipelines, run by the binary against local servers that
//! speak the providers' protocols; outputs checked value by value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let run = |ms: u64| {
        let mut child = connectd()
            .current_dir(dir.path())
            .env("YAHOO_BASE_URL", &base)
            .env("YAHOO_POLL_INTERVAL", "50ms")
            .args(["--admin-addr", "off", "--config"])
            .arg(&example)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        signal(&child, libc::SIGTERM);
        assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
    };
    run(1500);
    run(1500); // a restart must not repeat a tick
    let served = requests.load(Ordering::SeqCst);
    assert!(served >= 20, "the source polled ({served} requests)");
    let csv = read(dir.path().join("out/btc-usd.csv"));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,price"));
    let rows: Vec<&str> = lines.collect();
    // Every distinct tick the server handed out, in order, exactly once (the last one
    // may have been served after the final checkpoint).
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
