//! The command line: help on every flag, flags from `CONNECTD_*` variables, and
//! `connectd eval` (issue 20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn output(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = connectd()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_flag_has_help_and_an_environment_variable() {
    for command in [
        &["run", "--help"][..],
        &["validate", "--help"],
        &["status", "--help"],
    ] {
        let (ok, help, _) = output(command, &[]);
        assert!(ok, "{command:?}");
        // clap prints each option as `--name ...` then its help, on the same line or
        // (when some help is long) on the next; an option without help would be a line
        // that ends right after its value name, followed by the next option.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let flag = line.trim_start();
            if !(flag.starts_with("--") || flag.starts_with("-c, --") || flag.starts_with("-h, --"))
            {
                continue;
            }
            let same_line = flag.split("  ").filter(|s| !s.is_empty()).count() >= 2;
            let next_line = lines.get(i + 1).is_some_and(|n| {
                let n = n.trim_start();
                !n.is_empty() && !n.starts_with('-')
            });
            assert!(
                same_line || next_line,
                "{command:?}: no help for `{}`",
                line.trim()
            );
            let takes_env = line.contains("--help") || line.contains("--version");
            assert!(
                takes_env || help.contains("[env: CONNECTD_"),
                "{command:?}: no environment variable for `{}`",
                line.trim()
            );
        }
    }
    // A flag from the environment: the state directory of `validate`.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  gen: {type: trades, seed: 1, rate: 0, count: 1}\nsinks:\n  out: {type: csv, inputs: [gen], path: out.csv, columns: [id]}\n",
    );
    let (ok, stdout, stderr) = output(&["validate"], &[("CONNECTD_CONFIG", cfg.to_str().unwrap())]);
    assert!(ok && stdout.contains("ok: p"), "{stdout}{stderr}");
}

#[test]
fn eval_prints_the_value_of_an_expression_on_a_record() {
    let (ok, out, _) = output(
        &[
            "eval",
            "usage > 90 and host == 'doc'",
            "--record",
            r#"{"usage": 91.5, "host": "doc"}"#,
        ],
        &[],
    );
    assert!(ok);
    assert_eq!(out.trim(), "true");
    let (ok, out, _) = output(&["eval", "round(n / 3)", "--record", r#"{"n": 10}"#], &[]);
    assert!(ok);
    assert_eq!(out.trim(), "3.0", "round gives a float");
    // A syntax error names its position; a type error is an error, never false.
    let (ok, _, err) = output(&["eval", "usage >", "--record", "{}"], &[]);
    assert!(!ok && err.contains("error:"), "{err}");
    let (ok, _, err) = output(&["eval", "host > 3", "--record", r#"{"host": "doc"}"#], &[]);
    assert!(!ok && err.contains("error:"), "{err}");
    let (ok, _, err) = output(&["eval", "1", "--record", "{not json"], &[]);
    assert!(!ok && err.contains("--record is not JSON"), "{err}");
}

/// `connectd list` names every component type with its kind; `connectd completions
/// bash` prints a script bash accepts, which completes the subcommands.
#[test]
fn list_and_shell_completions() {
    let (ok, listed, _) = output(&["list"], &[]);
    assert!(ok);
    for (kind, class) in [
        ("source", "kafka"),
        ("transform", "window"),
        ("sink", "mysql"),
        ("sink", "kafka"),
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == [kind, class]),
            "{kind} {class} not in:\n{listed}"
        );
    }
    let (ok, script, _) = output(&["completions", "bash"], &[]);
    assert!(ok && script.contains("connectd"));
    for sub in ["run", "validate", "status", "eval", "list", "completions"] {
        assert!(script.contains(sub), "`{sub}` is not completed");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connectd.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let (ok, _, err) = output(&["completions", "tcsh"], &[]);
    assert!(!ok && err.contains("tcsh"), "{err}");
}

/// `connectd ... | head -2`: once the reader of its standard output has gone, a
/// `stdout` sink's pipeline ends with the reason at once, instead of retrying a pipe
/// that cannot come back until `errors.retry_timeout` (5 minutes).
#[test]
fn a_stdout_sink_whose_reader_has_gone_ends_its_pipeline() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        "name: p\nsources:\n  g: {type: iot, rate: 0}\nsinks:\n  out: {type: stdout, inputs: [g]}\n",
    );
    let mut child = connectd()
        .current_dir(dir.path())
        .args(["--admin-addr", "off", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.contains("\"hostname\""), "{line}");
    }
    drop(lines);
    let status = wait_with_deadline(&mut child, std::time::Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the reader of standard output has gone (broken pipe)"),
        "{stderr}"
    );
}
