//! The `goapi` source against a local server that speaks GoAPI's IDX REST API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use connectd_connectors::sources::goapi;
use connectd_sdk::config::{ConfigNode, ConfigValue};
use connectd_sdk::Value;

fn ok(results: &str) -> Reply {
    Reply::json(format!(
        r#"{{"status":"success","message":"OK","data":{{"results":{results}}}}}"#
    ))
}

fn history(ticker: &str, dates: &[&str]) -> Reply {
    let rows: Vec<String> = dates
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(r#"{{"ticker":"{ticker}","date":"{d}","open":"{}","high":{},"low":"{}","close":"{}","volume":"12,500"}}"#, 9000 + i, 9100 + i, 8900 + i, 9050.5 + i as f64)
        })
        .collect();
    ok(&format!("[{}]", rows.join(",")))
}

fn source(base: &str, extra: &[(&str, ConfigValue)]) -> Box<dyn connectd_sdk::Source> {
    let mut pairs = vec![
        ("base_url", s(base)),
        ("api_key", s("k-123")),
        ("interval", s("200ms")),
        ("max_requests_per_minute", s("6000")),
    ];
    pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    pairs.extend(extra.iter().cloned());
    build_source(goapi::build, &pairs).unwrap()
}

#[tokio::test]
async fn history_rows_with_string_numbers_ids_and_offsets() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/BBCA/historical",
        vec![
            history("BBCA", &["2023-09-01", "2023-09-04"]),
            history("BBCA", &["2023-09-04", "2023-09-05"]),
        ],
    );
    let extra = [
        ("endpoint", s("historical")),
        ("tickers", list(&["bbca"])),
        ("from", s("2023-09-01")),
        ("to", s("2023-09-30")),
    ];
    let mut src = source(&base, &extra);
    src.open(None).await.unwrap();
    let (rows, bad) = collect(&mut src, 2, Duration::from_secs(5)).await;
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(rows.len(), 2);
    assert_eq!(field(&rows[0], "id"), &Value::str("BBCA_2023-09-01"));
    assert_eq!(rows[0].key, Value::str("BBCA_2023-09-01"));
    assert_eq!(field(&rows[0], "open"), &Value::Int(9000));
    assert_eq!(field(&rows[0], "high"), &Value::Int(9100));
    assert_eq!(field(&rows[0], "close"), &Value::Float(9050.5));
    assert_eq!(field(&rows[0], "volume"), &Value::Int(12500));
    let offset = src.offset();

    // The next round asks from the day after the last row, and skips what it has.
    let (more, _) = collect(&mut src, 1, Duration::from_secs(5)).await;
    assert_eq!(more.len(), 1);
    assert_eq!(field(&more[0], "id"), &Value::str("BBCA_2023-09-05"));
    let seen = server.requests_to("/BBCA/historical");
    assert!(
        seen[0]
            .path_and_query
            .ends_with("from=2023-09-01&to=2023-09-30"),
        "{}",
        seen[0].path_and_query
    );
    assert!(
        seen[1]
            .path_and_query
            .ends_with("from=2023-09-05&to=2023-09-30"),
        "{}",
        seen[1].path_and_query
    );
    assert_eq!(seen[0].headers.get("x-api-key").unwrap(), "k-123");

    // A restart from the first offset asks only for what is new.
    let mut restarted = source(&base, &extra);
    restarted.open(Some(offset)).await.unwrap();
    let _ = collect(&mut restarted, 1, Duration::from_secs(5)).await;
    let last = server.requests_to("/BBCA/historical").pop().unwrap();
    assert!(
        last.path_and_query
            .ends_with("from=2023-09-05&to=2023-09-30"),
        "{}",
        last.path_and_query
    );
}

