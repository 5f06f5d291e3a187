//! `connectd test`: every shipped example passes its own `tests:`, and a wrong
//! expectation fails with a readable diff and exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `connectd test` in `dir` with the examples' environment; (success, stdout, stderr).
fn connectd_test(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = connectd()
        .current_dir(dir)
        .env("APCA_API_KEY_ID", "k")
        .env("APCA_API_SECRET_KEY", "s")
        .env("GOAPI_API_KEY", "g")
        .arg("test")
        .args(args)
        .arg("--worker")
        .arg(root().join("configs/worker.yaml"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_example_passes_its_tests() {
    let (ok, stdout, stderr) = connectd_test(
        root(),
        &[
            "examples/pipelines/*.yaml",
            "examples/pipelines/kafka/*.yaml",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let examples = std::fs::read_dir(root().join("examples/pipelines"))
        .unwrap()
        .chain(std::fs::read_dir(root().join("examples/pipelines/kafka")).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert!(examples >= 10);
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(passed >= examples, "every example has a test: {stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("examples/pipelines/iot-monitoring.yaml"))
        .unwrap()
        // The doc/cpu1 window's maximum is 95.5: claim 96.5.
        .replace(
            "avg_usage: 73.0, max_usage: 95.5",
            "avg_usage: 73.0, max_usage: 96.5",
        )
        // And a condition that one alert breaks.
        .replace(
            r#"alerts_csv: ["usage > 90"]"#,
            r#"alerts_csv: ["usage > 92"]"#,
        );
    assert!(text.contains("96.5") && text.contains("usage > 92"));
    std::fs::write(dir.path().join("iot.yaml"), text).unwrap();
    let (ok, stdout, _) = connectd_test(dir.path(), &["iot.yaml"]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("FAIL  iot-monitoring / hot readings"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink `cpu_csv`: 3 records expected, 3 received"),
        "{stdout}"
    );
    let minus = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("- "))
        .unwrap();
    let plus = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("+ "))
        .unwrap();
    assert!(minus.contains("\"max_usage\":96.5"), "{stdout}");
    assert!(plus.contains("\"max_usage\":95.5"), "{stdout}");
    assert!(
        stdout.contains(
            "`usage > 92` does not hold for {\"hostname\":\"doc\",\"cpu\":\"cpu1\",\"usage\":91.0"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("1 test(s): 0 passed, 1 failed"), "{stdout}");
}

#[test]
fn a_test_naming_what_is_not_there_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nsources:\n  m: {type: iot}\nsinks:\n  s: {type: stdout, inputs: [m]}\ntests:\n  - name: wrong names\n    inputs: {n: [{a: 1}]}\n    expect: {t: []}\n",
    )
    .unwrap();
    let (ok, stdout, _) = connectd_test(dir.path(), &["p.yaml"]);
    assert!(!ok);
    assert!(
        stdout.contains("no source `n`") && stdout.contains("no sink `t`"),
        "{stdout}"
    );
    // A typo in the tests section is a config error, with its line.
    std::fs::write(
        dir.path().join("q.yaml"),
        "name: q\nsources:\n  m: {type: iot}\nsinks:\n  s: {type: stdout, inputs: [m]}\ntests:\n  - name: typo\n    expcet: {s: []}\n",
    )
    .unwrap();
    let (ok, _, stderr) = connectd_test(dir.path(), &["q.yaml"]);
    assert!(!ok);
    assert!(
        stderr.contains("q.yaml:8:")
            && stderr.contains("tests[0].expcet")
            && stderr.contains("did you mean `expect`"),
        "{stderr}"
    );
}
