//! The running admin server against its own `/openapi.json`: every documented path and
//! method is called, and each answer must have a documented status code and a body
//! that matches the documented schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const TICKS: &str = "name: ticks\ncheckpoint: {interval: 200ms}\nsources:\n  trades: {type: trades, seed: 5, rate: 100, count: 1000000}\nsinks:\n  out: {type: csv, inputs: [trades], path: out/ticks.csv, columns: [id]}\n";

/// Follows `$ref`s inside the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let mut at = doc;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            resolve(doc, at)
        }
        None => v,
    }
}

/// The parts of JSON Schema the document uses.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if v.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return options
            .iter()
            .find(|o| check(doc, o, v, at).is_ok())
            .map(|_| ())
            .ok_or_else(|| format!("{at}: {v} matches none of oneOf"));
    }
    if let Some(choices) = schema["enum"].as_array() {
        if !choices.contains(v) {
            return Err(format!("{at}: {v} is not one of {choices:?}"));
        }
    }
    let ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("boolean") => v.is_boolean(),
        Some(other) => panic!("schema type {other} not handled here"),
        None => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not of type {}", schema["type"]));
    }
    if let Some(required) = schema["required"].as_array() {
        for key in required {
            let key = key.as_str().unwrap();
            if v.get(key).is_none() {
                return Err(format!("{at}: `{key}` missing in {v}"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (key, s) in props {
            if let Some(x) = obj.get(key) {
                check(doc, s, x, &format!("{at}.{key}"))?;
            }
        }
    }
    if let (Some(extra), Some(obj)) = (schema.get("additionalProperties"), v.as_object()) {
        if extra.is_object() {
            for (key, x) in obj {
                if schema["properties"].get(key).is_none() {
                    check(doc, extra, x, &format!("{at}.{key}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn the_server_answers_as_its_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "ticks.yaml", TICKS);
    let (mut child, port) = start_worker(dir.path(), &["--config", "ticks.yaml"]);
    let (code, body) = http("GET", port, "/openapi.json", None);
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // GETs first, then the calls that change state; each with a known and an unknown name.
    let mut calls = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            calls.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    calls.sort_by_key(|(m, _, _)| m != "GET");
    let mut checked = 0;
    for (method, path, op) in &calls {
        let path = &path.replace("{id}", "0");
        let mut urls = vec![path.replace("{name}", "ticks").replace("{type}", "trades")];
        if path.contains("{name}") {
            urls.push(path.replace("{name}", "nope"));
        }
        if path.contains("/tasks/0/") {
            urls.push(
                path.replace("{name}", "ticks")
                    .replace("/tasks/0/", "/tasks/7/"),
            );
        }
        if path.contains("{type}") {
            urls.push(path.replace("{type}", "nope"));
            urls.push(path.replace("{type}", "kafka"));
        }
        if path == "/connectors" {
            urls.push("/connectors?expand=status".into());
            urls.push("/connectors?expand=info".into());
            urls.push("/connectors?expand=status&expand=info".into());
            urls.push("/connectors?expand=everything".into());
        }
        for url in urls {
            let body = if op.get("requestBody").is_some() {
                r#"{"seed": "x", "rate": 5}"#
            } else {
                ""
            };
            let (code, text) = http_with_body(method, port, &url, None, body);
            let response = resolve(&doc, &op["responses"][code.to_string()]);
            assert!(
                response.is_object(),
                "{method} {url} answered {code}, which the document does not list: {text}"
            );
            if let Some(schema) = response["content"]["application/json"].get("schema") {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"));
                if let Err(e) = check(&doc, schema, &v, &format!("{method} {url}")) {
                    panic!("{e}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} calls");
    // The validate answer reports the bad field.
    let (code, text) = http_with_body(
        "PUT",
        port,
        "/connector-plugins/trades/config/validate",
        None,
        r#"{"seed": "x", "rate": 5}"#,
    );
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["error_count"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["errors"].to_string().contains("seed"), "{v}");
    let (_, text) = http_with_body(
        "PUT",
        port,
        "/connector-plugins/trades/config/validate",
        None,
        r#"{"seed": 1, "rate": 5}"#,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error_count"],
        0,
        "{text}"
    );
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}
