//! `connectd schema`: the JSON Schema editors check pipeline files against. It is made
//! from the components' typed options, so checking it against every shipped pipeline
//! and every broken config checks those types against what connectd accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn schema() -> serde_json::Value {
    let out = connectd().arg("schema").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("`connectd schema` prints JSON")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every place where `file` breaks the schema, or none.
fn violations(validator: &jsonschema::Validator, file: &Path) -> Vec<String> {
    match connectd_runtime::config::file_as_json(file) {
        Ok(json) => validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect(),
        Err(problems) => vec![format!("refused when loaded: {problems}")],
    }
}

#[test]
fn the_schema_accepts_every_shipped_pipeline_and_the_reference() {
    let validator = jsonschema::draft7::new(&schema()).expect("a valid draft-07 schema");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = yaml_files(&root.join("examples/pipelines"));
    files.extend(yaml_files(&root.join("examples/pipelines/kafka")));
    files.push(root.join("configs/pipeline-reference.yaml"));
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let v = violations(&validator, file);
        assert!(v.is_empty(), "{}:\n{}", file.display(), v.join("\n"));
    }
}

/// Broken configs whose fault lies beyond what a JSON Schema can say: the graph of
/// inputs, expressions, the environment. `connectd validate` reports them (the
/// `config_errors` test); an editor cannot.
const BEYOND_A_SCHEMA: &[(&str, &str)] = &[
    ("07-filter-syntax-error.yaml", "an expression's syntax"),
    ("12-hop-larger-than-size.yaml", "compares two durations"),
    (
        "17-unknown-input.yaml",
        "the graph: an input naming no component",
    ),
    ("18-input-is-a-sink.yaml", "the graph"),
    ("19-cycle.yaml", "the graph"),
    ("20-unused-source.yaml", "the graph"),
    ("21-duplicate-component-name.yaml", "names across sections"),
    ("26-unset-env-var.yaml", "the environment"),
    ("34-map-bad-expression.yaml", "an expression's syntax"),
    (
        "39-unknown-filter-function.yaml",
        "an expression's functions",
    ),
    (
        "41-backfill-from-live-source.yaml",
        "whether the pipeline's sources can replay",
    ),
    (
        "42-backfill-into-at-least-once-sink.yaml",
        "whether the sink keeps a checkpoint",
    ),
    (
        "44-backfill-from-kafka-latest.yaml",
        "a setting of another component",
    ),
    (
        "45-window-output-names-collide.yaml",
        "the last segments of field paths",
    ),
];

#[test]
fn the_schema_rejects_every_broken_config_a_schema_can_describe() {
    let validator = jsonschema::draft7::new(&schema()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken-configs");
    let files = yaml_files(&dir);
    let mut rejected = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let v = violations(&validator, file);
        match BEYOND_A_SCHEMA.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => println!("{name}: beyond a schema ({why}): {v:?}"),
            None => {
                assert!(!v.is_empty(), "{name}: the schema accepts it");
                println!("{name}: {}", v[0]);
                rejected += 1;
            }
        }
    }
    assert!(rejected >= 30, "only {rejected} rejected");
}

#[test]
fn every_component_is_described_with_its_options() {
    let out = connectd().arg("list").output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let types: Vec<(String, String)> = list
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect();
    assert!(types.len() >= 20, "{list}");
    for (kind, t) in &types {
        let line = list
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(t))
            .unwrap();
        assert!(
            line.split_whitespace().count() > 3,
            "{kind} {t} has no description: {line}"
        );
        let out = connectd().args(["describe", t]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("not described"), "{text}");
    }
    // One in detail: defaults, required, docs.
    let out = connectd().args(["describe", "csv"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "path",
        "required",
        "delimiter",
        "(default \",\")",
        "header",
        "(default true)",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    // A block's settings, as `block.option` (Kafka Connect's dotted names).
    let out = connectd().args(["describe", "file"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["csv.header", "csv.delimiter", "csv.types", "(default true)"] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    let out = connectd().args(["describe", "no-such"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connectd list"));
}

/// A component block of the reference: its type, and the options it shows.
type Block = (Option<String>, Vec<String>);

/// The options each component block of the reference shows, by (section, type):
/// written ones and commented-out ones (`# url: ...`, or a whole block commented out,
/// for alternatives that cannot stand together or need files a checkout lacks).
fn documented_options(text: &str) -> Vec<(String, String, Vec<String>)> {
    let key = |l: &str| -> Option<(usize, String, String)> {
        let indent = l.len() - l.trim_start().len();
        let body = l.trim_start();
        let (indent, body) = match body.strip_prefix('#') {
            Some(rest) => {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                (
                    indent + rest.len() - rest.trim_start().len(),
                    rest.trim_start(),
                )
            }
            None => (indent, body),
        };
        let (k, v) = body.split_once(':')?;
        let ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        ok.then(|| {
            (
                indent,
                k.to_string(),
                v.split('#').next().unwrap_or("").trim().to_string(),
            )
        })
    };
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    let (mut section, mut block): (String, Option<Block>) = (String::new(), None);
    let mut flush = |section: &str, block: &mut Option<Block>| {
        if let Some((Some(t), keys)) = block.take() {
            out.push((section.to_string(), t, keys));
        }
    };
    for line in text.lines() {
        let Some((indent, k, v)) = key(line) else {
            continue;
        };
        match indent {
            0 => {
                flush(&section, &mut block);
                section = k;
            }
            2 => {
                flush(&section, &mut block);
                block = Some((None, Vec::new()));
            }
            4 => {
                if let Some((t, keys)) = block.as_mut() {
                    if k == "type" {
                        *t = Some(v);
                    }
                    keys.push(k);
                }
            }
            _ => {}
        }
    }
    flush(&section, &mut block);
    out
}

/// `configs/pipeline-reference.yaml` is checked against the types both ways: the
/// schema accepts it (first test), and every option of every component appears in it.
#[test]
fn the_reference_shows_every_option_of_every_component() {
    let schema = schema();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("configs/pipeline-reference.yaml")).unwrap();
    let documented = documented_options(&text);
    let mut missing = Vec::new();
    for section in ["sources", "transforms", "sinks"] {
        let branches = schema["properties"][section]["additionalProperties"]["allOf"]
            .as_array()
            .unwrap();
        for branch in branches {
            let type_name = branch["if"]["properties"]["type"]["const"]
                .as_str()
                .unwrap();
            let shown: Vec<&String> = documented
                .iter()
                .filter(|(s, t, _)| s == section && t == type_name)
                .flat_map(|(_, _, keys)| keys)
                .collect();
            for option in branch["then"]["properties"].as_object().unwrap().keys() {
                if !shown.contains(&option) {
                    missing.push(format!("{section}: {type_name}.{option}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options not shown in configs/pipeline-reference.yaml:\n{}",
        missing.join("\n")
    );
}