#[tokio::test]
async fn tickers_trending_follows_the_trending_list() {
    let server = Server::default();
    let base = server.start().await;
    server.script("/trending", vec![ok(r#"[{"ticker":"BBCA","change":"25","percent":"0.28"},{"ticker":"TLKM","change":"-10","percent":"-0.3"}]"#)]);
    server.script("/BBCA/historical", vec![history("BBCA", &["2023-09-01"])]);
    server.script(
        "/TLKM/historical",
        vec![history("TLKM", &["2023-09-01", "2023-09-04"])],
    );
    let mut src = source(
        &base,
        &[
            ("endpoint", s("historical")),
            ("tickers", s("trending")),
            ("from", s("2023-09-01")),
            ("to", s("2023-09-30")),
        ],
    );
    src.open(None).await.unwrap();
    let (rows, _) = collect(&mut src, 3, Duration::from_secs(5)).await;
    let ids: Vec<String> = rows.iter().map(|r| field(r, "id").to_string()).collect();
    assert_eq!(
        ids,
        ["BBCA_2023-09-01", "TLKM_2023-09-01", "TLKM_2023-09-04"]
    );
}

#[tokio::test]
async fn trending_and_companies_endpoints() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/trending",
        vec![ok(r#"[{"ticker":"BBCA","change":"25","percent":"0.28"}]"#)],
    );
    server.script(
        "/companies",
        vec![ok(
            r#"[{"ticker":"BBCA","name":"Bank Central Asia Tbk.","logo":"https://x/BBCA.png"}]"#,
        )],
    );
    let mut trending = source(&base, &[("endpoint", s("trending"))]);
    trending.open(None).await.unwrap();
    let (t, _) = collect(&mut trending, 1, Duration::from_secs(5)).await;
    assert_eq!(field(&t[0], "percent"), &Value::Float(0.28));
    assert_eq!(field(&t[0], "change"), &Value::Int(25));
    assert!(!trending.replayable());
    let mut companies = source(&base, &[("endpoint", s("companies"))]);
    companies.open(None).await.unwrap();
    let (c, _) = collect(&mut companies, 1, Duration::from_secs(5)).await;
    assert_eq!(field(&c[0], "name"), &Value::str("Bank Central Asia Tbk."));
    assert_eq!(c[0].key, Value::str("BBCA"));
}

#[tokio::test]
async fn a_rejected_key_stops_the_source_naming_its_variable() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/trending",
        vec![Reply::status(
            401,
            r#"{"status":"error","message":"Invalid API key"}"#,
        )],
    );
    let key = ConfigValue::Scalar("wrong".into());
    let mut pairs = vec![("base_url", s(&base)), ("endpoint", s("trending"))];
    pairs.push(("api_key", key));
    // Mark the key as interpolated, as `${env:GOAPI_API_KEY}` in a file would be.
    let mut src = {
        let node = ConfigNode {
            value: ConfigValue::Scalar("wrong".into()),
            span: Default::default(),
            secret: true,
            raw: Some("${env:GOAPI_API_KEY}".into()),
            quoted: false,
        };
        build_with_node(&pairs, "api_key", node)
    };
    src.open(None).await.unwrap();
    let err = loop {
        match src.poll(10, &mut Vec::new()).await {
            Err(e) => break e,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("${env:GOAPI_API_KEY}") && text.contains("401"),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the key itself is never shown: {text}"
    );
}

#[tokio::test]
async fn rate_limits_errors_and_garbage() {
    let server = Server::default();
    let base = server.start().await;
    server.script(
        "/trending",
        vec![
            Reply::status(429, "quota").header("retry-after", "1"),
            Reply::status(502, "bad gateway"),
            Reply::json("<html>maintenance</html>"),
            Reply::json(r#"{"status":"error","message":"Ticker not found"}"#),
            ok(r#"[{"ticker":"BBCA"}]"#),
        ],
    );
    let mut src = source(
        &base,
        &[("endpoint", s("trending")), ("interval", s("10ms"))],
    );
    src.open(None).await.unwrap();
    let started = std::time::Instant::now();
    let (rows, bad) = collect(&mut src, 1, Duration::from_secs(10)).await;
    assert_eq!(rows.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After is honoured"
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].raw.as_deref(), Some("<html>maintenance</html>"));
    assert!(
        bad[1].reason.contains("Ticker not found"),
        "{}",
        bad[1].reason
    );
}

#[tokio::test]
async fn requests_are_spaced_by_the_rate_limit_and_stop_at_the_monthly_budget() {
    let server = Server::default();
    let base = server.start().await;
    for t in ["A", "B", "C", "D"] {
        server.script(
            &format!("/{t}/historical"),
            vec![history(t, &["2023-09-01"])],
        );
    }
    let extra = [
        ("endpoint", s("historical")),
        ("tickers", list(&["A", "B", "C", "D"])),
        ("from", s("2023-09-01")),
        ("to", s("2023-09-02")),
        ("max_requests_per_minute", s("300")),
        ("monthly_budget", s("3")),
    ];
    let mut src = source(&base, &extra);
    src.open(None).await.unwrap();
    let started = std::time::Instant::now();
    let (rows, _) = collect(&mut src, 3, Duration::from_secs(5)).await;
    assert_eq!(rows.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "300/min = one request per 200 ms"
    );
    let (more, _) = collect(&mut src, 1, Duration::from_millis(700)).await;
    assert!(more.is_empty(), "the budget of 3 requests is used up");
    assert_eq!(server.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn config_errors_are_reported() {
    let errs = build_source(
        goapi::build,
        &[("endpoint", s("historical")), ("from", s("yesterday"))],
    )
    .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert!(
        fields.contains(&"sources.s.api_key")
            && fields.contains(&"sources.s.tickers")
            && fields.contains(&"sources.s.from"),
        "{fields:?}"
    );
}
