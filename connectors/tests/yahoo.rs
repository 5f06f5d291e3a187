//! The `yahoo` source against a local server that speaks the chart API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use connectd_connectors::sources::yahoo;
use connectd_sdk::stats::ErrorKind;
use connectd_sdk::{SourcePoll, Value};

/// A chart body with candles at the given epoch seconds (`None` close = empty minute).
fn chart(symbol: &str, candles: &[(i64, Option<f64>)], price: f64, time: i64) -> String {
    let ts: Vec<String> = candles.iter().map(|(t, _)| t.to_string()).collect();
    let col = |f: &dyn Fn(f64) -> f64| {
        candles
            .iter()
            .map(|(_, c)| c.map_or("null".into(), |c| f(c).to_string()))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"chart":{{"result":[{{"meta":{{"symbol":"{symbol}","currency":"USD","regularMarketPrice":{price},"regularMarketTime":{time}}},
        "timestamp":[{}],"indicators":{{"quote":[{{"open":[{}],"high":[{}],"low":[{}],"close":[{}],"volume":[{}]}}]}}}}],"error":null}}}}"#,
        ts.join(","),
        col(&|c| c - 1.0),
        col(&|c| c + 2.0),
        col(&|c| c - 2.0),
        col(&|c| c),
        col(&|_| 10.0),
    )
}

const NOT_FOUND: &str = r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;

