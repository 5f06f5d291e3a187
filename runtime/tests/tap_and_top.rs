//! `connectd tap` and `connectd top` against a running worker: tap prints records that
//! left a component (checked against the component's own rule), top draws the
//! components with their rates in a terminal (driven in tmux, its screen captured).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PIPELINE: &str = "name: ticks\ncheckpoint: {interval: 200ms}\nsources:\n  trades: {type: trades, seed: 5, rate: 200, count: 1000000}\ntransforms:\n  big: {type: filter, inputs: [trades], where: volume > 5000}\nsinks:\n  out: {type: csv, inputs: [big], path: out/big.csv, columns: [id, volume]}\n";

#[test]
fn tap_prints_what_leaves_a_component() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "p.yaml", PIPELINE);
    let (mut child, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let addr = format!("127.0.0.1:{port}");
    let tap = |target: &str, extra: &[&str]| {
        connectd()
            .args(["tap", target, "--admin-addr", &addr])
            .args(extra)
            .output()
            .unwrap()
    };
    // The filter's output: every record passed its condition.
    let out = tap("ticks/big", &["--limit", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    for l in &lines {
        assert!(l["value"]["volume"].as_i64().unwrap() > 5000, "{l}");
        assert!(l["value"]["id"].is_string(), "{l}");
    }
    // The source, sampled: every fourth record; the generator's volumes vary, some
    // are at most 5000 (the filter's output alone would never show one). About half
    // are, so 40 records without one would happen once in 10^12 runs.
    let out = tap("ticks/trades", &["--limit", "40", "--sample", "0.25"]);
    assert!(out.status.success());
    let volumes: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]["volume"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(volumes.len(), 40);
    assert!(volumes.iter().any(|v| *v <= 5000), "{volumes:?}");
    // What reaches the sink.
    let out = tap("ticks/out", &["--limit", "5"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    // Wrong names are refused, naming what is there.
    let out = tap("ticks/nope", &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no component `nope`") && said.contains("trades, big, out"),
        "{said}"
    );
    let out = tap("ticks", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("<pipeline>/<component>"));
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn top_draws_the_components_with_their_rates_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    write_pipeline(dir.path(), "p.yaml", PIPELINE);
    let (mut child, port) = start_worker(dir.path(), &["--config", "p.yaml"]);
    let session = format!("connectd-top-{}", std::process::id());
    let binary = env!("CARGO_BIN_EXE_connectd");
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "30",
        &format!("{binary} top --admin-addr 127.0.0.1:{port} --interval 500ms"),
    ]);
    // Wait for a screen with a rate on the source's row (the second screen on).
    let started = Instant::now();
    let screen = loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]);
        let rate = screen
            .lines()
            .find(|l| l.contains("source (trades)"))
            .and_then(|l| l.split_whitespace().nth_back(3).map(str::to_string));
        if rate.is_some_and(|r| r.parse::<f64>().is_ok_and(|r| r > 0.0)) {
            break screen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "top never showed a rate:\n{screen}\n{}",
            stderr_tail(&child, 2000)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    tmux(&["kill-session", "-t", &session]);
    for needle in [
        "PIPELINE",
        "OUT/s",
        "CKPT AGE",
        "ticks",
        "RUNNING",
        "source (trades)",
        "transform (filter)",
        "sink (csv)",
    ] {
        assert!(
            screen.contains(needle),
            "`{needle}` not on the screen:\n{screen}"
        );
    }
    signal(&child, libc::SIGTERM);
    assert!(wait_with_deadline(&mut child, Duration::from_secs(30)).success());
}
