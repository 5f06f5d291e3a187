//! The plugin author's loop, through the binary: `connectd plugin new` → build →
//! `connectd plugin test`, for Rust, Python and JavaScript; and `plugin test` on a
//! plugin that prints and panics. Python and JavaScript build with the toolchains
//! `scripts/build-plugins.sh` installs (componentize-py, componentize-js).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `plugin new`, then the build its README gives; returns the built module.
fn new_and_build(parent: &Path, lang: &str) -> PathBuf {
    let name = format!("shout-{lang}");
    ok(
        connectd()
            .args(["plugin", "new", &name, "--lang", lang, "--dir"])
            .arg(parent)
            .output()
            .unwrap(),
        "plugin new",
    );
    let dir = parent.join(&name);
    let wasm = match lang {
        "rust" => {
            // The examples' lock file and build directory: the same dependencies,
            // already compiled once by the test script.
            std::fs::copy(
                repo().join("examples/plugins/Cargo.lock"),
                dir.join("Cargo.lock"),
            )
            .unwrap();
            ok(
                Command::new("cargo")
                    .args(["build", "--release", "--target", "wasm32-wasip2"])
                    .env("CARGO_TARGET_DIR", repo().join("examples/plugins/target"))
                    .current_dir(&dir)
                    .output()
                    .unwrap(),
                "cargo build",
            );
            // Its own tests, natively, as its README says.
            let tested = ok(
                Command::new("cargo")
                    .arg("test")
                    .env("CARGO_TARGET_DIR", repo().join("examples/plugins/target"))
                    .current_dir(&dir)
                    .output()
                    .unwrap(),
                "cargo test",
            );
            assert!(
                String::from_utf8_lossy(&tested.stdout).contains("1 passed"),
                "{}",
                String::from_utf8_lossy(&tested.stdout)
            );
            repo().join("examples/plugins/target/wasm32-wasip2/release/shout_rust.wasm")
        }
        "python" => {
            let venv = std::fs::read_dir(repo().join("examples/plugins/target"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().contains("componentize-py-"))
                .expect("componentize-py (scripts/build-plugins.sh installs it)");
            ok(
                Command::new(venv.join("bin/componentize-py"))
                    .args(["-d", "wit", "-w", "transform", "componentize", "app"])
                    .args(["-o", "shout_python.wasm"])
                    .current_dir(&dir)
                    .output()
                    .unwrap(),
                "componentize-py",
            );
            dir.join("shout_python.wasm")
        }
        _ => {
            // `npm run build` with the examples' installed componentize-js.
            let bin = repo().join("examples/plugins/js/node_modules/.bin");
            let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
            ok(
                Command::new("npm")
                    .args(["run", "build"])
                    .env("PATH", path)
                    .current_dir(&dir)
                    .output()
                    .unwrap(),
                "npm run build",
            );
            dir.join("shout_js.wasm")
        }
    };
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_new_plugin_builds_and_plugin_test_runs_it_in_every_language() {
    let parent = tempfile::tempdir().unwrap();
    let records = parent.path().join("records.jsonl");
    std::fs::write(
        &records,
        [
            r#"{"key": {"id": 1}, "value": {"name": "ada", "n": 1}, "timestamp": 1700000000000, "headers": {"trace": "t-1", "é": "ü"}}"#,
            r#"{"value": {"n": 2}}"#,
            r#"{"value": "just text", "timestamp": 5}"#,
            r#"{"value": {"name": "Grace Hopper 🚀"}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    // Independently: the text field upper-cased, everything else as it came.
    let want = |record: serde_json::Value| -> serde_json::Value {
        let mut r = record;
        if let Some(name) = r["value"]["name"].as_str() {
            r["value"]["name"] = name.to_uppercase().into();
        }
        for (field, empty) in [
            ("key", serde_json::Value::Null),
            ("timestamp", serde_json::Value::Null),
        ] {
            if r.get(field).is_none() {
                r[field] = empty;
            }
        }
        if r.get("headers").is_none() {
            r["headers"] = serde_json::json!({});
        }
        serde_json::json!({ "out": r })
    };
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| want(serde_json::from_str(l).unwrap()))
        .collect();
    // The three builds run side by side: each takes tens of seconds.
    let modules: Vec<(&str, PathBuf)> = std::thread::scope(|s| {
        let builds: Vec<_> = ["rust", "python", "js"]
            .into_iter()
            .map(|lang| (lang, s.spawn(|| new_and_build(parent.path(), lang))))
            .collect();
        builds
            .into_iter()
            .map(|(lang, b)| (lang, b.join().unwrap()))
            .collect()
    });
    for (lang, module) in modules {
        // The project's own sample, as its README says.
        let sample = parent.path().join(format!("shout-{lang}/sample.jsonl"));
        let out = ok(
            connectd()
                .args(["plugin", "test", "--module"])
                .arg(&module)
                .args(["--config", r#"{"field": "name"}"#, "--input"])
                .arg(&sample)
                .output()
                .unwrap(),
            lang,
        );
        let got = lines(&out);
        assert_eq!(got.len(), 2, "{lang}: {got:?}");
        assert_eq!(got[0]["out"]["value"]["name"], "ADA", "{lang}");
        assert_eq!(
            got[1]["out"]["value"],
            serde_json::json!({"n": 2}),
            "{lang}"
        );
        // Whole records: key, timestamp and headers come through.
        let out = ok(
            connectd()
                .args([
                    "plugin",
                    "test",
                    "--records",
                    "--batch-size",
                    "3",
                    "--module",
                ])
                .arg(&module)
                .args(["--config", r#"{"field": "name"}"#, "--input"])
                .arg(&records)
                .output()
                .unwrap(),
            lang,
        );
        assert_eq!(lines(&out), expected, "{lang}");
        // A config the plugin refuses: exit 1, naming the reason.
        let out = connectd()
            .args(["plugin", "test", "--module"])
            .arg(&module)
            .args(["--config", r#"{"field": 7}"#, "--input"])
            .arg(&sample)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("config.field must be text"),
            "{lang}: {stderr}"
        );
    }
}

#[test]
fn plugin_test_shows_prints_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"n\":1}\n{\"n\":2,\"go\":true}\n{\"n\":3}\n").unwrap();
    let probe = repo().join("transforms/tests/guests/target/wasm32-wasip2/release/probe.wasm");
    let out = ok(
        connectd()
            .args(["plugin", "test", "--module"])
            .arg(&probe)
            .args(["--config", r#"{"mode": "trap", "print": true}"#, "--input"])
            .arg(&input)
            .output()
            .unwrap(),
        "plugin test",
    );
    let got = lines(&out);
    let outs: Vec<_> = got.iter().filter_map(|l| l.get("out")).collect();
    let dlq: Vec<_> = got.iter().filter_map(|l| l.get("dlq")).collect();
    assert_eq!(
        outs.iter()
            .map(|o| o["value"]["n"].clone())
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(dlq.len(), 1, "{got:?}");
    assert_eq!(dlq[0]["record"]["value"]["n"], 2);
    assert!(
        dlq[0]["reason"]
            .as_str()
            .unwrap()
            .contains("panics on purpose"),
        "{}",
        dlq[0]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("probe: stderr on batch 1 plugin=plugin-test/plugin"),
        "the plugin's prints are logged, with its name: {stderr}"
    );
}
