//! The typed reader against config trees with problems.

use serde::Deserialize;

use super::super::{ConfigErrors, ConfigKey, ConfigMap, ConfigNode, ConfigValue, Span};
use super::super::{HumanDuration, TextMap};

fn at(line: usize) -> Span {
    Span {
        file: "p.yaml".into(),
        line,
        column: 3,
    }
}

fn scalar(s: &str, line: usize) -> ConfigNode {
    ConfigNode {
        value: ConfigValue::Scalar(s.into()),
        span: at(line),
        secret: false,
        raw: None,
        quoted: false,
    }
}

fn map(entries: Vec<(&str, ConfigNode)>, line: usize) -> ConfigNode {
    let value = ConfigValue::Map(
        entries
            .into_iter()
            .map(|(k, v)| {
                let key = ConfigKey {
                    name: k.into(),
                    span: v.span.clone(),
                };
                (key, v)
            })
            .collect(),
    );
    ConfigNode {
        value,
        span: at(line),
        secret: false,
        raw: None,
        quoted: false,
    }
}

#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Fast,
    Safe,
}

/// What a component reads.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Options {
    /// Where to write.
    path: String,
    /// How many.
    #[serde(default)]
    count: u64,
    #[serde(default)]
    every: Option<HumanDuration>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    names: TextMap,
}

#[test]
fn every_problem_of_a_component_is_reported_at_its_line() {
    let node = map(
        vec![
            ("type", scalar("x", 1)),
            ("count", scalar("many", 2)),
            ("every", scalar("5 parsecs", 3)),
            ("mode", scalar("fsat", 4)),
            ("colums", scalar("a", 5)),
        ],
        1,
    );
    let errors = ConfigErrors::default();
    let mut cfg = ConfigMap::new(&node, "sinks.s", &errors);
    cfg.allow(&["type"]);
    let read: Option<Options> = cfg.typed();
    assert!(cfg.finish().is_err());
    let errs = errors.take();
    let show =
        |e: &super::super::ConfigError| format!("{}: {} {}", e.span.line, e.field, e.message);
    let all: Vec<String> = errs.iter().map(show).collect();
    let expect = [
        "5: sinks.s.colums unknown field",
        "1: sinks.s.path missing required field (Where to write)",
        "2: sinks.s.count expected a whole number ≥ 0, found `many`",
        "3: sinks.s.every expected a duration",
        "4: sinks.s.mode expected one of fast | safe, found `fsat`; did you mean `fast`?",
    ];
    for e in expect {
        assert!(all.iter().any(|a| a.starts_with(e)), "no `{e}` in {all:#?}");
    }
    assert!(all[0].contains("did you mean `columns`?"), "{all:#?}");
    // Reported, then read as a stand-in: the builder's own checks still run.
    assert_eq!(read.map(|o| o.path), Some(String::new()));
}

#[test]
fn scalars_read_as_the_type_asked_for() {
    let node = map(
        vec![
            ("path", scalar("123", 1)),
            ("count", scalar("1_000", 2)),
            ("every", scalar("1h 30m", 3)),
            ("columns", scalar("only", 4)),
            (
                "names",
                map(vec![("b", scalar("2", 6)), ("a", scalar("x", 7))], 5),
            ),
        ],
        1,
    );
    let errors = ConfigErrors::default();
    let o: Options = ConfigMap::new(&node, "s", &errors).typed().unwrap();
    assert!(errors.is_empty(), "{:?}", errors.take());
    assert_eq!(o.path, "123");
    assert_eq!(o.count, 1000);
    assert_eq!(o.every, Some(HumanDuration::secs(5400)));
    assert_eq!(o.columns, vec!["only"]);
    assert_eq!(o.mode, None);
    // In the order written.
    assert_eq!(
        o.names.0,
        vec![("b".to_string(), "2".to_string()), ("a".into(), "x".into())]
    );
}

#[test]
fn a_nested_problem_names_its_full_path() {
    let node = map(
        vec![
            ("path", scalar("p", 1)),
            (
                "names",
                map(vec![("a", map(vec![("deep", scalar("x", 3))], 3))], 2),
            ),
        ],
        1,
    );
    let errors = ConfigErrors::default();
    let read: Option<Options> = ConfigMap::new(&node, "t.w", &errors).typed();
    let errs = errors.take();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "t.w.names.a");
    assert_eq!(errs[0].span.line, 3);
    assert!(errs[0].message.contains("expected a string"), "{}", errs[0]);
    assert!(
        read.is_some(),
        "a wrong scalar is reported, and reading goes on"
    );
}
