//! The `alpaca` source against a local server speaking the Alpaca stream protocol.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alpaca_server;
mod common;

use std::time::Duration;

use alpaca_server::*;
use common::*;
use connectd_connectors::sources::alpaca;
use connectd_sdk::Value;

fn source(
    url: &str,
    extra: &[(&str, connectd_sdk::config::ConfigValue)],
) -> Box<dyn connectd_sdk::Source> {
    let mut pairs = vec![
        ("url", s(url)),
        ("key", s(KEY)),
        ("secret", s(SECRET)),
        ("quotes", list(&["SPY"])),
        ("trades", list(&["AAPL"])),
        ("bars", list(&["*"])),
        ("idle_timeout", s("2s")),
        ("ping_interval", s("100ms")),
    ];
    pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    pairs.extend(extra.iter().cloned());
    build_source(alpaca::build, &pairs).unwrap()
}

async fn poll_until_error(src: &mut Box<dyn connectd_sdk::Source>) -> connectd_sdk::ConnectorError {
    for _ in 0..200 {
        if let Err(e) = src.poll(100, &mut Vec::new()).await {
            return e;
        }
    }
    panic!("the source did not fail");
}

#[tokio::test]
async fn quotes_trades_bars_and_a_reconnect_without_duplicates() {
    let server = AlpacaServer::default();
    *server.sessions.lock().unwrap() = vec![
        vec![
            batch(&[
                quote("SPY", "2024-04-01T15:56:48.427360123Z", 521.01),
                quote("SPY", "2024-04-01T15:56:49Z", 521.05),
            ]),
            batch(&[trade("AAPL", "2024-04-01T15:56:49.5Z", 126.55, 96921)]),
            Step::Close,
        ],
        vec![
            // After the reconnect the server resends the last quote: it must not repeat.
            batch(&[
                quote("SPY", "2024-04-01T15:56:49Z", 521.05),
                quote("SPY", "2024-04-01T15:56:50Z", 521.10),
            ]),
            batch(&[bar("SPY", "2024-04-01T15:57:00Z", 521.2)]),
        ],
    ];
    let url = server.start().await;
    let mut src = source(&url, &[]);
    src.open(None).await.unwrap();
    let (records, bad) = collect(&mut src, 5, Duration::from_secs(10)).await;
    assert!(bad.is_empty(), "{bad:?}");
    let summary: Vec<String> = records
        .iter()
        .map(|r| format!("{}:{}", field(r, "T"), field(r, "t")))
        .collect();
    assert_eq!(
        summary,
        [
            "q:2024-04-01T15:56:48.427360123Z",
            "q:2024-04-01T15:56:49Z",
            "t:2024-04-01T15:56:49.5Z",
            "q:2024-04-01T15:56:50Z",
            "b:2024-04-01T15:57:00Z"
        ]
    );
    assert_eq!(
        records[0].timestamp,
        Some(1_711_987_008_427),
        "nanosecond RFC 3339 parsed"
    );
    assert_eq!(records[0].key, Value::str("SPY"));
    assert_eq!(field(&records[0], "bp"), &Value::Float(521.01));
    assert_eq!(field(&records[2], "i"), &Value::Int(96921));
    let (more, _) = collect(&mut src, 1, Duration::from_millis(500)).await;
    assert!(more.is_empty());
    assert_eq!(*server.connections.lock().unwrap(), 2);
    let received = server.received.lock().unwrap().clone();
    let subs: Vec<&String> = received
        .iter()
        .filter(|m| m.contains("subscribe"))
        .collect();
    assert_eq!(subs.len(), 2, "re-subscribed after the reconnect");
    let sub: serde_json::Value = serde_json::from_str(subs[0]).unwrap();
    assert_eq!(sub["quotes"], serde_json::json!(["SPY"]));
    assert_eq!(sub["bars"], serde_json::json!(["*"]));
    assert_eq!(
        received.iter().filter(|m| m.contains("\"auth\"")).count(),
        2,
        "re-authenticated"
    );

    // A restart from the offset drops what was already emitted.
    let offset = src.offset();
    src.close().await.unwrap();
    let mut restarted = source(&url, &[]);
    restarted.open(Some(offset)).await.unwrap();
    let (again, _) = collect(&mut restarted, 1, Duration::from_millis(800)).await;
    assert!(again.is_empty(), "nothing new after a restart: {again:?}");
}