fn source(base: &str, symbols: &[&str], mode: &str) -> Box<dyn connectd_sdk::Source> {
    build_source(
        yahoo::build,
        &[
            ("base_url", s(base)),
            ("symbols", list(symbols)),
            ("interval", s("100ms")),
            ("mode", s(mode)),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn new_candles_once_each_across_polls_and_restarts() {
    let server = Server::default();
    let base = server.start().await;
    let path = "/v8/finance/chart/BTC-USD";
    server.script(
        path,
        vec![
            Reply::json(chart(
                "BTC-USD",
                &[(60, Some(100.0)), (120, None), (180, Some(101.5))],
                101.5,
                185,
            )),
            Reply::json(chart(
                "BTC-USD",
                &[
                    (60, Some(100.0)),
                    (120, None),
                    (180, Some(101.5)),
                    (240, Some(99.0)),
                    (300, Some(98.25)),
                ],
                98.25,
                301,
            )),
        ],
    );
    let mut src = source(&base, &["BTC-USD"], "candles");
    src.open(None).await.unwrap();
    let (first, bad) = collect(&mut src, 2, Duration::from_secs(5)).await;
    assert!(bad.is_empty());
    assert_eq!(first.len(), 2, "the null candle is skipped");
    assert_eq!(field(&first[0], "close"), &Value::Float(100.0));
    assert_eq!(field(&first[0], "open"), &Value::Float(99.0));
    assert_eq!(field(&first[0], "high"), &Value::Float(102.0));
    assert_eq!(field(&first[0], "volume"), &Value::Float(10.0));
    assert_eq!(
        field(&first[0], "time"),
        &Value::str("1970-01-01T00:01:00.000Z")
    );
    assert_eq!(first[0].timestamp, Some(60_000));
    assert_eq!(first[0].key, Value::str("BTC-USD"));
    let offset = src.offset();
    let (second, _) = collect(&mut src, 2, Duration::from_secs(5)).await;
    let closes: Vec<&Value> = second.iter().map(|r| field(r, "close")).collect();
    assert_eq!(
        closes,
        [&Value::Float(99.0), &Value::Float(98.25)],
        "only the new candles"
    );

    // A restart from the first offset asks again and emits only what came after it.
    let mut restarted = source(&base, &["BTC-USD"], "candles");
    restarted.open(Some(offset)).await.unwrap();
    let (again, _) = collect(&mut restarted, 2, Duration::from_secs(5)).await;
    assert_eq!(again, second);
    let (nothing, _) = collect(&mut restarted, 1, Duration::from_millis(400)).await;
    assert!(nothing.is_empty(), "no duplicates on later polls");

    let seen = server.requests_to(path);
    assert!(
        seen[0].path_and_query.contains("interval=1m")
            && seen[0].path_and_query.contains("range=1d")
    );
    let ua = seen[0].headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(
        ua.starts_with("Mozilla/5.0"),
        "browser-like User-Agent by default: {ua}"
    );
}

#[tokio::test]
async fn price_mode_emits_each_new_tick() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/v8/finance/chart/TMAS.JK",
        vec![
            Reply::json(chart("TMAS.JK", &[], 1500.0, 1000)),
            Reply::json(chart("TMAS.JK", &[], 1500.0, 1000)),
            Reply::json(chart("TMAS.JK", &[], 1510.0, 1030)),
        ],
    );
    let mut src = source(&base, &["TMAS.JK"], "price");
    src.open(None).await.unwrap();
    let (ticks, _) = collect(&mut src, 2, Duration::from_secs(5)).await;
    assert_eq!(ticks.len(), 2);
    assert_eq!(field(&ticks[0], "price"), &Value::Float(1500.0));
    assert_eq!(field(&ticks[1], "price"), &Value::Float(1510.0));
    assert_eq!(field(&ticks[1], "currency"), &Value::str("USD"));
}

#[tokio::test]
async fn an_unknown_symbol_is_named_and_dropped_while_the_others_go_on() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/v8/finance/chart/NOPE",
        vec![Reply::status(404, NOT_FOUND)],
    );
    server.script(
        "/v8/finance/chart/ETH-USD",
        vec![Reply::json(chart(
            "ETH-USD",
            &[(60, Some(3000.0))],
            3000.0,
            61,
        ))],
    );
    let mut src = source(&base, &["NOPE", "ETH-USD"], "candles");
    src.open(None).await.unwrap();
    let (got, _) = collect(&mut src, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = collect(&mut src, 1, Duration::from_millis(300)).await;
    assert_eq!(
        server.requests_to("/v8/finance/chart/NOPE").len(),
        1,
        "a rejected symbol is not asked again"
    );

    // With only unknown symbols the source fails, naming them and Yahoo's reason.
    let mut only_bad = source(&base, &["NOPE"], "candles");
    only_bad.open(None).await.unwrap();
    let err = only_bad.poll(10, &mut Vec::new()).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("`NOPE`") && err.to_string().contains("symbol may be delisted"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_back_off_then_recover() {
    let server = Server::default();
    let base = server.start().await;
    let path = "/v8/finance/chart/SPY";
    server.script(
        path,
        vec![
            Reply::status(429, "slow down").header("retry-after", "1"),
            Reply::status(503, "upstream down"),
            Reply::json(chart("SPY", &[(60, Some(500.0))], 500.0, 61)),
        ],
    );
    let mut src = source(&base, &["SPY"], "candles");
    src.open(None).await.unwrap();
    let mut bad = Vec::new();
    match src.poll(10, &mut bad).await.unwrap() {
        SourcePoll::Idle(wait) => assert!(
            wait >= Duration::from_millis(900),
            "Retry-After is honoured: {wait:?}"
        ),
        other => panic!("expected a wait, got {other:?}"),
    }
    let started = std::time::Instant::now();
    let (got, _) = collect(&mut src, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(server.requests_to(path).len(), 3);
    let stats = src.stats().unwrap();
    assert_eq!(stats.requests(), 3);
    assert_eq!(stats.errors(ErrorKind::RateLimited), 1);
    assert_eq!(stats.errors(ErrorKind::Server), 1);
    assert!(stats.last_success_ms() > 0);
    assert_eq!(stats.last_event_ms(), 60_000);
    assert!(stats.bytes() > 0, "the good body's bytes are counted");
}

#[tokio::test]
async fn a_garbage_body_goes_to_the_dlq_and_polling_continues() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/v8/finance/chart/SPY",
        vec![
            Reply::json("<html>captcha</html>"),
            Reply::json(r#"{"chart":{"result":[]}}"#),
            // Not a time in seconds: made milliseconds, it overflowed (a panic in a
            // debug build, a time wrapped around in a release one).
            Reply::json(chart(
                "SPY",
                &[(100_000_000_000_000_000, Some(1.0))],
                1.0,
                61,
            )),
            Reply::json(chart("SPY", &[(60, Some(500.0))], 500.0, 61)),
        ],
    );
    let mut src = source(&base, &["SPY"], "candles");
    src.open(None).await.unwrap();
    let (got, bad) = collect(&mut src, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(bad.len(), 3);
    assert!(
        bad[2]
            .reason
            .contains("timestamp 100000000000000000 is not a time in seconds"),
        "{}",
        bad[2].reason
    );
    assert_eq!(bad[0].raw.as_deref(), Some("<html>captcha</html>"));
    assert!(
        bad[0].reason.contains("not a chart response"),
        "{}",
        bad[0].reason
    );
    assert!(bad[0].position.contains("/v8/finance/chart/SPY"));
    assert!(bad[1].reason.contains("empty"), "{}", bad[1].reason);
}

#[tokio::test]
async fn config_errors_are_reported() {
    let errs = build_source(
        yahoo::build,
        &[
            ("base_url", s("ftp://x")),
            ("symbols", list(&[])),
            ("mode", s("ticks")),
        ],
    )
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{text:?}");
}