#[tokio::test]
async fn wrong_credentials_stop_the_source_with_402() {
    let server = AlpacaServer::default();
    let url = server.start().await;
    let mut src = source(&url, &[("secret", s("wrong"))]);
    src.open(None).await.unwrap();
    let err = poll_until_error(&mut src).await;
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("402") && text.contains("auth failed") && text.contains("sources.s.key"),
        "{text}"
    );
    assert!(!text.contains("wrong"));
    assert_eq!(*server.connections.lock().unwrap(), 1, "no retry after 402");
}

#[tokio::test]
async fn a_second_connection_406_stops_the_source() {
    let server = AlpacaServer::default();
    *server.reject_with.lock().unwrap() = Some(406);
    let url = server.start().await;
    let mut src = source(&url, &[]);
    src.open(None).await.unwrap();
    let err = poll_until_error(&mut src).await;
    assert!(
        err.to_string().contains("406") && err.to_string().contains("connection limit"),
        "{err}"
    );
}

#[tokio::test]
async fn header_auth_works() {
    let server = AlpacaServer::default();
    *server.sessions.lock().unwrap() =
        vec![vec![batch(&[quote("SPY", "2024-04-01T15:56:48Z", 1.0)])]];
    let url = server.start().await;
    let mut src = source(&url, &[("auth", s("headers"))]);
    src.open(None).await.unwrap();
    let (records, _) = collect(&mut src, 1, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1);
    assert!(
        !server
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("\"auth\"")),
        "no auth message with header auth"
    );
}

#[tokio::test]
async fn server_errors_and_silence_reconnect() {
    let server = AlpacaServer::default();
    *server.sessions.lock().unwrap() = vec![
        vec![
            batch(&[quote("SPY", "2024-04-01T15:56:48Z", 1.5)]),
            Step::Send(r#"[{"T":"error","code":500,"msg":"internal error"}]"#.into()),
        ],
        vec![
            batch(&[quote("SPY", "2024-04-01T15:56:49Z", 2.5)]),
            Step::Silence(Duration::from_secs(30)),
        ],
        vec![batch(&[quote("SPY", "2024-04-01T15:56:50Z", 3.5)])],
    ];
    // The data frames: the source counts at least their bytes (and the acks').
    let data_bytes: usize = server
        .sessions
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .filter_map(|step| match step {
            Step::Send(text) if text.contains(r#""T":"q""#) => Some(text.len()),
            _ => None,
        })
        .sum();
    let url = server.start().await;
    let mut src = source(&url, &[("idle_timeout", s("400ms"))]);
    src.open(None).await.unwrap();
    let (records, _) = collect(&mut src, 3, Duration::from_secs(15)).await;
    let prices: Vec<&Value> = records.iter().map(|r| field(r, "bp")).collect();
    assert_eq!(
        prices,
        [&Value::Float(1.5), &Value::Float(2.5), &Value::Float(3.5)]
    );
    assert_eq!(*server.connections.lock().unwrap(), 3);
    let stats = src.stats().unwrap();
    assert_eq!(stats.reconnects(), 2);
    assert!(
        stats.bytes() >= data_bytes as u64,
        "{} bytes counted, the quotes alone are {data_bytes}",
        stats.bytes()
    );
    assert_eq!(
        stats.errors(connectd_sdk::stats::ErrorKind::Server),
        1,
        "the 500"
    );
    assert_eq!(
        stats.errors(connectd_sdk::stats::ErrorKind::Network),
        1,
        "the silence"
    );
}

#[tokio::test]
async fn garbage_goes_to_the_dlq_and_the_stream_goes_on() {
    let server = AlpacaServer::default();
    *server.sessions.lock().unwrap() = vec![vec![
        Step::Send("this is not json".into()),
        Step::Send(r#"{"T":"q","S":"SPY"}"#.into()),
        Step::Send(r#"[{"T":"q","S":"SPY","bp":1.0}]"#.into()),
        batch(&[quote("SPY", "2024-04-01T15:56:48Z", 5.0)]),
    ]];
    let url = server.start().await;
    let mut src = source(&url, &[]);
    src.open(None).await.unwrap();
    let (records, bad) = collect(&mut src, 1, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert_eq!(bad[0].raw.as_deref(), Some("this is not json"));
    assert!(bad[1].reason.contains("JSON array"));
    assert!(bad[2].reason.contains("without `t`"), "{}", bad[2].reason);
}

#[tokio::test]
async fn config_errors_are_reported() {
    let errs = build_source(
        alpaca::build,
        &[("url", s("http://x")), ("feed", s("crypto"))],
    )
    .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "sources.s.url",
        "sources.s.feed",
        "sources.s.key",
        "sources.s.secret",
        "sources.s.quotes",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
}
